"""``polres-station run -c CONFIG`` with a MockFactory the test can reach through stdin.

The service is the real one, started through ``station.cli.main`` (signal handlers, exit codes
and all); only the pin factory is ours, so the test can press the acknowledge button and read
the relays of a process it will SIGKILL. One JSON line answers each command on stdin:

    ping                 → {"ok": true, "pid": …}
    press SECONDS        → drive the button low, wait, release; answers after the release
    press-async SECONDS  → the same in a thread; no answer
    pins                 → {"siren": bool (relay energised now), "beacon": bool,
                            "siren_on_age_s": seconds since the siren relay was last on (or None)}
"""
from __future__ import annotations

import json
import sys
import threading
import time

from gpiozero.pins.mock import MockFactory

from station import cli, terminal
from station.config import load_config

config_path = sys.argv[1]
config = load_config(config_path)
factory = MockFactory()
terminal.pin_factory_for = lambda cfg: factory          # the one thing that differs from `run`
gpio = config.gpio
last_siren_on: list[float | None] = [None]


def relay(name: str) -> bool:
    cfg = getattr(gpio, name)
    return factory.pin(cfg.pin).state == (1 if cfg.active_high else 0)


def sample_siren() -> None:
    """The siren blinks by pattern: remember when its relay was last energised."""
    while True:
        try:
            if relay("siren"):
                last_siren_on[0] = time.monotonic()
        except Exception:  # noqa: BLE001 — pins not set up yet
            pass
        time.sleep(0.01)


def press(hold: float) -> None:
    button = factory.pin(gpio.ack_button.pin)
    if gpio.ack_button.pull_up:
        button.drive_low()
        time.sleep(hold)
        button.drive_high()
    else:
        button.drive_high()
        time.sleep(hold)
        button.drive_low()


def reply(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def commands() -> None:
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "ping":
            import os
            reply({"ok": True, "pid": os.getpid()})
        elif cmd == "press":
            press(float(arg or 0.12))
            reply({"ok": True})
        elif cmd == "press-async":
            threading.Thread(target=press, args=(float(arg or 0.12),), daemon=True).start()
        elif cmd == "pins":
            on = last_siren_on[0]
            reply({"siren": relay("siren"), "beacon": relay("beacon"),
                   "siren_on_age_s": None if on is None else time.monotonic() - on})
        else:
            reply({"ok": False, "error": f"unknown {cmd!r}"})


threading.Thread(target=sample_siren, daemon=True).start()
threading.Thread(target=commands, daemon=True).start()
sys.exit(cli.main(["run", "-c", config_path]))
