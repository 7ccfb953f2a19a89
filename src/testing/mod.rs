//! Test-only stand-ins, compiled into the unit tests and (the hostile CA)
//! the `fuzzing` feature, never into a release: the real parts (Pebble,
//! moto, BIND9, sshd) are in `tests/support/`; these are the in-process
//! twins that check a property in milliseconds.
//!
//! - `bucket`: an in-memory bucket with S3's conditional writes, for the
//!   replica protocol's unit tests.
//! - `hostile`: a hostile ACME CA behind instant-acme's HTTP seam, for the
//!   fuzzing of the ACME and ARI response handling.

#[cfg(test)]
pub mod bucket;
pub mod hostile;
