//! Pure: the user and [`Security`] a container runs with, from the pod's and the container's
//! `securityContext` and the image's `USER`, with Kubernetes' rules: a container field
//! overrides the pod field of the same name; `runAsUser`/`runAsGroup` override the image's
//! user and group; `supplementalGroups` and `fsGroup` add groups; `runAsNonRoot` refuses a
//! container that would run as root, or whose image user is a name (the kubelet cannot tell
//! a name's uid before the container exists, and neither does herd).

use crate::api::pod::{PodSecurityContext, SecurityContext};
use crate::api::security::{parse_capability, CapabilityName, SeccompProfileType};
use crate::api::{Container, Pod};
use crate::worker::runtime::Security;

/// A container that must not start as configured: the kubelet's `CreateContainerConfigError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The user string for the runtime (`uid`, `uid:gid`, `name`, … resolved against the image's
/// /etc/passwd by the shim) and the container's confinement.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub user: String,
    pub security: Security,
}

fn id(value: i64, field: &str) -> Result<u32, ConfigError> {
    u32::try_from(value).map_err(|_| ConfigError(format!("{field} {value} is not a valid id")))
}

fn canonical_caps(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| match parse_capability(n)? {
            CapabilityName::All => Some("ALL".to_owned()),
            CapabilityName::One(c) => Some(c.to_owned()),
        })
        .collect()
}

pub fn effective(pod: &Pod, c: &Container, image_user: &str) -> Result<Effective, ConfigError> {
    let none_pod = PodSecurityContext::default();
    let none = SecurityContext::default();
    let psc = pod.spec.security_context.as_ref().unwrap_or(&none_pod);
    let sc = c.security_context.as_ref().unwrap_or(&none);
    let run_as_user = sc.run_as_user.or(psc.run_as_user);
    let run_as_group = sc.run_as_group.or(psc.run_as_group);
    let non_root = sc.run_as_non_root.or(psc.run_as_non_root) == Some(true);
    let who = || {
        format!(
            "(pod: \"{}/{}\", container: {})",
            pod.metadata.ns(),
            pod.metadata.name,
            c.name
        )
    };

    let image_user_part = image_user.split(':').next().unwrap_or_default();
    if non_root {
        match run_as_user {
            Some(0) => {
                return Err(ConfigError(format!(
                    "container's runAsUser breaks non-root policy {}",
                    who()
                )))
            }
            Some(_) => {}
            None => match image_user_part.parse::<u32>() {
                Ok(0) => {
                    return Err(ConfigError(format!(
                        "container has runAsNonRoot and image will run as root {}",
                        who()
                    )))
                }
                Ok(_) => {}
                Err(_) if image_user_part.is_empty() => {
                    return Err(ConfigError(format!(
                        "container has runAsNonRoot and image will run as root {}",
                        who()
                    )))
                }
                Err(_) => {
                    return Err(ConfigError(format!(
                        "container has runAsNonRoot and image has non-numeric user \
                         ({image_user_part}), cannot verify user is non-root {}",
                        who()
                    )))
                }
            },
        }
    }

    let user = match (run_as_user, run_as_group) {
        (None, None) => image_user.to_owned(),
        (Some(uid), None) => id(uid, "runAsUser")?.to_string(),
        (uid, Some(gid)) => {
            let user_part = match uid {
                Some(uid) => id(uid, "runAsUser")?.to_string(),
                None => image_user_part.to_owned(),
            };
            format!("{user_part}:{}", id(gid, "runAsGroup")?)
        }
    };

    let mut supplemental_groups = Vec::new();
    for g in psc.supplemental_groups.iter().chain(psc.fs_group.iter()) {
        let g = id(*g, "supplemental group")?;
        if !supplemental_groups.contains(&g) {
            supplemental_groups.push(g);
        }
    }
    let seccomp = sc
        .seccomp_profile
        .as_ref()
        .or(psc.seccomp_profile.as_ref())
        .map(|p| p.type_)
        .unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    Ok(Effective {
        user,
        security: Security {
            privileged: sc.is_privileged(),
            read_only_rootfs: sc.read_only_root_filesystem == Some(true),
            allow_privilege_escalation: sc.allow_privilege_escalation == Some(true),
            capabilities_add: canonical_caps(&caps.add),
            capabilities_drop: canonical_caps(&caps.drop),
            seccomp_unconfined: seccomp == SeccompProfileType::Unconfined,
            supplemental_groups,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::security::{Capabilities, SeccompProfile};
    use crate::api::ObjectMeta;

    fn pod(psc: Option<PodSecurityContext>, sc: Option<SecurityContext>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: "web".into(),
                ..Default::default()
            },
            spec: crate::api::PodSpec {
                security_context: psc,
                containers: vec![Container {
                    name: "app".into(),
                    image: "busybox".into(),
                    security_context: sc,
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn run(p: &Pod, image_user: &str) -> Result<Effective, ConfigError> {
        effective(p, &p.spec.containers[0], image_user)
    }

    #[test]
    fn without_a_security_context_the_image_user_and_defaults_apply() {
        let e = run(&pod(None, None), "web:audio").unwrap();
        assert_eq!(e.user, "web:audio");
        assert_eq!(e.security, Security::default());
    }

    #[test]
    fn the_container_overrides_the_pod_and_both_override_the_image() {
        let psc = PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![4000, 5000],
            fs_group: Some(4000),
            ..Default::default()
        };
        let sc = SecurityContext {
            run_as_user: Some(2000),
            ..Default::default()
        };
        let e = run(&pod(Some(psc.clone()), Some(sc)), "web").unwrap();
        assert_eq!(e.user, "2000:3000");
        assert_eq!(e.security.supplemental_groups, [4000, 5000]);
        // Only a group: the image's user with that group.
        let only_group = PodSecurityContext {
            run_as_group: Some(7),
            ..Default::default()
        };
        assert_eq!(
            run(&pod(Some(only_group), None), "web:audio").unwrap().user,
            "web:7"
        );
        // Only a user: its passwd entry decides the group.
        let only_user = SecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            run(&pod(None, Some(only_user)), "web:audio").unwrap().user,
            "1000"
        );
    }

    #[test]
    fn run_as_non_root_refuses_root_and_names() {
        let non_root = |user: Option<i64>| PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: user,
            ..Default::default()
        };
        for image_user in ["", "0", "0:0"] {
            let e = run(&pod(Some(non_root(None)), None), image_user).unwrap_err();
            assert_eq!(
                e.0,
                "container has runAsNonRoot and image will run as root (pod: \"default/web\", container: app)",
                "{image_user:?}"
            );
        }
        let e = run(&pod(Some(non_root(None)), None), "nginx").unwrap_err();
        assert!(e.0.contains("non-numeric user (nginx)"), "{e}");
        let e = run(&pod(Some(non_root(Some(0))), None), "1000").unwrap_err();
        assert!(
            e.0.starts_with("container's runAsUser breaks non-root policy"),
            "{e}"
        );
        // A non-root uid from either place passes.
        assert_eq!(
            run(&pod(Some(non_root(None)), None), "1000:1000")
                .unwrap()
                .user,
            "1000:1000"
        );
        assert_eq!(
            run(&pod(Some(non_root(Some(10))), None), "").unwrap().user,
            "10"
        );
        // The container can switch the check off.
        let off = SecurityContext {
            run_as_non_root: Some(false),
            ..Default::default()
        };
        assert!(run(&pod(Some(non_root(None)), Some(off)), "").is_ok());
    }

    #[test]
    fn container_settings_become_the_runtime_security() {
        let sc = SecurityContext {
            privileged: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(true),
            capabilities: Some(Capabilities {
                add: vec!["cap_net_admin".into()],
                drop: vec!["all".into()],
            }),
            ..Default::default()
        };
        let psc = PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: SeccompProfileType::Unconfined,
            }),
            ..Default::default()
        };
        let s = run(&pod(Some(psc), Some(sc)), "").unwrap().security;
        assert!(s.privileged && s.read_only_rootfs && s.allow_privilege_escalation);
        assert!(s.seccomp_unconfined);
        assert_eq!(s.capabilities_add, ["NET_ADMIN"]);
        assert_eq!(s.capabilities_drop, ["ALL"]);
        // The container's RuntimeDefault beats the pod's Unconfined.
        let psc = PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: SeccompProfileType::Unconfined,
            }),
            ..Default::default()
        };
        let sc = SecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: SeccompProfileType::RuntimeDefault,
            }),
            ..Default::default()
        };
        assert!(
            !run(&pod(Some(psc), Some(sc)), "")
                .unwrap()
                .security
                .seccomp_unconfined
        );
    }
}
