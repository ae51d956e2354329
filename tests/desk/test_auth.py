"""The desk's login: mosquitto's password-file format (made by the real mosquitto_passwd),
sessions and the CSRF check."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from station.desk.web.auth import Sessions, hash_password, load_password_file, verify


def test_mosquitto_passwd_entries_verify(tmp_path: Path) -> None:
    path = tmp_path / "users"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "ayu", "rahasia"], check=True)
    users = load_password_file(path)
    assert verify("rahasia", users["ayu"])
    assert not verify("rahasia ", users["ayu"])
    assert not verify("", users["ayu"])


def test_own_hashes_are_salted_and_verify() -> None:
    a, b = hash_password("pw", iterations=1000), hash_password("pw", iterations=1000)
    assert a != b and a.startswith("$7$1000$")
    assert verify("pw", a) and verify("pw", b) and not verify("pw2", a)


@pytest.mark.parametrize("entry", ["", "plain", "$7$x$y$z", "$7$10$!!$!!", "$6$", "$1$a$b"])
def test_malformed_entries_never_verify(entry: str) -> None:
    assert not verify("pw", entry)


def test_password_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("# desk users\nayu:$7$101$c2FsdA==$aGFzaA==\nbudi:plaintext\n")
    with pytest.raises(ValueError, match=r"users:3"):
        load_password_file(path)
    path.write_text("# nobody\n")
    with pytest.raises(ValueError, match="no users"):
        load_password_file(path)


def test_sessions_and_csrf() -> None:
    sessions = Sessions({"ayu": hash_password("pw", iterations=1000)})
    assert sessions.login("ayu", "wrong") is None
    assert sessions.login("nobody", "pw") is None
    sid = sessions.login("ayu", "pw")
    s = sessions.get(sid)
    assert s is not None and s.user == "ayu"
    assert Sessions.csrf_ok(s, s.csrf)
    assert not Sessions.csrf_ok(s, s.csrf + "x") and not Sessions.csrf_ok(s, None)
    assert not Sessions.csrf_ok(None, s.csrf)
    anon = sessions.get(sessions.anonymous())
    assert anon is not None and anon.user == "" and anon.csrf != s.csrf
    sessions.logout(sid)
    assert sessions.get(sid) is None
