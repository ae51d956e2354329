"""What a connected client may do on the reference broker (issue 5): the generated rules let
a station read only its own region's complaints and its own commands, and write only its own
events and status. Each test runs with both generated forms, mosquitto's acl_file (the
reference) and the dynamic-security plugin (the documented alternative).

mosquitto drops a denied publish (MQTT 3.1.1: PUBACK as if delivered; MQTT 5: PUBACK 0x87),
so every check here has subscribers that would have seen it, and a control publish that does
arrive. A denied subscription: acl_file grants it and delivers nothing; dynsec refuses it
(SUBACK failure), which the station reports as a ``subscription`` fault.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from helpers import REGION, ROOT, STATION, station_config, wait_for
from security.conftest import DESK_USER, HQ_USER, tls_client, tls_files

from security.conftest import UNREGISTERED  # noqa: E402

OTHER_REGION, OTHER_STATION, NEIGHBOUR = "jabar-bandung", "bandung-1", "prabumulih-2"


class Client:
    """A TLS client as one certificate: records messages, SUBACK and PUBACK reason codes."""

    def __init__(self, ca: Any, port: int, name: str, *, protocol: str = "5",
                 will: tuple[str, bytes] | None = None) -> None:
        self.name = name
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subacks: dict[int, list[Any]] = {}
        self.pubacks: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.c = tls_client(ca, name, protocol=protocol, client_id=f"{name}-test-{time.time_ns()}")
        if will is not None:
            self.c.will_set(will[0], will[1], qos=1, retain=True)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda c, u, mid, reasons, p: self.subacks.__setitem__(mid, reasons)
        self.c.on_publish = lambda c, u, mid, reason, p: self.pubacks.__setitem__(mid, reason)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        wait_for(self.c.is_connected, 5, what=f"{name} connected")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def subscribe(self, topic: str) -> Any:
        _rc, mid = self.c.subscribe(topic, 1)
        wait_for(lambda: mid in self.subacks, 5, what=f"SUBACK for {topic}")
        return self.subacks[mid][0]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> Any:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: info.mid in self.pubacks, 5, what=f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def clients(ca, secure_broker):
    made: list[Client] = []

    def make(name: str, **kw: Any) -> Client:
        made.append(Client(ca, secure_broker.port, name, **kw))
        return made[-1]
    yield make
    for c in made:
        c.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_station_cannot_subscribe_to_another_regions_complaints(tmp_path, ca, access,
                                                                secure_broker, secure_hq,
                                                                start_station, protocol):
    """A station whose config names a region its certificate is not registered for never
    receives that region's complaints. With the dynamic-security plugin the broker refuses
    the subscription and the desk sees a `subscription` fault; with acl_file mosquitto grants
    it and delivers nothing (silence: the caveat in make-acl.sh, pinned here)."""
    hq = secure_hq
    cfg = station_config(tmp_path, secure_broker.port, protocol=protocol,
                         station={"region": OTHER_REGION},
                         broker={"tls": tls_files(ca, STATION)})
    s = start_station(cfg)
    hq.wait_status(lambda d: d["state"] == "online")
    if access == "dynsec":
        fault = hq.wait_event("fault", fault="subscription")[0]
        assert f"region/{OTHER_REGION}/complaints" in fault["detail"]
        hq.wait_status(lambda d: "subscription" in d["faults"])
    hq.client.publish(f"{ROOT}/region/{OTHER_REGION}/complaints",
                      b'{"v":1,"id":"acl-1","region":"' + OTHER_REGION.encode() + b'"}',
                      qos=1).wait_for_publish(5)
    # Its own command topic was granted: a command from HQ is answered.
    hq.command("status", cmd_id="acl-cmd")
    assert hq.wait_event("cmd_result", cmd_id="acl-cmd")[0]["ok"] is True
    time.sleep(0.3)
    assert hq.of_type("alerting") == [] and hq.of_type("rejected") == []
    assert not s.relay_on("siren") and not s.relay_on("beacon")
    faults = [e["detail"] for e in hq.of_type("fault") if e["fault"] == "subscription"]
    if access == "acl":
        assert faults == []      # mosquitto's acl_file: granted, silent
    print(f"\n{access}, MQTT {protocol}: subscription faults {faults}")


def test_unregistered_station_certificate_reads_nothing(tmp_path, ca, access, secure_broker,
                                                        secure_hq, start_station):
    """A certificate of the station CA whose CN is not in the registry (issued, never
    registered): connects, but receives no complaint of any region."""
    hq = secure_hq
    cfg = station_config(tmp_path, secure_broker.port,
                         station={"id": UNREGISTERED, "region": REGION},
                         broker={"tls": tls_files(ca, UNREGISTERED)})
    s = start_station(cfg)
    wait_for(lambda: s.station.link.connected, 10, what="connected")
    hq.complaint("unreg-1", priority="emergency")
    time.sleep(1.0)
    assert not s.relay_on("siren") and hq.of_type("alerting") == []
    print(f"\n{access}: unregistered station status seen by HQ: "
          f"{UNREGISTERED in hq.status}; faults: {[e['fault'] for e in hq.of_type('fault')]}")


FORBIDDEN_FILTERS = [
    f"{ROOT}/region/{OTHER_REGION}/complaints",
    f"{ROOT}/region/+/complaints",
    f"{ROOT}/#",
    "#",
    f"{ROOT}/station/{OTHER_STATION}/cmd",
    f"{ROOT}/station/+/cmd",
    f"{ROOT}/station/{OTHER_STATION}/events",
    f"{ROOT}/station/+/status",
]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_forbidden_subscriptions_deliver_nothing(access, secure_hq, clients, protocol):
    """dynsec: a failure SUBACK (0x87 on MQTT 5, 0x80 on 3.1.1). acl_file: granted. Either
    way not one message of another region or station arrives."""
    snoop = clients(STATION, protocol=protocol)
    granted = [snoop.subscribe(f"{ROOT}/region/{REGION}/complaints"),
               snoop.subscribe(f"{ROOT}/station/{STATION}/cmd")]
    assert [g.is_failure for g in granted] == [False, False]
    refused = {f: snoop.subscribe(f) for f in FORBIDDEN_FILTERS}
    expected = (0x87 if protocol == "5" else 0x80) if access == "dynsec" else 0x01
    assert {r.value for r in refused.values()} == {expected}, refused
    # HQ sends to the other region and the other station: nothing reaches the snoop.
    hq = secure_hq
    hq.client.publish(f"{ROOT}/region/{OTHER_REGION}/complaints", b'{"v":1}', qos=1)
    hq.client.publish(f"{ROOT}/station/{OTHER_STATION}/cmd", b'{"v":1}', qos=1)
    hq.client.publish(f"{ROOT}/region/{REGION}/complaints", b'{"control":1}',
                      qos=1).wait_for_publish(5)
    wait_for(lambda: snoop.messages, 5, what="the control complaint")
    time.sleep(0.3)
    # (acl_file granted the wildcards too, so the control may arrive once per match.)
    assert {m[0] for m in snoop.messages} == {f"{ROOT}/region/{REGION}/complaints"}
    print(f"\n{access}, MQTT {protocol}: {len(refused)} forbidden filters, SUBACK "
          f"{expected:#04x}, nothing delivered")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_station_cannot_publish_on_other_topics(access, secure_hq, clients, protocol):
    hq = secure_hq
    # Subscribers that would see every forged message if the broker let it through.
    other = clients(OTHER_STATION)
    other.subscribe(f"{ROOT}/station/{OTHER_STATION}/cmd")
    other.subscribe(f"{ROOT}/region/{OTHER_REGION}/complaints")
    neighbour = clients(NEIGHBOUR)
    neighbour.subscribe(f"{ROOT}/region/{REGION}/complaints")
    itself = clients(STATION)
    itself.subscribe(f"{ROOT}/station/{STATION}/cmd")

    forger = clients(STATION, protocol=protocol)
    forged = {
        f"{ROOT}/station/{OTHER_STATION}/events": False,      # a fake ack for another room
        f"{ROOT}/station/{OTHER_STATION}/status": True,       # a fake "online" (retained)
        f"{ROOT}/station/{OTHER_STATION}/cmd": False,         # silence another room's siren
        f"{ROOT}/station/{STATION}/cmd": False,               # commands to itself
        f"{ROOT}/region/{REGION}/complaints": False,          # sound every siren of its region
        f"{ROOT}/region/{OTHER_REGION}/complaints": False,
        f"{ROOT}/station/{STATION}/other": False,
    }
    pubacks = {t: forger.publish(t, b'{"v":1,"forged":true}', retain=r)
               for t, r in forged.items()}
    # The desk may not send complaints either.
    desk = clients(DESK_USER, protocol=protocol)
    pubacks["desk → complaints"] = desk.publish(f"{ROOT}/region/{REGION}/complaints",
                                                b'{"v":1,"forged":"desk"}')
    # Controls: the station's own event and HQ's complaint do arrive.
    forger.publish(f"{ROOT}/station/{STATION}/events", b'{"v":1,"type":"control"}')
    hq.client.publish(f"{ROOT}/region/{REGION}/complaints", b'{"control":1}',
                      qos=1).wait_for_publish(5)
    wait_for(lambda: any(e.get("type") == "control" for e in hq.events), 5, what="control")
    wait_for(lambda: neighbour.messages, 5, what="HQ's complaint at the neighbour")
    time.sleep(0.5)

    assert [t for t, p in hq.raw if b"forged" in p] == []
    assert OTHER_STATION not in hq.status
    assert other.messages == [] and itself.messages == []
    assert [p for _, p, _ in neighbour.messages] == [b'{"control":1}']
    # A fresh subscriber finds no forged retained status either.
    late = clients(HQ_USER)
    late.subscribe(f"{ROOT}/station/+/status")
    time.sleep(0.3)
    assert late.messages == []
    codes = sorted({str(r) for r in pubacks.values()})
    print(f"\n{access}, MQTT {protocol}: {len(pubacks)} forged publishes dropped; "
          f"PUBACK reason codes: {codes}")


def test_forged_last_will_is_not_published(access, secure_hq, clients):
    """A will on another station's presence (a fake "offline" when the forger drops) never
    arrives; a station's own will does."""
    hq = secure_hq
    forger = clients(STATION, will=(f"{ROOT}/station/{OTHER_STATION}/presence",
                                    b'{"v":1,"state":"offline","forged":true}'))
    own = clients(NEIGHBOUR, will=(f"{ROOT}/station/{NEIGHBOUR}/presence",
                                   b'{"v":1,"state":"offline","reason":"lost"}'))
    for c in (forger, own):                      # drop the TCP connection: no DISCONNECT
        c.c.socket().shutdown(socket.SHUT_RDWR)
    hq.wait_presence(lambda d: d["state"] == "offline", station=NEIGHBOUR)
    time.sleep(0.5)
    assert OTHER_STATION not in hq.presence
