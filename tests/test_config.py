"""Configuration loading and validation and boot-safety warnings (docs/BEHAVIOUR.md §5, §4)."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from station.config import (
    DEFAULT_PATTERNS,
    EXAMPLE_STATION_ID,
    SAFE_PINS_ACTIVE_HIGH,
    SAFE_PINS_ACTIVE_LOW,
    AlarmConfig,
    BrokerAddress,
    BrokerConfig,
    Config,
    GpioConfig,
    OutputPinConfig,
    Pattern,
    StationIdentity,
    TlsConfig,
    boot_safety_warnings,
    load_config,
    parse_config,
    placeholder_problems,
)
from station.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "station.example.yaml"
MINIMAL: dict[str, Any] = {
    "station": {"id": "prabumulih-1", "region": "sumsel-prabumulih"},
    "broker": {"host": "mqtt.polri.example"},
}
DELETE = object()
DSN = "https://abc123@o1.ingest.sentry.example/42"


def merged(patch: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (default MINIMAL) with ``patch`` merged in; DELETE removes a key."""
    out = copy.deepcopy(MINIMAL if base is None else base)
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(value, out[key])
        else:
            out[key] = value
    return out


def write(tmp_path: Path, doc: Any, name: str = "station.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    return path


def load(tmp_path: Path, patch: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, merged(patch)), env=env or {})


def problems(tmp_path: Path, patch: dict[str, Any] | str) -> list[str]:
    """The problems a file with ``patch`` applied (or this raw text) is refused with."""
    path = write(tmp_path, patch if isinstance(patch, str) else merged(patch))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.source == str(path)
    assert info.value.problems, "a ConfigError must carry its problems"
    return info.value.problems


def has_path(found: list[str], key_path: str) -> bool:
    return any(p.startswith(key_path + ":") for p in found)


# --- the example and the defaults ----------------------------------------------------------------

def test_example_loads_as_is() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.station == StationIdentity("prabumulih-1", "sumsel-prabumulih")
    assert config.broker.host == "mqtt.polri.example"
    assert config.gpio.pin_factory == "auto"
    assert config.source == EXAMPLE
    assert config.sentry.dsn is None
    assert boot_safety_warnings(config.gpio) == []


def test_example_shows_the_defaults(tmp_path: Path) -> None:
    assert load_config(EXAMPLE, env={}) == load(tmp_path, {})


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in ("id", "region", "host", "port", "failover", "protocol", "keepalive",
                "session_expiry_s", "reconnect_min_s", "reconnect_max_s", "tls", "ca_file",
                "cert_file", "key_file", "username", "password_file", "root", "pin_factory",
                "siren", "beacon", "ack_button", "bounce_ms", "siren_feedback", "pull_up",
                "active_high", "emergency", "urgent", "normal", "siren_max_s", "reminder_s",
                "reminder_every_s", "selftest_hold_s", "stuck_hold_s", "feedback_timeout_s",
                "seen_ids_days", "seen_ids_max", "interval_s", "path", "outbox_max", "dsn",
                "dsn_file", "environment", "level"):
        assert f"{key}:" in text, key


def test_example_uses_sentry_dsn_from_environment() -> None:
    assert load_config(EXAMPLE, env={"SENTRY_DSN": DSN}).sentry.dsn == DSN


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, {})
    expected = Config(station=StationIdentity("prabumulih-1", "sumsel-prabumulih"),
                      broker=BrokerConfig(host="mqtt.polri.example"))
    assert config == expected
    assert config.broker.port == 1883 and config.broker.protocol == "5"
    assert config.broker.addresses == (BrokerAddress("mqtt.polri.example", 1883),)
    assert dict(config.alarm.patterns) == dict(DEFAULT_PATTERNS)
    assert config.storage.path == Path("/var/lib/polres-station/state.db")
    assert config.logging.level == "INFO"


def test_null_sections_mean_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, {"gpio": None, "alarm": None, "sentry": None, "topics": None})
    assert config.gpio == GpioConfig() and config.alarm == AlarmConfig()


def test_parse_config_without_a_file() -> None:
    config = parse_config(merged({"storage": {"path": "state.db"}}), env={})
    assert config.source is None
    assert config.storage.path == Path.cwd().absolute() / "state.db"


def test_parse_config_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_DSN", DSN)
    assert parse_config(merged({})).sentry.dsn == DSN


# --- every rule refuses with its key path --------------------------------------------------------

BAD: list[tuple[str, dict[str, Any]]] = [
    ("station.id", {"station": {"id": DELETE}}),
    ("station.id", {"station": {"id": "Polres.Prabumulih"}}),
    ("station.id", {"station": {"id": "-lead"}}),
    ("station.id", {"station": {"id": "x" * 65}}),
    ("station.id", {"station": {"id": 110}}),
    ("station.id", {"station": {"id": "prabumulih-1\n"}}),      # "$" would let it through
    ("station.region", {"station": {"region": "sumsel-prabumulih\n"}}),
    ("broker.host", {"broker": {"host": "mqtt.polri.go.id\n"}}),
    ("station.region", {"station": {"region": DELETE}}),
    ("station.region", {"station": {"region": "sumsel/prabumulih"}}),
    ("station.region", {"station": {"region": "a+b"}}),
    ("station", {"station": ["polres"]}),
    ("station.name", {"station": {"name": "x"}}),
    ("broker.host", {"broker": {"host": DELETE}}),
    ("broker.host", {"broker": {"host": ""}}),
    ("broker.host", {"broker": {"host": "mqtts://mqtt.polri.example"}}),
    ("broker.host", {"broker": {"host": "mqtt.polri.example:8883"}}),
    ("broker.hots", {"broker": {"hots": "x"}}),
    ("broker.port", {"broker": {"port": 0}}),
    ("broker.port", {"broker": {"port": 65536}}),
    ("broker.port", {"broker": {"port": "1883"}}),
    ("broker.port", {"broker": {"port": True}}),
    ("broker.keepalive", {"broker": {"keepalive": 4}}),
    ("broker.keepalive", {"broker": {"keepalive": 3601}}),
    ("broker.keepalive", {"broker": {"keepalive": 15.5}}),
    ("broker.session_expiry_s", {"broker": {"session_expiry_s": 0}}),
    ("broker.reconnect_min_s", {"broker": {"reconnect_min_s": 0}}),
    ("broker.reconnect_max_s", {"broker": {"reconnect_min_s": 5, "reconnect_max_s": 1}}),
    ("broker.protocol", {"broker": {"protocol": 4}}),
    ("broker.protocol", {"broker": {"protocol": "3.1"}}),
    ("broker.protocol", {"broker": {"protocol": True}}),
    ("broker.failover", {"broker": {"failover": "mqtt2:1883"}}),
    ("broker.failover[0]", {"broker": {"failover": ["mqtt2:http"]}}),
    ("broker.failover[0]", {"broker": {"failover": ["mqtt2:0"]}}),
    ("broker.failover[0]", {"broker": {"failover": ["::1"]}}),
    ("broker.failover[0]", {"broker": {"failover": ["[::1"]}}),
    ("broker.failover[0]", {"broker": {"failover": ["[nope]:1883"]}}),
    ("broker.failover[0]", {"broker": {"failover": [":1883"]}}),
    ("broker.failover[0]", {"broker": {"failover": [1883]}}),
    ("broker.failover[1]", {"broker": {"failover": ["b:1", "b:1"]}}),
    ("broker.failover[0]", {"broker": {"failover": ["mqtt.polri.example:1883"]}}),
    ("broker.tls", {"broker": {"tls": "yes"}}),
    ("broker.tls.ca_file", {"broker": {"tls": {"ca_file": "missing-ca.crt"}}}),
    ("broker.tls.ca_file", {"broker": {"tls": {"ca_file": 5}}}),
    ("broker.tls.verify", {"broker": {"tls": {"verify": False}}}),
    ("broker.password_file", {"broker": {"username": "u", "password_file": "missing.txt"}}),
    ("broker.username", {"broker": {"username": 7}}),
    ("broker.password", {"broker": {"password": "s3cret"}}),
    ("topics.root", {"topics": {"root": ""}}),
    ("topics.root", {"topics": {"root": "polri/+/110"}}),
    ("topics.root", {"topics": {"root": "polri/#"}}),
    ("topics.root", {"topics": {"root": "/polri/110"}}),
    ("topics.root", {"topics": {"root": "polri/110/"}}),
    ("topics.root", {"topics": {"root": "polri//110"}}),
    ("topics.root", {"topics": {"root": "$SYS/x"}}),
    ("gpio.pin_factory", {"gpio": {"pin_factory": "pigpio"}}),
    ("gpio.siren.pin", {"gpio": {"siren": {"pin": 28}}}),
    ("gpio.siren.pin", {"gpio": {"siren": {"pin": -1}}}),
    ("gpio.siren.pin", {"gpio": {"siren": {"pin": "17"}}}),
    ("gpio.siren.active_high", {"gpio": {"siren": {"active_high": "yes"}}}),
    ("gpio.siren.active_high", {"gpio": {"siren": {"active_high": 1}}}),
    ("gpio.siren.polarity", {"gpio": {"siren": {"polarity": "low"}}}),
    ("gpio.beacon.pin", {"gpio": {"beacon": {"pin": 99}}}),
    ("gpio.beacon", {"gpio": {"beacon": 27}}),
    ("gpio.ack_button.pin", {"gpio": {"ack_button": {"pin": 30}}}),
    ("gpio.ack_button.pull_up", {"gpio": {"ack_button": {"pull_up": "true"}}}),
    ("gpio.ack_button.bounce_ms", {"gpio": {"ack_button": {"bounce_ms": -1}}}),
    ("gpio.ack_button.bounce_ms", {"gpio": {"ack_button": {"bounce_ms": 1001}}}),
    ("gpio.ack_button.bounce_ms", {"gpio": {"ack_button": {"bounce_ms": 50.0}}}),
    ("gpio.siren_feedback.pin", {"gpio": {"siren_feedback": {"pull_up": True}}}),
    ("gpio.siren_feedback.pin", {"gpio": {"siren_feedback": {"pin": 40}}}),
    ("gpio.siren_feedback.active_high", {"gpio": {"siren_feedback": {"pin": 23,
                                                                     "active_high": True}}}),
    ("alarm.patterns", {"alarm": {"patterns": [1, 0]}}),
    ("alarm.patterns.critical", {"alarm": {"patterns": {"critical": {"on_s": 1}}}}),
    ("alarm.patterns.urgent.on_s", {"alarm": {"patterns": {"urgent": {"on_s": 0}}}}),
    ("alarm.patterns.urgent.off_s", {"alarm": {"patterns": {"urgent": {"off_s": -0.5}}}}),
    ("alarm.patterns.normal.on_s", {"alarm": {"patterns": {"normal": {"on_s": "1s"}}}}),
    ("alarm.patterns.normal.of_s", {"alarm": {"patterns": {"normal": {"of_s": 1}}}}),
    ("alarm.siren_max_s", {"alarm": {"siren_max_s": 0}}),
    ("alarm.siren_max_s", {"alarm": {"siren_max_s": float("inf")}}),
    ("alarm.reminder_s", {"alarm": {"reminder_s": -1}}),
    ("alarm.reminder_every_s", {"alarm": {"reminder_s": 10, "reminder_every_s": 10}}),
    ("alarm.selftest_hold_s", {"alarm": {"selftest_hold_s": 0}}),
    ("alarm.stuck_hold_s", {"alarm": {"selftest_hold_s": 5, "stuck_hold_s": 4}}),
    ("alarm.feedback_timeout_s", {"alarm": {"feedback_timeout_s": 0}}),
    ("alarm.seen_ids_days", {"alarm": {"seen_ids_days": 29}}),
    ("alarm.seen_ids_days", {"alarm": {"seen_ids_days": 30.0}}),
    ("alarm.seen_ids_max", {"alarm": {"seen_ids_max": 999}}),
    ("heartbeat.interval_s", {"heartbeat": {"interval_s": 0.5}}),
    ("heartbeat.interval_s", {"heartbeat": {"interval_s": 3601}}),
    ("heartbeat.interval_s", {"heartbeat": {"interval_s": True}}),
    ("storage.path", {"storage": {"path": ""}}),
    ("storage.path", {"storage": {"path": 5}}),
    ("storage.outbox_max", {"storage": {"outbox_max": 99}}),
    ("sentry.dsn", {"sentry": {"dsn": "not a dsn"}}),
    ("sentry.dsn", {"sentry": {"dsn": 5}}),
    ("sentry.dsn_file", {"sentry": {"dsn_file": "missing-dsn.txt"}}),
    ("sentry.environment", {"sentry": {"environment": ""}}),
    ("sentry.environment", {"sentry": {"environment": "prod/pi"}}),
    ("logging.level", {"logging": {"level": "verbose"}}),
    ("logging.level", {"logging": {"level": 10}}),
    ("loging", {"loging": {"level": "INFO"}}),
]


@pytest.mark.parametrize(("key_path", "patch"), BAD, ids=[f"{k}-{i}" for i, (k, _) in
                                                          enumerate(BAD)])
def test_bad_value_is_reported_with_its_key_path(tmp_path: Path, key_path: str,
                                                  patch: dict[str, Any]) -> None:
    found = problems(tmp_path, patch)
    assert has_path(found, key_path), found


def test_pin_message_is_exact(tmp_path: Path) -> None:
    found = problems(tmp_path, {"gpio": {"siren": {"pin": 41}}})
    assert found == ["gpio.siren.pin: 41 is not a BCM GPIO (0–27)"]


def test_unknown_keys_get_a_hint(tmp_path: Path) -> None:
    found = problems(tmp_path, {"broker": {"hots": "x"}, "alarms": {}, "zzz": 1})
    assert "broker.hots: unknown key (did you mean 'host'?)" in found
    assert "alarms: unknown key (did you mean 'alarm'?)" in found
    assert "zzz: unknown key" in found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "station": {"id": "Bad.Id", "region": DELETE},
        "broker": {"port": 0, "keepalive": 1},
        "gpio": {"siren": {"pin": 41}, "ack_button": {"bounce_ms": 5000}},
        "alarm": {"seen_ids_days": 7},
        "logging": {"level": "LOUD"},
    })
    for key_path in ("station.id", "station.region", "broker.port", "broker.keepalive",
                     "gpio.siren.pin", "gpio.ack_button.bounce_ms", "alarm.seen_ids_days",
                     "logging.level"):
        assert has_path(found, key_path), (key_path, found)
    assert len(found) == 8


def test_error_message_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, merged({"broker": {"port": 0}}))
    with pytest.raises(ConfigError, match=r"station\.yaml: broker\.port: must be 1–65535"):
        load_config(path)
    with pytest.raises(ValueError):  # ConfigError is a ValueError too
        load_config(path)


def test_password_literal_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, {"broker": {"password": "s3cret"}})
    assert found == ["broker.password: secrets come from files: use broker.password_file"]
    assert not any("s3cret" in p for p in found)


def test_types_are_strict(tmp_path: Path) -> None:
    found = problems(tmp_path, {"gpio": {"siren": {"active_high": "yes"}},
                                "broker": {"keepalive": True}})
    assert "gpio.siren.active_high: expected true or false, got string 'yes'" in found
    assert "broker.keepalive: expected an integer, got boolean True" in found


def test_floats_accept_ints(tmp_path: Path) -> None:
    config = load(tmp_path, {"alarm": {"siren_max_s": 60, "patterns": {"urgent": {"on_s": 2}}},
                             "heartbeat": {"interval_s": 10}})
    assert config.alarm.siren_max_s == 60.0 and isinstance(config.alarm.siren_max_s, float)
    assert config.alarm.patterns["urgent"] == Pattern(2.0, 0.5)  # off_s keeps its default
    assert config.heartbeat.interval_s == 10.0


def test_yaml_booleans_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "station: {id: a, region: b}\nbroker: {host: h}\n"
                           "gpio:\n  siren: {pin: 5, active_high: no}\n")
    assert load_config(path, env={}).gpio.siren == OutputPinConfig(5, active_high=False)


# --- broker ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("5", "5"), ("'5'", "5"), ("5.0", "5"), ("'5.0'", "5"),
    ("3.1.1", "3.1.1"), ("'3.1.1'", "3.1.1"), ("'311'", "3.1.1"), ("311", "3.1.1"),
])
def test_protocol_is_normalised(tmp_path: Path, raw: str, expected: str) -> None:
    path = write(tmp_path, f"station: {{id: a, region: b}}\nbroker:\n  host: h\n"
                           f"  protocol: {raw}\n")
    assert load_config(path, env={}).broker.protocol == expected


def test_failover_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, "station: {id: a, region: b}\n"
                           "broker:\n  host: mqtt1.example\n  port: 1884\n"
                           "  failover:\n    - mqtt2.example:8883\n    - \"[::1]:1885\"\n"
                           "    - mqtt3.example\n    - \"[2001:db8::10]\"\n    - 10.0.0.7:1883\n")
    broker = load_config(path, env={}).broker
    assert broker.failover == (
        BrokerAddress("mqtt2.example", 8883), BrokerAddress("::1", 1885),
        BrokerAddress("mqtt3.example", 1884), BrokerAddress("2001:db8::10", 1884),
        BrokerAddress("10.0.0.7", 1883))
    assert broker.addresses[0] == BrokerAddress("mqtt1.example", 1884)
    assert len(broker.addresses) == 6


def test_null_failover_is_empty(tmp_path: Path) -> None:
    assert load(tmp_path, {"broker": {"failover": None}}).broker.failover == ()


def test_ipv6_broker_host(tmp_path: Path) -> None:
    assert load(tmp_path, {"broker": {"host": "2001:db8::1"}}).broker.host == "2001:db8::1"


def test_port_defaults_to_8883_with_tls(tmp_path: Path) -> None:
    assert load(tmp_path, {"broker": {"tls": True}}).broker.port == 8883
    assert load(tmp_path, {"broker": {"tls": True}}).broker.tls == TlsConfig()
    assert load(tmp_path, {"broker": {"tls": {}}}).broker.port == 8883
    assert load(tmp_path, {"broker": {"tls": True, "port": 8884}}).broker.port == 8884
    assert load(tmp_path, {"broker": {"tls": None}}).broker.port == 1883
    assert load(tmp_path, {"broker": {"tls": False}}).broker.tls is None


def test_tls_files_resolve_against_config_dir(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    for name in ("ca.crt", "station.crt", "station.key"):
        (tmp_path / "certs" / name).write_text("x")
    absolute = tmp_path / "certs" / "ca.crt"
    tls = load(tmp_path, {"broker": {"tls": {"ca_file": str(absolute),
                                             "cert_file": "certs/station.crt",
                                             "key_file": "certs/station.key"}}}).broker.tls
    assert tls == TlsConfig(absolute, tmp_path / "certs/station.crt",
                            tmp_path / "certs/station.key")


@pytest.mark.parametrize(("given", "missing"), [("cert_file", "key_file"),
                                                 ("key_file", "cert_file")])
def test_tls_cert_and_key_go_together(tmp_path: Path, given: str, missing: str) -> None:
    (tmp_path / "f.pem").write_text("x")
    found = problems(tmp_path, {"broker": {"tls": {given: "f.pem"}}})
    assert found == [f"broker.tls.{missing}: required with broker.tls.{given} "
                     "(they go together)"]


def test_tls_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    found = problems(tmp_path, {"broker": {"tls": {"ca_file": "ca"}}})
    assert has_path(found, "broker.tls.ca_file") and "directory" in found[0]


def test_password_file(tmp_path: Path) -> None:
    (tmp_path / "mqtt.pw").write_text("hunter2\n")
    broker = load(tmp_path, {"broker": {"username": "prabumulih-1",
                                        "password_file": "mqtt.pw"}}).broker
    assert broker.password_file == tmp_path / "mqtt.pw"
    assert broker.password() == "hunter2"


def test_password_file_needs_username_and_content(tmp_path: Path) -> None:
    (tmp_path / "empty.pw").write_text("\n")
    found = problems(tmp_path, {"broker": {"password_file": "empty.pw"}})
    assert has_path(found, "broker.username") and has_path(found, "broker.password_file")
    assert not has_path(problems(tmp_path, {"broker": {"password_file": "missing.pw"}}),
                        "broker.username")


# --- gpio ----------------------------------------------------------------------------------------

def test_duplicate_pins_name_both_key_paths(tmp_path: Path) -> None:
    found = problems(tmp_path, {"gpio": {"beacon": {"pin": 17}}})
    assert found == ["gpio.beacon.pin: GPIO 17 is already used by gpio.siren.pin"]


@pytest.mark.parametrize("gpio, expected", [
    # an invalid pin must not stand in as its default (17) in the duplicate check
    ({"siren": {"pin": 41}, "beacon": {"pin": 17}},
     ["gpio.siren.pin: 41 is not a BCM GPIO (0–27)"]),
    ({"siren": {"pin": "17"}, "beacon": {"pin": 17}},
     ["gpio.siren.pin: expected an integer, got string '17'"]),
    ({"siren": 17, "beacon": {"pin": 17}},
     ["gpio.siren: expected a mapping, got integer 17"]),
    ({"beacon": {"pin": 99}, "ack_button": {"pin": 27}},
     ["gpio.beacon.pin: 99 is not a BCM GPIO (0–27)"]),
    # a valid pin that clashes with a default still does
    ({"siren": None, "beacon": {"pin": 17}},
     ["gpio.beacon.pin: GPIO 17 is already used by gpio.siren.pin"]),
])
def test_invalid_pin_is_not_a_duplicate_of_its_default(tmp_path: Path, gpio: dict[str, Any],
                                                       expected: list[str]) -> None:
    assert problems(tmp_path, {"gpio": gpio}) == expected


def test_feedback_pin_clash(tmp_path: Path) -> None:
    found = problems(tmp_path, {"gpio": {"siren_feedback": {"pin": 22}}})
    assert found == ["gpio.siren_feedback.pin: GPIO 22 is already used by gpio.ack_button.pin"]


def test_gpio_values(tmp_path: Path) -> None:
    gpio = load(tmp_path, {"gpio": {"pin_factory": "mock",
                                    "siren": {"pin": 5, "active_high": False},
                                    "ack_button": {"pin": 6, "pull_up": False, "bounce_ms": 0},
                                    "siren_feedback": {"pin": 23}}}).gpio
    assert gpio.pin_factory == "mock"
    assert gpio.siren == OutputPinConfig(5, False)
    assert gpio.beacon == OutputPinConfig(27, True)
    button = gpio.ack_button
    assert (button.pin, button.pull_up, button.bounce_ms) == (6, False, 0)
    assert gpio.siren_feedback is not None and gpio.siren_feedback.pull_up is True


# --- storage, sentry, logging ------------------------------------------------------------------

def test_storage_path_resolves_against_config_dir(tmp_path: Path) -> None:
    config = load(tmp_path, {"storage": {"path": "data/state.db", "outbox_max": 100}})
    assert config.storage.path == tmp_path / "data/state.db"
    assert config.storage.outbox_max == 100


def test_sentry_dsn_sources(tmp_path: Path) -> None:
    env = {"SENTRY_DSN": "https://envkey@sentry.example/1"}
    assert load(tmp_path, {}, env=env).sentry.dsn == env["SENTRY_DSN"]
    assert load(tmp_path, {"sentry": {"dsn": DSN}}, env=env).sentry.dsn == DSN
    assert load(tmp_path, {"sentry": {"dsn": ""}}, env=env).sentry.dsn == env["SENTRY_DSN"]
    assert load(tmp_path, {}, env={"SENTRY_DSN": "  "}).sentry.dsn is None
    (tmp_path / "dsn").write_text(DSN + "\n")
    assert load(tmp_path, {"sentry": {"dsn_file": "dsn"}}, env=env).sentry.dsn == DSN
    (tmp_path / "empty").write_text("")
    assert load(tmp_path, {"sentry": {"dsn_file": "empty"}}, env=env).sentry.dsn is None


def test_sentry_dsn_and_dsn_file_conflict(tmp_path: Path) -> None:
    (tmp_path / "dsn").write_text(DSN)
    found = problems(tmp_path, {"sentry": {"dsn": DSN, "dsn_file": "dsn"}})
    assert has_path(found, "sentry.dsn_file")


def test_bad_sentry_dsn_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {}, env={"SENTRY_DSN": "secretkey-no-scheme"})
    assert has_path(info.value.problems, "SENTRY_DSN (environment)")
    assert "secretkey" not in str(info.value)


def test_sentry_environment_and_log_level(tmp_path: Path) -> None:
    config = load(tmp_path, {"sentry": {"environment": "staging"}, "logging": {"level": "debug"}})
    assert config.sentry.environment == "staging"
    assert config.logging.level == "DEBUG"


# --- the file itself ---------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.source == str(tmp_path / "nope.yaml")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_yaml_syntax_error_has_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, "station:\n  id: a\n  region: b\nbroker:\n  host: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("line ")
    assert "YAML syntax error" in info.value.problems[0]


def test_yaml_syntax_error_line_is_right(tmp_path: Path) -> None:
    path = write(tmp_path, "station:\n  id: a\n region: b\n")
    with pytest.raises(ConfigError, match=r"line 3, column 2"):
        load_config(path)


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "station: {id: a, region: b}\nbroker: {host: h}\n"
                           "gpio:\n  siren: {pin: 5}\n  siren: {pin: 6}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == ["line 5: duplicate key 'siren' (first at line 4)"]


@pytest.mark.parametrize("text", ["", "# only comments\n", "- a\n- b\n", "just a string\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith("(top level): expected a mapping")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_bytes(b"station: {id: a, region: b}\nbroker: {host: \xff}\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


# --- boot safety (docs/BEHAVIOUR.md §4) -----------------------------------------------------------

def test_active_low_on_17_warns() -> None:
    gpio = GpioConfig(siren=OutputPinConfig(17, active_high=False))
    assert boot_safety_warnings(gpio) == [
        "gpio.siren.pin: active-low relay on GPIO 17 is driven ON during boot (GPIO 9–27 are "
        "pulled low at reset); safe pins for an active-low relay: 4, 5, 6, 7, 8 "
        "(avoid 0–3: ID EEPROM and I2C)"]


def test_active_high_on_5_warns() -> None:
    gpio = GpioConfig(beacon=OutputPinConfig(5, active_high=True))
    (warning,) = boot_safety_warnings(gpio)
    assert warning.startswith("gpio.beacon.pin: active-high relay on GPIO 5 is driven ON during "
                              "boot (GPIO 0–8 are pulled high at reset)")
    assert "17, 22, 23, 24, 25, 26, 27" in warning


def test_both_outputs_warned() -> None:
    gpio = GpioConfig(siren=OutputPinConfig(17, False), beacon=OutputPinConfig(4, True))
    assert [w.split(":")[0] for w in boot_safety_warnings(gpio)] == ["gpio.siren.pin",
                                                                    "gpio.beacon.pin"]


@pytest.mark.parametrize("pin", SAFE_PINS_ACTIVE_LOW)
def test_safe_active_low_pins(pin: int) -> None:
    gpio = GpioConfig(siren=OutputPinConfig(pin, False), beacon=OutputPinConfig(27, True))
    assert boot_safety_warnings(gpio) == []


@pytest.mark.parametrize("pin", SAFE_PINS_ACTIVE_HIGH)
def test_safe_active_high_pins(pin: int) -> None:
    gpio = GpioConfig(siren=OutputPinConfig(pin, True), beacon=OutputPinConfig(8, False))
    assert boot_safety_warnings(gpio) == []


def test_safe_pin_tables() -> None:
    assert SAFE_PINS_ACTIVE_LOW == (4, 5, 6, 7, 8)
    assert SAFE_PINS_ACTIVE_HIGH == tuple(range(9, 28))
    assert not set(SAFE_PINS_ACTIVE_LOW) & set(SAFE_PINS_ACTIVE_HIGH)


def test_default_gpio_is_boot_safe() -> None:
    assert boot_safety_warnings(GpioConfig()) == []


# --- the example's placeholders (refused by check-config and run) -------------------------------

def refused(tmp_path: Path, patch: dict[str, Any]) -> list[str]:
    try:
        load_config(write(tmp_path, merged(patch)), env={}, refuse_placeholders=True)
    except ConfigError as exc:
        return exc.problems
    return []


def test_unedited_example_names_each_placeholder() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(EXAMPLE, env={}, refuse_placeholders=True)
    assert [p.split(":")[0] for p in err.value.problems] == [
        "station.id", "broker.host", "broker.tls"]


def test_local_tools_still_read_the_unedited_example() -> None:
    # outputs-off (ExecStopPost, package removal), firmware-config, timesync-config, status
    assert load_config(EXAMPLE, env={}).station.id == EXAMPLE_STATION_ID


@pytest.mark.parametrize("patch", [
    {"station": {"id": "prabumulih-2"}, "broker": {"host": "10.20.0.5", "tls": False}},
    {"station": {"id": "bandung-1"}, "broker": {"host": "mqtt.polri.internal", "tls": True}},
    {"station": {"id": "bandung-1"}, "broker": {"host": "mqtt.polri.internal",
                                                 "tls": {"ca_file": "ca.crt"}}},
    # a bench or test set-up on this machine may keep the example's identity and no TLS
    {"broker": {"host": "127.0.0.1"}},
    {"broker": {"host": "::1", "failover": ["localhost:1884"]}},
])
def test_an_edited_config_passes(tmp_path: Path, patch: dict[str, Any]) -> None:
    (tmp_path / "ca.crt").write_text("not checked here\n")
    assert refused(tmp_path, patch) == []


@pytest.mark.parametrize("patch, keys", [
    ({"broker": {"host": "10.20.0.5", "tls": False}}, ["station.id"]),
    ({"station": {"id": "bandung-1"}, "broker": {"host": "10.20.0.5"}}, ["broker.tls"]),
    ({"station": {"id": "bandung-1"}, "broker": {"host": "10.20.0.5", "tls": None}},
     ["broker.tls"]),
    ({"station": {"id": "bandung-1"},
      "broker": {"host": "10.20.0.5", "tls": False, "failover": ["mqtt2.polri.example"]}},
     ["broker.failover[0]"]),
    ({"station": {"id": "bandung-1"}, "broker": {"host": "MQTT.Example.COM.", "tls": False}},
     ["broker.host"]),
    # a remote failover makes the set-up remote
    ({"broker": {"host": "127.0.0.1", "failover": ["10.20.0.6"]}},
     ["station.id", "broker.tls"]),
])
def test_each_placeholder_left_is_named(tmp_path: Path, patch: dict[str, Any],
                                        keys: list[str]) -> None:
    assert [p.split(":")[0] for p in refused(tmp_path, patch)] == keys


def test_placeholders_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    found = refused(tmp_path, {"broker": {"port": 0}, "gpio": {"siren": {"pin": 41}}})
    assert [p.split(":")[0] for p in found] == [
        "broker.port", "gpio.siren.pin", "station.id", "broker.host", "broker.tls"]


def test_placeholder_problems_is_pure() -> None:
    config = Config(station=StationIdentity("bandung-1", "jabar-bandung"),
                    broker=BrokerConfig(host="mqtt.polri.example", tls=TlsConfig()))
    assert placeholder_problems(config) == [
        "broker.host: 'mqtt.polri.example' is the example's placeholder (a name reserved for "
        "documentation, it never resolves): set the national broker's address"]


def test_example_station_is_in_the_example_registry() -> None:
    """config/station.example.yaml's station and region are a line of
    config/mosquitto/stations.example (whose ACL and test certificates the docs use)."""
    registry = EXAMPLE.parent / "mosquitto" / "stations.example"
    stations = dict(line.split() for line in registry.read_text().splitlines()
                    if line.strip() and not line.startswith("#"))
    config = load_config(EXAMPLE, env={})
    assert stations.get(config.station.id) == config.station.region
    assert config.station.id == EXAMPLE_STATION_ID


def test_docs_do_not_deny_the_sentry_dsn_key_the_config_takes(tmp_path: Path) -> None:
    """``sentry.dsn`` in the YAML is accepted (the specification names ``dsn`` or
    ``SENTRY_DSN``); docs/BEHAVIOUR.md must not count the DSN among the secrets that never
    come from the YAML."""
    assert load(tmp_path, {"sentry": {"dsn": DSN}}).sentry.dsn == DSN
    text = " ".join((EXAMPLE.parent.parent / "docs" / "BEHAVIOUR.md").read_text(
        encoding="utf-8").split())
    claim = re.search(r"Secrets \([^)]*\) come from files, never from the YAML", text)
    assert claim is not None and "Sentry" not in claim.group(0), claim
