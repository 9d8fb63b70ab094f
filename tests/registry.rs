//! The master's image registry for real: `herd image push` into a running master, then the
//! `/v2/` API checked with curl and skopeo (bytes, digests, HEAD, ranges, errors, auth), and
//! pull-through from a real `docker-registry` on loopback.

mod common;

use std::process::Command;

use common::registry::Registry;
use common::tarball::{config_for, sha256_hex, tar_of, Entry, RawTar};
use common::Cluster;

struct Reply {
    code: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().to_ascii_lowercase() == name).then(|| v.trim().to_string())
        })
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// curl against the master with its CA; `extra` are more curl arguments (auth, -I, -r, -H).
fn curl(c: &Cluster, path: &str, extra: &[&str]) -> Reply {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, b) = (dir.path().join("h"), dir.path().join("b"));
    let out = Command::new("curl")
        .args(["-sS", "-o"])
        .arg(&b)
        .arg("-D")
        .arg(&h)
        .args(["-w", "%{http_code}"])
        .args(c.curl_ca())
        .args(extra)
        .arg(format!("{}{path}", c.api_url))
        .output()
        .expect("curl");
    Reply {
        code: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&h).unwrap_or_default(),
        body: std::fs::read(&b).unwrap_or_default(),
    }
}

fn admin_token(c: &Cluster) -> String {
    std::fs::read_to_string(c.master.data_dir.join("admin.token"))
        .expect("admin.token")
        .trim()
        .to_string()
}

fn bearer(token: &str) -> Vec<String> {
    vec!["-H".into(), format!("Authorization: Bearer {token}")]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `127.0.0.1:PORT` of the master's API.
fn master_host(c: &Cluster) -> String {
    c.api_url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string()
}

/// Files under the master's blob store (what a push leaves behind).
fn stored_blobs(c: &Cluster) -> Vec<String> {
    let dir = c.master.data_dir.join("registry/blobs/sha256");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn tmp_entries(c: &Cluster) -> usize {
    std::fs::read_dir(c.master.data_dir.join("registry/tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn skopeo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("skopeo").args(args).output().expect("skopeo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn manifest_accept() -> Vec<String> {
    vec![
        "-H".into(),
        "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json".into(),
    ]
}

#[test]
fn a_pushed_image_is_served_with_digests_head_ranges_errors_and_auth() {
    let c = Cluster::start(&[&[]]);
    let token = admin_token(&c);
    let (ok, out, err) = c.herd(
        &[
            "image",
            "push",
            &c.image.to_string_lossy(),
            "--name",
            "app:1",
        ],
        None,
    );
    assert!(ok, "push failed: {out} {err}");
    assert!(out.contains("pushed docker.io/library/app:1"), "{out}");

    let (ok, ls, err) = c.herd(&["image", "ls"], None);
    assert!(ok, "{err}");
    assert!(ls.contains("NAME") && ls.contains("LAST-USED"), "{ls}");
    assert!(
        ls.contains("docker.io/library/app") && ls.contains("linux/"),
        "{ls}"
    );

    // Manifest: content type as stored, digest header matches the bytes.
    let auth = bearer(&token);
    let mut a = args(&auth);
    let acc = manifest_accept();
    a.extend(args(&acc));
    let m = curl(&c, "/v2/docker.io/library/app/manifests/1", &a);
    assert_eq!(m.code, 200, "{}", String::from_utf8_lossy(&m.body));
    assert_eq!(
        m.header("content-type").as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    let digest = format!("sha256:{}", sha256_hex(&m.body));
    assert_eq!(m.header("docker-content-digest"), Some(digest.clone()));
    assert_eq!(
        m.header("docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    // Short names mean Docker Hub, like a pod's image field.
    let short = curl(&c, "/v2/app/manifests/1", &a);
    assert_eq!(short.body, m.body);
    // By digest too.
    let by_digest = curl(
        &c,
        &format!("/v2/docker.io/library/app/manifests/{digest}"),
        &a,
    );
    assert_eq!(by_digest.code, 200);
    assert_eq!(by_digest.body, m.body);
    // HEAD: same headers, no body.
    let mut head = a.clone();
    head.push("-I");
    let h = curl(&c, "/v2/docker.io/library/app/manifests/1", &head);
    assert_eq!(h.code, 200);
    assert_eq!(h.header("content-length"), Some(m.body.len().to_string()));
    assert_eq!(h.header("docker-content-digest"), Some(digest.clone()));

    // The layer blob: whole, ranged, HEAD, bad range.
    let manifest: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    let path = format!("/v2/docker.io/library/app/blobs/{layer}");
    let blob = curl(&c, &path, &args(&auth));
    assert_eq!(blob.code, 200);
    assert_eq!(format!("sha256:{}", sha256_hex(&blob.body)), layer);
    assert_eq!(blob.body.len() as u64, size);
    assert_eq!(blob.header("accept-ranges").as_deref(), Some("bytes"));
    let mut ranged = args(&auth);
    ranged.extend(["-r", "100-1123"]);
    let part = curl(&c, &path, &ranged);
    assert_eq!(part.code, 206);
    assert_eq!(part.body, blob.body[100..1124]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-1123/{size}"))
    );
    let mut tail = args(&auth);
    let past = format!("Range: bytes={size}-");
    tail.extend(["-H", past.as_str()]);
    let bad = curl(&c, &path, &tail);
    assert_eq!(bad.code, 416);
    assert_eq!(bad.header("content-range"), Some(format!("bytes */{size}")));
    let mut head = args(&auth);
    head.push("-I");
    let hb = curl(&c, &path, &head);
    assert_eq!(hb.code, 200);
    assert_eq!(hb.header("content-length"), Some(size.to_string()));

    // Errors are OCI JSON.
    let bad_name = curl(&c, "/v2/Bad/manifests/1", &args(&auth));
    assert_eq!(
        (bad_name.code, bad_name.error_code().as_str()),
        (400, "NAME_INVALID")
    );
    let bad_digest = curl(
        &c,
        "/v2/docker.io/library/app/blobs/sha256:nope",
        &args(&auth),
    );
    assert_eq!(bad_digest.error_code(), "DIGEST_INVALID");
    // The harness's master is air-gapped: what is not cached is unknown.
    let unknown = curl(&c, "/v2/docker.io/library/app/manifests/2", &a);
    assert_eq!(
        (unknown.code, unknown.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );

    // Auth: none → 401 with a Basic challenge; a node's MQTT credentials → 200; an API
    // token as the Basic password → 200; a join token → 403.
    let none = curl(&c, "/v2/", &[]);
    assert_eq!(none.code, 401);
    assert_eq!(
        none.header("www-authenticate").as_deref(),
        Some("Basic realm=\"herd\"")
    );
    assert_eq!(none.error_code(), "UNAUTHORIZED");
    let wrong = curl(&c, "/v2/", &["-u", "w1:wrong"]);
    assert_eq!(wrong.code, 401);
    let node: serde_json::Value = serde_json::from_slice(
        &std::fs::read(c.workers[0].data_dir.join("node.json")).expect("node.json"),
    )
    .unwrap();
    let user = format!(
        "{}:{}",
        node["username"].as_str().unwrap(),
        node["password"].as_str().unwrap()
    );
    let as_node = curl(&c, "/v2/docker.io/library/app/manifests/1", &["-u", &user]);
    assert_eq!(as_node.code, 200);
    assert_eq!(as_node.body, m.body);
    let base = curl(&c, "/v2/", &["-u", &user]);
    assert_eq!(base.code, 200);
    let as_token = format!("anyone:{token}");
    assert_eq!(curl(&c, "/v2/", &["-u", &as_token]).code, 200);
    let join = format!("x:{}", c.token);
    let refused = curl(&c, "/v2/", &["-u", &join]);
    assert_eq!(
        (refused.code, refused.error_code().as_str()),
        (403, "DENIED")
    );

    // A registry client reads it: skopeo inspect and copy (which verifies every digest).
    let host = master_host(&c);
    let creds = format!("x:{token}");
    let src = format!("docker://{host}/docker.io/library/app:1");
    let (ok, out, err) = skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &src]);
    assert!(ok, "skopeo inspect: {err}");
    let inspect: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspect["Digest"].as_str(), Some(digest.as_str()));
    let dest = c.tmp.path().join("copied");
    let (ok, _, err) = skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &src,
        &format!("oci:{}:app", dest.display()),
    ]);
    assert!(ok, "skopeo copy: {err}");
    // skopeo may recompress layers for the oci: destination; the config is copied as is.
    let config = manifest["config"]["digest"].as_str().unwrap();
    assert!(dest
        .join("blobs/sha256")
        .join(config.trim_start_matches("sha256:"))
        .is_file());
}

/// A docker save archive whose second layer is not the content its config names.
fn corrupt_archive() -> Vec<u8> {
    let good = tar_of(&[Entry::file("a.txt", b"first layer")]);
    let named = tar_of(&[Entry::file("b.txt", b"second layer")]);
    let actual = tar_of(&[Entry::file("b.txt", b"tampered!!!!")]);
    let config = config_for(&[&good, &named]);
    let config_name = format!("{}.json", sha256_hex(&config));
    let mut t = RawTar::new();
    t.file(&config_name, &config);
    t.file("l0/layer.tar", &good);
    t.file("l1/layer.tar", &actual);
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["bad:1"],
        "Layers": ["l0/layer.tar", "l1/layer.tar"],
    }]);
    t.file("manifest.json", manifest.to_string().as_bytes());
    t.finish()
}

#[test]
fn a_corrupt_or_truncated_archive_is_refused_and_nothing_is_stored() {
    let c = Cluster::start(&[]);
    let before = stored_blobs(&c);
    let bad = c.tmp.path().join("bad.tar");
    std::fs::write(&bad, corrupt_archive()).unwrap();
    let (ok, out, err) = c.herd(&["image", "push", &bad.to_string_lossy()], None);
    assert!(!ok, "corrupt archive accepted: {out}");
    assert!(err.contains("diff id"), "{err}");
    assert!(err.contains("l1/layer.tar"), "names the bad layer: {err}");
    assert_eq!(stored_blobs(&c), before, "a refused push stores no blob");
    assert_eq!(tmp_entries(&c), 0, "staging removed");

    let whole = std::fs::read(&c.image).unwrap();
    let cut = c.tmp.path().join("cut.tar");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let (ok, _, err) = c.herd(&["image", "push", &cut.to_string_lossy()], None);
    assert!(!ok);
    assert!(
        err.contains("truncated") || err.contains("corrupt") || err.contains("no entry"),
        "{err}"
    );
    assert_eq!(stored_blobs(&c), before);
    assert_eq!(tmp_entries(&c), 0);
    let (ok, ls, _) = c.herd(&["image", "ls", "-o", "json"], None);
    assert!(ok);
    assert_eq!(ls.trim(), "[]", "nothing indexed");

    // The same image, well formed, goes in; prune with --all removes it and its blobs.
    let (ok, out, err) = c.herd(&["image", "push", &c.image.to_string_lossy()], None);
    assert!(ok, "{out} {err}");
    assert!(!stored_blobs(&c).is_empty());
    let (ok, out, err) = c.herd(
        &["image", "prune", "--all", "--dry-run", "--grace", "0s"],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("would remove 1 images, 3 blobs"), "{out}");
    assert_eq!(stored_blobs(&c).len(), 3, "dry run removes nothing");
    let (ok, out, err) = c.herd(&["image", "prune", "--all", "--grace", "0s"], None);
    assert!(ok, "{err}");
    assert!(out.contains("removed 1 images, 3 blobs"), "{out}");
    assert!(stored_blobs(&c).is_empty());
}

/// GET `url` with curl; returns (status, body, headers).
fn curl_url(url: &str, extra: &[&str]) -> Reply {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, b) = (dir.path().join("h"), dir.path().join("b"));
    let out = Command::new("curl")
        .args(["-sS", "-o"])
        .arg(&b)
        .arg("-D")
        .arg(&h)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    Reply {
        code: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&h).unwrap_or_default(),
        body: std::fs::read(&b).unwrap_or_default(),
    }
}

#[test]
fn two_clients_pulling_through_the_master_fetch_each_blob_upstream_once() {
    let reg = Registry::start();
    let c = Cluster::start_pulling(&[]);
    reg.push_archive(&c.image, "app:1");
    let token = admin_token(&c);
    let auth = bearer(&token);
    let acc = manifest_accept();
    let mut a = args(&auth);
    a.extend(args(&acc));

    // The master serves upstream's manifest byte for byte, with its media type and digest.
    let upstream = curl_url(
        &format!("http://{}/v2/app/manifests/1", reg.host()),
        &args(&acc),
    );
    assert_eq!(upstream.code, 200);
    let path = format!("/v2/{}/app/manifests/1", reg.host());
    let m = curl(&c, &path, &a);
    assert_eq!(m.code, 200, "{}", String::from_utf8_lossy(&m.body));
    assert_eq!(m.body, upstream.body);
    assert_eq!(m.header("content-type"), upstream.header("content-type"));
    assert_eq!(
        m.header("docker-content-digest"),
        upstream.header("docker-content-digest")
    );
    let manifest: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    let mut blobs: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    blobs.push(manifest["config"]["digest"].as_str().unwrap().to_string());

    // Two registry clients at once through the master.
    let host = master_host(&c);
    let creds = format!("x:{token}");
    // Standard clients cannot put `:` in a path: the port is written `_PORT`.
    let src = format!("docker://{host}/{}/app:1", reg.host().replace(':', "_"));
    let pulls: Vec<_> = (0..2)
        .map(|i| {
            let (src, creds) = (src.clone(), creds.clone());
            let dest = format!(
                "oci:{}:app",
                c.tmp.path().join(format!("pull{i}")).display()
            );
            std::thread::spawn(move || {
                skopeo(&[
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    "--src-creds",
                    &creds,
                    &src,
                    &dest,
                ])
            })
        })
        .collect();
    for p in pulls {
        let (ok, _, err) = p.join().unwrap();
        assert!(ok, "skopeo copy through the master: {err}");
    }
    for b in &blobs {
        assert_eq!(
            reg.blob_gets(b),
            1,
            "blob {b} fetched upstream once:\n{}",
            reg.log()
        );
    }

    // Unknown things upstream are unknown here, as OCI errors.
    let unknown_tag = curl(&c, &format!("/v2/{}/app/manifests/nope", reg.host()), &a);
    assert_eq!(
        (unknown_tag.code, unknown_tag.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN"),
        "{}",
        String::from_utf8_lossy(&unknown_tag.body)
    );
    let unknown_repo = curl(&c, &format!("/v2/{}/nothing/manifests/1", reg.host()), &a);
    assert_eq!(
        unknown_repo.code,
        404,
        "{}",
        String::from_utf8_lossy(&unknown_repo.body)
    );
    let zero = format!("sha256:{}", "0".repeat(64));
    let unknown_blob = curl(
        &c,
        &format!("/v2/{}/app/blobs/{zero}", reg.host()),
        &args(&auth),
    );
    assert_eq!(
        (unknown_blob.code, unknown_blob.error_code().as_str()),
        (404, "BLOB_UNKNOWN")
    );

    // A multi-platform index is served as is, and the cache tells its platforms.
    let index = reg.push_index(
        "app",
        "multi",
        &[("1", "linux/amd64"), ("1", "linux/arm/v7")],
    );
    let im = curl(&c, &format!("/v2/{}/app/manifests/multi", reg.host()), &a);
    assert_eq!(im.code, 200);
    assert_eq!(
        im.header("content-type").as_deref(),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(im.header("docker-content-digest"), Some(index));

    // The cache lists both, with their platforms.
    let (ok, ls, err) = c.herd(&["image", "ls"], None);
    assert!(ok, "{err}");
    assert!(
        ls.contains(&format!("{}/app", reg.host())) && ls.contains("linux/"),
        "{ls}"
    );
    let multi = ls
        .lines()
        .find(|l| l.contains(" multi "))
        .unwrap_or_default();
    assert!(multi.contains("linux/amd64,linux/arm/v7"), "{ls}");

    // Upstream gone: the cached tag and blobs still serve.
    drop(reg);
    let again = curl(&c, &path, &a);
    assert_eq!(again.code, 200);
    assert_eq!(again.body, m.body);
    let (ok, _, err) = skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &src,
        &format!("oci:{}:app", c.tmp.path().join("offline").display()),
    ]);
    assert!(ok, "pull with upstream down: {err}");
}

/// Serving throughput of one ~50 MB blob: docker-registry directly vs the master's cache
/// (HTTPS), same run. Prints the numbers; asserts only that the bytes match.
/// `cargo nextest run --test registry throughput --run-ignored all --no-capture`
#[test]
#[ignore]
fn throughput_of_a_50mb_blob_from_the_cache_vs_docker_registry() {
    use common::tarball::docker_archive;
    let reg = Registry::start();
    let c = Cluster::start_pulling(&[]);
    // Incompressible content, so a recompressing client cannot make it small.
    let mut data = vec![0u8; 50 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let layer = tar_of(&[Entry::file("big", &data)]);
    let archive = c.tmp.path().join("big.tar");
    std::fs::write(&archive, docker_archive(&[&layer], "big:1")).unwrap();
    reg.push_archive(&archive, "big:1");
    let acc = manifest_accept();
    let up = curl_url(
        &format!("http://{}/v2/big/manifests/1", reg.host()),
        &args(&acc),
    );
    let manifest: serde_json::Value = serde_json::from_slice(&up.body).unwrap();
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    let token = admin_token(&c);
    let speed = |url: &str, extra: Vec<String>| -> f64 {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{speed_download}",
            ])
            .args(extra)
            .arg(url)
            .output()
            .expect("curl");
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let mut it = s.split_whitespace();
        assert_eq!(it.next(), Some("200"), "{s}");
        it.next().unwrap().parse::<f64>().unwrap() / 1e6
    };
    let mut master_args = c.curl_ca();
    master_args.extend(bearer(&token));
    let direct = format!("http://{}/v2/big/blobs/{digest}", reg.host());
    let cached = format!("{}/v2/{}/big/blobs/{digest}", c.api_url, reg.host());
    // A client reads the manifest first; it tells the cache the blob's size.
    let mut with_accept = master_args.clone();
    with_accept.extend(acc.clone());
    let m = curl(
        &c,
        &format!("/v2/{}/big/manifests/1", reg.host()),
        &args(&with_accept),
    );
    assert_eq!(m.code, 200);
    let fill = speed(&cached, master_args.clone());
    let mut up_runs = Vec::new();
    let mut cache_runs = Vec::new();
    for _ in 0..3 {
        up_runs.push(speed(&direct, Vec::new()));
        cache_runs.push(speed(&cached, master_args.clone()));
    }
    eprintln!(
        "blob {digest} ({size} bytes): docker-registry (http) {up_runs:.0?} MB/s; master cache (https) {cache_runs:.0?} MB/s; first pull-through fill {fill:.0} MB/s"
    );
    assert_eq!(
        reg.blob_gets(&digest),
        4,
        "the master fetched it once, curl 3 times"
    );
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: main
    image: {image}
    command: [\"sh\", \"-c\", \"sleep 600\"]
"
    )
}

fn running(c: &Cluster, name: &str) -> Option<()> {
    (c.pod(name)?["status"]["phase"].as_str()? == "Running").then_some(())
}

/// The whole path: pods on a worker whose store lacks their images start from an image
/// pushed to the master (no registry anywhere) and from one the master pulls through from a
/// registry, each blob fetched upstream once.
#[test]
fn workers_run_pushed_and_pulled_through_images_from_the_master() {
    let reg = Registry::start();
    let c = Cluster::start_pulling(&[&[]]);
    c.wait_nodes_ready();
    let (ok, out, err) = c.herd(
        &[
            "image",
            "push",
            &c.image.to_string_lossy(),
            "--name",
            "pushed/app:1",
        ],
        None,
    );
    assert!(ok, "push: {out} {err}");
    reg.push_archive(&c.image, "app:1");
    let (ok, out, err) = c.herd(
        &["apply", "-f", "-"],
        Some(&pod("from-push", "pushed/app:1")),
    );
    assert!(ok, "{out} {err}");
    let upstream_image = format!("{}/app:1", reg.host());
    let (ok, out, err) = c.herd(
        &["apply", "-f", "-"],
        Some(&pod("from-upstream", &upstream_image)),
    );
    assert!(ok, "{out} {err}");
    c.wait("pods Running", std::time::Duration::from_secs(90), || {
        running(&c, "from-push")?;
        running(&c, "from-upstream")
    });
    let manifest: serde_json::Value = serde_json::from_slice(&reg.manifest("app:1")).unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        assert_eq!(reg.blob_gets(d), 1, "layer {d} fetched upstream once");
    }
    let (ok, ls, _) = c.herd(&["image", "ls"], None);
    assert!(ok);
    assert!(
        ls.contains("docker.io/pushed/app") && ls.contains(&format!("{}/app", reg.host())),
        "{ls}"
    );
    // The cluster's drop removes the pods and containers.
}
