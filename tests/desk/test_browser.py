"""The web desk in a real browser (Debian's chromium, headless, one per module) against a real
mosquitto and the real station: a station SIGKILLed with an active alarm shows offline with its
alarm and the page calls for attention within 5 s; a restarted desk still shows it; the station
restarted and its button pressed clears it. Also: the detail view, "seen", the sound."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from selenium.webdriver.common.by import By

from helpers import HQ, STATION, Mosquitto, station_config, wait_for
from desk.harness import DeskProcess, browser, wait_js

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    d = browser()
    yield d
    d.quit()


def row_text(driver: Any, station: str) -> str:
    return driver.execute_script(
        "const r = document.querySelector(`tr[data-station='${arguments[0]}']`);"
        "return r ? r.className + ' | ' + r.innerText : '';", station)


def test_killed_station_with_alarm_stays_on_the_wall_until_acknowledged(
        broker: Mosquitto, hq: HQ, tmp_path: Path, station_process: Any,
        start_station: Any, driver: Any) -> None:
    config = station_config(tmp_path, broker.port)
    real = station_process(config).start()
    hq.wait_status(lambda d: d["state"] == "online", timeout=20)
    desk = DeskProcess(broker.address, tmp_path / "desk", "--unacked-alert-s", "600").start()
    try:
        driver.get(desk.url + "/")
        wait_js(driver, "document.body.dataset.ready === '1' && "
                f"document.querySelector(`tr[data-station='{STATION}']`) !== null",
                what="the station on the wall")
        calm = ("ok", "fault")      # a test machine may report clock_unsynced: a fault
        assert row_text(driver, STATION).split(" | ")[0] in calm

        hq.complaint("110-browser-1", priority="emergency")
        hq.wait_event("alerting", complaint_id="110-browser-1")
        wait_for(lambda: " 1\n" in row_text(driver, STATION) or
                 row_text(driver, STATION).split(" | ")[0].startswith("alarm"), 10,
                 what="the alarm on the wall")

        killed_at = time.monotonic()
        real.kill()
        wait_for(lambda: row_text(driver, STATION).startswith("offline_alarms"), 5, 0.02,
                 what="offline with alarms on the wall")
        wait_js(driver, "document.body.classList.contains('alert') && "
                "!document.getElementById('attention').hidden", 5 - (time.monotonic() - killed_at),
                what="the page calling for attention")
        shown_s = time.monotonic() - killed_at
        assert shown_s <= 5.0
        text = row_text(driver, STATION)
        assert "offline (lost)" in text and "at last status" in text
        banner = driver.find_element(By.ID, "attention").text
        assert STATION in banner and "1 alarm unacknowledged at its last status" in banner

        # the desk restarted: its database still knows
        assert desk.stop() == 0
        desk.start()
        driver.get(desk.url + "/")
        wait_js(driver, "document.body.dataset.ready === '1'", what="page after desk restart")
        wait_for(lambda: row_text(driver, STATION).startswith("offline_alarms"), 5,
                 what="still offline with alarms after the desk restarted")
        assert driver.execute_script("return document.body.classList.contains('alert')")

        # the station back (same state: the alarm resumes), the button pressed in the room
        running = start_station(config)
        wait_for(lambda: row_text(driver, STATION).split(" | ")[0].startswith("alarm"), 15,
                 what="the station back online with its resumed alarm")
        running.press()
        hq.wait_event("ack", complaint_id="110-browser-1")
        wait_for(lambda: row_text(driver, STATION).split(" | ")[0] in calm, 10,
                 what="the alarm cleared on the wall")
        wait_js(driver, "!document.body.classList.contains('alert') && "
                "document.getElementById('attention').hidden", 5, what="attention over")

        # the detail view: the alerting and the ack with their latencies
        # one step in the page: a row found then clicked may be redrawn in between
        driver.execute_script(
            "document.querySelector(`tr[data-station='${arguments[0]}'] td`).click()", STATION)
        wait_js(driver, f"document.body.dataset.detail === '{STATION}'", what="detail open")
        wait_for(lambda: "ack" in driver.find_element(By.ID, "detail").text, 10,
                 what="the ack in the detail view")
        detail = driver.find_element(By.ID, "detail").text
        assert "complaint 110-browser-1" in detail and "relay" in detail
        assert "ack after" in detail and "button" in detail
    finally:
        desk.stop()


def test_mark_seen_and_sound(broker: Mosquitto, tmp_path: Path, driver: Any) -> None:
    from station.desk.clients import connected, make_client

    from desk.docs import presence, status
    desk = DeskProcess(broker.address, tmp_path / "desk", "--unacked-alert-s", "60").start()
    client = make_client()
    try:
        with connected(client, "127.0.0.1", broker.port):
            for leaf, payload in (("presence", presence("st-long")),
                                  ("status", status("st-long", alarms=1, oldest=300.0))):
                client.publish(f"polri/110/station/st-long/{leaf}", payload, qos=1,
                               retain=True).wait_for_publish(5)
        driver.get(desk.url + "/")
        wait_js(driver, "document.body.classList.contains('alert')",
                what="attention for an alarm unacknowledged 5 min")
        assert row_text(driver, "st-long").startswith("unacked_long attention")
        driver.find_element(By.ID, "sound").click()          # the click that allows audio
        wait_js(driver, "(window.deskBeeps || 0) >= 2", 6, what="the alarm sound repeating")
        driver.find_element(By.CSS_SELECTOR, 'button[data-seen="st-long"]').click()
        wait_js(driver, "!document.body.classList.contains('alert')", 5,
                what="attention silenced by 'seen'")
        beeps = driver.execute_script("return window.deskBeeps")
        time.sleep(2.5)
        assert driver.execute_script("return window.deskBeeps") == beeps   # silent now
        assert row_text(driver, "st-long").startswith("unacked_long")      # still listed
    finally:
        desk.stop()
