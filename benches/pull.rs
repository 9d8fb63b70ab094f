//! Image pull speed (issue #3): a ~50 MB three-layer image from Debian's docker-registry on
//! 127.0.0.1, pulled by herd (download with sha256 and size checks, then diff-id check and
//! unpack into the store) and by `skopeo copy` to a directory (download and verify only), in
//! the same run, alternating, median of `HERD_PULL_N` rounds (default 5).
//!
//! Prints herd's download phase and whole pull next to skopeo's copy, their ratio (target
//! ≤ 1.2×), and unpack throughput. No asserts.
//! `CARGO_TARGET_DIR=/var/tmp/herd-target cargo bench --bench pull`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::registry::{big_image, Registry};
use herd::oci::{Puller, RegistrySettings};
use herd::worker::images::pull::Progress;
use herd::worker::images::{ImageStore, Reference};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let n: usize = std::env::var("HERD_PULL_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let reg = Registry::start();
    let tmp = tempfile::Builder::new()
        .prefix("herd-pull-bench-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    big_image(tmp.path(), &reg, "big:1");
    let image = format!("{}/big:1", reg.addr);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mut herd_total, mut herd_download, mut skopeo) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0u64;
    let mut unpacked = 0u64;
    for round in 0..n {
        // skopeo: registry → directory, verifying digests.
        let dest = tmp.path().join(format!("skopeo-{round}"));
        let t = Instant::now();
        let st = std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("dir:{}", dest.display()))
            .status()
            .expect("skopeo");
        assert!(st.success(), "skopeo copy failed");
        skopeo.push(t.elapsed());
        let _ = std::fs::remove_dir_all(&dest);

        // herd: into a fresh store.
        let root = tmp.path().join(format!("store-{round}"));
        let store = ImageStore::open(&root).expect("store");
        let r = Reference::parse(&image).expect("ref");
        let puller = Puller::direct(&RegistrySettings::default(), &r);
        let downloaded_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let mark = downloaded_at.clone();
        let progress = Arc::new(move |p: Progress| {
            if p.total > 0 && p.done == p.total {
                let mut m = mark.lock().unwrap_or_else(|e| e.into_inner());
                m.get_or_insert_with(Instant::now);
            }
        });
        let t = Instant::now();
        let pulled = rt
            .block_on(store.pull(&puller, &r, progress))
            .expect("herd pull");
        let total = t.elapsed();
        let download = downloaded_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|d| d - t)
            .unwrap_or(total);
        herd_total.push(total);
        herd_download.push(download);
        bytes = pulled.bytes;
        unpacked = store.list().expect("list").iter().map(|i| i.size).sum();
        let _ = std::fs::remove_dir_all(&root);
    }
    let (ht, hd, sk) = (median(herd_total), median(herd_download), median(skopeo));
    println!(
        "pull of a {:.1} MB 3-layer image from docker-registry on 127.0.0.1, median of {n}",
        bytes as f64 / 1e6
    );
    println!(
        "  skopeo copy (download + verify)          {:8.1} ms",
        ms(sk)
    );
    println!(
        "  herd download phase (stream + verify)    {:8.1} ms  ({:.2}x skopeo)",
        ms(hd),
        ms(hd) / ms(sk)
    );
    println!(
        "  herd whole pull (+ diff ids + unpack)    {:8.1} ms  ({:.2}x skopeo)",
        ms(ht),
        ms(ht) / ms(sk)
    );
    let unpack = ht.saturating_sub(hd);
    println!(
        "  unpack {:.1} MB in {:.1} ms: {:.0} MB/s",
        unpacked as f64 / 1e6,
        ms(unpack),
        unpacked as f64 / 1e6 / unpack.as_secs_f64().max(1e-9)
    );
}
