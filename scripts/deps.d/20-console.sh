#!/usr/bin/env bash
# The console's browser test drives Debian's chromium with puppeteer-core
# from the npm registry, pinned by tests/console/package-lock.json and
# installed into tests/console/node_modules (nothing global). Debian 12's
# nodejs comes without npm (a package of its own); NodeSource's brings it.
set -euo pipefail
cd "$(dirname "$0")/../../tests/console"
if ! command -v npm >/dev/null; then
	apt-get install -y -qq --no-install-recommends npm
fi
# node_modules/.thaw-lock: the lock file the modules were installed from
if cmp -s package-lock.json node_modules/.thaw-lock 2>/dev/null; then
	echo "deps: console test modules present"
	exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.thaw-lock
