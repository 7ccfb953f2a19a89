//! PKCS#12/PFX files taken apart by `convert --to pem`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let password = certkeeper::secret::Secret::new("password".into());
    let _ = certkeeper::convert::p12_to_pem(Path::new("input.p12"), data, &password);
});
