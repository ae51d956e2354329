"""Command-line plumbing shared by every subcommand, on both sides of the wire.

A leaf: it imports the config room (for the one ``host:port`` parser) and the errors, never a
subcommand, the service or the desk. What lives here: exit codes, the ``--config`` and broker
options, logging set-up, the pin factory a config asks for, and :func:`run_handler`, which maps
the package's exceptions to a message and an exit code (piwheels' ``terminal.py`` does the same).

Exit codes (docs/CLI.md):
  0  success                      1  failure (self-test failed, publish refused, no answer)
  2  usage error                  69 broker unreachable (EX_UNAVAILABLE)
  74 state database unusable (EX_IOERR)   78 configuration invalid (EX_CONFIG)
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import threading
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, TextIO

from .config import BrokerAddress, parse_address
from .errors import ConfigError, HardwareError, PublishRefused, StorageError

if TYPE_CHECKING:
    from gpiozero import Factory

    from .config import Config


class Exit(IntEnum):
    """Exit codes of every ``polres-station`` subcommand (sysexits.h where one fits)."""

    OK = 0
    FAIL = 1
    USAGE = 2
    UNAVAILABLE = 69
    IOERR = 74
    CONFIG = 78


DEFAULT_CONFIG = Path("/etc/polres-station/station.yaml")
EXIT_EPILOG = ("exit codes: 0 ok, 1 failure, 2 usage, 69 broker unreachable, "
               "74 state database unusable, 78 configuration invalid")


def config_arg(p: argparse.ArgumentParser) -> None:
    """``-c/--config PATH`` (default /etc/polres-station/station.yaml)."""
    p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                   help=f"station config file (default {DEFAULT_CONFIG})")


def broker_address(text: str) -> BrokerAddress:
    """argparse type for ``--broker``: the config's own parser, so both sides agree.

        >>> broker_address("[::1]:1884")
        BrokerAddress(host='::1', port=1884)
    """
    parsed = parse_address(text, 1883)
    if isinstance(parsed, str):
        raise argparse.ArgumentTypeError(parsed)
    return parsed


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0 (a usage error otherwise: ``nan``
    waits forever, a negative one fails inside ``sleep``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number of seconds above 0")
    return value


def seconds_or_zero(text: str) -> float:
    """argparse type: like :func:`seconds`, 0 allowed."""
    return 0.0 if text.strip() in ("0", "0.0") else seconds(text)


def broker_args(p: argparse.ArgumentParser) -> None:
    """Connection options shared by every client command (HQ, desk, technician)."""
    p.add_argument("--broker", type=broker_address, default=BrokerAddress("127.0.0.1", 1883),
                   help="HOST:PORT or [V6]:PORT (default 127.0.0.1:1883)")
    p.add_argument("--root", default="polri/110", help="topic root (default %(default)s)")
    p.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    p.add_argument("--ca-file", type=Path, help="CA certificate: enables TLS")
    p.add_argument("--cert-file", type=Path, help="client certificate (TLS)")
    p.add_argument("--key-file", type=Path, help="client key (TLS)")
    p.add_argument("--username")
    p.add_argument("--password-file", type=Path, help="file holding the password")


def load_config_arg(args: argparse.Namespace, *, refuse_placeholders: bool = False) -> Config:
    """The validated config named by ``--config`` (raises ConfigError); with
    ``refuse_placeholders`` (``check-config``, ``run``) the unedited example is refused too."""
    from .config import load_config
    return load_config(args.config, refuse_placeholders=refuse_placeholders)


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class JournalPriority(IntEnum):
    """syslog priorities as sd-daemon(3) prefixes (``<3>``): ``journalctl -p warning`` shows
    ERR and WARNING (and worse)."""

    CRIT = 2
    ERR = 3
    WARNING = 4
    INFO = 6
    DEBUG = 7


def journal_priority(levelno: int) -> JournalPriority:
    """The journal priority of a :mod:`logging` level (NOTSET and below INFO: DEBUG)."""
    for floor, priority in ((logging.CRITICAL, JournalPriority.CRIT),
                            (logging.ERROR, JournalPriority.ERR),
                            (logging.WARNING, JournalPriority.WARNING),
                            (logging.INFO, JournalPriority.INFO)):
        if levelno >= floor:
            return priority
    return JournalPriority.DEBUG


class JournalFormatter(logging.Formatter):
    """Prefixes every line of a record (a traceback too) with its priority, ``<3>ERROR …``:
    journald takes each line of a stream as one entry, and an unprefixed one as INFO."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{journal_priority(record.levelno).value}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def journal_stream(stream: TextIO | None = None,
                   env: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` (default stderr) is connected to the journal: systemd sets
    ``JOURNAL_STREAM=<device>:<inode>`` of the stream it connected, and a redirect in between
    (``ExecStart=sh -c '… 2>file'``, a technician's shell) leaves it set but wrong."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):   # closed, or not backed by a descriptor
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose lines can be held and written together: the service's loop holds
    them while it works through a burst (:func:`hold_lines`), so that 1,000 complaints cost a
    few writes instead of 1,000 — each write released the GIL, and the loop waited to get it
    back (bench/: py-spy). A line of WARNING or worse is never held: it goes out at once,
    after the lines held before it. At most ``MAX_HELD`` lines wait."""

    MAX_HELD = 256

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._held: list[str] | None = None

    def hold_lines(self) -> None:
        self.acquire()
        try:
            if self._held is None:
                self._held = []
        finally:
            self.release()

    def write_held(self) -> None:
        """Write the held lines (one write) and stop holding."""
        self.acquire()
        try:
            self._write_held()
            self._held = None
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        held = self._held             # handle() holds the handler's lock around emit()
        if held is None:
            super().emit(record)
            return
        try:
            held.append(self.format(record) + self.terminator)
        except Exception:  # noqa: BLE001 — as StreamHandler.emit: logging never raises
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or len(held) >= self.MAX_HELD:
            self._write_held()

    def _write_held(self) -> None:
        if not self._held:
            return
        text = "".join(self._held)
        self._held.clear()
        try:
            self.stream.write(text)
            self.flush()
        except Exception:  # noqa: BLE001 — as StreamHandler.emit: logging never raises
            pass


def hold_lines() -> list[LineHandler]:
    """Hold the lines of every :class:`LineHandler` on the root logger until
    :func:`release_lines` (the handlers returned)."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, LineHandler)]
    for h in handlers:
        h.hold_lines()
    return handlers


def release_lines(handlers: list[LineHandler]) -> None:
    """Write what :func:`hold_lines` held, in one write per handler."""
    for h in handlers:
        h.write_held()


def setup_logging(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Log to ``stream`` (default stderr) at ``level``, one line per event; each line carries
    its journal priority (``<4>WARNING …``) when the stream is the journal's."""
    stream = stream or sys.stderr
    journal = journal_stream(stream)
    # No line shows the process (journald records the PID itself): without this each record
    # makes a getpid() system call, a tenth of the loop's time in a burst (bench/: py-spy).
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineHandler(stream)
    handler.setFormatter(JournalFormatter(LOG_FORMAT) if journal
                         else logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    if journal:
        # Python warnings (gpiozero's PinFactoryFallback …) and a crash's traceback would
        # otherwise reach the journal unprefixed, i.e. at INFO.
        logging.captureWarnings(True)
        sys.excepthook = _log_crash
        threading.excepthook = lambda a: _log_crash(a.exc_type, a.exc_value or a.exc_type(),
                                                    a.exc_traceback, thread=a.thread)


def _log_crash(exc_type: type[BaseException], exc: BaseException | None, tb: Any,
               thread: threading.Thread | None = None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc or exc_type(), tb)
        return
    where = f" in thread {thread.name}" if thread is not None else ""
    logging.getLogger("station").critical("unhandled exception%s", where,
                                          exc_info=(exc_type, exc or exc_type(), tb))


def say_error(text: str) -> None:
    """An error line on stderr for a person or the journal (``<3>`` prefix under systemd, so
    a refused start — exit 78, 74, GPIO — shows in ``journalctl -p warning``)."""
    prefix = f"<{JournalPriority.ERR.value}>" if journal_stream() else ""
    for line in text.split("\n"):
        print(prefix + line, file=sys.stderr)


def pin_factory_for(config: Config) -> Factory | None:
    """MockFactory for ``pin_factory: mock``; otherwise None (the hardware room chooses)."""
    if config.gpio.pin_factory != "mock":
        return None
    from gpiozero.pins.mock import MockFactory
    return MockFactory()


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one subcommand; the package's errors become a message on stderr and an exit code."""
    try:
        return handler(args)
    except ConfigError as e:
        say_error(f"configuration invalid: {e.source or ''}")
        for problem in e.problems:
            say_error(f"  {problem}")
        return Exit.CONFIG
    except StorageError as e:
        say_error(f"state database unusable: {e}")
        if getattr(e, "recoverable_by_quarantine", False) and args.command != "quarantine-db":
            config = getattr(args, "config", DEFAULT_CONFIG)
            option = "" if config == DEFAULT_CONFIG else f" -c {config}"
            say_error(f"recovery: systemctl stop polres-station; polres-station quarantine-db"
                      f"{option}; systemctl start polres-station")
        return Exit.IOERR
    except HardwareError as e:
        say_error(f"GPIO: {e}")
        return Exit.FAIL
    except PublishRefused as e:
        print(f"refused by the broker: {e}", file=sys.stderr)
        return Exit.FAIL
    except ConnectionError as e:
        say_error(f"broker unreachable: {e}")
        return Exit.UNAVAILABLE

