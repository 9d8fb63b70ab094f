//! The ingress proxy: plain HTTP/1.1 on a node labelled `herd.io/ingress=true`, routing by
//! Host and path (see `routes`) to a Service's ready endpoints, round robin. Unmatched
//! requests get 404, a Service without ready endpoints 503, an unreachable backend 502, each
//! with a body that says which. `Upgrade` requests (WebSocket) are passed through: after the
//! backend's 101 the two connections are spliced.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::routes::{endpoints, Unroutable};
use super::Snapshot;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Proxy {
    snap: watch::Receiver<Arc<Snapshot>>,
    /// Next endpoint index per target, for round robin.
    turns: Mutex<HashMap<String, usize>>,
}

fn text(code: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl Proxy {
    pub fn new(snap: watch::Receiver<Arc<Snapshot>>) -> Arc<Proxy> {
        Arc::new(Proxy {
            snap,
            turns: Mutex::new(HashMap::new()),
        })
    }

    fn turn(&self, key: String, n: usize) -> usize {
        let mut t = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        let i = t.entry(key).or_insert(0);
        let pick = *i % n;
        *i = i.wrapping_add(1);
        pick
    }

    async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Response<Body> {
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let path = req.uri().path().to_string();
        let snap = self.snap.borrow().clone();
        let Some(target) = snap.routes.route(&host, &path).cloned() else {
            return text(
                StatusCode::NOT_FOUND,
                format!("404 not found: no ingress rule matches host {host:?} path {path:?}\n"),
            );
        };
        let backends = match endpoints(&snap.table, &target) {
            Ok(b) => b.to_vec(),
            Err(e) => {
                let why = match e {
                    Unroutable::NoService(t) => format!("service {t} does not exist"),
                    Unroutable::NoPort(t) => format!("service {t}: no such port"),
                    Unroutable::NoEndpoints(t) => format!("service {t} has no ready endpoints"),
                    Unroutable::NoRule => "no rule".into(),
                };
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("503 service unavailable: {why}\n"),
                );
            }
        };
        let b = backends[self.turn(target.to_string(), backends.len())];
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((b.ip, b.port))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("502 bad gateway: backend {b} of {target}: {e}\n"),
                    )
                }
                Err(_) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("502 bad gateway: backend {b} of {target}: connect timed out\n"),
                    )
                }
            };
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(x) => x,
                Err(e) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("502 bad gateway: backend {b}: {e}\n"),
                    )
                }
            };
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "ingress: backend connection ended");
            }
        });
        let client_upgrade = req
            .headers()
            .contains_key(UPGRADE)
            .then(|| hyper::upgrade::on(&mut req));
        // Origin form towards the backend; the Host header stays the client's.
        if let Some(pq) = req.uri().path_and_query().cloned() {
            if let Ok(uri) = hyper::Uri::builder().path_and_query(pq).build() {
                *req.uri_mut() = uri;
            }
        }
        let h = req.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
            h.append("x-forwarded-for", v);
        }
        if let Ok(v) = HeaderValue::from_str(&host) {
            h.insert("x-forwarded-host", v);
        }
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        let mut resp = match sender.send_request(req.map(Body::new)).await {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("502 bad gateway: backend {b}: {e}\n"),
                )
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client) = client_upgrade {
                let backend = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    match tokio::try_join!(client, backend) {
                        Ok((c, s)) => {
                            let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "ingress: upgrade failed"),
                    }
                });
            }
        }
        resp.map(Body::new)
    }

    /// Serves `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "ingress: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, std::convert::Infallible>(me.handle(peer, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "ingress: connection ended");
                }
            });
        }
    }
}
