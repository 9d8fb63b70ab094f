//! The ingress proxy against backends on loopback: routing by Host and path, round robin over
//! a Service's endpoints, 404 and 503 bodies, and an HTTP Upgrade spliced through.

use std::sync::Arc;
use std::time::Duration;

use herd::api::ingress::Ingress;
use herd::api::service::Protocol;
use herd::proto::services::{Backend, PortState, ServiceState};
use herd::worker::services::{ingress::Proxy, NetTable, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend answering every request with `name host=<Host header>`; with `upgrade`, it
/// answers 101 and then echoes bytes.
async fn backend(name: &'static str, upgrade: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let host = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("host: ")
                            .or_else(|| l.strip_prefix("Host: "))
                    })
                    .unwrap_or("")
                    .to_string();
                if upgrade {
                    let _ = s
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                        .await;
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    return;
                }
                let body = format!("{name} host={host}");
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    port
}

fn service(name: &str, ports: &[u16]) -> ServiceState {
    ServiceState {
        v: 1,
        namespace: "default".into(),
        name: name.into(),
        cluster_ip: Some("10.89.0.10".parse().unwrap()),
        headless: false,
        ports: vec![PortState {
            name: "http".into(),
            protocol: Protocol::TCP,
            port: 80,
            node_port: None,
            endpoints: ports
                .iter()
                .map(|p| Backend {
                    ip: "127.0.0.1".parse().unwrap(),
                    port: *p,
                })
                .collect(),
        }],
        ready: vec![],
    }
}

/// Sends one request, returns (status, body).
async fn request(proxy: u16, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn hosts_paths_round_robin_errors_and_upgrades() {
    let (a1, a2, b, ws) = (
        backend("a1", false).await,
        backend("a2", false).await,
        backend("b", false).await,
        backend("ws", true).await,
    );
    let mut t = NetTable::default();
    for s in [
        service("a", &[a1, a2]),
        service("b", &[b]),
        service("ws", &[ws]),
        service("down", &[]),
    ] {
        t.services.insert(("default".into(), s.name.clone()), s);
    }
    let ing: Ingress = yaml_serde::from_str(
        "metadata: {name: site, namespace: default}
spec:
  rules:
  - host: a.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}
      - {path: /ws, pathType: Exact, backend: {service: {name: ws, port: {name: http}}}}
  - host: b.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: b, port: {number: 80}}}}
      - {path: /down, pathType: Prefix, backend: {service: {name: down, port: {number: 80}}}}
",
    )
    .unwrap();
    t.ingresses.insert(("default".into(), "site".into()), ing);
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot::of(t)));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(Proxy::new(rx).serve(l));

    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let (code, body) = request(port, "a.example", "/x").await;
        assert_eq!(code, 200, "{body}");
        let who = body.split_whitespace().next().unwrap().to_string();
        *seen.entry(who).or_insert(0) += 1;
        assert!(
            body.ends_with("host=a.example"),
            "the Host header reaches the backend: {body}"
        );
    }
    // Round robin: an even split.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [("a1".to_string(), 5), ("a2".to_string(), 5)]
    );
    assert!(request(port, "b.example:80", "/").await.1.starts_with("b "));

    let (code, body) = request(port, "c.example", "/").await;
    assert_eq!(code, 404);
    assert!(
        body.contains("no ingress rule matches host \"c.example\""),
        "{body}"
    );
    let (code, body) = request(port, "b.example", "/down/x").await;
    assert_eq!(code, 503);
    assert!(
        body.contains("service default/down:80 has no ready endpoints"),
        "{body}"
    );

    // Upgrade: after the 101 the proxy splices the two connections.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"ping over the upgraded connection")
        .await
        .unwrap();
    let mut echo = vec![0u8; 33];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping over the upgraded connection");
}
