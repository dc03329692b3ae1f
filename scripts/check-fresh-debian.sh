#!/usr/bin/env bash
# Checks that README's two commands work on a machine holding only a minimal
# Debian 12: makes a fresh Debian 12 root with debootstrap (variant minbase:
# Priority required + apt, so no make, no compiler) from deb.debian.org,
# copies this checkout's HEAD into it (git archive), and runs there
# `./setup` then `make test`, as README says, printing the time each took.
# The root is entered by pivot_root in a mount namespace of its own (with
# /proc, /sys and /dev of this machine), not by chroot: `criu check` fails
# in a chroot ("No parent found for mountpoint ... (@./dev)"), as it would
# on no real machine.
#
# Usage, as root: scripts/check-fresh-debian.sh [DIR]
#   DIR: where the root is made (default: a new /var/tmp/thaw-fresh-XXXXXX);
#   removed at the end unless KEEP=1; the logs of both commands stay in
#   DIR.logs/. Needs network to deb.debian.org.
#   Exits 0 when both commands did.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
if [ "$(id -u)" != 0 ]; then
	echo "check-fresh-debian: run as root (debootstrap, chroot, mounts)" >&2
	exit 1
fi
if ! command -v debootstrap >/dev/null; then
	echo "check-fresh-debian: installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi
ROOT=${1:-$(mktemp -d /var/tmp/thaw-fresh-XXXXXX)}
LOGS=$ROOT.logs
mkdir -p "$LOGS"
cleanup() {
	if [ "${KEEP:-0}" != 1 ]; then
		rm -rf --one-file-system "$ROOT"
	else
		echo "check-fresh-debian: kept $ROOT"
	fi
}
trap cleanup EXIT

secs() { echo $(($(date +%s) - $1)); }

t0=$(date +%s)
debootstrap --variant=minbase bookworm "$ROOT" http://deb.debian.org/debian >"$ROOT.debootstrap.log" 2>&1 ||
	{ tail -n 20 "$ROOT.debootstrap.log"; exit 1; }
rm -f "$ROOT.debootstrap.log"
echo "check-fresh-debian: debootstrap minbase bookworm: $(secs "$t0") s"
if chroot "$ROOT" sh -c 'command -v make' >/dev/null; then
	echo "check-fresh-debian: this root has make already; the check would prove nothing" >&2
	exit 1
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mkdir -p "$ROOT/src/thaw"
git archive HEAD | tar -x -C "$ROOT/src/thaw"

# inside CMD: runs CMD with /bin/sh in /src/thaw of the root, as its root.
# The mounts live in the namespace only: nothing to undo on this machine.
inside() {
	unshare --mount --propagation private --fork /bin/sh -euc '
		root=$1
		shift
		mount --bind "$root" "$root"
		mount -t proc proc "$root/proc"
		mount --rbind /sys "$root/sys"
		mount --rbind /dev "$root/dev"
		cd "$root"
		mkdir -p .oldroot
		pivot_root . .oldroot
		cd /
		umount -l /.oldroot 2>/dev/null || true
		exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 "$@"
	' sh "$ROOT" /bin/sh -c "cd /src/thaw && $1"
}

rc=0
run() { # name command
	local start
	start=$(date +%s)
	echo "check-fresh-debian: $1 ..."
	if inside "$2" >"$LOGS/$1.log" 2>&1; then
		echo "check-fresh-debian: $1: ok in $(secs "$start") s"
	else
		echo "check-fresh-debian: $1: FAILED (rc=$?) after $(secs "$start") s; last lines:"
		tail -n 40 "$LOGS/$1.log" | sed 's/^/    /'
		rc=1
	fi
	# the line that says what happened: tests/run.sh's closing line, else the last
	{ grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOGS/$1.log" || tail -n 1 "$LOGS/$1.log"; } |
		tail -n 1 | sed 's/^/    /'
}
run setup ./setup
((rc == 0)) && run make-test "make test"
echo "check-fresh-debian: total $(secs "$t0") s; logs in $LOGS"
exit $rc
