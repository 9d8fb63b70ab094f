//! tmpfs mounts for Memory emptyDirs and Secret volumes, and finding/unmounting whatever is
//! mounted under a pod's volume dir (from `/proc/self/mountinfo`).

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Pure: the mount points listed in a mountinfo text that are `root` or below it, deepest
/// first (the order to unmount them in). Octal escapes (`\040` for a space) are decoded.
pub fn mounts_under(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(root))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mountinfo() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
}

/// Whether `dir` itself is a mount point.
pub fn is_mount_point(dir: &Path) -> std::io::Result<bool> {
    let info = mountinfo()?;
    Ok(mounts_under(&info, dir).iter().any(|p| p == dir))
}

/// Mounts a tmpfs on `dir` unless one is already there (idempotent across agent restarts).
/// `size` in bytes; `None` keeps the kernel default (half the RAM).
pub fn ensure_tmpfs(dir: &Path, size: Option<u64>, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_mount_point(dir)? {
        return Ok(());
    }
    let mut opts = format!("mode={mode:o}");
    if let Some(s) = size {
        opts.push_str(&format!(",size={s}"));
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(std::io::Error::from)
}

/// Unmounts everything mounted at or under `root`, deepest first, lazily (a container that
/// still holds a file open cannot make this fail). Returns what is still mounted afterwards.
pub fn unmount_all(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    for p in mounts_under(&mountinfo()?, root) {
        if let Err(e) = umount2(&p, MntFlags::MNT_DETACH) {
            tracing::warn!(path = %p.display(), error = %e, "volume unmount failed");
        }
    }
    Ok(mounts_under(&mountinfo()?, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:50 / /d/volumes/pods/u1/cache rw,nosuid,nodev - tmpfs tmpfs rw,size=1024k
91 22 0:51 / /d/volumes/pods/u1/sec rw - tmpfs tmpfs rw
92 91 0:52 / /d/volumes/pods/u1/sec/inner rw - tmpfs tmpfs rw
93 22 0:53 / /d/volumes/pods/u10/x rw - tmpfs tmpfs rw
94 22 0:54 / /d/volumes/pods/u1/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn mounts_under_a_pod_dir_come_deepest_first_and_siblings_with_a_common_prefix_are_not_included(
    ) {
        let got = mounts_under(INFO, Path::new("/d/volumes/pods/u1"));
        assert_eq!(got[0], Path::new("/d/volumes/pods/u1/sec/inner"));
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.contains(&PathBuf::from("/d/volumes/pods/u1/with space")));
        assert!(!got.contains(&PathBuf::from("/d/volumes/pods/u10/x")));
    }
}
