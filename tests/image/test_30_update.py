"""Signed A/B updates: refusals, an update across a reboot (state survives), and the two
ways a bad slot falls back."""

import json
import re

import pytest



BUNDLES = "/mnt"


@pytest.fixture(scope="module", autouse=True)
def bundle_disk(guest):
    guest.sh(f"mountpoint -q {BUNDLES} || mount -o ro LABEL=palisade-test {BUNDLES}")


def slots(guest) -> dict:
    return json.loads(guest.sh("rauc status --detailed --output-format=json"))


def slot_map(st: dict) -> dict:
    out = {}
    for entry in st["slots"]:
        for name, s in entry.items():
            out[s["bootname"]] = s
    return out


def grubenv(guest) -> str:
    return guest.sh("grub-editenv /boot/efi/EFI/BOOT/grubenv list")


def system_update_wired(guest) -> bool:
    return guest.run("palisade system update --help").rc == 0


def install(guest, bundle: str):
    """The appliance's own command when the binary has it; RAUC directly until then."""
    if system_update_wired(guest):
        cmd = f"palisade --data /data system update {BUNDLES}/{bundle}"
    else:
        cmd = f"rauc install {BUNDLES}/{bundle}"
    print(f"\n  installing with: {cmd}")
    return guest.run(cmd, timeout=600)


def remount_bundles(guest):
    guest.sh(f"mountpoint -q {BUNDLES} || mount -o ro LABEL=palisade-test {BUNDLES}")


@pytest.mark.parametrize("bundle,why", [
    ("foreign.raucb", r"signature|verif|certificate|signer"),
    ("flipped.raucb", r"verity|hash|I/O|input/output|read|signature|corrupt"),
])
def test_untrusted_bundle_is_refused_and_nothing_changes(guest, bundle, why):
    before_env = grubenv(guest)
    before = slot_map(slots(guest))
    r = install(guest, bundle)
    assert r.rc != 0, f"{bundle} was accepted:\n{r}"
    assert re.search(why, r.out + r.err, re.I), r
    after = slot_map(slots(guest))
    assert after["A"]["state"] == "booted" and after["A"]["boot_status"] == "good"
    assert slots(guest)["boot_primary"] == "rootfs.0"
    env = grubenv(guest)
    assert "ORDER=A B" in env and "B_OK=1" not in env, f"a refused bundle changed the boot order:\n{env}"
    assert before["A"] == after["A"]
    assert "A_OK=1" in before_env and "A_OK=1" in grubenv(guest)
    assert guest.sh("systemctl is-active palisade.service").strip() == "active"


def test_signed_update_installs_into_the_inactive_slot_and_boots(guest, version):
    r = install(guest, "update.raucb")
    assert r.rc == 0, r
    st = slots(guest)
    assert st["booted"] == "A"
    assert st["boot_primary"] == "rootfs.1", st
    b = slot_map(st)["B"]
    assert b["slot_status"]["bundle"]["version"] == f"{version}-update"
    boot = guest.reboot()
    assert boot["slot"] == "B"
    assert guest.sh(". /etc/os-release; echo $VERSION_ID").strip() == f"{version}-update"
    st = slots(guest)
    assert st["booted"] == "B" and slot_map(st)["B"]["boot_status"] == "good"
    # The previous firmware stays as the fallback.
    assert slot_map(st)["A"]["boot_status"] == "good"
    if system_update_wired(guest):
        shown = json.loads(guest.sh("palisade system status --json"))
        b = next(s for s in shown["slots"] if s["bootname"] == "B")
        assert b["booted"] and b["version"] == f"{version}-update", shown
        # The installation is in the appliance's audit log.
        assert "system.update" in guest.sh("palisade --data /data audit list --json")
    remount_bundles(guest)


def test_configuration_and_mail_survive_the_reboot(guest):
    assert "held.test" in guest.sh("palisade --data /data config export")
    assert guest.sh("palisade --data /data config history --json") == guest.config_revision
    q = json.loads(guest.sh(f"palisade --data /data queue list {guest.held_token} --json"))
    assert [m["id"] for m in q] == [m["id"] for m in guest.held_queue]
    assert guest.run(f"grep -rl '{guest.delivered_token}' /data/mailbox/").out.strip()
    assert guest.sh("systemctl is-active palisade.service").strip() == "active"


def test_update_that_never_becomes_ready_falls_back(guest, version):
    r = install(guest, "broken.raucb")
    assert r.rc == 0, r
    assert slots(guest)["boot_primary"] == "rootfs.0"
    seen = len(guest.serial_text())
    boot = guest.reboot(timeout=900)
    # The broken firmware in A ran, never got ready, was marked bad; B runs again.
    assert boot["slot"] == "B", boot
    new = guest.serial_text()[seen:]
    a, b = new.find("booting slot A"), new.rfind("booting slot B")
    assert 0 <= a < b, new[-4000:]
    assert "new firmware in slot A: marking it bad, rebooting into slot B" in new, new[-4000:]
    st = slot_map(slots(guest))
    assert st["A"]["boot_status"] == "bad" and st["B"]["state"] == "booted"
    assert guest.sh(". /etc/os-release; echo $VERSION_ID").strip() == f"{version}-update"
    remount_bundles(guest)


def test_slot_made_unbootable_falls_back(guest):
    # Wipe slot A's filesystem, then ask for it anyway (as a botched manual write would).
    guest.sh("dd if=/dev/zero of=/dev/disk/by-partlabel/rootfs-a bs=1M count=8 conv=fsync status=none")
    guest.sh("rauc status mark-active other")
    env = grubenv(guest)
    assert "ORDER=A B" in env and "A_OK=1" in env, env
    boot = guest.reboot()
    assert boot["slot"] == "B"
    assert "slot A has no kernel; marking it bad" in guest.serial_text()
    st = slot_map(slots(guest))
    assert st["A"]["boot_status"] == "bad"
    assert guest.sh("systemctl is-active palisade.service").strip() == "active"
