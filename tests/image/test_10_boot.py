"""The first boot of a freshly flashed image."""

import re

PARTUUIDS = {
    "ESP": "30291e05-ba9b-4b97-81fa-6eee0138e80a",
    "rootfs-a": "3fbd508d-b066-410d-8ef5-1c303576bc1f",
    "rootfs-b": "46ad9711-2d46-431f-8ee2-be24516e951f",
    "data": "fc51a781-0a05-475f-af02-a08342c83afa",
}


def test_boots_from_slot_a_to_palisade_ready(guest, version):
    fb = guest.first_boot
    assert fb["slot"] == "A"
    props = guest.sh("systemctl show -p ActiveState -p SubState -p Type -p StatusText palisade.service")
    assert "ActiveState=active" in props and "SubState=running" in props and "Type=notify" in props, props
    assert guest.sh(". /etc/os-release; echo $VERSION_ID").strip() == version
    # The supervisor's own line and the banner reached the serial console.
    serial = guest.serial_text()
    assert "Palisade: ready" in serial
    assert re.search(r"Admin console: https://\d+\.\d+\.\d+\.\d+/", serial), guest.tail()
    print(f"\nfirst boot: palisade.service READY {fb['ready_after']:.1f}s after kernel start "
          f"(host wall clock to ready: {fb['seconds']:.0f}s)")


def test_one_time_admin_password_on_serial_console(guest):
    if guest.run("palisade console --help").rc != 0:
        import pytest

        pytest.xfail("this build has no `palisade console` yet")
    assert re.search(r"admin password", guest.serial_text(), re.I), guest.tail()


def test_disk_layout_and_data_partition_grown(guest):
    rows = guest.sh("lsblk -nro PARTLABEL,PARTUUID,FSTYPE,SIZE -b /dev/vda").split("\n")
    parts = {r.split()[0]: r.split() for r in rows if r.strip() and len(r.split()) >= 2}
    for label, uuid in PARTUUIDS.items():
        assert parts[label][1] == uuid, parts
    assert parts["rootfs-a"][2] == "squashfs"
    assert parts["data"][2] == "ext4"
    # The image carries a 256 MiB data partition; the rest of the 4 GiB disk was added to it.
    data_bytes = int(guest.sh("df -B1 --output=size /data | tail -1"))
    assert data_bytes > 2.5 * (1 << 30), data_bytes  # 4 GiB minus 1 GiB of slots and ESP


def test_root_is_read_only_and_state_lives_on_data(guest):
    mounts = guest.sh("findmnt -rno TARGET,FSTYPE,OPTIONS /; findmnt -rno TARGET,SOURCE /var")
    assert re.search(r"^/ squashfs ro[,\s]", mounts, re.M), mounts
    assert "/data/var" in mounts or "[/var]" in mounts, mounts
    r = guest.run("echo x > /etc/palisade-write-test")
    assert r.rc != 0 and "Read-only file system" in r.err, r
    r = guest.run("touch /usr/bin/palisade")
    assert r.rc != 0, r
    # ...while /data is writable.
    guest.sh("echo x > /data/write-test && rm /data/write-test")


def test_slot_a_marked_good_once_ready(guest):
    env = guest.sh("grub-editenv /boot/efi/EFI/BOOT/grubenv list")
    assert "A_OK=1" in env and "A_TRY=0" in env, env
    assert "B_OK=0" in env, env
    log = guest.sh("journalctl -b -u palisade-boot-check -o cat")
    assert "is ready; marked good" in log, log
