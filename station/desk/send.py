"""``polres-station send-complaint``: publish a complaint as HQ dispatch would (docs/CLI.md)."""
from __future__ import annotations

import argparse
import functools
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from ..protocol import (
    ID_RE, NAME_RE, EventType, Priority, complaint_payload, region_complaints, rfc3339,
)
from ..signing import sign_payload
from ..terminal import Exit, broker_args, seconds
from .clients import EventWaiter, confirm, hq_client, publish_wait
from .keys import SignArgsError, add_sign_args, signing_key


def add_arguments(p: argparse.ArgumentParser) -> None:
    broker_args(p)
    p.add_argument("--region", required=True)
    p.add_argument("--id", help="complaint id (default: generated); a prefix with --count")
    p.add_argument("--priority", choices=list(Priority), default=Priority.NORMAL)
    p.add_argument("--category")
    p.add_argument("--summary", help="complaint text (personal data: test values only)")
    p.add_argument("--count", type=int, default=1, help="complaints to send (load, drills)")
    p.add_argument("--rate", type=float, default=0.0, help="complaints per second (0: fast)")
    add_sign_args(p)
    p.add_argument("--wait-alerting", type=seconds, metavar="SECONDS",
                   help="wait up to SECONDS for each complaint's alerting event; print "
                        "station and relay_latency_ms; exit 1 if one does not come")


def main(args: argparse.Namespace) -> int:
    if not NAME_RE.match(args.region):
        print(f"error: --region {args.region!r} is not a region id", file=sys.stderr)
        return Exit.USAGE
    problem = _field_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return Exit.USAGE
    try:
        key = signing_key(args)
    except SignArgsError as e:
        print(f"error: {e}", file=sys.stderr)
        return Exit.USAGE
    topic = region_complaints(args.root, args.region)
    ids: list[str] = []
    infos = []
    count = max(1, args.count)
    gap = 1.0 / args.rate if args.rate else 0.0
    with hq_client(args) as client:
        waiter = EventWaiter(client, args.root) if args.wait_alerting else None
        start = time.monotonic()
        for i in range(count):
            cid = args.id if args.id and count == 1 else new_id(args.id, i)
            payload = complaint_payload(complaint_id=cid, region=args.region,
                                        priority=args.priority, category=args.category,
                                        summary=args.summary,
                                        reported_at=rfc3339(time.time()))
            if key is not None:
                payload = sign_payload(payload, topic, key)
            infos.append(publish_wait(client, topic, payload, wait=False))
            ids.append(cid)
            if gap:
                time.sleep(max(0.0, start + (i + 1) * gap - time.monotonic()))
        confirm(client, infos, topic)          # raises when refused or unconfirmed
        if waiter is not None:
            return _report_alerting(waiter, ids, args.wait_alerting)
    for cid in ids:
        print(cid)
    return Exit.OK


def _field_problem(args: argparse.Namespace) -> str | None:
    """Why the complaint asked for would be refused by a station (docs/INTERFACE.md §3)."""
    if args.category is not None and len(args.category) > 64:
        return "--category: at most 64 characters"
    if args.summary is not None and len(args.summary) > 2000:
        return "--summary: at most 2,000 characters"
    count = max(1, args.count)
    if args.id and not ID_RE.match(args.id if count == 1 else new_id(args.id, count - 1)):
        numbered = "" if count == 1 else " (with --count: plus -NNNNNN)"
        return f"--id {args.id!r}: not 1–64 of [A-Za-z0-9._:-]{numbered}"
    return None


def _alerting_for(complaint_id: str, doc: dict[str, Any]) -> bool:
    return doc.get("type") == EventType.ALERTING and doc.get("complaint_id") == complaint_id


def _report_alerting(waiter: EventWaiter, ids: list[str], seconds: float) -> int:
    """One line per complaint: id, station, relay_latency_ms — or that none came (exit 1)."""
    deadline = time.monotonic() + seconds
    missing = 0
    for cid in ids:
        doc = waiter.wait(functools.partial(_alerting_for, cid),
                          max(0.0, deadline - time.monotonic()))
        if doc is None:
            missing += 1
            print(f"{cid} no alerting within {seconds:g} s")
        else:
            print(f"{cid} alerting station={doc.get('station')} "
                  f"relay_latency_ms={doc.get('relay_latency_ms')}")
    return Exit.FAIL if missing else Exit.OK


def new_id(prefix: str | None, i: int) -> str:
    """``PREFIX-000123`` with a prefix, else ``110-YYYYMMDD-HHMMSS-xxxxxx``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{i:06d}" if prefix else f"110-{stamp}-{uuid.uuid4().hex[:6]}"
