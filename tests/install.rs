//! `herd install` / `herd uninstall` into a temporary prefix (never the machine's own /etc or
//! /usr), and `systemd-analyze verify` on every unit in `systemd/`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HERD: &str = env!("CARGO_BIN_EXE_herd");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn herd(args: &[&str]) -> Output {
    // The worker's clap env variables must not leak in from the caller's shell.
    let out = Command::new(HERD)
        .args(args)
        .env_remove("HERD_NODE_NAME")
        .output()
        .expect("run herd");
    out
}

fn ok(args: &[&str]) -> String {
    let out = herd(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "herd {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn install_worker(prefix: &str) -> String {
    ok(&[
        "install",
        "worker",
        "--prefix",
        prefix,
        "--no-start",
        "--join",
        "http://127.0.0.1:1",
        "--token",
        "x.y",
        "--node-name",
        "w1",
        "--node-label",
        "zone=attic",
    ])
}

#[test]
fn install_worker_creates_binary_unit_config_and_data_dir_then_a_rerun_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let prefix = root.to_str().unwrap();

    let first = install_worker(prefix);
    assert!(first.contains("created"), "{first}");

    let bin = root.join("usr/local/bin/herd");
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(HERD).unwrap());
    assert_eq!(mode(&bin), 0o755);

    let unit = root.join("etc/systemd/system/herd-worker.service");
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap(),
        std::fs::read_to_string(repo().join("systemd/herd-worker.service")).unwrap(),
        "the installed unit is exactly the repository's"
    );
    assert_eq!(mode(&unit), 0o644);

    let env = root.join("etc/herd/worker.env");
    let text = std::fs::read_to_string(&env).unwrap();
    for line in [
        "HERD_JOIN=http://127.0.0.1:1",
        "HERD_TOKEN=x.y",
        "HERD_NODE_NAME=w1",
        "HERD_NODE_LABELS=zone=attic",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    assert_eq!(mode(&env), 0o600, "the env file holds the join token");

    assert!(root.join("var/lib/herd").is_dir());
    assert_eq!(mode(&root.join("var/lib/herd/worker")), 0o700);
    assert!(!root.join("etc/systemd/system/herd.service").exists());

    let second = install_worker(prefix);
    assert!(second.contains("no changes"), "{second}");
    assert!(
        !second.contains("created") && !second.contains("updated"),
        "{second}"
    );

    // Without join flags the existing (maybe hand-edited) env file is kept.
    let kept = ok(&["install", "worker", "--prefix", prefix, "--no-start"]);
    assert!(kept.contains("no changes"), "{kept}");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), text);

    // A changed setting replaces the file, keeping its mode.
    let changed = ok(&[
        "install",
        "worker",
        "--prefix",
        prefix,
        "--no-start",
        "--join",
        "http://10.0.0.1:6443",
        "--token",
        "x.y",
    ]);
    assert!(changed.contains("updated"), "{changed}");
    assert!(std::fs::read_to_string(&env)
        .unwrap()
        .contains("HERD_JOIN=http://10.0.0.1:6443\n"));
    assert_eq!(mode(&env), 0o600);
}

#[test]
fn uninstall_removes_what_install_put_in_place_and_purge_removes_the_data_too() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let prefix = root.to_str().unwrap();
    install_worker(prefix);
    std::fs::write(root.join("var/lib/herd/worker/node.json"), "{}").unwrap();

    let out = ok(&["uninstall", "--prefix", prefix]);
    assert!(out.contains("removed"), "{out}");
    for gone in [
        "usr/local/bin/herd",
        "etc/systemd/system/herd-worker.service",
        "etc/herd/worker.env",
        "etc/herd",
    ] {
        assert!(!root.join(gone).exists(), "{gone} still there");
    }
    assert!(
        root.join("var/lib/herd/worker/node.json").exists(),
        "data kept without --purge"
    );
    assert!(
        root.join("usr/local/bin").is_dir(),
        "only herd's own files are removed"
    );

    let again = ok(&["uninstall", "--prefix", prefix]);
    assert!(again.contains("no changes"), "{again}");

    ok(&["uninstall", "--purge", "--prefix", prefix]);
    assert!(!root.join("var/lib/herd").exists());
}

#[test]
fn install_master_and_up_get_their_own_units_and_refuse_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().to_str().unwrap();
    ok(&["install", "master", "--prefix", prefix]);
    assert!(tmp
        .path()
        .join("etc/systemd/system/herd-master.service")
        .is_file());
    assert_eq!(mode(&tmp.path().join("etc/herd/master.env")), 0o644);
    assert!(tmp.path().join("var/lib/herd/master").is_dir());

    let out = herd(&["install", "up", "--prefix", prefix]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("herd-master.service"), "{err}");

    let out = herd(&["install", "master", "--prefix", prefix, "--token", "t"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token does not apply"));
}

/// Every unit in `systemd/` passes `systemd-analyze verify` with no warning at all (unknown
/// keys and bad values are only warnings there, with exit status 0, so stderr must be empty).
/// verify checks that ExecStart's binary exists, so a copy points it at the freshly built one.
#[test]
fn every_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-analyze not installed (scripts/deps installs package systemd)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut units = 0;
    for entry in std::fs::read_dir(repo().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("service") {
            continue;
        }
        units += 1;
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/local/bin/herd", HERD);
        let copy = tmp.path().join(path.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{}: {stderr}",
            path.display()
        );
    }
    assert_eq!(units, 3, "herd-master, herd-worker and herd");
}

/// The units pass node name, labels and data dir through the environment file, so `herd
/// worker` must read them from the environment.
#[test]
fn worker_reads_node_name_labels_and_data_dir_from_the_environment() {
    let out = Command::new(HERD)
        .args(["worker", "--help"])
        .env("HERD_NODE_NAME", "w9")
        .env("HERD_NODE_LABELS", "zone=attic,disk=ssd")
        .env("HERD_DATA_DIR", "/srv/herd")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for shown in [
        "[env: HERD_NODE_NAME=w9]",
        "[env: HERD_NODE_LABELS=zone=attic,disk=ssd]",
        "[env: HERD_DATA_DIR=/srv/herd]",
    ] {
        assert!(help.contains(shown), "{shown} not in\n{help}");
    }
}
