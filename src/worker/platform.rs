//! What this machine is: architecture (GOARCH spelling + OCI variant), CPUs, memory, kernel,
//! OS, as reported in the Node object.

use std::collections::BTreeMap;

use crate::api::node::{NodeAddress, LABEL_ARCH, LABEL_ARCH_VARIANT, LABEL_HOSTNAME, LABEL_OS};
use crate::api::quantity::{format_bytes, format_cpu_millis};
use crate::api::Node;

/// Kubernetes/Go spelling of this build's architecture.
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Set once by `herd worker --platform`: the node reports this platform instead of its own,
/// so one machine can stand in for an armv6 board in mixed-fleet tests. Process-wide because
/// a worker process is one node.
static PLATFORM_OVERRIDE: std::sync::OnceLock<crate::worker::images::Platform> =
    std::sync::OnceLock::new();

pub fn set_override(p: crate::worker::images::Platform) {
    let _ = PLATFORM_OVERRIDE.set(p);
}

/// OCI variant: v8 for arm64; for 32-bit ARM read from the CPU (Pi Zero/1 are v6).
pub fn variant() -> String {
    match goarch() {
        "arm64" => "v8".into(),
        "arm" => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let arch = cpuinfo
                .lines()
                .find(|l| l.starts_with("CPU architecture"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            match arch.as_str() {
                "6" | "5TEJ" => "v6".into(),
                "" => "v7".into(),
                a if a.starts_with('8') => "v8".into(),
                _ => "v7".into(),
            }
        }
        _ => String::new(),
    }
}

fn mem_total_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
        .to_lowercase()
}

/// Memory the worker keeps for the OS and itself, like kubelet's system-reserved.
const RESERVED_MEMORY: u64 = 64 << 20;
pub const MAX_PODS: u64 = 110;

/// The node object this worker reports; `ip` is the address it reaches the broker from.
pub fn node(name: &str, labels: &BTreeMap<String, String>, ip: Option<String>) -> Node {
    let mut n = Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        ..Default::default()
    };
    n.metadata.name = name.to_string();
    n.metadata.labels = labels.clone();
    let (arch, variant) = match PLATFORM_OVERRIDE.get() {
        Some(p) => (p.architecture.clone(), p.variant.clone()),
        None => (goarch().to_owned(), variant()),
    };
    n.metadata.labels.insert(LABEL_ARCH.into(), arch.clone());
    n.metadata.labels.insert(LABEL_OS.into(), "linux".into());
    n.metadata.labels.insert(LABEL_HOSTNAME.into(), name.into());
    if !variant.is_empty() {
        n.metadata
            .labels
            .insert(LABEL_ARCH_VARIANT.into(), variant.clone());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mem = mem_total_bytes();
    let info = &mut n.status.node_info;
    info.architecture = arch;
    info.variant = variant;
    info.operating_system = "linux".into();
    info.kernel_version = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    info.os_image = os_image();
    info.kubelet_version = concat!("herd-v", env!("CARGO_PKG_VERSION")).into();
    info.container_runtime_version = "libcontainer://0.7".into();
    info.machine_id = std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cap = |cpu: u64, mem: u64| {
        BTreeMap::from([
            ("cpu".to_string(), format_cpu_millis(cpu * 1000)),
            ("memory".to_string(), format_bytes(mem)),
            ("pods".to_string(), MAX_PODS.to_string()),
        ])
    };
    n.status.capacity = cap(cpus, mem);
    n.status.allocatable = cap(cpus, mem.saturating_sub(RESERVED_MEMORY));
    n.status.addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: hostname(),
    });
    if let Some(ip) = ip {
        n.status.addresses.insert(
            0,
            NodeAddress {
                type_: "InternalIP".into(),
                address: ip,
            },
        );
    }
    n
}

/// The local address the kernel would use to reach `host:port` (a UDP connect sends nothing).
pub fn local_ip_towards(host: &str, port: u16) -> Option<String> {
    use std::net::ToSocketAddrs;
    let addr = (host, port).to_socket_addrs().ok()?.next()?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(addr).ok()?;
    Some(sock.local_addr().ok()?.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_carries_kubernetes_labels_and_capacity() {
        let n = node("w1", &BTreeMap::new(), Some("127.0.0.1".into()));
        assert_eq!(
            n.metadata.labels.get(LABEL_ARCH).map(String::as_str),
            Some(goarch())
        );
        assert_eq!(
            n.metadata.labels.get(LABEL_HOSTNAME).map(String::as_str),
            Some("w1")
        );
        assert!(n.status.capacity.contains_key("cpu"));
        assert!(crate::api::quantity::parse_bytes(&n.status.allocatable["memory"]).is_ok());
        assert_eq!(n.internal_ip(), Some("127.0.0.1"));
    }
}
