"""sd_notify against a real AF_UNIX datagram socket, and the progress-checked watchdog."""
from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from station.systemd import Notifier, ProgressWatchdog, watchdog_interval


class Systemd:
    """The receiving end of $NOTIFY_SOCKET: a bound SOCK_DGRAM socket, as systemd holds."""

    def __init__(self, address: str) -> None:
        self.address = address  # as it appears in $NOTIFY_SOCKET
        bind = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.sock.settimeout(2)

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(4096)
        return dict(line.split("=", 1) for line in data.decode().split("\n"))

    def pending(self) -> list[dict[str, str]]:
        """Every datagram already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(4096)
                out.append(dict(line.split("=", 1) for line in data.decode().split("\n")))
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(2)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd_path(tmp_path: Path) -> Iterator[Systemd]:
    s = Systemd(str(tmp_path / "notify"))
    yield s
    s.close()


@pytest.fixture
def systemd_abstract() -> Iterator[Systemd]:
    s = Systemd(f"@polres-station-test-{uuid.uuid4().hex}")
    yield s
    s.close()


@pytest.mark.parametrize("kind", ["systemd_path", "systemd_abstract"])
def test_ready_watchdog_status_stopping(kind: str, request: pytest.FixtureRequest) -> None:
    systemd: Systemd = request.getfixturevalue(kind)
    n = Notifier(systemd.address)
    assert n.enabled
    assert n.ready()
    assert systemd.receive() == {"READY": "1"}
    assert n.ready(status="online, 0 alarms")
    assert systemd.receive() == {"READY": "1", "STATUS": "online, 0 alarms"}
    assert n.watchdog()
    assert systemd.receive() == {"WATCHDOG": "1"}
    assert n.status("2 alarms active\nsecond line")
    assert systemd.receive() == {"STATUS": "2 alarms active second line"}
    assert n.stopping()
    assert systemd.receive() == {"STOPPING": "1"}
    n.close()
    n.close()
    assert n.watchdog()  # reopens after close
    assert systemd.receive() == {"WATCHDOG": "1"}


def test_reads_notify_socket_from_environment(systemd_path: Systemd,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", systemd_path.address)
    n = Notifier()
    assert n.enabled and n.ready()
    assert systemd_path.receive() == {"READY": "1"}


@pytest.mark.parametrize("value", [None, "", "relative/path", "@", "vsock:2:1234"])
def test_no_op_outside_systemd(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    for n in (Notifier(), Notifier(value)):
        assert not n.enabled
        assert not n.ready(status="x")
        assert not n.watchdog()
        assert not n.status("x")
        assert not n.stopping()


def test_send_failure_never_raises_and_warns_once(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(str(tmp_path / "nobody-listens"))
    assert n.enabled
    with caplog.at_level(logging.DEBUG, logger="station.systemd"):
        assert not n.ready()
        assert not n.watchdog()
        assert not n.stopping()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "nobody-listens" in warnings[0].getMessage()


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_watchdog_pings_only_while_every_part_progresses(
        systemd_path: Systemd, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    wd = ProgressWatchdog(Notifier(systemd_path.address), ("loop", "gpio", "outbox"),
                          stall_s=20, interval_s=5, clock=clock)

    def run(seconds: int, beating: tuple[str, ...]) -> int:
        """Advance one second at a time; the named parts beat; count pings sent."""
        sent = 0
        for _ in range(seconds):
            clock.t += 1
            for part in beating:
                wd.beat(part)
            sent += wd.maybe_ping()
        return sent

    # Healthy: one ping at once, then one per interval.
    assert run(20, ("loop", "gpio", "outbox")) == 4
    assert [m for m in systemd_path.pending() if "WATCHDOG" in m] == [{"WATCHDOG": "1"}] * 4

    # The outbox wedges: pings go on for stall_s, then stop for good.
    with caplog.at_level(logging.INFO, logger="station.systemd"):
        assert run(20, ("loop", "gpio")) == 4
        assert wd.stalled(clock.t) == []
        assert run(60, ("loop", "gpio")) == 0
    assert wd.stalled(clock.t) == ["outbox"]
    received = systemd_path.pending()
    assert [m for m in received if "WATCHDOG" in m] == [{"WATCHDOG": "1"}] * 4
    assert [m["STATUS"] for m in received if "STATUS" in m] == [
        "stalled: no progress from outbox 21 s"]
    assert any("no progress from outbox" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)

    # It beats again: a ping goes out at once, then pings resume.
    assert run(1, ("loop", "gpio", "outbox")) == 1
    assert run(10, ("loop", "gpio", "outbox")) == 2


def test_watchdog_start_up_grace_and_late_registration(systemd_path: Systemd) -> None:
    clock = Clock()
    wd = ProgressWatchdog(Notifier(systemd_path.address), ("loop",), stall_s=10,
                          interval_s=1, clock=clock)
    assert wd.maybe_ping()  # nothing beat yet: start counts as a beat
    clock.t += 11
    assert not wd.maybe_ping() and wd.stalled(clock.t) == ["loop"]
    wd.beat("loop")
    wd.beat("feedback", now=clock.t - 30)  # a new part, already silent too long
    assert wd.stalled(clock.t) == ["feedback"]
    assert not wd.maybe_ping()


def test_watchdog_without_watchdog_usec_never_pings(systemd_path: Systemd,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    wd = ProgressWatchdog(Notifier(systemd_path.address), stall_s=5)
    assert wd.interval_s is None
    wd.beat("loop"), wd.beat("gpio"), wd.beat("outbox")
    assert not wd.maybe_ping()
    assert systemd_path.pending() == []
    with pytest.raises(ValueError):
        ProgressWatchdog(Notifier(None), stall_s=0)
