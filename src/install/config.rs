//! What `herd install` writes besides the binary: the systemd unit of each role (embedded from
//! the repository's `systemd/` so installed units are exactly the reviewed ones) and the
//! environment file the unit reads.

use crate::cli::InstallRole;

use super::InstallError;

/// One role's unit and config file names, and what each may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleFiles {
    pub role: InstallRole,
    /// File name under `/etc/systemd/system`.
    pub unit_name: &'static str,
    pub unit_text: &'static str,
    /// File name under `/etc/herd`.
    pub env_name: &'static str,
    /// 0600 when the file holds a join token.
    pub env_mode: u32,
    /// Directories under `/var/lib/herd` the service writes to.
    pub data_subdirs: &'static [&'static str],
}

pub const MASTER: RoleFiles = RoleFiles {
    role: InstallRole::Master,
    unit_name: "herd-master.service",
    unit_text: include_str!("../../systemd/herd-master.service"),
    env_name: "master.env",
    env_mode: 0o644,
    data_subdirs: &["master"],
};

pub const WORKER: RoleFiles = RoleFiles {
    role: InstallRole::Worker,
    unit_name: "herd-worker.service",
    unit_text: include_str!("../../systemd/herd-worker.service"),
    env_name: "worker.env",
    env_mode: 0o600,
    data_subdirs: &["worker"],
};

pub const UP: RoleFiles = RoleFiles {
    role: InstallRole::Up,
    unit_name: "herd.service",
    unit_text: include_str!("../../systemd/herd.service"),
    env_name: "up.env",
    env_mode: 0o644,
    data_subdirs: &["master", "worker"],
};

pub const ALL: [RoleFiles; 3] = [MASTER, WORKER, UP];

pub fn files_for(role: InstallRole) -> RoleFiles {
    match role {
        InstallRole::Master => MASTER,
        InstallRole::Worker => WORKER,
        InstallRole::Up => UP,
    }
}

/// Roles that cannot share a machine with `role`: `up` already runs a master (same ports) and
/// a worker (same `/var/lib/herd/worker`).
pub fn conflicts(role: InstallRole) -> &'static [RoleFiles] {
    match role {
        InstallRole::Master | InstallRole::Worker => &[UP],
        InstallRole::Up => &[MASTER, WORKER],
    }
}

/// Settings given on the `herd install` command line that go into the environment file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub join: Option<String>,
    pub token: Option<String>,
    pub ca_hash: Option<String>,
    pub node_name: Option<String>,
    pub node_labels: Vec<String>,
}

impl Settings {
    pub fn is_empty(&self) -> bool {
        *self == Settings::default()
    }
}

/// Rejects a flag the role's service would never read, so it is not silently dropped.
fn only_for(
    role: InstallRole,
    flag: &str,
    given: bool,
    allowed: &[InstallRole],
) -> Result<(), InstallError> {
    if given && !allowed.contains(&role) {
        return Err(InstallError::FlagNotForRole {
            flag: flag.to_string(),
            role: role_name(role),
        });
    }
    Ok(())
}

pub fn role_name(role: InstallRole) -> &'static str {
    match role {
        InstallRole::Master => "master",
        InstallRole::Worker => "worker",
        InstallRole::Up => "up",
    }
}

/// Values are written unquoted, so they must not contain anything systemd's environment-file
/// parser treats specially (whitespace, quotes, backslashes, `$`, `#`).
fn plain(field: &str, value: &str) -> Result<(), InstallError> {
    let bad = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"'\\$#`".contains(*c));
    match bad {
        _ if value.is_empty() => Err(InstallError::BadValue {
            field: field.to_string(),
            value: value.to_string(),
            problem: "must not be empty".into(),
        }),
        Some(c) => Err(InstallError::BadValue {
            field: field.to_string(),
            value: value.to_string(),
            problem: format!("must not contain {c:?}"),
        }),
        None => Ok(()),
    }
}

/// Checks `s` for `role` the way the service will read it.
pub fn validate(role: InstallRole, s: &Settings) -> Result<(), InstallError> {
    use InstallRole::*;
    only_for(role, "--join", s.join.is_some(), &[Worker])?;
    only_for(role, "--token", s.token.is_some(), &[Worker])?;
    only_for(role, "--ca-hash", s.ca_hash.is_some(), &[Worker])?;
    if let Some(h) = &s.ca_hash {
        crate::pki::parse_ca_hash(h).map_err(|e| InstallError::BadValue {
            field: "--ca-hash".into(),
            value: h.clone(),
            problem: e.to_string(),
        })?;
    }
    only_for(role, "--node-name", s.node_name.is_some(), &[Worker, Up])?;
    only_for(role, "--node-label", !s.node_labels.is_empty(), &[Worker])?;
    if role == Worker && !s.is_empty() && (s.join.is_none() || s.token.is_none()) {
        return Err(InstallError::JoinSettings);
    }
    if let Some(j) = &s.join {
        plain("--join", j)?;
        if !(j.starts_with("http://") || j.starts_with("https://")) {
            return Err(InstallError::BadValue {
                field: "--join".into(),
                value: j.clone(),
                problem: "must be the master's http:// or https:// URL".into(),
            });
        }
    }
    if let Some(t) = &s.token {
        plain("--token", t)?;
    }
    if let Some(n) = &s.node_name {
        crate::api::validate::validate_dns1123_subdomain(n).map_err(|problem| {
            InstallError::BadValue {
                field: "--node-name".into(),
                value: n.clone(),
                problem,
            }
        })?;
    }
    crate::worker::parse_labels(&s.node_labels).map_err(|e| InstallError::BadValue {
        field: "--node-label".into(),
        value: s.node_labels.join(","),
        problem: e.to_string(),
    })?;
    Ok(())
}

/// The environment file for `role` with `s` filled in (systemd `EnvironmentFile=` syntax).
/// Deterministic, so a second install with the same flags writes nothing. `s` must have passed
/// [`validate`].
pub fn render_env(role: InstallRole, s: &Settings) -> String {
    let mut out = String::new();
    let opt = |out: &mut String, key: &str, value: Option<&str>, default: &str| match value {
        Some(v) => out.push_str(&format!("{key}={v}\n")),
        None => out.push_str(&format!("#{key}=  ({default})\n")),
    };
    match role {
        InstallRole::Master => {
            out.push_str("# herd master settings for herd-master.service, written by `herd install master`.\n");
            out.push_str("# Extra `herd master` flags, e.g. --advertise-address 192.168.1.10 --api-addr 0.0.0.0:6443\n");
            out.push_str("HERD_MASTER_ARGS=\n");
        }
        InstallRole::Worker => {
            out.push_str("# herd worker settings for herd-worker.service, written by `herd install worker`.\n");
            out.push_str("# Holds the join token: keep it readable by root only (0600).\n");
            opt(&mut out, "HERD_JOIN", s.join.as_deref(), "the master's URL");
            opt(&mut out, "HERD_TOKEN", s.token.as_deref(), "a join token");
            opt(
                &mut out,
                "HERD_CA_HASH",
                s.ca_hash.as_deref(),
                "the cluster CA's sha256, needed for an https master",
            );
            opt(
                &mut out,
                "HERD_NODE_NAME",
                s.node_name.as_deref(),
                "default: the hostname",
            );
            let labels = (!s.node_labels.is_empty()).then(|| s.node_labels.join(","));
            opt(
                &mut out,
                "HERD_NODE_LABELS",
                labels.as_deref(),
                "comma-separated KEY=VALUE list",
            );
            out.push_str("#HERD_DATA_DIR=/var/lib/herd/worker\n");
            out.push_str("# Extra `herd worker` flags, e.g. --heartbeat-seconds 10\n");
            out.push_str("HERD_WORKER_ARGS=\n");
        }
        InstallRole::Up => {
            out.push_str("# herd up settings for herd.service, written by `herd install up`.\n");
            opt(
                &mut out,
                "HERD_NODE_NAME",
                s.node_name.as_deref(),
                "default: the hostname",
            );
            out.push_str("# Extra `herd up` flags, e.g. --advertise-address 192.168.1.10, or\n");
            out.push_str("# --leave-running to keep pods running while herd restarts\n");
            out.push_str("HERD_UP_ARGS=\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(join: &str, token: &str) -> Settings {
        Settings {
            join: Some(join.into()),
            token: Some(token.into()),
            ..Settings::default()
        }
    }

    #[test]
    fn embedded_units_delegate_and_keep_containers_on_restart() {
        for f in [WORKER, UP] {
            assert!(f.unit_text.contains("\nDelegate=yes\n"), "{}", f.unit_name);
            assert!(
                f.unit_text.contains("\nKillMode=process\n"),
                "{}",
                f.unit_name
            );
            assert!(
                f.unit_text.contains("\nOOMScoreAdjust=-900\n"),
                "{}",
                f.unit_name
            );
            assert!(f
                .unit_text
                .contains(&format!("EnvironmentFile=-/etc/herd/{}", f.env_name)));
        }
        assert!(MASTER
            .unit_text
            .contains("EnvironmentFile=-/etc/herd/master.env"));
        for f in ALL {
            assert!(f.unit_text.contains("ExecStart=/usr/local/bin/herd "));
            assert!(
                f.unit_text.contains("RestartPreventExitStatus=78")
                    || f.role == InstallRole::Master
            );
        }
    }

    #[test]
    fn worker_env_file_carries_join_settings_and_labels() {
        let s = Settings {
            node_name: Some("w1".into()),
            node_labels: vec!["zone=attic".into(), "disk=ssd".into()],
            ..worker("http://10.0.0.1:6443", "abc.def")
        };
        validate(InstallRole::Worker, &s).unwrap();
        let text = render_env(InstallRole::Worker, &s);
        assert!(text.contains("\nHERD_JOIN=http://10.0.0.1:6443\n"));
        assert!(text.contains("\nHERD_TOKEN=abc.def\n"));
        assert!(text.contains("\nHERD_NODE_NAME=w1\n"));
        assert!(text.contains("\nHERD_NODE_LABELS=zone=attic,disk=ssd\n"));
        assert_eq!(text, render_env(InstallRole::Worker, &s));
    }

    #[test]
    fn a_worker_needs_both_join_and_token_once_any_setting_is_given() {
        let s = Settings {
            join: Some("http://m:6443".into()),
            ..Settings::default()
        };
        assert!(matches!(
            validate(InstallRole::Worker, &s),
            Err(InstallError::JoinSettings)
        ));
        assert!(validate(InstallRole::Worker, &Settings::default()).is_ok());
    }

    #[test]
    fn values_that_systemd_would_mangle_are_refused_with_the_flag_named() {
        let e = validate(InstallRole::Worker, &worker("http://m:6443", "a b")).unwrap_err();
        assert!(e.to_string().contains("--token"), "{e}");
        let e = validate(InstallRole::Worker, &worker("m:6443", "t")).unwrap_err();
        assert!(e.to_string().contains("--join"), "{e}");
        let mut s = worker("http://m:6443", "t");
        s.node_name = Some("Not_A_Name".into());
        assert!(validate(InstallRole::Worker, &s).is_err());
    }

    #[test]
    fn join_flags_are_refused_for_a_master() {
        let e = validate(InstallRole::Master, &worker("http://m:6443", "t")).unwrap_err();
        assert!(e.to_string().contains("--join"), "{e}");
        let up = Settings {
            node_name: Some("pi1".into()),
            ..Settings::default()
        };
        assert!(validate(InstallRole::Up, &up).is_ok());
        assert!(render_env(InstallRole::Up, &up).contains("\nHERD_NODE_NAME=pi1\n"));
    }
}
