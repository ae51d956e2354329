"""Status, presence and event payloads as stations publish them (docs/INTERFACE.md §4–6), for desk
tests that simulate many stations; the real station is used where one is enough."""
from __future__ import annotations

import time
import uuid
from typing import Any

from station.protocol import encode, rfc3339


def status(station: str, *, region: str = "region-a", at: float | None = None,
           alarms: int = 0, oldest: float | None = None, faults: list[str] | None = None,
           boot_id: str = "boot-1", session: int = 1, interval_s: float = 30,
           version: str = "0.1.0", synced: bool = True, rejected: int = 0) -> bytes:
    return encode({
        "v": 1, "station": station, "region": region, "state": "online",
        "at": rfc3339(time.time() if at is None else at), "version": version,
        "started_at": rfc3339(time.time() - 100), "uptime_s": 100.0, "interval_s": interval_s,
        "alarms": {"active": alarms, "oldest_unacked_s": oldest},
        "outputs": {"siren": alarms > 0, "beacon": alarms > 0}, "button": "released",
        "outbox_pending": 0, "faults": faults or [],
        "host": {"cpu_temp_c": 50.1, "load1": 0.2, "disk_free_mb": 2000.0,
                 "clock_synced": synced},
        "boot_id": boot_id, "session": session, "complaints": 3, "acks": 2,
        "rejected": rejected, "reconnects": 0})


def presence(station: str, state: str = "online", *, region: str = "region-a",
             reason: str | None = None, boot_id: str = "boot-1", session: int = 1,
             at: float | None = None, will: bool = False) -> bytes:
    doc: dict[str, Any] = {"v": 1, "station": station, "region": region, "state": state,
                           "boot_id": boot_id, "session": session}
    if reason:
        doc["reason"] = reason
    if not will:
        doc["at"] = rfc3339(time.time() if at is None else at)
    return encode(doc)


def event(station: str, type_: str, *, region: str = "region-a", seq: int = 1,
          event_id: str | None = None, **fields: Any) -> bytes:
    return encode({"v": 1, "type": type_, "event_id": event_id or str(uuid.uuid4()),
                   "seq": seq, "station": station, "region": region,
                   "at": rfc3339(time.time()), "clock_synced": True, **fields})
