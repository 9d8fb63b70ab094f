//! `httpGet` and `tcpSocket` checks: blocking, with a deadline, meant to run on a thread that
//! has joined the container's network namespace (`runtime::sys::run_in_netns`), so the
//! address is the container's own (127.0.0.1 there by default, as the pod IP will be later).
//! Request building and status-line parsing are pure and tested apart from sockets.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::machine::Outcome;
use crate::api::pod::ContainerPort;
use crate::api::probe::{resolve_port, HttpHeader, Probe};

/// The most of a response read while looking for the status line.
const MAX_STATUS_LINE: usize = 4096;
/// Apps often skip logging for this agent; keep the kubelet's prefix.
const USER_AGENT: &str = "kube-probe/herd";

/// What a network probe connects to, resolved from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    Http {
        addr: SocketAddr,
        path: String,
        headers: Vec<(String, String)>,
    },
}

impl Target {
    /// The target of a `httpGet` or `tcpSocket` probe; `None` for `exec` (or no handler).
    pub fn of(probe: &Probe, ports: &[ContainerPort]) -> Option<Result<Target, String>> {
        let addr = |host: &str, port| -> Result<SocketAddr, String> {
            let ip = if host.is_empty() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                host.parse()
                    .map_err(|_| format!("host {host:?} is not an IP address"))?
            };
            Ok(SocketAddr::new(ip, resolve_port(port, ports)?))
        };
        if let Some(h) = &probe.http_get {
            return Some(addr(&h.host, &h.port).map(|addr| {
                Target::Http {
                    addr,
                    path: if h.path.is_empty() {
                        "/".into()
                    } else {
                        h.path.clone()
                    },
                    headers: h
                        .http_headers
                        .iter()
                        .map(|HttpHeader { name, value }| (name.clone(), value.clone()))
                        .collect(),
                }
            }));
        }
        probe
            .tcp_socket
            .as_ref()
            .map(|t| addr(&t.host, &t.port).map(Target::Tcp))
    }

    /// Connects (and for HTTP, asks) within `timeout`. Blocking.
    pub fn check(&self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        match self {
            Target::Tcp(addr) => match TcpStream::connect_timeout(addr, timeout) {
                Ok(_) => Outcome::Success,
                Err(e) => Outcome::Failure(format!("dial tcp {addr}: {}", describe(&e))),
            },
            Target::Http {
                addr,
                path,
                headers,
            } => {
                let url = format!("http://{addr}{path}");
                match http_status(*addr, &request(*addr, path, headers), deadline) {
                    Ok(code) if (200..400).contains(&code) => Outcome::Success,
                    Ok(code) => {
                        Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
                    }
                    Err(e) => Outcome::Failure(format!("Get {url:?}: {e}")),
                }
            }
        }
    }
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

/// A minimal HTTP/1.1 GET. Headers from the spec override the defaults of the same name
/// (validation rejected names and values that could break the framing).
pub fn request(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut all: Vec<(String, String)> = vec![
        ("Host".into(), addr.to_string()),
        ("User-Agent".into(), USER_AGENT.into()),
        ("Accept".into(), "*/*".into()),
    ];
    for (name, value) in headers {
        all.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        all.push((name.clone(), value.clone()));
    }
    all.retain(|(n, _)| !n.eq_ignore_ascii_case("connection"));
    all.push(("Connection".into(), "close".into()));
    let mut out = format!("GET {path} HTTP/1.1\r\n");
    for (n, v) in all {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The status code of an `HTTP/1.x NNN reason` line.
pub fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split(' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("malformed HTTP response {:?}", text.trim_end()));
    }
    code.parse::<u16>()
        .ok()
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| format!("malformed HTTP status code {code:?}"))
}

fn http_status(addr: SocketAddr, req: &[u8], deadline: Instant) -> Result<u16, String> {
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err("i/o timeout".to_string())
        } else {
            Ok(d)
        }
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?)
        .map_err(|e| format!("dial tcp {addr}: {}", describe(&e)))?;
    stream
        .set_write_timeout(Some(left()?))
        .and_then(|()| stream.write_all(req))
        .map_err(|e| describe(&e))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = got.windows(2).position(|w| w == b"\r\n") {
            return parse_status_line(&got[..end]);
        }
        if got.len() > MAX_STATUS_LINE {
            return Err("HTTP status line too long".into());
        }
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| describe(&e))?;
        match stream.read(&mut buf) {
            Ok(0) => return Err("connection closed before a status line".into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(describe(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apps::IntOrString;
    use crate::api::probe::{HttpGetAction, TcpSocketAction};
    use std::net::TcpListener;

    #[test]
    fn targets_default_to_loopback_and_resolve_named_ports() {
        let ports = [ContainerPort {
            name: "web".into(),
            container_port: 8080,
            ..Default::default()
        }];
        let probe = Probe {
            http_get: Some(HttpGetAction {
                path: String::new(),
                port: IntOrString::String("web".into()),
                host: String::new(),
                scheme: Default::default(),
                http_headers: vec![],
            }),
            ..Default::default()
        };
        assert_eq!(
            Target::of(&probe, &ports),
            Some(Ok(Target::Http {
                addr: "127.0.0.1:8080".parse().unwrap(),
                path: "/".into(),
                headers: vec![],
            }))
        );
        let tcp = Probe {
            tcp_socket: Some(TcpSocketAction {
                port: IntOrString::Int(53),
                host: "10.0.0.1".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            Target::of(&tcp, &ports),
            Some(Ok(Target::Tcp("10.0.0.1:53".parse().unwrap())))
        );
        assert_eq!(Target::of(&Probe::default(), &ports), None);
    }

    #[test]
    fn requests_close_the_connection_and_let_spec_headers_override_defaults() {
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let req = request(
            addr,
            "/healthz?x=1",
            &[
                ("host".into(), "example".into()),
                ("X-Probe".into(), "1".into()),
            ],
        );
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "GET /healthz?x=1 HTTP/1.1\r\nUser-Agent: kube-probe/herd\r\nAccept: */*\r\n\
             host: example\r\nX-Probe: 1\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn status_lines_parse_or_say_what_is_wrong() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content"), Ok(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 500"), Ok(500));
        assert!(parse_status_line(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line(b"HTTP/1.1 abc OK").is_err());
    }

    /// Serves one connection with `response` after reading the request head.
    fn serve_once(response: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut head = Vec::new();
                let mut b = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(response.as_bytes());
            }
        });
        addr
    }

    fn http(addr: SocketAddr) -> Target {
        Target::Http {
            addr,
            path: "/".into(),
            headers: vec![],
        }
    }

    #[test]
    fn http_checks_pass_on_2xx_and_3xx_and_fail_otherwise() {
        let t = Duration::from_secs(5);
        for (response, ok) in [
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
            ("HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n", true),
            ("HTTP/1.1 503 Unavailable\r\n\r\n", false),
            ("garbage\r\n", false),
        ] {
            let got = http(serve_once(response)).check(t);
            assert_eq!(got == Outcome::Success, ok, "{response:?}: {got:?}");
        }
        assert_eq!(
            http(serve_once("HTTP/1.1 500 Oops\r\n\r\n")).check(t),
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[test]
    fn a_silent_server_times_out_and_a_closed_port_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let started = Instant::now();
        let got = http(addr).check(Duration::from_millis(300));
        assert!(
            matches!(&got, Outcome::Failure(m) if m.ends_with("i/o timeout")),
            "{got:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            Target::Tcp(addr).check(Duration::from_secs(1)),
            Outcome::Success
        );
        drop(l);
        let got = Target::Tcp(addr).check(Duration::from_secs(1));
        assert!(
            matches!(&got, Outcome::Failure(m) if m.contains("refused")),
            "{got:?}"
        );
    }
}
