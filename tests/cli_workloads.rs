//! The workload verbs (apply/get/delete of deployments, scale, set image, rollout, cordon,
//! drain) against a small fake of the herd API on 127.0.0.1 that stores objects as JSON,
//! checking what they send and what they print.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use herd::api::apps::{Deployment, PodTemplateSpec, POD_TEMPLATE_HASH, REVISION_ANNOTATION};
use herd::api::{Object, Status};
use herd::cli::args::{
    DeleteArgs, DrainArgs, GetArgs, OutputFormat, RolloutStatusArgs, RolloutTarget,
    RolloutUndoArgs, ScaleArgs, SetImageArgs,
};
use herd::cli::client::Client;
use herd::cli::commands::{apply, delete, drain, get, node, rollout, scale, set, Session};

/// (resource plural, namespace, name); nodes use an empty namespace.
type Key = (String, String, String);

#[derive(Default)]
struct Fake {
    objects: BTreeMap<Key, Value>,
    /// Objects being deleted: GETs left before they disappear.
    dying: BTreeMap<Key, u32>,
    /// Eviction answers to give, per pod name, before answering 201 (e.g. [429]).
    eviction_script: BTreeMap<String, Vec<u16>>,
    /// Statuses a deployment's GETs walk through (first one first), for `rollout status`.
    status_script: Vec<Value>,
    requests: Vec<String>,
    /// Query strings of list requests.
    queries: Vec<BTreeMap<String, String>>,
}

type Shared = Arc<Mutex<Fake>>;

fn status(code: StatusCode, reason: &str, msg: String) -> Response {
    (code, Json(Status::failure(code.as_u16(), reason, msg))).into_response()
}

fn not_found(plural: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{plural} \"{name}\" not found"),
    )
}

fn lookup(f: &mut Fake, key: &Key) -> Option<Value> {
    if let Some(left) = f.dying.get_mut(key) {
        if *left == 0 {
            f.dying.remove(key);
            f.objects.remove(key);
        } else {
            *left -= 1;
        }
    }
    let mut v = f.objects.get(key).cloned()?;
    if key.0 == "deployments" && !f.status_script.is_empty() {
        v["status"] = f.status_script.remove(0);
        f.objects.insert(key.clone(), v.clone());
    }
    Some(v)
}

fn do_get(s: &Shared, key: Key) -> Response {
    let mut f = s.lock().unwrap();
    f.requests
        .push(format!("GET {}/{}/{}", key.0, key.1, key.2));
    match lookup(&mut f, &key) {
        Some(v) => Json(v).into_response(),
        None => not_found(&key.0, &key.2),
    }
}

fn do_put(s: &Shared, key: Key, mut body: Value) -> Response {
    let mut f = s.lock().unwrap();
    f.requests
        .push(format!("PUT {}/{}/{}", key.0, key.1, key.2));
    let Some(old) = f.objects.get(&key).cloned() else {
        return not_found(&key.0, &key.2);
    };
    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
    body["metadata"]["generation"] = json!(generation + i64::from(old["spec"] != body["spec"]));
    body["status"] = old["status"].clone();
    f.objects.insert(key, body.clone());
    Json(body).into_response()
}

fn do_list(s: &Shared, plural: &str, ns: Option<&str>, q: BTreeMap<String, String>) -> Response {
    let mut f = s.lock().unwrap();
    f.requests
        .push(format!("LIST {plural}/{}", ns.unwrap_or("*")));
    f.queries.push(q);
    let items: Vec<Value> = f
        .objects
        .iter()
        .filter(|((p, n, _), _)| p == plural && ns.is_none_or(|ns| ns == n))
        .map(|(_, v)| v.clone())
        .collect();
    Json(json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}))
        .into_response()
}

async fn apps_get(
    State(s): State<Shared>,
    Path((ns, p, n)): Path<(String, String, String)>,
) -> Response {
    do_get(&s, (p, ns, n))
}

async fn apps_put(
    State(s): State<Shared>,
    Path((ns, p, n)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    do_put(&s, (p, ns, n), body)
}

async fn apps_delete(
    State(s): State<Shared>,
    Path((ns, p, n)): Path<(String, String, String)>,
) -> Response {
    let mut f = s.lock().unwrap();
    f.requests.push(format!("DELETE {p}/{ns}/{n}"));
    let key = (p.clone(), ns, n.clone());
    if !f.objects.contains_key(&key) {
        return not_found(&p, &n);
    }
    f.dying.insert(key, 1);
    Json(Status::success("deleted")).into_response()
}

async fn apps_list(
    State(s): State<Shared>,
    Path((ns, p)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    do_list(&s, &p, Some(&ns), q)
}

async fn apps_create(
    State(s): State<Shared>,
    Path((ns, p)): Path<(String, String)>,
    Json(mut body): Json<Value>,
) -> Response {
    let mut f = s.lock().unwrap();
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    f.requests.push(format!("POST {p}/{ns}/{name}"));
    body["metadata"]["generation"] = json!(1);
    body["metadata"]["uid"] = json!(format!("{name}-uid"));
    f.objects.insert((p, ns, name), body.clone());
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn pod_get(State(s): State<Shared>, Path((ns, n)): Path<(String, String)>) -> Response {
    do_get(&s, ("pods".into(), ns, n))
}

async fn pods_all(State(s): State<Shared>) -> Response {
    do_list(&s, "pods", None, BTreeMap::new())
}

async fn evict(
    State(s): State<Shared>,
    Path((ns, n)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut f = s.lock().unwrap();
    f.requests.push(format!("EVICT {ns}/{n}"));
    assert_eq!(body["kind"], "Eviction");
    assert_eq!(body["apiVersion"], "policy/v1");
    assert_eq!(body["metadata"]["name"], n.as_str());
    let key = ("pods".to_string(), ns, n.clone());
    if !f.objects.contains_key(&key) {
        return not_found("pods", &n);
    }
    if let Some(code) = f.eviction_script.get_mut(&n).and_then(|v| {
        if v.is_empty() {
            None
        } else {
            Some(v.remove(0))
        }
    }) {
        return status(
            StatusCode::from_u16(code).unwrap(),
            "TooManyRequests",
            "Cannot evict pod as it would violate the deployment's availability".into(),
        );
    }
    f.dying.insert(key, 1);
    (StatusCode::CREATED, Json(Status::success("evicting"))).into_response()
}

async fn node_get(State(s): State<Shared>, Path(n): Path<String>) -> Response {
    do_get(&s, ("nodes".into(), String::new(), n))
}

async fn node_put(
    State(s): State<Shared>,
    Path(n): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    do_put(&s, ("nodes".into(), String::new(), n), body)
}

async fn start() -> (Session, Shared) {
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/apis/apps/v1/namespaces/{ns}/{plural}",
            get(apps_list).post(apps_create),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/{plural}/{name}",
            get(apps_get).put(apps_put).delete(apps_delete),
        )
        .route("/api/v1/pods", get(pods_all))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(pod_get))
        .route("/api/v1/namespaces/{ns}/pods/{name}/eviction", post(evict))
        .route("/api/v1/nodes/{name}", get(node_get).put(node_put))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let session = Session {
        client: Client::new(&format!("http://{addr}"), "t").unwrap(),
        namespace: "default".into(),
    };
    (session, shared)
}

fn put_obj(f: &Shared, plural: &str, ns: &str, v: Value) {
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    f.lock()
        .unwrap()
        .objects
        .insert((plural.into(), ns.into(), name), v);
}

fn obj(f: &Shared, plural: &str, ns: &str, name: &str) -> Value {
    f.lock().unwrap().objects[&(plural.into(), ns.into(), name.into())].clone()
}

fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "main", "image": image},
                                   {"name": "side", "image": "side:1"}]}})
}

fn deployment(image: &str, revision: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default", "uid": "web-uid", "generation": 2,
                        "annotations": {REVISION_ANNOTATION: revision}},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": template(image)},
           "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                      "readyReplicas": 2, "availableReplicas": 2}})
}

fn replica_set(hash: &str, image: &str, revision: &str, cause: &str) -> Value {
    let mut t = template(image);
    t["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
           "metadata": {"name": format!("web-{hash}"), "namespace": "default",
                        "uid": format!("rs-{hash}"),
                        "annotations": {REVISION_ANNOTATION: revision,
                                        "kubernetes.io/change-cause": cause},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "web", "uid": "web-uid",
                                             "controller": true}]},
           "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web",
                                                                POD_TEMPLATE_HASH: hash}},
                    "template": t}})
}

fn text(buf: Vec<u8>) -> String {
    String::from_utf8(buf).unwrap()
}

fn target(kind: &str) -> RolloutTarget {
    RolloutTarget {
        kind: kind.into(),
        name: None,
        namespace: None,
    }
}

fn manifest_deployment(image: &str) -> Object {
    let mut v = deployment(image, "1");
    for k in ["uid", "generation", "annotations"] {
        v["metadata"].as_object_mut().unwrap().remove(k);
    }
    v.as_object_mut().unwrap().remove("status");
    let d: Deployment = serde_json::from_value(v).unwrap();
    Object::Deployment(Box::new(d))
}

#[tokio::test]
async fn apply_creates_then_configures_a_deployment_and_get_shows_it() {
    let (s, fake) = start().await;
    let mut out = Vec::new();
    apply::apply(&s, vec![manifest_deployment("img:1")], None, &mut out)
        .await
        .unwrap();
    apply::apply(&s, vec![manifest_deployment("img:1")], None, &mut out)
        .await
        .unwrap();
    apply::apply(&s, vec![manifest_deployment("img:2")], None, &mut out)
        .await
        .unwrap();
    assert_eq!(
        text(out),
        "deployment.apps/web created\ndeployment.apps/web unchanged\n\
         deployment.apps/web configured\n"
    );
    assert!(fake
        .lock()
        .unwrap()
        .requests
        .contains(&"POST deployments/default/web".to_string()));

    put_obj(&fake, "deployments", "default", deployment("img:2", "2"));
    let args = GetArgs {
        kind: "deploy".into(),
        name: None,
        output: Some(OutputFormat::Wide),
        namespace: None,
        all_namespaces: false,
        selector: Some("app in (web,api),!canary".into()),
    };
    let mut out = Vec::new();
    get::get(&s, &args, &mut out).await.unwrap();
    let t = text(out);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        "NAME  READY  UP-TO-DATE  AVAILABLE  AGE        CONTAINERS  IMAGES        SELECTOR"
    );
    assert_eq!(
        lines[1],
        "web   2/3    3           2          <unknown>  main,side   img:2,side:1  app=web"
    );
    let q = fake.lock().unwrap().queries.last().cloned().unwrap();
    assert_eq!(q["labelSelector"], "app in (web,api),!canary");
    let mut out = Vec::new();
    let args = GetArgs {
        kind: "deployments".into(),
        output: Some(OutputFormat::Name),
        selector: None,
        ..args
    };
    get::get(&s, &args, &mut out).await.unwrap();
    assert_eq!(text(out), "deployment.apps/web\n");
}

#[tokio::test]
async fn delete_deploy_waits_and_prints_the_group() {
    let (s, fake) = start().await;
    put_obj(&fake, "deployments", "default", deployment("img:1", "1"));
    let args = DeleteArgs {
        kind: Some("deploy".into()),
        name: Some("web".into()),
        filenames: vec![],
        namespace: None,
        grace_period: None,
        wait: true,
    };
    let targets = delete::targets(&args).unwrap();
    let mut out = Vec::new();
    delete::delete(&s, &targets, &args, &mut out).await.unwrap();
    assert_eq!(text(out), "deployment.apps \"web\" deleted\n");
    assert!(fake.lock().unwrap().objects.is_empty());
}

#[tokio::test]
async fn scale_puts_the_new_replica_count() {
    let (s, fake) = start().await;
    put_obj(&fake, "deployments", "default", deployment("img:1", "1"));
    let args = ScaleArgs {
        kind: "deploy/web".into(),
        name: None,
        replicas: 5,
        namespace: None,
    };
    let mut out = Vec::new();
    scale::scale(&s, &args, &mut out).await.unwrap();
    assert_eq!(text(out), "deployment.apps/web scaled\n");
    let d = obj(&fake, "deployments", "default", "web");
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 3);
    assert_eq!(
        d["metadata"]["uid"], "web-uid",
        "identity carried through the PUT"
    );
}

#[tokio::test]
async fn set_image_updates_named_containers_and_names_an_unknown_one() {
    let (s, fake) = start().await;
    put_obj(&fake, "deployments", "default", deployment("img:1", "1"));
    let args = |v: &[&str]| SetImageArgs {
        args: v.iter().map(|s| s.to_string()).collect(),
        namespace: None,
    };
    let mut out = Vec::new();
    set::image(&s, &args(&["deploy", "web", "main=img:2"]), &mut out)
        .await
        .unwrap();
    assert_eq!(text(out), "deployment.apps/web image updated\n");
    let d = obj(&fake, "deployments", "default", "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:2"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][1]["image"],
        "side:1"
    );

    let puts_before = fake.lock().unwrap().requests.len();
    let err = set::image(
        &s,
        &args(&["deploy/web", "main=img:3", "c2=x"]),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        herd::cli::error_message(&err).as_deref(),
        Some("error: unable to find container named \"c2\"")
    );
    let requests = fake.lock().unwrap().requests.clone();
    assert!(
        requests[puts_before..]
            .iter()
            .all(|r| !r.starts_with("PUT")),
        "{requests:?}"
    );

    set::image(&s, &args(&["deploy/web", "*=all:9"]), &mut Vec::new())
        .await
        .unwrap();
    let d = obj(&fake, "deployments", "default", "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][1]["image"],
        "all:9"
    );
}

#[tokio::test]
async fn rollout_undo_restores_the_previous_template_without_the_hash_label() {
    let (s, fake) = start().await;
    put_obj(&fake, "deployments", "default", deployment("img:2", "2"));
    put_obj(
        &fake,
        "replicasets",
        "default",
        replica_set("a1", "img:1", "1", "first"),
    );
    put_obj(
        &fake,
        "replicasets",
        "default",
        replica_set("b2", "img:2", "2", "second"),
    );
    let mut foreign = replica_set("zz", "img:0", "1", "not ours");
    foreign["metadata"]["ownerReferences"][0]["uid"] = json!("other-uid");
    put_obj(&fake, "replicasets", "default", foreign);

    let args = RolloutUndoArgs {
        target: target("deploy/web"),
        to_revision: 0,
    };
    let mut out = Vec::new();
    rollout::undo(&s, &args, &mut out).await.unwrap();
    assert_eq!(text(out), "deployment.apps/web rolled back\n");
    let d = obj(&fake, "deployments", "default", "web");
    let typed = |v: &Value| -> PodTemplateSpec { serde_json::from_value(v.clone()).unwrap() };
    assert_eq!(typed(&d["spec"]["template"]), typed(&template("img:1")));
    assert_eq!(
        d["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "first"
    );

    let mut out = Vec::new();
    rollout::undo(
        &s,
        &RolloutUndoArgs {
            to_revision: 1,
            ..args.clone()
        },
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        text(out),
        "deployment.apps/web skipped rollback (current template already matches revision 1)\n"
    );
    let err = rollout::undo(
        &s,
        &RolloutUndoArgs {
            to_revision: 9,
            ..args
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find specified revision 9 in history"
    );

    let mut out = Vec::new();
    let h = herd::cli::args::RolloutHistoryArgs {
        target: target("deployment/web"),
        revision: None,
    };
    rollout::history(&s, &h, &mut out).await.unwrap();
    assert_eq!(
        text(out),
        "deployment.apps/web\nREVISION  CHANGE-CAUSE\n1         first\n2         second\n"
    );
}

#[tokio::test]
async fn rollout_status_prints_progress_until_rolled_out() {
    let (s, fake) = start().await;
    put_obj(&fake, "deployments", "default", deployment("img:2", "2"));
    let st = |obs: i64, rep: i64, upd: i64, avail: i64| {
        json!({"observedGeneration": obs, "replicas": rep, "updatedReplicas": upd,
               "availableReplicas": avail})
    };
    fake.lock().unwrap().status_script = vec![
        st(1, 3, 0, 3),
        st(2, 4, 1, 3),
        st(2, 4, 1, 3),
        st(2, 4, 3, 3),
        st(2, 3, 3, 2),
        st(2, 3, 3, 3),
    ];
    let args = RolloutStatusArgs {
        target: target("deploy/web"),
        timeout: std::time::Duration::from_secs(30),
        watch: true,
    };
    let mut out = Vec::new();
    rollout::status(&s, &args, &mut out).await.unwrap();
    assert_eq!(
        text(out),
        "Waiting for deployment spec update to be observed...\n\
         Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n\
         Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n\
         Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...\n\
         deployment \"web\" successfully rolled out\n"
    );
}

#[tokio::test]
async fn rollout_status_fails_on_a_passed_progress_deadline() {
    let (s, fake) = start().await;
    let mut d = deployment("img:2", "2");
    d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet \"web-b2\" has timed out progressing."}]);
    put_obj(&fake, "deployments", "default", d);
    let args = RolloutStatusArgs {
        target: target("deploy/web"),
        timeout: std::time::Duration::ZERO,
        watch: true,
    };
    let err = rollout::status(&s, &args, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "deployment \"web\" exceeded its progress deadline: ReplicaSet \"web-b2\" has timed out \
         progressing."
    );
}

#[tokio::test]
async fn pause_resume_and_restart_edit_the_spec() {
    let (s, fake) = start().await;
    put_obj(&fake, "deployments", "default", deployment("img:1", "1"));
    let t = target("deploy/web");
    let mut out = Vec::new();
    rollout::pause(&s, &t, true, &mut out).await.unwrap();
    assert_eq!(
        obj(&fake, "deployments", "default", "web")["spec"]["paused"],
        true
    );
    let err = rollout::pause(&s, &t, true, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "deployments.apps \"web\" is already paused"
    );
    assert!(rollout::restart(&s, &t, &mut Vec::new()).await.is_err());
    rollout::pause(&s, &t, false, &mut out).await.unwrap();
    rollout::restart(&s, &t, &mut out).await.unwrap();
    assert_eq!(
        text(out),
        "deployment.apps/web paused\ndeployment.apps/web resumed\ndeployment.apps/web restarted\n"
    );
    let d = obj(&fake, "deployments", "default", "web");
    let stamp = d["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(herd::util::time::age_seconds(&stamp).is_some(), "{stamp}");
}

fn node_json() -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "pi1"},
           "spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]},
           "status": {}})
}

fn pod_json(name: &str, node: &str, owned: bool) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "img:1"}]},
        "status": {"phase": "Running"}});
    if owned {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "web-a1", "uid": "rs-a1", "controller": true}]);
    }
    p
}

#[tokio::test]
async fn cordon_and_uncordon_keep_other_node_fields() {
    let (s, fake) = start().await;
    put_obj(&fake, "nodes", "", node_json());
    let mut out = Vec::new();
    node::set_unschedulable(&s, "pi1", true, &mut out)
        .await
        .unwrap();
    node::set_unschedulable(&s, "pi1", true, &mut out)
        .await
        .unwrap();
    let n = obj(&fake, "nodes", "", "pi1");
    assert_eq!(n["spec"]["unschedulable"], true);
    assert_eq!(n["spec"]["taints"][0]["key"], "dedicated");
    node::set_unschedulable(&s, "pi1", false, &mut out)
        .await
        .unwrap();
    assert_eq!(
        text(out),
        "node/pi1 cordoned\nnode/pi1 already cordoned\nnode/pi1 uncordoned\n"
    );
}

fn drain_args(force: bool) -> DrainArgs {
    DrainArgs {
        node: "pi1".into(),
        force,
        grace_period: -1,
        timeout: std::time::Duration::from_secs(30),
    }
}

#[tokio::test]
async fn drain_retries_a_refused_eviction_then_waits_for_the_pods_to_go() {
    let (s, fake) = start().await;
    put_obj(&fake, "nodes", "", node_json());
    put_obj(&fake, "pods", "default", pod_json("web-a", "pi1", true));
    put_obj(&fake, "pods", "default", pod_json("web-b", "pi1", true));
    put_obj(&fake, "pods", "default", pod_json("web-c", "pi2", true));
    let mut done = pod_json("job-x", "pi1", false);
    done["status"]["phase"] = json!("Succeeded");
    put_obj(&fake, "pods", "default", done);
    fake.lock()
        .unwrap()
        .eviction_script
        .insert("web-a".into(), vec![429]);

    let (mut out, mut err) = (Vec::new(), Vec::new());
    drain::drain(&s, &drain_args(false), &mut out, &mut err)
        .await
        .unwrap();
    let out = text(out);
    assert!(
        out.starts_with(
            "node/pi1 cordoned\nevicting pod default/web-a\nevicting pod default/web-b\n"
        ),
        "{out}"
    );
    assert!(out.ends_with("node/pi1 drained\n"), "{out}");
    assert_eq!(
        out.matches("evicting pod default/web-a").count(),
        2,
        "{out}"
    );
    assert_eq!(
        out.matches("evicting pod default/web-b").count(),
        1,
        "{out}"
    );
    assert!(
        out.contains("pod/web-a evicted\n") && out.contains("pod/web-b evicted\n"),
        "{out}"
    );
    assert!(!out.contains("web-c") && !out.contains("job-x"), "{out}");
    assert_eq!(
        text(err),
        "error when evicting pods/\"web-a\" -n \"default\" (will retry after 1s): Cannot evict \
         pod as it would violate the deployment's availability\n"
    );
    let f = fake.lock().unwrap();
    let evictions: Vec<&String> = f
        .requests
        .iter()
        .filter(|r| r.starts_with("EVICT"))
        .collect();
    assert_eq!(
        evictions,
        [
            "EVICT default/web-a",
            "EVICT default/web-b",
            "EVICT default/web-a"
        ]
    );
    assert!(!f
        .objects
        .contains_key(&("pods".into(), "default".into(), "web-a".into())));
    assert_eq!(
        f.objects[&("nodes".into(), String::new(), "pi1".into())]["spec"]["unschedulable"],
        true
    );
}

#[tokio::test]
async fn drain_refuses_pods_without_a_controller_unless_forced() {
    let (s, fake) = start().await;
    put_obj(&fake, "nodes", "", node_json());
    put_obj(&fake, "pods", "default", pod_json("web-a", "pi1", true));
    put_obj(&fake, "pods", "default", pod_json("x", "pi1", false));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let e = drain::drain(&s, &drain_args(false), &mut out, &mut err)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to drain node \"pi1\": cannot delete Pods that declare no controller (use \
         --force to override): default/x"
    );
    assert_eq!(text(out), "node/pi1 cordoned\n");
    assert!(!fake
        .lock()
        .unwrap()
        .requests
        .iter()
        .any(|r| r.starts_with("EVICT")));

    let (mut out, mut err) = (Vec::new(), Vec::new());
    drain::drain(&s, &drain_args(true), &mut out, &mut err)
        .await
        .unwrap();
    assert_eq!(
        text(err),
        "Warning: deleting Pods that declare no controller: default/x\n"
    );
    let out = text(out);
    assert!(out.starts_with("node/pi1 already cordoned\n"), "{out}");
    assert!(
        out.contains("pod/x evicted\n") && out.ends_with("node/pi1 drained\n"),
        "{out}"
    );
}

#[tokio::test]
async fn drain_gives_up_at_the_timeout_naming_the_pods_left() {
    let (s, fake) = start().await;
    put_obj(&fake, "nodes", "", node_json());
    put_obj(&fake, "pods", "default", pod_json("web-a", "pi1", true));
    fake.lock()
        .unwrap()
        .eviction_script
        .insert("web-a".into(), vec![429; 100]);
    let args = DrainArgs {
        timeout: std::time::Duration::from_secs(1),
        ..drain_args(false)
    };
    let e = drain::drain(&s, &args, &mut Vec::new(), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to drain node \"pi1\": timed out after 1s waiting for default/web-a"
    );
}
