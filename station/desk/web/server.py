"""The desk's HTTP side (stdlib ``http.server``, one thread per connection).

Routes:
  GET  /                       the page (static/)
  GET  /static/NAME            its script and style
  GET  /api/stations           every station, trouble first (JSON list)
  GET  /api/stations/ID        one station: row, recent events, commands sent from the desk
  GET  /api/stream             server-sent events: a snapshot, then changed rows
  GET  /api/session            {user, csrf, commands, login_required}
  POST /api/login              {user, password}             (only with --allow-commands)
  POST /api/logout
  POST /api/seen               {station}                    desk-side "seen" mark
  POST /api/command            {station, cmd, complaint_id?} (only with --allow-commands)
  GET  /metrics, GET /healthz

Every POST needs the session's CSRF token in ``X-CSRF-Token`` and a JSON object body of at
most ``MAX_BODY`` bytes; bad requests get a 4xx with ``{"error": …}`` and change nothing.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable

from ...protocol import COMMANDS, ID_RE, NAME_RE
from . import metrics
from .auth import Session, Sessions
from .core import Desk

log = logging.getLogger("station.desk.web")

MAX_BODY = 4096
KEEPALIVE_S = 15.0
MAX_STREAMS = 64
STATIC = {"desk.js": "text/javascript", "desk.css": "text/css", "index.html": "text/html"}
COOKIE = "polres_desk"


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class WebDesk:
    """What the handlers need: the desk, sessions, and the command sender (None: read-only)."""

    def __init__(self, desk: Desk, *, sessions: Sessions,
                 send_command: Callable[[str, str, dict[str, Any], str, str], dict[str, Any]]
                 | None = None, tls: bool = False, title: str = "Polres 110 — national desk"
                 ) -> None:
        self.desk = desk
        self.sessions = sessions
        self.send_command = send_command
        self.tls = tls
        self.title = title
        self.streams = 0
        self.streams_lock = threading.Lock()
        self.closing = threading.Event()
        self.static = {name: resources.files(__package__).joinpath("static", name).read_bytes()
                       for name in STATIC}

    @property
    def login_required(self) -> bool:
        return self.send_command is not None


class Handler(BaseHTTPRequestHandler):
    server_version = "polres-desk"
    protocol_version = "HTTP/1.1"
    web: WebDesk                       # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 — stdlib's name
        log.debug("%s %s", self.address_string(), format % args)

    # --- plumbing -----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; style-src 'self'; script-src 'self'; "
                         "media-src 'self' data:; frame-ancestors 'none'")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc, ensure_ascii=False).encode("utf-8"),
                   "application/json; charset=utf-8", headers)

    def _session_id(self) -> str | None:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:  # noqa: BLE001 — a malformed cookie header is no session
            return None
        morsel = cookie.get(COOKIE)
        return morsel.value if morsel else None

    def _session(self) -> Session | None:
        return self.web.sessions.get(self._session_id())

    def _cookie(self, sid: str) -> dict[str, str]:
        secure = "; Secure" if self.web.tls else ""
        return {"Set-Cookie": f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/{secure}"}

    def _body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if int(length) > MAX_BODY:
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"body larger than {MAX_BODY} bytes")
        raw = self.rfile.read(int(length))
        if "json" not in self.headers.get("Content-Type", ""):
            raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "body must be application/json")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
        if not isinstance(doc, dict):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "body is not a JSON object")
        return doc

    def _checked_session(self, *, need_user: bool) -> Session:
        """The session of a state-changing request: CSRF token checked, user if needed."""
        session = self._session()
        if not Sessions.csrf_ok(session, self.headers.get("X-CSRF-Token")):
            raise BadRequest(HTTPStatus.FORBIDDEN, "missing or wrong CSRF token")
        assert session is not None
        if need_user and not session.user:
            raise BadRequest(HTTPStatus.UNAUTHORIZED, "log in first")
        return session

    # --- dispatch -----------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 — stdlib's name
        self._dispatch(GET_ROUTES)

    def do_HEAD(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] == "/api/stream":      # a stream has no head to give
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "GET the stream"})
            return
        self._dispatch(GET_ROUTES)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(POST_ROUTES)

    def _dispatch(self, routes: list[tuple[re.Pattern[str], Callable[..., None]]]) -> None:
        path = self.path.split("?", 1)[0]
        try:
            for pattern, handler in routes:
                m = pattern.fullmatch(path)
                if m:
                    handler(self, *m.groups())
                    return
            raise BadRequest(HTTPStatus.NOT_FOUND, f"no such resource: {path[:80]}")
        except BadRequest as e:
            if self.command == "POST":
                self.close_connection = True     # an unread body must not become a request
            self._json(e.status, {"error": str(e)})
        except (BrokenPipeError, ConnectionResetError):
            pass

    # --- GET ----------------------------------------------------------------------------------

    def page(self) -> None:
        self._send(200, self.web.static["index.html"], "text/html; charset=utf-8")

    def static(self, name: str) -> None:
        if name not in STATIC:
            raise BadRequest(HTTPStatus.NOT_FOUND, "no such file")
        self._send(200, self.web.static[name], f"{STATIC[name]}; charset=utf-8")

    def stations(self) -> None:
        self._json(200, self.web.desk.rows())

    def station(self, name: str) -> None:
        if not NAME_RE.match(name):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "not a station id")
        detail = self.web.desk.detail(name)
        if detail is None:
            raise BadRequest(HTTPStatus.NOT_FOUND, f"unknown station {name}")
        self._json(200, detail)

    def session(self) -> None:
        session = self._session()
        headers = None
        if session is None:
            sid = self.web.sessions.anonymous()
            session = self.web.sessions.get(sid)
            headers = self._cookie(sid)
        assert session is not None
        self._json(200, {"user": session.user or None, "csrf": session.csrf,
                         "commands": self.web.send_command is not None,
                         "login_required": self.web.login_required,
                         "title": self.web.title}, headers)

    def healthz(self) -> None:
        d = self.web.desk
        ok = d.broker_connected
        self._json(200 if ok else 503, {"ok": ok, "broker_connected": ok,
                                        "stations": len(d.stations),
                                        "last_message_at": d.last_message})

    def metrics(self) -> None:
        self._send(200, metrics.render(self.web.desk).encode("utf-8"),
                   "text/plain; version=0.0.4; charset=utf-8")

    def stream(self) -> None:
        with self.web.streams_lock:
            if self.web.streams >= MAX_STREAMS:
                raise BadRequest(HTTPStatus.SERVICE_UNAVAILABLE, "too many listening pages")
            self.web.streams += 1
        listener, snapshot = self.web.desk.listen()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            self._event(snapshot)
            self._pump(listener)
        finally:
            self.web.desk.unlisten(listener)
            with self.web.streams_lock:
                self.web.streams -= 1
            self.close_connection = True

    def _pump(self, listener: Any) -> None:
        last = time.monotonic()
        while not self.web.closing.is_set() and not listener.dropped:
            try:
                message = listener.queue.get(timeout=1.0)
            except Exception:  # noqa: BLE001 — queue.Empty: keep the connection alive
                if time.monotonic() - last > KEEPALIVE_S:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    last = time.monotonic()
                continue
            if message is None:
                return
            self._event(message)
            last = time.monotonic()

    def _event(self, doc: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(doc, ensure_ascii=False).encode() + b"\n\n")
        self.wfile.flush()

    # --- POST ---------------------------------------------------------------------------------

    def login(self) -> None:
        if not self.web.login_required:
            raise BadRequest(HTTPStatus.NOT_FOUND, "this desk is read-only: no login")
        self._checked_session(need_user=False)
        body = self._body()
        user, password = body.get("user"), body.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or len(user) > 64:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "user and password (strings) required")
        sid = self.web.sessions.login(user, password)
        if sid is None:
            log.warning("desk: failed login for %r from %s", user, self.client_address[0])
            raise BadRequest(HTTPStatus.UNAUTHORIZED, "wrong user or password")
        self.web.sessions.logout(self._session_id())
        log.info("desk: %s logged in from %s", user, self.client_address[0])
        self._json(200, {"user": user}, self._cookie(sid))

    def logout(self) -> None:
        self._checked_session(need_user=False)
        self.web.sessions.logout(self._session_id())
        self._json(200, {"user": None})

    def seen(self) -> None:
        session = self._checked_session(need_user=self.web.login_required)
        name = self._body().get("station")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "station: not a station id")
        if not self.web.desk.mark_seen(name, session.user or None):
            raise BadRequest(HTTPStatus.NOT_FOUND, f"unknown station {name}")
        self._json(200, {"station": name, "seen": True})

    def send(self) -> None:
        if self.web.send_command is None:
            raise BadRequest(HTTPStatus.FORBIDDEN,
                             "commands are off: the desk runs without --allow-commands")
        session = self._checked_session(need_user=True)
        body = self._body()
        name, cmd = body.get("station"), body.get("cmd")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "station: not a station id")
        if name not in self.web.desk.stations:
            raise BadRequest(HTTPStatus.NOT_FOUND, f"unknown station {name}")
        if cmd not in COMMANDS:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"cmd: one of {', '.join(COMMANDS)}")
        args: dict[str, Any] = {}
        cid = body.get("complaint_id")
        if cid is not None:
            if cmd != "ack" or not isinstance(cid, str) or not ID_RE.match(cid):
                raise BadRequest(HTTPStatus.BAD_REQUEST, "complaint_id: ack only, an id")
            args["complaint_id"] = cid
        result = self.web.send_command(name, cmd, args, session.user, self.client_address[0])
        self._json(202 if result.get("published") else 502, result)


GET_ROUTES: list[tuple[re.Pattern[str], Callable[..., None]]] = [
    (re.compile(r"/"), Handler.page),
    (re.compile(r"/static/([a-z.]{1,32})"), Handler.static),
    (re.compile(r"/api/stations"), Handler.stations),
    (re.compile(r"/api/stations/([^/]{1,200})"), Handler.station),
    (re.compile(r"/api/stream"), Handler.stream),
    (re.compile(r"/api/session"), Handler.session),
    (re.compile(r"/healthz"), Handler.healthz),
    (re.compile(r"/metrics"), Handler.metrics),
]
POST_ROUTES: list[tuple[re.Pattern[str], Callable[..., None]]] = [
    (re.compile(r"/api/login"), Handler.login),
    (re.compile(r"/api/logout"), Handler.logout),
    (re.compile(r"/api/seen"), Handler.seen),
    (re.compile(r"/api/command"), Handler.send),
]


class DeskServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class DeskServer6(DeskServer):
    address_family = socket.AF_INET6


def make_server(web: WebDesk, host: str, port: int, *, ssl_context: Any = None) -> DeskServer:
    """A bound server (not yet serving); TLS when ``ssl_context`` is given. ``port`` 0 picks
    a free port (``server.server_address``)."""
    handler = type("BoundHandler", (Handler,), {"web": web})
    cls: type[DeskServer] = DeskServer6 if ":" in host else DeskServer
    server = cls((host, port), handler)
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    return server
