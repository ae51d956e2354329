"""The reference national RabbitMQ configuration (issue 13): ``config/rabbitmq/rabbitmq.conf``
itself — only its paths, ports and node names rewritten (``cluster/tls_node.py``) — on one
RabbitMQ 3.10 node, with certificates of a test station CA (``config/mosquitto/make-test-ca.sh``:
the same CA tool and the same HQ/desk certificates as the mosquitto broker's tests) deployed as
HQ deploys them (``/etc/rabbitmq/tls/``), and the identities of ``setup-permissions.sh`` with
``HQ_USER=hq.dispatch DESK_USER=desk.monitoring`` and no password files (certificate login only).

1. The real station (``broker.tls`` with its client certificate, no user name, no password,
   MQTT 3.1.1) logs in by certificate over TLS 1.3, receives a complaint HQ publishes with
   ``polres-station send-complaint`` over TLS (HQ's certificate, no password), alarms, and its
   ``alerting`` reaches HQ's subscriber.
2. Refused, each with the broker's log line: no certificate, another CA's certificate, an
   expired one, a station-CA certificate without a user; a deleted user (how a station is
   revoked on RabbitMQ); another station's session under one's own certificate.
3. TLS 1.2 is accepted too (``ssl_options.versions``).
4. No plain MQTT: a plain-TCP CONNECT to the TLS port gets no CONNACK, and the node listens on
   exactly the TLS MQTT port, AMQP on loopback and its distribution port.

One node serves the module (boot ~10–25 s). A node that cannot start FAILS the tests.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cluster.tls_node import REFERENCE, TlsNode
from helpers import REGION, ROOT, STATION, RunningStation, station_config, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.broker]

REPO = Path(__file__).resolve().parents[2]
MAKE_CA = REPO / "config" / "mosquitto" / "make-test-ca.sh"
SETUP = REPO / "config" / "rabbitmq" / "setup-permissions.sh"
# HQ's and the desk's user names = their certificates' CNs, the same certificates as the
# mosquitto broker's (a name with a "." can never be a station id): config/rabbitmq/README.md.
HQ_USER, DESK_USER = "hq.dispatch", "desk.monitoring"
OTHER, OTHER_REGION = "lahat-1", "sumsel-lahat"
UNREGISTERED = "unregistered-1"             # a certificate of the station CA, no user
REVOKED_BY_DELETE = "muaraenim-1"           # in the inventory; its user is deleted below


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test station CA with the stations', HQ's and the bad certificates (ca.crt, …)."""
    out = tmp_path_factory.mktemp("rabbit-ca")
    subprocess.run([str(MAKE_CA), str(out), STATION, OTHER, REVOKED_BY_DELETE, UNREGISTERED],
                   check=True, capture_output=True, text=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def node(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    """The node on the reference config, HQ's deployment of /etc/rabbitmq/tls/ and the
    identities of setup-permissions.sh (no password files: certificate login only)."""
    tls = tmp_path_factory.mktemp("etc-rabbitmq-tls")
    for src, dst in (("ca.crt", "station-ca.pem"), ("broker.crt", "node.pem"),
                     ("broker.key", "node.key")):
        shutil.copy(pki / src, tls / dst)
    n = TlsNode(tmp_path_factory.mktemp("rabbit-tls-node"), tls)
    try:
        n.start()
        inventory = n.dir / "stations.txt"
        inventory.write_text(f"{STATION} {REGION}\n{OTHER} {OTHER_REGION}\n"
                             f"{REVOKED_BY_DELETE} {REGION}\n")
        t0 = time.monotonic()
        done = subprocess.run([str(SETUP), str(inventory)], capture_output=True, text=True,
                              env={"RABBITMQCTL": n.ctl_command(), "PATH": "/usr/bin:/bin",
                                   "HQ_USER": HQ_USER, "DESK_USER": DESK_USER},
                              timeout=180)
        assert done.returncode == 0, done.stderr
        print(f"\nRabbitMQ on the reference {REFERENCE.name} up in {n.boot_s:.1f} s "
              f"(MQTT/TLS on {n.mqtts_port}); setup-permissions.sh "
              f"{time.monotonic() - t0:.1f} s")
        yield n
    finally:
        n.stop()


def client(pki: Path, cert: str | None, client_id: str, *,
           tls_max: ssl.TLSVersion | None = None) -> mqtt.Client:
    """A 3.1.1 client over TLS with the certificate ``cert`` of ``pki`` (None: no certificate)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                    clean_session=False)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.crt"))
    if cert is not None:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    if tls_max is not None:
        ctx.maximum_version = tls_max
    c.tls_set_context(ctx)
    return c


class Attempt:
    """One connection attempt: CONNACK accepted, refused (with the reason) or closed."""

    def __init__(self, c: mqtt.Client, port: int, subscribe: str | None = None) -> None:
        self.c = c
        self.accepted = threading.Event()
        self.refused: list[str] = []
        self.closed = threading.Event()
        self.error: str | None = None
        self.suback: list[Any] = []
        c.on_connect = self._on_connect
        c.on_disconnect = lambda cl, u, f, r, p: self.closed.set()
        c.on_subscribe = lambda cl, u, mid, reasons, p: self.suback.extend(reasons)
        try:
            c.connect("127.0.0.1", port, keepalive=10)
        except (OSError, ssl.SSLError) as e:
            self.error = repr(e)
            self.closed.set()
            return
        c.loop_start()
        wait_for(lambda: self.accepted.is_set() or self.closed.is_set(), 10,
                 what="CONNACK or close")
        if subscribe and self.accepted.is_set():
            c.subscribe(subscribe, 1)
            wait_for(lambda: self.suback or self.closed.is_set(), 10, what="SUBACK or close")

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, p: Any) -> None:
        if reason.is_failure:
            self.refused.append(str(reason))
        else:
            self.accepted.set()

    @property
    def subscribed(self) -> bool:
        return bool(self.suback) and not self.suback[0].is_failure and not self.closed.is_set()

    def close(self) -> None:
        self.c.on_disconnect = None
        self.c.disconnect()
        self.c.loop_stop()


def test_a_station_logs_in_by_certificate_alarms_and_hq_gets_alerting(tmp_path, pki, node):
    # HQ's subscriber: its certificate, client id hq-… (its session queue's permitted name).
    hq_events: list[dict[str, Any]] = []
    hq = client(pki, HQ_USER, "hq-tls-events")
    hq.on_message = lambda c, u, m: hq_events.append(json.loads(m.payload))
    events = Attempt(hq, node.mqtts_port, subscribe=f"{ROOT}/station/+/events")
    assert events.subscribed, (events.refused, events.suback, node.log_tail())
    cfg = station_config(tmp_path, node.mqtts_port, protocol="3.1.1", broker={
        "tls": {"ca_file": str(pki / "ca.crt"), "cert_file": str(pki / f"{STATION}.crt"),
                "key_file": str(pki / f"{STATION}.key")}})
    s = RunningStation(cfg)
    try:
        wait_for(lambda: s.station.link.connected, 15, what="the station connected over TLS")
        assert s.config.broker.username is None and s.config.broker.password_file is None
        # The broker's own view: TLS 1.3, user = the certificate's CN, client id = station id.
        rows = [ln.split("\t") for ln in node.ctl(
            "list_mqtt_connections", "--quiet", "--no-table-headers", "client_id", "user",
            "ssl", "ssl_protocol", "vhost").splitlines() if ln.strip()]
        assert [STATION, STATION, "true", "tlsv1.3", "polri110"] in rows, rows
        time.sleep(0.5)                      # the station's subscriptions are in place
        t0 = time.monotonic()
        sent = subprocess.run(
            [sys.executable, "-m", "station.cli", "send-complaint",
             "--broker", f"127.0.0.1:{node.mqtts_port}", "--protocol", "3.1.1",
             "--ca-file", str(pki / "ca.crt"), "--cert-file", str(pki / f"{HQ_USER}.crt"),
             "--key-file", str(pki / f"{HQ_USER}.key"), "--region", REGION,
             "--id", "tls-rmq-1", "--priority", "emergency", "--wait-alerting", "20"],
            capture_output=True, text=True, timeout=60, env={**os.environ})
        # --wait-alerting subscribes to the events as HQ: its client id must be one HQ's
        # identity may name a session queue after (hq-…), or the broker refuses the SUBSCRIBE.
        assert sent.returncode == 0, (sent.stdout, sent.stderr, node.log_tail())
        assert "alerting" in sent.stdout, sent.stdout
        wait_for(lambda: s.relay_on("siren") and s.relay_on("beacon"), 10, what="relays on")
        alert = wait_for(lambda: next((e for e in hq_events if e.get("type") == "alerting"),
                                      None), 10, what="alerting at HQ")
        assert alert["complaint_id"] == "tls-rmq-1" and alert["station"] == STATION
        print(f"\nRabbitMQ TLS: send-complaint → alerting at HQ in "
              f"{time.monotonic() - t0:.2f} s (send-complaint's own start included)")
        # The desk's tool, by the desk's certificate, subscribes too (desk-… session queues).
        # This broker keeps retained messages from wildcard subscriptions (docs/FIELD-GUIDE.md),
        # so the monitor sees the status the acknowledgment below makes, not the retained one.
        monitor = subprocess.Popen(
            [sys.executable, "-m", "station.cli", "monitor", "--once", "--json", "--wait", "6",
             "--broker", f"127.0.0.1:{node.mqtts_port}", "--protocol", "3.1.1",
             "--ca-file", str(pki / "ca.crt"), "--cert-file", str(pki / f"{DESK_USER}.crt"),
             "--key-file", str(pki / f"{DESK_USER}.key")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
        time.sleep(3)                        # started and subscribed
        s.press(0.2)
        out, err = monitor.communicate(timeout=60)
        assert monitor.returncode == 0, (out, err, node.log_tail())
        rows = {r["station"]: r for r in json.loads(out)["stations"]}
        assert rows[STATION]["alarms"]["active"] == 0, rows
    finally:
        s.stop()
        events.close()


# Refused clients: certificate, client id, and the line the broker's log gives the operator.
REFUSED = {
    "no certificate": (None, STATION, "MQTT login failed: no credentials provided"),
    "another CA's certificate (CN = a real station)": (
        "rogue", STATION, "SERVER ALERT: Fatal - Unknown CA"),
    "an expired certificate": ("expired", STATION, "SERVER ALERT: Fatal - Certificate Expired"),
    "a station-CA certificate without a user": (
        UNREGISTERED, UNREGISTERED, f"MQTT login failed for user '{UNREGISTERED}'"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_without_a_valid_certificate(pki, node, case):
    cert, cid, logged = REFUSED[case]
    before = len(node.log_text())
    a = Attempt(client(pki, cert, cid), node.mqtts_port)
    try:
        time.sleep(0.3)
        assert not a.accepted.is_set(), f"{case}: accepted"
        assert a.refused or a.closed.is_set() or a.error, case
        wait_for(lambda: logged in node.log_text()[before:], 5, what=f"broker log: {logged}")
    finally:
        a.close()


def test_a_deleted_user_is_refused_and_a_certificate_opens_only_its_own_session(pki, node):
    # Revocation on RabbitMQ (no CRL in the reference config): delete the station's user. Its
    # open connection is closed at once and its certificate no longer logs in.
    ok = Attempt(client(pki, REVOKED_BY_DELETE, REVOKED_BY_DELETE), node.mqtts_port)
    assert ok.accepted.is_set(), ok.refused
    node.ctl("delete_user", REVOKED_BY_DELETE)
    wait_for(ok.closed.is_set, 5, what="delete_user closed the station's open connection")
    ok.close()
    gone = Attempt(client(pki, REVOKED_BY_DELETE, REVOKED_BY_DELETE), node.mqtts_port)
    try:
        assert not gone.accepted.is_set() and gone.refused, "a deleted user logged in"
    finally:
        gone.close()
    # A valid certificate with another station's client id: that session queue is not its own.
    thief = Attempt(client(pki, OTHER, STATION), node.mqtts_port,
                    subscribe=f"{ROOT}/region/{OTHER_REGION}/complaints")
    try:
        assert not thief.subscribed, "a certificate opened another station's session"
    finally:
        thief.close()


def test_tls_12_is_accepted_too(pki, node):
    # ssl_options.versions: tlsv1.3 and tlsv1.2 (HQ tools or stations on older OpenSSL).
    a = Attempt(client(pki, STATION, STATION, tls_max=ssl.TLSVersion.TLSv1_2), node.mqtts_port)
    try:
        assert a.accepted.is_set(), (a.refused, a.error)
        assert a.c.socket().version() == "TLSv1.2"  # type: ignore[union-attr]
    finally:
        a.close()


def _connect_packet(client_id: str) -> bytes:
    body = (b"\x00\x04MQTT\x04\x02\x00\x0a" + len(client_id).to_bytes(2, "big")
            + client_id.encode())
    return bytes([0x10, len(body)]) + body


def test_no_plain_mqtt_anywhere(node):
    # A plain-TCP CONNECT to the TLS port: no CONNACK (0x20), the node closes or answers TLS.
    with socket.create_connection(("127.0.0.1", node.mqtts_port), timeout=5) as sock:
        sock.sendall(_connect_packet(STATION))
        answer = b""
        try:
            while chunk := sock.recv(64):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    assert not answer.startswith(b"\x20"), f"plain MQTT answered on the TLS port: {answer!r}"
    # paho without TLS: never connected.
    plain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain-probe",
                        protocol=mqtt.MQTTv311)
    a = Attempt(plain, node.mqtts_port)
    try:
        assert not a.accepted.is_set()
    finally:
        a.close()
    # The node's listeners: MQTT only over TLS, AMQP on loopback, its distribution port.
    out = node.diagnostics("listeners", "--quiet")
    protocols = sorted(ln.split("protocol: ")[1].split(",")[0]
                       for ln in out.splitlines() if "protocol: " in ln)
    assert protocols == ["amqp", "clustering", "mqtt/ssl"], out
    assert f"port: {node.mqtts_port}, protocol: mqtt/ssl" in out, out
    # …and the sockets the VM really listens on (no 1883, nothing else).
    assert _listening_ports(node.beam_pid()) == {node.mqtts_port, node.amqp_port,
                                                 node.dist_port}


def _listening_ports(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:          # LISTEN, one of the VM's sockets
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports
