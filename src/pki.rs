//! The cluster's own certificate authority: created by the master on first start, it signs
//! the server certificate that the API (HTTPS) and the MQTT gate (MQTTS) present. Workers pin
//! it by hash at join (kubeadm's `--discovery-token-ca-cert-hash` idea), so nobody on the LAN
//! can pose as the master, and nothing depends on a public CA a home lab does not have.
//!
//! Files under `DATA_DIR/pki/`: `ca.crt`, `ca.key`, `server.crt`, `server.key` (keys 0600)
//! and `server.json` (the SANs and expiry the server certificate was made for, so it is
//! re-issued when either changes — e.g. the board got a new IP — without parsing X.509).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {problem}")]
    Bad { path: PathBuf, problem: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("CA certificate hash mismatch: expected {expected}, the master presented {actual} — wrong master, or a machine in between")]
    HashMismatch { expected: String, actual: String },
    #[error("--ca-hash {0:?}: expected sha256:<64 hex digits>")]
    BadHash(String),
}

/// The CA (public part) and the server identity, ready for rustls.
pub struct Pki {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

const CA_CN: &str = "herd cluster CA";
const CA_YEARS: i32 = 10;
const SERVER_YEARS: i32 = 2;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// Secrets are written 0600 from the start (never world-readable for an instant).
fn write(path: &Path, data: &str, secret: bool) -> Result<(), PkiError> {
    let mode = if secret { 0o600 } else { 0o644 };
    crate::util::fsutil::write_atomic(path, data.as_bytes(), mode).map_err(io(path))
}

/// The CA's parameters are rebuilt identically each time: an `Issuer` needs only the subject
/// and the key, so the CA certificate never has to be parsed back.
fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, CA_CN);
    p.distinguished_name.push(DnType::OrganizationName, "herd");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

fn years_from_now(years: i32) -> (i32, i64) {
    let now = chrono::Utc::now();
    let y = now.year() + years;
    let end = chrono::NaiveDate::from_ymd_opt(y, now.month(), 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(i64::MAX, |d| d.and_utc().timestamp());
    (y, end)
}

/// "sha256:<hex>" of the CA certificate's DER bytes: what `herd worker --ca-hash` pins.
pub fn ca_hash(ca_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(ca_der)))
}

/// Checks the form of a `--ca-hash` value (so a typo is reported before any network).
pub fn parse_ca_hash(s: &str) -> Result<String, PkiError> {
    let hex_part = s.strip_prefix("sha256:").unwrap_or("");
    if hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(format!("sha256:{}", hex_part.to_ascii_lowercase()))
    } else {
        Err(PkiError::BadHash(s.to_string()))
    }
}

pub fn der_from_pem(pem: &str, path: &Path) -> Result<Vec<u8>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| PkiError::Bad {
            path: path.to_path_buf(),
            problem: format!("not a PEM certificate: {e}"),
        })
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct ServerMeta {
    sans: Vec<String>,
    not_after: i64,
}

/// Loads the CA (creating it on first start) and a server certificate valid for `sans`
/// (re-issued when the SANs change or it expires within 30 days).
pub fn ensure(data_dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
    let dir = data_dir.join("pki");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    if !ca_crt.exists() || !ca_key.exists() {
        let key = KeyPair::generate()?;
        let mut params = ca_params()?;
        params.not_after = rcgen::date_time_ymd(years_from_now(CA_YEARS).0, 1, 1);
        let cert = params.self_signed(&key)?;
        write(&ca_key, &key.serialize_pem(), true)?;
        write(&ca_crt, &cert.pem(), false)?;
        tracing::info!(path = %ca_crt.display(), "created the cluster CA");
    }
    let ca_pem = read(&ca_crt)?;
    let ca_der = der_from_pem(&ca_pem, &ca_crt)?;
    let ca_key_pair = KeyPair::from_pem(&read(&ca_key)?)?;

    let mut sans: Vec<String> = sans.to_vec();
    sans.sort();
    sans.dedup();
    let (srv_crt, srv_key, srv_meta) = (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("server.json"),
    );
    let meta: Option<ServerMeta> = std::fs::read(&srv_meta)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let fresh = meta.as_ref().is_some_and(|m| {
        m.sans == sans && m.not_after - chrono::Utc::now().timestamp() > 30 * 86_400
    });
    if !fresh || !srv_crt.exists() || !srv_key.exists() {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.clone())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "herd master");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (year, not_after) = years_from_now(SERVER_YEARS);
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let issuer = Issuer::new(ca_params()?, &ca_key_pair);
        let cert = params.signed_by(&key, &issuer)?;
        write(&srv_key, &key.serialize_pem(), true)?;
        write(&srv_crt, &cert.pem(), false)?;
        let meta = ServerMeta { sans, not_after };
        let json = serde_json::to_string(&meta).unwrap_or_default();
        write(&srv_meta, &json, false)?;
        tracing::info!(sans = ?meta.sans, "issued the server certificate");
    }
    let server_der = der_from_pem(&read(&srv_crt)?, &srv_crt)?;
    let key = KeyPair::from_pem(&read(&srv_key)?)?;
    Ok(Pki {
        ca_pem,
        ca_der: ca_der.clone(),
        server_chain: vec![
            CertificateDer::from(server_der),
            CertificateDer::from(ca_der),
        ],
        server_key: key.serialize_der(),
    })
}

impl Pki {
    pub fn hash(&self) -> String {
        ca_hash(&self.ca_der)
    }

    /// For the API and the MQTT gate: TLS 1.2+ with ring, the server chain including the CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)?;
        Ok(Arc::new(cfg))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts exactly the cluster CA (not the system's roots).
pub fn client_config(ca_der: &[u8]) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Installs ring as the process's rustls provider (reqwest builds its config from it).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The names a server certificate should carry: the host name, localhost, every local
/// address, and what the operator added (`--tls-san`, `--advertise-address`).
pub fn default_sans(extra: &[String]) -> Vec<String> {
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let host = crate::worker::platform::hostname();
    if !host.is_empty() && rcgen::CertificateParams::new(vec![host.clone()]).is_ok() {
        sans.push(host);
    }
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            if let Some(v4) = sa.as_sockaddr_in() {
                sans.push(v4.ip().to_string());
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                let ip = v6.ip();
                // Link-local addresses need a scope id no certificate can name.
                if (ip.segments()[0] & 0xffc0) != 0xfe80 {
                    sans.push(ip.to_string());
                }
            }
        }
    }
    sans.extend(extra.iter().filter(|s| !s.is_empty()).cloned());
    sans.sort();
    sans.dedup();
    sans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_the_server_certificate_follows_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure(dir.path(), &["127.0.0.1".into(), "herd-m".into()]).unwrap();
        let b = ensure(dir.path(), &["herd-m".into(), "127.0.0.1".into()]).unwrap();
        assert_eq!(a.hash(), b.hash(), "same CA on restart");
        assert_eq!(
            a.server_chain[0], b.server_chain[0],
            "same SANs: not re-issued"
        );
        let c = ensure(dir.path(), &["10.0.0.9".into()]).unwrap();
        assert_eq!(a.hash(), c.hash());
        assert_ne!(a.server_chain[0], c.server_chain[0], "new SANs: re-issued");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("pki/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(a.server_config().is_ok());
        assert!(client_config(&a.ca_der).is_ok());
    }

    #[test]
    fn ca_hashes_are_checked_for_form() {
        let h = format!("sha256:{}", "Ab".repeat(32));
        assert_eq!(
            parse_ca_hash(&h).unwrap(),
            h.to_ascii_lowercase().replace("SHA", "sha")
        );
        for bad in [
            "",
            "sha256:",
            "md5:00",
            &format!("sha256:{}", "z".repeat(64)),
        ] {
            assert!(parse_ca_hash(bad).is_err(), "{bad}");
        }
    }
}
