"""The `time` config section and the systemd-timesyncd drop-in (docs/BEHAVIOUR.md §5, §6)."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import station_config
from station.config import TimeConfig, load_config
from station.errors import ConfigError
from station.timesync import render_timesyncd_dropin


def with_time(tmp_path: Path, time: object) -> Path:
    return station_config(tmp_path, 1883, time=time)


def test_defaults_keep_the_systems_servers_and_utc(tmp_path: Path) -> None:
    config = load_config(station_config(tmp_path, 1883))
    assert config.time == TimeConfig(ntp_servers=(), display_tz="UTC")
    assert config.time.zone().utcoffset(None).total_seconds() == 0


def test_servers_and_zone_are_read(tmp_path: Path) -> None:
    config = load_config(with_time(tmp_path, {
        "ntp_servers": ["ntp1.polri.internal", "10.20.0.123", "fd00::123"],
        "display_tz": "Asia/Jakarta"}))
    assert config.time.ntp_servers == ("ntp1.polri.internal", "10.20.0.123", "fd00::123")
    assert config.time.zone().key == "Asia/Jakarta"   # type: ignore[attr-defined]


@pytest.mark.parametrize("time, key, reason", [
    ({"display_tz": "Asia/Jakrta"}, "time.display_tz", "not a known IANA time zone"),
    ({"display_tz": "WIB"}, "time.display_tz", "not a known IANA time zone"),
    ({"display_tz": "../../etc/passwd"}, "time.display_tz", "not a known IANA time zone"),
    ({"display_tz": 7}, "time.display_tz", "expected a string"),
    ({"ntp_servers": "ntp1.polri.internal"}, "time.ntp_servers", "expected a list"),
    ({"ntp_servers": ["ntp1.polri.internal:123"]}, "time.ntp_servers[0]", "not a host name"),
    ({"ntp_servers": ["ok.internal", "ntp://x"]}, "time.ntp_servers[1]", "not a host name"),
    ({"ntp_servers": ["a b"]}, "time.ntp_servers[0]", "not a host name"),
    ({"ntp_servers": [""]}, "time.ntp_servers[0]", "expected a host name"),
    ({"ntp_servers": [123]}, "time.ntp_servers[0]", "expected a host name"),
    ({"ntp_servers": ["x.internal", "x.internal"]}, "time.ntp_servers[1]", "listed twice"),
    ({"ntp_server": []}, "time.ntp_server", "did you mean 'ntp_servers'"),
])
def test_bad_time_settings_name_their_key(tmp_path: Path, time: dict, key: str,
                                          reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(with_time(tmp_path, time))
    assert any(p.startswith(f"{key}: ") and reason in p for p in err.value.problems), \
        err.value.problems


def test_dropin_lists_the_servers_in_order() -> None:
    text = render_timesyncd_dropin(TimeConfig(ntp_servers=("ntp1.polri.internal", "10.20.0.1")))
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert parser["Time"]["NTP"] == "ntp1.polri.internal 10.20.0.1"


def test_dropin_without_servers_leaves_ntp_alone() -> None:
    # An empty NTP= would clear the system's list: no NTP= line at all.
    text = render_timesyncd_dropin(TimeConfig())
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert "Time" in parser and "NTP" not in parser["Time"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True,
                          text=True, timeout=30)


def test_timesync_config_command_prints_the_dropin(tmp_path: Path) -> None:
    path = with_time(tmp_path, {"ntp_servers": ["ntp1.polri.internal", "ntp2.polri.internal"]})
    r = run_cli("timesync-config", "-c", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == ["[Time]", "NTP=ntp1.polri.internal ntp2.polri.internal"]


def test_timesync_config_command_refuses_a_bad_config_and_prints_nothing(tmp_path: Path) -> None:
    path = with_time(tmp_path, {"ntp_servers": ["bad host"]})
    r = run_cli("timesync-config", "-c", str(path))
    assert r.returncode == 78
    assert r.stdout == "" and "time.ntp_servers[0]" in r.stderr


def test_example_documents_the_time_section() -> None:
    example = Path(__file__).resolve().parent.parent / "config" / "station.example.yaml"
    doc = yaml.safe_load(example.read_text(encoding="utf-8"))
    assert doc["time"] == {"ntp_servers": [], "display_tz": "UTC"}
