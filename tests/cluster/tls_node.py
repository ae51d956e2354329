"""One RabbitMQ node on the reference configuration ``config/rabbitmq/rabbitmq.conf`` itself —
the file HQ deploys, with only its paths, ports and node names rewritten — started the way
``config/rabbitmq/local-cluster.sh`` starts its nodes (own node name, own epmd, own ports, all
in one directory, never the machine's RabbitMQ or 1883/5672).

    node = TlsNode(tmp_dir, tls_dir).start()   # fails the test (never skips) if it cannot boot
    node.mqtts_port, node.amqp_port
    node.ctl("list_users"); node.diagnostics("listeners")
    node.stop()

``tls_dir`` holds what HQ puts in /etc/rabbitmq/tls/: station-ca.pem, node.pem, node.key.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import NO_BROKER_ENV

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "config" / "rabbitmq" / "rabbitmq.conf"
BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
EPMD = next((p for p in ("/usr/bin/epmd", "/usr/lib/erlang/bin/epmd") if Path(p).exists()),
            "epmd")
BOOT_TIMEOUT_S = 120.0


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_base() -> int:
    """A range of 20 free loopback ports, random so parallel runs rarely race."""
    for _ in range(50):
        base = random.randrange(20000, 60000)
        if all(_free(p) for p in range(base, base + 20)):
            return base
    pytest.fail("no free range of 20 ports found", pytrace=False)


def reference_config(node: str, tls_dir: Path, mqtts_port: int, amqp_port: int,
                     plain_port: int) -> str:
    """rabbitmq.conf with paths, ports and node names rewritten; nothing else."""
    text = REFERENCE.read_text()
    swaps = [
        (r"/etc/rabbitmq/tls/", f"{tls_dir}/"),
        (r"(?m)^mqtt\.listeners\.ssl\.default = 8883$",
         f"mqtt.listeners.ssl.default = 127.0.0.1:{mqtts_port}"),
        (r"(?m)^listeners\.tcp\.default = 127\.0\.0\.1:5672$",
         f"listeners.tcp.default = 127.0.0.1:{amqp_port}"),
        # broker-1 is this node; broker-2 and -3 too (a cluster of one: nothing to wait for).
        (r"rabbit@broker-[123]\b", node),
    ]
    for pattern, replacement in swaps:
        text, n = re.subn(pattern, replacement, text)
        assert n >= 1, f"reference config changed: {pattern!r} not found"
    # Plain MQTT: without `mqtt.listeners.tcp = none` the plugin opens 1883 (its default),
    # which no test may touch; a plain listener the file names moves to a loopback test port
    # (plain_port), so the listener checks see it.
    if not re.search(r"(?m)^mqtt\.listeners\.tcp = none$", text):
        pytest.fail(f"{REFERENCE}: no `mqtt.listeners.tcp = none` — RabbitMQ would open plain "
                    "MQTT on 1883", pytrace=False)
    text = re.sub(r"(?m)^(mqtt\.listeners\.tcp\.[\w.]+) = .*$",
                  rf"\1 = 127.0.0.1:{plain_port}", text)
    return text


class TlsNode:
    """A RabbitMQ node of the test's own on the reference configuration."""

    def __init__(self, workdir: Path, tls_dir: Path) -> None:
        self.dir = workdir
        self.tls_dir = tls_dir
        self.base = _pick_base()
        # Ports from base: TLS MQTT +0, AMQP +1, distribution +2, epmd +3, a plain MQTT listener
        # should the file name one +4, CLI tools +10..19.
        self.mqtts_port, self.amqp_port = self.base, self.base + 1
        self.dist_port, self.epmd_port = self.base + 2, self.base + 3
        tag = hashlib.sha1(f"{workdir}:{self.base}".encode()).hexdigest()[:10]
        self.node = f"polres-tls-{tag}@localhost"
        self.config = workdir / "rabbitmq.conf"
        self.log_dir = workdir / "log"
        self.server: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.boot_s = 0.0

    def env(self) -> dict[str, str]:
        d = self.dir
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "HOME": str(d / "home"), "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONF_ENV_FILE": str(d / "empty-env.conf"),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.base + 10),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.base + 19),
            "RABBITMQ_NODENAME": self.node, "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"), "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(d / "beam.pid"), "ERL_CRASH_DUMP": str(d / "erl_crash.dump"),
            # The distribution listener on loopback too (by default on every interface).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _write_files(self) -> None:
        d = self.dir
        (d / "home").mkdir(parents=True, exist_ok=True)
        cookie = d / "home" / ".erlang.cookie"
        cookie.write_text(os.urandom(20).hex())
        cookie.chmod(0o400)
        (d / "empty-env.conf").write_text("")
        (d / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (d / "advanced.config").write_text("[].\n")
        self.config.write_text(reference_config(self.node, self.tls_dir, self.mqtts_port,
                                                self.amqp_port, self.base + 4))

    def start(self) -> TlsNode:
        """Boot the node; one that cannot start FAILS the test with its log (never a skip)."""
        if os.environ.get(NO_BROKER_ENV):
            pytest.fail(f"{NO_BROKER_ENV} is set (make test-fast) but this test starts RabbitMQ",
                        pytrace=False)
        server = BIN / "rabbitmq-server"
        if not server.exists():
            pytest.fail(f"{server} missing: `make broker-tools` installs rabbitmq-server",
                        pytrace=False)
        self._write_files()
        t0 = time.monotonic()
        self.epmd = subprocess.Popen(
            [EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        out = open(self.dir / "server.out", "ab")
        self.server = subprocess.Popen([str(server)], env=self.env(), stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=out, start_new_session=True)
        out.close()
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while True:
            if self.server.poll() is not None:
                self.fail(f"the node exited while booting ({self.server.returncode})")
            done = subprocess.run([str(BIN / "rabbitmqctl"), "-n", self.node, "await_startup",
                                   "--timeout", "5"], env=self.env(), capture_output=True,
                                  timeout=60)
            if done.returncode == 0 and not _free(self.mqtts_port):
                break
            if time.monotonic() > deadline:
                self.fail(f"the node did not start within {BOOT_TIMEOUT_S:.0f} s")
            time.sleep(0.5)
        self.boot_s = time.monotonic() - t0
        return self

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for f in [self.dir / "server.out", *sorted(self.log_dir.glob("*.log"))]:
            if f.exists():
                parts.append(f"--- {f.name}:\n" + "\n".join(
                    f.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)

    def log_text(self) -> str:
        return "\n".join(f.read_text(errors="replace") for f in sorted(self.log_dir.glob("*.log")))

    def fail(self, why: str) -> None:
        tail = self.log_tail()
        self.stop()
        pytest.fail(f"RabbitMQ on {REFERENCE.name}: {why}\n{tail}", pytrace=False)

    def _tool(self, tool: str, *args: str) -> str:
        done = subprocess.run([str(BIN / tool), "-n", self.node, *args], env=self.env(),
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, f"{tool} {' '.join(args)}: {done.stderr[-2000:]}"
        return done.stdout

    def ctl(self, *args: str) -> str:
        return self._tool("rabbitmqctl", *args)

    def diagnostics(self, *args: str) -> str:
        return self._tool("rabbitmq-diagnostics", *args)

    def ctl_command(self) -> str:
        """The RABBITMQCTL value for setup-permissions.sh (the script splits it on spaces)."""
        wrapper = self.dir / "rabbitmqctl"
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in self.env().items())
        wrapper.write_text(f"#!/bin/sh\nexec env {env} {BIN / 'rabbitmqctl'} -n {self.node} "
                           '"$@"\n')
        wrapper.chmod(0o755)
        return str(wrapper)

    def beam_pid(self) -> int:
        return int((self.dir / "beam.pid").read_text().split()[0])

    def stop(self) -> None:
        for proc in (self.server, self.epmd):
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        # The VM itself may outlive its wrapper: its recorded pid, if still ours.
        try:
            pid = self.beam_pid()
            if self.node.split("@")[0] in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
