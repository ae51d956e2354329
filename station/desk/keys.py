"""``--sign-key FILE --kid KID`` for the desk and HQ tools (send-complaint, send-command, the
web desk): the options, and the key they name (docs/SIGNING.md).

>>> p = argparse.ArgumentParser(); add_sign_args(p)
>>> signing_key(p.parse_args([])) is None
True
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import StationError
from ..signing import KeyFileError, SigningKey


class SignArgsError(StationError, ValueError):
    """The signing options are incomplete or name an unusable key (a usage error, exit 2)."""


def add_sign_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sign-key", type=Path, metavar="FILE",
                   help="sign with this Ed25519 private key (PEM, as `polres-station keygen` "
                        "or `openssl genpkey -algorithm ed25519` writes it); needs --kid")
    p.add_argument("--kid", help="the key id the stations know this key by (with --sign-key)")


def signing_key(args: argparse.Namespace) -> SigningKey | None:
    """The key named by ``--sign-key``/``--kid``, or None when neither is given.

    Raises ``SignArgsError`` with a message naming the option or the file."""
    path, kid = getattr(args, "sign_key", None), getattr(args, "kid", None)
    if path is None and kid is None:
        return None
    if path is None or kid is None:
        raise SignArgsError("--sign-key and --kid go together")
    try:
        return SigningKey.from_file(path, kid)
    except (KeyFileError, ValueError) as e:
        raise SignArgsError(f"--sign-key/--kid: {e}") from None
