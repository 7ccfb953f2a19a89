#!/usr/bin/env bash
# Installs certkeeper on a Debian VM: a dedicated `certkeeper` user without
# sudo, /etc/certkeeper (settings, 0750 root:certkeeper), the state dir
# /var/lib/certkeeper (0700, managed by systemd's StateDirectory), the
# binary, and either the long-running service (default) or, with --timer,
# the daily timer + oneshot pair. Run as root from a clone, after
# `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=service
[ "${1:-}" = "--timer" ] && mode=timer

bin=target/release/certkeeper
[ -x "$bin" ] || { echo "build first: cargo build --release --locked" >&2; exit 1; }

# The ACME CA and AWS are reached over TLS with the system's roots.
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  echo "installing ca-certificates (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null; }
fi

id certkeeper >/dev/null 2>&1 || useradd --system --home-dir /var/lib/certkeeper --shell /usr/sbin/nologin certkeeper
install -m 0755 "$bin" /usr/local/bin/certkeeper
install -d -m 0750 -o root -g certkeeper /etc/certkeeper
[ -f /etc/certkeeper/certkeeper.yaml ] || install -m 0640 -o root -g certkeeper config/certkeeper.yaml /etc/certkeeper/certkeeper.yaml
install -d -m 0700 -o certkeeper -g certkeeper /var/lib/certkeeper
# The units name the packaged binary (/usr/bin); a source install lives in /usr/local/bin.
for unit in certkeeper.service certkeeper-once.service certkeeper.timer; do
  sed 's|/usr/bin/certkeeper|/usr/local/bin/certkeeper|g' "systemd/$unit" > "/etc/systemd/system/$unit.tmp"
  chmod 0644 "/etc/systemd/system/$unit.tmp"
  mv "/etc/systemd/system/$unit.tmp" "/etc/systemd/system/$unit"
done
install -d -m 0755 /usr/share/doc/certkeeper /usr/local/share/man/man1 \
  /usr/local/share/bash-completion/completions /usr/local/share/zsh/site-functions /usr/local/share/fish/vendor_completions.d
/usr/local/bin/certkeeper generate man | gzip -9n > /usr/local/share/man/man1/certkeeper.1.gz
/usr/local/bin/certkeeper generate bash > /usr/local/share/bash-completion/completions/certkeeper
/usr/local/bin/certkeeper generate zsh > /usr/local/share/zsh/site-functions/_certkeeper
/usr/local/bin/certkeeper generate fish > /usr/local/share/fish/vendor_completions.d/certkeeper.fish
install -m 0644 README.md /usr/share/doc/certkeeper/README.md

if [ "$mode" = timer ]; then unit=certkeeper.timer; other=certkeeper.service; else unit=certkeeper.service; other=certkeeper.timer; fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  # One or the other: both would renew twice.
  systemctl disable --now "$other" >/dev/null 2>&1 || true
  systemctl enable --now "$unit"
  systemctl is-enabled --quiet "$unit" || { echo "$unit is not enabled: $(systemctl is-enabled "$unit")" >&2; exit 1; }
  echo "installed, enabled (starts at boot) and started $unit"
else
  echo "installed; enable with: systemctl enable --now $unit"
fi
echo "edit /etc/certkeeper/certkeeper.yaml, then check with: sudo -u certkeeper certkeeper run --once --config /etc/certkeeper/certkeeper.yaml"
echo "health: certkeeper status --config /etc/certkeeper/certkeeper.yaml (exit codes follow Nagios)"
