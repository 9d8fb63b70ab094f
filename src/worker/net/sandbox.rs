//! A pod's namespaces, kept alive by bind mounts of their nsfs files under
//! `<data>/sandboxes/<uid>/{net,ipc,uts}` (like `ip netns`), and the veth that plugs the
//! network namespace into the node's bridge.
//!
//! Why bind mounts and not a pause process: nothing to supervise, nothing to re-adopt after
//! an agent restart (mounts outlive the agent), no image needed; containers join by path.
//! The namespaces are made by a short-lived std thread that `unshare`s (net, ipc and uts
//! namespaces are per thread, so the agent's other threads are untouched) and then exits.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{cmd, NetError};
use crate::util::cidr::Ipv4Cidr;

/// `statfs` magic of nsfs: a bind-mounted namespace file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

pub const BRIDGE: &str = "herd0";

/// True if `path` is a namespace file kept by a bind mount.
pub fn is_ns_mount(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == NSFS_MAGIC
    }
}

/// Which namespaces a pod gets of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub net: bool,
    pub uts: bool,
}

impl Kinds {
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = vec!["ipc"];
        if self.net {
            v.push("net");
        }
        if self.uts {
            v.push("uts");
        }
        v
    }
}

/// Creates the namespaces and their bind mounts in `dir` (which must exist); brings the new
/// network namespace's loopback up and sets the UTS hostname.
pub fn create(dir: &Path, kinds: Kinds, hostname: &str) -> Result<(), NetError> {
    let dir = dir.to_path_buf();
    let hostname = hostname.to_string();
    let err_dir = dir.clone();
    std::thread::spawn(move || -> Result<(), String> {
        use nix::sched::CloneFlags;
        let mut flags = CloneFlags::CLONE_NEWIPC;
        if kinds.net {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        if kinds.uts {
            flags |= CloneFlags::CLONE_NEWUTS;
        }
        nix::sched::unshare(flags).map_err(|e| format!("unshare: {e}"))?;
        if kinds.uts {
            nix::unistd::sethostname(&hostname).map_err(|e| format!("sethostname: {e}"))?;
        }
        if kinds.net {
            loopback_up().map_err(|e| format!("loopback up: {e}"))?;
        }
        for kind in kinds.names() {
            let target = dir.join(kind);
            std::fs::File::create(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            nix::mount::mount(
                Some(format!("/proc/thread-self/ns/{kind}").as_str()),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind mount {}: {e}", target.display()))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| "namespace thread panicked".to_string())
    .and_then(|r| r)
    .map_err(|message| NetError::Sandbox {
        dir: err_dir,
        message,
    })
}

/// `ip link set lo up` for the calling thread's network namespace, without a fork.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq with a NUL-terminated name; the fd
    // is closed on every path.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts and removes the namespace files in `dir`; idempotent.
pub fn destroy(dir: &Path) {
    for kind in ["net", "ipc", "uts"] {
        let p = dir.join(kind);
        if is_ns_mount(&p) {
            if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!(path = %p.display(), error = %e, "namespace unmount failed");
            }
        }
        let _ = std::fs::remove_file(&p);
    }
}

/// Interface index in the agent's network namespace (0: no such interface). Not /sys:
/// a worker that only entered a network namespace still sees the host's sysfs.
pub fn if_index(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: NUL-terminated name; if_nametoindex only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Host-side veth name of a pod: ≤ 15 chars, from its uid.
pub fn host_veth(uid: &str) -> String {
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("hv{short}")
}

/// Pure: `ip -batch` lines run in the node's namespace to plug a pod in.
pub fn host_batch(veth: &str, netns: &Path) -> String {
    format!(
        "link add {veth} type veth peer name eth0 netns {ns}\n\
         link set dev {veth} master {BRIDGE}\n\
         link set dev {veth} type bridge_slave hairpin on\n\
         link set dev {veth} up\n",
        ns = netns.display()
    )
}

/// Pure: `ip -batch` lines run inside the pod's namespace.
pub fn pod_batch(ip: Ipv4Addr, subnet: Ipv4Cidr) -> String {
    format!(
        "addr add {ip}/{p} dev eth0\nlink set dev eth0 up\nroute add default via {gw} dev eth0\n",
        p = subnet.prefix(),
        gw = subnet.gateway()
    )
}

/// Creates the veth pair and configures the pod's side.
pub fn plug(uid: &str, netns: &Path, ip: Ipv4Addr, subnet: Ipv4Cidr) -> Result<(), NetError> {
    let veth = host_veth(uid);
    if if_index(&veth) != 0 {
        // A half-done earlier attempt (agent crash): start the pair again.
        let _ = cmd::run("ip", &["link", "del", &veth], None);
    }
    let ns_arg = format!("--net={}", netns.display());
    // An eth0 left in the namespace by that attempt goes first; its absence is fine.
    let _ = cmd::run("nsenter", &[&ns_arg, "ip", "link", "del", "eth0"], None);
    cmd::run("ip", &["-batch", "-"], Some(&host_batch(&veth, netns)))?;
    cmd::run(
        "nsenter",
        &[&ns_arg, "ip", "-batch", "-"],
        Some(&pod_batch(ip, subnet)),
    )?;
    Ok(())
}

/// Removes the pod's veth (its peer goes with it); idempotent.
pub fn unplug(uid: &str) {
    let veth = host_veth(uid);
    if if_index(&veth) != 0 {
        if let Err(e) = cmd::run("ip", &["link", "del", &veth], None) {
            tracing::warn!(%veth, error = %e, "pod veth not removed");
        }
    }
}

/// Creates `herd0` if missing, gives it the subnet's first address, brings it up, and turns
/// on forwarding and bridge netfilter (service rules and hairpin NAT need pod traffic to
/// pass netfilter). Idempotent.
pub fn ensure_bridge(subnet: Ipv4Cidr, old: Option<Ipv4Cidr>) -> Result<(), NetError> {
    let mut batch = String::new();
    if if_index(BRIDGE) == 0 {
        batch.push_str(&format!("link add {BRIDGE} type bridge\n"));
    }
    if let Some(o) = old.filter(|o| *o != subnet) {
        batch.push_str(&format!(
            "addr del {}/{} dev {BRIDGE}\n",
            o.gateway(),
            o.prefix()
        ));
    }
    batch.push_str(&format!(
        "addr replace {}/{} dev {BRIDGE}\nlink set dev {BRIDGE} up\n",
        subnet.gateway(),
        subnet.prefix()
    ));
    cmd::run("ip", &["-force", "-batch", "-"], Some(&batch))?;
    for (path, v) in [
        ("/proc/sys/net/ipv4/ip_forward", "1"),
        ("/proc/sys/net/bridge/bridge-nf-call-iptables", "1"),
    ] {
        if let Err(e) = std::fs::write(path, v) {
            tracing::warn!(%path, error = %e, "sysctl not set");
        }
    }
    Ok(())
}

/// Pure: the sandbox directory of a pod.
pub fn dir(root: &Path, uid: &str) -> PathBuf {
    root.join(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_the_kernel_limit() {
        let n = host_veth("0f8e6a1c-1234-4abc-9def-0123456789ab");
        assert_eq!(n, "hv0f8e6a1c1234");
        assert!(n.len() <= 15);
    }

    #[test]
    fn batches_plug_the_pod_into_the_bridge() {
        let h = host_batch("hvabc", Path::new("/d/sandboxes/u/net"));
        assert!(h.contains("link add hvabc type veth peer name eth0 netns /d/sandboxes/u/net\n"));
        assert!(h.contains("link set dev hvabc type bridge_slave hairpin on\n"));
        let p = pod_batch(Ipv4Addr::new(10, 88, 1, 7), "10.88.1.0/24".parse().unwrap());
        assert_eq!(
            p,
            "addr add 10.88.1.7/24 dev eth0\nlink set dev eth0 up\nroute add default via 10.88.1.1 dev eth0\n"
        );
    }
}
