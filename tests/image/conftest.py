"""Fixtures for the image tests: one QEMU guest booted from a fresh copy of
out/palisade-x86_64.img, shared by every test in the session (a boot under TCG costs about
a minute, so tests reuse it and reboot only when a check needs a reboot). The modules run
in file-name order and build on each other's state: 10 first boot, 20 services,
30 persistence across a reboot, 40 updates and fallback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from guest import REPO, Guest

OUT = Path(os.environ.get("PALISADE_IMAGE_OUT", REPO / "out"))
WORK = Path(os.environ.get("PALISADE_TEST_WORK", REPO / "tests/output/image"))
BOOT_TIMEOUT = float(os.environ.get("PALISADE_BOOT_TIMEOUT", "600"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def image() -> Path:
    img = OUT / "palisade-x86_64.img"
    if not img.exists():
        pytest.fail(f"{img} is missing: run scripts/test-image.sh (it builds the image)")
    return img


@pytest.fixture(scope="session")
def work() -> Path:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    return WORK


@pytest.fixture(scope="session")
def guest(image: Path, work: Path):
    disk = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    # A disk bigger than the image, as on real hardware: the first boot grows /data.
    os.truncate(disk, 4 << 30)
    ports = {
        "smtp": int(os.environ.get("PALISADE_SMTP_PORT", free_port())),
        "submission": int(os.environ.get("PALISADE_SUBMISSION_PORT", free_port())),
        "console": int(os.environ.get("PALISADE_CONSOLE_PORT", free_port())),
    }
    g = Guest(work, disk, ports)
    g.start()
    try:
        g.first_boot = g.wait_ready(BOOT_TIMEOUT)
        yield g
    finally:
        g.stop()
        (work / "boots.json").write_text(json.dumps(g.boots, indent=2))
        shutil.copy(g.serial, work / "serial-final.log") if g.serial.exists() else None
        disk.unlink(missing_ok=True)


def wait_for(what: str, fn, timeout: float = 60, interval: float = 1.0):
    """Polls fn() until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - reported below if it never succeeds
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
