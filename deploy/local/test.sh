#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real
# Pebble, moto and a Route53-backed DNS responder on loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --locked --all-targets "$@"
