#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real
# Pebble, moto and a Route53-backed DNS responder on loopback; then, as
# root, the deployment tests on the real parts: the .deb and install.sh
# under a booted systemd (deploy/local/boot-test.sh) and the container image
# built with buildah and run with podman (deploy/local/image-test.sh).
# CERTKEEPER_SKIP_DEPLOY_TESTS=1 runs the cargo tests only.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --locked --all-targets "$@"

if [ "${CERTKEEPER_SKIP_DEPLOY_TESTS:-}" = 1 ]; then
  echo "test: deployment tests skipped (CERTKEEPER_SKIP_DEPLOY_TESTS=1)"
elif [ "$(id -u)" != 0 ]; then
  echo "test: deployment tests skipped (they need root: systemd-nspawn, buildah)"
else
  cargo build --locked --release --bin certkeeper
  bash deploy/local/boot-test.sh
  bash deploy/local/image-test.sh
fi
