"""``polres-station demo``: the real station on simulated GPIO, an embedded broker, a simulated HQ.

Nothing here is a replay: the panel reads the station's own state (mock pin levels, the alarm
machine, the outbox) and what HQ actually received over MQTT. Parts:

* ``Demo`` wires broker (``embedded_broker``), ``Station`` (gpiozero MockFactory, state in a temp
  dir, MQTT 3.1.1 which both brokers speak) and ``SimulatedHQ`` (sends complaints, listens to
  events and status, re-sends what is unacknowledged when the station asks ``resync_request``).
* ``snapshot()`` → ``PanelState`` (plain data) → ``render_panel()`` (a rich renderable).
* ``run_interactive()``: keys in cbreak mode (terminal restored on every exit path), rich Live.
* ``run_headless()``: one line per event upstream; the button is pressed ~1 s after each alarm.

Complaint summaries (personal data) are sent, as HQ would, but never shown or logged here.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import logging
import os
import queue
import random
import select
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .config import Config, Pattern, parse_config
from .embedded_broker import DEMO_USERNAME, KINDS, EmbeddedBroker
from .protocol import complaint_payload, region_complaints, station_topic

STATION, REGION, ROOT = "prabumulih-1", "sumsel-prabumulih", "polri/110"
SIREN_PIN, BEACON_PIN, BUTTON_PIN = 5, 6, 22      # active-low relays on boot-safe pins
TAP_S, HOLD_S, AUTO_PRESS_AFTER_S = 0.15, 3.5, 1.0
SELFTEST_S = HOLD_S + 4.0                          # hold, then siren 1 s and beacon 3 s
PRIORITY_WEIGHTS = {"emergency": 1, "urgent": 3, "normal": 4}
CATEGORIES = ("kejahatan", "kecelakaan", "kebakaran", "ketertiban", "bencana")
FAKE_SUMMARY = "DEMO — data pribadi pelapor (never shown)"   # proves summaries stay hidden

log = logging.getLogger("station.demo")


# --- configuration ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DemoSettings:
    interval_s: float = 8.0           # mean complaint spacing
    siren_max_s: float = 20.0         # short, so escalation is visible
    heartbeat_s: float = 5.0
    broker_kind: str | None = None    # auto | mosquitto | amqtt (None: $POLRES_DEMO_BROKER)
    seed: int | None = None


def demo_config(port: int, state_dir: Path, settings: DemoSettings) -> Config:
    """The station's config: mock GPIO, state in ``state_dir``, MQTT 3.1.1 on loopback."""
    return parse_config({
        "station": {"id": STATION, "region": REGION},
        "broker": {"host": "127.0.0.1", "port": port, "protocol": "3.1.1", "keepalive": 5,
                   "username": DEMO_USERNAME, "reconnect_min_s": 0.2, "reconnect_max_s": 2.0},
        "topics": {"root": ROOT},
        "gpio": {"pin_factory": "mock",
                 "siren": {"pin": SIREN_PIN, "active_high": False},
                 "beacon": {"pin": BEACON_PIN, "active_high": False},
                 "ack_button": {"pin": BUTTON_PIN, "pull_up": True, "bounce_ms": 50}},
        "alarm": {"siren_max_s": settings.siren_max_s, "reminder_s": 3,
                  "reminder_every_s": 30},
        "heartbeat": {"interval_s": settings.heartbeat_s},
        "storage": {"path": str(state_dir / "state.db")},
    })


# --- the button, pressed by a key or by the headless scenario ---------------------------------

class ButtonDriver:
    """Drives the mock acknowledge-button pin: ``press(s)`` holds it at least ``s`` seconds;
    presses that overlap extend the hold (space auto-repeat keeps the button down)."""

    def __init__(self, pin: Any, *, active_low: bool = True) -> None:
        self._pin, self._active_low = pin, active_low
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._release_at = 0.0
        self._down = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="demo-button", daemon=True)
        self._thread.start()

    @property
    def down(self) -> bool:
        return self._down

    def press(self, seconds: float = TAP_S) -> None:
        with self._lock:
            self._release_at = max(self._release_at, time.monotonic() + seconds)
            if not self._down:
                self._drive(True)
        self._wake.set()

    def _drive(self, down: bool) -> None:
        low = down == self._active_low
        (self._pin.drive_low if low else self._pin.drive_high)()
        self._down = down

    def _run(self) -> None:
        while not self._closed:
            with self._lock:
                wait = None
                if self._down:
                    wait = self._release_at - time.monotonic()
                    if wait <= 0:
                        self._drive(False)
                        wait = None
            self._wake.wait(wait)
            self._wake.clear()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(2)


# --- simulated HQ -----------------------------------------------------------------------------

@dataclass
class Received:
    doc: dict[str, Any]
    at: float                         # monotonic receive time
    wall: float = field(default_factory=time.time)


class SimulatedHQ:
    """HQ dispatch and the monitoring desk for the demo: a real MQTT client of the broker."""

    def __init__(self, port: int, *, rng: random.Random,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._rng = rng
        self._on_event = on_event or (lambda doc: None)
        self._lock = threading.Lock()
        self._n = 0
        self._day = datetime.now(timezone.utc).strftime("%Y%m%d")
        self.sent: dict[str, str] = {}            # complaint id → priority
        self.unacked: dict[str, bytes] = {}       # complaint id → payload (re-sent on resync)
        self.events: collections.deque[Received] = collections.deque(maxlen=200)
        self.delivered: set[str] = set()          # event_ids received
        self.alerted: set[str] = set()
        self.acked: set[str] = set()
        self.status: Received | None = None
        # A persistent session: the broker keeps HQ's subscriptions and queues events for it.
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-hq",
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.username_pw_set(DEMO_USERNAME)
        self.client.reconnect_delay_set(0.2, 2.0)
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe([(station_topic(ROOT, "+", "events"), 1),
                          (station_topic(ROOT, "+", "status"), 1)])

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload) if msg.payload else {}
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        now = time.monotonic()
        if msg.topic.endswith("/status"):
            self.status = Received(doc, now)
            return
        self._event(doc, now)

    def _event(self, doc: dict[str, Any], now: float) -> None:
        with self._lock:
            if doc.get("event_id") in self.delivered:
                return                            # at-least-once: a re-send
            self.delivered.add(str(doc.get("event_id")))
            self.events.append(Received(doc, now))
            cid, kind = doc.get("complaint_id"), doc.get("type")
            if kind == "alerting":
                self.alerted.add(str(cid))
            elif kind == "ack":
                self.acked.add(str(cid))
                self.unacked.pop(str(cid), None)
            resend = list(self.unacked.items()) if kind == "resync_request" else []
        for cid, payload in resend:               # HQ re-sends; duplicates are harmless
            self._publish(payload)
        try:
            self._on_event(doc)
        except Exception:  # noqa: BLE001 — never kill paho's network thread
            log.exception("demo event handler failed")

    def send_complaint(self, priority: str | None = None) -> str:
        """Publish a complaint as HQ dispatch would; returns its id."""
        with self._lock:
            self._n += 1
            cid = f"110-{self._day}-{self._n:06d}"
            priority = priority or self._rng.choices(
                list(PRIORITY_WEIGHTS), weights=list(PRIORITY_WEIGHTS.values()))[0]
            payload = complaint_payload(
                complaint_id=cid, region=REGION, priority=priority,
                category=self._rng.choice(CATEGORIES), summary=FAKE_SUMMARY,
                reported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            self.sent[cid] = priority
            self.unacked[cid] = payload
        self._publish(payload)
        return cid

    def _publish(self, payload: bytes) -> None:
        # QoS 1: while the broker is down paho keeps it and sends it after reconnecting.
        self.client.publish(region_complaints(ROOT, REGION), payload, qos=1)

    def cycles(self) -> int:
        """Complaints that went complaint → alerting → ack, as seen upstream."""
        with self._lock:
            return len(self.alerted & self.acked)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the demo ---------------------------------------------------------------------------------

class _LogTail(logging.Handler):
    """Keeps the last few log lines for the panel (the station logs no personal data)."""

    def __init__(self, size: int = 4) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record)[:200])


class Demo:
    """Broker + real station + simulated HQ. ``start()``, then ``snapshot()`` at will;
    ``close()`` stops everything (outputs off first, as the station always does)."""

    def __init__(self, settings: DemoSettings = DemoSettings(), *,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self._on_event = on_event
        self._tmp = tempfile.TemporaryDirectory(prefix="polres-demo-")
        self.broker = EmbeddedBroker(settings.broker_kind)
        self.config = demo_config(self.broker.port, Path(self._tmp.name), settings)
        self.log_tail = _LogTail()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.station: Any = None
        self.factory: Any = None
        self.hq: SimulatedHQ | None = None
        self.button: ButtonDriver | None = None
        self.broker_busy = False

    def start(self, *, first_complaint_s: float | None = 1.0) -> Demo:
        """Broker, station, HQ; HQ's complaints begin after ``first_complaint_s`` (None: none,
        only on request)."""
        from gpiozero.pins.mock import MockFactory

        from .service import Station
        self.broker.start()
        self.factory = MockFactory()
        self.station = Station(self.config, pin_factory=self.factory)
        self.station.start()
        self._spawn(self.station.run, "station")
        self.button = ButtonDriver(self.factory.pin(BUTTON_PIN), active_low=True)
        self.hq = SimulatedHQ(self.broker.port, rng=self.rng, on_event=self._on_event)
        if first_complaint_s is not None:
            self._spawn(lambda: self._complaints(first_complaint_s), "demo-hq-complaints")
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _complaints(self, first_s: float) -> None:
        """HQ sends a complaint every few seconds."""
        wait = first_s
        while not self._stop.wait(wait):
            assert self.hq is not None
            self.hq.send_complaint()
            mean = self.settings.interval_s
            wait = self.rng.uniform(0.7 * mean, 1.3 * mean)

    def toggle_broker(self) -> None:
        """Stop or start the broker, off the caller's thread (mosquitto takes a moment)."""
        if self.broker_busy:
            return
        self.broker_busy = True

        def toggle() -> None:
            try:
                self.broker.toggle()
            except (OSError, RuntimeError) as e:
                log.error("broker toggle failed: %s", e)
            finally:
                self.broker_busy = False
        self._spawn(toggle, "demo-broker-toggle")

    def relay_on(self, name: str) -> bool:
        """The relay's real state: the mock pin level, polarity applied."""
        cfg = getattr(self.config.gpio, name)
        pin = self.factory.pin(cfg.pin)
        return bool(pin.state == (1 if cfg.active_high else 0))

    def close(self) -> None:
        self._stop.set()
        if self.station is not None:
            self.station.stop()
        for part in (self.button, self.hq):
            if part is not None:
                part.close()
        self.broker.close()
        if self.factory is not None:
            self.factory.close()
        self._tmp.cleanup()

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def desk_command(port: int) -> str:
    """How to watch this demo from the national desk's view, in another terminal."""
    return (f"polres-station monitor --broker 127.0.0.1:{port} --protocol 3.1.1 "
            f"--username {DEMO_USERNAME}")


def snapshot(demo: Demo) -> PanelState:
    """Everything the panel shows, read now from the station, its pins and HQ."""
    st, hq = demo.station, demo.hq
    assert st is not None and hq is not None
    now = time.monotonic()
    machine = st.machine
    alarms = _retry(lambda: machine.active_alarms(now), [])
    faults = sorted(_retry(lambda: machine.faults, {}))
    siren = st.hardware.siren.pattern if st.hardware is not None else None
    return PanelState(
        station=st.config.station.id, region=st.config.station.region,
        broker=f"{demo.broker.kind} {demo.broker.address}", broker_up=demo.broker.running,
        link_up=bool(st.link and st.link.connected),
        siren_on=demo.relay_on("siren"), siren_pattern=_pattern_text(siren, alarms),
        beacon_on=demo.relay_on("beacon"),
        button=machine.button_state + (" (held)" if demo.button and demo.button.down else ""),
        alarms=alarms, outbox_pending=st.outbox.pending, faults=faults,
        events=[_event_line(e, hq.delivered) for e in list(st.last_events)[-8:]],
        heartbeat=_heartbeat_text(hq.status, now), sent=len(hq.sent), acked=len(hq.acked),
        log=list(demo.log_tail.lines), desk=desk_command(demo.broker.port))


def _retry(read: Callable[[], Any], default: Any) -> Any:
    """Read the machine from this thread; a concurrent change may interrupt one iteration."""
    for _ in range(5):
        try:
            return read()
        except RuntimeError:        # "dictionary changed size during iteration"
            time.sleep(0.001)
    return default


def _pattern_text(pattern: Pattern | None, alarms: list[dict[str, Any]]) -> str:
    if pattern is None:
        escalated = any(a.get("escalated") for a in alarms)
        return "escalated: beacon only, reminders" if escalated else "off"
    if pattern.continuous:
        return "continuous"
    return f"{pattern.on_s:g} s on / {pattern.off_s:g} s off"


def _clock_text(at: str | None) -> str:
    if not at:
        return "--:--:--"
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"


def _event_figure(e: dict[str, Any]) -> str:
    if "relay_latency_ms" in e:
        return f"relay {e['relay_latency_ms']:.1f} ms"
    if "ack_latency_ms" in e:
        return f"ack {e['ack_latency_ms']:.0f} ms ({e.get('method', '?')})"
    if "unacked_s" in e:
        return f"unacked {e['unacked_s']:.0f} s"
    if e.get("type") == "selftest":
        return f"{e.get('trigger')}: {e.get('result')}"
    return str(e.get("fault") or e.get("reason") or e.get("detail") or "")[:40]


def _event_line(e: dict[str, Any], delivered: set[str]) -> EventLine:
    return EventLine(at=_clock_text(e.get("at")), type=str(e.get("type")),
                     complaint_id=str(e.get("complaint_id") or ""), figure=_event_figure(e),
                     delivered=e.get("event_id") in delivered)


def _heartbeat_text(status: Received | None, now: float) -> str:
    if status is None:
        return "no status received yet"
    doc = status.doc
    received = datetime.fromtimestamp(status.wall).strftime("%H:%M:%S")
    if doc.get("state") != "online":     # last will or clean stop: no "at" of its own
        return (f"{doc.get('state', '?')} (reason {doc.get('reason')}) since {received} · "
                f"session {doc.get('session')}")
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
    colours = {"emergency": "bold red", "urgent": "yellow", "normal": "cyan"}
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
    if s.desk:
        parts.append(Text(f"desk view, in another terminal: {s.desk}", style="grey50"))
    return Panel(Group(*parts), title=f"Polres 110 demo — station {s.station} ({s.region})",
                 border_style="red" if s.siren_on else "blue")


KEYS_HELP = ("keys: space ack (hold: keep pressed) · h 3.5 s hold = self-test · c complaint · "
             "b broker off/on · q quit")


# --- interactive ------------------------------------------------------------------------------

def handle_key(demo: Demo, key: str) -> bool:
    """One key press; False means quit."""
    assert demo.button is not None and demo.hq is not None
    if key == " ":
        demo.button.press(TAP_S)
    elif key in "hH":
        demo.button.press(HOLD_S)
    elif key in "cC":
        demo.hq.send_complaint()
    elif key in "bB":
        demo.toggle_broker()
    elif key in "qQ":
        return False
    return True


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Keys arrive one by one without echo; the terminal is restored on every exit path
    (Ctrl-C still raises KeyboardInterrupt: ISIG stays on)."""
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_keys(fd: int, keys: queue.SimpleQueue[str], stop: threading.Event) -> None:
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        data = os.read(fd, 64)
        if not data:
            keys.put("q")               # stdin closed
            return
        for ch in data.decode("utf-8", "replace"):
            keys.put(ch)


def run_interactive(demo: Demo, duration: float | None) -> int:
    from rich.live import Live
    keys: queue.SimpleQueue[str] = queue.SimpleQueue()
    stop = threading.Event()
    fd = sys.stdin.fileno()
    deadline = None if duration is None else time.monotonic() + duration
    with cbreak(fd):
        reader = threading.Thread(target=_read_keys, args=(fd, keys, stop), daemon=True)
        reader.start()
        try:
            with Live(render_panel(snapshot(demo)), refresh_per_second=10,
                      redirect_stderr=False) as live:
                while deadline is None or time.monotonic() < deadline:
                    if not _drain_keys(demo, keys):
                        break
                    live.update(render_panel(snapshot(demo)))
                    time.sleep(0.1)
        finally:
            stop.set()
            reader.join(1)
    return 0


def _drain_keys(demo: Demo, keys: queue.SimpleQueue[str]) -> bool:
    while True:
        try:
            key = keys.get_nowait()
        except queue.Empty:
            return True
        if not handle_key(demo, key):
            return False


# --- headless ---------------------------------------------------------------------------------

def event_text(e: dict[str, Any]) -> str:
    """One stdout line per event received upstream (ids and figures; no personal data)."""
    kind, cid = e.get("type"), e.get("complaint_id")
    if kind == "alerting":
        return (f"alerting {cid} priority={e.get('priority')} "
                f"relay_latency_ms={e.get('relay_latency_ms')}")
    if kind == "ack":
        return f"ack {cid} ack_latency_ms={e.get('ack_latency_ms')} method={e.get('method')}"
    if kind == "escalated":
        return f"escalated {cid} unacked_s={e.get('unacked_s')}"
    if kind == "selftest":
        return f"selftest trigger={e.get('trigger')} result={e.get('result')}"
    if kind in ("fault", "fault_cleared"):
        return f"{kind} {e.get('fault')}"
    if kind == "rejected":
        return f"rejected reason={e.get('reason')} complaint_id={cid}"
    if kind == "resync_request":
        return f"resync_request since={e.get('since')}"
    return f"{kind} {json.dumps({k: v for k, v in e.items() if k in ('cmd', 'ok')})}"


def run_headless(settings: DemoSettings, duration: float, *, selftest: bool = False,
                 out: Any = None) -> int:
    """The scenario without a terminal; exit 0 once a complaint → alarm → ack cycle completed."""
    out = out or sys.stdout
    lines: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    with Demo(settings, on_event=lines.put) as demo:
        deadline = time.monotonic() + duration
        demo.start(first_complaint_s=SELFTEST_S if selftest else 1.0)
        print(f"broker {demo.broker.kind} {demo.broker.address}; station {STATION} "
              f"(region {REGION}); {duration:g} s", file=out, flush=True)
        print(f"desk view: {desk_command(demo.broker.port)}", file=sys.stderr, flush=True)
        assert demo.button is not None and demo.hq is not None
        if selftest:
            demo.button.press(HOLD_S)
        while time.monotonic() < deadline:
            try:
                e = lines.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                continue
            print(event_text(e), file=out, flush=True)
            if e.get("type") == "alerting":
                _auto_press(demo)
        cycles = demo.hq.cycles()
        print(f"summary sent={len(demo.hq.sent)} alerting={len(demo.hq.alerted)} "
              f"acked={len(demo.hq.acked)} cycles={cycles}", file=out, flush=True)
    return 0 if cycles else 1


def _auto_press(demo: Demo) -> None:
    """The operator reacts about a second after the siren starts."""
    button = demo.button
    assert button is not None
    timer = threading.Timer(AUTO_PRESS_AFTER_S, button.press, args=(TAP_S,))
    timer.daemon = True
    timer.start()


# --- command line -----------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true",
                   help="no terminal UI: one line per event, button pressed automatically")
    p.add_argument("--duration", type=float, metavar="S",
                   help="stop after S seconds (headless default 30)")
    p.add_argument("--interval", type=float, metavar="S", default=None,
                   help="mean seconds between complaints (default 8; headless 3)")
    p.add_argument("--broker-kind", choices=KINDS, default=None,
                   help="embedded broker (default $POLRES_DEMO_BROKER or auto: mosquitto if "
                        "installed, else amqtt)")
    p.add_argument("--siren-max", type=float, default=20.0, metavar="S",
                   help="siren maximum on-time before escalation (default %(default)s)")
    p.add_argument("--selftest", action="store_true",
                   help="headless: hold the button 3.5 s first (self-test)")
    p.add_argument("--seed", type=int, help="random seed for priorities and spacing")


def main(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except RuntimeError as e:          # broker cannot start; amqtt or mosquitto missing
        print(f"demo: {e}", file=sys.stderr)
        return 1


def _main(args: argparse.Namespace) -> int:
    headless = args.headless
    if not headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("demo: no terminal (stdin/stdout not a TTY): running headless; "
              "use --headless to silence this note", file=sys.stderr)
        headless = True
    if not headless and importlib.util.find_spec("rich") is None:
        print("demo: rich is not installed (pip install 'polres-station[demo]'): "
              "running headless", file=sys.stderr)
        headless = True
    interval = args.interval or (3.0 if headless else 8.0)
    settings = DemoSettings(interval_s=interval, siren_max_s=args.siren_max,
                            broker_kind=args.broker_kind, seed=args.seed)
    if headless:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
        return run_headless(settings, args.duration or 30.0, selftest=args.selftest)
    demo = Demo(settings)
    root = logging.getLogger()
    root.handlers[:] = [demo.log_tail]         # log lines go into the panel, not the screen
    root.setLevel(logging.INFO)
    with demo:
        try:
            demo.start()
            return run_interactive(demo, args.duration)
        except KeyboardInterrupt:
            return 0
