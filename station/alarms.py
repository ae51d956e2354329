"""The alarm machine (SPEC §3.1–3.2): pure; events in, decisions out. (types first)"""
from __future__ import annotations

from dataclasses import dataclass

from .config import Pattern


@dataclass(frozen=True)
class Outputs:
    """What the relays should do: the siren's cadence (None = off) and the beacon."""

    siren: Pattern | None = None
    beacon: bool = False


OFF = Outputs()
