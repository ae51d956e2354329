"""The desk's durable state (SQLite, WAL): each station's last health document and presence as
received (raw payloads and the times the desk gave them), the desk-side "seen" marks, recent
events per station, and the audit of commands sent from the page.

So a station that went dark is still shown with its alarms after a desk restart, and after a
switch to a broker node that never had its retained messages. Only the desk's loop thread
writes; readers (the HTTP threads) open their own connection.

Events are kept without anything that could be personal data: only the fields named in
``EVENT_FIELDS`` (stations never send complaint summaries upstream; this keeps it so even if
one did). ``KEEP_EVENTS`` per station; older ones are pruned.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable

from ...protocol import EventDoc, HealthDoc, PresenceDoc
from .state import Station

KEEP_EVENTS = 200
EVENT_FIELDS = ("complaint_id", "priority", "relay_latency_ms", "method", "ack_latency_ms",
                "by", "reason", "detail", "payload_sha256", "unacked_s", "fault", "trigger",
                "result", "cmd_id", "cmd", "ok", "since")

SCHEMA = """
CREATE TABLE IF NOT EXISTS stations (
  station TEXT PRIMARY KEY, region TEXT,
  status BLOB, status_at REAL, presence BLOB, since REAL,
  seen_at REAL NOT NULL DEFAULT 0, seen_by TEXT, ack_latency_ms REAL,
  rejected INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY, station TEXT NOT NULL, event_id TEXT UNIQUE, type TEXT NOT NULL,
  seq INTEGER, at REAL, received REAL NOT NULL, fields TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_station ON events (station, id);
CREATE TABLE IF NOT EXISTS commands (
  id INTEGER PRIMARY KEY, at REAL NOT NULL, user TEXT NOT NULL, client TEXT,
  station TEXT NOT NULL, cmd TEXT NOT NULL, cmd_id TEXT NOT NULL, args TEXT NOT NULL,
  published INTEGER NOT NULL, signed INTEGER NOT NULL, ok INTEGER, detail TEXT);
"""


def _connect(path: Path | str) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")      # the desk's copy, not the station's outbox
    return db


class DeskStore:
    """The desk's SQLite database. ``save``/``add_events`` from the loop thread only."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = _connect(path)
        self.db.executescript(SCHEMA)
        self._lock = threading.RLock()     # one connection: the loop and HTTP threads take turns

    def close(self) -> None:
        self.db.close()

    # --- stations ---------------------------------------------------------------------------

    def load(self) -> dict[str, Station]:
        """Every station as last stored (payloads read again with the protocol's readers)."""
        out: dict[str, Station] = {}
        with self._lock:
            stored = self.db.execute(
                "SELECT station, region, status, status_at, presence, since, seen_at, seen_by,"
                " ack_latency_ms, rejected FROM stations").fetchall()
        for (name, region, status, status_at, presence, since, seen_at, seen_by, ack_ms,
             rejected) in stored:
            out[name] = Station(
                station=name, region=region,
                health=HealthDoc.read(status) if status else None, status_at=status_at,
                presence=PresenceDoc.read(presence) if presence else None, since=since,
                seen_at=seen_at or 0.0, seen_by=seen_by, ack_latency_ms=ack_ms,
                rejected=rejected or 0)
        return out

    def save(self, stations: Iterable[tuple[Station, bytes | None, bytes | None]]) -> None:
        """Write stations (with the raw status/presence payloads when they changed; None
        keeps the stored one) in one transaction."""
        with self._lock, self.db:
            for st, status, presence in stations:
                self.db.execute(
                    "INSERT INTO stations (station, region, status, status_at, presence, since,"
                    " seen_at, seen_by, ack_latency_ms, rejected)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(station) DO UPDATE SET"
                    " region=excluded.region, status=coalesce(excluded.status, status),"
                    " status_at=excluded.status_at,"
                    " presence=coalesce(excluded.presence, presence), since=excluded.since,"
                    " seen_at=excluded.seen_at, seen_by=excluded.seen_by,"
                    " ack_latency_ms=excluded.ack_latency_ms, rejected=excluded.rejected",
                    (st.station, st.region, status, st.status_at, presence, st.since,
                     st.seen_at, st.seen_by, st.ack_latency_ms, st.rejected))

    def forget(self, station: str) -> None:
        """A station removed (its retained status cleared upstream)."""
        with self._lock, self.db:
            self.db.execute("DELETE FROM stations WHERE station = ?", (station,))
            self.db.execute("DELETE FROM events WHERE station = ?", (station,))

    # --- events -----------------------------------------------------------------------------

    def add_events(self, events: list[tuple[EventDoc, float]]) -> list[EventDoc]:
        """Store events (deduplicated by ``event_id``); returns the ones not seen before."""
        new: list[EventDoc] = []
        with self._lock, self.db:
            for ev, received in events:
                fields = {k: ev.fields[k] for k in EVENT_FIELDS if k in ev.fields}
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO events (station, event_id, type, seq, at, received,"
                    " fields) VALUES (?,?,?,?,?,?,?)",
                    (ev.station, ev.event_id, ev.type, ev.seq, ev.at, received,
                     json.dumps(fields, ensure_ascii=False)))
                if cur.rowcount:
                    new.append(ev)
        return new

    def prune(self, keep: int = KEEP_EVENTS) -> None:
        with self._lock, self.db:
            self.db.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER"
                " (PARTITION BY station ORDER BY id DESC) AS n FROM events) WHERE n > ?)",
                (keep,))

    def events(self, station: str, limit: int = 50) -> list[dict[str, Any]]:
        """The station's most recent events, newest first."""
        with self._lock:
            rows = self.db.execute(
                "SELECT type, seq, at, received, fields, event_id FROM events WHERE station = ?"
                " ORDER BY id DESC LIMIT ?", (station, limit)).fetchall()
        return [{"type": t, "seq": seq, "at": at, "received": rec, "event_id": eid,
                 **json.loads(fields)} for t, seq, at, rec, fields, eid in rows]

    # --- commands (audit) -------------------------------------------------------------------

    def record_command(self, *, at: float, user: str, client: str, station: str, cmd: str,
                       cmd_id: str, args: dict[str, Any], published: bool,
                       signed: bool, detail: str | None = None) -> None:
        with self._lock, self.db:
            self.db.execute(
                "INSERT INTO commands (at, user, client, station, cmd, cmd_id, args, published,"
                " signed, detail) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (at, user, client, station, cmd, cmd_id, json.dumps(args), int(published),
                 int(signed), detail))

    def command_result(self, cmd_id: str, ok: bool, detail: str | None) -> None:
        with self._lock, self.db:
            self.db.execute("UPDATE commands SET ok = ?, detail = ? WHERE cmd_id = ?",
                            (int(ok), detail, cmd_id))

    def commands(self, station: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        q = ("SELECT at, user, client, station, cmd, cmd_id, args, published, signed, ok, detail"
             " FROM commands")
        params: tuple[Any, ...] = ()
        if station is not None:
            q += " WHERE station = ?"
            params = (station,)
        with self._lock:
            rows = self.db.execute(q + " ORDER BY id DESC LIMIT ?",
                                   (*params, limit)).fetchall()
        keys = ("at", "user", "client", "station", "cmd", "cmd_id", "args", "published",
                "signed", "ok", "detail")
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for r in out:
            r["args"] = json.loads(r["args"])
        return out
