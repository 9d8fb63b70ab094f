//! Pure re-adoption plan: what a new agent does with the containers a previous agent left
//! (it was restarted, crashed, upgraded, or the machine rebooted), given the desired pods it
//! persisted. Containers of desired pods are adopted where they are (running ones keep
//! running, exited ones go through the restart policy with the exit code their shim
//! recorded); everything else is removed. The I/O that finds the containers and removes the
//! unwanted ones lives in `worker::adoption`.

use std::collections::{BTreeMap, HashMap};

use crate::api::Pod;
use crate::worker::runtime::Exit;

/// A container found in the runtime's index, parsed from its bundle location
/// `containers/<uid>/<name>-<attempt>/bundle`.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub id: String,
    pub uid: String,
    pub container: String,
    pub attempt: u32,
    /// Pod generation the container was started for (`None`: not recorded, e.g. an older
    /// agent; taken as current).
    pub generation: Option<i64>,
    pub state: FoundState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FoundState {
    Running {
        started_at: String,
    },
    Exited {
        started_at: Option<String>,
        exit: Exit,
    },
    /// No live shim and no exit record (shim killed, machine rebooted, start interrupted).
    Gone {
        started_at: Option<String>,
    },
}

/// Where one container loop of a desired pod continues.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The attempt to continue (Running/Exited), or the highest attempt number already used
    /// (Vanished/Fresh: the next start uses `attempt + 1`, so ids and log files never clash).
    pub attempt: u32,
    pub state: ResumeState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResumeState {
    /// Attach to the running container: wait for its exit, probe it, do not restart it.
    Running { started_at: String },
    /// It exited while no agent watched: apply the restart policy to this exit.
    Exited {
        started_at: Option<String>,
        exit: Exit,
    },
    /// It disappeared without an exit record (reboot, killed shim): counts as a failed exit,
    /// restarted at once where the policy restarts.
    Vanished { started_at: Option<String> },
    /// Leftovers of an older generation of the pod were removed: start from scratch.
    Fresh,
}

/// Per pod uid, per container name: where its loop resumes.
pub type Resumes = HashMap<String, HashMap<String, Resume>>;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub resume: Resumes,
    /// Container ids to stop (if still running) and remove.
    pub remove: Vec<String>,
}

impl Plan {
    /// `<name>-<attempt>` dirs of pod `uid` that hold an adopted container (to be kept).
    pub fn kept_dirs(&self, uid: &str) -> Vec<String> {
        self.resume
            .get(uid)
            .map(|m| {
                m.iter()
                    .filter(|(_, r)| {
                        matches!(
                            r.state,
                            ResumeState::Running { .. } | ResumeState::Exited { .. }
                        )
                    })
                    .map(|(name, r)| format!("{name}-{}", r.attempt))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Splits `<uid>/<name>-<attempt>` (the two path components above `bundle`) into its parts.
pub fn parse_dir(uid: &str, dir: &str) -> Option<(String, String, u32)> {
    let (name, attempt) = dir.rsplit_once('-')?;
    let attempt: u32 = attempt.parse().ok()?;
    (!uid.is_empty() && !name.is_empty() && attempt > 0)
        .then(|| (uid.to_string(), name.to_string(), attempt))
}

/// Decides, for the pods the worker wants (`wanted`: pods it will run, i.e. desired and not
/// being deleted) and the containers found, which to adopt and which to remove.
pub fn plan(wanted: &[&Pod], found: Vec<Found>) -> Plan {
    let pods: HashMap<&str, &Pod> = wanted
        .iter()
        .map(|p| (p.metadata.uid.as_str(), *p))
        .collect();
    let mut groups: BTreeMap<(String, String), Vec<Found>> = BTreeMap::new();
    for f in found {
        groups
            .entry((f.uid.clone(), f.container.clone()))
            .or_default()
            .push(f);
    }
    let mut out = Plan::default();
    for ((uid, container), mut group) in groups {
        let pod = pods
            .get(uid.as_str())
            .copied()
            .filter(|p| p.spec.containers.iter().any(|c| c.name == container));
        let Some(pod) = pod else {
            out.remove.extend(group.into_iter().map(|f| f.id));
            continue;
        };
        group.sort_by_key(|f| f.attempt);
        let max_attempt = group.last().map_or(0, |f| f.attempt);
        let current = |f: &Found| f.generation.is_none_or(|g| g == pod.metadata.generation);
        let stale = group.iter().any(|f| !current(f));
        let pick = if stale {
            None
        } else {
            group
                .iter()
                .rposition(|f| !matches!(f.state, FoundState::Gone { .. }))
        };
        let resume = match pick {
            Some(i) => {
                let f = group.remove(i);
                let state = match f.state {
                    FoundState::Running { started_at } => ResumeState::Running { started_at },
                    FoundState::Exited { started_at, exit } => {
                        ResumeState::Exited { started_at, exit }
                    }
                    // Filtered out by the `rposition` above.
                    FoundState::Gone { started_at } => ResumeState::Vanished { started_at },
                };
                Resume {
                    attempt: f.attempt,
                    state,
                }
            }
            None if stale => Resume {
                attempt: max_attempt,
                state: ResumeState::Fresh,
            },
            None => Resume {
                attempt: max_attempt,
                state: ResumeState::Vanished {
                    started_at: group.last().and_then(|f| match &f.state {
                        FoundState::Gone { started_at } => started_at.clone(),
                        _ => None,
                    }),
                },
            },
        };
        out.remove.extend(group.into_iter().map(|f| f.id));
        out.resume.entry(uid).or_default().insert(container, resume);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Container;

    fn pod(uid: &str, generation: i64, containers: &[&str]) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = format!("pod-{uid}");
        p.metadata.uid = uid.into();
        p.metadata.generation = generation;
        p.spec.containers = containers
            .iter()
            .map(|n| Container {
                name: n.to_string(),
                image: "busybox".into(),
                ..Default::default()
            })
            .collect();
        p
    }

    fn exit(code: i32) -> Exit {
        Exit {
            exit_code: code,
            signal: None,
            oom_killed: false,
            finished_at: "2024-01-01T00:00:00Z".into(),
        }
    }

    fn found(uid: &str, name: &str, attempt: u32, state: FoundState) -> Found {
        Found {
            id: format!("{uid}-{name}-{attempt}"),
            uid: uid.into(),
            container: name.into(),
            attempt,
            generation: Some(1),
            state,
        }
    }

    fn running() -> FoundState {
        FoundState::Running {
            started_at: "t0".into(),
        }
    }

    #[test]
    fn a_running_container_of_a_desired_pod_is_adopted_not_restarted() {
        let p = pod("u1", 1, &["web"]);
        let plan = plan(&[&p], vec![found("u1", "web", 3, running())]);
        assert!(plan.remove.is_empty());
        assert_eq!(
            plan.resume["u1"]["web"],
            Resume {
                attempt: 3,
                state: ResumeState::Running {
                    started_at: "t0".into()
                }
            }
        );
        assert_eq!(plan.kept_dirs("u1"), vec!["web-3".to_string()]);
    }

    #[test]
    fn containers_of_pods_no_longer_desired_are_removed() {
        let p = pod("u1", 1, &["web"]);
        let plan = plan(
            &[&p],
            vec![
                found("u2", "web", 1, running()),
                found("u1", "sidecar", 1, running()),
            ],
        );
        assert!(plan.resume.is_empty());
        assert_eq!(plan.remove, vec!["u1-sidecar-1", "u2-web-1"]);
    }

    #[test]
    fn an_exit_recorded_while_the_agent_was_away_is_handed_to_the_restart_policy() {
        let p = pod("u1", 1, &["job"]);
        let st = FoundState::Exited {
            started_at: Some("t0".into()),
            exit: exit(1),
        };
        let plan = plan(&[&p], vec![found("u1", "job", 2, st)]);
        assert!(plan.remove.is_empty());
        assert!(matches!(
            &plan.resume["u1"]["job"].state,
            ResumeState::Exited { exit, .. } if exit.exit_code == 1
        ));
    }

    #[test]
    fn a_container_that_vanished_in_a_reboot_is_restarted_after_its_highest_attempt() {
        let p = pod("u1", 1, &["web"]);
        let gone = FoundState::Gone {
            started_at: Some("t0".into()),
        };
        let plan = plan(&[&p], vec![found("u1", "web", 4, gone)]);
        assert_eq!(plan.remove, vec!["u1-web-4"]);
        assert_eq!(plan.resume["u1"]["web"].attempt, 4);
        assert!(matches!(
            plan.resume["u1"]["web"].state,
            ResumeState::Vanished { .. }
        ));
        assert!(plan.kept_dirs("u1").is_empty());
    }

    #[test]
    fn only_the_newest_live_attempt_is_adopted_and_older_ones_removed() {
        let p = pod("u1", 1, &["web"]);
        let old = FoundState::Exited {
            started_at: None,
            exit: exit(137),
        };
        let plan = plan(
            &[&p],
            vec![
                found("u1", "web", 1, old),
                found("u1", "web", 2, running()),
                found("u1", "web", 3, FoundState::Gone { started_at: None }),
            ],
        );
        assert_eq!(plan.resume["u1"]["web"].attempt, 2);
        let mut removed = plan.remove.clone();
        removed.sort();
        assert_eq!(removed, vec!["u1-web-1", "u1-web-3"]);
    }

    #[test]
    fn containers_of_an_older_generation_are_removed_and_the_pod_starts_fresh() {
        let p = pod("u1", 2, &["web"]);
        let plan = plan(&[&p], vec![found("u1", "web", 5, running())]);
        assert_eq!(plan.remove, vec!["u1-web-5"]);
        assert_eq!(
            plan.resume["u1"]["web"],
            Resume {
                attempt: 5,
                state: ResumeState::Fresh
            }
        );
    }

    #[test]
    fn bundle_dirs_parse_into_name_and_attempt_even_with_dashes_in_the_name() {
        assert_eq!(
            parse_dir("u1", "my-app-12"),
            Some(("u1".into(), "my-app".into(), 12))
        );
        assert_eq!(parse_dir("u1", "web"), None);
        assert_eq!(parse_dir("u1", "web-0"), None);
        assert_eq!(parse_dir("u1", "web-x"), None);
    }
}
