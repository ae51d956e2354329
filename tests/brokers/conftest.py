"""Other brokers, each started by the tests on free loopback ports (issue 5).

RabbitMQ runs as its OWN node (``polres-test-<port>@localhost``: own ports, own mnesia and
logs in a temporary directory, only the ``rabbitmq_mqtt`` plugin), never the system instance
that may listen on 5672/1883. It takes ~10 s to boot, so one node serves a whole module.
amqtt (pure Python) runs in a child process.

A broker that cannot be found or started is reported LOUDLY: ``pytest.fail`` when ``CI=true``
(so ``make test`` on CI proves it ran), else a skip whose message says what is missing.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from helpers import free_port

RABBITMQ_SERVER = os.environ.get("RABBITMQ_SERVER", "/usr/lib/rabbitmq/bin/rabbitmq-server")
BOOT_TIMEOUT_S = 60.0


def unavailable(what: str) -> None:
    """Fail, with the reason in the test report: `make test` installs every broker these tests
    use, so a missing one is a broken machine, never a quiet skip."""
    pytest.fail(f"BROKER NOT TESTED: {what}", pytrace=False)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class RabbitNode:
    """A private RabbitMQ node with the MQTT plugin (MQTT 3.1.1 on ``mqtt_port``)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.mqtt_port, self.amqp_port, self.dist_port = free_port(), free_port(), free_port()
        self.node = f"polres-test-{self.mqtt_port}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.boot_s = 0.0
        self.log = workdir / "rabbitmq.out"

    def start(self) -> RabbitNode:
        server = RABBITMQ_SERVER if os.access(RABBITMQ_SERVER, os.X_OK) else \
            shutil.which("rabbitmq-server")
        if server is None:
            unavailable("rabbitmq-server is not installed (apt-get install rabbitmq-server; "
                        "`make broker-tools` does it)")
        w = self.workdir
        (w / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (w / "rabbitmq.conf").write_text("\n".join([
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}",
            "mqtt.allow_anonymous = true",          # guest, from loopback only
            "mqtt.subscription_ttl = 604800000",     # a week offline (default 24 h)
            "log.console = false",
            "log.file.level = warning", ""]))
        (w / "rabbitmq-env.conf").write_text("")   # not /etc/rabbitmq's (system node name)
        env = {**os.environ,
               "HOME": str(w),                      # a private Erlang cookie
               "RABBITMQ_NODENAME": self.node,
               "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
               "RABBITMQ_NODE_PORT": str(self.amqp_port),
               "RABBITMQ_DIST_PORT": str(self.dist_port),
               "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
               "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
               "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
               "RABBITMQ_LOG_BASE": str(w / "log"),
               "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
               "ERL_EPMD_ADDRESS": "127.0.0.1"}
        t0 = time.monotonic()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([server], env=env, cwd=w, stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        while time.monotonic() - t0 < BOOT_TIMEOUT_S:
            if _listening(self.mqtt_port):
                self.boot_s = time.monotonic() - t0
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-1500:]
        why = (f"exited with status {self.proc.returncode}" if self.proc.poll() is not None
               else f"did not open MQTT port {self.mqtt_port} within {BOOT_TIMEOUT_S:.0f} s")
        self.stop()
        unavailable(f"RabbitMQ node {self.node} ({server}) {why}; its output ends:\n{tail}")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)       # the shell script and its beam.smp
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


AMQTT_SCRIPT = r"""
import asyncio, logging, sys
logging.basicConfig(level=logging.WARNING)
from amqtt.broker import Broker
CONFIG = {
    "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:%d" % int(sys.argv[1])}},
    # allow_anonymous True would flag EVERY session anonymous, and amqtt queues nothing for
    # an anonymous session: clients must send a user name (any) instead.
    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
}
async def main():
    broker = Broker(CONFIG)
    await broker.start()
    await asyncio.Event().wait()
asyncio.run(main())
"""


class Amqtt:
    """amqtt 0.12 (MQTT 3.1.1 only) in a child process on a free port. Clients must send a
    user name (no password): see AMQTT_SCRIPT."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "amqtt.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.boot_s = 0.0

    def start(self) -> Amqtt:
        try:
            import amqtt  # noqa: F401
        except ImportError:
            unavailable("amqtt is not installed (pip install 'polres-station[demo]')")
        t0 = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", AMQTT_SCRIPT, str(self.port)],
                                         stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        while time.monotonic() - t0 < 20:
            if _listening(self.port):
                self.boot_s = time.monotonic() - t0
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-1500:]
        self.stop()
        unavailable(f"amqtt did not start on port {self.port}; its output ends:\n{tail}")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq")).start()
    print(f"\nRabbitMQ node {node.node}: MQTT on 127.0.0.1:{node.mqtt_port}, "
          f"booted in {node.boot_s:.1f} s")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def amqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Amqtt]:
    b = Amqtt(tmp_path_factory.mktemp("amqtt")).start()
    print(f"\namqtt on 127.0.0.1:{b.port}, started in {b.boot_s:.1f} s")
    yield b
    b.stop()
