#!/usr/bin/env bash
# Runs certkeeper once against a local environment: Pebble (ACME CA), moto
# (Route53 + S3) and a DNS responder serving moto's zones, all on loopback,
# with the example config repo (config/repo-example). Prints where the
# certificates and the status file went. Files stay under .local/demo/.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --bin certkeeper --example localenv
CERTKEEPER_LOG="${CERTKEEPER_LOG:-info}" CERTKEEPER_BIN="$PWD/target/debug/certkeeper" exec target/debug/examples/localenv "$PWD/.local/demo" "$@"
