//! The ACME and ARI response handling: an account, a DNS-01 order and an
//! ARI lookup against a CA whose every answer the input may bend (status,
//! problem documents, mutated or truncated JSON, missing headers, dropped
//! connections, absurd Retry-After). No panic, the order ends, and every
//! TXT record written is removed (asserted in the harness).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = certkeeper::testing::hostile::hostile_ca(data);
});
