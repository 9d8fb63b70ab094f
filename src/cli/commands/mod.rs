//! Client verbs, one file each. Each has a `run(args, global)` entry that prints to stdout and
//! an inner function taking a [`Session`] and a writer, so tests can drive it against a fake
//! server and read what it printed.

pub mod apply;
pub mod apply_wait;
pub mod delete;
pub mod describe;
pub mod describe_workload;
pub mod drain;
pub mod get;
pub mod image;
pub mod logs;
pub mod node;
pub mod rollout;
pub mod scale;
pub mod set;
pub mod token;
pub mod version;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::args::GlobalArgs;
use super::client::{ApiError, Client};
use super::kind::Kind;
use super::kubeconfig;
use super::resource::Resource;
use crate::api::{Object, DEFAULT_NAMESPACE};

/// Output sink for the verbs: stdout in the binary, a `Vec<u8>` in tests. `Send` so the
/// verb futures stay `Send`.
pub type Out<'a> = &'a mut (dyn std::io::Write + Send);

/// A connected client plus the namespace the context defaults to.
#[derive(Debug, Clone)]
pub struct Session {
    pub client: Client,
    /// The context's namespace, or `default`.
    pub namespace: String,
}

impl Session {
    /// Resolves the config (`--config`, `--context`) and builds the client.
    pub fn open(global: &GlobalArgs) -> anyhow::Result<Session> {
        let r = kubeconfig::load(global.config.as_deref(), global.context.as_deref())?;
        Ok(Session {
            client: Client::with_ca(
                &r.server,
                &r.token,
                r.ca_pem_base64.as_deref(),
                r.insecure_skip_tls_verify,
            )?,
            namespace: r.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        })
    }

    /// Namespace to use: the `-n` flag, else the context's.
    pub fn ns(&self, flag: Option<&str>) -> String {
        flag.map(str::to_string)
            .unwrap_or_else(|| self.namespace.clone())
    }
}

/// Where manifest objects came from, for error and progress messages.
pub fn source_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// Reads and parses every file (`-` is stdin, read once) before anything is sent, so one bad
/// document means no change at all on the server.
pub fn read_manifests(files: &[PathBuf]) -> anyhow::Result<Vec<Object>> {
    let mut objects = Vec::new();
    let mut stdin_done = false;
    for path in files {
        let name = source_name(path);
        let text = if path == Path::new("-") {
            anyhow::ensure!(!stdin_done, "-f - given more than once");
            stdin_done = true;
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .with_context(|| name.clone())?;
            s
        } else {
            std::fs::read_to_string(path).with_context(|| name.clone())?
        };
        let parsed =
            crate::api::manifest::parse(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        objects.extend(parsed);
    }
    anyhow::ensure!(
        !objects.is_empty(),
        "no objects passed in {}",
        files_list(files)
    );
    Ok(objects)
}

fn files_list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| source_name(p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"<none>"` for absent values, as kubectl prints them.
pub fn or_none(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "<none>".to_string(),
    }
}

/// kubectl's AGE column from a creation timestamp.
pub fn age(ts: Option<&str>) -> String {
    ts.and_then(crate::util::time::age_seconds)
        .map(crate::util::time::human_age)
        .unwrap_or_else(|| "<unknown>".to_string())
}

/// Resolves `KIND NAME` / `KIND/NAME` for a verb that acts on one object of one of `allowed`.
pub fn one_of(
    verb: &str,
    kind: &str,
    name: Option<&str>,
    allowed: &[Kind],
) -> anyhow::Result<(Kind, String)> {
    let (kind, name) = Kind::with_name(kind, name)?;
    if !allowed.contains(&kind) {
        let names: Vec<&str> = allowed.iter().map(|k| k.plural()).collect();
        anyhow::bail!(
            "{verb} is not supported for {}: it works on {}",
            kind.plural(),
            names.join(" and ")
        );
    }
    let name = name.ok_or_else(|| {
        anyhow::anyhow!(
            "{verb} needs a NAME (as {0} NAME or {0}/NAME)",
            kind.singular()
        )
    })?;
    Ok((kind, name))
}

/// Times a read-modify-write is retried when the server reports a conflicting update.
const CONFLICT_RETRIES: usize = 5;

/// Read-modify-write of one object: GET, `change`, PUT, retried on 409 Conflict (someone else
/// wrote in between). `change` may refuse with an error, which is returned as is.
pub async fn modify<T: Resource>(
    s: &Session,
    ns: &str,
    name: &str,
    mut change: impl FnMut(&mut T) -> anyhow::Result<()>,
) -> anyhow::Result<T> {
    let path = T::KIND.object_path(ns, name);
    let mut attempt = 0;
    loop {
        let mut obj: T = s.client.get(&path).await?;
        change(&mut obj)?;
        match s.client.put::<T, T>(&path, &obj).await {
            Err(ApiError::Status(st)) if st.code == 409 && attempt < CONFLICT_RETRIES => {
                attempt += 1;
            }
            r => return Ok(r?),
        }
    }
}
