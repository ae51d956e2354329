"""The Debian package (`make deb`): wheelhouse complete offline for every target, lintian clean,
documentation links resolve where it is installed, and a real install → station → upgrade →
purge with apt-get and dpkg's maintainer scripts in a throwaway root (docs/BEHAVIOUR.md §6).

The throwaway root: a private mount and network namespace (`unshare -m -n`) holding an overlay of
/ whose writes go to a tmpfs, with proc, /dev and a tmpfs /run; commands run there by nsenter +
chroot. Nothing reaches the machine's own files, and the network is unreachable (only a loopback
of the namespace's own, where the test starts a mosquitto).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import MOSQUITTO, REGION, STATION

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging"))
import build_deb  # noqa: E402

pytestmark = pytest.mark.slow

NAME = "polres-station"
CONF = "/etc/polres-station/station.yaml"
STATE = "/var/lib/polres-station"
TOOLS = ("dpkg-deb", "lintian", "unshare", "nsenter", "ip", "apt-get", "systemd-analyze",
         "runuser", "dpkg-trigger", "mosquitto_sub")
# The "previous build" the upgrade starts from. 0.0.0.dev1 sorts before every version the build
# can describe: a tagged X.Y.Z and a clone without tags (0.0.0.postN, N = commits) alike.
PREVIOUS = "0.0.0.dev1"
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
             "DEBIAN_FRONTEND": "noninteractive"}


def require_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"missing {missing}: run `make deb-tools` (apt-get install)"


def build(dist: Path, version: str | None) -> Path:
    """make deb into dist; version None = from git describe (the real build)."""
    env = {k: v for k, v in os.environ.items() if k != "POLRES_STATION_VERSION"}
    if version:
        env["POLRES_STATION_VERSION"] = version
    result = subprocess.run([sys.executable, str(REPO / "packaging" / "build_deb.py"),
                             "--dist", str(dist)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout.strip())
    (deb,) = dist.glob("*.deb")
    return deb


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(previous, current): two builds, the current one last so station/_version.py is left
    at this checkout's version."""
    require_tools()
    base = tmp_path_factory.mktemp("dist")
    previous = build(base / "previous", PREVIOUS)
    current = build(base / "current", None)
    old, new = (subprocess.run(["dpkg-deb", "-f", str(d), "Version"], capture_output=True,
                               text=True, check=True).stdout.strip() for d in (previous, current))
    assert subprocess.run(["dpkg", "--compare-versions", old, "lt", new]).returncode == 0, \
        f"the previous build {old} must sort before this checkout's {new}"
    return previous, current


@pytest.fixture(scope="module")
def unpacked(debs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unpacked")
    subprocess.run(["dpkg-deb", "-R", str(debs[1]), str(root)], check=True)
    return root


def control(root: Path) -> dict[str, str]:
    fields, key = {}, ""
    for line in (root / "DEBIAN" / "control").read_text().splitlines():
        if line.startswith(" "):
            fields[key] += "\n" + line
        else:
            key, _, value = line.partition(": ")
            fields[key] = value
    return fields


# --- the package's content --------------------------------------------------------------------

def test_version_comes_from_git_describe(debs: tuple[Path, Path], unpacked: Path) -> None:
    described = subprocess.run(["git", "-C", str(REPO), "describe", "--tags", "--long",
                                "--always"], capture_output=True, text=True).stdout.strip()
    version = control(unpacked)["Version"]
    sha = described.rsplit("-g", 1)[-1]
    assert sha in version or re.fullmatch(r"v?[\d.]+-0-g[0-9a-f]+", described), (version,
                                                                                 described)
    assert debs[1].name == f"{NAME}_{version}_all.deb"
    assert control(unpacked)["Architecture"] == "all"
    # the checkout's own command reports the version of the last build of this tree
    cli = subprocess.run([sys.executable, "-m", "station.cli", "--version"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    assert build_deb.deb_version(cli[-1]) == version


@pytest.mark.parametrize("target", build_deb.TARGETS, ids=lambda t: t.tag)
def test_wheelhouse_is_complete_offline(unpacked: Path, target: build_deb.Target,
                                        tmp_path: Path) -> None:
    """setup.py's install_requires (read from the station wheel in the package), minus what the
    lock takes from the OS, resolve with --no-index from the wheelhouse alone; the OS ones are
    in Depends; the lock postinst installs is exactly that resolution."""
    wheelhouse = unpacked / "usr/lib/polres-station/wheelhouse"
    (station_wheel,) = wheelhouse.glob("polres_station-*.whl")
    requires = build_deb.install_requires(station_wheel)
    lock = (wheelhouse / "locks" / f"{target.tag}.txt").read_text().splitlines()
    from_os = [m.group(2) for line in lock
               if (m := re.match(r"# from the operating system \((\S+)\): (.+)", line))]
    depends = control(unpacked)["Depends"]
    for req in from_os:
        assert build_deb.OS_PACKAGES[build_deb.req_name(req)] in depends
    wanted = [r for r in requires if r not in from_os]
    assert len(wanted) + len(from_os) == len(requires)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "--no-index", "--find-links", str(wheelhouse), *target.pip_args(),
         "--target", str(tmp_path / "t"), "--report", str(report), *wanted],
        env=build_deb.pip_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    resolved = {f"{i['metadata']['name']}=={i['metadata']['version']}"
                for i in json.loads(report.read_text())["install"]}
    pins = {line for line in lock if line and not line.startswith("#")}
    station = build_deb.wheel_metadata(station_wheel)["Version"]
    assert pins - resolved == {f"polres-station=={station}"}
    assert resolved <= pins
    print(f"{target.tag}: {sorted(resolved)}; from the OS: {from_os}")


def test_lintian_reports_no_errors(debs: tuple[Path, Path]) -> None:
    result = subprocess.run(["lintian", "--info", str(debs[1])], capture_output=True, text=True,
                            timeout=300)
    tags = [line for line in result.stdout.splitlines() if re.match(r"[EWI]: ", line)]
    print("\n".join(tags) or "lintian: no tags")
    assert not [t for t in tags if t.startswith("E: ")], result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def test_doc_links_resolve_where_installed(unpacked: Path) -> None:
    """Every relative link that resolves in the repository resolves in
    /usr/share/doc/polres-station too."""
    doc = unpacked / "usr/share/doc/polres-station"
    assert (doc / "README.md").exists() and (doc / "copyright").exists()
    checked = 0
    for md in doc.rglob("*.md"):
        source = REPO / md.relative_to(doc)
        for target in LINK.findall(md.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            in_repo = (source.parent / target).resolve()
            if not in_repo.exists() or not in_repo.is_relative_to(REPO):
                continue  # broken or outside the repository: not the package's doing
            assert (md.parent / target).resolve().is_relative_to(doc.resolve()), (md, target)
            assert (md.parent / target).exists(), f"{md.relative_to(doc)} → {target}"
            checked += 1
    assert checked >= 5


# --- the throwaway root -------------------------------------------------------------------------

SETUP = r"""
set -eu
T=$1
mount -t tmpfs -o size=512m tmpfs "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
mount -t proc proc "$T/root/proc"
mount --rbind /dev "$T/root/dev"
mount -t tmpfs tmpfs "$T/root/run"
ip link set lo up
echo ready
exec sleep infinity
"""


class ThrowawayRoot:
    """A private mount + network namespace holding an overlay of / (writes on a tmpfs)."""

    def __init__(self, mountpoint: Path) -> None:
        mountpoint.mkdir()
        self.path = mountpoint / "root"
        self.holder = subprocess.Popen(
            ["unshare", "-m", "-n", "--propagation", "private", "bash", "-c", SETUP, "setup",
             str(mountpoint)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        assert line.strip() == "ready", self.holder.stderr.read()

    def ns(self, *cmd: str) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", *cmd]

    def run(self, script: str, check: bool = True, timeout: float = 180) -> str:
        """sh -c script chrooted, clean environment; stdout + stderr."""
        result = subprocess.run(self.ns("chroot", str(self.path), "env", "-i",
                                        *(f"{k}={v}" for k, v in CLEAN_ENV.items()),
                                        "sh", "-c", script),
                                capture_output=True, text=True, timeout=timeout)
        out = result.stdout + result.stderr
        if check:
            assert result.returncode == 0, f"{script}\n→ {result.returncode}\n{out}"
        return out

    def popen(self, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.ns("chroot", str(self.path), "env", "-i",
                                        *(f"{k}={v}" for k, v in CLEAN_ENV.items()), *cmd),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(timeout=10)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[ThrowawayRoot]:
    r = ThrowawayRoot(tmp_path / "ns")
    try:
        yield r
    finally:
        r.close()


def station_yaml(port: int) -> str:
    return f"""# edited by the technician
station: {{id: {STATION}, region: {REGION}}}
broker: {{host: 127.0.0.1, port: {port}, protocol: "5", keepalive: 5,
         reconnect_min_s: 0.1, reconnect_max_s: 1.0}}
gpio:
  pin_factory: mock
  siren: {{pin: 5, active_high: false}}
  beacon: {{pin: 27, active_high: true}}
  ack_button: {{pin: 22, pull_up: true, bounce_ms: 50}}
heartbeat: {{interval_s: 30}}
time: {{ntp_servers: [10.20.0.123, ntp1.polri.test]}}
"""


def transcript(label: str, out: str) -> None:
    print(f"--- {label}\n{out.rstrip()}")


def start_station(root: ThrowawayRoot) -> subprocess.Popen[str]:
    return root.popen("runuser", "-u", NAME, "--", f"/usr/bin/{NAME}", "run", "-c", CONF)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def test_install_upgrade_purge_in_a_throwaway_root(debs: tuple[Path, Path], unpacked: Path,
                                                  root: ThrowawayRoot) -> None:
    previous, current = debs
    depends = re.sub(r"\([^)]*\)", "", control(unpacked)["Depends"]).replace(",", " ").split()
    missing = [d for d in depends
               if subprocess.run(["dpkg", "-s", d], capture_output=True).returncode]
    assert not missing, f"the root has no network: apt-get install {' '.join(missing)} " \
                        "here first (make deb-depends)"
    old_version = build_deb.deb_version(PREVIOUS)
    new_version = current.name.split("_")[1]
    # No network in here: apt can only use what the machine already has.
    out = root.run("python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 443), 3)'",
                   check=False)
    assert "Network is unreachable" in out, out

    # --- install the previous build: the example config is refused, nothing enabled
    out = root.run(f"apt-get install -y -q --no-install-recommends {previous}")
    transcript("apt-get install (previous build, example config)", out)
    assert f"Setting up {NAME} ({old_version})" in out
    # the example's placeholders are refused: not enabled, and the message names what to edit
    assert "is not ready, so the service is not enabled or started" in out, out
    assert "broker.host" in out and f"Edit {CONF}" in out
    root.run(f"! test -e /etc/systemd/system/multi-user.target.wants/{NAME}.service")
    root.run("! test -e /etc/systemd/timesyncd.conf.d/polres-station.conf")
    assert root.run(f"{NAME} --version").split() == [NAME, PREVIOUS]
    assert root.run(f"dpkg-query -W -f='${{Version}}' {NAME}") == old_version
    ids = root.run(f"id {NAME}")
    assert "gpio" in ids, ids
    assert root.run(f"stat -c '%U:%G %a' {STATE} /etc/polres-station {CONF}").split() == [
        f"{NAME}:{NAME}", "750", f"root:{NAME}", "750", f"root:{NAME}", "640"]
    assert root.run(f"cmp {CONF} /usr/share/doc/{NAME}/config/station.example.yaml "
                    "&& echo same").strip() == "same"
    root.run("test -L /opt/polres-station/venv && /opt/polres-station/venv/bin/python -c "
             "'import yaml, gpiozero, paho.mqtt, sentry_sdk, station'")

    # systemd cannot run in a chroot: verify the installed unit offline instead.
    verify = root.run(f"systemd-analyze verify /lib/systemd/system/{NAME}.service", check=False)
    assert verify.strip() == "", verify

    # --- the technician edits the config; the station alarms on a complaint
    port = 1883  # the namespace's own loopback: never the machine's broker
    broker = subprocess.Popen(root.ns(MOSQUITTO, "-p", str(port)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        root.run(f"cat > {CONF} <<'EOF'\n{station_yaml(port)}EOF")
        out = root.run(f"{NAME} check-config -c {CONF}")
        transcript("check-config", out)
        assert "OK" in out
        out = root.run(f"{NAME} firmware-config -c {CONF}")
        assert "gpio=5=op,dh" in out, out
        # the step the install message gives once the config passes
        out = root.run(f"dpkg-reconfigure {NAME}")
        transcript("dpkg-reconfigure", out)
        assert "check-config OK" in out, out
        # the venv a running service uses is kept, not deleted under it
        assert f"venv-{old_version}-cp311-x86_64: kept" in out, out
        root.run(f"test -L /etc/systemd/system/multi-user.target.wants/{NAME}.service")

        events = root.popen("mosquitto_sub", "-p", str(port), "-W", "40",
                            "-t", f"polri/110/station/{STATION}/events")
        station = start_station(root)
        deadline = time.monotonic() + 20
        while "status" not in root.run(
                f"mosquitto_sub -p {port} -C 1 -W 1 -t polri/110/station/{STATION}/status -v",
                check=False) and time.monotonic() < deadline:
            time.sleep(0.2)
        status = root.run(f"mosquitto_sub -p {port} -C 1 -W 5 -t "
                          f"polri/110/station/{STATION}/status")
        assert json.loads(status)["version"] == PREVIOUS
        out = root.run(f"{REPO}/.venv/bin/{NAME} send-complaint --broker 127.0.0.1:{port} "
                       f"--region {REGION} --id 110-deb-1 --priority urgent")
        alerting = None
        for line in events.stdout:  # mosquitto_sub ends by itself after 40 s
            event = json.loads(line)
            if event["type"] == "alerting":
                alerting = event
                break
        events.kill()
        events.wait()
        assert alerting and alerting["complaint_id"] == "110-deb-1", alerting
        transcript("station run (previous build)", stop(station))

        # --- upgrade to the current build: edited config and state survive, service enabled
        out = root.run(f"apt-get install -y -q --no-install-recommends {current}")
        transcript("apt-get install (upgrade)", out)
        assert f"Unpacking {NAME} ({new_version}) over ({old_version})" in out
        assert "check-config OK" in out
        assert "enabled; systemd is not running here, so not started" in out
        assert root.run(f"{NAME} --version").split()[1] == _station_wheel_version(current)
        assert root.run(f"cat {CONF}") == station_yaml(port)
        root.run(f"test -L /etc/systemd/system/multi-user.target.wants/{NAME}.service")
        venv = f"venv-{new_version}-cp311-x86_64"
        assert root.run(f"ls /opt/{NAME}").split() == ["venv", venv]
        out = root.run(f"{NAME} history -c {CONF}")
        assert "110-deb-1" in out, out
        out = root.run(f"{NAME} status -c {CONF}")
        assert "active alarms: 1" in out and "110-deb-1" in out, out
        root.run("test -f /etc/polres-station/boot-config.txt")
        timesyncd = root.run("cat /etc/systemd/timesyncd.conf.d/polres-station.conf")
        assert "NTP=10.20.0.123 ntp1.polri.test" in timesyncd.splitlines(), timesyncd

        station = start_station(root)
        # the retained status of the new version replaces the old one
        deadline, version = time.monotonic() + 20, None
        while version != _station_wheel_version(current) and time.monotonic() < deadline:
            doc = root.run(f"mosquitto_sub -p {port} -C 1 -W 2 -t "
                           f"polri/110/station/{STATION}/status", check=False)
            status_doc = json.loads(doc) if doc.startswith("{") else {}
            version = status_doc.get("version")
            time.sleep(0.3)
        assert version == _station_wheel_version(current)
        # the unacknowledged alarm resumed on the new version
        assert status_doc["alarms"]["active"] == 1, status_doc
        assert "110-deb-1" in json.dumps(status_doc["alarms"].get("list", [])), status_doc
        stop(station)
    finally:
        broker.kill()
        broker.wait()

    # --- a python3 upgrade that breaks the venv (here: a library gone) rebuilds it, offline
    root.run(f"rm -r /opt/{NAME}/{venv}/lib/python3*/site-packages/paho*")
    out = root.run(f"dpkg-trigger --no-await /usr/bin/python3 && dpkg --triggers-only {NAME}")
    transcript("python3 trigger, broken venv", out)
    assert "broken by the python3 upgrade: rebuilding it" in out, out
    root.run(f"/opt/{NAME}/venv/bin/python -c 'import paho.mqtt.client'")
    out = root.run(f"dpkg-trigger --no-await /usr/bin/python3 && dpkg --triggers-only {NAME}")
    assert "still complete after the python3 upgrade" in out, out

    # --- remove keeps config and state; purge removes them and the user
    out = root.run(f"apt-get remove -y -q {NAME}")
    transcript("apt-get remove", out)
    assert "siren and beacon outputs forced off" in out, out
    root.run(f"test -f {CONF} && test -d {STATE} && ! test -e /opt/{NAME}")
    out = root.run(f"apt-get purge -y -q {NAME}")
    transcript("apt-get purge", out)
    root.run(f"! test -e /etc/{NAME} && ! test -e {STATE} && ! getent passwd {NAME} "
             f"&& ! getent group {NAME} && getent group gpio >/dev/null "
             f"&& ! test -e /etc/systemd/timesyncd.conf.d/{NAME}.conf")
    root.run(f"! test -e /etc/systemd/system/multi-user.target.wants/{NAME}.service")


def _station_wheel(deb: Path) -> Path:
    out = deb.parent / "wheel"
    if not out.exists():
        subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    (wheel,) = (out / "usr/lib/polres-station/wheelhouse").glob("polres_station-*.whl")
    return wheel


def _station_wheel_version(deb: Path) -> str:
    return build_deb.wheel_metadata(_station_wheel(deb))["Version"]
