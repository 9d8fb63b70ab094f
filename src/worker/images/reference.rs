//! Image references normalised the way Docker does it, so `busybox`, `library/busybox` and
//! `docker.io/library/busybox:latest` all name the same stored image.
//!
//! Grammar (Docker's distribution/reference): `[domain/]path[:tag][@sha256:<hex>]`, where the
//! first `/`-separated part is a domain only if it contains `.` or `:` or is `localhost`.

use std::fmt;

/// Registry assumed when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's legacy host name, folded into [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of Docker Hub's official images (`busybox` is `library/busybox`).
const OFFICIAL_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";
/// Docker's limit on a full repository name.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {reference}: repository name longer than {NAME_MAX} characters")]
    TooLong { reference: String },
    #[error("image reference {reference}: repository name must be lowercase")]
    Uppercase { reference: String },
    #[error(
        "image reference {reference}: invalid path component {component:?} \
         (lowercase letters and digits, separated by `.`, `_`, `__` or dashes)"
    )]
    InvalidComponent {
        reference: String,
        component: String,
    },
    #[error("image reference {reference}: invalid registry host {domain:?}")]
    InvalidDomain { reference: String, domain: String },
    #[error(
        "image reference {reference}: invalid tag {tag:?} \
         (letters, digits, `_`, `.`, `-`; at most {TAG_MAX}; not starting with `.` or `-`)"
    )]
    InvalidTag { reference: String, tag: String },
    #[error("image reference {reference}: invalid digest {digest:?} (want sha256:<64 hex>)")]
    InvalidDigest { reference: String, digest: String },
    #[error(
        "image reference {reference}: a 64-character hex string is an image id, not a \
         repository name"
    )]
    HexName { reference: String },
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `s`: default registry `docker.io`, `library/` for official
    /// images, tag `latest` when neither tag nor digest is given.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let err_ref = || s.to_owned();
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                if !is_sha256_digest(digest) {
                    return Err(ReferenceError::InvalidDigest {
                        reference: err_ref(),
                        digest: digest.to_owned(),
                    });
                }
                (rest, Some(digest.to_owned()))
            }
            None => (s, None),
        };
        // A tag is what follows the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                return Err(ReferenceError::InvalidTag {
                    reference: err_ref(),
                    tag: tag.to_owned(),
                });
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::InvalidComponent {
                reference: err_ref(),
                component: String::new(),
            });
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::HexName {
                reference: err_ref(),
            });
        }

        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first, rest)
            }
            _ => (DEFAULT_DOMAIN, name),
        };
        if !is_valid_domain(domain) {
            return Err(ReferenceError::InvalidDomain {
                reference: err_ref(),
                domain: domain.to_owned(),
            });
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                reference: err_ref(),
            });
        }
        for component in path.split('/') {
            if !is_valid_component(component) {
                return Err(ReferenceError::InvalidComponent {
                    reference: err_ref(),
                    component: component.to_owned(),
                });
            }
        }

        let domain = if domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN.to_owned()
        } else {
            domain.to_owned()
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_owned()
        };
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(ReferenceError::TooLong {
                reference: err_ref(),
            });
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// Registry host (with port), e.g. `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Full repository name, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// `sha256:<hex>` manifest digest when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The short form Docker prints (`busybox:latest`, `user/app:1`, `ghcr.io/x/y:latest`).
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        let without_domain = match full.strip_prefix("docker.io/") {
            Some(rest) => rest,
            None => return full,
        };
        without_domain
            .strip_prefix("library/")
            .unwrap_or(without_domain)
            .to_owned()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Normalises a reference string: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalise(s: &str) -> Result<String, ReferenceError> {
    Reference::parse(s).map(|r| r.to_string())
}

/// `sha256:` followed by exactly 64 lowercase hex digits.
pub(crate) fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_sha256_hex)
}

/// Exactly 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    match bytes.first() {
        Some(&b) if word(b) => {}
        _ => return false,
    }
    bytes.len() <= TAG_MAX && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// Lowercase alphanumeric runs joined by `.`, `_`, `__` or one or more `-`.
fn is_valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // One alphanumeric run.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // One separator, then another run must follow.
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
}

/// `host[:port]`: dot-separated labels of letters, digits and inner dashes; numeric port.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn good_references_normalise_like_docker() {
        let digest_ref = format!("busybox@sha256:{HEX}");
        let tag_digest_ref = format!("ghcr.io/x/y:1@sha256:{HEX}");
        let table: Vec<(&str, String)> = vec![
            ("busybox", "docker.io/library/busybox:latest".into()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".into()),
            ("library/busybox", "docker.io/library/busybox:latest".into()),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest".into(),
            ),
            ("user/app:1", "docker.io/user/app:1".into()),
            ("ghcr.io/x/y", "ghcr.io/x/y:latest".into()),
            ("ghcr.io/x/y/z:v1.2-rc_3", "ghcr.io/x/y/z:v1.2-rc_3".into()),
            ("localhost:5000/a", "localhost:5000/a:latest".into()),
            ("localhost/a:b", "localhost/a:b".into()),
            ("127.0.0.1:5000/team/a:2", "127.0.0.1:5000/team/a:2".into()),
            (
                "my-registry.local/a__b/c--d.e",
                "my-registry.local/a__b/c--d.e:latest".into(),
            ),
            (
                &digest_ref,
                format!("docker.io/library/busybox@sha256:{HEX}"),
            ),
            (&tag_digest_ref, format!("ghcr.io/x/y:1@sha256:{HEX}")),
        ];
        for (input, want) in table {
            assert_eq!(normalise(input).as_deref(), Ok(want.as_str()), "{input}");
        }
    }

    /// A check that an error is of the expected kind.
    type IsExpected = fn(&ReferenceError) -> bool;

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases: Vec<(&str, IsExpected)> = vec![
            ("", |e| matches!(e, ReferenceError::Empty)),
            ("Busybox", |e| matches!(e, ReferenceError::Uppercase { .. })),
            ("user/App", |e| {
                matches!(e, ReferenceError::Uppercase { .. })
            }),
            ("a..b", |e| {
                matches!(e, ReferenceError::InvalidComponent { .. })
            }),
            ("a___b", |e| {
                matches!(e, ReferenceError::InvalidComponent { .. })
            }),
            ("-a", |e| {
                matches!(e, ReferenceError::InvalidComponent { .. })
            }),
            ("a/", |e| {
                matches!(e, ReferenceError::InvalidComponent { .. })
            }),
            ("a//b", |e| {
                matches!(e, ReferenceError::InvalidComponent { .. })
            }),
            (":tag", |e| {
                matches!(e, ReferenceError::InvalidComponent { .. })
            }),
            ("a:", |e| matches!(e, ReferenceError::InvalidTag { .. })),
            ("a:.x", |e| matches!(e, ReferenceError::InvalidTag { .. })),
            ("a:b/c", |e| {
                matches!(e, ReferenceError::InvalidDomain { .. })
            }),
            ("a:b:c", |e| {
                matches!(e, ReferenceError::InvalidComponent { .. })
            }),
            ("-bad.io/a", |e| {
                matches!(e, ReferenceError::InvalidDomain { .. })
            }),
            ("host:99999x/a", |e| {
                matches!(e, ReferenceError::InvalidDomain { .. })
            }),
            ("a@sha256:abc", |e| {
                matches!(e, ReferenceError::InvalidDigest { .. })
            }),
            ("a@md5:abc", |e| {
                matches!(e, ReferenceError::InvalidDigest { .. })
            }),
            (HEX, |e| matches!(e, ReferenceError::HexName { .. })),
        ];
        for (input, is_expected) in cases {
            match Reference::parse(input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => {
                    assert!(is_expected(&e), "{input:?}: unexpected error {e}");
                    if !input.is_empty() {
                        assert!(e.to_string().contains(input), "{e} does not name {input}");
                    }
                }
            }
        }
        let long = format!("a/{}", "b".repeat(260));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong { .. })
        ));
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(matches!(
            Reference::parse(&long_tag),
            Err(ReferenceError::InvalidTag { .. })
        ));
    }

    #[test]
    fn familiar_form_drops_the_default_registry_and_library() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(r.repository(), "docker.io/library/busybox");
        assert_eq!(
            Reference::parse("user/app:1").unwrap().familiar(),
            "user/app:1"
        );
        assert_eq!(
            Reference::parse("localhost:5000/a").unwrap().familiar(),
            "localhost:5000/a:latest"
        );
    }
}
