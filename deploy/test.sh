#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests (the
# integration tests drive the real binary with SIPp over loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
# An independent OpenAI-compatible speech server, for the remote-speech tests.
deploy/speech-server.sh
# A PostgreSQL server for the store and server tests: the one at KEFU_TEST_POSTGRES if it
# answers, else a private cluster this script starts now and stops when it exits.
source deploy/test-postgres.sh
kefu_pg_start
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
