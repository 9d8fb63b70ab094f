//! Pod volumes (`spec.volumes[]`) and container mounts (`containers[].volumeMounts[]`): the
//! sources herd implements (emptyDir, hostPath, configMap, secret, persistentVolumeClaim) and
//! their validation with field paths. Other Kubernetes volume types are refused by the manifest
//! parser with "not supported by herd" (see `manifest`).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::pod::PodSpec;
use super::validate::{validate_dns1123_label, validate_dns1123_subdomain, FieldError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimSource>,
}

/// The one source a valid volume has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source<'a> {
    EmptyDir(&'a EmptyDirSource),
    HostPath(&'a HostPathSource),
    ConfigMap(&'a ConfigMapSource),
    Secret(&'a SecretSource),
    Claim(&'a ClaimSource),
}

impl Volume {
    /// Every source set on the volume (validation demands exactly one).
    pub fn sources(&self) -> Vec<Source<'_>> {
        let mut out = Vec::new();
        if let Some(s) = &self.empty_dir {
            out.push(Source::EmptyDir(s));
        }
        if let Some(s) = &self.host_path {
            out.push(Source::HostPath(s));
        }
        if let Some(s) = &self.config_map {
            out.push(Source::ConfigMap(s));
        }
        if let Some(s) = &self.secret {
            out.push(Source::Secret(s));
        }
        if let Some(s) = &self.persistent_volume_claim {
            out.push(Source::Claim(s));
        }
        out
    }

    /// The volume's source; `None` only for a volume validation refuses.
    pub fn source(&self) -> Option<Source<'_>> {
        self.sources().into_iter().next()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmptyDirSource {
    /// `""` (node disk) or `Memory` (tmpfs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub medium: String,
    /// Quantity; for `Memory` the tmpfs size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

impl EmptyDirSource {
    pub fn is_memory(&self) -> bool {
        self.medium == "Memory"
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPathSource {
    #[serde(default)]
    pub path: String,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
}

/// Kubernetes' hostPath types herd checks (`BlockDevice`/`CharDevice` are not supported).
pub const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyToPath {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub path: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_mode"
    )]
    pub mode: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapSource {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_mode"
    )]
    pub default_mode: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    #[serde(default)]
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_mode"
    )]
    pub default_mode: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimSource {
    #[serde(default)]
    pub claim_name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub_path: String,
}

/// A file mode as manifests write it: a number (`256`, or `0400` read as octal by YAML 1.1
/// parsers such as kubectl's), or, since YAML 1.2 reads a leading-zero `0400` as text, the
/// text `0400` / `0o400` taken as octal.
fn deserialize_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<i32>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a file mode like 0644 or 420")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("file mode {v} is out of range")))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("file mode {v} is out of range")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let octal = v.strip_prefix("0o").or_else(|| v.strip_prefix('0'));
            let parsed = match octal {
                Some(o) if !o.is_empty() => i32::from_str_radix(o, 8),
                _ => v.parse(),
            };
            parsed
                .map(Some)
                .map_err(|_| E::custom(format!("{v:?} is not a file mode (like 0644 or 420)")))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Kubernetes volume types herd does not implement, refused by name (see `manifest`).
pub const UNSUPPORTED_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "downwardAPI",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "image",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// The largest file mode Kubernetes accepts (`0777`).
const MAX_MODE: i32 = 0o777;

/// A relative path inside a volume: not absolute, no `..` component, not empty.
fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} must be a relative path"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!("{path:?} must not contain '..'"));
    }
    if path.contains('\0') {
        return Err("must not contain NUL".into());
    }
    Ok(())
}

fn check_mode(errs: &mut Vec<FieldError>, path: String, mode: Option<i32>) {
    if let Some(m) = mode {
        if !(0..=MAX_MODE).contains(&m) {
            errs.push(FieldError {
                path,
                message: format!("must be a file mode between 0 and 0777 (511), got {m}"),
            });
        }
    }
}

fn check_items(errs: &mut Vec<FieldError>, base: &str, items: &[KeyToPath]) {
    let mut paths = HashSet::new();
    for (i, it) in items.iter().enumerate() {
        let p = format!("{base}.items[{i}]");
        if it.key.is_empty() {
            errs.push(FieldError {
                path: format!("{p}.key"),
                message: "is required".into(),
            });
        }
        match check_relative(&it.path) {
            Err(message) => errs.push(FieldError {
                path: format!("{p}.path"),
                message,
            }),
            Ok(())
                if it
                    .path
                    .split('/')
                    .next()
                    .is_some_and(|c| c.starts_with("..")) =>
            {
                errs.push(FieldError {
                    path: format!("{p}.path"),
                    message: format!("{:?} must not start with '..'", it.path),
                })
            }
            Ok(()) if !paths.insert(it.path.as_str()) => errs.push(FieldError {
                path: format!("{p}.path"),
                message: format!("duplicate path {:?}", it.path),
            }),
            Ok(()) => {}
        }
        check_mode(errs, format!("{p}.mode"), it.mode);
    }
}

/// Volumes and every container's mounts, each problem with its path.
pub fn validate_volumes(spec: &PodSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let add = |errs: &mut Vec<FieldError>, path: String, message: String| {
        errs.push(FieldError { path, message })
    };
    let mut names: BTreeMap<&str, &Volume> = BTreeMap::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let base = format!("spec.volumes[{i}]");
        if v.name.is_empty() {
            add(&mut errs, format!("{base}.name"), "is required".into());
        } else if let Err(m) = validate_dns1123_label(&v.name) {
            add(&mut errs, format!("{base}.name"), m);
        } else if names.insert(v.name.as_str(), v).is_some() {
            add(
                &mut errs,
                format!("{base}.name"),
                format!("duplicate volume name {:?}", v.name),
            );
        }
        let sources = v.sources();
        if sources.len() != 1 {
            add(
                &mut errs,
                base.clone(),
                format!(
                    "must have exactly one volume source (emptyDir, hostPath, configMap, secret or persistentVolumeClaim), found {}",
                    sources.len()
                ),
            );
        }
        for s in sources {
            match s {
                Source::EmptyDir(e) => {
                    let p = format!("{base}.emptyDir");
                    if !matches!(e.medium.as_str(), "" | "Memory") {
                        add(
                            &mut errs,
                            format!("{p}.medium"),
                            format!(
                                "{:?} is not supported (supported: \"\", \"Memory\")",
                                e.medium
                            ),
                        );
                    }
                    if let Some(q) = &e.size_limit {
                        if let Err(err) = super::quantity::parse_bytes(q) {
                            add(&mut errs, format!("{p}.sizeLimit"), err.to_string());
                        }
                    }
                }
                Source::HostPath(h) => {
                    let p = format!("{base}.hostPath");
                    if !h.path.starts_with('/') {
                        add(
                            &mut errs,
                            format!("{p}.path"),
                            format!("{:?} must be an absolute path", h.path),
                        );
                    } else if h.path.split('/').any(|c| c == "..") {
                        add(
                            &mut errs,
                            format!("{p}.path"),
                            format!("{:?} must not contain '..'", h.path),
                        );
                    }
                    if !HOST_PATH_TYPES.contains(&h.type_.as_str()) {
                        add(
                            &mut errs,
                            format!("{p}.type"),
                            format!(
                                "{:?} is not supported (supported: \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket)",
                                h.type_
                            ),
                        );
                    }
                }
                Source::ConfigMap(c) => {
                    let p = format!("{base}.configMap");
                    if c.name.is_empty() {
                        add(&mut errs, format!("{p}.name"), "is required".into());
                    } else if let Err(m) = validate_dns1123_subdomain(&c.name) {
                        add(&mut errs, format!("{p}.name"), m);
                    }
                    check_items(&mut errs, &p, &c.items);
                    check_mode(&mut errs, format!("{p}.defaultMode"), c.default_mode);
                }
                Source::Secret(s) => {
                    let p = format!("{base}.secret");
                    if s.secret_name.is_empty() {
                        add(&mut errs, format!("{p}.secretName"), "is required".into());
                    } else if let Err(m) = validate_dns1123_subdomain(&s.secret_name) {
                        add(&mut errs, format!("{p}.secretName"), m);
                    }
                    check_items(&mut errs, &p, &s.items);
                    check_mode(&mut errs, format!("{p}.defaultMode"), s.default_mode);
                }
                Source::Claim(c) => {
                    let p = format!("{base}.persistentVolumeClaim.claimName");
                    if c.claim_name.is_empty() {
                        add(&mut errs, p, "is required".into());
                    } else if let Err(m) = validate_dns1123_subdomain(&c.claim_name) {
                        add(&mut errs, p, m);
                    }
                }
            }
        }
    }
    for (ci, c) in spec.containers.iter().enumerate() {
        let mut paths = HashSet::new();
        for (mi, m) in c.volume_mounts.iter().enumerate() {
            let base = format!("spec.containers[{ci}].volumeMounts[{mi}]");
            if m.name.is_empty() {
                add(&mut errs, format!("{base}.name"), "is required".into());
            } else if !names.contains_key(m.name.as_str()) {
                add(
                    &mut errs,
                    format!("{base}.name"),
                    format!("volume {:?} is not in spec.volumes", m.name),
                );
            }
            let mp = m.mount_path.trim_end_matches('/');
            if !m.mount_path.starts_with('/') {
                add(
                    &mut errs,
                    format!("{base}.mountPath"),
                    format!("{:?} must be an absolute path", m.mount_path),
                );
            } else if m.mount_path.split('/').any(|c| c == "..") {
                add(
                    &mut errs,
                    format!("{base}.mountPath"),
                    format!("{:?} must not contain '..'", m.mount_path),
                );
            } else if mp.is_empty() {
                add(
                    &mut errs,
                    format!("{base}.mountPath"),
                    "must not be the container's root".into(),
                );
            } else if !paths.insert(mp.to_string()) {
                add(
                    &mut errs,
                    format!("{base}.mountPath"),
                    format!("duplicate mount path {:?}", m.mount_path),
                );
            }
            if !m.sub_path.is_empty() {
                if let Err(message) = check_relative(&m.sub_path) {
                    add(&mut errs, format!("{base}.subPath"), message);
                }
            }
        }
    }
    errs
}

/// Names of the ConfigMaps, Secrets and claims a pod's volumes reference.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct References {
    pub config_maps: Vec<String>,
    pub secrets: Vec<String>,
    pub claims: Vec<String>,
}

pub fn references(spec: &PodSpec) -> References {
    let mut r = References::default();
    for v in &spec.volumes {
        for s in v.sources() {
            match s {
                Source::ConfigMap(c) => r.config_maps.push(c.name.clone()),
                Source::Secret(s) => r.secrets.push(s.secret_name.clone()),
                Source::Claim(c) => r.claims.push(c.claim_name.clone()),
                Source::EmptyDir(_) | Source::HostPath(_) => {}
            }
        }
    }
    for l in [&mut r.config_maps, &mut r.secrets, &mut r.claims] {
        l.sort();
        l.dedup();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::Container;

    fn spec(volumes: Vec<Volume>, mounts: Vec<VolumeMount>) -> PodSpec {
        PodSpec {
            volumes,
            containers: vec![Container {
                name: "app".into(),
                image: "busybox".into(),
                volume_mounts: mounts,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn empty(name: &str) -> Volume {
        Volume {
            name: name.into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        }
    }

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        }
    }

    fn paths(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| format!("{e}")).collect()
    }

    #[test]
    fn a_valid_pod_with_every_source_passes() {
        let vols = vec![
            empty("scratch"),
            Volume {
                name: "host".into(),
                host_path: Some(HostPathSource {
                    path: "/var/log".into(),
                    type_: "Directory".into(),
                }),
                ..Default::default()
            },
            Volume {
                name: "cfg".into(),
                config_map: Some(ConfigMapSource {
                    name: "app-config".into(),
                    items: vec![KeyToPath {
                        key: "a".into(),
                        path: "conf/a.ini".into(),
                        mode: Some(0o600),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "data".into(),
                persistent_volume_claim: Some(ClaimSource {
                    claim_name: "db".into(),
                    read_only: false,
                }),
                ..Default::default()
            },
        ];
        let mounts = vec![mount("scratch", "/tmp/s"), mount("cfg", "/etc/app")];
        assert_eq!(validate_volumes(&spec(vols, mounts)), vec![]);
    }

    #[test]
    fn bad_mounts_name_their_paths() {
        let mut relative = mount("scratch", "data");
        relative.sub_path = "../etc".into();
        let errs = validate_volumes(&spec(
            vec![empty("scratch")],
            vec![
                mount("nope", "/a"),
                mount("scratch", "/b"),
                mount("scratch", "/b/"),
                relative,
                mount("scratch", "/x/../y"),
            ],
        ));
        assert_eq!(
            paths(&errs),
            [
                "spec.containers[0].volumeMounts[0].name: volume \"nope\" is not in spec.volumes",
                "spec.containers[0].volumeMounts[2].mountPath: duplicate mount path \"/b/\"",
                "spec.containers[0].volumeMounts[3].mountPath: \"data\" must be an absolute path",
                "spec.containers[0].volumeMounts[3].subPath: \"../etc\" must not contain '..'",
                "spec.containers[0].volumeMounts[4].mountPath: \"/x/../y\" must not contain '..'",
            ]
        );
    }

    #[test]
    fn bad_volumes_name_their_paths() {
        let two = Volume {
            name: "two".into(),
            empty_dir: Some(Default::default()),
            host_path: Some(HostPathSource {
                path: "/x".into(),
                type_: String::new(),
            }),
            ..Default::default()
        };
        let none = Volume {
            name: "none".into(),
            ..Default::default()
        };
        let bad = Volume {
            name: "bad".into(),
            empty_dir: Some(EmptyDirSource {
                medium: "HugePages".into(),
                size_limit: Some("lots".into()),
            }),
            ..Default::default()
        };
        let host = Volume {
            name: "host".into(),
            host_path: Some(HostPathSource {
                path: "var".into(),
                type_: "CharDevice".into(),
            }),
            ..Default::default()
        };
        let sec = Volume {
            name: "sec".into(),
            secret: Some(SecretSource {
                secret_name: String::new(),
                items: vec![
                    KeyToPath {
                        key: "k".into(),
                        path: "../x".into(),
                        mode: None,
                    },
                    KeyToPath {
                        key: String::new(),
                        path: "/abs".into(),
                        mode: Some(0o1777),
                    },
                ],
                default_mode: Some(-1),
                optional: None,
            }),
            ..Default::default()
        };
        let errs = validate_volumes(&spec(
            vec![
                two,
                none,
                bad,
                host,
                sec,
                empty("scratch"),
                empty("scratch"),
            ],
            vec![],
        ));
        let got = paths(&errs);
        for want in [
            "spec.volumes[0]: must have exactly one volume source",
            "spec.volumes[1]: must have exactly one volume source",
            "spec.volumes[2].emptyDir.medium: \"HugePages\" is not supported",
            "spec.volumes[2].emptyDir.sizeLimit: quantity \"lots\"",
            "spec.volumes[3].hostPath.path: \"var\" must be an absolute path",
            "spec.volumes[3].hostPath.type: \"CharDevice\" is not supported",
            "spec.volumes[4].secret.secretName: is required",
            "spec.volumes[4].secret.items[0].path: \"../x\" must not contain '..'",
            "spec.volumes[4].secret.items[1].key: is required",
            "spec.volumes[4].secret.items[1].path: \"/abs\" must be a relative path",
            "spec.volumes[4].secret.items[1].mode: must be a file mode",
            "spec.volumes[4].secret.defaultMode: must be a file mode",
            "spec.volumes[6].name: duplicate volume name \"scratch\"",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{want} in {got:#?}"
            );
        }
        assert_eq!(got.len(), 13, "{got:#?}");
    }

    #[test]
    fn modes_read_as_numbers_or_octal_text() {
        let read = |y: &str| -> Result<ConfigMapSource, String> {
            yaml_serde::from_str(y).map_err(|e| e.to_string())
        };
        assert_eq!(
            read("{name: a, defaultMode: 0400}").unwrap().default_mode,
            Some(0o400)
        );
        assert_eq!(
            read("{name: a, defaultMode: '0o644'}")
                .unwrap()
                .default_mode,
            Some(0o644)
        );
        assert_eq!(
            read("{name: a, defaultMode: 420}").unwrap().default_mode,
            Some(420)
        );
        assert!(read("{name: a, defaultMode: rw}")
            .unwrap_err()
            .contains("not a file mode"));
    }

    #[test]
    fn references_are_sorted_and_unique() {
        let cm = |n: &str, c: &str| Volume {
            name: n.into(),
            config_map: Some(ConfigMapSource {
                name: c.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = references(&spec(
            vec![cm("a", "y"), cm("b", "x"), cm("c", "y")],
            vec![],
        ));
        assert_eq!(r.config_maps, ["x", "y"]);
        assert!(r.secrets.is_empty() && r.claims.is_empty());
    }
}
