"""What the desk knows of each station, and how it reads: pure, time passed in.

A station is its last health document (``status``), its last presence (birth, clean stop or
last will) and a desk-side "seen" mark. The presence decides ``online``/``offline``; the health
document is never overwritten by a will, so a station that went dark still shows the alarms
that were active at its last status. ``row()`` turns that into what the page, the API and the
metrics show:

* ``state``: ``offline`` (presence says so, with its ``reason`` and ``since``), ``stale`` (its
  status is older than 3 × ``interval_s`` while presence says online), else ``online``.
* ``oldest_unacked_s``: the oldest alarm's age at the last status plus the time since — for a
  station gone dark that is how long its alarm has been unacknowledged as far as anyone knows.
* ``trouble``, the sort order of the wall: offline with alarms, alarm unacknowledged longer than
  the alert threshold, alarm, stale, faults, offline, ok.
* ``attention``: a station that went offline with alarms active, or whose alarm has been
  unacknowledged beyond the threshold, calls for attention until the desk marks it seen
  (a mark later than the moment the condition began).

Redeliveries (a retained message again at re-subscribe, after a desk restart or a broker
switch) change nothing: a status with the same ``at``/``boot_id``/``session``, a presence with
the same state/``boot_id``/``session``/reason, keep the times first recorded. A late will (its
``session`` older than the latest online presence or status) is ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from ...protocol import HealthDoc, OfflineReason, PresenceDoc, StationState, rfc3339

STALE_FACTOR = 3.0


class View(StrEnum):
    """The state a desk shows (docs/INTERFACE.md §6: online, stale, offline)."""

    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"


class Trouble(IntEnum):
    """Sort order of the wall, worst first."""

    OFFLINE_ALARMS = 0
    UNACKED_LONG = 1
    ALARM = 2
    STALE = 3
    FAULT = 4
    OFFLINE = 5
    OK = 6

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(slots=True)
class Station:
    """One station as the desk keeps it (and stores it: see ``store``)."""

    station: str
    region: str | None = None
    health: HealthDoc | None = None
    status_at: float | None = None        # desk wall time the health doc stands for
    presence: PresenceDoc | None = None
    since: float | None = None            # when the presence state began (wall)
    seen_at: float = 0.0                  # desk-side "seen" mark (wall)
    seen_by: str | None = None
    ack_latency_ms: float | None = None   # the last ack event's
    rejected: int = 0                     # rejected events seen by this desk
    faults_seen: dict[str, str] = field(default_factory=dict)


def _same_status(old: HealthDoc | None, new: HealthDoc) -> bool:
    return old is not None and (old.at, old.boot_id, old.session) == (
        new.at, new.boot_id, new.session)


def apply_status(st: Station, doc: HealthDoc, received: float, *, retained: bool) -> bool:
    """A health document received at ``received`` (wall). True when anything changed.

    A retained document delivered at subscribe time is as old as its own ``at`` says (when the
    station's clock was synchronised); a live one is dated by its receipt.
    """
    if _same_status(st.health, doc):
        return False
    if st.health is not None and _older(doc.session, st.health.session):
        return False                       # a stale retained copy from another broker node
    st.health = doc
    st.region = doc.region or st.region
    at = received
    if retained and doc.at is not None and doc.clock_synced is not False:
        at = min(received, doc.at)
    st.status_at = at
    if (st.presence is not None and st.presence.state is StationState.OFFLINE
            and _older(st.presence.session, doc.session)):
        # A newer connection's status while we hold an offline presence: the birth was
        # missed (a broker node that did not replicate it); the station is back.
        st.presence = PresenceDoc(station=st.station, region=doc.region,
                                  state=StationState.ONLINE, reason=None,
                                  boot_id=doc.boot_id, session=doc.session, at=at)
        st.since = at
    return True


def _older(a: int | None, b: int | None) -> bool:
    """Is session ``a`` older than session ``b`` (both known)?"""
    return a is not None and b is not None and a < b


def apply_presence(st: Station, doc: PresenceDoc, received: float, *, retained: bool) -> bool:
    """A presence document received at ``received`` (wall). True when anything changed."""
    old = st.presence
    if old is not None and (old.state, old.boot_id, old.session, old.reason) == (
            doc.state, doc.boot_id, doc.session, doc.reason):
        return False                       # a redelivery: keep the time first recorded
    if doc.state is StationState.OFFLINE and _late(st, doc):
        return False
    if doc.state is StationState.ONLINE and old is not None and _older(doc.session, old.session):
        return False                       # an old birth (retained on another node)
    st.presence = doc
    st.region = doc.region or st.region
    if doc.at is not None:
        st.since = min(doc.at, received)
    elif retained and st.status_at is not None:
        st.since = st.status_at            # a will found retained: dark since last heard of
    else:
        st.since = received
    return True


def _late(st: Station, doc: PresenceDoc) -> bool:
    """A will from a connection older than the latest online presence or status?"""
    newest = [s for s in ((st.presence.session if st.presence and
                           st.presence.state is StationState.ONLINE else None),
                          st.health.session if st.health else None) if s is not None]
    return doc.session is not None and bool(newest) and doc.session < max(newest)


def view(st: Station, now: float) -> View:
    """Offline when presence says so; stale when no health document was ever heard (only a
    birth or events) or the last is older than 3 × its ``interval_s``; else online."""
    if st.presence is not None and st.presence.state is StationState.OFFLINE:
        return View.OFFLINE
    h = st.health
    if h is None or st.status_at is None or now - st.status_at > STALE_FACTOR * h.interval_s:
        return View.STALE
    return View.ONLINE


def alarm_since(st: Station) -> float | None:
    """When the oldest active alarm began (wall), as its last status tells."""
    h = st.health
    if h is None or not h.alarms_active or st.status_at is None:
        return None
    return st.status_at - (h.oldest_unacked_s or 0.0)


def trouble(st: Station, now: float, unacked_alert_s: float) -> Trouble:
    state = view(st, now)
    h = st.health
    alarms = h.alarms_active if h else 0
    began = alarm_since(st)
    if state is View.OFFLINE and alarms:
        return Trouble.OFFLINE_ALARMS
    if alarms and began is not None and now - began > unacked_alert_s:
        return Trouble.UNACKED_LONG
    if alarms:
        return Trouble.ALARM
    if state is View.STALE:
        return Trouble.STALE
    if h is not None and h.faults:
        return Trouble.FAULT
    if state is View.OFFLINE:
        return Trouble.OFFLINE
    return Trouble.OK


def attention_since(st: Station, now: float, unacked_alert_s: float) -> float | None:
    """When the condition calling for attention began (wall), or None: offline with alarms
    (since it went offline), an alarm unacknowledged beyond ``unacked_alert_s`` (since it
    crossed the threshold). A "seen" mark later than that silences it."""
    h = st.health
    if h is None or not h.alarms_active:
        return None
    began: list[float] = []
    if view(st, now) is View.OFFLINE and st.since is not None:
        began.append(st.since)
    start = alarm_since(st)
    if start is not None and now - start > unacked_alert_s:
        began.append(start + unacked_alert_s)
    unseen = [b for b in began if b > st.seen_at]
    return min(unseen) if unseen else None


def _iso(wall: float | None) -> str | None:
    return None if wall is None else rfc3339(wall)


def row(st: Station, now: float, unacked_alert_s: float) -> dict[str, Any]:
    """The station as the API and the page show it (JSON-ready)."""
    h = st.health
    state = view(st, now)
    began = alarm_since(st)
    attention = attention_since(st, now, unacked_alert_s)
    kind = trouble(st, now, unacked_alert_s)
    reason = st.presence.reason if st.presence and state is View.OFFLINE else None
    since = st.since
    if state is View.STALE:
        since = st.status_at
    return {
        "station": st.station, "region": st.region, "state": str(state), "reason": reason,
        "since": _iso(since), "last_status_at": _iso(st.status_at),
        "alarms_active": h.alarms_active if h else 0,
        "oldest_unacked_s": None if began is None else round(now - began, 1),
        "alarm_since": _iso(began),
        "faults": list(h.faults) if h else [], "version": h.version if h else None,
        "outputs": {"siren": h.siren, "beacon": h.beacon} if h else None,
        "button": h.button if h else None,
        "outbox_pending": h.outbox_pending if h else 0,
        "host": dict(h.host) if h else {},
        "counters": dict(h.counters) if h else {},
        "interval_s": h.interval_s if h else None,
        "last_ack_latency_ms": st.ack_latency_ms,
        "trouble": kind.label, "rank": int(kind),
        "attention": attention is not None, "attention_since": _iso(attention),
        "seen_at": _iso(st.seen_at or None), "seen_by": st.seen_by,
    }


def time_key(st: Station, now: float, unacked_alert_s: float) -> tuple[str, str, str | None]:
    """What time alone changes in a row (state, trouble, attention): cheaper than ``row``."""
    attention = attention_since(st, now, unacked_alert_s)
    return (str(view(st, now)), trouble(st, now, unacked_alert_s).label, _iso(attention))


def row_time_key(r: dict[str, Any]) -> tuple[str, str, str | None]:
    """``time_key`` of a row already built."""
    return (r["state"], r["trouble"], r["attention_since"])


def sort_key(r: dict[str, Any]) -> tuple[int, float, str]:
    """Worst first; within a kind, the longest-unacknowledged alarm first, then by name."""
    return (r["rank"], -(r["oldest_unacked_s"] or 0.0), r["station"])


def mark_seen(st: Station, now: float, by: str | None) -> None:
    """The desk has seen this station's trouble: what began before ``now`` stops calling."""
    st.seen_at, st.seen_by = now, by


__all__ = ["STALE_FACTOR", "View", "Trouble", "Station", "apply_status", "apply_presence",
           "view", "trouble", "attention_since", "row", "sort_key", "time_key", "row_time_key",
           "mark_seen",
           "OfflineReason"]
