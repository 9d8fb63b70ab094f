//! Raw HTTP against a test master with curl: any method, header, body and source address, so
//! tests can send what the CLI never would.

use std::process::{Command, Stdio};

/// One request; unset fields are left out (no Authorization, no Content-Type, no body).
#[derive(Debug, Clone, Default)]
pub struct Req<'a> {
    pub method: &'a str,
    pub url: String,
    pub token: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: Option<&'a [u8]>,
    /// Source address to connect from (a 127.x address other than 127.0.0.1).
    pub from: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    /// Raw response headers, lowercase names.
    pub headers: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// `message` of a Status body (empty if there is none).
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().to_ascii_lowercase() == name).then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn send(r: &Req<'_>) -> Reply {
    let dir = tempfile::tempdir().expect("tempdir");
    let (body_out, head_out) = (dir.path().join("body"), dir.path().join("head"));
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o"])
        .arg(&body_out)
        .arg("-D")
        .arg(&head_out)
        .args(["-w", "%{http_code}", "--max-time", "60", "-X"])
        .arg(if r.method.is_empty() { "GET" } else { r.method });
    if let Some(t) = r.token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    // `Content-Type:` with nothing after it stops curl adding its own form type to a body.
    cmd.arg("-H").arg(match r.content_type {
        Some(ct) => format!("Content-Type: {ct}"),
        None => "Content-Type:".to_string(),
    });
    if let Some(b) = r.body {
        let f = dir.path().join("req");
        std::fs::write(&f, b).expect("write request body");
        cmd.arg("--data-binary").arg(format!("@{}", f.display()));
    }
    if let Some(from) = r.from {
        cmd.args(["--interface", from]);
    }
    if r.url.starts_with("https://") {
        // These tests send hostile requests, not judge the server's identity: that (the
        // pinned cluster CA) is tested in tests/cluster_tls.rs.
        cmd.arg("--insecure");
    }
    let out = cmd
        .arg(&r.url)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Reply {
        code,
        headers: std::fs::read_to_string(&head_out).unwrap_or_default(),
        body: std::fs::read(&body_out).unwrap_or_default(),
    }
}

pub fn get(url: &str, token: &str) -> Reply {
    send(&Req {
        method: "GET",
        url: url.to_string(),
        token: Some(token),
        ..Default::default()
    })
}

/// The admin token from a master's admin.conf.
pub fn admin_token(admin_conf: &std::path::Path) -> String {
    std::fs::read_to_string(admin_conf)
        .expect("read admin.conf")
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: ").map(str::to_string))
        .expect("token in admin.conf")
}
