"""systemd service notifications (sd_notify) and a progress-checked watchdog, dependency-free.

``Notifier`` sends ``READY=1``, ``WATCHDOG=1``, ``STATUS=…`` and ``STOPPING=1`` to the socket named
by ``$NOTIFY_SOCKET``: one datagram of ``KEY=value`` lines, as ``sd_notify(3)`` does. Outside
systemd (no ``$NOTIFY_SOCKET``) it is disabled and every call is a no-op. It never raises into
the caller: a failed send is logged once at WARNING and reported as ``False``.

``ProgressWatchdog`` sends ``WATCHDOG=1`` only while every registered part of the service (main
loop, GPIO, outbox) has reported progress recently, so systemd kills (and restarts) a service
whose loop is wedged rather than one whose process merely exists.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Iterable, Mapping

__all__ = ["Notifier", "ProgressWatchdog", "watchdog_interval"]

log = logging.getLogger(__name__)

_FROM_ENV = object()  # sentinel: read $NOTIFY_SOCKET when the Notifier is made


class Notifier:
    """Sends state changes to systemd's notification socket.

    ``socket_path`` is a file-system path (``/run/systemd/notify``) or an abstract socket name
    with a leading ``@``; by default ``$NOTIFY_SOCKET`` is read at construction, and ``None``
    disables the notifier. Safe to call from any thread. Every method returns True when the
    message was sent, False when disabled or the send failed.
    """

    def __init__(self, socket_path: str | object | None = _FROM_ENV) -> None:
        if socket_path is _FROM_ENV:
            socket_path = os.environ.get("NOTIFY_SOCKET")
        self._address = _address(socket_path) if isinstance(socket_path, str) else None
        if isinstance(socket_path, str) and socket_path and self._address is None:
            log.warning("sd_notify disabled: unsupported NOTIFY_SOCKET %r", socket_path)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a usable notification socket address."""
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines in one datagram: ``notify(READY=1, STATUS="up")``.

        Newlines in values are replaced by spaces (one line per key). Never raises.
        """
        if self._address is None:
            return False
        text = "\n".join(f"{k}={_one_line(str(v))}" for k, v in fields.items())
        try:
            with self._lock:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX,
                                               socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(text.encode("utf-8"), self._address)
            return True
        except OSError as exc:
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "sd_notify to %s failed: %s", _show(self._address), exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (``READY=1``), with an optional ``STATUS=`` line."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def watchdog(self) -> bool:
        """Keep-alive ping (``WATCHDOG=1``); needed every ``watchdog_interval()`` seconds."""
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        """One-line status shown by ``systemctl status`` (``STATUS=``)."""
        return self.notify(STATUS=text)

    def stopping(self) -> bool:
        """The service is shutting down (``STOPPING=1``)."""
        return self.notify(STOPPING=1)

    def close(self) -> None:
        """Close the socket; a later call opens a new one. Idempotent."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _address(path: str) -> str | bytes | None:
    """The ``sendto`` address for ``$NOTIFY_SOCKET``; None for anything but a path or ``@name``."""
    if len(path) > 1 and path[0] == "@":
        return b"\0" + path[1:].encode()  # abstract namespace
    if len(path) > 1 and path[0] == "/":
        return path
    return None  # empty, relative, or a kind this module does not speak (vsock:…)


def _show(address: str | bytes) -> str:
    return "@" + address[1:].decode(errors="replace") if isinstance(address, bytes) else address


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """How often to send ``WATCHDOG=1``, in seconds: half of ``WatchdogSec=``.

    Read from ``$WATCHDOG_USEC``; None when the watchdog is off, the value is not a positive
    integer, or ``$WATCHDOG_PID`` names another process (as ``sd_watchdog_enabled(3)``).
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid.strip() != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000


class ProgressWatchdog:
    """Pings systemd's watchdog only while every part of the service makes progress.

    Each part calls ``beat(name)`` whenever it completes a round of work (the main loop once
    per iteration, the GPIO side after handling a timer or edge, the outbox thread after each
    wait or write, busy or idle). The main loop calls ``maybe_ping(now)`` often; it sends
    ``WATCHDOG=1`` at most every ``interval_s`` seconds and only when every part beat within
    the last ``stall_s`` seconds. A stalled part stops the pings, systemd's ``WatchdogSec=``
    expires and the service is killed and restarted. ``stall_s`` should stay below
    ``WatchdogSec=``.

    Parts named in ``parts`` start "just beaten" (start-up gets a full ``stall_s``); ``beat``
    of a new name registers it. ``now`` values come from ``clock`` (default ``time.monotonic``).
    """

    def __init__(self, notifier: Notifier, parts: Iterable[str] = ("loop", "gpio", "outbox"),
                 *, stall_s: float, interval_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s!r}")
        self.notifier = notifier
        self.stall_s = stall_s
        #: seconds between pings; None (no $WATCHDOG_USEC) means never ping
        self.interval_s = watchdog_interval() if interval_s is None else interval_s
        self._clock = clock
        start = clock()
        self._last: dict[str, float] = {name: start for name in parts}
        self._lock = threading.Lock()
        self._last_ping: float | None = None
        self._stalled: tuple[str, ...] = ()

    def beat(self, part: str, now: float | None = None) -> None:
        """Record that ``part`` made progress at ``now`` (default: the clock). Any thread."""
        t = self._clock() if now is None else now
        with self._lock:
            self._last[part] = t

    def stalled(self, now: float) -> list[str]:
        """Parts that have not beaten within ``stall_s`` of ``now``, longest silent first."""
        with self._lock:
            late = [(t, name) for name, t in self._last.items() if now - t > self.stall_s]
        return [name for _, name in sorted(late)]

    def maybe_ping(self, now: float | None = None) -> bool:
        """Send ``WATCHDOG=1`` if every part is healthy and a ping is due; True when sent.

        On the change to stalled (and back) a WARNING is logged and ``STATUS=`` updated, so
        ``systemctl status`` and the journal say which part stopped before systemd kills it.
        """
        t = self._clock() if now is None else now
        stalled = tuple(self.stalled(t))
        if stalled != self._stalled:
            self._report(stalled, t)
        if stalled or self.interval_s is None:
            return False
        if self._last_ping is not None and t - self._last_ping < self.interval_s:
            return False
        self._last_ping = t
        return self.notifier.watchdog()

    def _report(self, stalled: tuple[str, ...], now: float) -> None:
        self._stalled = stalled
        if stalled:
            with self._lock:
                ages = ", ".join(f"{name} {now - self._last[name]:.0f} s" for name in stalled)
            log.warning("watchdog: no progress from %s; pings withheld", ages)
            self.notifier.status(f"stalled: no progress from {ages}")
        else:
            log.info("watchdog: progress resumed; pings resume")
            # Force a ping at once: the previous one may be nearly a WatchdogSec ago.
            self._last_ping = None
