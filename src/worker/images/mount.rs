//! A container's root filesystem: an overlayfs mount of the image's layer directories (read
//! only, shared by every container of the image) under a per-container upper directory.
//!
//! Mount options travel in one page (4096 bytes, terminator included). With the store under
//! `/var/lib/herd/worker/images`, each lower path is ~100 bytes, so about 38 layers fit. When
//! the full-path options would not fit (or a path holds a `,` or `:` that the option syntax
//! cannot carry), every directory is opened `O_PATH` and named `/proc/self/fd/<n>` instead:
//! ~17 bytes per layer, ~220 layers, and no `chdir` (which would race other threads).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use super::store::ImageStore;
use super::{Image, ImageError};

/// Longest option string the kernel takes: one page minus the terminating NUL.
const MOUNT_DATA_MAX: usize = 4095;
/// Nested mounts on one rootfs path removed before giving up.
const MAX_UNMOUNTS: usize = 8;

impl ImageStore {
    /// Mounts `image` at `<container_dir>/rootfs` (upper `<container_dir>/upper`, work
    /// `<container_dir>/work`) and returns the rootfs path. Mounting an already mounted rootfs
    /// is a no-op (an agent restart re-adopting its containers).
    pub fn mount_rootfs(&self, image: &Image, container_dir: &Path) -> Result<PathBuf, ImageError> {
        mount_rootfs(image, container_dir)
    }

    /// Unmounts `<container_dir>/rootfs` and removes rootfs, upper and work; idempotent.
    pub fn unmount_rootfs(&self, container_dir: &Path) -> Result<(), ImageError> {
        unmount_rootfs(container_dir)
    }
}

/// See [`ImageStore::mount_rootfs`]; needs no store, only the image's layer paths.
pub fn mount_rootfs(image: &Image, container_dir: &Path) -> Result<PathBuf, ImageError> {
    let rootfs = container_dir.join("rootfs");
    let upper = container_dir.join("upper");
    let work = container_dir.join("work");
    let mount_err = |reason: String| ImageError::Mount {
        target: rootfs.clone(),
        reason,
    };
    for layer in &image.layers {
        if !layer.is_dir() {
            return Err(ImageError::MissingLayer {
                id: image.id.clone(),
                layer: layer.clone(),
            });
        }
    }
    if is_mounted(&rootfs)? {
        return Ok(rootfs);
    }
    for dir in [&rootfs, &upper, &work] {
        fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
    }
    // overlayfs needs a lower layer; an image without layers gets an empty one.
    let mut lowers: Vec<PathBuf> = image.layers.iter().rev().cloned().collect();
    if lowers.is_empty() {
        let empty = container_dir.join("empty");
        fs::create_dir_all(&empty).map_err(|e| ImageError::io(&empty, e))?;
        lowers.push(empty);
    }

    let plain = options(&lowers, &upper, &work);
    let (data, _fds) = if plain.len() <= MOUNT_DATA_MAX
        && [&upper, &work]
            .into_iter()
            .chain(&lowers)
            .all(|p| option_safe(p))
    {
        (plain, Vec::new())
    } else {
        let mut fds = Vec::new();
        let mut short = |p: &Path| -> Result<PathBuf, ImageError> {
            let fd = open(
                p,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ImageError::io(p, io::Error::from(e)))?;
            // SAFETY: `open` just returned this fd and nothing else owns it.
            let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let path = PathBuf::from(format!("/proc/self/fd/{}", owned.as_raw_fd()));
            fds.push(owned);
            Ok(path)
        };
        let short_lowers = lowers
            .iter()
            .map(|p| short(p))
            .collect::<Result<Vec<_>, _>>()?;
        let short_upper = short(&upper)?;
        let short_work = short(&work)?;
        let data = options(&short_lowers, &short_upper, &short_work);
        if data.len() > MOUNT_DATA_MAX {
            return Err(mount_err(format!(
                "{} layers do not fit in one page of mount options",
                lowers.len()
            )));
        }
        (data, fds)
    };
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| mount_err(format!("{e} ({} layers, options {data})", lowers.len())))?;
    tracing::debug!(rootfs = %rootfs.display(), image = %image.id, layers = lowers.len(), "rootfs mounted");
    Ok(rootfs)
}

fn options(lowers: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lower = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    )
}

/// Whether a path can appear in overlay options as is (`,` separates options, `:` lowers).
fn option_safe(p: &Path) -> bool {
    p.to_str()
        .is_some_and(|s| !s.contains([',', ':', '\\']) && !s.is_empty())
}

/// See [`ImageStore::unmount_rootfs`].
pub fn unmount_rootfs(container_dir: &Path) -> Result<(), ImageError> {
    let rootfs = container_dir.join("rootfs");
    for _ in 0..MAX_UNMOUNTS {
        if !is_mounted(&rootfs)? {
            break;
        }
        match umount2(&rootfs, MntFlags::empty()) {
            Ok(()) => {}
            // Still in use (a process left in a mount namespace that shares it): detach now,
            // the kernel frees it when the last user goes.
            Err(nix::errno::Errno::EBUSY) => {
                umount2(&rootfs, MntFlags::MNT_DETACH).map_err(|e| ImageError::Mount {
                    target: rootfs.clone(),
                    reason: format!("lazy unmount: {e}"),
                })?
            }
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => break,
            Err(e) => {
                return Err(ImageError::Mount {
                    target: rootfs.clone(),
                    reason: format!("unmount: {e}"),
                })
            }
        }
    }
    if is_mounted(&rootfs)? {
        return Err(ImageError::Mount {
            target: rootfs,
            reason: "still mounted after unmounting".to_owned(),
        });
    }
    // Only now, with nothing mounted there, can removing never reach into a layer.
    for name in ["rootfs", "upper", "work", "empty"] {
        let dir = container_dir.join(name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(&dir, e)),
        }
    }
    Ok(())
}

/// Whether something is mounted exactly at `path`, per this process's mountinfo.
pub fn is_mounted(path: &Path) -> Result<bool, ImageError> {
    let canonical = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(ImageError::io(path, e)),
    };
    let info = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(info).map_err(|e| ImageError::io(info, e))?;
    let want = canonical.to_string_lossy();
    Ok(text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| unescape_mountinfo(mount_point) == want))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let oct = std::str::from_utf8(oct).unwrap_or("");
                if let Ok(v) = u8::from_str_radix(oct, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }

    #[test]
    fn paths_with_option_separators_are_not_used_verbatim() {
        assert!(option_safe(Path::new(
            "/var/lib/herd/worker/images/layers/ab"
        )));
        assert!(!option_safe(Path::new("/data,dir")));
        assert!(!option_safe(Path::new("/data:dir")));
    }

    #[test]
    fn unmounting_what_was_never_mounted_is_fine_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("upper/etc")).unwrap();
        fs::create_dir_all(dir.path().join("rootfs")).unwrap();
        unmount_rootfs(dir.path()).unwrap();
        unmount_rootfs(dir.path()).unwrap();
        assert!(!dir.path().join("upper").exists());
        assert!(!dir.path().join("rootfs").exists());
    }
}
