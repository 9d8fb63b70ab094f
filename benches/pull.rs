//! Image pull speed (issue #3): a ~50 MB three-layer image from Debian's docker-registry on
//! 127.0.0.1, pulled by herd (download with sha256 and size checks, then diff-id check and
//! unpack into the store) and by `skopeo copy` to a directory (download and verify only), in
//! the same run, alternating, median of `HERD_PULL_N` rounds (default 5).
//!
//! Prints herd's download phase and whole pull next to skopeo's copy, their ratio (target
//! ≤ 1.2×), the like-for-like whole pull (`skopeo copy` to an OCI layout plus `umoci unpack`),
//! and unpack throughput. Then two workers' stores pull the image through a master's
//! cache: the first makes the master fetch each blob from the registry once, the second is
//! served entirely from the cache (registry blob GETs and bytes counted from its access log).
//! No asserts.
//! `CARGO_TARGET_DIR=/var/tmp/herd-target cargo bench --bench pull`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::registry::{big_image, Registry};
use common::Cluster;
use herd::oci::{Credentials, Mirror, Puller, RegistrySettings};
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
    let image = format!("{}/big:1", reg.host());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mut herd_total, mut herd_download, mut skopeo) = (Vec::new(), Vec::new(), Vec::new());
    // Like for like with herd's whole pull: download into an OCI layout, then unpack.
    let mut skopeo_umoci = Vec::new();
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

        let layout = tmp.path().join(format!("oci-{round}"));
        let bundle = tmp.path().join(format!("bundle-{round}"));
        let t = Instant::now();
        let st = std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("oci:{}:big", layout.display()))
            .status()
            .expect("skopeo");
        assert!(st.success(), "skopeo copy to an OCI layout failed");
        let st = std::process::Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:big", layout.display()))
            .arg(&bundle)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("umoci");
        assert!(st.success(), "umoci unpack failed");
        skopeo_umoci.push(t.elapsed());
        let _ = std::fs::remove_dir_all(&layout);
        let _ = std::fs::remove_dir_all(&bundle);

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
    let su = median(skopeo_umoci);
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
    println!(
        "  skopeo copy to oci: + umoci unpack       {:8.1} ms  (herd whole pull {:.2}x this)",
        ms(su),
        ms(ht) / ms(su)
    );
    let unpack = ht.saturating_sub(hd);
    println!(
        "  unpack {:.1} MB in {:.1} ms: {:.0} MB/s",
        unpacked as f64 / 1e6,
        ms(unpack),
        unpacked as f64 / 1e6 / unpack.as_secs_f64().max(1e-9)
    );

    via_master(&rt, &reg, &image);
}

/// Two fresh stores pull through one master's cache; the registry's log tells what it served.
fn via_master(rt: &tokio::runtime::Runtime, reg: &Registry, image: &str) {
    let c = Cluster::start_pulling(&[]);
    let host = c
        .api_url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_owned();
    let conf = std::fs::read_to_string(c.config()).expect("admin.conf");
    let token = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().trim_matches('"').to_owned())
        .expect("admin token");
    let ca = std::fs::read(c.master.data_dir.join("pki/ca.crt")).expect("ca.crt");
    let mirror = Mirror {
        host,
        plain: false,
        ca_pem: Some(ca),
        credentials: Some(Credentials {
            username: "admin".into(),
            password: token,
        }),
    };
    let r = Reference::parse(image).expect("ref");
    let m: serde_json::Value =
        serde_json::from_slice(&reg.manifest("big:1")).expect("manifest json");
    let layers: Vec<(String, u64)> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().expect("digest").to_owned(),
                l["size"].as_u64().expect("size"),
            )
        })
        .collect();
    let served = |reg: &Registry| -> (usize, u64) {
        layers.iter().fold((0, 0), |(n, b), (d, size)| {
            let gets = reg.blob_gets(d);
            (n + gets, b + gets as u64 * size)
        })
    };
    let before = served(reg);
    let mut times = Vec::new();
    let mut after = Vec::new();
    for worker in ["w1", "w2"] {
        let root = c.tmp.path().join(format!("bench-{worker}"));
        let store = ImageStore::open(&root).expect("store");
        let puller = Puller::via(&mirror, &r);
        let t = Instant::now();
        rt.block_on(store.pull(&puller, &r, Arc::new(|_: Progress| {})))
            .expect("pull via master");
        times.push(t.elapsed());
        after.push(served(reg));
    }
    println!("through the master's cache (HTTPS, node-style auth):");
    println!(
        "  first worker  {:8.1} ms; registry served {} layer GETs, {:.1} MB",
        ms(times[0]),
        after[0].0 - before.0,
        (after[0].1 - before.1) as f64 / 1e6
    );
    println!(
        "  second worker {:8.1} ms; registry served {} layer GETs, {:.1} MB",
        ms(times[1]),
        after[1].0 - after[0].0,
        (after[1].1 - after[0].1) as f64 / 1e6
    );
}
