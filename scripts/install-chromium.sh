#!/bin/sh
# Debian's chromium for the market's browser test (tests/market/test_pages.py drives it through
# Playwright with executable_path=/usr/bin/chromium; never `playwright install`). Needs root.
set -e
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
/usr/bin/chromium --version || true
