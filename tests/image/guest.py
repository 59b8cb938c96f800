"""A booted Palisade QEMU image, driven from the host.

Commands run in the guest through qemu-guest-agent (`guest-exec`). Why that channel: it
needs no network service, account or key in the image, and it is inert on real hardware --
its systemd unit is bound to the org.qemu.guest_agent.0 virtio-serial port, which only QEMU
provides (scripts/run-qemu.sh adds it when PALISADE_QGA_SOCKET is set). SSH would mean a
listening daemon and a credential in the image under test; the serial console would mean a
login. The agent is part of the QEMU image only (image/debian/packages), not of the
Buildroot hardware image.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class GuestUnreachable(Exception):
    pass


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


class Guest:
    def __init__(self, workdir: Path, disk: Path, ports: dict[str, int], extra_disk: Path | None = None):
        self.workdir = workdir
        self.extra_disk = extra_disk
        self.disk = disk
        self.ports = ports
        self.qga = workdir / "qga.sock"
        self.serial = workdir / "serial.log"
        self.proc: subprocess.Popen | None = None
        self.boots: list[dict] = []
        # Where in serial.log the running QEMU started writing, and how often the guest's
        # own reboots were turned into power cycles (see alive()).
        self.serial_mark = 0
        self.power_cycles = 0

    # --- lifecycle -------------------------------------------------------------------
    def start(self, fresh: bool = True) -> None:
        env = dict(os.environ)
        env.update(
            PALISADE_QGA_SOCKET=str(self.qga),
            PALISADE_QEMU_SERIAL=str(self.serial),
            PALISADE_SMTP_PORT=str(self.ports["smtp"]),
            PALISADE_SUBMISSION_PORT=str(self.ports["submission"]),
            PALISADE_CONSOLE_PORT=str(self.ports["console"]),
            PALISADE_QEMU_NO_REBOOT="1",
        )
        if self.extra_disk:
            env["PALISADE_QEMU_EXTRA_DISK"] = str(self.extra_disk)
        if fresh:
            self.serial.unlink(missing_ok=True)
            self.started_at = time.monotonic()
        self.serial_mark = len(self.serial_text())
        self.proc = subprocess.Popen(
            [str(REPO / "scripts/run-qemu.sh"), str(self.disk)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "qemu.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def alive(self) -> bool:
        """Whether QEMU runs. QEMU runs with -no-reboot: when the guest reboots (its own
        `systemctl reboot`, the boot check's fallback, a kernel panic), QEMU exits and this
        powers it on again with the same disk and firmware variables -- a cold start, as a
        hardware reset is. Under TCG a warm reset of OVMF now and then never reaches the
        boot loader again, which no real box does."""
        if self.proc is None:
            return False
        rc = self.proc.poll()
        if rc is None:
            return True
        since = self.serial_text()[self.serial_mark:]
        if rc == 0 and ("reboot: Restarting system" in since or "Rebooting in" in since):
            self.power_cycles += 1
            self.start(fresh=False)
            return True
        return False

    def serial_text(self) -> str:
        try:
            return self.serial.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- guest agent -----------------------------------------------------------------
    def _qga(self, execute: str, arguments: dict | None = None, timeout: float = 10) -> dict:
        if not self.alive():
            raise GuestUnreachable("QEMU is not running")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(self.qga))
            f = s.makefile("rwb", buffering=0)
            # guest-sync-delimited: skip whatever an earlier, interrupted exchange left.
            sync_id = random.randrange(1, 2**31)
            f.write(json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}).encode() + b"\n")
            buf = b""
            while True:
                c = f.read(1)
                if not c:
                    raise GuestUnreachable("agent closed the channel")
                if c == b"\xff":
                    buf = b""
                    continue
                buf += c
                if c == b"\n":
                    try:
                        msg = json.loads(buf)
                    except ValueError:
                        buf = b""
                        continue
                    buf = b""
                    if msg.get("return") == sync_id:
                        break
            req = {"execute": execute}
            if arguments is not None:
                req["arguments"] = arguments
            f.write(json.dumps(req).encode() + b"\n")
            line = f.readline()
            msg = json.loads(line)
            if "error" in msg:
                raise RuntimeError(f"{execute}: {msg['error']}")
            return msg["return"]
        except (OSError, ValueError) as e:
            raise GuestUnreachable(f"{execute}: {e}") from e
        finally:
            s.close()

    def run(self, cmd: str, timeout: float = 120, check: bool = False) -> Result:
        """Runs `cmd` with /bin/sh -c in the guest, as root."""
        pid = self._qga(
            "guest-exec",
            {"path": "/bin/sh", "arg": ["-c", cmd], "capture-output": True},
        )["pid"]
        deadline = time.monotonic() + timeout
        while True:
            st = self._qga("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"guest command still running after {timeout}s: {cmd}")
            time.sleep(0.3)
        out = base64.b64decode(st.get("out-data", "")).decode(errors="replace")
        err = base64.b64decode(st.get("err-data", "")).decode(errors="replace")
        rc = st.get("exitcode", -(st.get("signal") or 1))
        r = Result(rc, out, err)
        if check and rc != 0:
            raise AssertionError(f"guest command failed: {cmd}\n{r}")
        return r

    def sh(self, cmd: str, timeout: float = 120) -> str:
        """Runs `cmd` and returns its stdout; fails the test if it fails."""
        return self.run(cmd, timeout=timeout, check=True).out

    def write_file(self, path: str, data: bytes, mode: str = "0644") -> None:
        b64 = base64.b64encode(data).decode()
        self.sh(f"echo '{b64}' | base64 -d > '{path}' && chmod {mode} '{path}'")

    # --- boots -----------------------------------------------------------------------
    def boot_id(self, timeout: float = 5) -> str | None:
        try:
            return self.run("cat /proc/sys/kernel/random/boot_id", timeout=timeout).out.strip()
        except (GuestUnreachable, TimeoutError, RuntimeError):
            return None

    def wait_ready(self, timeout: float, previous_boot: str | None = None) -> dict:
        """Waits for a (new) boot in which palisade.service is active and the boot check
        has finished; returns what that boot looked like."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"QEMU exited\n{self.tail()}")
            bid = self.boot_id()
            if bid and bid != previous_boot:
                # The guest may go down again between two questions (a boot that never gets
                # ready is rebooted by its watchdog into the other slot): ask again later.
                try:
                    r = self.run(
                        "systemctl is-active palisade.service; "
                        "systemctl show -P ActiveState palisade-boot-check.service; "
                        "systemctl show -P ExecMainStatus palisade-boot-check.service",
                        timeout=10,
                    )
                    lines = r.out.split()
                    if len(lines) >= 1 and lines[0] == "active" and lines[1:2] != ["active"]:
                        info = {
                            "boot_id": bid,
                            "seconds": time.monotonic() - t0,
                            "slot": self.booted_slot(),
                            "uptime": float(self.sh("cut -d' ' -f1 /proc/uptime")),
                            "ready_after": self.ready_monotonic(),
                        }
                        self.boots.append(info)
                        return info
                except (GuestUnreachable, TimeoutError, RuntimeError):
                    pass
            time.sleep(2)
        journal = ""
        try:
            journal = self.run(
                "journalctl -b -u palisade.service -u palisade-boot-check.service "
                "-n 60 --no-pager",
                timeout=20,
            ).out
        except (GuestUnreachable, TimeoutError, RuntimeError) as e:
            journal = f"(journal not readable: {e})"
        raise AssertionError(
            f"no ready boot within {timeout}s\n--- serial\n{self.tail()}\n--- journal\n{journal}"
        )

    def ready_monotonic(self) -> float | None:
        """Seconds from kernel start to palisade.service becoming active (READY=1)."""
        v = self.run("systemctl show -P ActiveEnterTimestampMonotonic palisade.service").out.strip()
        return int(v) / 1e6 if v.isdigit() else None

    def booted_slot(self) -> str:
        m = re.search(r"rauc\.slot=(\w+)", self.sh("cat /proc/cmdline"))
        return m.group(1) if m else "?"

    def reboot(self, timeout: float = 600) -> dict:
        before = self.boot_id()
        try:
            # Detached: the agent itself goes down with the reboot.
            self._qga("guest-exec", {"path": "/bin/systemctl", "arg": ["reboot"]})
        except GuestUnreachable:
            pass
        return self.wait_ready(timeout, previous_boot=before)

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.serial_text().splitlines()[-n:])
