//! Pure: a pod's phase and conditions from its containers' states, by Kubernetes' rules.

use crate::api::meta::set_condition;
use crate::api::{Condition, ContainerStatus, PodPhase, RestartPolicy};

/// Phase from container statuses. `Pending` until every container has started once;
/// `Succeeded`/`Failed` only when every container terminated and none will restart.
pub fn phase(policy: RestartPolicy, statuses: &[ContainerStatus], will_restart: bool) -> PodPhase {
    if statuses.is_empty() {
        return PodPhase::Pending;
    }
    let ever_started = |c: &ContainerStatus| {
        c.state.running.is_some()
            || c.state.terminated.is_some()
            || c.last_state.terminated.is_some()
            || c.restart_count > 0
    };
    if !statuses.iter().all(ever_started) {
        return PodPhase::Pending;
    }
    let all_terminated = statuses.iter().all(|c| c.state.terminated.is_some());
    if !all_terminated || will_restart {
        return PodPhase::Running;
    }
    let all_ok = statuses.iter().all(|c| {
        c.state
            .terminated
            .as_ref()
            .is_some_and(|t| t.exit_code == 0)
    });
    match (policy, all_ok) {
        (_, true) => PodPhase::Succeeded,
        (RestartPolicy::Always, false) => PodPhase::Running,
        (_, false) => PodPhase::Failed,
    }
}

/// Sets Initialized, ContainersReady and Ready from each container's `ready`, which the
/// container loop sets from its probes (running and started, without a readiness probe).
pub fn conditions(conds: &mut Vec<Condition>, statuses: &[ContainerStatus], now: &str) {
    let ready = !statuses.is_empty() && statuses.iter().all(|c| c.ready);
    let (status, reason) = if ready {
        ("True", "")
    } else {
        ("False", "ContainersNotReady")
    };
    let not_ready: Vec<&str> = statuses
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let message = if ready {
        String::new()
    } else {
        format!("containers with unready status: [{}]", not_ready.join(" "))
    };
    set_condition(
        conds,
        Condition {
            type_: "Initialized".into(),
            status: "True".into(),
            ..Default::default()
        },
        now,
    );
    for t in ["ContainersReady", "Ready"] {
        set_condition(
            conds,
            Condition {
                type_: t.into(),
                status: status.into(),
                reason: reason.into(),
                message: message.clone(),
                ..Default::default()
            },
            now,
        );
    }
}

/// While init containers run: `Initialized` False naming the incomplete ones (kubelet's
/// wording), and the pod not ready.
pub fn initializing(conds: &mut Vec<Condition>, inits: &[ContainerStatus], now: &str) {
    let incomplete: Vec<&str> = inits
        .iter()
        .filter(|c| c.state.terminated.as_ref().is_none_or(|t| t.exit_code != 0))
        .map(|c| c.name.as_str())
        .collect();
    let message = format!(
        "containers with incomplete status: [{}]",
        incomplete.join(" ")
    );
    let (status, reason) = if incomplete.is_empty() {
        ("True", "")
    } else {
        ("False", "ContainersNotInitialized")
    };
    set_condition(
        conds,
        Condition {
            type_: "Initialized".into(),
            status: status.into(),
            reason: reason.into(),
            message: if incomplete.is_empty() {
                String::new()
            } else {
                message
            },
            ..Default::default()
        },
        now,
    );
    for t in ["ContainersReady", "Ready"] {
        set_condition(
            conds,
            Condition {
                type_: t.into(),
                status: "False".into(),
                reason: "ContainersNotReady".into(),
                message: "init containers have not completed".into(),
                ..Default::default()
            },
            now,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::{ContainerState, StateRunning, StateTerminated, StateWaiting};

    fn running() -> ContainerStatus {
        ContainerStatus {
            name: "a".into(),
            state: ContainerState {
                running: Some(StateRunning::default()),
                ..Default::default()
            },
            ready: true,
            ..Default::default()
        }
    }
    fn exited(code: i32) -> ContainerStatus {
        ContainerStatus {
            name: "a".into(),
            state: ContainerState {
                terminated: Some(StateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }
    fn waiting() -> ContainerStatus {
        ContainerStatus {
            name: "a".into(),
            state: ContainerState {
                waiting: Some(StateWaiting {
                    reason: "ContainerCreating".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_is_pending_until_every_container_started() {
        assert_eq!(
            phase(RestartPolicy::Always, &[running(), waiting()], false),
            PodPhase::Pending
        );
        assert_eq!(phase(RestartPolicy::Always, &[], false), PodPhase::Pending);
    }

    #[test]
    fn a_pod_runs_while_any_container_runs_or_will_restart() {
        assert_eq!(
            phase(RestartPolicy::Never, &[running(), exited(0)], false),
            PodPhase::Running
        );
        assert_eq!(
            phase(RestartPolicy::Always, &[exited(1)], true),
            PodPhase::Running
        );
    }

    #[test]
    fn terminal_phases_follow_exit_codes() {
        assert_eq!(
            phase(RestartPolicy::Never, &[exited(0)], false),
            PodPhase::Succeeded
        );
        assert_eq!(
            phase(RestartPolicy::Never, &[exited(0), exited(2)], false),
            PodPhase::Failed
        );
        assert_eq!(
            phase(RestartPolicy::OnFailure, &[exited(0)], false),
            PodPhase::Succeeded
        );
    }

    #[test]
    fn initialized_is_false_until_every_init_container_completed() {
        let mut c = Vec::new();
        let mut done = exited(0);
        done.name = "first".into();
        let mut failing = exited(1);
        failing.name = "second".into();
        initializing(&mut c, &[done.clone(), failing], "t");
        let init = c.iter().find(|c| c.type_ == "Initialized").unwrap();
        assert_eq!(init.status, "False");
        assert_eq!(init.reason, "ContainersNotInitialized");
        assert_eq!(init.message, "containers with incomplete status: [second]");
        initializing(&mut c, &[done], "t2");
        let init = c.iter().find(|c| c.type_ == "Initialized").unwrap();
        assert_eq!(init.status, "True");
        assert_eq!(
            c.iter().find(|c| c.type_ == "Ready").unwrap().status,
            "False"
        );
    }

    #[test]
    fn ready_needs_every_container_ready() {
        let mut c = Vec::new();
        conditions(&mut c, &[running(), exited(1)], "t");
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert!(ready.message.contains("[a]"));
        conditions(&mut c, &[running()], "t2");
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.last_transition_time.as_deref(), Some("t2"));
    }
}
