"""Screenshots of the web desk for docs/ (``make screenshots``): the wall and a detail view.

    .venv/bin/python tests/desk/screenshots.py [OUT_DIR]      (default docs/)

The scene is real where it matters: a real mosquitto, the real station (first in-process: a
complaint acknowledged by its button; then as a process, alarmed again and SIGKILLed), and
simulated stations in every other state around it. Debian's chromium draws the page.
Writes ``desk-wall.png`` (1920×1080, a wall display) and ``desk-detail.png`` (1280×800, a
laptop) into OUT_DIR.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]

from helpers import (HQ, STATION, Mosquitto, RunningStation, StationProcess,  # noqa: E402
                     station_config, wait_for)
from station.desk.clients import connected, make_client  # noqa: E402

from desk.docs import event, presence, status  # noqa: E402
from desk.harness import DeskProcess, browser, wait_js  # noqa: E402

CITIES = [("jabar", "bandung"), ("jatim", "surabaya"), ("sumut", "medan"),
          ("diy", "sleman"), ("sulsel", "makassar"), ("bali", "denpasar"), ("kaltim", "samarinda"),
          ("riau", "pekanbaru"), ("ntb", "mataram"), ("papua", "jayapura"),
          ("jateng", "semarang"), ("lampung", "bandar-lampung")]


def simulated(client: object, now: float) -> None:
    """Stations around the real one: offline, stale, faults, alarms, and many ok."""
    n = 0
    for province, city in CITIES:
        for k in (1, 2, 3):
            n += 1
            name, region = f"polres-{city}-{k}", f"{province}-{city}"
            alarms, oldest, faults, at = 0, None, [], now - (n % 20)
            if n == 4:
                alarms, oldest = 1, 412.0                          # unacknowledged long
            elif n == 9:
                alarms, oldest = 1, 38.0                           # just alarmed
            elif n == 13:
                faults = ["clock_unsynced"]
            elif n == 17:
                faults = ["siren_failed"]
                alarms, oldest = 1, 20.0
            elif n == 21:
                at = now - 260                                     # stale (interval 30 s)
            version = "0.1.0" if n % 6 else "0.1.0-4-g1a2b3c4"
            docs = [("presence", presence(name, region=region, at=now - 3600)),
                    ("status", status(name, region=region, at=at, alarms=alarms, oldest=oldest,
                                      faults=faults, version=version, synced=not faults))]
            if n == 26:
                docs.append(("presence", presence(name, "offline", region=region,
                                                  reason="shutdown", at=now - 1800)))
            for leaf, payload in docs:
                client.publish(f"polri/110/station/{name}/{leaf}", payload, qos=1,  # type: ignore[attr-defined]
                               retain=True).wait_for_publish(5)
            if n == 4:
                for seq, (kind, fields) in enumerate([
                        ("alerting", {"complaint_id": "110-20261130-000412", "priority": "urgent",
                                      "relay_latency_ms": 0.9}),
                        ("escalated", {"complaint_id": "110-20261130-000412", "unacked_s": 120})]):
                    client.publish(f"polri/110/station/{name}/events",  # type: ignore[attr-defined]
                                   event(name, kind, region=region, seq=seq + 1, **fields),
                                   qos=1).wait_for_publish(5)


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="desk-shots-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp / "broker").start()
        desk = hq = driver = proc = None
        try:
            client = make_client()
            with connected(client, "127.0.0.1", broker.port):      # retained before the desk
                simulated(client, time.time())                    # starts: one reads stale
            desk = DeskProcess(broker.address, tmp / "desk", "--unacked-alert-s", "300").start()
            hq = HQ(broker.port)
            wait_for(hq.client.is_connected, 5, what="HQ connected")
            config = station_config(tmp, broker.port)
            # the real station: one complaint acknowledged at its button ...
            running = RunningStation(config)
            hq.wait_status(lambda d: d.get("state") == "online", timeout=20)
            hq.complaint("110-20261130-000377", priority="urgent")
            hq.wait_event("alerting", complaint_id="110-20261130-000377")
            time.sleep(1.2)
            running.press()
            hq.wait_event("ack", complaint_id="110-20261130-000377")
            running.stop()
            # ... then running as a process, alarmed again, and killed while it sounds
            proc = StationProcess(config, tmp / "station.log").start()
            time.sleep(2.0)
            hq.complaint("110-20261130-000391", priority="emergency")
            hq.wait_event("alerting", complaint_id="110-20261130-000391", timeout=20)
            time.sleep(2.0)
            proc.kill()
            time.sleep(2.0)
            driver = browser(1920, 1080)
            driver.get(desk.url + "/")
            wait_js(driver, "document.body.dataset.ready === '1'", what="the wall")
            time.sleep(1.0)
            driver.save_screenshot(str(out / "desk-wall.png"))
            driver.set_window_size(1280, 800)
            driver.get(desk.url + f"/#station={STATION}")
            wait_js(driver, f"document.body.dataset.detail === '{STATION}'", what="detail")
            time.sleep(1.0)
            driver.save_screenshot(str(out / "desk-detail.png"))
            print(f"{out / 'desk-wall.png'}\n{out / 'desk-detail.png'}")
        finally:
            if driver is not None:
                driver.quit()
            if hq is not None:
                hq.close()
            if desk is not None:
                desk.stop()
            if proc is not None and proc.proc is not None and proc.proc.poll() is None:
                proc.kill()
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "docs"))
