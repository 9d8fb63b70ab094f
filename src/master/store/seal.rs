//! Encryption at rest for secret kinds: AES-256-GCM (ring) with a random nonce per write and
//! the row's identity (kind/namespace/name) as associated data, so a ciphertext copied onto
//! another row does not decrypt. The key is `secrets.key` (32 random bytes, 0600) next to
//! the database: a stolen `state.db` or backup alone reveals no secret. Restoring a backup
//! needs the same data dir's key (`herd master restore` keeps it).

use std::path::Path;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

use super::StoreError;

/// Marks a sealed body; a plain JSON object never starts with this.
const PREFIX: &str = "sealed:v1:";

pub struct Sealer {
    key: LessSafeKey,
}

fn key_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("secrets key {}: {e}", path.display()))
}

impl Sealer {
    /// Loads the key at `path`, creating it (0600) on first use.
    pub fn open(path: &Path) -> Result<Sealer, StoreError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(|e| key_err(path, e))?;
                crate::util::fsutil::write_atomic(path, &k, 0o600).map_err(|e| key_err(path, e))?;
                k.to_vec()
            }
            Err(e) => return Err(key_err(path, e)),
        };
        Self::from_key(&bytes).map_err(|e| key_err(path, e))
    }

    /// An in-memory store's key: random, gone with the process.
    pub fn ephemeral() -> Result<Sealer, StoreError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| StoreError::Invalid(format!("secrets key: {e}")))?;
        Self::from_key(&k).map_err(StoreError::Invalid)
    }

    fn from_key(bytes: &[u8]) -> Result<Sealer, String> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| format!("must be 32 bytes, is {}", bytes.len()))?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn seal(&self, aad: &str, plain: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Invalid(format!("nonce: {e}")))?;
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| StoreError::Invalid("encryption failed".into()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(format!("{PREFIX}{}:{}", b64.encode(nonce), b64.encode(buf)))
    }

    /// Plain bodies (written before sealing existed) pass through unchanged.
    pub fn open_body(&self, aad: &str, body: &str) -> Result<String, String> {
        let Some(rest) = body.strip_prefix(PREFIX) else {
            return Ok(body.to_string());
        };
        let (n, ct) = rest.split_once(':').ok_or("sealed body without nonce")?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce: [u8; NONCE_LEN] = b64
            .decode(n)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or("bad nonce")?;
        let mut buf = b64.decode(ct).map_err(|e| format!("bad ciphertext: {e}"))?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| "cannot decrypt: wrong secrets.key, or the row was tampered with")?;
        String::from_utf8(plain.to_vec()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_open_only_with_their_key_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let s = Sealer::open(&path).unwrap();
        let body = s
            .seal("Secret/default/db", "{\"password\":\"hunter2\"}")
            .unwrap();
        assert!(body.starts_with(PREFIX) && !body.contains("hunter2"));
        assert_ne!(
            body,
            s.seal("Secret/default/db", "{\"password\":\"hunter2\"}")
                .unwrap()
        );
        let again = Sealer::open(&path).unwrap();
        assert_eq!(
            again.open_body("Secret/default/db", &body).unwrap(),
            "{\"password\":\"hunter2\"}"
        );
        assert!(again.open_body("Secret/default/other", &body).is_err());
        assert!(Sealer::ephemeral()
            .unwrap()
            .open_body("Secret/default/db", &body)
            .is_err());
        assert_eq!(s.open_body("x", "{\"plain\":1}").unwrap(), "{\"plain\":1}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, b"short").unwrap();
        assert!(Sealer::open(&path).is_err());
    }
}
