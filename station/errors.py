"""One exception base for the package; subclasses also inherit the matching builtin."""
from __future__ import annotations


class StationError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(StationError, ValueError):
    """The station configuration is invalid.

    ``problems`` holds every problem found, each as ``"key.path: reason"``, so a technician
    fixes the file in one pass instead of one error per restart.
    """

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(self.problems))


class StorageError(StationError, OSError):
    """The state database cannot be opened, read or written (corrupt, full, read-only)."""


class HardwareError(StationError, RuntimeError):
    """A GPIO pin or pin factory could not be set up or driven."""


class PublishRefused(StationError, RuntimeError):
    """The broker refused a client's publish (an MQTT 5 PUBACK reason >= 0x80, e.g. 0x87 "not
    authorized" under the ACL). Client commands exit 1 on it: nothing was delivered."""
