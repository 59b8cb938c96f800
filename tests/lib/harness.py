"""Test harness: real Palisade processes and real SMTP peers on loopback.

`Palisade` starts `palisade run` (the supervisor, exactly as a user does) with a fresh data
directory and an initial configuration on free ports, waits for it to report ready, and offers
the CLI, the status file, and the mailbox to the test. `SmtpSink` runs Postfix's `smtp-sink`
with per-message dump files; `RawSink` is a small Python SMTP server that records the exact
bytes of every message and how many sessions were open at once.

Run as root, the supervisor really drops each child to its own user; the data directory is
created under a world-traversable directory so that it can.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "tests" / "output"


def palisade_bin() -> str:
    if os.environ.get("PALISADE_BIN"):
        return os.environ["PALISADE_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    return str(Path(target) / "release" / "palisade")


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now and that this test run has not handed out before: the
    kernel may give the same free port to two binds in a row, and one Palisade's listeners
    must not collide (its configuration would be refused)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def toml_key(k: str) -> str:
    """A bare key when TOML allows one, else quoted (`"pattern:mrn"`)."""
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(cfg: dict) -> str:
    """Enough TOML for our configuration: sections of scalars and arrays of tables."""
    out = []
    for section, body in cfg.items():
        if isinstance(body, list):
            for item in body:
                out.append(f"[[{section}]]")
                out += [f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items()]
                out.append("")
        else:
            out.append(f"[{section}]")
            out += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items()]
            out.append("")
    return "\n".join(out)


def scratch_dir(name: str) -> Path:
    """A directory the service users can reach (as root the tests run the real privilege drop)."""
    base = Path(os.environ.get("PALISADE_TEST_TMP", "/tmp"))
    d = Path(tempfile.mkdtemp(prefix=f"palisade-{name}-", dir=base))
    d.chmod(0o755)
    return d


class Palisade:
    """One running appliance."""

    def __init__(self, name: str, config: dict | None = None, extra_env: dict | None = None,
                 netns: str | None = None):
        self.name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
        # Run inside this network namespace (`ip netns exec`): the HA tests' units.
        self.netns = netns
        # Short: unix socket paths under the data dir must fit in 108 bytes.
        self.dir = scratch_dir(self.name[:20])
        self.data = self.dir / "data"
        self.smtp_port = free_port()
        self.submission_port = free_port()
        self.console_port = free_port()
        base = {
            "system": {"hostname": "palisade.test"},
            "smtp": {
                "listen": [f"127.0.0.1:{self.smtp_port}"],
                "submission_listen": [f"127.0.0.1:{self.submission_port}"],
                "min_free_disk_mb": 1,
            },
            "delivery": {"retry_initial_secs": 1, "retry_max_secs": 2, "connect_timeout_secs": 5},
            "console": {"listen": [f"127.0.0.1:{self.console_port}"]},
            "supervisor": {"restart_limit_burst": 1000, "restart_limit_interval_secs": 60},
            "domain": [{"name": "example.test", "route": "maildir"}],
            # SPF/DKIM/DMARC ask DNS: off unless a test gives it its own DNS server (dnsmasq
            # on loopback), so that no test sends queries to the machine's resolver.
            "authentication": {"enabled": False},
            # The spam check scores header hygiene (Date, Message-ID, HELO) that hand-made test
            # messages lack, and would add its headers: on only in the tests about it.
            "spam": {"enabled": False},
        }
        for k, v in (config or {}).items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                base[k] = {**base[k], **v}
            else:
                base[k] = v
        self.config = base
        self.config_file = self.dir / "initial.toml"
        self.config_file.write_text(to_toml(base))
        self.log_path = OUTPUT / "logs" / f"{self.name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info"), "NO_COLOR": "1", **(extra_env or {})}
        self.proc: subprocess.Popen | None = None
        self.stdout_lines: list[str] = []
        self._stdout_thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, wait: bool = True, args: list[str] | None = None) -> "Palisade":
        self.stdout_lines = []
        log = open(self.log_path, "ab")
        cmd = [palisade_bin(), "--data", str(self.data), "run", "--initial-config", str(self.config_file)]
        cmd += args or []
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=self.env, text=True)
        self._stdout_thread = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_thread.start()
        if wait:
            self.wait_ready()
        return self

    def _read_stdout(self):
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 60):
        def ready():
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"palisade exited with {self.proc.returncode}; log: {self.log_tail()}")
            return any("Palisade: ready" in l for l in self.stdout_lines)

        wait_for(ready, timeout, what="palisade ready")

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("palisade did not stop in time")

    def cleanup(self):
        try:
            self.stop()
        except AssertionError:
            pass
        if os.environ.get("PALISADE_KEEP_TMP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    # ---- inspection ------------------------------------------------------------------------

    def status(self) -> dict:
        return json.loads((self.data / "run" / "status.json").read_text())

    def child(self, name: str = "engine") -> dict:
        for c in self.status()["children"]:
            if c["name"] == name:
                return c
        raise KeyError(name)

    def engine_pid(self) -> int | None:
        try:
            c = self.child("engine")
        except (OSError, ValueError, KeyError):
            return None
        return c["pid"] if c["ready"] else None

    def cli(self, *args, check: bool = True, json_out: bool = False):
        cmd = [palisade_bin(), "--data", str(self.data), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return json.loads(r.stdout) if json_out else r

    def track(self, **query) -> list[dict]:
        args = ["track", "--json", "--events"]
        for k, v in query.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        return self.cli(*args, json_out=True)

    def queue(self) -> list[dict]:
        return self.cli("queue", "list", "--json", json_out=True)

    def wait_queue_empty(self, timeout: float = 60):
        wait_for(lambda: self.queue() == [], timeout, interval=0.5, what="empty queue")

    def mailbox(self) -> list[bytes]:
        new = self.data / "mailbox" / "new"
        if not new.exists():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir())]


def strip_added_headers(raw: bytes) -> bytes:
    """Removes the trace and envelope headers hops add at the top (Received, Return-Path,
    X-Original-To, and the Authentication-Results our authentication check puts on inbound
    mail), leaving the message as the client sent it."""
    lines = raw.split(b"\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith((b"Received:", b"Return-Path:", b"X-Original-To:", b"Authentication-Results:")):
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
            continue
        break
    return b"\n".join(lines[i:])


class SmtpSink:
    """Postfix's smtp-sink, dumping each message to its own file."""

    def __init__(self, name: str, extra_args: list[str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.dir = scratch_dir(f"sink-{name[:20]}")
        self.dump = self.dir / "dump"
        self.dump.mkdir()
        self.extra = extra_args or []
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SmtpSink":
        binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        cmd = [binary, "-u", "root", "-d", str(self.dump) + "/%H%M%S.", *self.extra, f"127.0.0.1:{self.port}", "1000"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: port_open(self.port), 10, what="smtp-sink listening")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def messages(self) -> list[bytes]:
        """The messages smtp-sink has finished receiving. smtp-sink creates a message's dump file
        at MAIL FROM and writes it through a 4 KiB buffer, closing it after the final "."; a
        file still being written is empty or a whole number of buffers, and does not yet end
        with the empty line smtp-sink writes last. Those are left out, so a caller waiting for
        N messages never reads one half-written."""
        done = []
        for p in sorted(self.dump.iterdir()):
            if not p.is_file():
                continue
            data = p.read_bytes()
            if not data.endswith(b"\n\n"):
                continue
            if len(data) % 4096 == 0 and time.time() - p.stat().st_mtime < 2:
                continue  # possibly a buffer boundary mid-message: wait until it is settled
            done.append(data)
        return done

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def content(dump: bytes) -> bytes:
        """The message as received, without smtp-sink's own X-* envelope lines and its final
        empty line. smtp-sink writes lines with LF."""
        lines = dump.split(b"\n")
        i = 0
        while i < len(lines) and re.match(rb"^X-(Client-Addr|Client-Proto|Helo-Args|Mail-Args|Rcpt-Args):", lines[i]):
            i += 1
        body = b"\n".join(lines[i:])
        return body[:-1] if body.endswith(b"\n\n") else body


class RawSink:
    """A minimal SMTP server recording exact message bytes (after dot-unstuffing), the
    envelope, and the largest number of sessions open at once. Optional per-recipient replies
    let a test make it refuse. With `tls` (an `ssl.SSLContext` for the server side) it offers
    STARTTLS and records, per message, whether it arrived over TLS."""

    def __init__(self, rcpt_reply: str = "250 2.1.5 Ok", data_reply: str = "250 2.0.0 Ok", session_delay: float = 0.0,
                 tls=None):
        self.port = free_port()
        self.tls = tls
        self.handshakes = 0
        self.failed_handshakes = 0
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.session_delay = session_delay
        self.messages: list[dict] = []
        self.open = 0
        self.max_open = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket):
        with self.lock:
            self.open += 1
            self.max_open = max(self.max_open, self.open)
        f = conn.makefile("rb")
        encrypted = False
        try:
            conn.sendall(b"220 rawsink ESMTP\r\n")
            sender, rcpts = None, []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
                verb = cmd[:4].upper()
                if verb in ("EHLO", "HELO"):
                    starttls = b"250-STARTTLS\r\n" if self.tls is not None and not encrypted else b""
                    conn.sendall(b"250-rawsink\r\n" + starttls + b"250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
                elif verb == "STAR" and self.tls is not None and not encrypted:
                    conn.sendall(b"220 2.0.0 go ahead\r\n")
                    try:
                        conn = self.tls.wrap_socket(conn, server_side=True)
                    except (ssl.SSLError, OSError):
                        with self.lock:
                            self.failed_handshakes += 1
                        return
                    with self.lock:
                        self.handshakes += 1
                    encrypted = True
                    f = conn.makefile("rb")
                    sender, rcpts = None, []
                elif verb == "MAIL":
                    sender, rcpts = cmd[10:].split(">")[0].lstrip("<"), []
                    conn.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == "RCPT":
                    reply = self.rcpt_reply
                    if reply.startswith("2"):
                        rcpts.append(cmd[8:].split(">")[0].lstrip("<"))
                    conn.sendall(reply.encode() + b"\r\n")
                elif verb == "DATA":
                    if not rcpts:
                        conn.sendall(b"554 5.5.1 no valid recipients\r\n")
                        continue
                    conn.sendall(b"354 go\r\n")
                    body = bytearray()
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        body += l[1:] if l.startswith(b".") else l
                    if self.session_delay:
                        time.sleep(self.session_delay)
                    with self.lock:
                        self.messages.append({"from": sender, "rcpts": rcpts, "data": bytes(body), "tls": encrypted})
                    conn.sendall(self.data_reply.encode() + b"\r\n")
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")
        except OSError:
            return
        finally:
            with self.lock:
                self.open -= 1
            conn.close()

    def close(self):
        self.running = False
        # shutdown() wakes the accept() blocked in the other thread; close() alone would leave
        # it waiting on a descriptor number the next test's socket may reuse.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class SmtpClient:
    """A raw SMTP client for protocol tests: exact bytes out, replies in."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes | str):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self) -> str:
        """One complete (possibly multi-line) reply, as text; '' if the connection closed."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return "\n".join(lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode("utf-8", "replace")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    def cmd(self, line: str) -> str:
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout: float = 5) -> bool:
        """True if the server closed the connection (EOF) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
