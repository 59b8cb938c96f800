"""Helpers for the `abuse` tier (tests/abuse): an attacker's view of the appliance.

- `RssSampler` samples a process's VmRSS every 50 ms (baseline, peak, settled);
- `record()` prints one summary line per test and merges its figures into
  tests/output/abuse/figures.json;
- `SourcedSmtp` is the harness's raw SMTP client bound to a chosen loopback source address
  (any 127/8 address works on Linux loopback without setup), with STARTTLS and AUTH PLAIN;
- `Console` speaks to the HTTPS console the way its login page does (GET /login for the form
  token and its cookie, POST it back with Origin), from a chosen source address, with
  http.client only.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse

from harness import OUTPUT, SmtpClient, wait_for

ABUSE_OUTPUT = OUTPUT / "abuse"
FIGURES = ABUSE_OUTPUT / "figures.json"
_figures_lock = threading.Lock()

ONE_TIME_RE = re.compile(r"console admin password \(one-time, change it at first login\): (\S+)")


def record(test: str, **figures) -> dict:
    """Prints `ABUSE <test>: k=v ...` and stores the figures under `test` in figures.json."""
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\nABUSE {test}: {line}", flush=True)
    with _figures_lock:
        ABUSE_OUTPUT.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(FIGURES.read_text())
        except (OSError, ValueError):
            data = {}
        data[test] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return figures


# ---- memory -------------------------------------------------------------------------------


def vm_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def child_pid(palisade, name: str) -> int | None:
    try:
        c = palisade.child(name)
    except (OSError, ValueError, KeyError):
        return None
    return c.get("pid") if c.get("ready") else None


class RssSampler:
    """VmRSS of one service (looked up by name in status.json, again whenever /proc says the
    process is gone) every `interval` seconds in a background thread."""

    def __init__(self, palisade, child: str = "engine", interval: float = 0.05):
        self.palisade = palisade
        self.child = child
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (monotonic time, MB)
        self.pids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pid: int | None = None

    def _run(self):
        while not self._stop.is_set():
            if self._pid is None:
                self._pid = child_pid(self.palisade, self.child)
                if self._pid is not None and self._pid not in self.pids:
                    self.pids.append(self._pid)
            if self._pid is not None:
                mb = vm_rss_mb(self._pid)
                if mb is None:
                    self._pid = None
                else:
                    self.samples.append((time.monotonic(), mb))
            self._stop.wait(self.interval)

    def start(self) -> "RssSampler":
        wait_for(lambda: child_pid(self.palisade, self.child), 30, what=f"{self.child} pid")
        self._thread.start()
        wait_for(lambda: self.samples, 10, what="a first RSS sample")
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def now(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0

    def peak(self, since: float | None = None) -> float:
        vals = [mb for t, mb in self.samples if since is None or t >= since]
        return max(vals) if vals else 0.0

    def mean_over(self, seconds: float) -> float:
        """Mean of the last `seconds` of samples (a steady figure for a baseline)."""
        if not self.samples:
            return 0.0
        end = self.samples[-1][0]
        vals = [mb for t, mb in self.samples if t >= end - seconds]
        return sum(vals) / len(vals)


# ---- SMTP ---------------------------------------------------------------------------------


class SourcedSmtp(SmtpClient):
    """The harness's raw SMTP client, connecting from `source` (a loopback address)."""

    def __init__(self, port: int, source: str, host: str = "127.0.0.1", timeout: float = 30):
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
        self.buf = b""
        self.greeting = self.reply()

    def starttls(self, ehlo: str = "abuse.example") -> str:
        self.cmd(f"EHLO {ehlo}")
        r = self.cmd("STARTTLS")
        if not r.startswith("220"):
            return r
        self.sock = ssl._create_unverified_context().wrap_socket(self.sock, server_hostname="palisade.test")
        self.buf = b""
        return self.cmd(f"EHLO {ehlo}")

    def auth_plain(self, user: str, password: str) -> str:
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return self.cmd("AUTH PLAIN " + token)


def smtp_auth_once(port: int, source: str, user: str, password: str, timeout: float = 60) -> str:
    """One whole attempt on a fresh connection: connect, STARTTLS, AUTH PLAIN. Returns the AUTH
    reply, or what the server said instead (a 421 greeting, '' for a dropped connection,
    'error: ...' for a socket error)."""
    try:
        c = SourcedSmtp(port, source, timeout=timeout)
    except OSError as e:
        return f"error: {e}"
    try:
        if not c.greeting.startswith("220"):
            return c.greeting
        r = c.starttls()
        if not r.startswith("250"):
            return r
        return c.auth_plain(user, password)
    except (OSError, ssl.SSLError) as e:
        return f"error: {e}"
    finally:
        try:
            c.cmd("QUIT")
        except OSError:
            pass
        c.close()


# ---- console ------------------------------------------------------------------------------


def one_time_password(palisade) -> str:
    def find():
        for line in palisade.stdout_lines:
            m = ONE_TIME_RE.search(line)
            if m:
                return m.group(1)
        return None

    return wait_for(find, 30, what="the one-time admin password on stdout")


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def cookies(self) -> dict[str, str]:
        out = {}
        for v in self.headers.get_all("Set-Cookie") or []:
            k, _, rest = v.partition("=")
            out[k.strip()] = rest.split(";", 1)[0]
        return out

    def __repr__(self):
        return f"<{self.status} {self.headers.get('Location', '')}>"


CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Console:
    """A browser-like client of the HTTPS console from one source address: keeps its cookies,
    sends Origin on POSTs, carries the form token the pages embed."""

    def __init__(self, port: int, source: str | None = None, timeout: float = 60):
        self.port = port
        self.source = source
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self.ctx = ssl._create_unverified_context()

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, form: dict | None = None) -> Response:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ctx, timeout=self.timeout,
            source_address=(self.source, 0) if self.source else None)
        try:
            headers = {"Connection": "close"}
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            body = None
            if form is not None:
                body = urllib.parse.urlencode(form)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                headers["Origin"] = self.origin
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            resp = Response(r.status, r.headers, r.read())
        finally:
            conn.close()
        for k, v in resp.cookies().items():
            if v:
                self.cookies[k] = v
            else:
                self.cookies.pop(k, None)
        return resp

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def login_form(self) -> str:
        """GET /login: the form token (also set as the login cookie)."""
        r = self.get("/login")
        assert r.status == 200, (r, r.text[:300])
        m = CSRF_RE.search(r.text)
        assert m, r.text[:500]
        return m.group(1)

    def login(self, user: str, password: str, token: str | None = None) -> Response:
        """The login form as the page sends it. 303 to / (or /password) is success; 401 is
        the normal wrong-password answer; 429/503 a temporary refusal."""
        token = token or self.login_form()
        return self.request("POST", "/login", {"csrf": token, "user": user, "password": password, "code": ""})

    def change_password(self, current: str, new: str) -> Response:
        r = self.get("/password")
        assert r.status == 200, (r, r.text[:300])
        token = CSRF_RE.search(r.text).group(1)
        return self.request("POST", "/password", {"csrf": token, "username": "admin", "current": current,
                                                   "new": new, "confirm": new})


def logged_in(r: Response) -> bool:
    return r.status in (302, 303) and r.headers.get("Location") in ("/", "/password")


def first_login(palisade, source: str, new_password: str) -> Console:
    """The administrator's first login with the one-time password and the forced change."""
    c = Console(palisade.console_port, source)
    otp = one_time_password(palisade)
    r = c.login("admin", otp)
    assert logged_in(r) and r.headers["Location"] == "/password", (r, r.text[:300])
    r = c.change_password(otp, new_password)
    assert r.status in (302, 303) and r.headers.get("Location") == "/", (r, r.text[:500])
    return c
