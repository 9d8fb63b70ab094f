//! `herd firstboot prepare`: the board settings of `herd.toml` (host name, Wi-Fi, SSH keys),
//! written into `/etc` before the network starts, at every boot, so the file on the boot
//! partition stays the one place to change them.
//!
//! The renderers are pure; [`apply`] writes only what changed, under a root directory so
//! tests (and image builds) never touch the real `/etc`.

use std::path::{Path, PathBuf};

use super::config::{BootConfig, Wifi};

/// First line of every file `prepare` owns. A Wi-Fi or keys file without it was written by
/// someone else and is left alone.
pub const MARKER: &str = "# Written by `herd firstboot prepare`";

/// The interface wpa_supplicant@wlan0.service reads its configuration for.
pub const WPA_CONF: &str = "etc/wpa_supplicant/wpa_supplicant-wlan0.conf";
pub const AUTHORIZED_KEYS: &str = "root/.ssh/authorized_keys";

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setting the host name to {name:?}: {source}")]
    Hostname { name: String, source: nix::Error },
}

/// What [`apply`] did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Written(PathBuf),
    Removed(PathBuf),
    /// Left as it is: not written by herd, so herd.toml does not own it.
    Foreign(PathBuf),
}

/// `/etc/hosts` with the Debian `127.0.1.1` line naming this host; other lines untouched.
pub fn hosts_with(existing: &str, name: &str) -> String {
    let line = format!("127.0.1.1\t{name}");
    let mut found = false;
    let mut out: Vec<String> = Vec::new();
    for l in existing.lines() {
        if l.split_whitespace().next() == Some("127.0.1.1") {
            if !found {
                out.push(line.clone());
            }
            found = true;
        } else {
            out.push(l.to_string());
        }
    }
    if !found {
        // After localhost, where Debian puts it.
        let at = out
            .iter()
            .position(|l| l.split_whitespace().next() == Some("127.0.0.1"))
            .map_or(0, |i| i + 1);
        out.insert(at, line);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// wpa_supplicant's configuration for one network. The SSID is written in hex so any bytes
/// work; the passphrase was checked to be printable ASCII without a quote.
pub fn wpa_supplicant_conf(w: &Wifi, source: &Path) -> String {
    let mut s = format!(
        "{MARKER} from {} at every boot: edit that file, not this one.\n\
         ctrl_interface=/run/wpa_supplicant\n\
         update_config=0\n",
        source.display()
    );
    if let Some(c) = &w.country {
        s.push_str(&format!("country={c}\n"));
    }
    s.push_str("network={\n");
    s.push_str(&format!("\tssid={}\n", hex::encode(w.ssid.as_bytes())));
    // Hidden networks are found too.
    s.push_str("\tscan_ssid=1\n");
    match &w.psk {
        Some(p) if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) => {
            s.push_str(&format!("\tpsk={}\n", p.to_ascii_lowercase()))
        }
        Some(p) => s.push_str(&format!("\tpsk=\"{p}\"\n")),
        None => s.push_str("\tkey_mgmt=NONE\n"),
    }
    s.push_str("}\n");
    s
}

pub fn authorized_keys(keys: &[String], source: &Path) -> String {
    let mut s = format!(
        "{MARKER} from {} at every boot: edit that file, not this one.\n",
        source.display()
    );
    for k in keys {
        s.push_str(k.trim());
        s.push('\n');
    }
    s
}

/// Writes the host name, hosts file, Wi-Fi configuration and root's SSH keys for `cfg` under
/// `root`, and sets the running host name when `root` is `/`. Returns what changed.
pub fn apply(
    root: &Path,
    cfg: &BootConfig,
    node_name: &str,
    source: &Path,
) -> Result<Vec<Change>, SystemError> {
    let mut changes = Vec::new();
    let hostname = root.join("etc/hostname");
    write_if_changed(&hostname, &format!("{node_name}\n"), 0o644, &mut changes)?;
    let hosts = root.join("etc/hosts");
    let old_hosts = read_or_empty(&hosts)?;
    write_if_changed(
        &hosts,
        &hosts_with(&old_hosts, node_name),
        0o644,
        &mut changes,
    )?;
    // The live host name too: DHCP announces it, and the worker's default node name is it.
    if root == Path::new("/") {
        let current = nix::unistd::gethostname().ok();
        if current.as_deref().and_then(|h| h.to_str()) != Some(node_name) {
            nix::unistd::sethostname(node_name).map_err(|source| SystemError::Hostname {
                name: node_name.to_string(),
                source,
            })?;
        }
    }
    let wifi = cfg.wifi.as_ref().map(|w| wpa_supplicant_conf(w, source));
    managed(&root.join(WPA_CONF), wifi.as_deref(), 0o600, &mut changes)?;
    let keys = (!cfg.ssh_authorized_keys.is_empty())
        .then(|| authorized_keys(&cfg.ssh_authorized_keys, source));
    managed(
        &root.join(AUTHORIZED_KEYS),
        keys.as_deref(),
        0o600,
        &mut changes,
    )?;
    Ok(changes)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SystemError + '_ {
    move |source| SystemError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_or_empty(path: &Path) -> Result<String, SystemError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io(path)(e)),
    }
}

fn write_if_changed(
    path: &Path,
    text: &str,
    mode: u32,
    changes: &mut Vec<Change>,
) -> Result<(), SystemError> {
    if read_or_empty(path)? == text {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    crate::util::fsutil::write_atomic(path, text.as_bytes(), mode).map_err(io(path))?;
    changes.push(Change::Written(path.to_path_buf()));
    Ok(())
}

/// A file herd.toml owns when it carries [`MARKER`] (or does not exist): written when wanted,
/// removed when the setting is gone from herd.toml, never touched when someone else wrote it.
fn managed(
    path: &Path,
    want: Option<&str>,
    mode: u32,
    changes: &mut Vec<Change>,
) -> Result<(), SystemError> {
    let existing = read_or_empty(path)?;
    let exists = path.exists();
    if exists && !existing.starts_with(MARKER) {
        if want.is_some() {
            changes.push(Change::Foreign(path.to_path_buf()));
        }
        return Ok(());
    }
    match want {
        Some(text) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                // ~/.ssh must not be group- or world-writable or sshd ignores the keys.
                if dir.ends_with(".ssh") {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                        .map_err(io(dir))?;
                }
            }
            write_if_changed(path, text, mode, changes)
        }
        None if exists => {
            std::fs::remove_file(path).map_err(io(path))?;
            changes.push(Change::Removed(path.to_path_buf()));
            Ok(())
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firstboot::config::parse;

    const SRC: &str = "/boot/firmware/herd.toml";

    fn cfg(extra: &str) -> BootConfig {
        parse(
            SRC,
            &format!("master = \"http://m:6443\"\ntoken = \"t\"\n{extra}"),
        )
        .unwrap()
    }

    #[test]
    fn the_hosts_file_gets_one_line_for_this_host() {
        let debian = "127.0.0.1\tlocalhost\n127.0.1.1\therd\n::1\t\tlocalhost\n";
        assert_eq!(
            hosts_with(debian, "pi-attic"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tpi-attic\n::1\t\tlocalhost\n"
        );
        assert_eq!(
            hosts_with("127.0.0.1 localhost\n::1 localhost\n", "n1"),
            "127.0.0.1 localhost\n127.0.1.1\tn1\n::1 localhost\n"
        );
        assert_eq!(hosts_with("", "n1"), "127.0.1.1\tn1\n");
    }

    #[test]
    fn wifi_renders_a_hex_ssid_and_the_right_key_kind() {
        let c =
            cfg("[wifi]\nssid = \"my \\\"home\\\"\"\npsk = \"correct horse\"\ncountry = \"de\"\n");
        let text = wpa_supplicant_conf(c.wifi.as_ref().unwrap(), Path::new(SRC));
        assert!(text.starts_with(MARKER));
        assert!(text.contains("country=DE\n"));
        assert!(text.contains(&format!("\tssid={}\n", hex::encode("my \"home\""))));
        assert!(text.contains("\tpsk=\"correct horse\"\n"));
        let c = cfg("[wifi]\nssid = \"cafe\"\n");
        let text = wpa_supplicant_conf(c.wifi.as_ref().unwrap(), Path::new(SRC));
        assert!(text.contains("\tkey_mgmt=NONE\n") && !text.contains("psk"));
        assert!(!text.contains("country"));
        let hex_key = "AB".repeat(32);
        let c = cfg(&format!("[wifi]\nssid = \"x\"\npsk = \"{hex_key}\"\n"));
        let text = wpa_supplicant_conf(c.wifi.as_ref().unwrap(), Path::new(SRC));
        assert!(text.contains(&format!("\tpsk={}\n", "ab".repeat(32))));
    }

    #[test]
    fn apply_writes_then_changes_nothing_the_second_time() {
        let root = tempfile::tempdir().unwrap();
        let c = cfg("[wifi]\nssid = \"home\"\npsk = \"12345678\"\n\
                     [ssh]\nauthorized_keys = [\"ssh-ed25519 AAAA me\"]\n");
        let changes = apply(root.path(), &c, "pi1", Path::new(SRC)).unwrap();
        assert_eq!(changes.len(), 4, "{changes:?}");
        let r = root.path();
        assert_eq!(
            std::fs::read_to_string(r.join("etc/hostname")).unwrap(),
            "pi1\n"
        );
        assert!(std::fs::read_to_string(r.join("etc/hosts"))
            .unwrap()
            .contains("127.0.1.1\tpi1"));
        let keys = std::fs::read_to_string(r.join(AUTHORIZED_KEYS)).unwrap();
        assert!(keys.ends_with("ssh-ed25519 AAAA me\n"));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(r.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(WPA_CONF), 0o600);
        assert_eq!(mode("root/.ssh"), 0o700);
        assert!(apply(r, &c, "pi1", Path::new(SRC)).unwrap().is_empty());
    }

    #[test]
    fn settings_removed_from_herd_toml_are_removed_from_the_board() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let with = cfg("[wifi]\nssid = \"home\"\n");
        apply(r, &with, "pi1", Path::new(SRC)).unwrap();
        assert!(r.join(WPA_CONF).exists());
        let changes = apply(r, &cfg(""), "pi1", Path::new(SRC)).unwrap();
        assert_eq!(changes, [Change::Removed(r.join(WPA_CONF))]);
        assert!(!r.join(WPA_CONF).exists());
    }

    #[test]
    fn files_someone_else_wrote_are_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("root/.ssh")).unwrap();
        std::fs::write(r.join(AUTHORIZED_KEYS), "ssh-rsa AAAA mine\n").unwrap();
        let c = cfg("[ssh]\nauthorized_keys = [\"ssh-ed25519 AAAA other\"]\n");
        let changes = apply(r, &c, "pi1", Path::new(SRC)).unwrap();
        assert!(changes.contains(&Change::Foreign(r.join(AUTHORIZED_KEYS))));
        assert_eq!(
            std::fs::read_to_string(r.join(AUTHORIZED_KEYS)).unwrap(),
            "ssh-rsa AAAA mine\n"
        );
        // And without keys in herd.toml the foreign file is not removed either.
        apply(r, &cfg(""), "pi1", Path::new(SRC)).unwrap();
        assert!(r.join(AUTHORIZED_KEYS).exists());
    }
}
