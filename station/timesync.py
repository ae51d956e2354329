"""The systemd-timesyncd drop-in rendered from ``time.ntp_servers`` (docs/BEHAVIOUR.md §5, §6).

A police network is closed: the Pi cannot reach the public NTP pool, its clock (no RTC) stays
unsynchronised and the station reports ``clock_unsynced`` forever. The package's postinst and
``systemd/install.sh`` write this drop-in to :data:`TIMESYNCD_DROPIN_PATH` and restart
systemd-timesyncd.

``polres-station timesync-config [-c FILE]`` prints it (exit 0), or exits 78 with every config
problem on stderr and prints nothing. ``render_timesyncd_dropin`` is pure text.
"""
from __future__ import annotations

import argparse
import sys

from .config import TimeConfig
from .terminal import Exit, config_arg, load_config_arg

__all__ = ["TIMESYNCD_DROPIN_PATH", "render_timesyncd_dropin", "add_arguments", "main"]

TIMESYNCD_DROPIN_PATH = "/etc/systemd/timesyncd.conf.d/polres-station.conf"


def render_timesyncd_dropin(time: TimeConfig) -> str:
    """The drop-in text for ``time``: ``[Time]`` and ``NTP=`` with the servers in order.

    With no servers there is no ``NTP=`` line (an empty ``NTP=`` would clear the operating
    system's list): the file then changes nothing and may be installed all the same.
    """
    lines = ["# Written by polres-station timesync-config from time.ntp_servers in the station",
             "# config. Edit that file and run the installer again, not this one."]
    lines.append("[Time]")
    if time.ntp_servers:
        lines.append("NTP=" + " ".join(time.ntp_servers))
    else:
        lines.append("# time.ntp_servers is empty: the operating system's NTP servers are used.")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_arg(parser)


def main(args: argparse.Namespace) -> int:
    """Print the drop-in for ``--config``; ConfigError is mapped to exit 78 by the CLI."""
    config = load_config_arg(args)
    sys.stdout.write(render_timesyncd_dropin(config.time))
    return Exit.OK
