"""Client commands against the reference broker's ACL: a publish the broker refuses (MQTT 5
PUBACK 0x87) is a failure (exit 1, "refused"), never a printed id and exit 0."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import REGION, STATION
from security.conftest import DESK_USER, SecureBroker

NEIGHBOUR_STATION = "prabumulih-2"


def tls(ca: Path, name: str) -> list[str]:
    return ["--ca-file", str(ca / "ca.crt"), "--cert-file", str(ca / f"{name}.crt"),
            "--key-file", str(ca / f"{name}.key")]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_send_complaint_refused_by_the_acl_exits_1(secure_broker: SecureBroker,
                                                   ca: Path) -> None:
    # the monitoring desk's certificate may not publish complaints
    r = run("send-complaint", "--broker", f"127.0.0.1:{secure_broker.port}",
            *tls(ca, DESK_USER), "--region", REGION, "--id", "110-acl-1")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "refused by the broker" in r.stderr and "0x87" in r.stderr
    assert "110-acl-1" not in r.stdout


def test_send_command_refused_by_the_acl_exits_1(secure_broker: SecureBroker,
                                                 ca: Path) -> None:
    # a station's certificate may not command another station
    r = run("send-command", "--broker", f"127.0.0.1:{secure_broker.port}",
            *tls(ca, NEIGHBOUR_STATION), "--station", STATION, "status", "--timeout", "2")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "0x87" in r.stderr
