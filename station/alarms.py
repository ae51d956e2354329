"""The alarm machine (docs/BEHAVIOUR.md §1–2): pure; inputs in, decisions out.

It never reads a clock, touches a pin, a disk or a socket: every input carries no time of its
own except where the edge time matters, and ``handle(input, now)`` takes the monotonic ``now``
from the caller. Timers (patterns are the relay's business; maximum on-time, reminders, button
debounce and holds, self-test, siren feedback) are deadlines: the shell asks
``next_deadline()`` and feeds a ``Tick`` when it passes.

>>> m = Machine(AlarmConfig())
>>> d = m.handle(NewComplaint("110-1", Priority.URGENT), now=0.001)
>>> d.outputs.beacon, str(d.events[0].type)
(True, 'alerting')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from heapq import heapify, heappop, heappush
from typing import Any, Callable, ClassVar, Mapping

from .config import AlarmConfig, Pattern
from .protocol import (
    AckMethod, ButtonState, CommandName, Complaint, EventType, Fault, Priority, SelfTestResult,
    Trigger,
)

RANK = {p: i for i, p in enumerate(Priority)}  # 0 = highest
BY_RANK = tuple(Priority)


class AlarmState(StrEnum):
    """An alarm's state in the history: sounding or beaconing until acknowledged, then acked."""

    ACTIVE = "active"
    ACKED = "acked"
CONTINUOUS = Pattern(1.0, 0.0)


@dataclass(frozen=True)
class Outputs:
    """What the relays should do: the siren's cadence (None = off) and the beacon."""

    siren: Pattern | None = None
    beacon: bool = False


OFF = Outputs()


# --- inputs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewComplaint:
    """A valid complaint with an id not seen before (the shell checks duplicates).

    The relay latency is not the machine's to measure: it does not drive the relays. The shell
    measures it once, after switching them, for the ``alerting`` event and the history.
    """

    complaint_id: str
    priority: Priority = Priority.NORMAL
    category: str | None = None
    reported_at: str | None = None

    @classmethod
    def from_complaint(cls, c: Complaint) -> NewComplaint:
        return cls(c.id, c.priority, category=c.category, reported_at=c.reported_at)


@dataclass(frozen=True)
class ResumedAlarm:
    """An unacknowledged alarm restored from the store after a restart."""

    complaint_id: str
    priority: Priority
    age_s: float                      # seconds since it started alerting (wall clock, ≥ 0)
    escalated: bool = False
    silenced: bool = False
    category: str | None = None
    reported_at: str | None = None


@dataclass(frozen=True)
class ButtonEdge:
    """A raw (undebounced) edge of the acknowledge button at monotonic time ``at``."""

    pressed: bool
    at: float


@dataclass(frozen=True)
class FeedbackEdge:
    """A raw edge of the optional siren feedback input."""

    active: bool
    at: float


@dataclass(frozen=True)
class Tick:
    """Time has passed; deadlines up to ``now`` are due."""


@dataclass(frozen=True)
class AckCommand:
    complaint_id: str | None = None   # None: every active alarm
    by: str | None = None


@dataclass(frozen=True)
class SilenceCommand:
    pass


@dataclass(frozen=True)
class SelfTestCommand:
    seconds: float = 1.0              # siren on-time of the self-test (≤ 10)
    trigger: Trigger = Trigger.REMOTE


@dataclass(frozen=True)
class FaultChange:
    """A fault seen by the shell (storage, gpio, clock_unsynced, …) began or ended."""

    fault: Fault
    active: bool
    detail: str = ""


Input = (NewComplaint | ButtonEdge | FeedbackEdge | Tick | AckCommand | SilenceCommand
         | SelfTestCommand | FaultChange)



def command_input(cmd: str, args: Mapping[str, Any], origin: Trigger) -> Input | None:
    """The machine's input for a command (remote or local, already checked by ``protocol``);
    None for ``status`` (the shell answers it) and for an unknown command."""
    make = _COMMAND_INPUTS.get(cmd)
    return None if make is None else make(args, origin)


_COMMAND_INPUTS: dict[str, Callable[[Mapping[str, Any], Trigger], Input]] = {
    CommandName.ACK: lambda args, origin: AckCommand(args.get("complaint_id"), args.get("by")),
    CommandName.SILENCE: lambda args, origin: SilenceCommand(),
    CommandName.TEST: lambda args, origin: SelfTestCommand(float(args.get("seconds", 1.0)),
                                                           trigger=origin),
}

# --- outputs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Emit:
    """An event to publish; the shell adds the envelope (v, event_id, seq, station, at, …)."""

    type: EventType
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class AlarmRecord:
    """A snapshot of one alarm for the history; times are monotonic (the shell maps to wall)."""

    complaint_id: str
    priority: Priority
    state: AlarmState
    alerted_at: float
    escalated: bool = False
    silenced: bool = False
    category: str | None = None
    reported_at: str | None = None
    acked_at: float | None = None
    ack_method: AckMethod | None = None
    ack_by: str | None = None
    ack_latency_ms: float | None = None


@dataclass(frozen=True)
class Decision:
    outputs: Outputs
    events: tuple[Emit, ...] = ()
    records: tuple[AlarmRecord, ...] = ()
    notes: tuple[str, ...] = ()       # log lines (never personal data)
    status_changed: bool = False      # alarms, outputs or faults changed: publish status
    reply: tuple[bool, str] | None = None  # for commands: (ok, detail)


@dataclass
class _Alarm:
    complaint_id: str
    priority: Priority
    alerted_at: float
    sounding_until: float | None
    escalated: bool = False
    silenced: bool = False
    next_reminder_at: float | None = None
    category: str | None = None
    reported_at: str | None = None
    order: int = 0                    # when it joined the active alarms (their dict order)

    def record(self, **changes: Any) -> AlarmRecord:
        if not changes:                     # the common case, without merging dicts
            return AlarmRecord(self.complaint_id, self.priority, AlarmState.ACTIVE,
                               self.alerted_at, escalated=self.escalated,
                               silenced=self.silenced, category=self.category,
                               reported_at=self.reported_at)
        base: dict[str, Any] = dict(
            complaint_id=self.complaint_id, priority=self.priority, state=AlarmState.ACTIVE,
            alerted_at=self.alerted_at, escalated=self.escalated, silenced=self.silenced,
            category=self.category, reported_at=self.reported_at)
        return AlarmRecord(**{**base, **changes})


@dataclass
class _Button:
    raw: bool = False
    raw_at: float = 0.0
    pressed: bool = False             # debounced level
    pressed_since: float | None = None
    hold_used: bool = False           # this hold already acked or started a self-test
    stuck: bool = False


@dataclass
class _SelfTest:
    trigger: Trigger
    siren_until: float
    beacon_until: float
    started_at: float
    feedback_seen: bool = False
    siren_done: bool = False


@dataclass
class _Pending:
    """Collects what one ``handle`` call decides."""

    events: list[Emit] = field(default_factory=list)
    records: list[AlarmRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    changed: bool = False
    reply: tuple[bool, str] | None = None

    def emit(self, type_: EventType, **fields: Any) -> None:
        self.events.append(Emit(type_, fields))


class Machine:
    """Every alarm rule of the station, as a pure state machine.

    ``feedback`` says whether a siren feedback input is wired (enables ``siren_failed``);
    ``button_pressed`` is the button's level at start (a button held at boot is not a press).
    """

    def __init__(self, config: AlarmConfig, *, bounce_s: float = 0.05, feedback: bool = False,
                 button_pressed: bool = False, now: float = 0.0) -> None:
        self.config = config
        self.bounce_s = bounce_s
        self.feedback = feedback
        self._alarms: dict[str, _Alarm] = {}
        # Per input the machine touches only the alarms concerned, never all of them (a burst
        # leaves 1,000 active): the alarms' deadlines wait in a heap of (time, order, id), an
        # entry dropped lazily once it no longer is one of that alarm's deadlines, and the
        # sounding alarms are counted per priority rank. Every deadline change goes through
        # _set_sounding / _set_reminder, every membership change through _add / _remove.
        self._heap: list[tuple[float, int, str]] = []
        self._sounding = [0] * len(BY_RANK)
        self._added = 0
        self._button = _Button(raw=button_pressed, raw_at=now, pressed=button_pressed,
                               pressed_since=now if button_pressed else None,
                               hold_used=button_pressed)
        self._test: _SelfTest | None = None
        self._faults: dict[Fault, str] = {}
        self._outputs = OFF
        self._siren_on_since: float | None = None
        self._feedback_active = False
        self._feedback_at: float | None = None  # last time feedback confirmed the siren

    # --- public ---------------------------------------------------------------------------

    def handle(self, event: Input, now: float) -> Decision:
        """Apply one input at monotonic time ``now`` and return what must happen."""
        p = _Pending()
        handler = self._HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"not an alarm input: {event!r}")
        handler(self, event, now, p)
        self._advance(now, p, settle=type(event) is Tick)
        return self._finish(now, p)

    def resume(self, alarms: list[ResumedAlarm], now: float) -> Decision:
        """Restore unacknowledged alarms after a restart (siren if still within its on-time,
        else beacon and an immediate reminder burst)."""
        p = _Pending()
        for r in alarms:
            self._resume_one(r, now, p)
        self._advance(now, p, settle=False)
        return self._finish(now, p)

    def next_deadline(self) -> float | None:
        """The earliest monotonic time at which a ``Tick`` changes something, or None."""
        times: list[float] = []
        heap = self._heap
        while heap and not self._live(heap[0]):
            heappop(heap)
        if heap:
            times.append(heap[0][0])
        times += self._button_deadlines()
        if self._test is not None:
            times.append(self._test.beacon_until)
            if not self._test.siren_done:
                times.append(self._test.siren_until)
        if self._feedback_pending():
            assert self._siren_on_since is not None
            times.append(self._siren_on_since + self.config.feedback_timeout_s)
        return min(times) if times else None

    @property
    def outputs(self) -> Outputs:
        return self._outputs

    @property
    def faults(self) -> dict[Fault, str]:
        return dict(self._faults)

    @property
    def button_state(self) -> ButtonState:
        """The debounced button as the status reports it (docs/INTERFACE.md §5–6)."""
        if self._button.stuck:
            return ButtonState.STUCK
        return ButtonState.PRESSED if self._button.pressed else ButtonState.RELEASED

    def active_alarms(self, now: float, limit: int | None = None) -> list[dict[str, Any]]:
        """Active alarms, oldest first (the ``limit`` oldest), for status and the local views."""
        return [{"complaint_id": a.complaint_id, "priority": a.priority,
                 "age_s": round(now - a.alerted_at, 1), "sounding": a.sounding_until is not None,
                 "escalated": a.escalated, "silenced": a.silenced}
                for a in sorted(self._alarms.values(), key=lambda a: a.alerted_at)[:limit]]

    @property
    def active_count(self) -> int:
        return len(self._alarms)

    def oldest_unacked_s(self, now: float) -> float | None:
        if not self._alarms:
            return None
        return now - min(a.alerted_at for a in self._alarms.values())

    @property
    def self_test_running(self) -> bool:
        return self._test is not None

    # --- input handlers -------------------------------------------------------------------

    def _on_complaint(self, c: NewComplaint, now: float, p: _Pending) -> None:
        if c.complaint_id in self._alarms:
            p.notes.append(f"complaint {c.complaint_id} already active; ignored")
            return
        if self._test is not None:
            p.notes.append("self-test cut short by a real alarm")
            self._test = None
        priority = c.priority if c.priority in RANK else Priority.NORMAL
        alarm = _Alarm(c.complaint_id, priority, alerted_at=now,
                       sounding_until=now + self.config.siren_max_s, category=c.category,
                       reported_at=c.reported_at)
        self._add(alarm)
        p.emit(EventType.ALERTING, complaint_id=c.complaint_id, priority=priority)
        p.records.append(alarm.record())
        p.changed = True

    def _resume_one(self, r: ResumedAlarm, now: float, p: _Pending) -> None:
        age = max(0.0, r.age_s)
        alerted = now - age
        a = _Alarm(r.complaint_id, r.priority if r.priority in RANK else Priority.NORMAL, alerted,
                   sounding_until=None, escalated=r.escalated, silenced=r.silenced,
                   category=r.category, reported_at=r.reported_at)
        if not (r.escalated or r.silenced) and age < self.config.siren_max_s:
            a.sounding_until = alerted + self.config.siren_max_s
        else:
            if not (a.escalated or a.silenced):
                a.escalated = True
                p.emit(EventType.ESCALATED, complaint_id=a.complaint_id,
                       unacked_s=round(age, 1))
                p.records.append(a.record())
            a.next_reminder_at = now    # remind the room at once that something is unacked
        self._add(a)
        p.notes.append(f"resumed alarm {a.complaint_id} ({a.priority}, {age:.0f} s old)")
        p.changed = True

    def _on_button(self, e: ButtonEdge, now: float, p: _Pending) -> None:
        # The level before this edge counts if it was steady for bounce_s by the edges' own
        # times, however late the loop reads them: a held press must not be lost because the
        # debounce tick came after the release edge.
        self._settle_button(e.at, now, p)
        self._button.raw = e.pressed
        self._button.raw_at = e.at

    def _on_feedback(self, e: FeedbackEdge, now: float, p: _Pending) -> None:
        self._feedback_active = e.active
        if not e.active:
            return
        if self._outputs.siren is not None:
            self._feedback_at = e.at
            self._clear_fault(Fault.SIREN_FAILED, p)
        if self._test is not None:
            self._test.feedback_seen = True

    def _on_tick(self, e: Tick, now: float, p: _Pending) -> None:
        pass  # _advance does the work

    def _on_ack(self, c: AckCommand, now: float, p: _Pending) -> None:
        if c.complaint_id is not None and c.complaint_id not in self._alarms:
            p.reply = (False, f"no active alarm {c.complaint_id}")
            return
        if not self._alarms:
            p.reply = (False, "no active alarm")
            return
        ids = [c.complaint_id] if c.complaint_id else list(self._alarms)
        self._acknowledge(ids, AckMethod.REMOTE, c.by, now, p)
        p.reply = (True, f"acknowledged {len(ids)}")

    def _on_silence(self, c: SilenceCommand, now: float, p: _Pending) -> None:
        sounding = [a for a in self._alarms.values() if a.sounding_until is not None]
        if not self._alarms:
            p.reply = (False, "no active alarm")
            return
        for a in sounding:
            # Silenced alarms keep the beacon and still get reminder bursts until acked.
            self._set_sounding(a, None)
            a.silenced = True
            self._set_reminder(a, now + self.config.reminder_every_s)
            p.records.append(a.record())
        p.changed = True
        p.reply = (True, f"silenced {len(sounding)}; beacon stays until acknowledged")

    def _on_test(self, c: SelfTestCommand, now: float, p: _Pending) -> None:
        if self._alarms:
            p.reply = (False, "refused: a real alarm is active")
            return
        if not 0 < c.seconds <= 10:
            p.reply = (False, "seconds must be in (0, 10]")
            return
        self._start_test(c.trigger, c.seconds, now, p)
        p.reply = (True, f"self-test started ({c.seconds:g} s)")

    def _on_fault(self, f: FaultChange, now: float, p: _Pending) -> None:
        if f.active:
            self._raise_fault(f.fault, f.detail, p)
        else:
            self._clear_fault(f.fault, p, f.detail)

    _HANDLERS: ClassVar[dict[type, Callable[[Machine, Any, float, _Pending], None]]] = {
        NewComplaint: _on_complaint, ButtonEdge: _on_button, FeedbackEdge: _on_feedback,
        Tick: _on_tick, AckCommand: _on_ack, SilenceCommand: _on_silence,
        SelfTestCommand: _on_test, FaultChange: _on_fault,
    }

    # --- rules ----------------------------------------------------------------------------

    def _acknowledge(self, ids: list[str], method: AckMethod, by: str | None, now: float,
                     p: _Pending) -> None:
        for cid in ids:
            a = self._remove(cid)
            latency = round((now - a.alerted_at) * 1000, 3)
            fields: dict[str, Any] = {"complaint_id": cid, "method": method,
                                      "ack_latency_ms": latency}
            if method == AckMethod.REMOTE:
                fields["by"] = by
            p.emit(EventType.ACK, **fields)
            p.records.append(a.record(state=AlarmState.ACKED, acked_at=now, ack_method=method,
                                      ack_by=by, ack_latency_ms=latency))
        p.changed = True

    def _start_test(self, trigger: Trigger, seconds: float, now: float, p: _Pending) -> None:
        self._test = _SelfTest(trigger, siren_until=now + seconds,
                               beacon_until=now + max(3.0, seconds), started_at=now)
        p.notes.append(f"self-test started by {trigger}")
        p.changed = True

    def _advance(self, now: float, p: _Pending, *, settle: bool) -> None:
        # A level settles on its deadline only on a Tick, which the loop sends once its inbox
        # is empty: any other input may be read late, with the edge that ends a spike still
        # queued behind it, and a spike must never acknowledge an alarm.
        if settle:
            self._settle_button(now, now, p)
        self._advance_button(now, p)
        self._advance_alarms(now, p)
        self._advance_test(now, p)
        self._advance_feedback(now, p)

    def _advance_alarms(self, now: float, p: _Pending) -> None:
        cfg, heap = self.config, self._heap
        if not heap or heap[0][0] > now:
            return
        due: dict[int, _Alarm] = {}
        while heap and heap[0][0] <= now:
            entry = heappop(heap)
            if self._live(entry):
                a = self._alarms[entry[2]]
                due[a.order] = a
        for order in sorted(due):           # the alarms' own order, as they were added
            a = due[order]
            if a.sounding_until is not None and now >= a.sounding_until:
                ended = a.sounding_until
                self._set_sounding(a, None)
                p.changed = True
                if not (a.escalated or a.silenced):
                    a.escalated = True
                    self._set_reminder(a, ended + cfg.reminder_every_s)
                    p.emit(EventType.ESCALATED, complaint_id=a.complaint_id,
                           unacked_s=round(now - a.alerted_at, 1))
                    p.records.append(a.record())
            if a.next_reminder_at is not None and now >= a.next_reminder_at:
                if cfg.reminder_s <= 0:  # reminders switched off
                    self._set_reminder(a, None)
                    continue
                self._set_sounding(a, now + cfg.reminder_s)
                reminder_at = a.next_reminder_at
                while reminder_at <= now:
                    reminder_at += cfg.reminder_every_s
                self._set_reminder(a, reminder_at)
                p.changed = True

    # --- the active alarms' bookkeeping (what keeps an input from walking all of them) ----

    def _add(self, a: _Alarm) -> None:
        old = self._alarms.get(a.complaint_id)
        if old is not None:                 # replaced where it stands in the order
            a.order = old.order
            if old.sounding_until is not None:
                self._sounding[RANK[old.priority]] -= 1
        else:
            self._added += 1
            a.order = self._added
        self._alarms[a.complaint_id] = a
        if a.sounding_until is not None:
            self._sounding[RANK[a.priority]] += 1
        for t in (a.sounding_until, a.next_reminder_at):
            if t is not None:
                heappush(self._heap, (t, a.order, a.complaint_id))

    def _remove(self, complaint_id: str) -> _Alarm:
        a = self._alarms.pop(complaint_id)
        if a.sounding_until is not None:
            self._sounding[RANK[a.priority]] -= 1
        return a

    def _set_sounding(self, a: _Alarm, until: float | None) -> None:
        if (a.sounding_until is None) != (until is None):
            self._sounding[RANK[a.priority]] += 1 if until is not None else -1
        a.sounding_until = until
        if until is not None:
            heappush(self._heap, (until, a.order, a.complaint_id))

    def _set_reminder(self, a: _Alarm, at: float | None) -> None:
        a.next_reminder_at = at
        if at is not None:
            heappush(self._heap, (at, a.order, a.complaint_id))

    def _live(self, entry: tuple[float, int, str]) -> bool:
        """Whether a heap entry still is one of its alarm's deadlines."""
        t, order, complaint_id = entry
        a = self._alarms.get(complaint_id)
        return (a is not None and a.order == order
                and (a.sounding_until == t or a.next_reminder_at == t))

    def _rebuild_heap(self) -> None:
        self._heap = [(t, a.order, a.complaint_id) for a in self._alarms.values()
                      for t in (a.sounding_until, a.next_reminder_at) if t is not None]
        heapify(self._heap)

    def _settle_button(self, at: float, now: float, p: _Pending) -> None:
        """Take the raw level as the debounced one if it was steady from its edge to ``at``."""
        b = self._button
        if b.raw == b.pressed or at < b.raw_at + self.bounce_s:
            return
        b.pressed = b.raw
        if b.pressed:
            b.pressed_since, b.hold_used = b.raw_at, False
            self._on_press(now, p)
        else:
            b.pressed_since = None
            if b.stuck:
                b.stuck = False
                self._clear_fault(Fault.BUTTON_STUCK, p, "released")
        p.changed = True

    def _advance_button(self, now: float, p: _Pending) -> None:
        b, cfg = self._button, self.config
        if not b.pressed or b.pressed_since is None:
            return
        held = now - b.pressed_since
        # Compare against the same sums next_deadline() returns (float-exact).
        if (not b.hold_used and not self._alarms
                and now >= b.pressed_since + cfg.selftest_hold_s):
            b.hold_used = True
            self._start_test(Trigger.BUTTON, 1.0, now, p)
        if not b.stuck and now >= b.pressed_since + cfg.stuck_hold_s:
            b.stuck = True
            self._raise_fault(Fault.BUTTON_STUCK, f"held {held:.0f} s", p)

    def _on_press(self, now: float, p: _Pending) -> None:
        if self._alarms:
            self._button.hold_used = True
            self._acknowledge(list(self._alarms), AckMethod.BUTTON, None, now, p)
        else:
            p.notes.append("button pressed with no active alarm")

    def _advance_test(self, now: float, p: _Pending) -> None:
        t = self._test
        if t is not None and now >= t.siren_until:
            t.siren_done = True  # shows up as an output change in _finish
        if t is None or now < t.beacon_until:
            return
        self._test = None
        result = SelfTestResult.OK
        if self.feedback and not t.feedback_seen:
            result = SelfTestResult.SIREN_FEEDBACK_MISSING
        p.emit(EventType.SELFTEST, trigger=t.trigger, result=result)
        p.changed = True

    def _feedback_pending(self) -> bool:
        return (self.feedback and self._siren_on_since is not None
                and Fault.SIREN_FAILED not in self._faults
                and (self._feedback_at is None or self._feedback_at < self._siren_on_since))

    def _advance_feedback(self, now: float, p: _Pending) -> None:
        if not self._feedback_pending():
            return
        assert self._siren_on_since is not None
        if now >= self._siren_on_since + self.config.feedback_timeout_s:
            self._raise_fault(Fault.SIREN_FAILED, "siren relay on but no feedback within "
                              f"{self.config.feedback_timeout_s:g} s", p)

    def _raise_fault(self, name: Fault, detail: str, p: _Pending) -> None:
        if name in self._faults:
            return
        self._faults[name] = detail
        p.emit(EventType.FAULT, fault=name, detail=detail)
        p.changed = True

    def _clear_fault(self, name: Fault, p: _Pending, detail: str = "") -> None:
        if self._faults.pop(name, None) is None:
            return
        p.emit(EventType.FAULT_CLEARED, fault=name, detail=detail)
        p.changed = True

    def _button_deadlines(self) -> list[float]:
        b, cfg = self._button, self.config
        out: list[float] = []
        if b.raw != b.pressed:
            out.append(b.raw_at + self.bounce_s)
        if b.pressed and b.pressed_since is not None:
            if not b.hold_used and not self._alarms:
                out.append(b.pressed_since + cfg.selftest_hold_s)
            if not b.stuck:
                out.append(b.pressed_since + cfg.stuck_hold_s)
        return out

    # --- outputs --------------------------------------------------------------------------

    def _compute_outputs(self, now: float) -> Outputs:
        for rank, sounding in enumerate(self._sounding):
            if sounding:                    # the highest priority sounding sets the pattern
                return Outputs(siren=self.config.patterns[BY_RANK[rank]], beacon=True)
        if self._alarms:
            return Outputs(siren=None, beacon=True)
        t = self._test
        if t is not None:
            return Outputs(siren=CONTINUOUS if now < t.siren_until else None,
                           beacon=now < t.beacon_until)
        return OFF

    def _finish(self, now: float, p: _Pending) -> Decision:
        if len(self._heap) > 64 + 4 * len(self._alarms):
            self._rebuild_heap()            # mostly deadlines of alarms since acknowledged
        outputs = self._compute_outputs(now)
        if outputs != self._outputs:
            if outputs.siren is not None and self._outputs.siren is None:
                self._siren_on_since = now
                if self._feedback_active:
                    self._feedback_at = now
            elif outputs.siren is None:
                self._siren_on_since = None
            self._outputs = outputs
            p.changed = True
        return Decision(outputs, tuple(p.events), tuple(p.records), tuple(p.notes), p.changed,
                        p.reply)

