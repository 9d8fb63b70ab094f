//! Tar archives written header by header, so tests can build the hostile ones (`..` names,
//! escaping links, lying sizes, device nodes) that `tar::Builder` refuses to write, and wrap a
//! layer into a `docker save` archive with correct digests so an importer reaches it.

use sha2::{Digest, Sha256};

/// One entry; `size` overrides the header's size field (a lie about the data that follows).
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: tar::EntryType,
    pub link: String,
    pub data: Vec<u8>,
    pub size: Option<u64>,
    pub device: (u32, u32),
    pub mode: u32,
}

impl Entry {
    pub fn new(name: &str, kind: tar::EntryType) -> Entry {
        Entry {
            name: name.to_string(),
            kind,
            link: String::new(),
            data: Vec::new(),
            size: None,
            device: (0, 0),
            mode: if kind.is_dir() { 0o755 } else { 0o644 },
        }
    }
    pub fn file(name: &str, data: &[u8]) -> Entry {
        Entry {
            data: data.to_vec(),
            ..Entry::new(name, tar::EntryType::Regular)
        }
    }
    pub fn dir(name: &str) -> Entry {
        Entry::new(name, tar::EntryType::Directory)
    }
    pub fn link(name: &str, kind: tar::EntryType, target: &str) -> Entry {
        Entry {
            link: target.to_string(),
            mode: 0o777,
            ..Entry::new(name, kind)
        }
    }
}

/// Tar bytes with names written verbatim (old-style header: names under 100 bytes).
#[derive(Default)]
pub struct RawTar(Vec<u8>);

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    pub fn push(&mut self, e: &Entry) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_size(e.size.unwrap_or(e.data.len() as u64));
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            let _ = h.set_device_major(e.device.0);
            let _ = h.set_device_minor(e.device.1);
        }
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(&e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.push(&Entry::file(name, data))
    }

    /// The bytes so far, without the end-of-archive blocks (a truncated archive).
    pub fn unterminated(&self) -> Vec<u8> {
        self.0.clone()
    }

    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

pub fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut t = RawTar::new();
    for e in entries {
        t.push(e);
    }
    t.finish()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The OCI architecture name of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// An image config naming `layers` (plain tars: diff id = sha256 of the bytes).
pub fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    serde_json::json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes()
}

/// A `docker save` archive of one image made of `layers`, tagged `tag`, with every digest
/// right: an importer gets as far as unpacking the layers.
pub fn docker_archive(layers: &[&[u8]], tag: &str) -> Vec<u8> {
    let config = config_for(layers);
    let config_name = format!("{}.json", sha256_hex(&config));
    let mut t = RawTar::new();
    t.file(&config_name, &config);
    let mut names = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let name = format!("l{i}/layer.tar");
        t.file(&name, layer);
        names.push(name);
    }
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": names,
    }]);
    t.file("manifest.json", manifest.to_string().as_bytes());
    t.finish()
}
