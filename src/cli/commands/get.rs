//! `herd get`: list or show pods, nodes, deployments and replica sets as a table, JSON, YAML
//! or names.

use super::{age, or_none, Out, Session};
use crate::api::apps::{Deployment, ReplicaSet};
use crate::api::ingress::Ingress;
use crate::api::node::Node;
use crate::api::secret::Secret;
use crate::api::selector::LabelSelector;
use crate::api::service::{Endpoints, Service};
use crate::api::{List, Pod, PodPhase, PodSpec};
use crate::cli::args::{GetArgs, GlobalArgs, OutputFormat};
use crate::cli::kind::Kind;
use crate::cli::resource::Resource;
use crate::cli::table;
use crate::cli::workload::{containers_and_images, selector_string};

pub async fn run(args: &GetArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // A typo in the kind or the selector is reported even without a config or a server.
    Kind::with_name(&args.kind, args.name.as_deref())?;
    if let Some(l) = &args.selector {
        LabelSelector::parse(l)?;
    }
    let session = Session::open(global)?;
    get(&session, args, &mut std::io::stdout()).await
}

/// Fetches and prints; "no resources" goes to stderr so pipelines see empty output.
pub async fn get(s: &Session, args: &GetArgs, out: Out<'_>) -> anyhow::Result<()> {
    let (kind, name) = Kind::with_name(&args.kind, args.name.as_deref())?;
    let all = args.all_namespaces && kind.namespaced();
    if all && name.is_some() {
        anyhow::bail!("a resource cannot be retrieved by name across all namespaces");
    }
    if let Some(l) = &args.selector {
        LabelSelector::parse(l)?;
    }
    let fmt = args.output;
    let req = Request {
        ns: s.ns(args.namespace.as_deref()),
        all,
        name,
        selector: args.selector.clone(),
        fmt,
    };
    let text = match kind {
        Kind::Pod => fetch(s, &req, |p: &[Pod]| pods_table(p, fmt, all)).await?,
        Kind::Node => fetch(s, &req, |n: &[Node]| nodes_table(n, fmt)).await?,
        Kind::Deployment => {
            fetch(s, &req, |d: &[Deployment]| deployments_table(d, fmt, all)).await?
        }
        Kind::ReplicaSet => {
            fetch(s, &req, |r: &[ReplicaSet]| replica_sets_table(r, fmt, all)).await?
        }
        Kind::Secret => fetch(s, &req, |x: &[Secret]| secrets_table(x, all)).await?,
        Kind::ConfigMap => {
            fetch(s, &req, |x: &[crate::api::configmap::ConfigMap]| {
                configmaps_table(x, all)
            })
            .await?
        }
        Kind::PersistentVolumeClaim => {
            fetch(s, &req, |x: &[crate::api::pvc::PersistentVolumeClaim]| {
                claims_table(x, all)
            })
            .await?
        }
        Kind::Service => {
            fetch(s, &req, |x: &[Service]| {
                super::net_tables::services_table(x, fmt, all)
            })
            .await?
        }
        Kind::Endpoints => {
            fetch(s, &req, |x: &[Endpoints]| {
                super::net_tables::endpoints_table(x, all)
            })
            .await?
        }
        Kind::Ingress => {
            fetch(s, &req, |x: &[Ingress]| {
                super::net_tables::ingresses_table(x, all)
            })
            .await?
        }
    };
    match text {
        Some(t) => out.write_all(t.as_bytes())?,
        None if kind.namespaced() && !all => {
            eprintln!("No resources found in {} namespace.", req.ns)
        }
        None => eprintln!("No resources found"),
    }
    Ok(())
}

/// What to fetch, resolved from the arguments.
struct Request {
    ns: String,
    all: bool,
    name: Option<String>,
    selector: Option<String>,
    fmt: Option<OutputFormat>,
}

/// Gets one object or a list and renders it; `None` for an empty list in a table format.
async fn fetch<T: Resource>(
    s: &Session,
    req: &Request,
    table: impl Fn(&[T]) -> String,
) -> anyhow::Result<Option<String>> {
    let kind = T::KIND;
    if let Some(n) = &req.name {
        let obj: T = s.client.get(&kind.object_path(&req.ns, n)).await?;
        return Ok(Some(render(&[obj], true, req.fmt, table)?));
    }
    let query: Vec<(&str, String)> = req
        .selector
        .iter()
        .map(|l| ("labelSelector", l.clone()))
        .collect();
    let coll = kind.collection_path((!req.all).then_some(req.ns.as_str()));
    let list: List<T> = s.client.get_query(&coll, &query).await?;
    if list.items.is_empty() && !structured(req.fmt) {
        return Ok(None);
    }
    Ok(Some(render(&list.items, false, req.fmt, table)?))
}

fn structured(fmt: Option<OutputFormat>) -> bool {
    matches!(fmt, Some(OutputFormat::Json | OutputFormat::Yaml))
}

/// One object prints as itself, several as a `List`, like kubectl.
pub fn render<T: Resource>(
    items: &[T],
    single: bool,
    fmt: Option<OutputFormat>,
    table: impl Fn(&[T]) -> String,
) -> anyhow::Result<String> {
    let value = |items: &[T]| -> anyhow::Result<serde_json::Value> {
        Ok(match (single, items) {
            (true, [one]) => serde_json::to_value(one)?,
            _ => serde_json::to_value(List::new(items.to_vec()))?,
        })
    };
    Ok(match fmt {
        Some(OutputFormat::Json) => serde_json::to_string_pretty(&value(items)?)? + "\n",
        Some(OutputFormat::Yaml) => yaml_serde::to_string(&value(items)?)?,
        Some(OutputFormat::Name) => items
            .iter()
            .map(|i| T::KIND.ref_name(i.name()) + "\n")
            .collect(),
        Some(OutputFormat::Wide) | None => table(items),
    })
}

/// `NAME READY UP-TO-DATE AVAILABLE AGE`, READY being ready/desired replicas; wide adds the
/// containers, images and selector.
pub fn deployments_table(ds: &[Deployment], fmt: Option<OutputFormat>, with_ns: bool) -> String {
    let rows = ds
        .iter()
        .map(|d| {
            let st = &d.status;
            Row {
                ns: d.metadata.ns(),
                cells: vec![
                    d.metadata.name.clone(),
                    format!("{}/{}", st.ready_replicas, d.spec.replicas()),
                    st.updated_replicas.to_string(),
                    st.available_replicas.to_string(),
                    age(d.metadata.creation_timestamp.as_deref()),
                ],
                spec: &d.spec.template.spec,
                selector: &d.spec.selector,
            }
        })
        .collect::<Vec<_>>();
    workload_table(
        &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        rows,
        fmt,
        with_ns,
    )
}

/// `NAME DESIRED CURRENT READY AGE`; wide adds the containers, images and selector.
pub fn replica_sets_table(rss: &[ReplicaSet], fmt: Option<OutputFormat>, with_ns: bool) -> String {
    let rows = rss
        .iter()
        .map(|r| Row {
            ns: r.metadata.ns(),
            cells: vec![
                r.metadata.name.clone(),
                r.spec.replicas().to_string(),
                r.status.replicas.to_string(),
                r.status.ready_replicas.to_string(),
                age(r.metadata.creation_timestamp.as_deref()),
            ],
            spec: &r.spec.template.spec,
            selector: &r.spec.selector,
        })
        .collect::<Vec<_>>();
    workload_table(
        &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        rows,
        fmt,
        with_ns,
    )
}

struct Row<'a> {
    ns: &'a str,
    cells: Vec<String>,
    spec: &'a PodSpec,
    selector: &'a LabelSelector,
}

fn workload_table(
    header: &[&str],
    rows: Vec<Row<'_>>,
    fmt: Option<OutputFormat>,
    with_ns: bool,
) -> String {
    let wide = fmt == Some(OutputFormat::Wide);
    let mut header = header.to_vec();
    if wide {
        header.extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
    }
    if with_ns {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| {
            let mut cells = r.cells;
            if wide {
                let (containers, images) = containers_and_images(r.spec);
                cells.extend([containers, images, selector_string(r.selector)]);
            }
            if with_ns {
                cells.insert(0, r.ns.to_string());
            }
            cells
        })
        .collect();
    table::render(&header, &rows)
}

pub fn pods_table(pods: &[Pod], fmt: Option<OutputFormat>, with_ns: bool) -> String {
    let wide = fmt == Some(OutputFormat::Wide);
    let mut header = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        header.extend(["IP", "NODE"]);
    }
    if with_ns {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            let mut row = vec![
                p.metadata.name.clone(),
                pod_ready(p),
                pod_status(p),
                pod_restarts(p).to_string(),
                age(p.metadata.creation_timestamp.as_deref()),
            ];
            if wide {
                row.push(or_none(p.status.pod_ip.as_deref()));
                row.push(or_none(p.spec.node_name.as_deref()));
            }
            if with_ns {
                row.insert(0, p.metadata.ns().to_string());
            }
            row
        })
        .collect();
    table::render(&header, &rows)
}

/// `ready/total`, total being the containers the spec asks for.
pub fn pod_ready(p: &Pod) -> String {
    let ready = p
        .status
        .container_statuses
        .iter()
        .filter(|c| c.ready)
        .count();
    let total = p
        .spec
        .containers
        .len()
        .max(p.status.container_statuses.len());
    format!("{ready}/{total}")
}

pub fn pod_restarts(p: &Pod) -> u32 {
    p.status
        .container_statuses
        .iter()
        .map(|c| c.restart_count)
        .sum()
}

/// The STATUS column: a container's waiting or terminated reason if one has any (first
/// container wins, as in kubectl), else `Terminating` while deletion is in progress, else the
/// pod's reason or phase. `Completed` turns back into `Running` while another container runs.
pub fn pod_status(p: &Pod) -> String {
    if let Some(init) = init_status(p) {
        return init;
    }
    let mut reason: Option<String> = None;
    let mut running = false;
    for c in p.status.container_statuses.iter().rev() {
        if let Some(w) = c.state.waiting.as_ref().filter(|w| !w.reason.is_empty()) {
            reason = Some(w.reason.clone());
        } else if let Some(t) = &c.state.terminated {
            reason = Some(if !t.reason.is_empty() {
                t.reason.clone()
            } else if let Some(sig) = t.signal.filter(|s| *s != 0) {
                format!("Signal:{sig}")
            } else {
                format!("ExitCode:{}", t.exit_code)
            });
        } else if c.state.running.is_some() {
            running = true;
        }
    }
    if reason.as_deref() == Some("Completed") && running {
        reason = Some(PodPhase::Running.to_string());
    }
    if let Some(r) = reason {
        return r;
    }
    if p.metadata.deletion_timestamp.is_some() {
        return "Terminating".to_string();
    }
    if !p.status.reason.is_empty() {
        return p.status.reason.clone();
    }
    p.status.phase.to_string()
}

/// kubectl's `Init:…` while init containers have not all completed: the failing one's
/// reason (`Init:Error`, `Init:CrashLoopBackOff`), else `Init:done/total`.
fn init_status(p: &Pod) -> Option<String> {
    let inits = &p.status.init_container_statuses;
    let done = inits
        .iter()
        .filter(|c| {
            c.state
                .terminated
                .as_ref()
                .is_some_and(|t| t.exit_code == 0)
        })
        .count();
    if inits.is_empty() || done == inits.len() {
        return None;
    }
    for c in inits {
        if let Some(t) = c.state.terminated.as_ref().filter(|t| t.exit_code != 0) {
            let r = if t.reason.is_empty() {
                "Error"
            } else {
                &t.reason
            };
            return Some(format!("Init:{r}"));
        }
        if let Some(w) = c.state.waiting.as_ref() {
            if !w.reason.is_empty()
                && w.reason != "PodInitializing"
                && w.reason != "ContainerCreating"
            {
                return Some(format!("Init:{}", w.reason));
            }
        }
    }
    Some(format!("Init:{done}/{}", inits.len()))
}

/// kubectl's columns; values are never shown in a table.
pub fn secrets_table(secrets: &[Secret], with_ns: bool) -> String {
    let mut header = vec!["NAME", "TYPE", "DATA", "AGE"];
    if with_ns {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|x| {
            let mut row = vec![
                x.metadata.name.clone(),
                x.type_.clone(),
                x.data.len().to_string(),
                age(x.metadata.creation_timestamp.as_deref()),
            ];
            if with_ns {
                row.insert(0, x.metadata.ns().to_string());
            }
            row
        })
        .collect();
    table::render(&header, &rows)
}

/// kubectl's columns: name, key count, age.
pub fn configmaps_table(items: &[crate::api::configmap::ConfigMap], with_ns: bool) -> String {
    let mut header = vec!["NAME", "DATA", "AGE"];
    if with_ns {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|x| {
            let mut row = vec![
                x.metadata.name.clone(),
                (x.data.len() + x.binary_data.len()).to_string(),
                age(x.metadata.creation_timestamp.as_deref()),
            ];
            if with_ns {
                row.insert(0, x.metadata.ns().to_string());
            }
            row
        })
        .collect();
    table::render(&header, &rows)
}

/// kubectl's columns, with the node a bound claim lives on in place of the volume name.
pub fn claims_table(items: &[crate::api::pvc::PersistentVolumeClaim], with_ns: bool) -> String {
    let mut header = vec!["NAME", "STATUS", "NODE", "CAPACITY", "ACCESS MODES", "AGE"];
    if with_ns {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|x| {
            let modes: Vec<&str> = x
                .spec
                .access_modes
                .iter()
                .map(|m| match m.as_str() {
                    "ReadWriteOnce" => "RWO",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect();
            let mut row = vec![
                x.metadata.name.clone(),
                x.phase().to_string(),
                x.node().unwrap_or("").to_string(),
                x.spec
                    .resources
                    .requests
                    .get("storage")
                    .cloned()
                    .unwrap_or_default(),
                modes.join(","),
                age(x.metadata.creation_timestamp.as_deref()),
            ];
            if with_ns {
                row.insert(0, x.metadata.ns().to_string());
            }
            row
        })
        .collect();
    table::render(&header, &rows)
}

pub fn nodes_table(nodes: &[Node], fmt: Option<OutputFormat>) -> String {
    let wide = fmt == Some(OutputFormat::Wide);
    let mut header = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
    if wide {
        header.extend(["INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "ARCH"]);
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let info = &n.status.node_info;
            let mut row = vec![
                n.metadata.name.clone(),
                node_status(n),
                node_roles(n),
                age(n.metadata.creation_timestamp.as_deref()),
                or_none(Some(&info.kubelet_version)),
            ];
            if wide {
                row.push(or_none(n.internal_ip()));
                row.push(or_none(Some(&info.os_image)));
                row.push(or_none(Some(&info.kernel_version)));
                row.push(node_arch(n));
            }
            row
        })
        .collect();
    table::render(&header, &rows)
}

/// `Ready`, `NotReady` or `Unknown` from the Ready condition, plus `,SchedulingDisabled`.
pub fn node_status(n: &Node) -> String {
    let ready = n.status.conditions.iter().find(|c| c.type_ == "Ready");
    let mut s = match ready.map(|c| c.status.as_str()) {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if n.spec.unschedulable {
        s.push_str(",SchedulingDisabled");
    }
    s
}

/// Roles from `node-role.kubernetes.io/<role>` labels, as kubectl derives them.
pub fn node_roles(n: &Node) -> String {
    let roles: Vec<&str> = n
        .metadata
        .labels
        .iter()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(r) if !r.is_empty() => Some(r),
            _ if k == "kubernetes.io/role" => Some(v.as_str()),
            _ => None,
        })
        .collect();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

/// `arm64`, or `arm/v7` when the variant matters (Pi boards differ there).
pub fn node_arch(n: &Node) -> String {
    let info = &n.status.node_info;
    match (info.architecture.as_str(), info.variant.as_str()) {
        ("", _) => "<none>".to_string(),
        (a, "") => a.to_string(),
        (a, v) => format!("{a}/{v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::meta::Condition;
    use crate::api::pod::{ContainerState, StateRunning, StateTerminated, StateWaiting};
    use crate::api::{Container, ContainerStatus};

    fn pod(statuses: Vec<ContainerStatus>) -> Pod {
        let mut p = Pod {
            api_version: "v1".into(),
            kind: "Pod".into(),
            ..Pod::default()
        };
        p.metadata.name = "web".into();
        p.spec.containers = statuses
            .iter()
            .map(|s| Container {
                name: s.name.clone(),
                image: "busybox".into(),
                ..Container::default()
            })
            .collect();
        p.status.phase = PodPhase::Running;
        p.status.container_statuses = statuses;
        p
    }

    fn running(name: &str, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready,
            state: ContainerState {
                running: Some(StateRunning::default()),
                ..ContainerState::default()
            },
            ..ContainerStatus::default()
        }
    }

    fn waiting(name: &str, reason: &str, restarts: u32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            restart_count: restarts,
            state: ContainerState {
                waiting: Some(StateWaiting {
                    reason: reason.into(),
                    message: String::new(),
                }),
                ..ContainerState::default()
            },
            ..ContainerStatus::default()
        }
    }

    fn terminated(name: &str, reason: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: ContainerState {
                terminated: Some(StateTerminated {
                    exit_code: code,
                    reason: reason.into(),
                    ..StateTerminated::default()
                }),
                ..ContainerState::default()
            },
            ..ContainerStatus::default()
        }
    }

    #[test]
    fn a_crash_looping_container_shows_crash_loop_back_off() {
        let p = pod(vec![
            running("a", true),
            waiting("b", "CrashLoopBackOff", 4),
        ]);
        assert_eq!(pod_status(&p), "CrashLoopBackOff");
        assert_eq!(pod_ready(&p), "1/2");
        assert_eq!(pod_restarts(&p), 4);
    }

    #[test]
    fn a_finished_pod_shows_completed_and_a_failed_one_error() {
        let mut p = pod(vec![terminated("a", "Completed", 0)]);
        p.status.phase = PodPhase::Succeeded;
        assert_eq!(pod_status(&p), "Completed");
        let p = pod(vec![terminated("a", "", 137)]);
        assert_eq!(pod_status(&p), "ExitCode:137");
        let p = pod(vec![terminated("a", "Error", 1)]);
        assert_eq!(pod_status(&p), "Error");
    }

    #[test]
    fn completed_sidecar_next_to_a_running_container_reads_running() {
        let p = pod(vec![running("a", true), terminated("b", "Completed", 0)]);
        assert_eq!(pod_status(&p), "Running");
    }

    #[test]
    fn a_running_pod_being_deleted_shows_terminating() {
        let mut p = pod(vec![running("a", true)]);
        assert_eq!(pod_status(&p), "Running");
        p.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        assert_eq!(pod_status(&p), "Terminating");
    }

    #[test]
    fn a_pod_without_container_statuses_shows_its_phase() {
        let mut p = pod(vec![]);
        p.status.phase = PodPhase::Pending;
        assert_eq!(pod_status(&p), "Pending");
        let p = pod(vec![waiting("a", "ContainerCreating", 0)]);
        assert_eq!(pod_status(&p), "ContainerCreating");
    }

    #[test]
    fn pod_table_has_kubectl_columns_and_wide_and_namespace_extras() {
        let mut p = pod(vec![running("a", true)]);
        p.status.pod_ip = Some("10.42.0.7".into());
        p.spec.node_name = Some("pi1".into());
        let t = pods_table(std::slice::from_ref(&p), None, false);
        assert_eq!(
            t,
            "NAME  READY  STATUS   RESTARTS  AGE\nweb   1/1    Running  0         <unknown>\n"
        );
        let t = pods_table(&[p], Some(OutputFormat::Wide), true);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE  NAME  READY"), "{t}");
        assert!(lines[0].ends_with("AGE        IP         NODE"), "{t}");
        assert!(lines[1].starts_with("default    web") && lines[1].ends_with("10.42.0.7  pi1"));
    }

    #[test]
    fn node_status_roles_and_arch_follow_labels_and_conditions() {
        let mut n = Node::default();
        n.metadata.name = "pi1".into();
        assert_eq!(node_status(&n), "Unknown");
        n.status.conditions.push(Condition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Condition::default()
        });
        n.spec.unschedulable = true;
        assert_eq!(node_status(&n), "Ready,SchedulingDisabled");
        assert_eq!(node_roles(&n), "<none>");
        n.metadata
            .labels
            .insert("node-role.kubernetes.io/control-plane".into(), "".into());
        assert_eq!(node_roles(&n), "control-plane");
        n.status.node_info.architecture = "arm".into();
        n.status.node_info.variant = "v7".into();
        assert_eq!(node_arch(&n), "arm/v7");
    }

    #[test]
    fn one_object_prints_as_itself_and_several_as_a_list() {
        let p = pod(vec![]);
        let one = render(
            std::slice::from_ref(&p),
            true,
            Some(OutputFormat::Json),
            |_| String::new(),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&one).unwrap();
        assert_eq!(v["kind"], "Pod");
        let many = render(
            &[p.clone(), p.clone()],
            false,
            Some(OutputFormat::Yaml),
            |_| String::new(),
        )
        .unwrap();
        assert!(many.contains("kind: List"), "{many}");
        let names = render(&[p], false, Some(OutputFormat::Name), |_| String::new()).unwrap();
        assert_eq!(names, "pod/web\n");
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
        let names = render(&[d], false, Some(OutputFormat::Name), |_| String::new()).unwrap();
        assert_eq!(names, "deployment.apps/web\n");
    }

    fn workload_spec() -> PodSpec {
        PodSpec {
            containers: vec![
                Container {
                    name: "main".into(),
                    image: "img:2".into(),
                    ..Container::default()
                },
                Container {
                    name: "side".into(),
                    image: "side:1".into(),
                    ..Container::default()
                },
            ],
            ..PodSpec::default()
        }
    }

    #[test]
    fn deployment_table_shows_ready_of_desired_and_wide_extras() {
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
        d.metadata.namespace = Some("prod".into());
        d.spec.replicas = Some(3);
        d.spec
            .selector
            .match_labels
            .insert("app".into(), "web".into());
        d.spec.template.spec = workload_spec();
        d.status.ready_replicas = 2;
        d.status.updated_replicas = 1;
        d.status.available_replicas = 2;
        assert_eq!(
            deployments_table(std::slice::from_ref(&d), None, false),
            "NAME  READY  UP-TO-DATE  AVAILABLE  AGE\n\
             web   2/3    1           2          <unknown>\n"
        );
        let t = deployments_table(&[d], Some(OutputFormat::Wide), true);
        assert_eq!(
            t,
            "NAMESPACE  NAME  READY  UP-TO-DATE  AVAILABLE  AGE        CONTAINERS  IMAGES        SELECTOR\n\
             prod       web   2/3    1           2          <unknown>  main,side   img:2,side:1  app=web\n"
        );
    }

    #[test]
    fn replica_set_table_shows_desired_current_ready() {
        let mut r = ReplicaSet::default();
        r.metadata.name = "web-5d8f".into();
        r.spec.replicas = Some(3);
        r.spec
            .selector
            .match_labels
            .insert("app".into(), "web".into());
        r.spec
            .selector
            .match_labels
            .insert("pod-template-hash".into(), "5d8f".into());
        r.spec.template.spec = workload_spec();
        r.status.replicas = 3;
        r.status.ready_replicas = 1;
        assert_eq!(
            replica_sets_table(std::slice::from_ref(&r), None, false),
            "NAME      DESIRED  CURRENT  READY  AGE\n\
             web-5d8f  3        3        1      <unknown>\n"
        );
        let t = replica_sets_table(&[r], Some(OutputFormat::Wide), false);
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .ends_with("main,side   img:2,side:1  app=web,pod-template-hash=5d8f"),
            "{t}"
        );
    }
}
