"""Signed complaints and commands (docs/SIGNING.md): canonical bytes, Ed25519, key files.

A leaf room: it imports nothing of the package but its errors, so the config room can read
key files with it and both sides of the wire (the station verifying, HQ and the desk signing)
share one definition of the signed bytes:

    topic + "\\n" + canonical JSON of the message without its ``sig`` member

Canonical JSON is RFC 8785 (JCS) for what the interface carries (objects, arrays, strings,
integers, booleans, null): keys sorted by their UTF-16 code units, no insignificant whitespace,
non-ASCII as itself. A float, or an integer beyond ±(2**53 − 1), has no portable canonical
form here and is refused (``CanonicalError``).

The signature library (PyNaCl, i.e. libsodium) is imported on first use of a key, never at
import time: a station without keys does not pay its ~1.2 MiB (bench/signing.py).

>>> canonical({"v": 1, "b": [True, None], "a": "é"})
b'{"a":"\\xc3\\xa9","b":[true,null],"v":1}'
>>> signed_bytes({"v": 1, "sig": {"kid": "k"}}, "t/x")
b't/x\\n{"v":1}'
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from json.encoder import encode_basestring as _quote   # C; what json.dumps(ensure_ascii=False) uses
from typing import Any, Iterable, Mapping

from .errors import StationError
from .protocol import RejectReason

SIG = "sig"                                   # the member that carries the signature
KID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
MAX_SAFE_INT = 2**53 - 1                      # JCS numbers are IEEE doubles
FUTURE_SLACK_S = 60.0                         # reported_at may be this far ahead of our clock
MAX_PAYLOAD = 16 * 1024                       # as the protocol room: larger is not ours to judge
_SIG_B64_RE = re.compile(r"^[A-Za-z0-9_-]{86}\Z")   # 64 bytes, base64url, no padding

# An Ed25519 key in DER, as `openssl genpkey -algorithm ed25519` / `openssl pkey -pubout` write
# them: a fixed prefix, then the 32 key bytes (RFC 8410).
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


# Why a message was refused: a ``rejected`` event's reason (UNSIGNED, UNKNOWN_KEY,
# BAD_SIGNATURE, STALE), one set with the protocol's own.
Reason = RejectReason


class CanonicalError(StationError, ValueError):
    """The message holds a value without a canonical form (float, huge integer, lone
    surrogate, a non-string key)."""


class KeyFileError(StationError, ValueError):
    """A key file that cannot be read or is not an Ed25519 key as openssl writes it."""


class SignatureLibraryMissing(StationError, ImportError):
    """PyNaCl is not installed (on armv7l it comes from the OS: ``python3-nacl``)."""


# --- canonical form ---------------------------------------------------------------------------

def canonical(doc: Any) -> bytes:
    """RFC 8785 bytes of ``doc`` (UTF-8). Raises ``CanonicalError``."""
    if _plain(doc):
        # What the interface sends: ASCII keys (so code-point order is UTF-16 order), no
        # float, no huge integer. json's C encoder then writes exactly JCS, twice as fast.
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        parts: list[str] = []
        _emit(doc, parts)
        text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalError("a string holds a lone surrogate") from None


def _plain(value: Any) -> bool:
    if type(value) is str or value is None or type(value) is bool:
        return True
    if type(value) is int:
        return -MAX_SAFE_INT <= value <= MAX_SAFE_INT
    if type(value) is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    if type(value) is list:
        return all(_plain(v) for v in value)
    return False


def _emit(value: Any, out: list[str]) -> None:
    if value is None or value is True or value is False:
        out.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, str):
        out.append(_quote(value))               # escapes exactly as JCS does
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise CanonicalError(f"integer beyond ±(2**53 − 1): {str(value)[:20]}")
        out.append(str(value))
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CanonicalError("an object key is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16)):
            if i:
                out.append(",")
            out.append(_quote(key))
            out.append(":")
            _emit(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out)
        out.append("]")
    elif isinstance(value, float):
        raise CanonicalError("a number with a fraction or exponent (only integers are signed)")
    else:
        raise CanonicalError(f"not a JSON value: {type(value).__name__}")


def _utf16(key: str) -> bytes:
    # JCS sorts by UTF-16 code units; Python compares code points (they differ above U+FFFF).
    return key.encode("utf-16-be", "surrogatepass")


def signed_bytes(message: Mapping[str, Any], topic: str) -> bytes:
    """What is signed: ``topic``, a newline, the canonical message without ``sig``."""
    body = {k: v for k, v in message.items() if k != SIG}
    return topic.encode("utf-8") + b"\n" + canonical(body)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes | None:
    """The 64 signature bytes, or None unless ``text`` is their canonical base64url."""
    if not _SIG_B64_RE.match(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (binascii.Error, ValueError):
        return None
    return raw if b64url(raw) == text else None   # no second spelling of one signature


# --- key files --------------------------------------------------------------------------------

def _pem_der(text: str, label: str, path: Path) -> bytes:
    lines = [line.strip() for line in text.strip().splitlines()]
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    if len(lines) < 3 or lines[0] != begin or lines[-1] != end:
        raise KeyFileError(f"{path}: not a PEM {label.lower()} ({begin} … {end})")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{path}: PEM body is not base64") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise KeyFileError(f"is a directory, not a file: {path}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a PEM file (not ASCII text)") from None
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror or e}") from None


def read_public_key(path: Path) -> bytes:
    """The 32 raw bytes of an Ed25519 public key PEM (``openssl pkey -pubout``).

    Raises ``KeyFileError`` (unreadable, not PEM, another algorithm)."""
    der = _pem_der(_read_text(path), "PUBLIC KEY", path)
    if len(der) != len(SPKI_PREFIX) + 32 or not der.startswith(SPKI_PREFIX):
        raise KeyFileError(f"{path}: not an Ed25519 public key (openssl pkey -pubout writes "
                           "one from `openssl genpkey -algorithm ed25519`)")
    return der[len(SPKI_PREFIX):]


def read_private_seed(path: Path) -> bytes:
    """The 32-byte seed of an Ed25519 private key PEM (``openssl genpkey -algorithm ed25519``).

    Raises ``KeyFileError``."""
    der = _pem_der(_read_text(path), "PRIVATE KEY", path)
    if len(der) != len(PKCS8_PREFIX) + 32 or not der.startswith(PKCS8_PREFIX):
        raise KeyFileError(f"{path}: not an Ed25519 private key as "
                           "`openssl genpkey -algorithm ed25519` writes it")
    return der[len(PKCS8_PREFIX):]


def public_pem(raw: bytes) -> str:
    return _pem("PUBLIC KEY", SPKI_PREFIX + raw)


def private_pem(seed: bytes) -> str:
    return _pem("PRIVATE KEY", PKCS8_PREFIX + seed)


def _pem(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n"


# --- the library, imported on first use -------------------------------------------------------

def _nacl() -> Any:
    try:
        import nacl.bindings
        import nacl.exceptions
        import nacl.signing
    except ImportError as e:
        raise SignatureLibraryMissing(
            f"PyNaCl is needed for signatures ({e}); install the package's dependencies "
            "(on a 32-bit Pi: apt install python3-nacl)") from None
    return nacl


def check_library() -> str | None:
    """Why signatures cannot be verified here (the library is missing), or None."""
    try:
        _nacl()
    except SignatureLibraryMissing as e:
        return str(e)
    return None


# --- signing (HQ, the desk, tests) ------------------------------------------------------------

@dataclass(frozen=True)
class SigningKey:
    """A private key with its key id. ``seed`` is secret: kept out of repr."""

    kid: str
    seed: bytes

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"

    @classmethod
    def from_file(cls, path: str | Path, kid: str) -> SigningKey:
        """Raises ``KeyFileError``, or ``ValueError`` for a kid that is not a key id."""
        if not KID_RE.match(kid):
            raise ValueError(f"kid {kid!r}: not 1–64 of [A-Za-z0-9._:-]")
        return cls(kid, read_private_seed(Path(path)))

    @property
    def public_key(self) -> bytes:
        return bytes(_nacl().signing.SigningKey(self.seed).verify_key)


def sign(message: Mapping[str, Any], topic: str, key: SigningKey) -> dict[str, Any]:
    """``message`` (without any old ``sig``) plus ``sig`` for publishing on ``topic``.

    Raises ``CanonicalError`` for a value without a canonical form (a float)."""
    body = {k: v for k, v in message.items() if k != SIG}
    signature = _nacl().signing.SigningKey(key.seed).sign(signed_bytes(body, topic)).signature
    return {**body, SIG: {"kid": key.kid, "ed25519": b64url(signature)}}


def sign_payload(payload: bytes, topic: str, key: SigningKey) -> bytes:
    """A JSON object payload (a complaint or command as built by ``station.protocol``) signed
    for ``topic``, serialised compactly (UTF-8, non-ASCII as itself). Raises ``ValueError``
    (not a JSON object), ``CanonicalError``."""
    doc = json.loads(payload)
    if not isinstance(doc, dict):
        raise ValueError("only a JSON object can be signed")
    return json.dumps(sign(doc, topic, key), separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def generate(kid: str) -> SigningKey:
    """A new random key."""
    if not KID_RE.match(kid):
        raise ValueError(f"kid {kid!r}: not 1–64 of [A-Za-z0-9._:-]")
    return SigningKey(kid, bytes(_nacl().signing.SigningKey.generate()))


# --- verifying (the station) ------------------------------------------------------------------

@dataclass(frozen=True)
class Refusal:
    reason: Reason
    detail: str


@dataclass(frozen=True)
class Verified:
    kid: str


class KeyRing:
    """Public keys by kid. Verification raises nothing: any input gives a verdict."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        nacl = _nacl()
        self._verify_keys = {kid: nacl.signing.VerifyKey(raw) for kid, raw in keys.items()}
        self._bad = nacl.exceptions.BadSignatureError
        self._errors = (nacl.exceptions.CryptoError, ValueError, TypeError)

    def __contains__(self, kid: object) -> bool:
        return kid in self._verify_keys

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._verify_keys)

    def verify(self, message: Mapping[str, Any], topic: str) -> Verified | Refusal:
        """Check ``message``'s ``sig`` (which must be present) over ``topic``."""
        sig = message.get(SIG)
        if not isinstance(sig, dict):
            return Refusal(Reason.BAD_SIGNATURE, "sig: not an object {kid, ed25519}")
        kid, value = sig.get("kid"), sig.get("ed25519")
        if not isinstance(kid, str) or not KID_RE.match(kid):
            return Refusal(Reason.BAD_SIGNATURE, "sig.kid: not a key id")
        key = self._verify_keys.get(kid)
        if key is None:
            return Refusal(Reason.UNKNOWN_KEY, f"sig.kid {kid}: not a configured key")
        raw = _unb64url(value) if isinstance(value, str) else None
        if raw is None:
            return Refusal(Reason.BAD_SIGNATURE, "sig.ed25519: not 64 bytes of base64url "
                                                 "without padding")
        try:
            data = signed_bytes(message, topic)
        except CanonicalError as e:
            return Refusal(Reason.BAD_SIGNATURE, f"no canonical form: {e}"[:160])
        try:
            key.verify(data, raw)
        except self._bad:
            return Refusal(Reason.BAD_SIGNATURE, f"signature by {kid} does not verify "
                                                 "(message, topic or key differ)")
        except self._errors as e:
            return Refusal(Reason.BAD_SIGNATURE, f"signature by {kid} unusable: "
                                                 f"{type(e).__name__}")
        return Verified(kid)


@dataclass(frozen=True)
class Gate:
    """What a station requires of one topic's messages (complaints: HQ keys; commands: desk
    keys). ``required``: an unsigned message is refused; a signed one is always verified."""

    ring: KeyRing
    required: bool

    def check(self, payload: bytes, topic: str) -> Verified | Refusal | None:
        """The verdict on ``payload`` received on ``topic``; None when it is unsigned and
        allowed, or not a version-1 JSON object at all (the protocol room refuses that with
        its own reason). Never raises."""
        doc = _object(payload)
        if doc is None:
            return None
        if SIG not in doc:
            return Refusal(Reason.UNSIGNED, "no sig member") if self.required else None
        return self.ring.verify(doc, topic)


def _object(payload: bytes) -> dict[str, Any] | None:
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or type(doc.get("v")) is not int or doc["v"] != 1:
        return None
    return doc


def freshness(reported_at: str | None, *, now_wall: float, max_age_s: float,
              synced: bool) -> Refusal | None:
    """Why a signed complaint's ``reported_at`` (RFC 3339, already validated) is refused:
    missing (always), or — only when the clock is ``synced`` — older than ``max_age_s`` or more
    than ``FUTURE_SLACK_S`` ahead of ``now_wall`` (epoch seconds). None when acceptable.

    An unsynchronised Pi may believe it is 1970 or last week: it does not judge age then, and
    the complaint-id memory (at least ``alarm.seen_ids_days``) stops a replay instead."""
    if reported_at is None:
        return Refusal(Reason.STALE, "reported_at: required on a signed complaint")
    if not synced:
        return None
    try:
        at = datetime.fromisoformat(reported_at).timestamp()
    except (ValueError, OverflowError, OSError):
        return Refusal(Reason.STALE, "reported_at: not a usable time")
    age = now_wall - at
    if age > max_age_s:
        return Refusal(Reason.STALE, f"reported_at is {age:.0f} s old (> {max_age_s:g} s)")
    if age < -FUTURE_SLACK_S:
        return Refusal(Reason.STALE, f"reported_at is {-age:.0f} s in the future "
                                     f"(> {FUTURE_SLACK_S:g} s)")
    return None


def ring_of(keys: Iterable[tuple[str, bytes]]) -> KeyRing:
    """A ``KeyRing`` from ``(kid, raw public key)`` pairs."""
    return KeyRing(dict(keys))


def gates_for(security: Any) -> tuple[Gate | None, Gate | None]:
    """The (complaints, commands) gates of a config's ``security`` section (HQ keys sign
    complaints, desk keys commands), or ``(None, None)`` when signatures are off: then the
    library is never imported."""
    if not security.enabled:
        return None, None

    def gate(refs: Iterable[Any]) -> Gate:
        return Gate(KeyRing({r.kid: r.public_key for r in refs}), security.require_signatures)
    return gate(security.hq_keys), gate(security.desk_keys)
