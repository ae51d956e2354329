"""The desk's loop: MQTT messages in (enqueued by paho's thread), state and SQLite updated by
one thread, changed rows pushed to the pages that listen (server-sent events).

* ``submit()`` is all paho's callback does (translate and enqueue; an exception there would
  kill paho's network thread).
* ``run()`` drains the queue in batches: applies each message (``state``), writes the changed
  stations and new events in one transaction, then sends the changed rows to every listener.
  Once a second it checks every station for what time alone changes (stale, an alarm
  unacknowledged too long, attention): only those rows go out. Ages are computed by the page
  from ``since``/``alarm_since`` and the server's clock sent with every message.
* Readers (HTTP threads) take ``lock`` for a consistent view.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...protocol import NAME_RE, EventDoc, HealthDoc, PresenceDoc
from . import state as S
from .store import DeskStore

log = logging.getLogger("station.desk.web")

MAX_MESSAGE = 64 * 1024
BATCH = 2000
TICK_S = 1.0
PRUNE_EVERY_S = 600.0
LISTENER_BACKLOG = 200
ACK_BUCKETS_S = (1, 2, 5, 10, 30, 60, 120, 300, 600)


@dataclass
class Metrics:
    """Counters since the desk started (the Prometheus text is built in ``metrics``)."""

    messages: dict[str, int] = field(default_factory=lambda: {
        "status": 0, "presence": 0, "events": 0})
    bad_messages: int = 0
    ack_buckets: list[int] = field(default_factory=lambda: [0] * (len(ACK_BUCKETS_S) + 1))
    ack_sum_s: float = 0.0
    ack_count: int = 0
    rejected: dict[str, int] = field(default_factory=dict)   # reason → count

    def observe_ack(self, latency_ms: float) -> None:
        seconds = latency_ms / 1000.0
        i = next((i for i, b in enumerate(ACK_BUCKETS_S) if seconds <= b), len(ACK_BUCKETS_S))
        self.ack_buckets[i] += 1
        self.ack_sum_s += seconds
        self.ack_count += 1


class Listener:
    """One page's stream: rows pushed by the loop, read by its HTTP thread."""

    def __init__(self) -> None:
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(LISTENER_BACKLOG)
        self.dropped = False

    def push(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except queue.Full:            # a page that cannot keep up reconnects for a snapshot
            self.dropped = True


class Desk:
    """Every station's state, fed by MQTT, kept in ``store``."""

    def __init__(self, store: DeskStore, root: str, *, unacked_alert_s: float = 120.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.prefix = f"{root}/station/"
        self.unacked_alert_s = unacked_alert_s
        self.wall = wall
        self.lock = threading.RLock()
        self.stations: dict[str, S.Station] = store.load()
        self.metrics = Metrics()
        self.listeners: set[Listener] = set()
        self.inbox: queue.SimpleQueue[tuple[str, bytes, bool, float]] = queue.SimpleQueue()
        self.broker_connected = False
        self.started = wall()
        self.last_message: float | None = None
        self._sent: dict[str, tuple[str, str, str | None]] = {}   # time key last sent
        self._stop = threading.Event()

    # --- in: paho's thread --------------------------------------------------------------------

    def submit(self, topic: str, payload: bytes, retained: bool) -> None:
        """Enqueue one MQTT message (paho's callback: nothing else)."""
        self.inbox.put((topic, payload, retained, self.wall()))

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        """Until ``stop()``: apply messages in batches, tick once a second."""
        next_tick = next_prune = time.monotonic()
        while not self._stop.is_set():
            batch = self._take(max(0.0, next_tick - time.monotonic()))
            if batch:
                self._apply(batch)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_S
                self.tick()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_S
                self.store.prune()

    def stop(self) -> None:
        self._stop.set()
        self.inbox.put(("", b"", False, 0.0))        # wake the loop

    def _take(self, timeout: float) -> list[tuple[str, bytes, bool, float]]:
        try:
            items = [self.inbox.get(timeout=min(timeout, TICK_S))]
        except queue.Empty:
            return []
        while len(items) < BATCH:
            try:
                items.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return items

    def _apply(self, batch: list[tuple[str, bytes, bool, float]]) -> None:
        changed: dict[str, list[Any]] = {}          # station → [Station, status, presence]
        events: list[tuple[EventDoc, float]] = []
        with self.lock:
            for topic, payload, retained, received in batch:
                if topic:
                    self._one(topic, payload, retained, received, changed, events)
            new = self.store.add_events(events) if events else []
            for ev in new:
                self._event(ev, changed)
            self.store.save((c[0], c[1], c[2]) for c in changed.values())
            if changed:
                self.last_message = self.wall()
        self._broadcast(changed)

    def _one(self, topic: str, payload: bytes, retained: bool, received: float,
             changed: dict[str, list[Any]], events: list[tuple[EventDoc, float]]) -> None:
        if not topic.startswith(self.prefix):
            return
        name, _, leaf = topic[len(self.prefix):].partition("/")
        if leaf not in ("status", "presence", "events") or not NAME_RE.match(name):
            return
        self.metrics.messages[leaf] += 1
        if not payload:
            if leaf == "status" and name in self.stations:      # retained status cleared
                del self.stations[name]
                changed.pop(name, None)
                self.store.forget(name)
                self._broadcast_removed(name)
            return
        if len(payload) > MAX_MESSAGE:
            self.metrics.bad_messages += 1
            return
        st = self.stations.get(name) or S.Station(name)
        entry = changed.get(name) or [st, None, None]
        if leaf == "status":
            doc = HealthDoc.read(payload)
            if doc is None or doc.station != name:
                self.metrics.bad_messages += 1
                return
            if S.apply_status(st, doc, received, retained=retained):
                entry[1] = payload
                changed[name] = entry
        elif leaf == "presence":
            pres = PresenceDoc.read(payload)
            if pres is None or pres.station != name:
                self.metrics.bad_messages += 1
                return
            if S.apply_presence(st, pres, received, retained=retained):
                entry[2] = payload
                changed[name] = entry
        else:
            ev = EventDoc.read(payload)
            if ev is None or ev.station != name:
                self.metrics.bad_messages += 1
                return
            events.append((ev, received))
            st.region = st.region or ev.region
        self.stations[name] = st

    def _event(self, ev: EventDoc, changed: dict[str, list[Any]]) -> None:
        """A new (not re-sent) event: its effect on the station and the metrics."""
        st = self.stations.get(ev.station)
        if st is None:
            return
        if ev.type == "ack" and type(ev.fields.get("ack_latency_ms")) in (int, float):
            st.ack_latency_ms = float(ev.fields["ack_latency_ms"])
            self.metrics.observe_ack(st.ack_latency_ms)
        elif ev.type == "rejected":
            st.rejected += 1
            reason = str(ev.fields.get("reason", "?"))[:32]
            self.metrics.rejected[reason] = self.metrics.rejected.get(reason, 0) + 1
        elif ev.type == "cmd_result" and isinstance(ev.fields.get("cmd_id"), str):
            detail = ev.fields.get("detail")
            self.store.command_result(ev.fields["cmd_id"], ev.fields.get("ok") is True,
                                      detail if isinstance(detail, str) else None)
        changed.setdefault(ev.station, [st, None, None])

    # --- out: rows ----------------------------------------------------------------------------

    def row(self, st: S.Station, now: float) -> dict[str, Any]:
        return S.row(st, now, self.unacked_alert_s)

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every station, trouble first."""
        now = self.wall() if now is None else now
        with self.lock:
            out = [self.row(st, now) for st in self.stations.values()]
        out.sort(key=S.sort_key)
        return out

    def tick(self) -> None:
        """Rows that time alone changed (stale, unacknowledged too long, attention) go out.
        Only their cheap key is computed for every station (2,000 full rows cost ~50 ms)."""
        now = self.wall()
        with self.lock:
            rows = [self.row(st, now) for name, st in self.stations.items()
                    if S.time_key(st, now, self.unacked_alert_s) != self._sent.get(name)]
        self._send(rows, now)

    def _broadcast(self, changed: dict[str, list[Any]]) -> None:
        if not changed:
            return
        now = self.wall()
        with self.lock:
            rows = [self.row(c[0], now) for c in changed.values()]
        self._send(rows, now)

    def _broadcast_removed(self, name: str) -> None:
        self._sent.pop(name, None)
        for listener in list(self.listeners):
            listener.push({"type": "removed", "station": name})

    def _send(self, rows: list[dict[str, Any]], now: float) -> None:
        if not rows:
            return
        for r in rows:
            self._sent[r["station"]] = S.row_time_key(r)
        message = {"type": "rows", "now": now, "rows": rows}
        for listener in list(self.listeners):
            listener.push(message)

    def listen(self) -> tuple[Listener, dict[str, Any]]:
        """A new listener and the snapshot it starts from."""
        listener = Listener()
        now = self.wall()
        with self.lock:
            self.listeners.add(listener)
            rows = self.rows(now)
        return listener, {"type": "snapshot", "now": now, "rows": rows}

    def unlisten(self, listener: Listener) -> None:
        with self.lock:
            self.listeners.discard(listener)

    # --- desk-side actions --------------------------------------------------------------------

    def mark_seen(self, name: str, by: str | None) -> bool:
        """The trouble of station ``name`` has been seen at the desk; False if unknown."""
        now = self.wall()
        with self.lock:
            st = self.stations.get(name)
            if st is None:
                return False
            S.mark_seen(st, now, by)
            self.store.save([(st, None, None)])
            rows = [self.row(st, now)]
        self._send(rows, now)
        return True

    def detail(self, name: str) -> dict[str, Any] | None:
        """One station's row, recent events and the commands sent to it from the desk."""
        now = self.wall()
        with self.lock:
            st = self.stations.get(name)
            if st is None:
                return None
            row = self.row(st, now)
        return {"station": row, "events": self.store.events(name),
                "commands": self.store.commands(name, limit=20)}

