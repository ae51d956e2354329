"""Error reporting to Sentry (docs/BEHAVIOUR.md §6), off unless a DSN is configured.

``init_sentry(config, release=…)`` imports ``sentry_sdk`` only when ``config.sentry.dsn`` is
set, so a station without Sentry never pays for the import. Events leave through the SDK's
background worker: an unreachable or slow Sentry never blocks the caller, and at exit the
SDK waits at most ``SHUTDOWN_TIMEOUT_S`` for unsent events.

Nothing personal or secret leaves the station: complaint summaries (any key named ``summary``,
``summary=…`` in reprs and JSON, and every text passed to ``redact``), passwords, key files,
DSNs and credentials in URLs are replaced by ``[scrubbed]`` in events and breadcrumbs; local
variables are never captured and ``send_default_pii`` stays off (the SDK's default; its own
event scrubber also runs).
"""
from __future__ import annotations

import collections
import logging
import re
import sys
import threading
from typing import Any

from .config import Config

__all__ = ["SCRUBBED", "SHUTDOWN_TIMEOUT_S", "close", "flush", "init_sentry", "redact",
           "scrub"]

log = logging.getLogger(__name__)

SCRUBBED = "[scrubbed]"
SHUTDOWN_TIMEOUT_S = 1.0      # longest wait for unsent events at exit
_REDACT_MAX = 256             # most recent texts remembered by ``redact``
_REDACT_MIN_LEN = 4           # shorter texts would scrub ordinary words

# A key containing any of these (case-insensitive) has its whole value scrubbed.
_SECRET_KEYS = ("summary", "password", "passwd", "secret", "token", "dsn", "authorization",
                "cookie", "api_key", "apikey", "private_key", "credential")
_KEY_RE = re.compile("|".join(_SECRET_KEYS), re.IGNORECASE)
_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # summary='…' (a repr) or "summary": "…" (JSON, also inside a bytes repr)
    (re.compile(r"""(summary['"]?\s*[:=]\s*)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""",
                re.IGNORECASE), rf"\1'{SCRUBBED}'"),
    # credentials in a URL: scheme://user[:password]@host (a DSN, mqtt://user:pass@broker)
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^\s/@:'\"]+(?::[^\s/@'\"]*)?@", re.IGNORECASE),
     rf"\1{SCRUBBED}@"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
                re.DOTALL), SCRUBBED),
)


class _Redactions:
    """Exact texts to scrub wherever they appear: secrets (kept for the process lifetime) and
    the most recent complaint summaries (bounded). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._sorted: tuple[str, ...] = ()

    def add(self, text: str, *, secret: bool = False) -> None:
        text = text.strip()
        if len(text) < _REDACT_MIN_LEN:
            return
        with self._lock:
            if secret:
                self._secrets.add(text)
            else:
                self._recent[text] = None
                self._recent.move_to_end(text)
                while len(self._recent) > _REDACT_MAX:
                    self._recent.popitem(last=False)
            # Longest first, so a text containing a shorter one is scrubbed whole.
            self._sorted = tuple(sorted(self._secrets | set(self._recent), key=len,
                                        reverse=True))

    def apply(self, value: str) -> str:
        for text in self._sorted:
            if text in value:
                value = value.replace(text, SCRUBBED)
        return value

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._recent.clear()
            self._sorted = ()


_redactions = _Redactions()


def redact(text: str | None) -> None:
    """Scrub ``text`` from every later Sentry event and breadcrumb, wherever it appears.

    For complaint summaries (the last 256 are remembered) as the service receives them, so
    a summary that slips into an exception message or a log argument never leaves the
    station. Texts shorter than 4 characters are ignored. Cheap; never raises.
    """
    if text:
        _redactions.add(text)


def scrub(value: Any) -> Any:
    """A copy of ``value`` (event data: dicts, lists, strings) with secrets and summaries
    replaced by ``[scrubbed]`` (see the module docstring). Other types are returned as is."""
    if isinstance(value, str):
        for pattern, replacement in _VALUE_PATTERNS:
            value = pattern.sub(replacement, value)
        return _redactions.apply(value)
    if isinstance(value, dict):
        return {k: SCRUBBED if isinstance(k, str) and _KEY_RE.search(k) and v is not None
                else scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) for v in value)
    return value


def _before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return scrub(event)  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 — if scrubbing fails, send nothing rather than risk data
        return None


def _before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return scrub(crumb)  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001
        return None


def _file_secrets(config: Config) -> list[str]:
    """Contents of the secret files the config names, and the DSN itself: scrubbed as text."""
    out: list[str] = []
    paths = [config.broker.password_file]
    if config.broker.tls is not None:
        paths.append(config.broker.tls.key_file)
    for path in paths:
        if path is None:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        out.append(text.strip())
        # A key file's base64 lines may appear one at a time.
        out += [line.strip() for line in text.splitlines()
                if len(line.strip()) >= 16 and not line.startswith("-----")]
    dsn = config.sentry.dsn or ""
    out.append(dsn)
    if "@" in dsn and "//" in dsn:
        out.append(dsn.split("//", 1)[1].split("@", 1)[0])  # the DSN's key
    return out


def init_sentry(config: Config, *, release: str, transport: Any = None) -> bool:
    """Start Sentry error reporting when ``config.sentry.dsn`` is set; True if started.

    ``release`` is the station version (``station.__version__``). Events carry the
    environment (``sentry.environment``) and the tags ``station`` and ``region``. Log records
    of INFO and above become breadcrumbs, ERROR and above events. ``transport`` replaces the
    SDK's HTTP transport (tests). Never raises: a failure to start is logged as a WARNING
    and reported as False. Importing the SDK takes ~0.1 s on x86 (starting it ~1 ms); the
    caller may run this in a thread to keep the import off the start-up path.
    """
    dsn = config.sentry.dsn
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.atexit import AtexitIntegration
        from sentry_sdk.integrations.dedupe import DedupeIntegration
        from sentry_sdk.integrations.excepthook import ExcepthookIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.integrations.threading import ThreadingIntegration

        for text in _file_secrets(config):
            _redactions.add(text, secret=True)
        options: dict[str, Any] = dict(
            dsn=dsn,
            release=release,
            environment=config.sentry.environment,
            # send_default_pii stays at its default (off in every 2.x): passing it is
            # deprecated in recent releases (2.75 warns: data_collection replaces it).
            include_local_variables=False,
            max_request_body_size="never",
            before_send=_before_send,
            before_breadcrumb=_before_breadcrumb,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            # Only what this process needs. Left out: probing for web frameworks at start-up,
            # and the installed-packages list, which reads every package's metadata (~50 ms
            # on x86, far more on a Pi) on the thread that logs the first error.
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
                          ExcepthookIntegration(), ThreadingIntegration(), DedupeIntegration(),
                          AtexitIntegration()],
        )
        if transport is not None:
            options["transport"] = transport
        sentry_sdk.init(**options)
        scope = sentry_sdk.get_global_scope()
        scope.set_tag("station", config.station.id)
        scope.set_tag("region", config.station.region)
    except Exception as exc:  # noqa: BLE001 — reporting must never stop the station
        log.warning("Sentry not started: %s", scrub(str(exc)))
        return False
    log.info("Sentry reporting on (environment %s, release %s)",
             config.sentry.environment, release)
    return True


def flush(timeout: float = 2.0) -> None:
    """Wait up to ``timeout`` seconds for queued events to be sent. No-op without Sentry."""
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is not None and sentry_sdk.is_initialized():
        sentry_sdk.flush(timeout=timeout)


def close(timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Flush (up to ``timeout`` s) and stop reporting; later events are dropped. Idempotent."""
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is not None and sentry_sdk.is_initialized():
        sentry_sdk.get_client().close(timeout=timeout)
    _redactions.clear()
