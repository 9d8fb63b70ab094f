//! Import against hostile and damaged archives: each must fail with an error naming the bad
//! entry or blob, and leave the index untouched.

use std::io::Write;
use std::path::Path;

use super::digest::sha256_hex;
use super::testutil::{config_for, oci_archive, RawTar, TestImage};
use super::{ImageError, ImageStore, Limits};

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("images")).unwrap();
    (dir, store)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The store has no references and no layer directories.
fn assert_untouched(store: &ImageStore) {
    assert!(store.list().unwrap().is_empty());
    let layers = std::fs::read_dir(store.root().join("layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 0, "a layer directory was left behind");
    let tmp = std::fs::read_dir(store.root().join("tmp")).unwrap().count();
    assert_eq!(tmp, 0, "staging was left behind");
}

#[test]
fn a_docker_save_archive_imports_under_its_repo_tag() {
    let (dir, store) = store();
    let img = TestImage::new();
    let path = write(dir.path(), "a.tar", &img.docker_archive(&["app:1"]));
    let images = store.import_archive(&path, None).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].reference, "docker.io/library/app:1");
    assert_eq!(images[0].id, format!("sha256:{}", img.config_hex()));
    assert_eq!(images[0].config.cmd, vec!["sh".to_owned()]);
    assert_eq!(images[0].layers.len(), 2);
    let found = store.resolve("app:1").unwrap().unwrap();
    assert_eq!(found, images[0]);
}

#[test]
fn a_gzipped_oci_layout_imports_with_its_ref_name() {
    let (dir, store) = store();
    let img = TestImage::new();
    let raw = oci_archive(&img.config, &img.layers, Some("ghcr.io/x/app:2"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let path = write(dir.path(), "a.tar.gz", &gz.finish().unwrap());
    let images = store.import_archive(&path, None).unwrap();
    assert_eq!(images[0].reference, "ghcr.io/x/app:2");
}

#[test]
fn an_archive_without_a_tag_needs_one_and_takes_the_given_one() {
    let (dir, store) = store();
    let img = TestImage::new();
    let path = write(
        dir.path(),
        "a.tar",
        &oci_archive(&img.config, &img.layers, Some("latest")),
    );
    let err = store.import_archive(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::NoTag), "{err}");
    assert_eq!(err.to_string(), "no tag in archive; pass --tag");
    let images = store.import_archive(&path, Some("mine")).unwrap();
    assert_eq!(images[0].reference, "docker.io/library/mine:latest");
}

#[test]
fn archive_entries_with_dotdot_or_absolute_names_are_refused() {
    for bad in ["../evil", "/etc/evil", "blobs/../../evil"] {
        let (dir, store) = store();
        let mut t = RawTar::new();
        t.file(bad, b"x");
        t.file("manifest.json", b"[]");
        let path = write(dir.path(), "a.tar", &t.finish());
        let err = store.import_archive(&path, None).unwrap_err();
        assert!(matches!(err, ImageError::UnsafePath { .. }), "{bad}: {err}");
        assert!(err.to_string().contains(bad), "{err}");
        assert_untouched(&store);
    }
}

#[test]
fn a_manifest_naming_a_path_outside_the_archive_is_refused() {
    let (dir, store) = store();
    let img = TestImage::new();
    let mut t = RawTar::new();
    let config_name = format!("{}.json", img.config_hex());
    t.file(&config_name, &img.config);
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": ["a:1"],
        "Layers": ["../../etc/passwd", "/etc/shadow"],
    }]);
    t.file("manifest.json", manifest.to_string().as_bytes());
    let path = write(dir.path(), "a.tar", &t.finish());
    let err = store.import_archive(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::UnsafePath { .. }), "{err}");
    assert_untouched(&store);
}

#[test]
fn symlinked_metadata_and_links_leaving_the_archive_are_refused() {
    // manifest.json itself a symlink (to a host file, or even inside the archive).
    for target in ["/etc/passwd", "other.json"] {
        let (dir, store) = store();
        let mut t = RawTar::new();
        t.file("other.json", b"[]");
        t.symlink("manifest.json", target);
        let path = write(dir.path(), "a.tar", &t.finish());
        let err = store.import_archive(&path, None).unwrap_err();
        assert!(
            matches!(err, ImageError::UnsafeLink { .. }),
            "{target}: {err}"
        );
        assert!(err.to_string().contains("manifest.json"), "{err}");
    }
    // A layer.tar link climbing out of the archive.
    let (dir, store) = store();
    let img = TestImage::new();
    let mut t = RawTar::new();
    let config_name = format!("{}.json", img.config_hex());
    t.file(&config_name, &img.config);
    t.symlink("l0/layer.tar", "../../../etc/shadow");
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": ["a:1"], "Layers": ["l0/layer.tar", "l1/layer.tar"],
    }]);
    t.file("manifest.json", manifest.to_string().as_bytes());
    let path = write(dir.path(), "a.tar", &t.finish());
    let err = store.import_archive(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::UnsafeLink { .. }), "{err}");
    assert!(err.to_string().contains("l0/layer.tar"), "{err}");
    assert_untouched(&store);
}

#[test]
fn legacy_layer_links_inside_the_archive_are_followed() {
    let (dir, store) = store();
    let img = TestImage::new();
    let mut t = RawTar::new();
    let config_name = format!("{}.json", img.config_hex());
    t.file(&config_name, &img.config);
    t.file("l0/layer.tar", &img.layers[0]);
    t.file("l1/layer.tar", &img.layers[1]);
    t.symlink("dup/layer.tar", "../l1/layer.tar");
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": ["a:1"], "Layers": ["l0/layer.tar", "dup/layer.tar"],
    }]);
    t.file("manifest.json", manifest.to_string().as_bytes());
    let path = write(dir.path(), "a.tar", &t.finish());
    store.import_archive(&path, None).unwrap();
}

#[test]
fn a_config_whose_content_does_not_match_its_name_is_refused() {
    let (dir, store) = store();
    let img = TestImage::new();
    let mut t = RawTar::new();
    let claimed = sha256_hex(b"something else");
    let config_name = format!("{claimed}.json");
    t.file(&config_name, &img.config);
    t.file("l0/layer.tar", &img.layers[0]);
    t.file("l1/layer.tar", &img.layers[1]);
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": ["a:1"], "Layers": ["l0/layer.tar", "l1/layer.tar"],
    }]);
    t.file("manifest.json", manifest.to_string().as_bytes());
    let path = write(dir.path(), "a.tar", &t.finish());
    let err = store.import_archive(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&config_name), "{err}");
    assert_untouched(&store);
}

#[test]
fn a_layer_that_does_not_match_the_config_diff_id_is_refused_and_not_kept() {
    let (dir, store) = store();
    let img = TestImage::new();
    let mut other = RawTar::new();
    other.file("etc/evil", b"swapped\n");
    let swapped = [img.layers[0].clone(), other.finish()];
    let mut t = RawTar::new();
    let config_name = format!("{}.json", img.config_hex());
    t.file(&config_name, &img.config);
    t.file("l0/layer.tar", &swapped[0]);
    t.file("l1/layer.tar", &swapped[1]);
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": ["a:1"], "Layers": ["l0/layer.tar", "l1/layer.tar"],
    }]);
    t.file("manifest.json", manifest.to_string().as_bytes());
    let path = write(dir.path(), "a.tar", &t.finish());
    let err = store.import_archive(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");
    assert!(err.to_string().contains("l1/layer.tar"), "{err}");
    assert!(store.list().unwrap().is_empty());
    // The good bottom layer may stay (content-addressed, verified); the bad one must not.
    let bad_hex = sha256_hex(&swapped[1]);
    let good_hex = sha256_hex(&img.layers[1]);
    assert!(!store.root().join("layers").join(bad_hex).exists());
    assert!(!store.root().join("layers").join(good_hex).exists());
}

#[test]
fn a_tampered_oci_blob_is_refused_naming_its_digest() {
    let (dir, store) = store();
    let img = TestImage::new();
    let archive = oci_archive(&img.config, &img.layers, Some("a:1"));
    // Flip one byte inside the first layer's content ("lower" → "Lower").
    let pos = archive.windows(6).position(|w| w == b"lower\n").unwrap();
    let mut tampered = archive.clone();
    tampered[pos] = b'L';
    let path = write(dir.path(), "a.tar", &tampered);
    let err = store.import_archive(&path, None).unwrap_err();
    let layer_digest = format!("sha256:{}", sha256_hex(&img.layers[0]));
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layer_digest), "{err}");
    assert_untouched(&store);
}

#[test]
fn a_truncated_archive_is_an_error() {
    let img = TestImage::new();
    let archive = img.docker_archive(&["a:1"]);
    for cut in [archive.len() / 3, archive.len() - 1024 - 300] {
        let (dir, store) = store();
        let path = write(dir.path(), "a.tar", &archive[..cut]);
        let err = store.import_archive(&path, None).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::BadArchive { .. } | ImageError::MissingEntry { .. }
            ),
            "cut at {cut}: {err}"
        );
        assert_untouched(&store);
    }
    // Truncated gzip stream.
    let (dir, store) = store();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&archive).unwrap();
    let gz = gz.finish().unwrap();
    let path = write(dir.path(), "a.tar.gz", &gz[..gz.len() / 2]);
    let err = store.import_archive(&path, None).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn entries_over_the_size_cap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("images"))
        .unwrap()
        .with_limits(Limits {
            max_entry_bytes: 1024,
            ..Limits::default()
        });
    let mut t = RawTar::new();
    t.file("big", &[0u8; 4096]);
    t.file("manifest.json", b"[]");
    let path = write(dir.path(), "a.tar", &t.finish());
    let err = store.import_archive(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("big"), "{err}");
}

#[test]
fn a_multi_platform_index_yields_the_host_platform_or_a_clear_error() {
    let (dir, store) = store();
    let img = TestImage::new();
    // An arm64 sibling whose config differs only in architecture.
    let foreign_arch = if super::host_platform().architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let foreign_config = config_for(&img.layers, foreign_arch);
    let host = oci_archive(&img.config, &img.layers, None);
    let foreign = oci_archive(&foreign_config, &img.layers, None);
    // Merge both layouts into one archive with a nested index listing both manifests.
    let entries = |bytes: &[u8]| -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (name, data)
            })
            .collect()
    };
    let index_of = |es: &[(String, Vec<u8>)]| -> serde_json::Value {
        let raw = &es.iter().find(|(n, _)| n == "index.json").unwrap().1;
        serde_json::from_slice::<serde_json::Value>(raw).unwrap()["manifests"][0].clone()
    };
    let host_entries = entries(&host);
    let foreign_entries = entries(&foreign);
    let mut host_desc = index_of(&host_entries);
    host_desc["platform"] =
        serde_json::json!({"os": "linux", "architecture": super::host_platform().architecture});
    let mut foreign_desc = index_of(&foreign_entries);
    foreign_desc["platform"] = serde_json::json!({"os": "linux", "architecture": foreign_arch});

    let build = |descs: Vec<serde_json::Value>| -> Vec<u8> {
        let nested = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descs,
        })
        .to_string()
        .into_bytes();
        let nested_hex = sha256_hex(&nested);
        let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{nested_hex}"),
            "size": nested.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi:1"},
        }]});
        let mut t = RawTar::new();
        let mut seen = std::collections::BTreeSet::new();
        for (name, data) in host_entries.iter().chain(&foreign_entries) {
            if name.starts_with("blobs/") && seen.insert(name.clone()) {
                t.file(name, data);
            }
        }
        t.file(&format!("blobs/sha256/{nested_hex}"), &nested);
        t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        t.file("index.json", top.to_string().as_bytes());
        t.finish()
    };
    let path = write(
        dir.path(),
        "multi.tar",
        &build(vec![foreign_desc.clone(), host_desc]),
    );
    let images = store.import_archive(&path, None).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, format!("sha256:{}", img.config_hex()));
    assert_eq!(images[0].reference, "docker.io/library/multi:1");

    let path = write(
        dir.path(),
        "foreign.tar",
        &build(vec![foreign_desc.clone(), foreign_desc]),
    );
    let err = store.import_archive(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::NoPlatform { .. }), "{err}");
    assert!(err.to_string().contains(foreign_arch), "{err}");
}

#[test]
fn references_and_ids_resolve_and_untagging_removes_only_the_reference() {
    let (dir, store) = store();
    let img = TestImage::new();
    let path = write(
        dir.path(),
        "a.tar",
        &img.docker_archive(&["app:1", "app:latest"]),
    );
    store.import_archive(&path, None).unwrap();
    let id = format!("sha256:{}", img.config_hex());
    for name in [
        "app",
        "app:1",
        "docker.io/library/app:1",
        &id,
        &img.config_hex()[..12],
    ] {
        let found = store.resolve(name).unwrap();
        assert_eq!(found.map(|i| i.id), Some(id.clone()), "{name}");
    }
    assert_eq!(store.resolve("other").unwrap(), None);
    assert!(store.resolve("Bad:Name!").is_err());
    assert_eq!(store.list().unwrap().len(), 2);

    assert_eq!(
        store.remove("app:1").unwrap(),
        vec!["docker.io/library/app:1"]
    );
    assert_eq!(store.resolve("app:1").unwrap(), None);
    assert!(store.resolve("app").unwrap().is_some());
    assert!(matches!(
        store.remove("app:1"),
        Err(ImageError::NotFound { .. })
    ));
    assert_eq!(
        store.remove(&id[..19]).unwrap(),
        vec!["docker.io/library/app:latest"]
    );
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.resolve(&id).unwrap(), None);
    // Blobs and layers stay for GC.
    assert!(store.blob_path(&img.config_hex()).exists());
}
