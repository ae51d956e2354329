"""`polres-station run` under a systemd-like notify socket: READY before the broker is up,
WATCHDOG while healthy, STATUS lines, STOPPING and outputs off on SIGTERM."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from helpers import free_port, station_config


def test_run_notifies_ready_without_broker_then_watchdog_and_stopping(tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    cfg = station_config(tmp_path, free_port())      # nobody listens there
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen([sys.executable, "-m", "station.cli", "run", "-c", str(cfg)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        messages: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("WATCHDOG=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert any("READY=1" in m for m in messages), messages
        assert any("WATCHDOG=1" in m for m in messages), messages
        assert any("STATUS=" in m for m in messages)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        tail = []
        sock.settimeout(2)
        try:
            while True:
                tail.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert any("STOPPING=1" in m for m in tail), tail
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
