"""The demo: headless runs as a subprocess (amqtt with no mosquitto on PATH, and auto), the
panel rendered from a running demo, the broker toggle with the durable outbox, and the
interactive mode in a pseudo-terminal (keys work, the terminal is restored)."""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from rich.console import Console

from station.desk.demo import FAKE_SUMMARY, Demo, DemoSettings
from station.desk.demo import snapshot
from station.desk.demo_panel import render_panel
from station.desk.embedded_broker import ENV_KIND, EmbeddedBroker, find_mosquitto, resolve_kind

from helpers import wait_for

pytestmark = pytest.mark.broker   # the demo runs its own broker (amqtt or mosquitto)

VENV_BIN = str(Path(sys.executable).parent)


def run_headless(env: dict[str, str], duration: float = 8) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "station.cli", "demo", "--headless", "--duration", str(duration)],
        capture_output=True, text=True, timeout=duration + 40, env=env,
        cwd=Path(__file__).parent.parent)


def assert_cycle(out: str) -> None:
    alerted = set(re.findall(r"^alerting (\S+) priority=\w+ relay_latency_ms=[\d.]+$", out, re.M))
    acked = set(re.findall(r"^ack (\S+) ack_latency_ms=[\d.]+ method=button$", out, re.M))
    assert alerted & acked, out
    assert FAKE_SUMMARY not in out


def test_headless_on_amqtt_without_mosquitto_on_path() -> None:
    env = {"PATH": VENV_BIN, ENV_KIND: "amqtt", "HOME": os.environ.get("HOME", "/tmp")}
    result = run_headless(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("broker amqtt 127.0.0.1:")
    assert_cycle(result.stdout)
    assert "Traceback" not in result.stderr


def test_headless_auto_picks_mosquitto_when_installed() -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_KIND}
    result = run_headless(env)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = "mosquitto" if find_mosquitto() else "amqtt"
    assert result.stdout.startswith(f"broker {expected} 127.0.0.1:")
    assert_cycle(result.stdout)


def test_no_terminal_falls_back_to_headless() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "station.cli", "demo", "--duration", "5", "--interval", "1.5"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "running headless" in result.stderr
    assert_cycle(result.stdout)


def test_broker_kind_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KIND, raising=False)
    assert resolve_kind(which=lambda name: None, fallbacks=()) == "amqtt"
    assert resolve_kind(which=lambda name: "/opt/bin/mosquitto") == "mosquitto"
    monkeypatch.setenv(ENV_KIND, "amqtt")
    assert resolve_kind(which=lambda name: "/opt/bin/mosquitto") == "amqtt"
    with pytest.raises(ValueError):
        resolve_kind("rabbitmq")


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_embedded_broker_stops_and_starts_on_the_same_port(kind: str) -> None:
    if kind == "mosquitto" and not find_mosquitto():
        pytest.fail("mosquitto not installed (make broker-tools installs it)")
    import socket
    with EmbeddedBroker(kind) as broker:
        broker.start()
        socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()
        assert broker.toggle() is False
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()
        assert broker.toggle() is True
        socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()


# --- in-process demo --------------------------------------------------------------------------

@pytest.fixture(params=["amqtt", "mosquitto"])
def demo(request: pytest.FixtureRequest) -> Iterator[Demo]:
    if request.param == "mosquitto" and not find_mosquitto():
        pytest.fail("mosquitto not installed (make broker-tools installs it)")
    with Demo(DemoSettings(broker_kind=request.param, seed=1)) as d:
        d.start(first_complaint_s=None)
        wait_for(lambda: d.station.link.connected and d.hq.client.is_connected(), 10,
                 what="station and HQ connected")
        yield d


def panel_text(demo: Demo) -> str:
    console = Console(record=True, width=100, color_system=None)
    console.print(render_panel(snapshot(demo)))
    return console.export_text()


def test_panel_renders_lamps_and_alarm_from_the_real_station(demo: Demo) -> None:
    assert demo.hq is not None and demo.button is not None
    text = panel_text(demo)
    assert "SIREN off" in text and "BEACON off" in text and "quiet room" in text

    cid = demo.hq.send_complaint("urgent")
    wait_for(lambda: demo.relay_on("beacon"), 5, what="beacon relay on")
    wait_for(lambda: cid in demo.hq.alerted, 5, what="alerting upstream")
    wait_for(lambda: demo.relay_on("siren"), 3, what="siren in its on phase")
    text = panel_text(demo)
    assert "SIREN ON" in text and "BEACON ON" in text
    assert cid in text and "urgent" in text and "1 s on / 0.5 s off" in text
    assert FAKE_SUMMARY not in text

    demo.button.press()
    wait_for(lambda: cid in demo.hq.acked, 5, what="ack upstream")
    wait_for(lambda: not demo.relay_on("beacon") and not demo.relay_on("siren"), 2,
             what="relays off")
    text = panel_text(demo)
    assert "SIREN off" in text and "BEACON off" in text and "quiet room" in text
    assert re.search(rf"ack\s+{re.escape(cid)}\s+ack \d+ ms \(button\)\s+received", text), text


def test_broker_down_ack_waits_in_the_durable_outbox(demo: Demo) -> None:
    assert demo.hq is not None and demo.button is not None
    cid = demo.hq.send_complaint("emergency")
    wait_for(lambda: cid in demo.hq.alerted, 5, what="alerting upstream")
    demo.broker.stop()
    wait_for(lambda: not demo.station.link.connected, 10, what="station sees the broker gone")
    demo.button.press()
    wait_for(lambda: not demo.relay_on("beacon"), 3, what="relays off without a broker")
    wait_for(lambda: demo.station.outbox.pending >= 1, 3, what="ack waiting in the outbox")
    text = panel_text(demo)
    assert "DOWN" in text and re.search(rf"ack\s+{re.escape(cid)}.*queued", text), text

    demo.broker.start()
    wait_for(lambda: demo.station.outbox.pending == 0, 15, what="outbox drained")
    if demo.broker.kind == "mosquitto":   # persistent sessions survive: HQ gets the ack
        wait_for(lambda: cid in demo.hq.acked, 10, what="ack upstream after restart")


# --- interactive, in a pseudo-terminal --------------------------------------------------------

class Pty:
    def __init__(self, *args: str) -> None:
        import fcntl
        import pty
        import struct
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 110, 0, 0))
        self.before = termios.tcgetattr(self.slave)
        self.out = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "station.cli", "demo", *args],
            stdin=self.slave, stdout=self.slave, stderr=self.slave, start_new_session=True,
            env={**os.environ, "TERM": "xterm-256color"})

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.out += os.read(self.master, 1 << 16)
                except OSError:
                    return

    def wait_text(self, needle: str, timeout: float = 15) -> None:
        end = time.monotonic() + timeout
        while needle.encode() not in self.out and time.monotonic() < end:
            self.pump(0.1)
        assert needle.encode() in self.out, self.text()[-3000:]

    def key(self, k: str, then: float = 0.5) -> None:
        os.write(self.master, k.encode())
        self.pump(then)

    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", self.out.decode("utf-8", "replace"))

    def finish(self) -> tuple[int, Any]:
        # Keep reading while it exits, as a terminal does: a full pty buffer would block the
        # panel's last writes and the process with them.
        end = time.monotonic() + 20
        while self.proc.poll() is None and time.monotonic() < end:
            self.pump(0.1)
        code = self.proc.wait(1)
        self.pump(0.2)
        after = termios.tcgetattr(self.slave)
        os.close(self.master)
        os.close(self.slave)
        return code, after


def test_interactive_keys_and_terminal_restored_after_q() -> None:
    t = Pty("--interval", "1000")
    try:
        t.wait_text("quiet room")
        t.key("c")
        t.wait_text("alerting")
        t.wait_text("BEACON ON")
        t.key(" ")
        t.wait_text("(button)")
        t.key("q", then=0.1)
    except BaseException:
        t.proc.kill()
        raise
    code, after = t.finish()
    assert code == 0
    assert after == t.before           # echo and line mode back
    assert FAKE_SUMMARY not in t.text()


def test_interactive_terminal_restored_after_ctrl_c() -> None:
    t = Pty("--interval", "1000")
    try:
        t.wait_text("quiet room")
        t.proc.send_signal(signal.SIGINT)
    except BaseException:
        t.proc.kill()
        raise
    code, after = t.finish()
    assert code == 0
    assert after == t.before
