//! What `csr import`, `convert` and the expiry watch read: PEM or DER
//! certificates and private keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("input");
    if let Ok(certs) = certkeeper::convert::certificates(path, data) {
        for der in &certs {
            let _ = certkeeper::x509::leaf_info(der);
        }
        let _ = certkeeper::convert::build_chain(&certs[0], &certs[1..]);
    }
    let _ = certkeeper::convert::private_key(path, data);
    let _ = certkeeper::x509::pem_chain(&String::from_utf8_lossy(data));
});
