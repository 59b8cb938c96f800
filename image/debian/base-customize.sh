#!/usr/bin/env bash
# mmdebstrap customize hook for the QEMU image's cached base: runs once per package list.
# $1 = the root filesystem being built.
set -euo pipefail
root=$1

# The initramfs only has to find a squashfs root on a virtio, SATA or NVMe disk.
cat >"$root/etc/initramfs-tools/conf.d/palisade.conf" <<'CONF'
MODULES=list
COMPRESS=gzip
CONF
cat >"$root/etc/initramfs-tools/modules" <<'CONF'
virtio_pci
virtio_blk
virtio_scsi
sd_mod
ahci
nvme
squashfs
CONF
chroot "$root" update-initramfs -u -k all

# Fixed names for grub.cfg, which loads them from the slot's root filesystem.
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
cp "$root/boot/vmlinuz-$kver" "$root/boot/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$root/boot/initrd.img"
rm -f "$root/boot/vmlinuz-$kver" "$root/boot/initrd.img-$kver" "$root/boot/System.map-$kver" \
	"$root"/vmlinuz* "$root"/initrd.img*

# Nothing an appliance uses at run time.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
	"$root"/var/log/* "$root"/usr/share/info/*
