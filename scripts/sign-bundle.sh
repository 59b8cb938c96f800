#!/usr/bin/env bash
# Makes a signed RAUC bundle (a Palisade firmware update) from a root filesystem image.
#
#   scripts/sign-bundle.sh [--version V] [--build ID] ROOTFS.squashfs OUT.raucb
#   scripts/sign-bundle.sh --ensure-keys        only create the development keys if missing
#   scripts/sign-bundle.sh --print-keyring      path of the keyring to put into an image
#
# Signing material, in this order:
#   PALISADE_SIGNING_CERT + PALISADE_SIGNING_KEY (+ PALISADE_KEYRING, the CA certificate an
#   appliance trusts): the operator's production keys (a PKCS#11 URI works for the key).
#   Otherwise a DEVELOPMENT key pair in PALISADE_KEYS_DIR (default
#   ~/.cache/palisade-keys/dev), created on first use. Keys never go into the repository;
#   images built with development keys accept only bundles signed with them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
keys_dir=${PALISADE_KEYS_DIR:-$HOME/.cache/palisade-keys/dev}

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }

ensure_dev_keys() {
	[[ -s $keys_dir/signing.key && -s $keys_dir/signing.crt && -s $keys_dir/ca.crt ]] && return 0
	command -v openssl >/dev/null || { echo "sign-bundle: openssl is needed" >&2; exit 1; }
	echo "sign-bundle: creating DEVELOPMENT signing keys in $keys_dir" >&2
	mkdir -p "$keys_dir"
	chmod 700 "$keys_dir"
	local t
	t=$(mktemp -d)
	# A CA whose certificate is the appliance's keyring, and a code-signing certificate
	# under it (RAUC checks the purpose: system.conf check-purpose=codesign).
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$t/ca.key" -out "$t/ca.crt" -days 3650 \
		-subj "/O=Palisade development/CN=Palisade DEVELOPMENT update CA" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$t/signing.key" -out "$t/signing.csr" \
		-subj "/O=Palisade development/CN=Palisade DEVELOPMENT update signing" 2>/dev/null
	printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=critical,codeSigning" >"$t/ext.cnf"
	openssl x509 -req -in "$t/signing.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial \
		-days 3650 -extfile "$t/ext.cnf" -out "$t/signing.crt" 2>/dev/null
	install -m 600 "$t/ca.key" "$t/signing.key" "$keys_dir/"
	install -m 644 "$t/ca.crt" "$t/signing.crt" "$keys_dir/"
	rm -rf "$t"
}

cert=${PALISADE_SIGNING_CERT:-}
key=${PALISADE_SIGNING_KEY:-}
keyring=${PALISADE_KEYRING:-}
use_dev_keys() {
	if [[ -z $cert && -z $key ]]; then
		ensure_dev_keys
		cert=$keys_dir/signing.crt
		key=$keys_dir/signing.key
		keyring=${keyring:-$keys_dir/ca.crt}
	elif [[ -z $cert || -z $key ]]; then
		echo "sign-bundle: set both PALISADE_SIGNING_CERT and PALISADE_SIGNING_KEY" >&2
		exit 2
	fi
}

version=""
build=""
args=()
while (($#)); do
	case $1 in
	--ensure-keys) use_dev_keys; exit 0 ;;
	--print-keyring)
		use_dev_keys
		[[ -n $keyring ]] || { echo "sign-bundle: set PALISADE_KEYRING" >&2; exit 2; }
		echo "$keyring"
		exit 0
		;;
	--version) version=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	-h | --help) usage ;;
	-*) echo "sign-bundle: unknown option $1" >&2; usage ;;
	*) args+=("$1"); shift ;;
	esac
done
((${#args[@]} == 2)) || usage
rootfs=${args[0]}
out=${args[1]}
[[ -f $rootfs ]] || { echo "sign-bundle: no such file: $rootfs" >&2; exit 1; }
command -v rauc >/dev/null || { echo "sign-bundle: rauc is needed (apt-get install rauc)" >&2; exit 1; }
use_dev_keys
version=${version:-$(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)}
build=${build:-$(date -u +%Y%m%d%H%M%S)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bundle"
# Hard link when possible: the root filesystem is large.
ln "$rootfs" "$work/bundle/rootfs.squashfs" 2>/dev/null || cp "$rootfs" "$work/bundle/rootfs.squashfs"
sed -e "s|@VERSION@|$version|g" -e "s|@BUILD@|$build|g" "$here/image/manifest.raucm.in" \
	>"$work/bundle/manifest.raucm"
rm -f "$out"
# With a keyring the fresh signature is verified right away, with the appliance's rule for
# the certificate's purpose (image/system.conf: check-purpose=codesign). A minimal
# configuration: the appliance's own would make rauc use /data on this host.
printf '%s\n' "[system]" "compatible=palisade-x86_64" "bootloader=noop" \
	"[keyring]" "check-purpose=codesign" >"$work/rauc.conf"
keyring_args=()
[[ -n $keyring ]] && keyring_args=(--signing-keyring="$keyring")
rauc --conf="$work/rauc.conf" bundle --cert="$cert" --key="$key" "${keyring_args[@]}" \
	"$work/bundle" "$out" >&2
echo "sign-bundle: $out (version $version, build $build)" >&2
