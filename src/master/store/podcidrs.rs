//! The node → pod subnet assignment (`pod_cidrs` table), kept apart from the Node body so
//! that two nodes can never get one subnet (UNIQUE) and a removed node's subnet is freed with
//! one DELETE.

use std::collections::BTreeSet;

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::master::podcidr::Plan;
use crate::util::cidr::Ipv4Cidr;

impl Store {
    /// The node's subnet: the one it has if it still fits `plan`, else the lowest free one
    /// (`None` when the cluster CIDR is exhausted). One transaction.
    pub fn assign_pod_cidr(&self, node: &str, plan: &Plan) -> Result<Option<Ipv4Cidr>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mine: Option<String> = tx
            .query_row(
                "SELECT cidr FROM pod_cidrs WHERE node = ?1",
                params![node],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(c) = mine.as_deref().and_then(|c| c.parse::<Ipv4Cidr>().ok()) {
            if plan.fits(&c) {
                return Ok(Some(c));
            }
        }
        let used: BTreeSet<Ipv4Cidr> = {
            let mut st = tx.prepare("SELECT cidr FROM pod_cidrs WHERE node != ?1")?;
            let rows = st.query_map(params![node], |r| r.get::<_, String>(0))?;
            rows.filter_map(|r| r.ok().and_then(|c| c.parse().ok()))
                .collect()
        };
        let Some(c) = plan.allocate(&used) else {
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO pod_cidrs (node, cidr) VALUES (?1, ?2)
             ON CONFLICT(node) DO UPDATE SET cidr = excluded.cidr",
            params![node, c.to_string()],
        )?;
        tx.commit()?;
        Ok(Some(c))
    }

    /// Frees the node's subnet (node removed); idempotent.
    pub fn release_pod_cidr(&self, node: &str) -> Result<(), StoreError> {
        self.lock()
            .execute("DELETE FROM pod_cidrs WHERE node = ?1", params![node])?;
        Ok(())
    }

    /// Every assignment, by node name.
    pub fn pod_cidrs(&self) -> Result<Vec<(String, Ipv4Cidr)>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT node, cidr FROM pod_cidrs ORDER BY node")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows
            .filter_map(|r| r.ok())
            .filter_map(|(n, c)| c.parse().ok().map(|c| (n, c)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_distinct_subnets_that_are_kept_and_freed() {
        let s = Store::open_in_memory().unwrap();
        let plan = Plan::default();
        let a = s.assign_pod_cidr("a", &plan).unwrap().unwrap();
        let b = s.assign_pod_cidr("b", &plan).unwrap().unwrap();
        assert_ne!(a, b);
        assert_eq!(s.assign_pod_cidr("a", &plan).unwrap(), Some(a));
        s.release_pod_cidr("a").unwrap();
        assert_eq!(s.pod_cidrs().unwrap(), vec![("b".to_string(), b)]);
        // The freed subnet is handed out again.
        assert_eq!(s.assign_pod_cidr("c", &plan).unwrap(), Some(a));
    }

    #[test]
    fn a_subnet_outside_a_changed_cluster_cidr_is_replaced() {
        let s = Store::open_in_memory().unwrap();
        s.assign_pod_cidr("a", &Plan::default()).unwrap();
        let other = Plan::parse("10.90.0.0/16").unwrap();
        assert_eq!(
            s.assign_pod_cidr("a", &other).unwrap(),
            Some("10.90.0.0/24".parse().unwrap())
        );
    }

    #[test]
    fn an_exhausted_cluster_cidr_assigns_nothing() {
        let s = Store::open_in_memory().unwrap();
        let plan = Plan::parse("10.9.0.0/24").unwrap();
        assert!(s.assign_pod_cidr("a", &plan).unwrap().is_some());
        assert_eq!(s.assign_pod_cidr("b", &plan).unwrap(), None);
    }
}
