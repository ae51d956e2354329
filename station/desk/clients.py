"""MQTT clients for the other side of the interface: HQ dispatch and the monitoring desk.

Used by ``send-complaint``, ``monitor``, the demo, the benchmarks and the tests, with the
same TLS / username / password-file options as the station.
"""
from __future__ import annotations

import argparse
import contextlib
import ssl
import threading
import time
import uuid
from typing import Any, Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def make_client(*, protocol: str = "5", client_id: str | None = None,
                ca_file: Any = None, cert_file: Any = None, key_file: Any = None,
                username: str | None = None, password_file: Any = None) -> mqtt.Client:
    """A paho client (VERSION2 callbacks) with optional TLS and password from a file."""
    proto = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
    cid = client_id or f"tool-{uuid.uuid4().hex[:12]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto)
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


def client_from_args(args: argparse.Namespace) -> mqtt.Client:
    return make_client(protocol=args.protocol, ca_file=args.ca_file, cert_file=args.cert_file,
                       key_file=args.key_file, username=args.username,
                       password_file=args.password_file)


@contextlib.contextmanager
def hq_client(args: argparse.Namespace) -> Iterator[mqtt.Client]:
    """A connected client from the standard command-line options."""
    with connected(client_from_args(args), args.broker.host, args.broker.port) as client:
        yield client


def publish_wait(client: mqtt.Client, topic: str, payload: bytes, *, qos: int = 1,
                 retain: bool = False, wait: bool = True, timeout: float = 10.0) -> None:
    """Publish; with ``wait``, block until the broker confirmed (QoS 1) or raise."""
    info = client.publish(topic, payload, qos=qos, retain=retain)
    if not wait:
        return
    deadline = time.monotonic() + timeout
    while not info.is_published():
        if time.monotonic() > deadline:
            raise ConnectionError(f"publish to {topic} not confirmed in {timeout:g} s")
        time.sleep(0.002)
