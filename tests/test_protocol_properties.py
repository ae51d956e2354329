"""Bad input, by property (docs/BEHAVIOUR.md §4): whatever arrives on the complaint or command
topic, ``parse_complaint`` / ``parse_command`` never raise, always answer a value or a
``Rejection`` with a reason from the enum, never accept what is not a valid complaint, and
everything they return can be echoed upstream (serialised into an event) without error.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from station.protocol import (
    COMMANDS, ID_RE, MAX_PAYLOAD, NAME_RE, Command, Complaint, Rejection, RejectReason,
    encode, event, parse_command, parse_complaint,
)
from station.store import encode_event

REGION = "sumsel-prabumulih"
REASONS = {r.value for r in RejectReason}
PROPS = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "300")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- strategies -------------------------------------------------------------------------------

# Text including lone surrogates (json.dumps escapes them as \udXXX; json.loads gives them back).
any_text = st.text(alphabet=st.characters(codec=None), max_size=40)
huge_ints = st.one_of(st.integers(), st.integers(min_value=10**300, max_value=10**320),
                      st.integers(max_value=-10**300, min_value=-10**320))
scalars = st.one_of(st.none(), st.booleans(), huge_ints,
                    st.floats(allow_nan=True, allow_infinity=True), any_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(any_text, inner, max_size=5)),
    max_leaves=30)

good_ids = st.from_regex(ID_RE, fullmatch=True)
field_values = st.one_of(json_values, good_ids, st.sampled_from(
    [REGION, "emergency", "urgent", "normal", "2026-11-27T20:15:02Z", 1, "1", 1.0, True]))


@st.composite
def complaint_like(draw: Any) -> dict[str, Any]:
    """Near-miss complaints: each known field present/absent, right or wrong in type/value."""
    doc: dict[str, Any] = {}
    for key, good in (("v", st.just(1)), ("id", good_ids), ("region", st.just(REGION)),
                      ("priority", st.sampled_from(["emergency", "urgent", "normal"])),
                      ("category", st.text(max_size=70)), ("summary", st.text(max_size=50)),
                      ("reported_at", st.sampled_from(["2026-11-27T20:15:02Z",
                                                       "2026-11-27T20:15:02+07:00"]))):
        choice = draw(st.sampled_from(["good", "good", "bad", "absent"]))
        if choice == "good":
            doc[key] = draw(good)
        elif choice == "bad":
            doc[key] = draw(field_values)
    doc.update(draw(st.dictionaries(any_text, json_values, max_size=3)))
    return doc


@st.composite
def command_like(draw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    args = st.dictionaries(st.sampled_from(["complaint_id", "by", "seconds", "x"]),
                           st.one_of(field_values, st.floats(), st.integers(-5, 20)), max_size=3)
    for key, good in (("v", st.just(1)), ("cmd_id", good_ids),
                      ("cmd", st.sampled_from(COMMANDS + ("reboot",))), ("args", args)):
        choice = draw(st.sampled_from(["good", "good", "bad", "absent"]))
        if choice == "good":
            doc[key] = draw(good)
        elif choice == "bad":
            doc[key] = draw(field_values)
    return doc


def dumps(doc: Any) -> bytes:
    """JSON as a sloppy or hostile sender might write it: NaN/Infinity allowed, escapes kept."""
    return json.dumps(doc, allow_nan=True).encode()


payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(dumps),
    complaint_like().map(dumps),
    command_like().map(dumps),
)

# --- checks -----------------------------------------------------------------------------------


def assert_echoable(result: Any) -> None:
    """Everything the station may put in an event or a log line from this result serialises
    (a lone surrogate would make the event unencodable and stall the outbox)."""
    if isinstance(result, Rejection):
        fields = result.fields()
    elif isinstance(result, Complaint):
        fields = {"complaint_id": result.id, "priority": result.priority,
                  "category": result.category, "summary": result.summary,
                  "reported_at": result.reported_at, "region": result.region}
    else:
        fields = {"cmd_id": result.cmd_id, "cmd": result.cmd, **dict(result.args)}
    doc = event("rejected", fields, station="st-1", region=REGION, wall=0.0, clock_synced=True)
    encode_event(doc, 1)
    encode(doc)


def check_rejection(r: Rejection, payload: bytes) -> None:
    assert isinstance(r.reason, RejectReason) and str(r.reason) in REASONS
    assert r.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert isinstance(r.detail, str) and len(r.detail) <= 300
    for value in (r.complaint_id, r.cmd_id):
        assert value is None or ID_RE.match(value)


def is_valid_complaint(payload: bytes) -> bool:
    """An independent reading of docs/INTERFACE.md §3: would a careful human accept it?"""
    if len(payload) > MAX_PAYLOAD:
        return False
    try:
        doc = json.loads(payload.decode("utf-8"))
        json.dumps(doc, ensure_ascii=False).encode("utf-8")   # no lone surrogates anywhere
    except (ValueError, RecursionError):
        return False
    if not isinstance(doc, dict) or type(doc.get("v")) is not int or doc["v"] != 1:
        return False
    if not isinstance(doc.get("id"), str) or not ID_RE.match(doc["id"]):
        return False
    if doc.get("region") != REGION:
        return False
    if doc.get("priority", "normal") not in ("emergency", "urgent", "normal"):
        return False
    for key, limit in (("category", 64), ("summary", 2000), ("reported_at", 64)):
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            return False
    at = doc.get("reported_at")
    if at is not None and not re.fullmatch(
            r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", at):
        return False
    return True


# --- properties -------------------------------------------------------------------------------

@PROPS
@given(payloads)
@example(b"")
@example(b"\xff\xfe{}")
@example(b"\xef\xbb\xbf{\"v\":1}")                          # UTF-8 BOM
@example(b'{"v":1,"id":"a","region":"' + REGION.encode() + b'","category":"\\ud800"}')
@example(b'{"v":1,"id":"a","region":"' + REGION.encode() + b'","x":"\\udfff"}')
@example(b'{"v":1e400,"id":"a","region":"' + REGION.encode() + b'"}')
@example(b'{"v":' + b"9" * 5000 + b'}')                       # > int digit limit
@example(b'{"v":NaN}')
@example(b'{"v":1,"v":2}')                                     # duplicate key: last wins
def test_complaint_parsing_is_total_and_sound(payload: bytes) -> None:
    result = parse_complaint(payload, region=REGION)
    assert isinstance(result, (Complaint, Rejection))
    assert_echoable(result)
    if isinstance(result, Rejection):
        check_rejection(result, payload)
        assert not is_valid_complaint(payload) or "reported_at" in result.detail
    else:
        assert is_valid_complaint(payload), "accepted an invalid complaint: it would alarm"
        assert result.region == REGION and ID_RE.match(result.id)
        assert result.priority in ("emergency", "urgent", "normal")


@PROPS
@given(payloads, st.booleans())
@example(b'{"v":1,"cmd_id":"c","cmd":"\\ud800"}', False)
@example(b'{"v":1,"cmd_id":"c","cmd":"ack","args":{"by":"\\udc00"}}', False)
@example(b'{"v":1,"cmd_id":"c","cmd":"test","args":{"seconds":NaN}}', False)
@example(b'{"v":1,"cmd_id":"c","cmd":"test","args":{"seconds":Infinity}}', False)
@example(b'{"v":1,"cmd_id":"c","cmd":"test","args":{"seconds":true}}', False)
@example(b'{"v":1,"cmd_id":"c","cmd":"ack"}', True)
@example(b'{"v":1,"cmd_id":"c","cmd":"x\\nINFO station: alerting complaint_id=fake"}', False)
@example(b'{"v":1,"cmd_id":"c","cmd":"ack","args":{"by":"op\\r\\nERROR forged"}}', False)
def test_command_parsing_is_total_and_sound(payload: bytes, retained: bool) -> None:
    result = parse_command(payload, retained=retained)
    assert isinstance(result, (Command, Rejection))
    assert_echoable(result)
    if isinstance(result, Rejection):
        check_rejection(result, payload)
        return
    assert not retained, "a retained command was accepted: it would replay at every restart"
    assert ID_RE.match(result.cmd_id) and isinstance(result.cmd, str) and len(result.cmd) <= 32
    # What reaches an INFO log line is one line: no newline or escape to forge another.
    assert result.cmd.isprintable() and str(result.args.get("by", "")).isprintable()
    if result.cmd == "test":
        seconds = result.args["seconds"]
        assert math.isfinite(seconds) and 0 < seconds <= 10
    if result.cmd == "ack":
        assert set(result.args) <= {"complaint_id", "by"}


@PROPS
@given(st.sampled_from(["[", "{\"a\":", "[{\"v\":1,\"x\":"]), st.integers(500, 20000))
def test_deep_nesting_is_refused_not_raised(opener: str, depth: int) -> None:
    closer = {"[": "]", "{\"a\":": "}", "[{\"v\":1,\"x\":": "}]"}[opener]
    payload = (opener * depth + "1" + closer * depth).encode()
    for result in (parse_complaint(payload, region=REGION), parse_command(payload)):
        assert isinstance(result, Rejection)
        expected = {RejectReason.TOO_LARGE} if len(payload) > MAX_PAYLOAD else {
            RejectReason.MALFORMED, RejectReason.SCHEMA}
        assert result.reason in expected


@PROPS
@given(st.binary(min_size=1, max_size=64), st.integers(0, 2000))
def test_oversize_is_too_large_whatever_it_holds(junk: bytes, extra: int) -> None:
    valid = json.dumps({"v": 1, "id": "big-1", "region": REGION, "pad": ""}).encode()
    payload = valid[:-2] + b"x" * (MAX_PAYLOAD - len(valid) + 1 + extra) + b'"}'
    for p in (payload, (junk * (MAX_PAYLOAD // len(junk) + 2))[:MAX_PAYLOAD + 1 + extra]):
        r = parse_complaint(p, region=REGION)
        assert isinstance(r, Rejection) and r.reason == RejectReason.TOO_LARGE
        c = parse_command(p)
        assert isinstance(c, Rejection) and c.reason == RejectReason.TOO_LARGE


@PROPS
@given(st.binary(min_size=1, max_size=200))
def test_invalid_utf8_is_malformed(junk: bytes) -> None:
    try:
        junk.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        junk = b"\xc3" + junk[:1] + b"\xff" + junk      # make it invalid
    payload = b'{"v":1,"id":"u-1","region":"' + REGION.encode() + b'","summary":"' + junk + b'"}'
    r = parse_complaint(payload, region=REGION)
    assert isinstance(r, Rejection) and r.reason == RejectReason.MALFORMED
    assert isinstance(parse_command(payload), Rejection)


@PROPS
@given(st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=5), st.none(),
                 st.lists(st.integers(), max_size=2)))
def test_only_integer_one_is_version_one(v: Any) -> None:
    payload = dumps({"v": v, "id": "v-1", "region": REGION})
    r = parse_complaint(payload, region=REGION)
    if type(v) is int and v == 1:
        assert isinstance(r, Complaint)
    else:
        assert isinstance(r, Rejection)
        assert r.reason == (RejectReason.UNSUPPORTED_VERSION if type(v) is int
                            else RejectReason.SCHEMA)


@PROPS
@given(st.text(max_size=70))
def test_other_regions_never_alarm(region: str) -> None:
    payload = dumps({"v": 1, "id": "r-1", "region": region})
    r = parse_complaint(payload, region=REGION)
    if region == REGION:
        assert isinstance(r, Complaint)
    else:
        assert isinstance(r, Rejection)
        assert r.reason == (RejectReason.WRONG_REGION if NAME_RE.match(region)
                            else RejectReason.SCHEMA)
