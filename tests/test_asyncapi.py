"""docs/asyncapi.yaml against the code: HQ's developers generate clients and validators from it,
so it must describe what the station really sends and accepts (docs/INTERFACE.md).

- The document hangs together: AsyncAPI 3.0, every ``$ref`` resolves, every event type, reject
  reason, priority, fault and the other fixed sets of ``station.protocol`` is in it.
- What a real station publishes on a real mosquitto — every event type, status, presence
  (birth, clean stop, last will) — validates against its schema.
- Complaints and commands: the schema accepts exactly what ``protocol.parse_complaint`` /
  ``parse_command`` accept, on curated examples and on hypothesis-generated ones.
"""
from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import paho.mqtt.client as mqtt
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from helpers import (
    HQ, REGION, ROOT, STATION, Mosquitto, RunningStation, station_config, wait_for,
)
from station import protocol
from station.desk.clients import make_client
from station.store import Store

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]
EVENT_SCHEMA = {t: f"{''.join(w.title() for w in t.split('_'))}Event" for t in
                (str(e) for e in protocol.EventType)}


def validator(name: str) -> Draft7Validator:
    """A validator for one schema of the document, its ``$ref``s resolved in the document."""
    return Draft7Validator({"$ref": f"#/components/schemas/{name}",
                            "components": DOC["components"]})


def errors(name: str, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator(name).iter_errors(doc)]


# --- the document itself ----------------------------------------------------------------------

def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_document_is_asyncapi_3_and_every_ref_resolves() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    for ref in _refs(DOC):
        _resolve(ref)                        # KeyError names the dangling reference
    for name in SCHEMAS:
        Draft7Validator.check_schema(SCHEMAS[name])


def test_every_channel_names_its_parameters_and_every_operation_its_channel() -> None:
    for name, channel in DOC["channels"].items():
        params = {p.strip("{}") for p in channel["address"].split("/") if p.startswith("{")}
        assert params == set(channel.get("parameters", {})), name
        assert channel["messages"], name
    for name, op in DOC["operations"].items():
        channel = _resolve(op["channel"]["$ref"])
        for message in op["messages"]:
            assert _resolve(message["$ref"]) in channel["messages"].values(), name


def test_the_topics_are_the_ones_protocol_builds() -> None:
    t = protocol.Topics(root="{root}", station="{station}", region="{region}")
    addresses = {c["address"] for c in DOC["channels"].values()}
    built = {t.complaints, t.events, t.status, t.cmd}
    presence = getattr(t, "presence", None)      # the presence topic, once protocol has it
    if presence is not None:
        built.add(presence)
    assert built <= addresses
    assert "{root}/station/{station}/presence" in addresses


def test_every_fixed_set_of_the_code_is_in_the_schemas() -> None:
    events = DOC["channels"]["events"]["messages"]
    assert set(events) == {str(e) for e in protocol.EventType}
    for type_, schema in EVENT_SCHEMA.items():
        assert schema in SCHEMAS, type_
    envelope = SCHEMAS["EventEnvelope"]["properties"]["type"]["enum"]
    assert set(envelope) == {str(e) for e in protocol.EventType}
    reasons = set(SCHEMAS["RejectedEvent"]["allOf"][1]["properties"]["reason"]["enum"])
    assert {str(r) for r in protocol.RejectReason} <= reasons
    assert SCHEMAS["Priority"]["enum"] == list(protocol.Priority)
    fields = {t: SCHEMAS[EVENT_SCHEMA[t]]["allOf"][1]["properties"] for t in ("ack", "selftest")}
    assert set(fields["ack"]["method"]["enum"]) == {str(m) for m in protocol.AckMethod}
    assert set(fields["selftest"]["trigger"]["enum"]) == {str(t) for t in protocol.Trigger}
    assert set(fields["selftest"]["result"]["enum"]) == {str(r) for r in protocol.SelfTestResult}
    status = SCHEMAS["Status"]["properties"]
    assert set(status["button"]["enum"]) == {str(b) for b in protocol.ButtonState}
    presence = SCHEMAS["Presence"]["properties"]
    assert set(presence["state"]["enum"]) == {str(s) for s in protocol.StationState}
    assert set(presence["reason"]["enum"]) == {str(r) for r in protocol.OfflineReason}
    described = SCHEMAS["FaultFields"]["properties"]["fault"]["description"]
    assert all(str(f) in described for f in protocol.Fault)
    # JSON Schema patterns are ECMA-262, where "$" is the very end; Python needs "\Z" for it.
    assert SCHEMAS["Id"]["pattern"] == protocol.ID_RE.pattern.replace("\\Z", "$")
    assert SCHEMAS["Name"]["pattern"] == protocol.NAME_RE.pattern.replace("\\Z", "$")
    for cmd in protocol.COMMANDS:
        assert cmd in SCHEMAS["Command"]["properties"]["cmd"]["description"]


# QoS and retained flag of each topic (docs/INTERFACE.md §2): every operation says both.
RETAINED = {"complaints": False, "events": False, "status": True, "presence": True, "cmd": False}


def test_every_operation_binds_the_qos_and_retained_flag_of_its_topic() -> None:
    for name, op in DOC["operations"].items():
        channel = op["channel"]["$ref"].rsplit("/", 1)[-1]
        assert op["bindings"]["mqtt"] == {"qos": 1, "retain": RETAINED[channel]}, name


# --- what a real station publishes ------------------------------------------------------------

class Tap:
    """Every message under ``{root}/station/#``, raw, in arrival order."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self.client = make_client(protocol="5")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(f"{ROOT}/station/#", 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(self.client.is_connected, 5, what="tap connected")
        time.sleep(0.05)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def on(self, leaf: str) -> list[dict[str, Any]]:
        with self._lock:
            return [doc for topic, doc, _ in self.messages if topic.endswith("/" + leaf)]

    def events(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.on("events") if e.get("type") == type_]

    def wait_event(self, type_: str, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]] | None:
            hits = [e for e in self.events(type_)
                    if all(e.get(k) == v for k, v in match.items())]
            return hits if len(hits) >= count else None
        return wait_for(found, 10, what=f"{type_} {match}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.slow
@pytest.mark.broker
def test_what_a_real_station_publishes_validates(tmp_path: Path) -> None:
    """One station on mosquitto is driven through every event type; each document it
    publishes validates against its schema, and every event type was seen."""
    broker = Mosquitto(tmp_path / "broker").start()
    tap = Tap(broker.port)
    hq = HQ(broker.port)
    synced = [False]
    cfg = station_config(tmp_path, broker.port, alarm={"siren_max_s": 0.3},
                         heartbeat={"interval_s": 1})
    # The station had a session before; this fresh broker has none: `resync_request`.
    (tmp_path / "state").mkdir()
    with Store(tmp_path / "state" / "state.db") as store:
        store.set_meta("session_known", "1")
        store.set_meta("session_ok_at", str(time.time() - 60))
    s = RunningStation(cfg, synced=lambda: synced[0])
    try:
        wait_for(lambda: tap.on("status"), 10, what="first status")
        tap.wait_event("fault", fault="clock_unsynced")
        synced[0] = True
        tap.wait_event("fault_cleared", fault="clock_unsynced")

        hq.complaint("c-1", priority="urgent")
        tap.wait_event("alerting", complaint_id="c-1")
        tap.wait_event("escalated", complaint_id="c-1")
        s.press()
        tap.wait_event("ack", complaint_id="c-1", method="button")

        hq.complaint("c-2", priority="emergency")
        tap.wait_event("alerting", complaint_id="c-2")
        hq.command("ack", cmd_id="k-1", complaint_id="c-2", by="desk-operator")
        tap.wait_event("ack", complaint_id="c-2", method="remote")
        hq.command("test", cmd_id="k-2", seconds=0.2)
        tap.wait_event("selftest", trigger="remote")
        hq.command("status", cmd_id="k-3")
        hq.command("reboot", cmd_id="k-4")
        tap.wait_event("cmd_result", cmd_id="k-4", ok=False)

        hq.complaint("", raw=b'{"v":1,"id":"c-3","region":"elsewhere"}')
        hq.complaint("", raw=b"not json")
        hq.complaint("", raw=b'{"v":2,"id":"c-4","region":"' + REGION.encode() + b'"}')
        hq.complaint("", raw=b"x" * (protocol.MAX_PAYLOAD + 1))
        hq.client.publish(f"{ROOT}/station/{STATION}/cmd",
                          b'{"v":1,"cmd_id":"k-5","cmd":7}', qos=1).wait_for_publish(5)
        tap.wait_event("rejected", count=5)
        tap.wait_event("cmd_result", cmd_id="k-5", cmd=None)
        tap.wait_event("resync_request")
    finally:
        s.stop()
        hq.close()
    try:
        presence = wait_for(lambda: [p for p in tap.on("presence")
                                     if p.get("reason") == "shutdown"], 5,
                            what="clean-stop presence")
    finally:
        tap.close()
        broker.stop()

    seen = {e["type"] for e in tap.on("events")}
    assert seen == {str(t) for t in protocol.EventType}
    problems = []
    for event in tap.on("events"):
        problems += [f"{event['type']}: {m}" for m in errors(EVENT_SCHEMA[event["type"]], event)]
        problems += [f"{event['type']} as Event: {m}" for m in errors("Event", event)]
    for status in tap.on("status"):
        problems += [f"status: {m}" for m in errors("Status", status)]
    births = [p for p in tap.on("presence") if p.get("state") == "online"]
    assert births and presence
    for doc in births + presence:
        problems += [f"presence: {m}" for m in errors("Presence", doc)]
    assert problems == []


@pytest.mark.slow
def test_what_a_station_with_keys_refuses_validates(tmp_path: Path, broker: Mosquitto) -> None:
    """Signature refusals (unsigned, unknown key, bad signature, stale, a replayed signed
    command) as a station with keys publishes them, and a signed complaint's alerting."""
    from station import signing
    from station.keygen import station_keys
    hq_key, desk_key, security = station_keys(tmp_path / "keys")
    stranger = signing.generate("stranger")
    tap = Tap(broker.port)
    hq = HQ(broker.port)
    # A synchronised clock: only then is an old signed complaint refused as stale.
    s = RunningStation(station_config(tmp_path, broker.port, security=security),
                       synced=lambda: True)
    complaints = protocol.region_complaints(ROOT, REGION)
    cmd_topic = protocol.station_topic(ROOT, STATION, "cmd")

    def complaint(cid: str, key: Any, *, reported_at: float | None = None) -> None:
        doc = {"v": 1, "id": cid, "region": REGION, "priority": "urgent",
               "reported_at": protocol.rfc3339(time.time() if reported_at is None
                                               else reported_at)}
        payload = doc if key is None else signing.sign(doc, complaints, key)
        hq.complaint("", raw=protocol.encode(payload))

    try:
        wait_for(lambda: tap.on("status"), 10, what="first status")
        complaint("s-1", None)
        complaint("s-2", stranger)
        signed = signing.sign({"v": 1, "id": "s-3", "region": REGION,
                               "reported_at": protocol.rfc3339(time.time())}, complaints, hq_key)
        hq.complaint("", raw=protocol.encode({**signed, "priority": "emergency"}))
        complaint("s-4", hq_key, reported_at=time.time() - 7200)
        complaint("s-5", hq_key)
        tap.wait_event("alerting", complaint_id="s-5")
        command = protocol.encode(signing.sign({"v": 1, "cmd_id": "k-1", "cmd": "status"},
                                               cmd_topic, desk_key))
        for _ in range(2):                                    # the second is a replay
            hq.client.publish(cmd_topic, command, qos=1).wait_for_publish(5)
        tap.wait_event("rejected", count=5)
        tap.wait_event("cmd_result", count=2, cmd_id="k-1")
    finally:
        s.stop()
        hq.close()
        tap.close()
    reasons = {e["reason"] for e in tap.events("rejected")}
    assert reasons == {"unsigned", "unknown_key", "bad_signature", "stale"}
    problems = []
    for event in tap.on("events"):
        problems += [f"{event['type']}: {m}" for m in errors(EVENT_SCHEMA[event["type"]], event)]
    assert problems == []


@pytest.mark.slow
def test_the_last_will_of_a_killed_station_validates(tmp_path: Path, broker: Mosquitto,
                                                     station_process: Any) -> None:
    tap = Tap(broker.port)
    try:
        proc = station_process(station_config(tmp_path, broker.port))
        proc.start()
        wait_for(lambda: [p for p in tap.on("presence") if p.get("state") == "online"], 15,
                 what="birth")
        proc.kill()
        will = wait_for(lambda: [p for p in tap.on("presence") if p.get("reason") == "lost"],
                        10, what="last will")
    finally:
        tap.close()
    assert errors("Presence", will[-1]) == []
    assert "at" not in will[-1]


# --- the schemas can fail: a renamed or missing field breaks them ------------------------------

def _event(type_: str, **fields: Any) -> dict[str, Any]:
    doc = protocol.event(type_, fields, station=STATION, region=REGION, wall=time.time(),
                         clock_synced=True)
    return {**doc, "seq": 7}


def test_a_renamed_or_missing_field_is_refused() -> None:
    alerting = _event("alerting", complaint_id="c-1", priority="urgent", relay_latency_ms=0.4)
    assert errors("AlertingEvent", alerting) == []
    renamed = {("relay_latency" if k == "relay_latency_ms" else k): v
               for k, v in alerting.items()}
    assert errors("AlertingEvent", renamed)
    assert errors("Event", renamed)
    assert errors("AlertingEvent", {k: v for k, v in alerting.items() if k != "seq"})
    assert errors("AlertingEvent", {**alerting, "priority": "high"})
    button_ack = _event("ack", complaint_id="c-1", method="button", ack_latency_ms=3.0)
    assert errors("AckEvent", button_ack) == []
    assert errors("AckEvent", {**button_ack, "method": "remote"})      # remote needs `by`
    will = {"v": 1, "station": STATION, "region": REGION, "state": "offline",
            "reason": "lost", "boot_id": "b", "session": 3}
    assert errors("Presence", will) == []
    assert errors("Presence", {**will, "at": "2026-11-27T20:15:02.000Z"})   # a will has no `at`
    assert errors("Presence", {**will, "state": "online"})


def test_a_status_without_its_counters_is_refused() -> None:
    from station.heartbeat import Identity, host_figures, status
    ident = Identity(STATION, REGION, "boot-1", time.time() - 5, 30.0)
    doc = status(ident, now_wall=time.time(), uptime_s=5.0, session=2, alarms_active=0,
                 oldest_unacked_s=None, siren=False, beacon=False, button="released",
                 outbox_pending=0, faults=[], host=host_figures(Path("/"), True), active=[])
    doc = {"complaints": 0, "acks": 0, "rejected": 0, "reconnects": 0, **doc}
    assert errors("Status", doc) == []
    for counter in ("complaints", "acks", "rejected", "reconnects", "version"):
        assert errors("Status", {k: v for k, v in doc.items() if k != counter}), counter


# --- complaints and commands: the schema accepts what the parser accepts ---------------------

def station_accepts_complaint(doc: Any) -> bool:
    region = doc.get("region") if isinstance(doc, dict) else None
    region = region if isinstance(region, str) else REGION
    return isinstance(protocol.parse_complaint(protocol.encode(doc), region=region),
                      protocol.Complaint)


def station_accepts_command(doc: Any) -> bool:
    return isinstance(protocol.parse_command(protocol.encode(doc)), protocol.Command)


GOOD = {"v": 1, "id": "110-20261127-000123", "region": REGION, "priority": "urgent",
        "category": "kejahatan", "summary": "Ibu Sari, Jl. Merdeka 5",
        "reported_at": "2026-11-27T20:15:02Z"}

COMPLAINTS: list[tuple[str, Any, bool]] = [
    ("full", GOOD, True),
    ("minimal", {"v": 1, "id": "a", "region": "r"}, True),
    ("nulls for optional fields", {**GOOD, "category": None, "summary": None,
                                   "reported_at": None}, True),
    ("unknown field ignored", {**GOOD, "source": "hq-2"}, True),
    ("offset and fraction", {**GOOD, "reported_at": "2026-11-27T20:15:02.123456+07:00"}, True),
    ("64-char id", {**GOOD, "id": "A" * 64}, True),
    ("2000-char summary", {**GOOD, "summary": "s" * 2000}, True),
    ("non-ASCII summary", {**GOOD, "summary": "Pencurian di pasar — ±20 menit, 警察"}, True),
    ("not an object", [GOOD], False),
    ("v missing", {k: v for k, v in GOOD.items() if k != "v"}, False),
    ("v 2", {**GOOD, "v": 2}, False),
    ("v as text", {**GOOD, "v": "1"}, False),
    ("v true", {**GOOD, "v": True}, False),
    ("id missing", {k: v for k, v in GOOD.items() if k != "id"}, False),
    ("id empty", {**GOOD, "id": ""}, False),
    ("id 65 chars", {**GOOD, "id": "A" * 65}, False),
    ("id with a slash", {**GOOD, "id": "a/b"}, False),
    ("id a number", {**GOOD, "id": 123}, False),
    ("region missing", {k: v for k, v in GOOD.items() if k != "region"}, False),
    ("region upper case", {**GOOD, "region": "Sumsel"}, False),
    ("region with a dot", {**GOOD, "region": "sumsel.x"}, False),
    ("priority unknown", {**GOOD, "priority": "high"}, False),
    ("priority null", {**GOOD, "priority": None}, False),
    ("category 65 chars", {**GOOD, "category": "c" * 65}, False),
    ("category a number", {**GOOD, "category": 5}, False),
    ("summary 2001 chars", {**GOOD, "summary": "s" * 2001}, False),
    ("reported_at not a time", {**GOOD, "reported_at": "yesterday"}, False),
    ("reported_at without offset", {**GOOD, "reported_at": "2026-11-27T20:15:02"}, False),
    ("reported_at date only", {**GOOD, "reported_at": "2026-11-27"}, False),
    ("reported_at with lower-case t", {**GOOD, "reported_at": "2026-11-27t20:15:02Z"}, True),
    ("reported_at with lower-case z", {**GOOD, "reported_at": "2026-11-27T20:15:02z"}, True),
    ("reported_at leap second", {**GOOD, "reported_at": "2026-12-31T23:59:60Z"}, True),
    ("reported_at hour 24", {**GOOD, "reported_at": "2026-11-27T24:00:00Z"}, False),
    ("reported_at a number", {**GOOD, "reported_at": 1764274502}, False),
]

COMMANDS: list[tuple[str, Any, bool]] = [
    ("ack all", {"v": 1, "cmd_id": "k-1", "cmd": "ack"}, True),
    ("ack one, by", {"v": 1, "cmd_id": "k-1", "cmd": "ack",
                     "args": {"complaint_id": "c-1", "by": "Pak Budi"}}, True),
    ("ack, null args", {"v": 1, "cmd_id": "k-1", "cmd": "ack", "args": None}, True),
    ("ack, null complaint_id", {"v": 1, "cmd_id": "k", "cmd": "ack",
                                "args": {"complaint_id": None}}, True),
    ("silence", {"v": 1, "cmd_id": "k", "cmd": "silence", "args": {}}, True),
    ("status", {"v": 1, "cmd_id": "k", "cmd": "status"}, True),
    ("test 10 s", {"v": 1, "cmd_id": "k", "cmd": "test", "args": {"seconds": 10}}, True),
    ("test 0.5 s", {"v": 1, "cmd_id": "k", "cmd": "test", "args": {"seconds": 0.5}}, True),
    ("unknown cmd: answered ok false, but read", {"v": 1, "cmd_id": "k", "cmd": "reboot"}, True),
    ("cmd_id missing", {"v": 1, "cmd": "ack"}, False),
    ("cmd_id with a space", {"v": 1, "cmd_id": "k 1", "cmd": "ack"}, False),
    ("cmd missing", {"v": 1, "cmd_id": "k"}, False),
    ("cmd a number", {"v": 1, "cmd_id": "k", "cmd": 7}, False),
    ("cmd 33 chars", {"v": 1, "cmd_id": "k", "cmd": "x" * 33}, False),
    ("cmd with a newline", {"v": 1, "cmd_id": "k", "cmd": "ack\nforged"}, False),
    ("args a list", {"v": 1, "cmd_id": "k", "cmd": "ack", "args": []}, False),
    ("ack, bad complaint_id", {"v": 1, "cmd_id": "k", "cmd": "ack",
                               "args": {"complaint_id": "a b"}}, False),
    ("ack, by 65 chars", {"v": 1, "cmd_id": "k", "cmd": "ack", "args": {"by": "b" * 65}}, False),
    ("ack, by with a newline", {"v": 1, "cmd_id": "k", "cmd": "ack",
                                "args": {"by": "a\nb"}}, False),
    ("test 0 s", {"v": 1, "cmd_id": "k", "cmd": "test", "args": {"seconds": 0}}, False),
    ("test 11 s", {"v": 1, "cmd_id": "k", "cmd": "test", "args": {"seconds": 11}}, False),
    ("test seconds as text", {"v": 1, "cmd_id": "k", "cmd": "test",
                              "args": {"seconds": "5"}}, False),
    ("test seconds true", {"v": 1, "cmd_id": "k", "cmd": "test",
                           "args": {"seconds": True}}, False),
    ("v 2", {"v": 2, "cmd_id": "k", "cmd": "ack"}, False),
]


@pytest.mark.parametrize("name, doc, good", COMPLAINTS, ids=[c[0] for c in COMPLAINTS])
def test_complaint_schema_agrees_with_the_parser(name: str, doc: Any, good: bool) -> None:
    assert station_accepts_complaint(doc) is good
    assert validator("Complaint").is_valid(doc) is good, errors("Complaint", doc)


@pytest.mark.parametrize("name, doc, good", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_schema_agrees_with_the_parser(name: str, doc: Any, good: bool) -> None:
    assert station_accepts_command(doc) is good
    assert validator("Command").is_valid(doc) is good, errors("Command", doc)


# Generated documents: each field valid, near-miss, of another type, or absent. Text avoids
# what JSON Schema cannot see (lone surrogates) and non-ASCII non-printable characters (the
# schemas exclude control characters only; Python's isprintable excludes more).
ABSENT = object()
TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x7e) | st.sampled_from("éü—警"),
               max_size=12)
OTHER = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
                  st.just([]), st.just({}))
TIMES = st.datetimes().map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
RFC3339 = st.builds(
    lambda d, fraction, offset: d.strftime("%Y-%m-%dT%H:%M:%S") + fraction + offset,
    TIMES, st.sampled_from(["", ".1", ".123", ".123456"]),
    st.sampled_from(["Z", "+07:00", "-03:30", "+00:00", ""]))


def _field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, TEXT, OTHER, st.just(ABSENT))


def _doc(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields).map(
        lambda d: {k: v for k, v in d.items() if v is not ABSENT})


ID = st.from_regex(r"\A[A-Za-z0-9._:-]{1,64}\Z")
NAME = st.sampled_from([REGION, "r", "a-1_b"])
COMPLAINT_DOCS = _doc(
    v=st.sampled_from([1, 1, 1, 2, 0, "1", True, ABSENT]),
    id=_field(ID), region=_field(NAME),
    priority=_field(st.sampled_from([str(p) for p in protocol.Priority])),
    category=_field(st.text(max_size=70)),
    summary=st.one_of(st.none(), st.just(ABSENT), st.text(max_size=20),
                      st.sampled_from(["s" * 2000, "s" * 2001]), OTHER),
    reported_at=_field(RFC3339),
    extra=st.just(ABSENT) | st.integers())
COMMAND_DOCS = _doc(
    v=st.sampled_from([1, 1, 1, 2, "1", ABSENT]),
    cmd_id=_field(ID),
    cmd=_field(st.sampled_from([*protocol.COMMANDS, "reboot", "x" * 32, "x" * 33])),
    args=st.one_of(st.just(ABSENT), st.none(), OTHER, _doc(
        complaint_id=_field(ID),
        by=_field(st.text(st.characters(min_codepoint=0, max_codepoint=0x7e), max_size=70)),
        seconds=st.one_of(st.floats(-1, 12, allow_nan=False), st.integers(-1, 12),
                          st.just(ABSENT), OTHER))))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(COMPLAINT_DOCS)
def test_generated_complaints_schema_agrees_with_the_parser(doc: dict[str, Any]) -> None:
    if type(doc.get("v")) is float:       # 1.0 is an integer to JSON Schema, not to the parser
        return
    assert validator("Complaint").is_valid(doc) is station_accepts_complaint(doc), \
        (errors("Complaint", doc), protocol.parse_complaint(protocol.encode(doc), region=REGION))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(COMMAND_DOCS)
def test_generated_commands_schema_agrees_with_the_parser(doc: dict[str, Any]) -> None:
    assert validator("Command").is_valid(doc) is station_accepts_command(doc), \
        (errors("Command", doc), protocol.parse_command(protocol.encode(doc)))


def test_what_send_complaint_builds_validates() -> None:
    payload = protocol.complaint_payload(complaint_id="110-1", region=REGION,
                                         priority="emergency", category="k", summary="s",
                                         reported_at=protocol.rfc3339(time.time()))
    assert errors("Complaint", json.loads(payload)) == []
    bare = json.loads(protocol.complaint_payload(complaint_id="110-2", region=REGION))
    assert errors("Complaint", copy.deepcopy(bare)) == []
