#!/usr/bin/env bash
# Benchmark: issue N certificates (default 50) on the local environment with a
# release build. Prints wall time, CPU, peak RSS and Route53 calls per
# certificate. With --certbot, also renews the same names with certbot +
# certbot-dns-route53 (installed into target/bench-venv) and prints the ratio.
# `bench.sh service [N] [--runs R]`: the daemon's idle memory and CPU (after
# start, a run of N, and R more SIGHUP-triggered runs), and `status`
# over 10,000 certificates. `bench.sh watch [N]`: N watched certificates in S3. Results are recorded in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
for arg in "$@"; do
  if [ "$arg" = "--certbot" ] && [ ! -x target/bench-venv/bin/certbot ]; then
    echo "bench: installing certbot + certbot-dns-route53 into target/bench-venv (pip)"
    python3 -m venv target/bench-venv
    target/bench-venv/bin/pip install --quiet --disable-pip-version-check certbot certbot-dns-route53
  fi
done
if [ "${1:-}" = "watch" ]; then
  shift
  cargo build --locked --release --bin certkeeper --example bench_watch
  CERTKEEPER_BIN="$PWD/target/release/certkeeper" exec target/release/examples/bench_watch "$@"
fi
if [ "${1:-}" = "service" ]; then
  shift
  cargo build --locked --release --bin certkeeper --example bench_service
  CERTKEEPER_BIN="$PWD/target/release/certkeeper" exec target/release/examples/bench_service "$@"
fi
cargo build --locked --release --bin certkeeper --example bench
CERTBOT_BIN="$PWD/target/bench-venv/bin/certbot" \
CERTKEEPER_BIN="$PWD/target/release/certkeeper" exec target/release/examples/bench "$@"
