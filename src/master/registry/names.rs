//! Pure parsing of what a registry client sends: `/v2/<name>/manifests/<ref>` and
//! `/v2/<name>/blobs/<digest>` paths, and `Range` headers.
//!
//! Names carry the upstream registry as their first component, the way a pull-through
//! mirror for several registries must: `docker.io/library/busybox`,
//! `127.0.0.1:5000/app`, `ghcr.io/org/tool`. A port may also be written `HOST_PORT`
//! (`127.0.0.1_5000/app`): the reference grammar of docker, skopeo and containerd allows no
//! `:` inside a repository path, so a standard client can only name such a registry that way.
//! It is unambiguous: host names cannot hold `_`, and a first component with a `.` (or
//! `localhost`) is always a registry host. A name whose first component is not a registry
//! host (no `.` or `:`, not `localhost`) is normalised like a pod's `image:` field, i.e. as a
//! Docker Hub name (`library/busybox` = `docker.io/library/busybox`), so the master also works
//! as a plain Docker Hub mirror. Pushed images live under the name they were pushed with,
//! normalised the same way, so a pod's `image: app:1` finds a pushed `app:1`.

use crate::worker::images::Reference;

/// What a `/v2/...` path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `GET /v2/`: the API version check.
    Base,
    /// A manifest by tag or digest; `reference` is normalised (registry, repository, tag or
    /// digest).
    Manifest { reference: Reference },
    /// A blob of a repository.
    Blob { repo: Reference, digest: String },
    /// `tags/list` of a repository (answered from the cache: the tags it holds).
    Tags { repo: Reference },
}

/// Why a path is not a registry request, as an OCI error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub code: &'static str,
    pub message: String,
}

fn name_invalid(message: String) -> PathError {
    PathError {
        code: "NAME_INVALID",
        message,
    }
}

/// Parses the part of the path after `/v2/`.
pub fn parse(rest: &str) -> Result<Target, PathError> {
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return Ok(Target::Base);
    }
    let unescaped = unescape_port(rest);
    let rest = unescaped.as_ref();
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let repo = Reference::parse(name)
            .ok()
            .filter(|r| {
                !name.contains(['@']) && r.tag() == Some("latest") && !name.ends_with(":latest")
            })
            .ok_or_else(|| name_invalid(format!("repository name {name:?} is invalid")))?;
        return Ok(Target::Tags { repo });
    }
    let (name, kind, last) = ["/manifests/", "/blobs/"]
        .iter()
        .filter_map(|sep| rest.rfind(sep).map(|i| (i, *sep)))
        .max_by_key(|(i, _)| *i)
        .map(|(i, sep)| (&rest[..i], sep, &rest[i + sep.len()..]))
        .ok_or_else(|| PathError {
            code: "UNSUPPORTED",
            message: format!("/v2/{rest}: not a manifest or blob path"),
        })?;
    if name.is_empty() || last.is_empty() || last.contains('/') {
        return Err(PathError {
            code: "UNSUPPORTED",
            message: format!("/v2/{rest}: not a manifest or blob path"),
        });
    }
    if name.contains('@') || name.rsplit('/').next().is_some_and(|l| l.contains(':')) {
        return Err(name_invalid(format!("repository name {name:?} is invalid")));
    }
    if kind == "/blobs/" {
        if !is_digest(last) {
            return Err(PathError {
                code: "DIGEST_INVALID",
                message: format!("blob digest {last:?}: want sha256:<64 lowercase hex>"),
            });
        }
        let repo = Reference::parse(name)
            .map_err(|e| name_invalid(format!("repository name {name:?}: {e}")))?;
        return Ok(Target::Blob {
            repo,
            digest: last.to_string(),
        });
    }
    let full = if last.starts_with("sha256:") {
        if !is_digest(last) {
            return Err(PathError {
                code: "DIGEST_INVALID",
                message: format!("manifest digest {last:?}: want sha256:<64 lowercase hex>"),
            });
        }
        format!("{name}@{last}")
    } else {
        format!("{name}:{last}")
    };
    let reference = Reference::parse(&full).map_err(|e| name_invalid(e.to_string()))?;
    Ok(Target::Manifest { reference })
}

/// `HOST_PORT/rest` → `HOST:PORT/rest` when HOST is registry-like (has a `.` or is
/// `localhost`) and PORT is all digits; anything else unchanged.
fn unescape_port(name: &str) -> std::borrow::Cow<'_, str> {
    let (first, rest) = name.split_once('/').unwrap_or((name, ""));
    if let Some((host, port)) = first.rsplit_once('_') {
        let hostlike = host.contains('.') || host == "localhost";
        if hostlike
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && !rest.is_empty()
        {
            return std::borrow::Cow::Owned(format!("{host}:{port}/{rest}"));
        }
    }
    std::borrow::Cow::Borrowed(name)
}

fn is_digest(s: &str) -> bool {
    super::store::digest_hex(s).is_some()
}

/// What to answer a `Range` header with, for a blob of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) range: the whole blob, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses one `bytes=a-b`, `bytes=a-` or `bytes=-n` range. Several ranges in one header are
/// answered with the whole blob (RFC 9110 lets a server ignore Range; registries clients
/// never ask for several). A range that is malformed or starts past the end is refused (416),
/// like the reference registry does.
pub fn range(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(h) = header else {
        return RangeAnswer::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Unsatisfiable;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Unsatisfiable;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            Some(0) | None => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        },
        (a, "") => match num(a) {
            Some(start) if start < len => RangeAnswer::Partial {
                start,
                end: len - 1,
            },
            _ => RangeAnswer::Unsatisfiable,
        },
        (a, b) => match (num(a), num(b)) {
            (Some(start), Some(end)) if start <= end && start < len => RangeAnswer::Partial {
                start,
                end: end.min(len - 1),
            },
            _ => RangeAnswer::Unsatisfiable,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn names_carry_their_registry_and_short_names_mean_docker_hub() {
        let Target::Manifest { reference } =
            parse("docker.io/library/busybox/manifests/latest").unwrap()
        else {
            panic!()
        };
        assert_eq!(reference.to_string(), "docker.io/library/busybox:latest");
        let Target::Manifest { reference } = parse("library/busybox/manifests/1.36").unwrap()
        else {
            panic!()
        };
        assert_eq!(reference.to_string(), "docker.io/library/busybox:1.36");
        let Target::Manifest { reference } = parse("127.0.0.1:5000/app/manifests/1").unwrap()
        else {
            panic!()
        };
        assert_eq!(reference.domain(), "127.0.0.1:5000");
        assert_eq!(reference.path(), "app");
        assert_eq!(reference.tag(), Some("1"));
        let Target::Manifest { reference } = parse(&format!("ghcr.io/o/t/manifests/{D}")).unwrap()
        else {
            panic!()
        };
        assert_eq!(reference.digest(), Some(D));
        let Target::Blob { repo, digest } =
            parse(&format!("127.0.0.1:5000/a/b/blobs/{D}")).unwrap()
        else {
            panic!()
        };
        assert_eq!(repo.repository(), "127.0.0.1:5000/a/b");
        assert_eq!(digest, D);
        assert_eq!(parse("").unwrap(), Target::Base);
    }

    #[test]
    fn a_port_may_be_written_with_an_underscore_for_standard_clients() {
        let Target::Manifest { reference } = parse("127.0.0.1_5000/app/manifests/1").unwrap()
        else {
            panic!()
        };
        assert_eq!(reference.to_string(), "127.0.0.1:5000/app:1");
        let Target::Blob { repo, .. } = parse(&format!("localhost_80/a/blobs/{D}")).unwrap() else {
            panic!()
        };
        assert_eq!(repo.repository(), "localhost:80/a");
        // Not host-like, or not a port: an ordinary Docker Hub name.
        let Target::Manifest { reference } = parse("my_user/app/manifests/1").unwrap() else {
            panic!()
        };
        assert_eq!(reference.repository(), "docker.io/my_user/app");
    }

    #[test]
    fn tag_lists_name_their_repository() {
        let Target::Tags { repo } = parse("127.0.0.1:5000/app/tags/list").unwrap() else {
            panic!()
        };
        assert_eq!(repo.repository(), "127.0.0.1:5000/app");
        assert_eq!(parse("app:1/tags/list").unwrap_err().code, "NAME_INVALID");
    }

    #[test]
    fn a_repository_may_itself_be_called_blobs_or_manifests() {
        let Target::Manifest { reference } = parse("x.io/blobs/manifests/1").unwrap() else {
            panic!()
        };
        assert_eq!(reference.repository(), "x.io/blobs");
    }

    #[test]
    fn bad_paths_get_registry_error_codes() {
        assert_eq!(parse("a/referrers/x").unwrap_err().code, "UNSUPPORTED");
        assert_eq!(
            parse("a/blobs/sha256:xyz").unwrap_err().code,
            "DIGEST_INVALID"
        );
        assert_eq!(parse("A/manifests/1").unwrap_err().code, "NAME_INVALID");
        assert_eq!(
            parse("a/manifests/bad tag").unwrap_err().code,
            "NAME_INVALID"
        );
        assert_eq!(parse("a/manifests/").unwrap_err().code, "UNSUPPORTED");
        assert_eq!(parse("../x/manifests/1").unwrap_err().code, "NAME_INVALID");
    }

    #[test]
    fn ranges_follow_rfc_9110_for_one_range() {
        use RangeAnswer::*;
        assert_eq!(range(None, 10), Full);
        assert_eq!(range(Some("bytes=0-4"), 10), Partial { start: 0, end: 4 });
        assert_eq!(range(Some("bytes=5-"), 10), Partial { start: 5, end: 9 });
        assert_eq!(range(Some("bytes=-3"), 10), Partial { start: 7, end: 9 });
        assert_eq!(range(Some("bytes=-30"), 10), Partial { start: 0, end: 9 });
        assert_eq!(range(Some("bytes=8-100"), 10), Partial { start: 8, end: 9 });
        assert_eq!(range(Some("bytes=0-1,4-5"), 10), Full);
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=x-1",
            "items=0-1",
            "bytes=-0",
            "bytes=-",
        ] {
            assert_eq!(range(Some(bad), 10), Unsatisfiable, "{bad}");
        }
        assert_eq!(range(Some("bytes=0-"), 0), Unsatisfiable);
    }
}
