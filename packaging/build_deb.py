#!/usr/bin/env python3
"""Build dist/polres-station_<version>_all.deb with dpkg-deb (`make deb`).

The package installs offline: it carries a wheelhouse of every Python dependency that setup.py's
install_requires names (read back from the station's own wheel, never listed twice) for each
target platform × Python, and one lock file per target that postinst installs from with
``--no-index``. A dependency the package index has no wheel for on a target comes from the
operating system instead (``OS_PACKAGES``: a --system-site-packages venv sees it) and is declared
in Depends. Downloads are cached under ``build/deb/`` keyed by the requirements, so a second
build is offline.

Raises SystemExit with a message when a tool is missing, a download fails, or a dependency has
neither a wheel nor an operating-system package for some target.
"""
from __future__ import annotations

import argparse
import email.parser
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

NAME = "polres-station"
REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "packaging"
LIB = f"/usr/lib/{NAME}"
DOC = f"/usr/share/doc/{NAME}"
MAINTAINER = "Polres 110 station team <polres-110@polri.go.id>"

# The oldest system the package supports is Debian 12 / Raspberry Pi OS Bookworm (glibc 2.36):
# wheels up to manylinux_2_36 run there. pip does not widen a given manylinux tag to the older
# ones, so every tag is passed (manylinux2014 = manylinux_2_17).
GLIBC = "2_36"
MANYLINUX = ["manylinux2014", *(f"manylinux_2_{minor}" for minor in range(36, 16, -1))]
MACHINES = {"aarch64": "arm64", "armv7l": "armhf", "x86_64": "amd64"}  # → dpkg architecture
PYTHONS = ("3.11", "3.13")  # Bookworm, Trixie

# Library (normalised name) → the Debian / Raspberry Pi OS package that provides it, used only
# where the package index has no wheel for a target. A mapping, not a list of dependencies:
# which libraries are needed comes from setup.py.
OS_PACKAGES = {
    "pyyaml": "python3-yaml",
    "pynacl": "python3-nacl",
    "cffi": "python3-cffi-backend",
    "cryptography": "python3-cryptography",
}


@dataclass(frozen=True)
class Target:
    machine: str  # uname -m of the Python that runs the station
    python: str   # X.Y

    @property
    def tag(self) -> str:
        """Lock file name, e.g. cp311-aarch64 (postinst computes the same from dpkg + python3)."""
        return f"cp{self.python.replace('.', '')}-{self.machine}"

    def pip_args(self) -> list[str]:
        platforms = [arg for tag in MANYLINUX for arg in ("--platform", f"{tag}_{self.machine}")]
        return [*platforms, "--python-version",
                self.python, "--implementation", "cp", "--only-binary=:all:"]


TARGETS = tuple(Target(m, p) for m in MACHINES for p in PYTHONS)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def req_name(requirement: str) -> str:
    return canonical(re.match(r"\s*([A-Za-z0-9._-]+)", requirement).group(1))


def deb_version(pep440: str) -> str:
    """0.1.0.post12+gabc1234 → 0.1.0+12+gabc1234; .devN → ~devN (sorts before the release)."""
    return pep440.replace(".post", "+").replace(".dev", "~dev").replace("_", ".")


def pip_env() -> dict[str, str]:
    """pip with no machine configuration: no extra indexes, find-links or constraints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, **kw)


def pip(python: str, *args: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    return run([python, "-m", "pip", *(["-q"] if quiet else []), *args],
               env=pip_env(), capture_output=True)


# --- the station's own wheel --------------------------------------------------------------------

def build_station_wheel(python: str, out: Path) -> Path:
    """The station wheel (version from git describe via setup.py), built without network."""
    shutil.rmtree(out, ignore_errors=True)
    result = pip(python, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO))
    if result.returncode:
        raise SystemExit(f"building the station wheel failed:\n{result.stderr}")
    (wheel,) = out.glob("polres_station-*.whl")
    shutil.rmtree(REPO / "build" / "lib", ignore_errors=True)
    return wheel


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(meta).decode())


def install_requires(wheel: Path) -> list[str]:
    """setup.py's install_requires, as the built wheel declares them (extras left out)."""
    return [r for r in wheel_metadata(wheel).get_all("Requires-Dist") or []
            if "extra ==" not in r]


# --- the wheelhouse -----------------------------------------------------------------------------

def cache_dir(build: Path, requires: list[str]) -> Path:
    key = json.dumps({"requires": sorted(requires), "targets": [t.tag for t in TARGETS],
                      "platforms": MANYLINUX, "os": OS_PACKAGES}, sort_keys=True)
    return build / f"wheelhouse-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def download(python: str, requires: list[str], build: Path) -> tuple[Path, dict[str, list[str]]]:
    """Every wheel for every target into a cache keyed by the requirements.

    Returns the cache and, per target tag, the requirements taken from the operating system.
    """
    cache = cache_dir(build, requires)
    manifest = cache / "os-provided.json"
    if manifest.exists():
        print(f"wheelhouse: cached in {cache.relative_to(REPO)}")
        return cache, json.loads(manifest.read_text())
    shutil.rmtree(cache, ignore_errors=True)
    wheels = cache / "wheels"
    wheels.mkdir(parents=True)
    from_os: dict[str, list[str]] = {}
    for target in TARGETS:
        print(f"wheelhouse: downloading for {target.tag}")
        missing = []
        for r in requires:
            result = pip(python, "download", "--no-deps", "-d", str(wheels), *target.pip_args(), r)
            if result.returncode and "No matching distribution" not in result.stderr:
                raise SystemExit(f"downloading {r} for {target.tag} failed:\n{result.stderr}")
            if result.returncode:
                missing.append(r)
        for r in missing:
            if req_name(r) not in OS_PACKAGES:
                raise SystemExit(f"{r}: no wheel for {target.tag} on the package index and no "
                                 f"operating-system package known for it (OS_PACKAGES)")
        from_os[target.tag] = missing
        wanted = [r for r in requires if r not in missing]
        result = pip(python, "download", "-d", str(wheels), *target.pip_args(), *wanted)
        if result.returncode:
            raise SystemExit(f"downloading for {target.tag} failed:\n{result.stderr}")
    manifest.write_text(json.dumps(from_os, indent=1, sort_keys=True))
    return cache, from_os


def resolve(python: str, wheelhouse: Path, target: Target, requires: list[str]) -> list[str]:
    """name==version of every wheel pip would install for target, offline (a dry run)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        result = pip(python, "install", "--dry-run", "--ignore-installed", "--no-index",
                     "--find-links", str(wheelhouse), *target.pip_args(), "--target",
                     str(Path(tmp) / "t"), "--report", str(report), *requires)
        if result.returncode:
            raise SystemExit(f"the wheelhouse is incomplete for {target.tag}:\n{result.stderr}")
        items = json.loads(report.read_text())["install"]
    return sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items)


def write_wheelhouse(python: str, dest: Path, cache: Path, station_wheel: Path,
                     requires: list[str], from_os: dict[str, list[str]]) -> set[str]:
    """Wheels + locks/<tag>.txt into dest; returns the names of the wheels the locks use."""
    dest.mkdir(parents=True)
    for wheel in (cache / "wheels").glob("*.whl"):
        shutil.copy2(wheel, dest)
    shutil.copy2(station_wheel, dest)
    station = wheel_metadata(station_wheel)
    locks = dest / "locks"
    locks.mkdir()
    used: set[str] = set()
    for target in TARGETS:
        os_reqs = from_os[target.tag]
        pins = resolve(python, dest, target, [r for r in requires if r not in os_reqs])
        pins.append(f"{station['Name']}=={station['Version']}")
        lines = [f"# {NAME} {station['Version']} for {target.tag}: pip install --no-index "
                 f"--no-deps -r this file",
                 *(f"# from the operating system ({OS_PACKAGES[req_name(r)]}): {r}"
                   for r in os_reqs), *pins]
        (locks / f"{target.tag}.txt").write_text("\n".join(lines) + "\n")
        used.update(canonical(p.split("==")[0]) for p in pins)
    for wheel in dest.glob("*.whl"):  # a wheel no lock names (e.g. an unused platform build)
        if canonical(wheel.name.split("-")[0]) not in used:
            wheel.unlink()
    return used


# --- the package tree ---------------------------------------------------------------------------

def install_file(src: Path, dest: Path, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(mode)


DOCS = ["README.md", "docs/*", "firmware/README.md", "firmware/config.txt.example",
        "config/station.example.yaml", "config/mosquitto/*", "config/rabbitmq/*", "systemd/*",
        "packaging/README.md"]


def stage_docs(root: Path, version: str) -> None:
    """README and docs/ under /usr/share/doc/polres-station, at the same relative paths as in
    the repository so that the documents' relative links resolve there."""
    doc = root / DOC.lstrip("/")
    for pattern in DOCS:
        for src in sorted(REPO.glob(pattern)):
            if src.is_file():
                install_file(src, doc / src.relative_to(REPO))
    install_file(HERE / "copyright", doc / "copyright")
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(source_date()))
    described = git_describe()
    changelog = (f"{NAME} ({version}) unstable; urgency=medium\n\n"
                 f"  * Built from {described} (git describe).\n\n -- {MAINTAINER}  {stamp}\n")
    with open(doc / "changelog.gz", "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
            gz.write(changelog.encode())


def manual_page(python: str, version: str) -> bytes:
    """polres-station(1), gzipped: the command's own --help (so it cannot drift from the code),
    the files the package installs, and where the full documents are."""
    help_text = run([python, "-m", "station.cli", "--help"], cwd=REPO, capture_output=True,
                    env={**os.environ, "COLUMNS": "80"}, check=True).stdout

    def roff(line: str) -> str:
        line = line.replace("\\", "\\e").replace("-", "\\-")
        return "\\&" + line if line.startswith((".", "'")) else line

    date = time.strftime("%Y-%m-%d", time.gmtime(source_date()))
    page = "\n".join([
        f'.TH POLRES-STATION 1 "{date}" "{NAME} {version}" "Polres 110"',
        ".SH NAME",
        "polres-station \\- Polres Call Center 110 station controller",
        ".SH SYNOPSIS",
        ".B polres-station",
        ".I COMMAND",
        "[\\fIoptions\\fR]",
        ".SH DESCRIPTION",
        "Hears complaints over MQTT, sounds a siren and a beacon until the operator presses the",
        "acknowledge button, and reports upstream. Each command has its own \\fB\\-\\-help\\fR.",
        ".PP",
        ".nf",
        *(roff(line) for line in help_text.splitlines()),
        ".fi",
        ".SH FILES",
        f".TP\n/etc/{NAME}/station.yaml\nthe configuration (check it with \\fBcheck\\-config\\fR)",
        f".TP\n/var/lib/{NAME}/state.db\nalarm history and outbox",
        f".TP\n/opt/{NAME}/venv\nthe application, built from the package's wheelhouse",
        ".SH SEE ALSO",
        f"{DOC}/README.md, {DOC}/docs/CLI.md",
        "",
    ])
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(page.encode())
    return out.getvalue()


def git_describe() -> str:
    result = run(["git", "-C", str(REPO), "describe", "--tags", "--always", "--dirty"],
                 capture_output=True)
    return result.stdout.strip() or "an unversioned tree"


def source_date() -> int:
    result = run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True)
    return int(os.environ.get("SOURCE_DATE_EPOCH") or result.stdout.strip() or time.time())


def maintainer_script(name: str, version: str) -> str:
    """packaging/NAME with the version and systemd/station-setup.sh inlined: the maintainer
    scripts share install.sh's steps and need no file of the package (postrm runs after the
    files are gone)."""
    setup = (REPO / "systemd" / "station-setup.sh").read_text()
    lines = []
    for line in (HERE / name).read_text().replace("@VERSION@", version).splitlines():
        lines.append(setup.rstrip("\n") if line.startswith("# @STATION_SETUP@") else line)
    return "\n".join(lines) + "\n"


def control(version: str, size_kib: int, os_debs: list[str]) -> str:
    depends = ["python3 (>= 3.11)", "python3-venv", "passwd",
               *(f"{d}" for d in os_debs)]
    return "\n".join([
        f"Package: {NAME}",
        f"Version: {version}",
        "Architecture: all",
        f"Maintainer: {MAINTAINER}",
        f"Installed-Size: {size_kib}",
        f"Depends: {', '.join(depends)}",
        # The pin libraries of Raspberry Pi OS (absent on plain Debian: Recommends, so the
        # package still installs on a desk or test machine, where pins are mocked).
        "Recommends: python3-lgpio, python3-rpi-lgpio | python3-rpi.gpio",
        "Suggests: mosquitto-clients",
        "Section: misc",
        "Priority: optional",
        "Homepage: https://polri.go.id/",
        "Description: Polres Call Center 110 station controller",
        " Hears complaints over MQTT, sounds a siren and a beacon until the operator",
        " presses the acknowledge button, and reports upstream. Runs on a Raspberry Pi",
        " as the systemd service polres-station.",
        " .",
        " Installs offline: the Python libraries come from a wheelhouse inside the",
        " package (aarch64, armv7l, x86_64; Python 3.11 and 3.13), the GPIO libraries",
        " from the operating system.",
        "",
    ])


def stage(root: Path, version: str, python: str, cache: Path, station_wheel: Path,
          requires: list[str], from_os: dict[str, list[str]]) -> None:
    write_wheelhouse(python, root / LIB.lstrip("/") / "wheelhouse", cache, station_wheel,
                     requires, from_os)
    install_file(REPO / "systemd" / f"{NAME}.service",
                 root / "lib/systemd/system" / f"{NAME}.service")
    install_file(REPO / "systemd" / f"{NAME}-watchdog.conf",
                 root / "etc/systemd/system.conf.d" / f"{NAME}-watchdog.conf")
    install_file(REPO / "config" / "station.example.yaml", root / "etc" / NAME / "station.yaml")
    (root / "usr/bin").mkdir(parents=True)
    os.symlink(f"/opt/{NAME}/venv/bin/{NAME}", root / "usr/bin" / NAME)
    stage_docs(root, version)
    man = root / "usr/share/man/man1" / f"{NAME}.1.gz"
    man.parent.mkdir(parents=True)
    man.write_bytes(manual_page(python, version))

    debian = root / "DEBIAN"
    debian.mkdir()
    conffiles = [f"/etc/{NAME}/station.yaml", f"/etc/systemd/system.conf.d/{NAME}-watchdog.conf"]
    (debian / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    # A python3 upgrade (e.g. 3.11 → 3.13 with the next Debian release) breaks a venv made by
    # the older interpreter: postinst `triggered` checks it and rebuilds it offline.
    (debian / "triggers").write_text("interest-noawait /usr/bin/python3\n")
    for script in ("postinst", "prerm", "postrm"):
        (debian / script).write_text(maintainer_script(script, version))
        (debian / script).chmod(0o755)
    sums, size = [], 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == "DEBIAN" or path.is_symlink() or not path.is_file():
            continue
        size += path.stat().st_size
        if f"/{rel}" not in conffiles:
            sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel}\n")
    (debian / "md5sums").write_text("".join(sums))
    os_debs = sorted({OS_PACKAGES[req_name(r)] for reqs in from_os.values() for r in reqs})
    (debian / "control").write_text(control(version, (size + 1023) // 1024, os_debs))
    for path in root.rglob("*"):  # directories 0755, files as installed (umask-proof)
        if path.is_dir():
            path.chmod(0o755)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable,
                        help="Python with pip, setuptools and wheel (the project's venv)")
    parser.add_argument("--build", type=Path, default=REPO / "build" / "deb",
                        help="work directory, holds the download cache")
    parser.add_argument("--dist", type=Path, default=REPO / "dist")
    args = parser.parse_args()
    for tool in ("dpkg-deb", "git"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install dpkg-dev git)")
    args.build.mkdir(parents=True, exist_ok=True)
    args.dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.build, prefix="work-") as tmp:
        station_wheel = build_station_wheel(args.python, Path(tmp) / "station")
        requires = install_requires(station_wheel)
        pep440 = wheel_metadata(station_wheel)["Version"]
        version = deb_version(pep440)
        cache, from_os = download(args.python, requires, args.build)
        root = Path(tmp) / "root"
        stage(root, version, args.python, cache, station_wheel, requires, from_os)
        deb = args.dist / f"{NAME}_{version}_all.deb"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_date())}
        result = run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
                     env=env, capture_output=True)
    if result.returncode:
        raise SystemExit(f"dpkg-deb failed:\n{result.stderr}")
    print(f"{deb.relative_to(REPO) if deb.is_relative_to(REPO) else deb}: "
          f"{deb.stat().st_size / 1024:.0f} KiB, version {version} (station {pep440})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
