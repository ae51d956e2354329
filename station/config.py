"""Station configuration: YAML → frozen, validated dataclasses (docs/BEHAVIOUR.md §5).

``load_config(path)`` / ``parse_config(data)`` return a frozen ``Config`` or raise one
``ConfigError`` listing every problem as ``"key.path: reason"``. ``boot_safety_warnings`` flags
relays that would switch on while the Pi boots (docs/BEHAVIOUR.md §4).
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from datetime import timezone, tzinfo
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Hashable, Iterable, Mapping
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError
from .protocol import Priority


@dataclass(frozen=True)
class Pattern:
    """Siren cadence: ``on_s`` seconds on, ``off_s`` seconds off; ``off_s == 0`` is continuous."""

    on_s: float
    off_s: float = 0.0

    @property
    def continuous(self) -> bool:
        return self.off_s <= 0


DEFAULT_PATTERNS: Mapping[Priority, Pattern] = MappingProxyType({
    Priority.EMERGENCY: Pattern(1.0, 0.0),
    Priority.URGENT: Pattern(1.0, 0.5),
    Priority.NORMAL: Pattern(1.0, 2.0),
})


@dataclass(frozen=True)
class StationIdentity:
    id: str
    region: str


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class TlsConfig:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int = 1883
    failover: tuple[BrokerAddress, ...] = ()
    protocol: str = "5"               # "5" or "3.1.1"
    keepalive: int = 15               # seconds; a dead broker is noticed after 1.5 × this
    session_expiry_s: int = 7 * 86400  # MQTT 5 session expiry: a week offline loses nothing
    tls: TlsConfig | None = None
    username: str | None = None
    password_file: Path | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    plain_tcp_chosen: bool = False    # `tls: false` written: plain TCP on purpose (closed network)

    @property
    def addresses(self) -> tuple[BrokerAddress, ...]:
        """Primary first, then the failover list, in the order they are tried."""
        return (BrokerAddress(self.host, self.port),) + self.failover

    def password(self) -> str | None:
        """The password read from ``password_file`` (trailing newline stripped), or None."""
        if self.password_file is None:
            return None
        return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")


@dataclass(frozen=True)
class TopicsConfig:
    root: str = "polri/110"


@dataclass(frozen=True)
class OutputPinConfig:
    pin: int
    active_high: bool = True


@dataclass(frozen=True)
class ButtonConfig:
    pin: int
    pull_up: bool = True
    bounce_ms: int = 50


@dataclass(frozen=True)
class InputPinConfig:
    pin: int
    pull_up: bool = True


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str = "auto"         # auto | lgpio | rpigpio | mock
    siren: OutputPinConfig = OutputPinConfig(17)
    beacon: OutputPinConfig = OutputPinConfig(27)
    ack_button: ButtonConfig = ButtonConfig(22)
    siren_feedback: InputPinConfig | None = None


@dataclass(frozen=True)
class AlarmConfig:
    patterns: Mapping[Priority, Pattern] = field(default_factory=lambda: DEFAULT_PATTERNS)
    siren_max_s: float = 120.0        # then escalate: siren off, beacon stays, reminders
    reminder_s: float = 10.0          # length of a reminder burst
    reminder_every_s: float = 300.0   # period of reminder bursts until acknowledged
    selftest_hold_s: float = 3.0      # button held this long with no alarm: self-test
    stuck_hold_s: float = 30.0        # button held this long: button_stuck fault
    feedback_timeout_s: float = 1.0   # siren on without feedback this long: siren_failed
    seen_ids_days: int = 30           # complaint ids remembered at least this long
    seen_ids_max: int = 200_000       # ... and at most this many


@dataclass(frozen=True)
class HeartbeatConfig:
    interval_s: float = 30.0


@dataclass(frozen=True)
class StorageConfig:
    path: Path = Path("/var/lib/polres-station/state.db")
    outbox_max: int = 10_000          # acks are never dropped; other events beyond this are


@dataclass(frozen=True)
class SentryConfig:
    dsn: str | None = None            # from the YAML, `dsn_file`, or SENTRY_DSN
    environment: str = "production"


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"


@dataclass(frozen=True)
class TimeConfig:
    """Clock settings. Wire times are always UTC; ``display_tz`` only changes what people read."""

    ntp_servers: tuple[str, ...] = ()  # empty: the operating system's NTP servers are kept
    display_tz: str = "UTC"            # IANA zone for local times printed by history/status

    def zone(self) -> tzinfo:
        """``display_tz`` as a tzinfo (validated at load). UTC needs no time-zone database."""
        if self.display_tz == "UTC":
            return timezone.utc
        from zoneinfo import ZoneInfo   # only history/status print local times (memory)
        return ZoneInfo(self.display_tz)


@dataclass(frozen=True)
class PublicKeyRef:
    """One signing key the station trusts (docs/SIGNING.md): its id and the 32 key bytes read
    from ``public_key_file`` (an Ed25519 PEM as ``openssl pkey -pubout`` writes it)."""

    kid: str
    public_key_file: Path
    public_key: bytes = field(repr=False)


@dataclass(frozen=True)
class SecurityConfig:
    hq_keys: tuple[PublicKeyRef, ...] = ()     # may sign complaints (several: rotation)
    desk_keys: tuple[PublicKeyRef, ...] = ()   # may sign commands
    require_signatures: bool = False           # default: true as soon as any key is configured
    max_age_s: float = 3600.0                  # a signed complaint's reported_at, clock synced

    @property
    def enabled(self) -> bool:
        """Signatures are checked at all (a signed message is verified whenever keys exist)."""
        return self.require_signatures or bool(self.hq_keys or self.desk_keys)


@dataclass(frozen=True)
class Config:
    station: StationIdentity
    broker: BrokerConfig
    topics: TopicsConfig = TopicsConfig()
    gpio: GpioConfig = GpioConfig()
    alarm: AlarmConfig = AlarmConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    storage: StorageConfig = StorageConfig()
    sentry: SentryConfig = SentryConfig()
    logging: LoggingConfig = LoggingConfig()
    time: TimeConfig = TimeConfig()
    security: SecurityConfig = SecurityConfig()
    source: Path | None = field(default=None, compare=False)


# --- loading and validation (docs/BEHAVIOUR.md §5) ------------------------------------------------
#
# Every check records a problem and carries on with the default, so one run reports everything
# wrong with the file. Nothing is raised until the whole document has been read.

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
BCM_PINS = range(28)
PIN_FACTORIES = ("auto", "lgpio", "rpigpio", "mock")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_PORT, DEFAULT_TLS_PORT = 1883, 8883
_PROTOCOLS = {"5": "5", "5.0": "5", "3.1.1": "3.1.1", "311": "3.1.1"}
_TOP = "(top level)"

# At reset GPIO 0–8 are pulled up and 9–27 pulled down (docs/BEHAVIOUR.md §4). A relay is off
# during boot
# when the reset pull matches its "off" level. GPIO 0–3 (HAT ID EEPROM, I2C) are left out.
SAFE_PINS_ACTIVE_LOW: tuple[int, ...] = (4, 5, 6, 7, 8)
SAFE_PINS_ACTIVE_HIGH: tuple[int, ...] = tuple(range(9, 28))
_COMMON_ACTIVE_HIGH = (17, 22, 23, 24, 25, 26, 27)  # free on most HATs and relay boards

_Check = Callable[[Any], "str | None"]


class _Problems:
    """Collects ``"key.path: reason"`` lines; raises them all at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, reason: str) -> None:
        self.items.append(f"{path}: {reason}")

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, source: Path | None) -> None:
        if self.items:
            raise ConfigError(self.items, source=str(source) if source else None)


def _kind(value: Any) -> str:
    """A YAML-flavoured name of a value's type, for messages."""
    if value is None:
        return "null"
    names = {bool: "boolean", int: "integer", float: "number", str: "string",
             list: "list", dict: "mapping"}
    return names.get(type(value), type(value).__name__)


def _got(value: Any) -> str:
    """``integer 41``, ``string 'yes'``, ``null``: the offending value, shortened."""
    if value is None:
        return "null"
    text = repr(value)
    return f"{_kind(value)} {text if len(text) <= 60 else text[:57] + '...'}"


def _at_least(lo: float, why: str = "") -> _Check:
    return lambda v: None if v >= lo else f"must be ≥ {lo}{why}, got {v!r}"


def _above(lo: float) -> _Check:
    return lambda v: None if v > lo else f"must be > {lo}, got {v!r}"


def _between(lo: float, hi: float, unit: str = "") -> _Check:
    return lambda v: None if lo <= v <= hi else f"must be {lo}–{hi}{unit}, got {v!r}"


def _bcm_pin(v: int) -> str | None:
    return None if v in BCM_PINS else f"{v} is not a BCM GPIO (0–27)"


def _valid_id(v: str) -> str | None:
    if ID_RE.match(v):
        return None
    return (f"{v!r} is not a valid id: 1–64 of lower-case a–z, 0–9, '-', '_', starting with a "
            "letter or digit (no '.', '/', '+', '#')")


class _Section:
    """One mapping of the document at a key path, with typed getters.

    Unknown keys are reported (with a "did you mean" hint) when the section is opened. A getter
    returns the value when valid, else records a problem and returns the default, so reading
    carries on.
    """

    def __init__(self, data: Mapping[Any, Any], path: str, problems: _Problems,
                 known: Iterable[str], base: Path) -> None:
        self.data, self.path, self.problems, self.base = data, path, problems, base
        self.known = tuple(known)
        for key in data:
            if key not in self.known:
                problems.add(self.key(str(key)), "unknown key" + _hint(str(key), self.known))

    @classmethod
    def open(cls, value: Any, path: str, problems: _Problems, known: Iterable[str],
             base: Path) -> _Section:
        """A section from ``value``; null counts as empty, anything not a mapping is a problem."""
        if value is None:
            value = {}
        elif not isinstance(value, Mapping):
            problems.add(path, f"expected a mapping, got {_got(value)}")
            value = {}
        return cls(value, path, problems, known, base)

    def key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def sub(self, key: str, known: Iterable[str]) -> _Section:
        return _Section.open(self.data.get(key), self.key(key), self.problems, known, self.base)

    def _get(self, key: str, default: Any, ok: Callable[[Any], bool], what: str,
             checks: Iterable[_Check], required: bool = False, nullable: bool = False) -> Any:
        """The value at ``key`` if present, of the right type and passing ``checks``.

        Otherwise ``default``, with a problem recorded unless the key is simply absent (or
        null where ``nullable``) and not ``required``.
        """
        if key not in self.data or (nullable and self.data[key] is None):
            if required:
                self.problems.add(self.key(key), "required")
            return default
        value = self.data[key]
        if not ok(value):
            self.problems.add(self.key(key), f"expected {what}, got {_got(value)}")
            return default
        for check in checks:
            reason = check(value)
            if reason:
                self.problems.add(self.key(key), reason)
                return default
        return value

    def text(self, key: str, default: Any = None, *checks: _Check, required: bool = False,
            nullable: bool = False, allow_empty: bool = False) -> Any:
        """A string, non-blank unless ``allow_empty``; null means absent if ``nullable``."""
        empty: tuple[_Check, ...] = () if allow_empty else (_not_blank,)
        return self._get(key, default, lambda v: isinstance(v, str), "a string",
                         empty + checks, required, nullable)

    def integer(self, key: str, default: int, *checks: _Check, required: bool = False) -> int:
        """An integer (a boolean is not one)."""
        return int(self._get(key, default,
                             lambda v: isinstance(v, int) and not isinstance(v, bool),
                             "an integer", checks, required))

    def number(self, key: str, default: float, *checks: _Check) -> float:
        """A finite number; integers are accepted and returned as float."""
        return float(self._get(key, default, _is_number, "a number", checks))

    def flag(self, key: str, default: bool) -> bool:
        """true or false (not "yes", not 1)."""
        return bool(self._get(key, default, lambda v: isinstance(v, bool), "true or false", ()))

    def path_value(self, key: str, default: Path | None = None) -> Path | None:
        """A path; a relative one is resolved against the config file's directory."""
        text = self.text(key, None, nullable=True)
        if text is None:
            return default
        path = Path(text)
        return path if path.is_absolute() else self.base / path

    def readable_file(self, key: str) -> Path | None:
        """A path (see ``path_value``) to a file that exists and can be read, or None."""
        path = self.path_value(key)
        if path is None:
            return None
        reason = _unreadable(path)
        if reason:
            self.problems.add(self.key(key), reason)
            return None
        return path


def _not_blank(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _hint(key: str, known: Iterable[str]) -> str:
    import difflib   # only a misspelt key needs it: the running station does not (memory)
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None when it can."""
    try:
        with open(path, "rb"):
            return None
    except FileNotFoundError:
        return f"file not found: {path}"
    except IsADirectoryError:
        return f"is a directory, not a file: {path}"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"


# --- sections -----------------------------------------------------------------------------------

def _station(s: _Section) -> StationIdentity:
    return StationIdentity(id=s.text("id", "", _valid_id, required=True),
                           region=s.text("region", "", _valid_id, required=True))


def _host_reason(host: str) -> str | None:
    """Why ``host`` is not a bare host name or IP address, or None."""
    if "://" in host:
        return f"{host!r}: give the host name only (no scheme); the port goes in broker.port"
    if any(c.isspace() for c in host) or "/" in host:
        return f"{host!r} is not a host name"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r}: give the host name only; the port goes in broker.port"
    return None


def parse_address(text: str, default_port: int) -> BrokerAddress | str:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` → BrokerAddress, or the reason not."""
    host, port_text = text.strip(), ""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return f"{text!r}: missing ']' after the IPv6 address"
        host, rest = host[1:end], host[end + 1:]
        if rest and not rest.startswith(":"):
            return f"{text!r}: expected [address]:port"
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{text!r}: {host!r} is not an IPv6 address"
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    elif ":" in host:
        return f"{text!r}: write an IPv6 address in brackets, e.g. [{host}]:{default_port}"
    if not host:
        return f"{text!r}: missing host"
    reason = _host_reason(host)
    if reason:
        return reason
    if not port_text:
        return BrokerAddress(host, default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return f"{text!r}: port must be 1–65535"
    return BrokerAddress(host, int(port_text))


def _failover(s: _Section, primary: BrokerAddress) -> tuple[BrokerAddress, ...]:
    value = s.raw("failover")
    if value is None:
        return ()
    if not isinstance(value, list):
        s.problems.add(s.key("failover"), f"expected a list of \"host:port\", got {_got(value)}")
        return ()
    out: list[BrokerAddress] = []
    for i, item in enumerate(value):
        path = f"{s.key('failover')}[{i}]"
        if not isinstance(item, str):
            s.problems.add(path, f"expected a \"host:port\" string, got {_got(item)}")
            continue
        parsed = parse_address(item, primary.port)
        if isinstance(parsed, str):
            s.problems.add(path, parsed)
        elif parsed == primary or parsed in out:
            s.problems.add(path, f"{parsed} is listed twice")
        else:
            out.append(parsed)
    return tuple(out)


def _protocol(s: _Section) -> str:
    """5, "5", "5.0", 3.1.1, "311" … → "5" or "3.1.1"."""
    if not s.has("protocol"):
        return "5"
    value = s.raw("protocol")
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        text = str(value).strip().lower().removeprefix("mqtt").removeprefix("v")
        if text in _PROTOCOLS:
            return _PROTOCOLS[text]
    s.problems.add(s.key("protocol"), f"must be 5 or 3.1.1, got {_got(value)}")
    return "5"


def _tls(s: _Section) -> TlsConfig | None:
    """``tls``: a mapping of files, ``true`` (system CAs), or absent/null/false (no TLS)."""
    value = s.raw("tls")
    if value is None or value is False:
        return None
    if value is True:
        return TlsConfig()
    t = s.sub("tls", ("ca_file", "cert_file", "key_file"))
    cert, key = t.readable_file("cert_file"), t.readable_file("key_file")
    for have, missing in (("cert_file", "key_file"), ("key_file", "cert_file")):
        if t.raw(have) is not None and t.raw(missing) is None:
            t.problems.add(t.key(missing), f"required with {t.key(have)} (they go together)")
    return TlsConfig(ca_file=t.readable_file("ca_file"), cert_file=cert, key_file=key)


def _password_file(s: _Section, username: str | None) -> Path | None:
    path = s.readable_file("password_file")
    if path is None:
        return None
    if not path.read_text(encoding="utf-8", errors="replace").strip():
        s.problems.add(s.key("password_file"), f"file is empty: {path}")
    if username is None:
        s.problems.add(s.key("username"), "required with broker.password_file")
    return path


_BROKER_KEYS = ("host", "port", "failover", "protocol", "keepalive", "session_expiry_s", "tls",
                "username", "password_file", "password", "reconnect_min_s", "reconnect_max_s")


def _broker(s: _Section) -> BrokerConfig:
    d = BrokerConfig(host="")
    host = s.text("host", "", _host_reason, required=True)
    tls = _tls(s)
    port = s.integer("port", DEFAULT_TLS_PORT if tls else DEFAULT_PORT, _between(1, 65535))
    if s.has("password"):
        s.problems.add(s.key("password"), "secrets come from files: use broker.password_file")
    username = s.text("username", None, nullable=True)
    rmin = s.number("reconnect_min_s", d.reconnect_min_s, _above(0))
    rmax = s.number("reconnect_max_s", d.reconnect_max_s, _above(0))
    if rmax < rmin:
        s.problems.add(s.key("reconnect_max_s"),
                       f"must be ≥ broker.reconnect_min_s ({rmin:g}), got {rmax:g}")
    return BrokerConfig(
        host=host, port=port, failover=_failover(s, BrokerAddress(host, port)),
        protocol=_protocol(s),
        keepalive=s.integer("keepalive", d.keepalive, _between(5, 3600, " s")),
        session_expiry_s=s.integer("session_expiry_s", d.session_expiry_s, _between(
            3600, 0xFFFFFFFF, " s (the broker keeps queued complaints only this long)")),
        tls=tls, username=username, password_file=_password_file(s, username),
        reconnect_min_s=rmin, reconnect_max_s=rmax, plain_tcp_chosen=s.raw("tls") is False)


def _topic_root(v: str) -> str | None:
    if "+" in v or "#" in v:
        return f"{v!r} must not contain MQTT wildcards '+' or '#'"
    if any(not seg for seg in v.split("/")):
        return f"{v!r} has an empty level (leading, trailing or doubled '/')"
    if v.startswith("$"):
        return f"{v!r}: topics starting with '$' are reserved for the broker"
    return None


def _topics(s: _Section) -> TopicsConfig:
    return TopicsConfig(root=s.text("root", TopicsConfig.root, _topic_root))


def _output(s: _Section, default: OutputPinConfig) -> OutputPinConfig:
    return OutputPinConfig(pin=s.integer("pin", default.pin, _bcm_pin),
                           active_high=s.flag("active_high", default.active_high))


def _button(s: _Section, default: ButtonConfig) -> ButtonConfig:
    return ButtonConfig(pin=s.integer("pin", default.pin, _bcm_pin),
                        pull_up=s.flag("pull_up", default.pull_up),
                        bounce_ms=s.integer("bounce_ms", default.bounce_ms,
                                            _between(0, 1000, " ms")))


def _feedback(s: _Section) -> InputPinConfig | None:
    if s.raw("siren_feedback") is None:
        return None
    f = s.sub("siren_feedback", ("pin", "pull_up"))
    return InputPinConfig(pin=f.integer("pin", -1, _bcm_pin, required=True),
                          pull_up=f.flag("pull_up", True))


def _gpio(s: _Section) -> GpioConfig:
    d = GpioConfig()
    gpio = GpioConfig(
        pin_factory=s.text("pin_factory", d.pin_factory, _one_of(PIN_FACTORIES)),
        siren=_output(s.sub("siren", ("pin", "active_high")), d.siren),
        beacon=_output(s.sub("beacon", ("pin", "active_high")), d.beacon),
        ack_button=_button(s.sub("ack_button", ("pin", "pull_up", "bounce_ms")), d.ack_button),
        siren_feedback=_feedback(s))
    _duplicate_pins(gpio, s)
    return gpio


def _duplicate_pins(gpio: GpioConfig, s: _Section) -> None:
    """Two roles on one pin: name both key paths.

    A pin that was refused (its problem is already recorded) stands in as its default in
    ``gpio``: it takes no part here, or ``siren.pin: 41`` + ``beacon.pin: 17`` would also
    report GPIO 17 (the siren's default) as taken.
    """
    used: dict[int, str] = {}
    for role in ("siren", "beacon", "ack_button", "siren_feedback"):
        conf = getattr(gpio, role)
        if conf is None or conf.pin not in BCM_PINS or not _pin_as_given(s, role, conf.pin):
            continue
        path = f"{s.path}.{role}.pin"
        if conf.pin in used:
            s.problems.add(path, f"GPIO {conf.pin} is already used by {used[conf.pin]}")
        else:
            used[conf.pin] = path


def _pin_as_given(s: _Section, role: str, pin: int) -> bool:
    """True when ``pin`` is what ``gpio.<role>.pin`` says, or the key is absent (the default
    then applies); False when the given value was refused and replaced."""
    section = s.raw(role)
    if not isinstance(section, Mapping) or "pin" not in section:
        return section is None or isinstance(section, Mapping)
    given = section["pin"]
    return isinstance(given, int) and not isinstance(given, bool) and given == pin


def _one_of(choices: tuple[str, ...]) -> _Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"


def _patterns(s: _Section) -> Mapping[Priority, Pattern]:
    p = s.sub("patterns", tuple(Priority))
    out = dict(DEFAULT_PATTERNS)
    for prio in Priority:
        if p.raw(prio) is None:
            continue
        one = p.sub(prio, ("on_s", "off_s"))
        d = DEFAULT_PATTERNS[prio]
        out[prio] = Pattern(on_s=one.number("on_s", d.on_s, _above(0)),
                            off_s=one.number("off_s", d.off_s, _at_least(0)))
    return MappingProxyType(out)


_ALARM_KEYS = ("patterns", "siren_max_s", "reminder_s", "reminder_every_s", "selftest_hold_s",
               "stuck_hold_s", "feedback_timeout_s", "seen_ids_days", "seen_ids_max")


def _alarm(s: _Section) -> AlarmConfig:
    d = AlarmConfig()
    reminder_s = s.number("reminder_s", d.reminder_s, _at_least(0))
    every = s.number("reminder_every_s", d.reminder_every_s, _above(0))
    if every <= reminder_s:
        s.problems.add(s.key("reminder_every_s"),
                       f"must be > alarm.reminder_s ({reminder_s:g}), got {every:g}")
    selftest = s.number("selftest_hold_s", d.selftest_hold_s, _above(0))
    stuck = s.number("stuck_hold_s", d.stuck_hold_s, _above(0))
    if stuck <= selftest:
        s.problems.add(s.key("stuck_hold_s"),
                       f"must be > alarm.selftest_hold_s ({selftest:g}), got {stuck:g}")
    return AlarmConfig(
        patterns=_patterns(s),
        siren_max_s=s.number("siren_max_s", d.siren_max_s, _above(0)),
        reminder_s=reminder_s, reminder_every_s=every,
        selftest_hold_s=selftest, stuck_hold_s=stuck,
        feedback_timeout_s=s.number("feedback_timeout_s", d.feedback_timeout_s, _above(0)),
        seen_ids_days=s.integer("seen_ids_days", d.seen_ids_days, _at_least(
            30, " (docs/BEHAVIOUR.md §1: complaint ids are remembered at least 30 days)")),
        seen_ids_max=s.integer("seen_ids_max", d.seen_ids_max, _at_least(1000)))


def _heartbeat(s: _Section) -> HeartbeatConfig:
    return HeartbeatConfig(
        interval_s=s.number("interval_s", HeartbeatConfig.interval_s, _between(1, 3600, " s")))


def _storage(s: _Section) -> StorageConfig:
    d = StorageConfig()
    return StorageConfig(path=s.path_value("path", d.path) or d.path,
                         outbox_max=s.integer("outbox_max", d.outbox_max, _at_least(100)))


def _dsn_reason(dsn: str) -> str | None:
    """Why ``dsn`` is not a Sentry DSN (the DSN itself is never echoed: it is a credential)."""
    parts = urlsplit(dsn)
    if parts.scheme in ("http", "https") and parts.hostname and parts.username:
        return None
    return "not a Sentry DSN (expected https://KEY@HOST/PROJECT)"


def _environment(v: str) -> str | None:
    if len(v) <= 64 and "/" not in v and not any(c.isspace() for c in v):
        return None
    return f"{v!r}: at most 64 characters, no '/' and no spaces"


def _sentry(s: _Section, env: Mapping[str, str]) -> SentryConfig:
    """DSN from ``dsn``, else ``dsn_file``, else $SENTRY_DSN; empty means Sentry off."""
    d = SentryConfig()
    dsn: str | None = s.text("dsn", None, nullable=True, allow_empty=True)
    if s.raw("dsn") and s.raw("dsn_file") is not None:
        s.problems.add(s.key("dsn_file"), "give sentry.dsn or sentry.dsn_file, not both")
    path, where = s.readable_file("dsn_file"), s.key("dsn")
    if not dsn and path is not None:
        dsn, where = path.read_text(encoding="utf-8", errors="replace").strip(), s.key("dsn_file")
    if not dsn and path is None and s.raw("dsn_file") is None:
        dsn, where = env.get("SENTRY_DSN", "").strip(), "SENTRY_DSN (environment)"
    dsn = (dsn or "").strip() or None
    if dsn is not None and _dsn_reason(dsn):
        s.problems.add(where, str(_dsn_reason(dsn)))
        dsn = None
    return SentryConfig(dsn=dsn,
                        environment=s.text("environment", d.environment, _environment))


def _level(s: _Section) -> LoggingConfig:
    level = s.text("level", LoggingConfig.level)
    if level.upper() not in LOG_LEVELS:
        s.problems.add(s.key("level"), f"must be one of {', '.join(LOG_LEVELS)}; got {level!r}")
        return LoggingConfig()
    return LoggingConfig(level=level.upper())


# --- time: NTP servers for systemd-timesyncd, the zone people read times in -------------------

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def _ntp_host_reason(host: Any) -> str | None:
    """Why ``host`` is not an NTP server name or IP address (timesyncd takes no port), or None."""
    if not isinstance(host, str) or not host.strip():
        return f"expected a host name or IP address, got {_got(host)}"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels):
        return None
    return f"{host!r} is not a host name or IP address (no scheme, no port, no spaces)"


def _ntp_servers(s: _Section) -> tuple[str, ...]:
    value = s.raw("ntp_servers")
    if value is None:
        return ()
    if not isinstance(value, list):
        s.problems.add(s.key("ntp_servers"), f"expected a list of host names, got {_got(value)}")
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        path = f"{s.key('ntp_servers')}[{i}]"
        reason = _ntp_host_reason(item)
        if reason:
            s.problems.add(path, reason)
        elif item in out:
            s.problems.add(path, f"{item!r} is listed twice")
        else:
            out.append(item)
    return tuple(out)


def _zone_reason(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone known to this system, or None."""
    if name == "UTC":                 # the default: no time-zone database needed
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError   # loaded for a zone only (memory)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"{name!r} is not a known IANA time zone (e.g. Asia/Jakarta, Asia/Makassar, UTC)"
    return None


def _time(s: _Section) -> TimeConfig:
    return TimeConfig(ntp_servers=_ntp_servers(s),
                      display_tz=s.text("display_tz", TimeConfig.display_tz, _zone_reason))


def _keys(s: _Section, name: str, seen: dict[str, str]) -> tuple[PublicKeyRef, ...]:
    """``security.hq_keys``/``desk_keys``: a list of ``{kid, public_key_file}``; kids unique
    across both lists (``seen``: kid → where it was first given)."""
    from .signing import KID_RE, KeyFileError, read_public_key
    value = s.raw(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        s.problems.add(s.key(name),
                       f"expected a list of {{kid, public_key_file}}, got {_got(value)}")
        return ()
    out: list[PublicKeyRef] = []
    for i, item in enumerate(value):
        k = _Section.open(item, f"{s.key(name)}[{i}]", s.problems, ("kid", "public_key_file"),
                          s.base)
        kid = k.text("kid", None, lambda v: None if KID_RE.match(v) else
                     f"{v!r} is not a key id: 1–64 of [A-Za-z0-9._:-]", required=True)
        path = k.path_value("public_key_file")
        if path is None:
            k.problems.add(k.key("public_key_file"), "required")
        if kid is not None and kid in seen:
            k.problems.add(k.key("kid"), f"{kid!r} is already the kid of {seen[kid]}")
        elif kid is not None:
            seen[kid] = k.path
        if path is None:
            continue
        try:
            raw = read_public_key(path)     # checked even beside a bad kid: every problem
        except KeyFileError as e:
            k.problems.add(k.key("public_key_file"), str(e))
            continue
        if kid is not None:
            out.append(PublicKeyRef(kid, path, raw))
    return tuple(out)


def _security(s: _Section) -> SecurityConfig:
    d, seen = SecurityConfig(), dict[str, str]()
    hq, desk = _keys(s, "hq_keys", seen), _keys(s, "desk_keys", seen)
    configured = bool(s.raw("hq_keys") or s.raw("desk_keys"))
    required = s.flag("require_signatures", configured)
    if required and not s.raw("hq_keys"):
        s.problems.add(s.key("hq_keys"), "required when security.require_signatures is true "
                       "(else every complaint would be refused)")
    if configured:
        from .signing import check_library
        missing = check_library()
        if missing:
            s.problems.add(s.path or "security", missing)
    return SecurityConfig(hq_keys=hq, desk_keys=desk, require_signatures=required,
                          max_age_s=s.number("max_age_s", d.max_age_s,
                                             _between(60, 7 * 86400, " s")))


_SECTIONS = ("station", "broker", "topics", "gpio", "alarm", "heartbeat", "storage", "sentry",
             "logging", "time", "security")


# --- the example's placeholders (config/station.example.yaml) -------------------------------
#
# The package installs the example as the station's config. A station that was never
# configured must not look healthy, so `check-config` and `run` refuse what the example leaves
# to the technician. The example's identity and an unchosen TLS are accepted for a broker on
# this machine (bench and test set-ups); a host under a name reserved for documentation can
# never be reached and is refused everywhere.

EXAMPLE_STATION_ID = "prabumulih-1"       # config/station.example.yaml, stations.example
_DOCUMENTATION_DOMAINS = ("example", "example.com", "example.net", "example.org")  # RFC 2606


def _documentation_host(host: str) -> bool:
    """True for ``mqtt.polri.example`` and the like: reserved names that never resolve."""
    name = host.lower().rstrip(".")
    return any(name == d or name.endswith("." + d) for d in _DOCUMENTATION_DOMAINS)


def _loopback(host: str) -> bool:
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def placeholder_problems(config: Config) -> list[str]:
    """``"key.path: reason"`` for each setting still holding the example's placeholder.

    A broker host (or failover entry) under a documentation name (``*.example``) always; the
    example's ``station.id`` and a TLS left unchosen (``tls`` absent or null rather than a
    mapping, ``true`` or ``false``) when any broker is not on this machine.
    """
    found: list[str] = []
    broker = config.broker
    remote = any(a.host and not _loopback(a.host) for a in broker.addresses)
    if remote and config.station.id == EXAMPLE_STATION_ID:
        found.append(f"station.id: {EXAMPLE_STATION_ID!r} is the example's station id: set this "
                     "station's own id (the CN of its certificate, its MQTT user name)")
    for i, address in enumerate(broker.addresses):
        if _documentation_host(address.host):
            key = "broker.host" if i == 0 else f"broker.failover[{i - 1}]"
            found.append(f"{key}: {address.host!r} is the example's placeholder (a name reserved "
                         "for documentation, it never resolves): set the national broker's "
                         "address")
    if remote and broker.tls is None and not broker.plain_tcp_chosen:
        found.append("broker.tls: not chosen (the example has none): give ca_file, cert_file "
                     "and key_file for the national broker's TLS listener (port 8883), or "
                     "write `tls: false` for plain TCP on a closed network")
    return found


def parse_config(data: Any, *, source: Path | None = None,
                 env: Mapping[str, str] | None = None,
                 refuse_placeholders: bool = False) -> Config:
    """Validate a parsed YAML document into a ``Config``.

    ``source`` is the file it came from: relative paths are resolved against its directory
    (else the working directory). ``env`` (default ``os.environ``) supplies ``SENTRY_DSN``.
    ``refuse_placeholders`` (``check-config``, ``run``) also refuses what the example leaves
    to edit (:func:`placeholder_problems`); local tools (``outputs-off``, ``firmware-config``,
    ``status`` …) work on the unedited example.
    Raises ``ConfigError`` listing every problem, each ``"key.path: reason"``.
    """
    env = os.environ if env is None else env
    problems = _Problems()
    base = (source.parent if source is not None else Path.cwd()).absolute()
    if not isinstance(data, Mapping):
        what = "the file is empty" if data is None else f"got {_got(data)}"
        problems.add(_TOP, f"expected a mapping of sections (station, broker, …); {what}")
        problems.raise_if_any(source)
    top = _Section(data, "", problems, _SECTIONS, base)

    def sec(name: str, known: Iterable[str]) -> _Section:
        return top.sub(name, known)

    config = Config(
        station=_station(sec("station", ("id", "region"))),
        broker=_broker(sec("broker", _BROKER_KEYS)),
        topics=_topics(sec("topics", ("root",))),
        gpio=_gpio(sec("gpio", ("pin_factory", "siren", "beacon", "ack_button",
                                "siren_feedback"))),
        alarm=_alarm(sec("alarm", _ALARM_KEYS)),
        heartbeat=_heartbeat(sec("heartbeat", ("interval_s",))),
        storage=_storage(sec("storage", ("path", "outbox_max"))),
        sentry=_sentry(sec("sentry", ("dsn", "dsn_file", "environment")), env),
        logging=_level(sec("logging", ("level",))),
        time=_time(sec("time", ("ntp_servers", "display_tz"))),
        security=_security(sec("security", ("hq_keys", "desk_keys", "require_signatures",
                                            "max_age_s"))),
        source=source)
    if refuse_placeholders:
        for problem in placeholder_problems(config):
            path, _, reason = problem.partition(": ")
            problems.add(path, reason)
    problems.raise_if_any(source)
    return config


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys (plain YAML keeps the last silently)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable) and key in seen:
                self.duplicates.append(
                    f"line {line}: duplicate key {key!r} (first at line {seen[key]})")
            elif isinstance(key, Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    """Read and parse ``path``; any failure is a ConfigError naming the file (and line)."""
    def fail(reason: str) -> ConfigError:
        return ConfigError([reason], source=str(path))

    reason = _unreadable(path)
    if reason:
        raise fail(reason)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from exc
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise fail(_yaml_reason(exc)) from exc
    except yaml.YAMLError as exc:
        raise fail(f"YAML error: {exc}") from exc
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError(loader.duplicates, source=str(path))
    return data


def _yaml_reason(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    what = " ".join(p for p in (exc.context, exc.problem) if p)
    return f"{where}YAML syntax error: {what}"


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None,
                refuse_placeholders: bool = False) -> Config:
    """Read the YAML file at ``path`` and validate it (see ``parse_config``).

    A missing or unreadable file, bad UTF-8, a YAML syntax error (with line and column) or a
    duplicate key raise ``ConfigError`` just like invalid settings do.
    """
    path = Path(path)
    return parse_config(_read_yaml(path), source=path, env=env,
                        refuse_placeholders=refuse_placeholders)


# --- boot safety (docs/BEHAVIOUR.md §4) -----------------------------------------------------------

def boot_safety_warnings(gpio: GpioConfig) -> list[str]:
    """Outputs that would be ON while the Pi boots, before ``config.txt`` ``gpio=`` lines act.

    At reset GPIO 0–8 are pulled up and 9–27 pulled down: an active-low relay on 9–27 or an
    active-high relay on 0–8 sounds or flashes during boot. One ``"key.path: reason"`` line per
    such output, saying which pins are safe for its polarity.
    """
    warnings = []
    for role in ("siren", "beacon"):
        out: OutputPinConfig = getattr(gpio, role)
        if out.pin not in BCM_PINS:
            continue
        path = f"gpio.{role}.pin"
        if not out.active_high and out.pin >= 9:
            warnings.append(
                f"{path}: active-low relay on GPIO {out.pin} is driven ON during boot "
                "(GPIO 9–27 are pulled low at reset); safe pins for an active-low relay: "
                f"{_pin_list(SAFE_PINS_ACTIVE_LOW)} (avoid 0–3: ID EEPROM and I2C)")
        elif out.active_high and out.pin <= 8:
            warnings.append(
                f"{path}: active-high relay on GPIO {out.pin} is driven ON during boot "
                "(GPIO 0–8 are pulled high at reset); safe pins for an active-high relay: "
                f"9–27, e.g. {_pin_list(_COMMON_ACTIVE_HIGH)}")
    return warnings


def _pin_list(pins: Iterable[int]) -> str:
    return ", ".join(str(p) for p in pins)
