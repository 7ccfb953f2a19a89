#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-deny
# (deny.toml lists the advisories accepted and why). The database is a git
# repository on GitHub; where it cannot be fetched (these build machines
# reach crates.io but not github.com) the check says so and is skipped, so
# it runs wherever it can. CERTKEEPER_ADVISORY_DB=DIR uses a local clone of
# https://github.com/rustsec/advisory-db instead of GitHub's.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
db_url=https://github.com/rustsec/advisory-db
if [ -n "${CERTKEEPER_ADVISORY_DB:-}" ]; then
  # A local git clone of the database, read instead of GitHub's.
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  db=$(cd "$CERTKEEPER_ADVISORY_DB" && pwd)
  awk -v url="file://$db" -v path="$work/dbs" \
    '{print} /^\[advisories\]/ {print "db-urls = [\"" url "\"]"; print "db-path = \"" path "\""}' \
    deny.toml > "$work/deny.toml"
  config=$work/deny.toml
elif timeout 20 git ls-remote "$db_url" HEAD >/dev/null 2>&1; then
  config=deny.toml
else
  echo "advisories: skipped: the RustSec database ($db_url) cannot be fetched from here; set CERTKEEPER_ADVISORY_DB to a clone of it"
  exit 0
fi
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "advisories: installing cargo-deny (cargo install)"
  cargo install --locked --quiet cargo-deny
fi
cargo deny --locked check --config "$config" advisories
echo "advisories: ok"
