"""Fixtures of the cluster suite: one three-node RabbitMQ cluster for the package (booting it takes
~20 s), started by ``config/rabbitmq/local-cluster.sh`` in a temporary directory with node
names and ports of its own. A cluster that cannot start FAILS the module (never a skip):
``make broker-tools`` installs rabbitmq-server."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from cluster.cluster import LocalCluster

FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("rabbit-cluster"))
    try:
        c.start()
        print(f"\nthree-node RabbitMQ cluster up in {c.boot_s:.1f} s: {', '.join(c.addresses)}")
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def cluster_figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Figures the scenarios record (name → numbers); written to
    ``<pytest basetemp>/cluster-figures.json`` and printed at the end."""
    yield FIGURES
    if FIGURES:
        out = Path(tmp_path_factory.getbasetemp()) / "cluster-figures.json"
        out.write_text(json.dumps(FIGURES, indent=2))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, numbers in FIGURES.items():
        terminalreporter.write_line(
            f"cluster {name}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
