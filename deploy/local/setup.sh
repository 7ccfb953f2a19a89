#!/usr/bin/env bash
# Installs what certkeeper's build, tests, demo and bench need on a Debian 12
# machine, as root. Idempotent: only installs what is missing.
set -euo pipefail

need_apt=()
command -v pebble >/dev/null 2>&1 || need_apt+=(pebble)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
[ -x /usr/sbin/named ] || need_apt+=(bind9)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
# keytool checks the PKCS#12 bundles the way Java reads them.
command -v keytool >/dev/null 2>&1 || need_apt+=(default-jre-headless)
# A real forward proxy for the egress tests.
command -v tinyproxy >/dev/null 2>&1 || need_apt+=(tinyproxy)
# The Public Suffix List: registered domains for the CA's per-domain limit.
[ -f /usr/share/publicsuffix/public_suffix_list.dat ] || need_apt+=(publicsuffix)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import moto, flask, flask_cors' >/dev/null 2>&1; then
  echo "setup: installing moto[server] (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'moto[server]>=5,<6'
  hash -r
fi
# The JUnit report is checked against the schema Jenkins' junit plugin reads.
if ! python3 -c 'import xmlschema' >/dev/null 2>&1; then
  echo "setup: installing xmlschema (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'xmlschema>=3,<5' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'xmlschema>=3,<5'
fi
# pyenv installs console scripts behind shims that need a rehash.
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
  fi
fi

command -v moto_server >/dev/null 2>&1 || { echo "setup: moto_server still not on PATH" >&2; exit 1; }
echo "setup: ok (pebble $(command -v pebble), moto_server $(command -v moto_server), $(cargo --version))"
