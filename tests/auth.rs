//! Authentication and authorization against real masters on 127.0.0.1: token roles and their
//! refusals, token create/ls/revoke through the CLI, single-use join tokens, the failed-auth
//! limit per client address, secret files written 0600, and a removed node cut off for good.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{self, Reply, Req};
use common::Cluster;

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: main
    image: busybox
";

/// A copy of the cluster's admin.conf carrying `token` instead.
fn config_with(c: &Cluster, token: &str, name: &str) -> PathBuf {
    let admin = http::admin_token(&c.config());
    let text = std::fs::read_to_string(c.config()).unwrap();
    let path = c.tmp.path().join(name);
    std::fs::write(&path, text.replace(&admin, token)).unwrap();
    path
}

/// The CLI with another config; (success, stdout, stderr).
fn herd_as(config: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(common::HERD)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `herd token create ARGS`: the token from the last line of stdout.
fn create_token(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let (ok, out, err) = c.herd(&all, None);
    assert!(ok, "token create {args:?}: {err}");
    out.lines().last().unwrap_or_default().trim().to_string()
}

fn join(c: &Cluster, token: &str, node: &str) -> Reply {
    let body = serde_json::json!({ "token": token, "nodeName": node }).to_string();
    http::send(&Req {
        method: "POST",
        url: format!("{}/apis/herd.io/v1/join", c.api_url),
        content_type: Some("application/json"),
        body: Some(body.as_bytes()),
        ..Default::default()
    })
}

fn assert_status(r: &Reply, code: u16, reason: &str, message: &str) {
    assert_eq!(
        (r.code, r.reason().as_str()),
        (code, reason),
        "body: {}",
        r.text()
    );
    assert!(
        r.message().contains(message),
        "message {:?} should say {message:?}",
        r.message()
    );
}

#[test]
fn roles_decide_what_a_token_may_do_and_refusals_say_why() {
    let c = Cluster::start(&[]);
    let pods = format!("{}/api/v1/pods", c.api_url);

    // Read-only: reads pass, every write is refused naming verb and resource.
    let ro = create_token(&c, &["--role", "read-only", "--description", "dashboard"]);
    let ro_conf = config_with(&c, &ro, "ro.conf");
    let (ok, out, err) = herd_as(&ro_conf, &["get", "pods", "-A"], None);
    assert!(ok, "read-only get: {err}");
    assert!(
        out.is_empty() && err.contains("No resources found"),
        "{out} {err}"
    );
    assert!(herd_as(&ro_conf, &["get", "nodes"], None).0);
    let (ok, _, err) = herd_as(&ro_conf, &["apply", "-f", "-"], Some(POD));
    assert!(!ok);
    assert!(
        err.contains("Error from server (Forbidden): read-only token cannot create pods"),
        "{err}"
    );
    let (ok, _, err) = herd_as(&ro_conf, &["delete", "node", "pi1"], None);
    assert!(
        !ok && err.contains("read-only token cannot delete nodes"),
        "{err}"
    );
    let (ok, _, err) = herd_as(&ro_conf, &["token", "ls"], None);
    assert!(
        !ok && err.contains("read-only token cannot list tokens"),
        "{err}"
    );
    let (ok, _, err) = herd_as(&ro_conf, &["token", "create"], None);
    assert!(
        !ok && err.contains("read-only token cannot create tokens"),
        "{err}"
    );
    // Logs are reads: a read-only token gets past auth (to "not found" here).
    let logs = http::get(
        &format!("{}/api/v1/namespaces/default/pods/web/log", c.api_url),
        &ro,
    );
    assert_eq!(logs.code, 404, "{}", logs.text());
    // A read-only token cannot join a node either.
    assert_status(
        &join(&c, &ro, "sneaky"),
        403,
        "Forbidden",
        "read-only token cannot join",
    );

    // A join token joins and does nothing else.
    assert_status(
        &http::get(&pods, &c.token),
        403,
        "Forbidden",
        "join token cannot list pods: it may only join nodes",
    );

    // Missing, unknown, expired and revoked tokens: 401, each saying which.
    let none = http::send(&Req {
        method: "GET",
        url: pods.clone(),
        ..Default::default()
    });
    assert_status(&none, 401, "Unauthorized", "missing bearer token");
    assert_status(
        &http::get(&pods, "abc123.0123456789abcdef"),
        401,
        "Unauthorized",
        "invalid bearer token",
    );
    let short = create_token(&c, &["--role", "admin", "--ttl", "1s"]);
    assert_eq!(http::get(&pods, &short).code, 200);
    std::thread::sleep(Duration::from_millis(2500));
    assert_status(
        &http::get(&pods, &short),
        401,
        "Unauthorized",
        "token expired",
    );
    let doomed = create_token(&c, &["--role", "admin", "--description", "doomed"]);
    assert_eq!(http::get(&pods, &doomed).code, 200);
    let id = doomed.split('.').next().unwrap();
    let (ok, out, err) = c.herd(&["token", "revoke", id], None);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("token {id} (admin) revoked"));
    assert_status(
        &http::get(&pods, &doomed),
        401,
        "Unauthorized",
        "token revoked",
    );
    let doomed_conf = config_with(&c, &doomed, "doomed.conf");
    let (ok, _, err) = herd_as(&doomed_conf, &["get", "pods"], None);
    assert!(!ok);
    assert!(
        err.contains("Error from server (Unauthorized): token revoked"),
        "{err}"
    );
    let (ok, _, err) = c.herd(&["token", "revoke", "ffffff"], None);
    assert!(!ok && err.contains("token \"ffffff\" not found"), "{err}");

    // `token ls` lists every token with role, status and description, never a secret.
    let (ok, out, err) = c.herd(&["token", "ls"], None);
    assert!(ok, "{err}");
    assert!(out.starts_with("ID"), "{out}");
    for (token, role, what) in [
        (&ro, "read-only", "dashboard"),
        (&doomed, "admin", "<revoked>"),
        (&short, "admin", "<expired>"),
        (&c.token, "join", "join"),
    ] {
        let (id, secret) = token.split_once('.').unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("token {id} not listed: {out}"));
        assert!(line.contains(role) && line.contains(what), "{line}");
        assert!(!out.contains(secret), "token ls printed a secret: {out}");
    }
    let json = c.get_json(&["token", "ls"]).unwrap();
    assert!(json["items"].as_array().unwrap().len() >= 5);
    assert!(!json.to_string().contains(ro.split_once('.').unwrap().1));
}

#[test]
fn a_single_use_join_token_is_consumed_by_its_first_join() {
    let c = Cluster::start(&[]);
    let once = create_token(&c, &["--single-use", "--description", "pi zero"]);
    let first = join(&c, &once, "zero1");
    assert_eq!(first.code, 200, "{}", first.text());
    assert_eq!(first.json()["username"], "zero1");
    assert_status(
        &join(&c, &once, "zero2"),
        401,
        "Unauthorized",
        "token already used",
    );
    // Nothing was written for the refused join: zero2 has no credentials to log in with.
    let (ok, out, _) = c.herd(&["token", "ls"], None);
    assert!(ok);
    let id = once.split('.').next().unwrap();
    let line = out.lines().find(|l| l.starts_with(id)).unwrap();
    assert!(line.contains("<used>") && line.contains("1/1"), "{line}");
    // Reusable tokens count their joins; single-use is for join tokens only.
    let many = create_token(&c, &["--ttl", "1h"]);
    for n in ["a1", "a2", "a3"] {
        assert_eq!(join(&c, &many, n).code, 200);
    }
    let (_, out, _) = c.herd(&["token", "ls"], None);
    let id = many.split('.').next().unwrap();
    let line = out.lines().find(|l| l.starts_with(id)).unwrap();
    assert!(line.split_whitespace().any(|w| w == "3"), "{line}");
    let (ok, _, err) = c.herd(
        &["token", "create", "--role", "admin", "--single-use"],
        None,
    );
    assert!(
        !ok && err.contains("--single-use is for join tokens only"),
        "{err}"
    );
    let bad = http::send(&Req {
        method: "POST",
        url: format!("{}/apis/herd.io/v1/tokens", c.api_url),
        token: Some(&http::admin_token(&c.config())),
        content_type: Some("application/json"),
        body: Some(br#"{"ttlSeconds":-1}"#),
        ..Default::default()
    });
    assert_status(&bad, 400, "BadRequest", "ttlSeconds: -1 is negative");
}

#[test]
fn repeated_failed_auth_from_one_address_gets_429_until_the_cooldown() {
    let c = Cluster::start(&[]);
    let admin = http::admin_token(&c.config());
    let pods = format!("{}/api/v1/pods", c.api_url);
    let from = |addr: &'static str, token: &str| {
        http::send(&Req {
            method: "GET",
            url: pods.clone(),
            token: Some(token),
            from: Some(addr),
            ..Default::default()
        })
    };
    // Successes are not counted: many of them, then 9 failures, and still no block.
    for _ in 0..20 {
        assert_eq!(from("127.0.0.3", &admin).code, 200);
    }
    for _ in 0..9 {
        assert_eq!(from("127.0.0.3", "bad000.guess").code, 401);
    }
    assert_eq!(from("127.0.0.3", &admin).code, 200);

    for i in 0..10 {
        let r = from("127.0.0.1", &format!("{i:06x}.guess"));
        assert_status(&r, 401, "Unauthorized", "invalid bearer token");
    }
    let blocked = from("127.0.0.1", "bad000.guess");
    assert_status(
        &blocked,
        429,
        "TooManyRequests",
        "too many failed authentication attempts from 127.0.0.1",
    );
    let retry: u64 = blocked
        .header("retry-after")
        .expect("Retry-After header")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // While blocked even the right token is refused (it would tell a guesser it found one),
    // and so is a join.
    assert_eq!(from("127.0.0.1", &admin).code, 429);
    assert_eq!(join(&c, &c.token, "late").code, 429);
    // Other addresses are not affected.
    assert_eq!(from("127.0.0.2", &admin).code, 200);
    assert_eq!(from("127.0.0.2", "bad000.guess").code, 401);
    // Failed joins count too.
    for _ in 0..10 {
        let r = http::send(&Req {
            method: "POST",
            url: format!("{}/apis/herd.io/v1/join", c.api_url),
            content_type: Some("application/json"),
            body: Some(br#"{"token":"abc123.nope","nodeName":"x"}"#),
            from: Some("127.0.0.4"),
            ..Default::default()
        });
        assert_eq!(r.code, 401, "{}", r.text());
    }
    assert_eq!(from("127.0.0.4", &admin).code, 429);
    // The master kept serving throughout.
    assert!(c.herd(&["get", "nodes"], None).0 || from("127.0.0.5", &admin).code == 200);
}

/// Starts `herd master` on `dir`, returns it once it printed its join line.
fn start_master(dir: &Path, log: &Path) -> std::process::Child {
    let mut child = Command::new(common::HERD)
        .args([
            "master",
            "--api-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        // No test reaches a registry it did not start.
        .arg("--air-gapped")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .expect("spawn master");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.trim_start().starts_with("herd worker --join") => return child,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "master printed no join line: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_admin_config_and_secret_files_are_written_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("master");
    let log = tmp.path().join("master.log");
    let secrets = [
        "admin.conf",
        "admin.token",
        "join.token",
        "mqtt-master.secret",
    ];
    let mut m = start_master(&dir, &log);
    for f in secrets {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let _ = m.kill();
    let _ = m.wait();
    // Loosened by hand (or by a careless copy): the next start makes it 0600 again.
    std::fs::set_permissions(
        dir.join("admin.conf"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut m = start_master(&dir, &log);
    assert_eq!(mode(&dir.join("admin.conf")), 0o600);
    let _ = m.kill();
    let _ = m.wait();
}

fn log_of(c: &Cluster, name: &str) -> String {
    std::fs::read_to_string(c.tmp.path().join(name)).unwrap_or_default()
}

#[test]
fn a_removed_node_is_cut_off_refused_on_reconnect_and_stays_gone() {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let (ok, out, err) = c.herd(&["node", "rm", "w1"], None);
    assert!(ok, "node rm: {err}");
    assert!(out.contains("node/w1 removed"), "{out}");
    // The live session is cut and every reconnect refused; the worker says so.
    c.wait(
        "the worker to log its refused login",
        Duration::from_secs(30),
        || {
            log_of(&c, "w1.log")
                .contains("mqtt login refused")
                .then_some(())
        },
    );
    let wlog = log_of(&c, "w1.log");
    assert!(wlog.contains("broker connection lost"), "{wlog}");
    assert!(wlog.contains("herd node rm"), "{wlog}");
    let mlog = log_of(&c, "master.log");
    assert!(mlog.contains("node removed"), "{mlog}");
    let refused = |log: &str| {
        log.lines()
            .filter(|l| l.contains("mqtt login refused: bad credentials") && l.contains("node=w1"))
            .count()
    };
    assert_eq!(refused(&mlog), 1, "{mlog}");
    // It does not come back: not from its retained info, nor a late heartbeat.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let (ok, _, err) = c.herd(&["get", "node", "w1"], None);
        assert!(!ok && err.contains("not found"), "node w1 reappeared");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The worker kept retrying all along; the master said so once, not every few seconds.
    assert_eq!(refused(&log_of(&c, "master.log")), 1);
    let nodes = c.get_json(&["get", "nodes"]).unwrap();
    assert_eq!(nodes["items"].as_array().map(Vec::len), Some(0), "{nodes}");
    // Removing it again is a plain "not found".
    let (ok, _, err) = c.herd(&["delete", "node", "w1"], None);
    assert!(!ok && err.contains("not found"), "{err}");
}
