//! `herd.toml`, the file a user writes onto an image's boot partition: how the board joins
//! (master, token, CA hash, node name, labels) and how it gets online (Wi-Fi, SSH keys).
//!
//! Parsing is strict: an unknown key, a missing `master` or `token` and every invalid value is
//! an error naming the key, because a board that silently ignores a typo never joins and has
//! no screen to say why.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::api::validate;

/// Keys allowed at the top level, in `[wifi]` and in `[ssh]`.
const TOP_KEYS: &[&str] = &[
    "master",
    "token",
    "ca_hash",
    "node_name",
    "labels",
    "wifi",
    "ssh",
];
const WIFI_KEYS: &[&str] = &["ssid", "psk", "country"];
const SSH_KEYS: &[&str] = &["authorized_keys"];

/// The token line of `images/herd.toml.example`: a file copied without editing says so.
pub const PLACEHOLDER_TOKEN: &str = "PASTE-THE-JOIN-TOKEN-HERE";
/// The ca_hash line of `images/herd.toml.example`.
pub const PLACEHOLDER_CA_HASH: &str = "sha256:PASTE-THE-CA-HASH-HERE";

/// Linux limits host names to 64 bytes; a node name becomes the board's host name.
const HOSTNAME_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: not valid TOML: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: unknown key `{key}` (known keys{scope}: {known})")]
    UnknownKey {
        file: String,
        key: String,
        scope: String,
        known: String,
    },
    #[error("{file}: `{key}` is missing: {hint}")]
    Missing {
        file: String,
        key: &'static str,
        hint: &'static str,
    },
    #[error("{file}: `{key}`: {problem}")]
    Invalid {
        file: String,
        key: String,
        problem: String,
    },
}

/// Wi-Fi to join before the network comes up.
#[derive(Clone, PartialEq, Eq)]
pub struct Wifi {
    pub ssid: String,
    /// WPA2/WPA3-personal passphrase (8 to 63 characters) or raw 64-hex-digit key; none for an
    /// open network.
    pub psk: Option<String>,
    /// ISO 3166 country code for the regulatory domain (which channels and powers are legal).
    pub country: Option<String>,
}

/// A valid `herd.toml`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// The master's API URL, as printed by `herd master`.
    pub master: String,
    /// Join token; only used until the first successful join.
    pub token: String,
    /// `sha256:<64 hex>` of the cluster CA: the join trusts an https master only if its CA
    /// has this hash (required for https, which `herd master` serves by default).
    pub ca_hash: Option<String>,
    /// Node and host name; default derived from the machine id (see [`default_node_name`]).
    pub node_name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub wifi: Option<Wifi>,
    /// Public keys allowed to log in as root over SSH.
    pub ssh_authorized_keys: Vec<String>,
}

// Secrets (token, passphrase) never reach logs through Debug.
impl fmt::Debug for BootConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootConfig")
            .field("master", &self.master)
            .field("token", &"<hidden>")
            .field("ca_hash", &self.ca_hash)
            .field("node_name", &self.node_name)
            .field("labels", &self.labels)
            .field("wifi", &self.wifi)
            .field("ssh_authorized_keys", &self.ssh_authorized_keys.len())
            .finish()
    }
}

impl fmt::Debug for Wifi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wifi")
            .field("ssid", &self.ssid)
            .field("psk", &self.psk.as_ref().map(|_| "<hidden>"))
            .field("country", &self.country)
            .finish()
    }
}

impl BootConfig {
    /// The node name to use: the configured one, else one derived from the machine id.
    pub fn node_name_or(&self, machine_id: &str) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(|| default_node_name(machine_id))
    }

    /// Labels as the `KEY=VALUE` strings `herd worker --node-label` takes.
    pub fn label_args(&self) -> Vec<String> {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

/// `herd-` and the first 8 hex digits of the machine id: unique per board (systemd makes the id
/// at first boot) and stable across reboots. Every board flashed from one image would otherwise
/// share the image's host name.
pub fn default_node_name(machine_id: &str) -> String {
    let id = machine_id.trim();
    match id.get(..8) {
        Some(head) if id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("herd-{}", head.to_ascii_lowercase())
        }
        // No id yet ("uninitialized", empty): a fixed name, still a valid one.
        _ => "herd-node".to_string(),
    }
}

// The file as TOML types; every field optional so a missing one gets our message, not serde's.
#[derive(Deserialize)]
struct RawConfig {
    master: Option<String>,
    token: Option<String>,
    ca_hash: Option<String>,
    node_name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    wifi: Option<RawWifi>,
    ssh: Option<RawSsh>,
}

#[derive(Deserialize)]
struct RawWifi {
    ssid: Option<String>,
    psk: Option<String>,
    country: Option<String>,
}

#[derive(Deserialize)]
struct RawSsh {
    authorized_keys: Option<Vec<String>>,
}

/// Parses and validates `text`, the content of `file` (named in every error).
pub fn parse(file: &str, text: &str) -> Result<BootConfig, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        file: file.to_string(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax(one_line(&e.to_string())))?;
    check_keys(file, &table, "", TOP_KEYS)?;
    for (section, keys) in [("wifi", WIFI_KEYS), ("ssh", SSH_KEYS)] {
        match table.get(section) {
            Some(toml::Value::Table(t)) => check_keys(file, t, section, keys)?,
            Some(other) => {
                return Err(invalid(
                    file,
                    section,
                    format!("must be a table ([{section}]), not a {}", other.type_str()),
                ))
            }
            None => {}
        }
    }
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            invalid(file, &key, one_line(&e.into_inner().to_string()))
        })?;
    validate_raw(file, raw)
}

fn validate_raw(file: &str, raw: RawConfig) -> Result<BootConfig, ConfigError> {
    let master = raw.master.ok_or(ConfigError::Missing {
        file: file.to_string(),
        key: "master",
        hint: "the URL of the master's API as printed by `herd master`, e.g. \
               master = \"http://192.168.1.10:6443\"",
    })?;
    check_master(&master).map_err(|p| invalid(file, "master", p))?;
    let token = raw.token.ok_or(ConfigError::Missing {
        file: file.to_string(),
        key: "token",
        hint: "a join token from `herd token create` (or the line `herd master` prints)",
    })?;
    check_token(&token).map_err(|p| invalid(file, "token", p))?;
    match &raw.ca_hash {
        Some(h) => check_ca_hash(h).map_err(|p| invalid(file, "ca_hash", p))?,
        None if master.starts_with("https://") => {
            return Err(ConfigError::Missing {
                file: file.to_string(),
                key: "ca_hash",
                hint: "an https master is trusted only with the hash of its CA: copy the \
                       sha256:... after --ca-hash in the line `herd master` prints",
            })
        }
        None => {}
    }
    if let Some(n) = &raw.node_name {
        check_node_name(n).map_err(|p| invalid(file, "node_name", p))?;
    }
    let labels = raw.labels.unwrap_or_default();
    for (k, v) in &labels {
        let key = format!("labels.{k}");
        validate::validate_label_key(k).map_err(|p| invalid(file, &key, p))?;
        validate::validate_label_value(v).map_err(|p| invalid(file, &key, p))?;
    }
    let wifi = raw.wifi.map(|w| check_wifi(file, w)).transpose()?;
    let keys = raw.ssh.and_then(|s| s.authorized_keys).unwrap_or_default();
    for (i, k) in keys.iter().enumerate() {
        check_ssh_key(k).map_err(|p| invalid(file, &format!("ssh.authorized_keys[{i}]"), p))?;
    }
    Ok(BootConfig {
        master: master.trim_end_matches('/').to_string(),
        token,
        ca_hash: raw.ca_hash.map(|h| h.to_ascii_lowercase()),
        node_name: raw.node_name,
        labels,
        wifi,
        ssh_authorized_keys: keys,
    })
}

fn invalid(file: &str, key: &str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_string(),
        key: key.to_string(),
        problem,
    }
}

/// toml's messages span several lines (a source excerpt with a caret); the journal wants one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && *l != "|"
                && !l.starts_with("| ")
                && !l.contains(" | ")
                // The key path, which the error names already.
                && !l.starts_with("in `")
        })
        .collect::<Vec<_>>()
        .join(": ")
}

fn check_keys(
    file: &str,
    table: &toml::Table,
    section: &str,
    known: &[&str],
) -> Result<(), ConfigError> {
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(ConfigError::UnknownKey {
            file: file.to_string(),
            key: if section.is_empty() {
                k.clone()
            } else {
                format!("{section}.{k}")
            },
            scope: if section.is_empty() {
                String::new()
            } else {
                format!(" in [{section}]")
            },
            known: known.join(", "),
        }),
    }
}

fn check_master(url: &str) -> Result<(), String> {
    let example = "expected https://HOST:PORT as printed by `herd master`, e.g. \
                   https://192.168.1.10:6443";
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err(format!("{url:?}: {example}"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: {e}; {example}"))?;
    if authority.is_empty() || parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} names no host; {example}"));
    }
    if authority.contains('@') || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{url:?}: no user, query or fragment allowed; {example}"
        ));
    }
    Ok(())
}

fn check_token(token: &str) -> Result<(), String> {
    // The value itself stays out of messages: it is a secret.
    if token.is_empty() {
        return Err("must not be empty".into());
    }
    if token == PLACEHOLDER_TOKEN {
        return Err(
            "still the example's placeholder: paste a token from `herd token create`".into(),
        );
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters (copy it exactly)".into());
    }
    Ok(())
}

fn check_ca_hash(hash: &str) -> Result<(), String> {
    if hash == PLACEHOLDER_CA_HASH {
        return Err(
            "still the example's placeholder: paste the sha256:... that `herd master` prints \
             after --ca-hash"
                .into(),
        );
    }
    match hash.split_once(':') {
        Some((algo, hex))
            if algo.eq_ignore_ascii_case("sha256")
                && hex.len() == 64
                && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{hash:?} must be sha256: and 64 hex digits, as printed after --ca-hash by \
             `herd master`"
        )),
    }
}

fn check_node_name(name: &str) -> Result<(), String> {
    validate::validate_dns1123_subdomain(name)?;
    if name.len() > HOSTNAME_MAX {
        return Err(format!(
            "{name:?} must be no more than {HOSTNAME_MAX} characters (it becomes the host name)"
        ));
    }
    Ok(())
}

fn check_wifi(file: &str, w: RawWifi) -> Result<Wifi, ConfigError> {
    let ssid = w.ssid.ok_or(ConfigError::Missing {
        file: file.to_string(),
        key: "wifi.ssid",
        hint: "the name of the Wi-Fi network, e.g. ssid = \"home\" (or remove [wifi])",
    })?;
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(invalid(
            file,
            "wifi.ssid",
            format!("{ssid:?} must be 1 to 32 bytes long"),
        ));
    }
    if let Some(psk) = &w.psk {
        check_psk(psk).map_err(|p| invalid(file, "wifi.psk", p))?;
    }
    if let Some(c) = &w.country {
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(invalid(
                file,
                "wifi.country",
                format!("{c:?} must be a two-letter country code, e.g. \"GB\" or \"DE\""),
            ));
        }
    }
    Ok(Wifi {
        ssid,
        psk: w.psk,
        country: w.country.map(|c| c.to_ascii_uppercase()),
    })
}

fn check_psk(psk: &str) -> Result<(), String> {
    let hex_key = psk.len() == 64 && psk.bytes().all(|b| b.is_ascii_hexdigit());
    if hex_key {
        return Ok(());
    }
    if !(8..=63).contains(&psk.len()) {
        return Err(format!(
            "the passphrase is {} characters long: WPA needs 8 to 63 (or a 64-hex-digit key)",
            psk.len()
        ));
    }
    // wpa_supplicant reads it as a quoted string: printable ASCII without a quote.
    if !psk.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'"') {
        return Err(
            "the passphrase must be printable ASCII without '\"' (wpa_supplicant's rule)".into(),
        );
    }
    Ok(())
}

fn check_ssh_key(key: &str) -> Result<(), String> {
    let mut words = key.split_whitespace();
    match (words.next(), words.next()) {
        _ if key.contains(['\n', '\r']) => Err("must be a single line".into()),
        (Some(kind), Some(_))
            if kind.starts_with("ssh-")
                || kind.starts_with("ecdsa-")
                || kind.starts_with("sk-") =>
        {
            Ok(())
        }
        _ => Err(
            "must be a public key line like \"ssh-ed25519 AAAA... me@laptop\" (from ~/.ssh/*.pub)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/boot/firmware/herd.toml";

    fn full() -> &'static str {
        r#"
master = "https://192.168.1.10:6443/"
token = "abc123.0123456789abcdef"
ca_hash = "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
node_name = "pi-attic"
labels = { zone = "attic", "herd.io/disk" = "ssd" }

[wifi]
ssid = "home net"
psk = "correct horse battery"
country = "gb"

[ssh]
authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI me@laptop"]
"#
    }

    fn err(text: &str) -> String {
        match parse(FILE, text) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_complete_file_parses_and_normalises() {
        let c = parse(FILE, full()).unwrap();
        assert_eq!(c.master, "https://192.168.1.10:6443");
        assert_eq!(c.token, "abc123.0123456789abcdef");
        assert_eq!(
            c.ca_hash.as_deref(),
            Some("sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert_eq!(c.node_name.as_deref(), Some("pi-attic"));
        assert_eq!(c.label_args(), ["herd.io/disk=ssd", "zone=attic"]);
        let w = c.wifi.clone().unwrap();
        assert_eq!(w.ssid, "home net");
        assert_eq!(w.country.as_deref(), Some("GB"));
        assert_eq!(c.ssh_authorized_keys.len(), 1);
    }

    #[test]
    fn a_plain_http_master_needs_no_ca_hash() {
        // `herd master --insecure` serves plain HTTP: there is nothing to pin.
        let c = parse(FILE, "master = \"http://m:6443\"\ntoken = \"t\"\n").unwrap();
        assert_eq!(c.ca_hash, None);
    }

    #[test]
    fn only_master_and_token_are_required() {
        let c = parse(FILE, "master = \"http://m:6443\"\ntoken = \"t\"\n").unwrap();
        assert_eq!(c.node_name, None);
        assert!(c.labels.is_empty() && c.wifi.is_none() && c.ssh_authorized_keys.is_empty());
        assert_eq!(c.node_name_or("0a1B2c3d4e5f\n"), "herd-0a1b2c3d");
    }

    #[test]
    fn the_example_shipped_on_the_boot_partition_is_valid_once_filled_in() {
        // images/herd.toml.example: prose comments start with "##", optional settings with
        // "# ". The file as shipped and with every optional setting switched on must parse.
        let example = include_str!("../../images/herd.toml.example");
        let e = parse(FILE, example).unwrap_err().to_string();
        assert!(
            e.contains("`token`: still the example's placeholder"),
            "{e}"
        );
        let example = example.replace(PLACEHOLDER_TOKEN, "abc123.0123456789abcdef");
        let e = parse(FILE, &example).unwrap_err().to_string();
        assert!(
            e.contains("`ca_hash`: still the example's placeholder"),
            "{e}"
        );
        let example = example.replace(PLACEHOLDER_CA_HASH, &format!("sha256:{}", "ab".repeat(32)));
        let c = parse(FILE, &example).unwrap();
        assert!(c.master.starts_with("https://") && c.ca_hash.is_some() && c.wifi.is_none());
        let everything: String = example
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(FILE, &everything).unwrap();
        assert!(c.node_name.is_some() && !c.labels.is_empty());
        assert!(c.wifi.is_some() && !c.ssh_authorized_keys.is_empty());
    }

    #[test]
    fn a_missing_master_or_token_names_the_key() {
        assert_eq!(
            err("token = \"t\""),
            "/boot/firmware/herd.toml: `master` is missing: the URL of the master's API as \
             printed by `herd master`, e.g. master = \"http://192.168.1.10:6443\""
        );
        assert!(err("master = \"http://m:6443\"").contains("`token` is missing"));
        assert!(
            err("master = \"http://m:6443\"\ntoken=\"t\"\n[wifi]\npsk=\"12345678\"")
                .contains("`wifi.ssid` is missing")
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_section() {
        let e = err("master = \"http://m:6443\"\ntoken = \"t\"\nnodename = \"x\"\n");
        assert!(e.contains("unknown key `nodename`"), "{e}");
        assert!(e.contains("node_name"), "the known keys are listed: {e}");
        let e =
            err("master = \"http://m:6443\"\ntoken = \"t\"\n[wifi]\nssid = \"x\"\npass = \"y\"\n");
        assert!(
            e.contains("unknown key `wifi.pass` (known keys in [wifi]: ssid, psk, country)"),
            "{e}"
        );
        let e = err("master = \"http://m:6443\"\ntoken = \"t\"\n[ssh]\nkeys = []\n");
        assert!(e.contains("unknown key `ssh.keys`"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let e = err("master = \"http://m:6443\"\ntoken = 5\n");
        assert!(
            e.ends_with("`token`: invalid type: integer `5`, expected a string"),
            "{e}"
        );
        let e = err("master = \"http://m:6443\"\ntoken = \"t\"\nlabels = { zone = 3 }\n");
        assert!(e.contains("`labels.zone`"), "{e}");
        let e = err("master = \"http://m:6443\"\ntoken = \"t\"\nwifi = \"home\"\n");
        assert!(e.contains("`wifi`: must be a table"), "{e}");
    }

    #[test]
    fn bad_toml_is_a_syntax_error_on_one_line() {
        let e = err("master = \"http://m:6443\ntoken = \"t\"\n");
        assert!(
            e.starts_with("/boot/firmware/herd.toml: not valid TOML: "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn each_invalid_value_names_its_key() {
        let base = "token = \"t\"\n";
        let cases = [
            ("master = \"192.168.1.10:6443\"\n", "`master`"),
            ("master = \"https://m:6443\"\n", "`ca_hash` is missing"),
            ("master = \"ftp://m:6443\"\n", "`master`"),
            ("master = \"http://\"\n", "`master`"),
            (
                "master = \"http://m:6443\"\nnode_name = \"Pi_Attic\"\n",
                "`node_name`",
            ),
            (
                "master = \"http://m:6443\"\nca_hash = \"abc\"\n",
                "`ca_hash`",
            ),
            (
                "master = \"http://m:6443\"\nlabels = { \"-bad\" = \"x\" }\n",
                "`labels.-bad`",
            ),
            (
                "master = \"http://m:6443\"\nlabels = { zone = \"a b\" }\n",
                "`labels.zone`",
            ),
            (
                "master = \"http://m:6443\"\n[wifi]\nssid = \"\"\n",
                "`wifi.ssid`",
            ),
            (
                "master = \"http://m:6443\"\n[wifi]\nssid = \"x\"\npsk = \"short\"\n",
                "`wifi.psk`",
            ),
            (
                "master = \"http://m:6443\"\n[wifi]\nssid = \"x\"\npsk = \"has \\\" quote\"\n",
                "`wifi.psk`",
            ),
            (
                "master = \"http://m:6443\"\n[wifi]\nssid = \"x\"\ncountry = \"GBR\"\n",
                "`wifi.country`",
            ),
            (
                "master = \"http://m:6443\"\n[ssh]\nauthorized_keys = [\"hello\"]\n",
                "`ssh.authorized_keys[0]`",
            ),
        ];
        for (text, want) in cases {
            let e = err(&format!("{base}{text}"));
            assert!(
                e.contains(want),
                "{text:?} gave {e:?}, expected it to mention {want}"
            );
        }
        let e = err("master = \"http://m:6443\"\ntoken = \"two words\"\n");
        assert!(
            e.contains("`token`") && !e.contains("two words"),
            "secret echoed: {e}"
        );
    }

    #[test]
    fn a_64_hex_digit_key_and_an_open_network_are_accepted() {
        let hex = "a".repeat(64);
        let c = parse(
            FILE,
            &format!(
                "master = \"http://m:6443\"\ntoken = \"t\"\n\
                 [wifi]\nssid = \"x\"\npsk = \"{hex}\"\n"
            ),
        )
        .unwrap();
        assert_eq!(c.wifi.unwrap().psk, Some(hex));
        let c = parse(
            FILE,
            "master = \"http://m:6443\"\ntoken = \"t\"\n[wifi]\nssid = \"cafe\"\n",
        )
        .unwrap();
        assert_eq!(c.wifi.unwrap().psk, None);
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let c = parse(FILE, full()).unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("abc123") && !d.contains("horse"), "{d}");
    }

    #[test]
    fn default_node_names_come_from_the_machine_id() {
        assert_eq!(
            default_node_name("6f1e0c2a9b8d4e7fa1b2c3d4e5f60718\n"),
            "herd-6f1e0c2a"
        );
        assert_eq!(default_node_name(""), "herd-node");
        assert_eq!(default_node_name("uninitialized"), "herd-node");
        crate::api::validate::validate_dns1123_subdomain(&default_node_name("ABCDEF12")).unwrap();
    }
}
