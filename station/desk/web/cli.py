"""``polres-station desk``: the national desk's web wall (a service for the desk's machine).

Subscribes to every station's status, presence and events (``{root}/station/+/…``), keeps them
in SQLite (``--db``), serves the page and the machine interfaces on ``--listen``. Read-only by
default; ``--allow-commands`` adds ack/silence/test/status buttons behind a login
(``--users``, a mosquitto_passwd-format file), each command recorded with who sent it, signed
with ``--sign-key``/``--kid`` when given. Exit codes as every subcommand (docs/CLI.md).
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import logging
import signal
import ssl
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ...config import parse_address
from ...protocol import encode, station_topic
from ...terminal import Exit, broker_args, setup_logging
from ..keys import SignArgsError, add_sign_args, signing_key
from .auth import Sessions, load_password_file
from .core import Desk
from .server import WebDesk, make_server
from .store import DeskStore

log = logging.getLogger("station.desk.web")

DEFAULT_LISTEN = "127.0.0.1:8110"
DEFAULT_DB = Path(os.environ.get("STATE_DIRECTORY", ".")) / "desk.db"   # systemd StateDirectory=


def add_arguments(p: argparse.ArgumentParser) -> None:
    broker_args(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN,
                   help="HOST:PORT the page is served on (default %(default)s)")
    p.add_argument("--db", type=Path, default=DEFAULT_DB,
                   help="the desk's SQLite database (default %(default)s: in $STATE_DIRECTORY, "
                        "else the working directory)")
    p.add_argument("--unacked-alert-s", type=float, default=120.0, metavar="S",
                   help="an alarm unacknowledged longer than S seconds calls for attention "
                        "(default %(default)s)")
    p.add_argument("--allow-commands", action="store_true",
                   help="offer ack/silence/test/status on the page (login required)")
    p.add_argument("--users", type=Path, metavar="FILE",
                   help="with --allow-commands: users' salted password hashes "
                        "(mosquitto_passwd format)")
    add_sign_args(p)
    p.add_argument("--tls-cert", type=Path, help="serve the page over HTTPS: certificate")
    p.add_argument("--tls-key", type=Path, help="… and its private key")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   default="INFO")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def exposure_warnings(host: str, *, tls: bool, login: bool) -> list[str]:
    """What to say loudly at start about who can reach this desk."""
    if is_loopback(host):
        return []
    out = []
    if not tls:
        out.append(f"the desk listens on {host} WITHOUT TLS: anyone on the network path reads "
                   "the page" + (", passwords and session cookies" if login else ""))
    if not login:
        out.append(f"the desk listens on {host} WITHOUT A LOGIN: anyone who reaches it sees "
                   "every station and can mark alarms seen")
    return out


class Commander:
    """Sends a command from the page: signs it when a key is configured, publishes it on the
    desk's MQTT client, records who sent what (the station's cmd_result fills in the answer)."""

    def __init__(self, client: Any, root: str, store: DeskStore, key: Any = None) -> None:
        self.client, self.root, self.store, self.key = client, root, store, key

    def __call__(self, station: str, cmd: str, args: dict[str, Any], user: str,
                 peer: str) -> dict[str, Any]:
        from ..clients import publish_wait
        from ..command import sign_with
        from ...errors import PublishRefused
        cmd_id = f"desk-{uuid.uuid4().hex[:16]}"
        if cmd == "ack":
            args = {**args, "by": user[:64]}
        doc: dict[str, Any] = {"v": 1, "cmd_id": cmd_id, "cmd": cmd, "args": args}
        topic = station_topic(self.root, station, "cmd")
        doc = sign_with(self.key, doc, topic)
        detail = None
        try:
            publish_wait(self.client, topic, encode(doc), timeout=5.0)
            published = True
        except (PublishRefused, ConnectionError) as e:
            published, detail = False, str(e)
        self.store.record_command(at=time.time(), user=user, client=peer, station=station,
                                  cmd=cmd, cmd_id=cmd_id, args=args, published=published,
                                  signed=self.key is not None, detail=detail)
        log.info("desk: %s sent %s to %s (cmd_id %s)%s", user, cmd, station, cmd_id,
                 "" if published else f": NOT published: {detail}")
        return {"cmd_id": cmd_id, "published": published, "detail": detail,
                "signed": self.key is not None}


def main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    listen = parse_address(args.listen, 8110)
    if isinstance(listen, str):
        print(f"error: --listen: {listen}", file=sys.stderr)
        return Exit.USAGE
    users = None
    if args.allow_commands:
        if args.users is None:
            print("error: --allow-commands needs --users FILE (who may log in)", file=sys.stderr)
            return Exit.USAGE
        try:
            users = load_password_file(args.users)
        except (OSError, ValueError) as e:
            print(f"error: --users: {e}", file=sys.stderr)
            return Exit.USAGE
    try:
        key = signing_key(args)
    except SignArgsError as e:
        print(f"error: {e}", file=sys.stderr)
        return Exit.USAGE
    ssl_context = None
    if args.tls_cert or args.tls_key:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(str(args.tls_cert), str(args.tls_key))
    for warning in exposure_warnings(listen.host, tls=ssl_context is not None,
                                     login=users is not None):
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
        log.warning("%s", warning)
    return serve(args, listen.host, listen.port, users=users, key=key, ssl_context=ssl_context)


class RunningDesk:
    """The whole desk in this process: SQLite, the loop thread, the MQTT link, the HTTP
    server. ``close()`` stops them all (idempotent)."""

    def __init__(self, client: Any, *, root: str, db: Path, host: str, port: int,
                 broker: tuple[str, int], unacked_alert_s: float = 120.0,
                 users: dict[str, str] | None = None, allow_commands: bool = False,
                 key: Any = None, ssl_context: Any = None) -> None:
        self.store = DeskStore(db)
        self.desk = Desk(self.store, root, unacked_alert_s=unacked_alert_s)
        self.link = DeskLink(client, self.desk, root)
        commander = Commander(client, root, self.store, key) if allow_commands else None
        self.web = WebDesk(self.desk, sessions=Sessions(users), send_command=commander,
                           tls=ssl_context is not None)
        try:
            self.server = make_server(self.web, host, port, ssl_context=ssl_context)
        except OSError:
            self.store.close()
            raise
        self.loop = threading.Thread(target=self.desk.run, name="desk-loop", daemon=True)
        self.loop.start()
        self.link.start(*broker)
        self.http = threading.Thread(target=self.server.serve_forever,
                                     kwargs={"poll_interval": 0.2}, name="desk-http",
                                     daemon=True)
        self.http.start()
        scheme = "https" if ssl_context else "http"
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{self.server.server_address[1]}/"
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.web.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.link.stop()
        self.desk.stop()
        self.loop.join(5)
        self.store.close()


def serve(args: argparse.Namespace, host: str, port: int, *, users: dict[str, str] | None,
          key: Any, ssl_context: Any) -> int:
    from ..clients import Side, client_from_args
    try:
        client = client_from_args(args, Side.DESK)
        running = RunningDesk(client, root=args.root, db=args.db, host=host, port=port,
                              broker=(args.broker.host, args.broker.port),
                              unacked_alert_s=args.unacked_alert_s, users=users,
                              allow_commands=args.allow_commands, key=key,
                              ssl_context=ssl_context)
    except OSError as e:
        print(f"error: cannot listen on {host}:{port} or open {args.db}: {e}", file=sys.stderr)
        return Exit.UNAVAILABLE
    print(f"desk: {running.url} (broker {args.broker}, root {args.root}, db {args.db}, "
          f"{'commands allowed' if args.allow_commands else 'read-only'})", file=sys.stderr,
          flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        running.close()
    return Exit.OK


class DeskLink:
    """The desk's MQTT client: subscribes again on every connect; messages go to the desk."""

    def __init__(self, client: Any, desk: Desk, root: str) -> None:
        self.client, self.desk = client, desk
        self.topics = [(station_topic(root, "+", leaf), 1)
                       for leaf in ("status", "presence", "events")]
        client.reconnect_delay_set(0.5, 10)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message

    def start(self, host: str, port: int) -> None:
        """Connect in the background: the page serves what SQLite holds meanwhile."""
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _connected(self, client: Any, userdata: Any, flags: Any, reason: Any,
                   props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("desk: broker refused the connection: %s", reason)
            return
        self.desk.broker_connected = True
        client.subscribe(self.topics)
        log.info("desk: connected to the broker; subscribed")

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason: Any,
                      props: Any) -> None:
        self.desk.broker_connected = False
        failed = getattr(reason, "is_failure", True)     # not our own disconnect() at stop
        (log.warning if failed else log.info)("desk: broker connection closed: %s", reason)

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            self.desk.submit(msg.topic, msg.payload, bool(msg.retain))
        except Exception:  # noqa: BLE001 — an exception here would kill paho's thread
            log.exception("desk: message not taken")
