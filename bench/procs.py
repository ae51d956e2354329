"""Child processes of the benchmark (``bench/run.py`` starts them; not run by hand).

``python bench/procs.py echo --port P --sub A --pub B``
    The floor: a bare paho client (defaults: no TCP_NODELAY, automatic PUBACK) that republishes
    every QoS 1 message on topic A to topic B, QoS 1 — the round trip any MQTT program pays.

``python bench/procs.py station --config station.yaml``
    The real ``Station`` (service.py) in a process of its own, on gpiozero's ``MockFactory``
    whose pins record a ``time.monotonic()`` timestamp at every state change (the relay probe).
    The benchmark drives it with JSON lines on stdin, one reply line each on stdout:

        {"op": "press"}    → {"t": <monotonic of drive_low()>}     (ack button pressed)
        {"op": "release"}  → {"t": <monotonic of drive_high()>}
        {"op": "relay"}    → {"on": [...], "off": [...]}  siren relay transitions since last call
        {"op": "mem"}      → {"rss_kb": …, "anon_kb": …}  after gc.collect()
        {"op": "connected"}→ {"connected": bool}
        {"op": "hold", "n": N} → {"pending": …}  the outbox stops sending (as with the broker
                             away; complaints still arrive) and N filler events are queued
        {"op": "release_hold"} → {"pending": …}  the outbox sends again (re-reads the outbox)
        {"op": "pending"}  → {"pending": …}  events not yet confirmed by the broker
        {"op": "commits"}  → {"s": [...]}  durations of the writer's commits that stored events
                             since the last call (Store.commit, timed in the writer thread)
        {"op": "stop"}     → {"stopped": true} and exit

``CLOCK_MONOTONIC`` is system-wide on Linux, so the timestamps compare with the benchmark's.
The station logs at its configured level to stderr, as ``polres-station run`` does.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / RssAnon / RssFile in kB from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


# --- the floor ------------------------------------------------------------------------------

def echo_main(args: argparse.Namespace) -> int:
    from station.desk.clients import make_client
    client = make_client(client_id=f"bench-echo-{args.port}")
    client.on_connect = lambda c, u, f, r, p: c.subscribe(args.sub, 1)
    client.on_message = lambda c, u, m: c.publish(args.pub, m.payload, qos=1)
    client.connect("127.0.0.1", args.port, keepalive=30)
    client.loop_forever(retry_first_connection=True)
    return 0


# --- the station host -----------------------------------------------------------------------

def _probe_pin_class() -> type:
    from gpiozero.pins.mock import MockPin

    class ProbePin(MockPin):
        """MockPin that also keeps the absolute monotonic time of every state change."""

        def __init__(self, factory: Any, info: Any) -> None:
            self.changes: list[tuple[float, int]] = []
            super().__init__(factory, info)

        def _change_state(self, value: Any) -> bool:
            changed = super()._change_state(value)
            if changed:
                self.changes.append((self._last_change, int(bool(value))))
            return changed

    return ProbePin


def station_main(args: argparse.Namespace) -> int:
    from gpiozero.pins.mock import MockFactory

    from station.terminal import setup_logging
    from station.config import load_config
    from station.service import Station

    config = load_config(Path(args.config))
    setup_logging(config.logging.level)
    factory = MockFactory(pin_class=_probe_pin_class())
    station = Station(config, pin_factory=factory)
    station.start()
    loop = threading.Thread(target=station.run, name="station-loop", daemon=True)
    loop.start()
    siren = factory.pin(config.gpio.siren.pin)
    button = factory.pin(config.gpio.ack_button.pin)
    on_level = 1 if config.gpio.siren.active_high else 0
    seen = 0
    assert station.link is not None
    connected = station.link.wait_connected(10)

    def reply(doc: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    commits = _time_commits(station)
    reply({"ready": connected, "pid": __import__("os").getpid()})
    try:
        for line in sys.stdin:
            op = json.loads(line).get("op")
            if op == "press":
                t = time.monotonic()
                button.drive_low()
                reply({"t": t})
            elif op == "release":
                t = time.monotonic()
                button.drive_high()
                reply({"t": t})
            elif op == "relay":
                changes = siren.changes[seen:]
                seen += len(changes)
                reply({"on": [t for t, v in changes if v == on_level],
                       "off": [t for t, v in changes if v != on_level]})
            elif op == "mem":
                gc.collect()
                s = proc_status()
                reply({"rss_kb": s.get("VmRSS"), "anon_kb": s.get("RssAnon"),
                       "hwm_kb": s.get("VmHWM")})
            elif op == "connected":
                reply({"connected": station.link.connected})
            elif op == "hold":
                reply({"pending": _hold(station, int(json.loads(line).get("n", 0)))})
            elif op == "release_hold":
                assert station.outbox is not None
                station.outbox.link_up(station.link.connected)
                reply({"pending": station.outbox.pending})
            elif op == "pending":
                assert station.outbox is not None
                reply({"pending": station.outbox.pending})
            elif op == "commits":
                taken, commits[:] = list(commits), []
                reply({"s": taken})
            elif op == "stop":
                break
            else:
                reply({"error": f"unknown op {op!r}"})
    finally:
        station.stop()
        loop.join(5)
        factory.close()
    reply({"stopped": True})
    return 0


def _time_commits(station: Any) -> list[float]:
    """Time the writer's ``Store.commit`` calls that store events (the durable write before
    an event may leave), on the writer's own store instance."""
    store = station.outbox._store
    inner = store.commit
    durations: list[float] = []

    def timed(**kw: Any) -> Any:
        t = time.monotonic()
        rows = inner(**kw)
        if rows:
            durations.append(time.monotonic() - t)
        return rows

    store.commit = timed
    return durations


def _hold(station: Any, n: int) -> int:
    """The outbox stops sending, as while the broker is away, and ``n`` harmless events
    (``cmd_result`` of a status command) join the outbox; complaints keep arriving."""
    from station.outbox import Write
    from station.protocol import EventType, event

    outbox = station.outbox
    outbox.link_up(False)
    deadline = time.monotonic() + 10
    while outbox._up and time.monotonic() < deadline:   # the writer took it in: else it
        time.sleep(0.01)                                 # would still send the first filler
    ident = station.ident
    filler = [event(EventType.CMD_RESULT, {"cmd_id": f"bench-backlog-{i}", "cmd": "status",
                                           "ok": True, "detail": "bench backlog filler"},
                    station=ident.station, region=ident.region, wall=time.time(),
                    clock_synced=True) for i in range(n)]
    for k in range(0, n, 500):
        outbox.submit(Write(events=filler[k:k + 500]))
    deadline = time.monotonic() + 60
    while outbox.pending < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return outbox.pending


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--sub", required=True)
    e.add_argument("--pub", required=True)
    s = sub.add_parser("station")
    s.add_argument("--config", required=True)
    args = p.parse_args(argv)
    return echo_main(args) if args.what == "echo" else station_main(args)


if __name__ == "__main__":
    sys.exit(main())
