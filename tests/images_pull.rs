//! Registry pulls against a real registry (Debian's docker-registry on 127.0.0.1): platform
//! selection from a multi-arch index built from Debian's busybox-static for four platforms,
//! corrupt blobs, a pull killed half way, and `Always` pulls of an unchanged tag.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::registry::{big_image, busybox_archive, foreign_busybox, sha256, Registry};
use herd::oci::{PullError, Puller, RegistrySettings};
use herd::worker::images::pull::Progress;
use herd::worker::images::{ImageStore, Platform, Reference};

fn platform(s: &str) -> Platform {
    Platform::parse(s).expect("platform")
}

/// Pushes busybox for amd64, arm64 and arm/v7 (+ arm/v6 when `v6`) and an index over them.
fn fleet_index(reg: &Registry, dir: &Path, tag: &str, v6: bool) -> String {
    let mut entries = vec![
        (
            "amd64",
            "linux/amd64",
            Path::new("/bin/busybox").to_path_buf(),
        ),
        ("arm64", "linux/arm64/v8", foreign_busybox("arm64")),
        ("armv7", "linux/arm/v7", foreign_busybox("armhf")),
    ];
    if v6 {
        entries.push(("armv6", "linux/arm/v6", foreign_busybox("armel")));
    }
    for (entry_tag, plat, bin) in &entries {
        let arch = plat.trim_start_matches("linux/");
        let tar = busybox_archive(dir, bin, arch, &format!("bb:{entry_tag}"));
        reg.push_archive(&tar, &format!("bb:{entry_tag}"));
    }
    let list: Vec<(&str, &str)> = entries.iter().map(|(t, p, _)| (*t, *p)).collect();
    reg.push_index("bb", tag, &list)
}

fn store_for(dir: &Path, plat: &str) -> ImageStore {
    ImageStore::open(dir)
        .expect("store")
        .with_platform(platform(plat))
}

fn quiet() -> Arc<dyn Fn(Progress) + Send + Sync> {
    Arc::new(|_| {})
}

async fn pull(
    store: &ImageStore,
    image: &str,
) -> Result<herd::worker::images::pull::Pulled, PullError> {
    let r = Reference::parse(image).expect("reference");
    let puller = Puller::direct(&RegistrySettings::default(), &r);
    store.pull(&puller, &r, quiet()).await
}

/// The config digest of `name:tag`'s (single-platform) manifest: the image id it must give.
fn config_of(reg: &Registry, name_tag: &str) -> String {
    let m: serde_json::Value = serde_json::from_slice(&reg.manifest(name_tag)).expect("json");
    m["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_owned()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_board_pulls_its_own_variant_and_a_v6_board_never_gets_v7() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    fleet_index(&reg, tmp.path(), "multi", false);
    let with_v6 = fleet_index(&reg, tmp.path(), "multi6", true);
    let image = format!("{}/bb:multi", reg.host());
    for (plat, entry) in [
        ("linux/amd64", "amd64"),
        ("linux/arm64/v8", "arm64"),
        ("linux/arm/v7", "armv7"),
    ] {
        let store = store_for(&tmp.path().join(plat.replace('/', "-")), plat);
        let pulled = pull(&store, &image)
            .await
            .unwrap_or_else(|e| panic!("{plat}: {e}"));
        assert_eq!(
            pulled.image.id,
            config_of(&reg, &format!("bb:{entry}")),
            "{plat}"
        );
        assert_eq!(
            pulled.image.platform.architecture,
            platform(plat).architecture,
            "{plat}"
        );
    }
    // No v6 entry: refused with the offered platforms named, never the v7 one.
    let v6_store = store_for(&tmp.path().join("v6"), "linux/arm/v6");
    let err = pull(&v6_store, &image)
        .await
        .expect_err("v6 must not get v7");
    assert_eq!(
        err.to_string(),
        format!(
            "image {image}: no variant for linux/arm/v6 (it offers linux/amd64, linux/arm64/v8, linux/arm/v7)"
        )
    );
    assert!(v6_store.resolve(&image).expect("resolve").is_none());
    // With a v6 entry the v6 board gets exactly it, and the v7 board still its own.
    let image6 = format!("{}/bb:multi6", reg.host());
    let pulled = pull(&v6_store, &image6).await.expect("v6 pull");
    assert_eq!(pulled.image.id, config_of(&reg, "bb:armv6"));
    assert_eq!(pulled.digest, with_v6);
    let v7_store = store_for(&tmp.path().join("v7b"), "linux/arm/v7");
    let pulled = pull(&v7_store, &image6).await.expect("v7 pull");
    assert_eq!(pulled.image.id, config_of(&reg, "bb:armv7"));
    // The index digest pins the same choice.
    let pinned = format!("{}/bb@{with_v6}", reg.host());
    let pulled = pull(&store_for(&tmp.path().join("pin"), "linux/arm/v6"), &pinned)
        .await
        .expect("pull by digest");
    assert_eq!(pulled.image.id, config_of(&reg, "bb:armv6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_platform_image_for_another_architecture_is_refused() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let tar = busybox_archive(tmp.path(), &foreign_busybox("arm64"), "arm64", "only:arm64");
    reg.push_archive(&tar, "only:arm64");
    let store = store_for(&tmp.path().join("s"), "linux/amd64");
    let image = format!("{}/only:arm64", reg.host());
    let err = pull(&store, &image)
        .await
        .expect_err("arm64 image on amd64");
    assert_eq!(
        err.to_string(),
        format!("image {image}: no variant for linux/amd64 (it offers linux/arm64)")
    );
    assert!(store.list().expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_pull_of_an_unchanged_tag_downloads_nothing_and_a_new_push_is_fetched() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let tar = busybox_archive(tmp.path(), Path::new("/bin/busybox"), "amd64", "app:1");
    reg.push_archive(&tar, "app:latest");
    let store = store_for(&tmp.path().join("s"), "linux/amd64");
    let image = format!("{}/app:latest", reg.host());
    let first = pull(&store, &image).await.expect("first pull");
    assert!(first.downloaded && first.bytes > 0);
    let layer_gets = |reg: &Registry| -> usize {
        let m: serde_json::Value =
            serde_json::from_slice(&reg.manifest("app:latest")).expect("json");
        reg.blob_gets(m["layers"][0]["digest"].as_str().expect("layer"))
    };
    let gets = layer_gets(&reg);
    let second = pull(&store, &image).await.expect("second pull");
    assert!(!second.downloaded);
    assert_eq!(second.image.id, first.image.id);
    assert_eq!(
        layer_gets(&reg),
        gets,
        "an unchanged tag fetched its layer again"
    );
    // A new image under the same tag (a different layer) is pulled.
    let layer = common::tarball::tar_of(&[common::tarball::Entry::file("hello", b"v2\n")]);
    let v2 = tmp.path().join("v2.tar");
    std::fs::write(
        &v2,
        common::tarball::docker_archive(&[&layer], "app:latest"),
    )
    .expect("v2");
    reg.push_archive(&v2, "app:latest");
    let third = pull(&store, &image).await.expect("third pull");
    assert!(third.downloaded);
    assert_ne!(third.image.id, first.image.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_fails_with_a_digest_error_and_leaves_nothing_behind() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let tar = busybox_archive(tmp.path(), Path::new("/bin/busybox"), "amd64", "bad:1");
    reg.push_archive(&tar, "bad:1");
    let m: serde_json::Value = serde_json::from_slice(&reg.manifest("bad:1")).expect("json");
    let layer = m["layers"][0]["digest"].as_str().expect("layer").to_owned();
    let data = reg.blob_data(&layer);
    let good = std::fs::read(&data).expect("blob");
    // Same size, different bytes: only the digest can tell.
    let mut evil = good.clone();
    let mid = evil.len() / 2;
    evil[mid] ^= 0xff;
    std::fs::write(&data, &evil).expect("corrupt");
    let root = tmp.path().join("s");
    let store = store_for(&root, "linux/amd64");
    let image = format!("{}/bad:1", reg.host());
    let err = pull(&store, &image)
        .await
        .expect_err("corrupt blob accepted");
    let text = err.to_string();
    assert!(
        matches!(err, PullError::Digest { .. }) && text.contains(&layer),
        "want a digest error naming {layer}, got: {text}"
    );
    assert!(store.resolve(&image).expect("resolve").is_none());
    let hex = layer.trim_start_matches("sha256:");
    assert!(
        !root.join("blobs/sha256").join(hex).exists(),
        "corrupt blob stored"
    );
    assert!(
        files_under(&root.join("tmp")).is_empty(),
        "leftovers in tmp/"
    );
    assert!(
        files_under(&root.join("layers")).is_empty(),
        "a layer was unpacked"
    );
    // The registry heals; the next pull works.
    std::fs::write(&data, &good).expect("heal");
    let pulled = pull(&store, &image).await.expect("pull after healing");
    assert_eq!(
        sha256(&std::fs::read(root.join("blobs/sha256").join(hex)).expect("blob")),
        layer
    );
    assert!(pulled.downloaded);
}

#[test]
fn a_pull_killed_half_way_starts_again_cleanly() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    big_image(tmp.path(), &reg, "big:1");
    let data = tmp.path().join("worker");
    let image = format!("{}/big:1", reg.host());
    let herd = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_herd"));
        c.args(["image", "pull", "--data-dir"])
            .arg(&data)
            .args(args);
        c
    };
    // Kill the pull once a blob is half downloaded (a `.part` file with data), then pull again.
    let mut killed_mid_blob = false;
    for _ in 0..5 {
        let _ = std::fs::remove_dir_all(&data);
        let mut child = herd(&[&image])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn pull");
        let deadline = Instant::now() + Duration::from_secs(60);
        let tmp_dir = data.join("images/tmp");
        let seen = loop {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                break false;
            }
            let partial = walk(&tmp_dir)
                .into_iter()
                .any(|(p, len)| p.extension().is_some_and(|e| e == "part") && len > 0);
            if partial {
                break true;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let _ = child.kill();
        let _ = child.wait();
        if seen {
            killed_mid_blob = true;
            break;
        }
    }
    assert!(killed_mid_blob, "never caught the pull mid-blob in 5 tries");
    assert!(
        !data.join("images/refs.json").exists()
            || !std::fs::read_to_string(data.join("images/refs.json"))
                .unwrap_or_default()
                .contains("big:1"),
        "a killed pull left a reference"
    );
    let out = herd(&[&image]).output().expect("second pull");
    assert!(
        out.status.success(),
        "pull after kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        walk(&data.join("images/tmp")).is_empty(),
        "tmp/ not cleaned"
    );
    let ls = std::process::Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["image", "ls", "--data-dir"])
        .arg(&data)
        .output()
        .expect("ls");
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("big"),
        "image not listed"
    );
    // Every stored blob is what its name says.
    for (p, _) in walk(&data.join("images/blobs/sha256")) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert_eq!(
            sha256(&std::fs::read(&p).expect("blob")),
            format!("sha256:{name}")
        );
    }
}

fn walk(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((p, len));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_layer_from_a_registry_writes_nothing_outside_the_store() {
    use common::tarball::{docker_archive, tar_of, Entry};
    let reg = Registry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("outside dir");
    // A symlink to an absolute path outside, then a write through it; and a `..` entry.
    let layers = [
        tar_of(&[
            Entry::link(
                "evil",
                tar::EntryType::Symlink,
                outside.to_str().expect("utf8"),
            ),
            Entry::file("evil/pwned", b"x"),
        ]),
        tar_of(&[Entry::file("../../../escape", b"x")]),
    ];
    for (i, layer) in layers.iter().enumerate() {
        let tar = tmp.path().join(format!("hostile{i}.tar"));
        std::fs::write(&tar, docker_archive(&[layer], &format!("hostile:{i}"))).expect("tar");
        reg.push_archive(&tar, &format!("hostile:{i}"));
        let root = tmp.path().join(format!("s{i}"));
        let store = store_for(&root, "linux/amd64");
        let image = format!("{}/hostile:{i}", reg.host());
        let text = match pull(&store, &image).await {
            Ok(_) => panic!("hostile layer {i} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            text.contains("escape") || text.contains("symlink"),
            "{text}"
        );
        assert!(store.resolve(&image).expect("resolve").is_none());
        assert!(
            files_under(&outside).is_empty(),
            "layer {i} wrote outside: {:?}",
            files_under(&outside)
        );
        assert!(!tmp.path().join("escape").exists() && !Path::new("/escape").exists());
    }
}
