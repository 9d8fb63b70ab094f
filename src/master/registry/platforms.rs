//! Which platforms a cached image offers (`linux/amd64`, `linux/arm64`, `linux/arm/v7`), so
//! the scheduler can keep an armv7-only image off an arm64 board and vice versa.
//!
//! Answers from the cache only, never upstream: an index lists its platforms; a single-image
//! manifest has the one its config names (when the config blob is cached). `None` means "not
//! known here" (not cached, or config not fetched yet), which the scheduler should treat as
//! "no constraint" rather than "fits nowhere".

use serde_json::Value;

use super::store::BlobStore;
use super::RegistryError;
use crate::oci::select::{self, Kind};
use crate::worker::images::Reference;

/// Pure: the platforms of a manifest or index given its bytes and media type; `read_blob`
/// returns a cached blob (the config of a single-image manifest). Sorted, deduplicated.
/// Index entries go through the pull side's own reading ([`select::offered`]: attestations,
/// `unknown/unknown` as BuildKit writes them, are not platforms), so the scheduler and the
/// workers never disagree about what an index offers.
pub fn platforms_of(
    bytes: &[u8],
    media_type: &str,
    read_blob: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Option<Vec<String>> {
    let mut out: Vec<String> = match select::classify("", media_type, bytes).ok()? {
        Kind::Index(entries) => select::offered(&entries)
            .iter()
            .map(|p| p.to_string())
            .collect(),
        Kind::Image => {
            let doc: Value = serde_json::from_slice(bytes).ok()?;
            let config_digest = doc.get("config")?.get("digest")?.as_str()?;
            let config: Value = serde_json::from_slice(&read_blob(config_digest)?).ok()?;
            let field = |k: &str| config.get(k).and_then(Value::as_str).unwrap_or_default();
            let (os, arch) = (field("os"), field("architecture"));
            if os.is_empty() || arch.is_empty() || os == "unknown" || arch == "unknown" {
                return None;
            }
            let p = crate::worker::images::Platform {
                os: os.to_owned(),
                architecture: arch.to_owned(),
                variant: field("variant").to_owned(),
            };
            vec![p.to_string()]
        }
    };
    out.sort();
    out.dedup();
    Some(out)
}

impl BlobStore {
    /// The platforms `image` (a pod's `image:` string, normalised like the worker does)
    /// offers, from the cache; `Ok(None)` when the cache cannot tell.
    pub fn platforms(&self, image: &str) -> Result<Option<Vec<String>>, RegistryError> {
        let r = Reference::parse(image).map_err(|e| RegistryError::Invalid {
            what: format!("image {image}"),
            reason: e.to_string(),
        })?;
        let digest = match r.digest() {
            Some(d) => d.to_string(),
            None => match self.tag(&r.repository(), r.tag().unwrap_or("latest"))? {
                Some(row) => row.digest,
                None => return Ok(None),
            },
        };
        let Some((bytes, media)) = self.manifest(&digest)? else {
            return Ok(None);
        };
        let read = |d: &str| self.blob_path(d).and_then(|p| std::fs::read(p).ok());
        Ok(platforms_of(&bytes, &media, &read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
      "manifests":[
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,
         "platform":{"os":"linux","architecture":"arm","variant":"v7"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":1,
         "platform":{"os":"linux","architecture":"amd64"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:c","size":1,
         "platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:d","size":1,
         "platform":{"os":"unknown","architecture":"unknown"}}]}"#;

    #[test]
    fn an_index_offers_the_platforms_it_lists_without_attestations() {
        let none = |_: &str| None;
        assert_eq!(
            platforms_of(
                INDEX.as_bytes(),
                "application/vnd.oci.image.index.v1+json",
                &none
            ),
            Some(vec![
                "linux/amd64".to_string(),
                "linux/arm/v7".to_string(),
                "linux/arm64/v8".to_string()
            ])
        );
        // A Docker manifest list reads the same.
        assert!(platforms_of(
            INDEX.as_bytes(),
            "application/vnd.docker.distribution.manifest.list.v2+json",
            &none
        )
        .is_some_and(|p| p.len() == 3));
    }

    #[test]
    fn a_single_manifest_offers_its_configs_platform_when_the_config_is_cached() {
        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:cfg","size":2},"layers":[]}"#;
        let media = "application/vnd.oci.image.manifest.v1+json";
        let cached = |d: &str| {
            (d == "sha256:cfg")
                .then(|| br#"{"os":"linux","architecture":"arm","variant":"v6"}"#.to_vec())
        };
        assert_eq!(
            platforms_of(manifest, media, &cached),
            Some(vec!["linux/arm/v6".to_string()])
        );
        assert_eq!(platforms_of(manifest, media, &|_| None), None);
        assert_eq!(platforms_of(b"not json", media, &cached), None);
    }

    #[test]
    fn the_store_answers_for_a_pod_image_string() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        assert_eq!(s.platforms("busybox").unwrap(), None);
        let d = s
            .put_manifest(
                "docker.io/library/busybox",
                Some("latest"),
                INDEX.as_bytes(),
                "application/vnd.oci.image.index.v1+json",
                false,
                1,
            )
            .unwrap();
        assert_eq!(s.platforms("busybox").unwrap().unwrap().len(), 3);
        assert_eq!(
            s.platforms(&format!("busybox@{d}")).unwrap().unwrap().len(),
            3
        );
        assert!(s.platforms("Bad Name").is_err());
    }
}
