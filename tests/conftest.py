"""Fixtures only (helpers live in ``helpers.py``): a mosquitto per test, an HQ client, the
real station in-process or as a subprocess; each restores what it started. One collection hook
marks every test that uses a broker fixture ``broker`` (``make test-fast`` deselects them)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from helpers import HQ, Mosquitto, RunningStation, StationProcess, wait_for


# Fixtures (here and in the sub-directories' conftest.py) that start a broker.
BROKER_FIXTURES = frozenset({
    "broker", "hq", "persistent_broker", "persistent_hq", "proxy", "secure_broker", "secure_hq",
    "rabbitmq", "amqtt_broker", "cluster",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def hq(broker: Mosquitto) -> Iterator[HQ]:
    h = HQ(broker.port)
    wait_for(h.client.is_connected, 5, what="HQ connected")
    time.sleep(0.05)  # subscription in place
    yield h
    h.close()


@pytest.fixture
def start_station(tmp_path: Path) -> Iterator[Callable[..., RunningStation]]:
    started: list[RunningStation] = []

    def start(config_path: Path, **kwargs: Any) -> RunningStation:
        s = RunningStation(config_path, **kwargs)
        started.append(s)
        return s
    yield start
    for s in started:
        try:
            s.stop()
        except Exception:  # noqa: BLE001 — a test may have stopped it already
            pass


@pytest.fixture
def station_process(tmp_path: Path) -> Iterator[Callable[[Path], StationProcess]]:
    procs: list[StationProcess] = []

    def make(config_path: Path) -> StationProcess:
        p = StationProcess(config_path, tmp_path / "station.log")
        procs.append(p)
        return p
    yield make
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(5)
