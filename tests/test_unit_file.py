"""The systemd unit: `systemd-analyze verify` clean, security exposure ≤ 2.0, required settings
(docs/BEHAVIOUR.md §6)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import functools

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "polres-station.service"
INSTALLED_BIN = "/opt/polres-station/venv/bin/polres-station"
ANALYZE = shutil.which("systemd-analyze")
def _need_analyze(test):  # type: ignore[no-untyped-def]
    """systemd-analyze is installed by make broker-tools: missing, the test fails, never skips."""
    @functools.wraps(test)
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert ANALYZE is not None, "systemd-analyze not installed (make broker-tools)"
        return test(*args, **kwargs)
    return run


needs_analyze = _need_analyze


def settings(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) → every value, in order (keys such as DeviceAllow= repeat)."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with its ExecStart=/ExecStopPost= binary swapped for one that exists here
    (verify fails on a missing binary)."""
    true = shutil.which("true")
    assert true is not None
    path = tmp_path / "polres-station.service"
    path.write_text(UNIT.read_text().replace(INSTALLED_BIN, true))
    return path


@needs_analyze
def test_verify_is_clean(unit: Path) -> None:
    result = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, cwd=unit.parent)
    # Unknown keys and bad values only warn, with exit status 0: any output is a failure.
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", (
        result.stdout + result.stderr)


@needs_analyze
def test_security_exposure_at_most_2(unit: Path) -> None:
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=20",
                             str(unit)], capture_output=True, text=True, timeout=60,
                            cwd=unit.parent)
    match = re.search(r"Overall exposure level for polres-station\.service: (\d+\.\d+)",
                      result.stdout)
    assert match, result.stdout + result.stderr
    score = float(match.group(1))
    print(f"systemd-analyze security exposure: {score}")
    assert score <= 2.0, result.stdout
    assert result.returncode == 0, result.stderr  # --threshold=20 means 2.0


def test_required_settings() -> None:
    s = settings(UNIT.read_text())

    def one(section: str, key: str) -> str:
        values = s.get((section, key), [])
        assert len(values) == 1, f"[{section}] {key}= set {len(values)} times"
        return values[0]

    run = "run -c /etc/polres-station/station.yaml"
    assert one("Service", "ExecStart") == f"{INSTALLED_BIN} {run}"
    assert one("Service", "ExecStopPost") == (
        f"{INSTALLED_BIN} outputs-off -c /etc/polres-station/station.yaml")
    expected = {
        ("Service", "Type"): "notify",
        ("Service", "NotifyAccess"): "main",
        ("Service", "WatchdogSec"): "30",
        ("Service", "Restart"): "always",
        ("Service", "RestartSec"): "2",
        ("Service", "RestartPreventExitStatus"): "78",
        ("Unit", "StartLimitIntervalSec"): "0",
        ("Unit", "After"): "network-online.target",
        ("Service", "User"): "polres-station",
        ("Service", "Group"): "polres-station",
        ("Service", "SupplementaryGroups"): "gpio",
        ("Service", "StateDirectory"): "polres-station",
        ("Service", "ConfigurationDirectory"): "polres-station",
        ("Service", "WorkingDirectory"): "/var/lib/polres-station",
        ("Service", "DevicePolicy"): "closed",
        ("Service", "ProtectSystem"): "strict",
        ("Service", "NoNewPrivileges"): "yes",
        ("Service", "CapabilityBoundingSet"): "",
        ("Service", "RestrictAddressFamilies"): "AF_UNIX AF_INET AF_INET6",
        ("Service", "SystemCallErrorNumber"): "EPERM",
        ("Install", "WantedBy"): "multi-user.target",
    }
    for (section, key), value in expected.items():
        assert one(section, key) == value, f"[{section}] {key}="
    assert s[("Service", "DeviceAllow")] == ["char-gpiochip rw", "/dev/gpiomem rw"]
    assert "PYTHONUNBUFFERED=1" in s[("Service", "Environment")]
    filters = s[("Service", "SystemCallFilter")]
    assert filters[0] == "@system-service"
    # heartbeat.clock_synced() reads adjtimex(): allowed last (after ~@privileged), and no
    # ProtectClock=, which refuses it whatever the filter says.
    assert filters[-1] == "adjtimex" and ("Service", "ProtectClock") not in s
    # GPIO must stay reachable: these would hide /dev/gpiochip* or the gpio group.
    assert ("Service", "PrivateDevices") not in s
    assert ("Service", "PrivateUsers") not in s
    # A Pi has no RTC: waiting for time sync could hold the station back indefinitely.
    assert "time-sync.target" not in " ".join(v for vs in s.values() for v in vs)
    assert ("Unit", "StartLimitBurst") not in s and ("Service", "StartLimitBurst") not in s


def test_does_not_pull_in_or_wait_for_network_or_time_sync() -> None:
    text = (Path(__file__).parent.parent / "systemd" / "polres-station.service").read_text()
    lines = [ln.strip() for ln in text.splitlines() if not ln.strip().startswith("#")]
    assert not any(ln.startswith(("Wants=", "Requires=")) and "network-online" in ln
                   for ln in lines)
    assert not any("time-sync.target" in ln for ln in lines)


def test_reliability_doc_describes_this_unit() -> None:
    """Every unit setting docs/RELIABILITY.md names (`Key=value`) is in the shipped unit, and
    every one it says the unit lacks ("no `Key=`") is absent: the document once described an
    older unit (no RuntimeDirectory=, a temporary copy lost at every restart)."""
    doc = (UNIT.parent.parent / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    lines = {line.strip() for line in UNIT.read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    keys = {line.split("=", 1)[0] for line in lines if "=" in line}
    named = re.findall(r"(no )?`([A-Z][A-Za-z]+)=([^`\s]*)`", doc)
    assert named, "docs/RELIABILITY.md names no unit setting any more"
    directive = re.compile(r"^[A-Z][a-z]+(?:[A-Z][a-z]*)+$")   # RuntimeDirectory, not CI
    for negated, key, value in named:
        if key not in keys and not directive.match(key):
            continue                                             # an environment variable
        if negated:
            assert key not in keys, f"RELIABILITY.md says the unit has no {key}=; it has"
        elif value:
            assert f"{key}={value}" in lines, f"RELIABILITY.md names {key}={value}; the unit " \
                f"has {sorted(line for line in lines if line.startswith(key + '='))}"
