//! Pure: which manifest of an image index a node runs, and which platforms an image offers.
//!
//! The most common failure on mixed ARM fleets is an image without a variant for the board
//! landing there anyway ("exec format error"), so selection follows the OCI rules strictly:
//! os and architecture must match, 32-bit ARM may fall back to older variants (v7 → v6, never
//! upwards), and attestation manifests (`unknown/unknown`, BuildKit's reference annotation)
//! are never candidates.

use serde::Deserialize;

use crate::worker::images::{platform_score, Platform};

/// Docker manifest list and OCI index media types: the "pick a platform" kind of manifest.
pub const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Single-image manifest media types herd can run.
pub const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// BuildKit marks attestation manifests with this annotation (and platform unknown/unknown).
const ATTESTATION_ANNOTATION: &str = "vnd.docker.reference.type";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SelectError {
    #[error("image {image}: no variant for {want} (it offers {offered})")]
    NoPlatform {
        image: String,
        want: String,
        offered: String,
    },
    #[error("image {image}: {reason}")]
    Malformed { image: String, reason: String },
}

/// One entry of an index, as much of it as selection needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<EntryPlatform>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EntryPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// What a manifest document turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// An index: pick an entry.
    Index(Vec<IndexEntry>),
    /// A single image: its config descriptor and layers follow from the manifest itself.
    Image,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
}

/// Tells an index from an image manifest by media type (the Content-Type header or the
/// document's own `mediaType`), falling back to its shape: OCI lets both omit `mediaType`.
pub fn classify(image: &str, content_type: &str, body: &[u8]) -> Result<Kind, SelectError> {
    let bad = |reason: String| SelectError::Malformed {
        image: image.to_owned(),
        reason,
    };
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| bad(format!("manifest is not valid JSON: {e}")))?;
    if probe.schema_version != Some(2) {
        return Err(bad(format!(
            "manifest schemaVersion {:?} is not supported (2 is)",
            probe.schema_version
        )));
    }
    let declared = probe
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        });
    let is_index = INDEX_TYPES.contains(&declared.as_str())
        || (declared.is_empty() && probe.manifests.is_some() && probe.layers.is_none());
    if is_index {
        return Ok(Kind::Index(probe.manifests.unwrap_or_default()));
    }
    if MANIFEST_TYPES.contains(&declared.as_str())
        || (declared.is_empty() && probe.layers.is_some())
    {
        return Ok(Kind::Image);
    }
    Err(bad(format!(
        "manifest media type {declared:?} is not an image or an index"
    )))
}

fn is_attestation(e: &IndexEntry) -> bool {
    e.annotations.contains_key(ATTESTATION_ANNOTATION)
        || e.platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" || p.architecture == "unknown")
}

fn entry_platform(e: &IndexEntry) -> Option<Platform> {
    let p = e.platform.as_ref()?;
    Some(Platform {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: p.variant.clone().unwrap_or_default(),
    })
}

/// The platforms an index offers, attestations left out, in index order.
pub fn offered(entries: &[IndexEntry]) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    for p in entries
        .iter()
        .filter(|e| !is_attestation(e))
        .filter_map(entry_platform)
    {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Joined for messages: `linux/amd64, linux/arm64`.
pub fn describe(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        return "no platform at all".to_owned();
    }
    platforms
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The entry `node` runs best: exact variant first, then older ARM variants; never a newer one.
pub fn choose<'a>(
    image: &str,
    entries: &'a [IndexEntry],
    node: &Platform,
) -> Result<&'a IndexEntry, SelectError> {
    entries
        .iter()
        .filter(|e| !is_attestation(e))
        .filter(|e| e.media_type.is_empty() || MANIFEST_TYPES.contains(&e.media_type.as_str()))
        .filter_map(|e| Some((platform_score(node, &entry_platform(e)?)?, e)))
        // Highest score wins; among equals the first in the index, as containerd does.
        .fold(None::<(u32, &IndexEntry)>, |best, (s, e)| match best {
            Some((b, _)) if b >= s => best,
            _ => Some((s, e)),
        })
        .map(|(_, e)| e)
        .ok_or_else(|| SelectError::NoPlatform {
            image: image.to_owned(),
            want: node.to_string(),
            offered: describe(&offered(entries)),
        })
}

/// Refuses a single-platform image whose config names another platform.
pub fn check_single(image: &str, config: &Platform, node: &Platform) -> Result<(), SelectError> {
    match platform_score(node, config) {
        Some(_) => Ok(()),
        None => Err(SelectError::NoPlatform {
            image: image.to_owned(),
            want: node.to_string(),
            offered: config.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        let mut it = s.split('/');
        Platform {
            os: it.next().unwrap_or("").into(),
            architecture: it.next().unwrap_or("").into(),
            variant: it.next().unwrap_or("").into(),
        }
    }

    fn index(entries: &[(&str, &str)]) -> Vec<IndexEntry> {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(digest, platform)| {
                let mut it = platform.split('/');
                let mut plat = serde_json::json!({
                    "os": it.next().unwrap_or(""),
                    "architecture": it.next().unwrap_or(""),
                });
                if let Some(v) = it.next() {
                    plat["variant"] = v.into();
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest, "size": 1, "platform": plat,
                })
            })
            .collect();
        let body = serde_json::json!({"schemaVersion": 2, "manifests": manifests}).to_string();
        match classify(
            "img",
            "application/vnd.oci.image.index.v1+json",
            body.as_bytes(),
        ) {
            Ok(Kind::Index(e)) => e,
            other => panic!("not an index: {other:?}"),
        }
    }

    const FLEET: &[(&str, &str)] = &[
        ("amd", "linux/amd64"),
        ("a64", "linux/arm64/v8"),
        ("v7", "linux/arm/v7"),
        ("v6", "linux/arm/v6"),
    ];

    #[test]
    fn each_board_gets_its_own_variant() {
        let idx = index(FLEET);
        for (node, want) in [
            ("linux/amd64", "amd"),
            ("linux/arm64/v8", "a64"),
            ("linux/arm/v7", "v7"),
            ("linux/arm/v6", "v6"),
        ] {
            assert_eq!(
                choose("img", &idx, &p(node)).map(|e| e.digest.as_str()),
                Ok(want)
            );
        }
    }

    #[test]
    fn a_v7_board_falls_back_to_v6_but_a_v6_board_never_gets_v7() {
        let idx = index(&[("amd", "linux/amd64"), ("v6", "linux/arm/v6")]);
        assert_eq!(
            choose("img", &idx, &p("linux/arm/v7")).map(|e| e.digest.as_str()),
            Ok("v6")
        );
        let idx = index(&[("amd", "linux/amd64"), ("v7", "linux/arm/v7")]);
        let err = choose("busybox", &idx, &p("linux/arm/v6")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image busybox: no variant for linux/arm/v6 (it offers linux/amd64, linux/arm/v7)"
        );
    }

    #[test]
    fn bare_arm_means_v7_so_a_v6_board_refuses_it() {
        let idx = index(&[("arm", "linux/arm")]);
        assert!(choose("img", &idx, &p("linux/arm/v6")).is_err());
        assert!(choose("img", &idx, &p("linux/arm/v7")).is_ok());
    }

    #[test]
    fn attestation_manifests_are_never_chosen_or_offered() {
        let mut idx = index(&[("att", "unknown/unknown"), ("amd", "linux/amd64")]);
        assert_eq!(offered(&idx), vec![p("linux/amd64")]);
        idx[1]
            .annotations
            .insert(ATTESTATION_ANNOTATION.into(), "attestation-manifest".into());
        assert!(choose("img", &idx, &p("linux/amd64")).is_err());
    }

    #[test]
    fn arm64_without_variant_is_v8() {
        let idx = index(&[("a64", "linux/arm64")]);
        assert!(choose("img", &idx, &p("linux/arm64/v8")).is_ok());
        assert!(choose("img", &idx, &p("linux/arm/v7")).is_err());
    }

    #[test]
    fn classify_uses_the_documents_media_type_then_its_shape() {
        let docker_list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert_eq!(classify("i", "", docker_list), Ok(Kind::Index(vec![])));
        let bare_image = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(classify("i", "", bare_image), Ok(Kind::Image));
        let by_header = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            classify(
                "i",
                "application/vnd.docker.distribution.manifest.v2+json",
                by_header
            ),
            Ok(Kind::Image)
        );
        assert!(matches!(
            classify("i", "", br#"{"schemaVersion":1}"#),
            Err(SelectError::Malformed { .. })
        ));
        assert!(classify("i", "", b"not json").is_err());
        let helm =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart","layers":[]}"#;
        assert!(classify("i", "", helm).is_err());
    }

    #[test]
    fn a_single_platform_image_for_another_arch_is_refused_with_both_named() {
        let err = check_single("app", &p("linux/arm64"), &p("linux/amd64")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image app: no variant for linux/amd64 (it offers linux/arm64)"
        );
        assert!(check_single("app", &p("linux/arm/v6"), &p("linux/arm/v7")).is_ok());
    }
}
