"""``polres-station monitor``: the national desk's view of every station (docs/INTERFACE.md §6).

Subscribes to ``{root}/station/+/status`` (the retained health document), ``…/presence``
(retained birth, clean stop, last will) and ``…/events`` (for ack latency), read with
:mod:`station.protocol`'s readers. ``Desk.handle`` costs O(1) per message — one dict lookup and a
few field writes, no sorting — so thousands of stations cost nothing between frames;
``Desk.rows`` sorts (trouble on top) only when a frame is drawn (≈ 2/s) or a snapshot is printed.

State of a station: from its presence, ``online`` or ``offline`` (with the will's ``lost`` or a
clean stop's ``shutdown``, and since when); ``stale`` when presence says online but the last
status is older than 3 × its ``interval_s``; ``unknown`` when neither was seen. The last health
document is kept whatever presence says: an offline station shows the alarms that were active
at its last status. Ages come from the status's own ``at`` when the station's clock was
synchronised (a retained status may be days old), else from when this desk received it. A late
will from an older connection (its ``boot_id``/``session`` older than the latest birth) is
ignored (docs/INTERFACE.md §5–6).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..protocol import EventDoc, EventType, HealthDoc, PresenceDoc, StationState, rfc3339
from ..terminal import Exit, broker_args, seconds_or_zero

STALE_FACTOR = 3.0
OLD_BOOTS = 4                     # superseded boot ids remembered per station
QUIET_S, MAX_SETTLE_S = 0.5, 30.0
RANK = {"offline": 0, "stale": 1, "unknown": 2, "alarm": 3, "fault": 4, "ok": 5}


@dataclass(slots=True)
class StationView:
    """What the desk knows of one station; updated in place by each message."""

    station: str
    region: str = "?"
    state: str = "unknown"          # online | offline, from presence
    reason: str | None = None
    since: float | None = None      # wall: when the current presence state began
    seen: float | None = None       # wall time the last status was issued (see module doc)
    interval_s: float = 30.0
    alarms_active: int = 0
    oldest_unacked_s: float | None = None
    siren: bool | None = None
    beacon: bool | None = None
    faults: tuple[str, ...] = ()
    outbox_pending: int = 0
    version: str | None = None
    last_ack_latency_ms: float | None = None
    boot_id: str | None = None      # of the latest birth
    session: int = -1
    old_boots: tuple[str, ...] = ()
    late_wills: int = 0


class Desk:
    """Every station's latest state, fed by ``handle(topic, payload, retained)``."""

    def __init__(self, root: str = "polri/110", *, wall: Callable[[], float] = time.time) -> None:
        self.prefix = f"{root}/station/"
        self.wall = wall
        self.stations: dict[str, StationView] = {}
        self.messages = 0
        self.errors = 0
        self.last_message = 0.0          # monotonic
        self._lock = threading.Lock()

    # --- per message: O(1) --------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> None:
        if not topic.startswith(self.prefix):
            return
        station, _, leaf = topic[len(self.prefix):].partition("/")
        if not station or leaf not in LEAVES:
            return
        now = self.wall()
        with self._lock:
            self.messages += 1
            self.last_message = time.monotonic()
            if not payload:                   # a cleared retained document: station removed
                if leaf in ("status", "presence"):
                    self.stations.pop(station, None)
                return
            doc = LEAVES[leaf].read(payload)
            if doc is None or doc.station != station:
                self.errors += 1
                return
            view = self.stations.get(station)
            if view is None:
                view = self.stations[station] = StationView(station)
            if doc.region is not None:
                view.region = doc.region
            if isinstance(doc, EventDoc):
                _event(view, doc)
            elif isinstance(doc, HealthDoc):
                _health(view, doc, now, retained)
            elif isinstance(doc, PresenceDoc):
                _presence(view, doc, now, retained)

    # --- per frame or snapshot ----------------------------------------------------------------

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every station as a snapshot dict, trouble first."""
        now = self.wall() if now is None else now
        with self._lock:
            rows = [_row(v, now) for v in self.stations.values()]
        rows.sort(key=_trouble_key)
        return rows


LEAVES: dict[str, Any] = {"status": HealthDoc, "presence": PresenceDoc, "events": EventDoc}


def _event(view: StationView, doc: EventDoc) -> None:
    if doc.type == EventType.ACK:
        latency = doc.fields.get("ack_latency_ms")
        if isinstance(latency, (int, float)) and not isinstance(latency, bool):
            view.last_ack_latency_ms = float(latency)


def _health(view: StationView, doc: HealthDoc, now: float, retained: bool) -> None:
    view.seen = now
    if retained and doc.at is not None and doc.clock_synced is not False:
        view.seen = min(now, doc.at)      # a retained status is as old as it says
    if view.state == "unknown":           # no presence seen (yet): the status says it ran
        view.state, view.since = "online", view.seen
    elif view.state == "offline" and view.since is None:
        view.since = view.seen
    view.interval_s = doc.interval_s
    view.alarms_active = doc.alarms_active
    view.oldest_unacked_s = doc.oldest_unacked_s
    view.siren, view.beacon = doc.siren, doc.beacon
    view.faults = doc.faults
    view.outbox_pending = doc.outbox_pending
    view.version = doc.version


def is_late_will(view: StationView, doc: PresenceDoc) -> bool:
    """Does this offline presence come from a connection older than the latest birth?"""
    if view.state != "online" or view.boot_id is None:
        return False
    if doc.boot_id in view.old_boots:
        return True                       # a process that has since been replaced
    if doc.session is None:
        return False
    if doc.boot_id == view.boot_id:
        return doc.session < view.session  # an earlier connection of this process
    return doc.session <= view.session     # an unknown process with an older session


def _presence(view: StationView, doc: PresenceDoc, now: float, retained: bool) -> None:
    if doc.state == StationState.ONLINE:
        if view.boot_id is not None and doc.boot_id != view.boot_id:
            view.old_boots = (view.old_boots + (view.boot_id,))[-OLD_BOOTS:]
        view.boot_id, view.session = doc.boot_id, doc.session if doc.session is not None else -1
        if view.state != "online":
            view.since = doc.at or now
        view.state, view.reason = "online", None
        return
    if is_late_will(view, doc):
        view.late_wills += 1
        return
    if view.state != "offline":
        # A will carries no time: one received live went out now; one delivered retained at
        # subscribe is as old as the last status at most (the best this desk can know).
        view.since = doc.at or (view.seen if retained else now)
    view.state = "offline"
    view.reason = doc.reason or "?"
    view.siren = view.beacon = None       # unknown while offline


def _row(v: StationView, now: float) -> dict[str, Any]:
    age = None if v.seen is None else max(0.0, now - v.seen)
    state = v.state
    if state == "online" and age is not None and age > STALE_FACTOR * v.interval_s:
        state = "stale"
    oldest = None if v.oldest_unacked_s is None else round(v.oldest_unacked_s + (age or 0), 1)
    return {
        "station": v.station, "region": v.region, "state": state, "reason": v.reason,
        "alarms": {"active": v.alarms_active, "oldest_unacked_s": oldest},
        "outputs": {"siren": v.siren, "beacon": v.beacon}, "faults": list(v.faults),
        "outbox_pending": v.outbox_pending, "last_ack_latency_ms": v.last_ack_latency_ms,
        "age_s": None if age is None else round(age, 1),
        "last_seen": None if v.seen is None else rfc3339(v.seen),
        "last_status_at": None if v.seen is None else rfc3339(v.seen),
        "since": None if v.since is None else rfc3339(v.since),
        "since_s": None if v.since is None else round(max(0.0, now - v.since), 1),
        "interval_s": v.interval_s, "version": v.version,
    }


def trouble(row: dict[str, Any]) -> str:
    """The worst thing about a station: offline, stale, unknown, alarm, fault or ok."""
    if row["state"] in ("offline", "stale", "unknown"):
        return str(row["state"])
    if row["alarms"]["active"]:
        return "alarm"
    return "fault" if row["faults"] else "ok"


def _trouble_key(row: dict[str, Any]) -> tuple[int, float, str]:
    oldest = row["alarms"]["oldest_unacked_s"] or 0.0
    return (RANK[trouble(row)], -oldest, row["station"])


# --- rendering --------------------------------------------------------------------------------

STATE_STYLE = {"offline": "bold white on red", "stale": "bold black on yellow",
               "unknown": "magenta", "online": "green"}


def _age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _state_text(row: dict[str, Any]) -> str:
    """``online``, ``stale``, or ``offline (lost) 5m03s``: offline with its reason and since
    when (docs/INTERFACE.md §6)."""
    text = str(row["state"]) + (f" ({row['reason']})" if row["reason"] else "")
    if row["state"] == "offline" and row.get("since_s") is not None:
        text += f" {_age_text(row['since_s'])}"
    return text


def _lamps(outputs: dict[str, Any]) -> str:
    if outputs["siren"] is None:
        return "[grey50]?"
    siren = "[bold red]S[/]" if outputs["siren"] else "[grey50]-[/]"
    beacon = "[bold blue]B[/]" if outputs["beacon"] else "[grey50]-[/]"
    return f"{siren} {beacon}"


def _alarms(row: dict[str, Any]) -> str:
    active = row["alarms"]["active"]
    if not active:
        return "0"
    return f"[bold red]{active}[/] ({_age_text(row['alarms']['oldest_unacked_s'])})"


def summary(rows: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[trouble(r)] = counts.get(trouble(r), 0) + 1
    parts = [f"{counts[k]} {k}" for k in RANK if counts.get(k)]
    return f"{len(rows)} stations: " + (", ".join(parts) or "none yet")


# (header, justify, may shrink): region and faults give way on a narrow screen
COLUMNS = (("station", "left", False), ("region", "left", True), ("state", "left", False),
           ("alarms", "right", False), ("S B", "left", False), ("faults", "left", True),
           ("outbox", "right", False), ("ack ms", "right", False), ("seen", "right", False))


def render_table(rows: list[dict[str, Any]], *, limit: int | None = None,
                 title: str = "") -> Any:
    """The desk's table (rich renderable); only the first ``limit`` rows are drawn."""
    from rich.table import Table
    table = Table(title=title or None, caption=summary(rows), box=None,
                  header_style="bold underline", title_justify="left", caption_justify="left",
                  pad_edge=False)
    for col, justify, shrinks in COLUMNS:
        table.add_column(col, justify=justify, no_wrap=not shrinks,  # type: ignore[arg-type]
                         overflow="ellipsis", max_width=18 if col == "region" else None)
    shown = rows if limit is None else rows[:limit]
    for r in shown:
        state = _state_text(r)
        ack = r["last_ack_latency_ms"]
        table.add_row(
            r["station"], r["region"], f"[{STATE_STYLE.get(r['state'], '')}]{state}",
            _alarms(r), _lamps(r["outputs"]),
            f"[yellow]{', '.join(r['faults'])}" if r["faults"] else "",
            str(r["outbox_pending"] or ""), "-" if ack is None else f"{ack:.0f}",
            _age_text(r["age_s"]))
    if len(shown) < len(rows):
        table.add_row(f"… {len(rows) - len(shown)} more", *[""] * (len(COLUMNS) - 1))
    return table


def plain_table(rows: list[dict[str, Any]], *, limit: int | None = None) -> str:
    """The desk's table as plain text (no rich installed, or not a terminal)."""
    lines = [f"{'station':<24} {'region':<20} {'state':<26} {'alarms':>12} {'faults':<20} "
             f"{'outbox':>6} {'ack ms':>7} {'seen':>7}"]
    shown = rows if limit is None else rows[:limit]
    for r in shown:
        state = _state_text(r)
        active = r["alarms"]["active"]
        alarms = f"{active} ({_age_text(r['alarms']['oldest_unacked_s'])})" if active else "0"
        ack = r["last_ack_latency_ms"]
        lines.append(f"{r['station']:<24} {r['region'][:20]:<20} {state:<26} {alarms:>12} "
                     f"{', '.join(r['faults'])[:20]:<20} {r['outbox_pending'] or '':>6} "
                     f"{'-' if ack is None else f'{ack:.0f}':>7} {_age_text(r['age_s']):>7}")
    if len(shown) < len(rows):
        lines.append(f"… {len(rows) - len(shown)} more")
    lines.append(summary(rows))
    return "\n".join(lines)


def _live_plain(desk: Desk, sub: Subscription, every_s: float = 5.0) -> int:
    """Without rich: a plain table every ``every_s`` seconds until Ctrl-C."""
    try:
        while True:
            time.sleep(every_s)
            link = "" if sub.client.is_connected() else "  BROKER UNREACHABLE"
            print(f"--- {time.strftime('%H:%M:%S')}{link}")
            print(plain_table(desk.rows(), limit=40), flush=True)
    except KeyboardInterrupt:
        return 0


# --- MQTT -------------------------------------------------------------------------------------

class Subscription:
    """A desk client: subscribes (again after every reconnect) and feeds a ``Desk``."""

    def __init__(self, args: argparse.Namespace, desk: Desk) -> None:
        from .clients import Side, client_from_args
        from ..protocol import station_topic
        self.desk = desk
        self.subscribed = threading.Event()
        self.topics = [(station_topic(args.root, "+", leaf), 1) for leaf in LEAVES]
        self.client = client_from_args(args, Side.DESK)
        # paho annotates int seconds; it only sleeps them, so a fraction works.
        self.client.reconnect_delay_set(0.5, 10)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(self.topics)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = self._message

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            self.desk.handle(msg.topic, msg.payload, bool(msg.retain))
        except Exception:  # noqa: BLE001 — an exception here would kill paho's thread
            self.desk.errors += 1


def settle(desk: Desk, sub: Subscription, wait: float | None) -> None:
    """Collect retained statuses: ``wait`` seconds, or until QUIET_S without a message."""
    start = time.monotonic()
    if wait is not None:
        time.sleep(wait)
        return
    sub.subscribed.wait(MAX_SETTLE_S)
    mark = max(desk.last_message, time.monotonic())
    while time.monotonic() - start < MAX_SETTLE_S:
        quiet_since = max(mark, desk.last_message)
        if time.monotonic() - quiet_since >= QUIET_S:
            return
        time.sleep(0.05)


def snapshot_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps({"stations": rows}, indent=1)


def _live(desk: Desk, sub: Subscription, title: str) -> None:
    from rich.console import Console
    from rich.live import Live
    console = Console()

    def frame() -> Any:
        rows = desk.rows()
        link = "" if sub.client.is_connected() else " · [bold red]BROKER UNREACHABLE[/]"
        return render_table(rows, limit=max(3, console.size.height - 8),
                            title=f"{title} · {time.strftime('%H:%M:%S')}{link}")
    with Live(get_renderable=frame, console=console, refresh_per_second=2, screen=True):
        while True:
            time.sleep(0.5)


# --- command line -----------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    broker_args(p)
    p.add_argument("--once", action="store_true",
                   help="print one snapshot after reading the retained statuses, then exit")
    p.add_argument("--json", action="store_true", help="with --once: JSON snapshot")
    p.add_argument("--wait", type=seconds_or_zero, metavar="S",
                   help=f"with --once: collect for S seconds (default: until {QUIET_S} s "
                        "without a message)")


def main(args: argparse.Namespace) -> int:
    from .clients import connected
    if not args.once and (args.json or args.wait is not None):
        # Alone they would start the full-screen live view, which a script never leaves.
        option = "--json" if args.json else "--wait"
        print(f"error: {option} shapes the --once snapshot: add --once", file=sys.stderr)
        return Exit.USAGE
    host, port = args.broker.host, args.broker.port
    plain = importlib.util.find_spec("rich") is None
    desk = Desk(args.root)
    sub = Subscription(args, desk)
    with connected(sub.client, host, port):
        if not args.once and plain:
            return _live_plain(desk, sub)
        if not args.once:
            try:
                _live(desk, sub, f"Polres 110 monitoring desk — {args.broker} {args.root}")
            except KeyboardInterrupt:
                return 0
        settle(desk, sub, args.wait)
        rows = desk.rows()
    if args.json:
        print(snapshot_json(rows))
    elif plain:
        print(plain_table(rows))
    else:
        from rich.console import Console
        Console().print(render_table(rows, title=f"{args.broker} {args.root}"))
    return 0
