"""The station SIGKILLed at seeded random points of 500-complaint bursts, with button presses
and remote acks in between (issue 5). The station is the real ``polres-station run`` in its own
process (``station_harness.py`` lends the test its mock button and relay pins); the broker and
HQ stay up.

Invariants, after every restart and at the end:
- every complaint alarmed exactly once (alerting events by complaint_id, HQ's dedup by
  event_id: a re-send of the same event counts once);
- every acknowledgment the station recorded reached HQ, exactly once; after the final press
  every complaint is acknowledged;
- ``seq`` gap-free from 1 across every restart (after dedup by event_id), one event per seq;
- outputs consistent with the stored alarms: the retained status (``alarms.active``,
  ``outputs``), ``polres-station status --json``, HQ's view (alerted − acked) and the relay
  pins all agree.

``FAULT_KILL_ITERATIONS`` (default 20), ``FAULT_SEED`` (default 110) and ``FAULT_PROTOCOL``
(``5`` or ``3.1.1``) change the run.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

from helpers import ROOT, REGION, station_config, wait_for
from faults.chaos import Dispatch, per_complaint, resends, seq_problems
from station.store import Store

TOPIC = f"{ROOT}/region/{REGION}/complaints"
ITERATIONS = int(os.environ.get("FAULT_KILL_ITERATIONS", "20"))
SEED = int(os.environ.get("FAULT_SEED", "110"))
PROTOCOL = os.environ.get("FAULT_PROTOCOL", "5")
BURST = 500


class Run:
    def __init__(self, hq, dispatch, station, cfg) -> None:
        self.hq, self.d, self.station, self.cfg = hq, dispatch, station, cfg
        self.counts: Counter[str] = Counter()
        self.cmd_n = 0

    # --- what HQ sees -------------------------------------------------------------------------

    def fresh_status(self) -> dict[str, Any]:
        """Ask for a status now (``status`` command) and return it once the station's outbox
        is empty; the status is published before the command's cmd_result."""
        deadline = time.monotonic() + 30
        while True:
            self.cmd_n += 1
            cmd_id = f"st-{self.cmd_n}"
            mark = len(self.hq.status_log)
            self.hq.command("status", cmd_id=cmd_id)
            self.hq.wait_event("cmd_result", cmd_id=cmd_id, timeout=20)
            docs = [d for d in self.hq.status_log[mark:] if d.get("state") == "online"]
            if docs and docs[-1]["outbox_pending"] == 0:
                return docs[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"outbox never empty: {docs[-1:]}")
            time.sleep(0.1)

    def cli_status(self) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "station.cli", "status", "--json", "-c", str(self.cfg)],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    # --- the invariants -----------------------------------------------------------------------

    def check_consistent(self, ids: list[str]) -> None:
        """Quiesce (every complaint sent so far alarmed, outbox empty), then compare the
        retained status, the store (CLI), HQ's view and the relay pins."""
        self.d.wait_alerted(timeout=60)
        status = self.fresh_status()
        time.sleep(0.1)   # events published before the status was answered have landed

        events = list(self.hq.events)
        alerts, acks = per_complaint(events, "alerting"), per_complaint(events, "ack")
        doubled = [c for c in ids if len(alerts.get(c, ())) > 1 or len(acks.get(c, ())) > 1]
        assert not doubled, f"alarmed or acked twice: {doubled[:5]}"
        assert not seq_problems(events), seq_problems(events)

        hq_active = {c for c in self.d.sent if c in alerts and c not in acks}
        cli = self.cli_status()
        stored_active = {a["complaint_id"] for a in cli["alarms"]}
        with Store(self.station_db, readonly=True) as store:
            stored_acked = {r.complaint_id for r in store.history(limit=100_000)
                            if r.state == "acked"}
        assert stored_active == hq_active, (
            f"store has {len(stored_active)} active, HQ expects {len(hq_active)}: "
            f"{sorted(stored_active ^ hq_active)[:10]}")
        assert stored_acked == set(acks) & set(self.d.sent), (
            "stored acks not delivered to HQ (or the reverse): "
            f"{sorted(stored_acked ^ (set(acks) & set(self.d.sent)))[:10]}")
        n = len(stored_active)
        assert status["alarms"]["active"] == n, (status["alarms"], n)
        assert status["outputs"] == {"siren": n > 0, "beacon": n > 0}, (status["outputs"], n)
        assert cli["outbox_pending"] == 0

        pins = self.station.pins()
        assert pins["beacon"] == (n > 0), (pins, n)
        if n:   # the siren blinks by pattern (normal: 1 s on, 2 s off)
            wait_for(lambda: (self.station.pins()["siren_on_age_s"] or 99) < 0.5, 4,
                     what="siren relay energised by its pattern")
        else:
            assert not pins["siren"], pins
        self.counts["consistency_checks"] += 1

    @property
    def station_db(self):
        from station.config import load_config
        return load_config(self.cfg).storage.path

    # --- actions ------------------------------------------------------------------------------

    def press(self, rng: random.Random) -> None:
        if rng.random() < 0.5:
            self.station.press_async(rng.uniform(0.06, 0.15))
            self.counts["button_presses"] += 1
        else:
            self.cmd_n += 1
            self.hq.command("ack", cmd_id=f"ack-{self.cmd_n}", by="desk-1")
            self.counts["remote_acks"] += 1

    def kill_and_restart(self) -> None:
        self.station.kill()
        self.counts["kills"] += 1
        self.station.start()


@pytest.mark.slow
def test_sigkill_during_bursts(broker, hq, tmp_path, harness, figures):
    cfg = station_config(tmp_path, broker.port, protocol=PROTOCOL)
    station = harness(cfg).start()
    hq.wait_status(lambda d: d["state"] == "online")
    d = Dispatch(hq, TOPIC)
    run = Run(hq, d, station, cfg)
    started = time.monotonic()
    for it in range(ITERATIONS):
        rng = random.Random(SEED * 1000 + it)
        ids = [f"k{it:02d}-{i:03d}" for i in range(BURST)]
        kills = set(rng.sample(range(1, BURST), rng.choice([1, 2])))
        presses = set(rng.sample(range(BURST), 6))
        kill_after_press = rng.random() < 0.5
        for i, cid in enumerate(ids):
            d.send(cid, priority=rng.choice(["normal", "urgent", "emergency"]))
            run.counts["complaints"] += 1
            if i in presses:
                run.press(rng)
            if i in kills:
                if kill_after_press:          # land in the press → ack → commit window
                    run.press(rng)
                time.sleep(rng.uniform(0.0, 0.06))
                run.kill_and_restart()
                run.check_consistent(ids)
            elif i % 50 == 49:
                time.sleep(0.01)              # a burst, not a flood HQ's client can't hold
        run.check_consistent(ids)
        station.press(0.1)                    # the room acknowledges what is left
        run.counts["button_presses"] += 1
        d.wait_acked(ids, timeout=60)
        run.check_consistent(ids)
        assert station.alive, "the station died by itself"
        run.counts["iterations"] += 1

    events = list(hq.events)
    alerts, acks = per_complaint(events, "alerting"), per_complaint(events, "ack")
    lost = [c for c in d.sent if c not in alerts]
    doubled = [c for c in d.sent if len(alerts.get(c, ())) > 1 or len(acks.get(c, ())) > 1]
    unacked = [c for c in d.sent if c not in acks]
    log = (tmp_path / "station.log").read_text(errors="replace")
    crashes = log.count("Traceback")
    assert station.terminate() == 0
    seqs = sorted({e["seq"] for e in events})
    figures.record(
        "station SIGKILL during 500-complaint bursts",
        iterations=run.counts["iterations"], complaints=run.counts["complaints"],
        presses=run.counts["button_presses"] + run.counts["remote_acks"],
        button_presses=run.counts["button_presses"], remote_acks=run.counts["remote_acks"],
        kills=run.counts["kills"], consistency_checks=run.counts["consistency_checks"],
        lost=len(lost), doubled=len(doubled), unacked=len(unacked), crashes=crashes,
        events=len(seqs), seq_gaps=len(seq_problems(events)),
        resent_events=resends(events), seed=SEED, protocol=PROTOCOL,
        seconds=round(time.monotonic() - started, 1))
    assert not lost and not doubled and not unacked
    assert seqs == list(range(1, len(seqs) + 1))
    assert crashes == 0, "tracebacks in the station log"
