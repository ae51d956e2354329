"""``polres-station desk`` as a process against a real mosquitto: the machine interfaces, bad
requests, durable state across a desk restart onto a broker without retained messages, the
login, CSRF and command audit, and the warning when it listens beyond loopback."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import Mosquitto, wait_for
from station.desk.clients import connected, make_client

from desk.docs import event, presence, status
from desk.harness import DeskProcess, Http

ROOT = "polri/110"


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Any]:
    client = make_client()
    with connected(client, "127.0.0.1", broker.port):
        yield client


def pub(client: Any, station: str, leaf: str, payload: bytes, retain: bool = True) -> None:
    client.publish(f"{ROOT}/station/{station}/{leaf}", payload, qos=1,
                   retain=retain).wait_for_publish(5)


@pytest.fixture
def desk(broker: Mosquitto, tmp_path: Path) -> Iterator[DeskProcess]:
    d = DeskProcess(broker.address, tmp_path / "desk").start()
    yield d
    d.stop()


def seeded(client: Any) -> None:
    """Three stations: one online, one killed with two alarms, one with a fault; events."""
    pub(client, "st-ok", "presence", presence("st-ok"))
    pub(client, "st-ok", "status", status("st-ok", rejected=2))
    pub(client, "st-dark", "presence", presence("st-dark", region="region-b"))
    pub(client, "st-dark", "status", status("st-dark", region="region-b", alarms=2,
                                            oldest=200.0))
    pub(client, "st-dark", "presence", presence("st-dark", "offline", region="region-b",
                                                reason="lost", will=True))
    pub(client, "st-fault", "status", status("st-fault", faults=["clock_unsynced"]))
    for i, (kind, fields) in enumerate([
            ("alerting", {"complaint_id": "110-1", "priority": "urgent",
                          "relay_latency_ms": 1.2}),
            ("ack", {"complaint_id": "110-1", "method": "button", "ack_latency_ms": 7000}),
            ("rejected", {"reason": "schema", "detail": "id: missing",
                          "payload_sha256": "ab" * 32, "summary": "Ibu Sari"})]):
        pub(client, "st-ok", "events", event("st-ok", kind, seq=i + 1, **fields), retain=False)


def test_api_metrics_healthz(desk: DeskProcess, publisher: Any) -> None:
    seeded(publisher)
    http = Http(desk.url)
    rows = wait_for(lambda: (s := http.stations()) and len(s) == 3 and s, 10,
                    what="three stations")
    dark = rows["st-dark"]
    assert (dark["state"], dark["reason"], dark["alarms_active"]) == ("offline", "lost", 2)
    assert dark["oldest_unacked_s"] >= 200 and dark["attention"]
    assert dark["trouble"] == "offline_alarms" and dark["version"] == "0.1.0"
    assert rows["st-fault"]["faults"] == ["clock_unsynced"]
    for key in ("station", "region", "state", "reason", "since", "last_status_at",
                "alarms_active", "oldest_unacked_s", "faults", "version"):
        assert key in rows["st-ok"], key
    _, listed = http.get("/api/stations")
    assert [r["station"] for r in listed][0] == "st-dark"          # trouble first

    detail = wait_for(lambda: len(http.get("/api/stations/st-ok")[1]["events"]) == 3
                      and http.get("/api/stations/st-ok")[1], 10, what="three events")
    kinds = [e["type"] for e in detail["events"]]
    assert kinds == ["rejected", "ack", "alerting"]
    assert "summary" not in detail["events"][0]                    # no personal data kept
    assert "Ibu Sari" not in (desk.db.read_bytes().decode("latin-1"))

    code, text = http.get("/metrics")
    assert code == 200
    assert 'polres_desk_stations{state="offline"} 1' in text
    assert 'polres_desk_stations{state="online"} 2' in text
    assert re.search(r'polres_desk_station_oldest_unacked_seconds\{station="st-dark",'
                     r'region="region-b"\} 2\d\d', text)
    assert 'polres_desk_ack_latency_seconds_bucket{le="10"} 1' in text
    assert 'polres_desk_ack_latency_seconds_bucket{le="5"} 0' in text
    assert 'polres_desk_rejected_events_total{reason="schema"} 1' in text
    assert 'polres_desk_station_rejected{station="st-ok",region="region-a"} 2' in text
    code, health = http.get("/healthz")
    assert code == 200 and health["broker_connected"] and health["stations"] == 3


def test_bad_requests_change_nothing(desk: DeskProcess, publisher: Any) -> None:
    seeded(publisher)
    http = Http(desk.url)
    wait_for(lambda: len(http.stations()) == 3, 10, what="three stations")
    wait_for(lambda: len(http.get("/api/stations/st-ok")[1]["events"]) == 3, 10,
             what="the events")

    def lasting() -> dict[str, Any]:      # without what time alone moves on
        return {k: {f: v for f, v in r.items() if f != "oldest_unacked_s"}
                for k, r in http.stations().items()}
    before = lasting()
    http.session()
    assert http.get("/api/stations/nope")[0] == 404
    assert http.get("/api/stations/..%2Fetc")[0] == 400
    assert http.get("/nowhere")[0] == 404
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as head:   # a HEAD never hangs on the stream
        urllib.request.urlopen(urllib.request.Request(desk.url + "/api/stream", method="HEAD"),
                               timeout=5)
    assert head.value.code == 405
    assert http.post("/api/seen", {"station": "nope"})[0] == 404
    assert http.post("/api/seen", {"station": "Bad/Id"})[0] == 400
    assert http.post("/api/seen", raw=b"{not json")[0] == 400
    assert http.post("/api/seen", raw=b"[1]")[0] == 400
    assert http.post("/api/seen", raw=b"x" * 5000)[0] == 413
    assert http.post("/api/seen", {"station": "st-dark"}, ctype="text/plain")[0] == 415
    assert http.post("/api/seen", {"station": "st-dark"}, csrf=False)[0] == 403
    assert http.post("/api/command", {"station": "st-dark", "cmd": "ack"})[0] == 403
    assert http.post("/api/login", {"user": "a", "password": "b"})[0] == 404
    assert lasting() == before
    # then a good one: the attention is silenced, desk-side only
    assert http.post("/api/seen", {"station": "st-dark"})[0] == 200
    dark = http.stations()["st-dark"]
    assert not dark["attention"] and dark["alarms_active"] == 2


def test_restart_onto_a_broker_without_retained_messages(broker: Mosquitto, publisher: Any,
                                                         tmp_path: Path) -> None:
    desk = DeskProcess(broker.address, tmp_path / "desk").start()
    seeded(publisher)
    wait_for(lambda: Http(desk.url).stations().get("st-dark", {}).get("state") == "offline",
             10, what="st-dark offline")
    before = Http(desk.url).stations()["st-dark"]
    assert desk.stop() == 0
    # another broker node: it never had the retained status, presence or will
    other = Mosquitto(tmp_path / "other").start()
    try:
        again = DeskProcess(other.address, tmp_path / "desk", db=desk.db).start()
        try:
            after = Http(again.url).stations()["st-dark"]
            assert (after["state"], after["reason"], after["alarms_active"]) == \
                ("offline", "lost", 2)
            assert after["since"] == before["since"]
            assert after["last_status_at"] == before["last_status_at"]
            assert after["oldest_unacked_s"] >= before["oldest_unacked_s"]
            assert after["attention"]
        finally:
            again.stop()
    finally:
        other.stop()


def test_commands_need_login_and_csrf_and_are_recorded(broker: Mosquitto, tmp_path: Path,
                                                       publisher: Any, hq: Any,
                                                       start_station: Any) -> None:
    from helpers import STATION, station_config
    users = tmp_path / "users"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(users), "ayu", "rahasia-desk"],
                   check=True)
    start_station(station_config(tmp_path, broker.port))
    desk = DeskProcess(broker.address, tmp_path / "desk", "--allow-commands", "--users",
                       str(users)).start()
    try:
        http = Http(desk.url)
        wait_for(lambda: STATION in http.stations(), 10, what="the station on the desk")
        doc = http.session()
        assert doc["commands"] and doc["login_required"] and doc["user"] is None
        assert http.post("/api/command", {"station": STATION, "cmd": "status"})[0] == 401
        assert http.post("/api/seen", {"station": STATION})[0] == 401
        assert http.post("/api/login", {"user": "ayu", "password": "wrong"})[0] == 401
        assert http.post("/api/login", {"user": "ayu", "password": "rahasia-desk"},
                         csrf=False)[0] == 403
        code, _ = http.post("/api/login", {"user": "ayu", "password": "rahasia-desk"})
        assert code == 200
        assert http.session()["user"] == "ayu"
        assert http.post("/api/command", {"station": STATION, "cmd": "status"},
                         csrf=False)[0] == 403
        assert http.post("/api/command", {"station": STATION, "cmd": "reboot"})[0] == 400
        assert http.post("/api/command", {"station": "st-nope", "cmd": "status"})[0] == 404
        code, sent = http.post("/api/command", {"station": STATION, "cmd": "status"})
        assert code == 202 and sent["published"]
        result = hq.wait_event("cmd_result", cmd_id=sent["cmd_id"])[0]
        assert result["ok"] is True

        def recorded() -> Any:
            cmds = http.get(f"/api/stations/{STATION}")[1]["commands"]
            return cmds and cmds[0]["ok"] is not None and cmds[0]
        audit = wait_for(recorded, 10, what="the command's result in the audit")
        assert (audit["user"], audit["cmd"], audit["ok"], audit["client"]) == \
            ("ayu", "status", 1, "127.0.0.1")
    finally:
        desk.stop()


def test_listening_beyond_loopback_without_tls_or_login_says_so(broker: Mosquitto,
                                                                 tmp_path: Path) -> None:
    from helpers import free_port
    proc = subprocess.Popen(
        [sys.executable, "-m", "station.cli", "desk", "--broker", broker.address,
         "--listen", f"0.0.0.0:{free_port()}", "--db", str(tmp_path / "d.db")],
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline() if proc.stderr else ""
            lines.append(line)
            if line.startswith("desk: http://"):
                break
        text = "".join(lines)
        assert "WARNING: the desk listens on 0.0.0.0 WITHOUT TLS" in text
        assert "WITHOUT A LOGIN" in text
    finally:
        proc.terminate()
        proc.wait(10)


def test_allow_commands_without_users_is_a_usage_error(broker: Mosquitto,
                                                      tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "station.cli", "desk", "--broker",
                        broker.address, "--allow-commands", "--db", str(tmp_path / "d.db")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--users" in r.stderr


def test_commands_are_signed_when_a_key_is_given(broker: Mosquitto, tmp_path: Path,
                                                 hq: Any, start_station: Any) -> None:
    from helpers import STATION, station_config
    from station.keygen import station_keys
    station_keys(tmp_path / "keys")                  # writes hq.pem, desk.pem and the .pub.pem
    _, _, security = station_keys(tmp_path / "trusted")   # a second pair the station trusts
    users = tmp_path / "users"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(users), "ayu", "pw"], check=True)
    start_station(station_config(tmp_path, broker.port, security=security))
    results = {}
    for label, key_dir in (("untrusted", tmp_path / "keys"), ("trusted", tmp_path / "trusted")):
        desk = DeskProcess(broker.address, tmp_path / f"desk-{label}", "--allow-commands",
                           "--users", str(users), "--sign-key", str(key_dir / "desk.pem"),
                           "--kid", "desk").start()
        try:
            http = Http(desk.url)
            wait_for(lambda: STATION in http.stations(), 10, what="the station on the desk")
            http.session()
            assert http.post("/api/login", {"user": "ayu", "password": "pw"})[0] == 200
            http.session()                            # the logged-in session's own token
            code, sent = http.post("/api/command", {"station": STATION, "cmd": "status"})
            assert code == 202 and sent["signed"]
            results[label] = sent["cmd_id"]
        finally:
            desk.stop()
    assert hq.wait_event("cmd_result", cmd_id=results["trusted"])[0]["ok"] is True
    refused = hq.wait_event("rejected", cmd_id=results["untrusted"])[0]
    assert refused["reason"] == "bad_signature"
    answer = hq.wait_event("cmd_result", cmd_id=results["untrusted"])[0]
    assert answer["ok"] is False and answer["detail"].startswith("bad_signature")
