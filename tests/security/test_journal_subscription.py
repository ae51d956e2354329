"""A subscription the broker refuses (the dynamic-security plugin, a station configured for a
region its certificate is not registered for) shows in `journalctl -p warning`: the link's
line is ERR and the `subscription` fault event a WARNING (tests/test_journal.py has the rest)."""
from __future__ import annotations

import pytest

from helpers import STATION, journal_capture, journal_entries, station_config
from security.conftest import tls_files

ERR, WARNING = 3, 4


@pytest.mark.parametrize("access", ["dynsec"])
def test_refused_subscription_is_an_error_in_the_journal(tmp_path, ca, access, secure_broker,
                                                         secure_hq, start_station):
    cfg = station_config(tmp_path, secure_broker.port, station={"region": "jabar-bandung"},
                         broker={"tls": tls_files(ca, STATION)})
    with journal_capture() as out:
        start_station(cfg)
        secure_hq.wait_event("fault", fault="subscription")
    entries = journal_entries(out.getvalue())
    refused = [p for p, line in entries if "subscription to " in line and "refused" in line]
    fault = [p for p, line in entries if " fault fault=subscription " in f"{line} "]
    assert refused and set(refused) == {ERR} and fault == [WARNING], entries
