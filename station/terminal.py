"""Command-line plumbing shared by every subcommand, on both sides of the wire.

A leaf: it imports the config room (for the one ``host:port`` parser) and the errors, never a
subcommand, the service or the desk. What lives here: exit codes, the ``--config`` and broker
options, logging set-up, the pin factory a config asks for, and :func:`run_handler`, which maps
the package's exceptions to a message and an exit code (piwheels' ``terminal.py`` does the same).

Exit codes (docs/CLI.md):
  0  success                      1  failure (self-test failed, publish refused, no answer)
  2  usage error                  69 broker unreachable (EX_UNAVAILABLE)
  74 state database unusable (EX_IOERR)   78 configuration invalid (EX_CONFIG)
"""
from __future__ import annotations

import argparse
import logging
import sys
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .config import BrokerAddress, parse_address
from .errors import ConfigError, HardwareError, PublishRefused, StorageError

if TYPE_CHECKING:
    from gpiozero import Factory

    from .config import Config


class Exit(IntEnum):
    """Exit codes of every ``polres-station`` subcommand (sysexits.h where one fits)."""

    OK = 0
    FAIL = 1
    USAGE = 2
    UNAVAILABLE = 69
    IOERR = 74
    CONFIG = 78


DEFAULT_CONFIG = Path("/etc/polres-station/station.yaml")
EXIT_EPILOG = ("exit codes: 0 ok, 1 failure, 2 usage, 69 broker unreachable, "
               "74 state database unusable, 78 configuration invalid")


def config_arg(p: argparse.ArgumentParser) -> None:
    """``-c/--config PATH`` (default /etc/polres-station/station.yaml)."""
    p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                   help=f"station config file (default {DEFAULT_CONFIG})")


def broker_address(text: str) -> BrokerAddress:
    """argparse type for ``--broker``: the config's own parser, so both sides agree.

        >>> broker_address("[::1]:1884")
        BrokerAddress(host='::1', port=1884)
    """
    parsed = parse_address(text, 1883)
    if isinstance(parsed, str):
        raise argparse.ArgumentTypeError(parsed)
    return parsed


def broker_args(p: argparse.ArgumentParser) -> None:
    """Connection options shared by every client command (HQ, desk, technician)."""
    p.add_argument("--broker", type=broker_address, default=BrokerAddress("127.0.0.1", 1883),
                   help="HOST:PORT or [V6]:PORT (default 127.0.0.1:1883)")
    p.add_argument("--root", default="polri/110", help="topic root (default %(default)s)")
    p.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    p.add_argument("--ca-file", type=Path, help="CA certificate: enables TLS")
    p.add_argument("--cert-file", type=Path, help="client certificate (TLS)")
    p.add_argument("--key-file", type=Path, help="client key (TLS)")
    p.add_argument("--username")
    p.add_argument("--password-file", type=Path, help="file holding the password")


def load_config_arg(args: argparse.Namespace, *, refuse_placeholders: bool = False) -> Config:
    """The validated config named by ``--config`` (raises ConfigError); with
    ``refuse_placeholders`` (``check-config``, ``run``) the unedited example is refused too."""
    from .config import load_config
    return load_config(args.config, refuse_placeholders=refuse_placeholders)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def pin_factory_for(config: Config) -> Factory | None:
    """MockFactory for ``pin_factory: mock``; otherwise None (the hardware room chooses)."""
    if config.gpio.pin_factory != "mock":
        return None
    from gpiozero.pins.mock import MockFactory
    return MockFactory()


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one subcommand; the package's errors become a message on stderr and an exit code."""
    try:
        return handler(args)
    except ConfigError as e:
        print(f"configuration invalid: {e.source or ''}", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return Exit.CONFIG
    except StorageError as e:
        print(f"state database unusable: {e}", file=sys.stderr)
        if getattr(e, "recoverable_by_quarantine", False) and args.command != "quarantine-db":
            config = getattr(args, "config", DEFAULT_CONFIG)
            option = "" if config == DEFAULT_CONFIG else f" -c {config}"
            print(f"recovery: systemctl stop polres-station; polres-station quarantine-db"
                  f"{option}; systemctl start polres-station", file=sys.stderr)
        return Exit.IOERR
    except HardwareError as e:
        print(f"GPIO: {e}", file=sys.stderr)
        return Exit.FAIL
    except PublishRefused as e:
        print(f"refused by the broker: {e}", file=sys.stderr)
        return Exit.FAIL
    except ConnectionError as e:
        print(f"broker unreachable: {e}", file=sys.stderr)
        return Exit.UNAVAILABLE

