//! The client verbs against a small fake of the herd HTTP API on 127.0.0.1, checking what they
//! send and what they print.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use herd::api::{List, Object, Pod, Status};
use herd::cli::args::{DeleteArgs, GetArgs, LogsArgs, OutputFormat, TokenCreateArgs};
use herd::cli::client::Client;
use herd::cli::commands::{apply, delete, get, logs, token, Session};
use herd::cli::kind::Kind;

const TOKEN: &str = "admin-token";

#[derive(Default)]
struct Fake {
    pods: BTreeMap<(String, String), Pod>,
    /// Pods being deleted: GETs left before they disappear.
    dying: BTreeMap<(String, String), u32>,
    requests: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn status(code: StatusCode, reason: &str, msg: String) -> Response {
    (code, Json(Status::failure(code.as_u16(), reason, msg))).into_response()
}

fn authorized(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn get_pod(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if !authorized(&h) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "bad token".into());
    }
    let mut f = s.lock().unwrap();
    f.requests.push(format!("GET {ns}/{name}"));
    let key = (ns, name.clone());
    if let Some(left) = f.dying.get_mut(&key) {
        if *left == 0 {
            f.dying.remove(&key);
            f.pods.remove(&key);
        } else {
            *left -= 1;
        }
    }
    match f.pods.get(&key) {
        Some(p) => Json(p.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        ),
    }
}

async fn create_pod(
    State(s): State<Shared>,
    Path(ns): Path<String>,
    Json(mut pod): Json<Pod>,
) -> Response {
    let mut f = s.lock().unwrap();
    f.requests.push(format!("POST {ns}/{}", pod.metadata.name));
    pod.metadata.generation = 1;
    pod.metadata.creation_timestamp = Some(herd::util::time::now_rfc3339());
    f.pods.insert((ns, pod.metadata.name.clone()), pod.clone());
    (StatusCode::CREATED, Json(pod)).into_response()
}

async fn put_pod(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Json(mut pod): Json<Pod>,
) -> Response {
    let mut f = s.lock().unwrap();
    f.requests.push(format!("PUT {ns}/{name}"));
    let Some(old) = f.pods.get(&(ns.clone(), name.clone())).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        );
    };
    pod.metadata.generation = old.metadata.generation + i64::from(old.spec != pod.spec);
    f.pods.insert((ns, name), pod.clone());
    Json(pod).into_response()
}

async fn delete_pod(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut f = s.lock().unwrap();
    f.requests.push(format!(
        "DELETE {ns}/{name} grace={}",
        q.get("gracePeriodSeconds")
            .map(String::as_str)
            .unwrap_or("-")
    ));
    let key = (ns, name.clone());
    let Some(p) = f.pods.get_mut(&key) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        );
    };
    p.metadata.deletion_timestamp = Some(herd::util::time::now_rfc3339());
    let p = p.clone();
    f.dying.insert(key, 2);
    Json(p).into_response()
}

async fn list_pods(State(s): State<Shared>, Path(ns): Path<String>) -> Response {
    let f = s.lock().unwrap();
    let items: Vec<Pod> = f
        .pods
        .iter()
        .filter(|((n, _), _)| *n == ns)
        .map(|(_, p)| p.clone())
        .collect();
    Json(List::new(items)).into_response()
}

async fn pod_log(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let tail = q.get("tailLines").cloned().unwrap_or_default();
    format!("line one\nline two tail={tail}\n").into_response()
}

async fn create_token(Json(body): Json<serde_json::Value>) -> Response {
    let ttl = body["ttlSeconds"].as_u64().unwrap_or(0);
    let role = body["role"].as_str().unwrap_or("join").to_string();
    let reply = serde_json::json!({
        "token": format!("tok-{ttl}-{role}"),
        "id": "abc123",
        "role": role,
        "status": "active",
        "createdAt": "2026-11-24T00:00:00Z",
        "singleUse": body["singleUse"].as_bool().unwrap_or(false),
        "uses": 0,
    });
    (StatusCode::CREATED, Json(reply)).into_response()
}

async fn start() -> (Session, Shared) {
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/api/v1/namespaces/{ns}/pods",
            get(list_pods).post(create_pod),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(get_pod).put(put_pod).delete(delete_pod),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route("/apis/herd.io/v1/tokens", post(create_token))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let session = Session {
        client: Client::new(&format!("http://{addr}"), TOKEN).unwrap(),
        namespace: "default".into(),
    };
    (session, shared)
}

fn pod(name: &str, image: &str) -> Object {
    let mut p = Pod::default();
    p.metadata.name = name.into();
    p.spec.containers.push(herd::api::Container {
        name: "app".into(),
        image: image.into(),
        ..Default::default()
    });
    Object::Pod(Box::new(p))
}

fn text(buf: Vec<u8>) -> String {
    String::from_utf8(buf).unwrap()
}

#[tokio::test]
async fn apply_creates_then_reports_unchanged_then_configured() {
    let (s, fake) = start().await;
    let mut out = Vec::new();
    apply::apply(&s, vec![pod("web", "busybox:1")], None, &mut out)
        .await
        .unwrap();
    apply::apply(&s, vec![pod("web", "busybox:1")], None, &mut out)
        .await
        .unwrap();
    apply::apply(&s, vec![pod("web", "busybox:2")], None, &mut out)
        .await
        .unwrap();
    assert_eq!(
        text(out),
        "pod/web created\npod/web unchanged\npod/web configured\n"
    );
    let f = fake.lock().unwrap();
    assert_eq!(
        f.requests,
        [
            "GET default/web",
            "POST default/web",
            "GET default/web",
            "PUT default/web",
            "GET default/web",
            "PUT default/web"
        ]
    );
}

#[tokio::test]
async fn apply_puts_objects_without_a_namespace_in_the_flag_namespace() {
    let (s, fake) = start().await;
    let mut out = Vec::new();
    apply::apply(&s, vec![pod("web", "busybox:1")], Some("prod"), &mut out)
        .await
        .unwrap();
    assert!(fake
        .lock()
        .unwrap()
        .pods
        .contains_key(&("prod".to_string(), "web".to_string())));
}

fn get_args(kind: &str, name: Option<&str>, output: Option<OutputFormat>) -> GetArgs {
    GetArgs {
        kind: kind.into(),
        name: name.map(str::to_string),
        output,
        namespace: None,
        all_namespaces: false,
        selector: None,
    }
}

#[tokio::test]
async fn get_lists_pods_as_a_table_and_by_name() {
    let (s, _fake) = start().await;
    let mut sink = Vec::new();
    apply::apply(
        &s,
        vec![pod("web", "busybox:1"), pod("db", "busybox:1")],
        None,
        &mut sink,
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    get::get(&s, &get_args("po", None, None), &mut out)
        .await
        .unwrap();
    let t = text(out);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "NAME  READY  STATUS   RESTARTS  AGE");
    assert!(
        lines[1].starts_with("db    0/1    Pending  0         "),
        "{t}"
    );
    assert!(
        lines[2].starts_with("web   0/1    Pending  0         "),
        "{t}"
    );
    let mut out = Vec::new();
    get::get(
        &s,
        &get_args("pods", None, Some(OutputFormat::Name)),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(text(out), "pod/db\npod/web\n");
    let mut out = Vec::new();
    get::get(
        &s,
        &get_args("pod/web", None, Some(OutputFormat::Json)),
        &mut out,
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["metadata"]["name"], "web");
}

#[tokio::test]
async fn getting_a_missing_pod_reads_like_kubectl() {
    let (s, _fake) = start().await;
    let err = get::get(&s, &get_args("pod", Some("nope"), None), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        herd::cli::error_message(&err).as_deref(),
        Some("Error from server (NotFound): pods \"nope\" not found")
    );
}

#[tokio::test]
async fn a_wrong_token_is_reported_as_unauthorized() {
    let (s, _fake) = start().await;
    let bad = Session {
        client: Client::new(s.client.server(), "wrong").unwrap(),
        namespace: "default".into(),
    };
    let err = get::get(&bad, &get_args("pod", Some("x"), None), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        herd::cli::error_message(&err).as_deref(),
        Some("Error from server (Unauthorized): bad token")
    );
}

fn delete_args(wait: bool) -> DeleteArgs {
    DeleteArgs {
        kind: Some("pod".into()),
        name: Some("web".into()),
        filenames: vec![],
        namespace: None,
        grace_period: Some(0),
        wait,
    }
}

#[tokio::test]
async fn delete_waits_until_the_pod_is_gone() {
    let (s, fake) = start().await;
    apply::apply(&s, vec![pod("web", "busybox:1")], None, &mut Vec::new())
        .await
        .unwrap();
    let args = delete_args(true);
    let targets = delete::targets(&args).unwrap();
    assert_eq!(targets[0].kind, Kind::Pod);
    let mut out = Vec::new();
    delete::delete(&s, &targets, &args, &mut out).await.unwrap();
    assert_eq!(text(out), "pod \"web\" deleted\n");
    let f = fake.lock().unwrap();
    assert!(f.pods.is_empty());
    assert!(f
        .requests
        .contains(&"DELETE default/web grace=0".to_string()));
    let polls = f
        .requests
        .iter()
        .filter(|r| *r == "GET default/web")
        .count();
    assert!(polls >= 3, "{:?}", f.requests);
}

#[tokio::test]
async fn deleting_a_missing_pod_fails_without_printing_deleted() {
    let (s, _fake) = start().await;
    let args = delete_args(false);
    let targets = delete::targets(&args).unwrap();
    let mut out = Vec::new();
    let err = delete::delete(&s, &targets, &args, &mut out)
        .await
        .unwrap_err();
    assert!(out.is_empty());
    assert_eq!(herd::cli::error_message(&err), None);
}

#[tokio::test]
async fn logs_stream_the_body_and_pass_tail() {
    let (s, _fake) = start().await;
    let args = LogsArgs {
        pod: "pod/web".into(),
        container: None,
        tail: Some(2),
        follow: false,
        previous: false,
        namespace: None,
    };
    let mut out = Vec::new();
    logs::logs(&s, &args, &mut out).await.unwrap();
    assert_eq!(text(out), "line one\nline two tail=2\n");
}

#[tokio::test]
async fn token_create_prints_the_token_alone_on_the_last_line() {
    let (s, _fake) = start().await;
    let args = TokenCreateArgs {
        ttl: Some(std::time::Duration::from_secs(3600)),
        ..Default::default()
    };
    let mut out = Vec::new();
    token::create(&s, &args, &mut out).await.unwrap();
    assert_eq!(text(out).lines().last(), Some("tok-3600-join"));
    let args = TokenCreateArgs {
        role: herd::cli::args::TokenRole::ReadOnly,
        ..Default::default()
    };
    let mut out = Vec::new();
    token::create(&s, &args, &mut out).await.unwrap();
    assert_eq!(text(out).lines().last(), Some("tok-0-read-only"));
}
