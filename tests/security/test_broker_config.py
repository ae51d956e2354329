"""The reference broker files stay what the docs say: the committed examples are exactly what
make-acl.sh generates, a bad registry produces no ACL at all, and the settings HQ relies on
are in mosquitto.conf."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from security.conftest import BROKER_CONFIG


def make_acl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BROKER_CONFIG / "make-acl.sh"), *args], capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize("flag, example", [("", "acl.example"),
                                           ("--dynsec", "dynamic-security.example.json")])
def test_committed_examples_are_generated(flag, example):
    out = make_acl(*([flag] if flag else []), str(BROKER_CONFIG / "stations.example"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == (BROKER_CONFIG / example).read_text(), \
        f"regenerate: make-acl.sh {flag} stations.example > {example}"
    if flag:
        doc = json.loads(out.stdout)
        assert {c["username"] for c in doc["clients"]} >= {"hq.dispatch", "prabumulih-1"}


@pytest.mark.parametrize("line, why", [
    ("bad.id region-1", "not an id"), ("only-one-field", "expected"),
    ("st-1 region-1\nst-1 region-2", "listed twice"), ("st-1 Region", "not an id"),
])
def test_bad_registry_gives_no_acl(tmp_path, line, why):
    registry = tmp_path / "stations"
    registry.write_text(f"ok-1 region-1\n{line}\n")
    for flag in ([], ["--dynsec"]):
        out = make_acl(*flag, str(registry))
        assert out.returncode != 0 and out.stdout == "" and why in out.stderr


def test_reference_settings():
    conf = (BROKER_CONFIG / "mosquitto.conf").read_text()
    active = dict(re.findall(r"(?m)^(\w+) (.+)$", conf))
    assert active["persistence"] == "true" and int(active["autosave_interval"]) <= 5
    assert int(active["max_queued_messages"]) >= 1000
    assert active["allow_anonymous"] == "false"
    assert active["require_certificate"] == "true"
    assert active["use_identity_as_username"] == "true"
    assert "acl_file" in active and re.search(r"(?m)^#crlfile ", conf)
