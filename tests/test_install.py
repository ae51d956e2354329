"""systemd/install.sh into a scratch root: idempotent, never overwrites station.yaml, never edits
the Pi's config.txt; --uninstall keeps config and state unless --purge (docs/BEHAVIOUR.md §6)."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import station_config

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "systemd" / "install.sh"
UNIT = "etc/systemd/system/polres-station.service"
DROPIN = "etc/systemd/system.conf.d/polres-station-watchdog.conf"
CONF = "etc/polres-station/station.yaml"
BOOT = "etc/polres-station/boot-config.txt"
STATE_DB = "var/lib/polres-station/state.db"
WANTS = "etc/systemd/system/multi-user.target.wants/polres-station.service"


def install(root: Path, *args: str, python: str = sys.executable,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": python}
    env.pop("SENTRY_DSN", None)
    result = subprocess.run(["bash", str(INSTALL), "--root", str(root), *args],
                            capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def snapshot(root: Path) -> dict[str, tuple[int, str | bytes]]:
    """Every path under root → (mode, content or link target). Contents as bytes: the docs
    installed with the package hold images (docs/desk-*.png)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        body: str | bytes
        if stat.S_ISLNK(st.st_mode):
            body = "-> " + os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            body = path.read_bytes()
        else:
            body = ""
        out[str(path.relative_to(root))] = (st.st_mode, body)
    return out


def example_passes() -> bool:
    return subprocess.run([sys.executable, "-m", "station.cli", "check-config", "-c",
                           str(REPO / "config/station.example.yaml")],
                          capture_output=True).returncode == 0


def settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    boot = r / "boot" / "firmware" / "config.txt"
    boot.parent.mkdir(parents=True)
    boot.write_text("# the Pi's own config.txt\narm_64bit=1\n[all]\n")
    return r


def test_install_twice_is_idempotent_and_keeps_config(root: Path) -> None:
    boot_before = (root / "boot/firmware/config.txt").read_text()
    first = install(root, "--skip-venv")
    assert "created /etc/polres-station/station.yaml" in first.stdout
    assert "skipped (--root): groupadd --system gpio (if missing); useradd" in first.stdout
    assert (root / UNIT).read_text() == (REPO / "systemd/polres-station.service").read_text()
    assert (root / DROPIN).read_text() == (
        REPO / "systemd/polres-station-watchdog.conf").read_text()
    assert (root / CONF).read_text() == (REPO / "config/station.example.yaml").read_text()
    assert stat.S_IMODE((root / CONF).stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "etc/polres-station").stat().st_mode) == 0o750
    assert settings((root / BOOT).read_text()) == settings(
        (REPO / "firmware/config.txt.example").read_text())
    assert os.readlink(root / "usr/local/bin/polres-station") == (
        "/opt/polres-station/venv/bin/polres-station")
    # Enabled only once check-config passes (the example's placeholders are refused).
    assert os.path.lexists(root / WANTS) == example_passes()
    assert not (root / "opt/polres-station/venv").exists()  # --skip-venv

    # The technician's edit survives every later run; the boot lines follow it.
    edited = (root / CONF).read_text().replace(
        "    pin: 17\n    active_high: true", "    pin: 5\n    active_high: false")
    assert edited != (root / CONF).read_text()
    (root / CONF).write_text(edited)
    second = install(root, "--skip-venv")
    assert "kept the existing /etc/polres-station/station.yaml" in second.stdout
    assert (root / CONF).read_text() == edited
    assert "gpio=5=op,dh,pu" in settings((root / BOOT).read_text())

    before = snapshot(root)
    install(root, "--skip-venv")
    assert snapshot(root) == before
    assert (root / "boot/firmware/config.txt").read_text() == boot_before
    assert not list((root / "etc/polres-station").glob(".boot-config.*"))  # no temp left


def test_boot_lines_fall_back_to_the_example(root: Path) -> None:
    """No installed station package and no Python that can render: the committed example."""
    result = install(root, "--skip-venv", python="/bin/false")
    assert "copied firmware/config.txt.example" in result.stdout
    assert (root / BOOT).read_text() == (REPO / "firmware/config.txt.example").read_text()


def test_uninstall_keeps_config_and_state_unless_purged(root: Path) -> None:
    install(root, "--skip-venv")
    (root / CONF).write_text((root / CONF).read_text() + "# edited\n")
    state = (root / STATE_DB).parent
    assert stat.S_IMODE(state.stat().st_mode) == 0o750  # made by the installer
    (root / STATE_DB).write_bytes(b"SQLite format 3\0")
    kept = (root / CONF).read_text()

    result = install(root, "--uninstall")
    assert "kept /etc/polres-station" in result.stdout
    for gone in (UNIT, DROPIN, "opt/polres-station", "usr/local/bin/polres-station",
                 "etc/systemd/system/multi-user.target.wants/polres-station.service"):
        assert not os.path.lexists(root / gone), gone
    assert (root / CONF).read_text() == kept
    assert (root / STATE_DB).exists()
    assert (root / "boot/firmware/config.txt").exists()
    install(root, "--uninstall")  # again: nothing left to remove, still fine

    install(root, "--skip-venv")  # reinstall on top of the kept config
    assert (root / CONF).read_text() == kept
    install(root, "--uninstall", "--purge")
    assert not (root / "etc/polres-station").exists()
    assert not (root / "var/lib/polres-station").exists()


def test_usage_errors(root: Path) -> None:
    assert install(root, "--purge", check=False).returncode != 0
    assert install(root, "--bogus", check=False).returncode == 2
    result = install(root, "--source", str(root), "--skip-venv", check=False)
    assert result.returncode != 0 and "not a polres-station checkout" in result.stderr


def test_enabled_only_once_check_config_passes(root: Path, tmp_path: Path) -> None:
    assert shutil.which("systemctl"), "systemctl not installed (make broker-tools: systemd)"
    first = install(root, "--skip-venv")
    if not example_passes():
        assert "is not ready, so the service is not enabled or started" in first.stderr
        assert "station.yaml" in first.stderr and not os.path.lexists(root / WANTS)
    ready = station_config(tmp_path, 1883).read_text()  # loopback broker, mock pins
    (root / CONF).write_text(ready)
    second = install(root, "--skip-venv")
    assert "check-config OK" in second.stdout, second.stdout + second.stderr
    assert os.readlink(root / WANTS) == "/etc/systemd/system/polres-station.service"
    assert (root / CONF).read_text() == ready
