"""The demo runs signed end to end (docs/SIGNING.md) and shows a refused forgery."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import wait_for
from station.desk.demo import Demo, DemoSettings


def test_demo_is_signed_and_refuses_forgeries() -> None:
    with Demo(DemoSettings(broker_kind="mosquitto", seed=3)) as demo:
        demo.start(first_complaint_s=None)
        assert demo.hq is not None and demo.config.security.require_signatures
        assert [k.kid for k in demo.config.security.hq_keys] == ["demo-hq"]
        wait_for(lambda: demo.station.link.connected and demo.hq.client.is_connected(), 10,
                 what="station and HQ connected")
        assert "complaint" in demo.forge()                      # no alarm: a forged complaint
        wait_for(lambda: any(r.doc.get("type") == "rejected" for r in demo.hq.events), 5,
                 what="the forgery refused")
        cid = demo.hq.send_complaint("emergency")               # signed by HQ's key
        wait_for(lambda: cid in demo.hq.alerted, 5, what="alerting upstream")
        wait_for(lambda: demo.relay_on("siren"), 3, what="siren on")
        assert "silence" in demo.forge()                        # during the alarm
        wait_for(lambda: len([r for r in demo.hq.events
                              if r.doc.get("type") == "rejected"]) == 2, 5,
                 what="the forged silence refused")
        refused = [r.doc for r in demo.hq.events if r.doc.get("type") == "rejected"]
        assert [e["reason"] for e in refused] == ["bad_signature", "bad_signature"]
        assert refused[0]["complaint_id"].startswith("forged-")
        assert refused[1]["cmd_id"].startswith("forged-")
        assert demo.relay_on("siren") and demo.relay_on("beacon")
        assert demo.hq.alerted == {cid}


def test_headless_forge_shows_the_refusal() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "station.cli", "demo", "--headless", "--duration", "6",
         "--forge", "--broker-kind", "mosquitto"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
        cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^forged silence under kid demo-desk$", done.stdout, re.M), done.stdout
    assert re.search(r"^rejected reason=bad_signature cmd_id=forged-\d+$", done.stdout,
                     re.M), done.stdout
    assert re.search(r"^ack \S+ ack_latency_ms=", done.stdout, re.M), done.stdout
