"""``polres-station keygen`` and ``send-complaint --sign-key FILE --kid KID`` (docs/SIGNING.md)."""
from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from helpers import REGION, security_section, station_config, wait_for


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True,
                          text=True, timeout=30)


def test_keygen_writes_openssl_compatible_pair_private_0600(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    r = run_cli("keygen", "--kid", "hq-2026", "--out", str(out))
    assert r.returncode == 0, r.stderr
    private, public = out / "hq-2026.pem", out / "hq-2026.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert "hq-2026.pub.pem" in r.stdout and "hq_keys" in r.stdout
    # openssl derives the same public key from the private one, and reads it as Ed25519.
    derived = subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout"],
                             capture_output=True, text=True, check=True).stdout
    assert derived == public.read_text()
    text = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(public), "-text", "-noout"],
                          capture_output=True, text=True, check=True).stdout
    assert "ED25519" in text.upper()


def test_keygen_never_overwrites_and_checks_the_kid(tmp_path: Path) -> None:
    assert run_cli("keygen", "--kid", "hq-1", "--out", str(tmp_path)).returncode == 0
    before = (tmp_path / "hq-1.pem").read_bytes()
    again = run_cli("keygen", "--kid", "hq-1", "--out", str(tmp_path))
    assert again.returncode == 1 and "never overwritten" in again.stderr
    assert (tmp_path / "hq-1.pem").read_bytes() == before
    bad = run_cli("keygen", "--kid", "../x", "--out", str(tmp_path))
    assert bad.returncode == 2 and "--kid" in bad.stderr


def test_send_complaint_signed_alarms_a_station_that_requires_signatures(
        broker, hq, tmp_path, start_station) -> None:
    keys = tmp_path / "keys"
    assert run_cli("keygen", "--kid", "hq-2026", "--out", str(keys)).returncode == 0
    s = start_station(station_config(tmp_path, broker.port, security=security_section(
        {"hq-2026": keys / "hq-2026.pub.pem"})))
    hq.wait_status(lambda d: d["state"] == "online")
    unsigned = run_cli("send-complaint", "--broker", broker.address, "--region", REGION,
                       "--id", "plain")
    assert unsigned.returncode == 0, unsigned.stderr       # the broker took it ...
    assert hq.wait_event("rejected", complaint_id="plain")[0]["reason"] == "unsigned"
    r = run_cli("send-complaint", "--broker", broker.address, "--region", REGION,
                "--id", "signed-1", "--priority", "emergency",
                "--sign-key", str(keys / "hq-2026.pem"), "--kid", "hq-2026")
    assert r.returncode == 0, r.stderr
    hq.wait_event("alerting", complaint_id="signed-1")
    wait_for(lambda: s.relay_on("siren"), 5)
    assert len(hq.of_type("rejected")) == 1


def test_send_complaint_sign_options_go_together(tmp_path: Path) -> None:
    r = run_cli("send-complaint", "--broker", "127.0.0.1:1", "--region", REGION,
                "--sign-key", str(tmp_path / "none.pem"))
    assert r.returncode == 2 and "--sign-key and --kid go together" in r.stderr
    r = run_cli("send-complaint", "--broker", "127.0.0.1:1", "--region", REGION,
                "--sign-key", str(tmp_path / "none.pem"), "--kid", "hq-1")
    assert r.returncode == 2 and "file not found" in r.stderr


def test_station_keys_give_a_security_section_the_config_accepts(tmp_path: Path) -> None:
    from station.config import parse_config
    from station.keygen import station_keys
    from station.signing import ring_of, sign
    hq_key, desk_key, section = station_keys(tmp_path / "keys")
    config = parse_config({"station": {"id": "prabumulih-1", "region": REGION},
                           "broker": {"host": "127.0.0.1"}, "security": section})
    assert config.security.require_signatures
    ring = ring_of((k.kid, k.public_key) for k in config.security.hq_keys)
    assert ring.verify(sign({"v": 1}, "t", hq_key), "t").kid == "hq"
    assert [k.kid for k in config.security.desk_keys] == [desk_key.kid] == ["desk"]


def test_keygen_does_not_file_a_desk_key_under_hq_keys(tmp_path: Path) -> None:
    """The printed config must not put every key in ``hq_keys``: a desk key pasted there could
    sound sirens (docs/SIGNING.md). It names both lists and says which key goes where."""
    r = run_cli("keygen", "--kid", "desk-1", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "hq_keys" in r.stdout and "desk_keys" in r.stdout and "never both" in r.stdout
    assert "security:\n  hq_keys:\n    - {kid: desk-1" not in r.stdout
