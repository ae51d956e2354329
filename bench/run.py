#!/usr/bin/env python3
"""Station benchmarks (docs/PERFORMANCE.md): how fast the siren answers, how little it costs.

    .venv/bin/python bench/run.py            # full run (~11 min): bench/results.json + table
    .venv/bin/python bench/run.py --quick    # seconds, fewer samples (the test suite runs this)

Everything runs on loopback against a mosquitto this script starts itself, once with the
broker's ``set_tcp_nodelay false`` (mosquitto's default) and once with ``true``. Per setting:

* floor — a bare paho client (``procs.py echo``) republishing topic A → topic B, QoS 1. HQ's
  side is two default paho clients, *dispatch* (publishes) and *desk* (subscribes), the same
  two for the floor and for the station, so the difference is the station alone.
* the station — the real ``Station`` in a process of its own (``procs.py station``) on
  gpiozero's MockFactory; the relay probe is the siren MockPin's own state-change timestamp
  (``time.monotonic()`` taken in ``MockPin._change_state``, system-wide clock). Per round:
  floor sample; complaint → siren relay on and → ``alerting`` at the desk; button
  ``drive_low()`` → ``ack`` at the desk; release; a SQLite commit (WAL, synchronous=FULL) on the
  station's filesystem as the disk's own floor. Floor and station samples are interleaved so the
  noise of a shared machine falls on both.
* burst of 1,000 complaints to the region: rate (first publish → last ``alerting``), lost,
  alarmed twice; then one press acknowledges all.
* ``polres-station run`` as a real subprocess: start → retained status ``online`` at the desk
  (several starts, slowest reported), then idle RSS and CPU over 60 s (default setting only).
* broker restart (SIGTERM, start again; persistence on so the station's session survives): a
  complaint published as soon as the broker accepts again is queued for the station; time from
  "broker accepting" to the siren relay on.
* memory (default setting only): station RSS before/after 100,000 complaints, each batch of
  2,500 acknowledged by one press.

Results: ``bench/results.json`` (``--out``; a ``--quick`` run defaults elsewhere). Plain keys are
the default broker setting (``set_tcp_nodelay false``); ``nodelay_false`` / ``nodelay_true``
hold each setting's figures.
A full run (no --only-… mode, both settings) also refreshes the table in
docs/PERFORMANCE.md (between its bench markers); a targeted run leaves it alone.
No figure is asserted here: the table says pass/miss against the targets of docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

import paho.mqtt.client as mqtt  # noqa: E402
import yaml  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from procs import proc_status  # noqa: E402
from station.desk.clients import make_client  # noqa: E402
from station.desk.embedded_broker import free_port  # noqa: E402
from station.protocol import complaint_payload, rfc3339  # noqa: E402
from station import service as station_service  # noqa: E402

# A complaint must meet an idle station, as in a real room: no status publish pending, and the
# status coalescing window (≤ 10 per second) expired, so its status goes out as it would live.
STATUS_GAP_S = getattr(station_service, "STATUS_MIN_GAP_S", 0.1)
STATUS_SETTLE_S = getattr(station_service, "STATUS_SETTLE_S", 0.0)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
ROOT = "polri/110"
REGION, STATION = "bench-region", "bench-station"            # the in-process station
PROC_REGION, PROC_STATION = "bench-idle", "bench-proc"       # the `polres-station run` one
SIGNED_REGION, SIGNED_STATION = "bench-signed-region", "bench-signed"   # signatures required
FLOOR_A, FLOOR_B = "bench/floor/a", "bench/floor/b"
COMPLAINTS = f"{ROOT}/region/{REGION}/complaints"
PRIORITIES = ("emergency", "urgent", "normal")
SUMMARY = ("Pelapor melihat dua orang mencurigakan mencoba membuka paksa pintu rumah "
           "tetangga di Jl. Merdeka, mohon segera dikirim petugas.")
BOUNCE_MS = 50           # the station's default ack_button.bounce_ms (docs/BEHAVIOUR.md §2)
PRESS_DELAY_S = 0.0      # complaint → button press
QUIET_MARGIN_S = 0.005
TIMEOUT_S = 30.0

KEYS = ("floor_p99_ms", "relay_p99_ms", "alerting_p99_ms", "ack_p99_ms", "burst_rate_per_s",
        "burst_lost", "burst_double", "idle_rss_mb", "idle_cpu_pct", "startup_s",
        "reconnect_s", "mem_growth_mb")


@dataclass(frozen=True)
class Plan:
    samples: int          # latency rounds recorded (each: floor, relay, alerting, ack, disk)
    warmup: int           # rounds before recording
    burst: int
    startups: int         # `polres-station run` starts timed
    idle_s: float
    settle_s: float       # after start, before the idle window
    reconnects: int       # broker restarts
    mem_total: int        # complaints in the memory phase
    mem_batch: int
    b2b: int = 300        # back-to-back rounds (complaint → alerting → remote ack → ack)
    backlog: int = 10_000  # events waiting in the outbox for the backlog rounds
    backlog_samples: int = 200


FULL = Plan(samples=1000, warmup=5, burst=1000, startups=5, idle_s=60.0, settle_s=2.0,
            reconnects=5, mem_total=100_000, mem_batch=2500)
QUICK = Plan(samples=50, warmup=5, burst=1000, startups=2, idle_s=5.0, settle_s=1.0,
             reconnects=1, mem_total=2_000, mem_batch=500, b2b=40, backlog=2_000,
             backlog_samples=20)


class BenchError(RuntimeError):
    pass


def mono() -> float:
    return time.monotonic()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def summary(name: str, values_s: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values_s]
    if not ms:
        return {f"{name}_{k}_ms": None for k in ("p50", "p90", "p99", "max")} | {
            f"{name}_n": 0}
    return {f"{name}_p50_ms": round(pct(ms, 0.50), 3), f"{name}_p90_ms": round(pct(ms, 0.90), 3),
            f"{name}_p99_ms": round(pct(ms, 0.99), 3), f"{name}_max_ms": round(max(ms), 3),
            f"{name}_n": len(ms)}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the broker -----------------------------------------------------------------------------

class Broker:
    """A mosquitto of the benchmark's own on a free loopback port."""

    def __init__(self, workdir: Path, *, nodelay: bool) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "allow_anonymous true",
            # persistence (saved at exit only) so the station's session survives a restart
            "persistence true", f"persistence_location {workdir}/", "autosave_interval 0",
            f"set_tcp_nodelay {'true' if nodelay else 'false'}",
            # mosquitto's default 1000 would make a full queue look like a station loss
            "max_queued_messages 10000",
            # as config/mosquitto/mosquitto.conf (mosquitto's default is 20): the station
            # PUBACKs after its durable write, so the window bounds a burst per commit
            "max_inflight_messages 64",
            "log_dest stderr", "log_type error", "log_type warning",
            # as root mosquitto would drop to user `mosquitto`, who cannot write the workdir
            f"user {pwd.getpwuid(os.getuid()).pw_name}"]) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = open(workdir / "mosquitto.log", "ab")

    def start(self) -> float:
        """Start; return the monotonic time it first accepted a connection."""
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = mono() + 10
        while mono() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return mono()
            except OSError:
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"mosquitto exited (see {self.workdir}/mosquitto.log)") from None
                time.sleep(0.002)
        raise BenchError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def mosquitto_version() -> str:
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    m = re.search(r"mosquitto version (\S+)", out)
    return m.group(1) if m else "unknown"


# --- HQ: dispatch (publishes) and the desk (subscribes) -------------------------------------

def _connect(client: mqtt.Client, port: int, **kwargs: Any) -> None:
    client.reconnect_delay_set(0.05, 0.5)
    client.connect("127.0.0.1", port, keepalive=30, **kwargs)
    client.loop_start()
    deadline = mono() + 10
    while not client.is_connected():
        if mono() > deadline:
            raise BenchError("HQ client did not connect")
        time.sleep(0.005)


class Desk:
    """HQ's receiving side: events and status of every station, and the floor's topic B.

    Persistent session (the broker queues events for it across a broker restart). Records the
    monotonic receive time of the first ``alerting``/``ack`` per complaint id, counts repeats,
    every status document, and the ``seq`` numbers per station (gap check).
    """

    def __init__(self, port: int) -> None:
        self.cond = threading.Condition()
        self.floor: dict[str, float] = {}
        self.first: dict[str, dict[str, float]] = {"alerting": {}, "ack": {}}
        self.inside: dict[str, float] = {}   # the station's own relay_latency_ms, per id
        self.repeats: dict[str, dict[str, int]] = {"alerting": defaultdict(int),
                                                   "ack": defaultdict(int)}
        self.counts: dict[tuple[str, str], int] = defaultdict(int)   # (type, id prefix)
        self.status: list[tuple[float, str, dict[str, Any]]] = []
        self.presence: list[tuple[float, str, dict[str, Any]]] = []   # docs/INTERFACE.md §6
        self.seqs: dict[str, list[int]] = defaultdict(list)
        self.client = make_client(client_id=f"bench-desk-{port}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(f"{ROOT}/station/+/events", 1), (f"{ROOT}/station/+/status", 1),
             (f"{ROOT}/station/+/presence", 1), (FLOOR_B, 1)])
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        _connect(self.client, port, clean_start=False, properties=props)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        t = mono()
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        topic = msg.topic
        with self.cond:
            if topic == FLOOR_B:
                self.floor[doc["id"]] = t
            elif topic.endswith("/events"):
                self.seqs[doc.get("station", "?")].append(doc.get("seq", -1))
                kind, cid = doc.get("type"), doc.get("complaint_id")
                if kind in self.first and cid is not None:
                    if cid in self.first[kind]:
                        self.repeats[kind][cid] += 1
                    else:
                        self.first[kind][cid] = t
                        if kind == "alerting" and "relay_latency_ms" in doc:
                            self.inside[cid] = doc["relay_latency_ms"] / 1000
                        self.counts[(kind, cid.rsplit("-", 1)[0])] += 1
            elif topic.endswith("/status"):
                self.status.append((t, topic.split("/")[-2], doc))
            elif topic.endswith("/presence"):
                self.presence.append((t, topic.split("/")[-2], doc))
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT_S) -> Any:
        with self.cond:
            value = self.cond.wait_for(predicate, timeout)
        if not value:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        return value

    def wait_first(self, kind: str, cid: str, timeout: float = TIMEOUT_S) -> float:
        return self.wait(lambda: self.first[kind].get(cid), f"{kind} of {cid}", timeout)

    def seq_check(self, station: str) -> dict[str, int]:
        with self.cond:
            seqs = [s for s in self.seqs.get(station, []) if s >= 0]
        if not seqs:
            return {"events": 0, "seq_gaps": 0, "seq_repeats": 0}
        unique = set(seqs)
        return {"events": len(seqs), "seq_gaps": max(unique) - min(unique) + 1 - len(unique),
                "seq_repeats": len(seqs) - len(unique)}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Dispatch:
    def __init__(self, port: int) -> None:
        self.client = make_client(client_id=f"bench-dispatch-{port}")
        _connect(self.client, port)

    def publish(self, topic: str, payload: bytes) -> float:
        """Publish QoS 1 without waiting; returns the monotonic time just before."""
        t = mono()
        self.client.publish(topic, payload, qos=1)
        return t

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


CMD = f"{ROOT}/station/{STATION}/cmd"


def ack_command(cid: str) -> bytes:
    """HQ's remote acknowledgement of one complaint (docs/INTERFACE.md §7)."""
    return json.dumps({"v": 1, "cmd_id": f"ack-{cid}", "cmd": "ack",
                       "args": {"complaint_id": cid, "by": "bench"}}).encode()


def complaint(cid: str, priority: str = "normal", region: str = REGION) -> bytes:
    return complaint_payload(complaint_id=cid, region=region, priority=priority,
                             category="kejahatan", summary=SUMMARY,
                             reported_at=rfc3339(time.time(), timespec="seconds"))


# --- children -------------------------------------------------------------------------------

class Child:
    """A ``procs.py`` child process."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "procs.py"), *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, cwd=str(REPO),
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Host(Child):
    """The in-process ``Station`` in its own process (see procs.py)."""

    def __init__(self, config: Path, log_path: Path) -> None:
        super().__init__(["station", "--config", str(config)], log_path)
        hello = self._read(timeout=30)
        if not hello.get("ready"):
            raise BenchError(f"station host did not connect: {hello} (see {log_path})")
        self.pid = int(hello["pid"])
        self._relay_on: list[float] = []

    def _read(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        assert self.proc.stdout is not None
        box: list[bytes] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            raise BenchError("station host stopped answering (see its log)")
        return json.loads(box[0])

    def call(self, op: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op}).encode() + b"\n")
        self.proc.stdin.flush()
        return self._read()

    def press(self) -> float:
        return float(self.call("press")["t"])

    def release(self) -> float:
        return float(self.call("release")["t"])

    def relay_on_after(self, t0: float, timeout: float = TIMEOUT_S) -> float:
        """The first siren relay on-transition at or after ``t0``."""
        deadline = mono() + timeout
        while True:
            self._relay_on += self.call("relay")["on"]
            hits = [t for t in self._relay_on if t >= t0]
            if hits:
                self._relay_on = [t for t in self._relay_on if t > min(hits)]
                return min(hits)
            if mono() > deadline:
                raise BenchError("siren relay did not switch on")
            time.sleep(0.002)

    def relay_ons(self) -> list[float]:
        """Every siren relay on-transition not yet consumed (then forgotten)."""
        ons, self._relay_on = self._relay_on + self.call("relay")["on"], []
        return ons

    def mem(self) -> dict[str, int]:
        return self.call("mem")

    def op(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        return self._read(timeout=120)

    def relay_off_after(self, t0: float, timeout: float = TIMEOUT_S) -> float:
        """The first siren relay off-transition at or after ``t0`` (on-transitions are kept)."""
        deadline = mono() + timeout
        while True:
            got = self.call("relay")
            self._relay_on += got["on"]
            hits = [t for t in got["off"] if t >= t0]
            if hits:
                return min(hits)
            if mono() > deadline:
                raise BenchError("siren relay did not switch off")
            time.sleep(0.002)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("stop")
                self.proc.wait(10)
            except (BenchError, OSError, subprocess.TimeoutExpired):
                pass
        self.stop()


class DiskProbe:
    """One SQLite commit (WAL, synchronous=FULL) on the station's filesystem: the disk floor."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, doc BLOB)")
        self.row = complaint("disk-probe")

    def sample(self) -> float:
        t = mono()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO t (doc) VALUES (?)", (self.row,))
        self.conn.execute("COMMIT")
        return mono() - t

    def close(self) -> None:
        self.conn.close()


def station_yaml(path: Path, *, station: str, region: str, port: int, state: Path,
                 security: dict[str, Any] | None = None) -> Path:
    """Production defaults (keepalive, reconnect back-off, heartbeat) with mock GPIO."""
    doc = {
        "station": {"id": station, "region": region},
        "broker": {"host": "127.0.0.1", "port": port, "protocol": "5"},
        "gpio": {"pin_factory": "mock",
                 "siren": {"pin": 5, "active_high": False},
                 "beacon": {"pin": 27, "active_high": True},
                 "ack_button": {"pin": 22, "pull_up": True, "bounce_ms": BOUNCE_MS}},
        # room above the backlog phase's 10,000 waiting events (production default 10,000:
        # at the bound the oldest non-ack events are dropped, which is not what it measures)
        "storage": {"path": str(state / "state.db"), "outbox_max": 20_000},
        "logging": {"level": "INFO"},
    }
    if security is not None:
        doc["security"] = security
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def station_command() -> list[str]:
    script = Path(sys.executable).parent / "polres-station"
    return [str(script)] if script.exists() else [sys.executable, "-m", "station.cli"]


# The fixed choices alone (guide: paho-mqtt, gpiozero, PyYAML, SQLite) plus the standard
# modules every Python service imports: the floor under the station's own resident memory.
RSS_FLOOR_IMPORTS = ("paho.mqtt.client, gpiozero, yaml, sqlite3, json, logging, argparse, "
                     "uuid, hashlib, queue, threading, dataclasses, ctypes")


def rss_floor_mb() -> float:
    """VmRSS of the same interpreter after importing only :data:`RSS_FLOOR_IMPORTS`."""
    code = (f"import gc, {RSS_FLOOR_IMPORTS}; gc.collect(); "
            "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return round(int(out.stdout.strip()) / 1024, 2)


def compile_station() -> None:
    """Byte-compile the station's package, as its installation does (pip writes the ``.pyc``
    of every module it installs into the package's venv). A source tree run with
    ``PYTHONDONTWRITEBYTECODE`` set keeps none, and every ``polres-station run`` would then
    compile the station from source: ~35 ms of its start and the compiler's memory, which no
    installed station pays."""
    import compileall
    compileall.compile_dir(str(Path(station_service.__file__).parent), quiet=1)


def cpu_ns(pid: int) -> int:
    """CPU time of all threads so far: per-thread schedstat (ns) summed."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


# --- one broker setting ---------------------------------------------------------------------

class Run:
    def __init__(self, workdir: Path, plan: Plan, nodelay: bool, *, full_extras: bool,
                 press_delay: float = PRESS_DELAY_S,
                 only_latency: bool = False, only_b2b: bool = False,
                 only_backlog: bool = False, only_burst: bool = False,
                 only_signed: bool = False, only_startup: bool = False,
                 dump: Path | None = None) -> None:
        self.only_startup = only_startup
        self.only_burst = only_burst
        self.only_signed = only_signed
        self.only_latency = only_latency
        self.only_b2b = only_b2b
        self.only_backlog = only_backlog
        self.workdir = workdir
        self.press_delay = press_delay
        self.dump = dump
        self.plan = plan
        self.nodelay = nodelay
        self.full_extras = full_extras          # idle + memory phases (default setting only)
        self.r: dict[str, Any] = {"broker_set_tcp_nodelay": nodelay}
        self.broker = Broker(workdir / "broker", nodelay=nodelay)
        self.echo: Child | None = None
        self.desk: Desk | None = None
        self.dispatch: Dispatch | None = None
        self.host: Host | None = None
        self.disk = DiskProbe(workdir / "station" / "disk-probe.db")

    def run(self) -> dict[str, Any]:
        self.r["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
        try:
            self.broker.start()
            self.echo = Child(["echo", "--port", str(self.broker.port), "--sub", FLOOR_A,
                               "--pub", FLOOR_B], self.workdir / "echo.log")
            self.desk = Desk(self.broker.port)
            self.dispatch = Dispatch(self.broker.port)
            self._wait_echo()
            if not (self.only_latency or self.only_b2b or self.only_backlog or self.only_burst
                    or self.only_signed):
                self.phase_startup()
            if self.only_startup:
                return self.r
            t_host = mono()
            self.host = Host(station_yaml(self.workdir / "station.yaml", station=STATION,
                                          region=REGION, port=self.broker.port,
                                          state=self.workdir / "station"),
                             self.workdir / "station.log")
            # "connected" is set before the broker has the SUBSCRIBE; the birth status goes
            # after it on the same connection, so once the desk has it complaints arrive.
            self.desk.wait(lambda: any(t >= t_host and st == STATION and doc.get("state") ==
                                       "online" for t, st, doc in self.desk.status),
                           "the station's birth status")
            if self.only_b2b or self.only_backlog or self.only_burst or self.only_signed:
                if self.only_signed:
                    self.phase_signed()
                if self.only_b2b:
                    self.phase_b2b()
                if self.only_backlog:
                    self.phase_backlog()
                if self.only_burst:
                    self.phase_burst()
                return self.r
            self.phase_latency()
            if self.only_latency:
                return self.r
            self.phase_b2b()
            self.phase_signed()
            if self.full_extras:
                self.phase_backlog()
            self.phase_burst()
            self.phase_reconnect()
            if self.full_extras:
                self.phase_memory()
            self.r.update({f"events_{k}": v for k, v in self.desk.seq_check(STATION).items()})
            self.r["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        finally:
            self.close()
        return self.r

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
        if self.echo is not None:
            self.echo.stop()
        for c in (self.dispatch, self.desk):
            if c is not None:
                c.close()
        self.disk.close()
        self.broker.stop()

    def _wait_echo(self) -> None:
        assert self.desk and self.dispatch
        deadline = mono() + 10
        while mono() < deadline:
            self.floor_sample("warm", timeout=0.5, record=False)
            if "warm" in self.desk.floor:
                return
        raise BenchError("the echo client does not answer")

    # --- floor and latency rounds -----------------------------------------------------------

    def floor_sample(self, fid: str, timeout: float = TIMEOUT_S, record: bool = True) -> float:
        assert self.desk and self.dispatch
        t0 = self.dispatch.publish(FLOOR_A, complaint(fid))
        if not record:
            with self.desk.cond:
                self.desk.cond.wait_for(lambda: fid in self.desk.floor, timeout)
            return 0.0
        return self.desk.wait(lambda: self.desk.floor.get(fid), f"floor {fid}", timeout) - t0

    def phase_latency(self) -> None:
        assert self.desk and self.dispatch and self.host
        plan, bounce = self.plan, BOUNCE_MS / 1000
        floor, relay, alerting, ack, disk, inside = [], [], [], [], [], []
        log(f"latency: {plan.warmup} + {plan.samples} rounds")
        # No collector pause in the measuring process between a t0 and its publish, or while
        # the desk takes a receive time (the station's own process keeps its collector).
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            self._rounds(floor, relay, alerting, ack, disk, inside)
        finally:
            gc.enable()
            gc.unfreeze()
        if self.dump is not None:
            self.dump.write_text(json.dumps({"floor": floor, "relay": relay,
                                             "alerting": alerting, "ack": ack, "disk": disk}))
        self.r.update(summary("floor", floor))
        self.r.update(summary("relay", relay))
        self.r.update(summary("relay_inside", inside))
        self.r.update(summary("alerting", alerting))
        self.r.update(summary("ack", ack))
        self.r.update(summary("ack_after_debounce", [a - bounce for a in ack]))
        self.r.update(summary("disk_commit", disk))
        self.r.update(summary("disk_floor", disk))
        self.r["ack_debounce_ms"] = BOUNCE_MS
        relay_by = {p: [relay[i] for i in range(len(relay)) if (i + plan.warmup) % 3 == k]
                    for k, p in enumerate(PRIORITIES)}
        for p, values in relay_by.items():
            self.r[f"relay_{p}_p99_ms"] = summary("x", values)["x_p99_ms"]

    def _rounds(self, floor: list[float], relay: list[float], alerting: list[float],
                ack: list[float], disk: list[float], inside: list[float]) -> None:
        assert self.desk and self.dispatch and self.host
        plan, bounce = self.plan, BOUNCE_MS / 1000
        for i in range(plan.warmup + plan.samples):
            keep = i >= plan.warmup
            cid = f"lat-{i}"
            t0 = self.dispatch.publish(COMPLAINTS, complaint(cid, PRIORITIES[i % 3]))
            t_alert = self.desk.wait_first("alerting", cid)
            t_relay = self.host.relay_on_after(t0)
            time.sleep(max(0.0, t0 + self.press_delay - mono()))
            t_press = self.host.press()
            t_ack = self.desk.wait_first("ack", cid)
            t_release = self.host.release()
            d = self.disk.sample()
            # the release must be debounced (and its status due) before the floor sample and
            # the next round; then wait for the station to be idle
            time.sleep(max(0.0, t_release + bounce + STATUS_SETTLE_S + QUIET_MARGIN_S - mono()))
            f = self.floor_sample(f"f-{i}")
            self.wait_quiet()
            if keep:
                floor.append(f)
                relay.append(t_relay - t0)
                alerting.append(t_alert - t0)
                ack.append(t_ack - t_press)
                disk.append(d)
                inside.append(self.desk.inside.get(cid, math.nan))

    def wait_quiet(self) -> None:
        """Until the station has published no status for longer than its coalescing gap."""
        assert self.desk
        while True:
            with self.desk.cond:
                last = max((t for t, st, _ in self.desk.status[-8:] if st == STATION),
                           default=0.0)
            wait = last + STATUS_GAP_S + QUIET_MARGIN_S - mono()
            if wait <= 0:
                return
            time.sleep(wait)

    # --- back to back ------------------------------------------------------------------------

    def phase_b2b(self) -> None:
        """HQ during a mass incident: each message sent as soon as the previous one's effect
        arrived. Floor: A → B, the next A at once. Station: complaint → `alerting`, at once the
        remote ack → `ack`, at once the next complaint. No idle wait anywhere, so a segment
        left unacknowledged by one message meets the next (the 40 ms Nagle/delayed-ACK step)."""
        assert self.desk and self.dispatch and self.host
        n = self.plan.b2b
        log(f"back to back: {n} rounds of floor, complaint, remote ack")
        self.host.relay_ons()
        floor: list[float] = []
        t0s, alerting, acks = [], [], []
        gc.collect()
        gc.freeze()
        gc.disable()             # as in the latency rounds: no collector pause in the bench
        try:
            for i in range(n + 5):
                # interleaved: the machine's noise falls on the floor and the station alike
                floor.append(self.floor_sample(f"fb-{i}"))
                cid = f"b2b-{i}"
                t0 = self.dispatch.publish(COMPLAINTS, complaint(cid, PRIORITIES[i % 3]))
                t_alert = self.desk.wait_first("alerting", cid)
                t1 = self.dispatch.publish(CMD, ack_command(cid))
                t_ack = self.desk.wait_first("ack", cid)
                t0s.append(t0)
                alerting.append(t_alert - t0)
                acks.append(t_ack - t1)
        finally:
            gc.enable()
            gc.unfreeze()
        ons = sorted(self.host.relay_ons())
        relay = []
        for t0 in t0s:
            hit = next((t for t in ons if t >= t0), None)
            relay.append(math.nan if hit is None else hit - t0)
        relay = [v for v in relay[5:] if not math.isnan(v)]
        floor = floor[5:]
        self.r.update(summary("floor_b2b", floor))
        self.r.update(summary("relay_b2b", relay))
        self.r.update(summary("alerting_b2b", alerting[5:]))
        self.r.update(summary("ack_remote_b2b", acks[5:]))
        self.r["b2b_steps_over_20ms"] = {
            k: sum(v > 0.020 for v in vals) for k, vals in
            (("floor", floor), ("relay", relay), ("alerting", alerting[5:]),
             ("ack_remote", acks[5:]))}
        self.wait_quiet()

    # --- signatures on ------------------------------------------------------------------------

    def phase_signed(self) -> None:
        """A second station that requires signatures (``security.hq_keys`` and ``desk_keys``:
        docs/SIGNING.md): each signed complaint → siren relay on, then HQ's signed remote ack →
        relay off, then the station idles. The verification sits before the relay."""
        assert self.desk and self.dispatch
        from station import signing
        missing = signing.check_library()
        if missing:                   # reported as absent, not as a failure of the run
            log(f"signed station skipped: {missing}")
            return
        hq, desk = signing.generate("bench-hq"), signing.generate("bench-desk")
        n = self.plan.b2b
        log(f"signed station: {n} rounds")
        keys = self.workdir / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        for key, name in ((hq, "hq"), (desk, "desk")):
            (keys / f"{name}.pub.pem").write_text(signing.public_pem(key.public_key))
        security = {"hq_keys": [{"kid": hq.kid, "public_key_file": str(keys / "hq.pub.pem")}],
                    "desk_keys": [{"kid": desk.kid,
                                   "public_key_file": str(keys / "desk.pub.pem")}]}
        t_host = mono()
        host = Host(station_yaml(self.workdir / "signed.yaml", station=SIGNED_STATION,
                                 region=SIGNED_REGION, port=self.broker.port,
                                 state=self.workdir / "signed-state", security=security),
                    self.workdir / "signed.log")
        topic = f"{ROOT}/region/{SIGNED_REGION}/complaints"
        cmd = f"{ROOT}/station/{SIGNED_STATION}/cmd"
        try:
            self.desk.wait(lambda: any(t >= t_host and st == SIGNED_STATION
                                       and doc.get("state") == "online"
                                       for t, st, doc in self.desk.status),
                           "the signed station's birth status")
            relay: list[float] = []
            for i in range(n + 3):
                cid = f"sig-{i}"
                payload = signing.sign_payload(complaint(cid, PRIORITIES[i % 3], SIGNED_REGION),
                                               topic, hq)
                t0 = self.dispatch.publish(topic, payload)
                t_on = host.relay_on_after(t0)
                ack = signing.sign_payload(ack_command(cid), cmd, desk)
                t1 = self.dispatch.publish(cmd, ack)
                host.relay_off_after(t1)
                if i >= 3:
                    relay.append(t_on - t0)
                time.sleep(STATUS_GAP_S)
        finally:
            host.close()
        self.r.update(summary("relay_signed", relay))

    # --- a long outage: the outbox full -----------------------------------------------------

    def phase_backlog(self) -> None:
        """Relay and the durable commit of each new alarm with ``plan.backlog`` events waiting
        in the outbox, against the same rounds with it empty. The station's outbox stops
        sending as while the broker is away (complaints still arrive); each round: complaint →
        relay on, HQ's remote ack → relay off, then the station idles (0.1 s)."""
        assert self.desk and self.dispatch and self.host
        n = self.plan.backlog_samples
        log(f"outbox backlog: {n} rounds empty, {n} rounds with {self.plan.backlog:,} waiting")
        for label, fill in (("empty", 0), ("backlog", self.plan.backlog)):
            pending = self.host.op("hold", n=fill)["pending"]
            if pending < fill:
                raise BenchError(f"outbox holds {pending} events, not {fill}")
            self.host.op("commits")
            relay: list[float] = []
            for i in range(n + 3):
                cid = f"bl-{label}-{i}"
                t0 = self.dispatch.publish(COMPLAINTS, complaint(cid, PRIORITIES[i % 3]))
                t_on = self.host.relay_on_after(t0)
                t1 = self.dispatch.publish(CMD, ack_command(cid))
                self.host.relay_off_after(t1)
                if i >= 3:
                    relay.append(t_on - t0)
                time.sleep(STATUS_GAP_S)
            commits = self.host.op("commits")["s"]
            self.r.update(summary(f"outbox_{label}_relay", relay))
            self.r.update(summary(f"outbox_{label}_commit", commits[-2 * n:]))
            self.r[f"outbox_{label}_pending"] = pending
            # the broker is back: how fast the outbox catches up (HQ's view of an outage)
            before, t_up = self.host.op("pending")["pending"], mono()
            self.host.op("release_hold")
            deadline = t_up + 600
            while (left := self.host.op("pending")["pending"]) > 0:
                if mono() > deadline:
                    raise BenchError(f"the outbox did not drain after the hold ({left} left)")
                time.sleep(0.05)
            self.r[f"outbox_{label}_drain_s"] = round(mono() - t_up, 2)
            self.r[f"outbox_{label}_drain_per_s"] = round(before / max(1e-3, mono() - t_up), 1)
        self.wait_quiet()

    # --- burst ------------------------------------------------------------------------------

    def phase_burst(self) -> None:
        assert self.desk and self.dispatch and self.host
        n = self.plan.burst
        log(f"burst of {n}: the echo floor, then the station")
        self._floor_burst(n)
        payloads = [complaint(f"burst-{i}", "urgent") for i in range(n)]
        assert self.broker.proc is not None
        cpu0 = {"station": cpu_ns(self.host.pid), "broker": cpu_ns(self.broker.proc.pid),
                "bench": cpu_ns(os.getpid())}
        t0 = mono()
        for p in payloads:
            self.dispatch.client.publish(COMPLAINTS, p, qos=1)
        t_sent = mono()
        key = ("alerting", "burst")
        last, last_change = -1, mono()
        while True:       # until all arrived, or nothing new for 5 s
            with self.desk.cond:
                self.desk.cond.wait_for(lambda: self.desk.counts[key] >= n, 0.5)
                got = self.desk.counts[key]
            if got >= n:
                break
            if got != last:
                last, last_change = got, mono()
            elif mono() - last_change > 5:
                break
        with self.desk.cond:
            times = [t for cid, t in self.desk.first["alerting"].items()
                     if cid.startswith("burst-")]
            double = sum(v for cid, v in self.desk.repeats["alerting"].items()
                         if cid.startswith("burst-"))
        cpu1 = {"station": cpu_ns(self.host.pid), "broker": cpu_ns(self.broker.proc.pid),
                "bench": cpu_ns(os.getpid())}
        # CPU per complaint of each process over the burst (2 cores: where the time goes)
        self.r["burst_cpu_us_per_complaint"] = {k: round((cpu1[k] - cpu0[k]) / 1000 / n, 1)
                                                for k in cpu0}
        self.r["burst_n"] = n
        self.r["burst_publish_s"] = round(t_sent - t0, 4)
        self.r["burst_s"] = round(max(times) - t0, 4) if times else None
        self.r["burst_rate_per_s"] = round(len(times) / (max(times) - t0), 1) if times else 0.0
        self.r["burst_lost"] = n - len(times)
        self.r["burst_double"] = double
        floor_rate = self.r.get("burst_floor_rate_per_s") or 0.0
        self.r["burst_vs_floor"] = (round(self.r["burst_rate_per_s"] / floor_rate, 3)
                                    if floor_rate else None)
        t_press = self.host.press()
        self.desk.wait(lambda: self.desk.counts[("ack", "burst")] >= len(times),
                       "acks of the burst")
        with self.desk.cond:
            last_ack = max(t for cid, t in self.desk.first["ack"].items()
                           if cid.startswith("burst-"))
        self.r["burst_ack_all_ms"] = round((last_ack - t_press) * 1000, 1)
        self.host.release()
        time.sleep(BOUNCE_MS / 1000 + 0.05)

    def _floor_burst(self, n: int) -> None:
        """The bare echo client taking ``n`` QoS 1 messages as fast as they come: the rate
        this machine and broker allow any paho program in this run (first publish → last echo
        at the desk)."""
        assert self.desk and self.dispatch
        payloads = [complaint(f"fburst-{i}", "urgent") for i in range(n)]
        t0 = mono()
        for p in payloads:
            self.dispatch.client.publish(FLOOR_A, p, qos=1)
        ids = [f"fburst-{i}" for i in range(n)]
        try:
            self.desk.wait(lambda: all(i in self.desk.floor for i in ids), "the floor burst", 60)
        except BenchError:
            pass
        with self.desk.cond:
            times = [self.desk.floor[i] for i in ids if i in self.desk.floor]
        self.r["burst_floor_lost"] = n - len(times)
        self.r["burst_floor_rate_per_s"] = (round(len(times) / (max(times) - t0), 1)
                                            if times else 0.0)
        time.sleep(0.2)

    # --- broker restart ---------------------------------------------------------------------

    def phase_reconnect(self) -> None:
        assert self.desk and self.dispatch and self.host
        log(f"broker restarts: {self.plan.reconnects}")
        relay_s, alert_s, queued = [], [], 0
        for k in range(self.plan.reconnects):
            time.sleep(0.2)
            self.broker.stop()
            t_up = self.broker.start()
            cid = f"rc-{k}"
            pub = make_client(client_id=f"bench-restart-{k}")
            try:
                pub.connect("127.0.0.1", self.broker.port, keepalive=30)
                pub.loop_start()
                info = pub.publish(COMPLAINTS, complaint(cid, "emergency"), qos=1)
                info.wait_for_publish(10)
                queued += not self.host.call("connected")["connected"]
            finally:
                pub.disconnect()
                pub.loop_stop()
            relay_s.append(self.host.relay_on_after(t_up) - t_up)
            alert_s.append(self.desk.wait_first("alerting", cid) - t_up)
            self.host.press()
            self.desk.wait_first("ack", cid)
            self.host.release()
            time.sleep(BOUNCE_MS / 1000 + 0.05)
            for c in (self.desk.client, self.dispatch.client):
                deadline = mono() + 10
                while not c.is_connected() and mono() < deadline:
                    time.sleep(0.01)
        self.r["reconnect_s"] = round(max(relay_s), 3)
        self.r["reconnect_p50_s"] = round(pct(relay_s, 0.5), 3)
        self.r["reconnect_alerting_max_s"] = round(max(alert_s), 3)
        self.r["reconnect_trials"] = len(relay_s)
        self.r["reconnect_queued"] = queued

    # --- the real process: start-up and idle ------------------------------------------------

    def phase_startup(self) -> None:
        assert self.desk
        plan = self.plan
        log(f"polres-station run: {plan.startups} starts"
            + (f", idle {plan.idle_s:g} s" if self.full_extras else ""))
        state = self.workdir / "proc-state"
        cfg = station_yaml(self.workdir / "proc-station.yaml", station=PROC_STATION,
                           region=PROC_REGION, port=self.broker.port, state=state)
        boots: set[str] = set()
        times: list[float] = []
        by_status: list[float] = []
        presence_seen = 0
        logf = open(self.workdir / "proc-station.log", "ab")
        for k in range(plan.startups):
            keep = self.full_extras and k == plan.startups - 1
            t0 = mono()
            proc = subprocess.Popen([*station_command(), "run", "-c", str(cfg)],
                                    stdout=logf, stderr=logf, cwd=str(self.workdir))
            try:
                def online(docs: list[tuple[float, str, dict[str, Any]]]) -> tuple | None:
                    for t, st, doc in reversed(docs):
                        if (t >= t0 and st == PROC_STATION and doc.get("state") == "online"
                                and doc.get("boot_id") not in boots):
                            return t, str(doc.get("boot_id"))
                    return None
                t_status, boot = self.desk.wait(lambda: online(self.desk.status),
                                                "status online", 30)
                # The birth presence and the first status leave on the same connection but
                # not always in that order (the outbox writes the status on its own): give
                # the presence a moment instead of reporting it missing.
                try:
                    hit = self.desk.wait(lambda: online(self.desk.presence),
                                         "presence online", 2)
                except BenchError:
                    hit = None
                by_status.append(t_status - t0)
                if hit is not None and hit[1] == boot:
                    presence_seen += 1
                    times.append(hit[0] - t0)
                else:
                    times.append(t_status - t0)
                boots.add(boot)
                if keep:
                    self._idle(proc.pid)
            finally:
                proc.terminate()
                rc = proc.wait(15)
            if rc != 0:
                raise BenchError(f"polres-station run exited {rc} on SIGTERM")
            time.sleep(0.2)
        logf.close()
        self.r["startup_s"] = round(max(times), 3)
        self.r["startup_p50_s"] = round(pct(times, 0.5), 3)
        self.r["startup_all_s"] = [round(t, 3) for t in times]
        self.r["startup_status_s"] = round(max(by_status), 3)
        self.r["startup_measures"] = ("presence `online`" if presence_seen == len(times)
                                      else "status `online` (no presence published)")

    def _idle(self, pid: int) -> None:
        time.sleep(self.plan.settle_s)
        c0, w0 = cpu_ns(pid), mono()
        rss: list[dict[str, int]] = []
        while mono() < w0 + self.plan.idle_s:
            time.sleep(min(1.0, max(0.0, w0 + self.plan.idle_s - mono())))
            rss.append(proc_status(pid))
        c1, w1 = cpu_ns(pid), mono()
        self.r["idle_window_s"] = round(w1 - w0, 1)
        self.r["idle_cpu_pct"] = round((c1 - c0) / 1e9 / (w1 - w0) * 100, 4)
        self.r["idle_rss_mb"] = round(rss[-1]["VmRSS"] / 1024, 2)
        self.r["idle_rss_max_mb"] = round(max(s["VmRSS"] for s in rss) / 1024, 2)
        self.r["idle_rss_anon_mb"] = round(rss[-1]["RssAnon"] / 1024, 2)
        self.r["rss_floor_mb"] = rss_floor_mb()
        self.r["idle_rss_over_floor_mb"] = round(self.r["idle_rss_mb"] - self.r["rss_floor_mb"], 2)
        self.r["idle_rss_file_mb"] = round(rss[-1]["RssFile"] / 1024, 2)

    # --- memory over many complaints --------------------------------------------------------

    def _batch(self, prefix: str, n: int) -> None:
        assert self.desk and self.dispatch and self.host
        for i in range(n):
            self.dispatch.client.publish(COMPLAINTS, complaint(f"{prefix}-{i}",
                                                               PRIORITIES[i % 3]), qos=1)
        self.desk.wait(lambda: self.desk.counts[("alerting", prefix)] >= n,
                       f"alerting of batch {prefix}")
        self.host.press()
        self.desk.wait(lambda: self.desk.counts[("ack", prefix)] >= n, f"acks of batch {prefix}")
        self.host.release()
        time.sleep(BOUNCE_MS / 1000 + 0.02)

    def phase_memory(self) -> None:
        assert self.host
        plan = self.plan
        batches = plan.mem_total // plan.mem_batch
        log(f"memory: {batches} batches of {plan.mem_batch}")
        self._batch("mwarm", plan.mem_batch)
        before = self.host.mem()
        trace = [before["rss_kb"]]
        t0 = mono()
        for b in range(batches):
            self._batch(f"m{b}", plan.mem_batch)
            if (b + 1) % max(1, batches // 10) == 0:
                trace.append(self.host.mem()["rss_kb"])
        elapsed = mono() - t0
        after = self.host.mem()
        self.r["mem_complaints"] = batches * plan.mem_batch
        self.r["mem_before_mb"] = round(before["rss_kb"] / 1024, 2)
        self.r["mem_after_mb"] = round(after["rss_kb"] / 1024, 2)
        self.r["mem_growth_mb"] = round((after["rss_kb"] - before["rss_kb"]) / 1024, 2)
        self.r["mem_peak_mb"] = round(after["hwm_kb"] / 1024, 2)
        self.r["mem_trace_mb"] = [round(k / 1024, 2) for k in trace]
        self.r["mem_rate_per_s"] = round(batches * plan.mem_batch / elapsed, 1)


# --- report ---------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "paho_mqtt": version("paho-mqtt"),
            "gpiozero": version("gpiozero"),
            "mosquitto": mosquitto_version(), "sqlite": sqlite3.sqlite_version}


def fs_type(path: Path) -> str:
    best, kind = "", "unknown"
    try:
        for line in open("/proc/mounts"):
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], f"{parts[2]} ({parts[0]})"
    except OSError:
        pass
    return kind


@dataclass(frozen=True)
class Row:
    """One line of the table for one broker setting."""

    figure: str
    target: str                 # as written in the table
    measured: str
    ok: bool | None             # None: context, not judged
    key: str | None = None      # the results key judged
    limit: float | None = None  # the target's value, in the key's unit


def _limit_text(parts: list[tuple[str, float | None]], extra: float) -> tuple[str, float | None]:
    names = " + ".join(n for n, _ in parts)
    if any(v is None for _, v in parts):
        return f"≤ {names} + {extra:g} ms", None
    total = sum(v for _, v in parts if v is not None) + extra
    return f"≤ {names} + {extra:g} ms = {total:.2f} ms", total


def evaluate(r: dict[str, Any]) -> list[Row]:
    """The second edition's targets (docs/PERFORMANCE.md) for one setting."""
    def ms(key: str) -> str:
        return "—" if r.get(key) is None else f"{r[key]:.2f} ms"

    def judged(label: str, key: str, parts: list[tuple[str, float | None]], extra: float,
               measured: str | None = None) -> Row:
        target, limit = _limit_text(parts, extra)
        v = r.get(key)
        ok = None if v is None or limit is None else v <= limit
        return Row(label, target, measured or f"{ms(key)} (p50 {ms(key.replace('p99', 'p50'))})",
                   ok, key, limit)

    floor, disk = r.get("floor_p99_ms"), r.get("disk_floor_p99_ms", r.get("disk_commit_p99_ms"))
    fb = r.get("floor_b2b_p99_ms")
    F, D = ("floor p99", floor), ("disk floor p99", disk)
    rows = [Row("floor: bare paho echo A→B, QoS 1 (p50 / p99)", "—",
                f"{ms('floor_p50_ms')} / {ms('floor_p99_ms')}", None),
            Row("disk floor: one SQLite FULL commit (p50 / p99)", "—",
                f"{ms('disk_commit_p50_ms')} / {ms('disk_commit_p99_ms')}", None)]
    if r.get("relay_p99_ms") is not None:
        rows += [
            judged("complaint → siren relay on, p99", "relay_p99_ms", [F], 0.5),
            judged("complaint → `alerting` at HQ, p99", "alerting_p99_ms", [F, D], 1),
            judged(f"button press → `ack` at HQ, p99 (incl. {BOUNCE_MS} ms debounce)",
                   "ack_p99_ms", [("bounce_ms", float(BOUNCE_MS)), F, D], 1),
            judged("debounced press → `ack` at HQ, p99", "ack_after_debounce_p99_ms", [F, D], 1)]
    if r.get("relay_signed_p99_ms") is not None:
        rows.append(judged("signed complaint → siren relay on, p99", "relay_signed_p99_ms",
                           [F], 0.5))
    if r.get("floor_b2b_p99_ms") is not None:
        FB = ("b2b floor p99", fb)
        rows += [
            Row("back to back: floor (p50 / p99)", "—",
                f"{ms('floor_b2b_p50_ms')} / {ms('floor_b2b_p99_ms')}", None),
            judged("back to back: complaint → relay on, p99 (p90)", "relay_b2b_p99_ms", [FB],
                   0.5, f"{ms('relay_b2b_p99_ms')} (p90 {ms('relay_b2b_p90_ms')})"),
            judged("back to back: complaint → `alerting`, p99 (p90)", "alerting_b2b_p99_ms",
                   [FB, D], 1, f"{ms('alerting_b2b_p99_ms')} (p90 {ms('alerting_b2b_p90_ms')})"),
            Row("back to back: remote ack → `ack`, p99 (p90)", "—",
                f"{ms('ack_remote_b2b_p99_ms')} (p90 {ms('ack_remote_b2b_p90_ms')})", None)]
    if r.get("outbox_backlog_relay_p99_ms") is not None:
        n = r.get("outbox_backlog_pending", 0)
        rows += [
            judged(f"{n:,} events waiting in the outbox: complaint → relay on, p99 "
                   f"(empty: {ms('outbox_empty_relay_p99_ms')})", "outbox_backlog_relay_p99_ms",
                   [F], 0.5),
            judged(f"{n:,} events waiting: the alarm's durable commit, p99 "
                   f"(empty: {ms('outbox_empty_commit_p99_ms')})",
                   "outbox_backlog_commit_p99_ms", [D], 1)]
    if "burst_rate_per_s" in r:
        fr = r.get("burst_floor_rate_per_s") or 0.0
        vs = r.get("burst_vs_floor")
        ok = (r["burst_lost"] == 0 and r["burst_double"] == 0 and r["burst_rate_per_s"] >= 4000
              and vs is not None and vs >= 0.6)
        rows.append(Row(f"burst of {r['burst_n']:,}",
                        "0 lost, 0 twice, ≥ 4,000/s and ≥ 0.6 × the floor's burst",
                        f"{r['burst_lost']} lost, {r['burst_double']} twice, "
                        f"{r['burst_rate_per_s']:,.0f}/s = {vs if vs is not None else '—'} × "
                        f"floor {fr:,.0f}/s", ok, "burst_rate_per_s", 4000.0))
    if "idle_rss_mb" in r:
        over = r.get("idle_rss_over_floor_mb")
        rows.append(Row("idle resident memory (VmRSS) over the memory floor",
                        "≤ floor + 3 MiB",
                        f"+{over:.2f} MiB ({r['idle_rss_mb']:.1f} MiB; floor "
                        f"{r['rss_floor_mb']:.1f} MiB: Python + paho, gpiozero, PyYAML, sqlite3 "
                        "imported)" if over is not None else f"{r['idle_rss_mb']:.1f} MiB",
                        None if over is None else over <= 3, "idle_rss_over_floor_mb", 3.0))
        rows.append(Row(f"idle CPU over {r['idle_window_s']:g} s", "≤ 0.1 % of one core",
                        f"{r['idle_cpu_pct']:.3f} %", r["idle_cpu_pct"] <= 0.1,
                        "idle_cpu_pct", 0.1))
    if "startup_s" in r:
        what = r.get("startup_measures", "status `online`")
        rows.append(Row(f"start → {what} (slowest of {len(r['startup_all_s'])})",
                        "≤ 0.3 s", f"{r['startup_s']:.3f} s (p50 {r['startup_p50_s']:.3f} s)",
                        r["startup_s"] <= 0.3, "startup_s", 0.3))
    if "reconnect_s" in r:
        rows.append(Row(f"broker restart → queued complaint alarmed (slowest of "
                        f"{r['reconnect_trials']})", "≤ 2 s",
                        f"{r['reconnect_s']:.3f} s (p50 {r['reconnect_p50_s']:.3f} s)",
                        r["reconnect_s"] <= 2, "reconnect_s", 2.0))
    if "mem_growth_mb" in r:
        rows.append(Row(f"memory growth over {r['mem_complaints']:,} complaints", "≤ 3 MB",
                        f"{r['mem_growth_mb']:+.2f} MiB ({r['mem_before_mb']:.1f} → "
                        f"{r['mem_after_mb']:.1f})", r["mem_growth_mb"] * 1.048576 <= 3,
                        "mem_growth_mb", 3 / 1.048576))
    return rows


FRAGMENTS = {   # other helpers' figures: file in bench/ → (key, label, target text, limit)
    "results-desk.json": [
        ("desk_ready_s", "web desk, 2,000 stations: page usable", "≤ 1 s", 1.0),
        ("desk_update_p99_ms", "web desk: a status change shown in the browser, p99",
         "≤ 500 ms", 500.0)],
    "results-cluster.json": [
        ("cluster_failover_s", "cluster node holding the session killed → queued complaint "
         "alarmed", "≤ 10 s, none lost", 10.0)],
}


def merge_fragments(results: dict[str, Any], folder: Path = HERE) -> list[Row]:
    """Figures other parts of the project measure (web desk, cluster), from their own files
    in bench/ when present: copied into ``results`` and judged; never run from here."""
    rows: list[Row] = []
    for name, figures in FRAGMENTS.items():
        path = folder / name
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            log(f"{name}: unreadable ({e}); left out")
            continue
        for key, label, target, limit in figures:
            v = doc.get(key)
            if not isinstance(v, (int, float)):
                continue
            results[key] = v
            ok = v <= limit and not doc.get(key.rsplit("_", 1)[0] + "_lost", 0)
            unit = "ms" if key.endswith("_ms") else "s"
            rows.append(Row(f"{label} ({name})", target, f"{v:g} {unit}", ok, key, limit))
        results.setdefault("fragments", {})[name] = {
            k: doc[k] for k in ("measured_at", "machine", "command") if k in doc}
    return rows


def table(results: dict[str, Any], extra: list[Row] | None = None) -> str:
    settings = [k for k in ("nodelay_false", "nodelay_true") if k in results]
    per = {k: evaluate(results[k]) for k in settings}
    figures: dict[str, str] = {}
    for k in settings:
        for row in per[k]:
            figures.setdefault(row.figure, row.target.split(" = ")[0])
    heads = {"nodelay_false": "broker `set_tcp_nodelay false` (default)",
             "nodelay_true": "broker `set_tcp_nodelay true`"}
    lines = ["| figure | target (second edition) | " + " | ".join(
        f"{heads[k]} | " for k in settings) + "|",
        "|---|---|" + "---|---|" * len(settings)]
    mark = {True: "pass", False: "**MISS**", None: ""}

    def cell(row: Row) -> str:
        if row.limit is None or " = " not in row.target:
            return row.measured
        return f"{row.measured}; limit {row.target.split(' = ')[1]}"

    for fig, target in figures.items():
        cells = []
        for k in settings:
            row = next((r for r in per[k] if r.figure == fig), None)
            cells += ["— (default setting only)", ""] if row is None else [cell(row),
                                                                            mark[row.ok]]
        lines.append(f"| {fig} | {target} | " + " | ".join(cells) + " |")
    for row in extra or []:
        cells = [row.measured, mark[row.ok]] + ["— (measured once)", ""] * (len(settings) - 1)
        lines.append(f"| {row.figure} | {row.target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def judgements(results: dict[str, Any], extra: list[Row]) -> dict[str, Any]:
    """key → {value, target, pass} per setting (and for the merged figures)."""
    out: dict[str, Any] = {}
    for k in ("nodelay_false", "nodelay_true"):
        if k in results:
            out[k] = {row.key: {"value": results[k].get(row.key), "target": row.target,
                                "limit": None if row.limit is None else round(row.limit, 3),
                                "pass": row.ok}
                      for row in evaluate(results[k]) if row.key and row.ok is not None}
    if extra:
        out["merged"] = {row.key: {"value": results.get(row.key), "target": row.target,
                                   "limit": row.limit, "pass": row.ok} for row in extra}
    return out


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    return (f"{m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, "
            f"paho-mqtt {m['paho_mqtt']}, mosquitto {m['mosquitto']}, SQLite {m['sqlite']}; "
            f"station state on {results['state_fs']}; load average (1/5/15 min) before "
            f"{'/'.join(map(str, results.get('loadavg_before', [])))}, after "
            f"{'/'.join(map(str, results.get('loadavg_after', [])))}; {results['mode']} run "
            f"({results['samples']} samples per latency) at {results['finished_at']}, "
            f"{results['duration_s']:.0f} s")


DOC_BEGIN, DOC_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def update_doc(doc: Path, results: dict[str, Any], tbl: str) -> None:
    if not doc.exists():
        return
    text = doc.read_text()
    if DOC_BEGIN not in text or DOC_END not in text:
        return
    head, _, rest = text.partition(DOC_BEGIN)
    _, _, tail = rest.partition(DOC_END)
    block = f"{DOC_BEGIN}\nMachine: {machine_line(results)}.\n\n{tbl}\n{DOC_END}"
    doc.write_text(head + block + tail)


# --- main -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="seconds, ~50 samples (for the tests)")
    p.add_argument("--out", type=Path,
                   help="results file (default bench/results.json; with --quick "
                        "bench/.work/results-quick.json, so the committed full run stays)")
    p.add_argument("--nodelay", choices=["both", "false", "true"], default="both",
                   help="broker set_tcp_nodelay setting(s) to run (default both)")
    p.add_argument("--samples", type=int, help="latency rounds per setting (override)")
    p.add_argument("--workdir", type=Path, default=HERE / ".work",
                   help="broker and station state (on a real disk: fsync is measured)")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "PERFORMANCE.md",
                   help="refresh the table in this file (full runs only)")
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/PERFORMANCE.md")
    p.add_argument("--press-delay", type=float, default=PRESS_DELAY_S,
                   help="seconds from complaint to button press (default %(default)s)")
    p.add_argument("--only-latency", action="store_true",
                   help="latency rounds only (for profiling)")
    p.add_argument("--only-b2b", action="store_true",
                   help="back-to-back rounds only (for the Nagle/delayed-ACK hunt)")
    p.add_argument("--only-signed", action="store_true",
                   help="the signed station's relay rounds only")
    p.add_argument("--only-burst", action="store_true",
                   help="the floor's and the station's burst only (for profiling)")
    p.add_argument("--only-backlog", action="store_true",
                   help="outbox backlog rounds only (default broker setting)")
    p.add_argument("--only-startup", action="store_true",
                   help="`polres-station run` starts only, then its idle window (default "
                        "setting; pair with --nodelay false)")
    p.add_argument("--dump", type=Path, help="write the raw latency samples here (prefix)")
    args = p.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.out is None:
        args.out = HERE / ".work" / "results-quick.json" if args.quick else HERE / "results.json"
    if args.samples:
        plan = Plan(**{**asdict(plan), "samples": args.samples})
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    workdir = args.workdir / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    # "both": true first, so the default setting's 100,000-complaint phase (minutes of load)
    # ends the run instead of preceding the other setting's latency rounds
    settings = {"both": [True, False], "false": [False], "true": [True]}[args.nodelay]
    started = mono()
    results: dict[str, Any] = {
        "machine": machine(), "state_fs": fs_type(workdir.resolve()),
        "mode": "quick" if args.quick else "full", "samples": plan.samples,
        "plan": asdict(plan)}
    compile_station()
    if "tmpfs" in results["state_fs"]:
        log("warning: station state on tmpfs: fsync costs nothing here, unlike on a Pi")
    try:
        for nodelay in settings:
            log(f"broker set_tcp_nodelay {str(nodelay).lower()}")
            key = f"nodelay_{str(nodelay).lower()}"
            results[key] = Run(workdir / key, plan, nodelay,
                               full_extras=(nodelay is False or settings == [True]),
                               press_delay=args.press_delay,
                               only_latency=args.only_latency,
                               only_b2b=args.only_b2b, only_backlog=args.only_backlog,
                               only_burst=args.only_burst, only_signed=args.only_signed,
                               only_startup=args.only_startup,
                               dump=args.dump and Path(f"{args.dump}-{key}.json")).run()
    except BenchError as e:
        log(f"FAILED: {e} (logs in {workdir})")
        return 1
    default = results.get("nodelay_false") or results[f"nodelay_{str(settings[0]).lower()}"]
    for k, v in default.items():
        results.setdefault(k, v)
    results["loadavg_before"] = results[f"nodelay_{str(settings[0]).lower()}"]["loadavg_before"]
    results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["duration_s"] = round(mono() - started, 1)
    results["finished_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results["round"] = {"press_delay_s": args.press_delay, "status_gap_s": STATUS_GAP_S,
                        "status_settle_s": STATUS_SETTLE_S}
    extra = merge_fragments(results)
    results["targets"] = {
        k: {row.figure: row.ok for row in evaluate(results[k]) if row.ok is not None}
        for k in ("nodelay_false", "nodelay_true") if k in results}
    results["judged"] = judgements(results, extra)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    tmp.replace(args.out)
    tbl = table(results, extra)
    print(f"\nMachine: {machine_line(results)}\n\n{tbl}\n")
    # Only a full run speaks for the project: a targeted mode (--only-…, one setting) writes
    # its results where --out says and leaves the committed table alone.
    targeted = args.nodelay != "both" or any(
        (args.only_latency, args.only_b2b, args.only_backlog, args.only_burst, args.only_signed,
         args.only_startup))
    if not args.quick and not args.no_doc and not targeted:
        update_doc(args.doc, results, tbl)
    shutil.rmtree(workdir, ignore_errors=True)
    log(f"results in {args.out} ({results['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
