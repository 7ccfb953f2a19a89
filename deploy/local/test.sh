#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real
# Pebble, moto and a Route53-backed DNS responder on loopback; then, as
# root, the deployment tests on the real parts: the .deb and install.sh
# under a booted systemd (deploy/local/boot-test.sh) and the container image
# built with buildah and run with podman (deploy/local/image-test.sh). The
# Jenkinsfile is linted by deploy/local/jenkins-check.sh.
# CERTKEEPER_SKIP_DEPLOY_TESTS=1 runs the cargo tests only.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The leak test runs the demo example by its plain name, which only cargo
# build gives it.
cargo build --locked --examples
cargo test --locked --all-targets "$@"
# Jenkins' side: the Jenkinsfile linted (the JUnit report is checked
# against the junit plugin's schema by tests/e2e/status.rs).
if [ "$(id -u)" = 0 ] || { command -v npm >/dev/null && command -v java >/dev/null; }; then
  bash deploy/local/jenkins-check.sh
else
  echo "test: Jenkinsfile lint skipped (installing node and java needs root)"
fi

if [ "${CERTKEEPER_SKIP_DEPLOY_TESTS:-}" = 1 ]; then
  echo "test: deployment tests skipped (CERTKEEPER_SKIP_DEPLOY_TESTS=1)"
elif [ "$(id -u)" != 0 ]; then
  echo "test: deployment tests skipped (they need root: systemd-nspawn, buildah)"
else
  cargo build --locked --release --bin certkeeper
  bash deploy/local/boot-test.sh
  bash deploy/local/image-test.sh
fi
