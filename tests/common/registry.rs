//! A real OCI registry for tests: Debian's `docker-registry` on 127.0.0.1 with a random port
//! and its own storage dir, killed and removed on drop. Images go in with `skopeo`; multi-arch
//! indexes are assembled from per-platform manifests and PUT with curl. The registry's access
//! log (its stderr) tells how often each blob was served.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    pub addr: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let r = Registry { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&r.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}",
                r.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many GETs of this blob the registry answered (any repository).
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest}")))
            .count()
    }

    /// The file the registry serves a blob from (to corrupt it in tests).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Copies a `docker save` archive in as `name:tag` (plain HTTP).
    pub fn push_archive(&self, archive: &Path, name_tag: &str) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{}/{name_tag}", self.addr))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {} → {name_tag}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Raw manifest bytes of `name:tag`, as stored.
    pub fn manifest(&self, name_tag: &str) -> Vec<u8> {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{name_tag}", self.addr))
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
            .arg(format!("http://{}/v2/{name}/manifests/{tag}", self.addr))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "PUT index {name}:{tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sha256(index.as_bytes())
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
