"""The desk's reading of a station (pure, time passed in): offline with its last alarms, stale,
late wills, redeliveries, the trouble order and the attention a desk-side "seen" silences."""
from __future__ import annotations

from station.desk.web import state as S
from station.protocol import HealthDoc, PresenceDoc

from desk.docs import presence, status

T0 = 1_800_000_000.0
ALERT_S = 120.0


def health(**kw: object) -> HealthDoc:
    doc = HealthDoc.read(status("st-1", **kw))  # type: ignore[arg-type]
    assert doc is not None
    return doc


def pres(*args: object, **kw: object) -> PresenceDoc:
    doc = PresenceDoc.read(presence("st-1", *args, **kw))  # type: ignore[arg-type]
    assert doc is not None
    return doc


def online_with_alarm(oldest: float = 10.0) -> S.Station:
    st = S.Station("st-1")
    S.apply_presence(st, pres(at=T0 - 5), T0 - 5, retained=False)
    S.apply_status(st, health(at=T0, alarms=1, oldest=oldest), T0, retained=False)
    return st


def test_killed_station_keeps_its_alarms_and_offline_since() -> None:
    st = online_with_alarm(oldest=30.0)
    assert S.apply_presence(st, pres("offline", reason="lost", will=True), T0 + 50,
                            retained=False)
    r = S.row(st, T0 + 110, ALERT_S)
    assert (r["state"], r["reason"], r["alarms_active"]) == ("offline", "lost", 1)
    assert r["since"] == S.rfc3339(T0 + 50)
    assert r["oldest_unacked_s"] == 140.0            # 30 s at its last status + 110 s since
    assert r["trouble"] == "offline_alarms" and r["attention"]


def test_will_found_retained_dates_the_outage_from_the_last_status() -> None:
    st = S.Station("st-1")
    S.apply_status(st, health(at=T0, alarms=1, oldest=1.0), T0 + 900, retained=True)
    S.apply_presence(st, pres("offline", reason="lost", will=True), T0 + 900, retained=True)
    assert S.row(st, T0 + 900, ALERT_S)["since"] == S.rfc3339(T0)


def test_redelivered_retained_messages_keep_the_first_times() -> None:
    st = online_with_alarm()
    S.apply_presence(st, pres("offline", reason="lost", will=True), T0 + 50, retained=False)
    # the desk restarts (or moves to another broker node): the same retained messages again
    assert not S.apply_presence(st, pres("offline", reason="lost", will=True), T0 + 5000,
                                retained=True)
    assert not S.apply_status(st, health(at=T0, alarms=1, oldest=10.0), T0 + 5000,
                              retained=True)
    r = S.row(st, T0 + 5000, ALERT_S)
    assert r["since"] == S.rfc3339(T0 + 50) and r["last_status_at"] == S.rfc3339(T0)


def test_late_will_of_an_older_connection_is_ignored() -> None:
    st = S.Station("st-1")
    S.apply_presence(st, pres(session=5, at=T0), T0, retained=False)
    S.apply_status(st, health(session=5, at=T0), T0, retained=False)
    assert not S.apply_presence(st, pres("offline", reason="lost", session=4, will=True),
                                T0 + 1, retained=False)
    assert S.view(st, T0 + 1) is S.View.ONLINE
    assert S.apply_presence(st, pres("offline", reason="lost", session=5, will=True), T0 + 2,
                            retained=False)
    assert S.view(st, T0 + 2) is S.View.OFFLINE


def test_clean_stop_uses_its_own_time_and_reason() -> None:
    st = online_with_alarm()
    S.apply_presence(st, pres("offline", reason="shutdown", at=T0 + 7), T0 + 8, retained=False)
    r = S.row(st, T0 + 9, ALERT_S)
    assert (r["reason"], r["since"]) == ("shutdown", S.rfc3339(T0 + 7))


def test_status_of_a_newer_session_brings_an_offline_station_back() -> None:
    st = online_with_alarm()
    S.apply_presence(st, pres("offline", reason="lost", will=True), T0 + 5, retained=False)
    S.apply_status(st, health(at=T0 + 60, session=2, boot_id="boot-2"), T0 + 60, retained=False)
    assert S.view(st, T0 + 61) is S.View.ONLINE


def test_stale_after_three_intervals() -> None:
    st = S.Station("st-1")
    S.apply_presence(st, pres(at=T0), T0, retained=False)
    S.apply_status(st, health(at=T0, interval_s=10), T0, retained=False)
    assert S.view(st, T0 + 30) is S.View.ONLINE
    assert S.view(st, T0 + 30.5) is S.View.STALE
    assert S.row(st, T0 + 31, ALERT_S)["trouble"] == "stale"


def test_retained_status_is_as_old_as_it_says_unless_the_clock_was_unsynced() -> None:
    st = S.Station("st-1")
    S.apply_status(st, health(at=T0 - 500), T0, retained=True)
    assert S.view(st, T0) is S.View.STALE
    st2 = S.Station("st-1")
    S.apply_status(st2, health(at=T0 - 500, synced=False), T0, retained=True)
    assert S.view(st2, T0) is S.View.ONLINE


def test_unacked_long_calls_for_attention_until_seen_and_again_for_a_new_alarm() -> None:
    st = online_with_alarm(oldest=100.0)             # began at T0 - 100
    assert S.row(st, T0 + 10, ALERT_S)["trouble"] == "alarm"
    assert not S.row(st, T0 + 10, ALERT_S)["attention"]
    r = S.row(st, T0 + 30, ALERT_S)
    assert r["trouble"] == "unacked_long" and r["attention"]
    S.mark_seen(st, T0 + 31, "desk-1")
    r = S.row(st, T0 + 60, ALERT_S)
    assert r["trouble"] == "unacked_long" and not r["attention"]
    # acknowledged, then a new alarm that in turn stays unacknowledged
    S.apply_status(st, health(at=T0 + 100, alarms=0), T0 + 100, retained=False)
    S.apply_status(st, health(at=T0 + 200, alarms=1, oldest=0.0), T0 + 200, retained=False)
    assert not S.row(st, T0 + 300, ALERT_S)["attention"]
    assert S.row(st, T0 + 321, ALERT_S)["attention"]


def test_going_offline_with_alarms_calls_again_after_an_earlier_seen() -> None:
    st = online_with_alarm(oldest=200.0)
    S.mark_seen(st, T0 + 1, None)
    assert not S.row(st, T0 + 2, ALERT_S)["attention"]
    S.apply_presence(st, pres("offline", reason="lost", will=True), T0 + 3, retained=False)
    assert S.row(st, T0 + 4, ALERT_S)["attention"]


def test_trouble_order() -> None:
    def made(kind: str) -> S.Station:
        st = S.Station(kind)
        if kind == "offline_alarms":
            st = online_with_alarm()
            S.apply_presence(st, pres("offline", reason="lost", will=True), T0, retained=False)
        elif kind == "unacked_long":
            st = online_with_alarm(oldest=500.0)
        elif kind == "alarm":
            st = online_with_alarm(oldest=1.0)
        elif kind == "stale":
            S.apply_status(st, health(at=T0 - 1000), T0 - 1000, retained=False)
        elif kind == "fault":
            S.apply_status(st, health(at=T0, faults=["gpio"]), T0, retained=False)
        elif kind == "offline":
            S.apply_presence(st, pres("offline", reason="shutdown", at=T0), T0, retained=False)
        else:
            S.apply_status(st, health(at=T0), T0, retained=False)
        st.station = kind
        return st
    kinds = ["ok", "offline", "fault", "stale", "alarm", "unacked_long", "offline_alarms"]
    rows = sorted((S.row(made(k), T0 + 1, ALERT_S) for k in kinds), key=S.sort_key)
    assert [r["trouble"] for r in rows] == kinds[::-1]


def test_a_birth_without_any_health_document_reads_stale() -> None:
    st = S.Station("st-1")
    S.apply_presence(st, pres(at=T0), T0, retained=False)
    assert S.view(st, T0) is S.View.STALE          # online, but nothing known of its health
    S.apply_status(st, health(at=T0 + 0.01), T0 + 0.01, retained=False)
    assert S.view(st, T0 + 0.02) is S.View.ONLINE
