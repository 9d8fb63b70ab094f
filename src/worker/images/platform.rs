//! This machine's OCI platform and how well an image's platform fits it. Boards are mixed
//! (arm64, armv7, armv6), so variant matters: an armv7 board runs v7, v6 and v5 images, in
//! that order of preference, but never v8.

use super::Platform;

/// The platform this binary runs on, in OCI terms (`linux/arm64`, `linux/arm/v7`, ...).
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "riscv64" => "riscv64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "s390x" => "s390x",
        other => other,
    };
    let variant = match architecture {
        "arm64" => "v8".to_owned(),
        "arm" => arm_variant().unwrap_or_else(|| "v7".to_owned()),
        _ => String::new(),
    };
    Platform {
        os: std::env::consts::OS.to_owned(),
        architecture: architecture.to_owned(),
        variant,
    }
}

/// 32-bit ARM variant from the kernel's view of the CPU ("CPU architecture: 7" → `v7`).
fn arm_variant() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = cpuinfo
        .lines()
        .find(|l| l.starts_with("CPU architecture"))?;
    let value = line.split(':').nth(1)?.trim();
    let digits: String = value.chars().take_while(|c| c.is_ascii_digit()).collect();
    match digits.parse::<u32>().ok()? {
        // An arm64 kernel running a 32-bit userland reports 8; it runs v7 code.
        n if n >= 8 => Some("v7".to_owned()),
        n => Some(format!("v{n}")),
    }
}

/// How well `candidate` runs on `host`: `None` if it cannot, higher is better.
pub fn score(host: &Platform, candidate: &Platform) -> Option<u32> {
    let os = if candidate.os.is_empty() {
        "linux"
    } else {
        candidate.os.as_str()
    };
    if os != host.os || candidate.architecture != host.architecture {
        return None;
    }
    // A bare `arm` is v7 and a bare `arm64` is v8 by convention (containerd's
    // normalisation), so an armv6 board must not take an `arm` image without a variant.
    let default_variant = |arch: &str| match arch {
        "arm" => "v7",
        "arm64" => "v8",
        _ => "",
    };
    let candidate_variant = match candidate.variant.as_str() {
        "" => default_variant(&candidate.architecture),
        v => v,
    };
    let host_variant = match host.variant.as_str() {
        "" => default_variant(&host.architecture),
        v => v,
    };
    if candidate_variant == host_variant {
        return Some(100);
    }
    if candidate_variant.is_empty() {
        return Some(50);
    }
    match host.architecture.as_str() {
        // arm64 is effectively only v8 (v9 runs v8 code, not vice versa).
        "arm64" => (candidate_variant == "v8").then_some(90),
        "arm" => {
            let host_v = variant_number(host_variant)?;
            let cand_v = variant_number(candidate_variant)?;
            (cand_v <= host_v).then(|| 90 - (host_v - cand_v))
        }
        _ => None,
    }
}

fn variant_number(v: &str) -> Option<u32> {
    v.strip_prefix('v')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: &str) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.into(),
        }
    }

    #[test]
    fn an_armv7_board_prefers_v7_then_older_variants_and_refuses_others() {
        let host = p("linux", "arm", "v7");
        let v7 = score(&host, &p("linux", "arm", "v7"));
        let v6 = score(&host, &p("linux", "arm", "v6"));
        let v5 = score(&host, &p("linux", "arm", "v5"));
        assert!(v7 > v6 && v6 > v5 && v5.is_some());
        assert_eq!(score(&host, &p("linux", "arm", "v8")), None);
        assert_eq!(score(&host, &p("linux", "arm64", "v8")), None);
        assert_eq!(score(&host, &p("windows", "arm", "v7")), None);
    }

    #[test]
    fn host_platform_is_linux_with_a_known_architecture() {
        let host = host_platform();
        assert_eq!(host.os, "linux");
        assert!(!host.architecture.is_empty());
        assert_eq!(score(&host, &host), Some(100));
    }
}
