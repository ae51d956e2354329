#!/usr/bin/env python3
"""Where the time goes between paho's callback and the siren relay (profiling aid, not a target).

    .venv/bin/python bench/stages.py [--rounds 300] [--gap 0.2]

The real ``Station`` on gpiozero's ``MockFactory`` (the relay probe of procs.py), connected to a
mosquitto of its own; complaints are handed straight to the loop's dispatch (no network), one
per ``--gap`` seconds so each meets an idle, cold process as in a real room. Each stage the
complaint passes before the relay is timed with ``perf_counter``; the table gives p50/p90 in
µs, and the last line complaint → relay as the probe saw it. Hot-loop timings of the same calls
(``timeit``) are far lower: on an idle machine the cold caches dominate, so the fix is less
work before the relay, not faster code.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from gpiozero.pins.mock import MockFactory  # noqa: E402

from procs import _probe_pin_class  # noqa: E402
from run import Broker, station_yaml  # noqa: E402
from station import service as station_service  # noqa: E402
from station.alarms import ButtonEdge  # noqa: E402
from station.config import load_config  # noqa: E402
from station.link import Inbound  # noqa: E402
from station.protocol import complaint_payload  # noqa: E402
from station.service import Station  # noqa: E402

STAGES: dict[str, list[float]] = defaultdict(list)
RECORDING = [False]                       # only while a complaint is being dispatched


def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if RECORDING[0]:
                STAGES[label].append(time.perf_counter() - t)
    return wrapper


class TimedSeen:
    """The station's seen-id filter with its membership test and ``add`` timed."""

    def __init__(self, seen: Any) -> None:
        self._seen = seen
        self.add = timed("remember the id", seen.add)
        self._contains = timed("duplicate check", seen.__contains__)

    def __contains__(self, key: object) -> bool:
        return bool(self._contains(key))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._seen, name)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--gap", type=float, default=0.2, help="seconds between complaints")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker", nodelay=False)
        broker.start()
        factory = MockFactory(pin_class=_probe_pin_class())
        cfg = load_config(station_yaml(work / "station.yaml", station="stages", region="stages",
                                       port=broker.port, state=work / "state"))
        station = Station(cfg, pin_factory=factory)
        try:
            station.start()
            assert station.link is not None and station.machine and station.hardware
            station.link.wait_connected(10)
            station_service.parse_complaint = timed("parse", station_service.parse_complaint)
            station._seen = TimedSeen(station._seen)                            # type: ignore
            station.machine.handle = timed("alarm machine", station.machine.handle)  # type: ignore
            station._dispatch = timed("whole dispatch", station._dispatch)     # type: ignore
            station.hardware.apply = timed("relays (siren on inside)",            # type: ignore
                                           station.hardware.apply)
            station._write = timed("hand-over to the writer", station._write)  # type: ignore
            relay = rounds(station, factory, cfg, args)
        finally:
            station.stop()
            broker.stop()
    print("| stage of a complaint's dispatch | p50 µs | p90 µs |")
    print("|---|---|---|")
    for label, values in STAGES.items():
        print(f"| {label} | {pct(values, 0.5):.0f} | {pct(values, 0.9):.0f} |")
    print(f"| complaint handed to the loop → siren relay on | {pct(relay, 0.5):.0f} | "
          f"{pct(relay, 0.9):.0f} |")
    return 0


def rounds(station: Station, factory: MockFactory, cfg: Any,
           args: argparse.Namespace) -> list[float]:
    siren = factory.pin(cfg.gpio.siren.pin)
    on = 1 if cfg.gpio.siren.active_high else 0
    relay: list[float] = []
    for i in range(args.rounds):
        payload = complaint_payload(complaint_id=f"stage-{i}", region=cfg.station.region,
                                    priority=("emergency", "urgent", "normal")[i % 3],
                                    category="theft", summary="x" * 120)
        seen = len(siren.changes)
        t0 = time.monotonic()
        RECORDING[0] = True
        station._dispatch(Inbound(station.topics.complaints, payload, 1, False, 0, -1, t0))
        RECORDING[0] = False
        hits = [t for t, v in siren.changes[seen:] if v == on]
        relay.append(hits[0] - t0 if hits else float("nan"))
        for pressed in (True, False):         # acknowledge: press, debounce, release
            station._dispatch(ButtonEdge(pressed, time.monotonic()))
            time.sleep(cfg.gpio.ack_button.bounce_ms / 1000 + 0.01)
            station._tick()
        time.sleep(args.gap)
    return relay


if __name__ == "__main__":
    sys.exit(main())
