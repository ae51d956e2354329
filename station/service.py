"""Wiring and the one loop that owns the alarm state.

Threads: paho's network thread and gpiozero's pin threads only enqueue into ``Station._inbox``;
the outbox thread writes and publishes. This loop takes inputs, asks the alarm machine, drives
the relays at once, and hands the durable part to the outbox. It never blocks on a disk or a
socket, so relays switch on time whatever the network does (docs/BEHAVIOUR.md §1).
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from . import __version__, reporting, signing
from .alarms import (
    ButtonEdge, Decision, FaultChange, FeedbackEdge, Input, Machine, NewComplaint, Outputs, Tick,
    command_input,
)
from .config import Config, Pattern
from .errors import HardwareError
from .hardware import Hardware
from .heartbeat import (
    STATUS_LIST_MAX, Identity, Schedule, StatusPacer, clock_synced, host_figures, status,
)
from .link import Connected, Disconnected, Inbound, Link, SubscribeRefused, Unreachable
from .outbox import IDLE_WAKE_S, Outbox, Write
from .protocol import (
    COUNTERS, ButtonState, Command, CommandName, Complaint, EventType, Fault, OfflineReason,
    Rejection, RejectReason, StationState, Topics, Trigger, encode, event, parse_command,
    parse_complaint, presence, rfc3339,
)
from .store import AlarmRow, SeenIds, Store, open_state, temporary_copy_path
from .terminal import LineHandler, hold_lines, release_lines

log = logging.getLogger("station")

RECENT_IDS = 4096            # complaint ids kept in memory in front of the store lookup
# A signed command's cmd_id among the seen ids: "/" is never in a complaint id (nor a cmd_id),
# so the two can never be mistaken for each other.
SIGNED_CMD_KEY = "cmd/"
STATUS_MIN_GAP_S = 0.1       # status on every change, coalesced to ≤ 10 per second
# ... and sent this long after the change: a decision's events wait for the disk first, and a
# status built and published meanwhile took the GIL from the outbox and went out ahead of the
# `alerting`/`ack` (bench/: +1.5 ms p50 on complaint → alerting and press → ack at HQ).
STATUS_SETTLE_S = 0.02


@dataclass(frozen=True)
class _Stop:
    pass


@dataclass(frozen=True)
class LocalCommand:
    """A command from this machine (CLI/demo): same handling as a remote one, no MQTT."""

    cmd: CommandName | str
    args: dict[str, Any]
    reply: Callable[[bool, str], None] | None = None


@dataclass(frozen=True)
class StationView:
    """A read-only snapshot of the station for local displays (the demo's panel): values, never
    a handle on the loop's state. Build it with :meth:`Station.view`."""

    station: str
    region: str
    link_up: bool                     # connected to a broker now
    siren: Pattern | None             # the cadence the siren relay drives (None: off)
    beacon: bool
    button: ButtonState
    alarms: tuple[dict[str, Any], ...]   # active alarms, oldest first (as in the status)
    faults: tuple[Fault, ...]
    outbox_pending: int               # events not yet confirmed by the broker


class Station:
    """The station service. ``start()`` returns once GPIO is set up (not waiting for the
    broker); ``run()`` loops until ``stop()``; outputs are off on every exit path.

    >>> station = Station(config, pin_factory=MockFactory())   # doctest: +SKIP
    >>> station.start(); threading.Thread(target=station.run).start()
    """

    def __init__(self, config: Config, *, pin_factory: Any = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 synced: Callable[[], bool] = clock_synced,
                 on_progress: Callable[[str], None] | None = None,
                 on_status: Callable[[str], object] | None = None,
                 on_event: Callable[[dict[str, Any]], object] | None = None,
                 wake_s: float = IDLE_WAKE_S) -> None:
        self.config = config
        self._wake_s = wake_s
        self.topics = Topics(config.topics.root, config.station.id, config.station.region)
        self._clock, self._wall, self._synced_probe = clock, wall, synced
        self._on_progress = on_progress or (lambda part: None)
        self._on_status = on_status or (lambda summary: None)
        self._on_event = on_event or (lambda doc: None)
        self._pin_factory = pin_factory
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.boot_id = str(uuid.uuid4())
        self._started_mono = clock()
        self.ident = Identity(config.station.id, config.station.region, self.boot_id,
                              wall(), config.heartbeat.interval_s)
        self._synced = True
        self._stopping = threading.Event()
        self._status = StatusPacer(STATUS_MIN_GAP_S, STATUS_SETTLE_S)
        self._heartbeat = Schedule(config.heartbeat.interval_s, clock)
        self.hardware: Hardware | None = None
        self.machine: Machine | None = None
        self.store: Store | None = None
        self.outbox: Outbox | None = None
        self.link: Link | None = None
        # Counters since start, in every status (complaints alarmed, acks, rejected messages,
        # broker connections after the first).
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._connections = 0
        self._db_path = config.storage.path            # a temporary copy if that is unusable
        self._complaint_gate, self._command_gate = signing.gates_for(config.security)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, set up GPIO (outputs off), resume alarms, start the link."""
        cfg = self.config
        opened = open_state(cfg.storage.path,
                            temporary_copy_path(cfg.station.id, cfg.storage.path),
                            lambda path: self._open_store(path=path))
        self.store, self._db_path = opened.store, opened.store.path
        self.hardware = Hardware(cfg.gpio, pin_factory=self._pin_factory,
                                 on_button=self._edge_button, on_feedback=self._edge_feedback,
                                 clock=self._clock)
        now = self._clock()
        self.machine = Machine(cfg.alarm, bounce_s=cfg.gpio.ack_button.bounce_ms / 1000,
                               feedback=cfg.gpio.siren_feedback is not None,
                               button_pressed=self.hardware.button_pressed, now=now)
        # The link is built (not started) first: the outbox publishes through it, and paho's
        # confirmations go straight to the outbox's writer.
        self.link = Link(cfg.broker, self.topics, client_id=cfg.station.id, sink=self._inbox.put,
                         will=self._will, next_session=self._next_session, clock=self._clock)
        self.outbox = Outbox(self._open_store, self.link, self.topics.events,
                             on_storage=self._storage_changed,
                             on_progress=lambda: self._on_progress("outbox"),
                             can_prune=lambda: self._synced, wake_s=self._wake_s)
        self.link.on_delivered = self.outbox.delivered
        self.outbox.start()
        # No disk read before a new complaint's siren (store.SeenIds).
        self._seen = SeenIds(self.store, recent=RECENT_IDS)
        threading.Thread(target=self._seen.load, args=(lambda: self._open_store(check=False),),
                         name="seen-filter", daemon=True).start()
        if opened.fault is not None:
            self._decide(FaultChange(Fault.STORAGE, True, opened.fault), now)
        self._resume(now)
        self._check_clock(now)
        self.link.start()
        log.info("station %s (region %s) started, version %s", cfg.station.id,
                 cfg.station.region, __version__)
        # What start-up built lives as long as the process: keep it out of the collector's
        # passes, which would otherwise walk it during a complaint.
        gc.collect()
        gc.freeze()

    def run(self) -> None:
        """The loop: inputs → machine → relays → outbox, until ``stop()``."""
        assert self.machine is not None
        while not self._stopping.is_set():
            try:
                item = self._inbox.get(timeout=self._wait_s())
            except queue.Empty:
                item = None
            if item is not None:
                self._dispatch_safely(item)
                self._drain()
            # Ticks only with the inbox empty: the machine settles the button's debounced
            # level on a Tick, after every edge that came before it has been read.
            self._tick()
            self._on_progress("loop")
            self._check_gpio()

    def _drain(self) -> None:
        """Handle what arrived meanwhile (a burst): its log lines are held and written
        together once the inbox is empty (terminal.LineHandler), not one write each."""
        held: list[LineHandler] | None = None
        try:
            while not self._stopping.is_set():
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if held is None:
                    held = hold_lines()
                self._dispatch_safely(item)
        finally:
            if held is not None:
                release_lines(held)

    def request_stop(self) -> None:
        """Ask ``run()`` to return (safe from a signal handler or any thread)."""
        self._stopping.set()
        self._inbox.put(_Stop())

    def stop(self) -> None:
        """Outputs off first (safety), then a clean ``shutdown`` status, then close."""
        self.request_stop()
        if self.hardware is not None:
            self.hardware.off()
        if self.outbox is not None:
            self.outbox.stop()
        if self.link is not None:
            final = presence(station=self.ident.station, region=self.ident.region,
                             state=StationState.OFFLINE, reason=OfflineReason.SHUTDOWN,
                             boot_id=self.boot_id, session=self.link.session,
                             wall=self._wall())
            self.link.stop(final=(self.topics.presence, encode(final)))
        if self.hardware is not None:
            self.hardware.close()
        if self.store is not None:
            self.store.close()
        log.info("station %s stopped", self.config.station.id)

    def submit(self, item: Any) -> None:
        """Hand an input to the loop from any thread (``LocalCommand``, alarm inputs)."""
        self._inbox.put(item)

    # --- callbacks from other threads (enqueue only) ------------------------------------------

    def _edge_button(self, pressed: bool, at: float) -> None:
        self._inbox.put(ButtonEdge(pressed, at))

    def _edge_feedback(self, active: bool, at: float) -> None:
        self._inbox.put(FeedbackEdge(active, at))

    def _storage_changed(self, ok: bool, detail: str) -> None:
        self._inbox.put(FaultChange(Fault.STORAGE, not ok, detail))

    # --- the loop's work ----------------------------------------------------------------------

    def _wait_s(self) -> float:
        assert self.machine is not None
        now = self._clock()
        due = [self._heartbeat.next_at, now + self._wake_s]
        deadline = self.machine.next_deadline()
        if deadline is not None:
            due.append(deadline)
        status_at = self._status.due_at()
        if status_at is not None:
            due.append(status_at)
        return max(0.0, min(due) - now)

    def _tick(self) -> None:
        assert self.machine is not None
        now = self._clock()
        deadline = self.machine.next_deadline()
        if deadline is not None and now >= deadline:
            self._decide(Tick(), now)
        self._check_link(now)
        if self._heartbeat.due(now):
            self._check_clock(now)
            self._status.changed(now)
        if self._status.due(now):
            self.publish_status(now)

    def _dispatch_safely(self, item: Any) -> None:
        try:
            self._dispatch(item)
        except Exception as e:  # noqa: BLE001 — the service never dies of one input
            log.exception("error handling %s", type(item).__name__)
            if isinstance(item, Inbound):
                self._reject(item, RejectReason.MALFORMED, f"internal error: {type(e).__name__}")

    def _dispatch(self, item: Any) -> None:
        handler = self._HANDLERS.get(type(item))
        if handler is None:
            log.warning("ignored an input the loop does not handle: %s", type(item).__name__)
            return
        handler(self, item, self._clock())

    def _on_fault(self, item: FaultChange, now: float) -> None:
        self._decide(item, now)
        if item.fault == Fault.STORAGE and item.active:
            self._resync_after_storage_failure()

    def _on_disconnected(self, item: Disconnected, now: float) -> None:
        assert self.outbox is not None
        self.outbox.link_up(False)
        self.outbox.submit(Write(meta={"session_ok_at": str(self._wall())}))

    def _on_unreachable(self, item: Unreachable, now: float) -> None:
        # No broker of the list answers (a cluster without a majority keeps connections open
        # and answers no CONNECT): the fault waits in the outbox and tells HQ, once the link is
        # back, how long the room was cut off.
        tried = ", ".join(str(a) for a in item.tried)
        self._decide(FaultChange(Fault.BROKER_UNREACHABLE, True, f"{tried}: {item.last_error}"),
                     now)

    def _on_subscribe_refused(self, item: SubscribeRefused, now: float) -> None:
        self._decide(FaultChange(Fault.SUBSCRIPTION, True, f"{item.topic}: {item.reason}"), now)

    def _on_local_command(self, item: LocalCommand, now: float) -> None:
        ok, detail = self._command(item.cmd, item.args, Trigger.CLI, now)
        if item.reply is not None:
            item.reply(ok, detail)

    def _inbound(self, msg: Inbound, now: float) -> None:
        if msg.error is not None:
            self._reject(msg, RejectReason.MALFORMED, f"internal error: {msg.error}")
        elif msg.topic == self.topics.complaints:
            self._complaint(msg, now)
        elif msg.topic == self.topics.cmd:
            self._remote_command(msg, now)
        else:
            self._reject(msg, RejectReason.MALFORMED, "unexpected topic")

    def _complaint(self, msg: Inbound, now: float) -> None:
        # The signature before anything else reads the message (docs/SIGNING.md).
        verdict = self._complaint_gate.check(msg.payload, self.topics.complaints) \
            if self._complaint_gate is not None else None
        if isinstance(verdict, signing.Refusal):
            self._refuse_unsigned(msg, verdict)
            return
        parsed = parse_complaint(msg.payload, region=self.config.station.region)
        if isinstance(parsed, Rejection):
            self._reject(msg, parsed.reason, parsed.detail, parsed)
            return
        if verdict is not None:
            late = signing.freshness(parsed.reported_at, now_wall=self._wall(),
                                     max_age_s=self.config.security.max_age_s,
                                     synced=self._synced)
            if late is not None:
                self._refuse_unsigned(msg, late)
                return
        if parsed.id in self._seen:
            log.info("complaint %s already seen; not alarmed again", parsed.id)
            self._write(Write(acks=[_ack_of(msg)]))
            return
        self._seen.add(parsed.id)
        reporting.redact(parsed.summary)   # never to Sentry, even inside an error message
        log.debug("complaint %s summary: %s", parsed.id, parsed.summary)
        self._decide(NewComplaint.from_complaint(parsed), now, inbound=msg,
                     seen=[(parsed.id, self._wall())])

    def _remote_command(self, msg: Inbound, now: float) -> None:
        verdict = self._command_gate.check(msg.payload, self.topics.cmd) \
            if self._command_gate is not None else None
        if isinstance(verdict, signing.Refusal):
            self._refuse_unsigned(msg, verdict)
            return
        parsed = parse_command(msg.payload, retained=msg.retain)
        remembered: list[tuple[str, float]] = []
        if isinstance(verdict, signing.Verified) and isinstance(parsed, Command):
            # A command carries no time: a captured signed one could be replayed at will. Its
            # cmd_id is honoured once, remembered with the complaint ids (stored in the same
            # transaction as its cmd_result, before the PUBACK), so across restarts too.
            key = SIGNED_CMD_KEY + parsed.cmd_id
            if key in self._seen:
                self._refuse_unsigned(msg, signing.Refusal(
                    signing.Reason.STALE, f"cmd_id {parsed.cmd_id} already handled (replay)"))
                return
            self._seen.add(key)
            remembered.append((key, self._wall()))
        if isinstance(parsed, Rejection):
            extra = []
            if parsed.cmd_id is not None:
                extra.append(self._envelope(EventType.CMD_RESULT, {
                    "cmd_id": parsed.cmd_id, "cmd": parsed.cmd, "ok": False,
                    "detail": parsed.detail}))
            self._reject(msg, parsed.reason, parsed.detail, parsed, extra=extra)
            return
        ok, detail = self._command(parsed.cmd, dict(parsed.args), Trigger.REMOTE, now, msg=msg)
        result = self._envelope(EventType.CMD_RESULT, {"cmd_id": parsed.cmd_id,
                                                       "cmd": parsed.cmd, "ok": ok,
                                                       "detail": detail})
        log.info("command %s (%s): ok=%s %s", parsed.cmd, parsed.cmd_id, ok, detail)
        self._write(Write(seen=remembered, events=[result], acks=[_ack_of(msg)]))

    def _command(self, cmd: str, args: dict[str, Any], origin: Trigger, now: float,
                 msg: Inbound | None = None) -> tuple[bool, str]:
        if cmd == CommandName.STATUS:
            self.publish_status(now)
            return True, "status published"
        item = command_input(cmd, args, origin)
        if item is None:
            return False, f"unknown command {cmd!r}"
        return self._decide(item, now).reply or (True, "")

    def _refuse_unsigned(self, msg: Inbound, refusal: signing.Refusal) -> None:
        """One ``rejected`` event (and, for a command with a readable ``cmd_id``, its
        ``cmd_result``): the message never reaches the alarm machine."""
        reason, extra = RejectReason(refusal.reason), []
        if msg.topic == self.topics.cmd:
            command = parse_command(msg.payload)
            cmd_id = command.cmd_id
            if cmd_id is not None:
                extra.append(self._envelope(EventType.CMD_RESULT, {
                    "cmd_id": cmd_id, "cmd": getattr(command, "cmd", None), "ok": False,
                    "detail": f"{reason}: {refusal.detail}"}))
            ids: dict[str, str | None] = {"cmd_id": cmd_id}
        else:
            probe = parse_complaint(msg.payload, region=self.config.station.region)
            ids = {"complaint_id": probe.id if isinstance(probe, Complaint)
                   else probe.complaint_id}
        rejection = Rejection(reason, refusal.detail, hashlib.sha256(msg.payload).hexdigest(),
                              **ids)
        self._reject(msg, reason, refusal.detail, rejection, extra=extra)

    def _reject(self, msg: Inbound, reason: RejectReason, detail: str,
                parsed: Rejection | None = None, extra: list[dict[str, Any]] | None = None) -> None:
        fields = parsed.fields() if parsed else {
            "reason": str(reason), "detail": detail,
            "payload_sha256": hashlib.sha256(msg.payload).hexdigest()}
        log.warning("rejected message on %s: %s (%s)", msg.topic, reason, detail)
        events = [self._envelope(EventType.REJECTED, fields)] + (extra or [])
        self._write(Write(events=events, acks=[_ack_of(msg)]))

    # --- decisions → relays, outbox -----------------------------------------------------------

    def _decide(self, item: Input, now: float, *, inbound: Inbound | None = None,
                seen: list[tuple[str, float]] | None = None) -> Decision:
        assert self.machine is not None
        decision = self.machine.handle(item, now)
        self._apply(decision, inbound=inbound, seen=seen)
        return decision

    def _apply(self, d: Decision, *, inbound: Inbound | None = None,
               seen: list[tuple[str, float]] | None = None, retry: bool = True) -> None:
        assert self.hardware is not None
        gpio_error = self._drive(d.outputs)       # relays before anything touches a disk
        relay_at = self._clock()
        # Measured once, here (message in → relays switched): the `alerting` event and the
        # history carry this one figure, and the store never overwrites it.
        latency = (None if inbound is None
                   else round(max(0.0, relay_at - inbound.received_at) * 1000, 3))
        alerted: set[str] = set()
        events, lines = [], []
        for e in d.events:
            fields = dict(e.fields)
            if e.type == EventType.ALERTING:
                fields["relay_latency_ms"] = latency
                alerted.add(fields["complaint_id"])
            events.append(self._envelope(e.type, fields))
            lines.append((e.type, fields))
        rows = [AlarmRow.from_record(r, to_wall=self._to_wall,
                                     relay_latency_ms=latency if r.complaint_id in alerted
                                     else None)
                for r in d.records]
        acks = [_ack_of(inbound)] if inbound is not None else []
        if events or rows or acks or seen:
            self._write(Write(seen=seen or [], alarms=rows, events=events, acks=acks))
            if self._inbox.empty():
                # Yield the GIL: the writer, just woken, starts its commit now rather than
                # after this thread's log lines. Not while inputs wait (a burst): each yield
                # is a GIL round trip the next complaint would wait for.
                time.sleep(0)
        # Logged after the hand-over: the writer thread wakes meanwhile, then commits while
        # this thread formats (the fsync releases the GIL).
        for type_, fields in lines:
            # A fault (gpio, storage, subscription, siren_failed …) is trouble: it must show
            # in `journalctl -p warning`.
            log.log(logging.WARNING if type_ == EventType.FAULT else logging.INFO,
                    "%s %s", type_, _loggable(fields))
        for note in d.notes:
            log.info("%s", note)
        if d.status_changed:
            self._status.changed(relay_at)
        if any(e.type in (EventType.FAULT, EventType.FAULT_CLEARED) for e in d.events):
            self._write(Write(meta={"faults": json.dumps(self.machine.faults)}))  # type: ignore[union-attr]
        if gpio_error and retry:
            self._apply(self.machine.handle(FaultChange(Fault.GPIO, True, gpio_error),  # type: ignore[union-attr]
                                            self._clock()), retry=False)

    def _check_gpio(self) -> None:
        """A cheap read of the button line proves the GPIO side still answers (watchdog)."""
        assert self.hardware is not None
        try:
            _ = self.hardware.button_pressed
        except HardwareError as e:
            log.error("GPIO not answering: %s", e)
            return
        self._on_progress("gpio")

    def _drive(self, outputs: Outputs) -> str | None:
        assert self.hardware is not None
        try:
            self.hardware.apply(outputs)
            self._on_progress("gpio")
        except HardwareError as e:
            log.error("GPIO failed: %s", e)
            return str(e)
        return None

    def _write(self, write: Write) -> None:
        assert self.outbox is not None
        self.outbox.submit(write)

    def _envelope(self, type_: str, fields: dict[str, Any]) -> dict[str, Any]:
        doc = event(type_, fields, station=self.ident.station, region=self.ident.region,
                    wall=self._wall(), clock_synced=self._synced)
        counter = _COUNTED.get(type_)
        if counter is not None:
            self.counters[counter] += 1
        try:
            self._on_event(doc)
        except Exception:  # noqa: BLE001 — an observer's bug must not cost the event
            log.exception("event observer failed")
        return doc

    def _to_wall(self, mono: float) -> float:
        return self._wall() - (self._clock() - mono)

    # --- connection, status, clock ------------------------------------------------------------

    def _connected(self, c: Connected, now: float) -> None:
        assert self.outbox is not None and self.store is not None and self.machine is not None
        self.outbox.link_up(True)
        if Fault.BROKER_UNREACHABLE in self.machine.faults:
            self._decide(FaultChange(Fault.BROKER_UNREACHABLE, False, f"connected to {c.broker}"),
                         now)
        known = self.store.get_meta("session_known") == "1"
        since = self.store.get_meta("session_ok_at")
        pending = self.store.get_meta("resync_pending") == "1"   # local state was lost
        meta = {"session_known": "1", "session_ok_at": str(self._wall())}
        events = []
        if (known and not c.session_present) or pending:
            log.warning("%s: asking HQ to re-send unacknowledged complaints",
                        f"broker {c.broker} lost this station's session" if not pending
                        else "this station started without its earlier state")
            meta["resync_pending"] = "0"
            events.append(self._envelope(EventType.RESYNC_REQUEST, {
                "since": rfc3339(float(since)) if since else None}))
        self._write(Write(events=events, meta=meta))
        if self._connections:
            self.counters["reconnects"] += 1
        self._connections += 1
        # Presence first: the desk sees the station online at once; the health document
        # (retained on its own topic, never overwritten by the will) follows.
        assert self.link is not None
        birth = presence(station=self.ident.station, region=self.ident.region,
                         state=StationState.ONLINE, boot_id=self.boot_id, session=c.session,
                         wall=self._wall())
        self.link.publish(self.topics.presence, encode(birth), qos=1, retain=True)
        self.publish_status(self._clock())

    def _resync_after_storage_failure(self) -> None:
        """The disk refuses writes: alarms now live only in memory and their complaints are
        PUBACKed, so a crash before the disk recovers would forget them and the broker would
        not re-deliver them. Ask HQ to re-send what is unacknowledged: in this process the
        re-sends are duplicates; after such a crash the new process — hitting the same full
        disk — asks again and the forgotten alarms sound again."""
        log.warning("storage failed: asking HQ to re-send unacknowledged complaints")
        self._write(Write(events=[self._envelope(EventType.RESYNC_REQUEST, {"since": None})]))

    def publish_status(self, now: float) -> None:
        """Publish the retained status now (birth, heartbeat, change, ``status`` command)."""
        self._status.published(now)
        doc = self.status_doc(now)
        link = "online" if self.link is not None and self.link.connected else "broker unreachable"
        self._on_status(f"{link}; {doc['alarms']['active']} active alarm(s); outbox "
                        f"{doc['outbox_pending']}; faults: {', '.join(doc['faults']) or 'none'}")
        if self.link is None or not self.link.connected:
            return  # the birth message on the next connect carries it
        self.link.publish(self.topics.status, encode(doc), qos=1, retain=True)

    def view(self, now: float | None = None) -> StationView:
        """What a local display shows, read now: safe from any thread (a read the loop
        interrupts — "dictionary changed size during iteration" — is tried again)."""
        assert self.machine is not None and self.outbox is not None
        assert self.hardware is not None and self.link is not None
        now = self._clock() if now is None else now
        m = self.machine
        for attempt in range(5):
            try:
                return StationView(
                    station=self.ident.station, region=self.ident.region,
                    link_up=self.link.connected, siren=self.hardware.siren.pattern,
                    beacon=m.outputs.beacon, button=m.button_state,
                    alarms=tuple(m.active_alarms(now)), faults=tuple(sorted(m.faults)),
                    outbox_pending=self.outbox.pending)
            except RuntimeError:
                if attempt == 4:
                    raise
                time.sleep(0.001)
        raise AssertionError("unreachable")

    def status_doc(self, now: float | None = None) -> dict[str, Any]:
        assert self.machine is not None and self.outbox is not None
        now = self._clock() if now is None else now
        m, out = self.machine, self.machine.outputs
        return status(
            self.ident, now_wall=self._wall(), uptime_s=now - self._started_mono,
            session=self.link.session if self.link else 0,
            alarms_active=m.active_count, oldest_unacked_s=m.oldest_unacked_s(now),
            siren=out.siren is not None, beacon=out.beacon, button=m.button_state,
            outbox_pending=self.outbox.pending, faults=list(m.faults),
            host=host_figures(self.config.storage.path.parent, self._synced),
            active=m.active_alarms(now, limit=STATUS_LIST_MAX), counters=self.counters)

    def _check_link(self, now: float) -> None:
        """Progress for the watchdog only while paho's network thread lives: when it has died
        no complaint can arrive, and systemd's watchdog restarts the service."""
        assert self.machine is not None
        if self.link is None or self.link.alive:
            self._on_progress("link")
            if self.link is not None:
                self.link.check_confirmations()
        elif Fault.MQTT_THREAD not in self.machine.faults:
            log.error("the MQTT network thread died: no complaint can reach this station; "
                      "the service watchdog will restart it")
            self._decide(FaultChange(Fault.MQTT_THREAD, True, "MQTT network thread died"), now)

    def _check_clock(self, now: float) -> None:
        synced = self._synced_probe()
        if synced != self._synced or (not synced and self.machine is not None
                                      and Fault.CLOCK_UNSYNCED not in self.machine.faults):
            self._synced = synced
            self._decide(FaultChange(Fault.CLOCK_UNSYNCED, not synced,
                                     "system clock not synchronised" if not synced else ""),
                         now)

    def _will(self, session: int) -> bytes:
        return encode(presence(station=self.ident.station, region=self.ident.region,
                               state=StationState.OFFLINE, reason=OfflineReason.LOST,
                               boot_id=self.boot_id, session=session))

    def _next_session(self) -> int:
        # paho's thread, before each CONNECT: its own short-lived connection to the store.
        with self._open_store(check=False) as s:
            return s.bump_session()

    def _open_store(self, check: bool = True, path: Path | None = None) -> Store:
        cfg = self.config
        return Store(path or self._db_path, seen_ids_max=cfg.alarm.seen_ids_max,
                     seen_ids_days=cfg.alarm.seen_ids_days, outbox_max=cfg.storage.outbox_max,
                     check=check)

    def _resume(self, now: float) -> None:
        assert self.store is not None and self.machine is not None
        wall = self._wall()
        rows = self.store.active_alarms()
        if not rows:
            return
        for r in rows:
            self._seen.add(r.complaint_id)
        self._apply(self.machine.resume([r.resumed(wall) for r in rows], now))

    # What the loop does with each input it takes from the inbox (paho's confirmations go
    # straight to the outbox's writer, not through here).
    _HANDLERS: ClassVar[dict[type, Callable[[Station, Any, float], object]]] = {
        Inbound: _inbound, ButtonEdge: _decide, FeedbackEdge: _decide,
        FaultChange: _on_fault, Connected: _connected, Disconnected: _on_disconnected,
        SubscribeRefused: _on_subscribe_refused, Unreachable: _on_unreachable,
        LocalCommand: _on_local_command,
        _Stop: lambda station, item, now: None,     # wakes the loop; run() sees the flag
    }


_COUNTED: dict[str, str] = {EventType.ALERTING: "complaints", EventType.ACK: "acks",
            EventType.REJECTED: "rejected"}


def _ack_of(msg: Inbound) -> tuple[int, int, int]:
    return (msg.mid, msg.qos, msg.generation)



def _loggable(fields: dict[str, Any]) -> str:
    """One log line per event: ids and figures, never a summary."""
    return " ".join(f"{k}={v}" for k, v in fields.items() if k != "summary")
