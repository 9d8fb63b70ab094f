//! A LAN of network namespaces for tests that need a real network between hosts: one "lan"
//! namespace holding a bridge, and one namespace per host with a veth into it. Nothing has an
//! uplink, so traffic never leaves the namespaces this test made. Names carry the test
//! process's pid; namespaces left by a killed earlier run are removed on the next start.

use std::process::Command;

pub struct Topology {
    lan: String,
    hosts: Vec<Host>,
}

struct Host {
    name: String,
    ns: String,
    ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes namespaces named `hit<pid>x…` whose test process is gone.
fn remove_stale() {
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("hit")
            .and_then(|r| r.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

impl Topology {
    /// Hosts get 10.77.0.1, .2, … in the order given.
    pub fn new(hosts: &[&str]) -> Topology {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        remove_stale();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("hit{}x{n}", std::process::id());
        let lan = format!("{prefix}-lan");
        let mut t = Topology {
            lan: lan.clone(),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &lan]);
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan, "link", "set", "br0", "up"]);
        for (i, h) in hosts.iter().enumerate() {
            let ns = format!("{prefix}-{h}");
            let addr = format!("10.77.0.{}", i + 1);
            ip(&["netns", "add", &ns]);
            t.hosts.push(Host {
                name: h.to_string(),
                ns: ns.clone(),
                ip: addr.clone(),
            });
            let port = format!("p{i}");
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &lan,
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &lan, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &lan, "link", "set", &port, "up"]);
        }
        t
    }

    fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the topology"))
    }

    pub fn ns(&self, host: &str) -> String {
        self.host(host).ns.clone()
    }

    pub fn ip(&self, host: &str) -> String {
        self.host(host).ip.clone()
    }

    /// Cuts (`false`) or restores (`true`) a host's cable: its bridge port goes down.
    pub fn link(&self, host: &str, up: bool) {
        let i = self
            .hosts
            .iter()
            .position(|h| h.name == host)
            .unwrap_or_else(|| panic!("no host {host} in the topology"));
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.lan, "link", "set", &format!("p{i}"), state]);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.lan])
            .status();
    }
}
