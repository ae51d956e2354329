"""``polres-station``: the station's own subcommands, and the table of the desk's (docs/CLI.md).

The station side (``run``, ``check-config``, ``status``, ``history``, ``outputs-off``,
``quarantine-db``, ``selftest``, ``firmware-config``, ``timesync-config``) runs on the Pi.
The desk and HQ side (``send-complaint``, ``send-command``, ``monitor``, ``desk``, ``demo``)
lives in :mod:`station.desk` and is imported only when its subcommand is chosen. Exit codes:
:class:`station.terminal.Exit`.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from datetime import datetime, tzinfo
from typing import Any, Callable, Sequence

from . import __version__, terminal
from .errors import StorageError
from .terminal import EXIT_EPILOG, Exit, config_arg, load_config_arg, setup_logging

log = logging.getLogger("station.cli")


# --- subcommands ------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from . import reporting
    from .outbox import IDLE_WAKE_S
    from .service import Station
    from .systemd import Notifier, ProgressWatchdog
    config = load_config_arg(args, refuse_placeholders=True)
    setup_logging(args.log_level or config.logging.level)
    # Sentry's import costs ~0.1 s: start it beside GPIO set-up, not before it.
    sentry = threading.Thread(target=reporting.init_sentry, args=(config,),
                              kwargs={"release": __version__}, daemon=True)
    sentry.start()
    notifier = Notifier()
    watchdog = ProgressWatchdog(notifier, stall_s=WATCHDOG_STALL_S)

    def progress(part: str) -> None:
        watchdog.beat(part)
        if part == "loop":
            watchdog.maybe_ping()

    # The loop must come round at least once per ping interval (WatchdogSec= / 2).
    wake_s = min(IDLE_WAKE_S, watchdog.interval_s or IDLE_WAKE_S)
    station = Station(config, pin_factory=terminal.pin_factory_for(config), on_progress=progress,
                      on_status=notifier.status, wake_s=wake_s)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: station.request_stop())
    try:
        station.start()
        # READY once GPIO is set up, not waiting for the broker: the station must alarm and
        # queue while the network is down.
        notifier.ready(status=f"station {config.station.id}: outputs ready, connecting")
        station.run()
        notifier.stopping()
    finally:
        station.stop()   # outputs off on every path (atexit does not run on SIGTERM)
        reporting.close()
    return Exit.OK


WATCHDOG_STALL_S = 20.0   # below the unit's WatchdogSec=30


def cmd_check_config(args: argparse.Namespace) -> int:
    from .config import boot_safety_warnings
    config = load_config_arg(args, refuse_placeholders=True)
    for w in boot_safety_warnings(config.gpio):
        print(f"warning: {w}")
    for line in _signature_summary(config.security):
        print(line)
    print(f"{args.config}: OK (station {config.station.id}, region {config.station.region})")
    return Exit.OK


def _signature_summary(security: Any) -> list[str]:
    """What check-config says of the ``security`` section (docs/SIGNING.md)."""
    if not security.enabled:
        return ["signatures: off (no keys configured; any broker account can sound the siren)"]
    def kids(refs: Any) -> str:
        return ", ".join(r.kid for r in refs) or "no key"
    head = "signatures required" if security.require_signatures else "signatures checked " \
        "when present (require_signatures: false)"
    lines = [f"{head}: complaints by {kids(security.hq_keys)}; commands by "
             f"{kids(security.desk_keys)}"]
    if security.require_signatures and not security.desk_keys:
        lines.append("warning: security.desk_keys: no desk key, so every remote command "
                     "(ack, silence, test, status) will be refused; the button still works")
    return lines


def _open_readonly(config: Any) -> Any:
    """The state database, read-only; None when there is none yet (the station has not run:
    it creates the file on its first start). Other problems raise StorageError (exit 74)."""
    from .store import NoDatabase, Store
    try:
        return Store(config.storage.path, readonly=True)
    except NoDatabase:
        return None


def _never_run(config: Any, what: str, *, json_out: bool) -> None:
    """Say that the station has not run yet (on stderr under ``--json``, whose stdout stays
    machine-readable)."""
    print(f"the station has not run yet: {what} (no state database at {config.storage.path}; "
          "the station creates it when it first starts)",
          file=sys.stderr if json_out else sys.stdout)


NEVER_RUN_STATUS: dict[str, Any] = {"alarms": [], "alarms_active": 0, "outbox_pending": 0,
                                    "last_seq": 0, "session": 0, "faults": {}}


def cmd_quarantine_db(args: argparse.Namespace) -> int:
    """Move a corrupt state database aside and prepare a fresh one that asks HQ to re-send."""
    from .store import Store
    config = load_config_arg(args)
    path = config.storage.path
    if not path.exists():
        print(f"{path}: no state database here; nothing to do", file=sys.stderr)
        return Exit.FAIL
    try:
        with Store(path, readonly=True):
            problem = None
    except StorageError as e:          # CorruptDatabase included
        problem = str(e)
    if problem is None and not args.force:
        print(f"{path}: the database is healthy; not moved (--force moves it anyway)",
              file=sys.stderr)
        return Exit.FAIL
    counters = Store.salvage_counters(path)
    moved = Store.quarantine(path)
    with Store(path) as fresh:
        for key, value in counters.items():
            fresh.set_meta(key, value)
        fresh.set_meta("resync_pending", "1")
    print(f"moved {path} aside to {moved} (kept for audit)")
    if problem:
        print(f"  it was: {problem.split(';')[0]}")
    kept = ", ".join(f"{k} {v}" for k, v in counters.items()) or "none (unreadable)"
    print(f"new database {path}: counters carried over: {kept}; on its first connection the "
          "station sends resync_request so HQ re-sends every unacknowledged complaint "
          "(they alarm again: the room must hear them)")
    return Exit.OK


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config_arg(args)
    zone = config.time.zone()
    store = _open_readonly(config)
    if store is None:
        _never_run(config, "no alarms, nothing queued", json_out=args.json)
        if args.json:
            print(json.dumps({**NEVER_RUN_STATUS, "has_run": False}, indent=2))
        return Exit.OK
    with store:
        now = time.time()
        active = store.active_alarms()
        doc = {
            "alarms": [{"complaint_id": a.complaint_id, "priority": a.priority,
                        "alerted_at": a.alerted_at,
                        "age_s": round(now - a.alerted_at, 1), "escalated": a.escalated,
                        "silenced": a.silenced} for a in active[:_bound(args.limit)]],
            "alarms_active": len(active),
            "outbox_pending": store.outbox_count(), "last_seq": store.last_seq(),
            "session": int(store.get_meta("session") or 0),
            "faults": json.loads(store.get_meta("faults") or "{}"),
            "has_run": True,
        }
    if args.json:
        print(json.dumps(doc, indent=2))
        return Exit.OK
    print(f"active alarms: {len(active)}")
    for a in doc["alarms"]:
        flags = " escalated" * a["escalated"] + " silenced" * a["silenced"]
        print(f"  {a['complaint_id']:<32} {a['priority']:<9} since "
              f"{_when(a['alerted_at'], zone)} {_zone_label(zone)} {a['age_s']:>9.1f} s{flags}")
    if len(active) > len(doc["alarms"]):
        print(f"  … {len(active) - len(doc['alarms'])} more (-n to list more)")
    print(f"outbox pending: {doc['outbox_pending']} (last seq {doc['last_seq']})")
    print(f"faults: {', '.join(doc['faults']) or 'none'}")
    return Exit.OK


def _bound(limit: int | None) -> int | None:
    """A slice end for ``-n/--limit``: None (every row) when not given."""
    return None if limit is None else max(limit, 0)


def _when(wall: float | None, zone: tzinfo) -> str:
    """A wall-clock time (Unix seconds) as local ``YYYY-MM-DD HH:MM:SS`` in ``zone``."""
    if wall is None:
        return "-"
    return datetime.fromtimestamp(wall, tz=zone).strftime("%Y-%m-%d %H:%M:%S")


def _zone_label(zone: tzinfo) -> str:
    """The zone's abbreviation now (``WIB`` for Asia/Jakarta, ``UTC``) for column headers."""
    return datetime.now(zone).strftime("%Z")


def cmd_history(args: argparse.Namespace) -> int:
    """Rows newest first; the text table prints times in ``time.display_tz``, ``--json``
    keeps Unix seconds (UTC, as on the wire)."""
    config = load_config_arg(args)
    zone = config.time.zone()
    store = _open_readonly(config)
    if store is None:
        _never_run(config, "no history", json_out=args.json)
        if args.json:
            print("[]")
        return Exit.OK
    with store:
        rows = store.history(limit=args.limit)
    if args.json:
        from dataclasses import asdict
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return Exit.OK
    label = _zone_label(zone)
    print(f"{f'alerted ({label})':<20} {'complaint':<28} {'priority':<9} {'state':<6} "
          f"{f'acked ({label})':<20} {'how':<7} {'by':<12} {'ack ms':>9}")
    for r in rows:
        lat = "-" if r.ack_latency_ms is None else f"{r.ack_latency_ms:.0f}"
        print(f"{_when(r.alerted_at, zone):<20} {r.complaint_id:<28} {r.priority:<9} "
              f"{r.state:<6} {_when(r.acked_at, zone):<20} {r.ack_method or '-':<7} "
              f"{r.ack_by or '-':<12} {lat:>9}")
    return Exit.OK


def cmd_outputs_off(args: argparse.Namespace) -> int:
    from .hardware import force_outputs_off
    config = load_config_arg(args)
    for line in force_outputs_off(config.gpio, pin_factory=terminal.pin_factory_for(config)):
        print(line)
    return Exit.OK


# --- parser -----------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "run": ("run the station service (systemd starts this)", cmd_run),
    "check-config": ("validate a config file; every problem with its key path", cmd_check_config),
    "status": ("local state: active alarms, outbox, faults", cmd_status),
    "history": ("alarm and acknowledgment history, newest first", cmd_history),
    "outputs-off": ("force siren and beacon relays off (systemd ExecStopPost)", cmd_outputs_off),
    "quarantine-db": ("move a corrupt state database aside; the station then starts fresh and "
                      "asks HQ to re-send unacknowledged complaints", cmd_quarantine_db),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command``, only that subcommand's plugin module is
    imported (the others are listed without their options)."""
    parser = argparse.ArgumentParser(
        prog="polres-station", description="Polres Call Center 110 station controller.",
        epilog=EXIT_EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        EXTRA_ARGS.get(name, config_arg)(p)
    for name, (help_text, module) in PLUGIN_COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is not None and name != command:
            continue
        try:
            _plugin(module).add_arguments(p)
        except (ImportError, AttributeError):
            p.set_defaults(_missing=module)  # not built yet: says so when run
    return parser


def _run_args(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _list_args(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-n", "--limit", type=int, default=50, help="rows (default %(default)s)")


def _status_args(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-n", "--limit", type=int, default=None,
                   help="active alarms listed, oldest first (default: all)")


def _quarantine_args(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--force", action="store_true",
                   help="move the database aside even if it looks healthy")


EXTRA_ARGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "run": _run_args, "status": _status_args, "history": _list_args,
    "quarantine-db": _quarantine_args,
}

# Subcommands that live in their own module: name → (help, module). The module provides
# ``add_arguments(parser)`` and ``main(args) -> int``; it is imported only when used, so
# ``run`` starts fast.
PLUGIN_COMMANDS: dict[str, tuple[str, str]] = {
    "selftest": ("technician's self-test: siren, beacon, button, feedback", "station.selftest"),
    "firmware-config": ("render the Raspberry Pi boot config (config.txt lines)",
                        "station.firmware"),
    "timesync-config": ("print the systemd-timesyncd drop-in for time.ntp_servers",
                        "station.timesync"),
    "demo": ("the station on an embedded broker with simulated GPIO and HQ",
             "station.desk.demo"),
    "monitor": ("the national desk's live view of every station", "station.desk.monitor"),
    "send-complaint": ("publish a complaint as HQ would; prints its id", "station.desk.send"),
    "keygen": ("make an Ed25519 signing key pair for HQ or the desk (docs/SIGNING.md)",
               "station.keygen"),
    "send-command": ("send ack/silence/test/status to a station; prints its cmd_result",
                     "station.desk.command"),
    "desk": ("the national desk's web wall: every station, trouble first, kept in SQLite",
             "station.desk.web.cli"),
}


def _plugin(module: str) -> Any:
    import importlib
    return importlib.import_module(module)


def _command_in(argv: Sequence[str] | None) -> str:
    """The subcommand named on the command line ("" if none): the first word that is not an
    option (the top level has only flags)."""
    words = sys.argv[1:] if argv is None else argv
    return next((w for w in words if not w.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    # Only the chosen plugin is imported: `run` must not load the demo's embedded broker
    # (asyncio), the monitor and the rest (bench/: idle RSS 35.5 -> 33.2 MiB).
    args = build_parser(_command_in(argv)).parse_args(argv)
    if args.command in PLUGIN_COMMANDS:
        if getattr(args, "_missing", None):
            print(f"{args.command}: not available in this build", file=sys.stderr)
            return Exit.FAIL
        handler = _plugin(PLUGIN_COMMANDS[args.command][1]).main
    else:
        _, handler = COMMANDS[args.command]
    return terminal.run_handler(handler, args)


if __name__ == "__main__":
    sys.exit(main())
