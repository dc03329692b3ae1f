#!/usr/bin/env bash
# CRIU >= 4 for thaw, from Debian's archive alone (see docs/criu.md).
#
# Debian 12's criu 3.17 fails `criu check` on current kernels, and installing
# a newer Debian's binary package would drag a newer libc6 into Debian 12.
# CRIU 4.1.1 (Debian 13) cannot dump a process holding a TCP or UDP socket on
# kernels >= 6.16 (`Can't get 1:16 opt`, upstream #2705/#2718); 4.2.1 can.
# So: fetch the upstream tarball that Debian sid ships
# (criu_4.2.1.orig.tar.xz, hash checked by apt against sid's signed Sources
# index) through a temporary deb-src entry, build it against Debian 12's libraries (the "# CRIU build"
# packages of scripts/debian-packages.txt) and install only the binary as
# /usr/local/lib/thaw/criu/criu: off PATH, so Debian's `criu` is never taken
# by mistake.
#
# RUNDIR is compiled in: CRIU keeps its kernel-feature cache (criu.kdat) there
# and only on a tmpfs, which saves ~27 ms per criu run. /run is not a tmpfs on
# these machines, so it points at /dev/shm/thaw-criu.
#
# Idempotent: does nothing when the installed binary is CRIU $CRIU_VERSION and
# passes `criu check`. THAW_CRIU_REBUILD=1 forces a rebuild. Other programs
# may be running the installed binary: the new one is built elsewhere and
# moved into place in one rename.
set -euo pipefail

CRIU_VERSION=4.2.1
SUITE=sid
DEST=/usr/local/lib/thaw/criu
BIN=$DEST/criu
RUNDIR=/dev/shm/thaw-criu
WORK=/var/cache/thaw/criu-build
SRC_ENTRY=/etc/apt/sources.list.d/thaw-$SUITE-src.sources

# criu_ok [BINARY]: BINARY (default $BIN) is CRIU $CRIU_VERSION and passes
# `criu check` (which also writes the kernel-feature cache for it).
criu_ok() {
	local bin=${1:-$BIN}
	[ -x "$bin" ] || return 1
	"$bin" --version 2>/dev/null | grep -qx "Version: $CRIU_VERSION" || return 1
	mkdir -p -m 0700 "$RUNDIR"
	"$bin" check >/dev/null 2>&1
}

if [ "${THAW_CRIU_REBUILD:-0}" != 1 ] && criu_ok; then
	echo "criu: $BIN ($("$BIN" --version | head -n 1)) passes criu check; nothing to do"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "criu: must run as root (apt sources, /usr/local/lib/thaw)" >&2
	exit 1
fi

mkdir -p "$WORK"
tarball=$WORK/criu_$CRIU_VERSION.orig.tar.xz

# The $SUITE source entry lives only as long as this script, failure included.
drop_entry() {
	if [ -e "$SRC_ENTRY" ]; then
		rm -f "$SRC_ENTRY"
		apt-get update -qq || echo "criu: apt-get update after removing $SRC_ENTRY failed" >&2
	fi
}

if [ ! -s "$tarball" ]; then
	trap drop_entry EXIT
	cat >"$SRC_ENTRY" <<EOF
# Temporary, added and removed by thaw's scripts/deps.d/10-criu.sh.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	apt-get update -qq
	# apt-get source also asks for the .dsc and the Debian tarball, which the
	# mirror here may not serve; only the orig tarball matters (apt checks its
	# hash as it downloads), so judge by that file, not by the exit code.
	dl=$(mktemp -d "$WORK/dl.XXXXXX")
	# apt downloads as _apt when it can write there, else warns and uses root
	chown _apt "$dl" 2>/dev/null || true
	(cd "$dl" && apt-get source --download-only -qq "criu/$SUITE") ||
		echo "criu: apt-get source reported an error; looking for the orig tarball anyway"
	if [ ! -s "$dl/criu_$CRIU_VERSION.orig.tar.xz" ]; then
		echo "criu: criu_$CRIU_VERSION.orig.tar.xz not fetched from $SUITE" >&2
		rm -rf "$dl"
		exit 1
	fi
	mv "$dl/criu_$CRIU_VERSION.orig.tar.xz" "$tarball"
	rm -rf "$dl"
	drop_entry
	trap - EXIT
fi

src=$WORK/criu-$CRIU_VERSION
rm -rf "$src"
tar -C "$WORK" -xf "$tarball"
[ -d "$src" ] || { echo "criu: tarball did not unpack to $src" >&2; exit 1; }

echo "criu: building CRIU $CRIU_VERSION in $src (RUNDIR=$RUNDIR)"
# NO_GNUTLS: no TLS for page-server transfers; thaw keeps images local.
make -C "$src" -j2 -s RUNDIR="$RUNDIR" NO_GNUTLS=1 criu

# Checked where it was built, then moved into place in one rename: tests and
# daemons running the old binary meanwhile see either one, never half a file.
if ! criu_ok "$src/criu/criu"; then
	echo "criu: the new build fails criu check; $BIN left as it was:" >&2
	"$src/criu/criu" check 2>&1 | tail -n 5 >&2 || true
	exit 1
fi
mkdir -p "$DEST"
install -m 0755 "$src/criu/criu" "$BIN.new.$$"
mv -f "$BIN.new.$$" "$BIN"
rm -rf "$src"
criu_ok || { echo "criu: installed $BIN fails criu check" >&2; exit 1; }
echo "criu: installed $BIN ($("$BIN" --version | head -n 1)); criu check passes"
