"""``polres-station demo``: the real station on simulated GPIO, an embedded broker, a simulated HQ.

Nothing here is a replay: the panel reads the station's own state (mock pin levels, the alarm
machine, the outbox) and what HQ actually received over MQTT. This module is the scenario:

* ``Demo`` wires broker (``embedded_broker``), ``Station`` (gpiozero MockFactory, state in a temp
  dir, MQTT 3.1.1 which both brokers speak) and ``SimulatedHQ`` (sends complaints, listens to
  events and status, re-sends what is unacknowledged when the station asks ``resync_request``).
* ``run_interactive()``: what each key does, and the rich Live loop. The panel itself
  (``snapshot()`` → ``PanelState`` → ``render_panel()``) is ``demo_panel``; keys from the raw
  terminal, restored on every exit path, are ``demo_keys``.
* ``run_headless()``: one line per event upstream; the button is pressed ~1 s after each alarm.
* ``add_arguments()`` / ``main()``: the ``demo`` subcommand.

Signed end to end by default (docs/SIGNING.md): the demo makes an HQ and a desk key, the station
requires signatures, HQ signs its complaints; ``f`` (or ``--forge``) publishes a forgery — a
complaint, or during an alarm a ``silence``, signed by a stranger's key under HQ's or the
desk's kid — which the station refuses with a ``rejected`` event.

Complaint summaries (personal data) are sent, as HQ would, but never shown or logged here.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import logging
import queue
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable


from ..config import Config, parse_config
from .clients import make_client
from .demo_keys import key_queue
from .demo_panel import (
    PanelState, Received, desk_command, event_line, heartbeat_text, pattern_text, render_panel,
)
from .embedded_broker import DEMO_USERNAME, KINDS, EmbeddedBroker
from ..protocol import (
    EventType, Priority, complaint_payload, encode, region_complaints, rfc3339, station_topic,
)
from ..signing import SigningKey, generate, sign, sign_payload

__all__ = ["Demo", "DemoSettings", "SimulatedHQ", "ButtonDriver", "PanelState", "render_panel",
           "snapshot", "desk_command", "handle_key", "event_text", "run_headless",
           "run_interactive", "add_arguments", "main", "FAKE_SUMMARY"]

STATION, REGION, ROOT = "prabumulih-1", "sumsel-prabumulih", "polri/110"
SIREN_PIN, BEACON_PIN, BUTTON_PIN = 5, 6, 22      # active-low relays on boot-safe pins
TAP_S, HOLD_S, AUTO_PRESS_AFTER_S = 0.15, 3.5, 1.0
SELFTEST_S = HOLD_S + 4.0                          # hold, then siren 1 s and beacon 3 s
PRIORITY_WEIGHTS = {Priority.EMERGENCY: 1, Priority.URGENT: 3, Priority.NORMAL: 4}
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
    signed: bool = True               # keys made at start; the station requires signatures


def demo_keys(key_dir: Path) -> tuple[SigningKey, SigningKey, dict[str, Any]]:
    """HQ's and the desk's keys (written by keygen into ``key_dir``) and the station's
    ``security`` section that trusts them."""
    from ..keygen import station_keys
    return station_keys(key_dir, hq_kid="demo-hq", desk_kid="demo-desk")


def demo_config(port: int, state_dir: Path, settings: DemoSettings,
                security: dict[str, Any] | None = None) -> Config:
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
        "security": security or {},
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

class SimulatedHQ:
    """HQ dispatch and the monitoring desk for the demo: a real MQTT client of the broker."""

    def __init__(self, port: int, *, rng: random.Random,
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 key: SigningKey | None = None) -> None:
        self._rng = rng
        self._key = key
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
        self.presence: Received | None = None
        # A persistent session: the broker keeps HQ's subscriptions and queues events for it.
        self.client = make_client(protocol="3.1.1", client_id="demo-hq", clean_session=False,
                                  username=DEMO_USERNAME)
        # paho annotates int seconds; it only sleeps them, so a fraction works.
        self.client.reconnect_delay_set(0.2, 2.0)  # type: ignore[arg-type]
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe([(station_topic(ROOT, "+", "events"), 1),
                          (station_topic(ROOT, "+", "status"), 1),
                          (station_topic(ROOT, "+", "presence"), 1)])

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
        if msg.topic.endswith("/presence"):
            self.presence = Received(doc, now)
            return
        self._event(doc, now)

    def _event(self, doc: dict[str, Any], now: float) -> None:
        with self._lock:
            if doc.get("event_id") in self.delivered:
                return                            # at-least-once: a re-send
            self.delivered.add(str(doc.get("event_id")))
            self.events.append(Received(doc, now))
            cid, kind = doc.get("complaint_id"), doc.get("type")
            if kind == EventType.ALERTING:
                self.alerted.add(str(cid))
            elif kind == EventType.ACK:
                self.acked.add(str(cid))
                self.unacked.pop(str(cid), None)
            resend = list(self.unacked.items()) if kind == EventType.RESYNC_REQUEST else []
        for _cid, payload in resend:              # HQ re-sends; duplicates are harmless
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
                reported_at=rfc3339(time.time(), timespec="seconds"))
            if self._key is not None:
                topic = region_complaints(ROOT, REGION)
                payload = sign_payload(payload, topic, self._key)
            self.sent[cid] = priority
            self.unacked[cid] = payload
        self._publish(payload)
        return cid

    def forge(self, kid: str, *, silence: bool) -> str:
        """What an intruder with a broker account could send: a ``silence`` command (during an
        alarm) or a complaint, signed by a key of its own under a trusted ``kid``. Returns
        what was sent, for the panel."""
        intruder = generate(kid)
        if silence:
            topic = station_topic(ROOT, STATION, "cmd")
            doc = {"v": 1, "cmd_id": f"forged-{self._rng.randrange(10**6):06d}",
                   "cmd": "silence", "args": {}}
        else:
            topic = region_complaints(ROOT, REGION)
            doc = json.loads(complaint_payload(
                complaint_id=f"forged-{self._rng.randrange(10**6):06d}", region=REGION,
                priority="emergency", category="kejahatan",
                reported_at=rfc3339(time.time(), timespec="seconds")))
        self.client.publish(topic, encode(sign(doc, topic, intruder)), qos=1)
        return f"forged {'silence' if silence else 'complaint'} under kid {kid}"

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


def start_web_desk(port: int, state_dir: Path) -> Any:
    """The web desk on this demo's broker (read-only, its database in ``state_dir``), served on
    127.0.0.1:8110, or a free port when that is taken; None if it cannot start at all."""
    from .clients import make_client
    from .web.cli import RunningDesk
    for listen in (8110, 0):
        try:
            return RunningDesk(make_client(protocol="3.1.1", username=DEMO_USERNAME),
                               root=ROOT, db=state_dir / "desk.db", host="127.0.0.1",
                               port=listen, broker=("127.0.0.1", port))
        except OSError as e:
            log.info("web desk: 127.0.0.1:%s: %s", listen, e)
    return None


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
        self.hq_key: SigningKey | None = None
        self.desk_key: SigningKey | None = None
        security = None
        if settings.signed:
            self.hq_key, self.desk_key, security = demo_keys(Path(self._tmp.name) / "keys")
        self.config = demo_config(self.broker.port, Path(self._tmp.name), settings, security)
        self.log_tail = _LogTail()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.station: Any = None
        # The station's own events as it hands them to its outbox (its event observer).
        self.station_events: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self.factory: Any = None
        self.hq: SimulatedHQ | None = None
        self.button: ButtonDriver | None = None
        self.web: Any = None                  # the web desk (desk/web), read-only
        self.broker_busy = False

    def start(self, *, first_complaint_s: float | None = 1.0) -> Demo:
        """Broker, station, HQ; HQ's complaints begin after ``first_complaint_s`` (None: none,
        only on request)."""
        from gpiozero.pins.mock import MockFactory

        from ..service import Station
        self.broker.start()
        self.factory = MockFactory()
        self.station = Station(self.config, pin_factory=self.factory,
                               on_event=self.station_events.append)
        self.station.start()
        self._spawn(self.station.run, "station")
        self.button = ButtonDriver(self.factory.pin(BUTTON_PIN), active_low=True)
        self.hq = SimulatedHQ(self.broker.port, rng=self.rng, on_event=self._on_event,
                              key=self.hq_key)
        self.web = start_web_desk(self.broker.port, Path(self._tmp.name))
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

    def forge(self) -> str:
        """A forgery the station must refuse: during an alarm a ``silence`` under the desk's
        kid, else a complaint under HQ's."""
        assert self.hq is not None and self.station is not None
        alarm = bool(self.station.view().alarms)
        return self.hq.forge("demo-desk" if alarm else "demo-hq", silence=alarm)

    def relay_on(self, name: str) -> bool:
        """The relay's real state: the mock pin level, polarity applied."""
        cfg = getattr(self.config.gpio, name)
        pin = self.factory.pin(cfg.pin)
        return bool(pin.state == (1 if cfg.active_high else 0))

    def close(self) -> None:
        self._stop.set()
        if self.station is not None:
            self.station.stop()
        for part in (self.button, self.hq, self.web):
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
    elif key in "fF":
        log.warning("%s: the station must refuse it", demo.forge())
    elif key in "qQ":
        return False
    return True


def run_interactive(demo: Demo, duration: float | None) -> int:
    from rich.live import Live
    deadline = None if duration is None else time.monotonic() + duration
    with key_queue(sys.stdin.fileno()) as keys:
        with Live(render_panel(snapshot(demo)), refresh_per_second=10,
                  redirect_stderr=False) as live:
            while deadline is None or time.monotonic() < deadline:
                if not _drain_keys(demo, keys):
                    break
                live.update(render_panel(snapshot(demo)))
                time.sleep(0.1)
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
    if kind == EventType.ALERTING:
        return (f"alerting {cid} priority={e.get('priority')} "
                f"relay_latency_ms={e.get('relay_latency_ms')}")
    if kind == EventType.ACK:
        return f"ack {cid} ack_latency_ms={e.get('ack_latency_ms')} method={e.get('method')}"
    if kind == EventType.ESCALATED:
        return f"escalated {cid} unacked_s={e.get('unacked_s')}"
    if kind == EventType.SELFTEST:
        return f"selftest trigger={e.get('trigger')} result={e.get('result')}"
    if kind in (EventType.FAULT, EventType.FAULT_CLEARED):
        return f"{kind} {e.get('fault')}"
    if kind == EventType.REJECTED:
        which = f"cmd_id={e['cmd_id']}" if "cmd_id" in e else f"complaint_id={cid}"
        return f"rejected reason={e.get('reason')} {which}"
    if kind == EventType.RESYNC_REQUEST:
        return f"resync_request since={e.get('since')}"
    return f"{kind} {json.dumps({k: v for k, v in e.items() if k in ('cmd', 'ok')})}"


def run_headless(settings: DemoSettings, duration: float, *, selftest: bool = False,
                 forge: bool = False, out: Any = None) -> int:
    """The scenario without a terminal; exit 0 once a complaint → alarm → ack cycle completed."""
    out = out or sys.stdout
    lines: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    with Demo(settings, on_event=lines.put) as demo:
        deadline = time.monotonic() + duration
        demo.start(first_complaint_s=SELFTEST_S if selftest else 1.0)
        print(f"broker {demo.broker.kind} {demo.broker.address}; station {STATION} "
              f"(region {REGION}); {duration:g} s", file=out, flush=True)
        print(f"desk view: {desk_command(demo.broker.port)}", file=sys.stderr, flush=True)
        if demo.web is not None:
            print(f"web desk: {demo.web.url}", file=sys.stderr, flush=True)
        assert demo.button is not None and demo.hq is not None
        if selftest:
            demo.button.press(HOLD_S)
        while time.monotonic() < deadline:
            try:
                e = lines.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                continue
            print(event_text(e), file=out, flush=True)
            if e.get("type") == EventType.ALERTING:
                if forge:                  # a forged silence while the siren sounds
                    print(demo.forge(), file=out, flush=True)
                    forge = False
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
    p.add_argument("--unsigned", action="store_true",
                   help="no keys: the station accepts unsigned complaints and commands")
    p.add_argument("--forge", action="store_true",
                   help="headless: send a forged silence during the first alarm (refused)")


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
        print("demo: rich is not installed (pip install -e '.[desk]' in the checkout, or make "
              "venv): running headless", file=sys.stderr)
        headless = True
    interval = args.interval or (3.0 if headless else 8.0)
    settings = DemoSettings(interval_s=interval, siren_max_s=args.siren_max,
                            broker_kind=args.broker_kind, seed=args.seed,
                            signed=not args.unsigned)
    if headless:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
        return run_headless(settings, args.duration or 30.0, selftest=args.selftest,
                            forge=args.forge)
    # Ctrl-C quits even if SIGINT came in ignored: a shell ignores it for the background
    # jobs of a script, and Python then leaves it ignored (the panel would never close).
    signal.signal(signal.SIGINT, signal.default_int_handler)
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


def snapshot(demo: Demo) -> PanelState:
    """Everything the panel shows, read now from the station, its pins and HQ."""
    st, hq = demo.station, demo.hq
    assert st is not None and hq is not None
    now = time.monotonic()
    v = st.view(now)
    alarms = list(v.alarms)
    return PanelState(
        station=v.station, region=v.region,
        broker=f"{demo.broker.kind} {demo.broker.address}", broker_up=demo.broker.running,
        link_up=v.link_up,
        siren_on=demo.relay_on("siren"), siren_pattern=pattern_text(v.siren, alarms),
        beacon_on=demo.relay_on("beacon"),
        button=v.button + (" (held)" if demo.button and demo.button.down else ""),
        alarms=alarms, outbox_pending=v.outbox_pending, faults=list(v.faults),
        events=[event_line(e, hq.delivered) for e in list(demo.station_events)[-8:]],
        heartbeat=heartbeat_text(hq.status, hq.presence, now), sent=len(hq.sent),
        acked=len(hq.acked),
        log=list(demo.log_tail.lines), desk=desk_command(demo.broker.port),
        web=demo.web.url if demo.web is not None else "")
