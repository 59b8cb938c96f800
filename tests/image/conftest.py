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
# Below pytest's own timeout (tests/pytest.ini, 600 s), so that a boot that never gets ready
# fails with the serial console and the journal rather than a bare timeout.
BOOT_TIMEOUT = float(os.environ.get("PALISADE_BOOT_TIMEOUT", "540"))


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


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


@pytest.fixture(scope="session")
def version() -> str:
    return (OUT / "VERSION").read_text().strip()


@pytest.fixture(scope="session")
def bundles(image: Path, work: Path, version: str) -> dict[str, str]:
    """Update bundles for the tests, built before the guest boots and handed to it on a
    second, read-only disk (label palisade-test, mounted at /mnt in the guest):
      update.raucb      the image's own binary, a new version string, our signing key
      broken.raucb      a firmware whose palisade never gets ready, our signing key
      foreign.raucb     update.raucb's root filesystem signed by an unrelated key
      flipped.raucb     update.raucb with one byte of its payload flipped
    """
    d = work / "bundles"
    d.mkdir()
    # The binary that is in the image, so that the update differs only in its version.
    binary = work / "palisade.bin"
    with open(binary, "wb") as f:
        sh("unsquashfs", "-cat", str(OUT / "rootfs.squashfs"), "usr/bin/palisade", stdout=f)
    binary.chmod(0o755)
    broken = work / "palisade-broken"
    broken.write_text("#!/bin/sh\necho 'palisade: deliberately broken test firmware' >&2\nexit 1\n")
    broken.chmod(0o755)
    env = dict(os.environ)
    for name, bin_, ver in [("update", binary, f"{version}-update"), ("broken", broken, f"{version}-broken")]:
        o = work / f"build-{name}"
        sh(str(REPO / "scripts/build-image.sh"), "--bundle-only", "--out", str(o),
           env={**env, "PALISADE_BIN": str(bin_), "PALISADE_VERSION": ver})
        shutil.move(o / "palisade-x86_64.raucb", d / f"{name}.raucb")
        if name == "update":
            shutil.move(o / "rootfs.squashfs", work / "update.squashfs")
        shutil.rmtree(o)
    # Same root filesystem, signed with a key pair the image does not trust.
    sh(str(REPO / "scripts/sign-bundle.sh"), "--version", f"{version}-foreign",
       str(work / "update.squashfs"), str(d / "foreign.raucb"),
       env={**env, "PALISADE_KEYS_DIR": str(work / "foreign-keys"),
            "PALISADE_SIGNING_CERT": "", "PALISADE_SIGNING_KEY": "", "PALISADE_KEYRING": ""})
    data = bytearray((d / "update.raucb").read_bytes())
    flip_at = len(data) // 2  # inside the root filesystem image, far from the signature
    data[flip_at] ^= 0x01
    (d / "flipped.raucb").write_bytes(bytes(data))
    (work / "update.squashfs").unlink()
    disk = work / "bundles.img"
    size_mb = sum(f.stat().st_size for f in d.iterdir()) // (1 << 20) + 64
    sh("mkfs.ext4", "-q", "-F", "-L", "palisade-test", "-d", str(d), str(disk), f"{size_mb}M")
    shutil.rmtree(d)
    return {"disk": str(disk), "flip_at": str(flip_at)}


@pytest.fixture(scope="session")
def guest(image: Path, work: Path, bundles: dict[str, str]):
    disk = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    # A disk bigger than the image, as on real hardware: the first boot grows /data.
    os.truncate(disk, 4 << 30)
    ports = {
        "smtp": int(os.environ.get("PALISADE_SMTP_PORT", free_port())),
        "submission": int(os.environ.get("PALISADE_SUBMISSION_PORT", free_port())),
        "console": int(os.environ.get("PALISADE_CONSOLE_PORT", free_port())),
    }
    g = Guest(work, disk, ports, extra_disk=Path(bundles["disk"]))
    g.start()
    try:
        g.first_boot = g.wait_ready(BOOT_TIMEOUT)
        yield g
    finally:
        g.stop()
        (work / "boots.json").write_text(json.dumps(g.boots, indent=2))
        shutil.copy(g.serial, work / "serial-final.log") if g.serial.exists() else None
        disk.unlink(missing_ok=True)
        Path(bundles["disk"]).unlink(missing_ok=True)


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
