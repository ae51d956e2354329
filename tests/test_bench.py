"""The benchmark never rots: ``bench/run.py --quick`` runs once here and must write every key.

No timing thresholds (docs/PERFORMANCE.md: targets are reported by the benchmark, not asserted by
tests); only that each figure exists and is a sane number. The quick run writes into tmp_path,
so the committed bench/results.json (from a full run) is left alone.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
LATENCIES = ("floor", "relay", "alerting", "ack", "ack_after_debounce", "disk_commit")
KEYS = ("floor_p99_ms", "relay_p99_ms", "alerting_p99_ms", "ack_p99_ms", "burst_rate_per_s",
        "burst_lost", "burst_double", "idle_rss_mb", "idle_cpu_pct", "startup_s",
        "reconnect_s", "mem_growth_mb")
# second edition (docs/PERFORMANCE.md): the disk floor, back to back, the floor's own burst,
# the outbox backlog and idle memory over its floor
SECOND = ("disk_floor_p99_ms", "outbox_backlog_relay_p99_ms", "outbox_backlog_commit_p99_ms",
          "idle_rss_over_floor_mb", "burst_floor_rate_per_s", "burst_vs_floor",
          "relay_b2b_p90_ms", "relay_b2b_p99_ms", "alerting_b2b_p90_ms", "alerting_b2b_p99_ms",
          "floor_b2b_p99_ms", "relay_signed_p99_ms")
SECOND_PER_SETTING = ("disk_floor_p99_ms", "burst_floor_rate_per_s", "burst_vs_floor",
                      "relay_b2b_p90_ms", "relay_b2b_p99_ms", "alerting_b2b_p90_ms",
                      "alerting_b2b_p99_ms", "floor_b2b_p99_ms", "relay_signed_p99_ms")
PER_SETTING = ("floor_p99_ms", "relay_p99_ms", "alerting_p99_ms", "ack_p99_ms",
               "burst_rate_per_s", "burst_lost", "burst_double", "startup_s", "reconnect_s")


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(out),
         "--workdir", str(tmp / "work")],
        capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout


def check_latencies(r: dict[str, Any], samples: int) -> None:
    for name in LATENCIES:
        values = [r[f"{name}_{q}_ms"] for q in ("p50", "p90", "p99", "max")]
        assert all(number(v) for v in values), (name, values)
        assert values == sorted(values), (name, values)
        assert r[f"{name}_n"] == samples
        if name != "ack_after_debounce":
            assert 0 < values[0] < 10_000, (name, values)


@pytest.mark.slow
@pytest.mark.broker       # bench/run.py starts its own mosquitto
def test_quick_run_writes_every_key(quick: tuple[dict[str, Any], str]) -> None:
    r, _ = quick
    assert r["mode"] == "quick" and r["samples"] >= 50
    for key in KEYS + SECOND:
        assert number(r[key]), (key, r.get(key))
    for setting, nodelay in (("nodelay_false", False), ("nodelay_true", True)):
        s = r[setting]
        assert s["broker_set_tcp_nodelay"] is nodelay
        for key in PER_SETTING + SECOND_PER_SETTING:
            assert number(s[key]), (setting, key, s.get(key))
        judged = r["judged"][setting]
        for key in ("relay_p99_ms", "alerting_p99_ms", "relay_b2b_p99_ms", "burst_rate_per_s"):
            assert judged[key]["pass"] in (True, False) and number(judged[key]["limit"]), key
        check_latencies(s, r["samples"])
        assert s["burst_lost"] >= 0 and s["burst_double"] >= 0 and s["burst_rate_per_s"] > 0
        assert 0 < s["startup_s"] < 30 and 0 < s["reconnect_s"] < 30
        assert s["events_seq_gaps"] == 0
    # plain keys are the default broker setting
    assert r["floor_p99_ms"] == r["nodelay_false"]["floor_p99_ms"]
    assert 1 < r["idle_rss_mb"] < 1000 and 0 <= r["idle_cpu_pct"] < 100
    assert abs(r["mem_growth_mb"]) < 1000 and r["mem_complaints"] > 0
    assert set(r["targets"]) == {"nodelay_false", "nodelay_true"}


@pytest.mark.slow
@pytest.mark.broker       # bench/run.py starts its own mosquitto
def test_quick_run_prints_the_table_beside_the_targets(
        quick: tuple[dict[str, Any], str]) -> None:
    _, stdout = quick
    assert "| figure | target (second edition) |" in stdout
    assert "set_tcp_nodelay false" in stdout and "set_tcp_nodelay true" in stdout
    assert "complaint → siren relay on" in stdout and "back to back" in stdout
    assert "pass" in stdout or "MISS" in stdout


def test_committed_results_are_a_full_run_with_every_key() -> None:
    r = json.loads((REPO / "bench" / "results.json").read_text())
    assert r["mode"] == "full" and r["samples"] >= 1000
    for key in KEYS + SECOND:
        assert number(r[key]), key
    for setting in ("nodelay_false", "nodelay_true"):
        for key in PER_SETTING + SECOND_PER_SETTING:
            assert number(r[setting][key]), (setting, key)
        assert set(r["judged"][setting]) >= {"relay_p99_ms", "alerting_b2b_p99_ms"}
    assert r["mem_complaints"] >= 100_000


def test_other_parts_figures_are_merged_and_judged(tmp_path: Path) -> None:
    """bench/results-desk.json and results-cluster.json (written by the desk's and the
    cluster's own benchmarks) join results.json with their targets; absent files are no row."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import run as bench_run
    finally:
        sys.path.remove(str(REPO / "bench"))
    (tmp_path / "results-desk.json").write_text(
        json.dumps({"desk_ready_s": 0.42, "desk_update_p99_ms": 730.0}))
    results: dict[str, Any] = {}
    rows = bench_run.merge_fragments(results, tmp_path)
    assert results["desk_ready_s"] == 0.42 and "cluster_failover_s" not in results
    assert {r.key: r.ok for r in rows} == {"desk_ready_s": True, "desk_update_p99_ms": False}


@pytest.mark.slow
@pytest.mark.broker
def test_stages_profiler_runs_and_times_every_stage() -> None:
    """bench/stages.py reaches into the Station's rooms; it must follow them when they move."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "stages.py"), "--rounds", "6",
                           "--gap", "0.01"], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| stage")}
    for stage in ("parse", "duplicate check", "remember the id", "alarm machine",
                  "whole dispatch", "relays (siren on inside)", "hand-over to the writer",
                  "complaint handed to the loop → siren relay on"):
        assert stage in rows, (stage, proc.stdout)
        p50 = float(rows[stage].split("|")[2])
        assert 0 <= p50 < 1e6, rows[stage]
