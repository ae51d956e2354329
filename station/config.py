"""Station configuration: YAML → frozen, validated dataclasses (SPEC §4).

Types only in this first cut; loading and validation follow below the types.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

PRIORITIES = ("emergency", "urgent", "normal")  # highest first


@dataclass(frozen=True)
class Pattern:
    """Siren cadence: ``on_s`` seconds on, ``off_s`` seconds off; ``off_s == 0`` is continuous."""

    on_s: float
    off_s: float = 0.0

    @property
    def continuous(self) -> bool:
        return self.off_s <= 0


DEFAULT_PATTERNS: Mapping[str, Pattern] = MappingProxyType({
    "emergency": Pattern(1.0, 0.0),
    "urgent": Pattern(1.0, 0.5),
    "normal": Pattern(1.0, 2.0),
})


@dataclass(frozen=True)
class StationIdentity:
    id: str
    region: str


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TlsConfig:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int = 1883
    failover: tuple[BrokerAddress, ...] = ()
    protocol: str = "5"               # "5" or "3.1.1"
    keepalive: int = 15               # seconds; a dead broker is noticed after 1.5 × this
    session_expiry_s: int = 7 * 86400  # MQTT 5 session expiry: a week offline loses nothing
    tls: TlsConfig | None = None
    username: str | None = None
    password_file: Path | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0

    @property
    def addresses(self) -> tuple[BrokerAddress, ...]:
        """Primary first, then the failover list, in the order they are tried."""
        return (BrokerAddress(self.host, self.port),) + self.failover

    def password(self) -> str | None:
        """The password read from ``password_file`` (trailing newline stripped), or None."""
        if self.password_file is None:
            return None
        return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")


@dataclass(frozen=True)
class TopicsConfig:
    root: str = "polri/110"


@dataclass(frozen=True)
class OutputPinConfig:
    pin: int
    active_high: bool = True


@dataclass(frozen=True)
class ButtonConfig:
    pin: int
    pull_up: bool = True
    bounce_ms: int = 50


@dataclass(frozen=True)
class InputPinConfig:
    pin: int
    pull_up: bool = True


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str = "auto"         # auto | lgpio | rpigpio | mock
    siren: OutputPinConfig = OutputPinConfig(17)
    beacon: OutputPinConfig = OutputPinConfig(27)
    ack_button: ButtonConfig = ButtonConfig(22)
    siren_feedback: InputPinConfig | None = None


@dataclass(frozen=True)
class AlarmConfig:
    patterns: Mapping[str, Pattern] = field(default_factory=lambda: DEFAULT_PATTERNS)
    siren_max_s: float = 120.0        # then escalate: siren off, beacon stays, reminders
    reminder_s: float = 10.0          # length of a reminder burst
    reminder_every_s: float = 300.0   # period of reminder bursts until acknowledged
    selftest_hold_s: float = 3.0      # button held this long with no alarm: self-test
    stuck_hold_s: float = 30.0        # button held this long: button_stuck fault
    feedback_timeout_s: float = 1.0   # siren on without feedback this long: siren_failed
    seen_ids_days: int = 30           # complaint ids remembered at least this long
    seen_ids_max: int = 200_000       # ... and at most this many


@dataclass(frozen=True)
class HeartbeatConfig:
    interval_s: float = 30.0


@dataclass(frozen=True)
class StorageConfig:
    path: Path = Path("/var/lib/polres-station/state.db")
    outbox_max: int = 10_000          # acks are never dropped; other events beyond this are


@dataclass(frozen=True)
class SentryConfig:
    dsn: str | None = None            # from the YAML, `dsn_file`, or SENTRY_DSN
    environment: str = "production"


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"


@dataclass(frozen=True)
class Config:
    station: StationIdentity
    broker: BrokerConfig
    topics: TopicsConfig = TopicsConfig()
    gpio: GpioConfig = GpioConfig()
    alarm: AlarmConfig = AlarmConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    storage: StorageConfig = StorageConfig()
    sentry: SentryConfig = SentryConfig()
    logging: LoggingConfig = LoggingConfig()
    source: Path | None = field(default=None, compare=False)
