//! Validation of `securityContext` (pod and containers), each error naming its field path.
//! Called from `validate_pod`, so pod templates get it too.
//!
//! Kubernetes' own rules (ids within 0..=2147483647, no `allowPrivilegeEscalation: false` with
//! `privileged` or an added `SYS_ADMIN`), plus capability names checked against the kernel's
//! list so a typo fails at apply time instead of at container start. `runAsNonRoot` against
//! `runAsUser: 0` is not checked here: as in Kubernetes, the worker refuses such a container
//! with a reason in its status (it must also check the image's user, which only it knows).

use super::pod::PodSpec;
use super::security::{
    parse_capability, CapabilityName, PodSecurityContext, SeccompProfile, SeccompProfileType,
    SecurityContext,
};
use super::validate::FieldError;

/// Largest user or group id Kubernetes accepts.
pub const MAX_ID: i64 = i32::MAX as i64;

/// Every problem in `spec.securityContext` and `spec.containers[*].securityContext`.
pub fn validate_security(spec: &PodSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(psc) = &spec.security_context {
        pod_context(&mut errs, "spec.securityContext", psc);
    }
    for (i, c) in spec.containers.iter().enumerate() {
        if let Some(sc) = &c.security_context {
            container_context(
                &mut errs,
                &format!("spec.containers[{i}].securityContext"),
                sc,
            );
        }
    }
    errs
}

fn add(errs: &mut Vec<FieldError>, path: String, message: impl Into<String>) {
    errs.push(FieldError {
        path,
        message: message.into(),
    });
}

fn id(errs: &mut Vec<FieldError>, path: String, value: Option<i64>) {
    match value {
        Some(v) if v < 0 => add(errs, path, format!("must be >= 0, got {v}")),
        Some(v) if v > MAX_ID => add(errs, path, format!("must be <= {MAX_ID}, got {v}")),
        _ => {}
    }
}

fn seccomp(errs: &mut Vec<FieldError>, base: &str, profile: &Option<SeccompProfile>) {
    if let Some(p) = profile {
        if p.type_ == SeccompProfileType::Localhost {
            add(
                errs,
                format!("{base}.seccompProfile.type"),
                "Localhost is not supported yet (RuntimeDefault and Unconfined are)",
            );
        }
    }
}

fn pod_context(errs: &mut Vec<FieldError>, base: &str, psc: &PodSecurityContext) {
    id(errs, format!("{base}.runAsUser"), psc.run_as_user);
    id(errs, format!("{base}.runAsGroup"), psc.run_as_group);
    id(errs, format!("{base}.fsGroup"), psc.fs_group);
    for (i, g) in psc.supplemental_groups.iter().enumerate() {
        id(errs, format!("{base}.supplementalGroups[{i}]"), Some(*g));
    }
    seccomp(errs, base, &psc.seccomp_profile);
}

fn container_context(errs: &mut Vec<FieldError>, base: &str, sc: &SecurityContext) {
    id(errs, format!("{base}.runAsUser"), sc.run_as_user);
    id(errs, format!("{base}.runAsGroup"), sc.run_as_group);
    seccomp(errs, base, &sc.seccomp_profile);
    let mut adds_sys_admin = false;
    if let Some(caps) = &sc.capabilities {
        for (field, list) in [("add", &caps.add), ("drop", &caps.drop)] {
            for (i, name) in list.iter().enumerate() {
                match parse_capability(name) {
                    Some(CapabilityName::One("SYS_ADMIN")) if field == "add" => {
                        adds_sys_admin = true
                    }
                    Some(_) => {}
                    None => add(
                        errs,
                        format!("{base}.capabilities.{field}[{i}]"),
                        format!(
                            "unknown capability {name:?} (expected a Linux capability such as \
                             NET_BIND_SERVICE or CAP_NET_BIND_SERVICE, or ALL)"
                        ),
                    ),
                }
            }
        }
    }
    if sc.allow_privilege_escalation == Some(false) {
        let path = format!("{base}.allowPrivilegeEscalation");
        if sc.is_privileged() {
            add(errs, path, "cannot be false when privileged is true");
        } else if adds_sys_admin {
            add(
                errs,
                path,
                "cannot be false when capabilities.add contains SYS_ADMIN",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::security::Capabilities;
    use crate::api::Container;

    fn spec(psc: Option<PodSecurityContext>, sc: Option<SecurityContext>) -> PodSpec {
        PodSpec {
            security_context: psc,
            containers: vec![Container {
                name: "app".into(),
                image: "busybox".into(),
                security_context: sc,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn messages(spec: &PodSpec) -> Vec<String> {
        validate_security(spec)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_typical_hardened_context_is_valid() {
        let sc = SecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: vec!["NET_BIND_SERVICE".into()],
                drop: vec!["ALL".into()],
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: SeccompProfileType::RuntimeDefault,
            }),
            ..Default::default()
        };
        let psc = PodSecurityContext {
            fs_group: Some(2000),
            supplemental_groups: vec![3000],
            ..Default::default()
        };
        assert_eq!(messages(&spec(Some(psc), Some(sc))), Vec::<String>::new());
    }

    #[test]
    fn ids_must_be_within_kubernetes_range() {
        let psc = PodSecurityContext {
            run_as_user: Some(-1),
            fs_group: Some(MAX_ID + 1),
            supplemental_groups: vec![1, -5],
            ..Default::default()
        };
        let sc = SecurityContext {
            run_as_user: Some(-1),
            run_as_group: Some(-2),
            ..Default::default()
        };
        assert_eq!(
            messages(&spec(Some(psc), Some(sc))),
            [
                "spec.securityContext.runAsUser: must be >= 0, got -1",
                "spec.securityContext.fsGroup: must be <= 2147483647, got 2147483648",
                "spec.securityContext.supplementalGroups[1]: must be >= 0, got -5",
                "spec.containers[0].securityContext.runAsUser: must be >= 0, got -1",
                "spec.containers[0].securityContext.runAsGroup: must be >= 0, got -2",
            ]
        );
    }

    #[test]
    fn unknown_capabilities_name_their_entry() {
        let sc = SecurityContext {
            capabilities: Some(Capabilities {
                add: vec!["CAP_NET_RAW".into(), "NET_ADMN".into()],
                drop: vec!["all".into(), "chown".into(), "EVERYTHING".into()],
            }),
            ..Default::default()
        };
        let got = validate_security(&spec(None, Some(sc)));
        let paths: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.containers[0].securityContext.capabilities.add[1]",
                "spec.containers[0].securityContext.capabilities.drop[2]",
            ]
        );
        assert!(got[0].message.contains("unknown capability \"NET_ADMN\""));
    }

    #[test]
    fn no_escalation_conflicts_with_privileged_and_sys_admin() {
        let mut sc = SecurityContext {
            privileged: Some(true),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        };
        assert_eq!(
            messages(&spec(None, Some(sc.clone()))),
            ["spec.containers[0].securityContext.allowPrivilegeEscalation: cannot be false when privileged is true"]
        );
        sc.privileged = None;
        sc.capabilities = Some(Capabilities {
            add: vec!["CAP_SYS_ADMIN".into()],
            drop: vec![],
        });
        assert_eq!(
            messages(&spec(None, Some(sc))),
            ["spec.containers[0].securityContext.allowPrivilegeEscalation: cannot be false when capabilities.add contains SYS_ADMIN"]
        );
    }

    #[test]
    fn a_localhost_seccomp_profile_is_not_supported_yet() {
        let profile = Some(SeccompProfile {
            type_: SeccompProfileType::Localhost,
        });
        let psc = PodSecurityContext {
            seccomp_profile: profile.clone(),
            ..Default::default()
        };
        let sc = SecurityContext {
            seccomp_profile: profile,
            ..Default::default()
        };
        let got = validate_security(&spec(Some(psc), Some(sc)));
        assert_eq!(
            got.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            [
                "spec.securityContext.seccompProfile.type",
                "spec.containers[0].securityContext.seccompProfile.type",
            ]
        );
        assert!(got[0].message.contains("not supported yet"));
    }
}
