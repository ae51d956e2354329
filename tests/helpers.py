"""Test helpers with real parts: a mosquitto of the test's own on a free loopback port, the real
station in-process (gpiozero MockFactory) or as a subprocess, an HQ client, a station config.

Imported by test modules (``from helpers import ...``); ``conftest.py`` holds fixtures only.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from station.desk.clients import make_client

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
NO_BROKER_ENV = "POLRES_TESTS_NO_BROKER"   # set by `make test-fast`: a broker start fails loudly
REGION = "sumsel-prabumulih"
STATION = "prabumulih-1"
ROOT = "polri/110"


# The one free_port: the package's (the demo's embedded broker needs one too, and the package
# cannot import the tests).
from station.desk.embedded_broker import free_port  # noqa: E402


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Mosquitto:
    """A mosquitto process of the test's own, on a free port, with a config the test writes."""

    def __init__(self, workdir: Path, *, port: int | None = None, persistence: bool = False,
                 extra: str = "") -> None:
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        # Started as root, mosquitto drops to the `mosquitto` user, which cannot write
        # persistence into a private tmp dir: stay root (tests only).
        lines = ["user root" if os.geteuid() == 0 else "",
                 f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 f"persistence {'true' if persistence else 'false'}",
                 f"persistence_location {workdir}/", "autosave_interval 1",
                 "log_dest stderr", "log_type error", "log_type warning",
                 "max_queued_messages 100000", extra]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        if os.environ.get(NO_BROKER_ENV):
            raise RuntimeError(f"{NO_BROKER_ENV} is set (make test-fast) but this test starts a "
                               "broker: mark it @pytest.mark.broker")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mosquitto exited: {self.proc.stderr.read()!r}") from None
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class HQ:
    """HQ dispatch and the monitoring desk in one client: sends complaints and commands,
    collects every event, the retained status (health) and the retained presence of every
    station."""

    def __init__(self, port: int, protocol: str = "5", persistent: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.status: dict[str, dict[str, Any]] = {}
        self.status_log: list[dict[str, Any]] = []
        self.presence: dict[str, dict[str, Any]] = {}
        self.presence_log: list[dict[str, Any]] = []
        self.raw: list[tuple[str, bytes]] = []
        self.received_at: dict[str, float] = {}   # event_id → monotonic receive time
        self._lock = threading.Lock()
        self.client = make_client(protocol=protocol,
                                  client_id="hq-persistent" if persistent else None)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(f"{ROOT}/station/+/events", 1), (f"{ROOT}/station/+/status", 1),
             (f"{ROOT}/station/+/presence", 1)])
        self.client.reconnect_delay_set(0.05, 0.5)  # back before the station, after a restart
        kwargs: dict[str, Any] = {}
        if persistent:  # the broker queues events for HQ while HQ reconnects
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 300
            kwargs = {"clean_start": False, "properties": props}
        self.client.connect("127.0.0.1", port, **kwargs)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        doc = json.loads(msg.payload) if msg.payload else {}
        with self._lock:
            self.raw.append((msg.topic, msg.payload))
            if msg.topic.endswith("/events"):
                self.events.append(doc)
                self.received_at.setdefault(doc.get("event_id"), time.monotonic())
            elif msg.topic.endswith("/status"):
                self.status[msg.topic.split("/")[-2]] = doc
                self.status_log.append(doc)
            elif msg.topic.endswith("/presence"):
                self.presence[msg.topic.split("/")[-2]] = doc
                self.presence_log.append(doc)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("type") == type_]

    def wait_event(self, type_: str, count: int = 1, timeout: float = 10.0,
                   **match: Any) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]] | None:
            hits = [e for e in self.of_type(type_)
                    if all(e.get(k) == v for k, v in match.items())]
            return hits if len(hits) >= count else None
        return wait_for(found, timeout, what=f"{count} {type_} event(s) {match}")

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], station: str = STATION,
                    timeout: float = 10.0) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            with self._lock:
                doc = self.status.get(station)
            return doc if doc is not None and predicate(doc) else None
        return wait_for(ok, timeout, what=f"status of {station}")

    def wait_presence(self, predicate: Callable[[dict[str, Any]], bool],
                      station: str = STATION, timeout: float = 10.0) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            with self._lock:
                doc = self.presence.get(station)
            return doc if doc is not None and predicate(doc) else None
        return wait_for(ok, timeout, what=f"presence of {station}")

    def complaint(self, cid: str, *, region: str = REGION, priority: str = "normal",
                  raw: bytes | None = None, retain: bool = False) -> float:
        """Publish a complaint (or raw bytes on the complaint topic); returns the send time."""
        from station.protocol import complaint_payload
        payload = raw if raw is not None else complaint_payload(
            complaint_id=cid, region=region, priority=priority, summary="Ibu Sari, Jl. Merdeka")
        t = time.monotonic()
        self.client.publish(f"{ROOT}/region/{REGION}/complaints", payload, qos=1,
                            retain=retain).wait_for_publish(5)
        return t

    def command(self, cmd: str, cmd_id: str = "c-1", retain: bool = False,
                **args: Any) -> None:
        payload = json.dumps({"v": 1, "cmd_id": cmd_id, "cmd": cmd, "args": args}).encode()
        self.client.publish(f"{ROOT}/station/{STATION}/cmd", payload, qos=1,
                            retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def station_config(tmp_path: Path, port: int, *, protocol: str = "5",
                   **overrides: Any) -> Path:
    """A station YAML for tests: mock GPIO, state in tmp_path, an active-low siren."""
    doc: dict[str, Any] = {
        "station": {"id": STATION, "region": REGION},
        "broker": {"host": "127.0.0.1", "port": port, "protocol": protocol, "keepalive": 5,
                   "reconnect_min_s": 0.1, "reconnect_max_s": 1.0},
        "gpio": {"pin_factory": "mock",
                 "siren": {"pin": 5, "active_high": False},
                 "beacon": {"pin": 27, "active_high": True},
                 "ack_button": {"pin": 22, "pull_up": True, "bounce_ms": 50}},
        "heartbeat": {"interval_s": 30},
        "storage": {"path": str(tmp_path / "state" / "state.db")},
    }
    for section, values in overrides.items():
        doc.setdefault(section, {}).update(values)
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class RunningStation:
    """The real station in this process, on MockFactory pins, its loop in a thread."""

    def __init__(self, config_path: Path, **kwargs: Any) -> None:
        from gpiozero.pins.mock import MockFactory

        from station.config import load_config
        from station.service import Station
        self.config = load_config(config_path)
        self.factory = MockFactory()
        self.station = Station(self.config, pin_factory=self.factory, **kwargs)
        self.station.start()
        self.thread = threading.Thread(target=self.station.run, daemon=True)
        self.thread.start()

    def pin(self, name: str) -> Any:
        cfg = self.config.gpio
        number = {"siren": cfg.siren.pin, "beacon": cfg.beacon.pin,
                  "button": cfg.ack_button.pin}[name]
        return self.factory.pin(number)

    def relay_on(self, name: str) -> bool:
        """Is the relay energised (polarity applied)?"""
        cfg = getattr(self.config.gpio, name)
        return self.pin(name).state == (1 if cfg.active_high else 0)

    def press(self, hold: float = 0.2) -> None:
        self.pin("button").drive_low()
        time.sleep(hold)
        self.pin("button").drive_high()

    def stop(self) -> None:
        self.station.stop()
        self.thread.join(5)
        self.factory.close()


JOURNAL_LINE = re.compile(r"^<([0-7])>")


def journal_entries(text: str) -> list[tuple[int | None, str]]:
    """``(priority, line)`` per line of a stream as journald reads it (sd-daemon(3) ``<N>``
    prefixes); a line without one is ``(None, line)`` (journald would file it as INFO)."""
    out: list[tuple[int | None, str]] = []
    for line in text.splitlines():
        m = JOURNAL_LINE.match(line)
        out.append((int(m.group(1)), line[m.end():]) if m else (None, line))
    return out


@contextlib.contextmanager
def journal_capture(level: int = logging.INFO) -> Iterator[io.StringIO]:
    """Everything logged meanwhile, formatted as ``polres-station run`` does under systemd
    (station.terminal's journal formatter), into the StringIO yielded."""
    from station.terminal import LOG_FORMAT, JournalFormatter, LineHandler
    out = io.StringIO()
    handler = LineHandler(out)
    handler.setFormatter(JournalFormatter(LOG_FORMAT))
    root, station_log = logging.getLogger(), logging.getLogger("station")
    before = station_log.level
    root.addHandler(handler)
    station_log.setLevel(level)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        station_log.setLevel(before)


class StationProcess:
    """The real station as a separate process (``polres-station run``), for crash tests."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StationProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "station.cli", "run", "-c", str(self.config_path)],
            stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(10)


def openssl_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """An Ed25519 key pair made exactly as an operator would: ``openssl genpkey`` and
    ``openssl pkey -pubout``. Returns (private PEM, public PEM)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl missing: `make broker-tools` installs it"
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    subprocess.run([openssl, "genpkey", "-algorithm", "ed25519", "-out", str(private)],
                   check=True, capture_output=True)
    subprocess.run([openssl, "pkey", "-in", str(private), "-pubout", "-out", str(public)],
                   check=True, capture_output=True)
    return private, public


def security_section(hq: dict[str, Path], desk: dict[str, Path] | None = None,
                     **extra: Any) -> dict[str, Any]:
    """The config's ``security`` section from ``{kid: public key file}`` mappings."""
    def keys(pairs: dict[str, Path]) -> list[dict[str, str]]:
        return [{"kid": kid, "public_key_file": str(path)} for kid, path in pairs.items()]
    return {"hq_keys": keys(hq), "desk_keys": keys(desk or {}), **extra}
