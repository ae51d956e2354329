"""``polres-station keygen --kid KID --out DIR``: a new Ed25519 signing key (docs/SIGNING.md).

Writes ``DIR/KID.pem`` (the private key, mode 0600, for HQ or the desk only) and
``DIR/KID.pub.pem`` beside it (the public key, for every station's ``security`` section), in
the same PEM form as ``openssl genpkey -algorithm ed25519`` / ``openssl pkey -pubout``. Never
overwrites a file. Exit 0, 1 when a file exists or cannot be written, 2 for a bad kid.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .signing import KID_RE, SigningKey, generate, private_pem, public_pem
from .terminal import Exit


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kid", required=True,
                   help="key id carried in each signature, e.g. hq-2026 (1–64 of [A-Za-z0-9._:-])")
    p.add_argument("--out", type=Path, required=True,
                   help="directory for KID.pem (private, 0600) and KID.pub.pem (public)")


def write_keypair(out: Path, kid: str) -> tuple[Path, Path]:
    """A new key as ``out/KID.pem`` (0600) and ``out/KID.pub.pem`` (0644); ``out`` is created
    (0700) if missing. Raises ``FileExistsError`` rather than overwrite, ``ValueError`` for a
    kid that is not a key id, ``OSError``."""
    key = generate(kid)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    private, public = out / f"{kid}.pem", out / f"{kid}.pub.pem"
    if public.exists():
        raise FileExistsError(f"{public} exists; not overwritten")
    # O_EXCL: never replace a key; the mode is set at creation, whatever the umask.
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(private_pem(key.seed))
    os.chmod(private, 0o600)
    fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(public_pem(key.public_key))
    return private, public


def config_entry(kid: str, public_key_file: Path) -> dict[str, str]:
    """One item of ``security.hq_keys`` / ``security.desk_keys``."""
    return {"kid": kid, "public_key_file": str(public_key_file)}


def station_keys(key_dir: Path, *, hq_kid: str = "hq", desk_kid: str = "desk"
                 ) -> tuple[SigningKey, SigningKey, dict[str, Any]]:
    """A new HQ key and desk key written into ``key_dir``, and the station config's
    ``security`` section that trusts them (signatures then required): for the demo, bench/
    and tests. Raises as ``write_keypair``."""
    keys, section = [], {}
    for kid, role in ((hq_kid, "hq_keys"), (desk_kid, "desk_keys")):
        private, public = write_keypair(key_dir, kid)
        keys.append(SigningKey.from_file(private, kid))
        section[role] = [config_entry(kid, public)]
    return keys[0], keys[1], section


def main(args: argparse.Namespace) -> int:
    if not KID_RE.match(args.kid):
        print(f"error: --kid {args.kid!r} is not 1–64 of [A-Za-z0-9._:-]", file=sys.stderr)
        return Exit.USAGE
    try:
        private, public = write_keypair(args.out, args.kid)
    except FileExistsError as e:
        print(f"error: {e.filename or e}: exists; a key is never overwritten", file=sys.stderr)
        return Exit.FAIL
    except OSError as e:
        print(f"error: {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
        return Exit.FAIL
    print(f"private key: {private}  (mode 0600; stays with HQ or the desk, never on a station)")
    print(f"public key:  {public}  (copy to every station)")
    print("station config: add this entry to security.hq_keys if HQ signs complaints with "
          "this key, or to security.desk_keys if the desk signs commands with it (never both):")
    print(f"    - {{kid: {args.kid}, public_key_file: /etc/polres-station/keys/{public.name}}}")
    return Exit.OK
