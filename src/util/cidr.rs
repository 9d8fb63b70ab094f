//! IPv4 CIDR blocks (`10.88.0.0/16`): parsing, containment, host addresses. Pure.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: the address is always the network address (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: u32,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cidr {input:?}: {problem}")]
pub struct CidrError {
    pub input: String,
    pub problem: &'static str,
}

impl Ipv4Cidr {
    /// `addr/prefix`; host bits set in `addr` are an error (a typo, not a network).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        let err = |problem| CidrError {
            input: format!("{addr}/{prefix}"),
            problem,
        };
        if prefix > 32 {
            return Err(err("prefix length above 32"));
        }
        let a = u32::from(addr);
        if a & !mask(prefix) != 0 {
            return Err(err("host bits set: not a network address"));
        }
        Ok(Ipv4Cidr { addr: a, prefix })
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses in the block (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.addr
    }

    /// True if `other` lies entirely inside `self`.
    pub fn covers(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }

    /// The `i`-th address of the block (0 = network address), if inside it.
    pub fn nth(&self, i: u64) -> Option<Ipv4Addr> {
        (i < self.size()).then(|| Ipv4Addr::from(self.addr + i as u32))
    }

    /// Offset of `ip` in the block.
    pub fn index_of(&self, ip: Ipv4Addr) -> Option<u64> {
        self.contains(ip)
            .then(|| u64::from(u32::from(ip) - self.addr))
    }

    /// First usable host (network + 1): herd's bridge/gateway address of a pod subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr.wrapping_add(1))
    }

    /// The `i`-th subnet of length `prefix` inside this block.
    pub fn subnet(&self, prefix: u8, i: u64) -> Option<Ipv4Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        (i < count).then(|| Ipv4Cidr {
            addr: self.addr + (i << (32 - u32::from(prefix))) as u32,
            prefix,
        })
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = |problem| CidrError {
            input: s.to_string(),
            problem,
        };
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| err("expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err("not an IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| err("prefix is not a number"))?;
        Ipv4Cidr::new(addr, prefix).map_err(|e| err(e.problem))
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_networks() {
        let c: Ipv4Cidr = "10.88.0.0/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.88.0.0/16");
        assert_eq!(c.size(), 65536);
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert!("10.88.0.1/16".parse::<Ipv4Cidr>().is_err());
        assert!("10.88.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.88.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("nope/8".parse::<Ipv4Cidr>().is_err());
        assert_eq!("0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().size(), 1 << 32);
    }

    #[test]
    fn subnets_and_containment() {
        let c: Ipv4Cidr = "10.88.0.0/16".parse().unwrap();
        let s = c.subnet(24, 3).unwrap();
        assert_eq!(s.to_string(), "10.88.3.0/24");
        assert!(c.covers(&s));
        assert!(!s.covers(&c));
        assert!(c.subnet(24, 256).is_none());
        assert!(c.subnet(8, 0).is_none());
        assert!(s.contains(Ipv4Addr::new(10, 88, 3, 77)));
        assert!(!s.contains(Ipv4Addr::new(10, 88, 4, 1)));
        assert_eq!(s.nth(255), Some(Ipv4Addr::new(10, 88, 3, 255)));
        assert_eq!(s.nth(256), None);
        assert_eq!(s.index_of(Ipv4Addr::new(10, 88, 3, 9)), Some(9));
    }
}
