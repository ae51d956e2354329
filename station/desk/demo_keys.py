"""Keys from a raw terminal for the interactive demo, and the terminal put back afterwards.

``key_queue(fd)`` puts the terminal in cbreak mode (keys one by one, no echo), reads keys on a
daemon thread into a queue, and on every exit path stops the reader and then restores the
terminal exactly as it was. Ctrl-C still raises ``KeyboardInterrupt`` (ISIG stays on). What a
key does is the scenario's business (``station.demo.handle_key``), not this module's.
"""
from __future__ import annotations

import contextlib
import os
import queue
import select
import threading
from typing import Iterator


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Keys arrive one by one without echo; the terminal is restored on every exit path
    (Ctrl-C still raises KeyboardInterrupt: ISIG stays on)."""
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_keys(fd: int, keys: queue.SimpleQueue[str], stop: threading.Event) -> None:
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        data = os.read(fd, 64)
        if not data:
            keys.put("q")               # stdin closed
            return
        for ch in data.decode("utf-8", "replace"):
            keys.put(ch)


@contextlib.contextmanager
def key_queue(fd: int) -> Iterator[queue.SimpleQueue[str]]:
    """Terminal ``fd`` in cbreak mode, its keys (one character each) arriving in the yielded
    queue; ``"q"`` is queued when the input closes. On exit the reader is stopped (joined for at
    most 1 s; it polls every 0.1 s) before the terminal is restored."""
    keys: queue.SimpleQueue[str] = queue.SimpleQueue()
    stop = threading.Event()
    with cbreak(fd):
        reader = threading.Thread(target=_read_keys, args=(fd, keys, stop), daemon=True)
        reader.start()
        try:
            yield keys
        finally:
            stop.set()
            reader.join(1)
