"""station.signing: RFC 8032 vectors, the canonical form, openssl's key files, the verdicts."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from station import signing
from station.signing import (
    CanonicalError, Gate, KeyFileError, Reason, Refusal, SigningKey, Verified, canonical,
    freshness, ring_of, sign, signed_bytes,
)

TOPIC = "polri/110/region/sumsel-prabumulih/complaints"

# RFC 8032 §7.1: secret key (seed), public key, message, signature.
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b"
     "46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11"
     "d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc"
     "6594a7c15e9716ed28dc027beceea1ec40a"),
    ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3fe"
     "ebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e"
     "0303dca179c138ac17ad9bef1177331a704"),
]


@pytest.mark.parametrize("seed,public,message,signature", RFC8032)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    nacl = signing._nacl()
    key = SigningKey("k", bytes.fromhex(seed))
    assert key.public_key.hex() == public
    assert nacl.signing.SigningKey(key.seed).sign(bytes.fromhex(message)).signature.hex() \
        == signature
    verify = nacl.signing.VerifyKey(bytes.fromhex(public))
    verify.verify(bytes.fromhex(message), bytes.fromhex(signature))
    bad = bytearray.fromhex(signature)
    bad[0] ^= 1
    with pytest.raises(nacl.exceptions.BadSignatureError):
        verify.verify(bytes.fromhex(message), bytes(bad))


# --- canonical form (RFC 8785 for strings, integers, booleans, null, objects, arrays) --------

def test_canonical_sorts_keys_and_drops_whitespace() -> None:
    doc = json.loads('{ "v" : 1, "b" : [ true , false , null ], "a" : { "z": 0, "y": -5 } }')
    assert canonical(doc) == b'{"a":{"y":-5,"z":0},"b":[true,false,null],"v":1}'


def test_canonical_keeps_non_ascii_and_escapes_like_jcs() -> None:
    doc = {"s": "é€😀\u2028\x7f", "c": "\x00\x08\t\n\x0c\r\x1f\"\\/"}
    assert canonical(doc) == ('{"c":"\\u0000\\b\\t\\n\\f\\r\\u001f\\"\\\\/",'
                              '"s":"é€😀\u2028\x7f"}').encode("utf-8")


def test_canonical_sorts_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16, below U+FB01 (RFC 8785 §3.2.3); code points say otherwise.
    assert canonical({"\ufb01": 1, "\U0001f600": 2}) == '{"😀":2,"ﬁ":1}'.encode()


@pytest.mark.parametrize("value", [1.5, 1.0, 2**53, -(2**53), float("nan")])
def test_canonical_refuses_numbers_without_a_portable_form(value: float) -> None:
    with pytest.raises(CanonicalError):
        canonical({"x": value})


def test_canonical_refuses_lone_surrogate() -> None:
    with pytest.raises(CanonicalError):
        canonical(json.loads('{"x":"\\ud800"}'))


def test_signed_bytes_are_topic_newline_canonical_without_sig() -> None:
    doc = {"v": 1, "id": "a", "sig": {"kid": "k", "ed25519": "x"}}
    assert signed_bytes(doc, "t/1") == b't/1\n{"id":"a","v":1}'


# --- key files as openssl writes them --------------------------------------------------------

def _openssl_pair(tmp_path: Path, name: str = "hq") -> tuple[Path, Path]:
    assert shutil.which("openssl"), "openssl missing: `make broker-tools` installs it"
    private, public = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)],
                   check=True)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)],
                   check=True)
    return private, public


def test_openssl_keys_sign_and_verify_both_ways(tmp_path: Path) -> None:
    private, public = _openssl_pair(tmp_path)
    key = SigningKey.from_file(private, "hq-2026")
    raw = signing.read_public_key(public)
    assert key.public_key == raw
    assert signing.private_pem(key.seed) == private.read_text()
    assert signing.public_pem(raw) == public.read_text()
    msg = sign({"v": 1, "id": "110-1", "region": "r"}, TOPIC, key)
    # openssl verifies what we signed: the bytes are the documented ones.
    (tmp_path / "data").write_bytes(signed_bytes(msg, TOPIC))
    (tmp_path / "sig").write_bytes(base64.urlsafe_b64decode(msg["sig"]["ed25519"] + "=="))
    done = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public),
                           "-rawin", "-in", str(tmp_path / "data"),
                           "-sigfile", str(tmp_path / "sig")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert ring_of([("hq-2026", raw)]).verify(msg, TOPIC) == Verified("hq-2026")


def test_key_file_problems_are_named(tmp_path: Path) -> None:
    private, public = _openssl_pair(tmp_path)
    rsa = tmp_path / "rsa.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024",
                    "-out", str(tmp_path / "rsa.key")], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "rsa.key"), "-pubout", "-out",
                    str(rsa)], check=True)
    cases = {tmp_path / "missing.pem": "file not found", tmp_path: "is a directory",
             rsa: "not an Ed25519 public key", private: "not a PEM public key"}
    for path, words in cases.items():
        with pytest.raises(KeyFileError, match=words):
            signing.read_public_key(path)
    with pytest.raises(KeyFileError, match="not an Ed25519 private key"):
        signing.read_private_seed(tmp_path / "rsa.key")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        signing.read_private_seed(public)


def test_repr_of_a_signing_key_keeps_the_secret() -> None:
    key = signing.generate("desk-1")
    assert key.seed.hex() not in repr(key) and "desk-1" in repr(key)


# --- verdicts ---------------------------------------------------------------------------------

KEY = SigningKey("hq-1", bytes(range(32)))
OTHER = SigningKey("hq-1", bytes(range(1, 33)))        # same kid, another key: a forgery
RING = ring_of([("hq-1", KEY.public_key)])
MESSAGE = {"v": 1, "id": "110-20261127-000123", "region": "sumsel-prabumulih",
           "priority": "urgent", "reported_at": "2026-11-27T20:15:02Z"}


def _payload(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def test_gate_verdicts() -> None:
    gate = Gate(RING, required=True)
    signed = sign(MESSAGE, TOPIC, KEY)
    assert gate.check(_payload(signed), TOPIC) == Verified("hq-1")
    assert gate.check(_payload(MESSAGE), TOPIC).reason == Reason.UNSIGNED
    assert Gate(RING, required=False).check(_payload(MESSAGE), TOPIC) is None
    assert gate.check(_payload(sign(MESSAGE, TOPIC, OTHER)), TOPIC).reason \
        == Reason.BAD_SIGNATURE
    assert gate.check(_payload(sign(MESSAGE, TOPIC, SigningKey("hq-9", KEY.seed))),
                      TOPIC).reason == Reason.UNKNOWN_KEY
    other_topic = "polri/110/region/sumsel-muaraenim/complaints"
    assert gate.check(_payload(signed), other_topic).reason == Reason.BAD_SIGNATURE
    # Not a version-1 JSON object: the protocol room refuses it with its own reason.
    for junk in (b"nope", b"[]", b'{"v":2}', b'{"v":true}', b"{" * 100_000):
        assert gate.check(junk, TOPIC) is None


def test_signature_spelled_another_way_is_refused() -> None:
    signed = sign(MESSAGE, TOPIC, KEY)
    raw = base64.urlsafe_b64decode(signed["sig"]["ed25519"] + "==")
    for spelling in (base64.urlsafe_b64encode(raw).decode(),          # with padding
                     base64.b64encode(raw).decode().rstrip("="),       # standard alphabet
                     signed["sig"]["ed25519"][:-1] + "B"):             # non-zero spare bits
        if spelling == signed["sig"]["ed25519"]:
            continue
        doc = {**signed, "sig": {"kid": "hq-1", "ed25519": spelling}}
        verdict = RING.verify(doc, TOPIC)
        assert isinstance(verdict, Refusal) and verdict.reason == Reason.BAD_SIGNATURE


def test_freshness() -> None:
    at = 1_795_000_000.0   # 2026-11-18T...Z
    from station.protocol import rfc3339
    stamp = rfc3339(at)
    ok = dict(now_wall=at + 10, max_age_s=3600, synced=True)
    assert freshness(stamp, **ok) is None
    assert freshness(None, **ok).reason == Reason.STALE
    assert freshness(None, now_wall=at, max_age_s=3600, synced=False).reason == Reason.STALE
    assert freshness(stamp, now_wall=at + 3601, max_age_s=3600, synced=True).reason \
        == Reason.STALE
    assert freshness(stamp, now_wall=at - 61, max_age_s=3600, synced=True).reason == Reason.STALE
    assert freshness(stamp, now_wall=at - 59, max_age_s=3600, synced=True) is None
    # An unsynchronised clock judges no age (the complaint-id memory stops replays).
    assert freshness(stamp, now_wall=at + 10**7, max_age_s=3600, synced=False) is None


# --- property: any change to a signed message or its topic is refused -------------------------

@st.composite
def _mutation(draw: st.DrawFn) -> tuple[bytes, str]:
    payload = bytearray(_payload(sign(MESSAGE, TOPIC, KEY)))
    topic = TOPIC
    kind = draw(st.sampled_from(["flip", "insert", "delete", "topic"]))
    if kind == "topic":
        topic = draw(st.text(min_size=0, max_size=80).filter(lambda t: t != TOPIC))
        return bytes(payload), topic
    i = draw(st.integers(0, len(payload) - 1))
    if kind == "flip":
        payload[i] ^= draw(st.integers(1, 255))
    elif kind == "insert":
        payload[i:i] = draw(st.binary(min_size=1, max_size=4))
    else:
        del payload[i:i + draw(st.integers(1, 8))]
    return bytes(payload), topic


def _meaning(payload: bytes) -> bytes | None:
    try:
        doc = json.loads(payload)
        return canonical({k: v for k, v in doc.items() if k != "sig"}) + canonical(doc["sig"])
    except Exception:  # noqa: BLE001 — not a message any more
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutation())
def test_any_change_to_bytes_or_topic_is_refused(mutation: tuple[bytes, str]) -> None:
    payload, topic = mutation
    verdict = Gate(RING, required=True).check(payload, topic)
    original = _payload(sign(MESSAGE, TOPIC, KEY))
    if isinstance(verdict, Verified):
        # Only a change that leaves the message itself identical (whitespace) may pass.
        assert topic == TOPIC and _meaning(payload) == _meaning(original)
    else:
        assert verdict is None or isinstance(verdict, Refusal)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_any_sig_member_gets_a_verdict_never_an_exception(sig: object) -> None:
    doc = {**MESSAGE, "sig": sig}
    verdict = Gate(RING, required=True).check(_payload(doc), TOPIC)
    assert isinstance(verdict, Refusal)
    assert verdict.reason in (Reason.BAD_SIGNATURE, Reason.UNKNOWN_KEY)


# --- docs/SIGNING.md's worked example is what the code does ----------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "SIGNING.md"


def test_the_guides_worked_example_verifies() -> None:
    import hashlib
    import re
    text = DOC.read_text(encoding="utf-8")
    pems = re.findall(r"-----BEGIN PUBLIC KEY-----\n(.+?)\n-----END PUBLIC KEY-----", text)
    raws = [base64.b64decode(p)[-32:] for p in pems]
    ring = ring_of([("hq-2026", raws[0]), ("desk-2026", raws[1])])
    published = [json.loads(line) for line in text.splitlines() if line.startswith('{"v":1,')]
    assert len(published) == 2
    complaint, command = published
    assert ring.verify(complaint, TOPIC) == Verified("hq-2026")
    assert ring.verify(command, "polri/110/station/prabumulih-1/cmd") == Verified("desk-2026")
    hex_block = re.search(r"in hex:\n\n```\n([0-9a-f\n]+)```", text).group(1)
    data = bytes.fromhex(hex_block.replace("\n", ""))
    assert data == signed_bytes(complaint, TOPIC)
    assert f"({len(data)} bytes;" in text
    assert hashlib.sha256(data).hexdigest() in text
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert sign(complaint, TOPIC, SigningKey("hq-2026", seed)) == complaint
    assert signing.private_pem(seed) in text


def test_sign_payload_round_trips_through_the_gate() -> None:
    from station.protocol import complaint_payload
    payload = complaint_payload(complaint_id="110-1", region="sumsel-prabumulih",
                                summary="Jl. Merdeka — é", reported_at="2026-11-27T20:15:02Z")
    signed_payload = signing.sign_payload(payload, TOPIC, KEY)
    assert "é".encode() in signed_payload and b'","' in signed_payload   # compact, as itself
    assert Gate(RING, required=True).check(signed_payload, TOPIC) == Verified("hq-1")
    with pytest.raises(ValueError):
        signing.sign_payload(b"[1]", TOPIC, KEY)


@settings(max_examples=500, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=4), inner, max_size=4),
    max_leaves=12))
def test_fast_path_writes_exactly_what_the_jcs_writer_does(doc: object) -> None:
    parts: list[str] = []
    try:
        signing._emit(doc, parts)
        expected: bytes | None = "".join(parts).encode("utf-8")
    except (CanonicalError, UnicodeEncodeError):
        expected = None
    try:
        got: bytes | None = canonical(doc)
    except CanonicalError:
        got = None
    assert got == expected


def test_without_keys_the_library_is_never_imported() -> None:
    # ~1.2 MiB of resident memory a station without keys does not pay (bench/signing.py).
    import subprocess
    import sys
    code = ("import sys, station.service, station.cli\n"
            "from station.config import parse_config\n"
            "from station.signing import gates_for\n"
            "c = parse_config({'station': {'id': 'a', 'region': 'b'},"
            " 'broker': {'host': '127.0.0.1'}})\n"
            "assert gates_for(c.security) == (None, None)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nacl', '_sodium')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
