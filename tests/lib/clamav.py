"""A real clamd for the tests: its own configuration, socket and log in a scratch directory,
its databases in a directory the test chooses (a Palisade data directory's clamav/, filled
with `palisade av update`), started and stopped like the appliance's.

The signatures are local: EICAR's test string and a custom marker, as ClamAV body-based
(.ndb) signatures, so they match the string wherever clamd finds it (a MIME part, a member of
a zip inside a zip)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness import OUTPUT, scratch_dir, wait_for

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# Not malware: a marker only our own custom signature knows.
CUSTOM_MARKER = b"PALISADE-CUSTOM-SIGNATURE-TEST-3f9c2a71"
# As clamd reports them: signatures not from ClamAV's own signed databases get ".UNOFFICIAL".
EICAR_SIGNATURE = "Palisade.Test.EICAR.UNOFFICIAL"
CUSTOM_SIGNATURE = "Palisade.Test.Custom.UNOFFICIAL"


def ndb(name: str, marker: bytes) -> str:
    """One body-based signature: `name` wherever `marker` occurs, in any file type."""
    return f"{name.removesuffix('.UNOFFICIAL')}:0:*:{marker.hex()}\n"


def write_signatures(directory: Path, which: str = "eicar") -> Path:
    """A signature file for `palisade av update`: `eicar` or `custom`."""
    directory.mkdir(parents=True, exist_ok=True)
    if which == "eicar":
        p = directory / "palisade-test.ndb"
        p.write_text(ndb(EICAR_SIGNATURE, EICAR))
    else:
        p = directory / "palisade-custom.ndb"
        p.write_text(ndb(CUSTOM_SIGNATURE, CUSTOM_MARKER))
    return p


class Clamd:
    def __init__(self, name: str):
        if not shutil.which("clamd"):
            raise AssertionError("clamd is not installed (scripts/test.sh installs clamav-daemon)")
        self.dir = scratch_dir(f"clamd-{name[:12]}")
        self.database_dir: Path | None = None
        self.socket = self.dir / "clamd.sock"
        self.log = OUTPUT / "logs" / f"clamd-{name[:60]}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "clamd.conf"
        self.proc: subprocess.Popen | None = None

    def write_conf(self, database_dir: Path):
        self.database_dir = database_dir
        self.conf.write_text(
            f"DatabaseDirectory {database_dir}\n"
            f"LocalSocket {self.socket}\n"
            # The engine runs as its own user and must reach the socket.
            "LocalSocketMode 666\n"
            "FixStaleSocket yes\n"
            "Foreground yes\n"
            f"LogFile {self.log}\n"
            "LogTime yes\n"
            "MaxThreads 4\n"
            "StreamMaxLength 64M\n"
            "MaxRecursion 16\n"
            "AlertExceedsMax yes\n"
            "SelfCheck 3600\n"
        )

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    def command(self, cmd: str, timeout: float = 5) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket))
            s.sendall(f"z{cmd}\0".encode())
            out = b""
            while chunk := s.recv(4096):
                out += chunk
        return out.rstrip(b"\0\n").decode()

    def ping(self) -> bool:
        try:
            return self.command("PING") == "PONG"
        except OSError:
            return False

    def start(self, database_dir: Path | None = None, timeout: float = 120) -> "Clamd":
        """Starts clamd on `database_dir` (the last one given when restarting)."""
        if database_dir is not None:
            self.write_conf(database_dir)
        self.proc = subprocess.Popen(["clamd", f"--config-file={self.conf}"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"clamd exited with {self.proc.returncode}: {self.log.read_text(errors='replace')[-2000:]}")
            return self.ping()

        wait_for(up, timeout, interval=0.2, what="clamd answering PING")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # A killed clamd leaves its socket behind: a connection is refused, as when it is down.

    def wait_signature(self, signature: str, sample: bytes, timeout: float = 60):
        """Until clamd (after a RELOAD) recognises `sample` as `signature`."""
        def found():
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(self.socket))
                s.sendall(b"zINSTREAM\0" + len(sample).to_bytes(4, "big") + sample + b"\0\0\0\0")
                out = b""
                while chunk := s.recv(4096):
                    out += chunk
            return signature.encode() in out
        wait_for(found, timeout, interval=0.5, what=f"clamd knowing {signature}")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
