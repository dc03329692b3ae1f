#!/usr/bin/env bash
# Installs everything thaw needs on Debian 12, non-interactively and
# idempotently: the packages of scripts/debian-packages.txt, then the parts
# that Debian 12 does not ship in a usable form (scripts/deps.d/*.sh, run in
# order: CRIU >= 4 among them).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/debian-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
	echo "deps: all ${#pkgs[@]} Debian packages present"
fi
for step in scripts/deps.d/*.sh; do
	[ -e "$step" ] || continue
	echo "deps: $step"
	bash "$step"
done
