#!/usr/bin/env bash
# Lints deploy/jenkins/Jenkinsfile with npm-groovy-lint (CodeNarc, the
# Jenkins ruleset; no Jenkins can be installed here). Fails on any warning.
# Installs node/npm and a Java runtime (apt) when missing, and
# npm-groovy-lint into $CERTKEEPER_TEST_CACHE (/var/cache/certkeeper-test).
# The JUnit report's side of Jenkins is checked by tests/e2e/status.rs against
# tests/support/junit.xsd.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v java >/dev/null || need+=(default-jre-headless)
if [ ${#need[@]} -gt 0 ]; then
  echo "jenkins-check: installing ${need[*]} (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 14.x is the last line that runs on Debian 12's node 18.
version=14.6.0
prefix=${CERTKEEPER_TEST_CACHE:-/var/cache/certkeeper-test}/npm-groovy-lint-$version
lint="$prefix/node_modules/.bin/npm-groovy-lint"
if [ ! -x "$lint" ]; then
  echo "jenkins-check: installing npm-groovy-lint $version (npm)"
  mkdir -p "$prefix"
  npm install --silent --no-audit --no-fund --prefix "$prefix" "npm-groovy-lint@$version" >/dev/null
fi
"$lint" --noserver --failon warning --output txt deploy/jenkins/Jenkinsfile
echo "jenkins-check: deploy/jenkins/Jenkinsfile lints clean (npm-groovy-lint $version)"
