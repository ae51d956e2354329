"""The national interface, version 1 (docs/INTERFACE.md): topics, parsing, payload building. Pure.

The only place that knows topic names. Parsers never raise on bad input: they return a
``Rejection`` that becomes a ``rejected`` event.

>>> t = Topics(root="polri/110", station="prabumulih-1", region="sumsel-prabumulih")
>>> t.complaints
'polri/110/region/sumsel-prabumulih/complaints'
>>> str(parse_complaint(b'{"v":1,"id":"110-1","region":"other"}',
...                     region="sumsel-prabumulih").reason)
'wrong_region'
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Callable, Mapping

VERSION = 1
MAX_PAYLOAD = 16 * 1024
DETAIL_MAX = 160          # characters of a rejection detail
# \Z, not $: "$" also matches before a final newline, which would reach the log lines.
ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")  # region and station ids
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # \ud800-\udfff escaped in JSON
# RFC 3339 date-time (the Time schema of docs/asyncapi.yaml): datetime.fromisoformat alone
# also reads ISO 8601 forms RFC 3339 does not allow (basic format, week dates, "+0700"), and
# refuses some it does allow (a lower-case "z", a leap second) — a complaint is never refused
# for those. Group 1 is the seconds, group 2 the offset.
RFC3339_RE = re.compile(r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]"
                        r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(?:\.[0-9]+)?"
                        r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z")


# --- the fixed sets of the wire (StrEnum: each member *is* its wire string) -------------------

class Priority(StrEnum):
    """A complaint's priority, highest first (the order is the siren's ranking)."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    NORMAL = "normal"


class CommandName(StrEnum):
    """The ``cmd`` of a command on ``{root}/station/{station}/cmd``."""

    ACK = "ack"
    SILENCE = "silence"
    TEST = "test"
    STATUS = "status"


COMMANDS = tuple(CommandName)


class RejectReason(StrEnum):
    """``reason`` of a ``rejected`` event."""

    MALFORMED = "malformed"
    SCHEMA = "schema"
    WRONG_REGION = "wrong_region"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"
    # Signed messages (docs/SIGNING.md): station.signing's refusals.
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"


class EventType(StrEnum):
    """``type`` of an event on ``{root}/station/{station}/events``."""

    ALERTING = "alerting"
    ACK = "ack"
    REJECTED = "rejected"
    ESCALATED = "escalated"
    FAULT = "fault"
    FAULT_CLEARED = "fault_cleared"
    SELFTEST = "selftest"
    CMD_RESULT = "cmd_result"
    RESYNC_REQUEST = "resync_request"


class Fault(StrEnum):
    """``fault`` of a ``fault``/``fault_cleared`` event and the names in status ``faults``."""

    STORAGE = "storage"                   # the state database refuses writes
    GPIO = "gpio"                         # a relay could not be driven
    CLOCK_UNSYNCED = "clock_unsynced"     # the system clock is not NTP-synchronised
    SIREN_FAILED = "siren_failed"         # siren relay on, no feedback in time
    BUTTON_STUCK = "button_stuck"         # acknowledge button held too long
    MQTT_THREAD = "mqtt_thread"           # paho's network thread died
    SUBSCRIPTION = "subscription"         # the broker refused a subscription
    BROKER_UNREACHABLE = "broker_unreachable"  # every broker address failed in a row


class AckMethod(StrEnum):
    """``method`` of an ``ack`` event."""

    BUTTON = "button"
    REMOTE = "remote"


class Trigger(StrEnum):
    """``trigger`` of a ``selftest`` event: who started it (also a command's origin)."""

    REMOTE = "remote"
    CLI = "cli"
    BUTTON = "button"


class SelfTestResult(StrEnum):
    """``result`` of a ``selftest`` event."""

    OK = "ok"
    SIREN_FEEDBACK_MISSING = "siren_feedback_missing"


class ButtonState(StrEnum):
    """``button`` of the status document."""

    RELEASED = "released"
    PRESSED = "pressed"
    STUCK = "stuck"


class StationState(StrEnum):
    """``state`` of a presence document (birth ``online``; last will and clean stop
    ``offline``); the status (health) document always says ``online``."""

    ONLINE = "online"
    OFFLINE = "offline"


class OfflineReason(StrEnum):
    """``reason`` of an offline document: the broker's last will or a clean stop."""

    LOST = "lost"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class Topics:
    """Every topic the station uses, built from ``{root}`` and the station's ids."""

    root: str
    station: str
    region: str

    @property
    def complaints(self) -> str:
        return region_complaints(self.root, self.region)

    @property
    def events(self) -> str:
        return f"{self.root}/station/{self.station}/events"

    @property
    def status(self) -> str:
        return f"{self.root}/station/{self.station}/status"

    @property
    def presence(self) -> str:
        return f"{self.root}/station/{self.station}/presence"

    @property
    def cmd(self) -> str:
        return f"{self.root}/station/{self.station}/cmd"


def region_complaints(root: str, region: str) -> str:
    return f"{root}/region/{region}/complaints"


def station_topic(root: str, station: str, leaf: str) -> str:
    """``{root}/station/{station}/{leaf}``; ``station`` may be ``+`` for the desk's view."""
    return f"{root}/station/{station}/{leaf}"


# --- parsed messages --------------------------------------------------------------------------

@dataclass(frozen=True)
class Complaint:
    id: str
    region: str
    priority: Priority = Priority.NORMAL
    category: str | None = None
    reported_at: str | None = None
    # Personal data: kept out of repr so it never reaches a log line or Sentry by accident.
    summary: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Command:
    cmd_id: str
    cmd: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str
    payload_sha256: str
    complaint_id: str | None = None
    cmd_id: str | None = None
    cmd: str | None = None         # a refused command's name when readable (its cmd_result)

    def fields(self) -> dict[str, Any]:
        """The extra fields of the ``rejected`` event."""
        out: dict[str, Any] = {"reason": str(self.reason), "detail": self.detail,
                               "payload_sha256": self.payload_sha256}
        if self.complaint_id is not None:
            out["complaint_id"] = self.complaint_id
        if self.cmd_id is not None:
            out["cmd_id"] = self.cmd_id
        return out


class _Refused(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        detail = detail if len(detail) <= DETAIL_MAX else detail[:DETAIL_MAX - 1] + "…"
        super().__init__(detail)
        self.reason = reason
        self.detail = detail   # bounded: it may echo input (a 4,000-digit "v") into an event


def _decode(payload: bytes) -> Any:
    """Size, UTF-8 and JSON: the checks before anything can be read from a message."""
    if len(payload) > MAX_PAYLOAD:
        raise _Refused(RejectReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD}")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _Refused(RejectReason.MALFORMED, f"not UTF-8: {e.reason}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, int-digit limit, nesting
        raise _Refused(RejectReason.MALFORMED, f"not JSON: {str(e)[:120]}") from None
    if _SURROGATE_ESCAPE.search(payload) and _has_lone_surrogate(doc):
        # "\ud800" is valid JSON but no UTF-8 text: echoed into an event or the store it
        # could not be encoded, and the whole durable write would fail.
        raise _Refused(RejectReason.MALFORMED, "not UTF-8: lone surrogate escape in a string")
    return doc


def _has_lone_surrogate(doc: Any) -> bool:
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _check_object(doc: Any) -> dict[str, Any]:
    """A JSON object of version 1."""
    if not isinstance(doc, dict):
        raise _Refused(RejectReason.SCHEMA, f"not a JSON object but {type(doc).__name__}")
    if "v" not in doc:
        raise _Refused(RejectReason.SCHEMA, "v: missing")
    v = doc["v"]
    if type(v) is not int:
        raise _Refused(RejectReason.SCHEMA, "v: not an integer")
    if v != VERSION:
        raise _Refused(RejectReason.UNSUPPORTED_VERSION, f"v: {v} (this station speaks {VERSION})")
    return doc


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _readable_id(doc: Any, key: str) -> str | None:
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, str) and ID_RE.match(value) else None


def _opt_str(doc: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Refused(RejectReason.SCHEMA, f"{key}: not a string")
    if len(value) > limit:
        raise _Refused(RejectReason.SCHEMA, f"{key}: longer than {limit} characters")
    return value


def _rfc3339(value: str | None) -> str | None:
    if value is None:
        return None
    m = RFC3339_RE.match(value)
    if m is None:
        raise _Refused(RejectReason.SCHEMA, "reported_at: not RFC 3339 (needs date, time, offset)")
    # the calendar (no 30 February), in the form fromisoformat reads
    plain = value[:m.start(1)] + ("59" if m[1] == "60" else m[1]) + value[m.end(1):m.start(2)]
    try:
        datetime.fromisoformat(plain + ("Z" if m[2] in "Zz" else m[2]))
    except ValueError:
        raise _Refused(RejectReason.SCHEMA, "reported_at: not RFC 3339") from None
    return value


def parse_complaint(payload: bytes, *, region: str) -> Complaint | Rejection:
    """A complaint for ``region`` (docs/INTERFACE.md §3), or why it is refused. Never raises."""
    doc: Any = None
    try:
        doc = _decode(payload)
        return _complaint(_check_object(doc), region)
    except _Refused as r:
        return Rejection(r.reason, r.detail, _sha256(payload), _readable_id(doc, "id"))


def _complaint(doc: Mapping[str, Any], region: str) -> Complaint:
    cid = doc.get("id")
    if not isinstance(cid, str) or not ID_RE.match(cid):
        raise _Refused(RejectReason.SCHEMA, "id: missing or not 1–64 of [A-Za-z0-9._:-]")
    target = doc.get("region")
    if not isinstance(target, str) or not NAME_RE.match(target):
        raise _Refused(RejectReason.SCHEMA, "region: missing or not a region id")
    if target != region:
        raise _Refused(RejectReason.WRONG_REGION, f"region {target} is not {region}")
    raw_priority = doc.get("priority", Priority.NORMAL)
    if not isinstance(raw_priority, str) or raw_priority not in _PRIORITY_VALUES:
        raise _Refused(RejectReason.SCHEMA, "priority: not emergency, urgent or normal")
    priority = Priority(raw_priority)
    reported_at = _opt_str(doc, "reported_at", 64)
    return Complaint(
        id=cid, region=target, priority=priority, category=_opt_str(doc, "category", 64),
        reported_at=_rfc3339(reported_at), summary=_opt_str(doc, "summary", 2000))


def parse_command(payload: bytes, *, retained: bool = False) -> Command | Rejection:
    """A command (docs/INTERFACE.md §7), or the reason it is refused. Never raises.

    A retained command is refused (it would replay at every restart); an unknown ``cmd`` is
    returned as a ``Command`` so the caller answers it ``ok: false``.
    """
    doc: Any = None
    cmd: str | None = None
    try:
        doc = _decode(payload)
        _check_object(doc)
        cmd = _readable_cmd(doc.get("cmd"))
        if retained:
            raise _Refused(RejectReason.SCHEMA, "retained command ignored")
        return _command(doc)
    except _Refused as r:
        return Rejection(r.reason, r.detail, _sha256(payload), cmd_id=_readable_id(doc, "cmd_id"),
                         cmd=cmd)


def _readable_cmd(cmd: Any) -> str | None:
    """``cmd`` when it is a short printable string (a newline would forge log lines)."""
    return cmd if isinstance(cmd, str) and len(cmd) <= 32 and cmd.isprintable() else None


def _command(doc: Mapping[str, Any]) -> Command:
    cmd_id = doc.get("cmd_id")
    if not isinstance(cmd_id, str) or not ID_RE.match(cmd_id):
        raise _Refused(RejectReason.SCHEMA, "cmd_id: missing or not 1–64 of [A-Za-z0-9._:-]")
    cmd = _readable_cmd(doc.get("cmd"))
    if cmd is None:
        # Printable: an unknown cmd is echoed into the log, where a newline would forge lines.
        raise _Refused(RejectReason.SCHEMA, "cmd: missing or not a short printable string")
    args = doc.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise _Refused(RejectReason.SCHEMA, "args: not an object")
    check = _ARG_CHECKS.get(cmd)
    return Command(cmd_id, cmd, check(args) if check else dict(args))


def _ack_args(args: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cid = args.get("complaint_id")
    if cid is not None:
        if not isinstance(cid, str) or not ID_RE.match(cid):
            raise _Refused(RejectReason.SCHEMA, "args.complaint_id: not a complaint id")
        out["complaint_id"] = cid
    by = _opt_str(args, "by", 64)
    if by is not None:
        if not by.isprintable():                  # it is logged with the ack
            raise _Refused(RejectReason.SCHEMA, "args.by: not printable text")
        out["by"] = by
    return out


def _test_args(args: Mapping[str, Any]) -> dict[str, Any]:
    seconds = args.get("seconds", 1)
    if type(seconds) not in (int, float) or not 0 < seconds <= 10:
        raise _Refused(RejectReason.SCHEMA, "args.seconds: not a number in (0, 10]")
    return {"seconds": float(seconds)}


_PRIORITY_VALUES = frozenset(Priority)

_ARG_CHECKS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    CommandName.ACK: _ack_args, CommandName.TEST: _test_args,
    CommandName.SILENCE: lambda a: {}, CommandName.STATUS: lambda a: {},
}


# --- building payloads ------------------------------------------------------------------------

def rfc3339(wall: float, *, timespec: str = "milliseconds") -> str:
    """UTC wall time (epoch seconds) as RFC 3339 with ``Z``: milliseconds, the interface's
    form, unless ``timespec`` says otherwise (``"seconds"`` for a person's eyes)."""
    dt = datetime.fromtimestamp(wall, tz=timezone.utc)
    return dt.isoformat(timespec=timespec).replace("+00:00", "Z")


class _RandomIds:
    """Version 4 UUIDs as ``uuid.uuid4()`` makes them (os.urandom), the randomness read 4 KiB
    at a time: ``uuid4()`` makes one system call per id, and each releases the GIL, so on a
    burst every event waited for the GIL to come back (bench/: a fifth of the loop's time).
    The 256 ids of a read are formatted at once (a ``uuid.UUID`` object per id was a tenth of
    building an event)."""

    _CHUNK = 16 * 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)   # a child never repeats the parent

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[str] = []

    def __call__(self) -> str:
        with self._lock:
            if not self._ids:
                self._ids = self._draw()
            return self._ids.pop()

    @classmethod
    def _draw(cls) -> list[str]:
        pool = bytearray(os.urandom(cls._CHUNK))
        pool[6::16] = bytes(b & 0x0F | 0x40 for b in pool[6::16])    # version 4
        pool[8::16] = bytes(b & 0x3F | 0x80 for b in pool[8::16])    # variant RFC 4122
        h = pool.hex()
        return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-"
                f"{h[i + 20:i + 32]}" for i in range(0, 2 * cls._CHUNK, 32)]


new_event_id = _RandomIds()


def event(type_: str, fields: Mapping[str, Any], *, station: str, region: str, wall: float,
          clock_synced: bool, event_id: str | None = None) -> dict[str, Any]:
    """An event without ``seq`` (the store assigns it at the durable write)."""
    return {"v": VERSION, "type": str(type_), "event_id": event_id or new_event_id(),
            "station": station, "region": region, "at": rfc3339(wall),
            "clock_synced": clock_synced, **fields}


def presence(*, station: str, region: str, state: StationState, boot_id: str, session: int,
             wall: float | None = None, reason: OfflineReason | None = None) -> dict[str, Any]:
    """A presence document: the birth (online, with ``at``), the last will (offline, ``lost``,
    without ``at``: the desk takes the time it receives it) or a clean stop (offline,
    ``shutdown``, with ``at``)."""
    doc: dict[str, Any] = {"v": VERSION, "station": station, "region": region,
                           "state": str(state)}
    if reason is not None:
        doc["reason"] = str(reason)
    doc["boot_id"] = boot_id
    doc["session"] = session
    if wall is not None:
        doc["at"] = rfc3339(wall)
    return doc


def encode(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def complaint_payload(*, complaint_id: str, region: str, priority: str = Priority.NORMAL,
                      category: str | None = None, summary: str | None = None,
                      reported_at: str | None = None) -> bytes:
    """A complaint as HQ publishes it (for ``send-complaint``, the demo and tests)."""
    doc: dict[str, Any] = {"v": VERSION, "id": complaint_id, "region": region,
                           "priority": priority}
    for key, value in (("category", category), ("summary", summary),
                       ("reported_at", reported_at)):
        if value is not None:
            doc[key] = value
    return encode(doc)


# --- reading what stations publish (the desk's side) -----------------------------------------
# Tolerant by design: a desk must keep going on a payload it cannot read, so these return None
# instead of raising, and a missing or ill-typed field reads as "not known" (None / 0 / ()).

def parse_time(text: Any) -> float | None:
    """An RFC 3339 time (``Z`` or an offset) as a wall time, or None."""
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def _doc(payload: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        return None
    return doc


def _num(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _int_or(value: Any, default: int) -> int:
    return int(value) if type(value) is int else default


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class PresenceDoc:
    """A station's presence (birth, clean stop or last will), as read by a desk."""

    station: str
    region: str | None
    state: StationState
    reason: str | None             # OfflineReason when offline (``lost``/``shutdown``)
    boot_id: str | None
    session: int | None
    at: float | None               # wall; None for a last will

    @classmethod
    def read(cls, payload: bytes) -> PresenceDoc | None:
        """The presence document in ``payload``, or None when it is not one."""
        doc = _doc(payload)
        if doc is None or not isinstance(doc.get("station"), str):
            return None
        try:
            state = StationState(str(doc.get("state")))
        except ValueError:
            return None
        session = doc.get("session")
        return cls(station=doc["station"], region=_str_or_none(doc.get("region")), state=state,
                   reason=_str_or_none(doc.get("reason")),
                   boot_id=_str_or_none(doc.get("boot_id")),
                   session=session if type(session) is int else None,
                   at=parse_time(doc.get("at")))


COUNTERS = ("complaints", "acks", "rejected", "reconnects")   # in every status, since start


@dataclass(frozen=True)
class HealthDoc:
    """A station's status (health) document, as read by a desk."""

    station: str
    region: str | None
    at: float | None               # wall time the station issued it
    version: str | None
    interval_s: float
    alarms_active: int
    oldest_unacked_s: float | None
    siren: bool | None
    beacon: bool | None
    button: str | None
    outbox_pending: int
    faults: tuple[str, ...]
    host: Mapping[str, Any]
    clock_synced: bool | None
    boot_id: str | None
    session: int | None
    started_at: float | None
    counters: Mapping[str, int]

    @classmethod
    def read(cls, payload: bytes) -> HealthDoc | None:
        """The status document in ``payload``, or None when it is not one."""
        doc = _doc(payload)
        if doc is None or not isinstance(doc.get("station"), str) or "alarms" not in doc:
            return None
        alarms, outputs, host = _obj(doc.get("alarms")), _obj(doc.get("outputs")), \
            _obj(doc.get("host"))
        faults = doc.get("faults")
        session = doc.get("session")
        synced = host.get("clock_synced")
        return cls(
            station=doc["station"], region=_str_or_none(doc.get("region")),
            at=parse_time(doc.get("at")), version=_str_or_none(doc.get("version")),
            interval_s=_num(doc.get("interval_s")) or 30.0,
            alarms_active=_int_or(alarms.get("active"), 0),
            oldest_unacked_s=_num(alarms.get("oldest_unacked_s")),
            siren=outputs.get("siren") if isinstance(outputs.get("siren"), bool) else None,
            beacon=outputs.get("beacon") if isinstance(outputs.get("beacon"), bool) else None,
            button=_str_or_none(doc.get("button")),
            outbox_pending=_int_or(doc.get("outbox_pending"), 0),
            faults=tuple(str(f) for f in faults) if isinstance(faults, list) else (),
            host=host, clock_synced=synced if isinstance(synced, bool) else None,
            boot_id=_str_or_none(doc.get("boot_id")),
            session=session if type(session) is int else None,
            started_at=parse_time(doc.get("started_at")),
            counters={k: _int_or(doc.get(k), 0) for k in COUNTERS})


@dataclass(frozen=True)
class EventDoc:
    """A station's event, as read by a desk: the envelope, and the type's own fields."""

    type: str
    station: str
    region: str | None
    event_id: str | None
    seq: int | None
    at: float | None
    clock_synced: bool | None
    fields: Mapping[str, Any]      # everything but the envelope

    ENVELOPE = ("v", "type", "event_id", "seq", "station", "region", "at", "clock_synced")

    @classmethod
    def read(cls, payload: bytes) -> EventDoc | None:
        """The event in ``payload``, or None when it is not one."""
        doc = _doc(payload)
        if doc is None or not isinstance(doc.get("type"), str) \
                or not isinstance(doc.get("station"), str):
            return None
        seq, synced = doc.get("seq"), doc.get("clock_synced")
        return cls(type=doc["type"], station=doc["station"],
                   region=_str_or_none(doc.get("region")),
                   event_id=_str_or_none(doc.get("event_id")),
                   seq=seq if type(seq) is int else None, at=parse_time(doc.get("at")),
                   clock_synced=synced if isinstance(synced, bool) else None,
                   fields={k: v for k, v in doc.items() if k not in cls.ENVELOPE})
