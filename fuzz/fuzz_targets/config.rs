//! The config repo's files and the settings file: any bytes give a config,
//! settings or located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = certkeeper::config::Config::check(&[(PathBuf::from("certificates.yaml"), text.clone())]);
    let _ = certkeeper::settings::Settings::parse(Path::new("certkeeper.yaml"), &text);
});
