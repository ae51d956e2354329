"""Signed complaints and commands end to end on a real mosquitto (docs/SIGNING.md): keys made by
openssl, the real station on MockFactory pins. No refused message ever changes a relay (the
pins' recorded ``states``), and each is answered by exactly one ``rejected`` event."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    HQ, REGION, ROOT, STATION, openssl_keypair, security_section, station_config, wait_for,
)
from station.protocol import encode, rfc3339
from station.signing import SigningKey, sign

COMPLAINTS = f"{ROOT}/region/{REGION}/complaints"
CMD = f"{ROOT}/station/{STATION}/cmd"
SETTLE_S = 0.5


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[SigningKey, Path]]:
    """kid → (signing key, public key file) for two HQ keys, a desk key and a stranger's."""
    out = {}
    for kid in ("hq-2026", "hq-2027", "desk-1", "stranger"):
        private, public = openssl_keypair(tmp_path / "keys", kid)
        out[kid] = (SigningKey.from_file(private, kid), public)
    return out


def _config(tmp_path: Path, port: int, keys: dict, hq: tuple[str, ...] = ("hq-2026",),
            **extra: Any) -> Path:
    return station_config(tmp_path, port, security=security_section(
        {k: keys[k][1] for k in hq}, {"desk-1": keys["desk-1"][1]}, **extra))


def complaint(cid: str, *, reported_at: float | None = None, **fields: Any) -> dict[str, Any]:
    doc = {"v": 1, "id": cid, "region": REGION, "priority": "emergency",
           "summary": "Ibu Sari, Jl. Merdeka 5",
           "reported_at": rfc3339(time.time() if reported_at is None else reported_at)}
    return {**doc, **fields}


def publish(hq: HQ, topic: str, payload: bytes) -> None:
    hq.client.publish(topic, payload, qos=1).wait_for_publish(5)


def signed(doc: dict[str, Any], key: SigningKey, topic: str = COMPLAINTS) -> bytes:
    return encode(sign(doc, topic, key))


def rejected(hq: HQ) -> list[dict[str, Any]]:
    return hq.of_type("rejected")


def wait_rejected(hq: HQ, count: int) -> list[dict[str, Any]]:
    wait_for(lambda: len(rejected(hq)) >= count, 10, what=f"{count} rejected events")
    time.sleep(SETTLE_S)                    # and no second answer to any of them
    return rejected(hq)


def relay_history(s: Any) -> tuple[int, int]:
    return len(s.pin("siren").states), len(s.pin("beacon").states)


@pytest.mark.slow
def test_refused_messages_never_touch_a_relay_and_a_signed_complaint_alarms(
        broker, hq, tmp_path, start_station, keys):
    s = start_station(_config(tmp_path, broker.port, keys), synced=lambda: True)
    hq.wait_status(lambda d: d["state"] == "online")
    hq_key, desk_key, stranger = keys["hq-2026"][0], keys["desk-1"][0], keys["stranger"][0]
    before = relay_history(s)
    other_region = f"{ROOT}/region/sumsel-muaraenim/complaints"
    tampered = sign(complaint("c-tampered"), COMPLAINTS, hq_key)
    tampered["summary"] = "someone else"
    cases = [
        ("c-unsigned", encode(complaint("c-unsigned")), "unsigned"),
        ("c-stranger", signed(complaint("c-stranger"), SigningKey("hq-2026", stranger.seed)),
         "bad_signature"),
        ("c-unknown", signed(complaint("c-unknown"), stranger), "unknown_key"),
        ("c-desk", signed(complaint("c-desk"), desk_key), "unknown_key"),   # desk ≠ HQ
        ("c-tampered", encode(tampered), "bad_signature"),
        ("c-replayed", signed(complaint("c-replayed"), hq_key, other_region), "bad_signature"),
        ("c-stale", signed(complaint("c-stale", reported_at=time.time() - 7200), hq_key),
         "stale"),
        ("c-future", signed(complaint("c-future", reported_at=time.time() + 600), hq_key),
         "stale"),
        ("c-no-time", signed({k: v for k, v in complaint("c-no-time").items()
                              if k != "reported_at"}, hq_key), "stale"),
    ]
    for _, payload, _ in cases:
        publish(hq, COMPLAINTS, payload)
    got = wait_rejected(hq, len(cases))
    assert len(got) == len(cases)
    assert {(e["complaint_id"], e["reason"]) for e in got} == {(c, r) for c, _, r in cases}
    assert all(len(e["payload_sha256"]) == 64 for e in got)
    assert hq.of_type("alerting") == [] and relay_history(s) == before

    # A correctly signed complaint alarms.
    publish(hq, COMPLAINTS, signed(complaint("c-real"), hq_key))
    hq.wait_event("alerting", complaint_id="c-real")
    assert s.relay_on("siren") and s.relay_on("beacon")
    during = relay_history(s)
    assert during[0] > before[0] and during[1] > before[1], "the pins record every change"

    # Forged silences and acks during the real (continuous) alarm: nothing moves.
    def command(cmd: str, cmd_id: str, **args: Any) -> dict[str, Any]:
        return {"v": 1, "cmd_id": cmd_id, "cmd": cmd, "args": args}
    tampered_cmd = sign(command("ack", "k-tampered"), CMD, desk_key)
    tampered_cmd["cmd"] = "silence"
    forged = [
        ("k-unsigned", encode(command("silence", "k-unsigned")), "unsigned"),
        ("k-hq", signed(command("silence", "k-hq"), hq_key, CMD), "unknown_key"),
        ("k-stranger", signed(command("silence", "k-stranger"),
                              SigningKey("desk-1", stranger.seed), CMD), "bad_signature"),
        ("k-tampered", encode(tampered_cmd), "bad_signature"),
        ("k-other-station", signed(command("ack", "k-other-station"), desk_key,
                                   f"{ROOT}/station/prabumulih-2/cmd"), "bad_signature"),
    ]
    for _, payload, _ in forged:
        publish(hq, CMD, payload)
    got = wait_rejected(hq, len(cases) + len(forged))[len(cases):]
    assert len(got) == len(forged)
    assert {(e["cmd_id"], e["reason"]) for e in got} == {(c, r) for c, _, r in forged}
    results = hq.wait_event("cmd_result", len(forged))
    assert all(not r["ok"] for r in results)
    assert relay_history(s) == during and s.relay_on("siren") and s.relay_on("beacon")
    assert hq.of_type("ack") == []

    # The desk's own signed silence works.
    real_silence = signed(command("silence", "k-real"), desk_key, CMD)
    publish(hq, CMD, real_silence)
    assert hq.wait_event("cmd_result", cmd_id="k-real")[0]["ok"] is True
    wait_for(lambda: not s.relay_on("siren"), 5, what="siren silenced")
    assert s.relay_on("beacon") and len(rejected(hq)) == len(cases) + len(forged)

    # A captured signed command replayed during the next alarm is refused (same process).
    publish(hq, COMPLAINTS, signed(complaint("c-next"), hq_key))
    hq.wait_event("alerting", complaint_id="c-next")
    wait_for(lambda: s.relay_on("siren"), 5, what="siren for the next alarm")
    history = relay_history(s)
    publish(hq, CMD, real_silence)
    got = wait_rejected(hq, len(cases) + len(forged) + 1)[-1]
    assert (got["cmd_id"], got["reason"]) == ("k-real", "stale")
    assert relay_history(s) == history and s.relay_on("siren")


@pytest.mark.slow
def test_unsynchronised_clock_judges_no_age_but_the_id_stops_a_replay(
        broker, hq, tmp_path, start_station, keys):
    s = start_station(_config(tmp_path, broker.port, keys), synced=lambda: False)
    hq.wait_status(lambda d: d["state"] == "online")
    old = signed(complaint("c-old", reported_at=time.time() - 7 * 86400, priority="normal"),
                 keys["hq-2026"][0])
    publish(hq, COMPLAINTS, old)
    hq.wait_event("alerting", complaint_id="c-old")
    s.press(0.1)
    hq.wait_event("ack", complaint_id="c-old")
    history = relay_history(s)
    publish(hq, COMPLAINTS, old)                  # the same signed message, replayed
    time.sleep(SETTLE_S * 2)
    assert len(hq.of_type("alerting")) == 1 and relay_history(s) == history
    assert rejected(hq) == []


# Every kind of broken ``sig`` member: never a crash, each answered by one ``rejected``.
def _fuzzed_sigs(key: SigningKey) -> list[Any]:
    good = sign(complaint("x"), COMPLAINTS, key)["sig"]
    rng = random.Random(110)
    sigs: list[Any] = [None, 0, -1, 2**70, 1.5, True, "", "x" * 5000, [], [good], {},
                       {"kid": None}, {"kid": 5, "ed25519": good["ed25519"]},
                       {"kid": "hq-2026"}, {"kid": "hq-2026", "ed25519": None},
                       {"kid": "hq-2026", "ed25519": 12345},
                       {"kid": "hq-2026", "ed25519": good["ed25519"] + "=="},
                       {"kid": "hq-2026", "ed25519": good["ed25519"][:-2]},
                       {"kid": "hq-2026", "ed25519": "A" * 86},
                       {"kid": "hq-2026", "ed25519": "/" * 86},
                       {"kid": "hq-2026\n", "ed25519": good["ed25519"]},
                       {"kid": "ünïcode", "ed25519": good["ed25519"]},
                       {"kid": "k" * 65, "ed25519": good["ed25519"]},
                       {"kid": ["hq-2026"], "ed25519": good["ed25519"]},
                       {"kid": "hq-2026", "ed25519": good["ed25519"], "extra": {"a": [1.5]}}]
    for _ in range(15):
        chars = list(good["ed25519"])
        chars[rng.randrange(len(chars))] = rng.choice("ABCxyz019-_")
        sigs.append({"kid": "hq-2026", "ed25519": "".join(chars)})
    return sigs


@pytest.mark.slow
def test_fuzzed_sig_members_never_crash_and_each_is_answered_once(
        broker, hq, tmp_path, start_station, keys):
    s = start_station(_config(tmp_path, broker.port, keys), synced=lambda: True)
    hq.wait_status(lambda d: d["state"] == "online")
    before = relay_history(s)
    sigs = _fuzzed_sigs(keys["hq-2026"][0])
    for i, sig in enumerate(sigs):
        doc = {**complaint(f"f-{i}"), "sig": sig}
        publish(hq, COMPLAINTS, json.dumps(doc).encode())
    got = wait_rejected(hq, len(sigs))
    ids = [e["complaint_id"] for e in got]
    assert sorted(ids) == sorted(f"f-{i}" for i in range(len(sigs))), "one answer each"
    assert {e["reason"] for e in got} <= {"bad_signature", "unknown_key"}
    assert relay_history(s) == before and hq.of_type("alerting") == []
    # Still alive and listening.
    publish(hq, COMPLAINTS, signed(complaint("f-real"), keys["hq-2026"][0]))
    hq.wait_event("alerting", complaint_id="f-real")


@pytest.mark.slow
def test_key_rotation_old_and_new_then_old_removed_after_restart(
        broker, hq, tmp_path, start_station, keys):
    old, new = keys["hq-2026"][0], keys["hq-2027"][0]
    config = _config(tmp_path, broker.port, keys, hq=("hq-2026", "hq-2027"))
    s = start_station(config, synced=lambda: True)
    hq.wait_status(lambda d: d["state"] == "online")
    publish(hq, COMPLAINTS, signed(complaint("r-old", priority="normal"), old))
    publish(hq, COMPLAINTS, signed(complaint("r-new", priority="normal"), new))
    hq.wait_event("alerting", complaint_id="r-old")
    hq.wait_event("alerting", complaint_id="r-new")
    s.press(0.1)
    hq.wait_event("ack", 2)
    s.stop()

    config = _config(tmp_path, broker.port, keys, hq=("hq-2027",))
    s = start_station(config, synced=lambda: True)
    hq.wait_status(lambda d: d["state"] == "online" and d["boot_id"] != "")
    before = relay_history(s)
    publish(hq, COMPLAINTS, signed(complaint("r-old-2"), old))
    got = wait_rejected(hq, 1)
    assert [(e["complaint_id"], e["reason"]) for e in got] == [("r-old-2", "unknown_key")]
    assert relay_history(s) == before
    publish(hq, COMPLAINTS, signed(complaint("r-new-2"), new))
    hq.wait_event("alerting", complaint_id="r-new-2")


def test_a_signed_command_is_honoured_once_also_after_a_restart(
        broker, hq, tmp_path, start_station, keys):
    """A captured signed ``silence`` replayed after the station restarted (its cmd_id stored
    with the complaint ids) is refused ``stale`` and leaves the next alarm sounding."""
    hq_key, desk_key = keys["hq-2026"][0], keys["desk-1"][0]
    config = _config(tmp_path, broker.port, keys)
    s = start_station(config, synced=lambda: True)
    hq.wait_presence(lambda d: d["state"] == "online" and d["boot_id"] == s.station.boot_id)
    publish(hq, COMPLAINTS, signed(complaint("once-1"), hq_key))
    hq.wait_event("alerting", complaint_id="once-1")
    silence = signed({"v": 1, "cmd_id": "k-once", "cmd": "silence", "args": {}}, desk_key, CMD)
    publish(hq, CMD, silence)
    assert hq.wait_event("cmd_result", cmd_id="k-once")[0]["ok"] is True
    wait_for(lambda: not s.relay_on("siren"), 5, what="siren silenced")
    s.stop()

    s = start_station(config, synced=lambda: True)
    hq.wait_presence(lambda d: d["state"] == "online" and d["boot_id"] == s.station.boot_id)
    publish(hq, COMPLAINTS, signed(complaint("once-2"), hq_key))
    hq.wait_event("alerting", complaint_id="once-2")
    wait_for(lambda: s.relay_on("siren"), 5, what="siren for the next alarm")
    history = relay_history(s)
    publish(hq, CMD, silence)                           # the same bytes, captured
    got = wait_rejected(hq, 1)
    assert [(e["cmd_id"], e["reason"]) for e in got] == [("k-once", "stale")]
    assert relay_history(s) == history and s.relay_on("siren") and s.relay_on("beacon")
    results = hq.wait_event("cmd_result", 2, cmd_id="k-once")
    assert [r["ok"] for r in results] == [True, False]
