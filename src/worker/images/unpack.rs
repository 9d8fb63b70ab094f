//! Unpacking one layer tar into its own directory, in the form overlayfs reads directly:
//! an OCI whiteout `.wh.<name>` becomes a 0:0 character device `<name>`, and `.wh..wh..opq`
//! marks its directory opaque (`trusted.overlay.opaque=y`). Stacking the directories as
//! `lowerdir`s then gives the image's filesystem without ever merging layers on disk.
//!
//! Layer content is untrusted. Entry paths with `..` are refused; parents are created here one
//! component at a time and must be real directories, so no entry is written through a symlink
//! (symlinks themselves may point anywhere: they are created, never followed). Hard links must
//! name an existing entry inside the layer.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::digest::HashingReader;
use super::store::Limits;
use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Extended attributes carried over from PAX headers. Anything under `trusted.` could steer
/// overlayfs (redirects, opaque flags) from inside an image, so only these pass.
const ALLOWED_XATTR_PREFIXES: &[&str] = &["security.capability", "user."];

/// What unpacking a layer found out about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unpacked {
    /// Lowercase hex sha256 of the uncompressed tar stream (the diff id).
    pub(crate) diff_id: String,
    /// Bytes in the uncompressed tar stream.
    pub(crate) size: u64,
}

/// Unpacks the (plain or gzip) layer blob at `blob` into the existing empty directory `dest`,
/// hashing the uncompressed stream on the way. `name` identifies the layer in errors.
pub(crate) fn unpack_layer(
    blob: &Path,
    name: &str,
    dest: &Path,
    limits: &Limits,
) -> Result<Unpacked, ImageError> {
    let file = fs::File::open(blob).map_err(|e| ImageError::io(blob, e))?;
    let stream = super::digest::decompressed(file, name)?;
    unpack_stream(stream, name, dest, limits)
}

/// Hashes the uncompressed stream of a layer blob without unpacking it (re-verifying an archive
/// whose layer the store already has).
pub(crate) fn diff_id_of(blob: &Path, name: &str, limits: &Limits) -> Result<Unpacked, ImageError> {
    let file = fs::File::open(blob).map_err(|e| ImageError::io(blob, e))?;
    let stream = super::digest::decompressed(file, name)?;
    let (diff_id, size) = HashingReader::new(stream, limits.max_layer_bytes)
        .finish()
        .map_err(|e| stream_error(name, e, limits))?;
    Ok(Unpacked { diff_id, size })
}

fn stream_error(name: &str, e: io::Error, limits: &Limits) -> ImageError {
    if e.kind() == io::ErrorKind::FileTooLarge {
        ImageError::TooLarge {
            what: format!("layer {name} (uncompressed)"),
            limit: limits.max_layer_bytes,
        }
    } else {
        ImageError::malformed(
            format!("layer {name}"),
            format!("truncated or corrupt: {e}"),
        )
    }
}

pub(crate) fn unpack_stream<R: Read>(
    stream: R,
    name: &str,
    dest: &Path,
    limits: &Limits,
) -> Result<Unpacked, ImageError> {
    let hashing = HashingReader::new(stream, limits.max_layer_bytes);
    let mut archive = tar::Archive::new(hashing);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut count: u64 = 0;
    // Directory mtimes are set last: creating each entry bumps its parent's.
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    {
        let entries = archive
            .entries()
            .map_err(|e| stream_error(name, e, limits))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| stream_error(name, e, limits))?;
            count += 1;
            if count > limits.max_layer_entries {
                return Err(ImageError::TooManyEntries {
                    what: format!("layer {name}"),
                    limit: limits.max_layer_entries,
                });
            }
            if entry.header().entry_type().is_dir() {
                if let (Some(parts), Ok(mtime)) =
                    (entry_parts(&entry.path_bytes()), entry.header().mtime())
                {
                    dir_times.push((
                        parts.iter().fold(dest.to_path_buf(), |p, c| p.join(c)),
                        mtime,
                    ));
                }
            }
            apply_entry(&mut entry, name, dest).map_err(|e| match e {
                // A read error in the middle of an entry is the stream's fault, not the entry's.
                ImageError::Io { source, .. }
                    if source.kind() == io::ErrorKind::FileTooLarge
                        || source.kind() == io::ErrorKind::UnexpectedEof =>
                {
                    stream_error(name, source, limits)
                }
                other => other,
            })?;
        }
    }
    for (dir, mtime) in dir_times {
        let t = nix::sys::time::TimeSpec::new(libc::time_t::try_from(mtime).unwrap_or(0), 0);
        if let Err(e) = nix::sys::stat::utimensat(
            None,
            &dir,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        ) {
            tracing::debug!(layer = name, dir = %dir.display(), "mtime not set: {e}");
        }
    }
    let (diff_id, size) = archive
        .into_inner()
        .finish()
        .map_err(|e| stream_error(name, e, limits))?;
    Ok(Unpacked { diff_id, size })
}

fn apply_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    layer: &str,
    dest: &Path,
) -> Result<(), ImageError> {
    let raw = entry.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let fail = |reason: String| ImageError::Unpack {
        layer: layer.to_owned(),
        entry: shown.clone(),
        reason,
    };
    let parts = entry_parts(&raw).ok_or_else(|| fail("path escapes the layer (`..`)".into()))?;
    let kind = entry.header().entry_type();
    if matches!(
        kind,
        tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink
    ) {
        return Ok(());
    }
    let Some((file_name, parents)) = parts.split_last() else {
        // The layer root itself: its mode and owner are the rootfs root's.
        if kind.is_dir() {
            set_owner_mode(dest, entry.header()).map_err(|e| fail(e.to_string()))?;
        }
        return Ok(());
    };
    let parent = safe_parent(dest, parents).map_err(fail)?;
    let file_name_str = file_name.to_string_lossy();

    if file_name_str == OPAQUE_MARKER {
        return set_xattr(&parent, OPAQUE_XATTR, b"y")
            .map_err(|e| fail(format!("marking {} opaque: {e}", parent.display())));
    }
    if file_name_str.starts_with(".wh..wh.") {
        return Ok(()); // other aufs bookkeeping (hard link dirs), meaningless to overlayfs
    }
    if let Some(hidden) = file_name_str.strip_prefix(WHITEOUT_PREFIX) {
        let target = parent.join(hidden);
        clear(&target, false).map_err(|e| fail(e.to_string()))?;
        return mknod(&target, libc::S_IFCHR, 0, 0)
            .map_err(|e| fail(format!("creating whiteout {}: {e}", target.display())));
    }

    let target = parent.join(file_name);
    match kind {
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            clear(&target, false).map_err(|e| fail(e.to_string()))?;
            let header = entry.header();
            let mode = header.mode().map_err(|e| fail(e.to_string()))? & 0o7777;
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            // A device node in a layer would alias a real device on the host, inside the
            // image store (a block device 8:0 mode 0666 is the whole disk for anyone who can
            // reach it). The runtime gives containers their /dev; only the overlay whiteout
            // form (char 0:0) and FIFOs are kept.
            let whiteout = kind == tar::EntryType::Char && major == 0 && minor == 0;
            if kind != tar::EntryType::Fifo && !whiteout {
                let what = if kind == tar::EntryType::Block {
                    "block"
                } else {
                    "character"
                };
                return Err(fail(format!(
                    "{what} device {major}:{minor} refused: images may not carry device nodes \
                     (the runtime provides /dev)"
                )));
            }
            let file_type = match kind {
                tar::EntryType::Char => libc::S_IFCHR,
                tar::EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            match mknod(&target, file_type | mode, major, minor) {
                Ok(()) => set_owner_mode(&target, header).map_err(|e| fail(e.to_string())),
                // Without CAP_MKNOD (user namespaces) devices cannot exist; images rarely need
                // them since the runtime creates /dev.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    tracing::warn!(layer, entry = %shown, "device node skipped: {e}");
                    Ok(())
                }
                Err(e) => Err(fail(format!("mknod: {e}"))),
            }
        }
        tar::EntryType::Link => {
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| fail("hard link without a target".into()))?
                .into_owned();
            let link_parts = entry_parts(&link)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| fail("hard link target escapes the layer".into()))?;
            let (link_name, link_parents) = link_parts
                .split_last()
                .ok_or_else(|| fail("hard link without a target".into()))?;
            // Named as the archive names it: a host path here would only confuse.
            let missing = || {
                fail(format!(
                    "hard link target {} is not in the layer",
                    String::from_utf8_lossy(&link)
                ))
            };
            let source = existing_parent(dest, link_parents)
                .map_err(|_| missing())?
                .join(link_name);
            if source.symlink_metadata().is_err() {
                return Err(missing());
            }
            clear(&target, false).map_err(|e| fail(e.to_string()))?;
            // link(2) does not follow a symlink `source`: the link is to the entry itself.
            fs::hard_link(&source, &target).map_err(|e| fail(format!("hard link: {e}")))
        }
        _ => {
            let xattrs = pax_xattrs(entry);
            clear(&target, kind.is_dir()).map_err(|e| fail(e.to_string()))?;
            let declared = entry.header().size().unwrap_or(0);
            let unpacked = entry.unpack_in(dest).map_err(|e| match e.kind() {
                // The stream ran dry or over its cap mid-entry: the caller reports the layer.
                io::ErrorKind::FileTooLarge | io::ErrorKind::UnexpectedEof => {
                    ImageError::io(&target, e)
                }
                // tar's words for a stream that ended before the entry's declared size.
                _ if error_chain(&e).contains("failed to write entire file") => ImageError::io(
                    &target,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry {shown} ends early (its header claims {declared} bytes)"),
                    ),
                ),
                _ => fail(error_chain(&e)),
            })?;
            if !unpacked {
                return Err(fail("path escapes the layer".into()));
            }
            for (key, value) in xattrs {
                if let Err(e) = set_xattr(&target, &key, &value) {
                    tracing::warn!(layer, entry = %shown, xattr = %key, "xattr not set: {e}");
                }
            }
            Ok(())
        }
    }
}

/// An error with its sources (tar's errors put the cause in `source`, not in the message).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Splits an entry path into its normal components; `None` when any component is `..`.
/// Leading `/` and `.` parts are dropped, as tar and Docker do.
fn entry_parts(raw: &[u8]) -> Option<Vec<&OsStr>> {
    let mut parts = Vec::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => return None,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(parts)
}

/// `dest/parents...`, creating missing directories; every existing component must be a real
/// directory (a symlink there would make later writes land outside the layer).
fn safe_parent(dest: &Path, parents: &[&OsStr]) -> Result<PathBuf, String> {
    let mut path = dest.to_path_buf();
    for part in parents {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "parent {} is not a directory (a symlink or file); refusing to write \
                     through it",
                    path.display()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
                .mode(0o755)
                .create(&path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(path)
}

/// Like [`safe_parent`] but creates nothing (the target of a hard link must already exist).
fn existing_parent(dest: &Path, parents: &[&OsStr]) -> Result<PathBuf, String> {
    let mut path = dest.to_path_buf();
    for part in parents {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            _ => {
                return Err(format!(
                    "{} is not a directory in the layer",
                    path.display()
                ))
            }
        }
    }
    Ok(path)
}

/// Makes room for a new entry at `path`: removes a non-directory; removes a directory only
/// when the new entry is not one (a later entry replaces an earlier one, as tar does).
fn clear(path: &Path, new_is_dir: bool) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if new_is_dir {
                Ok(())
            } else {
                fs::remove_dir_all(path)
            }
        }
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The `SCHILY.xattr.*` PAX records of an entry that are allowed through.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            let Ok(key) = ext.key() else { continue };
            let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            if ALLOWED_XATTR_PREFIXES.iter().any(|p| name.starts_with(p)) {
                out.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    out
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `lsetxattr`: never follows a symlink at `path`.
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c_path = cstring(path)?;
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name has a NUL"))?;
    // SAFETY: both strings are NUL-terminated and live across the call; value/len describe a
    // valid slice.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mknod(path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let c_path = cstring(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::mknod(c_path.as_ptr(), mode as libc::mode_t, dev) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Owner first (chown clears setuid bits), then the full mode, neither following symlinks.
fn set_owner_mode(path: &Path, header: &tar::Header) -> io::Result<()> {
    let uid = header.uid()? as u32;
    let gid = header.gid()? as u32;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let mode = header.mode()? & 0o7777;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::RawTar;
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn limits() -> Limits {
        Limits::default()
    }

    fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let c_path = cstring(path).unwrap();
        let c_name = CString::new(name).unwrap();
        let mut buf = [0u8; 64];
        // SAFETY: valid strings and buffer for the duration of the call.
        let n = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        (n >= 0).then(|| buf[..n as usize].to_vec())
    }

    #[test]
    fn whiteouts_become_overlay_char_devices_and_opaque_markers_an_xattr() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = RawTar::new();
        t.dir("etc/");
        t.file("etc/.wh.gone", b"");
        t.file(".wh.topgone", b"");
        t.dir("cache/");
        t.file("cache/.wh..wh..opq", b"");
        t.file("cache/new", b"fresh");
        t.file("deep/nested/.wh..wh..opq", b"");
        t.file(".wh..wh.plnk", b"");
        let bytes = t.finish();
        let got = unpack_stream(&bytes[..], "test", dir.path(), &limits()).unwrap();
        assert_eq!(got.diff_id, super::super::digest::sha256_hex(&bytes));
        assert_eq!(got.size, bytes.len() as u64);

        for wh in ["etc/gone", "topgone"] {
            let m = fs::symlink_metadata(dir.path().join(wh)).unwrap();
            assert!(m.file_type().is_char_device(), "{wh}");
            assert_eq!(m.rdev(), 0, "{wh}");
        }
        assert!(!dir.path().join("etc/.wh.gone").exists());
        assert_eq!(
            get_xattr(&dir.path().join("cache"), OPAQUE_XATTR).as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(
            get_xattr(&dir.path().join("deep/nested"), OPAQUE_XATTR).as_deref(),
            Some(&b"y"[..])
        );
        assert!(!dir.path().join("cache/.wh..wh..opq").exists());
        assert!(!dir.path().join(".wh..wh.plnk").exists());
        assert_eq!(fs::read(dir.path().join("cache/new")).unwrap(), b"fresh");
    }

    #[test]
    fn modes_symlinks_and_hardlinks_inside_the_layer_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = RawTar::new();
        t.dir("bin/");
        t.file("bin/busybox", b"#!");
        t.entry("bin/sh", tar::EntryType::Symlink, "busybox", b"");
        t.entry("bin/abs", tar::EntryType::Symlink, "/etc/passwd", b"");
        t.entry("bin/hard", tar::EntryType::Link, "bin/busybox", b"");
        let bytes = t.finish();
        unpack_stream(&bytes[..], "test", dir.path(), &limits()).unwrap();
        let sh = dir.path().join("bin/sh");
        assert_eq!(fs::read_link(&sh).unwrap(), Path::new("busybox"));
        assert_eq!(
            fs::read_link(dir.path().join("bin/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        let a = fs::metadata(dir.path().join("bin/busybox")).unwrap();
        let b = fs::metadata(dir.path().join("bin/hard")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.mode() & 0o7777, 0o644);
        // Directory mtimes survive the files created inside them.
        assert_eq!(fs::metadata(dir.path().join("bin")).unwrap().mtime(), 1);
    }

    #[test]
    fn setuid_and_setgid_bits_and_owners_survive_unpacking() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = RawTar::new();
        t.dir("bin/");
        t.entry_owned("bin/su", tar::EntryType::Regular, "", b"x", 0o4755, (0, 0));
        t.entry_owned(
            "bin/wall",
            tar::EntryType::Regular,
            "",
            b"y",
            0o2755,
            (0, 5),
        );
        t.entry_owned("home/", tar::EntryType::Directory, "", b"", 0o1777, (0, 0));
        t.entry_owned(
            "home/me",
            tar::EntryType::Regular,
            "",
            b"z",
            0o4700,
            (1000, 1000),
        );
        let bytes = t.finish();
        unpack_stream(&bytes[..], "test", dir.path(), &limits()).unwrap();
        let meta = |p: &str| fs::symlink_metadata(dir.path().join(p)).unwrap();
        assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755);
        assert_eq!(
            (meta("bin/wall").mode() & 0o7777, meta("bin/wall").gid()),
            (0o2755, 5)
        );
        assert_eq!(meta("home").mode() & 0o7777, 0o1777);
        // chown would clear setuid if it came after the mode: owner first, then mode.
        let me = meta("home/me");
        assert_eq!(
            (me.uid(), me.gid(), me.mode() & 0o7777),
            (1000, 1000, 0o4700)
        );
    }

    #[test]
    fn device_nodes_are_refused_but_fifos_and_the_whiteout_form_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let layer = |kind: tar::EntryType, major: u32, minor: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_path("dev/node").unwrap();
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_mode(0o666);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            h.set_cksum();
            let mut t = RawTar::new();
            t.dir("dev/");
            let mut bytes = t.finish();
            bytes.truncate(bytes.len() - 1024);
            bytes.extend_from_slice(h.as_bytes());
            bytes.extend(std::iter::repeat_n(0u8, 1024));
            bytes
        };
        for (i, (kind, major, minor, ok)) in [
            (tar::EntryType::Block, 8, 0, false),
            (tar::EntryType::Char, 1, 3, false),
            (tar::EntryType::Char, 0, 0, true),
            (tar::EntryType::Fifo, 0, 0, true),
        ]
        .into_iter()
        .enumerate()
        {
            let dest = dir.path().join(i.to_string());
            std::fs::create_dir(&dest).unwrap();
            let r = unpack_stream(&layer(kind, major, minor)[..], "l", &dest, &limits());
            if ok {
                r.unwrap();
            } else {
                let e = r.unwrap_err().to_string();
                assert!(
                    e.contains(&format!("device {major}:{minor} refused")),
                    "{e}"
                );
                assert!(std::fs::symlink_metadata(dest.join("dev/node")).is_err());
            }
        }
    }

    #[test]
    fn entries_climbing_out_of_the_layer_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut t = RawTar::new();
        t.file("../escaped", b"x");
        let err = unpack_stream(&t.finish()[..], "evil", dir.path(), &limits()).unwrap_err();
        assert!(matches!(err, ImageError::Unpack { .. }), "{err}");
        assert!(err.to_string().contains("../escaped"), "{err}");

        // A symlink to a directory outside, then a file "inside" it.
        let dir = tempfile::tempdir().unwrap();
        let mut t = RawTar::new();
        let target = outside.path().to_str().unwrap();
        t.entry("link", tar::EntryType::Symlink, target, b"");
        t.file("link/planted", b"x");
        let err = unpack_stream(&t.finish()[..], "evil", dir.path(), &limits()).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert!(!outside.path().join("planted").exists());

        // A hard link to a file outside the layer.
        let dir = tempfile::tempdir().unwrap();
        let mut t = RawTar::new();
        t.entry("hard", tar::EntryType::Link, "../../etc/passwd", b"");
        let err = unpack_stream(&t.finish()[..], "evil", dir.path(), &limits()).unwrap_err();
        assert!(err.to_string().contains("escapes"), "{err}");
    }

    #[test]
    fn a_truncated_layer_is_an_error_naming_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = RawTar::new();
        t.file("big", &[1u8; 4000]);
        let bytes = t.finish();
        let err = unpack_stream(&bytes[..1500], "sha256:abc", dir.path(), &limits()).unwrap_err();
        assert!(err.to_string().contains("sha256:abc"), "{err}");
    }

    #[test]
    fn a_layer_bigger_than_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = RawTar::new();
        t.file("big", &[1u8; 8000]);
        let small = Limits {
            max_layer_bytes: 4096,
            ..Limits::default()
        };
        let err = unpack_stream(&t.finish()[..], "l", dir.path(), &small).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
    }
}
