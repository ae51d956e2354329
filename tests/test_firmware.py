"""Raspberry Pi boot configuration rendered from the station config (docs/BEHAVIOUR.md §4)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from station.config import Config, boot_safety_warnings, load_config, parse_config
from station.firmware import main, render_boot_config, render_watchdog_dropin

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_YAML = REPO / "config" / "station.example.yaml"
EXAMPLE_TXT = REPO / "firmware" / "config.txt.example"
WATCHDOG_CONF = REPO / "systemd" / "polres-station-watchdog.conf"


def config(**gpio: Any) -> Config:
    return parse_config({"station": {"id": "st-1", "region": "r-1"},
                         "broker": {"host": "localhost"}, "gpio": gpio}, env={})


def settings(text: str) -> list[str]:
    """The lines the firmware acts on (not comments, not blank)."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("active_high, line", [
    (True, "gpio=20=op,dl,pd"),    # off = low; pull-down agrees
    (False, "gpio=20=op,dh,pu"),   # active-low: off = high; pull-up agrees
])
def test_relay_is_off_from_boot_for_its_polarity(active_high: bool, line: str) -> None:
    text = render_boot_config(config(siren={"pin": 20, "active_high": active_high},
                                     beacon={"pin": 6, "active_high": False}))
    assert line in settings(text)
    assert "gpio=6=op,dh,pu" in settings(text)


def test_default_station() -> None:
    text = render_boot_config(config())
    assert settings(text) == ["[all]", "gpio=17=op,dl,pd", "gpio=27=op,dl,pd",
                              "gpio=22=ip,pu", "dtparam=watchdog=on"]
    assert "st-1" in text and "r-1" in text and "/boot/firmware/config.txt" in text
    assert "WARNING" not in text


def test_input_pulls_for_button_and_feedback() -> None:
    text = render_boot_config(config(ack_button={"pin": 22, "pull_up": False},
                                     siren_feedback={"pin": 23, "pull_up": True}))
    assert "gpio=22=ip,pd" in settings(text)
    assert "gpio=23=ip,pu" in settings(text)
    text = render_boot_config(config(siren_feedback={"pin": 24, "pull_up": False}))
    assert "gpio=24=ip,pd" in settings(text)


def test_boot_safety_warnings_become_comments() -> None:
    cfg = config(siren={"pin": 17, "active_high": False}, beacon={"pin": 4, "active_high": True})
    assert len(boot_safety_warnings(cfg.gpio)) == 2
    text = render_boot_config(cfg)
    warnings = [line for line in text.splitlines() if line.startswith("# WARNING: ")]
    assert [w.split()[2] for w in warnings] == ["gpio.siren.pin:", "gpio.beacon.pin:"]
    assert "4, 5, 6, 7, 8" in text            # the safe pins for an active-low relay
    assert settings(text) == ["[all]", "gpio=17=op,dh,pu", "gpio=4=op,dl,pd",
                              "gpio=22=ip,pu", "dtparam=watchdog=on"]


def test_text_is_plain_ascii_and_short_lines() -> None:
    text = render_boot_config(config(siren={"pin": 17, "active_high": False}))
    assert text.isascii()
    assert all(len(line) <= 78 for line in text.splitlines())
    assert text.endswith("dtparam=watchdog=on\n")


def test_watchdog_dropin() -> None:
    text = render_watchdog_dropin()
    assert settings(text) == ["[Manager]", "RuntimeWatchdogSec=14"]


def test_committed_example_is_up_to_date() -> None:
    rendered = render_boot_config(load_config(EXAMPLE_YAML, env={}))
    assert EXAMPLE_TXT.read_text() == rendered, (
        "firmware/config.txt.example is stale: run "
        "`python -m station.firmware -c config/station.example.yaml > firmware/config.txt.example`")


def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str],
              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    assert main(["-c", str(EXAMPLE_YAML)]) == 0
    assert capsys.readouterr().out == EXAMPLE_TXT.read_text()
    assert main(["--watchdog-dropin"]) == 0
    assert capsys.readouterr().out == render_watchdog_dropin()
    bad = tmp_path / "bad.yaml"
    bad.write_text("station: {id: st-1}\n")
    assert main(["-c", str(bad)]) == 78
    assert "station.region: required" in capsys.readouterr().err


def test_cli_firmware_config(capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from station.cli import main as cli

    monkeypatch.delenv("SENTRY_DSN", raising=False)
    assert cli(["firmware-config", "-c", str(EXAMPLE_YAML)]) == 0
    assert capsys.readouterr().out == EXAMPLE_TXT.read_text()
    assert cli(["firmware-config", "--watchdog-dropin"]) == 0
    assert capsys.readouterr().out == WATCHDOG_CONF.read_text()


def test_committed_watchdog_dropin_is_up_to_date() -> None:
    assert WATCHDOG_CONF.read_text() == render_watchdog_dropin(), (
        "systemd/polres-station-watchdog.conf is stale: run `python -m station.firmware "
        "--watchdog-dropin > systemd/polres-station-watchdog.conf`")
