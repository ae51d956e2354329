"""Who may send commands from the page: a password file, sessions, CSRF tokens.

The password file has mosquitto's format (``user:$7$ITERATIONS$SALT$HASH``: PBKDF2-HMAC-SHA512,
base64; ``$6$SALT$HASH``: salted SHA-512, mosquitto's older format), so ``mosquitto_passwd -c
FILE USER`` makes one, and so does ``python -m station.desk.web.auth FILE USER``. Passwords are
compared in constant time; a failed login costs ``FAIL_DELAY_S``.

Sessions live in memory (a desk restart logs everyone out): a random id in an HttpOnly,
SameSite=Strict cookie. Every state-changing request carries the session's CSRF token in the
``X-CSRF-Token`` header (double submit: the page reads it from ``GET /api/session``); a
cross-site page can neither read the token nor send the header without a CORS preflight, which
the desk never grants.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SESSION_S = 12 * 3600
FAIL_DELAY_S = 0.5
ITERATIONS = 101 * 1000           # mosquitto_passwd uses 101; more is allowed by the format
MAX_SESSIONS = 1000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, iterations: int = ITERATIONS) -> str:
    """A ``$7$`` entry (PBKDF2-HMAC-SHA512, 12-byte salt), as mosquitto_passwd writes."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify(password: str, entry: str) -> bool:
    """Does ``password`` match a ``$7$``/``$6$`` entry? False for any malformed entry."""
    parts = entry.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt, want = int(parts[2]), base64.b64decode(parts[3]), \
                base64.b64decode(parts[4])
            got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations,
                                      len(want))
        elif len(parts) == 4 and parts[1] == "6":
            salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            got = hashlib.sha512(password.encode("utf-8") + salt).digest()
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def load_password_file(path: Path) -> dict[str, str]:
    """``user → entry``; raises ValueError naming the line of a malformed entry."""
    users: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, entry = line.partition(":")
        if not sep or not user or not entry.startswith(("$6$", "$7$")):
            raise ValueError(f"{path}:{n}: not 'user:$7$…' (mosquitto_passwd format)")
        users[user] = entry
    if not users:
        raise ValueError(f"{path}: no users")
    return users


@dataclass
class Session:
    user: str
    csrf: str
    expires: float


class Sessions:
    """Logged-in sessions and the anonymous CSRF tokens of a read-only desk."""

    def __init__(self, users: dict[str, str] | None) -> None:
        self.users = users or {}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def login(self, user: str, password: str) -> str | None:
        """A new session id, or None (after ``FAIL_DELAY_S``) for a wrong user or password."""
        entry = self.users.get(user)
        if entry is None or not verify(password, entry):
            time.sleep(FAIL_DELAY_S)
            return None
        return self._new(user)

    def anonymous(self) -> str:
        """A session without a user (read-only desk: it still needs a CSRF token)."""
        return self._new("")

    def _new(self, user: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._expire(now, force=True)
            self._sessions[sid] = Session(user, secrets.token_urlsafe(32), now + SESSION_S)
        return sid

    def _expire(self, now: float, force: bool = False) -> None:
        for sid, s in list(self._sessions.items()):
            if s.expires < now or (force and not s.user):
                del self._sessions[sid]

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            s = self._sessions.get(sid)
            if s is not None and s.expires < time.time():
                del self._sessions[sid]
                return None
            return s

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    @staticmethod
    def csrf_ok(session: Session | None, token: str | None) -> bool:
        return session is not None and token is not None and \
            hmac.compare_digest(session.csrf.encode(), token.encode())


def main(argv: list[str]) -> int:
    """``python -m station.desk.web.auth FILE USER``: add or replace USER in FILE."""
    if len(argv) != 2:
        print("usage: python -m station.desk.web.auth PASSWORD_FILE USER", file=sys.stderr)
        return 2
    path, user = Path(argv[0]), argv[1]
    if ":" in user or not user.isprintable():
        print("user: no ':' and printable only", file=sys.stderr)
        return 2
    password = getpass.getpass(f"password for {user}: ")
    if password != getpass.getpass("again: "):
        print("passwords differ", file=sys.stderr)
        return 1
    lines = [ln for ln in (path.read_text().splitlines() if path.exists() else [])
             if not ln.startswith(f"{user}:")]
    lines.append(f"{user}:{hash_password(password)}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
