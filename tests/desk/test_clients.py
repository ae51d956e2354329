"""The client commands against a real mosquitto and the real station: ``send-command`` waits for
its ``cmd_result``, ``send-complaint --wait-alerting`` prints the relay latency, exit codes when
nothing answers, and ``monitor`` without rich."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import REGION, STATION, Mosquitto, free_port, station_config


def cli(*args: str, timeout: float = 60, env_python: list[str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(env_python or [sys.executable, "-m", "station.cli"]), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_send_command_prints_the_cmd_result(broker: Mosquitto, tmp_path: Path,
                                            start_station: Any) -> None:
    start_station(station_config(tmp_path, broker.port))
    r = cli("send-command", "--broker", broker.address, "--station", STATION, "status")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert (result["type"], result["cmd"], result["ok"]) == ("cmd_result", "status", True)


def test_send_command_refused_by_the_station_exits_1(broker: Mosquitto, tmp_path: Path,
                                                     start_station: Any) -> None:
    start_station(station_config(tmp_path, broker.port))
    r = cli("send-command", "--broker", broker.address, "--station", STATION, "ack",
            "--complaint-id", "110-never-sent", "--by", "desk-test")
    assert r.returncode == 1
    assert json.loads(r.stdout)["ok"] is False


def test_send_command_unanswered_exits_1(broker: Mosquitto) -> None:
    r = cli("send-command", "--broker", broker.address, "--station", "nobody-1", "status",
            "--timeout", "1")
    assert r.returncode == 1
    assert "no cmd_result" in r.stderr


def test_client_commands_without_a_broker_exit_69() -> None:
    dead = f"127.0.0.1:{free_port()}"
    assert cli("send-command", "--broker", dead, "--station", STATION, "status").returncode == 69
    assert cli("send-complaint", "--broker", dead, "--region", REGION).returncode == 69


def test_send_complaint_waits_for_alerting(broker: Mosquitto, tmp_path: Path,
                                           start_station: Any) -> None:
    running = start_station(station_config(tmp_path, broker.port))
    from helpers import wait_for
    wait_for(lambda: running.station.link.connected, 10, what="station connected")
    r = cli("send-complaint", "--broker", broker.address, "--region", REGION, "--id", "110-wa-1",
            "--wait-alerting", "10")
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith(f"110-wa-1 alerting station={STATION} relay_latency_ms=")
    assert float(line.rsplit("=", 1)[1]) >= 0


def test_send_complaint_no_alerting_exits_1(broker: Mosquitto) -> None:
    r = cli("send-complaint", "--broker", broker.address, "--region", "nowhere",
            "--id", "110-wa-2", "--wait-alerting", "1")
    assert r.returncode == 1
    assert "110-wa-2 no alerting within 1 s" in r.stdout


def test_monitor_without_rich_prints_a_plain_table(broker: Mosquitto, tmp_path: Path,
                                                  start_station: Any) -> None:
    running = start_station(station_config(tmp_path, broker.port))
    from helpers import wait_for
    wait_for(lambda: running.station.link.connected, 10, what="station connected")
    no_rich = [sys.executable, "-c",
               "import sys; sys.modules['rich'] = None; from station.cli import main; "
               "sys.exit(main())"]
    r = cli("monitor", "--broker", broker.address, "--once", env_python=no_rich)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["station", "region", "state"]
    assert any(line.startswith(STATION) and "online" in line for line in lines)
    assert "1 stations" in lines[-1]


def test_send_command_signed_test_with_a_fraction_is_a_usage_error(broker: Mosquitto,
                                                                    tmp_path: Path) -> None:
    """A signed message carries no number with a fraction (docs/INTERFACE.md §8): the desk
    says so and exits 2 before publishing, instead of a traceback."""
    from station.signing import generate, private_pem
    key = generate("desk-1")
    key_file = tmp_path / "desk-1.pem"
    key_file.write_text(private_pem(key.seed))
    r = cli("send-command", "--broker", broker.address, "--station", STATION, "test",
            "--seconds", "1.5", "--sign-key", str(key_file), "--kid", "desk-1", "--timeout", "1")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "--seconds" in r.stderr and "whole seconds" in r.stderr


def test_client_waits_must_be_times() -> None:
    """``--timeout nan`` waited forever and ``--timeout -1`` gave up at once: both are usage
    errors (exit 2), as is a negative ``--wait-alerting``."""
    dead = f"127.0.0.1:{free_port()}"
    for value in ("nan", "-1", "0"):
        r = cli("send-command", "--broker", dead, "--station", STATION, "status",
                "--timeout", value, timeout=20)
        assert r.returncode == 2 and "--timeout" in r.stderr, (value, r.stderr)
    r = cli("send-complaint", "--broker", dead, "--region", REGION, "--wait-alerting", "-1")
    assert r.returncode == 2 and "--wait-alerting" in r.stderr, r.stderr


def test_send_complaint_refuses_what_a_station_would_refuse_before_connecting() -> None:
    """A complaint HQ's own tool sends is valid (docs/INTERFACE.md §3): a category over 64 or
    a summary over 2,000 characters, or an --id prefix too long for --count's numbers (cut to
    64 they were all the same id, and only the first alarmed), is a usage error (exit 2)."""
    dead = f"127.0.0.1:{free_port()}"
    for extra in (["--category", "c" * 65], ["--summary", "s" * 2001],
                  ["--id", "p" * 60, "--count", "3"], ["--id", "bad id"]):
        r = cli("send-complaint", "--broker", dead, "--region", REGION, *extra)
        assert r.returncode == 2, (extra[0], r.returncode, r.stderr)
        assert extra[0] in r.stderr and "Traceback" not in r.stderr
