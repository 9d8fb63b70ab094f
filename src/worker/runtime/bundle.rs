//! OCI bundle generation: `ContainerConfig` → `oci_spec::runtime::Spec`.
//!
//! Pure except for [`read_user_db`], which reads the image's `/etc/passwd` and `/etc/group`
//! confined to the rootfs (a hostile image must not make the worker read host files through
//! symlinks).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNamespace, LinuxNamespaceType,
    LinuxPids, LinuxResources, Mount, PosixRlimitBuilder, PosixRlimitType, Root, Spec, User,
};

use super::seccomp::Host;
use super::{security, ContainerConfig};

/// PATH used when the image config does not set one (libcontainer refuses to exec without it).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("container {id}: user {user:?}: {reason}")]
    User {
        id: String,
        user: String,
        reason: String,
    },
    #[error("container {id}: {path}: {source}")]
    Io {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: empty args")]
    NoArgs { id: String },
    #[error("container {id}: building spec: {message}")]
    Spec { id: String, message: String },
}

/// The uid/gid set a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?,
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?,
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves an image `User` string against passwd/group contents (either may be empty when
/// the image has no such file). Semantics follow Docker: a numeric uid needs no passwd entry;
/// a name must exist; supplementary groups come from /etc/group membership only when no group
/// was given explicitly.
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<ResolvedUser, String> {
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let (uid, mut gid, name) = match user_part.parse::<u32>() {
        Ok(uid) => match users.iter().find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name)),
            None => (uid, 0, None),
        },
        Err(_) => match users.iter().find(|e| e.name == user_part) {
            Some(e) => (e.uid, e.gid, Some(e.name)),
            None => return Err(format!("no user {user_part:?} in /etc/passwd")),
        },
    };

    let mut additional_gids = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => match groups.iter().find(|e| e.name == g) {
                    Some(e) => e.gid,
                    None => return Err(format!("no group {g:?} in /etc/group")),
                },
            };
        }
        Some(_) => return Err("empty group after ':'".to_owned()),
        None => {
            if let Some(name) = name {
                for g in groups.iter().filter(|g| g.members.contains(&name)) {
                    if g.gid != gid && !additional_gids.contains(&g.gid) {
                        additional_gids.push(g.gid);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// Reads `path` (absolute inside the container, e.g. `/etc/passwd`) with every path component
/// resolved inside `rootfs` (`openat2` + `RESOLVE_IN_ROOT`): symlinks in the image cannot
/// point the worker at host files. A missing file reads as empty.
pub fn read_in_root(rootfs: &Path, path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let root = std::fs::File::open(rootfs)?;
    let cpath = std::ffi::CString::new(path)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 reads `how` (size passed) and the NUL-terminated path; both outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            cpath.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::NotFound {
            return Ok(String::new());
        }
        return Err(err);
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    let mut text = String::new();
    // /etc/passwd is small; cap the read so a huge file cannot balloon the shim.
    file.by_ref().take(4 << 20).read_to_string(&mut text)?;
    Ok(text)
}

/// Reads passwd/group from the rootfs and resolves `cfg.user`.
pub fn user_for(cfg: &ContainerConfig) -> Result<ResolvedUser, BundleError> {
    let read = |p: &str| {
        read_in_root(&cfg.rootfs, p).map_err(|source| BundleError::Io {
            id: cfg.id.clone(),
            path: cfg.rootfs.join(p.trim_start_matches('/')),
            source,
        })
    };
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    resolve_user(&cfg.user, &passwd, &group).map_err(|reason| BundleError::User {
        id: cfg.id.clone(),
        user: cfg.user.clone(),
        reason,
    })
}

fn resources(cfg: &ContainerConfig) -> LinuxResources {
    let r = &cfg.resources;
    let mut res = LinuxResources::default();
    // Deny every device first, as Docker does: libcgroups then appends its default allow list
    // (null, zero, full, tty, urandom, random, pts, …). Without the deny, v1 inherits "a *:* rwm".
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all
        .set_allow(false)
        .set_typ(Some(LinuxDeviceType::A))
        .set_access(Some("rwm".to_owned()));
    res.set_devices(Some(vec![deny_all]));
    if let Some(limit) = r.memory_limit_bytes {
        let mut m = LinuxMemory::default();
        // swap = limit: no swap on top of the limit (k8s semantics).
        m.set_limit(Some(limit)).set_swap(Some(limit));
        res.set_memory(Some(m));
    }
    if r.cpu_quota_us.is_some() || r.cpu_period_us.is_some() || r.cpu_shares.is_some() {
        let mut c = LinuxCpu::default();
        c.set_quota(r.cpu_quota_us)
            .set_period(r.cpu_period_us)
            .set_shares(r.cpu_shares);
        res.set_cpu(Some(c));
    }
    if let Some(limit) = r.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        res.set_pids(Some(p));
    }
    res
}

fn mounts(volumes: &[super::BindMount]) -> Vec<Mount> {
    // oci_spec's defaults are runc's: proc, /dev tmpfs, devpts, shm, mqueue, sysfs ro, cgroup ro.
    let mut out = oci_spec::runtime::get_default_mounts();
    // Pod volumes after the defaults, so a volume may be mounted over a default one. rprivate:
    // nothing mounted in the container propagates back to the host. nosuid/nodev: a volume
    // is data, never a way to gain privileges.
    for v in volumes {
        let mut options: Vec<String> = ["rbind", "rprivate", "nosuid", "nodev"]
            .map(str::to_owned)
            .to_vec();
        if v.read_only {
            options.push("ro".to_owned());
        }
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(&v.destination))
            .set_typ(Some("bind".to_owned()))
            .set_source(Some(v.source.clone()))
            .set_options(Some(options));
        out.push(m);
    }
    out
}

/// The container's namespaces: pid, mount and cgroup of its own; network, IPC and UTS
/// joined from the pod's sandbox where it has them (shared with the pod's other containers),
/// the node's network and UTS for `hostNetwork`.
fn namespaces(sb: &super::PodSandbox) -> Vec<LinuxNamespace> {
    let ns = |t: LinuxNamespaceType, path: Option<&PathBuf>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(t).set_path(path.cloned());
        n
    };
    let mut v = vec![
        ns(LinuxNamespaceType::Pid, None),
        ns(LinuxNamespaceType::Mount, None),
        ns(LinuxNamespaceType::Ipc, sb.ipc.as_ref()),
    ];
    if !sb.host_network {
        v.push(ns(LinuxNamespaceType::Uts, sb.uts.as_ref()));
        v.push(ns(LinuxNamespaceType::Network, sb.net.as_ref()));
    }
    v.push(ns(LinuxNamespaceType::Cgroup, None));
    v
}

/// For containers with no QoS-derived score: between the protected agent (-900) and the
/// kernel default, so a runaway pod goes before the OS but after best-effort ones.
pub const DEFAULT_OOM_SCORE_ADJ: i32 = 0;

/// Builds the spec for `cfg` with an already resolved user, for a worker on `host`. Pure.
pub fn spec_for(
    cfg: &ContainerConfig,
    user: &ResolvedUser,
    host: Host<'_>,
) -> Result<Spec, BundleError> {
    if cfg.args.is_empty() {
        return Err(BundleError::NoArgs { id: cfg.id.clone() });
    }
    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_owned());
    // In the node's UTS namespace (hostNetwork) a hostname would rename the node.
    spec.set_hostname((!cfg.sandbox.host_network).then(|| {
        if cfg.hostname.is_empty() {
            cfg.id.clone()
        } else {
            cfg.hostname.clone()
        }
    }));
    spec.set_annotations(Some(HashMap::new()));
    let mut all_mounts = mounts(&cfg.mounts);
    for (source, dest) in &cfg.sandbox.files {
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(dest))
            .set_typ(Some("bind".to_owned()))
            .set_source(Some(source.clone()))
            .set_options(Some(vec!["rbind".to_owned(), "ro".to_owned()]));
        all_mounts.push(m);
    }
    spec.set_mounts(Some(all_mounts));

    let mut root = Root::default();
    root.set_path(cfg.rootfs.clone()).set_readonly(Some(false));
    spec.set_root(Some(root));

    let mut env = cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!(
            "HOSTNAME={}",
            spec.hostname().as_deref().unwrap_or_default()
        ));
    }
    let mut process = spec.process().clone().unwrap_or_default();
    let mut gids = user.additional_gids.clone();
    for g in &cfg.security.supplemental_groups {
        if *g != user.gid && !gids.contains(g) {
            gids.push(*g);
        }
    }
    let mut u = User::default();
    u.set_uid(user.uid)
        .set_gid(user.gid)
        .set_additional_gids((!gids.is_empty()).then_some(gids));
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(1024u64)
        .hard(1024u64)
        .build()
        .map_err(|e| BundleError::Spec {
            id: cfg.id.clone(),
            message: e.to_string(),
        })?;
    process
        .set_terminal(Some(false))
        .set_args(Some(cfg.args.clone()))
        .set_env(Some(env))
        .set_cwd(if cfg.cwd.is_empty() {
            PathBuf::from("/")
        } else {
            PathBuf::from(&cfg.cwd)
        })
        .set_user(u)
        .set_rlimits(Some(vec![nofile]))
        .set_oom_score_adj(Some(
            cfg.resources.oom_score_adj.unwrap_or(DEFAULT_OOM_SCORE_ADJ),
        ));
    spec.set_process(Some(process));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let namespaces = namespaces(&cfg.sandbox);
    let mut masked = oci_spec::runtime::get_default_maskedpaths();
    masked.extend(
        [
            "/proc/interrupts",
            "/proc/sys/firmware",
            "/sys/devices/virtual/powercap",
        ]
        .map(str::to_owned),
    );
    linux
        .set_namespaces(Some(namespaces))
        .set_cgroups_path(Some(PathBuf::from(&cfg.cgroup_path)))
        .set_resources(Some(resources(cfg)))
        .set_masked_paths(Some(masked))
        .set_readonly_paths(Some(oci_spec::runtime::get_default_readonly_paths()));
    spec.set_linux(Some(linux));
    // Capabilities, no_new_privs, seccomp, read-only root, privileged mode.
    security::apply(&mut spec, &cfg.security, host);
    Ok(spec)
}

/// Resolves the user and builds the spec for this machine (reads the rootfs' passwd/group).
pub fn build_spec(cfg: &ContainerConfig) -> Result<Spec, BundleError> {
    let user = user_for(cfg)?;
    spec_for(cfg, &user, Host::current())
}

/// Drops the swap limit on a cgroup v1 host without swap accounting, where libcgroups would
/// fail writing `memory.memsw.limit_in_bytes`; there the memory limit alone applies.
fn fit_to_host(spec: &mut Spec) {
    let v1_no_memsw = !super::cgroups::is_unified()
        && !Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    if !v1_no_memsw {
        return;
    }
    if let Some(linux) = spec.linux_mut() {
        if let Some(res) = linux.resources_mut() {
            if let Some(mem) = res.memory_mut() {
                mem.set_swap(None);
            }
        }
    }
}

/// Writes `<bundle_dir>/config.json` for `cfg`.
pub fn write_bundle(cfg: &ContainerConfig) -> Result<Spec, BundleError> {
    let mut spec = build_spec(cfg)?;
    fit_to_host(&mut spec);
    security::fit_to_host(&mut spec, &cfg.security);
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| BundleError::Spec {
        id: cfg.id.clone(),
        message: e.to_string(),
    })?;
    let path = cfg.bundle_dir.join("config.json");
    // Regenerated on every start: no fsync needed.
    crate::util::fsutil::write_replace(&path, &json, 0o600).map_err(|source| BundleError::Io {
        id: cfg.id.clone(),
        path,
        source,
    })?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::runtime::{Resources, Security};
    use oci_spec::runtime::{Capability, LinuxSeccompAction};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1::/:/bin/false\n\
        # comment\n\
        web:x:1000:1000::/home/web:/bin/sh\n\
        broken-line\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,web\nweb:x:1000:\naudio:x:29:web\n";

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            id: "abc-web-0".into(),
            bundle_dir: "/b".into(),
            rootfs: "/b/rootfs".into(),
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            cwd: "".into(),
            user: "".into(),
            hostname: "web".into(),
            resources: Resources {
                memory_limit_bytes: Some(64 << 20),
                cpu_quota_us: Some(50_000),
                cpu_period_us: Some(100_000),
                cpu_shares: Some(512),
                pids_limit: Some(100),
                oom_score_adj: None,
            },
            cgroup_path: "/herd/pod1/abc-web-0".into(),
            log_path: "/b/log".into(),
            log_max_bytes: 1 << 20,
            security: Default::default(),
            mounts: vec![],
            sandbox: Default::default(),
        }
    }

    #[test]
    fn volumes_are_bind_mounted_after_the_defaults_read_only_when_asked() {
        let mut c = cfg();
        c.mounts = vec![
            crate::worker::runtime::BindMount {
                source: "/data/v/pods/u/scratch".into(),
                destination: "/scratch".into(),
                read_only: false,
            },
            crate::worker::runtime::BindMount {
                source: "/data/v/pods/u/cfg".into(),
                destination: "/etc/app".into(),
                read_only: true,
            },
        ];
        let spec = spec_for(&c, &ResolvedUser::default(), HOST).unwrap();
        let mounts = spec.mounts().clone().unwrap();
        let n = mounts.len();
        let (rw, ro) = (&mounts[n - 2], &mounts[n - 1]);
        assert_eq!(rw.destination(), Path::new("/scratch"));
        assert_eq!(rw.typ().as_deref(), Some("bind"));
        assert_eq!(
            rw.source().as_deref(),
            Some(Path::new("/data/v/pods/u/scratch"))
        );
        let opts = |m: &Mount| m.options().clone().unwrap_or_default();
        assert!(opts(rw).contains(&"rbind".to_string()));
        assert!(!opts(rw).contains(&"ro".to_string()));
        assert!(opts(ro).contains(&"ro".to_string()));
        assert_eq!(ro.destination(), Path::new("/etc/app"));
    }

    #[test]
    fn containers_join_the_pod_sandbox_and_get_its_files() {
        let mut c = cfg();
        c.sandbox = crate::worker::runtime::PodSandbox {
            net: Some("/d/sb/u/net".into()),
            host_network: false,
            ipc: Some("/d/sb/u/ipc".into()),
            uts: Some("/d/sb/u/uts".into()),
            files: vec![("/d/sb/u/hosts".into(), "/etc/hosts".into())],
        };
        let spec = spec_for(&c, &ResolvedUser::default(), HOST).unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let path = |t| {
            ns.iter()
                .find(|n| n.typ() == t)
                .and_then(|n| n.path().clone())
        };
        assert_eq!(
            path(LinuxNamespaceType::Network),
            Some("/d/sb/u/net".into())
        );
        assert_eq!(path(LinuxNamespaceType::Ipc), Some("/d/sb/u/ipc".into()));
        assert_eq!(path(LinuxNamespaceType::Uts), Some("/d/sb/u/uts".into()));
        assert_eq!(path(LinuxNamespaceType::Pid), None);
        let m = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/etc/hosts"))
            .unwrap();
        assert_eq!(m.source().as_deref(), Some(Path::new("/d/sb/u/hosts")));
        assert!(m.options().as_ref().unwrap().contains(&"ro".to_string()));
        // hostNetwork: no network or UTS namespace entry, and no hostname to set.
        c.sandbox.host_network = true;
        let spec = spec_for(&c, &ResolvedUser::default(), HOST).unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
        assert_eq!(spec.hostname(), &None);
    }

    const HOST: Host<'static> = Host {
        arch: "x86_64",
        kernel: (6, 1),
    };

    #[test]
    fn empty_user_is_root_with_its_groups() {
        let u = resolve_user("", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (0, 0, vec![10]));
    }

    #[test]
    fn name_resolves_uid_gid_and_supplementary_groups() {
        let u = resolve_user("web", PASSWD, GROUP).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids),
            (1000, 1000, vec![10, 29])
        );
    }

    #[test]
    fn numeric_uid_without_passwd_entry_runs_with_gid_zero() {
        let u = resolve_user("4242", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        let u = resolve_user("4242:77", "", "").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (4242, 77, 0));
    }

    #[test]
    fn name_and_group_name_resolve_without_supplementary_groups() {
        let u = resolve_user("web:audio", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 29, 0));
        let u = resolve_user("1:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1, 10));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(resolve_user("nobody", PASSWD, GROUP).is_err());
        assert!(resolve_user("web:nogroup", PASSWD, GROUP).is_err());
        assert!(resolve_user("web:", PASSWD, GROUP).is_err());
    }

    #[test]
    fn spec_carries_process_namespaces_and_resources() {
        let c = cfg();
        let spec = spec_for(&c, &ResolvedUser::default(), HOST).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &c.args);
        let env = p.env().as_ref().unwrap();
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        assert!(env.contains(&"A=1".to_owned()));
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!(p.no_new_privileges(), Some(true));
        let caps = p.capabilities().as_ref().unwrap();
        assert!(!caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        assert!(caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::Chown));
        assert_eq!(spec.hostname().as_deref(), Some("web"));

        let linux = spec.linux().as_ref().unwrap();
        let ns: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        for t in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
        ] {
            assert!(ns.contains(&t), "{t:?}");
        }
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/herd/pod1/abc-web-0"))
        );
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        let cpu = res.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.quota(), cpu.period(), cpu.shares()),
            (Some(50_000), Some(100_000), Some(512))
        );
        assert_eq!(res.pids().as_ref().unwrap().limit(), 100);
        assert!(!res.devices().as_ref().unwrap()[0].allow());
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_owned()));
        let mounts: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
        ] {
            assert!(mounts.contains(&PathBuf::from(d)), "{d}");
        }
        // Round-trips as the JSON libcontainer will load.
        let json = serde_json::to_string(&spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn empty_args_are_rejected() {
        let mut c = cfg();
        c.args.clear();
        assert!(matches!(
            spec_for(&c, &ResolvedUser::default(), HOST),
            Err(BundleError::NoArgs { .. })
        ));
    }

    #[test]
    fn passwd_symlink_cannot_escape_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let outside = dir.path().join("secret");
        std::fs::write(&outside, "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/passwd")).unwrap();
        // The absolute symlink target is re-rooted inside the rootfs, where it does not exist.
        assert_eq!(read_in_root(&root, "/etc/passwd").unwrap(), "");
        std::fs::write(root.join("etc/group"), "g:x:5:\n").unwrap();
        assert_eq!(read_in_root(&root, "/etc/group").unwrap(), "g:x:5:\n");
    }

    #[test]
    fn the_default_container_is_hardened() {
        let spec = spec_for(&cfg(), &ResolvedUser::default(), HOST).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), Some(true));
        let bounding = p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert_eq!(bounding.len(), 14);
        let linux = spec.linux().as_ref().unwrap();
        let filter = linux.seccomp().as_ref().expect("default seccomp profile");
        assert_eq!(filter.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert!(linux.masked_paths().as_ref().unwrap().len() > 5);
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_owned()));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
        assert!(linux.devices().is_none());
        let sys = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_owned()));
    }

    #[test]
    fn security_settings_reach_the_spec() {
        let mut c = cfg();
        c.security = Security {
            read_only_rootfs: true,
            allow_privilege_escalation: true,
            capabilities_drop: vec!["ALL".into()],
            capabilities_add: vec!["NET_BIND_SERVICE".into()],
            supplemental_groups: vec![2000, 7, 2000],
            ..Default::default()
        };
        let user = ResolvedUser {
            uid: 1000,
            gid: 7,
            additional_gids: vec![10],
        };
        let spec = spec_for(&c, &user, HOST).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), None);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[10, 2000][..]));
        let caps = p.capabilities().as_ref().unwrap();
        assert_eq!(
            caps.effective()
                .as_ref()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            [&Capability::NetBindService]
        );
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert!(spec.linux().as_ref().unwrap().seccomp().is_some());

        c.security.seccomp_unconfined = true;
        let spec = spec_for(&c, &user, HOST).unwrap();
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    }

    #[test]
    fn privileged_lifts_the_confinement_but_keeps_namespaces() {
        let mut c = cfg();
        c.security.privileged = true;
        let spec = spec_for(&c, &ResolvedUser::default(), HOST).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), None);
        let bounding = p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert!(bounding.contains(&Capability::SysAdmin) && bounding.len() == 41);
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
        assert_eq!(linux.readonly_paths().as_deref(), Some(&[][..]));
        let devices = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        assert!(devices[0].allow() && devices[0].typ() == Some(LinuxDeviceType::A));
        for m in spec.mounts().as_ref().unwrap() {
            if m.destination().starts_with("/sys") {
                assert!(!m.options().as_ref().unwrap().contains(&"ro".to_owned()));
            }
        }
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 6);
    }
}
