//! OCI platform matching between a node and the platforms an image offers.
//!
//! Spellings differ between registries and kernels (`arm64` vs `arm64/v8` vs `aarch64`,
//! `arm` vs `arm/v7`), so both sides are normalized the way containerd does before comparing.
//! 32-bit ARM is backwards compatible: an armv7 board runs armv6 and armv5 binaries, never the
//! reverse, and a 64-bit board is not assumed to have a 32-bit userland.

/// `os/arch[/variant]` in canonical spelling: lowercase, GOARCH names, the default variants
/// (`arm64/v8`, `amd64/v1`) dropped and bare `arm` taken as `arm/v7`.
pub fn normalize_platform(platform: &str) -> String {
    let lower = platform.trim().to_ascii_lowercase();
    let mut parts = lower.splitn(3, '/');
    let os = parts.next().unwrap_or_default();
    let arch = parts.next().unwrap_or_default();
    let variant = parts.next().unwrap_or_default();
    let (arch, variant) = match (arch, variant) {
        ("aarch64" | "arm64", "" | "v8" | "8") => ("arm64", ""),
        ("x86_64" | "x86-64" | "amd64", "" | "v1") => ("amd64", ""),
        ("armhf" | "armv7l" | "armv7", "") => ("arm", "v7"),
        ("armel" | "armv6l" | "armv6", "") => ("arm", "v6"),
        ("arm", "") => ("arm", "v7"),
        ("arm", v) if !v.starts_with('v') => ("arm", v),
        ("i386" | "i686" | "386", v) => ("386", v),
        (a, v) => (a, v),
    };
    let variant = match (arch, variant) {
        ("arm", v) if !v.is_empty() && !v.starts_with('v') => format!("v{v}"),
        (_, v) => v.to_string(),
    };
    if variant.is_empty() {
        format!("{os}/{arch}")
    } else {
        format!("{os}/{arch}/{variant}")
    }
}

fn arm_level(variant: &str) -> Option<u32> {
    variant.strip_prefix('v')?.parse().ok()
}

/// Whether a node of platform `node` can run an image built for `image`.
pub fn platform_runs(node: &str, image: &str) -> bool {
    runs_normalized(&normalize_platform(node), &normalize_platform(image))
}

/// [`platform_runs`] for platforms already in canonical spelling, so a scheduling decision
/// normalizes the offered platforms once instead of once per node.
pub(super) fn runs_normalized(node: &str, image: &str) -> bool {
    if node == image {
        return true;
    }
    let split = |p: &str| -> (String, String, String) {
        let mut it = p.splitn(3, '/').map(str::to_string);
        (
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        )
    };
    let (node_os, node_arch, node_variant) = split(node);
    let (image_os, image_arch, image_variant) = split(image);
    if node_os != image_os || node_arch != image_arch || node_arch != "arm" {
        return false;
    }
    match (arm_level(&node_variant), arm_level(&image_variant)) {
        (Some(n), Some(i)) => i <= n,
        _ => false,
    }
}

/// The offered platforms for a message: normalized, sorted, without attestation entries.
pub(super) fn describe(offered: &[String]) -> String {
    let mut shown: Vec<String> = offered
        .iter()
        .map(|p| normalize_platform(p))
        .filter(|p| !p.starts_with("unknown/"))
        .collect();
    shown.sort();
    shown.dedup();
    if shown.is_empty() {
        "no platforms".into()
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_normalize_to_one_canonical_form() {
        for (raw, want) in [
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("Linux/ARM64", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/armv6l", "linux/arm/v6"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/arm/v6", "linux/arm/v6"),
        ] {
            assert_eq!(normalize_platform(raw), want, "{raw}");
        }
    }

    #[test]
    fn arm_boards_run_older_arm_variants_but_never_newer_ones() {
        assert!(platform_runs("linux/arm/v7", "linux/arm/v6"));
        assert!(platform_runs("linux/arm/v7", "linux/arm/v5"));
        assert!(platform_runs("linux/arm/v7", "linux/arm"));
        assert!(!platform_runs("linux/arm/v6", "linux/arm/v7"));
        assert!(!platform_runs("linux/arm/v6", "linux/arm"));
        assert!(platform_runs("linux/arm64", "linux/arm64/v8"));
        assert!(!platform_runs("linux/arm64", "linux/arm/v7"));
        assert!(!platform_runs("linux/amd64", "linux/arm64"));
        assert!(!platform_runs("linux/arm64", "windows/arm64"));
        assert!(!platform_runs("", "linux/amd64"));
    }
}
