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
