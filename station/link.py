"""The MQTT link (docs/INTERFACE.md §9): paho 2.x, persistent session, manual ack, will, failover.

Callbacks run on paho's network thread and only translate and hand over to ``sink``; an
exception in one is logged and never reaches paho (it would kill the network thread silently).

    link = Link(config, topics, sink=queue.put, will=lambda session: b"...")
    link.start()            # returns at once; connects in the background, forever
    mid = link.publish(topics.events, payload)
    link.stop(final=(topics.status, shutdown_payload))
"""
from __future__ import annotations

import logging
import random
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from .config import BrokerAddress, BrokerConfig
from .protocol import Topics

log = logging.getLogger("station.link")


# --- what the link hands to the service -----------------------------------------------------

@dataclass(frozen=True)
class Inbound:
    """A message from the broker, not yet PUBACKed (manual ack)."""

    topic: str | None                 # None: the topic was not valid UTF-8
    payload: bytes
    qos: int
    retain: bool
    mid: int
    generation: int                   # the connection it arrived on (acks are per connection)
    received_at: float                # monotonic
    error: str | None = None          # it could not be read: the service refuses it


@dataclass(frozen=True)
class Connected:
    generation: int
    session_present: bool
    session: int
    broker: BrokerAddress


@dataclass(frozen=True)
class Disconnected:
    generation: int
    reason: str


@dataclass(frozen=True)
class Unreachable:
    """Every broker address failed in a row since the last connection (a dead cluster, or
    one without a majority of its nodes): reported once per outage, cleared by ``Connected``."""

    tried: tuple[BrokerAddress, ...]
    last_error: str


@dataclass(frozen=True)
class Delivered:
    """The broker confirmed a QoS 1 publish (PUBACK for ``mid``)."""

    mid: int


@dataclass(frozen=True)
class SubscribeRefused:
    topic: str
    reason: str


class _QuietWhileDisconnected(logging.Filter):
    """paho logs an ERROR on every loop pass while disconnected ("Client is not connected");
    the link already reports the disconnection once, with its reason code."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_PAHO_LOG = logging.getLogger("station.paho")
_PAHO_LOG.addFilter(_QuietWhileDisconnected())


class _Client(mqtt.Client):
    """paho's client with one lock around its socket reads and writes, so that the outbox
    thread can send the packets it queued itself (:meth:`send_queued`) instead of waking
    paho's network thread for them: a thread hand-over (a wake-up and a GIL hand-over, ~0.4
    ms on a busy 2-core machine) less on every event's path and every PUBACK's. The lock also
    keeps the two threads from reading and writing one TLS connection at once (OpenSSL does
    not allow it). Re-entrant: paho's own thread may queue and write inside a read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._io_lock = threading.RLock()

    def _packet_read(self) -> MQTTErrorCode:
        with self._io_lock:
            return super()._packet_read()

    def _easy_log(self, level: Any, fmt: str, *args: Any) -> None:
        # paho logs every packet sent and received at DEBUG (four per complaint): skipped at
        # once when no one would see it.
        if (level == mqtt.MQTT_LOG_DEBUG and self.on_log is None
                and not _PAHO_LOG.isEnabledFor(logging.DEBUG)):
            return
        super()._easy_log(level, fmt, *args)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # Every packet the broker sent so far has been read: ACK them now (_ack_segment_now),
        # once per wake-up rather than once per packet — during a burst a wake-up reads tens
        # of packets, and the system call per packet was a fifth of this thread's time.
        try:
            return super().loop_read(max_packets)
        finally:
            _ack_segment_now(self)

    def _packet_write(self) -> MQTTErrorCode:
        with self._io_lock:
            return super()._packet_write()

    def send_queued(self) -> None:
        """Write what is queued, from the calling thread, without blocking (the socket is
        non-blocking); what does not fit, and any error, is left to paho's thread, which was
        woken for it anyway."""
        if getattr(self, "_sock", None) is None or not getattr(self, "_out_packet", None):
            return
        try:
            self._packet_write()
        except Exception:  # noqa: BLE001 — paho's own thread meets and reports it
            log.debug("direct write left to the network thread", exc_info=True)


# Only with the paho internals it relies on (pinned 2.x); else every write is paho's thread's.
_DIRECT_WRITE = all(callable(getattr(mqtt.Client, name, None))
                    for name in ("_packet_read", "_packet_write", "_sock_send"))


class Link:
    """One paho client with the station's session, will and reconnect policy.

    ``will(session)`` returns the last-will payload for a connection number; ``next_session()``
    returns that number (persisted by the caller). Both run on paho's thread before each
    CONNECT. ``sink`` receives ``Inbound``, ``Connected``, ``Disconnected``, ``Unreachable``,
    ``Delivered`` and ``SubscribeRefused`` values from paho's thread and must only enqueue.
    """

    def __init__(self, broker: BrokerConfig, topics: Topics, *, client_id: str,
                 sink: Callable[[Any], None], will: Callable[[int], bytes] | None = None,
                 next_session: Callable[[], int] | None = None,
                 subscriptions: tuple[str, ...] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.broker = broker
        self.topics = topics
        self._sink = sink
        # Where confirmations go (paho's thread; must only enqueue). Unset: ``Delivered`` to
        # ``sink``. The station points it straight at its outbox's writer.
        self.on_delivered: Callable[[int], None] | None = None
        self._will = will
        self._next_session = next_session or _counter()
        self._subscriptions = (subscriptions if subscriptions is not None
                               else (topics.complaints, topics.cmd))
        self._clock = clock
        self._v5 = broker.protocol == "5"
        self._addresses = broker.addresses
        self._index = 0
        self._failures = 0
        self._attempt_failed = False      # this connection attempt already counted as failed
        self._failed_in_row = 0           # connection attempts failed since the last CONNACK
        self._unreachable_told = False
        self._unconfirmed: dict[int, float] = {}  # QoS 1 mid → when published, until PUBACK
        self._confirmed_early: set[int] = set()   # PUBACK handled before publish() returned
        self._unconfirmed_lock = threading.Lock()
        self._confirm_clock = time.monotonic     # its own: ``clock`` stamps inbound messages
        self._puback_overdue_s = max(10.0, 2.0 * broker.keepalive)
        self._generation = 0
        self.session = 0
        self._stopping = False
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = self._make_client(client_id)

    # --- lifecycle ----------------------------------------------------------------------------

    def _make_client(self, client_id: str) -> mqtt.Client:
        cls = _Client if _DIRECT_WRITE else mqtt.Client
        if self._v5:
            c = cls(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5, manual_ack=True)
        else:
            c = cls(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True)
        c.suppress_exceptions = True    # second net under our own try/except
        c.enable_logger(_PAHO_LOG)
        c.max_inflight_messages_set(64)
        c.max_queued_messages_set(0)    # the durable outbox bounds what we queue
        if self.broker.tls is not None:
            t = self.broker.tls
            c.tls_set(ca_certs=_str(t.ca_file), certfile=_str(t.cert_file),
                      keyfile=_str(t.key_file), cert_reqs=ssl.CERT_REQUIRED,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if self.broker.username is not None:
            c.username_pw_set(self.broker.username, self.broker.password())
        self._set_delay(c)
        c.on_socket_open = self._guard(self._on_socket_open)
        c.on_pre_connect = self._guard(self._on_pre_connect)
        c.on_connect = self._guard(self._on_connect)
        c.on_connect_fail = self._guard(self._on_connect_fail)
        c.on_disconnect = self._guard(self._on_disconnect)
        c.on_message = self._guard(self._on_message)
        c.on_publish = self._guard(self._on_publish)
        c.on_subscribe = self._guard(self._on_subscribe)
        return c

    def start(self) -> None:
        """Connect in the background (never blocks on the network) and keep reconnecting."""
        self._connect_async(self._addresses[0])
        self._client.loop_start()
        self._thread = self._client._thread        # paho forgets it when the thread ends

    def stop(self, final: tuple[str, bytes] | None = None, timeout: float = 2.0) -> None:
        """Publish ``final`` (topic, payload; retained) if connected, disconnect, stop."""
        if final is not None and self.connected:
            info = self._client.publish(final[0], final[1], qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline and self.connected:
                time.sleep(0.01)
        self._stopping = True
        self._thread = None
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def alive(self) -> bool:
        """False once paho's network thread has died (an exception inside paho itself: it
        dies silently and ``connected`` stays True, docs/FIELD-GUIDE.md §1)."""
        return self._thread is None or self._thread.is_alive()

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def current_broker(self) -> BrokerAddress:
        return self._addresses[self._index]

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # --- sending ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Queue a publish; returns its mid (delivery is reported as ``Delivered(mid)``)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            with self._unconfirmed_lock:
                if info.mid in self._confirmed_early:
                    self._confirmed_early.discard(info.mid)
                else:
                    self._unconfirmed[info.mid] = self._confirm_clock()
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish on %s refused by paho: %s", topic, mqtt.error_string(info.rc))
        return info.mid

    def send_queued(self) -> None:
        """Send the packets queued so far from the calling thread (the outbox's, after its
        publishes and PUBACKs) rather than waiting for paho's network thread to wake."""
        if isinstance(self._client, _Client):
            self._client.send_queued()

    def check_confirmations(self) -> bool:
        """Drop a connection whose broker confirms nothing: a RabbitMQ node cut off from the
        majority of its cluster keeps the TCP session and answers pings, but no publish is
        ever PUBACKed and no complaint arrives. When the oldest publish of this connection
        waits longer than ``max(10, 2 × keepalive)`` s, the socket is shut so paho's own
        reconnect (and failover) takes over. Returns True when it did. Any thread."""
        now = self._confirm_clock()
        with self._unconfirmed_lock:
            oldest = min(self._unconfirmed.values(), default=now)
            waiting = len(self._unconfirmed)
        sock = self._client.socket()
        if (not self.connected or now - oldest < self._puback_overdue_s
                or not isinstance(sock, socket.socket)):
            return False
        log.error("broker %s has confirmed no publish for %.0f s (%d waiting): dropping the "
                  "connection", self.current_broker, now - oldest, waiting)
        self._restart_unconfirmed_clock()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as e:
            log.warning("could not shut the connection to %s: %s", self.current_broker, e)
        return True

    def ack(self, mid: int, qos: int, generation: int) -> bool:
        """PUBACK an inbound message, only on the connection it arrived on.

        After a reconnect the broker re-sends unacknowledged messages itself; acking a stale
        mid on the new connection could acknowledge a different message.
        """
        if qos == 0 or generation != self._generation or not self.connected:
            return False
        rc = self._client.ack(mid, qos)
        return rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    # --- paho callbacks (paho's thread: translate and hand over only) -------------------------

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 — paho's thread must survive anything
                log.exception("error in MQTT callback %s (message left unacknowledged)",
                              fn.__name__)
        return guarded

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # Nagle off: a small write (a PUBACK, a status) must not hold back the next one — an
        # `alerting` — until the broker's delayed ACK, ~40 ms (docs/FIELD-GUIDE.md §5, bench/).
        _setsockopt(sock, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self._attempt_failed = False
        self.session = self._next_session()
        if self._will is not None:
            client.will_set(self.topics.presence, self._will(self.session), qos=1, retain=True)
        log.info("connecting to %s as %s (session %d, MQTT %s)", self.current_broker,
                 self.topics.station, self.session, self.broker.protocol)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("broker %s refused the connection: reason_code=%s", self.current_broker,
                      reason)
            self._attempt_lost(f"refused: {reason}")
            self._failed(client, rotate=True)
            return
        self._failures = 0
        self._failed_in_row = 0
        self._unreachable_told = False
        # What waited on the last connection is re-sent on this one (paho, outbox).
        self._restart_unconfirmed_clock()
        self._set_delay(client)
        self._generation += 1
        client.subscribe([(t, self._sub_options()) for t in self._subscriptions])
        self._connected.set()
        log.info("connected to %s: reason_code=%s session_present=%s", self.current_broker,
                 reason, flags.session_present)
        self._sink(Connected(self._generation, bool(flags.session_present), self.session,
                             self.current_broker))

    def _sub_options(self) -> Any:
        if not self._v5:
            return 1
        # Retain-as-published: a retained command shows as retained even when it arrives
        # live, so it is never acted on (it would replay at every restart).
        return SubscribeOptions(qos=1, retainAsPublished=True)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError``: say why (refused, unresolvable, a
        # broker certificate this station does not trust), the technician's only clue.
        why = sys.exc_info()[1] or "no reason given"
        log.warning("cannot reach broker %s: %s", self.current_broker, why)
        self._attempt_lost(str(why))
        self._failed(client, rotate=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and self._stopping:
            log.info("disconnected from %s (stopping): reason_code=%s", self.current_broker,
                     reason)
            return
        if was:
            log.warning("disconnected from %s: reason_code=%s", self.current_broker, reason)
            self._sink(Disconnected(self._generation, str(reason)))
            self._failed(client, rotate=False)
        elif not self._attempt_failed:
            # TCP was accepted but no CONNACK came (a hung broker, a load balancer in front
            # of a dead cluster): as unreachable as a refused connection, so fail over.
            log.warning("broker %s accepted the connection but never answered: reason_code=%s",
                        self.current_broker, reason)
            self._attempt_lost(f"no CONNACK: {reason}")
            self._failed(client, rotate=True)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not isinstance(client, _Client):     # else once per read (_Client.loop_read)
            _ack_segment_now(client)
        try:
            try:
                topic: str | None = msg.topic
            except UnicodeDecodeError:
                topic = None
            item = Inbound(topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid,
                           self._generation, self._clock())
        except Exception as e:  # noqa: BLE001 — refuse it rather than hold it unacknowledged
            # Left without a PUBACK it would hold one of the broker's in-flight slots until
            # the next reconnect: a few such messages and no complaint reaches the room.
            log.exception("cannot read message mid=%s from the broker; refusing it", msg.mid)
            item = Inbound(None, _raw_payload(msg), int(msg.qos), False, int(msg.mid),
                           self._generation, time.monotonic(),
                           error=f"{type(e).__name__}: {e}"[:120])
        self._sink(item)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        if not isinstance(client, _Client):
            _ack_segment_now(client)
        with self._unconfirmed_lock:
            if self._unconfirmed.pop(mid, None) is None:
                if len(self._confirmed_early) > 1024:   # mids of publishes not made here
                    self._confirmed_early.clear()
                self._confirmed_early.add(mid)
        if getattr(reason, "is_failure", False):
            log.error("broker refused publish mid=%d: reason_code=%s", mid, reason)
        if self.on_delivered is not None:
            self.on_delivered(mid)
        else:
            self._sink(Delivered(mid))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any],
                      properties: Any) -> None:
        for topic, reason in zip(self._subscriptions, reasons, strict=False):
            if reason.is_failure:
                log.error("subscription to %s refused: reason_code=%s", topic, reason)
                self._sink(SubscribeRefused(topic, str(reason)))

    def _restart_unconfirmed_clock(self) -> None:
        with self._unconfirmed_lock:
            now = self._confirm_clock()
            self._unconfirmed = dict.fromkeys(self._unconfirmed, now)

    # --- reconnect policy ---------------------------------------------------------------------

    def _attempt_lost(self, why: str) -> None:
        """Count a failed connection attempt; once every address has failed in a row, tell the
        service (once per outage: it raises a fault the desk sees when the link is back)."""
        self._attempt_failed = True
        self._failed_in_row += 1
        if self._failed_in_row >= len(self._addresses) and not self._unreachable_told:
            self._unreachable_told = True
            log.error("no broker reachable (%s tried): %s",
                      ", ".join(str(a) for a in self._addresses), why)
            self._sink(Unreachable(self._addresses, why[:200]))

    def _failed(self, client: mqtt.Client, *, rotate: bool) -> None:
        """Back off with jitter (hundreds of stations reconnect at once after a national
        broker restart) and, when the broker is unreachable, try the next address."""
        self._failures += 1
        if rotate and len(self._addresses) > 1:
            self._index = (self._index + 1) % len(self._addresses)
            self._connect_async(self._addresses[self._index])
        self._set_delay(client)

    def _set_delay(self, client: mqtt.Client) -> None:
        b = self.broker
        cap = min(b.reconnect_max_s, b.reconnect_min_s * 2 ** min(self._failures, 16))
        delay = random.uniform(cap / 2, cap)
        client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]

    def _connect_async(self, address: BrokerAddress) -> None:
        kwargs: dict[str, Any] = {}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.broker.session_expiry_s
            # paho's default (clean start on the first connect) would wipe the queued
            # complaints at every process start.
            kwargs = {"clean_start": False, "properties": props}
        self._client.connect_async(address.host, address.port, self.broker.keepalive, **kwargs)


def _ack_segment_now(client: mqtt.Client) -> None:
    """ACK what was just read at once instead of after the delayed-ACK timer (~40 ms).

    A broker with Nagle on (mosquitto's default ``set_tcp_nodelay false``) holds its next
    packet to this station — the next complaint — while its last small one (a PUBACK) is
    unacknowledged; the station often has nothing to send that would carry the ACK. Linux
    resets quick-ack mode on its own, so it is set after every read of the socket (one
    syscall per wake-up of paho's thread, :meth:`_Client.loop_read`); setting it also sends
    an ACK already pending. Elsewhere it does not exist: no-op.
    """
    if _QUICKACK is not None:
        _setsockopt(client.socket(), socket.IPPROTO_TCP, _QUICKACK, 1)


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def _setsockopt(sock: Any, level: int, option: int, value: int) -> None:
    """Best effort: a socket already closed, or a transport without the option, is left."""
    try:
        if sock is not None:
            sock.setsockopt(level, option, value)
    except (OSError, AttributeError, ValueError):
        pass


def _raw_payload(msg: Any) -> bytes:
    try:
        return bytes(msg.payload)
    except Exception:  # noqa: BLE001
        return b""


def _str(path: Any) -> str | None:
    return None if path is None else str(path)


def _counter() -> Callable[[], int]:
    n = 0

    def nxt() -> int:
        nonlocal n
        n += 1
        return n
    return nxt
