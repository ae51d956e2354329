#!/usr/bin/env python3
"""Fleet run against the three-node RabbitMQ cluster (``make bench-fleet``; not in CI).

    .venv/bin/python bench/fleet.py                       # 200 stations, ~8 min
    .venv/bin/python bench/fleet.py --stations 20 --before 20 --outage 15 --after 20  # a try

What it does:
* boots ``config/rabbitmq/local-cluster.sh`` (three nodes, quorum sessions) in the work dir;
* starts N real ``polres-station run`` processes (mock GPIO, one region each, MQTT 3.1.1,
  production reconnect back-off), station i on node (i mod 3) + 1 with the other two as
  ``broker.failover``;
* HQ dispatch (node 2) publishes complaints at ``--rate``/s, each to a random station's region,
  counting a complaint only on its PUBACK and re-sending what is unconfirmed; the desk (node 3,
  a persistent session) collects every event, status and presence;
* phases: *before* (``--before`` s); SIGKILL of node ``--kill`` (the one holding the sessions of
  a third of the fleet), one probe complaint at once to every station of that node; *during*
  (``--outage`` s, then the node is started again and the phase lasts until it accepts MQTT);
  *after* (``--after`` s); then the run waits for the last alarms and checks everything;
* ``polres-station monitor --once --json`` against node 3 at the end: the desk's own tool.

Figures: alerting latency (HQ publish → ``alerting`` at the desk) p50/p99/max per phase by
publish time; complaints lost (no ``alerting``) and alarmed twice (two ``alerting`` events with
different ids); ``cluster_failover_s`` = the kill → the last probe's ``alerting`` at the desk
(every station of the killed node alarming again through another node; target 10 s);
time until every station of the killed node published a status from a new connection;
per node: resident memory (peak) and CPU (% of one core, mean per phase); the fleet's RSS.
Written to ``bench/results-cluster.json`` and to the fleet sections of docs/RELIABILITY.md and
docs/PERFORMANCE.md (between ``fleet`` markers; ``--no-doc`` to leave them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPT = REPO / "config" / "rabbitmq" / "local-cluster.sh"
ROOT = "polri/110"
TARGET_FAILOVER_S = 10.0
PHASES = ("before", "during", "after")


def mono() -> float:
    return time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(-(-q * len(s) // 1)) - 1))]


def cluster(*args: str, timeout: float = 300) -> str:
    done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"local-cluster.sh {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout


# --- HQ dispatch and the desk --------------------------------------------------------------

class Dispatch:
    """HQ: QoS 1 complaints, sent = PUBACKed; unconfirmed ones re-sent after ``resend_s``."""

    def __init__(self, port: int) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hq-fleet",
                             protocol=mqtt.MQTTv311, clean_session=True)
        self.c.max_inflight_messages_set(100)
        self.c.on_publish = self._on_publish
        self.lock = threading.Lock()
        self.pending: dict[int, tuple[str, str, float]] = {}   # mid → (cid, region, sent)
        self.confirmed: set[int] = set()                       # PUBACKed mids
        self.published: dict[str, float] = {}                  # cid → first publish (mono)
        self.station_of: dict[str, str] = {}
        self.resent = 0
        self.c.connect("127.0.0.1", port, keepalive=15)
        self.c.loop_start()

    def _on_publish(self, c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        # paho calls this holding its own message lock, and publish() takes that lock too:
        # never wait for our lock here (it is held around nothing of paho's either).
        self.confirmed.add(mid)

    def send(self, cid: str, region: str, station: str) -> None:
        doc = {"v": 1, "id": cid, "region": region, "priority": "urgent"}
        self.published.setdefault(cid, mono())
        self.station_of[cid] = station
        info = self.c.publish(f"{ROOT}/region/{region}/complaints", json.dumps(doc).encode(),
                              qos=1)
        with self.lock:
            self.pending[info.mid] = (cid, region, mono())

    def resend_unconfirmed(self, older_than_s: float = 10.0) -> None:
        now = mono()
        with self.lock:
            for mid in [m for m in self.pending if m in self.confirmed]:
                del self.pending[mid]
                self.confirmed.discard(mid)
            stale = [(m, v) for m, v in self.pending.items() if now - v[2] > older_than_s]
            for mid, _ in stale:
                del self.pending[mid]
        for _, (cid, region, _) in stale:
            self.resent += 1
            self.send(cid, region, self.station_of[cid])

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Desk:
    """The monitoring desk: a persistent 3.1.1 session collecting events, status, presence."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.alerting: dict[str, set[str]] = {}          # cid → event ids
        self.alert_at: dict[str, float] = {}             # cid → first alerting at the desk
        # station → [(received, session, state)]
        self.status_at: dict[str, list[tuple[float, int, str]]] = {}
        self.presence: dict[str, dict[str, Any]] = {}
        self.events = 0
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="desk-fleet",
                             protocol=mqtt.MQTTv311, clean_session=False)
        self.c.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(f"{ROOT}/station/+/events", 1), (f"{ROOT}/station/+/status", 1),
             (f"{ROOT}/station/+/presence", 1)])
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port, keepalive=15)
        self.c.loop_start()

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        t = mono()
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        leaf = msg.topic.rsplit("/", 1)[-1]
        station = msg.topic.split("/")[-2]
        with self.lock:
            if leaf == "events":
                self.events += 1
                if doc.get("type") == "alerting":
                    cid = doc["complaint_id"]
                    self.alerting.setdefault(cid, set()).add(doc["event_id"])
                    self.alert_at.setdefault(cid, t)
            elif leaf == "status":
                self.status_at.setdefault(station, []).append(
                    (t, int(doc.get("session", 0)), str(doc.get("state"))))
            elif leaf == "presence":
                self.presence[station] = doc

    def online(self) -> set[str]:
        with self.lock:
            return {s for s, v in self.status_at.items() if v and v[-1][2] == "online"}

    def last_session(self, station: str) -> int:
        with self.lock:
            v = self.status_at.get(station)
            return v[-1][1] if v else 0

    def back_at(self, station: str, after: float, session: int) -> float | None:
        """The first status from a connection newer than ``session`` received after ``after``."""
        with self.lock:
            for t, s, state in self.status_at.get(station, []):
                if t >= after and s > session and state == "online":
                    return t
        return None

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


# --- the cluster's nodes: memory and CPU -----------------------------------------------------

class NodeSampler(threading.Thread):
    """Once a second: each node's beam.smp RSS (MiB) and CPU (% of one core)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(daemon=True)
        self.workdir = workdir
        self.samples: list[tuple[float, int, float, float]] = []   # t, node, rss MiB, cpu %
        self.stop_flag = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")

    def _pid(self, n: int) -> int | None:
        try:
            return int((self.workdir / f"n{n}" / "beam.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def run(self) -> None:
        last: dict[int, tuple[float, int, int]] = {}
        while not self.stop_flag.wait(1.0):
            for n in (1, 2, 3):
                pid = self._pid(n)
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status")
                                        .read_text()).group(1)) / 1024  # type: ignore[union-attr]
                except (OSError, AttributeError, TypeError):
                    last.pop(n, None)
                    continue
                ticks, t = int(stat[11]) + int(stat[12]), mono()
                if n in last and last[n][1] == pid:
                    cpu = 100.0 * (ticks - last[n][2]) / self.tick / (t - last[n][0])
                    self.samples.append((t, n, rss, cpu))
                last[n] = (t, pid or 0, ticks)


# --- stations --------------------------------------------------------------------------------

def station_yaml(path: Path, i: int, addresses: list[str], state: Path) -> Path:
    primary = i % 3
    order = [addresses[(primary + k) % 3] for k in range(3)]
    host, port = order[0].rsplit(":", 1)
    doc = {
        "station": {"id": f"st-{i:03d}", "region": f"reg-{i:03d}"},
        "broker": {"host": host, "port": int(port), "protocol": "3.1.1",
                   "failover": order[1:]},
        "gpio": {"pin_factory": "mock", "siren": {"pin": 5, "active_high": False},
                 "beacon": {"pin": 27, "active_high": True},
                 "ack_button": {"pin": 22, "pull_up": True, "bounce_ms": 50}},
        "storage": {"path": str(state / "state.db")},
        "logging": {"level": "WARNING"},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def rss_mb(pid: int) -> float:
    try:
        m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
        return int(m.group(1)) / 1024 if m else 0.0
    except OSError:
        return 0.0


def mem_available_mb() -> float:
    m = re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


def start_fleet(n: int, addresses: list[str], work: Path, desk: Desk) -> list[subprocess.Popen]:
    exe = Path(sys.executable).parent / "polres-station"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "station.cli"]
    procs: list[subprocess.Popen] = []
    for i in range(n):
        d = work / "stations" / f"st-{i:03d}"
        d.mkdir(parents=True, exist_ok=True)
        cfg = station_yaml(d / "station.yaml", i, addresses, d / "state")
        with open(d / "station.log", "ab") as out:
            procs.append(subprocess.Popen([*cmd, "run", "-c", str(cfg)], stdout=out,
                                          stderr=out, stdin=subprocess.DEVNULL,
                                          cwd=str(REPO)))
        if i == 4:                        # the first few: is there memory for the rest?
            deadline = mono() + 60
            while len(desk.online()) < 5 and mono() < deadline:
                time.sleep(0.2)
            per = max(rss_mb(p.pid) for p in procs)
            need, avail = per * n, mem_available_mb()
            log(f"one station: {per:.1f} MiB RSS; {n} need ~{need:.0f} MiB of {avail:.0f} "
                "MiB available")
            if need > 0.6 * avail:
                raise SystemExit(f"not enough memory for {n} stations")
        if i % 10 == 9:
            deadline = mono() + 60
            while len(desk.online()) < i + 1 - 3 and mono() < deadline:
                time.sleep(0.2)
    deadline = mono() + 120
    while len(desk.online()) < n and mono() < deadline:
        time.sleep(0.5)
    return procs


# --- the run ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stations", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0, help="complaints per second")
    ap.add_argument("--before", type=float, default=60.0)
    ap.add_argument("--outage", type=float, default=30.0, help="seconds the node stays down")
    ap.add_argument("--after", type=float, default=60.0)
    ap.add_argument("--kill", type=int, default=1, choices=(1, 2), help="node to SIGKILL")
    ap.add_argument("--workdir", type=Path, default=HERE / ".work" / "fleet")
    ap.add_argument("--out", type=Path, default=HERE / "results-cluster.json")
    ap.add_argument("--no-doc", action="store_true")
    a = ap.parse_args(argv)

    work = a.workdir.resolve()
    if (work / "cluster" / "cluster.env").exists():
        subprocess.run([str(SCRIPT), "stop", str(work / "cluster")], capture_output=True)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    t0 = mono()
    addresses = cluster("start", str(work / "cluster")).split()
    log(f"cluster up in {mono() - t0:.1f} s: {addresses}")
    port = [int(x.rsplit(":", 1)[1]) for x in addresses]
    sampler = NodeSampler(work / "cluster")
    sampler.start()
    desk = Desk(port[2])
    hq = Dispatch(port[1])
    procs: list[subprocess.Popen] = []
    try:
        t0 = mono()
        procs = start_fleet(a.stations, addresses, work, desk)
        start_s = mono() - t0
        online = len(desk.online())
        fleet_rss = [rss_mb(p.pid) for p in procs]
        log(f"{online}/{a.stations} stations online in {start_s:.0f} s; fleet RSS "
            f"{sum(fleet_rss):.0f} MiB ({sum(fleet_rss) / len(fleet_rss):.1f} per station)")
        results = run_phases(a, addresses, work, hq, desk, sampler)
        results.update({
            "stations": a.stations, "stations_online_at_start": online,
            "fleet_start_s": round(start_s, 1),
            "station_rss_mb_mean": round(sum(fleet_rss) / len(fleet_rss), 1),
            "fleet_rss_mb": round(sum(fleet_rss)),
            "stations_crashed": sum(1 for p in procs if p.poll() is not None),
        })
        # Retained only (the monitor's default: until the broker goes quiet), then a window
        # longer than the stations' heartbeat interval.
        results["monitor_retained"] = monitor_snapshot(port[2], None)
        results["monitor"] = monitor_snapshot(port[2], 35)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        hq.close()
        desk.close()
        sampler.stop_flag.set()
        subprocess.run([str(SCRIPT), "stop", str(work / "cluster")], capture_output=True)
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                          "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"written to {a.out}")
    print(table(results))
    if not a.no_doc:
        for doc in (REPO / "docs" / "PERFORMANCE.md", REPO / "docs" / "RELIABILITY.md"):
            update_doc(doc, table(results))
    return 0


def run_phases(a: argparse.Namespace, addresses: list[str], work: Path, hq: Dispatch,
               desk: Desk, sampler: NodeSampler) -> dict[str, Any]:
    n = a.stations
    phase_of: dict[str, str] = {}
    marks: dict[str, float] = {}
    stop = threading.Event()
    phase = ["before"]
    counter = [0]

    def publisher() -> None:
        rnd = random.Random(110)
        t_start = mono()
        k = 0
        while not stop.is_set():
            time.sleep(max(0.0, t_start + k / a.rate - mono()))
            i = rnd.randrange(n)
            cid = f"fleet-{k:06d}"
            phase_of[cid] = phase[0]
            hq.send(cid, f"reg-{i:03d}", f"st-{i:03d}")
            k += 1
            counter[0] = k
            if k % 20 == 0:
                hq.resend_unconfirmed()
    pub = threading.Thread(target=publisher, daemon=True)
    marks["before"] = mono()
    pub.start()
    time.sleep(a.before)

    victims = [i for i in range(n) if i % 3 == a.kill - 1]
    sessions = {i: desk.last_session(f"st-{i:03d}") for i in victims}
    phase[0] = "during"
    marks["during"] = t_kill = mono()
    cluster("node-kill", str(work / "cluster"), str(a.kill))
    log(f"node {a.kill} SIGKILLed ({len(victims)} stations had their session there)")
    for i in victims:                                  # one probe per station of that node
        cid = f"probe-{i:03d}"
        phase_of[cid] = "probe"
        hq.send(cid, f"reg-{i:03d}", f"st-{i:03d}")
    time.sleep(a.outage)
    t_restart = mono()
    cluster("node-start", str(work / "cluster"), str(a.kill))
    log(f"node {a.kill} back in {mono() - t_restart:.1f} s")
    phase[0] = "after"
    marks["after"] = mono()
    time.sleep(a.after)
    stop.set()
    pub.join(5)
    marks["end"] = mono()
    deadline = mono() + 90
    while mono() < deadline:
        hq.resend_unconfirmed(5.0)
        with desk.lock:
            missing = [c for c in phase_of if c not in desk.alerting]
        if not missing:
            break
        time.sleep(1.0)
    time.sleep(3.0)                                     # doubles would show meanwhile

    with desk.lock:
        alerting = {c: set(v) for c, v in desk.alerting.items()}
        alert_at = dict(desk.alert_at)
    lat: dict[str, list[float]] = {p: [] for p in PHASES}
    for cid, ph in phase_of.items():
        if ph in lat and cid in alert_at:
            lat[ph].append((alert_at[cid] - hq.published[cid]) * 1000)
    probes = [c for c, ph in phase_of.items() if ph == "probe"]
    probe_done = [alert_at[c] - t_kill for c in probes if c in alert_at]
    back = [desk.back_at(f"st-{i:03d}", t_kill, sessions[i]) for i in victims]
    back_s = [b - t_kill for b in back if b is not None]
    failover = max(probe_done) if len(probe_done) == len(probes) else None
    out: dict[str, Any] = {
        "complaints": len(phase_of), "rate_per_s": a.rate,
        "lost": sum(1 for c in phase_of if c not in alerting),
        "alarmed_twice": sum(1 for c in phase_of if len(alerting.get(c, ())) > 1),
        "hq_resent": hq.resent,
        "killed_node": a.kill, "stations_on_killed_node": len(victims),
        "outage_s": a.outage,
        "cluster_failover_s": round(failover, 2) if failover is not None else None,
        "cluster_failover_target_s": TARGET_FAILOVER_S,
        "cluster_failover": ("pass" if failover is not None and failover <= TARGET_FAILOVER_S
                             else "miss"),
        "probe_alarm_p50_s": round(pct(probe_done, 0.5) or 0, 2),
        "all_back_online_s": round(max(back_s), 2) if len(back_s) == len(victims) else None,
        "back_online_p50_s": round(pct(back_s, 0.5) or 0, 2),
        "stations_not_back": len(victims) - len(back_s),
    }
    for ph in PHASES:
        v = lat[ph]
        out[f"alerting_{ph}"] = {"n": len(v), "p50_ms": _r(pct(v, 0.5)),
                                 "p99_ms": _r(pct(v, 0.99)), "max_ms": _r(max(v) if v else None)}
    bounds = {"before": (marks["before"], marks["during"]),
              "during": (marks["during"], marks["after"]), "after": (marks["after"], marks["end"])}
    nodes: dict[str, Any] = {}
    for node in (1, 2, 3):
        s = [x for x in sampler.samples if x[1] == node]
        nodes[f"n{node}"] = {
            "rss_peak_mb": _r(max((x[2] for x in s), default=None)),
            **{f"cpu_{ph}_pct": _r(_mean([x[3] for x in s if lo <= x[0] < hi]))
               for ph, (lo, hi) in bounds.items()}}
    out["nodes"] = nodes
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _mean(v: list[float]) -> float | None:
    return sum(v) / len(v) if v else None


def monitor_snapshot(port: int, wait: float | None) -> dict[str, Any]:
    """The desk's own tool against the cluster (retained messages are per node and not sent to
    wildcard subscriptions: it sees the stations whose heartbeat falls in its window)."""
    exe = Path(sys.executable).parent / "polres-station"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "station.cli"]
    t0 = mono()
    extra = [] if wait is None else ["--wait", str(wait)]
    done = subprocess.run([*cmd, "monitor", "--broker", f"127.0.0.1:{port}", "--protocol",
                           "3.1.1", "--once", "--json", *extra], capture_output=True, text=True,
                          timeout=120)
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        return {"exit": done.returncode, "error": (done.stderr or done.stdout)[-300:]}
    rows = doc if isinstance(doc, list) else doc.get("stations", [])
    states: dict[str, int] = {}
    for r in rows:
        states[str(r.get("state"))] = states.get(str(r.get("state")), 0) + 1
    return {"exit": done.returncode, "stations": len(rows), "states": states,
            "took_s": round(mono() - t0, 1)}


def table(r: dict[str, Any]) -> str:
    def ph(name: str) -> str:
        x = r[f"alerting_{name}"]
        return f"{x['p50_ms']} / {x['p99_ms']} / {x['max_ms']} ms (n={x['n']})"
    nodes = r["nodes"]
    lines = [
        "| figure | value |", "|---|---|",
        f"| stations (real processes, mock GPIO, one region each) | {r['stations']} "
        f"({r['stations_online_at_start']} online after {r['fleet_start_s']} s; "
        f"{r['station_rss_mb_mean']} MiB RSS each, {r['fleet_rss_mb']} MiB in all) |",
        f"| complaints (HQ, {r['rate_per_s']}/s over the regions) | {r['complaints']} |",
        f"| alerting latency p50 / p99 / max, before the kill | {ph('before')} |",
        f"| … during (node {r['killed_node']} down {r['outage_s']} s, until it is back) | "
        f"{ph('during')} |",
        f"| … after | {ph('after')} |",
        f"| lost / alarmed twice | {r['lost']} / {r['alarmed_twice']} |",
        f"| `cluster_failover_s`: kill → every station of the killed node alarmed a probe "
        f"through another node (target {r['cluster_failover_target_s']} s) | "
        f"{r['cluster_failover_s']} s ({r['cluster_failover']}; p50 {r['probe_alarm_p50_s']} s) |",
        f"| kill → every one of its {r['stations_on_killed_node']} stations online again "
        f"(status from a new connection) | {r['all_back_online_s']} s (p50 "
        f"{r['back_online_p50_s']} s; not back: {r['stations_not_back']}) |",
        f"| HQ re-sends of unconfirmed complaints | {r['hq_resent']} |",
        f"| station processes that died | {r['stations_crashed']} |",
    ]
    for name, x in nodes.items():
        lines.append(f"| node {name[1:]}: RSS peak; CPU before / during / after (% of a core) "
                     f"| {x['rss_peak_mb']} MiB; {x['cpu_before_pct']} / {x['cpu_during_pct']} / "
                     f"{x['cpu_after_pct']} |")
    for key, how in (("monitor_retained", ""), ("monitor", " --wait 35")):
        m = r.get(key, {})
        lines.append(f"| `polres-station monitor --protocol 3.1.1 --once --json{how}` on node 3 "
                     f"| {m.get('stations')} stations {m.get('states')} (exit {m.get('exit')}, "
                     f"{m.get('took_s')} s) |")
    lines.append(f"\nRun {r['machine']['at']} on {r['machine']['cpus']} cores "
                 "(`make bench-fleet`; the machine shared with other work).")
    return "\n".join(lines)


def update_doc(doc: Path, tbl: str) -> None:
    """Replace the table between the fleet markers (added by hand once)."""
    begin, end = "<!-- fleet:begin -->", "<!-- fleet:end -->"
    if not doc.exists():
        return
    text = doc.read_text()
    if begin not in text or end not in text:
        log(f"{doc.name}: no fleet markers, left unchanged")
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{tbl}\n{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
