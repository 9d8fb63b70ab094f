//! The whole command-line tree, as clap derive types. `main.rs` matches on [`Command`] and runs
//! `up`/`master`/`worker` itself; every client verb goes through [`crate::cli::run`].
//!
//! One args struct per subcommand so each verb's module takes exactly what it needs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// herd: the Kubernetes model for Raspberry-Pi fleets.
#[derive(Debug, Parser)]
#[command(name = "herd", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts (before or after the verb, like kubectl's).
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Client config (kubeconfig format) [default: ~/.config/herd/config]
    #[arg(long, global = true, value_name = "FILE", env = "HERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Context of the config to use instead of its current-context
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// More log output (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run master and worker in one process (single-board cluster)
    Up(UpArgs),
    /// Run the master: API server, store, controllers, scheduler, MQTT broker
    Master(MasterArgs),
    /// Run a worker that joins a master and runs the pods assigned to it
    Worker(WorkerArgs),
    /// Create or update resources from manifest files
    Apply(ApplyArgs),
    /// List resources, or show one
    Get(GetArgs),
    /// Show details of a resource
    Describe(DescribeArgs),
    /// Delete resources by kind and name, or those in a file
    Delete(DeleteArgs),
    /// Print the logs of a container in a pod
    Logs(LogsArgs),
    /// Set the number of replicas of a deployment or replica set
    Scale(ScaleArgs),
    /// Change a field of a workload (images)
    #[command(subcommand)]
    Set(SetCommand),
    /// Manage the rollout of a deployment: status, history, undo, pause, resume, restart
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Mark a node unschedulable
    Cordon(NodeArgs),
    /// Mark a node schedulable again
    Uncordon(NodeArgs),
    /// Cordon a node and evict its pods, respecting deployments' availability
    Drain(DrainArgs),
    /// Images: the master's cache (push, ls, prune) and this machine's worker store
    /// (import, ls --local)
    #[command(subcommand, after_help = IMAGE_HELP)]
    Image(ImageCommand),
    /// Manage tokens: join tokens for workers, admin and read-only API tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Configuration for an external MQTT broker (run on the master's machine)
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Manage nodes: remove one (and revoke its credentials)
    #[command(subcommand)]
    Node(NodeCommand),
    /// Print client and server versions
    Version(VersionArgs),
    /// Parse and validate manifests offline; with --nodes, show where the pods would schedule
    Validate(crate::cli::validate::ValidateArgs),
    /// Install herd as a systemd service on this machine (binary, unit, config)
    Install(InstallArgs),
    /// Remove what `herd install` installed (keeps /var/lib/herd unless --purge)
    Uninstall(UninstallArgs),
    /// Set up a board from herd.toml on its boot partition (herd images: images/README.md)
    #[command(subcommand)]
    Firstboot(crate::firstboot::FirstbootAction),
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Root of the master's and the worker's state
    #[arg(long, value_name = "DIR", default_value = "/var/lib/herd")]
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:6443")]
    pub api_addr: String,
    /// Address the embedded MQTT broker listens on
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:1883")]
    pub mqtt_addr: String,
    /// Use an external MQTT broker instead of the embedded one
    #[arg(long, value_name = "mqtt://HOST:PORT")]
    pub broker: Option<String>,
    /// Name of the local node [default: hostname]
    #[arg(long, value_name = "NAME", env = "HERD_NODE_NAME")]
    pub node_name: Option<String>,
    /// Address other machines reach this one at [default: first non-loopback address]
    #[arg(long, value_name = "IP")]
    pub advertise_address: Option<String>,
    /// On stop, leave containers running (by default `up` stops them)
    #[arg(long)]
    pub leave_running: bool,
    /// Pod network of the local node: `bridge` (pod IPs on the herd0 bridge, routes, NAT) or
    /// `none` (each pod gets only its own loopback)
    #[arg(long, value_name = "MODE", default_value = "bridge", value_parser = ["bridge", "none"])]
    pub pod_network: String,
    /// Pod address block; each node gets a /24 of it
    #[arg(long, value_name = "CIDR", default_value = crate::master::podcidr::DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: String,
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MasterArgs {
    /// Maintenance on the master's state instead of serving
    #[command(subcommand)]
    pub action: Option<MasterAction>,
    /// Master state directory (state.db, pki/)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/herd/master")]
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:6443")]
    pub api_addr: String,
    /// Address the embedded MQTT broker listens on
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:1883")]
    pub mqtt_addr: String,
    /// Use an external MQTT broker instead of the embedded one
    #[arg(long, value_name = "mqtt://HOST:PORT")]
    pub broker: Option<String>,
    /// Address workers reach this master at [default: first non-loopback address]
    #[arg(long, value_name = "IP")]
    pub advertise_address: Option<String>,
    /// Pod address block; each node gets a /24 of it
    #[arg(long, value_name = "CIDR", default_value = crate::master::podcidr::DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: String,
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MasterAction {
    /// Copy the state database to FILE, consistently, while the master runs
    Backup(MasterStateArgs),
    /// Replace the state database with FILE (the master must be stopped)
    Restore(MasterStateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MasterStateArgs {
    /// Backup file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Master state directory
    #[arg(long, value_name = "DIR", default_value = "/var/lib/herd/master")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Write mosquitto's password_file and acl_file (the MQTT gate's per-node topic rules)
    /// into a directory, and print the mosquitto.conf lines that use them. Run it again after
    /// a node joins, then reload mosquitto (SIGHUP).
    Config(BrokerConfigArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BrokerConfigArgs {
    /// Broker kind (only mosquitto)
    #[arg(value_name = "KIND", value_parser = ["mosquitto"])]
    pub kind: String,
    /// Master state directory (state.db, mqtt-master.secret)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/herd/master")]
    pub data_dir: PathBuf,
    /// Where to write herd.passwd and herd.acl
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// TLS for the API and the MQTT gate (on by default; a cluster CA is made on first start).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Serve plain HTTP and MQTT instead of HTTPS and MQTTS (tests, debugging; anyone on the
    /// LAN can then read tokens and impersonate nodes)
    #[arg(long)]
    pub insecure: bool,
    /// Extra name or IP for the server certificate (repeatable); the host name, localhost and
    /// every local address are always included
    #[arg(long = "tls-san", value_name = "NAME|IP")]
    pub tls_sans: Vec<String>,
}

/// How fast the master gives up on a silent node and moves its pods.
#[derive(Debug, Clone, Args)]
pub struct LifecycleArgs {
    /// A node without heartbeats for this long turns NotReady (3 missed 5 s heartbeats); its
    /// MQTT Last Will does so at once
    #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_grace_seconds: u64,
    /// After a node turns NotReady, pods owned by a ReplicaSet are replaced elsewhere after
    /// this long (per pod: toleration of node.kubernetes.io/unreachable)
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub eviction_seconds: u64,
}

/// The master's image cache and the upstream registries it pulls through from.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Reach this upstream registry over plain HTTP (repeatable; 127.0.0.0/8 always is).
    /// More, and credentials: <data dir>/registries.toml
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Serve a pulled tag from the cache this long before asking upstream again (digests never
    /// expire)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub registry_tag_ttl: Duration,
    /// Never pull through from upstream registries: workers get only images pushed with
    /// `herd image push` or already cached (fleets without internet access)
    #[arg(long)]
    pub air_gapped: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// URL of the master's API, as printed by `herd master`
    #[arg(long, value_name = "URL", env = "HERD_JOIN")]
    pub join: String,
    /// Join token, as printed by `herd master` or `herd token create`
    #[arg(long, value_name = "TOKEN", env = "HERD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Hash of the cluster CA, as printed by `herd master` (`sha256:…`): the worker trusts an
    /// https master only if its CA matches (needed for https URLs)
    #[arg(long, value_name = "sha256:HEX", env = "HERD_CA_HASH")]
    pub ca_hash: Option<String>,
    /// Worker state directory (images/, containers/, volumes/, state)
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/herd/worker",
        env = "HERD_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Name of this node [default: hostname]
    #[arg(long, value_name = "NAME", env = "HERD_NODE_NAME")]
    pub node_name: Option<String>,
    /// Extra label for this node, KEY=VALUE (repeatable; the variable takes a comma list,
    /// which label values can never contain)
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = parse_label,
          env = "HERD_NODE_LABELS", value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Seconds between heartbeats to the master
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_seconds: u64,
    /// On SIGINT/SIGTERM, stop every pod before exiting (by default containers keep running
    /// and the next agent re-adopts them, so a restart never touches pods)
    #[arg(long)]
    pub stop_pods_on_exit: bool,
    /// Pod network: `bridge` (pod IPs on a herd0 bridge, routes to other nodes, NAT,
    /// hostPort) or `none` (each pod gets only its own loopback; for several workers sharing
    /// one network namespace, as in tests)
    #[arg(long, value_name = "MODE", default_value = "bridge", value_parser = ["bridge", "none"], env = "HERD_POD_NETWORK")]
    pub pod_network: String,
    /// Remove images no pod on this node uses after they were unused this long
    #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = parse_duration)]
    pub image_gc_unused_for: Duration,
    /// When the image filesystem is fuller than this (percent), remove least recently used
    /// images...
    #[arg(long, value_name = "PERCENT", default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub image_gc_high_percent: u8,
    /// ...down to this (percent)
    #[arg(long, value_name = "PERCENT", default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_percent: u8,
    #[command(flatten)]
    pub pull: PullArgs,
}

/// How a worker gets images it lacks.
#[derive(Debug, Clone, Default, Args)]
pub struct PullArgs {
    /// Pull straight from registries instead of through the master's image cache
    #[arg(long, env = "HERD_PULL_DIRECT")]
    pub pull_direct: bool,
    /// Registry reached over plain HTTP by direct pulls, HOST:PORT (repeatable; loopback
    /// registries always are)
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Registries file for direct pulls (insecure hosts, credentials)
    #[arg(long, value_name = "FILE", default_value = "/etc/herd/registries.toml")]
    pub registries: PathBuf,
    /// Act as a node of this platform, OS/ARCH[/VARIANT] (testing mixed fleets on one
    /// machine: which image variant is pulled and what the scheduler sees)
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub platform: Option<String>,
}

fn parse_platform(s: &str) -> Result<String, String> {
    crate::worker::images::Platform::parse(s).map(|_| s.to_owned())
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Manifest file (YAML or JSON, multi-document); `-` reads stdin (repeatable)
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub filenames: Vec<PathBuf>,
    /// Namespace for objects that name none [default: the context's, else "default"]
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Wait until the applied pods and workloads are ready, showing image pull progress
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long, e.g. 5m; 0 waits forever
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// kubectl's `-o` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
    Wide,
    Name,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// pods|po, nodes|no, deployments|deploy, replicasets|rs, or KIND/NAME
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// Show only this object
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Output format
    #[arg(short, long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    /// Namespace [default: the context's, else "default"]
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    /// List across all namespaces
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. app=web,tier!=db
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DescribeArgs {
    /// pods|po, nodes|no, deployments|deploy, replicasets|rs, or KIND/NAME
    #[arg(value_name = "KIND")]
    pub kind: String,
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Namespace [default: the context's, else "default"]
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// pods|po, nodes|no, deployments|deploy, replicasets|rs, or KIND/NAME
    #[arg(value_name = "KIND", required_unless_present = "filenames")]
    pub kind: Option<String>,
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Delete every object in this manifest file; `-` reads stdin (repeatable)
    #[arg(short = 'f', long = "filename", value_name = "FILE", conflicts_with_all = ["kind", "name"])]
    pub filenames: Vec<PathBuf>,
    /// Namespace [default: the context's, else "default"]
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Seconds the containers get to stop; -1 uses the pod's own setting
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub grace_period: Option<i64>,
    /// Wait until the object is gone before returning
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Pod name (or pod/NAME)
    #[arg(value_name = "POD")]
    pub pod: String,
    /// Container [default: the pod's only container]
    #[arg(short, long, value_name = "NAME")]
    pub container: Option<String>,
    /// Lines from the end to show; -1 shows all
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tail: Option<i64>,
    /// Keep streaming new output
    #[arg(short, long)]
    pub follow: bool,
    /// Logs of the previous (restarted) instance of the container
    #[arg(short, long)]
    pub previous: bool,
    /// Namespace [default: the context's, else "default"]
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// deployments|deploy, replicasets|rs, or KIND/NAME
    #[arg(value_name = "KIND")]
    pub kind: String,
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The new number of replicas
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    pub replicas: i32,
    /// Namespace [default: the context's, else "default"]
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Update container images: `set image deploy/web main=img:2 [side=img:3]` (`*=IMG` sets
    /// every container)
    Image(SetImageArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SetImageArgs {
    /// KIND/NAME (or KIND NAME), then CONTAINER=IMAGE pairs
    #[arg(value_name = "KIND/NAME CONTAINER=IMAGE", required = true, num_args = 1..)]
    pub args: Vec<String>,
    /// Namespace [default: the context's, else "default"]
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Wait for a deployment's rollout to finish, printing its progress
    Status(RolloutStatusArgs),
    /// List a deployment's revisions, or show one
    History(RolloutHistoryArgs),
    /// Go back to the previous revision (or --to-revision N)
    Undo(RolloutUndoArgs),
    /// Stop rolling out template changes until resumed
    Pause(RolloutTarget),
    /// Resume a paused deployment
    Resume(RolloutTarget),
    /// Restart every pod of a deployment with a new rollout
    Restart(RolloutTarget),
}

/// The deployment a rollout verb acts on.
#[derive(Debug, Clone, Args)]
pub struct RolloutTarget {
    /// deployments|deploy, or deploy/NAME
    #[arg(value_name = "KIND")]
    pub kind: String,
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Namespace [default: the context's, else "default"]
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutStatusArgs {
    #[command(flatten)]
    pub target: RolloutTarget,
    /// Give up after this long, e.g. 5m; 0 waits forever
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Keep watching until the rollout finishes (false: print the status once)
    #[arg(short, long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub watch: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutHistoryArgs {
    #[command(flatten)]
    pub target: RolloutTarget,
    /// Show the pod template of this revision
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub revision: Option<i64>,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutUndoArgs {
    #[command(flatten)]
    pub target: RolloutTarget,
    /// Revision to go back to; 0 means the one before the current
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    pub to_revision: i64,
}

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Node name (or node/NAME)
    #[arg(value_name = "NODE")]
    pub node: String,
}

#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// Node name (or node/NAME)
    #[arg(value_name = "NODE")]
    pub node: String,
    /// Also evict pods no controller manages (they will not come back)
    #[arg(long)]
    pub force: bool,
    /// Seconds each pod gets to stop; -1 uses the pod's own setting
    #[arg(long, value_name = "SECONDS", default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Give up after this long, e.g. 5m; 0 waits forever
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub timeout: Duration,
}

const IMAGE_HELP: &str = "\
The master keeps an image cache that every worker pulls through: images come from the
registry their name starts with (docker.io/..., ghcr.io/..., 127.0.0.1:5000/...) once, or
are pushed with `herd image push` and need no registry at all. Registries are reached over
HTTPS except 127.0.0.0/8 and those named with `herd master --insecure-registry`.
Credentials for upstream registries: <master data dir>/registries.toml (mode 0600).

  herd image push app.tar --name app:1      upload a docker save / OCI archive to the master
  herd image ls                             what the master's cache holds
  herd image prune --unused-for 30d         drop images nothing uses, then orphaned blobs
  herd image import app.tar --data-dir D    side-load into this machine's worker (no master)
  herd image pull busybox                   pull into this machine's worker (via the master)
  herd image ls --local                     what this machine's worker holds

Any registry client can pull from the master (an API token as password, or a node's
credentials); a registry port is written HOST_PORT in the path, e.g.
  skopeo inspect --creds x:TOKEN docker://MASTER:6443/127.0.0.1_5000/app:1";

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Upload a `docker save` or OCI layout archive (optionally gzip) into the master's cache
    Push(ImagePushArgs),
    /// List the master's image cache (with --local: this machine's worker store)
    Ls(ImageLsArgs),
    /// Remove cached images no pod or workload uses, then blobs no image reaches
    Prune(ImagePruneArgs),
    /// Import a `docker save` or OCI layout archive into this machine's worker store
    Import(ImageImportArgs),
    /// Pull an image into the local image store (through the master's cache when this machine
    /// is a joined worker, else straight from the registry)
    Pull(ImagePullArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ImagePullArgs {
    /// Image reference, e.g. busybox, ghcr.io/org/app:1, name@sha256:...
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Worker data dir [default: /var/lib/herd/worker if it exists, else /var/lib/herd]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub pull: PullArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ImagePushArgs {
    /// Archive file (.tar, .tar.gz)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Name to store the image under instead of the archive's own, e.g. app:1
    #[arg(long, value_name = "REF")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ImagePruneArgs {
    /// Remove images nothing uses that were not pulled for this long, e.g. 30d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub unused_for: Option<Duration>,
    /// Remove every image nothing uses, whatever its age (pushed images too)
    #[arg(long)]
    pub all: bool,
    /// Say what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Keep blobs no image reaches if they are younger than this (a pull in progress)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub grace: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ImageImportArgs {
    /// Archive file (.tar, .tar.gz)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Reference to tag the image with, when the archive names none
    #[arg(long, value_name = "REF")]
    pub tag: Option<String>,
    /// Worker data dir [default: /var/lib/herd/worker if it exists, else /var/lib/herd]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ImageLsArgs {
    /// List this machine's worker image store instead of the master's cache
    #[arg(long)]
    pub local: bool,
    /// Worker data dir (implies --local) [default: /var/lib/herd/worker if it exists, else
    /// /var/lib/herd]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format: json or yaml instead of the table (master cache)
    #[arg(short, long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token: a join token for a worker (default), or an API token
    Create(TokenCreateArgs),
    /// List tokens (never their secrets)
    #[command(visible_alias = "list")]
    Ls(TokenLsArgs),
    /// Revoke a token by its id (the part before the dot)
    Revoke(TokenRevokeArgs),
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TokenRole {
    /// Everything
    Admin,
    /// Reads only: get, describe, logs
    ReadOnly,
    /// Join workers, nothing else
    #[default]
    Join,
}

#[derive(Debug, Clone, Default, Args)]
pub struct TokenCreateArgs {
    /// What the token may do
    #[arg(long, value_name = "ROLE", value_enum, default_value_t = TokenRole::Join)]
    pub role: TokenRole,
    /// Lifetime, e.g. 30m, 24h, 1h30m, 7d; 0 never expires [default: 24h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,
    /// Consumed by the first successful join (join tokens only)
    #[arg(long)]
    pub single_use: bool,
    /// A note shown by `herd token ls`, e.g. which board or tool it is for
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct TokenLsArgs {
    /// Output format: json or yaml instead of the table
    #[arg(short, long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Clone, Args)]
pub struct TokenRevokeArgs {
    /// Token id, or the whole token (only the id part is sent)
    #[arg(value_name = "ID", required = true, num_args = 1..)]
    pub ids: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Remove a node: delete it and revoke its MQTT credentials; its live session is cut and
    /// it cannot reconnect until it joins again with a new token
    #[command(visible_alias = "delete")]
    Rm(NodeRmArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NodeRmArgs {
    /// Node names (or node/NAME)
    #[arg(value_name = "NODE", required = true, num_args = 1..)]
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct VersionArgs {
    /// Print the client version only, without asking the server
    #[arg(long)]
    pub client: bool,
}

/// What `herd install` sets up: which unit, and which config file goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InstallRole {
    /// `herd-master.service`: API, store, scheduler, MQTT broker
    Master,
    /// `herd-worker.service`: an agent that joins a master
    Worker,
    /// `herd.service`: `herd up`, master and local worker in one process
    Up,
}

#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// Which service to install
    #[arg(value_name = "ROLE")]
    pub role: InstallRole,
    /// Install under this directory instead of / (an image being built, or a test); implies
    /// --no-start
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
    /// Worker: URL of the master's API, as printed by `herd master`
    #[arg(long, value_name = "URL")]
    pub join: Option<String>,
    /// Worker: join token, as printed by `herd master` or `herd token create`
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Worker: the cluster CA's hash (`sha256:…`), as printed by `herd master`
    #[arg(long, value_name = "sha256:HEX")]
    pub ca_hash: Option<String>,
    /// Worker and up: name of this node [default: hostname, at each start]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Worker: extra label for this node, KEY=VALUE (repeatable)
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub node_labels: Vec<String>,
    /// Do not run `systemctl daemon-reload` and `systemctl enable --now`
    #[arg(long)]
    pub no_start: bool,
}

#[derive(Debug, Clone, Args)]
pub struct UninstallArgs {
    /// Also delete /var/lib/herd (cluster state, images, containers)
    #[arg(long)]
    pub purge: bool,
    /// Remove from under this directory instead of / (as given to `herd install --prefix`)
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
}

/// Accepts `KEY=VALUE` with a non-empty key, so a typo fails at parse time, not at join.
fn parse_label(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Go-style durations (`90s`, `30m`, `1h30m`, plus `d` for days); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 30m, 24h or 1h30m");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || s.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["herd"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli,
            Err(e) => panic!("{args:?} did not parse: {e}"),
        }
    }

    #[test]
    fn the_clap_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn up_has_the_documented_defaults() {
        let Command::Up(a) = parse(&["up"]).command else {
            panic!("not up")
        };
        assert_eq!(a.data_dir, PathBuf::from("/var/lib/herd"));
        assert_eq!(a.api_addr, "0.0.0.0:6443");
        assert_eq!(a.mqtt_addr, "0.0.0.0:1883");
        assert_eq!(a.broker, None);
        assert!(!a.leave_running);
        let Command::Up(a) = parse(&[
            "up",
            "--leave-running",
            "--node-name",
            "pi1",
            "--broker",
            "mqtt://10.0.0.1:1883",
            "--advertise-address",
            "10.0.0.2",
        ])
        .command
        else {
            panic!("not up")
        };
        assert!(a.leave_running);
        assert_eq!(a.node_name.as_deref(), Some("pi1"));
        assert_eq!(a.broker.as_deref(), Some("mqtt://10.0.0.1:1883"));
        assert_eq!(a.advertise_address.as_deref(), Some("10.0.0.2"));
    }

    #[test]
    fn master_defaults_to_its_own_data_dir() {
        let Command::Master(a) = parse(&["master", "--api-addr", "127.0.0.1:0"]).command else {
            panic!("not master")
        };
        assert_eq!(a.data_dir, PathBuf::from("/var/lib/herd/master"));
        assert_eq!(a.api_addr, "127.0.0.1:0");
        assert_eq!(a.mqtt_addr, "0.0.0.0:1883");
    }

    #[test]
    fn worker_takes_join_token_and_repeated_labels() {
        let Command::Worker(a) = parse(&[
            "worker",
            "--join",
            "http://10.0.0.1:6443",
            "--token",
            "abc",
            "--node-label",
            "zone=attic",
            "--node-label",
            "disk=ssd",
            "--heartbeat-seconds",
            "2",
        ])
        .command
        else {
            panic!("not worker")
        };
        assert_eq!(a.join, "http://10.0.0.1:6443");
        assert_eq!(a.token, "abc");
        assert_eq!(a.node_labels, ["zone=attic", "disk=ssd"]);
        assert_eq!(a.heartbeat_seconds, 2);
        assert_eq!(a.data_dir, PathBuf::from("/var/lib/herd/worker"));
        assert!(
            !a.stop_pods_on_exit,
            "an agent restart leaves pods running by default"
        );
    }

    #[test]
    fn install_takes_a_role_prefix_and_join_settings() {
        let Command::Install(a) = parse(&[
            "install",
            "worker",
            "--prefix",
            "/tmp/r",
            "--join",
            "http://m:6443",
            "--token",
            "a.b",
            "--node-label",
            "zone=attic",
            "--no-start",
        ])
        .command
        else {
            panic!("not install")
        };
        assert_eq!(a.role, InstallRole::Worker);
        assert_eq!(a.prefix, Some(PathBuf::from("/tmp/r")));
        assert_eq!(a.node_labels, ["zone=attic"]);
        assert!(a.no_start);
        assert!(Cli::try_parse_from(["herd", "install", "kubelet"]).is_err());
        let Command::Uninstall(u) = parse(&["uninstall", "--purge"]).command else {
            panic!("not uninstall")
        };
        assert!(u.purge && u.prefix.is_none());
    }

    #[test]
    fn worker_rejects_a_label_without_equals() {
        let r = Cli::try_parse_from([
            "herd",
            "worker",
            "--join",
            "http://x",
            "--token",
            "t",
            "--node-label",
            "zone",
        ]);
        assert!(r.is_err());
    }

    #[test]
    fn global_flags_go_before_or_after_the_verb() {
        let cli = parse(&["--context", "lab", "get", "po", "-vv", "--config", "/tmp/c"]);
        assert_eq!(cli.global.context.as_deref(), Some("lab"));
        assert_eq!(cli.global.verbose, 2);
        assert_eq!(cli.global.config, Some(PathBuf::from("/tmp/c")));
    }

    #[test]
    fn apply_takes_several_files_and_stdin() {
        let Command::Apply(a) = parse(&["apply", "-f", "a.yaml", "-f", "-"]).command else {
            panic!("not apply")
        };
        assert_eq!(a.filenames, [PathBuf::from("a.yaml"), PathBuf::from("-")]);
        assert!(Cli::try_parse_from(["herd", "apply"]).is_err());
    }

    #[test]
    fn get_takes_kind_name_and_kubectl_flags() {
        let Command::Get(a) = parse(&["get", "pods", "web", "-o", "wide", "-n", "prod"]).command
        else {
            panic!("not get")
        };
        assert_eq!((a.kind.as_str(), a.name.as_deref()), ("pods", Some("web")));
        assert_eq!(a.output, Some(OutputFormat::Wide));
        assert_eq!(a.namespace.as_deref(), Some("prod"));
        let Command::Get(a) = parse(&["get", "po", "-A", "-l", "app=web", "-o", "json"]).command
        else {
            panic!("not get")
        };
        assert!(a.all_namespaces);
        assert_eq!(a.selector.as_deref(), Some("app=web"));
        assert_eq!(a.output, Some(OutputFormat::Json));
        assert!(Cli::try_parse_from(["herd", "get", "po", "-o", "xml"]).is_err());
    }

    #[test]
    fn describe_takes_kind_and_name() {
        let Command::Describe(a) = parse(&["describe", "node", "pi1"]).command else {
            panic!("not describe")
        };
        assert_eq!((a.kind.as_str(), a.name.as_deref()), ("node", Some("pi1")));
    }

    #[test]
    fn delete_waits_by_default_and_takes_wait_false() {
        let Command::Delete(a) = parse(&["delete", "pod", "web"]).command else {
            panic!("not delete")
        };
        assert!(a.wait);
        assert_eq!(a.grace_period, None);
        let Command::Delete(a) = parse(&[
            "delete",
            "pod",
            "web",
            "--wait=false",
            "--grace-period",
            "0",
        ])
        .command
        else {
            panic!("not delete")
        };
        assert!(!a.wait);
        assert_eq!(a.grace_period, Some(0));
        let Command::Delete(a) = parse(&["delete", "--wait", "po/web"]).command else {
            panic!("not delete")
        };
        assert!(a.wait);
        assert_eq!(a.kind.as_deref(), Some("po/web"));
    }

    #[test]
    fn delete_takes_a_file_instead_of_a_kind() {
        let Command::Delete(a) = parse(&["delete", "-f", "web.yaml"]).command else {
            panic!("not delete")
        };
        assert_eq!(a.filenames, [PathBuf::from("web.yaml")]);
        assert!(Cli::try_parse_from(["herd", "delete"]).is_err());
        assert!(Cli::try_parse_from(["herd", "delete", "pod", "x", "-f", "a.yaml"]).is_err());
    }

    #[test]
    fn logs_takes_container_tail_follow_and_previous() {
        let Command::Logs(a) = parse(&[
            "logs",
            "web",
            "-c",
            "app",
            "--tail",
            "20",
            "-f",
            "--previous",
            "-n",
            "x",
        ])
        .command
        else {
            panic!("not logs")
        };
        assert_eq!(a.pod, "web");
        assert_eq!(a.container.as_deref(), Some("app"));
        assert_eq!(a.tail, Some(20));
        assert!(a.follow && a.previous);
        assert_eq!(a.namespace.as_deref(), Some("x"));
        let Command::Logs(a) = parse(&["logs", "web", "-p", "--tail=-1"]).command else {
            panic!("not logs")
        };
        assert!(a.previous);
        assert_eq!(a.tail, Some(-1));
    }

    #[test]
    fn image_import_and_ls_take_a_data_dir() {
        let Command::Image(ImageCommand::Import(a)) = parse(&[
            "image",
            "import",
            "busybox.tar",
            "--tag",
            "busybox:1",
            "--data-dir",
            "/tmp/d",
        ])
        .command
        else {
            panic!("not image import")
        };
        assert_eq!(a.file, PathBuf::from("busybox.tar"));
        assert_eq!(a.tag.as_deref(), Some("busybox:1"));
        assert_eq!(a.data_dir, Some(PathBuf::from("/tmp/d")));
        let Command::Image(ImageCommand::Ls(a)) = parse(&["image", "ls"]).command else {
            panic!("not image ls")
        };
        assert_eq!(a.data_dir, None);
    }

    #[test]
    fn token_create_parses_go_style_durations() {
        let Command::Token(TokenCommand::Create(a)) =
            parse(&["token", "create", "--ttl", "1h30m"]).command
        else {
            panic!("not token create")
        };
        assert_eq!(a.ttl, Some(Duration::from_secs(5400)));
        assert!(Cli::try_parse_from(["herd", "token", "create", "--ttl", "soon"]).is_err());
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5").is_ok() && parse_duration("1h5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn token_create_defaults_to_a_join_token_and_takes_role_and_flags() {
        let Command::Token(TokenCommand::Create(a)) = parse(&["token", "create"]).command else {
            panic!("not token create")
        };
        assert_eq!(a.role, TokenRole::Join);
        assert_eq!(a.ttl, None);
        assert!(!a.single_use && a.description.is_none());
        let Command::Token(TokenCommand::Create(a)) = parse(&[
            "token",
            "create",
            "--role",
            "read-only",
            "--ttl",
            "0",
            "--description",
            "grafana",
        ])
        .command
        else {
            panic!("not token create")
        };
        assert_eq!(a.role, TokenRole::ReadOnly);
        assert_eq!(a.ttl, Some(Duration::ZERO));
        assert_eq!(a.description.as_deref(), Some("grafana"));
        let Command::Token(TokenCommand::Create(a)) =
            parse(&["token", "create", "--single-use"]).command
        else {
            panic!("not token create")
        };
        assert!(a.single_use);
        assert!(Cli::try_parse_from(["herd", "token", "create", "--role", "root"]).is_err());
    }

    #[test]
    fn token_ls_and_revoke_and_node_rm_parse() {
        assert!(matches!(
            parse(&["token", "ls"]).command,
            Command::Token(TokenCommand::Ls(_))
        ));
        assert!(matches!(
            parse(&["token", "list", "-o", "json"]).command,
            Command::Token(TokenCommand::Ls(TokenLsArgs {
                output: Some(OutputFormat::Json)
            }))
        ));
        let Command::Token(TokenCommand::Revoke(a)) =
            parse(&["token", "revoke", "abc123", "def456"]).command
        else {
            panic!("not token revoke")
        };
        assert_eq!(a.ids, ["abc123", "def456"]);
        assert!(Cli::try_parse_from(["herd", "token", "revoke"]).is_err());
        for verb in ["rm", "delete"] {
            let Command::Node(NodeCommand::Rm(a)) = parse(&["node", verb, "pi1"]).command else {
                panic!("not node rm")
            };
            assert_eq!(a.nodes, ["pi1"]);
        }
        assert!(Cli::try_parse_from(["herd", "node", "rm"]).is_err());
    }

    #[test]
    fn version_parses_with_and_without_client_flag() {
        assert!(matches!(
            parse(&["version"]).command,
            Command::Version(VersionArgs { client: false })
        ));
        assert!(matches!(
            parse(&["version", "--client"]).command,
            Command::Version(VersionArgs { client: true })
        ));
    }

    #[test]
    fn scale_takes_either_resource_form_and_a_non_negative_count() {
        let Command::Scale(a) = parse(&["scale", "deploy/web", "--replicas", "3"]).command else {
            panic!("not scale")
        };
        assert_eq!((a.kind.as_str(), a.name.as_deref()), ("deploy/web", None));
        assert_eq!(a.replicas, 3);
        let Command::Scale(a) = parse(&["scale", "rs", "web-1", "--replicas=0", "-n", "x"]).command
        else {
            panic!("not scale")
        };
        assert_eq!(a.name.as_deref(), Some("web-1"));
        assert_eq!(a.replicas, 0);
        assert!(Cli::try_parse_from(["herd", "scale", "deploy/web"]).is_err());
        assert!(Cli::try_parse_from(["herd", "scale", "deploy/web", "--replicas", "-1"]).is_err());
    }

    #[test]
    fn set_image_collects_resource_and_pairs() {
        let Command::Set(SetCommand::Image(a)) = parse(&[
            "set",
            "image",
            "deploy/web",
            "main=img:2",
            "*=x",
            "-n",
            "prod",
        ])
        .command
        else {
            panic!("not set image")
        };
        assert_eq!(a.args, ["deploy/web", "main=img:2", "*=x"]);
        assert_eq!(a.namespace.as_deref(), Some("prod"));
    }

    #[test]
    fn rollout_subcommands_parse_their_flags() {
        let Command::Rollout(RolloutCommand::Status(a)) =
            parse(&["rollout", "status", "deploy/web", "--timeout", "5m"]).command
        else {
            panic!("not rollout status")
        };
        assert_eq!(a.target.kind, "deploy/web");
        assert_eq!(a.timeout, Duration::from_secs(300));
        assert!(a.watch);
        let Command::Rollout(RolloutCommand::Status(a)) =
            parse(&["rollout", "status", "deploy", "web", "--watch=false"]).command
        else {
            panic!("not rollout status")
        };
        assert!(!a.watch);
        assert_eq!(a.timeout, Duration::ZERO);
        let Command::Rollout(RolloutCommand::Undo(a)) =
            parse(&["rollout", "undo", "deploy/web", "--to-revision", "2"]).command
        else {
            panic!("not rollout undo")
        };
        assert_eq!(a.to_revision, 2);
        let Command::Rollout(RolloutCommand::History(a)) =
            parse(&["rollout", "history", "deploy/web", "--revision", "1"]).command
        else {
            panic!("not rollout history")
        };
        assert_eq!(a.revision, Some(1));
        for verb in ["pause", "resume", "restart"] {
            assert!(Cli::try_parse_from(["herd", "rollout", verb, "deploy/web"]).is_ok());
        }
    }

    #[test]
    fn drain_has_kubectls_defaults() {
        let Command::Drain(a) = parse(&["drain", "pi1"]).command else {
            panic!("not drain")
        };
        assert_eq!(a.node, "pi1");
        assert!(!a.force);
        assert_eq!(a.grace_period, -1);
        assert_eq!(a.timeout, Duration::ZERO);
        let Command::Drain(a) = parse(&[
            "drain",
            "node/pi1",
            "--force",
            "--grace-period",
            "5",
            "--timeout",
            "2m",
        ])
        .command
        else {
            panic!("not drain")
        };
        assert!(a.force);
        assert_eq!(a.grace_period, 5);
        assert_eq!(a.timeout, Duration::from_secs(120));
        assert!(matches!(
            parse(&["cordon", "pi1"]).command,
            Command::Cordon(_)
        ));
        assert!(matches!(
            parse(&["uncordon", "pi1"]).command,
            Command::Uncordon(_)
        ));
    }
}
