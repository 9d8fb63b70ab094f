//! Pod IP addresses of this node: one per pod uid from the node's pod subnet, never handed
//! to a second pod while the first lives, persisted in `<data>/state/ipam.json` so an agent
//! restart keeps every running pod's address. Pure allocator (`Ipam`) plus its file.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::util::cidr::Ipv4Cidr;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("pod subnet {0} is full")]
    Exhausted(Ipv4Cidr),
    #[error("ipam state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Allocations in one subnet. `.0` (network), `.1` (the bridge) and the broadcast address
/// are never handed out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ipam {
    pub subnet: Ipv4Cidr,
    /// pod uid → address
    pub pods: BTreeMap<String, Ipv4Addr>,
    /// Where the next search starts: addresses are handed out round-robin so a released
    /// address is reused as late as possible (stale conntrack entries, caches in peers).
    #[serde(default)]
    pub next: u64,
}

impl Ipam {
    pub fn new(subnet: Ipv4Cidr) -> Ipam {
        Ipam {
            subnet,
            pods: BTreeMap::new(),
            next: 2,
        }
    }

    /// The pod's address: the one it has, else the next free one.
    pub fn allocate(&mut self, uid: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = self.pods.get(uid) {
            return Ok(*ip);
        }
        let size = self.subnet.size();
        if size < 4 {
            return Err(IpamError::Exhausted(self.subnet));
        }
        let used: std::collections::BTreeSet<Ipv4Addr> = self.pods.values().copied().collect();
        // Usable offsets: 2 ..= size-2.
        let usable = size - 3;
        let start = self.next.clamp(2, size - 2);
        for k in 0..usable {
            let off = 2 + (start - 2 + k) % usable;
            let Some(ip) = self.subnet.nth(off) else {
                continue;
            };
            if !used.contains(&ip) {
                self.pods.insert(uid.to_string(), ip);
                self.next = if off + 1 > size - 2 { 2 } else { off + 1 };
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted(self.subnet))
    }

    /// Frees the pod's address; true if it had one.
    pub fn release(&mut self, uid: &str) -> bool {
        self.pods.remove(uid).is_some()
    }

    /// Keeps only the pods in `keep` (after an agent restart: pods no longer wanted).
    pub fn retain(&mut self, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
        let gone: Vec<String> = self.pods.keys().filter(|u| !keep(u)).cloned().collect();
        for u in &gone {
            self.pods.remove(u);
        }
        gone
    }

    /// Loads `path`; a missing or unreadable file, or one for another subnet (the node got a
    /// new one), starts empty.
    pub fn load(path: &Path, subnet: Ipv4Cidr) -> Ipam {
        match std::fs::read(path) {
            Ok(b) => match serde_json::from_slice::<Ipam>(&b) {
                Ok(i) if i.subnet == subnet => i,
                Ok(i) => {
                    tracing::warn!(old = %i.subnet, new = %subnet, "pod subnet changed: old pod addresses dropped");
                    Ipam::new(subnet)
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ipam state unreadable: starting empty");
                    Ipam::new(subnet)
                }
            },
            Err(_) => Ipam::new(subnet),
        }
    }

    /// Writes the state, never torn, without fsync: it must survive an agent restart (the
    /// page cache does), not a power cut — after one every pod starts again anyway, so a lost
    /// last allocation cannot give a live pod's address to another. Saves SD writes.
    pub fn save(&self, path: &Path) -> Result<(), IpamError> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        crate::util::fsutil::write_replace(path, &json, 0o600).map_err(|source| IpamError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(c: &str) -> Ipam {
        Ipam::new(c.parse().unwrap())
    }

    #[test]
    fn first_address_skips_network_and_bridge() {
        let mut i = ipam("10.88.3.0/24");
        assert_eq!(i.allocate("a").unwrap(), Ipv4Addr::new(10, 88, 3, 2));
        assert_eq!(i.allocate("b").unwrap(), Ipv4Addr::new(10, 88, 3, 3));
        // The same pod asks again: the same address.
        assert_eq!(i.allocate("a").unwrap(), Ipv4Addr::new(10, 88, 3, 2));
    }

    #[test]
    fn a_released_address_is_not_reused_at_once() {
        let mut i = ipam("10.88.3.0/24");
        let a = i.allocate("a").unwrap();
        assert!(i.release("a"));
        assert!(!i.release("a"));
        let b = i.allocate("b").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_full_subnet_wraps_around_then_fails() {
        let mut i = ipam("10.0.0.0/29"); // usable .2 - .6
        for n in 0..5 {
            i.allocate(&format!("p{n}")).unwrap();
        }
        assert!(matches!(i.allocate("x"), Err(IpamError::Exhausted(_))));
        i.release("p1");
        assert_eq!(i.allocate("x").unwrap(), Ipv4Addr::new(10, 0, 0, 3));
        assert!(!i.pods.values().any(|ip| *ip == Ipv4Addr::new(10, 0, 0, 7)));
    }

    #[test]
    fn state_survives_a_save_and_load_and_a_new_subnet_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        let mut i = ipam("10.88.3.0/24");
        i.allocate("a").unwrap();
        i.save(&path).unwrap();
        let mut j = Ipam::load(&path, "10.88.3.0/24".parse().unwrap());
        assert_eq!(j, i);
        assert_eq!(j.allocate("b").unwrap(), Ipv4Addr::new(10, 88, 3, 3));
        let k = Ipam::load(&path, "10.88.4.0/24".parse().unwrap());
        assert!(k.pods.is_empty());
    }

    #[test]
    fn retain_drops_pods_that_are_gone() {
        let mut i = ipam("10.88.3.0/24");
        i.allocate("a").unwrap();
        i.allocate("b").unwrap();
        assert_eq!(i.retain(&|u| u == "a"), vec!["b".to_string()]);
        assert_eq!(i.pods.len(), 1);
    }
}
