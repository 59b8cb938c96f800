#!/usr/bin/env bash
# Boots the Palisade QEMU image: UEFI (OVMF), the serial console on stdio, and the
# appliance's SMTP, submission and admin console ports forwarded to 127.0.0.1.
#
#   scripts/run-qemu.sh [--fresh] [DISK]
#
# DISK defaults to out/qemu/disk.img, made on first use (or with --fresh) from
# out/palisade-x86_64.img and grown to PALISADE_DISK_SIZE (default 4G) so that the first
# boot grows the data partition, as it does on a real disk. The UEFI variable store
# lives next to the disk. Quit with Ctrl-a x.
#
# Environment (defaults in brackets):
#   PALISADE_SMTP_PORT [10025]  PALISADE_SUBMISSION_PORT [10587]  PALISADE_CONSOLE_PORT [10443]
#   PALISADE_QEMU_ACCEL [kvm when /dev/kvm works, else tcg]
#   PALISADE_QEMU_MEM [2048]    PALISADE_QEMU_CPUS [2]
#   PALISADE_QGA_SOCKET         a unix socket path: adds the virtio-serial port of
#                               qemu-guest-agent (the test channel, tests/image/)
#   PALISADE_QEMU_SERIAL        serial console to this file (appended to) instead of stdio
#   PALISADE_QEMU_NO_REBOOT=1   QEMU exits when the guest reboots, so that the caller can
#                               power it on again (the image tests do: a warm reset of
#                               OVMF under TCG sometimes never comes back, a cold start does)
#   PALISADE_QEMU_MONITOR       QMP monitor on this unix socket path
#   PALISADE_QEMU_EXTRA_DISK    a second, read-only disk (the tests bring bundles in on it)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fresh=no
disk=""
while (($#)); do
	case $1 in
	--fresh) fresh=yes; shift ;;
	-h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) disk=$1; shift ;;
	esac
done

if ! command -v qemu-system-x86_64 >/dev/null || [[ ! -e /usr/share/OVMF/OVMF_CODE_4M.fd ]]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-system-x86 ovmf >/dev/null
fi

if [[ -z $disk ]]; then
	disk=$repo/out/qemu/disk.img
	if [[ $fresh == yes || ! -e $disk ]]; then
		[[ -e $repo/out/palisade-x86_64.img ]] || { echo "run-qemu: build the image first: scripts/build-image.sh" >&2; exit 1; }
		mkdir -p "$(dirname "$disk")"
		cp --sparse=always "$repo/out/palisade-x86_64.img" "$disk"
		truncate -s "${PALISADE_DISK_SIZE:-4G}" "$disk"
		rm -f "$disk.vars"
	fi
fi
vars=$disk.vars
[[ -e $vars ]] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$vars"

accel=${PALISADE_QEMU_ACCEL:-}
if [[ -z $accel ]]; then
	accel=tcg
	# KVM only if a guest with the host CPU model actually runs on it (nested setups
	# often open /dev/kvm fine and then fail on the first MSR write).
	if [[ -r /dev/kvm && -w /dev/kvm ]] &&
		{ echo '{"execute":"qmp_capabilities"}'; echo '{"execute":"cont"}'; sleep 1
		  echo '{"execute":"query-status"}'; echo '{"execute":"quit"}'; } |
		timeout 20 qemu-system-x86_64 -accel kvm -cpu host -machine q35 -m 64 -nodefaults -display none \
			-no-user-config -S -qmp stdio 2>/dev/null | grep -q '"status": "running"'; then
		accel=kvm
	fi
fi
cpu=max
[[ $accel == kvm ]] && cpu=host

smtp=${PALISADE_SMTP_PORT:-10025}
sub=${PALISADE_SUBMISSION_PORT:-10587}
web=${PALISADE_CONSOLE_PORT:-10443}

args=(
	-machine "q35,smm=off" -accel "$accel" -cpu "$cpu"
	-m "${PALISADE_QEMU_MEM:-2048}" -smp "${PALISADE_QEMU_CPUS:-2}"
	-drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
	-drive "if=pflash,format=raw,unit=1,file=$vars"
	-drive "if=virtio,format=raw,file=$disk,cache=unsafe"
	-netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$smtp-:25,hostfwd=tcp:127.0.0.1:$sub-:587,hostfwd=tcp:127.0.0.1:$web-:443"
	-device "virtio-net-pci,netdev=net0"
	-device virtio-rng-pci
	-nographic -no-user-config -nodefaults
)
if [[ -n ${PALISADE_QEMU_SERIAL:-} ]]; then
	args+=(-chardev "file,id=serial0,path=$PALISADE_QEMU_SERIAL,append=on" -serial chardev:serial0 -display none)
else
	args+=(-serial mon:stdio)
fi
if [[ -n ${PALISADE_QGA_SOCKET:-} ]]; then
	args+=(-device virtio-serial-pci
		-chardev "socket,path=$PALISADE_QGA_SOCKET,server=on,wait=off,id=qga0"
		-device "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0")
fi
[[ -n ${PALISADE_QEMU_EXTRA_DISK:-} ]] &&
	args+=(-drive "if=virtio,format=raw,readonly=on,file=$PALISADE_QEMU_EXTRA_DISK")
[[ ${PALISADE_QEMU_NO_REBOOT:-0} == 1 ]] && args+=(-no-reboot)
[[ -n ${PALISADE_QEMU_MONITOR:-} ]] && args+=(-qmp "unix:$PALISADE_QEMU_MONITOR,server=on,wait=off")
echo "run-qemu: $disk, accel $accel; SMTP 127.0.0.1:$smtp, submission :$sub, console https://127.0.0.1:$web/" >&2
exec qemu-system-x86_64 "${args[@]}"
