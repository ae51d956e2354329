"""Fault-injection helpers: a TCP chaos proxy, a station process the tests can press and kill,
and the invariant checks every scenario shares.

The proxy sits between the station and the broker on 127.0.0.1 only:

    proxy = ChaosProxy(broker.port).start()       # station config: port=proxy.port
    proxy.cut()        # FIN both sides of every open connection
    proxy.reset()      # RST both sides (SO_LINGER 0)
    proxy.stall()      # hold every byte in both directions (black hole); resume() releases
    proxy.refuse()     # new connections are reset at once; admit() lets them through again
    proxy.stop()

One thread runs a selector over the listener and every socket pair; the control methods queue
an operation for that thread and wait until it ran, so no socket is touched by two threads.
"""
from __future__ import annotations

import json
import os
import queue
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
CHUNK = 65536


class _Pair:
    def __init__(self, down: socket.socket, up: socket.socket) -> None:
        self.down, self.up = down, up
        self.closed = False

    def other(self, s: socket.socket) -> socket.socket:
        return self.up if s is self.down else self.down


class ChaosProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``upstream_port`` and misbehaves on demand."""

    def __init__(self, upstream_port: int, *, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._ops: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = \
            queue.SimpleQueue()
        self._pairs: dict[socket.socket, _Pair] = {}
        self._stalled = False
        self._refusing = False
        self._running = False
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self.accepted = 0          # connections admitted to the broker
        self.refused = 0           # connections reset at once while refusing
        self.bytes = Counter()     # "up" (station → broker) and "down"

    # --- control (any thread) -----------------------------------------------------------------

    def start(self) -> ChaosProxy:
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._running = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._call(self._close_all_and_stop)
        self._thread.join(5)

    def cut(self) -> int:
        """Close every open connection cleanly (FIN to both sides); returns how many."""
        return self._call(lambda: self._close_all(rst=False))

    def reset(self) -> int:
        """Abort every open connection (RST to both sides); returns how many."""
        return self._call(lambda: self._close_all(rst=True))

    def stall(self) -> None:
        """Stop forwarding in both directions, for open and new connections (a black hole:
        the sockets stay open, bytes wait in kernel buffers)."""
        self._call(lambda: self._set_stalled(True))

    def resume(self) -> None:
        self._call(lambda: self._set_stalled(False))

    def refuse(self) -> None:
        """New connections are reset as soon as they are accepted (broker unreachable)."""
        self._call(lambda: setattr(self, "_refusing", True))

    def admit(self) -> None:
        self._call(lambda: setattr(self, "_refusing", False))

    @property
    def open_connections(self) -> int:
        return self._call(lambda: len(self._pairs) // 2)

    def _call(self, fn: Callable[[], Any]) -> Any:
        done = threading.Event()
        box: list[Any] = []
        self._ops.put((lambda: box.append(fn()), done))
        self._wake_w.send(b"x")
        if not done.wait(5):
            raise RuntimeError("chaos proxy thread did not answer")
        return box[0] if box else None

    # --- the proxy thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while self._running:
            for key, _ in self._sel.select(timeout=0.5):
                if key.data == "wake":
                    self._drain_ops()
                elif key.data == "listen":
                    self._accept()
                else:
                    self._forward(key.fileobj)  # type: ignore[arg-type]
        self._sel.close()

    def _drain_ops(self) -> None:
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        while True:
            try:
                fn, done = self._ops.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            finally:
                done.set()

    def _accept(self) -> None:
        try:
            down, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._refusing:
            self.refused += 1
            _abort(down)
            return
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
        except OSError:
            self.refused += 1
            _abort(down)
            return
        self.accepted += 1
        for s in (down, up):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(down, up)
        self._pairs[down] = self._pairs[up] = pair
        if not self._stalled:
            self._sel.register(down, selectors.EVENT_READ, pair)
            self._sel.register(up, selectors.EVENT_READ, pair)

    def _forward(self, src: socket.socket) -> None:
        pair = self._pairs.get(src)
        # A select() batch taken before stall() may still name this socket: forwarding it now
        # would let bytes written after stall() returned slip through the black hole.
        if pair is None or pair.closed or self._stalled:
            return
        dst = pair.other(src)
        try:
            data = src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_pair(pair, rst=False)
            return
        self.bytes["up" if src is pair.down else "down"] += len(data)
        try:
            dst.setblocking(True)
            dst.settimeout(2)
            dst.sendall(data)
            dst.setblocking(False)
        except OSError:
            self._close_pair(pair, rst=True)

    def _set_stalled(self, stalled: bool) -> None:
        if stalled == self._stalled:
            return
        self._stalled = stalled
        for s, pair in list(self._pairs.items()):
            if stalled:
                self._sel.unregister(s)
            else:
                self._sel.register(s, selectors.EVENT_READ, pair)

    def _close_pair(self, pair: _Pair, *, rst: bool) -> None:
        if pair.closed:
            return
        pair.closed = True
        for s in (pair.down, pair.up):
            self._pairs.pop(s, None)
            if not self._stalled:
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
            if rst:
                _abort(s)
            else:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _close_all(self, *, rst: bool) -> int:
        pairs = {id(p): p for p in self._pairs.values()}.values()
        n = 0
        for p in list(pairs):
            self._close_pair(p, rst=rst)
            n += 1
        return n

    def _close_all_and_stop(self) -> None:
        self._close_all(rst=True)
        self._running = False
        self._listener.close()


def _abort(s: socket.socket) -> None:
    """Close with RST instead of FIN."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


# --- a station process the test can press, inspect and SIGKILL --------------------------------

class HarnessStation:
    """``polres-station run`` in a child process (``station_harness.py`` calls ``cli.main``
    with a MockFactory it keeps), so a test can press the button, read the relay pins and
    SIGKILL the real process at any moment."""

    def __init__(self, config_path: Path, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self._replies: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.starts = 0

    def start(self) -> HarnessStation:
        log = open(self.log_path, "a")
        log.write(f"--- start {self.starts} ---\n")
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "station_harness.py"), str(self.config_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        self._replies = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(self.proc, self._replies),
                         daemon=True).start()
        self.starts += 1
        self.request("ping", timeout=15)
        return self

    @staticmethod
    def _read(proc: subprocess.Popen[str], out: queue.SimpleQueue[dict[str, Any]]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                out.put(json.loads(line))
            except ValueError:
                pass

    def request(self, cmd: str, timeout: float = 5.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        reply = self._replies.get(timeout=timeout)
        return reply

    def press(self, hold: float = 0.12) -> None:
        """Press the acknowledge button (returns after the release)."""
        self.request(f"press {hold}")

    def press_async(self, hold: float = 0.12) -> None:
        """Start a press and return at once (the kill may land during it)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"press-async {hold}\n")
        self.proc.stdin.flush()

    def pins(self) -> dict[str, Any]:
        return self.request("pins")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(15)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --- invariants over what HQ received ---------------------------------------------------------

def by_event_id(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One event per ``event_id`` (HQ's dedup): re-sends of the same event count once."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        out.setdefault(e["event_id"], e)
    return out


def per_complaint(events: Iterable[dict[str, Any]], type_: str) -> dict[str, set[str]]:
    """complaint_id → the distinct event_ids of ``type_`` events about it."""
    out: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.get("type") == type_:
            out[e["complaint_id"]].add(e["event_id"])
    return out


def seq_problems(events: Iterable[dict[str, Any]]) -> list[str]:
    """``seq`` must be gap-free from 1 (or from the first seen) and one event per seq."""
    unique = by_event_id(events)
    seqs: dict[int, set[str]] = defaultdict(set)
    for eid, e in unique.items():
        seqs[e["seq"]].add(eid)
    problems = [f"seq {s} used by {len(ids)} events" for s, ids in seqs.items() if len(ids) > 1]
    if seqs:
        lo, hi = min(seqs), max(seqs)
        missing = sorted(set(range(lo, hi + 1)) - set(seqs))
        if missing:
            problems.append(f"{len(missing)} seq gaps between {lo} and {hi}: {missing[:10]}")
    return problems


def resends(events: list[dict[str, Any]]) -> int:
    """Events received more than once with the same event_id (harmless: HQ dedups)."""
    return len(events) - len(by_event_id(events))


# --- HQ dispatch as the tests play it ---------------------------------------------------------

class Dispatch:
    """HQ's side of the contract on top of the test ``HQ`` client: publish complaints, answer
    a ``resync_request`` by re-sending every complaint not yet acknowledged (docs/INTERFACE.md), and
    judge what came back."""

    def __init__(self, hq: Any, topic: str) -> None:
        self.hq = hq
        self.topic = topic
        self.sent: list[str] = []
        self.resent = 0
        self._answered: set[str] = set()

    def send(self, cid: str, *, priority: str = "normal", wait: bool = False) -> None:
        from station.protocol import complaint_payload
        payload = complaint_payload(complaint_id=cid, region=self.hq_region, priority=priority)
        info = self.hq.client.publish(self.topic, payload, qos=1)
        if cid not in self.sent:
            self.sent.append(cid)
        if wait:
            info.wait_for_publish(10)

    @property
    def hq_region(self) -> str:
        from helpers import REGION
        return REGION

    def answer_resyncs(self) -> int:
        """Re-send unacknowledged complaints once per new ``resync_request``."""
        new = [e for e in self.hq.of_type("resync_request") if e["event_id"] not in self._answered]
        for e in new:
            self._answered.add(e["event_id"])
            acked = set(per_complaint(self.hq.events, "ack"))
            for cid in self.sent:
                if cid not in acked:
                    self.send(cid)
                    self.resent += 1
        return len(new)

    def alerted(self) -> set[str]:
        return set(per_complaint(self.hq.of_type("alerting"), "alerting"))

    def acked(self) -> set[str]:
        return set(per_complaint(self.hq.of_type("ack"), "ack"))

    def wait_alerted(self, ids: Iterable[str] | None = None, timeout: float = 20.0) -> None:
        want = set(self.sent if ids is None else ids)

        def done() -> bool:
            self.answer_resyncs()
            return want <= self.alerted()
        _wait(done, timeout, lambda: f"alerting for {sorted(want - self.alerted())[:10]}")

    def wait_acked(self, ids: Iterable[str] | None = None, timeout: float = 20.0) -> None:
        want = set(self.sent if ids is None else ids)

        def done() -> bool:
            self.answer_resyncs()
            return want <= self.acked()
        _wait(done, timeout, lambda: f"acks for {sorted(want - self.acked())[:10]}")

    def verdict(self, ids: Iterable[str] | None = None) -> dict[str, Any]:
        """The figures every scenario reports; the caller asserts they are clean."""
        ids = list(self.sent if ids is None else ids)
        events = list(self.hq.events)
        alerts = per_complaint(events, "alerting")
        acks = per_complaint(events, "ack")
        return {
            "complaints": len(ids),
            "lost": sum(1 for c in ids if c not in alerts),
            "doubled": sum(1 for c in ids if len(alerts.get(c, ())) > 1)
                       + sum(1 for c in ids if len(acks.get(c, ())) > 1),
            "acks": sum(1 for c in ids if c in acks),
            "unexpected": sorted(set(alerts) - set(ids))[:10],
            "seq_problems": seq_problems(events),
            "resent_events": resends(events),
            "resent_complaints": self.resent,
        }


def assert_clean(v: dict[str, Any], *, acked: int | None = None) -> None:
    assert v["lost"] == 0, v
    assert v["doubled"] == 0, v
    assert not v["unexpected"], v
    assert not v["seq_problems"], v
    if acked is not None:
        assert v["acks"] == acked, v


def _wait(pred: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what()}")


def wait_broker_saved(broker: Any, saves: int = 2, timeout: float = 10.0) -> None:
    """Wait until a persistent mosquitto has written its database ``saves`` times from now
    (autosave): what it holds now survives a SIGKILL. Two saves: the first may have started
    before the caller's last change."""
    db = Path(broker.workdir) / "mosquitto.db"

    def mtime() -> int:
        try:
            return db.stat().st_mtime_ns
        except OSError:
            return 0
    seen = [mtime()]

    def saved() -> bool:
        m = mtime()
        if m != seen[-1]:
            seen.append(m)
        return len(seen) > saves
    _wait(saved, timeout, lambda: f"{saves} saves of {db}")
