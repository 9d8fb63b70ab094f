//! Issue #6 on real processes: the API and the MQTT gate speak TLS with the cluster CA, a
//! worker pins the master by CA hash, and the gate's topic ACLs hold against Debian's own
//! mosquitto clients using real node credentials.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::Cluster;

fn node_creds(c: &Cluster, worker: usize) -> (String, String) {
    let creds: serde_json::Value = serde_json::from_slice(
        &std::fs::read(c.workers[worker].data_dir.join("node.json")).expect("node.json"),
    )
    .expect("json");
    (
        creds["username"].as_str().expect("username").to_string(),
        creds["password"].as_str().expect("password").to_string(),
    )
}

/// mosquitto_sub for at most `secs`, printing `topic payload` lines.
fn sub(
    c: &Cluster,
    login: Option<(&str, &str)>,
    client_id: &str,
    topic: &str,
    secs: u32,
) -> Output {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(c.mosquitto_args()).args([
        "-i",
        client_id,
        "-t",
        topic,
        "-v",
        "-W",
        &secs.to_string(),
    ]);
    if let Some((u, p)) = login {
        cmd.args(["-u", u, "-P", p]);
    }
    cmd.stdin(Stdio::null())
        .output()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)")
}

fn publish(
    c: &Cluster,
    login: (&str, &str),
    client_id: &str,
    topic: &str,
    payload: &str,
) -> Output {
    Command::new("mosquitto_pub")
        .args(c.mosquitto_args())
        .args(["-u", login.0, "-P", login.1, "-i", client_id])
        .args(["-t", topic, "-m", payload, "-q", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)")
}

#[test]
fn the_gate_holds_each_node_to_its_own_topics() {
    let c = Cluster::start(&[&[], &[]]);
    c.wait_nodes_ready();
    let (w1, w1_pw) = node_creds(&c, 0);
    assert_eq!(w1, "w1");
    assert!(
        c.mosquitto_args().iter().any(|a| a == "--cafile"),
        "the MQTT endpoint is MQTTS by default"
    );

    // Control: w1's own credentials read w1's retained desired index.
    let own = sub(&c, Some((&w1, &w1_pw)), "w1", "herd/v1/nodes/w1/desired", 5);
    let text = String::from_utf8_lossy(&own.stdout);
    assert!(
        text.starts_with("herd/v1/nodes/w1/desired "),
        "w1 reads its own desired index: {text:?} {}",
        String::from_utf8_lossy(&own.stderr)
    );

    // w1 may not read w2's desired state: the gate cuts the session at SUBSCRIBE.
    let other = sub(
        &c,
        Some((&w1, &w1_pw)),
        "w1",
        "herd/v1/nodes/w2/desired/#",
        3,
    );
    assert!(
        other.stdout.is_empty(),
        "w1 must not read w2's desired state: {}",
        String::from_utf8_lossy(&other.stdout)
    );
    // Nor everything at once.
    let all = sub(&c, Some((&w1, &w1_pw)), "w1", "#", 3);
    assert!(all.stdout.is_empty(), "w1 must not subscribe to #");

    // w1 may not speak for w2: a forged "w2 went offline" would make w2 NotReady.
    let _ = publish(&c, (&w1, &w1_pw), "w1", "herd/v1/nodes/w2/online", "false");
    let _ = publish(
        &c,
        (&w1, &w1_pw),
        "w1",
        "herd/v1/nodes/w2/observed/default/x",
        "{\"v\":1}",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.node_ready("w2"),
        Some(true),
        "forged offline for w2 ignored"
    );

    // Anonymous and wrong passwords are refused outright.
    let anon = sub(&c, None, "anon", "herd/v1/nodes/w1/desired", 3);
    assert!(
        !anon.status.success() && anon.stdout.is_empty(),
        "anonymous refused"
    );
    let wrong = sub(
        &c,
        Some(("w1", "not-the-password")),
        "w1",
        "herd/v1/nodes/w1/desired",
        3,
    );
    assert!(
        !wrong.status.success() && wrong.stdout.is_empty(),
        "wrong password refused"
    );

    let log = std::fs::read_to_string(c.tmp.path().join("master.log")).unwrap_or_default();
    assert!(
        log.contains("subscribe to \"herd/v1/nodes/w2/desired/#\" denied"),
        "{log}"
    );
    assert!(
        log.contains("publish to \"herd/v1/nodes/w2/online\" denied"),
        "{log}"
    );
    assert!(log.contains("anonymous clients are refused"), "{log}");
    // The cluster still works after all that.
    c.wait_nodes_ready();
}

/// Runs `herd worker` once against `c` with the given join flags; it must fail fast.
fn join_attempt(c: &Cluster, flags: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(common::HERD)
        .args(["worker", "--join", &c.api_url, "--node-name", "intruder"])
        .args(flags)
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run herd worker");
    assert!(!out.status.success(), "join with {flags:?} must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_worker_trusts_only_the_master_whose_ca_it_pinned() {
    let c = Cluster::start(&[&[]]);
    assert!(c.api_url.starts_with("https://"), "{}", c.api_url);
    let good_hash = c.ca_hash.clone().expect("join line carries --ca-hash");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = join_attempt(&c, &["--token", &c.token, "--ca-hash", &wrong]);
    assert!(err.contains("CA certificate hash mismatch"), "{err}");
    let err = join_attempt(&c, &["--token", &c.token]);
    assert!(err.contains("pass --ca-hash"), "{err}");
    let err = join_attempt(&c, &["--token", &c.token, "--ca-hash", "sha256:xyz"]);
    assert!(err.contains("expected sha256:<64 hex digits>"), "{err}");
    let err = join_attempt(
        &c,
        &[
            "--token",
            "abcdef.0123456789abcdef",
            "--ca-hash",
            &good_hash,
        ],
    );
    assert!(err.contains("invalid join token"), "{err}");
    assert!(
        c.get_json(&["get", "node", "intruder"]).is_none(),
        "no refused join registered a node"
    );
}

#[test]
fn the_api_is_https_only_and_wants_a_token() {
    let c = Cluster::start(&[]);
    let ca = c.master.data_dir.join("pki/ca.crt");
    let curl = |extra: &[&str], url: &str| {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "5"])
            .args(extra)
            .arg(url)
            .output()
            .expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let pods = format!("{}/api/v1/pods", c.api_url);
    let (ok, body, err) = curl(&["--cacert", &ca.to_string_lossy()], &pods);
    assert!(ok, "{err}");
    assert!(
        body.contains("\"code\":401") && body.contains("missing bearer token"),
        "{body}"
    );
    // Without the CA the server is not trusted; plain HTTP on the TLS port gets nothing.
    let (ok, _, _) = curl(&[], &pods);
    assert!(!ok, "an unknown CA must not be trusted");
    let (_, body, _) = curl(&[], &pods.replace("https://", "http://"));
    assert!(
        !body.contains("\"kind\""),
        "plain HTTP is not served: {body}"
    );
    // The CA itself is public, for joining workers to check against their pin.
    let (ok, body, _) = curl(
        &["--cacert", &ca.to_string_lossy()],
        &format!("{}/apis/herd.io/v1/ca", c.api_url),
    );
    assert!(
        ok && body.starts_with("-----BEGIN CERTIFICATE-----"),
        "{body}"
    );
    // admin.conf is private and carries the CA.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(c.config()).expect("admin.conf");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let conf = std::fs::read_to_string(c.config()).unwrap_or_default();
    assert!(conf.contains("certificate-authority-data:"), "{conf}");
    assert!(
        c.herd(&["get", "nodes"], None).0,
        "the CLI trusts the CA from admin.conf"
    );
}

/// External broker mode: `herd broker config mosquitto` gives Debian's mosquitto the gate's
/// rules (no anonymous clients, node passwords, per-node topics); the cluster runs on it.
#[test]
fn an_external_mosquitto_gets_the_same_rules_from_herd() {
    let mut broker = common::Mosquitto::start();
    let url = broker.url();
    let c = Cluster::start_with(&[&[], &[]], Some(&url));
    c.wait_nodes_ready();
    let out_dir = c.tmp.path().join("mosquitto");
    let out = Command::new(common::HERD)
        .args(["broker", "config", "mosquitto", "--data-dir"])
        .arg(&c.master.data_dir)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("herd broker config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snippet = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(snippet.contains("allow_anonymous false"), "{snippet}");
    let passwd = std::fs::read_to_string(out_dir.join("herd.passwd")).expect("herd.passwd");
    assert!(passwd.lines().any(|l| l.starts_with("w1:$7$")), "{passwd}");

    let connects = |w: &str| {
        std::fs::read_to_string(c.tmp.path().join(format!("{w}.log")))
            .unwrap_or_default()
            .matches("connected to broker")
            .count()
    };
    let before = (connects("w1"), connects("w2"));
    broker.restart_with(&snippet);
    c.wait(
        "both workers back on the locked-down broker",
        Duration::from_secs(20),
        || (connects("w1") > before.0 && connects("w2") > before.1).then_some(()),
    );
    c.wait_nodes_ready();
    let endpoint = ["-h", "127.0.0.1", "-p", &broker.port.to_string()];
    let (w1, w1_pw) = node_creds(&c, 0);
    let sub = |login: Option<(&str, &str)>, id: &str, topic: &str| {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(endpoint)
            .args(["-i", id, "-t", topic, "-v", "-W", "3"]);
        if let Some((u, p)) = login {
            cmd.args(["-u", u, "-P", p]);
        }
        cmd.output().expect("mosquitto_sub")
    };
    // The master republished the retained state the restarted broker lost; w1 reads its own…
    let own = sub(Some((&w1, &w1_pw)), "w1-probe", "herd/v1/nodes/w1/desired");
    assert!(
        String::from_utf8_lossy(&own.stdout).starts_with("herd/v1/nodes/w1/desired "),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    // …but not w2's; anonymous and wrong passwords get nothing.
    assert!(
        sub(Some((&w1, &w1_pw)), "w1-probe", "herd/v1/nodes/w2/desired")
            .stdout
            .is_empty()
    );
    assert!(sub(None, "anon", "herd/v1/nodes/w1/desired")
        .stdout
        .is_empty());
    assert!(sub(
        Some(("w1", "wrong")),
        "w1-probe",
        "herd/v1/nodes/w1/desired"
    )
    .stdout
    .is_empty());
    // A forged "w2 is offline" from w1's credentials is dropped by the broker.
    let _ = Command::new("mosquitto_pub")
        .args(endpoint)
        .args(["-u", &w1, "-P", &w1_pw, "-i", "w1-probe"])
        .args(["-t", "herd/v1/nodes/w2/online", "-m", "false", "-q", "1"])
        .output();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.node_ready("w2"), Some(true));
}

/// Secrets at rest: applied through the API, returned in Kubernetes' shape, but the row in
/// `state.db` is ciphertext (AES-GCM, key in `secrets.key` 0600), and that stays true across
/// a master restart.
#[test]
fn secrets_are_encrypted_at_rest_and_served_decrypted() {
    // One worker: the restart reuses the ports it joined with.
    let mut c = Cluster::start(&[&[]]);
    let manifest = "apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: hunter2-very-secret
data:
  user: YWRtaW4=
";
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(manifest));
    assert!(ok, "{out} {err}");
    assert!(out.contains("secret/db created"), "{out}");
    let read = |c: &Cluster| c.get_json(&["get", "secret", "db"]).expect("get secret");
    let s = read(&c);
    assert_eq!(s["data"]["password"], "aHVudGVyMi12ZXJ5LXNlY3JldA==");
    assert_eq!(s["data"]["user"], "YWRtaW4=");
    assert!(s["stringData"].is_null(), "stringData is write-only");
    let (_, table, _) = c.herd(&["get", "secrets"], None);
    assert!(table.contains("db") && table.contains("Opaque") && !table.contains("hunter2"));
    let (_, desc, _) = c.herd(&["describe", "secret", "db"], None);
    assert!(
        desc.contains("password:  19 bytes") && !desc.contains("hunter2"),
        "{desc}"
    );

    let raw = |c: &Cluster| -> String {
        let db = rusqlite::Connection::open(c.master.data_dir.join("state.db")).expect("db");
        db.query_row(
            "SELECT body FROM resources WHERE kind = 'Secret' AND name = 'db'",
            [],
            |r| r.get(0),
        )
        .expect("secret row")
    };
    let body = raw(&c);
    assert!(body.starts_with("sealed:v1:"), "{body}");
    for plain in [
        "hunter2",
        "aHVudGVyMi12ZXJ5LXNlY3JldA",
        "YWRtaW4",
        "password",
    ] {
        assert!(!body.contains(plain), "{plain} readable in state.db");
    }
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(c.master.data_dir.join("secrets.key")).expect("secrets.key");
    assert_eq!(key.permissions().mode() & 0o777, 0o600);

    c.crash_and_restart_master();
    assert_eq!(read(&c)["data"]["password"], "aHVudGVyMi12ZXJ5LXNlY3JldA==");
    let bad = "apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ndata: {\"a b\": \"%%\"}\n";
    let (ok, _, err) = c.herd(&["apply", "-f", "-"], Some(bad));
    assert!(!ok && err.contains("data[\"a b\"]"), "{err}");
    assert!(c.herd(&["delete", "secret", "db"], None).0);
    assert!(c.get_json(&["get", "secret", "db"]).is_none());
}
