################################################################################
#
# palisade
#
################################################################################

# Built from the repository this external tree lives in, not from a release tarball.
PALISADE_VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' $(BR2_EXTERNAL_PALISADE_PATH)/../Cargo.toml | head -n 1)
PALISADE_SITE = $(BR2_EXTERNAL_PALISADE_PATH)/..
PALISADE_SITE_METHOD = local
PALISADE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude target --exclude out --exclude tests/output --exclude .git
PALISADE_LICENSE = AGPL-3.0-only
# The binary's package inside the workspace; cargo uses the workspace's Cargo.lock
# (the cargo infrastructure passes --locked --offline).
PALISADE_SUBDIR = crates/palisade
# OpenPGP is sequoia on nettle (see ARCHITECTURE.md, "Gateway encryption"): nettle-sys links
# the target's nettle and generates its bindings with bindgen, which loads the host's libclang.
PALISADE_DEPENDENCIES = nettle host-clang host-pkgconf
PALISADE_CARGO_ENV = \
	LIBCLANG_PATH=$(HOST_DIR)/lib \
	BINDGEN_EXTRA_CLANG_ARGS="--sysroot=$(STAGING_DIR)"

# Service accounts with the same fixed ids as rootfs-overlay/usr/lib/sysusers.d/palisade.conf:
# files on /data keep their owners across firmware updates. clamd's account too (the
# clamav package does not create one).
define PALISADE_USERS
	palisade-mail 851 palisade 850 * - - - Palisade mail engine
	palisade-web 852 palisade 850 * - - - Palisade admin console
	palisade-ha 853 palisade 850 * - - - Palisade HA peer
	clamav 860 clamav 860 * - - - ClamAV daemon
endef

# A local source tree is not vendored by the download step, so fetch the locked crates
# into Buildroot's cargo home before the offline build (needs network, like any download).
define PALISADE_FETCH_CRATES
	cd $(@D) && $(TARGET_MAKE_ENV) $(PKG_CARGO_ENV) \
		cargo fetch --locked --manifest-path Cargo.toml
endef
PALISADE_PRE_BUILD_HOOKS += PALISADE_FETCH_CRATES

$(eval $(cargo-package))
