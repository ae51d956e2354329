"""The command line as a technician and HQ use it (docs/CLI.md): output and exit codes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REGION, station_config, wait_for
from station import __version__
from station.cli import main
from station.terminal import broker_address


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and __version__ in r.stdout
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("run", "check-config", "status", "history", "selftest", "outputs-off",
                "firmware-config", "demo", "send-complaint", "monitor"):
        assert cmd in r.stdout
    assert "78" in r.stdout  # exit codes documented


def test_check_config_ok(tmp_path):
    cfg = station_config(tmp_path, 1883)
    r = run_cli("check-config", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_check_config_lists_every_problem_and_exits_78(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("station: {id: 'Bad Id', region: r}\nbroker: {hots: x}\n"
                   "gpio: {siren: {pin: 41}, beacon: {pin: 27}, ack_button: {pin: 27}}\n")
    r = run_cli("check-config", "-c", str(bad))
    assert r.returncode == 78
    for key in ("station.id", "broker.hots", "broker.host", "gpio.siren.pin"):
        assert key in r.stderr, r.stderr
    assert "27" in r.stderr  # duplicate pin named


def test_missing_config_file_exits_78(tmp_path):
    assert main(["check-config", "-c", str(tmp_path / "nope.yaml")]) == 78


def test_send_complaint_prints_id_and_station_alarms(broker, hq, tmp_path, start_station):
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d: d["state"] == "online")
    r = run_cli("send-complaint", "--broker", broker.address, "--region", REGION,
                "--priority", "urgent", "--summary", "uji coba")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    ev = hq.wait_event("alerting", complaint_id=cid)[0]
    assert ev["priority"] == "urgent"
    wait_for(lambda: s.relay_on("siren"), 5)


def test_send_complaint_count_and_fixed_id(broker, hq):
    r = run_cli("send-complaint", "--broker", broker.address, "--region", REGION,
                "--id", "drill", "--count", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["drill-000000", "drill-000001", "drill-000002"]


def test_send_complaint_unreachable_broker_exits_69():
    from helpers import free_port
    r = run_cli("send-complaint", "--broker", f"127.0.0.1:{free_port()}", "--region", REGION)
    assert r.returncode == 69 and "unreachable" in r.stderr


def test_status_and_history_after_alarm_and_ack(broker, hq, tmp_path, start_station):
    cfg = station_config(tmp_path, broker.port)
    s = start_station(cfg)
    hq.wait_status(lambda d: d["state"] == "online")
    hq.complaint("hist-1")
    hq.complaint("hist-2", priority="emergency")
    hq.wait_event("alerting", count=2)
    s.press(0.1)
    hq.wait_event("ack", count=2)
    hq.complaint("hist-3")
    hq.wait_event("alerting", complaint_id="hist-3")
    wait_for(lambda: s.station.outbox.idle.is_set(), 5)
    r = run_cli("status", "-c", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert [a["complaint_id"] for a in st["alarms"]] == ["hist-3"]
    r = run_cli("history", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "hist-3" in lines[1] and "active" in lines[1]
    assert any("hist-1" in ln and "acked" in ln and "button" in ln for ln in lines)
    rows = json.loads(run_cli("history", "-c", str(cfg), "--json").stdout)
    acked = [x for x in rows if x["state"] == "acked"]
    assert len(acked) == 2 and all(x["ack_latency_ms"] > 0 for x in acked)
    assert all("summary" not in x for x in rows)


def test_outputs_off_with_mock_factory(tmp_path):
    r = run_cli("outputs-off", "-c", str(station_config(tmp_path, 1883)))
    assert r.returncode == 0, r.stderr
    assert "siren" in r.stdout and "beacon" in r.stdout


def test_run_with_bad_config_exits_78(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("station: {id: x}\n")
    r = run_cli("run", "-c", str(bad))
    assert r.returncode == 78 and "station.region" in r.stderr


@pytest.mark.parametrize("text, expected", [
    ("mqtt.polri.example:8883", ("mqtt.polri.example", 8883)),
    ("127.0.0.1", ("127.0.0.1", 1883)),
    ("[::1]:1884", ("::1", 1884)),
])
def test_broker_address(text, expected):
    address = broker_address(text)
    assert (address.host, address.port) == expected


@pytest.mark.parametrize("text", ["h:abc", "h:70000", "h:0", "::1", "[::1", ""])
def test_send_complaint_refuses_bad_broker_address_with_usage_error(text):
    r = run_cli("send-complaint", "--broker", text, "--region", "r1")
    assert r.returncode == 2, r.stderr
    assert "--broker" in r.stderr and "Traceback" not in r.stderr


# --- day one: before the first run; local times -----------------------------------------------

@pytest.mark.parametrize("command", ["status", "history"])
def test_before_the_first_run_says_so_and_exits_0(tmp_path, command):
    cfg = station_config(tmp_path, 1883)
    r = run_cli(command, "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "has not run yet" in r.stdout and "unusable" not in r.stdout + r.stderr
    r = run_cli(command, "-c", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc == [] if command == "history" else (doc["alarms"] == [] and not doc["has_run"])
    assert not (tmp_path / "state").exists()   # a read-only look creates nothing


def test_status_refuses_a_database_path_that_is_a_directory(tmp_path):
    cfg = station_config(tmp_path, 1883)
    (tmp_path / "state" / "state.db").mkdir(parents=True)
    r = run_cli("status", "-c", str(cfg))
    assert r.returncode == 74 and "state database unusable" in r.stderr


def test_history_and_status_print_times_in_display_tz(tmp_path):
    from station.store import AlarmRow, Store
    alerted = 1_780_000_000.0                      # 2026-05-28 20:26:40 UTC
    db = tmp_path / "state" / "state.db"
    with Store(db) as store:
        store.commit(alarms=[
            AlarmRow("tz-acked", "urgent", None, None, "acked", alerted, acked_at=alerted + 65,
                     ack_method="button", ack_latency_ms=65000.0),
            AlarmRow("tz-active", "normal", None, None, "active", alerted + 3600)])
    utc = station_config(tmp_path, 1883)
    r = run_cli("history", "-c", str(utc))
    assert r.returncode == 0, r.stderr
    assert "alerted (UTC)" in r.stdout and "2026-05-28 20:26:40" in r.stdout
    jakarta = station_config(tmp_path, 1883, time={"display_tz": "Asia/Jakarta"})
    r = run_cli("history", "-c", str(jakarta))
    assert r.returncode == 0, r.stderr
    acked = next(ln for ln in r.stdout.splitlines() if "tz-acked" in ln)
    assert "alerted (WIB)" in r.stdout
    assert acked.startswith("2026-05-29 03:26:40") and "2026-05-29 03:27:45" in acked
    r = run_cli("status", "-c", str(jakarta))
    assert "since 2026-05-29 04:26:40 WIB" in r.stdout, r.stdout
    # --json keeps wire time: Unix seconds, not local text
    rows = json.loads(run_cli("history", "-c", str(jakarta), "--json").stdout)
    assert {row["alerted_at"] for row in rows} == {alerted, alerted + 3600}


EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "station.example.yaml"


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_unedited_example_is_refused_naming_each_key(command):
    r = run_cli(command, "-c", str(EXAMPLE))
    assert r.returncode == 78, r.stdout + r.stderr
    assert "OK" not in r.stdout
    for key in ("station.id:", "broker.host:", "broker.tls:"):
        assert f"  {key}" in r.stderr, r.stderr


def test_edited_example_is_accepted(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in (("id: prabumulih-1 ", "id: bandung-1    "),
                     ("region: sumsel-prabumulih", "region: jabar-bandung    "),
                     ("host: mqtt.polri.example", "host: 10.20.0.5         "),
                     ("tls: null ", "tls: false")):
        assert old in text
        text = text.replace(old, new, 1)
    cfg = tmp_path / "station.yaml"
    cfg.write_text(text, encoding="utf-8")
    r = run_cli("check-config", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "OK (station bandung-1, region jabar-bandung)" in r.stdout


def test_status_limit_bounds_the_alarms_listed(tmp_path):
    """``status -n N`` (docs/CLI.md §2) lists at most N active alarms, oldest first, and says
    how many there are in all."""
    from station.store import AlarmRow, Store
    with Store(tmp_path / "state" / "state.db") as store:
        store.commit(alarms=[AlarmRow(f"lim-{i}", "normal", None, None, "active",
                                      1_780_000_000.0 + i) for i in range(3)])
    cfg = station_config(tmp_path, 1883)
    r = run_cli("status", "-c", str(cfg), "-n", "2")
    assert r.returncode == 0, r.stderr
    assert "active alarms: 3" in r.stdout
    assert "lim-0" in r.stdout and "lim-1" in r.stdout and "lim-2" not in r.stdout
    assert "1 more" in r.stdout
    doc = json.loads(run_cli("status", "-c", str(cfg), "--json", "--limit", "2").stdout)
    assert [a["complaint_id"] for a in doc["alarms"]] == ["lim-0", "lim-1"]
    assert doc["alarms_active"] == 3
    with Store(tmp_path / "state" / "state.db") as store:     # by default every one is listed
        store.commit(alarms=[AlarmRow(f"many-{i}", "normal", None, None, "active",
                                      1_780_000_100.0 + i) for i in range(57)])
    doc = json.loads(run_cli("status", "-c", str(cfg), "--json").stdout)
    assert len(doc["alarms"]) == 60 and doc["alarms_active"] == 60
    assert "more" not in run_cli("status", "-c", str(cfg)).stdout


def test_run_without_usable_gpio_exits_1_as_documented(tmp_path):
    """A GPIO failure at start is exit 1 (docs/CLI.md §1); the ``run`` row lists it too."""
    cfg = station_config(tmp_path, 1883, gpio={"pin_factory": "lgpio"})
    r = run_cli("run", "-c", str(cfg))
    assert r.returncode == 1 and "GPIO:" in r.stderr, r.stderr
    doc = (Path(__file__).resolve().parent.parent / "docs" / "CLI.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `run` |"))
    assert row.rstrip(" |").rsplit("|", 1)[-1].strip().startswith("0 on a clean stop; 1 ")


@pytest.mark.parametrize("command", ["check-config", "status", "history", "selftest",
                                     "outputs-off", "quarantine-db", "firmware-config",
                                     "timesync-config"])
def test_every_station_subcommand_exits_78_on_a_bad_config_as_documented(tmp_path, command):
    bad = tmp_path / "bad.yaml"
    bad.write_text("station: {id: x}\n")
    r = run_cli(command, "-c", str(bad))
    assert r.returncode == 78 and "station.region" in r.stderr, r.stderr
    doc = (Path(__file__).resolve().parent.parent / "docs" / "CLI.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{command}` |"))
    assert "78" in row.rstrip(" |").rsplit("|", 1)[-1], row
