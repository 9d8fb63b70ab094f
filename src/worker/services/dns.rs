//! The node's DNS responder: answers `SVC.NS.svc.cluster.local` from the services the worker
//! knows (the ClusterIP, or the ready pod addresses of a headless service), NXDOMAIN for
//! other names under `cluster.local`, and forwards everything else to the node's upstream
//! resolvers. Short names are expanded by the pod's resolver through its search domains, so
//! only fully-qualified names arrive here.
//!
//! `answer` is pure (bytes in, verdict out); `serve_udp`/`serve_tcp` are the I/O shell.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use simple_dns::rdata::{RData, A};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use super::table::NetTable;
use crate::api::service::CLUSTER_DOMAIN;

/// Short: endpoints of a headless service change with pod readiness.
pub const TTL: u32 = 5;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// What a name resolves to, by the cluster's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Addresses for an A query (may be empty: the name exists, no A data, e.g. AAAA).
    Found(Vec<Ipv4Addr>),
    /// Inside the cluster domain, but nothing has this name.
    NxDomain,
    /// Not a cluster name: ask upstream.
    Forward,
}

/// The DNS-relevant part of the service table: (ns, name) → addresses.
pub type Names = BTreeMap<(String, String), Vec<Ipv4Addr>>;

/// Pure: every service's addresses (headless: its ready pods).
pub fn names(t: &NetTable) -> Names {
    t.services
        .iter()
        .map(|(k, s)| {
            let ips = match (s.headless, s.cluster_ip) {
                (false, Some(ip)) => vec![ip],
                (true, _) => s.ready.clone(),
                (false, None) => vec![],
            };
            (k.clone(), ips)
        })
        .collect()
}

/// Pure: looks `qname` up (case-insensitive, trailing dot optional).
pub fn lookup(names: &Names, qname: &str) -> Lookup {
    let name = qname.trim_end_matches('.').to_ascii_lowercase();
    let Some(inside) = name
        .strip_suffix(CLUSTER_DOMAIN)
        .filter(|r| r.is_empty() || r.ends_with('.'))
    else {
        return Lookup::Forward;
    };
    let labels: Vec<&str> = inside.trim_end_matches('.').split('.').collect();
    match labels.as_slice() {
        // cluster.local, svc.cluster.local, NS.svc.cluster.local exist (no A data).
        [""] | ["svc"] => Lookup::Found(vec![]),
        [ns, "svc"] if names.keys().any(|(n, _)| n == ns) => Lookup::Found(vec![]),
        [svc, ns, "svc"] => match names.get(&(ns.to_string(), svc.to_string())) {
            Some(ips) => Lookup::Found(ips.clone()),
            None => Lookup::NxDomain,
        },
        _ => Lookup::NxDomain,
    }
}

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Reply(Vec<u8>),
    Forward,
    /// Not parseable as a DNS query: drop it.
    Drop,
}

/// Pure: the reply to a query, or "forward it".
pub fn answer(names: &Names, query: &[u8]) -> Verdict {
    let Ok(q) = Packet::parse(query) else {
        return Verdict::Drop;
    };
    if q.has_flags(PacketFlag::RESPONSE) {
        return Verdict::Drop;
    }
    let Some(question) = q.questions.first() else {
        return Verdict::Drop;
    };
    let qname = question.qname.to_string();
    let found = lookup(names, &qname);
    if found == Lookup::Forward {
        return Verdict::Forward;
    }
    let mut reply = Packet::new_reply(q.id());
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER | PacketFlag::RECURSION_AVAILABLE);
    if q.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    reply.questions.push(question.clone());
    match found {
        Lookup::NxDomain => *reply.rcode_mut() = RCODE::NameError,
        Lookup::Found(ips) => {
            let wants_a = matches!(question.qtype, QTYPE::TYPE(TYPE::A) | QTYPE::ANY);
            if wants_a {
                for ip in ips {
                    reply.answers.push(ResourceRecord::new(
                        question.qname.clone(),
                        CLASS::IN,
                        TTL,
                        RData::A(A::from(ip)),
                    ));
                }
            }
        }
        Lookup::Forward => {}
    }
    match reply.build_bytes_vec_compressed() {
        Ok(b) => Verdict::Reply(b),
        Err(_) => Verdict::Drop,
    }
}

/// The `nameserver` lines of a resolv.conf, minus `skip` (our own listen addresses: a node
/// that lists itself would loop).
pub fn upstreams(resolv_conf: &str, skip: &[SocketAddr]) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next())?
        })
        .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|a| !skip.contains(a))
        .collect()
}

/// Sends `query` to each upstream in turn until one answers (bounded time each).
async fn forward(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == *up => {
                buf.truncate(n);
                return Some(buf);
            }
            _ => tracing::debug!(upstream = %up, "upstream resolver did not answer"),
        }
    }
    None
}

/// Shared state of one responder: the latest snapshot and where to forward.
#[derive(Clone)]
pub struct Responder {
    pub snap: watch::Receiver<Arc<super::Snapshot>>,
    pub upstreams: Arc<Vec<SocketAddr>>,
}

impl Responder {
    async fn handle(&self, query: &[u8]) -> Option<Vec<u8>> {
        let snap = self.snap.borrow().clone();
        match answer(&snap.names, query) {
            Verdict::Reply(b) => Some(b),
            Verdict::Drop => None,
            Verdict::Forward => forward(&self.upstreams, query).await,
        }
    }

    /// Answers UDP queries on `sock` until the task is dropped.
    pub async fn serve_udp(self, sock: UdpSocket) {
        let sock = Arc::new(sock);
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let query = buf[..n].to_vec();
            let (me, sock) = (self.clone(), sock.clone());
            // Forwarding waits on an upstream: never hold up the next query behind it.
            tokio::spawn(async move {
                if let Some(r) = me.handle(&query).await {
                    let _ = sock.send_to(&r, peer).await;
                }
            });
        }
    }

    /// Answers TCP (length-prefixed) queries, one task per connection.
    pub async fn serve_tcp(self, listener: TcpListener) {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 2];
                    let read =
                        tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut len))
                            .await;
                    if !matches!(read, Ok(Ok(_))) {
                        return;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    let Some(r) = me.handle(&q).await else { return };
                    let Ok(n) = u16::try_from(r.len()) else {
                        return;
                    };
                    if conn.write_all(&n.to_be_bytes()).await.is_err()
                        || conn.write_all(&r).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    }
}

/// Binds UDP and TCP on `addr` and serves both in background tasks.
pub async fn start(
    addr: SocketAddr,
    r: Responder,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(addr).await?;
    Ok(vec![
        tokio::spawn(r.clone().serve_udp(udp)),
        tokio::spawn(r.serve_tcp(tcp)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut n = Names::new();
        n.insert(
            ("default".into(), "web".into()),
            vec!["10.89.0.10".parse().unwrap()],
        );
        n.insert(
            ("db".into(), "pg".into()),
            vec!["10.88.1.5".parse().unwrap(), "10.88.2.5".parse().unwrap()],
        );
        n
    }

    pub(super) fn query(id: u16, name: &str, t: TYPE) -> Vec<u8> {
        let mut p = Packet::new_query(id);
        p.set_flags(PacketFlag::RECURSION_DESIRED);
        p.questions.push(simple_dns::Question::new(
            simple_dns::Name::new_unchecked(name),
            QTYPE::TYPE(t),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p.build_bytes_vec().unwrap()
    }

    fn a_records(reply: &[u8]) -> (RCODE, Vec<Ipv4Addr>) {
        let p = Packet::parse(reply).unwrap();
        let ips = p
            .answers
            .iter()
            .filter_map(|rr| match &rr.rdata {
                RData::A(a) => Some(Ipv4Addr::from(a.address)),
                _ => None,
            })
            .collect();
        (p.rcode(), ips)
    }

    #[test]
    fn lookup_follows_the_cluster_naming_rules() {
        let n = names();
        assert_eq!(
            lookup(&n, "web.default.svc.cluster.local."),
            Lookup::Found(vec!["10.89.0.10".parse().unwrap()])
        );
        assert_eq!(
            lookup(&n, "WEB.Default.SVC.cluster.local"),
            Lookup::Found(vec!["10.89.0.10".parse().unwrap()])
        );
        assert_eq!(
            lookup(&n, "pg.db.svc.cluster.local").clone(),
            Lookup::Found(vec![
                "10.88.1.5".parse().unwrap(),
                "10.88.2.5".parse().unwrap()
            ])
        );
        assert_eq!(
            lookup(&n, "nope.default.svc.cluster.local"),
            Lookup::NxDomain
        );
        // What a pod's search path tries first for `web.default`.
        assert_eq!(
            lookup(&n, "web.default.default.svc.cluster.local"),
            Lookup::NxDomain
        );
        assert_eq!(
            lookup(&n, "example.com.default.svc.cluster.local"),
            Lookup::NxDomain
        );
        assert_eq!(
            lookup(&n, "default.svc.cluster.local"),
            Lookup::Found(vec![])
        );
        assert_eq!(lookup(&n, "example.com"), Lookup::Forward);
        assert_eq!(lookup(&n, "notcluster.local"), Lookup::Forward);
    }

    #[test]
    fn answers_carry_a_records_nxdomain_or_no_data() {
        let n = names();
        let Verdict::Reply(r) = answer(&n, &query(7, "web.default.svc.cluster.local", TYPE::A))
        else {
            panic!("no reply")
        };
        let p = Packet::parse(&r).unwrap();
        assert_eq!(p.id(), 7);
        assert!(p.has_flags(PacketFlag::RESPONSE | PacketFlag::AUTHORITATIVE_ANSWER));
        assert_eq!(
            a_records(&r),
            (RCODE::NoError, vec!["10.89.0.10".parse().unwrap()])
        );

        let Verdict::Reply(r) = answer(&n, &query(8, "missing.default.svc.cluster.local", TYPE::A))
        else {
            panic!("no reply")
        };
        assert_eq!(a_records(&r), (RCODE::NameError, vec![]));

        let Verdict::Reply(r) = answer(&n, &query(9, "web.default.svc.cluster.local", TYPE::AAAA))
        else {
            panic!("no reply")
        };
        assert_eq!(a_records(&r), (RCODE::NoError, vec![]));

        assert_eq!(
            answer(&n, &query(10, "example.com", TYPE::A)),
            Verdict::Forward
        );
        assert_eq!(answer(&n, b"\x00\x01garbage"), Verdict::Drop);
    }

    #[test]
    fn upstreams_come_from_resolv_conf_without_ourselves() {
        let conf = "# x\nsearch lan\nnameserver 10.0.0.1\nnameserver 10.88.1.1\nnameserver bogus\noptions ndots:1\n";
        let me: SocketAddr = "10.88.1.1:53".parse().unwrap();
        assert_eq!(
            upstreams(conf, &[me]),
            vec!["10.0.0.1:53".parse::<SocketAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn the_responder_answers_over_udp_and_tcp_and_forwards_to_a_fake_upstream() {
        // A fake upstream on loopback that answers every query with 192.0.2.1.
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = upstream.recv_from(&mut buf).await {
                let q = Packet::parse(&buf[..n]).unwrap();
                let mut r = Packet::new_reply(q.id());
                r.questions = q.questions.clone();
                r.answers.push(ResourceRecord::new(
                    q.questions[0].qname.clone(),
                    CLASS::IN,
                    60,
                    RData::A(A::from("192.0.2.1".parse::<Ipv4Addr>().unwrap())),
                ));
                let _ = upstream.send_to(&r.build_bytes_vec().unwrap(), peer).await;
            }
        });
        let snap = super::super::Snapshot {
            names: names(),
            ..Default::default()
        };
        let (_tx, rx) = watch::channel(Arc::new(snap));
        let resp = Responder {
            snap: rx,
            upstreams: Arc::new(vec![up_addr]),
        };
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpListener::bind(udp.local_addr().unwrap()).await.unwrap();
        let addr = udp.local_addr().unwrap();
        tokio::spawn(resp.clone().serve_udp(udp));
        tokio::spawn(resp.serve_tcp(tcp));

        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 512];
        for (name, want) in [
            ("web.default.svc.cluster.local", "10.89.0.10"),
            ("example.com", "192.0.2.1"),
        ] {
            client
                .send_to(&query(1, name, TYPE::A), addr)
                .await
                .unwrap();
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                a_records(&buf[..n]).1,
                vec![want.parse::<Ipv4Addr>().unwrap()],
                "{name}"
            );
        }

        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let q = query(2, "pg.db.svc.cluster.local", TYPE::A);
        conn.write_all(&(q.len() as u16).to_be_bytes())
            .await
            .unwrap();
        conn.write_all(&q).await.unwrap();
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await.unwrap();
        let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut r).await.unwrap();
        assert_eq!(a_records(&r).1.len(), 2);
    }
}
