#!/usr/bin/env bash
# Builds the container image without a Docker daemon (buildah, the
# Dockerfile's `prebuilt` target with the host's release binary) and runs
# it with podman against Pebble, moto and the DNS responder on the host's
# loopback (examples/hostenv.rs): `run --once` issues and publishes, the
# daemon's /healthz answers, the process is not root, the state volume is
# 0700, SIGTERM exits 0. Prints the image's size.
#
# As root, after `cargo build --release --locked`:  deploy/local/image-test.sh
# No registry is needed: debian:bookworm-slim is made locally with
# mmdebstrap when missing (cached in $CERTKEEPER_TEST_CACHE).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"

test_name=image-test
. deploy/local/lib.sh
apt_missing buildah:buildah podman:podman runc:runc mmdebstrap:mmdebstrap curl:curl
[ -x target/release/certkeeper ] || { echo "image-test: build first: cargo build --release --locked" >&2; exit 1; }
cargo build --locked --quiet --example hostenv

# The base image the Dockerfile names, made here: minbase without docs,
# man pages and locales, /usr merged (usr-is-merged, not usrmerge and its perl), as
# the official slim image is.
base=docker.io/library/debian:bookworm-slim
if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  cache=${CERTKEEPER_TEST_CACHE:-/var/cache/certkeeper-test}
  mkdir -p "$cache"
  slim="$cache/bookworm-slim-3.tar"
  if [ ! -s "$slim" ]; then
    echo "image-test: building $base (mmdebstrap)"
    mmdebstrap --quiet --format=tar --variant=minbase \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --include=usr-is-merged --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      bookworm "$slim.tmp"
    mv "$slim.tmp" "$slim"
  fi
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$slim" /
  buildah config --cmd bash "$ctr"
  buildah commit --quiet "$ctr" "$base" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

work=$(mktemp -d /var/tmp/certkeeper-image.XXXXXX)
tag=localhost/certkeeper:image-test-$$
name=certkeeper-image-test-$$
volume=certkeeper-image-test-$$
podman=(podman --runtime runc --cgroup-manager cgroupfs --events-backend file)
run_opts=(--network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
cleanup() {
  "${podman[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  "${podman[@]}" volume rm -f "$volume" >/dev/null 2>&1 || true
  "${podman[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
  stop_hostenv
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/context/dist"
cp Dockerfile "$work/context/"
install -m 0755 target/release/certkeeper "$work/context/dist/certkeeper"
strip "$work/context/dist/certkeeper"
echo "image-test: buildah bud --target prebuilt"
buildah bud --quiet --isolation=chroot --pull=false --target prebuilt -t "$tag" "$work/context" >/dev/null

start_hostenv
# The image's user (10001) reads the settings, as from a read-only volume.
chmod -R a+rX "$guest"
chmod 0644 "$guest/environment"
mounts=(-v "$volume:/var/lib/certkeeper" -v "$guest:/etc/certkeeper:ro" --env-file "$guest/environment")


check "run --once in the container issues and publishes (exit 0)" \
  "${podman[@]}" run --rm "${run_opts[@]}" "${mounts[@]}" "$tag" run --once --config /etc/certkeeper/certkeeper.yaml
check "the certificate is in S3" equals "$(ask s3 certs/www/cert.pem)" "s3 present"
check "the state volume is 0700, owned by the image's user" equals \
  "$("${podman[@]}" run --rm "${run_opts[@]}" "${mounts[@]}" --entrypoint stat "$tag" -c '%a %u' /var/lib/certkeeper)" "700 10001"
"${podman[@]}" run -d --name "$name" "${run_opts[@]}" "${mounts[@]}" "$tag" >/dev/null
check "the daemon's /healthz answers" eventually 60 curl -sf "http://127.0.0.1:$http_port/healthz"
check "the daemon is not root" equals "$("${podman[@]}" exec "$name" sh -c 'id -u')" 10001
check "SIGTERM stops it" "${podman[@]}" stop -t 60 "$name"
check "and it exits 0" equals "$("${podman[@]}" inspect -f '{{.State.ExitCode}}' "$name")" 0
check "no _acme-challenge record is left" equals "$(ask records)" "records 0"
"${podman[@]}" logs "$name" >"$work/said.txt" 2>&1 || true
check "no secret in the container's logs (AWS key, deploy key)" \
  secrets_absent "$work/said.txt" "$(aws_secret_file)" "$guest/repo_ed25519"
size=$("${podman[@]}" image inspect -f '{{.Size}}' "$tag")
echo "image-test: image size $((size / 1024 / 1024)) MiB ($size bytes; base $(( $("${podman[@]}" image inspect -f '{{.Size}}' "$base") / 1024 / 1024 )) MiB)"
finish_checks
