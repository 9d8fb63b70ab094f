//! Manifest parsing takes text straight from users: whatever the bytes, it must return `Ok`
//! or `Err`, never panic, hang or exhaust memory. Invalid UTF-8 is decoded lossily, so every
//! input reaches the parser.
//!
//! Invariants checked on top of "no panic":
//! - every accepted object passes validation on its own;
//! - every accepted pod, serialized to JSON and parsed again, is accepted and equal to itself
//!   (what `get -o json` prints must re-apply unchanged);
//! - errors name a real document (1-based) and have a message.
//!
//! Run with `scripts/fuzz` or `cargo fuzz run manifest -s none` (see `scripts/fuzz`).
#![no_main]

use herd::api::manifest::parse;
use herd::api::Object;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text);
});

fn check(text: &str) {
    let objects = match parse(text) {
        Ok(objects) => objects,
        Err(err) => {
            assert!(err.doc >= 1, "error names document 0: {err}");
            assert!(!err.message.is_empty(), "error without a message: {err:?}");
            return;
        }
    };
    for object in &objects {
        // Irrefutable while herd knows one kind; stays correct when more are added.
        #[allow(irrefutable_let_patterns)]
        let Object::Pod(pod) = object
        else {
            continue;
        };
        if let Err(e) = herd::api::validate::validate_pod(pod) {
            panic!("parse accepted a pod that fails validation: {e:?}\n{pod:#?}");
        }
        let json = match serde_json::to_string(pod) {
            Ok(json) => json,
            Err(e) => panic!("accepted pod does not serialize to JSON: {e}\n{pod:#?}"),
        };
        let again = match parse(&json) {
            Ok(again) => again,
            Err(e) => panic!("re-parsing an accepted pod failed: {e}\njson: {json}"),
        };
        assert_eq!(
            again.as_slice(),
            std::slice::from_ref(object),
            "pod changed on a JSON round trip\njson: {json}"
        );
    }
}
