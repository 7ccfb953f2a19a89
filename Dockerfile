# certkeeper in a container: `run` (the daemon) by default, state in a
# volume, settings mounted at /etc/certkeeper, non-root.
#
# From source (a Rust toolchain image builds the binary):
#
#   docker build -t certkeeper .
#
# With a binary built on the host (`cargo build --release --locked` on
# Debian 12 or another glibc 2.36 system), no toolchain in the build:
#
#   mkdir -p dist && cp target/release/certkeeper dist/
#   docker build --target prebuilt -t certkeeper .
#
# Then:
#
#   docker run -d -v certkeeper-state:/var/lib/certkeeper \
#       -v /etc/certkeeper:/etc/certkeeper:ro -p 127.0.0.1:9469:9469 certkeeper
#
# With `http: {listen: 0.0.0.0:9469}` in the settings, /healthz, /status and
# /metrics are reachable through the published port. The settings'
# state_dir must be /var/lib/certkeeper.

# The runtime: CA certificates for the ACME CA and AWS; libssl3 and zlib
# for libgit2's HTTPS; the Public Suffix List for the CA's per-domain limit;
# nothing else.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g publicsuffix \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && useradd --system --uid 10001 --home-dir /var/lib/certkeeper --shell /usr/sbin/nologin certkeeper \
 && install -d -m 0700 -o certkeeper -g certkeeper /var/lib/certkeeper
USER certkeeper
VOLUME ["/var/lib/certkeeper"]
EXPOSE 9469
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/certkeeper"]
CMD ["run", "--config", "/etc/certkeeper/certkeeper.yaml"]

# The runtime with a binary built on the host (dist/certkeeper).
FROM runtime AS prebuilt
COPY --chmod=0755 dist/certkeeper /usr/local/bin/certkeeper

# The binary built from source.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
RUN cargo build --release --locked --bin certkeeper \
 && strip target/release/certkeeper

# The default target: the runtime with the binary built from source.
FROM runtime
COPY --from=build /src/target/release/certkeeper /usr/local/bin/certkeeper
