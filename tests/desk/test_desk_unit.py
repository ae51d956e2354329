"""systemd/polres-desk.service: clean for systemd-analyze verify, well hardened, and its
ExecStart is the desk subcommand with the options of an environment file."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "polres-desk.service"
INSTALLED_BIN = "/opt/polres-station/venv/bin/polres-station"
ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with its binary swapped for one that exists here (verify checks it)."""
    if ANALYZE is None:
        pytest.fail("systemd-analyze missing: run `make broker-tools` (apt systemd)")
    true = shutil.which("true")
    assert true is not None
    path = tmp_path / "polres-desk.service"
    path.write_text(UNIT.read_text().replace(INSTALLED_BIN, true))
    return path


def test_verify_is_clean(unit: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, cwd=unit.parent)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", (
        result.stdout + result.stderr)


def test_security_exposure_at_most_2(unit: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=20",
                             str(unit)], capture_output=True, text=True, timeout=60,
                            cwd=unit.parent)
    match = re.search(r"Overall exposure level for polres-desk\.service: (\d+\.\d+)",
                      result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_it_runs_the_desk_with_the_environment_files_options() -> None:
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_BIN} desk $DESK_ARGS" in text
    assert "EnvironmentFile=-/etc/polres-desk/desk.env" in text
    assert "StateDirectory=polres-desk" in text       # --db defaults to $STATE_DIRECTORY
