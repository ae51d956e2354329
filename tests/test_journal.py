"""Journal priorities (docs/CLI.md, the unit's logging): under systemd every line the station
writes carries its sd-daemon(3) priority prefix, so `journalctl -p warning -u polres-station`
shows GPIO failures, refused subscriptions, storage faults and refused starts. journald does
not run on the test machines: the prefixes are read back from the stream itself, exactly as
journald would parse it."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (REGION, ROOT, journal_capture, journal_entries, station_config, wait_for)
from station.terminal import (LOG_FORMAT, JournalFormatter, JournalPriority, LineHandler,
                              hold_lines, journal_priority, journal_stream, release_lines,
                              setup_logging)

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "station.example.yaml"
ERR, WARNING, INFO, DEBUG = 3, 4, 6, 7


@pytest.mark.parametrize("level, prefix", [
    (logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6),
    (logging.DEBUG, 7), (logging.NOTSET, 7), (35, 4)])
def test_priority_of_each_level(level, prefix):
    assert journal_priority(level) == prefix


def test_every_line_of_a_traceback_keeps_the_priority():
    formatter = JournalFormatter(LOG_FORMAT)
    try:
        raise OSError("GPIO line gone")
    except OSError:
        record = logging.LogRecord("station.hardware", logging.ERROR, __file__, 1,
                                   "cannot switch off the relay on GPIO%d", (17,), sys.exc_info())
    lines = formatter.format(record).split("\n")
    assert len(lines) > 3
    assert lines[0] == "<3>ERROR station.hardware: cannot switch off the relay on GPIO17"
    assert all(line.startswith("<3>") for line in lines)


class Writes(io.StringIO):
    """A stream that remembers each write (one write = one system call on stderr)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def held_log():
    """A LineHandler with the journal's prefixes on the root logger, and its stream."""
    stream = Writes()
    handler = LineHandler(stream)
    handler.setFormatter(JournalFormatter(LOG_FORMAT))
    root, log = logging.getLogger(), logging.getLogger("station.burst")
    root.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield log, stream
    finally:
        root.removeHandler(handler)
        log.setLevel(logging.NOTSET)


def test_held_lines_go_out_in_one_write_in_order(held_log):
    log, stream = held_log
    log.info("before")
    handlers = hold_lines()
    assert len(handlers) == 1
    for i in range(5):
        log.info("alerting complaint_id=b-%d", i)
    assert stream.writes == ["<6>INFO station.burst: before\n"]
    release_lines(handlers)
    assert len(stream.writes) == 2
    assert [text for _, text in journal_entries(stream.writes[1])] == [
        f"INFO station.burst: alerting complaint_id=b-{i}" for i in range(5)]
    log.info("after")                       # released: one write per line again
    assert stream.writes[-1] == "<6>INFO station.burst: after\n"


def test_a_warning_is_never_held_and_keeps_its_place(held_log):
    log, stream = held_log
    handlers = hold_lines()
    log.info("one")
    log.warning("trouble")
    assert journal_entries(stream.getvalue()) == [
        (INFO, "INFO station.burst: one"), (WARNING, "WARNING station.burst: trouble")]
    log.info("two")
    release_lines(handlers)
    assert journal_entries(stream.getvalue())[-1] == (INFO, "INFO station.burst: two")


def test_held_lines_are_bounded(held_log):
    log, stream = held_log
    handlers = hold_lines()
    for i in range(LineHandler.MAX_HELD + 1):
        log.info("line %d", i)
    assert len(stream.getvalue().splitlines()) == LineHandler.MAX_HELD
    release_lines(handlers)
    assert len(stream.getvalue().splitlines()) == LineHandler.MAX_HELD + 1
    release_lines(handlers)                 # nothing held: nothing written
    assert len(stream.writes) == 2


def test_a_log_line_makes_no_system_call_for_the_pid(monkeypatch):
    """journald records the PID; a getpid() per record was a tenth of the loop's burst."""
    monkeypatch.setattr(logging, "logProcesses", True)
    monkeypatch.setattr(logging, "logMultiprocessing", True)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))   # restored afterwards
    monkeypatch.setattr(root, "level", root.level)
    setup_logging("INFO", stream=io.StringIO())
    calls: list[int] = []
    monkeypatch.setattr(os, "getpid", lambda: calls.append(1) or 1)
    logging.getLogger("station.pid").warning("one line")
    assert calls == []


def test_journal_stream_is_recognised_by_device_and_inode(tmp_path):
    with open(tmp_path / "log", "w") as stream:
        st = os.fstat(stream.fileno())
        assert journal_stream(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        # Set by systemd but then redirected elsewhere, unset, or garbage: no prefixes.
        assert not journal_stream(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not journal_stream(stream, {})
        assert not journal_stream(stream, {"JOURNAL_STREAM": "yes"})
    assert not journal_stream(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def run_under_journal(tmp_path: Path, *args: str, timeout: float = 30,
                      env: dict[str, str] | None = None,
                      until: str | None = None) -> tuple[int | None, list[tuple[int | None, str]]]:
    """``polres-station ARGS`` with stdout+stderr on one file whose device:inode is in
    JOURNAL_STREAM, as systemd connects a service to journald. With ``until``, the process
    is stopped (SIGTERM) once that text is in the stream."""
    log = tmp_path / "journal-stream"
    with open(log, "wb") as stream:
        st = os.fstat(stream.fileno())
        proc = subprocess.Popen(
            [sys.executable, "-m", "station.cli", *args], stdout=stream, stderr=stream,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {}),
                 "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        try:
            if until is not None:
                wait_for(lambda: until in log.read_text(errors="replace"), timeout,
                         what=f"{until!r} in the log")
                proc.terminate()
            code = proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, journal_entries(log.read_text(errors="replace"))


def test_refused_start_is_an_error_in_the_journal(tmp_path):
    code, entries = run_under_journal(tmp_path, "run", "-c", str(EXAMPLE))
    assert code == 78
    assert entries and all(p == ERR for p, _ in entries), entries
    assert any("station.id:" in line for _, line in entries)


def test_gpio_failure_at_start_is_an_error_in_the_journal(tmp_path):
    # lgpio cannot open a chip on this machine (none exists; the library may be missing too).
    cfg = station_config(tmp_path, 1, gpio={"pin_factory": "lgpio"})
    code, entries = run_under_journal(tmp_path, "run", "-c", str(cfg))
    assert code == 1
    gpio = [(p, line) for p, line in entries if line.startswith("GPIO")]
    assert gpio and all(p == ERR for p, _ in gpio), entries


def test_running_station_storage_fault_and_broker_trouble_are_warnings_or_worse(tmp_path,
                                                                                broker):
    """The real `run` with its state database unreadable (a directory stands in its place):
    it alarms on a temporary copy and says so at ERR; the `fault` event is a WARNING; the
    ordinary lines are INFO; every line has a prefix."""
    (tmp_path / "state" / "state.db").mkdir(parents=True)
    cfg = station_config(tmp_path, broker.port)
    code, entries = run_under_journal(
        tmp_path, "run", "-c", str(cfg), env={"RUNTIME_DIRECTORY": str(tmp_path / "run")},
        until="connected to")
    assert code == 0
    assert all(p is not None for p, _ in entries), [e for e in entries if e[0] is None]
    storage = [p for p, line in entries if line.startswith("ERROR ") and ": storage: " in line]
    fault = [p for p, line in entries if " fault fault=storage " in f"{line} "]
    started = [p for p, line in entries if "started, version" in line]
    assert storage == [ERR] and fault == [WARNING] and started == [INFO], entries


def test_unreachable_broker_is_a_warning(tmp_path):
    cfg = station_config(tmp_path, 1)     # nothing listens on port 1
    code, entries = run_under_journal(tmp_path, "run", "-c", str(cfg),
                                      until="cannot reach broker")
    assert code == 0
    assert [p for p, line in entries if "cannot reach broker" in line][:1] == [WARNING]


def test_gpio_failure_while_running_is_an_error(tmp_path, broker, hq, start_station):
    """A relay that cannot be switched: the 'GPIO failed' line is ERR and the gpio fault
    event a WARNING, with the station's own code paths and formatter."""
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d: d["state"] == "online")
    siren = s.pin("siren")

    def gone(value):
        raise OSError(5, "GPIO line gone")
    siren._set_state = gone
    with journal_capture() as out:
        hq.complaint("journal-gpio-1", priority="emergency")
        hq.wait_event("fault", fault="gpio")
    entries = journal_entries(out.getvalue())
    failed = [p for p, line in entries if "GPIO failed" in line]
    fault = [p for p, line in entries if " fault fault=gpio " in f"{line} "]
    assert failed and set(failed) == {ERR} and fault == [WARNING], entries


def test_a_burst_logs_every_event_once_in_order(tmp_path, broker, hq, start_station):
    """The loop holds its lines through a burst (terminal.LineHandler) and writes them once
    the inbox is empty: none lost, none twice, in the order of the events."""
    from station.protocol import complaint_payload
    start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d: d["state"] == "online")
    ids = [f"journal-burst-{i}" for i in range(200)]
    with journal_capture() as out:
        for cid in ids:     # back to back, no wait for each PUBACK: they queue in the inbox
            hq.client.publish(f"{ROOT}/region/{REGION}/complaints",
                              complaint_payload(complaint_id=cid, region=REGION), qos=1)
        events = hq.wait_event("alerting", count=len(ids), timeout=30)

        def logged() -> list[str] | None:
            found = [line.split("complaint_id=")[1].split()[0]
                     for p, line in journal_entries(out.getvalue())
                     if p == INFO and "INFO station: alerting complaint_id=" in line]
            return found if len(found) >= len(ids) else None
        found = wait_for(logged, 10, what="a line for each alerting event")
    assert found == [e["complaint_id"] for e in events if e["complaint_id"] in ids] == ids


def test_priorities_are_the_unit_file_s_assumption():
    # journald reads the prefixes only with SyslogLevelPrefix= on (the default): the unit
    # must not turn it off.
    unit = (Path(__file__).resolve().parent.parent / "systemd" / "polres-station.service")
    assert "SyslogLevelPrefix=no" not in unit.read_text() and "SyslogLevelPrefix=false" \
        not in unit.read_text()
    assert JournalPriority.WARNING == 4 and REGION
