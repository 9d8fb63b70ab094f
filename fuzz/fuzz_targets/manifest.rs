//! Manifest parsing takes text straight from users: whatever the bytes, it must return
//! `Ok` or `Err`, never panic, hang or exhaust memory. Run with
//! `cargo +nightly fuzz run manifest -- -max_len=65536`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(objects) = herd::api::manifest::parse(text) {
            // Everything accepted must also pass validation on its own.
            for object in &objects {
                #[allow(irrefutable_let_patterns)]
                if let herd::api::Object::Pod(pod) = object {
                    assert!(herd::api::validate::validate_pod(pod).is_ok());
                }
            }
        }
    }
});
