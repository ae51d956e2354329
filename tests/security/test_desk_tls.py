"""The web desk on the reference broker: MQTT over TLS as the ``desk.monitoring`` certificate
(the ACL lets it read status, presence and events), and the page itself served over HTTPS."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import STATION, station_config, wait_for
from security.conftest import DESK_USER, SecureBroker, tls_files

from desk.harness import DeskProcess, Http


def test_desk_over_tls_sees_a_tls_station_and_serves_https(secure_broker: SecureBroker,
                                                           ca: Path, tmp_path: Path,
                                                           start_station: Any) -> None:
    start_station(station_config(tmp_path, secure_broker.port,
                                 broker={"tls": tls_files(ca, STATION)}))
    desk = DeskProcess(
        f"127.0.0.1:{secure_broker.port}", tmp_path / "desk",
        "--ca-file", str(ca / "ca.crt"), "--cert-file", str(ca / f"{DESK_USER}.crt"),
        "--key-file", str(ca / f"{DESK_USER}.key"),
        "--tls-cert", str(ca / "broker.crt"), "--tls-key", str(ca / "broker.key"),
        https_ca=ca / "ca.crt").start()
    try:
        assert desk.url.startswith("https://")
        http = Http(desk.url, desk.context)
        row = wait_for(lambda: http.stations().get(STATION), 15, what="the station over TLS")
        assert row["state"] == "online" and row["version"]
        code, session = http.get("/api/session")
        assert code == 200 and session["csrf"]
        assert "WITHOUT TLS" not in desk.log_text()
    finally:
        desk.stop()
