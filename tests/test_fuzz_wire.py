"""Bad input through the real broker (docs/BEHAVIOUR.md §4): ≥ 10,000 fuzzed payloads on the
complaint and command topics of a running station. Zero crashes, exactly one ``rejected``
event per message (matched by ``payload_sha256``), zero alarms (the siren and beacon pins never
switch on, no ``alerting``), memory flat; afterwards a real complaint still alarms at once.
"""
from __future__ import annotations

import collections
import gc
import hashlib
import json
import logging
import os
import random
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from helpers import REGION, ROOT, STATION, Mosquitto, station_config, wait_for
from station.desk.clients import make_client
from station.outbox import Outbox, Write
from station.protocol import parse_command, parse_complaint, Rejection
from station.store import Store
from test_protocol_properties import is_valid_complaint

SEED = int(os.environ.get("FUZZ_SEED", "110"))
COUNT = int(os.environ.get("FUZZ_COUNT", "10000"))
CHUNK = 1000                       # payloads per round (memory measured between rounds)
WARMUP = 2000                      # payloads sent before the memory baseline
RSS_GROWTH_MAX_MB = 8.0           # whole process, after the warm-up (allocator, SQLite caches)
HEAP_GROWTH_MAX_MB = 0.5          # Python objects the station still holds afterwards

COMPLAINTS = f"{ROOT}/region/{REGION}/complaints"
CMD = f"{ROOT}/station/{STATION}/cmd"


# --- payloads ---------------------------------------------------------------------------------

def _valid(rng: random.Random) -> dict[str, Any]:
    return {"v": 1, "id": f"fz-{rng.randrange(10**9)}", "region": REGION,
            "priority": rng.choice(["emergency", "urgent", "normal"]),
            "category": "kejahatan", "summary": "Ibu Sari, Jl. Merdeka",
            "reported_at": "2026-11-27T20:15:02Z"}


def _command(rng: random.Random) -> dict[str, Any]:
    return {"v": 1, "cmd_id": f"fc-{rng.randrange(10**9)}",
            "cmd": rng.choice(["ack", "silence", "test", "status"]), "args": {}}


def _junk_value(rng: random.Random) -> Any:
    return rng.choice([None, True, False, 0, -1, 1.5, 1e308, "", "x" * 70,
                       [], {}, [1, [2, [3]]], {"a": {"b": None}}, "\u0000", "é" * 3, "1",
                       "2026-13-45T99:99:99Z", "yesterday", -0.0])


def _breakers(rng: random.Random) -> list[Any]:
    """Ways to make one valid complaint invalid (each is a (key, value) or a whole payload)."""
    return [
        ("v", rng.choice([0, 2, -1, 10**6, "1", 1.0, True, None, [1], {"v": 1}])),
        ("v", None), ("id", None), ("region", None),
        ("id", rng.choice(["", "a" * 65, "with space", "ü-1", "a/b", "#", 5, 1.5, True, [],
                           {"id": "x"}])),
        ("region", rng.choice(["jabar-bandung", "sumsel_prabumulih", "SUMSEL-PRABUMULIH",
                               "sumsel-prabumulih ", "a.b", "+", "#", "", 7, ["x"], "é"])),
        ("priority", rng.choice(["EMERGENCY", "high", "", 1, None, True, ["urgent"],
                                 {"p": "urgent"}])),
        ("category", rng.choice(["k" * 65, 3, [], {}, True])),
        ("summary", rng.choice(["s" * 2001, 3, ["a"], {"a": 1}, False])),
        ("reported_at", rng.choice(["", "2026-11-27", "2026-11-27T20:15:02", "20:15:02Z",
                                    "2026-11-27 20:15:02", "not a date", 1764274502,
                                    "2026-02-30T20:15:02Z", "x" * 65])),
    ]


def bad_complaint(rng: random.Random) -> bytes:
    kind = rng.randrange(16)
    doc = _valid(rng)
    if kind <= 3:                                  # one field broken (or missing)
        key, value = rng.choice(_breakers(rng))
        if value is None and rng.random() < 0.5:
            doc.pop(key, None)
        else:
            doc[key] = value
        return json.dumps(doc).encode()
    if kind == 4:                                  # random bytes
        return rng.randbytes(rng.randrange(0, 400))
    if kind == 5:                                  # invalid UTF-8 inside valid-looking JSON
        raw = json.dumps(doc).encode()
        cut = rng.randrange(1, len(raw) - 1)
        return raw[:cut] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80",
                                       b"\xf8\x88\x80\x80\x80"]) + raw[cut:]
    if kind == 6:                                  # truncated JSON
        raw = json.dumps(doc).encode()
        return raw[:rng.randrange(0, len(raw) - 1)]
    if kind == 7:                                  # JSON that is not an object
        return json.dumps(rng.choice([[doc], None, 1, "text", True, 1.5, [], ""])).encode()
    if kind == 8:                                  # deep nesting
        depth = rng.randrange(100, 8000)
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        return (opener * depth + "1" + closer * depth).encode()
    if kind == 9:                                  # huge numbers
        digits = rng.choice([400, 4301, 10000])
        doc["v"] = 0
        raw = json.dumps(doc).encode()
        return raw.replace(b'"v": 0', b'"v": ' + b"9" * digits)
    if kind == 10:                                 # NaN / Infinity / 1e400
        doc["v"] = 0
        return json.dumps(doc).encode().replace(
            b'"v": 0', b'"v": ' + rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400"]))
    if kind == 11:                                 # oversize (mostly just over the limit)
        size = rng.choice([16 * 1024 + 1, 16 * 1024 + 500, 20000, 64 * 1024])
        doc["summary"] = "s" * size
        return json.dumps(doc).encode()
    if kind == 12:                                 # lone surrogate escapes
        doc[rng.choice(["category", "summary", "x", "id"])] = "a\ud800b"
        return json.dumps(doc).encode()
    if kind == 13:                                 # byte flips in a valid complaint
        raw = bytearray(json.dumps(doc).encode())
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if kind == 14:                                 # another message type / empty / whitespace
        return rng.choice([b"", b" ", b"\n", b"null", b"{}", json.dumps(_command(rng)).encode(),
                           b'{"v":1}', b"\x00" * 10, b"\xef\xbb\xbf" + json.dumps(doc).encode()])
    doc.update({_junk_key(rng): _junk_value(rng) for _ in range(rng.randrange(1, 4))})
    key, value = rng.choice(_breakers(rng))
    doc[key] = value
    return json.dumps(doc).encode()


def _junk_key(rng: random.Random) -> str:
    return rng.choice(["", "v ", "ID", "__proto__", "constructor", "\u202e", "x" * 200, "args"])


def bad_command(rng: random.Random) -> bytes:
    doc = _command(rng)
    kind = rng.randrange(8)
    if kind == 0:
        doc["cmd_id"] = rng.choice(["", "a" * 65, "bad id", 7, None, []])
    elif kind == 1:
        doc["cmd"] = rng.choice([None, 1, [], {}, "x" * 33, True])
    elif kind == 2:
        doc["args"] = rng.choice([[], "a", 1, True])
    elif kind == 3:
        doc.update(cmd="test", args={"seconds": rng.choice([0, -1, 11, 1e9, "1", True, None,
                                                            [], float("nan")])})
    elif kind == 4:
        doc.update(cmd="ack", args={rng.choice(["complaint_id", "by"]):
                                    rng.choice([5, "bad id", "x" * 70, [], {}])})
    elif kind == 5:
        doc["v"] = rng.choice([2, "1", None, 1.0, False])
    elif kind == 6:
        return bad_complaint(rng)                  # any garbage
    else:
        doc["cmd"] = "\ud800"                      # lone surrogate in an echoed field
    return json.dumps(doc).encode()


def fuzz_payloads(n: int, seed: int) -> list[tuple[str, bytes, bool]]:
    """(topic, payload, retain) × n; every one must be refused by the station."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes, bool]] = []
    while len(out) < n:
        roll = rng.random()
        if roll < 0.78:
            payload = bad_complaint(rng)
            if is_valid_complaint(payload):      # a byte flip may leave it valid: not bad input
                continue
            out.append((COMPLAINTS, payload, False))
        elif roll < 0.995:
            payload = bad_command(rng)
            if not isinstance(parse_command(payload), Rejection):  # an unknown cmd is answered
                continue                                             # ok:false, not rejected
            out.append((CMD, payload, False))
        else:                                      # a retained self-test: never acted on
            out.append((CMD, json.dumps({"v": 1, "cmd_id": f"rt-{len(out)}", "cmd": "test",
                                         "args": {"seconds": 5}}).encode(), True))
    return out


# --- a lean HQ: counts only, so its own memory stays flat ------------------------------------

class Counter:
    """Counts events; each ``rejected`` is ticked off a pre-built tally of the payload hashes
    sent (no allocation per event, so the test's own memory stays flat)."""

    def __init__(self, port: int, expected: collections.Counter[str]) -> None:
        self.types: collections.Counter[str] = collections.Counter()
        self.reasons: collections.Counter[str] = collections.Counter()
        self.remaining = expected.copy()          # sha256 → rejections still to come
        self.rejected = 0
        self.unexpected: list[str] = []           # rejected events for nothing we sent
        self.odd: list[dict[str, Any]] = []       # events other than rejected / ok:false
        self.lock = threading.Lock()
        self.client = make_client()
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            f"{ROOT}/station/+/events", 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        doc = json.loads(msg.payload)
        with self.lock:
            self.types[doc["type"]] += 1
            if doc["type"] == "rejected":
                self.rejected += 1
                self.reasons[doc["reason"]] += 1
                if doc["payload_sha256"] in self.remaining:
                    self.remaining[doc["payload_sha256"]] -= 1
                elif len(self.unexpected) < 100:
                    self.unexpected.append(doc["payload_sha256"])
            elif not (doc["type"] == "cmd_result" and doc["ok"] is False) and not (
                    doc["type"] == "fault" and doc["fault"] == "clock_unsynced"):
                self.odd.append(doc)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    def __init__(self, port: int) -> None:
        self.confirmed = 0
        self.client = make_client(client_id="fuzz-hq")
        self.client.max_inflight_messages_set(100)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(self.client.is_connected, 5, what="publisher connected")

    def _on_publish(self, *args: Any) -> None:
        self.confirmed += 1

    def send(self, batch: list[tuple[str, bytes, bool]]) -> None:
        target = self.confirmed + len(batch)
        for topic, payload, retain in batch:
            self.client.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: self.confirmed >= target, 60, what="broker confirmed the publishes")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sqlite_mb() -> float:
    """SQLite's own heap (page caches, statements) in this process; -1 if unavailable."""
    try:
        import ctypes
        import ctypes.util
        import sqlite3  # noqa: F401 — loads the library this process uses
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        return float(lib.sqlite3_memory_used()) / 2**20
    except (OSError, AttributeError):
        return -1.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# --- the test ---------------------------------------------------------------------------------

class LogCount(logging.Handler):
    """Counts the station's log records by level and keeps the first few errors; it replaces
    pytest's capture (which keeps every record: 10,000 warnings would swamp the memory figure)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.levels: collections.Counter[str] = collections.Counter()
        self.refusals = 0                 # "rejected message on …" lines
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1
        if record.levelno == logging.WARNING and record.msg.startswith("rejected message"):
            self.refusals += 1
        if record.levelno >= logging.ERROR and len(self.errors) < 20:
            self.errors.append(self.format(record))


@pytest.fixture
def station_log() -> Any:
    logger = logging.getLogger("station")
    handler = LogCount()
    old = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old[0])
    logger.propagate = old[1]


@pytest.mark.broker
@pytest.mark.slow
def test_ten_thousand_fuzzed_payloads_through_the_broker(tmp_path, start_station, station_log):
    payloads = fuzz_payloads(COUNT, SEED)
    expected = collections.Counter(hashlib.sha256(p).hexdigest() for _, p, _ in payloads)
    broker = Mosquitto(tmp_path / "broker").start()
    hq = Counter(broker.port, expected)
    pub = Publisher(broker.port)
    # pytest (≥ 9) also hangs its capture handlers on a non-propagating logger: drop them.
    logger = logging.getLogger("station")
    logger.handlers = [h for h in logger.handlers if h is station_log]
    try:
        s = start_station(station_config(tmp_path, broker.port))
        wait_for(lambda: s.station.link.connected, 10, what="station connected")
        time.sleep(0.2)
        # Any relay movement (an alarm, a self-test from a retained command) shows here.
        siren, beacon = s.pin("siren"), s.pin("beacon")
        siren_states, beacon_states = len(siren.states), len(beacon.states)
        started = time.monotonic()
        rss: list[float] = []
        sql: list[float] = []
        for i in range(0, len(payloads), CHUNK):
            if i == WARMUP:
                gc.collect()
                tracemalloc.start()
                heap_before = tracemalloc.take_snapshot()
            if i >= WARMUP:
                rss.append(rss_mb())
                sql.append(sqlite_mb())
            pub.send(payloads[i:i + CHUNK])
            n = min(i + CHUNK, len(payloads))
            wait_for(lambda: hq.rejected >= n and s.station.outbox.pending == 0, 60,
                     interval=0.02, what=f"{n} rejected events")
        elapsed = time.monotonic() - started
        time.sleep(1.0)                           # anything doubled would arrive meanwhile
        gc.collect()
        rss.append(rss_mb())
        sql.append(sqlite_mb())
        heap_after = tracemalloc.take_snapshot()
        tracer_mb = tracemalloc.get_tracemalloc_memory() / 2**20
        tracemalloc.stop()
        # Only what the station, paho and the libraries under it keep; not this test's tallies.
        mine = [tracemalloc.Filter(False, __file__), tracemalloc.Filter(False, "*/_pytest/*"),
                tracemalloc.Filter(False, tracemalloc.__file__)]
        diff = heap_after.filter_traces(mine).compare_to(heap_before.filter_traces(mine),
                                                         "filename")
        heap_growth = sum(d.size_diff for d in diff) / 2**20

        print(f"\nfuzz: {len(payloads)} payloads (seed {SEED}) in {elapsed:.1f} s "
              f"({len(payloads) / elapsed:.0f}/s); rejected {hq.rejected} {dict(hq.reasons)}; "
              f"cmd_result ok:false {hq.types['cmd_result']}; alerting {hq.types['alerting']}; "
              f"relay changes {len(siren.states) - siren_states}; crashes 0; "
              f"RSS {rss[0]:.1f} → {rss[-1]:.1f} MB over {len(payloads) - WARMUP} payloads "
              f"(per round: {' '.join(f'{x:.1f}' for x in rss)}; tracemalloc's own "
              f"{tracer_mb:.1f} MB of it; SQLite's heap {sql[0]:.1f} → {sql[-1]:.1f} MB); "
              f"Python heap kept by the station {heap_growth:+.2f} MB; "
              f"log lines {dict(station_log.levels)}")
        # Zero crashes: loop, link and outbox alive; nothing logged as an error.
        assert s.thread.is_alive() and s.station.link.connected
        assert station_log.errors == []
        # One warning line per refusal (other warnings, e.g. this machine's unsynchronised
        # clock as a fault, are not refusals).
        assert station_log.refusals == len(payloads)
        # Exactly one rejected event per message (by payload hash), and nothing else.
        assert hq.rejected == len(payloads) and hq.unexpected == []
        assert +hq.remaining == collections.Counter() and -hq.remaining == collections.Counter()
        assert hq.types["alerting"] == 0 and hq.types["ack"] == 0 and hq.odd == []
        # Zero alarms: the relays never moved.
        assert len(siren.states) == siren_states and len(beacon.states) == beacon_states
        assert not s.relay_on("siren") and not s.relay_on("beacon")
        # Memory flat.
        assert heap_growth <= HEAP_GROWTH_MAX_MB, [str(d) for d in diff[:5]]
        assert rss[-1] - rss[0] <= RSS_GROWTH_MAX_MB

        # Still alive where it matters: a real complaint alarms, the button acknowledges.
        pub.send([(COMPLAINTS, json.dumps(_valid(random.Random(1))).encode(), False)])
        wait_for(lambda: s.relay_on("siren") and s.relay_on("beacon"), 5, what="relays on")
        wait_for(lambda: hq.types["alerting"] == 1, 5, what="alerting")
        s.press(0.1)
        wait_for(lambda: hq.types["ack"] == 1, 5, what="ack")
        assert not s.relay_on("siren") and not s.relay_on("beacon")
    finally:
        pub.close()
        hq.close()
        broker.stop()


def test_generator_makes_only_bad_input():
    """The oracle check above is independent of the station; the station agrees with it."""
    for topic, payload, retain in fuzz_payloads(2000, SEED + 1):
        if topic == COMPLAINTS:
            assert isinstance(parse_complaint(payload, region=REGION), Rejection), payload
        else:
            assert isinstance(parse_command(payload, retained=retain), Rejection), payload


# --- one write that cannot be stored must not take its neighbours down -------------------------

class _FakeLink:
    connected = True

    def __init__(self) -> None:
        self.published: list[bytes] = []
        self.acked: list[int] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        self.published.append(payload)
        return len(self.published)

    def ack(self, mid: int, qos: int, generation: int) -> bool:
        self.acked.append(mid)
        return True


def test_unserialisable_event_costs_only_its_own_write(tmp_path):
    """Found by the fuzzer: a lone surrogate (``"\\ud800"``) echoed into an event made the
    group commit raise, and every write of the batch — other complaints' alerting events,
    seen ids, PUBACKs — was lost. Now only the bad write's records are dropped."""
    link = _FakeLink()
    path = tmp_path / "state.db"
    outbox = Outbox(lambda: Store(path), link, "t/events")
    outbox.link_up(True)
    good = {"v": 1, "type": "alerting", "event_id": "e-good", "complaint_id": "c-1"}
    bad = {"v": 1, "type": "cmd_result", "event_id": "e-bad", "cmd": "\ud800"}
    outbox._store = Store(path)                    # run the writer's steps synchronously
    outbox._mem_seq = 0
    outbox._handle([outbox_link_up(), Write(events=[good], acks=[(1, 1, 0)], seen=[("c-1", 1.0)]),
                    Write(events=[bad], acks=[(2, 1, 0)]),
                    Write(events=[dict(good, event_id="e-2")], acks=[(3, 1, 0)])])
    assert sorted(link.acked) == [1, 2, 3]
    sent = [json.loads(p)["event_id"] for p in link.published]
    assert sent == ["e-good", "e-2"]
    assert outbox._store.is_seen("c-1")
    outbox._store.close()


def outbox_link_up() -> Any:
    from station.outbox import _Link
    return _Link(True)
