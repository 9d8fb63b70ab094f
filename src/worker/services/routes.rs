//! Pure: the ingress routing table. Every Ingress's rules merged into one table; a request
//! picks the most specific host (exact, then `*.` wildcard of one label, then rules without
//! a host), then within it an Exact path before the longest matching Prefix (prefixes match
//! whole path elements: `/foo` matches `/foo/bar`, not `/foobar`); no match falls back to a
//! default backend, else 404.

use crate::api::ingress::{IngressBackend, PathType};
use crate::proto::services::Backend;

use super::table::NetTable;

/// A Service port an ingress sends to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub namespace: String,
    pub service: String,
    /// A service port number, or a service port name.
    pub port: PortRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let port = match &self.port {
            PortRef::Number(n) => n.to_string(),
            PortRef::Name(n) => n.clone(),
        };
        write!(f, "{}/{}:{port}", self.namespace, self.service)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Exact(String),
    /// The suffix after `*`, e.g. `.example.com`.
    Wildcard(String),
    Any,
}

#[derive(Debug, Clone)]
struct Rule {
    host: Host,
    path: String,
    exact: bool,
    target: Target,
}

#[derive(Debug, Clone, Default)]
pub struct Routes {
    rules: Vec<Rule>,
    default: Option<Target>,
}

fn target(ns: &str, b: &IngressBackend) -> Option<Target> {
    let port = match (&b.service.port.name, b.service.port.number) {
        (Some(n), _) => PortRef::Name(n.clone()),
        (None, Some(n)) => PortRef::Number(u16::try_from(n).ok()?),
        (None, None) => return None,
    };
    Some(Target {
        namespace: ns.to_string(),
        service: b.service.name.clone(),
        port,
    })
}

/// Pure: the routing table of every ingress in `t` (ingresses in name order; the first
/// default backend wins).
pub fn build(t: &NetTable) -> Routes {
    let mut r = Routes::default();
    for ((ns, _), ing) in &t.ingresses {
        if r.default.is_none() {
            r.default = ing
                .spec
                .default_backend
                .as_ref()
                .and_then(|b| target(ns, b));
        }
        for rule in &ing.spec.rules {
            let host = match rule.host.as_deref() {
                None | Some("") => Host::Any,
                Some(h) => match h.strip_prefix('*') {
                    Some(suffix) => Host::Wildcard(suffix.to_ascii_lowercase()),
                    None => Host::Exact(h.to_ascii_lowercase()),
                },
            };
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let Some(target) = target(ns, &p.backend) else {
                    continue;
                };
                r.rules.push(Rule {
                    host: host.clone(),
                    path: p.path.clone().unwrap_or_else(|| "/".into()),
                    exact: p.path_type == PathType::Exact,
                    target,
                });
            }
        }
    }
    r
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        return true;
    }
    path == p
        || path
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Routes {
    /// The target for a request's host (port and case ignored) and path (query excluded).
    pub fn route(&self, host: &str, path: &str) -> Option<&Target> {
        let host = host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
            .to_ascii_lowercase();
        let host_rank = |h: &Host| match h {
            Host::Exact(e) if *e == host => Some(0),
            Host::Wildcard(s) => host
                .strip_suffix(s.as_str())
                .filter(|label| !label.is_empty() && !label.contains('.'))
                .map(|_| 1),
            Host::Any => Some(2),
            Host::Exact(_) => None,
        };
        let best_host = self.rules.iter().filter_map(|r| host_rank(&r.host)).min()?;
        let in_host = || {
            self.rules
                .iter()
                .filter(move |r| host_rank(&r.host) == Some(best_host))
        };
        if let Some(r) = in_host().find(|r| r.exact && r.path == path) {
            return Some(&r.target);
        }
        in_host()
            .filter(|r| !r.exact && prefix_matches(&r.path, path))
            .max_by_key(|r| r.path.trim_end_matches('/').len())
            .map(|r| &r.target)
            .or(self.default.as_ref())
    }

    /// Whether nothing routes at all (no proxy needed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.default.is_none()
    }
}

/// Why a request found no backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unroutable {
    NoRule,
    NoService(Target),
    NoPort(Target),
    NoEndpoints(Target),
}

/// Pure: the ready endpoints behind a target.
pub fn endpoints<'a>(t: &'a NetTable, target: &Target) -> Result<&'a [Backend], Unroutable> {
    let svc = t
        .service(&target.namespace, &target.service)
        .ok_or_else(|| Unroutable::NoService(target.clone()))?;
    let port = svc
        .ports
        .iter()
        .find(|p| match &target.port {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(n) => &p.name == n,
        })
        .ok_or_else(|| Unroutable::NoPort(target.clone()))?;
    if port.endpoints.is_empty() {
        return Err(Unroutable::NoEndpoints(target.clone()));
    }
    Ok(&port.endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ingresses: &[&str]) -> NetTable {
        let mut t = NetTable::default();
        for (i, spec) in ingresses.iter().enumerate() {
            let ing: crate::api::ingress::Ingress = yaml_serde::from_str(&format!(
                "metadata: {{name: i{i}, namespace: default}}\nspec:\n{spec}"
            ))
            .unwrap();
            t.ingresses.insert(("default".into(), format!("i{i}")), ing);
        }
        t
    }

    fn path(svc: &str, p: &str, kind: &str) -> String {
        format!("      - {{path: {p}, pathType: {kind}, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n")
    }

    fn svc_of(r: &Routes, host: &str, p: &str) -> Option<String> {
        r.route(host, p).map(|t| t.service.clone())
    }

    #[test]
    fn hosts_pick_their_services_and_exact_beats_wildcard_beats_any() {
        let t = table(&[
            &format!("  rules:\n  - host: a.example\n    http:\n      paths:\n{}", path("a", "/", "Prefix")),
            &format!(
                "  rules:\n  - host: b.example\n    http:\n      paths:\n{}  - host: '*.example'\n    http:\n      paths:\n{}  - http:\n      paths:\n{}",
                path("b", "/", "Prefix"),
                path("wild", "/", "Prefix"),
                path("any", "/", "Prefix")
            ),
        ]);
        let r = build(&t);
        assert_eq!(svc_of(&r, "a.example", "/x").as_deref(), Some("a"));
        assert_eq!(svc_of(&r, "B.Example:8080", "/").as_deref(), Some("b"));
        assert_eq!(svc_of(&r, "c.example", "/").as_deref(), Some("wild"));
        // A wildcard covers exactly one label.
        assert_eq!(svc_of(&r, "x.c.example", "/").as_deref(), Some("any"));
        assert_eq!(svc_of(&r, "other", "/").as_deref(), Some("any"));
    }

    #[test]
    fn exact_beats_prefix_and_the_longest_prefix_wins_by_whole_elements() {
        let t = table(&[&format!(
            "  rules:\n  - host: a\n    http:\n      paths:\n{}{}{}{}",
            path("root", "/", "Prefix"),
            path("api", "/api", "Prefix"),
            path("apiv2", "/api/v2/", "Prefix"),
            path("exact", "/api/v2", "Exact"),
        )]);
        let r = build(&t);
        assert_eq!(svc_of(&r, "a", "/api/v2").as_deref(), Some("exact"));
        assert_eq!(svc_of(&r, "a", "/api/v2/x").as_deref(), Some("apiv2"));
        assert_eq!(svc_of(&r, "a", "/api/v1").as_deref(), Some("api"));
        assert_eq!(svc_of(&r, "a", "/api").as_deref(), Some("api"));
        assert_eq!(svc_of(&r, "a", "/apis").as_deref(), Some("root"));
    }

    #[test]
    fn no_match_uses_the_default_backend_or_nothing() {
        let t = table(&[&format!(
            "  defaultBackend: {{service: {{name: fallback, port: {{name: http}}}}}}\n  rules:\n  - host: a\n    http:\n      paths:\n{}",
            path("only", "/only", "Exact")
        )]);
        let r = build(&t);
        assert_eq!(svc_of(&r, "a", "/only").as_deref(), Some("only"));
        let d = r.route("a", "/else").unwrap();
        assert_eq!(d.to_string(), "default/fallback:http");
        let t = table(&[&format!(
            "  rules:\n  - host: a\n    http:\n      paths:\n{}",
            path("x", "/", "Prefix")
        )]);
        assert!(build(&t).route("b", "/").is_none());
    }

    #[test]
    fn endpoints_resolve_by_port_number_or_name() {
        use crate::api::service::Protocol;
        use crate::proto::services::{PortState, ServiceState};
        let mut t = NetTable::default();
        t.services.insert(
            ("default".into(), "web".into()),
            ServiceState {
                v: 1,
                namespace: "default".into(),
                name: "web".into(),
                ports: vec![
                    PortState {
                        name: "http".into(),
                        protocol: Protocol::TCP,
                        port: 80,
                        node_port: None,
                        endpoints: vec![Backend {
                            ip: "10.88.1.2".parse().unwrap(),
                            port: 8080,
                        }],
                    },
                    PortState {
                        name: "admin".into(),
                        protocol: Protocol::TCP,
                        port: 81,
                        node_port: None,
                        endpoints: vec![],
                    },
                ],
                ..Default::default()
            },
        );
        let tgt = |port: PortRef| Target {
            namespace: "default".into(),
            service: "web".into(),
            port,
        };
        assert_eq!(endpoints(&t, &tgt(PortRef::Number(80))).unwrap().len(), 1);
        assert_eq!(
            endpoints(&t, &tgt(PortRef::Name("http".into()))).unwrap()[0].port,
            8080
        );
        assert!(matches!(
            endpoints(&t, &tgt(PortRef::Name("admin".into()))),
            Err(Unroutable::NoEndpoints(_))
        ));
        assert!(matches!(
            endpoints(&t, &tgt(PortRef::Number(9))),
            Err(Unroutable::NoPort(_))
        ));
        let other = Target {
            namespace: "default".into(),
            service: "nope".into(),
            port: PortRef::Number(80),
        };
        assert!(matches!(
            endpoints(&t, &other),
            Err(Unroutable::NoService(_))
        ));
    }
}
