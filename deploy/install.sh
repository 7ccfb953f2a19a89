#!/usr/bin/env bash
# Installs certkeeper on a Debian VM: a dedicated `certkeeper` user without
# sudo, /etc/certkeeper (settings, 0750 root:certkeeper), the state dir
# /var/lib/certkeeper (0700, managed by systemd's StateDirectory), the
# binary, and the daily timer. Run as root from a clone, after
# `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/certkeeper
[ -x "$bin" ] || { echo "build first: cargo build --release --locked" >&2; exit 1; }

id certkeeper >/dev/null 2>&1 || useradd --system --home-dir /var/lib/certkeeper --shell /usr/sbin/nologin certkeeper
install -m 0755 "$bin" /usr/local/bin/certkeeper
install -d -m 0750 -o root -g certkeeper /etc/certkeeper
[ -f /etc/certkeeper/certkeeper.yaml ] || install -m 0640 -o root -g certkeeper config/certkeeper.yaml /etc/certkeeper/certkeeper.yaml
install -d -m 0700 -o certkeeper -g certkeeper /var/lib/certkeeper
install -m 0644 systemd/certkeeper-once.service systemd/certkeeper.timer /etc/systemd/system/
install -d -m 0755 /usr/share/doc/certkeeper
install -m 0644 README.md /usr/share/doc/certkeeper/README.md

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now certkeeper.timer
  echo "installed; next run: $(systemctl list-timers certkeeper.timer --no-legend | awk '{print $1, $2, $3}')"
else
  echo "installed; enable with: systemctl enable --now certkeeper.timer"
fi
echo "edit /etc/certkeeper/certkeeper.yaml, then check with: sudo -u certkeeper certkeeper run --once --config /etc/certkeeper/certkeeper.yaml"
