//! How a [`Security`] setting shapes the OCI spec: capability sets, `no_new_privs`, the
//! seccomp filter, a read-only root, and privileged mode. [`apply`] is pure; [`host_devices`]
//! and [`held_capabilities`] read the machine and run in the shim, next to the container.
//!
//! Privileged mode is opt-in and, like Docker's `--privileged`, removes the confinement: every
//! capability, no seccomp filter, nothing masked, /sys and the cgroup tree writable, the
//! host's device nodes present and usable. Namespaces and cgroup limits stay.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType,
    Spec,
};

use super::seccomp::{self, Host};
use super::Security;
use crate::api::security::{capability_number, CAPABILITIES};

/// Docker's default capability set: enough for ordinary images (chown files, bind low ports,
/// drop to another user), nothing that reaches the host (no SYS_ADMIN, NET_ADMIN, SYS_MODULE…).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Device nodes a container always gets (libcontainer creates them): everything else under
/// /dev is the host's and appears only in a privileged container.
pub const DEFAULT_DEVICES: [&str; 7] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
];

fn canonical(name: &str) -> Option<&'static str> {
    match crate::api::security::parse_capability(name)? {
        crate::api::security::CapabilityName::One(c) => Some(c),
        crate::api::security::CapabilityName::All => None,
    }
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// The container's capability set (canonical names without `CAP_`). Privileged: all. Else
/// Docker's default with containerd's order of edits: `add: [ALL]`, then `drop: [ALL]`, then
/// the named additions, then the named drops (so `drop: [ALL]` + `add: [NET_BIND_SERVICE]`
/// leaves exactly that one). Names that do not parse were refused by validation; skipped here.
pub fn capability_set(sec: &Security) -> BTreeSet<String> {
    let all = || CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if sec.privileged {
        return all();
    }
    let mut set: BTreeSet<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if sec.capabilities_add.iter().any(|c| is_all(c)) {
        set = all();
    }
    if sec.capabilities_drop.iter().any(|c| is_all(c)) {
        set.clear();
    }
    set.extend(
        sec.capabilities_add
            .iter()
            .filter_map(|c| canonical(c))
            .map(str::to_owned),
    );
    for c in sec.capabilities_drop.iter().filter_map(|c| canonical(c)) {
        set.remove(c);
    }
    set
}

fn to_oci(set: &BTreeSet<String>) -> Capabilities {
    set.iter()
        .filter_map(|c| Capability::from_str(c).ok())
        .collect()
}

/// Bounding, effective and permitted hold the set; inheritable and ambient stay empty, so a
/// non-root user ends with no effective capabilities (as with Docker).
fn linux_capabilities(set: &BTreeSet<String>) -> LinuxCapabilities {
    let caps = to_oci(set);
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(Some(Default::default()))
        .set_ambient(Some(Default::default()));
    lc
}

/// Applies `sec` to a spec built with herd's defaults (masked paths, read-only /proc paths,
/// device cgroup denying all but the defaults).
pub fn apply(spec: &mut Spec, sec: &Security, host: Host<'_>) {
    let caps = capability_set(sec);
    if let Some(process) = spec.process_mut() {
        process.set_capabilities(Some(linux_capabilities(&caps)));
        // `Some(false)` would make libcontainer load the filter after dropping SYS_ADMIN,
        // which fails without no_new_privs; unset loads it while still privileged.
        let escalate = sec.privileged || sec.allow_privilege_escalation;
        process.set_no_new_privileges((!escalate).then_some(true));
    }
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(sec.read_only_rootfs));
    }
    let filter =
        (!sec.privileged && !sec.seccomp_unconfined).then(|| seccomp::default_profile(host, &caps));
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(filter);
        if sec.privileged {
            linux
                .set_masked_paths(Some(vec![]))
                .set_readonly_paths(Some(vec![]));
            if let Some(res) = linux.resources_mut() {
                let mut allow_all = LinuxDeviceCgroup::default();
                allow_all
                    .set_allow(true)
                    .set_typ(Some(LinuxDeviceType::A))
                    .set_access(Some("rwm".to_owned()));
                res.set_devices(Some(vec![allow_all]));
            }
        }
    }
    if sec.privileged {
        if let Some(mounts) = spec.mounts_mut() {
            for m in mounts.iter_mut() {
                let writable = [Path::new("/sys"), Path::new("/sys/fs/cgroup")];
                if writable.contains(&m.destination().as_path()) {
                    let opts = m
                        .options()
                        .clone()
                        .map(|o| o.into_iter().filter(|o| o != "ro").collect());
                    m.set_options(opts);
                }
            }
        }
    }
}

/// Drops capabilities outside `held` (a bit mask by capability number): those the kernel
/// does not know (a board's older kernel lacks e.g. `CHECKPOINT_RESTORE`) and those the
/// worker itself lacks (a worker in a restricted service or container). No process can pass
/// on a capability it does not hold; libcontainer would fail the start. So "all
/// capabilities" means all the worker has, and an added one the worker lacks is not there.
pub fn fit_to_held(spec: &mut Spec, held: u64) {
    let Some(process) = spec.process_mut() else {
        return;
    };
    let Some(caps) = process.capabilities().clone() else {
        return;
    };
    let keep = |set: &Option<Capabilities>| -> Option<Capabilities> {
        set.as_ref().map(|s| {
            s.iter()
                .filter(|c| {
                    capability_number(&c.to_string()).is_some_and(|n| n < 64 && held >> n & 1 == 1)
                })
                .copied()
                .collect()
        })
    };
    let mut fitted = caps.clone();
    fitted
        .set_bounding(keep(caps.bounding()))
        .set_effective(keep(caps.effective()))
        .set_permitted(keep(caps.permitted()))
        .set_inheritable(keep(caps.inheritable()))
        .set_ambient(keep(caps.ambient()));
    process.set_capabilities(Some(fitted));
}

/// The capabilities this process can hand on: its bounding set (`CapBnd` in
/// /proc/self/status), which only holds capabilities the kernel knows.
pub fn held_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_bnd(&s))
        .unwrap_or(u64::MAX)
}

fn parse_cap_bnd(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Subdirectories of /dev that are mounts of their own in a container or not devices.
const SKIPPED_DEV_DIRS: [&str; 4] = ["pts", "shm", "mqueue", "fd"];

/// The host's device nodes under /dev (recursively, not following symlinks), except those a
/// container gets anyway. For privileged containers.
pub fn host_devices(dev: &Path) -> Vec<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![dev.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            let ft = meta.file_type();
            let rel = e
                .path()
                .strip_prefix(dev)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let path = PathBuf::from("/dev").join(&rel);
            if ft.is_dir() {
                if !(dir == dev && SKIPPED_DEV_DIRS.iter().any(|s| e.file_name() == *s)) {
                    dirs.push(e.path());
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if DEFAULT_DEVICES.iter().any(|d| Path::new(d) == path)
                || path == Path::new("/dev/console")
            {
                continue;
            }
            let rdev = meta.rdev();
            let mut d = LinuxDevice::default();
            d.set_path(path)
                .set_typ(typ)
                .set_major(libc::major(rdev) as i64)
                .set_minor(libc::minor(rdev) as i64)
                .set_file_mode(Some(meta.mode() & 0o7777))
                .set_uid(Some(meta.uid()))
                .set_gid(Some(meta.gid()));
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// The impure part of [`apply`], run by the shim: capabilities the worker cannot hand on go,
/// and a privileged container gets the host's devices.
pub fn fit_to_host(spec: &mut Spec, sec: &Security) {
    fit_to_held(spec, held_capabilities());
    if sec.privileged {
        let devices = host_devices(Path::new("/dev"));
        if let Some(linux) = spec.linux_mut() {
            linux.set_devices(Some(devices));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec() -> Security {
        Security::default()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_capability_name_maps_to_oci() {
        for c in CAPABILITIES {
            assert!(Capability::from_str(c).is_ok(), "{c}");
            assert_eq!(Capability::from_str(c).unwrap().to_string(), c);
        }
    }

    #[test]
    fn the_default_set_is_dockers() {
        let s = capability_set(&sec());
        assert_eq!(s.len(), 14);
        assert!(s.contains("NET_BIND_SERVICE") && s.contains("CHOWN"));
        assert!(!s.contains("SYS_ADMIN") && !s.contains("NET_ADMIN"));
    }

    #[test]
    fn add_and_drop_follow_containerds_order() {
        let mut s = sec();
        s.capabilities_drop = vec!["ALL".into()];
        s.capabilities_add = vec!["net_bind_service".into()];
        assert_eq!(capability_set(&s), set(&["NET_BIND_SERVICE"]));

        let mut s = sec();
        s.capabilities_add = vec!["ALL".into()];
        s.capabilities_drop = vec!["CAP_SYS_ADMIN".into(), "net_raw".into()];
        let got = capability_set(&s);
        assert_eq!(got.len(), CAPABILITIES.len() - 2);
        assert!(!got.contains("SYS_ADMIN") && !got.contains("NET_RAW"));

        let mut s = sec();
        s.capabilities_add = vec!["NET_ADMIN".into()];
        s.capabilities_drop = vec!["CHOWN".into(), "NET_ADMIN".into()];
        let got = capability_set(&s);
        assert!(!got.contains("CHOWN") && !got.contains("NET_ADMIN"));
        assert_eq!(got.len(), 13);
    }

    #[test]
    fn privileged_ignores_drops_and_gets_everything() {
        let mut s = sec();
        s.privileged = true;
        s.capabilities_drop = vec!["ALL".into()];
        assert_eq!(capability_set(&s).len(), CAPABILITIES.len());
    }

    #[test]
    fn capabilities_the_worker_lacks_are_dropped() {
        let mut spec = Spec::default();
        let mut s = sec();
        s.privileged = true;
        apply(
            &mut spec,
            &s,
            Host {
                arch: "x86_64",
                kernel: (5, 4),
            },
        );
        // A kernel up to AUDIT_READ (37), and a worker without SYS_RESOURCE (24).
        let held = ((1u64 << 38) - 1) & !(1 << 24);
        fit_to_held(&mut spec, held);
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        let bounding = caps.bounding().as_ref().unwrap();
        assert_eq!(bounding.len(), 37);
        assert!(!bounding.contains(&Capability::Bpf));
        assert!(!bounding.contains(&Capability::SysResource));
        assert!(bounding.contains(&Capability::AuditRead));
        assert_eq!(caps.effective(), caps.bounding());
    }

    #[test]
    fn the_bounding_set_is_read_from_proc_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(parse_cap_bnd(status), Some(0x1fffeffffff));
        assert_eq!(parse_cap_bnd("Name: x\n"), None);
        assert_ne!(held_capabilities(), 0);
    }

    #[test]
    fn host_devices_are_listed_without_the_defaults() {
        let devs = host_devices(Path::new("/dev"));
        for d in &devs {
            assert!(d.path().starts_with("/dev/"), "{:?}", d.path());
            assert!(!DEFAULT_DEVICES.iter().any(|p| Path::new(p) == d.path()));
            assert!(!d.path().starts_with("/dev/pts"));
        }
        // /dev/null is on every Linux host and is a default device: never listed.
        assert!(Path::new("/dev/null").exists());
        assert!(host_devices(Path::new("/nonexistent")).is_empty());
    }
}
