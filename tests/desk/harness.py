"""The web desk as its own process (``polres-station desk``), an HTTP client for it, and
Debian's chromium driven by selenium (no browser download: docs/FIELD-GUIDE.md §9)."""
from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from helpers import free_port, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class DeskProcess:
    """``polres-station desk`` on a free loopback port, its database in the test's directory."""

    def __init__(self, broker_address: str, workdir: Path, *extra: str,
                 db: Path | None = None, port: int | None = None,
                 https_ca: Path | None = None) -> None:
        self.broker_address = broker_address
        self.workdir = workdir
        self.db = db or workdir / "desk.db"
        self.port = port or free_port()
        self.extra = list(extra)
        self.log = workdir / "desk.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # served over TLS (--tls-cert): the CA that signed its certificate
        self.context = ssl.create_default_context(cafile=str(https_ca)) if https_ca else None

    @property
    def url(self) -> str:
        if self.context is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_broker: bool = True) -> DeskProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "station.cli", "desk", "--broker", self.broker_address,
             "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db), *self.extra],
            stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        path = "/healthz"

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"desk exited {self.proc.returncode}: {self.log_text()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1,
                                            context=self.context) as r:
                    return r.status == 200
            except urllib.error.HTTPError as e:
                return not wait_broker and e.code == 503
            except OSError:
                return False
        wait_for(up, 15, 0.05, what="the desk serving")
        return self

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Http:
    """A browser-like HTTP client of the desk: keeps its cookies, sends the CSRF token."""

    def __init__(self, base: str, context: ssl.SSLContext | None = None) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(CookieJar()),
            urllib.request.HTTPSHandler(context=context))
        self.csrf: str | None = None

    def get(self, path: str) -> tuple[int, Any]:
        return self._do(urllib.request.Request(self.base + path))

    def session(self) -> dict[str, Any]:
        status, doc = self.get("/api/session")
        assert status == 200
        self.csrf = doc["csrf"]
        return doc

    def post(self, path: str, body: Any = None, *, raw: bytes | None = None,
             csrf: bool = True, ctype: str = "application/json") -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        headers = {"Content-Type": ctype}
        if csrf and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        return self._do(urllib.request.Request(self.base + path, data=data, headers=headers,
                                               method="POST"))

    def _do(self, req: urllib.request.Request) -> tuple[int, Any]:
        try:
            with self.opener.open(req, timeout=10) as r:
                body = r.read()
                status = r.status
                ctype = r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            body, status, ctype = e.read(), e.code, e.headers.get("Content-Type", "")
        return status, (json.loads(body) if "json" in ctype else body.decode())

    def stations(self) -> dict[str, dict[str, Any]]:
        status, rows = self.get("/api/stations")
        assert status == 200
        return {r["station"]: r for r in rows}


def browser(width: int = 1600, height: int = 1000) -> Any:
    """Debian's chromium, headless, through chromedriver. Fails loudly when either is missing
    (``make broker-tools`` installs them)."""
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not (os.access(tool, os.X_OK) or shutil.which(Path(tool).name)):
            raise AssertionError(f"{tool} missing: run `make broker-tools` (apt chromium "
                                 "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


def wait_js(driver: Any, script: str, timeout: float = 10.0, what: str = "page state") -> Any:
    """Poll ``return <script>`` in the page until it is truthy."""
    return wait_for(lambda: driver.execute_script(f"return {script}"), timeout, 0.05, what=what)
