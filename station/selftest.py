"""``polres-station selftest``: the technician's check of siren, beacon, button and feedback.

Runs with the service stopped (it needs the GPIO lines): siren on briefly, beacon on, then
waits for a press of the acknowledge button; with ``gpio.siren_feedback`` wired it also checks
that the feedback confirms the siren. Prints one line per step and a verdict; exit status 0 on
PASS, 1 on FAIL.
"""
from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .alarms import CONTINUOUS, Outputs
from .config import Config
from .errors import HardwareError
from .hardware import Hardware
from . import terminal
from .terminal import Exit, config_arg, load_config_arg, seconds


@dataclass
class Result:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def check(self, passed: bool, what: str) -> None:
        self.lines.append(f"{'PASS' if passed else 'FAIL'}  {what}")
        self.ok = self.ok and passed


def run_selftest(config: Config, *, pin_factory: Any = None, siren_s: float = 1.0,
                 beacon_s: float = 3.0, button_timeout_s: float = 30.0,
                 say: Callable[[str], None] = print,
                 sleep: Callable[[float], None] = time.sleep) -> Result:
    """Drive the outputs and watch the inputs; outputs are off again on every path."""
    result = Result()
    pressed = threading.Event()
    feedback_seen = threading.Event()

    def on_button(active: bool, at: float) -> None:
        if active:
            pressed.set()

    def on_feedback(active: bool, at: float) -> None:
        if active:
            feedback_seen.set()

    with Hardware(config.gpio, pin_factory=pin_factory, on_button=on_button,
                  on_feedback=on_feedback) as hw:
        result.check(not hw.button_pressed,
                     "acknowledge button released at start (pressed = stuck or miswired)")
        say(f"siren ON for {siren_s:g} s (GPIO {config.gpio.siren.pin})")
        hw.apply(Outputs(siren=CONTINUOUS, beacon=False))
        if hw.feedback_active:
            feedback_seen.set()
        sleep(siren_s)
        hw.apply(Outputs())
        if config.gpio.siren_feedback is not None:
            result.check(feedback_seen.is_set(),
                         f"siren feedback confirmed (GPIO {config.gpio.siren_feedback.pin})")
        say(f"beacon ON for {beacon_s:g} s (GPIO {config.gpio.beacon.pin})")
        hw.apply(Outputs(beacon=True))
        sleep(beacon_s)
        hw.apply(Outputs())
        say(f"press the acknowledge button now (GPIO {config.gpio.ack_button.pin}, "
            f"{button_timeout_s:g} s) …")
        pressed.clear()
        result.check(pressed.wait(button_timeout_s), "acknowledge button press seen")
    result.lines.append("siren and beacon are OFF")
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--siren-seconds", type=seconds, default=1.0, help="siren on-time (≤ 10)")
    p.add_argument("--beacon-seconds", type=seconds, default=3.0, help="beacon on-time (≤ 30)")
    p.add_argument("--button-timeout", type=seconds, default=30.0,
                   help="seconds to wait for the button press")


def main(args: argparse.Namespace) -> int:
    config = load_config_arg(args)
    try:
        result = run_selftest(config, pin_factory=terminal.pin_factory_for(config),
                              siren_s=min(args.siren_seconds, 10.0),
                              beacon_s=min(args.beacon_seconds, 30.0),
                              button_timeout_s=args.button_timeout)
    except HardwareError as e:
        print(f"FAIL  GPIO: {e}\n(is the service running? sudo systemctl stop polres-station)")
        return Exit.FAIL
    for line in result.lines:
        print(line)
    print("VERDICT: PASS" if result.ok else "VERDICT: FAIL")
    return Exit.OK if result.ok else Exit.FAIL
