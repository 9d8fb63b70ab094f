//! `securityContext` at pod and container level, and Linux capability names.
//!
//! Kubernetes semantics: a container's field overrides the pod's field of the same name. herd
//! departs from Kubernetes in one default: without `allowPrivilegeEscalation: true` a
//! container runs with `no_new_privs` (Kubernetes lets it escalate unless told otherwise).
//! Fields herd does not implement are listed in `manifest` and rejected as "not supported yet".

use serde::{Deserialize, Serialize};

/// `spec.securityContext`: defaults for every container of the pod, plus pod-only fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// Extra groups of every container's first process, on top of the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<i64>,
    /// Added to every container's groups; owns writable volume roots (setgid) and ConfigMap/
    /// Secret files (group-readable), as in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

/// `spec.containers[*].securityContext`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

impl SecurityContext {
    pub fn is_privileged(&self) -> bool {
        self.privileged == Some(true)
    }
}

/// `capabilities.add` / `capabilities.drop`: names with or without `CAP_`, any case; `ALL`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub type_: SeccompProfileType,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompProfileType {
    /// herd's built-in profile (Docker's default list of allowed system calls).
    #[default]
    RuntimeDefault,
    Unconfined,
    /// A profile file on the node: validation reports it as not supported yet.
    Localhost,
}

/// Linux capabilities in kernel order: the index is the capability's number
/// (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE` = 40), without the `CAP_` prefix.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// What one entry of `capabilities.add`/`drop` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityName {
    All,
    /// Canonical name without `CAP_` (an entry of [`CAPABILITIES`]).
    One(&'static str),
}

/// Parses `NET_ADMIN`, `CAP_NET_ADMIN`, `net_admin` or `ALL`; `None` for anything else.
pub fn parse_capability(name: &str) -> Option<CapabilityName> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Some(CapabilityName::All);
    }
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES
        .iter()
        .find(|c| **c == bare)
        .map(|c| CapabilityName::One(c))
}

/// The kernel number of a canonical capability name.
pub fn capability_number(name: &str) -> Option<usize> {
    CAPABILITIES.iter().position(|c| *c == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_parse_with_or_without_prefix_in_any_case() {
        for s in ["NET_ADMIN", "CAP_NET_ADMIN", "net_admin", "Cap_Net_Admin"] {
            assert_eq!(
                parse_capability(s),
                Some(CapabilityName::One("NET_ADMIN")),
                "{s}"
            );
        }
        assert_eq!(parse_capability("all"), Some(CapabilityName::All));
        for bad in ["", "CAP_", "NET-ADMIN", "SYS_ADMINS", "CAP_CAP_CHOWN"] {
            assert_eq!(parse_capability(bad), None, "{bad}");
        }
    }

    #[test]
    fn capability_numbers_follow_the_kernel() {
        assert_eq!(capability_number("CHOWN"), Some(0));
        assert_eq!(capability_number("SYS_ADMIN"), Some(21));
        assert_eq!(capability_number("AUDIT_READ"), Some(37));
        assert_eq!(capability_number("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(capability_number("NOPE"), None);
    }

    #[test]
    fn security_contexts_round_trip_in_kubernetes_shape() {
        let json = r#"{"runAsUser":1000,"runAsNonRoot":true,"readOnlyRootFilesystem":true,
            "allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"],"add":["NET_BIND_SERVICE"]},
            "seccompProfile":{"type":"RuntimeDefault"}}"#;
        let sc: SecurityContext = serde_json::from_str(json).unwrap();
        assert_eq!(sc.run_as_user, Some(1000));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop, ["ALL"]);
        let back: SecurityContext =
            serde_json::from_str(&serde_json::to_string(&sc).unwrap()).unwrap();
        assert_eq!(back, sc);
        let pod: PodSecurityContext =
            serde_json::from_str(r#"{"fsGroup":2000,"supplementalGroups":[5,6]}"#).unwrap();
        assert_eq!(
            (pod.fs_group, pod.supplemental_groups),
            (Some(2000), vec![5, 6])
        );
        assert_eq!(
            serde_json::to_string(&PodSecurityContext::default()).unwrap(),
            "{}"
        );
    }
}
