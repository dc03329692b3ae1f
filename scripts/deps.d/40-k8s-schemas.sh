#!/usr/bin/env bash
# The Kubernetes, Knative and KEDA schemas that tests/e2e/test_k8s.py checks
# `thaw k8s` output against, offline: npm packages pinned by
# tests/k8s/package-lock.json (kubernetes-models, @kubernetes-models/validate,
# @kubernetes-models/knative, @kubernetes-models/keda, yaml), installed with
# `npm ci` into tests/k8s/node_modules (ignored by git).
#
# node and npm come from Debian (nodejs, npm) when missing, and so does
# python3-seccomp (tests/k8s/seccomp_exec.py). Idempotent: a
# stamp holding the lock file's hash skips `npm ci` when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/../../tests/k8s"

missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# tests/k8s/seccomp_exec.py installs deploy/seccomp-thaw.json around the daemon
/usr/bin/python3 -c 'import seccomp' 2>/dev/null || missing+=(python3-seccomp)
if ((${#missing[@]})); then
	echo "k8s-schemas: installing ${missing[*]} from Debian"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

stamp=node_modules/.thaw-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	echo "k8s-schemas: tests/k8s/node_modules matches package-lock.json; nothing to do"
	exit 0
fi
# the packages declare node >= 22; checked here with node 20 (Debian 12 ships
# 18, not tried); engine-strict is off, so npm only warns
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
echo "k8s-schemas: installed $(node -e 'const l=require("./package-lock.json");console.log(Object.keys(l.packages).filter(k=>k).length)') packages into tests/k8s/node_modules"
