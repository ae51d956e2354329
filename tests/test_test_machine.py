"""`make test` is for development and CI machines: README names every Debian package it
installs, and on a Raspberry Pi (a station) it stops before installing anything."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")


def recipe(target: str) -> str:
    """The recipe lines of ``target`` in the Makefile (continuations included)."""
    text = (REPO / "Makefile").read_text()
    m = re.search(rf"(?m)^{re.escape(target)}:.*\n((?:\t.*\n)+)", text)
    assert m, f"no target {target} in the Makefile"
    return m.group(1)


def apt_packages(recipe_text: str) -> set[str]:
    """Packages named after `apt-get install` options, or added to a `missing` list."""
    found = set()
    for m in re.finditer(r"apt-get install((?: +[-\w.$]+)+)", recipe_text):
        found |= {w for w in m.group(1).split() if not w.startswith(("-", "$"))}
    found |= set(re.findall(r'missing="\$\$missing ([\w.+-]+)"', recipe_text))
    return found


def test_readme_names_every_package_make_test_installs():
    packages = apt_packages(recipe("broker-tools"))
    assert {"mosquitto", "rabbitmq-server", "systemd", "openssl"} <= packages
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    setup = readme[readme.index("## Set-up"):readme.index("## See it work")]
    assert sorted(p for p in packages if f"`{p}`" not in setup) == []


@pytest.fixture
def make():
    assert MAKE, "make is missing"
    return lambda *args: subprocess.run([MAKE, "-s", "-C", str(REPO), *args],
                                        capture_output=True, text=True, timeout=60)


def test_make_test_refuses_on_a_raspberry_pi(tmp_path, make):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\0")   # /proc/device-tree/model
    for target in ("not-a-station", "broker-tools"):
        r = make(target, f"PI_MODEL={model}")
        assert r.returncode != 0 and "Raspberry Pi" in r.stdout, r.stdout + r.stderr
        assert "installing" not in r.stdout
    assert make("not-a-station", f"PI_MODEL={model}", "ALLOW_TEST_PACKAGES=1").returncode == 0


def test_make_test_goes_on_elsewhere(tmp_path, make):
    model = tmp_path / "model"
    model.write_text("QEMU Virtual Machine\n")
    assert make("not-a-station", f"PI_MODEL={model}").returncode == 0
    assert make("not-a-station", f"PI_MODEL={tmp_path / 'absent'}").returncode == 0


def test_make_test_checks_first():
    assert re.search(r"(?m)^test: not-a-station\b", (REPO / "Makefile").read_text())
