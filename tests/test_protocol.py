"""Payload parsing and building (docs/INTERFACE.md): a bad payload is a Rejection, never raises."""
from __future__ import annotations

import hashlib
import json

import pytest

from station.protocol import (
    MAX_PAYLOAD, Command, Complaint, Rejection, Topics, complaint_payload, event,
    EventDoc, HealthDoc, OfflineReason, PresenceDoc, StationState, encode, parse_command,
    parse_complaint, presence, rfc3339,
)

REGION = "sumsel-prabumulih"


def good(**over) -> bytes:
    doc = {"v": 1, "id": "110-20261127-000123", "region": REGION, "priority": "urgent",
           "category": "kejahatan", "summary": "rahasia", "reported_at": "2026-11-27T20:15:02Z"}
    doc.update(over)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_topics():
    t = Topics("polri/110", "st-1", REGION)
    assert t.complaints == f"polri/110/region/{REGION}/complaints"
    assert t.presence == "polri/110/station/st-1/presence"
    assert (t.events, t.status, t.cmd) == (
        "polri/110/station/st-1/events", "polri/110/station/st-1/status",
        "polri/110/station/st-1/cmd")


def test_valid_complaint():
    c = parse_complaint(good(), region=REGION)
    assert isinstance(c, Complaint)
    assert (c.id, c.priority, c.category, c.summary) == (
        "110-20261127-000123", "urgent", "kejahatan", "rahasia")
    assert "rahasia" not in repr(c)  # personal data stays out of logs


def test_minimal_complaint_defaults_and_unknown_fields_ignored():
    c = parse_complaint(b'{"v":1,"id":"a","region":"%s","future":{"x":1}}' % REGION.encode(),
                        region=REGION)
    assert isinstance(c, Complaint) and c.priority == "normal" and c.summary is None


@pytest.mark.parametrize("payload, reason, cid", [
    (b"{not json", "malformed", None),
    (b"\xff\xfe\x00", "malformed", None),
    (b"[1,2]", "schema", None),
    (b'"text"', "schema", None),
    (b"[" * 5000 + b"]" * 5000, "malformed", None),
    (b'{"v":1,"id":1' + b"9" * 5000 + b"}", "malformed", None),
    (good(v=...), "schema", "110-20261127-000123"),
    (good(v="1"), "schema", "110-20261127-000123"),
    (good(v=True), "schema", "110-20261127-000123"),
    (good(v=2), "unsupported_version", "110-20261127-000123"),
    (good(id=...), "schema", None),
    (good(id=""), "schema", None),
    (good(id="a/b"), "schema", None),
    (good(id="x" * 65), "schema", None),
    (good(region="other-region"), "wrong_region", "110-20261127-000123"),
    (good(region=...), "schema", "110-20261127-000123"),
    (good(region=5), "schema", "110-20261127-000123"),
    (good(priority="high"), "schema", "110-20261127-000123"),
    (good(priority=None), "schema", "110-20261127-000123"),
    (good(category="c" * 65), "schema", "110-20261127-000123"),
    (good(summary="s" * 2001), "schema", "110-20261127-000123"),
    (good(summary=["x"]), "schema", "110-20261127-000123"),
    (good(reported_at="yesterday"), "schema", "110-20261127-000123"),
    (good(reported_at="2026-11-27T20:15:02"), "schema", "110-20261127-000123"),
    (good(summary="x" * (MAX_PAYLOAD + 1)), "too_large", None),
])
def test_bad_complaints_are_rejected(payload, reason, cid):
    r = parse_complaint(payload, region=REGION)
    assert isinstance(r, Rejection), r
    assert r.reason == reason
    assert r.complaint_id == cid
    assert r.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert r.fields()["reason"] == reason
    assert "rahasia" not in r.detail


# ISO 8601 forms that datetime.fromisoformat reads but RFC 3339 (docs/INTERFACE.md §1, the
# Time schema of docs/asyncapi.yaml) does not allow: a station refuses them as HQ's validator
# does.
@pytest.mark.parametrize("text", [
    "20261127T201502Z",                 # basic format
    "2026-W48-5T20:15:02Z",             # week date
    "2026-11-27T20Z",                   # hour only
    "2026-11-27T20:15Z",                # no seconds
    "2026-11-27T20:15:02+0700",         # offset without a colon
    "2026-11-27T20:15:02,5Z",           # comma fraction
    "2026-11-27T20:15:02.Z",            # a point without digits
    "2026-11-27T20:15:61Z",             # no 61st second
    "2026-02-30T20:15:02Z",             # no 30 February
    "2026-11-27T20:15:02",              # no offset
])
def test_reported_at_must_be_rfc3339_not_any_iso8601(text):
    r = parse_complaint(good(reported_at=text), region=REGION)
    assert isinstance(r, Rejection), text
    assert (r.reason, r.complaint_id) == ("schema", "110-20261127-000123")


@pytest.mark.parametrize("text", [
    "2026-11-27T20:15:02Z", "2026-11-27t20:15:02.123Z", "2026-11-27T20:15:02.123456789+07:00",
    "2026-11-27T20:15:02-03:30",
    # RFC 3339 §5.6 allows these too; a complaint is never refused over them
    "2026-11-27T20:15:02z", "2026-11-27T20:15:02.1234567890Z", "2016-12-31T23:59:60Z",
])
def test_reported_at_rfc3339_forms_accepted(text):
    c = parse_complaint(good(reported_at=text), region=REGION)
    assert isinstance(c, Complaint) and c.reported_at == text


def test_summary_never_in_rejection_detail():
    r = parse_complaint(good(summary="Budi di Jl. Sudirman 5", region="x-y"), region=REGION)
    assert "Budi" not in json.dumps(r.fields())


@pytest.mark.parametrize("payload, expected", [
    (b'{"v":1,"cmd_id":"c1","cmd":"ack"}', Command("c1", "ack", {})),
    (b'{"v":1,"cmd_id":"c1","cmd":"ack","args":{"complaint_id":"110-1","by":"desk"}}',
     Command("c1", "ack", {"complaint_id": "110-1", "by": "desk"})),
    (b'{"v":1,"cmd_id":"c2","cmd":"silence"}', Command("c2", "silence", {})),
    (b'{"v":1,"cmd_id":"c3","cmd":"test","args":{"seconds":2}}',
     Command("c3", "test", {"seconds": 2.0})),
    (b'{"v":1,"cmd_id":"c4","cmd":"status","args":null}', Command("c4", "status", {})),
    (b'{"v":1,"cmd_id":"c5","cmd":"reboot"}', Command("c5", "reboot", {})),
])
def test_commands(payload, expected):
    assert parse_command(payload) == expected


@pytest.mark.parametrize("payload, reason, cmd_id", [
    (b"nope", "malformed", None),
    (b'{"v":1,"cmd":"ack"}', "schema", None),
    (b'{"v":1,"cmd_id":"c1"}', "schema", "c1"),
    (b'{"v":1,"cmd_id":"c1","cmd":"ack","args":[1]}', "schema", "c1"),
    (b'{"v":1,"cmd_id":"c1","cmd":"test","args":{"seconds":60}}', "schema", "c1"),
    (b'{"v":1,"cmd_id":"c1","cmd":"test","args":{"seconds":true}}', "schema", "c1"),
    (b'{"v":1,"cmd_id":"c1","cmd":"ack","args":{"complaint_id":7}}', "schema", "c1"),
    (b'{"v":3,"cmd_id":"c1","cmd":"ack"}', "unsupported_version", "c1"),
])
def test_bad_commands(payload, reason, cmd_id):
    r = parse_command(payload)
    assert isinstance(r, Rejection) and r.reason == reason and r.cmd_id == cmd_id


def test_retained_command_is_refused():
    r = parse_command(b'{"v":1,"cmd_id":"c1","cmd":"silence"}', retained=True)
    assert isinstance(r, Rejection) and "retained" in r.detail and r.cmd_id == "c1"


def test_event_envelope():
    e = event("ack", {"complaint_id": "a"}, station="s", region=REGION, wall=0.5,
              clock_synced=False)
    assert e["v"] == 1 and e["type"] == "ack" and e["at"] == "1970-01-01T00:00:00.500Z"
    assert len(e["event_id"]) == 36 and e["clock_synced"] is False
    assert e["station"] == "s" and e["region"] == REGION and e["complaint_id"] == "a"


def test_presence_documents_and_their_reader():
    will = presence(station="s", region="r", state=StationState.OFFLINE,
                    reason=OfflineReason.LOST, boot_id="b", session=3)
    assert will == {"v": 1, "station": "s", "region": "r", "state": "offline", "reason": "lost",
                    "boot_id": "b", "session": 3}              # a will carries no time
    birth = presence(station="s", region="r", state=StationState.ONLINE, boot_id="b",
                     session=4, wall=1764274502.0)
    assert birth["at"] == "2025-11-27T20:15:02.000Z" and "reason" not in birth
    read = PresenceDoc.read(encode(birth))
    assert read == PresenceDoc("s", "r", StationState.ONLINE, None, "b", 4, 1764274502.0)
    assert PresenceDoc.read(encode(will)).reason == "lost"
    for bad in (b"", b"\xff", b"[1]", b'{"v":2,"station":"s","state":"online"}',
                b'{"v":1,"station":"s","state":"asleep"}', b'{"v":1,"state":"online"}'):
        assert PresenceDoc.read(bad) is None


def test_health_and_event_readers_tolerate_missing_and_ill_typed_fields():
    doc = {"v": 1, "station": "s", "region": "r", "state": "online",
           "at": "2025-11-27T20:15:02.000Z", "version": "1.2.3", "interval_s": 10,
           "alarms": {"active": 2, "oldest_unacked_s": 41.5},
           "outputs": {"siren": True, "beacon": "yes"}, "faults": ["gpio"],
           "host": {"clock_synced": False}, "complaints": 7, "acks": "x"}
    h = HealthDoc.read(encode(doc))
    assert h is not None and (h.alarms_active, h.oldest_unacked_s, h.siren, h.beacon) == \
        (2, 41.5, True, None)
    assert h.at == 1764274502.0 and h.version == "1.2.3" and h.clock_synced is False
    assert dict(h.counters) == {"complaints": 7, "acks": 0, "rejected": 0, "reconnects": 0}
    assert HealthDoc.read(b'{"v":1,"station":"s"}') is None     # a presence is no status
    e = EventDoc.read(encode({"v": 1, "type": "ack", "station": "s", "seq": 5,
                              "ack_latency_ms": 812.5, "complaint_id": "c"}))
    assert e is not None and e.seq == 5 and e.fields == {"ack_latency_ms": 812.5,
                                                          "complaint_id": "c"}
    assert EventDoc.read(b'{"v":1,"type":3,"station":"s"}') is None


def test_complaint_payload_roundtrip():
    p = complaint_payload(complaint_id="x1", region=REGION, priority="emergency", summary="s")
    assert parse_complaint(p, region=REGION) == Complaint("x1", REGION, "emergency", summary="s")
    assert rfc3339(1764274502.0) == "2025-11-27T20:15:02.000Z"


def test_event_ids_are_distinct_version_4_uuids():
    import uuid as _uuid

    from station.protocol import new_event_id

    ids = [new_event_id() for _ in range(1000)]     # several draws of the randomness pool
    assert len(set(ids)) == 1000
    assert all(_uuid.UUID(i).version == 4 for i in ids)
    assert all(_uuid.UUID(i).variant == _uuid.RFC_4122 for i in ids)
    assert all(str(_uuid.UUID(i)) == i for i in ids)     # the canonical form, as uuid4()'s


def test_event_ids_keep_the_randomness_outside_the_version_and_variant_bits(monkeypatch):
    """The same text uuid.UUID(bytes=…, version=4) makes of the same random bytes."""
    import uuid as _uuid

    from station import protocol

    raw = bytes(range(256)) * 16
    monkeypatch.setattr(protocol.os, "urandom", lambda n: raw[:n])
    ids = protocol._RandomIds()._draw()
    assert len(ids) == 256
    assert ids == [str(_uuid.UUID(bytes=raw[i:i + 16], version=4))
                   for i in range(0, 4096, 16)]


@pytest.mark.parametrize("payload", [
    b'{"v":1,"id":"110-1\\n","region":"sumsel-prabumulih"}',
    b'{"v":1,"id":"110-1","region":"sumsel-prabumulih\\n"}',
])
def test_an_id_ending_in_a_newline_is_refused(payload):
    """``$`` would match before a final newline: such an id would forge a second log line."""
    parsed = parse_complaint(payload, region="sumsel-prabumulih")
    assert isinstance(parsed, Rejection) and parsed.reason == "schema"
    command = parse_command(b'{"v":1,"cmd_id":"k\\n","cmd":"status"}')
    assert isinstance(command, Rejection) and command.reason == "schema"


@pytest.mark.parametrize("payload, cmd", [
    (b'{"v":1,"cmd_id":"c1","cmd":"test","args":{"seconds":60}}', "test"),
    (b'{"v":1,"cmd_id":"c1","cmd":"ack","args":[1]}', "ack"),
    (b'{"v":1,"cmd_id":"c1","cmd":7}', None),
    (b'{"v":1,"cmd_id":"c1","cmd":"ack\\nforged"}', None),
    (b'{"v":2,"cmd_id":"c1","cmd":"ack"}', None),
])
def test_refused_command_keeps_the_cmd_it_could_read(payload, cmd):
    r = parse_command(payload)
    assert isinstance(r, Rejection) and r.cmd == cmd
    assert "cmd" not in r.fields()          # the rejected event's fields stay as they were
    r = parse_command(b'{"v":1,"cmd_id":"c1","cmd":"silence"}', retained=True)
    assert isinstance(r, Rejection) and r.cmd == "silence"
