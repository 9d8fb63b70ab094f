//! Configuration for an external mosquitto broker (`herd broker config mosquitto`): the same
//! per-node topic rules the MQTT gate enforces for the embedded broker, as mosquitto's
//! `acl_file`, plus a `password_file` with the master's and every joined node's credentials.
//!
//! The store keeps node passwords only as hashes, so at join the master also stores the
//! password in mosquitto's own hashed form (PBKDF2-SHA512, `$7$`), which is as useless to a
//! thief as the SHA-256 hash but lets this file be written at any later time.

use std::num::NonZeroU32;
use std::path::Path;

use base64::Engine;

use super::broker::MASTER_USER;

const ITERATIONS: u32 = 101;

/// A password in mosquitto 2's password-file form: `$7$ITER$SALT$HASH` (base64).
pub fn password_hash(password: &str) -> String {
    let mut salt = [0u8; 12];
    if getrandom::fill(&mut salt).is_err() {
        // No entropy source at all: still a valid (if predictable-salt) entry.
        salt = *b"herd-mosquit";
    }
    hash_with_salt(password, &salt)
}

fn hash_with_salt(password: &str, salt: &[u8]) -> String {
    let mut out = [0u8; 64];
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        salt,
        password.as_bytes(),
        &mut out,
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("$7${ITERATIONS}${}${}", b64.encode(salt), b64.encode(out))
}

/// The ACL file: the master may do everything under `herd/`; every other user (a node, whose
/// username is its name: `%u`) only what the gate allows it.
pub fn acl_file() -> String {
    let mut s = String::from(
        "# herd topic rules for mosquitto, written by `herd broker config mosquitto`.\n\
         # A node publishes only its own reports and reads only its own desired state and RPCs,\n\
         # plus the cluster-wide services and ingresses.\n\
         user herd-master\ntopic readwrite herd/#\n\n",
    );
    for t in ["online", "info", "heartbeat", "observed/#", "rpc/resp/#"] {
        s.push_str(&format!("pattern write herd/v1/nodes/%u/{t}\n"));
    }
    for t in ["desired", "desired/#", "rpc/req"] {
        s.push_str(&format!("pattern read herd/v1/nodes/%u/{t}\n"));
    }
    // Every node reads (never writes) the cluster-wide service and ingress trees.
    for tree in [
        crate::proto::services::SERVICES,
        crate::proto::services::INGRESSES,
    ] {
        s.push_str(&format!("pattern read {tree}\npattern read {tree}/#\n"));
    }
    // Every node reads the cluster's pod routes; only the master writes them.
    s.push_str("pattern read herd/v1/net/routes\n");
    s
}

/// `user:hash` lines: the master first, then each node that joined since this existed.
pub fn password_file(master_password: &str, nodes: &[(String, String)]) -> String {
    let mut s = format!("{MASTER_USER}:{}\n", password_hash(master_password));
    for (node, hash) in nodes {
        s.push_str(&format!("{node}:{hash}\n"));
    }
    s
}

/// The lines to add to mosquitto.conf.
pub fn conf_snippet(dir: &Path) -> String {
    format!(
        "# herd: no anonymous clients; node passwords and topic rules from herd.\n\
         per_listener_settings false\nallow_anonymous false\n\
         password_file {}\nacl_file {}\n",
        dir.join("herd.passwd").display(),
        dir.join("herd.acl").display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_have_mosquittos_shape_and_depend_on_the_salt() {
        let a = hash_with_salt("secret", b"0123456789ab");
        let parts: Vec<&str> = a.split('$').collect();
        assert_eq!(parts[..3], ["", "7", "101"]);
        assert_eq!(parts[3].len(), 16, "12 salt bytes in base64");
        assert_eq!(parts[4].len(), 88, "64 hash bytes in base64");
        assert_eq!(a, hash_with_salt("secret", b"0123456789ab"));
        assert_ne!(a, hash_with_salt("secret", b"0123456789ac"));
        assert_ne!(password_hash("x"), password_hash("x"), "random salt");
    }

    #[test]
    fn the_acl_gives_nodes_only_their_own_topics() {
        let acl = acl_file();
        assert!(acl.contains("user herd-master\ntopic readwrite herd/#"));
        assert!(acl.contains("pattern write herd/v1/nodes/%u/observed/#"));
        assert!(acl.contains("pattern read herd/v1/nodes/%u/desired/#"));
        assert!(!acl.contains("pattern readwrite"));
        assert!(acl.contains("pattern read herd/v1/services\n"));
        assert!(acl.contains("pattern read herd/v1/services/#\n"));
        assert!(acl.contains("pattern read herd/v1/ingresses/#\n"));
        assert!(!acl.contains("write herd/v1/services"));
        assert!(acl.contains("pattern read herd/v1/net/routes\n"));
        assert!(!acl.contains("pattern write herd/v1/net"));
        let pw = password_file("m", &[("w1".into(), "$7$h".into())]);
        assert!(pw.starts_with("herd-master:$7$101$") && pw.ends_with("\nw1:$7$h\n"));
    }
}
