"""``local-cluster.sh stop`` leaves no process of the cluster behind and never touches the
machine's own RabbitMQ. Runs last in the package (it stops the shared cluster)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_stop_leaves_nothing_behind(cluster):
    prefix = (cluster.dir / "cluster.env").read_text().split("PREFIX=")[1].split()[0]
    before = _processes()
    ours = {p for p, a in before.items() if prefix in a or str(cluster.dir) in a}
    running = sum(cluster.status().values())
    assert running and len([p for p in ours if "beam.smp" in before[p]]) == running
    # The machine's own RabbitMQ node and epmd, when they run.
    system = {p: a for p, a in before.items() if "rabbit@" in a or "epmd -daemon" in a}
    cluster.stop()
    assert cluster.status() == {1: False, 2: False, 3: False}
    after = _processes()
    left = [a for a in after.values() if prefix in a or str(cluster.dir) in a]
    assert left == [], left
    assert {p: a for p, a in after.items() if p in system} == system, "system RabbitMQ touched"


def _processes() -> dict[int, str]:
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                out[int(pid)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return out
