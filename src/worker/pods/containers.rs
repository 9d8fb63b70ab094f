//! Pure: what to run for one container of a pod, from the pod spec and the image config,
//! with Kubernetes' merge rules.

use std::collections::BTreeMap;

use crate::api::quantity::{parse_bytes, parse_cpu_millis};
use crate::api::Container;
use crate::worker::images::ImageConfig;
use crate::worker::runtime::Resources;

/// CFS period: the kernel default, as the kubelet uses.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Fork-bomb guard for every container; generous for normal apps.
pub const PIDS_LIMIT: i64 = 4096;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("container {container}: {field}: {message}")]
pub struct SpecError {
    pub container: String,
    pub field: &'static str,
    pub message: String,
}

/// argv: `command` replaces the image ENTRYPOINT (and drops its CMD); `args` replaces CMD.
pub fn argv(c: &Container, img: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let argv: Vec<String> = match (c.command.is_empty(), c.args.is_empty()) {
        (false, _) => c.command.iter().chain(c.args.iter()).cloned().collect(),
        (true, false) => img
            .entrypoint
            .iter()
            .chain(c.args.iter())
            .cloned()
            .collect(),
        (true, true) => img
            .entrypoint
            .iter()
            .chain(img.cmd.iter())
            .cloned()
            .collect(),
    };
    if argv.is_empty() {
        return Err(SpecError {
            container: c.name.clone(),
            field: "command",
            message: "neither the pod nor the image says what to run".into(),
        });
    }
    Ok(argv)
}

/// Image env first, pod env overriding by name; `$(VAR)` references to earlier pod vars
/// expanded as Kubernetes does, `$$` escaping a literal `$`.
pub fn env(c: &Container, img: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |k: String, v: String, vars: &mut BTreeMap<String, String>| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for kv in &img.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        set(k.to_string(), v.to_string(), &mut vars);
    }
    if !vars.contains_key("PATH") {
        set(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            &mut vars,
        );
    }
    set("HOSTNAME".into(), hostname.to_string(), &mut vars);
    for e in &c.env {
        let v = expand(&e.value, &vars);
        set(e.name.clone(), v, &mut vars);
    }
    order
        .iter()
        .map(|k| format!("{k}={}", vars.get(k).map(String::as_str).unwrap_or("")))
        .collect()
}

/// Kubernetes' `$(VAR)` expansion: unknown references stay as written.
fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(j) => {
                    let name = &r[..j];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &r[j + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = r;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

pub fn cwd(c: &Container, img: &ImageConfig) -> String {
    c.working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(img.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into())
}

/// cgroup settings: memory and cpu limits as hard limits, cpu request as shares (kubelet's
/// formula: millicores × 1024 / 1000, at least 2).
pub fn resources(c: &Container) -> Result<Resources, SpecError> {
    let err = |field: &'static str, e: String| SpecError {
        container: c.name.clone(),
        field,
        message: e,
    };
    let lim = &c.resources.limits;
    let req = &c.resources.requests;
    let memory_limit_bytes = lim
        .get("memory")
        .map(|q| parse_bytes(q).map_err(|e| err("resources.limits.memory", e.to_string())))
        .transpose()?
        .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    let cpu_limit = lim
        .get("cpu")
        .map(|q| parse_cpu_millis(q).map_err(|e| err("resources.limits.cpu", e.to_string())))
        .transpose()?;
    let cpu_request = req
        .get("cpu")
        .map(|q| parse_cpu_millis(q).map_err(|e| err("resources.requests.cpu", e.to_string())))
        .transpose()?
        .or(cpu_limit);
    Ok(Resources {
        memory_limit_bytes,
        cpu_quota_us: cpu_limit.map(|m| {
            let q = (m as i64).saturating_mul(CPU_PERIOD_US as i64) / 1000;
            q.max(1000)
        }),
        cpu_period_us: cpu_limit.map(|_| CPU_PERIOD_US),
        cpu_shares: cpu_request.map(|m| (m.saturating_mul(1024) / 1000).max(2)),
        pids_limit: Some(PIDS_LIMIT),
        oom_score_adj: Some(oom_score_adj(c)),
    })
}

/// Kubernetes' QoS classes, per container: no requests or limits (BestEffort) is killed
/// first; cpu and memory limits with requests equal to them (Guaranteed) last; anything else
/// (Burstable) in between.
pub fn oom_score_adj(c: &Container) -> i32 {
    let (req, lim) = (&c.resources.requests, &c.resources.limits);
    if req.is_empty() && lim.is_empty() {
        return 1000;
    }
    let guaranteed = ["cpu", "memory"]
        .iter()
        .all(|k| lim.contains_key(*k) && req.get(*k).is_none_or(|r| Some(r) == lim.get(*k)));
    if guaranteed {
        -997
    } else {
        500
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::EnvVar;

    fn img() -> ImageConfig {
        ImageConfig {
            env: vec!["PATH=/bin".into(), "A=image".into()],
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default-arg".into()],
            working_dir: "/app".into(),
            user: String::new(),
        }
    }

    fn ctr() -> Container {
        Container {
            name: "main".into(),
            image: "x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn argv_follows_kubernetes_command_and_args_rules() {
        let mut c = ctr();
        assert_eq!(argv(&c, &img()).unwrap(), ["/entry", "default-arg"]);
        c.args = vec!["mine".into()];
        assert_eq!(argv(&c, &img()).unwrap(), ["/entry", "mine"]);
        c.command = vec!["sh".into(), "-c".into()];
        assert_eq!(argv(&c, &img()).unwrap(), ["sh", "-c", "mine"]);
        c.args.clear();
        assert_eq!(argv(&c, &img()).unwrap(), ["sh", "-c"]);
    }

    #[test]
    fn nothing_to_run_is_an_error_naming_the_container() {
        let e = argv(&ctr(), &ImageConfig::default()).unwrap_err();
        assert_eq!(e.container, "main");
        assert_eq!(e.field, "command");
    }

    #[test]
    fn pod_env_overrides_image_env_and_expands_references() {
        let mut c = ctr();
        c.env = vec![
            EnvVar {
                name: "A".into(),
                value: "pod".into(),
            },
            EnvVar {
                name: "B".into(),
                value: "$(A)-$(NOPE)-$$(A)".into(),
            },
        ];
        let e = env(&c, &img(), "web");
        assert_eq!(
            e,
            ["PATH=/bin", "A=pod", "HOSTNAME=web", "B=pod-$(NOPE)-$(A)"]
        );
    }

    #[test]
    fn working_dir_prefers_pod_then_image_then_root() {
        let mut c = ctr();
        assert_eq!(cwd(&c, &img()), "/app");
        c.working_dir = Some("/srv".into());
        assert_eq!(cwd(&c, &img()), "/srv");
        assert_eq!(cwd(&ctr(), &ImageConfig::default()), "/");
    }

    #[test]
    fn qos_classes_set_the_oom_score() {
        let mut c = ctr();
        assert_eq!(oom_score_adj(&c), 1000);
        c.resources.requests.insert("memory".into(), "16Mi".into());
        assert_eq!(oom_score_adj(&c), 500);
        c.resources.requests.clear();
        c.resources.limits.insert("memory".into(), "16Mi".into());
        c.resources.limits.insert("cpu".into(), "1".into());
        assert_eq!(oom_score_adj(&c), -997);
    }

    #[test]
    fn limits_become_cgroup_settings() {
        let mut c = ctr();
        c.resources.limits.insert("memory".into(), "64Mi".into());
        c.resources.limits.insert("cpu".into(), "500m".into());
        c.resources.requests.insert("cpu".into(), "250m".into());
        let r = resources(&c).unwrap();
        assert_eq!(r.memory_limit_bytes, Some(64 << 20));
        assert_eq!(r.cpu_quota_us, Some(50_000));
        assert_eq!(r.cpu_period_us, Some(100_000));
        assert_eq!(r.cpu_shares, Some(256));
        c.resources.limits.insert("memory".into(), "lots".into());
        assert_eq!(resources(&c).unwrap_err().field, "resources.limits.memory");
    }
}
