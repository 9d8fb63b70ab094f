//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1
//! with a random port and a temp storage dir, its access log captured so a test can count
//! how often each blob was fetched. Images go in with `skopeo copy`. Dropping it kills the
//! process and removes its directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers (at most 20 s).
    pub fn start() -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is not installed (scripts/deps installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("herd-registry-{}-", std::process::id()))
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            root = dir.path().join("storage").display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let r = Registry { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &format!("{}/v2/", r.url())])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `127.0.0.1:PORT`, as the first component of image names.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Copies an image into the registry as `NAME` (e.g. `app:1`): `src` is a skopeo source
    /// such as `docker-archive:/x.tar` or `oci-archive:/x.tar`. Panics with skopeo's output
    /// when it fails.
    pub fn push(&self, src: &str, name: &str) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false", src])
            .arg(format!("docker://{}/{name}", self.host()))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {src} -> {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Pushes a `docker save` archive.
    pub fn push_archive(&self, archive: &Path, name: &str) {
        self.push(&format!("docker-archive:{}", archive.display()), name);
    }

    /// The registry's log so far (access log lines included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many `GET` requests for blob `digest` the access log shows (HEADs not counted).
    pub fn blob_gets(&self, digest: &str) -> usize {
        let needle = format!("/blobs/{digest} ");
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(&needle))
            .count()
    }

    /// The file the registry serves a blob from (to corrupt it in tests).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Raw manifest bytes of `name:tag`, as stored.
    pub fn manifest(&self, name_tag: &str) -> Vec<u8> {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{name_tag}", self.host()))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo inspect {name_tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// PUTs an OCI index `name:tag` over already pushed `name:<entry tag>` manifests, each
    /// with the platform given (`linux/arm/v7`). Returns the index digest.
    pub fn push_index(&self, name: &str, tag: &str, entries: &[(&str, &str)]) -> String {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(entry_tag, platform)| {
                let raw = self.manifest(&format!("{name}:{entry_tag}"));
                let v: serde_json::Value = serde_json::from_slice(&raw).expect("manifest json");
                let mut parts = platform.split('/');
                let mut plat = serde_json::json!({
                    "os": parts.next().unwrap_or_default(),
                    "architecture": parts.next().unwrap_or_default(),
                });
                if let Some(variant) = parts.next() {
                    plat["variant"] = variant.into();
                }
                serde_json::json!({
                    "mediaType": v["mediaType"],
                    "digest": sha256(&raw),
                    "size": raw.len(),
                    "platform": plat,
                })
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        })
        .to_string();
        let out = Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT", "-H"])
            .arg("Content-Type: application/vnd.oci.image.index.v1+json")
            .arg("--data-binary")
            .arg(&index)
            .arg(format!("http://{}/v2/{name}/manifests/{tag}", self.host()))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "PUT index {name}:{tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sha256(index.as_bytes())
    }

    /// Storage path of the registry's data.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// A busybox of another Debian architecture, fetched by `scripts/foreign-busybox`
/// (scripts/deps runs it, so tests never download anything).
pub fn foreign_busybox(debarch: &str) -> PathBuf {
    let root = std::env::var("HERD_TEST_CACHE").unwrap_or_else(|_| "/var/cache/herd-test".into());
    let p = Path::new(&root)
        .join("busybox")
        .join(debarch)
        .join("busybox");
    assert!(
        p.is_file(),
        "{} missing: run scripts/foreign-busybox (scripts/test does)",
        p.display()
    );
    p
}

/// A `docker save` archive of busybox for `platform` (`arm64`, `arm/v7`, ...), built by
/// scripts/busybox-image from `busybox` with `extra` as an extra layer payload size in bytes
/// (random content: a bigger image for progress and interruption tests).
pub fn busybox_archive(dir: &Path, busybox: &Path, platform: &str, tag: &str) -> PathBuf {
    let out = dir.join(format!("{}.tar", tag.replace(['/', ':'], "_")));
    let st = Command::new(super::repo().join("scripts/busybox-image"))
        .arg(&out)
        .arg(tag)
        .env("BUSYBOX", busybox)
        .env("ARCH", platform)
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/busybox-image");
    assert!(st.success(), "scripts/busybox-image {platform} failed");
    out
}

/// Random bytes from a seed (xorshift): incompressible layer content without a crate.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A ~48 MB image of three 16 MiB random-content layers (incompressible, so transfer and
/// hashing dominate as they do for real application layers).
pub fn big_image(dir: &Path, reg: &Registry, name_tag: &str) {
    let mut layers: Vec<Vec<u8>> = Vec::new();
    for i in 0..3u64 {
        let name = format!("data/blob{i}");
        layers.push(super::tarball::tar_of(&[
            super::tarball::Entry::dir("data"),
            super::tarball::Entry::file(&name, &noise(i + 7, 16 << 20)),
        ]));
    }
    let refs: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    let tar = dir.join("big.tar");
    std::fs::write(&tar, super::tarball::docker_archive(&refs, name_tag)).expect("big archive");
    reg.push_archive(&tar, name_tag);
}

/// A busybox root (`/bin/busybox` and the applets a test uses) as a plain layer tar.
pub fn busybox_layer() -> Vec<u8> {
    use super::tarball::Entry;
    let bin = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let mut exe = Entry::file("bin/busybox", &bin);
    exe.mode = 0o755;
    let mut entries = vec![Entry::dir("bin"), exe];
    for applet in ["sh", "sleep", "cat", "echo", "ls"] {
        entries.push(Entry::link(
            &format!("bin/{applet}"),
            tar::EntryType::Symlink,
            "busybox",
        ));
    }
    super::tarball::tar_of(&entries)
}

/// A runnable image: busybox plus `extra` 16 MiB layers of random data, pushed as `name_tag`.
pub fn runnable_image(dir: &Path, reg: &Registry, name_tag: &str, extra: u64) {
    let mut layers = vec![busybox_layer()];
    for i in 0..extra {
        layers.push(super::tarball::tar_of(&[
            super::tarball::Entry::dir("data"),
            super::tarball::Entry::file(&format!("data/blob{i}"), &noise(i + 11, 16 << 20)),
        ]));
    }
    let refs: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    let tar = dir.join(format!("{}.tar", name_tag.replace(['/', ':'], "_")));
    std::fs::write(&tar, super::tarball::docker_archive(&refs, name_tag)).expect("archive");
    reg.push_archive(&tar, name_tag);
}

/// Layer digests of `name_tag`'s manifest.
pub fn layer_digests(reg: &Registry, name_tag: &str) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(&reg.manifest(name_tag)).expect("json");
    m["layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["digest"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
