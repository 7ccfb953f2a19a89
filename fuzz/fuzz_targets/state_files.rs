//! State files read back after a crash or by another replica: meta.json,
//! the status file. Corrupt ones are errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<certkeeper::store::Meta>(data);
    let _ = serde_json::from_slice::<certkeeper::report::Status>(data);
});
