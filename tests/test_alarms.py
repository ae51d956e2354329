"""The alarm machine, rule by rule (docs/BEHAVIOUR.md §1–2), with a fake clock: no sleeping."""
from __future__ import annotations

import sys
from typing import Callable

import pytest

from station.alarms import (
    CONTINUOUS, OFF, AckCommand, ButtonEdge, FaultChange, FeedbackEdge, Machine, NewComplaint,
    Outputs, ResumedAlarm, SilenceCommand, SelfTestCommand, Tick, command_input,
)
from station.config import DEFAULT_PATTERNS, AlarmConfig, Pattern
from station.protocol import Trigger


class Clock:
    """A fake monotonic clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def machine(clock: Clock) -> Machine:
    return Machine(AlarmConfig(), bounce_s=0.05, now=clock())


def types(decision) -> list[str]:
    return [e.type for e in decision.events]


def run_until(m: Machine, clock: Clock, t: float) -> list:
    """Feed ticks at every deadline up to ``t`` (as the service loop does)."""
    decisions = []
    for _ in range(10_000):  # a deadline that never clears would loop forever
        d = m.next_deadline()
        if d is None or d > t:
            break
        clock.t = max(clock.t, d)
        decisions.append(m.handle(Tick(), clock()))
    else:
        raise AssertionError("a deadline never clears")
    clock.t = t
    decisions.append(m.handle(Tick(), clock()))
    return decisions


def all_events(decisions) -> list[str]:
    return [e.type for d in decisions for e in d.events]


def press(m: Machine, clock: Clock, hold: float = 0.1):
    """A clean press and release, debounced."""
    out = [m.handle(ButtonEdge(True, clock()), clock())]
    out += run_until(m, clock, clock() + hold)
    out.append(m.handle(ButtonEdge(False, clock()), clock()))
    out += run_until(m, clock, clock() + 0.1)
    return out


def complain(m: Machine, clock: Clock, cid: str = "110-1", priority: str = "normal"):
    return m.handle(NewComplaint(cid, priority), clock())


# --- complaints and outputs ------------------------------------------------------------------

@pytest.mark.parametrize("priority", ["emergency", "urgent", "normal"])
def test_complaint_sounds_siren_with_priority_pattern_and_beacon(machine, clock, priority):
    d = complain(machine, clock, priority=priority)
    assert d.outputs == Outputs(siren=DEFAULT_PATTERNS[priority], beacon=True)
    assert types(d) == ["alerting"]
    assert d.events[0].fields["complaint_id"] == "110-1"
    assert d.events[0].fields["priority"] == priority
    # The machine drives no relay, so it measures no relay latency: the shell adds it.
    assert "relay_latency_ms" not in d.events[0].fields
    assert d.records[0].state == "active" and d.status_changed


def test_default_patterns_match_spec():
    assert DEFAULT_PATTERNS["emergency"].continuous
    assert DEFAULT_PATTERNS["urgent"] == Pattern(1.0, 0.5)
    assert DEFAULT_PATTERNS["normal"] == Pattern(1.0, 2.0)


def test_unknown_priority_falls_back_to_normal(machine, clock):
    d = complain(machine, clock, priority="weird")
    assert d.outputs.siren == DEFAULT_PATTERNS["normal"]


def test_highest_priority_sounding_sets_pattern(machine, clock):
    complain(machine, clock, "a", "normal")
    d = complain(machine, clock, "b", "emergency")
    assert d.outputs.siren == DEFAULT_PATTERNS["emergency"]
    d = machine.handle(AckCommand("b"), clock())
    assert d.outputs.siren == DEFAULT_PATTERNS["normal"] and d.outputs.beacon


def test_same_id_while_active_starts_nothing(machine, clock):
    complain(machine, clock)
    d = complain(machine, clock)
    assert d.events == () and d.records == ()


def test_no_input_no_output(machine, clock):
    d = machine.handle(Tick(), clock())
    assert d.outputs == OFF and d.events == ()
    assert machine.next_deadline() is None


# --- maximum on-time, escalation, reminders --------------------------------------------------

def test_siren_stops_at_max_on_time_and_escalates_beacon_stays(machine, clock):
    start = clock()
    complain(machine, clock)
    ds = run_until(machine, clock, start + 119.9)
    assert ds[-1].outputs.siren is not None
    ds = run_until(machine, clock, start + 120.0)
    assert all_events(ds) == ["escalated"]
    esc = [e for d in ds for e in d.events][0]
    assert esc.fields["unacked_s"] == pytest.approx(120.0)
    assert ds[-1].outputs == Outputs(siren=None, beacon=True)


def test_reminder_bursts_every_period_until_acked(machine, clock):
    start = clock()
    complain(machine, clock)
    run_until(machine, clock, start + 120)
    # first reminder 300 s after escalation, 10 s long
    assert run_until(machine, clock, start + 419.9)[-1].outputs.siren is None
    assert run_until(machine, clock, start + 420.0)[-1].outputs.siren is not None
    assert run_until(machine, clock, start + 429.9)[-1].outputs.siren is not None
    ds = run_until(machine, clock, start + 430.0)
    assert ds[-1].outputs == Outputs(None, True)
    assert all_events(ds) == []  # reminders raise no second escalation
    assert run_until(machine, clock, start + 720.0)[-1].outputs.siren is not None
    d = machine.handle(AckCommand(), clock())
    assert d.outputs == OFF
    assert machine.next_deadline() is None


def test_new_complaint_during_reminder_phase_sounds(machine, clock):
    start = clock()
    complain(machine, clock, "old")
    run_until(machine, clock, start + 200)
    d = complain(machine, clock, "new", "urgent")
    assert d.outputs.siren == DEFAULT_PATTERNS["urgent"]


def test_zero_reminder_length_means_no_reminders(clock):
    m = Machine(AlarmConfig(reminder_s=0.0), now=clock())
    start = clock()
    complain(m, clock)
    ds = run_until(m, clock, start + 2000)
    assert all(d.outputs.siren is None for d in ds[1:])
    assert ds[-1].outputs.beacon


def test_alarms_due_at_one_tick_escalate_in_the_order_they_were_raised(machine, clock):
    start = clock()
    for cid in ("c", "a", "b"):
        complain(machine, clock, cid)
    machine.handle(AckCommand("a"), clock())
    complain(machine, clock, "a")          # raised again: now the last
    d = machine.handle(Tick(), start + 500)    # every siren and the first reminders due at once
    assert [e.fields["complaint_id"] for e in d.events] == ["c", "b", "a"]


def test_escalation_hands_the_pattern_to_the_next_sounding_priority(machine, clock):
    start = clock()
    complain(machine, clock, "e", "emergency")
    clock.t += 60
    complain(machine, clock, "n", "normal")
    ds = run_until(machine, clock, start + 120)
    assert all_events(ds) == ["escalated"]
    assert ds[-1].outputs == Outputs(DEFAULT_PATTERNS["normal"], True)
    ds = run_until(machine, clock, start + 180)
    assert ds[-1].outputs == Outputs(None, True)


def _lines_run(fn: Callable[[], object]) -> int:
    """How many lines of Python ``fn`` executes: a cost that does not depend on the machine's
    speed (C code such as heapq counts nothing)."""
    count = 0

    def local(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal count
        count += event == "line"
        return local

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: local)
    try:
        fn()
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.parametrize("step", ["complaint", "tick", "deadline", "due"])
def test_an_input_costs_the_same_with_1000_alarms_active_as_with_10(clock, step):
    """A burst leaves 1,000 alarms active: an input must not walk all of them (it did, and the
    burst ran at half the floor's rate; docs/PERFORMANCE.md). Counted in lines executed, not
    timed, so the test is deterministic; a heap kept in Python would add a few lines per
    doubling, well under the margin."""
    def cost(active: int) -> int:
        m = Machine(AlarmConfig(), now=clock())
        start = clock()
        for i in range(active):
            m.handle(NewComplaint(f"c-{i}", ("urgent", "normal")[i % 2]), start + i * 0.001)
        now = start + active * 0.001
        if step == "complaint":
            return _lines_run(lambda: m.handle(NewComplaint("new", "emergency"), now))
        if step == "tick":
            return _lines_run(lambda: m.handle(Tick(), now))
        if step == "deadline":
            return _lines_run(m.next_deadline)
        # the first alarm's siren ends: that one escalates, the others wait
        decisions = []
        lines = _lines_run(lambda: decisions.append(m.handle(Tick(), start + 120.0)))
        assert [e.fields["complaint_id"] for e in decisions[0].events] == ["c-0"]
        return lines

    few, many = cost(10), cost(1000)
    assert many <= few + 50, f"{few} lines with 10 alarms active, {many} with 1,000"


# --- acknowledge -----------------------------------------------------------------------------

def test_button_press_acks_all_with_one_event_each(machine, clock):
    complain(machine, clock, "a")
    complain(machine, clock, "b", "urgent")
    clock.t += 5
    ds = press(machine, clock)
    acks = [e for d in ds for e in d.events if e.type == "ack"]
    assert [e.fields["complaint_id"] for e in acks] == ["a", "b"]
    assert all(e.fields["method"] == "button" and "by" not in e.fields for e in acks)
    assert acks[0].fields["ack_latency_ms"] == pytest.approx(5050, abs=1)
    assert ds[-1].outputs == OFF
    recs = [r for d in ds for r in d.records]
    assert {r.state for r in recs} == {"acked"} and recs[0].ack_method == "button"


def test_ack_switches_outputs_off_at_once(machine, clock):
    complain(machine, clock)
    d = machine.handle(ButtonEdge(True, clock()), clock())
    assert d.outputs.siren is not None  # not yet: debounce
    clock.t += 0.05
    d = machine.handle(Tick(), clock())
    assert d.outputs == OFF and types(d) == ["ack"]


def test_remote_ack_named_and_by(machine, clock):
    complain(machine, clock, "a")
    complain(machine, clock, "b")
    d = machine.handle(AckCommand("a", by="desk-7"), clock())
    assert d.reply == (True, "acknowledged 1")
    assert d.events[0].fields == {"complaint_id": "a", "method": "remote",
                                  "ack_latency_ms": 0.0, "by": "desk-7"}
    assert d.outputs.beacon  # b is still unacknowledged


def test_remote_ack_unknown_or_none_active_is_refused(machine, clock):
    assert machine.handle(AckCommand(), clock()).reply[0] is False
    complain(machine, clock, "a")
    d = machine.handle(AckCommand("zzz"), clock())
    assert d.reply[0] is False and d.events == () and d.outputs.beacon


def test_ack_of_escalated_alarm(machine, clock):
    start = clock()
    complain(machine, clock)
    run_until(machine, clock, start + 121)
    d = machine.handle(AckCommand(), clock())
    assert types(d) == ["ack"] and d.outputs == OFF


# --- silence ---------------------------------------------------------------------------------

def test_silence_stops_siren_keeps_beacon_and_alarm(machine, clock):
    start = clock()
    complain(machine, clock)
    d = machine.handle(SilenceCommand(), clock())
    assert d.reply[0] and d.outputs == Outputs(None, True)
    assert d.records[0].silenced and d.records[0].state == "active"
    ds = run_until(machine, clock, start + 200)
    assert "escalated" not in all_events(ds)
    # still reminded until acknowledged
    assert run_until(machine, clock, start + 300)[-1].outputs.siren is not None


def test_silence_with_no_alarm_refused(machine, clock):
    assert machine.handle(SilenceCommand(), clock()).reply[0] is False


# --- button: debounce, holds -----------------------------------------------------------------

def test_bounce_shorter_than_debounce_does_nothing(machine, clock):
    complain(machine, clock)
    machine.handle(ButtonEdge(True, clock()), clock())
    clock.t += 0.02
    machine.handle(ButtonEdge(False, clock()), clock())
    ds = run_until(machine, clock, clock() + 1)
    assert "ack" not in all_events(ds) and ds[-1].outputs.beacon


def test_press_read_late_still_counts(machine, clock):
    """A press held longer than the debounce counts by the edges' own times, however late the
    loop reads them: the debounce deadline's tick was late and the release edge came first."""
    complain(machine, clock)
    t0 = clock()
    machine.handle(ButtonEdge(True, t0), t0)
    clock.t = t0 + 0.07                      # the loop woke 20 ms after the debounce deadline
    d = machine.handle(ButtonEdge(False, t0 + 0.06), clock())
    assert types(d) == ["ack"] and d.outputs == OFF


def test_spike_read_late_is_not_a_press(machine, clock):
    """A 10 ms spike on the button wire, both edges read 200 ms late (a busy loop, a complaint
    handled between them): never an acknowledgment, of the old alarm or of the new one."""
    complain(machine, clock, "110-old")
    t0 = clock()
    clock.t = t0 + 0.2
    assert types(machine.handle(ButtonEdge(True, t0), clock())) == []
    assert "ack" not in types(complain(machine, clock, "110-new"))
    assert types(machine.handle(ButtonEdge(False, t0 + 0.01), clock())) == []
    ds = run_until(machine, clock, clock() + 1)
    assert "ack" not in all_events(ds) and ds[-1].outputs.beacon


def test_release_read_late_then_press_again(machine, clock):
    """Press, release, press again, each edge read late: two presses, judged by edge times."""
    complain(machine, clock, "110-1")
    t0 = clock()
    machine.handle(ButtonEdge(True, t0), t0)
    clock.t = t0 + 0.5
    assert types(machine.handle(ButtonEdge(False, t0 + 0.2), clock())) == ["ack"]
    complain(machine, clock, "110-2")
    assert types(machine.handle(ButtonEdge(True, t0 + 0.4), clock())) == []  # release settled
    ds = run_until(machine, clock, clock() + 0.1)
    assert all_events(ds) == ["ack"] and ds[-1].outputs == OFF


def test_chattering_press_acks_once(machine, clock):
    complain(machine, clock)
    for i in range(5):  # five bounces within 1 ms, then held
        machine.handle(ButtonEdge(i % 2 == 0, clock()), clock())
        clock.t += 0.0002
    machine.handle(ButtonEdge(True, clock()), clock())
    ds = run_until(machine, clock, clock() + 0.5)
    assert all_events(ds).count("ack") == 1


def test_press_without_alarm_only_logs(machine, clock):
    ds = press(machine, clock)
    assert all_events(ds) == []
    assert any("no active alarm" in n for d in ds for n in d.notes)
    assert all(d.outputs == OFF for d in ds)


def test_long_press_without_alarm_runs_selftest(machine, clock):
    machine.handle(ButtonEdge(True, clock()), clock())
    t0 = clock()
    ds = run_until(machine, clock, t0 + 3.05)
    assert ds[-1].outputs == Outputs(CONTINUOUS, True)
    machine.handle(ButtonEdge(False, clock()), clock())
    assert run_until(machine, clock, t0 + 4.1)[-1].outputs == Outputs(None, True)
    ds = run_until(machine, clock, t0 + 6.1)
    sel = [e for d in ds for e in d.events if e.type == "selftest"]
    assert sel and sel[0].fields == {"trigger": "button", "result": "ok"}
    assert ds[-1].outputs == OFF


def test_long_press_that_acked_does_not_selftest(machine, clock):
    complain(machine, clock)
    machine.handle(ButtonEdge(True, clock()), clock())
    ds = run_until(machine, clock, clock() + 5)
    assert "selftest" not in all_events(ds) and ds[-1].outputs == OFF


def test_stuck_button_fault_ignored_until_released(machine, clock):
    machine.handle(ButtonEdge(True, clock()), clock())
    t0 = clock()
    ds = run_until(machine, clock, t0 + 30.1)
    assert "fault" in all_events(ds)
    assert machine.button_state == "stuck" and "button_stuck" in machine.faults
    # a complaint while stuck still sounds, and the held button does not ack it
    d = complain(machine, clock)
    assert d.outputs.siren is not None
    assert "ack" not in all_events(run_until(machine, clock, clock() + 5))
    machine.handle(ButtonEdge(False, clock()), clock())
    ds = run_until(machine, clock, clock() + 0.1)
    assert all_events(ds) == ["fault_cleared"] and machine.button_state == "released"
    assert ds[-1].outputs.siren is not None  # the alarm still waits for a real press
    assert "ack" in all_events(press(machine, clock))


def test_button_held_at_start_is_not_a_press(clock):
    m = Machine(AlarmConfig(), button_pressed=True, now=clock())
    complain(m, clock)
    ds = run_until(m, clock, clock() + 2)
    assert "ack" not in all_events(ds) and "selftest" not in all_events(ds)


# --- self-test command -----------------------------------------------------------------------

def test_test_command_refused_during_real_alarm(machine, clock):
    complain(machine, clock)
    d = machine.handle(SelfTestCommand(2), clock())
    assert d.reply == (False, "refused: a real alarm is active")
    assert d.outputs.siren == DEFAULT_PATTERNS["normal"]


@pytest.mark.parametrize("seconds", [0, 11, -1])
def test_test_command_seconds_bounded(machine, clock, seconds):
    assert machine.handle(SelfTestCommand(seconds), clock()).reply[0] is False


def test_real_alarm_cuts_selftest_short(machine, clock):
    machine.handle(SelfTestCommand(5), clock())
    d = complain(machine, clock, priority="urgent")
    assert d.outputs.siren == DEFAULT_PATTERNS["urgent"]
    assert not machine.self_test_running


# --- feedback --------------------------------------------------------------------------------

def test_siren_without_feedback_raises_siren_failed(clock):
    m = Machine(AlarmConfig(), feedback=True, now=clock())
    complain(m, clock, priority="emergency")
    ds = run_until(m, clock, clock() + 0.99)
    assert "fault" not in all_events(ds)
    ds = run_until(m, clock, clock() + 0.02)
    f = [e for d in ds for e in d.events if e.type == "fault"]
    assert f and f[0].fields["fault"] == "siren_failed"
    d = m.handle(FeedbackEdge(True, clock()), clock())
    assert types(d) == ["fault_cleared"]


def test_siren_with_feedback_is_fine(clock):
    m = Machine(AlarmConfig(), feedback=True, now=clock())
    complain(m, clock, priority="emergency")
    clock.t += 0.1
    m.handle(FeedbackEdge(True, clock()), clock())
    ds = run_until(m, clock, clock() + 5)
    assert "fault" not in all_events(ds)


def test_no_feedback_wired_no_fault(machine, clock):
    complain(machine, clock)
    assert "fault" not in all_events(run_until(machine, clock, clock() + 5))


def test_selftest_reports_missing_feedback(clock):
    m = Machine(AlarmConfig(), feedback=True, now=clock())
    m.handle(SelfTestCommand(1, trigger="cli"), clock())
    ds = run_until(m, clock, clock() + 3.1)
    sel = [e for d in ds for e in d.events if e.type == "selftest"]
    assert sel[0].fields == {"trigger": "cli", "result": "siren_feedback_missing"}


# --- faults from the shell -------------------------------------------------------------------

def test_fault_changes_emit_once(machine, clock):
    d = machine.handle(FaultChange("storage", True, "disk full"), clock())
    assert types(d) == ["fault"] and d.status_changed
    assert types(machine.handle(FaultChange("storage", True, "disk full"), clock())) == []
    d = machine.handle(FaultChange("storage", False), clock())
    assert types(d) == ["fault_cleared"] and machine.faults == {}


# --- resume after restart --------------------------------------------------------------------

def test_resume_within_on_time_sounds_for_the_rest(machine, clock):
    d = machine.resume([ResumedAlarm("a", "urgent", age_s=100)], clock())
    assert d.outputs == Outputs(DEFAULT_PATTERNS["urgent"], True)
    ds = run_until(machine, clock, clock() + 20)
    assert all_events(ds) == ["escalated"] and ds[-1].outputs == Outputs(None, True)


def test_resume_past_on_time_escalates_and_reminds(machine, clock):
    d = machine.resume([ResumedAlarm("a", "normal", age_s=500)], clock())
    assert types(d) == ["escalated"]
    assert d.outputs.siren is not None and d.outputs.beacon  # immediate reminder burst
    ds = run_until(machine, clock, clock() + 10)
    assert ds[-1].outputs == Outputs(None, True)


def test_resume_already_escalated_sends_no_second_escalation(machine, clock):
    d = machine.resume([ResumedAlarm("a", "normal", age_s=500, escalated=True)], clock())
    assert types(d) == []
    assert d.outputs.beacon


def test_resumed_alarm_can_be_acked_with_latency(machine, clock):
    machine.resume([ResumedAlarm("a", "normal", age_s=10)], clock())
    d = machine.handle(AckCommand(), clock())
    assert d.events[0].fields["ack_latency_ms"] == pytest.approx(10000)


def test_status_views(machine, clock):
    complain(machine, clock, "a", "urgent")
    clock.t += 7
    assert machine.oldest_unacked_s(clock()) == pytest.approx(7)
    assert machine.active_alarms(clock())[0]["complaint_id"] == "a"
    assert machine.button_state == "released"
    complain(machine, clock, "b")
    assert [a["complaint_id"] for a in machine.active_alarms(clock(), limit=1)] == ["a"]
    assert machine.active_count == 2


@pytest.mark.parametrize("cmd, args, expected", [
    ("ack", {"complaint_id": "c-1", "by": "desk"}, AckCommand("c-1", "desk")),
    ("ack", {}, AckCommand(None, None)),
    ("silence", {}, SilenceCommand()),
    ("test", {"seconds": 2}, SelfTestCommand(2.0, trigger=Trigger.CLI)),
    ("status", {}, None),                 # the shell answers it: no input for the machine
    ("reboot", {}, None),                 # unknown
])
def test_command_input(cmd, args, expected):
    assert command_input(cmd, args, Trigger.CLI) == expected
