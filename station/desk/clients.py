"""MQTT clients for the other side of the interface: HQ dispatch and the monitoring desk.

Used by ``send-complaint``, ``send-command``, ``monitor``, the web desk, the demo, the
benchmarks and the tests, with the same TLS / username / password-file options as the station.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import ssl
import threading
import time
import uuid
from enum import StrEnum
from typing import Any, Callable, Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ..errors import PublishRefused


def make_client(*, protocol: str = "5", client_id: str | None = None,
                ca_file: Any = None, cert_file: Any = None, key_file: Any = None,
                username: str | None = None, password_file: Any = None,
                clean_session: bool | None = None) -> mqtt.Client:
    """A paho client (VERSION2 callbacks) with optional TLS and password from a file.
    ``clean_session=False`` (MQTT 3.1.1 only) keeps the session on the broker."""
    proto = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
    cid = client_id or f"tool-{uuid.uuid4().hex[:12]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto,
                         clean_session=clean_session)
    if ca_file is not None:
        client.tls_set(ca_certs=str(ca_file), certfile=cert_file and str(cert_file),
                       keyfile=key_file and str(key_file), cert_reqs=ssl.CERT_REQUIRED,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if username is not None:
        password = None
        if password_file is not None:
            with open(password_file, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        client.username_pw_set(username, password)
    return client


@contextlib.contextmanager
def connected(client: mqtt.Client, host: str, port: int, *,
              timeout: float = 5.0) -> Iterator[mqtt.Client]:
    """Connect, run paho's loop, yield; raise ConnectionError when the broker is unreachable."""
    ready = threading.Event()
    refused: list[str] = []

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        ready.set()

    previous = client.on_connect
    client.on_connect = _chain(previous, on_connect)
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise ConnectionError(f"{host}:{port}: {e}") from e
    client.loop_start()
    try:
        if not ready.wait(timeout) or refused:
            raise ConnectionError(f"{host}:{port}: {refused[0] if refused else 'no CONNACK'}")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def _chain(first: Any, second: Any) -> Any:
    if first is None:
        return second

    def both(*args: Any) -> None:
        first(*args)
        second(*args)
    return both


class Side(StrEnum):
    """Whose tool connects: its client id starts with ``<side>-``. A broker may tie session
    names to identities — the reference RabbitMQ permissions (config/rabbitmq/) let HQ's
    identity create only ``hq-…`` session queues and the desk's only ``desk-…`` — so a tool
    that subscribes (``--wait-alerting``, ``monitor``, the web desk) needs its side's prefix."""

    HQ = "hq"        # send-complaint
    DESK = "desk"    # send-command, monitor, the web desk


def client_from_args(args: argparse.Namespace, side: Side) -> mqtt.Client:
    return make_client(protocol=args.protocol, client_id=f"{side}-{uuid.uuid4().hex[:12]}",
                       ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
                       username=args.username, password_file=args.password_file)


@contextlib.contextmanager
def hq_client(args: argparse.Namespace, side: Side = Side.HQ) -> Iterator[mqtt.Client]:
    """A connected client from the standard command-line options."""
    with connected(client_from_args(args, side), args.broker.host, args.broker.port) as client:
        yield client


class _Acks:
    """PUBACK reason codes by message id, recorded by ``on_publish`` (chained onto the
    client's own). paho marks a message published on any PUBACK, refused or not, and calls
    ``on_publish`` first: so once ``is_published()`` is true, the reason is here."""

    def __init__(self, client: mqtt.Client) -> None:
        self.reasons: dict[int, Any] = {}
        self._lock = threading.Lock()
        client.on_publish = _chain(client.on_publish, self._on_publish)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any,
                    props: Any) -> None:
        with self._lock:
            self.reasons[mid] = reason

    def pop(self, mid: int) -> Any:
        with self._lock:
            return self.reasons.pop(mid, None)

    @classmethod
    def of(cls, client: mqtt.Client) -> _Acks:
        acks = getattr(client, "_polres_acks", None)
        if acks is None:
            acks = cls(client)
            client._polres_acks = acks  # type: ignore[attr-defined]
        return acks


def publish_wait(client: mqtt.Client, topic: str, payload: bytes, *, qos: int = 1,
                 retain: bool = False, wait: bool = True,
                 timeout: float = 10.0) -> mqtt.MQTTMessageInfo:
    """Publish; with ``wait``, block until the broker confirmed it (QoS 1). Without ``wait``,
    pass the returned info to :func:`confirm` later.

    Raises ``PublishRefused`` when the broker answered with an MQTT 5 PUBACK reason >= 0x80
    (0x87 "not authorized" under the project's ACL), and ``ConnectionError`` when nothing
    confirmed it within ``timeout`` seconds (or paho could not queue it).
    """
    _Acks.of(client)
    info = client.publish(topic, payload, qos=qos, retain=retain)
    if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
        raise ConnectionError(f"publish to {topic} not queued: {mqtt.error_string(info.rc)}")
    if wait:
        confirm(client, [info], topic, timeout=timeout)
    return info


def confirm(client: mqtt.Client, infos: list[mqtt.MQTTMessageInfo], topic: str, *,
            timeout: float = 10.0) -> None:
    """Wait until every publish in ``infos`` was confirmed; raise as :func:`publish_wait`."""
    acks = _Acks.of(client)
    deadline = time.monotonic() + timeout
    refused = []
    for info in infos:
        while not info.is_published():
            if time.monotonic() > deadline:
                raise ConnectionError(f"publish to {topic} not confirmed in {timeout:g} s")
            time.sleep(0.002)
        reason = acks.pop(info.mid)
        if reason is not None and getattr(reason, "is_failure", False):
            refused.append(reason)
    if refused:
        first = refused[0]
        more = f" ({len(refused)} of {len(infos)} refused)" if len(infos) > 1 else ""
        raise PublishRefused(f"publish to {topic}: {first} (0x{first.value:02x}){more}")


class EventWaiter:
    """Collects the events of ``{root}/station/{station}/events`` (``+`` for every station)
    on a connected client, so a command can wait for its answer."""

    def __init__(self, client: mqtt.Client, root: str, station: str = "+",
                 timeout: float = 5.0) -> None:
        from ..protocol import station_topic
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._subscribed = threading.Event()
        client.on_message = _chain(client.on_message, self._on_message)
        client.on_subscribe = _chain(client.on_subscribe,
                                     lambda *a: self._subscribed.set())
        client.subscribe(station_topic(root, station, "events"), qos=1)
        if not self._subscribed.wait(timeout):
            raise ConnectionError("subscription to the events not confirmed")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(doc, dict):
            with self._cond:
                self._events.append(doc)
                self._cond.notify_all()

    def wait(self, match: Callable[[dict[str, Any]], bool],
             timeout: float) -> dict[str, Any] | None:
        """The first event for which ``match`` is true, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for doc in self._events:
                    if match(doc):
                        return doc
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
