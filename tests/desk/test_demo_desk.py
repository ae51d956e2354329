"""``make demo`` starts the web desk too: its URL is in the panel, and it shows the demo's
station — on mosquitto and on the pure-Python amqtt (MQTT 3.1.1) alike."""
from __future__ import annotations

from typing import Iterator

import pytest
from rich.console import Console

from helpers import wait_for
from station.desk.demo import STATION, Demo, DemoSettings
from station.desk.demo import snapshot
from station.desk.demo_panel import render_panel
from station.desk.embedded_broker import find_mosquitto

from desk.harness import Http

pytestmark = pytest.mark.broker


@pytest.fixture(params=["amqtt", "mosquitto"])
def demo(request: pytest.FixtureRequest) -> Iterator[Demo]:
    if request.param == "mosquitto" and not find_mosquitto():
        pytest.fail("mosquitto missing: run `make broker-tools`")
    with Demo(DemoSettings(broker_kind=request.param, seed=2)) as d:
        d.start(first_complaint_s=None)
        yield d


def test_the_demo_shows_its_web_desk(demo: Demo) -> None:
    assert demo.web is not None and demo.hq is not None
    console = Console(record=True, width=120, color_system=None)
    console.print(render_panel(snapshot(demo)))
    assert f"web desk, in a browser: {demo.web.url}" in console.export_text()
    http = Http(demo.web.url.rstrip("/"))
    row = wait_for(lambda: http.stations().get(STATION), 15, what="the demo's station")
    assert row["state"] in ("online", "stale")
    cid = demo.hq.send_complaint("emergency")
    wait_for(lambda: http.stations()[STATION]["alarms_active"] == 1, 10,
             what="the alarm on the web desk")
    events = http.get(f"/api/stations/{STATION}")[1]["events"]
    assert any(e["type"] == "alerting" and e["complaint_id"] == cid for e in events)
