//! 300 create/start/stop/delete cycles through `LinuxRuntime` under a watchdog: every step has
//! a timeout, hangs are counted, and nothing may leak (cgroups, mounts, processes, state).
//! `HERD_CYCLES` overrides the count.

#[path = "runtime_support.rs"]
mod support;

use std::time::{Duration, Instant};

use herd::worker::runtime::{cgroups, Runtime};
use support::{can_run, mounts_mentioning, procs_in_cgroup, shims_mentioning, Fixture};

const STEP: Duration = Duration::from_secs(20);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_cycles_without_hangs_or_leaks() {
    if !can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let n: usize = std::env::var("HERD_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let fx = Fixture::new();
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let mut hangs = Vec::new();
    let mut failures = Vec::new();
    let mut leaks = Vec::new();
    let mut times = Vec::with_capacity(n);
    let overall = Instant::now();
    for i in 0..n {
        // Alternate: a container that exits by itself, and one stopped with SIGKILL.
        let script = if i % 2 == 0 {
            "echo c; exit 0"
        } else {
            "exec sleep 30"
        };
        let mut cfg = fx.config(&format!("c{i}"), script);
        cfg.resources.memory_limit_bytes = Some(32 << 20);
        let t0 = Instant::now();
        match tokio::time::timeout(STEP, fx.rt.start(&cfg)).await {
            Err(_) => hangs.push(format!("{i}: start")),
            Ok(Err(e)) => failures.push(format!("{i}: start: {e}")),
            Ok(Ok(_)) => {
                if i % 2 == 1 {
                    if let Err(e) = fx.rt.kill(&cfg.id, libc::SIGKILL) {
                        failures.push(format!("{i}: kill: {e}"));
                    }
                }
                match tokio::time::timeout(STEP, fx.rt.wait(&cfg.id)).await {
                    Err(_) => hangs.push(format!("{i}: wait")),
                    Ok(Err(e)) => failures.push(format!("{i}: wait: {e}")),
                    Ok(Ok(exit)) => {
                        let want = if i % 2 == 0 { 0 } else { 137 };
                        if exit.exit_code != want {
                            failures.push(format!("{i}: exit {} != {want}", exit.exit_code));
                        }
                    }
                }
            }
        }
        match tokio::time::timeout(STEP, fx.rt.remove(&cfg.id)).await {
            Err(_) => hangs.push(format!("{i}: remove")),
            Ok(Err(e)) => failures.push(format!("{i}: remove: {e}")),
            Ok(Ok(())) => {}
        }
        times.push(t0.elapsed());
        if !cgroups::existing_dirs(&cfg.cgroup_path).is_empty() {
            leaks.push(format!("{i}: cgroup {}", cfg.cgroup_path));
        }
        if !procs_in_cgroup(&cfg.cgroup_path).is_empty() {
            leaks.push(format!("{i}: processes"));
        }
        if !shims_mentioning(&cfg.bundle_dir.to_string_lossy()).is_empty() {
            leaks.push(format!("{i}: shim"));
        }
        if fx.rt.state_root().join(&cfg.id).exists() || cfg.bundle_dir.exists() {
            leaks.push(format!("{i}: state/bundle dir"));
        }
        if hangs.len() + failures.len() > 10 {
            break;
        }
    }
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    // Other suites may mount things meanwhile: the global count is informational; the leak
    // check is on mounts naming this fixture's paths.
    let ours = mounts_mentioning(&fx.dir.path().to_string_lossy());
    if !ours.is_empty() {
        leaks.push(format!("mounts: {ours:?}"));
    }
    println!("host mountinfo lines: {mounts_before} -> {mounts_after}");
    times.sort();
    println!(
        "runtime cycles: {} done in {:.1}s; per cycle p50 {:?} p95 {:?} max {:?}; hangs {} failures {} leaks {}",
        times.len(),
        overall.elapsed().as_secs_f64(),
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        times.last().copied().unwrap_or_default(),
        hangs.len(),
        failures.len(),
        leaks.len()
    );
    assert!(hangs.is_empty(), "hangs: {hangs:?}");
    assert!(failures.is_empty(), "failures: {failures:?}");
    assert!(leaks.is_empty(), "leaks: {leaks:?}");
    assert_eq!(times.len(), n);
}
