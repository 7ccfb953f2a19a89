#!/usr/bin/env bash
# Benchmark: issue N certificates (default 50) on the local environment with a
# release build. Prints wall time, CPU, peak RSS and Route53 calls per
# certificate. Results are recorded in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --release --bin certkeeper --example bench
CERTKEEPER_BIN="$PWD/target/release/certkeeper" exec target/release/examples/bench "$@"
