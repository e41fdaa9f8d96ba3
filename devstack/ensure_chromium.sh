#!/usr/bin/env bash
# Makes sure Debian's chromium is at /usr/bin/chromium for the browser tests (make e2e).
# A no-op when it is there. Otherwise installs the distribution package with apt-get,
# non-interactively; Playwright's own browser download (`playwright install`) is never used,
# so the tests run the browser the system's package manager keeps patched.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: $CHROMIUM is missing and apt-get is not available;" >&2
  echo "  install Chromium so that $CHROMIUM exists, then run make e2e again." >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "ensure_chromium: installing chromium needs root (or sudo)." >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure_chromium: installing Debian's chromium package (first run only)" >&2
$SUDO apt-get update
$SUDO apt-get install -y chromium

if [ ! -x "$CHROMIUM" ]; then
  echo "ensure_chromium: apt-get finished but $CHROMIUM is still missing." >&2
  exit 1
fi
