//! The upstream side of the pull-through cache over the shared registry client
//! ([`crate::oci::Puller`]): manifests by tag or digest, blobs streamed to a file and
//! verified by the puller (sha256 and size) before they are handed over.

use std::path::Path;

use super::{BoxFut, Fetched, Upstream, UpstreamError};
use crate::oci::{PullError, Puller, RegistrySettings};
use crate::worker::images::Reference;

pub struct PullerUpstream {
    settings: RegistrySettings,
}

impl PullerUpstream {
    pub fn new(settings: RegistrySettings) -> PullerUpstream {
        PullerUpstream { settings }
    }
}

/// Sorts a puller error into what the cache does with it: "not found" is an answer (404 to
/// the client), "unreachable" lets a cached tag be served stale.
pub fn classify(registry: &str, e: PullError) -> UpstreamError {
    match e {
        PullError::Unreachable { reason, .. } => UpstreamError::Unreachable {
            registry: registry.to_string(),
            reason,
        },
        PullError::Registry { reason, .. } => {
            let lower = reason.to_ascii_lowercase();
            // oci-client words registry errors as "manifest unknown", "blob unknown",
            // "repository name not known to registry", or a bare 404.
            let missing = ["not found", "404", "unknown", "not known"];
            if missing.iter().any(|m| lower.contains(m)) {
                UpstreamError::NotFound {
                    registry: registry.to_string(),
                    what: reason,
                }
            } else {
                UpstreamError::Failed {
                    registry: registry.to_string(),
                    reason,
                }
            }
        }
        other => UpstreamError::Failed {
            registry: registry.to_string(),
            reason: other.to_string(),
        },
    }
}

/// The media type a manifest declares in its body (`mediaType`), or what its shape says: the
/// puller hands over bytes only, and the cache must serve them with the right Content-Type.
pub fn media_type_of(bytes: &[u8]) -> String {
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(m) = doc.get("mediaType").and_then(|m| m.as_str()) {
        return m.to_string();
    }
    if doc.get("manifests").is_some() {
        "application/vnd.oci.image.index.v1+json".to_string()
    } else {
        "application/vnd.oci.image.manifest.v1+json".to_string()
    }
}

impl Upstream for PullerUpstream {
    fn manifest<'a>(&'a self, r: &'a Reference) -> BoxFut<'a, Result<Fetched, UpstreamError>> {
        Box::pin(async move {
            let puller = Puller::direct(&self.settings, r);
            let reference = r.digest().or(r.tag()).unwrap_or("latest");
            let f = puller
                .manifest(reference)
                .await
                .map_err(|e| classify(r.domain(), e))?;
            let bytes = f.bytes.to_vec();
            Ok(Fetched {
                media_type: media_type_of(&bytes),
                bytes,
                digest: f.digest,
            })
        })
    }

    fn blob<'a>(
        &'a self,
        repo: &'a Reference,
        digest: &'a str,
        size: u64,
        dest: &'a Path,
    ) -> BoxFut<'a, Result<u64, UpstreamError>> {
        Box::pin(async move {
            let puller = Puller::direct(&self.settings, repo);
            puller
                .blob_to_file(digest, size, dest, &|_| {})
                .await
                .map_err(|e| classify(repo.domain(), e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_answers_are_told_from_unreachable_registries() {
        let nf = classify(
            "r",
            PullError::Registry {
                image: "i".into(),
                registry: "r".into(),
                reason: "Registry error: MANIFEST_UNKNOWN".into(),
            },
        );
        assert!(matches!(nf, UpstreamError::NotFound { .. }));
        let down = classify(
            "r",
            PullError::Unreachable {
                registry: "r".into(),
                reason: "connection refused".into(),
            },
        );
        assert!(matches!(down, UpstreamError::Unreachable { .. }));
    }

    #[test]
    fn media_types_come_from_the_body() {
        assert_eq!(
            media_type_of(
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
            ),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"manifests":[]}"#),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"config":{}}"#),
            "application/vnd.oci.image.manifest.v1+json"
        );
    }
}
