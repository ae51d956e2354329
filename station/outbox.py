"""The outbox thread (docs/DESIGN.md §2): durable first, publish in ``seq`` order, then PUBACK.

It owns the write connection to the store, so the alarm loop never waits on a disk or a
socket. Jobs queued close together are committed in one transaction (group commit).
Events stay in the outbox until the broker confirms them; after a reconnect or a restart they
are re-sent in ``seq`` order with their original ``event_id``.

If the store cannot be written (disk full, read-only), events are still published from memory
and inbound messages still acknowledged (the relay already switched; refusing PUBACKs would
stall the broker's in-flight window and stop new complaints reaching the room); a ``storage``
fault is reported and the unsaved records are retried until the disk recovers.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Protocol, Sequence

from .errors import StorageError
from .store import AlarmRow, OutboxRow, Store, encode_event

log = logging.getLogger("station.outbox")

GROUP_MAX = 256          # jobs per transaction
RETRY_S = 5.0            # storage retry period while the disk is failing
SEQ_JUMP = 1_000_000     # seq skipped when storage fails from a process's first write
IDLE_WAKE_S = 5.0        # longest idle sleep of the writer and the loop (watchdog progress)
PRUNE_EVERY_S = 3600.0   # forget complaint ids older than alarm.seen_ids_days this often


class Publisher(Protocol):
    @property
    def connected(self) -> bool: ...

    def publish(self, topic: str, payload: bytes, *, qos: int = 1,
                retain: bool = False) -> int: ...

    def ack(self, mid: int, qos: int, generation: int) -> bool: ...


@dataclass(frozen=True)
class Write:
    """One decision's durable part: seen ids, alarm rows, events, inbound messages to ack."""

    seen: Sequence[tuple[str, float]] = ()
    alarms: Sequence[AlarmRow] = ()
    events: Sequence[Mapping[str, Any]] = ()
    acks: Sequence[tuple[int, int, int]] = ()      # (mid, qos, generation)
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Delivered:
    mid: int


@dataclass(frozen=True)
class _Link:
    up: bool


_STOP = object()


class Outbox:
    """Runs the writer thread. ``on_storage(ok, detail)`` is told when writes fail/recover."""

    def __init__(self, open_store: Callable[[], Store], link: Publisher, topic: str, *,
                 window: int = 64, on_storage: Callable[[bool, str], None] | None = None,
                 on_progress: Callable[[], None] | None = None,
                 can_prune: Callable[[], bool] = lambda: True,
                 wake_s: float = IDLE_WAKE_S) -> None:
        self._open_store = open_store
        self._wake_s = wake_s                      # idle wake-up: progress beat, retries
        self._link = link
        self._topic = topic
        self._window = window
        self._on_storage = on_storage or (lambda ok, detail: None)
        self._on_progress = on_progress or (lambda: None)
        self._can_prune = can_prune
        self._next_prune = time.monotonic() + 60.0
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._store: Store | None = None
        self._inflight: dict[int, int] = {}        # mid → seq
        self._ready: deque[OutboxRow] = deque()
        self._cursor = 0                           # highest seq handed to paho
        self._caught_up = False
        self._up = False
        self._storage_ok = True
        self._unsaved: list[Write] = []
        self._mem_rows: list[OutboxRow] = []       # events numbered while storage failed
        self._undeleted: list[int] = []            # confirmed while storage failed
        self._mem_seq = 0
        self._stored_once = False                  # a write of this process reached the disk
        self._next_retry = 0.0
        self.pending = 0                           # events not yet confirmed (for status)
        self.idle = threading.Event()

    # --- API (any thread) ---------------------------------------------------------------------

    def start(self) -> None:
        self._store = self._open_store()
        self._mem_seq = self._store.last_seq()
        self.pending = self._store.outbox_count()
        self._thread.start()

    def submit(self, write: Write) -> None:
        self.idle.clear()
        self._jobs.put(write)

    def delivered(self, mid: int) -> None:
        self._jobs.put(_Delivered(mid))

    def link_up(self, up: bool) -> None:
        self._jobs.put(_Link(up))

    def stop(self, timeout: float = 5.0) -> None:
        """Finish queued writes, then stop the thread and close the store."""
        self._jobs.put(_STOP)
        self._thread.join(timeout)

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                first = self._jobs.get(timeout=self._idle_wait())
            except queue.Empty:
                self._on_progress()
                self._retry_unsaved()
                self._maybe_prune()
                self.idle.set()
                continue
            batch = [first]
            while len(batch) < GROUP_MAX:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            try:
                if not self._handle(batch):
                    break
            except Exception:  # noqa: BLE001 — the writer must outlive any single bug
                log.exception("outbox error; continuing")
            self._on_progress()
            if self._jobs.empty():
                self.idle.set()
        if self._store is not None:
            self._store.close()

    def _idle_wait(self) -> float:
        if self._storage_ok:
            return self._wake_s
        return min(self._wake_s, max(0.01, self._next_retry - time.monotonic()))

    def _handle(self, batch: list[Any]) -> bool:
        writes = [j for j in batch if isinstance(j, Write)]
        if writes:
            self._commit(writes)
        done = [self._inflight.pop(j.mid) for j in batch
                if isinstance(j, _Delivered) and j.mid in self._inflight]
        if done:
            self._delete(done)
        for j in batch:
            if isinstance(j, _Link):
                self._link_changed(j.up)
        self._pump()
        return not any(j is _STOP for j in batch)

    def _commit(self, writes: list[Write]) -> None:
        assert self._store is not None
        seen = [s for w in writes for s in w.seen]
        alarms = _last_per_id([a for w in writes for a in w.alarms])
        events = [e for w in writes for e in w.events]
        meta = {k: v for w in writes for k, v in w.meta.items()}
        try:
            if not self._storage_ok:
                self._retry_unsaved()
            if not self._storage_ok:
                raise StorageError("earlier writes still unsaved")
            rows = self._store.commit(seen=seen, alarms=alarms, events=events, meta=meta)
        except StorageError as e:
            if not self._stored_once and self._storage_ok:
                # Failing from this process's first write: the process before may have
                # crashed sending from memory with the numbers after the stored counter.
                # Never reuse one (HQ would miss a gap): jump, and say so.
                self._mem_seq += SEQ_JUMP
                log.warning("storage failing from the start: events numbered from memory "
                            "continue at seq %d", self._mem_seq + 1)
            rows = self._memory_rows(events)
            self._unsaved.extend(writes)
            self._storage_failed(str(e))
        except (ValueError, TypeError) as e:   # a value that cannot be serialised: a bug
            rows = self._commit_each(writes, e)
        else:
            self._stored_once = True
        self._mem_seq = max([self._mem_seq] + [r.seq for r in rows])
        self.pending = self._pending_after(len(rows))
        # Events before PUBACKs: a PUBACK followed by a publish waits out the broker's
        # delayed ACK under Nagle (docs/FIELD-GUIDE.md §5); the publish draws an immediate PUBACK.
        if self._caught_up:
            self._ready.extend(rows)
        self._pump()
        for w in writes:
            for mid, qos, gen in w.acks:
                self._link.ack(mid, qos, gen)
        self._send_queued()

    def _commit_each(self, writes: list[Write], error: Exception) -> list[OutboxRow]:
        """Store the batch write by write, so one write that cannot be serialised costs only
        its own records, never its neighbours' nor anyone's PUBACK (acks follow as usual)."""
        assert self._store is not None
        log.error("a write cannot be serialised (%s); storing the batch one by one", error)
        rows: list[OutboxRow] = []
        for w in writes:
            try:
                rows += self._store.commit(seen=w.seen, alarms=_last_per_id(list(w.alarms)),
                                           events=w.events, meta=w.meta)
            except (ValueError, TypeError) as e:
                log.error("dropped a write that cannot be stored (%d events): %s",
                          len(w.events), e)
        return rows

    def _memory_rows(self, events: list[Mapping[str, Any]]) -> list[OutboxRow]:
        rows = []
        for e in events:
            self._mem_seq += 1
            rows.append(OutboxRow(self._mem_seq, str(e["event_id"]), str(e["type"]),
                                  encode_event(e, self._mem_seq)))
        self._mem_rows.extend(rows)
        return rows

    def _storage_failed(self, detail: str) -> None:
        self._next_retry = time.monotonic() + RETRY_S
        # Without a store the reload-on-reconnect path cannot work: keep sending from memory.
        self._caught_up = True
        if self._storage_ok:
            self._storage_ok = False
            log.error("storage failed: %s; alarms still sound, events sent from memory", detail)
            self._on_storage(False, detail)

    def _retry_unsaved(self) -> None:
        if self._storage_ok or time.monotonic() < self._next_retry:
            return
        assert self._store is not None
        w = self._unsaved
        # Events made meanwhile that the broker has not confirmed yet go into the outbox with
        # the seq they were sent with: a reconnect re-reads the outbox, and an ack that lived
        # only in memory would be dropped.
        waiting = set(self._inflight.values()) | {r.seq for r in self._ready}
        kept = [r for r in self._mem_rows if r.seq in waiting]
        try:
            self._store.commit(seen=[s for x in w for s in x.seen],
                               alarms=_last_per_id([a for x in w for a in x.alarms]),
                               meta={k: v for x in w for k, v in x.meta.items()})
            self._store.put_outbox(kept, last_seq=self._mem_seq)
            self._store.delete_outbox(self._undeleted)
        except StorageError as e:
            self._next_retry = time.monotonic() + RETRY_S
            log.debug("storage still failing: %s", e)
            return
        log.warning("storage recovered; %d unsaved writes and %d unconfirmed events stored",
                    len(w), len(kept))
        self._unsaved, self._mem_rows, self._undeleted = [], [], []
        self._storage_ok = True
        self._on_storage(True, "recovered")
        if self._up:
            self._link_changed(True)   # re-read the outbox: rows a failed refill never loaded

    def _maybe_prune(self) -> None:
        # Seen ids age by wall time: an unsynchronised clock (no RTC on a Pi) could jump and
        # forget ids early, so prune only while the clock is synchronised.
        if time.monotonic() < self._next_prune or not self._storage_ok or not self._can_prune():
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        assert self._store is not None
        try:
            removed = self._store.prune_seen(time.time())
        except StorageError as e:
            log.warning("pruning seen complaint ids failed: %s", e)
            return
        if removed:
            log.info("forgot %d complaint ids past their retention", removed)

    def _delete(self, seqs: list[int]) -> None:
        assert self._store is not None
        if self._storage_ok:
            try:
                self._store.delete_outbox(seqs, durable=False)   # a re-send is harmless
            except StorageError as e:
                self._storage_failed(str(e))
                self._undeleted.extend(seqs)
        else:
            self._undeleted.extend(seqs)
        self.pending = self._pending_after(-len(seqs))

    def _pending_after(self, change: int) -> int:
        """Events not yet confirmed: the outbox's own row count while the store works (the
        bound's drops included, which a running sum missed: they are never confirmed), else
        the running figure moved by ``change``."""
        if self._storage_ok and self._store is not None:
            try:
                return self._store.outbox_size()
            except StorageError:
                pass
        return max(0, self.pending + change)

    def _link_changed(self, up: bool) -> None:
        self._up = up
        if not self._storage_ok:
            return  # memory mode: what is in _ready was never sent; keep it
        # Re-read the outbox from the start on every (re)connect; messages paho still holds
        # in flight are skipped (paho re-sends those itself).
        self._ready.clear()
        self._cursor = 0
        self._caught_up = False

    def _pump(self) -> None:
        if not self._up:
            return
        sending = set(self._inflight.values())
        while len(self._inflight) < self._window:
            while not self._ready and not self._caught_up and self._storage_ok:
                self._refill(sending)
            if not self._ready:
                break
            row = self._ready.popleft()
            self._cursor = max(self._cursor, row.seq)
            mid = self._link.publish(self._topic, row.payload, qos=1)
            self._inflight[mid] = row.seq
        self._send_queued()

    def _send_queued(self) -> None:
        """Hand what was published to the socket from this thread, when the link can."""
        send = getattr(self._link, "send_queued", None)
        if send is not None:
            send()

    def _refill(self, sending: set[int]) -> None:
        assert self._store is not None
        try:
            rows = self._store.outbox_rows(after_seq=self._cursor, limit=self._window)
        except StorageError as e:
            self._storage_failed(str(e))
            return
        if len(rows) < self._window:
            self._caught_up = True
        if rows:
            self._cursor = rows[-1].seq
        self._ready.extend(r for r in rows if r.seq not in sending)


def _last_per_id(rows: list[AlarmRow]) -> list[AlarmRow]:
    """The newest row per complaint (one decision may update an alarm twice), keeping the
    relay latency of the first row that carries it (it is stored once, see ``AlarmRow``)."""
    latest: dict[str, AlarmRow] = {}
    for r in rows:
        first = latest.get(r.complaint_id)
        if first is not None and first.relay_latency_ms is not None:
            r = replace(r, relay_latency_ms=first.relay_latency_ms)
        latest[r.complaint_id] = r
    return list(latest.values())
