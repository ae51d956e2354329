"""Fixtures of the fault-injection suite and the figures it reports (docs/RELIABILITY.md).

Every scenario records its figures with ``figures.record(name, **numbers)``; at the end of the
session they are written to ``<pytest basetemp>/fault-figures.json`` and printed in the
terminal summary.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import HQ, Mosquitto, wait_for
from faults.chaos import ChaosProxy, HarnessStation

_FIGURES: dict[str, dict[str, Any]] = {}


class Figures:
    def record(self, scenario: str, **figures: Any) -> None:
        _FIGURES[scenario] = figures


@pytest.fixture
def figures() -> Figures:
    return Figures()


@pytest.fixture
def proxy(broker: Mosquitto) -> Iterator[ChaosProxy]:
    p = ChaosProxy(broker.port).start()
    yield p
    p.stop()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Any]:
    made: list[HarnessStation] = []

    def make(config_path: Path, **env: str) -> HarnessStation:
        h = HarnessStation(config_path, tmp_path / "station.log", env)
        made.append(h)
        return h
    yield make
    for h in made:
        if h.alive:
            h.kill()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "pbroker", persistence=True).start()
    yield b
    b.stop()


@pytest.fixture
def persistent_hq(persistent_broker: Mosquitto) -> Iterator[HQ]:
    """HQ with a session the persistent broker keeps: it misses nothing across restarts."""
    h = HQ(persistent_broker.port, persistent=True)
    wait_for(h.client.is_connected, 5, what="HQ connected")
    time.sleep(0.1)  # subscription in place
    yield h
    h.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _FIGURES:
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None else Path(".")
    path = Path(base) / "fault-figures.json"
    path.write_text(json.dumps(_FIGURES, indent=2, sort_keys=True) + "\n")
    session.config._fault_figures_path = path  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not _FIGURES:
        return
    tr = terminalreporter
    tr.section("fault-injection figures")
    for name, figs in sorted(_FIGURES.items()):
        tr.write_line(f"{name}: " + ", ".join(f"{k}={v}" for k, v in figs.items()))
    path = getattr(config, "_fault_figures_path", None)
    if path is not None:
        tr.write_line(f"written to {path}")
