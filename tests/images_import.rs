//! Image store end to end, as root, with real overlayfs: import `docker save` and OCI layout
//! archives built here with the tar crate, resolve them, mount a rootfs and check the merged
//! view, then unmount and check nothing is left mounted and no layer changed.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use herd::worker::images::{host_platform, unmount_rootfs, Image, ImageStore};
use sha2::{Digest, Sha256};

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root (overlayfs, mknod, trusted xattrs)");
    false
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A layer tar built with `tar::Builder`.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }
    fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut h = Self::header(kind, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// Bottom layer: files the top layer deletes, hides or leaves alone.
fn lower_layer() -> Vec<u8> {
    Layer::new()
        .dir("etc/")
        .file("etc/hostname", 0o644, b"lower\n")
        .file("etc/gone", 0o644, b"deleted above\n")
        .dir("data/")
        .file("data/old", 0o600, b"old\n")
        .dir("data/sub/")
        .file("data/sub/deep", 0o644, b"deep\n")
        .dir("bin/")
        .file("bin/hello", 0o755, b"#!/bin/sh\necho hi\n")
        .link(tar::EntryType::Symlink, "bin/link", "hello")
        .link(tar::EntryType::Link, "bin/hello2", "bin/hello")
        .finish()
}

/// Top layer: deletes etc/gone (whiteout), makes data/ opaque, adds files.
fn upper_layer() -> Vec<u8> {
    Layer::new()
        .file("etc/.wh.gone", 0o644, b"")
        .file("etc/added", 0o644, b"upper\n")
        .dir("data/")
        .file("data/.wh..wh..opq", 0o644, b"")
        .file("data/new", 0o644, b"new\n")
        .finish()
}

fn config(layers: &[&[u8]], arch: &str, source: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha(l)))
        .collect();
    serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-05-01T12:00:00Z",
        "config": {
            "Env": ["PATH=/bin", format!("SOURCE={source}")],
            "Entrypoint": ["/bin/hello"],
            "WorkingDir": "/data",
            "User": "0:0",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes()
}

/// An outer archive from (name, bytes) pairs.
fn archive(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// `docker save` form: bottom layer legacy `<id>/layer.tar` (plain), top layer as a gzip blob
/// under `blobs/sha256/` (Docker 25+ form), tagged `test/app:docker`.
fn docker_archive() -> (Vec<u8>, String) {
    let (l1, l2) = (lower_layer(), upper_layer());
    let l2_gz = gzip(&l2);
    let cfg = config(&[&l1, &l2], &host_platform().architecture, "docker");
    let cfg_hex = sha(&cfg);
    let l1_name = format!("{}/layer.tar", sha(&l1));
    let l2_name = format!("blobs/sha256/{}", sha(&l2_gz));
    let manifest = serde_json::json!([{
        "Config": format!("{cfg_hex}.json"),
        "RepoTags": ["test/app:docker"],
        "Layers": [l1_name, l2_name],
    }]);
    let bytes = archive(&[
        (format!("{cfg_hex}.json"), cfg),
        (l1_name, l1),
        (l2_name, l2_gz),
        ("manifest.json".into(), manifest.to_string().into_bytes()),
    ]);
    (bytes, cfg_hex)
}

/// OCI layout form, gzip-compressed as a whole, gzip layers, a nested index listing this
/// platform and a foreign one, named by `org.opencontainers.image.ref.name`.
fn oci_archive() -> (Vec<u8>, String) {
    let (l1, l2) = (gzip(&lower_layer()), gzip(&upper_layer()));
    let host = host_platform().architecture;
    let foreign = if host == "s390x" { "riscv64" } else { "s390x" };
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut blob = |data: Vec<u8>, media: &str| -> serde_json::Value {
        let hex = sha(&data);
        let desc = serde_json::json!({"mediaType": media, "digest": format!("sha256:{hex}"), "size": data.len()});
        entries.push((format!("blobs/sha256/{hex}"), data));
        desc
    };
    let layer_descs = vec![
        blob(l1, "application/vnd.oci.image.layer.v1.tar+gzip"),
        blob(l2, "application/vnd.oci.image.layer.v1.tar+gzip"),
    ];
    let mut manifests = Vec::new();
    let mut host_cfg_hex = String::new();
    for arch in [foreign, host.as_str()] {
        let cfg = config(&[&lower_layer(), &upper_layer()], arch, "oci");
        if arch == host {
            host_cfg_hex = sha(&cfg);
        }
        let cfg_desc = blob(cfg, "application/vnd.oci.image.config.v1+json");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cfg_desc,
            "layers": layer_descs,
        });
        let mut desc = blob(
            manifest.to_string().into_bytes(),
            "application/vnd.oci.image.manifest.v1+json",
        );
        desc["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        manifests.push(desc);
    }
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let mut nested_desc = blob(
        nested.to_string().into_bytes(),
        "application/vnd.oci.image.index.v1+json",
    );
    nested_desc["annotations"] =
        serde_json::json!({"org.opencontainers.image.ref.name": "localhost:5000/test/app:oci"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [nested_desc]});
    entries.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    entries.push(("index.json".into(), index.to_string().into_bytes()));
    (gzip(&archive(&entries)), host_cfg_hex)
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = unmount_rootfs(&self.0);
    }
}

fn mount_points_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}

/// Every entry under the layer dirs: type, mode, owner, size, device, content.
fn snapshot(dirs: &[PathBuf]) -> BTreeMap<PathBuf, (u32, u32, u64, u64, Vec<u8>)> {
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, (u32, u32, u64, u64, Vec<u8>)>) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let content = if m.is_file() {
            std::fs::read(p).unwrap()
        } else if m.file_type().is_symlink() {
            std::fs::read_link(p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else {
            Vec::new()
        };
        out.insert(
            p.to_owned(),
            (m.mode(), m.uid(), m.size(), m.rdev(), content),
        );
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out
}

fn check_merged_view(store: &ImageStore, image: &Image, container: &Path) {
    let before = snapshot(&image.layers);
    let guard = MountGuard(container.to_owned());
    let rootfs = store.mount_rootfs(image, container).unwrap();
    assert_eq!(rootfs, container.join("rootfs"));
    // Mounting again is a no-op.
    assert_eq!(store.mount_rootfs(image, container).unwrap(), rootfs);
    assert_eq!(mount_points_under(container).len(), 1);

    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap();
    assert_eq!(read("etc/hostname"), "lower\n");
    assert_eq!(read("etc/added"), "upper\n");
    assert_eq!(read("bin/hello"), "#!/bin/sh\necho hi\n");
    assert_eq!(read("bin/hello2"), "#!/bin/sh\necho hi\n");
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/link")).unwrap(),
        Path::new("hello")
    );
    assert!(
        !rootfs.join("etc/gone").exists(),
        "whiteout did not hide etc/gone"
    );
    let mut data: Vec<String> = std::fs::read_dir(rootfs.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    data.sort();
    assert_eq!(data, vec!["new"], "opaque data/ shows lower content");
    let mode = std::fs::metadata(rootfs.join("bin/hello")).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o755);

    // The rootfs is writable; writes land in upper, never in a layer.
    std::fs::write(rootfs.join("etc/hostname"), "changed\n").unwrap();
    std::fs::write(rootfs.join("written"), "by the container\n").unwrap();
    std::fs::remove_file(rootfs.join("etc/added")).unwrap();
    assert_eq!(read("etc/hostname"), "changed\n");
    assert!(container.join("upper/written").exists());

    drop(guard);
    assert!(mount_points_under(container).is_empty(), "still mounted");
    for d in ["rootfs", "upper", "work"] {
        assert!(!container.join(d).exists(), "{d} left behind");
    }
    unmount_rootfs(container).unwrap(); // idempotent
    assert_eq!(snapshot(&image.layers), before, "a layer changed");
}

#[test]
fn docker_and_oci_archives_import_resolve_and_mount_with_whiteouts() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();

    let (docker, docker_id) = docker_archive();
    let docker_path = tmp.path().join("docker.tar");
    std::fs::write(&docker_path, docker).unwrap();
    let imported = store.import_archive(&docker_path, None).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].reference, "docker.io/test/app:docker");
    assert_eq!(imported[0].id, format!("sha256:{docker_id}"));
    assert_eq!(imported[0].config.entrypoint, vec!["/bin/hello"]);
    assert_eq!(imported[0].config.working_dir, "/data");
    assert!(imported[0].config.env.contains(&"SOURCE=docker".to_owned()));
    assert_eq!(imported[0].platform, host_platform_without_variant());

    let (oci, oci_id) = oci_archive();
    let oci_path = tmp.path().join("oci.tar.gz");
    std::fs::write(&oci_path, oci).unwrap();
    let imported = store.import_archive(&oci_path, None).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].reference, "localhost:5000/test/app:oci");
    assert_eq!(imported[0].id, format!("sha256:{oci_id}"));

    // Both images share their two layers.
    let layer_dirs = std::fs::read_dir(store.root().join("layers"))
        .unwrap()
        .count();
    assert_eq!(layer_dirs, 2);

    // By tag, by full id, by short id.
    let by_tag = store.resolve("test/app:docker").unwrap().unwrap();
    assert_eq!(by_tag.id, format!("sha256:{docker_id}"));
    let by_id = store
        .resolve(&format!("sha256:{docker_id}"))
        .unwrap()
        .unwrap();
    assert_eq!(by_id, by_tag);
    let by_short = store.resolve(&docker_id[..12]).unwrap().unwrap();
    assert_eq!(by_short.id, by_tag.id);
    let oci_image = store
        .resolve("localhost:5000/test/app:oci")
        .unwrap()
        .unwrap();
    assert_eq!(oci_image.id, format!("sha256:{oci_id}"));
    assert_eq!(store.resolve("test/app:missing").unwrap(), None);

    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|s| s.size > 0));
    assert!(list
        .iter()
        .all(|s| s.created.as_deref() == Some("2024-05-01T12:00:00Z")));

    check_merged_view(&store, &by_tag, &tmp.path().join("c1"));
    check_merged_view(&store, &oci_image, &tmp.path().join("c2"));
}

fn host_platform_without_variant() -> herd::worker::images::Platform {
    herd::worker::images::Platform {
        variant: String::new(),
        ..host_platform()
    }
}

#[test]
fn concurrent_imports_of_one_archive_all_succeed_and_agree() {
    if !is_root() {
        return;
    }
    for round in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("images");
        let (bytes, id) = if round % 2 == 0 {
            docker_archive()
        } else {
            oci_archive()
        };
        let path = tmp.path().join("a.tar");
        std::fs::write(&path, bytes).unwrap();
        // Separate store handles, as separate processes (worker and `herd image import`) have.
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let store = ImageStore::open(&root)?;
                        store.import_archive(&path, None)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &results {
            let images = r.as_ref().unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(images[0].id, format!("sha256:{id}"));
        }
        let store = ImageStore::open(&root).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        let image = store.resolve(&id).unwrap().unwrap();
        assert_eq!(std::fs::read_dir(root.join("layers")).unwrap().count(), 2);
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        // Every layer complete: the merged view is right.
        check_merged_view(&store, &image, &tmp.path().join("c"));
    }
}

#[test]
fn an_image_with_more_layers_than_one_page_of_mount_options_still_mounts() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let mut layers = Vec::new();
    for i in 0..60 {
        let mut l = Layer::new().file(&format!("f{i:02}"), 0o644, format!("{i}\n").as_bytes());
        if i == 59 {
            l = l.file(".wh.f00", 0o644, b"");
        }
        layers.push(l.finish());
    }
    let refs: Vec<&[u8]> = layers.iter().map(|l| &l[..]).collect();
    let cfg = config(&refs, &host_platform().architecture, "many");
    let mut entries = vec![(format!("{}.json", sha(&cfg)), cfg.clone())];
    let mut names = Vec::new();
    for l in &layers {
        let name = format!("{}/layer.tar", sha(l));
        names.push(name.clone());
        entries.push((name, l.clone()));
    }
    let manifest = serde_json::json!([{
        "Config": format!("{}.json", sha(&cfg)), "RepoTags": ["many:1"], "Layers": names,
    }]);
    entries.push(("manifest.json".into(), manifest.to_string().into_bytes()));
    let path = tmp.path().join("many.tar");
    std::fs::write(&path, archive(&entries)).unwrap();
    let image = store.import_archive(&path, None).unwrap().remove(0);
    let option_bytes: usize = image.layers.iter().map(|p| p.as_os_str().len() + 1).sum();
    assert!(
        option_bytes > 4096,
        "test does not exceed the page: {option_bytes}"
    );

    let container = tmp.path().join("c");
    let _guard = MountGuard(container.clone());
    let rootfs = store.mount_rootfs(&image, &container).unwrap();
    assert!(!rootfs.join("f00").exists());
    for i in 1..60 {
        let got = std::fs::read_to_string(rootfs.join(format!("f{i:02}"))).unwrap();
        assert_eq!(got, format!("{i}\n"));
    }
    store.unmount_rootfs(&container).unwrap();
    assert!(mount_points_under(&container).is_empty());
}

#[test]
fn the_busybox_script_builds_an_archive_that_imports_in_both_formats() {
    if !is_root() {
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipped: no /bin/busybox (apt-get install busybox-static)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bb.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/busybox-image");
    let status = std::process::Command::new(&script)
        .arg(&out)
        .arg("busybox:test")
        .status()
        .unwrap();
    assert!(status.success());
    let store = ImageStore::open(&tmp.path().join("images")).unwrap();
    let image = store.import_archive(&out, None).unwrap().remove(0);
    assert_eq!(image.reference, "docker.io/library/busybox:test");
    assert_eq!(image.config.cmd, vec!["sh"]);

    let container = tmp.path().join("c");
    let _guard = MountGuard(container.clone());
    let rootfs = store.mount_rootfs(&image, &container).unwrap();
    let sh = std::fs::symlink_metadata(rootfs.join("bin/sh")).unwrap();
    assert!(sh.file_type().is_symlink());
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    let tmp_mode = std::fs::metadata(rootfs.join("tmp")).unwrap().mode();
    assert_eq!(tmp_mode & 0o7777, 0o1777);
    store.unmount_rootfs(&container).unwrap();

    // The same image through skopeo as an OCI layout archive shares the layers.
    let oci = tmp.path().join("bb-oci.tar");
    let converted = std::process::Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", out.display()))
        .arg(format!("oci-archive:{}:busybox:oci", oci.display()))
        .output();
    match converted {
        Ok(o) if o.status.success() => {
            let again = store.import_archive(&oci, None).unwrap().remove(0);
            assert_eq!(again.reference, "docker.io/library/busybox:oci");
            // skopeo rewrites the config (so the id differs) but not the layers.
            assert_eq!(again.layers, image.layers);
        }
        _ => eprintln!("skopeo unavailable: OCI half skipped"),
    }
}
