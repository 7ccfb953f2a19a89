#!/usr/bin/env bash
# Boots Debian 12's systemd (252) in systemd-nspawn and checks certkeeper as
# a user installs it: the .deb (enabled, not started; configured; reboot;
# issuing from inside; READY, STATUS, watchdog; reload; journal priorities;
# the certkeeper user's limits; hardening; man page; upgrade; stop; remove;
# purge), then `deploy/install.sh --timer` from a source tree (the timer
# fires the oneshot, not the daemon) and `deploy/install.sh` (the service,
# active after a reboot). Pebble, moto and the DNS responder run on the
# host's loopback (examples/hostenv.rs), with the config repo served by a
# real sshd; the container shares the host's network.
#
# As root, after `cargo build --release --locked`:  deploy/local/boot-test.sh
# The bookworm rootfs is cached in $CERTKEEPER_TEST_CACHE
# (/var/cache/certkeeper-test) and built with mmdebstrap when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

test_name=boot-test
. deploy/local/lib.sh
apt_missing mmdebstrap:mmdebstrap systemd-nspawn:systemd-container nsenter:util-linux \
  lintian:lintian /usr/sbin/sshd:openssh-server curl:curl pgrep:procps openssl:openssl
[ -x target/release/certkeeper ] || { echo "boot-test: build first: cargo build --release --locked" >&2; exit 1; }
cargo build --locked --quiet --example hostenv

cache=${CERTKEEPER_TEST_CACHE:-/var/cache/certkeeper-test}
packages=systemd-sysv,dbus,ca-certificates,libssl3,zlib1g,adduser,man-db,sudo
tarball="$cache/rootfs-bookworm-$(echo "$packages" | sha256sum | cut -c1-12).tar"
if [ ! -s "$tarball" ]; then
  echo "boot-test: building the bookworm rootfs (mmdebstrap)"
  mkdir -p "$cache"
  mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" bookworm "$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
fi

work=$(mktemp -d /var/tmp/certkeeper-boot.XXXXXX)
nspawn_pid=
cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
  fi
  stop_hostenv
  rm -rf "$work"
}
trap cleanup EXIT

# The two packages: the release version and a newer one for the upgrade.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb_old=$(bash deploy/debian/build.sh --out "$work/debs")
deb_new=$(bash deploy/debian/build.sh --version "$version+boottest1" --out "$work/debs")

start_hostenv

on_failure() {
  if [ -n "${leader:-}" ]; then
    echo "    the service's journal, last lines:"
    inside journalctl -q -u certkeeper.service -u certkeeper-once.service -n 12 -o cat 2>&1 | cut -c1-400 | sed 's/^/      /'
  fi
}

rootfs=
boot() {
  systemd-nspawn --quiet -D "$rootfs" -b --register=no --keep-unit --console=pipe </dev/null >"$work/console.log" 2>&1 &
  nspawn_pid=$!
  leader=
  for _ in $(seq 100); do
    leader=$(pgrep -P "$nspawn_pid" -x systemd || true)
    [ -n "$leader" ] && break
    sleep 0.2
  done
  [ -n "$leader" ] || { echo "boot-test: no systemd in the container"; cat "$work/console.log"; return 1; }
  local state
  state=$(timeout 120 nsenter -t "$leader" -a systemctl is-system-running --wait 2>/dev/null || true)
  echo "booted: $state"
}
inside() { nsenter -t "$leader" -a -- "$@"; }
shutdown_container() { # poweroff | reboot
  inside systemctl "$1" || true
  for _ in $(seq 120); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
  wait "$nspawn_pid" 2>/dev/null || true
  nspawn_pid=
  leader=
}
fresh_rootfs() {
  # One unpacked rootfs at a time: the previous one is gone (its container
  # is powered off) before the next is unpacked.
  [ -z "$rootfs" ] || rm -rf "$rootfs"
  rootfs="$work/rootfs-$1"
  mkdir -p "$rootfs"
  tar -C "$rootfs" -xf "$tarball"
}
configure() {
  install -m 0640 -g "$(inside id -g certkeeper)" "$guest/certkeeper.yaml" "$rootfs/etc/certkeeper/certkeeper.yaml"
  install -m 0644 "$guest/pebble-ca.pem" "$rootfs/etc/certkeeper/pebble-ca.pem"
  install -m 0600 "$guest/environment" "$rootfs/etc/certkeeper/environment"
  install -m 0640 -g "$(inside id -g certkeeper)" "$guest/repo_ed25519" "$rootfs/etc/certkeeper/repo_ed25519"
  install -m 0644 "$guest/known_hosts" "$rootfs/etc/certkeeper/known_hosts"
}
prop() { inside systemctl show -P "$2" "$1"; }
issued() { # name: the live set exists in the container and chains to Pebble's root
  local live="$rootfs/var/lib/certkeeper/live/$1"
  [ -s "$live/cert.pem" ] && openssl verify -CAfile "$work/env/issuing-root.pem" -untrusted "$live/chain.pem" "$live/cert.pem"
}
journal_runs() { inside journalctl -q -u certkeeper.service -o cat | grep -c '"event":"run.finished"' || true; }

echo "== the .deb"
check "lintian reports no errors or warnings" lintian --fail-on error,warning "$deb_old"
fresh_rootfs deb
cp "$deb_old" "$deb_new" "$rootfs/root/"
boot
check "dpkg -i installs the package" inside dpkg -i "/root/$(basename "$deb_old")"
check "the service is enabled by the package" equals "$(inside systemctl is-enabled certkeeper.service)" enabled
check "the service is not started before it is configured" equals "$(inside systemctl is-active certkeeper.service || true)" inactive
check "the settings are a conffile, 0640 root:certkeeper" equals "$(inside stat -c '%a %U %G' /etc/certkeeper/certkeeper.yaml)" "640 root certkeeper"
check "the state dir is 0700 certkeeper" equals "$(inside stat -c '%a %U' /var/lib/certkeeper)" "700 certkeeper"
check "systemd-analyze verify is clean on the installed units" \
  bash -c "out=\$(nsenter -t $leader -a -- systemd-analyze verify /lib/systemd/system/certkeeper.service /lib/systemd/system/certkeeper-once.service /lib/systemd/system/certkeeper.timer 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
for unit in certkeeper.service certkeeper-once.service; do
  check "systemd-analyze security $unit: exposure 2.0 or lower" inside systemd-analyze security --threshold=20 --no-pager "$unit"
done
check "man certkeeper" bash -c "nsenter -t $leader -a -- env MANPAGER=cat MANWIDTH=80 man certkeeper | grep -q 'Keeps TLS certificates'"
check "bash completion installed" test -s "$rootfs/usr/share/bash-completion/completions/certkeeper"
check "the certkeeper user has no login shell" equals "$(inside getent passwd certkeeper | cut -d: -f7)" /usr/sbin/nologin
check "the certkeeper user has no sudo" bash -c "nsenter -t $leader -a -- sudo -l -U certkeeper | grep -q 'not allowed'"
for dir in /etc /etc/certkeeper /usr/bin /var/lib /root /srv; do
  check "the certkeeper user cannot write in $dir" bash -c "! nsenter -t $leader -a -- runuser -u certkeeper -- touch $dir/probe"
done
check "the certkeeper user writes its state dir" inside runuser -u certkeeper -- touch /var/lib/certkeeper/probe
rm -f "$rootfs/var/lib/certkeeper/probe"

configure
mkdir -p "$rootfs/etc/systemd/system/certkeeper.service.d"
printf '[Service]\nWatchdogSec=10s\n' > "$rootfs/etc/systemd/system/certkeeper.service.d/watchdog.conf"
shutdown_container reboot
boot
started=$SECONDS
check "after a reboot the service is active (Type=notify: READY=1 reached)" equals "$(prop certkeeper.service ActiveState)/$(prop certkeeper.service SubState)" active/running
check "the watchdog drop-in is in force" equals "$(prop certkeeper.service WatchdogUSec)" 10s
check "STATUS= text is set" bash -c "nsenter -t $leader -a -- systemctl show -P StatusText certkeeper.service | grep -q ."
check "a certificate is issued from inside (www)" eventually 150 issued www
check "a wildcard+apex certificate is issued from inside" eventually 60 issued wildcard
check "it is published to S3" equals "$(ask s3 certs/www/cert.pem)" "s3 present"
check "/healthz answers" eventually 30 curl -sf "http://127.0.0.1:$http_port/healthz"
check "journal: JSON lines with the level as PRIORITY (info = 6)" bash -c "
  nsenter -t $leader -a -- journalctl -q -u certkeeper.service -o json | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
mine = [r for r in rows if str(r.get(\"MESSAGE\", \"\")).startswith(\"{\")]
assert mine, \"no JSON log lines in the journal\"
for r in mine:
    level = json.loads(r[\"MESSAGE\"])[\"level\"]
    want = {\"ERROR\": \"3\", \"WARN\": \"4\", \"INFO\": \"6\", \"DEBUG\": \"7\", \"TRACE\": \"7\"}[level]
    assert r[\"PRIORITY\"] == want, (level, r[\"PRIORITY\"])
assert any(json.loads(r[\"MESSAGE\"]).get(\"event\") == \"cert.issued\" for r in mine)
print(len(mine), \"lines\")
'"
pid_before=$(prop certkeeper.service MainPID)
runs_before=$(journal_runs)
ask add api api.example.test >/dev/null
check "systemctl reload exits 0" inside systemctl reload certkeeper.service
check "reload (SIGHUP) fetched the repo and ran: the new certificate is issued" eventually 90 issued api
check "reload ran once more" bash -c "[ \$(nsenter -t $leader -a -- journalctl -q -u certkeeper.service -o cat | grep -c '\"event\":\"run.finished\"') -gt $runs_before ]"
# A minute with a 10 s watchdog, runs included.
while [ $((SECONDS - started)) -lt 65 ]; do sleep 2; done
check "the watchdog never fired over a minute" equals "$(prop certkeeper.service MainPID)/$(prop certkeeper.service NRestarts)" "$pid_before/0"
check "no watchdog timeout in the journal" bash -c "! nsenter -t $leader -a -- journalctl -q -u certkeeper.service | grep -qi watchdog"

serial_before=$(sha256sum "$rootfs/var/lib/certkeeper/live/www/cert.pem" 2>&1 | cut -c1-64)
check "dpkg -i of a newer version upgrades" inside dpkg -i "/root/$(basename "$deb_new")"
check "the upgrade restarted the daemon" bash -c "[ \"\$(nsenter -t $leader -a -- systemctl show -P MainPID certkeeper.service)\" != $pid_before ] && nsenter -t $leader -a -- systemctl is-active certkeeper.service"
check "the upgrade kept the state" equals "$(sha256sum "$rootfs/var/lib/certkeeper/live/www/cert.pem" | cut -c1-64)" "$serial_before"
check "the upgrade kept the edited settings" cmp "$guest/certkeeper.yaml" "$rootfs/etc/certkeeper/certkeeper.yaml"
check "systemctl stop exits cleanly" inside systemctl stop certkeeper.service
check "the daemon exited 0" equals "$(prop certkeeper.service Result)/$(prop certkeeper.service ExecMainStatus)" success/0
check "no _acme-challenge record is left" equals "$(ask records)" "records 0"
{ inside journalctl -q -u certkeeper.service -o cat; cat "$rootfs/var/lib/certkeeper/status.json"; } >"$work/said.txt" 2>&1
check "no secret in the journal or the status file (AWS key, deploy key, private keys)" \
  secrets_absent "$work/said.txt" "$(aws_secret_file)" "$guest/repo_ed25519" \
  "$rootfs/var/lib/certkeeper/live/www/privkey.pem" "$rootfs/var/lib/certkeeper/live/wildcard/privkey.pem"
check "dpkg -r removes the package" inside dpkg -r certkeeper
check "remove keeps the state and the user" bash -c "test -s $rootfs/var/lib/certkeeper/live/www/cert.pem && nsenter -t $leader -a -- getent passwd certkeeper"
check "dpkg -P purges" inside dpkg -P certkeeper
check "purge removes the user, the settings and the state" bash -c "! nsenter -t $leader -a -- getent passwd certkeeper && test ! -e $rootfs/var/lib/certkeeper && test ! -e $rootfs/etc/certkeeper"
shutdown_container poweroff

echo "== deploy/install.sh from a source tree"
fresh_rootfs source
mkdir -p "$rootfs/root/certkeeper/target/release"
cp -r deploy systemd config README.md "$rootfs/root/certkeeper/"
cp target/release/certkeeper "$rootfs/root/certkeeper/target/release/"
boot
check "install.sh --timer" inside bash /root/certkeeper/deploy/install.sh --timer
check "the timer is enabled" equals "$(inside systemctl is-enabled certkeeper.timer)" enabled
check "the timer triggers the oneshot, not the daemon" equals "$(prop certkeeper.timer Triggers)" certkeeper-once.service
check "the daemon is not enabled with --timer" bash -c "! nsenter -t $leader -a -- systemctl is-enabled --quiet certkeeper.service"
configure
mkdir -p "$rootfs/etc/systemd/system/certkeeper.timer.d"
printf '[Timer]\nOnCalendar=\nRandomizedDelaySec=0\nOnActiveSec=2s\n' > "$rootfs/etc/systemd/system/certkeeper.timer.d/soon.conf"
inside systemctl daemon-reload
inside systemctl restart certkeeper.timer
check "the timer fired the oneshot, which exited 0" eventually 150 bash -c "[ \"\$(nsenter -t $leader -a -- systemctl show -P Result,ExecMainStatus,ExecMainExitTimestampMonotonic certkeeper-once.service | tr '\n' ' ')\" != '' ] && nsenter -t $leader -a -- systemctl show -P ExecMainExitTimestampMonotonic certkeeper-once.service | grep -qv '^0$' && [ \"\$(nsenter -t $leader -a -- systemctl show -P Result certkeeper-once.service)\" = success ] && [ \"\$(nsenter -t $leader -a -- systemctl show -P ExecMainStatus certkeeper-once.service)\" = 0 ]"
check "the oneshot issued the certificates" issued www
check "the daemon never ran" equals "$(inside systemctl is-active certkeeper.service || true)" inactive
check "install.sh (the service) replaces the timer" inside bash /root/certkeeper/deploy/install.sh
check "the service is enabled, the timer not" bash -c "[ \"\$(nsenter -t $leader -a -- systemctl is-enabled certkeeper.service)\" = enabled ] && ! nsenter -t $leader -a -- systemctl is-enabled --quiet certkeeper.timer"
check "man certkeeper (source install)" bash -c "nsenter -t $leader -a -- env MANPAGER=cat man certkeeper | grep -q 'Keeps TLS certificates'"
shutdown_container reboot
boot
check "after a reboot the source-installed service is active" equals "$(prop certkeeper.service ActiveState)" active
check "systemctl stop (source install) exits 0" bash -c "nsenter -t $leader -a -- systemctl stop certkeeper.service && [ \"\$(nsenter -t $leader -a -- systemctl show -P Result certkeeper.service)\" = success ]"
shutdown_container poweroff

echo "boot-test: $(du -h "$deb_old" | cut -f1) .deb ($(stat -c %s "$deb_old") bytes)"
finish_checks
