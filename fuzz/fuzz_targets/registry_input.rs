//! What registries and registry clients send herd: manifests and indexes a worker or the
//! master pulls (platform selection), `/v2/` paths and `Range` headers the master's cache
//! serves, registries.toml, and `--platform` values. Each must answer `Ok` or `Err`, never
//! panic.
//!
//! Input layout: byte 0 picks the parser, byte 1 (where used) a node platform or a blob
//! length, the rest is the text.
//!
//! Invariants on top of "no panic":
//! - a chosen index entry is one of the index's entries and runs on the node;
//! - a `--platform` that parses prints back as itself;
//! - a satisfiable range lies inside the blob.
#![no_main]

use herd::master::registry::names::{self, RangeAnswer};
use herd::oci::select::{self, Kind};
use herd::oci::RegistrySettings;
use herd::worker::images::{platform_score, Platform};
use libfuzzer_sys::fuzz_target;

const NODES: [&str; 6] = [
    "linux/amd64",
    "linux/arm64/v8",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/arm",
    "windows/amd64",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (pick, text) = match rest.split_first() {
        Some((&b, t)) => (b, t),
        None => (0, rest),
    };
    match which % 5 {
        0 => manifest(pick, text),
        1 => {
            let _ = names::parse(&String::from_utf8_lossy(text));
        }
        2 => {
            let len = u64::from(pick) * 1000;
            let header = String::from_utf8_lossy(text);
            if let RangeAnswer::Partial { start, end } = names::range(Some(&header), len) {
                assert!(start <= end && end < len, "{header:?} of {len}: {start}..={end}");
            }
        }
        3 => {
            let _ = RegistrySettings::parse(&String::from_utf8_lossy(text));
        }
        _ => {
            let s = String::from_utf8_lossy(text);
            if let Ok(p) = Platform::parse(&s) {
                assert_eq!(p.to_string(), s, "platform {s:?} printed differently");
            }
        }
    }
});

fn manifest(pick: u8, body: &[u8]) {
    let node = Platform::parse(NODES[usize::from(pick) % NODES.len()]).expect("fixed platform");
    let Ok(kind) = select::classify("fuzz", "", body) else {
        return;
    };
    let Kind::Index(entries) = kind else {
        return;
    };
    let _ = select::offered(&entries);
    if let Ok(chosen) = select::choose("fuzz", &entries, &node) {
        assert!(entries.iter().any(|e| e == chosen), "chose an entry not in the index");
        let p = chosen.platform.as_ref().expect("a chosen entry has a platform");
        let plat = Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone().unwrap_or_default(),
        };
        assert!(
            platform_score(&node, &plat).is_some(),
            "{plat} chosen for {node}"
        );
    }
}
