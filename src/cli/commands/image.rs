//! `herd image`: the master's image cache (`push`, `ls`, `prune`, over the API) and this
//! machine's worker image store (`import`, `ls --local`: no server involved, so images can be
//! side-loaded onto boards without a master or registry).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{Out, Session};
use crate::cli::args::{
    GlobalArgs, ImageImportArgs, ImageLsArgs, ImagePruneArgs, ImagePullArgs, ImagePushArgs,
    OutputFormat,
};
use crate::cli::table;
use crate::master::registry::gc::Report;
use crate::master::registry::push::Pushed;
use crate::master::registry::serve::{ImageView, IMAGES_PATH};
use crate::worker::images::{Image, ImageStore, ImageSummary};

/// The worker's data dir when `--data-dir` is not given: a standalone worker's, else the
/// `herd up` root.
pub fn default_data_dir() -> PathBuf {
    let worker = PathBuf::from("/var/lib/herd/worker");
    if worker.is_dir() {
        worker
    } else {
        PathBuf::from("/var/lib/herd")
    }
}

/// `herd up` keeps the worker under `<data-dir>/worker`; a standalone worker's data dir is the
/// worker dir itself. Either way the store is its `images/`.
pub fn store_root(data_dir: &Path) -> PathBuf {
    let nested = data_dir.join("worker");
    if nested.is_dir() {
        nested.join("images")
    } else {
        data_dir.join("images")
    }
}

fn root_of(flag: Option<&Path>) -> PathBuf {
    store_root(&flag.map(Path::to_path_buf).unwrap_or_else(default_data_dir))
}

pub async fn import(args: &ImageImportArgs) -> anyhow::Result<()> {
    let root = root_of(args.data_dir.as_deref());
    let file = args.file.clone();
    let tag = args.tag.clone();
    // Import hashes and unpacks layers: blocking work, off the async threads.
    let images = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Image>> {
        let store = ImageStore::open(&root)
            .map_err(|e| anyhow::anyhow!("image store {}: {e}", root.display()))?;
        store.import_archive(&file, tag.as_deref()).map_err(|e| {
            // Name the archive once: some store errors already start with its path.
            let msg = e.to_string();
            let name = file.display().to_string();
            if msg.starts_with(&name) {
                anyhow::anyhow!("{msg}")
            } else {
                anyhow::anyhow!("{name}: {msg}")
            }
        })
    })
    .await??;
    let mut out = std::io::stdout();
    print_imported(&images, &mut out)
}

pub fn print_imported(images: &[Image], out: Out<'_>) -> anyhow::Result<()> {
    for i in images {
        writeln!(
            out,
            "imported {} ({} {})",
            i.reference,
            short_id(&i.id),
            i.platform
        )?;
    }
    Ok(())
}

/// `herd image pull`: into this machine's store, with a progress bar on a terminal and plain
/// lines otherwise (logs, CI).
pub async fn pull(args: &ImagePullArgs) -> anyhow::Result<()> {
    use crate::worker::images::pull::Progress;
    use crate::worker::images::Reference;
    use crate::worker::pulling::{PullSource, Route};
    use std::io::IsTerminal as _;

    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let root = store_root(&data_dir);
    let opts = crate::up::pull_options(&args.pull)?;
    let mut store = ImageStore::open(&root)
        .map_err(|e| anyhow::anyhow!("image store {}: {e}", root.display()))?;
    if let Some(p) = &opts.platform {
        store = store.with_platform(p.clone());
    }
    let reference = Reference::parse(&args.reference)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.reference))?;
    // A joined worker's credentials (beside its store) route the pull through the master.
    let creds_file = root.parent().unwrap_or(&data_dir).join("node.json");
    let route = match crate::worker::join::load(&creds_file) {
        Ok(Some(c)) if !opts.direct => PullSource::master_route(&c),
        _ => Route::Direct,
    };
    let source = PullSource::new(route, opts.settings);
    let name = reference.to_string();
    let report: std::sync::Arc<dyn Fn(Progress) + Send + Sync> = if std::io::stderr().is_terminal()
    {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .map_err(|e| anyhow::anyhow!("progress bar: {e}"))?
            .progress_chars("=> "),
        );
        bar.set_message(name.clone());
        std::sync::Arc::new(move |p: Progress| {
            bar.set_length(p.total);
            bar.set_position(p.done);
        })
    } else {
        // A line per 10 %: readable in a log, not one per chunk.
        let last = std::sync::atomic::AtomicU64::new(u64::MAX);
        let name = name.clone();
        std::sync::Arc::new(move |p: Progress| {
            let step = p.percent() / 10;
            if last.swap(step, std::sync::atomic::Ordering::Relaxed) != step {
                eprintln!(
                    "{name}: {}% ({} of {})",
                    p.percent(),
                    crate::worker::pods::image::human(p.done),
                    crate::worker::pods::image::human(p.total)
                );
            }
        })
    };
    let puller = source.puller(&reference);
    let pulled = store
        .pull(&puller, &reference, report)
        .await
        .map_err(|e| anyhow::anyhow!("pulling {name} from {}: {e}", source.describe()))?;
    let how = if pulled.downloaded {
        format!(
            "{} downloaded",
            crate::worker::pods::image::human(pulled.bytes)
        )
    } else {
        "up to date".to_owned()
    };
    println!(
        "pulled {} ({} {}, {how}) digest {}",
        pulled.image.reference,
        short_id(&pulled.image.id),
        pulled.image.platform,
        pulled.digest
    );
    Ok(())
}

pub async fn ls(args: &ImageLsArgs) -> anyhow::Result<()> {
    let root = root_of(args.data_dir.as_deref());
    // Listing must not create a store as a side effect of a wrong --data-dir.
    anyhow::ensure!(
        root.is_dir(),
        "no image store at {}: pass --data-dir (the worker's data dir)",
        root.display()
    );
    let list = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<ImageSummary>> {
        let store = ImageStore::open(&root)
            .map_err(|e| anyhow::anyhow!("image store {}: {e}", root.display()))?;
        store
            .list()
            .map_err(|e| anyhow::anyhow!("image store {}: {e}", root.display()))
    })
    .await??;
    std::io::stdout().write_all(images_table(&list).as_bytes())?;
    Ok(())
}

pub async fn run_push(args: &ImagePushArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    push(&session, args, &mut std::io::stdout()).await
}

/// Streams the archive to the master, which verifies every digest before storing anything.
pub async fn push(s: &Session, args: &ImagePushArgs, out: Out<'_>) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let len = file.metadata().await.ok().map(|m| m.len());
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut query = Vec::new();
    if let Some(n) = &args.name {
        query.push(("name", n.clone()));
    }
    let pushed: Vec<Pushed> = s
        .client
        .upload(IMAGES_PATH, &query, reqwest::Body::wrap_stream(stream), len)
        .await
        .map_err(|e| anyhow::anyhow!("push {}: {e}", args.file.display()))?;
    for p in pushed {
        writeln!(out, "pushed {} ({})", p.reference, short_digest(&p.digest))?;
    }
    Ok(())
}

pub async fn run_cache_ls(args: &ImageLsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    cache_ls(&session, args, &mut std::io::stdout()).await
}

pub async fn cache_ls(s: &Session, args: &ImageLsArgs, out: Out<'_>) -> anyhow::Result<()> {
    let list: Vec<ImageView> = s.client.get(IMAGES_PATH).await?;
    match args.output {
        Some(OutputFormat::Json) => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
        Some(_) => write!(out, "{}", yaml_serde::to_string(&list)?)?,
        None => write!(
            out,
            "{}",
            cache_table(&list, chrono::Utc::now().timestamp())
        )?,
    }
    Ok(())
}

/// `sha256:` and the first 12 hex digits.
pub fn short_digest(d: &str) -> String {
    match d.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", &hex[..hex.len().min(12)]),
        None => d.to_string(),
    }
}

pub fn cache_table(list: &[ImageView], now: i64) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let mut name = i.repository.clone();
            if i.pushed {
                name.push_str(" (pushed)");
            }
            vec![
                name,
                i.tag.clone().unwrap_or_else(|| "<none>".into()),
                short_digest(&i.digest),
                i.platforms
                    .as_ref()
                    .filter(|p| !p.is_empty())
                    .map(|p| p.join(","))
                    .unwrap_or_else(|| "<unknown>".into()),
                human_size(i.size),
                format!("{} ago", crate::util::time::human_age(now - i.last_used)),
            ]
        })
        .collect();
    table::render(
        &["NAME", "TAG", "DIGEST", "PLATFORMS", "SIZE", "LAST-USED"],
        &rows,
    )
}

pub async fn run_prune(args: &ImagePruneArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    prune(&session, args, &mut std::io::stdout()).await
}

pub async fn prune(s: &Session, args: &ImagePruneArgs, out: Out<'_>) -> anyhow::Result<()> {
    let mut query = vec![
        ("all", args.all.to_string()),
        ("dryRun", args.dry_run.to_string()),
        ("graceSeconds", args.grace.as_secs().to_string()),
    ];
    if let Some(d) = args.unused_for {
        query.push(("unusedSeconds", d.as_secs().to_string()));
    }
    let report: Report = s.client.delete(IMAGES_PATH, &query).await?;
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for i in &report.images {
        let r = match &i.tag {
            Some(t) => format!("{}:{t}", i.repo),
            None => format!("{}@{}", i.repo, i.digest),
        };
        writeln!(out, "{verb} image {r}")?;
    }
    writeln!(
        out,
        "{verb} {} images, {} blobs, {}",
        report.images.len(),
        report.blobs.len(),
        human_size(report.bytes)
    )?;
    Ok(())
}

pub fn images_table(list: &[ImageSummary]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let created = i
                .created
                .as_deref()
                .and_then(crate::util::time::age_seconds)
                .map(|s| format!("{} ago", crate::util::time::human_age(s)))
                .unwrap_or_else(|| "<unknown>".to_string());
            vec![
                i.reference.clone(),
                short_id(&i.id),
                created,
                human_size(i.size),
            ]
        })
        .collect();
    table::render(&["REFERENCE", "IMAGE ID", "CREATED", "SIZE"], &rows)
}

/// Docker's 12-hex-digit image id.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Decimal units, as `docker images` prints sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[unit]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_under_worker_when_the_data_dir_is_an_up_root() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(store_root(dir.path()), dir.path().join("images"));
        std::fs::create_dir(dir.path().join("worker")).unwrap();
        assert_eq!(store_root(dir.path()), dir.path().join("worker/images"));
    }

    #[test]
    fn sizes_and_ids_print_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.261MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn image_table_has_reference_id_created_and_size() {
        let t = images_table(&[ImageSummary {
            reference: "docker.io/library/busybox:1".into(),
            id: "sha256:0123456789abcdef".into(),
            size: 2_000_000,
            created: None,
        }]);
        assert_eq!(
            t,
            "REFERENCE                    IMAGE ID      CREATED    SIZE\n\
             docker.io/library/busybox:1  0123456789ab  <unknown>  2MB\n"
        );
    }
}
