"""``polres-station send-command``: a command to one station, and its ``cmd_result``.

Publishes ``{"v":1,"cmd_id","cmd","args"}`` on ``{root}/station/{station}/cmd`` (QoS 1, never
retained), waits for the station's ``cmd_result`` with that ``cmd_id`` and prints it as JSON.
Exit 0 when the station answered ``ok: true``; 1 when it refused (``ok: false``), when nothing
answered within ``--timeout`` seconds, or when the broker refused the publish; 69 when the
broker is unreachable. Signed (Ed25519) when ``--sign-key``/``--kid`` are given.
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from ..protocol import COMMANDS, ID_RE, NAME_RE, VERSION, encode, station_topic
from ..terminal import Exit, broker_args, seconds
from .clients import EventWaiter, Side, hq_client, publish_wait
from .keys import SignArgsError, add_sign_args, signing_key


def command_doc(cmd: str, *, cmd_id: str | None = None, complaint_id: str | None = None,
                by: str | None = None, seconds: float | None = None) -> dict[str, Any]:
    """The command message (docs/INTERFACE.md §7) with only the arguments its ``cmd`` takes."""
    args: dict[str, Any] = {}
    if cmd == "ack":
        if complaint_id:
            args["complaint_id"] = complaint_id
        if by:
            args["by"] = by
    elif cmd == "test" and seconds is not None:
        # whole seconds as an integer: a signed message holds no floats (canonical JSON)
        args["seconds"] = int(seconds) if float(seconds).is_integer() else seconds
    return {"v": VERSION, "cmd_id": cmd_id or f"desk-{uuid.uuid4().hex[:16]}", "cmd": cmd,
            "args": args}


def sign_with(key: Any, doc: dict[str, Any], topic: str) -> dict[str, Any]:
    """``doc`` with its ``sig`` for ``topic`` (``station.signing``); ``key`` None: ``doc``."""
    if key is None:
        return doc
    from ..signing import sign
    return sign(doc, topic, key)


def add_arguments(p: argparse.ArgumentParser) -> None:
    broker_args(p)
    p.add_argument("--station", required=True, help="station id")
    p.add_argument("cmd", choices=COMMANDS, help="the command")
    p.add_argument("--complaint-id", help="ack: only this complaint (default: all)")
    p.add_argument("--by", help="ack: who acknowledges (recorded by the station)")
    p.add_argument("--seconds", type=float,
                   help="test: self-test length (≤ 10 s; whole seconds when signed)")
    p.add_argument("--timeout", type=seconds, default=10.0,
                   help="seconds to wait for the cmd_result (default %(default)s)")
    add_sign_args(p)


def main(args: argparse.Namespace) -> int:
    if not NAME_RE.match(args.station):
        print(f"error: --station {args.station!r} is not a station id", file=sys.stderr)
        return Exit.USAGE
    if args.complaint_id and not ID_RE.match(args.complaint_id):
        print(f"error: --complaint-id {args.complaint_id!r} is not a complaint id",
              file=sys.stderr)
        return Exit.USAGE
    topic = station_topic(args.root, args.station, "cmd")
    try:
        key = signing_key(args)
    except SignArgsError as e:
        print(f"error: {e}", file=sys.stderr)
        return Exit.USAGE
    if key is not None and args.seconds is not None and not float(args.seconds).is_integer():
        # canonical JSON has no form for a fraction (docs/INTERFACE.md §8)
        print(f"error: --seconds {args.seconds:g}: a signed command carries whole seconds",
              file=sys.stderr)
        return Exit.USAGE
    doc = sign_with(key, command_doc(args.cmd, complaint_id=args.complaint_id, by=args.by,
                                     seconds=args.seconds), topic)
    with hq_client(args, Side.DESK) as client:
        waiter = EventWaiter(client, args.root, args.station)
        publish_wait(client, topic, encode(doc))
        result = waiter.wait(lambda d: d.get("type") == "cmd_result"
                             and d.get("cmd_id") == doc["cmd_id"], args.timeout)
    if result is None:
        print(f"no cmd_result for {doc['cmd_id']} from {args.station} within "
              f"{args.timeout:g} s", file=sys.stderr)
        return Exit.FAIL
    print(json.dumps(result, ensure_ascii=False))
    return Exit.OK if result.get("ok") is True else Exit.FAIL
