#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests (the
# integration tests drive the real binary with SIPp over loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
