"""``GET /metrics``: the desk's view in the Prometheus text format (version 0.0.4).

Stations by state, active alarms and the oldest unacknowledged alarm's age per station, stations
calling for attention, an ack-latency histogram (``ack`` events this desk received since it
started, alerting → ack), rejected messages (``rejected`` events by reason since start, and each
station's own counter from its last status), and the desk's own message counters.
"""
from __future__ import annotations

from typing import Any

from .core import ACK_BUCKETS_S, Desk


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def render(desk: Desk) -> str:
    rows = desk.rows()
    m = desk.metrics
    out: list[str] = []
    _family(out, "polres_desk_stations", "gauge", "Stations by state (online, stale, offline).")
    for state in ("online", "stale", "offline"):
        n = sum(1 for r in rows if r["state"] == state)
        out.append(f'polres_desk_stations{{state="{state}"}} {n}')
    _family(out, "polres_desk_alarms_active_total", "gauge",
            "Active alarms over all stations, as of each station's last status.")
    out.append(f"polres_desk_alarms_active_total {sum(r['alarms_active'] for r in rows)}")
    _family(out, "polres_desk_station_alarms_active", "gauge",
            "Active alarms per station at its last status.")
    _family(out, "polres_desk_station_oldest_unacked_seconds", "gauge",
            "Age of the oldest unacknowledged alarm per station (stations with alarms only).")
    _family(out, "polres_desk_station_rejected", "gauge",
            "Messages the station rejected since it started (its status counter).")
    alarm_lines, oldest_lines, rejected_lines = [], [], []
    for r in rows:
        labels = f'station="{_label(r["station"])}",region="{_label(r["region"] or "")}"'
        alarm_lines.append(f"polres_desk_station_alarms_active{{{labels}}} {r['alarms_active']}")
        if r["oldest_unacked_s"] is not None:
            oldest_lines.append(f"polres_desk_station_oldest_unacked_seconds{{{labels}}} "
                                f"{r['oldest_unacked_s']}")
        if "rejected" in r["counters"]:
            rejected_lines.append(f"polres_desk_station_rejected{{{labels}}} "
                                  f"{r['counters']['rejected']}")
    _insert_after(out, "polres_desk_station_alarms_active", alarm_lines)
    _insert_after(out, "polres_desk_station_oldest_unacked_seconds", oldest_lines)
    _insert_after(out, "polres_desk_station_rejected", rejected_lines)
    _family(out, "polres_desk_attention", "gauge",
            "Stations calling for attention (offline with alarms, alarm unacknowledged too "
            "long) not yet marked seen.")
    out.append(f"polres_desk_attention {sum(1 for r in rows if r['attention'])}")
    _family(out, "polres_desk_ack_latency_seconds", "histogram",
            "Alerting to acknowledgment, from the ack events received since the desk started.")
    cumulative = 0
    for bound, n in zip(ACK_BUCKETS_S, m.ack_buckets[:-1], strict=True):
        cumulative += n
        out.append(f'polres_desk_ack_latency_seconds_bucket{{le="{bound}"}} {cumulative}')
    out.append(f'polres_desk_ack_latency_seconds_bucket{{le="+Inf"}} {m.ack_count}')
    out.append(f"polres_desk_ack_latency_seconds_sum {m.ack_sum_s:.3f}")
    out.append(f"polres_desk_ack_latency_seconds_count {m.ack_count}")
    _family(out, "polres_desk_rejected_events_total", "counter",
            "rejected events received since the desk started, by reason.")
    for reason, n in sorted(m.rejected.items()):
        out.append(f'polres_desk_rejected_events_total{{reason="{_label(reason)}"}} {n}')
    _family(out, "polres_desk_messages_total", "counter", "MQTT messages received, by topic.")
    for leaf, n in m.messages.items():
        out.append(f'polres_desk_messages_total{{topic="{leaf}"}} {n}')
    _family(out, "polres_desk_bad_messages_total", "counter",
            "Messages the desk could not read (not a status, presence or event of v1).")
    out.append(f"polres_desk_bad_messages_total {m.bad_messages}")
    _family(out, "polres_desk_broker_connected", "gauge", "1 while the desk's MQTT link is up.")
    out.append(f"polres_desk_broker_connected {int(desk.broker_connected)}")
    return "\n".join(out) + "\n"


def _insert_after(out: list[str], name: str, lines: list[str]) -> None:
    i = out.index(f"# TYPE {name} gauge") + 1
    out[i:i] = lines
