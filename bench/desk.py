"""The web desk at national scale (docs/PERFORMANCE.md): 2,000 simulated stations, chromium.

    .venv/bin/python bench/desk.py [--stations 2000] [--rate 200] [--probes 300]

Starts its own mosquitto on a free loopback port, publishes a retained status and presence for
every simulated station, starts ``polres-station desk`` (fresh database) and a headless
chromium (selenium + chromedriver, no browser download), then measures:

* ``desk_ready_s``: ``driver.get(page)`` → the page drawn from the snapshot of every station
  (server-sent events): counts of all, the troubled rows first, filter and search working.
* ``desk_server_p99_ms``: the same probes seen on the desk's stream by a plain HTTP client
  (MQTT in → SQLite → server-sent event out), to split the figure into server and browser.
* ``desk_update_p99_ms`` (and p50/p90/max): while a background publisher sends ``--rate`` status
  messages per second to random stations, one of ten probe stations publishes a status with a
  new fault (``p-N``; wall time taken just before ``publish()``), and a MutationObserver in the
  page records the wall time its row first shows that fault (the station moves up among the
  troubled rows the wall draws). Browser and benchmark share the machine's clock. One probe
  every 100 ms.

Writes ``bench/results-desk.json`` (``--out``). No timing assertions: figures only.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from station.desk.clients import connected, make_client  # noqa: E402
from station.protocol import encode, rfc3339  # noqa: E402

TOPIC_ROOT = "polri/110"
PROBES_STATIONS = 10
OBSERVER = """
window.__seen = {};
const seen = () => {
  for (const tr of document.querySelectorAll('tr[data-station^="probe-"]')) {
    const v = tr.children[4].textContent;
    if (v.startsWith('p-') && !(v in window.__seen)) window.__seen[v] = Date.now();
  }
};
new MutationObserver(seen).observe(document.getElementById('rows'), {childList: true});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_doc(station: str, region: str, *, fault: str | None = None,
               alarms: int = 0) -> bytes:
    now = time.time()
    return encode({
        "v": 1, "station": station, "region": region, "state": "online", "at": rfc3339(now),
        "version": "0.1.0", "started_at": rfc3339(now - 3600), "uptime_s": 3600.0,
        "interval_s": 30, "alarms": {"active": alarms, "oldest_unacked_s": 5.0 if alarms else None},
        "outputs": {"siren": bool(alarms), "beacon": bool(alarms)}, "button": "released",
        "outbox_pending": 0, "faults": [fault] if fault else [], "boot_id": f"b-{station}",
        "session": 1,
        "host": {"cpu_temp_c": 51.0, "load1": 0.1, "disk_free_mb": 2000.0, "clock_synced": True},
        "complaints": 0, "acks": 0, "rejected": 0, "reconnects": 0})


def presence_doc(station: str, region: str) -> bytes:
    return encode({"v": 1, "station": station, "region": region, "state": "online",
                   "boot_id": f"b-{station}", "session": 1, "at": rfc3339(time.time())})


def stations(n: int) -> list[tuple[str, str]]:
    out = [(f"probe-{i}", "region-probe") for i in range(PROBES_STATIONS)]
    out += [(f"st-{i:05d}", f"region-{i % 150:03d}") for i in range(n - PROBES_STATIONS)]
    return out


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n" + ("user root\n" if os.geteuid() == 0 else ""))
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    wait(lambda: _listening(port), 10, "mosquitto")
    return proc, port


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait(pred: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-dev-shm-usage", "--window-size=1920,1080"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-desk-"))
    broker, port = start_mosquitto(work)
    desk_port = free_port()
    desk = driver = None
    try:
        fleet = stations(args.stations)
        pub = make_client()
        with connected(pub, "127.0.0.1", port):
            infos = []
            for name, region in fleet:
                infos.append(pub.publish(f"{TOPIC_ROOT}/station/{name}/presence",
                                         presence_doc(name, region), qos=1, retain=True))
                infos.append(pub.publish(f"{TOPIC_ROOT}/station/{name}/status",
                                         status_doc(name, region), qos=1, retain=True))
            for info in infos:
                info.wait_for_publish(30)
        desk = subprocess.Popen(
            [sys.executable, "-m", "station.cli", "desk", "--broker", f"127.0.0.1:{port}",
             "--listen", f"127.0.0.1:{desk_port}", "--db", str(work / "desk.db"),
             "--log-level", "WARNING"], cwd=ROOT_DIR, stderr=open(work / "desk.log", "wb"))
        url = args.url = f"http://127.0.0.1:{desk_port}"
        wait(lambda: _count(url) >= len(fleet), 60, "the desk holding every station", 0.1)
        driver = browser()
        driver.get(url + "/static/desk.css")          # warm the browser process, not the page
        readies = []
        for _ in range(args.loads):
            t0 = time.monotonic()
            driver.get(url + "/")
            wait(lambda: driver.execute_script(
                "return document.body.dataset.ready === '1' && rows.size") >= len(fleet),
                30, "the page drawn with every station", 0.01)
            readies.append(time.monotonic() - t0)
        driver.execute_script(OBSERVER)
        latencies = measure_updates(driver, port, fleet, args)
        return {
            "desk_stations": len(fleet), "desk_ready_s": round(max(readies), 3),
            "desk_ready_runs_s": [round(r, 3) for r in readies],
            "desk_update_rate_per_s": args.rate, "desk_update_probes": len(latencies),
            "desk_update_p50_ms": pct(latencies, 0.50), "desk_update_p99_ms": pct(latencies, 0.99),
            "desk_update_max_ms": round(max(latencies), 1),
            "desk_update_p90_ms": pct(latencies, 0.90),
            "desk_update_over_500ms": sum(1 for v in latencies if v > 500),
            "desk_server_p50_ms": pct(args.server_ms, 0.50),
            "desk_server_p99_ms": pct(args.server_ms, 0.99),
            "machine_load1": round(os.getloadavg()[0], 2),
            "desk_render_ms": args.render_ms,
            "desk_targets": {"ready_s": 1.0, "update_p99_ms": 500.0},
            "measured_at": rfc3339(time.time()),
            "command": "python bench/desk.py " + " ".join(sys.argv[1:]),
        }
    finally:
        if driver is not None:
            driver.quit()
        if desk is not None:
            desk.terminate()
            desk.wait(10)
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _count(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
            return int(json.load(r)["stations"])
    except (OSError, ValueError):
        return 0


def sse_probe_times(url: str, stop: threading.Event, seen: dict[str, float]) -> None:
    """The server's side of the figure: when the desk's stream carries each probe's fault
    (a plain HTTP client in this process, beside the browser)."""
    with urllib.request.urlopen(url + "/api/stream", timeout=30) as stream:
        for raw in stream:
            if stop.is_set():
                return
            if not raw.startswith(b"data: ") or b"probe-" not in raw:
                continue
            at = time.time() * 1000
            for row in json.loads(raw[6:]).get("rows", []):
                for fault in row.get("faults", []):
                    if fault.startswith("p-"):
                        seen.setdefault(fault, at)


def measure_updates(driver: Any, port: int, fleet: list[tuple[str, str]],
                    args: argparse.Namespace) -> list[float]:
    stop = threading.Event()
    server_seen: dict[str, float] = {}
    sse = threading.Thread(target=sse_probe_times, args=(args.url, stop, server_seen),
                           daemon=True)
    sse.start()
    background = [f for f in fleet if not f[0].startswith("probe-")]
    load = make_client()
    probe = make_client()
    sent: dict[str, float] = {}
    with connected(load, "127.0.0.1", port), connected(probe, "127.0.0.1", port):
        def flood() -> None:
            rng = random.Random(1)
            gap, nxt = 1.0 / args.rate, time.monotonic()
            while not stop.is_set():
                name, region = rng.choice(background)
                load.publish(f"{TOPIC_ROOT}/station/{name}/status", status_doc(name, region),
                             qos=1, retain=True)
                nxt += gap
                time.sleep(max(0.0, nxt - time.monotonic()))
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        time.sleep(2.0)                                   # the flow is steady
        for i in range(args.probes):
            name = f"probe-{i % PROBES_STATIONS}"
            version = f"p-{i}"
            sent[version] = time.time() * 1000
            probe.publish(f"{TOPIC_ROOT}/station/{name}/status",
                          status_doc(name, "region-probe", fault=version), qos=1, retain=True)
            time.sleep(0.1)
        time.sleep(2.0)
        stop.set()
        t.join(5)
    seen = driver.execute_script("return window.__seen")
    renders = sorted(driver.execute_script("return window.deskRenderMs || []"))
    args.render_ms = {"p50": pct(renders, 0.5), "p99": pct(renders, 0.99)} if renders else {}
    missing = [v for v in sent if v not in seen]
    if len(missing) > len(sent) * 0.05:
        raise RuntimeError(f"{len(missing)} of {len(sent)} probes never shown")
    # a probe overtaken by the next one on the same station before a render is not shown:
    # count it at the time its successor showed (an upper bound)
    args.server_ms = [server_seen[v] - t for v, t in sent.items() if v in server_seen]
    return [seen.get(v, max(seen.values())) - t for v, t in sent.items()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stations", type=int, default=2000)
    p.add_argument("--rate", type=float, default=200.0, help="status messages per second")
    p.add_argument("--probes", type=int, default=300)
    p.add_argument("--loads", type=int, default=5, help="page loads timed (the worst reported)")
    p.add_argument("--out", type=Path, default=ROOT_DIR / "bench" / "results-desk.json")
    args = p.parse_args()
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
