//! The integration tests: one binary (one link of the whole crate) with a
//! module per capability. Each module starts the real servers it needs
//! from `tests/support` (Pebble, moto, the Route53-backed DNS responder,
//! BIND9, sshd, SMTP and fault proxies) on free loopback ports, so the
//! tests run in parallel. `cargo test --test e2e MODULE::` runs one module.

#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod ca_limits;
mod cancel;
mod config_source;
mod corrupt_state;
mod crash;
mod daemon;
mod dns_preflight;
mod end_to_end;
mod external;
mod failures;
mod faults;
mod leaks;
mod progress;
mod proxy;
mod publish_aws;
mod publish_files;
mod renewal;
mod replicas;
mod rfc2136;
mod rollout;
mod route53;
mod seal;
mod secrets;
mod status;
mod verify;
mod watch;
