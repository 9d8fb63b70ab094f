//! Container runtime: OCI bundle from a `ContainerConfig`, libcontainer create/start/kill/delete
//! done by a per-container shim process (never forked from the tokio process), exits observed
//! without blocking waits, logs captured size-capped in CRI format.
//!
//! Layout: [`bundle`] (pure OCI spec generation), [`shim`] (the per-container process that
//! calls libcontainer), [`exec`] (the one-shot `herd __exec` helper that runs a command inside
//! a running container), [`linux`] ([`LinuxRuntime`], the agent side), [`logs`] (CRI log
//! writing and reading), [`cgroups`] (finding/removing cgroup dirs on v1 and v2), [`sys`]
//! (pidfd and sealed-memfd syscalls), [`security`] (capabilities, privileged mode, host
//! devices) and [`seccomp`] (the default system call filter).

pub mod bundle;
pub mod cgroups;
pub mod exec;
pub mod linux;
pub mod logs;
pub mod seccomp;
pub mod security;
pub mod shim;
pub mod sys;

pub use exec::ExecOutput;
pub use linux::{LinuxRuntime, Observed};

use std::path::PathBuf;

/// Everything needed to run one container. Built by the pod sync from pod spec + image config.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    /// Unique libcontainer id (`[a-z0-9-]`, ≤ 64 chars), e.g. `<pod-uid-prefix>-<name>-<attempt>`.
    pub id: String,
    /// Directory the runtime owns for this container: bundle (`config.json`), shim files.
    pub bundle_dir: PathBuf,
    /// Root filesystem, already mounted (overlay) by the image store.
    pub rootfs: PathBuf,
    /// argv; `args[0]` resolved against `PATH` in `env` inside the rootfs if not absolute.
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub cwd: String,
    /// Image `User` (`name`, `uid`, `uid:gid`, `name:group`), resolved against the rootfs'
    /// /etc/passwd and /etc/group; empty = root.
    pub user: String,
    pub hostname: String,
    pub resources: Resources,
    /// Explicit cgroup path (e.g. `/herd/<pod-uid>/<id>`); never libcontainer's default.
    pub cgroup_path: String,
    /// CRI-format log file (`<RFC3339Nano> stdout|stderr F|P <line>`).
    pub log_path: PathBuf,
    /// Rotate to `<log_path>.1` beyond this size, keeping one old file.
    pub log_max_bytes: u64,
    /// Hardening settings; the default is the secure default (absent in configs written by
    /// older versions, which read as that default).
    #[serde(default)]
    pub security: Security,
    /// Pod volumes bound into the container (see `worker::volumes`).
    #[serde(default)]
    pub mounts: Vec<BindMount>,
    /// Namespaces and files shared with the other containers of the pod (see `worker::net`);
    /// the default gives the container namespaces of its own.
    #[serde(default)]
    pub sandbox: PodSandbox,
}

/// A host path bound into a container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    pub read_only: bool,
}

/// What a container shares with its pod. Paths are bind-mounted namespace files made by
/// `worker::net::sandbox`; `None` means a namespace of the container's own.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PodSandbox {
    /// Network namespace to join.
    pub net: Option<PathBuf>,
    /// The node's network (and UTS) namespace: `hostNetwork: true`.
    pub host_network: bool,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// Files bind-mounted read-only into the container: (file on the node, path inside),
    /// e.g. the pod's /etc/hosts and /etc/resolv.conf.
    pub files: Vec<(PathBuf, String)>,
}

/// How a container is confined, from its `securityContext` (see `pods::security`). The
/// default is herd's hardened container: Docker's capability set, the default seccomp
/// profile, masked /proc paths, no host devices, `no_new_privs`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Security {
    /// All capabilities, no seccomp, no masked or read-only paths, host devices, /sys writable.
    pub privileged: bool,
    pub read_only_rootfs: bool,
    /// Leave `no_new_privs` unset (setuid binaries and file capabilities work).
    pub allow_privilege_escalation: bool,
    /// `capabilities.add`, canonical names without `CAP_` or `ALL`; ignored when privileged.
    pub capabilities_add: Vec<String>,
    /// `capabilities.drop`, as `capabilities_add`.
    pub capabilities_drop: Vec<String>,
    /// No seccomp filter (`seccompProfile.type: Unconfined`).
    pub seccomp_unconfined: bool,
    /// Groups added to the user's (`supplementalGroups`, `fsGroup`).
    pub supplemental_groups: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub memory_limit_bytes: Option<i64>,
    /// CFS quota in microseconds per `cpu_period_us`.
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    /// cgroup v1 cpu.shares (v2 weight derived from it), from the cpu request.
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    /// The container's OOM-killer preference (Kubernetes' QoS scores). Always set: left unset,
    /// containers would inherit the agent's protective -900 and outlive the OS under pressure.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
}

/// A container that was started.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Started {
    pub pid: i32,
    /// RFC 3339.
    pub started_at: String,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// RFC 3339.
    pub finished_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {id}: {message}")]
    Failed { id: String, message: String },
    #[error("container {id}: not found")]
    NotFound { id: String },
    #[error("container {id}: {op}: {source}")]
    Io {
        id: String,
        op: &'static str,
        source: std::io::Error,
    },
}

/// The worker's seam to containers; the pod sync is generic over it so its logic is tested with
/// a recording fake.
pub trait Runtime: Send + Sync + 'static {
    /// Creates and starts the container; returns once its process runs.
    fn start(
        &self,
        cfg: &ContainerConfig,
    ) -> impl std::future::Future<Output = Result<Started, RuntimeError>> + Send;
    /// Resolves when the container has exited (cleaned up: cgroup and libcontainer state gone).
    fn wait(
        &self,
        id: &str,
    ) -> impl std::future::Future<Output = Result<Exit, RuntimeError>> + Send;
    /// Sends a signal to the container's init process.
    fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError>;
    /// Removes everything left of the container (bundle dir, state, cgroup); idempotent.
    fn remove(
        &self,
        id: &str,
    ) -> impl std::future::Future<Output = Result<(), RuntimeError>> + Send;
    /// Runs `argv` inside the running container (its namespaces, cgroup and user), killing it
    /// after `timeout`. A command that cannot be executed is an `ExecOutput` with exit code
    /// 126, like a shell's; an error means the runtime could not try.
    fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: std::time::Duration,
    ) -> impl std::future::Future<Output = Result<ExecOutput, RuntimeError>> + Send;
    /// An fd of the running container's network namespace, for connecting from inside it.
    fn net_namespace(&self, id: &str) -> Result<std::os::fd::OwnedFd, RuntimeError>;
}
