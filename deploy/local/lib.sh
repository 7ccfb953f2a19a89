# Shared by the deployment tests (boot-test.sh, image-test.sh); sourced,
# not run. Each test sets `test_name` (its prefix in messages) and `work` (its
# scratch dir) before using these.

# apt_missing CMD:PACKAGE...: installs the packages whose command is missing
# (a CMD starting with / is a path tested with -x).
apt_missing() {
  local need=() pair cmd
  for pair in "$@"; do
    cmd=${pair%%:*}
    if [ "${cmd#/}" != "$cmd" ]; then [ -x "$cmd" ] || need+=("${pair#*:}")
    else command -v "$cmd" >/dev/null || need+=("${pair#*:}"); fi
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "$test_name: installing ${need[*]} (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# The loopback environment (examples/hostenv.rs) in $work/env: Pebble,
# moto, the DNS responder and sshd; `ask` talks to it, stop_hostenv ends it.
start_hostenv() {
  coproc HOSTENV { exec target/debug/examples/hostenv "$work/env"; }
  HOSTENV_PID=$HOSTENV_PID
  local ready=
  read -r -t 120 ready <&"${HOSTENV[0]}" || true
  [ "$ready" = ready ] || { echo "$test_name: the loopback environment did not start" >&2; exit 1; }
  guest="$work/env/guest"
  http_port=$(cat "$guest/http-port")
}
ask() { echo "$*" >&"${HOSTENV[1]}"; local answer; read -r -t 60 answer <&"${HOSTENV[0]}"; echo "$answer"; }
stop_hostenv() {
  if [ -n "${HOSTENV_PID:-}" ]; then
    echo quit >&"${HOSTENV[1]}" 2>/dev/null || true
    wait "$HOSTENV_PID" 2>/dev/null || true
    HOSTENV_PID=
  fi
}

# check DESCRIPTION COMMAND...: one named check; its output is shown when
# it fails, and then `on_failure` too, when the test defines it.
passed=0
failed=0
check() {
  local what=$1; shift
  if "$@" >"$work/check.out" 2>&1; then
    passed=$((passed + 1)); echo "ok: $what"
  else
    failed=$((failed + 1)); echo "FAILED: $what"; sed 's/^/    /' "$work/check.out" | tail -n 30
    if declare -F on_failure >/dev/null; then on_failure; fi
  fi
}
equals() { [ "$1" = "$2" ] || { echo "got '$1', expected '$2'"; return 1; }; }
# eventually SECONDS COMMAND...: until it succeeds, once a second.
eventually() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $deadline ] || return 1; sleep 1; done
}
finish_checks() {
  echo "$test_name: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# secrets_absent OUTPUT FILE...: fails when any line (20 characters or
# more, PEM armour aside) of the secret files appears in OUTPUT.
secrets_absent() {
  local out=$1 f line; shift
  for f in "$@"; do
    [ -s "$f" ] || { echo "no secret file $f to look for"; return 1; }
    while IFS= read -r line; do
      case $line in -----*) continue ;; esac
      [ ${#line} -ge 20 ] || continue
      if grep -qF -- "$line" "$out"; then echo "a line of $f is in $out"; return 1; fi
    done <"$f"
  done
}

# The AWS secret key the guest runs with, alone in a file.
aws_secret_file() {
  sed -n 's/^AWS_SECRET_ACCESS_KEY=//p' "$guest/environment" >"$work/aws-secret"
  echo "$work/aws-secret"
}
