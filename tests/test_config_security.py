"""The config's ``security`` section (docs/SIGNING.md) and what ``check-config`` says of it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import openssl_keypair, security_section
from station.config import SecurityConfig, load_config
from station.errors import ConfigError
from station.signing import read_public_key

BASE: dict[str, Any] = {
    "station": {"id": "prabumulih-1", "region": "sumsel-prabumulih"},
    "broker": {"host": "127.0.0.1"},
}


def write(tmp_path: Path, security: Any) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({**BASE, "security": security}))
    return path


def problems(tmp_path: Path, security: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, security), env={})
    return info.value.problems


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return openssl_keypair(tmp_path / "keys", "hq-2026")


def test_no_section_means_signatures_off(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(BASE))
    security = load_config(path, env={}).security
    assert security == SecurityConfig() and not security.enabled
    assert security.max_age_s == 3600


def test_keys_are_read_and_required_by_default(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    desk = openssl_keypair(tmp_path / "keys", "desk-1")[1]
    config = load_config(write(tmp_path, security_section({"hq-2026": pair[1]},
                                                          {"desk-1": desk})), env={})
    s = config.security
    assert s.enabled and s.require_signatures
    assert [k.kid for k in s.hq_keys] == ["hq-2026"] and [k.kid for k in s.desk_keys] == ["desk-1"]
    assert s.hq_keys[0].public_key == read_public_key(pair[1])
    assert "public_key=" not in repr(s.hq_keys[0])
    relaxed = load_config(write(tmp_path, security_section(
        {"hq-2026": pair[1]}, require_signatures=False, max_age_s=600)), env={}).security
    assert relaxed.enabled and not relaxed.require_signatures and relaxed.max_age_s == 600


def test_relative_key_path_is_beside_the_config(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    s = load_config(write(tmp_path, {"hq_keys": [{"kid": "a", "public_key_file":
                                                   "keys/hq-2026.pub.pem"}]}), env={}).security
    assert s.hq_keys[0].public_key_file == pair[1]


def test_every_key_problem_is_named_with_its_path(tmp_path: Path,
                                                  pair: tuple[Path, Path]) -> None:
    found = problems(tmp_path, {
        "hq_keys": [{"kid": "a", "public_key_file": str(pair[1])},
                    {"kid": "a", "public_key_file": str(pair[1])},          # kid twice
                    {"kid": "b", "public_key_file": str(tmp_path / "nope.pem")},
                    {"kid": "c", "public_key_file": str(pair[0])},           # private key
                    {"kid": "bad kid", "public_key_file": str(pair[1])},
                    {"public_key_file": str(pair[1])},
                    {"kid": "d"},
                    "hq.pem"],
        "desk_keys": [{"kid": "a", "public_key_file": str(pair[1]), "extra": 1}],
        "max_age_s": 5, "require_signatures": "yes", "unknown": 1})
    text = "\n".join(found)
    for expected in ("security.hq_keys[1].kid: 'a' is already the kid of security.hq_keys[0]",
                     "security.hq_keys[2].public_key_file: file not found",
                     "security.hq_keys[3].public_key_file: ",
                     "not a PEM public key",
                     "security.hq_keys[4].kid: 'bad kid' is not a key id",
                     "security.hq_keys[5].kid: required",
                     "security.hq_keys[6].public_key_file: required",
                     "security.hq_keys[7]: expected a mapping",
                     "security.desk_keys[0].extra: unknown key",
                     "security.desk_keys[0].kid: 'a' is already the kid of security.hq_keys[0]",
                     "security.max_age_s: must be 60",
                     "security.require_signatures: expected true or false",
                     "security.unknown: unknown key"):
        assert expected in text, (expected, found)


def test_other_algorithms_are_refused(tmp_path: Path) -> None:
    key = tmp_path / "ec.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(key)], check=True, capture_output=True)
    pub = tmp_path / "ec.pub.pem"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    found = problems(tmp_path, security_section({"hq-ec": pub}))
    assert any("hq_keys[0].public_key_file" in p and "not an Ed25519 public key" in p
               for p in found), found


def test_required_without_hq_keys_is_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    found = problems(tmp_path, {"require_signatures": True})
    assert any(p.startswith("security.hq_keys: required") for p in found), found
    found = problems(tmp_path, security_section({}, {"desk-1": pair[1]}))
    assert any(p.startswith("security.hq_keys: required") for p in found), found


def test_check_config_exits_78_naming_the_key_file(tmp_path: Path) -> None:
    bad = write(tmp_path, security_section({"hq-1": tmp_path / "missing.pub.pem"}))
    done = subprocess.run([sys.executable, "-m", "station.cli", "check-config", "-c", str(bad)],
                          capture_output=True, text=True, env={**os.environ, "SENTRY_DSN": ""})
    assert done.returncode == 78, done
    assert "security.hq_keys[0].public_key_file: file not found" in done.stdout + done.stderr


def test_check_config_says_what_is_signed(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    good = write(tmp_path, security_section({"hq-2026": pair[1]}))
    done = subprocess.run([sys.executable, "-m", "station.cli", "check-config", "-c", str(good)],
                          capture_output=True, text=True, env={**os.environ, "SENTRY_DSN": ""})
    assert done.returncode == 0, done
    assert "signatures required: complaints by hq-2026" in done.stdout
    assert "no desk key" in done.stdout            # every remote command will be refused


def test_a_bad_key_file_is_reported_even_beside_a_bad_kid(tmp_path: Path,
                                                          pair: tuple[Path, Path]) -> None:
    """Every problem in one run (docs/BEHAVIOUR.md §5): a wrong kid does not hide that the
    file beside it is no public key."""
    found = problems(tmp_path, {"hq_keys": [{"kid": "bad kid", "public_key_file": str(pair[0])},
                                            {"public_key_file": str(pair[0])}]})
    text = "\n".join(found)
    assert "security.hq_keys[0].kid: 'bad kid' is not a key id" in text
    assert "security.hq_keys[0].public_key_file: " in text and "not a PEM public key" in text
    assert "security.hq_keys[1].kid: required" in text
    assert "security.hq_keys[1].public_key_file: " in text
