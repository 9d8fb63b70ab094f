//! `herd image import` reads archives from anywhere, so a hostile archive must never crash
//! the import, write outside the store, or leave a mount behind.
//!
//! Byte 0 picks the mode:
//! - even: the rest is the archive itself (`docker save` or OCI layout, plain or gzip);
//! - odd: the rest describes the entries of one layer (see [`layer_tar`]); the harness builds
//!   a valid `docker save` archive around it (correct digests), so the fuzzer reaches layer
//!   unpacking, which digest checks would otherwise keep it away from.
//!
//! Each iteration imports into a fresh store inside a nested sandbox directory
//! (`<tmp>/0/1/.../7/store`), so an entry climbing out with up to eight `..` still lands in
//! the sandbox, where it is seen. Invariants on top of "no panic":
//! - nothing in the sandbox outside the store changes, and no entry appears at `/`;
//! - nothing is mounted under the sandbox afterwards;
//! - an imported image's layers are directories inside the store.
//!
//! Safety: the fuzzer runs as root here and the importer creates device nodes. Inputs that
//! would create any device other than the overlay whiteout (char 0:0) are skipped, so a bug
//! could never write through a node aliasing a real disk.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use herd::worker::images::{ImageStore, Limits, Platform};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// Directory levels between the sandbox root and the store.
const DEPTH: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let archive = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        docker_archive(&layer_tar(rest), mode & 2 != 0)
    };
    if creates_dangerous_device(&archive, 0) {
        return;
    }
    import(&archive, mode & 4 != 0);
});

fn limits() -> Limits {
    Limits {
        max_archive_bytes: 4 << 20,
        max_entry_bytes: 2 << 20,
        max_entries: 1_000,
        max_metadata_bytes: 64 << 10,
        max_layer_bytes: 4 << 20,
        max_layer_entries: 1_000,
    }
}

fn import(archive: &[u8], with_tag: bool) {
    let sandbox = tempfile::Builder::new()
        .prefix("herd-fuzz-image-")
        .tempdir()
        .expect("temp dir");
    let mut deep = sandbox.path().to_path_buf();
    for level in 0..DEPTH {
        deep.push(level.to_string());
    }
    fs::create_dir_all(&deep).expect("sandbox dirs");
    let store_root = deep.join("store");
    let archive_path = deep.join("in.tar");
    fs::write(&archive_path, archive).expect("write archive");
    let root_before = listing(Path::new("/"));
    let before = snapshot(sandbox.path(), &store_root);

    let store = ImageStore::open(&store_root)
        .expect("store opens")
        .with_limits(limits())
        .with_platform(Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: String::new(),
        });
    let tag = with_tag.then_some("fuzz/image:latest");
    let result = store.import_archive(&archive_path, tag);

    let mounted = mounts_under(sandbox.path());
    for m in &mounted {
        // Undo before failing, so the crash leaves no mount on the machine either.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(m)
            .status();
    }
    assert!(mounted.is_empty(), "import left mounts: {mounted:?}");
    let after = snapshot(sandbox.path(), &store_root);
    assert_eq!(
        before, after,
        "import changed the sandbox outside its store"
    );
    let root_after = listing(Path::new("/"));
    assert_eq!(root_before, root_after, "import changed /");
    if let Ok(images) = result {
        assert!(!images.is_empty(), "import succeeded with no images");
        for image in images {
            assert!(image.id.starts_with("sha256:"), "image id {}", image.id);
            for layer in &image.layers {
                assert!(
                    layer.starts_with(&store_root),
                    "layer {layer:?} outside store"
                );
                let meta = fs::symlink_metadata(layer).expect("imported layer exists");
                assert!(meta.is_dir(), "layer {layer:?} is not a directory");
            }
        }
    }
}

/// Every path under `root` except inside `skip`, with its type, mode and size.
fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, (u32, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == skip {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            // Directory sizes change with their contents; the contents are listed anyway.
            let size = if meta.is_dir() { 0 } else { meta.size() };
            out.insert(path.clone(), (meta.mode(), size));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|mount_point| mount_point.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// True when `bytes`, read as a tar (plain or gzip) or any tar nested in its entries, holds
/// a block or character device other than 0:0.
fn creates_dangerous_device(bytes: &[u8], depth: usize) -> bool {
    if depth > 2 {
        return false;
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        let mut gz = flate2::read::MultiGzDecoder::new(bytes).take(8 << 20);
        // A partial stream is checked as far as it goes, as the importer would read it.
        let _ = gz.read_to_end(&mut plain);
        return creates_dangerous_device(&plain, depth + 1);
    }
    let mut archive = tar::Archive::new(bytes);
    let Ok(entries) = archive.entries() else {
        return false;
    };
    for entry in entries {
        let Ok(mut entry) = entry else {
            return false;
        };
        let header = entry.header();
        if matches!(
            header.entry_type(),
            tar::EntryType::Block | tar::EntryType::Char
        ) {
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            if (major, minor) != (0, 0) {
                return true;
            }
        }
        let mut content = Vec::new();
        if entry.read_to_end(&mut content).is_ok()
            && !content.is_empty()
            && creates_dangerous_device(&content, depth + 1)
        {
            return true;
        }
    }
    false
}

/// Builds a layer tar from a compact description, so header checksums are always right and
/// mutations change what the entries are rather than breaking the format.
///
/// Each entry: kind byte, two mode bytes, name length, name, data length, data. The data is a
/// regular file's content or a link's target. Names are written into the header raw, `..`
/// and absolute paths included (the `tar` crate's own setters refuse those).
fn layer_tar(mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while input.len() >= 4 {
        let head = take(4, &mut input);
        let (kind, mode, name_len) = (head[0], u16::from_le_bytes([head[1], head[2]]), head[3]);
        let name = take(usize::from(name_len).min(100), &mut input);
        let data_len = take(1, &mut input).first().copied().unwrap_or(0);
        let data = take(usize::from(data_len), &mut input);
        let mut header = tar::Header::new_gnu();
        let (entry_type, body): (tar::EntryType, &[u8]) = match kind % 8 {
            0 => (tar::EntryType::Regular, &data),
            1 => (tar::EntryType::Directory, &[]),
            2 => (tar::EntryType::Symlink, &[]),
            3 => (tar::EntryType::Link, &[]),
            4 => (tar::EntryType::Char, &[]),
            5 => (tar::EntryType::Fifo, &[]),
            6 => (tar::EntryType::Block, &[]),
            // A regular file whose header claims more than it holds: a truncated layer.
            _ => (tar::EntryType::Regular, &data),
        };
        header.set_entry_type(entry_type);
        header.set_mode(u32::from(mode) & 0o7777);
        header.set_uid(u64::from(kind / 8));
        header.set_gid(0);
        header.set_mtime(0);
        let claimed = if kind % 8 == 7 {
            body.len() as u64 + 512
        } else {
            body.len() as u64
        };
        header.set_size(claimed);
        {
            let gnu = header.as_gnu_mut().expect("gnu header");
            gnu.name[..name.len()].copy_from_slice(&name);
            if matches!(kind % 8, 2 | 3) {
                let link = &data[..data.len().min(100)];
                gnu.linkname[..link.len()].copy_from_slice(link);
            }
        }
        if matches!(kind % 8, 4 | 6) {
            // Only the whiteout's 0:0; see the safety note at the top.
            let _ = header.set_device_major(0);
            let _ = header.set_device_minor(0);
        }
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// The first `n` bytes of `input` (fewer at its end), advancing it past them.
fn take(n: usize, input: &mut &[u8]) -> Vec<u8> {
    let (head, tail) = input.split_at(n.min(input.len()));
    *input = tail;
    head.to_vec()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `docker save` archive holding one image whose only layer is `layer`.
fn docker_archive(layer: &[u8], legacy_paths: bool) -> Vec<u8> {
    let diff_id = sha256_hex(layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
    })
    .to_string();
    let config_hex = sha256_hex(config.as_bytes());
    let (config_path, layer_path) = if legacy_paths {
        (format!("{config_hex}.json"), format!("{diff_id}/layer.tar"))
    } else {
        (
            format!("blobs/sha256/{config_hex}"),
            format!("blobs/sha256/{diff_id}"),
        )
    };
    let manifest = serde_json::json!([{
        "Config": config_path,
        "RepoTags": ["fuzz/image:built"],
        "Layers": [layer_path],
    }])
    .to_string();
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in [
        (layer_path.as_str(), layer),
        (config_path.as_str(), config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, bytes)
            .expect("append to an in-memory tar");
    }
    builder.into_inner().expect("finish an in-memory tar")
}
