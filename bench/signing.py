"""Cost of Ed25519 verification on the station, per library: µs per verify, RSS added.

Each library is measured in a fresh interpreter that has already imported what the station
imports anyway (paho, gpiozero, yaml, sqlite3), so the RSS figure is what the library adds to a
running station, not to an empty Python.

    .venv/bin/python bench/signing.py            # both libraries that are installed
    .venv/bin/python bench/signing.py --json     # one JSON object per library
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the station package

# The station's own signed-bytes shape: topic + "\n" + canonical JSON of a typical complaint.
_MESSAGE = (b'polri/110/region/sumsel-prabumulih/complaints\n{"category":"kejahatan","id":'
            b'"110-20261127-000123","priority":"urgent","region":"sumsel-prabumulih",'
            b'"reported_at":"2026-11-27T20:15:02Z","summary":"' + b"x" * 200 + b'","v":1}')

_PROBE = r'''
import gc, json, os, sys, time
import paho.mqtt.client, gpiozero, yaml, sqlite3          # the station's own imports
def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
lib, message = sys.argv[1], bytes.fromhex(sys.argv[2])
seed = bytes(range(32))
gc.collect(); before = rss_kib(); t0 = time.perf_counter()
if lib == "pynacl":
    import nacl.signing, nacl.exceptions
    sk = nacl.signing.SigningKey(seed); sig = sk.sign(message).signature
    vk = nacl.signing.VerifyKey(bytes(sk.verify_key))
    def verify(): vk.verify(message, sig)
else:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    sk = ed25519.Ed25519PrivateKey.from_private_bytes(seed); sig = sk.sign(message)
    from cryptography.hazmat.primitives import serialization as s
    vk = ed25519.Ed25519PublicKey.from_public_bytes(sk.public_key().public_bytes(
        s.Encoding.Raw, s.PublicFormat.Raw))
    def verify(): vk.verify(sig, message)
import_ms = (time.perf_counter() - t0) * 1000
verify()
gc.collect(); after = rss_kib()
runs = []
for _ in range(7):
    n = 2000; t = time.perf_counter()
    for _ in range(n): verify()
    runs.append((time.perf_counter() - t) / n * 1e6)
single = []
for _ in range(2000):
    t = time.perf_counter(); verify(); single.append((time.perf_counter() - t) * 1e6)
single.sort()
print(json.dumps({"library": lib, "rss_added_mib": round((after - before) / 1024, 2),
                  "import_ms": round(import_ms, 1),
                  "verify_us_median_of_runs": round(sorted(runs)[3], 1),
                  "verify_us_p50": round(single[1000], 1),
                  "verify_us_p99": round(single[1980], 1)}))
'''


def measure(lib: str) -> dict | None:
    """One library in a fresh interpreter; None when it is not installed."""
    done = subprocess.run([sys.executable, "-c", _PROBE, lib, _MESSAGE.hex()],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{lib}: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
        return None
    return json.loads(done.stdout)


def measure_gate() -> dict:
    """The station's whole check of one signed complaint (``Gate.check``: JSON decode,
    canonical form, Ed25519 verify), in this interpreter."""
    import time
    from station.protocol import complaint_payload, region_complaints
    from station.signing import Gate, SigningKey, ring_of, sign_payload
    key = SigningKey("hq-bench", bytes(range(32)))
    topic = region_complaints("polri/110", "sumsel-prabumulih")
    payload = sign_payload(complaint_payload(
        complaint_id="110-20261127-000123", region="sumsel-prabumulih", priority="urgent",
        category="kejahatan", summary="x" * 200, reported_at="2026-11-27T20:15:02Z"), topic, key)
    gate = Gate(ring_of([("hq-bench", key.public_key)]), required=True)
    assert gate.check(payload, topic) is not None
    single = []
    for _ in range(3000):
        t = time.perf_counter()
        gate.check(payload, topic)
        single.append((time.perf_counter() - t) * 1e6)
    single.sort()
    return {"library": "station Gate.check (pynacl)", "payload_bytes": len(payload),
            "check_us_p50": round(single[1500], 1), "check_us_p99": round(single[2970], 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per library")
    args = ap.parse_args()
    for lib in ("pynacl", "cryptography"):
        result = measure(lib)
        if result is None:
            continue
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{lib:13s} verify p50 {result['verify_us_p50']:6.1f} µs  p99 "
                  f"{result['verify_us_p99']:6.1f} µs  RSS +{result['rss_added_mib']:.2f} MiB  "
                  f"import {result['import_ms']:.1f} ms")
    gate = measure_gate()
    if args.json:
        print(json.dumps(gate))
    else:
        print(f"station check of a signed {gate['payload_bytes']}-byte complaint (decode, "
              f"canonical form, verify): p50 {gate['check_us_p50']:.1f} µs  "
              f"p99 {gate['check_us_p99']:.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
