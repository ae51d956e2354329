"""No secret leaves the station (issue 5): the MQTT password, the TLS private key and the
Sentry DSN never appear in its log (at DEBUG, paho's lines included), its retained status, its
events, its last will, or what the local CLI prints. The station runs as the real service
(`polres-station run`) with a password file and a DSN pointing at a dead local port, through
connect, alarm, reject, commands, a broker restart and a clean stop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from helpers import STATION, StationProcess, free_port, station_config
from security.conftest import SecureBroker, SecureHQ, tls_files


def secrets_of(password: str, key_pem: str, dsn: str) -> dict[str, str]:
    found = {"password": password, "dsn": dsn, "dsn key": dsn.split("//")[1].split("@")[0]}
    body = [line for line in key_pem.splitlines() if line and not line.startswith("-----")]
    for i, line in enumerate(body):
        found[f"key line {i}"] = line
    found["key header"] = "PRIVATE KEY-----"
    return found


def cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True,
                         text=True, timeout=30, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return out.stdout + out.stderr


@pytest.mark.broker
def test_no_secret_in_logs_status_events_or_cli_output(tmp_path, ca):
    password = f"pw-{uuid.uuid4().hex}"
    (tmp_path / "password").write_text(password + "\n")
    dead = free_port()                                  # nothing listens there
    dsn = f"http://{uuid.uuid4().hex}@127.0.0.1:{dead}/42"
    key_pem = (ca / f"{STATION}.key").read_text()
    secrets = secrets_of(password, key_pem, dsn)

    broker = SecureBroker(tmp_path / "broker", ca).start()
    hq = SecureHQ(broker.port, ca)
    cfg = station_config(tmp_path, broker.port,
                         broker={"tls": tls_files(ca, STATION), "username": STATION,
                                 "password_file": str(tmp_path / "password")},
                         sentry={"dsn": dsn, "environment": "test"},
                         logging={"level": "DEBUG"})
    station = StationProcess(cfg, tmp_path / "station.log").start()
    try:
        hq.wait_status(lambda d: d["state"] == "online", timeout=15)
        hq.complaint("sec-1", priority="urgent")
        hq.wait_event("alerting")
        hq.complaint("", raw=b'{"v":1,"id":"sec-2","region":"nowhere"}')
        hq.wait_event("rejected")
        hq.command("status", cmd_id="sec-c1")
        hq.command("ack", cmd_id="sec-c2", by="operator-7")
        hq.wait_event("ack")
        hq.command("reboot", cmd_id="sec-c3")              # unknown: answered ok:false
        hq.wait_event("cmd_result", count=3)
        broker.stop(signal.SIGKILL)                         # errors, reconnects, will
        time.sleep(1.0)
        broker.start()
        hq.wait_status(lambda d: d["state"] == "online" and d["session"] >= 2, timeout=20)
        assert station.terminate() == 0
        hq.wait_presence(lambda d: d["state"] == "offline")
    finally:
        if station.proc is not None and station.proc.poll() is None:
            station.proc.kill()
        hq.close()
        broker.stop()

    log = (tmp_path / "station.log").read_text(errors="replace")
    assert "Sentry reporting on" in log, "the DSN path was not exercised"
    wire = b"\n".join(p for _, p in hq.raw).decode(errors="replace")
    local = cli("check-config", "-c", str(cfg)) + cli("status", "-c", str(cfg)) + \
        cli("history", "-c", str(cfg))
    places = {"station log": log, "MQTT status/events/will": wire, "CLI output": local}
    leaks = [(what, where) for what, secret in secrets.items()
             for where, text in places.items() if secret in text]
    assert leaks == [], leaks
    assert len(hq.raw) > 10 and len(log.splitlines()) > 20
    print(f"\nno secret in {len(log.splitlines())} log lines (DEBUG), {len(hq.raw)} MQTT "
          f"messages, {len(local.splitlines())} lines of CLI output; "
          f"{len(secrets)} secret strings checked")
