"""The demo panel: a snapshot of the running demo as plain data, and the rich renderable built
from it.

``snapshot(demo)`` is the one function that reads live state (the station's read-only view, the
events it reported to its observer, the mock pins, what HQ received); everything after it —
``PanelState`` → ``render_panel()`` and the text helpers — is a pure function of that snapshot.
rich is imported only when rendering, so the headless demo runs without it.

Complaint summaries (personal data) are never part of the snapshot.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..config import Pattern
from ..protocol import EventType, Priority, parse_time
from .embedded_broker import DEMO_USERNAME

@dataclass
class Received:
    """A document HQ received, with when (monotonic and wall)."""

    doc: dict[str, Any]
    at: float                         # monotonic receive time
    wall: float = field(default_factory=time.time)


# The bindings are station.demo.handle_key; keep the two in step.
KEYS_HELP = ("keys: space ack (hold: keep pressed) · h 3.5 s hold = self-test · c complaint · "
             "b broker off/on · f forgery (refused) · q quit")


# --- snapshot: plain data read from the running parts -----------------------------------------

@dataclass(frozen=True)
class EventLine:
    at: str
    type: str
    complaint_id: str
    figure: str
    delivered: bool


@dataclass(frozen=True)
class PanelState:
    station: str
    region: str
    broker: str                       # "amqtt 127.0.0.1:41234"
    broker_up: bool
    link_up: bool
    siren_on: bool
    siren_pattern: str
    beacon_on: bool
    button: str
    alarms: list[dict[str, Any]]
    outbox_pending: int
    faults: list[str]
    events: list[EventLine]
    heartbeat: str
    sent: int = 0
    acked: int = 0
    log: list[str] = field(default_factory=list)
    desk: str = ""
    web: str = ""                     # the web desk's URL


def desk_command(port: int) -> str:
    """How to watch this demo from the national desk's view, in another terminal."""
    return (f"polres-station monitor --broker 127.0.0.1:{port} --protocol 3.1.1 "
            f"--username {DEMO_USERNAME}")


def pattern_text(pattern: Pattern | None, alarms: list[dict[str, Any]]) -> str:
    if pattern is None:
        escalated = any(a.get("escalated") for a in alarms)
        return "escalated: beacon only, reminders" if escalated else "off"
    if pattern.continuous:
        return "continuous"
    return f"{pattern.on_s:g} s on / {pattern.off_s:g} s off"


def _clock_text(at: str | None) -> str:
    if not at:
        return "--:--:--"
    wall = parse_time(at)
    return "--:--:--" if wall is None else datetime.fromtimestamp(wall).strftime("%H:%M:%S")


def _event_figure(e: dict[str, Any]) -> str:
    if "relay_latency_ms" in e:
        return f"relay {e['relay_latency_ms']:.1f} ms"
    if "ack_latency_ms" in e:
        return f"ack {e['ack_latency_ms']:.0f} ms ({e.get('method', '?')})"
    if "unacked_s" in e:
        return f"unacked {e['unacked_s']:.0f} s"
    if e.get("type") == EventType.SELFTEST:
        return f"{e.get('trigger')}: {e.get('result')}"
    return str(e.get("fault") or e.get("reason") or e.get("detail") or "")[:40]


def event_line(e: dict[str, Any], delivered: set[str]) -> EventLine:
    return EventLine(at=_clock_text(e.get("at")), type=str(e.get("type")),
                     complaint_id=str(e.get("complaint_id") or ""), figure=_event_figure(e),
                     delivered=e.get("event_id") in delivered)


def heartbeat_text(status: Received | None, presence: Received | None, now: float) -> str:
    if presence is not None and presence.doc.get("state") == "offline":
        # Last will (no "at" of its own) or clean stop; the last status stays below it.
        doc = presence.doc
        received = datetime.fromtimestamp(presence.wall).strftime("%H:%M:%S")
        return (f"offline (reason {doc.get('reason')}) since {received} · "
                f"session {doc.get('session')}")
    if status is None:
        return "no status received yet"
    doc = status.doc
    return (f"online · last status {_clock_text(doc.get('at'))} ({now - status.at:.1f} s ago)"
            f" · every {doc.get('interval_s', 0):g} s · session {doc.get('session')}")


# --- rendering --------------------------------------------------------------------------------

def _lamp(name: str, on: bool, colour: str) -> Any:
    from rich.text import Text
    if on:
        return Text.assemble((" ● ", f"bold {colour}"), (f"{name} ON ", f"bold white on {colour}"))
    return Text.assemble((" ○ ", "grey50"), (f"{name} off", "grey50"))


def _alarm_table(alarms: list[dict[str, Any]]) -> Any:
    from rich.table import Table
    table = Table(title="active alarms", title_justify="left", expand=True, box=None,
                  header_style="bold")
    for col in ("complaint", "priority", "age", "state"):
        table.add_column(col, justify="right" if col == "age" else "left")
    colours = {Priority.EMERGENCY: "bold red", Priority.URGENT: "yellow",
               Priority.NORMAL: "cyan"}
    for a in alarms[:6]:
        state = ("silenced" if a.get("silenced") else "escalated" if a.get("escalated")
                 else "sounding" if a.get("sounding") else "beacon")
        table.add_row(a["complaint_id"], f"[{colours.get(a['priority'], '')}]{a['priority']}",
                      f"{a['age_s']:.1f} s", state)
    if len(alarms) > 6:
        table.add_row(f"… {len(alarms) - 6} more", "", "", "")
    if not alarms:
        table.add_row("[grey50]none — quiet room", "", "", "")
    return table


def _event_table(events: list[EventLine]) -> Any:
    from rich.table import Table
    table = Table(title="last events (station → HQ)", title_justify="left", expand=True,
                  box=None, header_style="bold")
    for col in ("time", "type", "complaint", "figure", "HQ"):
        table.add_column(col)
    for e in reversed(events):
        table.add_row(e.at, e.type, e.complaint_id, e.figure,
                      "[green]received" if e.delivered else "[yellow]queued")
    return table


def render_panel(s: PanelState) -> Any:
    """The demo panel as a rich renderable (pure: only ``s`` is read)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text
    top = Table.grid(expand=True, padding=(0, 2))
    for _ in range(3):
        top.add_column()
    top.add_row(_lamp("SIREN", s.siren_on, "red"), _lamp("BEACON", s.beacon_on, "blue"),
                Text(f"button: {s.button}"))
    top.add_row(Text(f"   pattern: {s.siren_pattern}"),
                Text(f"   outbox pending: {s.outbox_pending}"),
                Text(f"faults: {', '.join(s.faults) or 'none'}"))
    broker = Text.assemble("broker ", (s.broker, "bold"), " ",
                           ("up", "green") if s.broker_up else ("DOWN", "bold red"),
                           " · station link ",
                           ("connected", "green") if s.link_up else ("offline", "bold red"),
                           f" · HQ sent {s.sent}, acked {s.acked}")
    parts: list[Any] = [top, broker, Text(f"heartbeat: {s.heartbeat}"), Text(""),
                        _alarm_table(s.alarms), Text(""), _event_table(s.events)]
    if s.log:
        parts += [Text(""), Text("\n".join(s.log), style="grey50", overflow="ellipsis",
                                 no_wrap=True)]
    parts += [Text(""), Text(KEYS_HELP, style="bold cyan")]
    if s.web:
        parts.append(Text(f"web desk, in a browser: {s.web}", style="bold green"))
    if s.desk:
        parts.append(Text(f"desk view, in another terminal: {s.desk}", style="grey50"))
    return Panel(Group(*parts), title=f"Polres 110 demo — station {s.station} ({s.region})",
                 border_style="red" if s.siren_on else "blue")

