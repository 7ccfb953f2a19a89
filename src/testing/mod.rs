//! Test-only stand-ins compiled into unit tests and nothing else: the
//! real parts (Pebble, moto, BIND9, sshd) are in `tests/support/`; these
//! are the in-process twins that let a pure decision be checked in
//! milliseconds.

pub mod bucket;
