"""config/mosquitto/mosquitto.conf installed as Debian says: a drop-in in conf.d under
Debian's own /etc/mosquitto/mosquitto.conf (the packaged file, not a stand-in), which already
sets persistence, persistence_location, pid_file, a log file and include_dir. The broker must
start on it and accept a station; with the drop-in's old `persistence_location` line it
refused to start ("Duplicate persistence_location")."""
from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from helpers import MOSQUITTO, ROOT, STATION, free_port, wait_for
from security.conftest import reference_config, tls_client
from station.desk.clients import connected

DEBIAN_MAIN = Path("/etc/mosquitto/mosquitto.conf")


def _dpkg_md5() -> tuple[str, str]:
    """(version, md5 of the pristine /etc/mosquitto/mosquitto.conf) as dpkg recorded them."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}\\n${Conffiles}\\n", "mosquitto"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("Debian's mosquitto package is not installed (make broker-tools installs "
                    f"it): {r.stderr.strip()}")
    version, _, conffiles = r.stdout.partition("\n")
    found = re.search(rf"^\s*{re.escape(str(DEBIAN_MAIN))} ([0-9a-f]{{32}})", conffiles, re.M)
    assert found, f"dpkg lists no conffile {DEBIAN_MAIN}: {conffiles!r}"
    return version, found.group(1)


def debian_main_file(tmp: Path) -> str:
    """The packaged main file: /etc's copy when unmodified, else the one in the package
    itself (apt's cache, else `apt-get download`), checked against dpkg's md5."""
    version, md5 = _dpkg_md5()

    def pristine(data: bytes) -> bool:
        return hashlib.md5(data).hexdigest() == md5

    if DEBIAN_MAIN.is_file() and pristine(DEBIAN_MAIN.read_bytes()):
        return DEBIAN_MAIN.read_text()
    # This machine's /etc copy was edited: take the file from the package of that version.
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True).stdout.strip()
    name = f"mosquitto_{version.split(':')[-1]}_{arch}.deb"
    deb = Path("/var/cache/apt/archives") / name
    if not deb.is_file():
        subprocess.run(["apt-get", "download", f"mosquitto={version}"], cwd=tmp,
                       capture_output=True, timeout=120)
        deb = tmp / name
    if not deb.is_file():
        pytest.fail(f"{DEBIAN_MAIN} is modified on this machine and {name} is neither in "
                    "apt's cache nor downloadable: cannot read Debian's packaged main file")
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          check=True).stdout
    out = subprocess.run(["tar", "-xO", "." + str(DEBIAN_MAIN)], input=data,
                         capture_output=True, check=True).stdout
    assert pristine(out), f"{deb}: its {DEBIAN_MAIN} does not match dpkg's md5"
    return out.decode()


def debian_layout(tmp: Path, ca: Path, port: int, dropin: str) -> Path:
    """Debian's main file in ``tmp`` with its paths moved there, and ``dropin`` in conf.d."""
    main = debian_main_file(tmp)
    # What the documents rely on: Debian's file turns persistence on, picks its location and
    # includes conf.d (mosquitto's own default is persistence false).
    for line in ("persistence true", "persistence_location /var/lib/mosquitto/",
                 "include_dir /etc/mosquitto/conf.d"):
        assert re.search(rf"(?m)^{re.escape(line)}$", main), line
    (tmp / "conf.d").mkdir(parents=True)
    (tmp / "var").mkdir()
    for pattern, replacement in (
            (r"(?m)^pid_file .*$", f"pid_file {tmp}/mosquitto.pid"),
            (r"(?m)^persistence_location .*$", f"persistence_location {tmp}/var/"),
            (r"(?m)^log_dest file .*$", f"log_dest file {tmp}/main.log"),
            (r"(?m)^include_dir .*$", f"include_dir {tmp}/conf.d")):
        main, n = re.subn(pattern, replacement, main)
        assert n == 1, f"Debian's main file changed: {pattern!r}"
    if os.geteuid() == 0:     # root: mosquitto would drop to its own user, locked out of tmp
        main += "\nuser root\n"
    (tmp / "mosquitto.conf").write_text(main)
    (tmp / "conf.d" / "polres.conf").write_text(dropin)
    return tmp / "mosquitto.conf"


def accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def start(conf: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for(lambda: proc.poll() is not None or accepting(port), 10,
                 what="mosquitto listening")
    except AssertionError:
        proc.kill()
        raise
    return proc


def test_dropin_under_debians_main_file_starts_and_accepts_a_station(tmp_path, ca):
    port = free_port()
    broker_dir = tmp_path / "b"
    broker_dir.mkdir()
    dropin = reference_config(broker_dir, ca, port, dropin=True)
    conf = debian_layout(tmp_path / "etc", ca, port, dropin)
    proc = start(conf, port)
    try:
        assert proc.poll() is None, proc.stderr.read().decode()   # type: ignore[union-attr]
        # A station's certificate gets in, may read its command topic, and is delivered what
        # HQ sends it there (the drop-in's TLS listener, identity and ACL are in force).
        got = threading.Event()
        station = tls_client(ca, STATION)
        station.on_message = lambda c, u, m: got.set()
        topic = f"{ROOT}/station/{STATION}/cmd"
        with connected(station, "127.0.0.1", port):
            station.subscribe(topic, qos=1)
            with connected(tls_client(ca, "hq.dispatch"), "127.0.0.1", port) as hq:
                wait_for(lambda: hq.publish(topic, b"{}", qos=1).rc == 0 and got.wait(0.5), 10,
                         what="HQ's command delivered to the station")
    finally:
        proc.terminate()
        proc.wait(10)
    # Persistence came from Debian's main file, into its (moved) persistence_location.
    assert (tmp_path / "etc" / "var" / "mosquitto.db").is_file()


def test_old_dropin_with_its_own_persistence_location_is_refused(tmp_path, ca):
    """The defect itself, kept visible: a second persistence_location stops mosquitto."""
    port = free_port()
    (tmp_path / "b").mkdir()
    dropin = reference_config(tmp_path / "b", ca, port, dropin=True)
    conf = debian_layout(tmp_path / "etc", ca, port,
                         dropin + "\npersistence_location /var/lib/mosquitto/\n")
    r = subprocess.run([MOSQUITTO, "-c", str(conf)], capture_output=True, text=True, timeout=10)
    log = r.stderr + r.stdout + ((tmp_path / "etc" / "main.log").read_text(errors="replace")
                                 if (tmp_path / "etc" / "main.log").exists() else "")
    assert r.returncode != 0 and "Duplicate persistence_location" in log, log
