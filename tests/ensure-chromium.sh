#!/usr/bin/env bash
# The dashboard's browser test (tests/e2e/dashboard.test.mjs) drives Debian's Chromium through
# playwright-core (no browser download). Install it when it is missing: apt-get as root.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "ensure-chromium: chromium is missing; install Debian's 'chromium' package (apt-get install chromium)" >&2
  exit 1
fi
echo "ensure-chromium: installing chromium from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium >&2
