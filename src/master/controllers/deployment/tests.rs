//! The Deployment controller against a simulated cluster: ReplicaSets whose pods appear when
//! scaled up, vanish (unavailable ones first) when scaled down, and become available one step
//! later. Invariants are checked after every step of every rollout.

use super::*;
use crate::api::apps::{IntOrString, RollingUpdate};
use crate::api::pod::Container;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn deployment(n: i32, image: &str) -> Deployment {
    let mut d = Deployment::default();
    d.metadata.name = "web".into();
    d.metadata.uid = "d-uid".into();
    d.metadata.generation = 1;
    d.spec.replicas = Some(n);
    d.spec
        .selector
        .match_labels
        .insert("app".into(), "web".into());
    d.spec
        .template
        .metadata
        .labels
        .insert("app".into(), "web".into());
    d.spec.template.spec.containers.push(Container {
        name: "main".into(),
        image: image.into(),
        ..Default::default()
    });
    d
}

struct Sim {
    d: Deployment,
    sets: Vec<ReplicaSet>,
    now: DateTime<Utc>,
    next_uid: u32,
}

impl Sim {
    fn new(d: Deployment) -> Self {
        Sim {
            d,
            sets: Vec::new(),
            now: t0(),
            next_uid: 0,
        }
    }

    /// One controller pass; returns whether anything but status changed.
    fn step(&mut self) -> bool {
        let owned: Vec<&ReplicaSet> = self.sets.iter().collect();
        let actions = plan(&self.d, &owned, self.now);
        let mut changed = false;
        for a in actions {
            match a {
                Action::CreateReplicaSet(rs) => {
                    let mut rs = *rs;
                    self.next_uid += 1;
                    rs.metadata.uid = format!("rs-{}", self.next_uid);
                    self.sets.push(rs);
                    changed = true;
                }
                Action::Scale { name, replicas } => {
                    let rs = self
                        .sets
                        .iter_mut()
                        .find(|r| r.metadata.name == name)
                        .unwrap();
                    rs.spec.replicas = Some(replicas);
                    rs.metadata.generation += 1;
                    changed = true;
                }
                Action::SetRevision { name, revision } => {
                    let rs = self
                        .sets
                        .iter_mut()
                        .find(|r| r.metadata.name == name)
                        .unwrap();
                    rs.metadata
                        .annotations
                        .insert(REVISION_ANNOTATION.into(), revision.to_string());
                }
                Action::DeleteReplicaSet { name, .. } => {
                    self.sets.retain(|r| r.metadata.name != name);
                }
                Action::SetStatus(s, rev) => {
                    self.d.status = *s;
                    if let Some(rev) = rev {
                        self.d
                            .metadata
                            .annotations
                            .insert(REVISION_ANNOTATION.into(), rev.to_string());
                    }
                }
            }
        }
        // The ReplicaSet controller: pods follow spec at once (scale-down removes
        // unavailable pods first); new pods are not available yet.
        for rs in &mut self.sets {
            let want = rs.spec.replicas();
            rs.status.replicas = want;
            rs.status.available_replicas = rs.status.available_replicas.min(want);
            rs.status.ready_replicas = rs.status.available_replicas;
            rs.status.observed_generation = rs.metadata.generation;
        }
        self.now += chrono::Duration::seconds(1);
        changed
    }

    /// Pods started meanwhile become available.
    fn pods_become_ready(&mut self) {
        for rs in &mut self.sets {
            rs.status.available_replicas = rs.status.replicas;
            rs.status.ready_replicas = rs.status.replicas;
        }
    }

    fn total_pods(&self) -> i32 {
        self.sets.iter().map(|r| r.status.replicas).sum()
    }
    fn available(&self) -> i32 {
        self.sets.iter().map(|r| r.status.available_replicas).sum()
    }
    fn new_rs(&self) -> Option<&ReplicaSet> {
        self.sets.iter().find(|r| same_template(r, &self.d))
    }

    /// Runs steps until settled, checking `inv` after each; bounded.
    fn settle(&mut self, mut inv: impl FnMut(&Sim)) -> usize {
        for i in 0..200 {
            let changed = self.step();
            inv(self);
            self.pods_become_ready();
            if !changed && self.complete() {
                return i;
            }
        }
        panic!("did not settle: {:#?}", self.sets);
    }

    fn complete(&self) -> bool {
        let n = self.d.spec.replicas();
        self.new_rs()
            .is_some_and(|r| r.status.available_replicas == n)
            && self.total_pods() == n
    }
}

fn rolling(n: i32, surge: IntOrString, unavailable: IntOrString, image: &str) -> Deployment {
    let mut d = deployment(n, image);
    d.spec.strategy.rolling_update = Some(RollingUpdate {
        max_surge: Some(surge),
        max_unavailable: Some(unavailable),
    });
    d
}

#[test]
fn a_new_deployment_scales_up_to_its_replicas_and_records_revision_one() {
    let mut sim = Sim::new(deployment(3, "a"));
    sim.settle(|_| {});
    assert_eq!(sim.sets.len(), 1);
    assert_eq!(revision(&sim.sets[0]), 1);
    assert_eq!(sim.d.status.available_replicas, 3);
    let progressing = sim
        .d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason, "NewReplicaSetAvailable");
}

#[test]
fn a_rolling_update_never_exceeds_max_surge_nor_drops_below_max_unavailable() {
    for (n, surge, unav) in [
        (6, IntOrString::Int(1), IntOrString::Int(0)),
        (6, IntOrString::Int(0), IntOrString::Int(1)),
        (6, IntOrString::Int(2), IntOrString::Int(2)),
        (
            5,
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
        ),
        (1, IntOrString::Int(1), IntOrString::Int(0)),
        (10, IntOrString::String("50%".into()), IntOrString::Int(0)),
    ] {
        let mut sim = Sim::new(rolling(n, surge.clone(), unav.clone(), "a"));
        sim.settle(|_| {});
        let (s, u) = surge_and_unavailable(&sim.d.spec).unwrap();
        sim.d.spec.template.spec.containers[0].image = "b".into();
        sim.d.metadata.generation += 1;
        let steps = sim.settle(|sim| {
            assert!(
                sim.total_pods() <= n + s,
                "surge exceeded: {} > {n}+{s}",
                sim.total_pods()
            );
            assert!(
                sim.available() >= n - u,
                "below minimum: {} < {n}-{u}",
                sim.available()
            );
        });
        assert!(steps > 0);
        assert_eq!(
            sim.new_rs().unwrap().spec.template.spec.containers[0].image,
            "b"
        );
        let old: Vec<_> = sim
            .sets
            .iter()
            .filter(|r| !same_template(r, &sim.d))
            .collect();
        assert!(
            old.iter().all(|r| r.spec.replicas() == 0),
            "old replicas left"
        );
    }
}

#[test]
fn rollback_reuses_the_old_replicaset_as_the_newest_revision() {
    let mut sim = Sim::new(deployment(3, "a"));
    sim.settle(|_| {});
    let a_name = sim.sets[0].metadata.name.clone();
    sim.d.spec.template.spec.containers[0].image = "b".into();
    sim.settle(|_| {});
    sim.d.spec.template.spec.containers[0].image = "a".into();
    sim.settle(|_| {});
    let a = sim.sets.iter().find(|r| r.metadata.name == a_name).unwrap();
    assert_eq!(a.spec.replicas(), 3);
    assert_eq!(revision(a), 3);
    assert_eq!(
        sim.sets.len(),
        2,
        "no third ReplicaSet for a template seen before"
    );
    assert_eq!(
        sim.d
            .metadata
            .annotations
            .get(REVISION_ANNOTATION)
            .map(String::as_str),
        Some("3")
    );
}

#[test]
fn recreate_removes_every_old_pod_before_starting_new_ones() {
    let mut d = deployment(4, "a");
    d.spec.strategy.type_ = StrategyType::Recreate;
    let mut sim = Sim::new(d);
    sim.settle(|_| {});
    sim.d.spec.template.spec.containers[0].image = "b".into();
    sim.settle(|sim| {
        let old_pods: i32 = sim
            .sets
            .iter()
            .filter(|r| !same_template(r, &sim.d))
            .map(|r| r.status.replicas)
            .sum();
        let new_pods = sim.new_rs().map_or(0, |r| r.status.replicas);
        assert!(
            old_pods == 0 || new_pods == 0,
            "old and new pods ran together"
        );
    });
    assert_eq!(sim.new_rs().unwrap().status.replicas, 4);
}

#[test]
fn a_paused_deployment_does_not_roll_out_a_new_template() {
    let mut sim = Sim::new(deployment(2, "a"));
    sim.settle(|_| {});
    sim.d.spec.paused = true;
    sim.d.spec.template.spec.containers[0].image = "b".into();
    for _ in 0..5 {
        sim.step();
        sim.pods_become_ready();
    }
    assert_eq!(sim.sets.len(), 1);
    let p = sim
        .d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(p.reason, "DeploymentPaused");
    sim.d.spec.paused = false;
    sim.settle(|_| {});
    assert_eq!(
        sim.new_rs().unwrap().spec.template.spec.containers[0].image,
        "b"
    );
}

#[test]
fn scaling_up_and_down_moves_the_current_replicaset() {
    let mut sim = Sim::new(deployment(2, "a"));
    sim.settle(|_| {});
    sim.d.spec.replicas = Some(5);
    sim.settle(|_| {});
    assert_eq!(sim.total_pods(), 5);
    sim.d.spec.replicas = Some(1);
    sim.settle(|_| {});
    assert_eq!(sim.total_pods(), 1);
}

#[test]
fn revision_history_keeps_only_the_limit_of_old_replicasets() {
    let mut d = deployment(1, "v0");
    d.spec.revision_history_limit = Some(2);
    let mut sim = Sim::new(d);
    sim.settle(|_| {});
    for v in 1..6 {
        sim.d.spec.template.spec.containers[0].image = format!("v{v}");
        sim.settle(|_| {});
    }
    // One current plus two old.
    assert_eq!(
        sim.sets.len(),
        3,
        "{:?}",
        sim.sets
            .iter()
            .map(|r| &r.metadata.name)
            .collect::<Vec<_>>()
    );
}

#[test]
fn no_progress_past_the_deadline_is_reported() {
    let mut d = deployment(2, "a");
    d.spec.progress_deadline_seconds = Some(10);
    let mut sim = Sim::new(d);
    // Pods never become available: step without readiness.
    for _ in 0..30 {
        sim.step();
    }
    let p = sim
        .d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(p.reason, "ProgressDeadlineExceeded", "{p:?}");
    assert_eq!(p.status, "False");
}

#[test]
fn stale_replicaset_status_holds_the_rollout_until_it_catches_up() {
    let mut sim = Sim::new(rolling(4, IntOrString::Int(1), IntOrString::Int(1), "a"));
    sim.settle(|_| {});
    sim.d.spec.template.spec.containers[0].image = "b".into();
    sim.step();
    // The ReplicaSet controller has not seen the last scale yet.
    for rs in &mut sim.sets {
        rs.metadata.generation += 1;
    }
    let owned: Vec<&ReplicaSet> = sim.sets.iter().collect();
    let acts = plan(&sim.d, &owned, sim.now);
    assert!(
        acts.iter()
            .all(|a| matches!(a, Action::SetStatus(..) | Action::SetRevision { .. })),
        "{acts:?}"
    );
}
