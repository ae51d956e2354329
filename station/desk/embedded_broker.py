"""A throwaway MQTT broker for the demo: no root, no system service, loopback only.

A ``mosquitto`` binary when one is installed (on PATH or /usr/sbin), else amqtt (pure Python,
the ``demo`` extra) on an asyncio loop in a background thread. Either listens on a free
127.0.0.1 port that stays the same across ``stop()``/``start()`` (the demo's ``b`` key), so
clients reconnect to the same address. amqtt speaks MQTT 3.1.1 only: demo clients use 3.1.1.

``POLRES_DEMO_BROKER=amqtt|mosquitto|auto`` (or ``kind=``) chooses.

>>> with EmbeddedBroker() as b:              # doctest: +SKIP
...     print(b.kind, b.port, b.running)
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ENV_KIND = "POLRES_DEMO_BROKER"
KINDS = ("auto", "mosquitto", "amqtt")
# amqtt drops the session of an anonymous client at disconnect; demo clients therefore send
# this user name (no password), so the station's persistent session survives on amqtt too.
DEMO_USERNAME = "demo"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the demo's broker, the benchmarks, the tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SBIN = (Path("/usr/sbin/mosquitto"),)   # Debian installs it outside a user's PATH


def find_mosquitto(which: Callable[[str], str | None] = shutil.which,
                   fallbacks: tuple[Path, ...] = SBIN) -> str | None:
    """The mosquitto binary: on PATH, else in /usr/sbin; None when not installed."""
    found = which("mosquitto")
    if found:
        return found
    for path in fallbacks:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def resolve_kind(kind: str | None = None, *,
                 which: Callable[[str], str | None] = shutil.which,
                 fallbacks: tuple[Path, ...] = SBIN) -> str:
    """``auto`` (default, or ``$POLRES_DEMO_BROKER``) → ``mosquitto`` if installed, else amqtt."""
    kind = (kind or os.environ.get(ENV_KIND) or "auto").lower()
    if kind not in KINDS:
        raise ValueError(f"broker kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "auto":
        return "mosquitto" if find_mosquitto(which, fallbacks) else "amqtt"
    return kind


def wait_listening(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if not alive():
                raise RuntimeError("broker exited while starting") from None
            time.sleep(0.02)
    raise RuntimeError(f"broker not listening on 127.0.0.1:{port} after {timeout:g} s")


class _Mosquitto:
    """mosquitto with persistence in a temp dir: sessions and queued messages survive a
    ``stop()``/``start()`` (SIGTERM saves the database)."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary, self.port = binary, port
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join([
            f"listener {port} 127.0.0.1", "allow_anonymous true",
            "persistence true", f"persistence_location {workdir}/",
            "log_dest stderr", "log_type error", "max_queued_messages 10000", ""]))
        self.proc: subprocess.Popen[bytes] | None = None
        _give_to_mosquitto_user(workdir)

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        proc = self.proc
        wait_listening(self.port, 10, alive=lambda: proc.poll() is None)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _give_to_mosquitto_user(workdir: Path) -> None:
    """Started as root, mosquitto drops to user ``mosquitto``: let it write its database."""
    if os.geteuid() != 0:
        return
    import pwd
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for path in (workdir, workdir / "mosquitto.conf"):
        os.chown(path, user.pw_uid, user.pw_gid)


class _Amqtt:
    """amqtt on its own asyncio loop in a daemon thread. Its state (sessions, retained
    messages) lives in memory: a ``stop()`` forgets it, as a broker restart without
    persistence does (the station then asks HQ to re-send: ``resync_request``)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="amqtt",
                                        daemon=True)
        self._thread.start()
        self._broker: Any = None
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": False}},
        }

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as e:
            raise RuntimeError("no mosquitto installed and amqtt missing: "
                               "pip install -e '.[desk]' in the checkout (or: make demo)") from e

        async def start() -> Any:
            broker = Broker(self._config(), loop=self._loop)
            await broker.start()
            return broker
        self._broker = self._run(start())
        wait_listening(self.port, 10)

    def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            self._run(self._shutdown(broker), timeout=15.0)

    async def _shutdown(self, broker: Any) -> None:
        """amqtt's shutdown sometimes waits forever on a client handler: give it 5 s, then
        close the listeners and cancel the handlers, so the port is free for ``start()``."""
        try:
            await asyncio.wait_for(broker.shutdown(), 5.0)
            return
        except (TimeoutError, Exception) as e:  # noqa: BLE001 — a demo broker
            logging.getLogger("station.demo").warning("amqtt shutdown stuck (%r); forcing", e)
        for server in list(getattr(broker, "_servers", {}).values()):
            instance = getattr(server, "instance", None)
            if instance is not None:
                instance.close()
        me = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not me:
                task.cancel()

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


class EmbeddedBroker:
    """The demo's broker. ``start()``/``stop()`` may be repeated; ``close()`` ends it for good."""

    def __init__(self, kind: str | None = None, *, port: int | None = None) -> None:
        self.kind = resolve_kind(kind)
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="polres-broker-")
        self._lock = threading.Lock()
        self._running = False
        if self.kind == "mosquitto":
            binary = find_mosquitto()
            if binary is None:
                raise RuntimeError("mosquitto requested but not installed")
            self._impl: _Mosquitto | _Amqtt = _Mosquitto(binary, self.port, Path(self._tmp.name))
        else:
            self._impl = _Amqtt(self.port)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        with self._lock:
            if not self._running:
                self._impl.start()
                self._running = True
        return self

    def stop(self) -> None:
        with self._lock:
            if self._running:
                self._running = False
                self._impl.stop()

    def toggle(self) -> bool:
        """Stop a running broker or start a stopped one; returns whether it now runs."""
        if self._running:
            self.stop()
        else:
            self.start()
        return self._running

    def close(self) -> None:
        self.stop()
        if isinstance(self._impl, _Amqtt):
            self._impl.close()
        self._tmp.cleanup()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
