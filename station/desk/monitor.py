"""``polres-station monitor``: the national desk's view of every station (docs/INTERFACE.md §6).

Subscribes to ``{root}/station/+/status`` (retained heartbeats, births, last wills) and
``{root}/station/+/events`` (for ack latency). ``Desk.handle`` costs O(1) per message — one
dict lookup and a few field writes, no sorting — so thousands of stations cost nothing between
frames; ``Desk.rows`` sorts (trouble on top) only when a frame is drawn (≈ 2/s) or a snapshot is
printed.

State of a station: ``online``; ``stale`` when its last status is older than 3 × its
``interval_s`` (receive time on this machine; for a retained status delivered at subscribe
time, its own ``at`` when the station's clock was synchronised, since the receive time says
nothing about its age); ``offline`` with the will's or clean stop's ``reason``; ``unknown``
when only events were seen. A late will from an older connection (its ``boot_id``/``session``
older than the latest online status) is ignored (docs/INTERFACE.md §5–6).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from ..terminal import broker_args

STALE_FACTOR = 3.0
OLD_BOOTS = 4                     # superseded boot ids remembered per station
QUIET_S, MAX_SETTLE_S = 0.5, 30.0
RANK = {"offline": 0, "stale": 1, "unknown": 2, "alarm": 3, "fault": 4, "ok": 5}


@dataclass(slots=True)
class StationView:
    """What the desk knows of one station; updated in place by each message."""

    station: str
    region: str = "?"
    state: str = "unknown"          # online | offline, as last reported
    reason: str | None = None
    seen: float | None = None       # wall time the last status was issued (see module doc)
    interval_s: float = 30.0
    alarms_active: int = 0
    oldest_unacked_s: float | None = None
    siren: bool | None = None
    beacon: bool | None = None
    faults: tuple[str, ...] = ()
    outbox_pending: int = 0
    last_ack_latency_ms: float | None = None
    boot_id: str | None = None      # of the latest online status
    session: int = -1
    old_boots: tuple[str, ...] = ()
    late_wills: int = 0


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _number(value: Any, default: float | None = None) -> float | None:
    return float(value) if type(value) in (int, float) else default


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (a malformed document shows blanks)."""
    return value if isinstance(value, dict) else {}


def _int(value: Any, default: int = 0) -> int:
    return int(value) if type(value) in (int, float) else default


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
        if not station or leaf not in ("status", "events"):
            return
        now = self.wall()
        with self._lock:
            self.messages += 1
            self.last_message = time.monotonic()
            if not payload:                   # a cleared retained status: station removed
                if leaf == "status":
                    self.stations.pop(station, None)
                return
            try:
                doc = json.loads(payload)
            except ValueError:
                self.errors += 1
                return
            if not isinstance(doc, dict):
                self.errors += 1
                return
            view = self.stations.get(station)
            if view is None:
                view = self.stations[station] = StationView(station)
            if isinstance(doc.get("region"), str):
                view.region = doc["region"]
            if leaf == "events":
                _event(view, doc)
            elif doc.get("state") == "online":
                _online(view, doc, now, retained)
            elif doc.get("state") == "offline":
                _offline(view, doc, now)

    # --- per frame or snapshot ----------------------------------------------------------------

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every station as a snapshot dict, trouble first."""
        now = self.wall() if now is None else now
        with self._lock:
            rows = [_row(v, now) for v in self.stations.values()]
        rows.sort(key=_trouble_key)
        return rows


def _event(view: StationView, doc: dict[str, Any]) -> None:
    if doc.get("type") == "ack":
        view.last_ack_latency_ms = _number(doc.get("ack_latency_ms"), view.last_ack_latency_ms)


def _online(view: StationView, doc: dict[str, Any], now: float, retained: bool) -> None:
    boot = doc.get("boot_id") if isinstance(doc.get("boot_id"), str) else None
    if view.boot_id is not None and boot != view.boot_id:
        view.old_boots = (view.old_boots + (view.boot_id,))[-OLD_BOOTS:]
    view.boot_id, view.session = boot, _int(doc.get("session"), -1)
    view.state, view.reason = "online", None
    view.seen = now
    at = _parse_time(doc.get("at"))
    host = _mapping(doc.get("host"))
    if retained and at is not None and host.get("clock_synced", True) is not False:
        view.seen = min(now, at)          # a retained status is as old as it says
    view.interval_s = _number(doc.get("interval_s"), 30.0) or 30.0
    alarms = _mapping(doc.get("alarms"))
    view.alarms_active = _int(alarms.get("active"))
    view.oldest_unacked_s = _number(alarms.get("oldest_unacked_s"))
    outputs = _mapping(doc.get("outputs"))
    view.siren, view.beacon = bool(outputs.get("siren")), bool(outputs.get("beacon"))
    faults = doc.get("faults")
    view.faults = tuple(str(f) for f in faults) if isinstance(faults, list) else ()
    view.outbox_pending = _int(doc.get("outbox_pending"))


def is_late_will(view: StationView, doc: dict[str, Any]) -> bool:
    """Does this offline status come from a connection older than the latest online one?"""
    if view.state != "online" or view.boot_id is None:
        return False
    boot, session = doc.get("boot_id"), _number(doc.get("session"))
    if boot in view.old_boots:
        return True                       # a process that has since been replaced
    if session is None:
        return False
    if boot == view.boot_id:
        return session < view.session      # an earlier connection of this process
    return session <= view.session         # an unknown process with an older session


def _offline(view: StationView, doc: dict[str, Any], now: float) -> None:
    if is_late_will(view, doc):
        view.late_wills += 1
        return
    view.state = "offline"
    view.reason = str(doc.get("reason") or "?")
    view.seen = now
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
        "last_seen": None if v.seen is None else _rfc3339(v.seen),
        "interval_s": v.interval_s,
    }


def _rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(
        timespec="seconds").replace("+00:00", "Z")


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
        state = r["state"] + (f" ({r['reason']})" if r["reason"] else "")
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
    lines = [f"{'station':<24} {'region':<20} {'state':<18} {'alarms':>12} {'faults':<20} "
             f"{'outbox':>6} {'ack ms':>7} {'seen':>7}"]
    shown = rows if limit is None else rows[:limit]
    for r in shown:
        state = r["state"] + (f" ({r['reason']})" if r["reason"] else "")
        active = r["alarms"]["active"]
        alarms = f"{active} ({_age_text(r['alarms']['oldest_unacked_s'])})" if active else "0"
        ack = r["last_ack_latency_ms"]
        lines.append(f"{r['station']:<24} {r['region'][:20]:<20} {state:<18} {alarms:>12} "
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
        from .clients import client_from_args
        from ..protocol import station_topic
        self.desk = desk
        self.subscribed = threading.Event()
        self.topics = [(station_topic(args.root, "+", "status"), 1),
                       (station_topic(args.root, "+", "events"), 1)]
        self.client = client_from_args(args)
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
    p.add_argument("--wait", type=float, metavar="S",
                   help=f"with --once: collect for S seconds (default: until {QUIET_S} s "
                        "without a message)")


def main(args: argparse.Namespace) -> int:
    from .clients import connected
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
