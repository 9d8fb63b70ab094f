//! Pod subnets: each node gets one block (a /24 by default) of the cluster CIDR. Pure
//! allocation here; the assignment is kept in the `pod_cidrs` table (see `store::podcidrs`)
//! and shown as `spec.podCIDR` on the Node.

use std::collections::BTreeSet;

use crate::util::cidr::Ipv4Cidr;

/// Kubernetes' and flannel's default: 254 pods per node, 256 nodes in a /16.
pub const NODE_PREFIX: u8 = 24;
/// The default `--cluster-cidr`.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.88.0.0/16";

/// The cluster's pod address plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub cluster: Ipv4Cidr,
    pub node_prefix: u8,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            // A constant that parses; checked by a unit test.
            cluster: DEFAULT_CLUSTER_CIDR
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            node_prefix: NODE_PREFIX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("--cluster-cidr {0}: must be at most a /{max} to hold /{NODE_PREFIX} node subnets", max = NODE_PREFIX)]
    TooSmall(Ipv4Cidr),
    #[error("--cluster-cidr: {0}")]
    Parse(#[from] crate::util::cidr::CidrError),
}

impl Plan {
    /// Parses `--cluster-cidr`: the block must hold at least one node subnet.
    pub fn parse(cluster: &str) -> Result<Plan, PlanError> {
        let c: Ipv4Cidr = cluster.parse()?;
        if c.prefix() > NODE_PREFIX {
            return Err(PlanError::TooSmall(c));
        }
        Ok(Plan {
            cluster: c,
            node_prefix: NODE_PREFIX,
        })
    }

    /// True if `subnet` is a node subnet this plan could have handed out.
    pub fn fits(&self, subnet: &Ipv4Cidr) -> bool {
        subnet.prefix() == self.node_prefix && self.cluster.covers(subnet)
    }

    /// The lowest node subnet not in `used`; `None` when the cluster CIDR is full.
    pub fn allocate(&self, used: &BTreeSet<Ipv4Cidr>) -> Option<Ipv4Cidr> {
        let count = 1u64 << (self.node_prefix - self.cluster.prefix());
        (0..count)
            .filter_map(|i| self.cluster.subnet(self.node_prefix, i))
            .find(|s| !used.contains(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_plan_is_a_slash_16_of_slash_24s() {
        let p = Plan::default();
        assert_eq!(p.cluster, c("10.88.0.0/16"));
        assert_eq!(p.allocate(&BTreeSet::new()), Some(c("10.88.0.0/24")));
    }

    #[test]
    fn allocation_takes_the_lowest_free_subnet() {
        let p = Plan::default();
        let used: BTreeSet<_> = [c("10.88.0.0/24"), c("10.88.2.0/24")].into();
        assert_eq!(p.allocate(&used), Some(c("10.88.1.0/24")));
    }

    #[test]
    fn a_full_cluster_cidr_allocates_nothing() {
        let p = Plan::parse("10.9.0.0/23").unwrap();
        let used: BTreeSet<_> = [c("10.9.0.0/24"), c("10.9.1.0/24")].into();
        assert_eq!(p.allocate(&used), None);
    }

    #[test]
    fn a_cluster_cidr_smaller_than_a_node_subnet_is_refused() {
        assert!(matches!(
            Plan::parse("10.9.0.0/25"),
            Err(PlanError::TooSmall(_))
        ));
        assert!(Plan::parse("10.9.0.1/16").is_err());
    }

    #[test]
    fn fits_only_node_subnets_inside_the_cluster() {
        let p = Plan::default();
        assert!(p.fits(&c("10.88.7.0/24")));
        assert!(!p.fits(&c("10.89.7.0/24")));
        assert!(!p.fits(&c("10.88.0.0/25")));
    }
}
