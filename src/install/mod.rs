//! `herd install master|worker|up` and `herd uninstall`: put the running binary, the role's
//! systemd unit and its environment file in place (under `--prefix` for images and tests),
//! idempotently, then let systemd start it; and take all of that away again, keeping
//! `/var/lib/herd` unless `--purge`.
//!
//! Files are decided first and written after, so a refused install (bad flag, conflicting
//! role) writes nothing. The units are embedded from the repository's `systemd/` directory.

pub mod config;
pub mod files;
pub mod systemd;

use std::path::{Path, PathBuf};

use crate::cli::{InstallArgs, UninstallArgs};

use config::{RoleFiles, Settings};
use files::{Change, Layout};
use systemd::{RealSystemd, Systemd};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the running herd binary (/proc/self/exe): {0}")]
    CurrentExe(std::io::Error),
    #[error("{command}: {problem}")]
    Systemctl { command: String, problem: String },
    #[error("{flag} does not apply to `herd install {role}`")]
    FlagNotForRole { flag: String, role: &'static str },
    #[error("{field} {value:?}: {problem}")]
    BadValue {
        field: String,
        value: String,
        problem: String,
    },
    #[error("`herd install worker` needs both --join and --token (or neither, to keep an existing /etc/herd/worker.env)")]
    JoinSettings,
    #[error(
        "{path} does not exist yet: the first `herd install worker` needs --join URL --token TOKEN"
    )]
    NoJoinConfig { path: PathBuf },
    #[error("{path} is installed and conflicts with `herd install {wanted}` ({why}): run `herd uninstall` first")]
    Conflict {
        path: PathBuf,
        wanted: &'static str,
        why: &'static str,
    },
    #[error("{count} mounts below {dir} (e.g. {first}): pods still run from it; stop them (or reboot) before --purge")]
    Mounted {
        dir: PathBuf,
        count: usize,
        first: PathBuf,
    },
}

/// Each path touched, with what happened to it, in order.
#[derive(Debug, Default)]
pub struct Outcome {
    pub entries: Vec<(Change, PathBuf)>,
    /// What was (or was not) done with systemctl, and why.
    pub notes: Vec<String>,
}

impl Outcome {
    fn push(&mut self, change: Change, path: PathBuf) {
        self.entries.push((change, path));
    }

    pub fn changes(&self) -> usize {
        self.entries.iter().filter(|(c, _)| c.is_change()).count()
    }

    fn print(&self, what: &str) {
        for (change, path) in &self.entries {
            println!("  {change:<10} {}", path.display());
        }
        match self.changes() {
            0 => println!("{what}: no changes"),
            1 => println!("{what}: 1 change"),
            n => println!("{what}: {n} changes"),
        }
        for n in &self.notes {
            println!("{n}");
        }
    }
}

/// `herd install ROLE`: installs into the machine (or `--prefix`) and starts the service.
pub fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let layout = Layout::new(args.prefix.as_deref());
    let exe = std::fs::read("/proc/self/exe").map_err(InstallError::CurrentExe)?;
    let mut sd = RealSystemd;
    let out = install_into(&layout, args, &exe, &mut sd)?;
    out.print(&format!("herd install {}", config::role_name(args.role)));
    Ok(())
}

/// `herd uninstall`: stops the services and removes what `install` put in place.
pub fn uninstall(args: &UninstallArgs) -> anyhow::Result<()> {
    let layout = Layout::new(args.prefix.as_deref());
    let mut sd = RealSystemd;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let out = uninstall_from(&layout, args.purge, &mountinfo, &mut sd)?;
    if args.prefix.is_none() {
        // The services are stopped: the pod network's bridge, nft table and routes go too.
        crate::worker::net::remove_node_network();
    }
    out.print("herd uninstall");
    Ok(())
}

/// The whole install, with the binary's bytes and systemd given.
pub fn install_into(
    layout: &Layout,
    args: &InstallArgs,
    exe: &[u8],
    sd: &mut dyn Systemd,
) -> Result<Outcome, InstallError> {
    let role = config::files_for(args.role);
    let role_name = config::role_name(args.role);
    let settings = Settings {
        join: args.join.clone(),
        token: args.token.clone(),
        ca_hash: args.ca_hash.clone(),
        node_name: args.node_name.clone(),
        node_labels: args.node_labels.clone(),
    };
    config::validate(args.role, &settings)?;
    for other in config::conflicts(args.role) {
        let path = layout.unit_dir().join(other.unit_name);
        if path.exists() {
            return Err(InstallError::Conflict {
                path,
                wanted: role_name,
                why: "`herd up` runs a master and a worker itself",
            });
        }
    }
    let env_path = layout.config_dir().join(role.env_name);
    // Flags given: the file is rewritten from them. None: an existing file is the user's (it
    // may have been edited) and is kept; a missing one gets the defaults, except a worker's,
    // which cannot join without a URL and a token.
    let env_text = if !settings.is_empty() || !env_path.exists() {
        if args.role == crate::cli::InstallRole::Worker && settings.is_empty() {
            return Err(InstallError::NoJoinConfig { path: env_path });
        }
        Some(config::render_env(args.role, &settings))
    } else {
        None
    };

    let mut out = Outcome::default();
    let bin = layout.binary();
    out.push(files::ensure_file(&bin, exe, 0o755)?, bin);
    let unit = layout.unit_dir().join(role.unit_name);
    out.push(
        files::ensure_file(&unit, role.unit_text.as_bytes(), 0o644)?,
        unit,
    );
    let conf_dir = layout.config_dir();
    out.push(files::ensure_dir(&conf_dir, 0o755)?, conf_dir);
    let change = match &env_text {
        Some(text) => files::ensure_file(&env_path, text.as_bytes(), role.env_mode)?,
        None => Change::Kept,
    };
    out.push(change, env_path);
    let data = layout.data_dir();
    out.push(files::ensure_dir(&data, 0o755)?, data.clone());
    for sub in role.data_subdirs {
        let d = data.join(sub);
        out.push(files::ensure_dir(&d, 0o700)?, d);
    }
    let changed = out.changes() > 0;
    out.notes = activate(layout, args.no_start, changed, &role, sd)?;
    Ok(out)
}

/// Reloads, enables and (re)starts the unit when that makes sense here; otherwise says why not.
pub fn activate(
    layout: &Layout,
    no_start: bool,
    changed: bool,
    role: &RoleFiles,
    sd: &mut dyn Systemd,
) -> Result<Vec<String>, InstallError> {
    let unit = role.unit_name;
    let by_hand = format!("systemctl daemon-reload && systemctl enable --now {unit}");
    if !layout.is_root() {
        return Ok(vec![format!(
            "installed under {}: systemd not touched (run `{by_hand}` on the target)",
            layout.prefix.display()
        )]);
    }
    if no_start {
        return Ok(vec![format!("--no-start: start it with `{by_hand}`")]);
    }
    if !sd.is_running() {
        return Ok(vec![format!(
            "systemd is not PID 1 on this machine: {unit} installed but not started; run \
             `herd {}` in the foreground instead",
            config::role_name(role.role)
        )]);
    }
    if changed {
        sd.systemctl(&["daemon-reload"])?;
        sd.systemctl(&["enable", unit])?;
        // restart starts a stopped unit too, and makes a running one pick up the new files.
        sd.systemctl(&["restart", unit])?;
        Ok(vec![format!("{unit} enabled and (re)started")])
    } else {
        sd.systemctl(&["enable", "--now", unit])?;
        Ok(vec![format!("{unit} enabled and running")])
    }
}

/// The whole uninstall, with the mount table and systemd given.
pub fn uninstall_from(
    layout: &Layout,
    purge: bool,
    mountinfo: &str,
    sd: &mut dyn Systemd,
) -> Result<Outcome, InstallError> {
    let mut out = Outcome::default();
    let installed: Vec<&RoleFiles> = config::ALL
        .iter()
        .filter(|r| layout.unit_dir().join(r.unit_name).exists())
        .collect();
    let systemd = layout.is_root() && sd.is_running();
    if systemd {
        for r in &installed {
            sd.systemctl(&["disable", "--now", r.unit_name])?;
            out.notes
                .push(format!("{} stopped and disabled", r.unit_name));
        }
    } else if layout.is_root() && !installed.is_empty() {
        out.notes.push(
            "systemd is not PID 1 on this machine: no service stopped (stop any herd running \
             in the foreground yourself)"
                .into(),
        );
    }
    let data = layout.data_dir();
    if purge {
        let mounts = files::mounts_below(mountinfo, &data);
        if let Some(first) = mounts.first() {
            return Err(InstallError::Mounted {
                dir: data,
                count: mounts.len(),
                first: first.clone(),
            });
        }
    }
    for r in config::ALL {
        let unit = layout.unit_dir().join(r.unit_name);
        out.push(files::remove_file(&unit)?, unit);
    }
    let bin = layout.binary();
    out.push(files::remove_file(&bin)?, bin);
    for r in config::ALL {
        let env = layout.config_dir().join(r.env_name);
        out.push(files::remove_file(&env)?, env);
    }
    let conf_dir = layout.config_dir();
    out.push(files::remove_empty_dir(&conf_dir)?, conf_dir);
    if purge {
        out.push(remove_tree(&data)?, data);
    } else if data.exists() {
        out.push(Change::Kept, data);
    }
    if systemd && !installed.is_empty() {
        sd.systemctl(&["daemon-reload"])?;
    }
    out.entries.retain(|(c, _)| *c != Change::Absent);
    Ok(out)
}

fn remove_tree(dir: &Path) -> Result<Change, InstallError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(Change::Removed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Change::Absent),
        Err(source) => Err(InstallError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::systemd::FakeSystemd;
    use super::*;
    use crate::cli::InstallRole;

    fn args(role: InstallRole, prefix: &Path) -> InstallArgs {
        InstallArgs {
            role,
            prefix: Some(prefix.to_path_buf()),
            join: None,
            token: None,
            ca_hash: None,
            node_name: None,
            node_labels: Vec::new(),
            no_start: false,
        }
    }

    #[test]
    fn a_prefix_install_never_calls_systemctl() {
        let dir = tempfile::tempdir().unwrap();
        let mut sd = FakeSystemd {
            running: true,
            ..FakeSystemd::default()
        };
        let out = install_into(
            &Layout::new(Some(dir.path())),
            &args(InstallRole::Master, dir.path()),
            b"bin",
            &mut sd,
        )
        .unwrap();
        assert!(sd.calls.is_empty());
        assert!(out.notes[0].contains("systemd not touched"));
    }

    #[test]
    fn on_the_real_system_a_change_reloads_enables_and_restarts() {
        let mut sd = FakeSystemd {
            running: true,
            ..FakeSystemd::default()
        };
        let root = Layout::new(None);
        activate(&root, false, true, &config::WORKER, &mut sd).unwrap();
        assert_eq!(
            sd.calls,
            [
                "daemon-reload",
                "enable herd-worker.service",
                "restart herd-worker.service"
            ]
        );
        sd.calls.clear();
        activate(&root, false, false, &config::WORKER, &mut sd).unwrap();
        assert_eq!(sd.calls, ["enable --now herd-worker.service"]);
    }

    #[test]
    fn without_systemd_as_pid_1_nothing_is_started_and_the_note_says_so() {
        let mut sd = FakeSystemd::default();
        let notes = activate(&Layout::new(None), false, true, &config::UP, &mut sd).unwrap();
        assert!(sd.calls.is_empty());
        assert!(notes[0].contains("not PID 1"), "{notes:?}");
        let notes = activate(&Layout::new(None), true, true, &config::UP, &mut sd).unwrap();
        assert!(notes[0].contains("--no-start"), "{notes:?}");
    }

    #[test]
    fn a_first_worker_install_without_join_settings_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let e = install_into(
            &Layout::new(Some(dir.path())),
            &args(InstallRole::Worker, dir.path()),
            b"bin",
            &mut FakeSystemd::default(),
        )
        .unwrap_err();
        assert!(matches!(e, InstallError::NoJoinConfig { .. }), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn up_is_refused_next_to_an_installed_worker() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(Some(dir.path()));
        let mut a = args(InstallRole::Worker, dir.path());
        a.join = Some("http://m:6443".into());
        a.token = Some("t".into());
        install_into(&layout, &a, b"bin", &mut FakeSystemd::default()).unwrap();
        let e = install_into(
            &layout,
            &args(InstallRole::Up, dir.path()),
            b"bin",
            &mut FakeSystemd::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("herd-worker.service"), "{e}");
    }

    #[test]
    fn uninstall_on_the_real_system_disables_what_is_installed() {
        // Only the systemctl calls are checked: nothing exists under this prefix, and the real
        // root is never touched by tests.
        let mut sd = FakeSystemd {
            running: true,
            ..FakeSystemd::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let out = uninstall_from(&Layout::new(Some(dir.path())), false, "", &mut sd).unwrap();
        assert!(sd.calls.is_empty());
        assert_eq!(out.changes(), 0);
    }

    #[test]
    fn purge_is_refused_while_pods_are_mounted_below_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(Some(dir.path()));
        let mi = format!(
            "90 22 0:50 / {}/var/lib/herd/worker/containers/u/c/rootfs rw - overlay overlay rw",
            dir.path().display()
        );
        let e = uninstall_from(&layout, true, &mi, &mut FakeSystemd::default()).unwrap_err();
        assert!(matches!(e, InstallError::Mounted { count: 1, .. }), "{e}");
    }
}
