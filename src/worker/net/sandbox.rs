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
    let sock = Sock::new()?;
    sock.up("lo")
}

/// An AF_INET datagram socket for interface ioctls in the calling thread's network
/// namespace (the namespace is fixed when the socket is made).
struct Sock(std::os::fd::OwnedFd);

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
        ifr.ifr_name[i] = b as libc::c_char;
    }
    ifr
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes); the kernel reads the
    // family to interpret the rest.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

impl Sock {
    fn new() -> std::io::Result<Sock> {
        use std::os::fd::FromRawFd;
        // SAFETY: socket(2) with constant arguments; the fd is owned from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nothing else owns.
        Ok(Sock(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl<T>(&self, req: libc::c_ulong, arg: &mut T) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: `arg` is the struct type the request expects (ifreq or rtentry), valid for
        // reads and writes for the call.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, arg as *mut T) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn up(&self, name: &str) -> std::io::Result<()> {
        let mut ifr = ifreq(name);
        self.ioctl(libc::SIOCGIFFLAGS as _, &mut ifr)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        self.ioctl(libc::SIOCSIFFLAGS as _, &mut ifr)
    }

    fn set_addr(&self, name: &str, req: libc::c_ulong, ip: Ipv4Addr) -> std::io::Result<()> {
        let mut ifr = ifreq(name);
        ifr.ifr_ifru.ifru_addr = sockaddr(ip);
        self.ioctl(req, &mut ifr)
    }

    fn default_route(&self, gw: Ipv4Addr) -> std::io::Result<()> {
        // SAFETY: rtentry is plain data; all-zero is a valid value (null rt_dev: the kernel
        // picks the device from the gateway).
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        self.ioctl(libc::SIOCADDRT as _, &mut rt)
    }
}

/// Inside the pod's network namespace: `eth0` gets `ip` with the subnet's prefix, goes up,
/// and a default route via the bridge address. Done from a short-lived thread that joins the
/// namespace, with ioctls: no fork, no `ip` (the slowest part of pod start otherwise).
pub fn configure_pod_side(netns: &Path, ip: Ipv4Addr, subnet: Ipv4Cidr) -> Result<(), NetError> {
    let ns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<(), String> {
        let f = std::fs::File::open(&ns).map_err(|e| format!("{}: {e}", ns.display()))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns: {e}"))?;
        let sock = Sock::new().map_err(|e| format!("socket: {e}"))?;
        let mask = Ipv4Addr::from(if subnet.prefix() == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(subnet.prefix()))
        });
        sock.set_addr("eth0", libc::SIOCSIFADDR as _, ip)
            .map_err(|e| format!("eth0 address {ip}: {e}"))?;
        sock.set_addr("eth0", libc::SIOCSIFNETMASK as _, mask)
            .map_err(|e| format!("eth0 netmask {mask}: {e}"))?;
        sock.up("eth0").map_err(|e| format!("eth0 up: {e}"))?;
        sock.default_route(subnet.gateway())
            .map_err(|e| format!("default route via {}: {e}", subnet.gateway()))?;
        Ok(())
    })
    .join()
    .map_err(|_| "pod network thread panicked".to_string())
    .and_then(|r| r)
    .map_err(|message| NetError::Sandbox {
        dir: netns.to_path_buf(),
        message,
    })
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

/// Creates the veth pair (one `ip` run in the node's namespace) and configures the pod's side.
pub fn plug(uid: &str, netns: &Path, ip: Ipv4Addr, subnet: Ipv4Cidr) -> Result<(), NetError> {
    let veth = host_veth(uid);
    if if_index(&veth) != 0 {
        // A half-done earlier attempt (agent crash): start the pair again (deleting one end
        // deletes the pod's end too).
        let _ = cmd::run("ip", &["link", "del", &veth], None);
    }
    cmd::run("ip", &["-batch", "-"], Some(&host_batch(&veth, netns)))?;
    configure_pod_side(netns, ip, subnet)
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
    }
}
