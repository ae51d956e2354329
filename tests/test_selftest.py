"""The technician's self-test on MockFactory pins: outputs cycle, button, feedback, verdict."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from helpers import station_config
from station.config import load_config
from station.selftest import run_selftest


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.close()


def press_later(factory, pin: int, delay: float) -> threading.Thread:
    def go() -> None:
        time.sleep(delay)
        factory.pin(pin).drive_low()
        time.sleep(0.05)
        factory.pin(pin).drive_high()
    t = threading.Thread(target=go)
    t.start()
    return t


def test_pass_cycles_siren_and_beacon_and_sees_the_press(tmp_path, factory):
    config = load_config(station_config(tmp_path, 1883))
    said: list[str] = []
    t = press_later(factory, config.gpio.ack_button.pin, 0.3)
    r = run_selftest(config, pin_factory=factory, siren_s=0.05, beacon_s=0.05,
                     button_timeout_s=5, say=said.append)
    t.join()
    assert r.ok, r.lines
    siren = [s.state for s in factory.pin(config.gpio.siren.pin).states]
    beacon = [s.state for s in factory.pin(config.gpio.beacon.pin).states]
    assert 0 in siren and siren[-1] == 1        # active-low siren went on, ends off (high)
    assert 1 in beacon and beacon[-1] == 0      # active-high beacon went on, ends off
    assert any("press the acknowledge button" in s for s in said)


def test_fail_without_press_and_without_feedback(tmp_path, factory):
    config = load_config(station_config(tmp_path, 1883,
                                        gpio={"siren_feedback": {"pin": 23, "pull_up": True}}))
    r = run_selftest(config, pin_factory=factory, siren_s=0.05, beacon_s=0.05,
                     button_timeout_s=0.2, say=lambda s: None)
    assert not r.ok
    assert any(ln.startswith("FAIL") and "feedback" in ln for ln in r.lines)
    assert any(ln.startswith("FAIL") and "button press" in ln for ln in r.lines)


def test_cli_exit_code_is_1_on_fail(tmp_path):
    cfg = station_config(tmp_path, 1883)
    r = subprocess.run([sys.executable, "-m", "station.cli", "selftest", "-c", str(cfg),
                        "--siren-seconds", "0.05", "--beacon-seconds", "0.05",
                        "--button-timeout", "0.2"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "VERDICT: FAIL" in r.stdout


# --- the technician's instructions: the running service holds the GPIO lines ------------------

REPO = Path(__file__).resolve().parent.parent
SELFTEST_RUN = re.compile(r"polres-station selftest\b")


def selftest_instructions_without_stop_start(text: str) -> list[str]:
    """Each instruction to run the self-test that is not preceded (within its step) by
    stopping the service and followed by starting it again."""
    bad = []
    for m in SELFTEST_RUN.finditer(text):
        before, after = text[max(0, m.start() - 400):m.start()], text[m.end():m.end() + 400]
        if ("systemctl stop polres-station" not in before
                or "systemctl start polres-station" not in after):
            bad.append(text[max(0, m.start() - 80):m.end() + 80])
    return bad


@pytest.mark.parametrize("doc", ["README.md", "firmware/README.md"])
def test_documents_stop_the_service_around_the_selftest(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    assert SELFTEST_RUN.search(text), f"{doc} no longer tells how to run the self-test"
    assert selftest_instructions_without_stop_start(text) == []


@pytest.mark.slow
def test_installers_closing_hint_stops_the_service_around_the_selftest(tmp_path):
    root = tmp_path / "root"
    (root / "boot" / "firmware").mkdir(parents=True)
    (root / "boot" / "firmware" / "config.txt").write_text("arm_64bit=1\n")
    r = subprocess.run(["bash", str(REPO / "systemd" / "install.sh"), "--root", str(root)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout + r.stderr
    hint = r.stdout[r.stdout.index("Next steps"):]
    assert SELFTEST_RUN.search(hint), hint
    assert selftest_instructions_without_stop_start(hint) == [], hint


@pytest.mark.parametrize("option, value", [("--siren-seconds", "-1"), ("--siren-seconds", "0"),
                                           ("--beacon-seconds", "nan"),
                                           ("--button-timeout", "-5"),
                                           ("--button-timeout", "inf")])
def test_cli_refuses_a_time_that_is_not_a_positive_number(tmp_path, option, value):
    """A usage error (exit 2, docs/CLI.md §1) before any relay switches — not a traceback
    from sleep() with the siren already on."""
    cfg = station_config(tmp_path, 1883)
    r = subprocess.run([sys.executable, "-m", "station.cli", "selftest", "-c", str(cfg),
                        option, value], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert option in r.stderr and "Traceback" not in r.stderr
    assert "siren ON" not in r.stdout


def test_interface_says_the_technicians_selftest_publishes_no_event():
    """The wire lists a ``selftest`` trigger ``cli``, but ``polres-station selftest`` runs with
    the service stopped and writes nothing (a root-owned write into the service's database
    would lock the service out of it): docs/INTERFACE.md must say so."""
    text = (REPO / "docs" / "INTERFACE.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `selftest` |"))
    assert "polres-station selftest" in row and "no event" in row
