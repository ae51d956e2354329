"""Who may connect to the reference broker (issue 5): a station with a certificate of the
station CA works end to end; no certificate, an expired one, a revoked one (CRL on) or one of
another CA is refused, and the station says so in its log, keeps retrying and alarms nothing.
"""
from __future__ import annotations

import logging
import ssl
import time

import pytest

from helpers import REGION, STATION, station_config, wait_for
from security.conftest import SecureBroker, SecureHQ, tls_client, tls_files


def test_station_with_a_valid_certificate_works_end_to_end(tmp_path, ca, secure_broker,
                                                           secure_hq, start_station):
    hq = secure_hq
    cfg = station_config(tmp_path, secure_broker.port, broker={"tls": tls_files(ca, STATION)})
    s = start_station(cfg)
    hq.wait_status(lambda d: d["state"] == "online")
    t0 = time.monotonic()
    hq.complaint("tls-1", priority="emergency")
    wait_for(lambda: s.relay_on("siren") and s.relay_on("beacon"), 5, what="relays on")
    alert = hq.wait_event("alerting")[0]
    s.press(0.1)
    ack = hq.wait_event("ack")[0]
    assert alert["complaint_id"] == ack["complaint_id"] == "tls-1" and ack["method"] == "button"
    assert not s.relay_on("siren") and not s.relay_on("beacon")
    print(f"\nTLS end to end (complaint → ack event): {time.monotonic() - t0:.2f} s")
    # The broker took the user name from the certificate's CN.
    log = secure_broker.log_text()
    assert f"u'{STATION}'" in log, log[-2000:]


def _refused_station(tmp_path, ca, broker, tls, start_station):
    cfg = station_config(tmp_path, broker.port, broker={"tls": tls})
    return start_station(cfg)


# What the station's log must say (the technician's only clue), per refused certificate.
REASONS = {None: "CERTIFICATE_REQUIRED", "expired": "CERTIFICATE_EXPIRED",
           "rogue": "UNKNOWN_CA", "revoked": "CERTIFICATE_REVOKED",
           "impostor-broker": "CERTIFICATE_VERIFY_FAILED"}


@pytest.mark.broker
@pytest.mark.parametrize("cert", list(REASONS))
def test_bad_certificates_are_refused_station_logs_retries_never_alarms(
        tmp_path, ca, start_station, caplog, cert):
    crl = cert == "revoked"
    broker = SecureBroker(tmp_path / "broker", ca, crl=crl).start()
    hq = SecureHQ(broker.port, ca)       # HQ itself gets in (with the CRL on, too)
    try:
        caplog.set_level(logging.INFO, logger="station")
        tls = tls_files(ca, cert)
        if cert == "impostor-broker":    # the station trusts another CA than the broker's
            tls = dict(tls_files(ca, STATION), ca_file=str(ca / "other-ca.crt"))
        s = _refused_station(tmp_path, ca, broker, tls, start_station)
        siren, beacon = s.pin("siren"), s.pin("beacon")
        siren_states, beacon_states = len(siren.states), len(beacon.states)
        hq.complaint("never-1", priority="emergency")

        def attempts() -> int:
            return sum(1 for r in caplog.records if r.name == "station.link"
                       and r.getMessage().startswith("connecting to"))
        wait_for(lambda: attempts() >= 3, 15, what="three connection attempts")
        time.sleep(0.3)
        assert not s.station.link.connected
        assert STATION not in hq.status and hq.events == []       # never online, no events
        assert len(siren.states) == siren_states and len(beacon.states) == beacon_states
        assert not s.relay_on("siren") and not s.relay_on("beacon")
        refusals = [f"{r.name}: {r.getMessage()}" for r in caplog.records
                    if r.name.startswith("station") and r.levelno >= logging.WARNING]
        assert any(REASONS[cert] in line for line in refusals), refusals
        print(f"\n{cert or 'no certificate'}: {attempts()} attempts; station log: "
              f"{sorted(set(x[:110] for x in refusals))}; broker log: "
              f"{[ln for ln in broker.log_text().splitlines() if 'rror' in ln][-1:]}")
    finally:
        hq.close()
        broker.stop()


@pytest.mark.broker
@pytest.mark.parametrize("cert", [None, "expired", "rogue", "revoked"])
def test_bad_certificates_refused_at_the_handshake_for_any_client(tmp_path, ca, cert):
    """The same refusals seen by a bare client: the TLS handshake (or the first read after
    it, TLS 1.3) fails; no CONNACK is ever received."""
    broker = SecureBroker(tmp_path / "broker", ca, crl=cert == "revoked").start()
    try:
        if cert is None:
            from station.desk.clients import make_client
            c = make_client(ca_file=ca / "ca.crt")
        else:
            c = tls_client(ca, cert)
        connacks: list[object] = []
        c.on_connect = lambda *a: connacks.append(a[3])
        try:
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
            time.sleep(1.0)
        except (ssl.SSLError, OSError):
            pass
        finally:
            c.loop_stop()
        assert [r for r in connacks if not getattr(r, "is_failure", True)] == []
    finally:
        broker.stop()


def test_burst_over_tls_keeps_the_stream_whole_and_in_order(tmp_path, ca, secure_broker,
                                                            secure_hq, start_station):
    """The outbox thread writes its events and PUBACKs itself while paho's thread reads the
    same TLS connection (one lock between them): a burst must arrive whole, in seq order."""
    from station.protocol import complaint_payload

    hq = secure_hq
    cfg = station_config(tmp_path, secure_broker.port, broker={"tls": tls_files(ca, STATION)})
    start_station(cfg)
    hq.wait_status(lambda d: d["state"] == "online")
    n = 300
    for i in range(n):
        hq.client.publish(f"polri/110/region/{REGION}/complaints",
                          complaint_payload(complaint_id=f"tb-{i}", region=REGION), qos=1)
    alerts = hq.wait_event("alerting", count=n, timeout=60)
    assert sorted(a["complaint_id"] for a in alerts) == sorted(f"tb-{i}" for i in range(n))
    seqs = [e["seq"] for e in hq.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) == seqs[-1] - seqs[0] + 1
