"""Polres 110 station controller: complaint → siren and beacon → acknowledge → upstream."""
from setuptools import find_packages, setup

setup(
    name="polres-station",
    version="0.1.0",
    description="Polres Call Center 110 station controller (Raspberry Pi, MQTT, GPIO)",
    packages=find_packages(include=["station", "station.*"]),
    package_data={"station": ["py.typed"]},
    python_requires=">=3.11",
    install_requires=[
        "paho-mqtt>=2.1,<3",
        "gpiozero>=2.0,<3",
        "pyyaml>=6",
        "sentry-sdk>=2,<3",
        # Ed25519 for signed complaints and commands (station/signing.py, docs/SIGNING.md):
        # libsodium adds ~1.2 MiB and verifies in ~55-75 µs here; `cryptography` adds ~10 MiB
        # and takes ~115 µs (bench/signing.py). Imported only when keys are configured.
        # PyPI has no armv7l/armv6l wheel of PyNaCl: there the OS package python3-nacl
        # (Debian, Raspberry Pi OS) provides it through the venv's --system-site-packages.
        "PyNaCl>=1.5; platform_machine != 'armv7l' and platform_machine != 'armv6l'",
    ],
    extras_require={
        # Pin libraries only exist (and only build) on the Pi.
        "pi": [
            "RPi.GPIO>=0.7; platform_machine in 'armv7l aarch64' and sys_platform == 'linux'",
            "lgpio>=0.2; platform_machine in 'armv7l aarch64' and sys_platform == 'linux'",
        ],
        # The other side of the wire (station.desk): monitor, demo, HQ tools. Never on a Pi.
        "desk": ["amqtt>=0.11", "rich>=13"],
        # jsonschema: tests/test_asyncapi.py checks the station's payloads against
        # docs/asyncapi.yaml with it. ruff and mypy: `make check` (run by `make test`);
        # types-PyYAML: the yaml types for mypy.
        "test": ["pytest>=8", "hypothesis>=6", "jsonschema>=4.18", "ruff>=0.5", "mypy>=1.10",
                 "types-PyYAML"],
    },
    entry_points={"console_scripts": ["polres-station=station.cli:main"]},
)
