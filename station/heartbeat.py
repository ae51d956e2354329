"""The retained status document (docs/INTERFACE.md §5–6) and the host figures it carries.

Host probes read files the kernel already keeps (no subprocesses): they are cheap enough for
every heartbeat and return None where the machine has no such figure (not a Pi).
"""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .protocol import COUNTERS, VERSION, ButtonState, StationState, rfc3339

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
TIME_ERROR = 5


def clock_synced() -> bool:
    """True when the system clock is synchronised (a Pi has no real-time clock).

    systemd-timesyncd's flag file first; otherwise ``adjtimex()``, which returns TIME_ERROR (5)
    while the kernel considers the clock unsynchronised.
    """
    if TIMESYNC_FLAG.exists():
        return True
    adjtimex = _adjtimex()
    if adjtimex is None:
        return True
    buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
    return bool(adjtimex(buf) != TIME_ERROR)


@functools.cache
def _adjtimex() -> Any:
    """libc's adjtimex, looked up once, among the symbols the interpreter already has loaded
    (``dlopen(NULL)``: libc is always one of them). ``ctypes.util.find_library`` would run
    ``ldconfig -p`` in a child process, ~8 ms of the start before the first status."""
    try:
        return ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None


def _read_number(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def host_figures(storage_dir: Path, synced: bool) -> dict[str, Any]:
    """``cpu_temp_c``, ``load1``, ``disk_free_mb``, ``clock_synced`` and, on a Pi,
    ``throttled`` (the firmware's under-voltage/throttling bits, as hex)."""
    temp = _read_number(THERMAL)
    try:
        free_mb: float | None = round(shutil.disk_usage(storage_dir).free / 1e6, 1)
    except OSError:
        free_mb = None
    out: dict[str, Any] = {
        "cpu_temp_c": round(int(temp) / 1000, 1) if temp and temp.isdigit() else None,
        "load1": round(os.getloadavg()[0], 2),
        "disk_free_mb": free_mb,
        "clock_synced": synced,
    }
    throttled = _read_number(THROTTLED)
    if throttled is not None:
        out["throttled"] = throttled
    return out


@dataclass(frozen=True)
class Identity:
    """What stays fixed for one process: who we are and since when."""

    station: str
    region: str
    boot_id: str
    started_at: float                 # wall
    interval_s: float


STATUS_LIST_MAX = 20      # active alarms listed in a status (all are counted)


def status(ident: Identity, *, now_wall: float, uptime_s: float, session: int,
           alarms_active: int, oldest_unacked_s: float | None, siren: bool, beacon: bool,
           button: ButtonState, outbox_pending: int, faults: list[str], host: dict[str, Any],
           active: list[dict[str, Any]] | None = None,
           counters: dict[str, int] | None = None) -> dict[str, Any]:
    """The status (health) document. ``active`` (optional) lists the active alarms;
    ``counters`` are the counts since start (``complaints``, ``acks``, ``rejected``,
    ``reconnects``), top-level fields of the document."""
    doc: dict[str, Any] = {
        "v": VERSION, "station": ident.station, "region": ident.region,
        "state": StationState.ONLINE,
        "at": rfc3339(now_wall), "version": __version__, "started_at": rfc3339(ident.started_at),
        "uptime_s": round(uptime_s, 1), "interval_s": ident.interval_s,
        "alarms": {"active": alarms_active,
                   "oldest_unacked_s": None if oldest_unacked_s is None
                   else round(oldest_unacked_s, 1)},
        "outputs": {"siren": siren, "beacon": beacon},
        "button": button, "outbox_pending": outbox_pending, "faults": sorted(faults),
        "host": host, "boot_id": ident.boot_id, "session": session,
        **{name: (counters or {}).get(name, 0) for name in COUNTERS},
    }
    if active is not None:
        doc["alarms"]["list"] = active[:STATUS_LIST_MAX]
    return doc


class Schedule:
    """When the next heartbeat is due; ``due(now)`` is True once per interval."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self._next = clock() + interval_s

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True

    @property
    def next_at(self) -> float:
        return self._next


class StatusPacer:
    """When the status goes out after a change: not before ``settle_s`` after it (the change's
    events are handed to the disk first) and at most once per ``min_gap_s``. Times are
    monotonic seconds; the caller publishes and says so with :meth:`published`."""

    def __init__(self, min_gap_s: float, settle_s: float) -> None:
        self.min_gap_s = min_gap_s
        self.settle_s = settle_s
        self.pending = False
        self._changed_at = 0.0
        self._last = 0.0

    def changed(self, now: float) -> None:
        if not self.pending:
            self.pending = True
            self._changed_at = now

    def due_at(self) -> float | None:
        """When the pending status is due; None when nothing changed."""
        if not self.pending:
            return None
        return max(self._last + self.min_gap_s, self._changed_at + self.settle_s)

    def due(self, now: float) -> bool:
        at = self.due_at()
        return at is not None and now >= at

    def published(self, now: float) -> None:
        self.pending = False
        self._last = now
