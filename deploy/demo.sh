#!/usr/bin/env bash
# Sets everything up and starts the demo hotline: SIP on 127.0.0.1:5060 (UDP and
# TCP), health on http://127.0.0.1:8080/healthz. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
cargo build --release
target/release/kefu check dialplans
# Customer data is encrypted at rest: the first run creates the key (data/kefu.keys;
# keep a copy of it somewhere safe, backups cannot be read without it).
if [ -z "${KEFU_KEYS:-}" ] && [ ! -f data/kefu.keys ]; then
  target/release/kefu keys init
fi
# The first run also makes an admin to sign in with (POST /api/login); the
# generated password is printed once. Change it with POST /api/session/password.
if [ -z "$(target/release/kefu users list)" ]; then
  target/release/kefu users add admin --role admin
fi
exec target/release/kefu serve "$@"
