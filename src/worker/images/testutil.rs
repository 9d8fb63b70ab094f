//! Archive builders for the unit tests: tars written byte by byte, so tests can also produce
//! the hostile inputs (`..` names, odd links) that `tar::Builder` refuses to write.

use super::digest::sha256_hex;

/// A tar stream with names written verbatim (old-style header, names under 100 bytes).
pub(crate) struct RawTar(Vec<u8>);

impl RawTar {
    pub(crate) fn new() -> Self {
        RawTar(Vec::new())
    }

    pub(crate) fn entry(&mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
        let mode = if kind.is_dir() { 0o755 } else { 0o644 };
        self.entry_owned(name, kind, link, data, mode, (0, 0));
    }

    /// An entry with its mode and owner given (setuid binaries, files of other users).
    pub(crate) fn entry_owned(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        link: &str,
        data: &[u8],
        mode: u32,
        (uid, gid): (u64, u64),
    ) {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
    }

    pub(crate) fn file(&mut self, name: &str, data: &[u8]) {
        self.entry(name, tar::EntryType::Regular, "", data);
    }

    pub(crate) fn dir(&mut self, name: &str) {
        self.entry(name, tar::EntryType::Directory, "", b"");
    }

    pub(crate) fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, tar::EntryType::Symlink, target, b"");
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

/// A small two-layer image: the config JSON and the two layer tars.
pub(crate) struct TestImage {
    pub(crate) layers: Vec<Vec<u8>>,
    pub(crate) config: Vec<u8>,
}

impl TestImage {
    pub(crate) fn new() -> TestImage {
        let mut l1 = RawTar::new();
        l1.dir("etc/");
        l1.file("etc/hostname", b"lower\n");
        l1.file("etc/gone", b"deleted above\n");
        let mut l2 = RawTar::new();
        l2.file("etc/.wh.gone", b"");
        l2.file("etc/added", b"upper\n");
        let layers = vec![l1.finish(), l2.finish()];
        let config = config_for(&layers, &super::host_platform().architecture);
        TestImage { layers, config }
    }

    pub(crate) fn config_hex(&self) -> String {
        sha256_hex(&self.config)
    }

    /// A legacy `docker save` archive: `<hex>.json`, `<n>/layer.tar`, manifest.json last.
    pub(crate) fn docker_archive(&self, tags: &[&str]) -> Vec<u8> {
        let mut t = RawTar::new();
        let config_name = format!("{}.json", self.config_hex());
        t.file(&config_name, &self.config);
        let mut layer_names = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let name = format!("l{i}/layer.tar");
            t.dir(&format!("l{i}/"));
            t.file(&name, layer);
            layer_names.push(name);
        }
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": tags,
            "Layers": layer_names,
        }]);
        t.file("manifest.json", manifest.to_string().as_bytes());
        t.finish()
    }
}

/// An image config JSON for `layers` (plain tars: diff id = sha256 of the bytes).
pub(crate) fn config_for(layers: &[Vec<u8>], arch: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes()
}

/// An OCI layout archive of `image` with `layers` stored as given, referenced as `ref_name`.
pub(crate) fn oci_archive(config: &[u8], layers: &[Vec<u8>], ref_name: Option<&str>) -> Vec<u8> {
    let mut t = RawTar::new();
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut descs = Vec::new();
    for layer in layers {
        let hex = sha256_hex(layer);
        t.file(&format!("blobs/sha256/{hex}"), layer);
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{hex}"),
            "size": layer.len(),
        }));
    }
    let config_hex = sha256_hex(config);
    t.file(&format!("blobs/sha256/{config_hex}"), config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_hex}"),
            "size": config.len(),
        },
        "layers": descs,
    })
    .to_string()
    .into_bytes();
    let manifest_hex = sha256_hex(&manifest);
    t.file(&format!("blobs/sha256/{manifest_hex}"), &manifest);
    let mut desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{manifest_hex}"),
        "size": manifest.len(),
    });
    if let Some(name) = ref_name {
        desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
    t.file("index.json", index.to_string().as_bytes());
    t.finish()
}
