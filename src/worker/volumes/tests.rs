use std::collections::BTreeMap;

use super::*;
use crate::api::volume::{
    ClaimSource, ConfigMapSource, EmptyDirSource, HostPathSource, VolumeMount,
};
use crate::proto::BoundClaim;

fn layout(tmp: &Path) -> Layout {
    Layout {
        root: tmp.join("volumes"),
        node: "w1".into(),
    }
}

fn pod(volumes: Vec<Volume>, mounts: Vec<VolumeMount>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = "web".into();
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = "11111111-2222-3333-4444-555555555555".into();
    p.spec.volumes = volumes;
    p.spec.containers = vec![Container {
        name: "app".into(),
        image: "busybox".into(),
        volume_mounts: mounts,
        ..Default::default()
    }];
    p
}

fn vm(name: &str, path: &str, sub: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: false,
        sub_path: sub.into(),
    }
}

#[test]
fn stale_claims_keep_bound_used_and_prefix_matched_dirs() {
    let present = vec![
        "default-a-u1".to_string(),
        "default-b-u2".to_string(),
        "default-c-u3".to_string(),
        "default-d-u4".to_string(),
    ];
    let bound = vec!["default-a-u1".to_string()];
    let in_use = BTreeSet::from(["default-b-u2".to_string(), "default-c-".to_string()]);
    assert_eq!(stale_claims(&present, &bound, &in_use), ["default-d-u4"]);
}

#[test]
fn a_missing_configmap_is_a_problem_naming_it_and_a_present_one_is_projected_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layout(tmp.path());
    let p = pod(
        vec![
            Volume {
                name: "cfg".into(),
                config_map: Some(ConfigMapSource {
                    name: "app".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirSource::default()),
                ..Default::default()
            },
        ],
        vec![vm("scratch", "/s", "a/b"), vm("cfg", "/etc/app", "")],
    );
    let mut src = VolumeSources::default();
    src.config_maps.insert("app".into(), None);
    let prep = prepare(&l, &p, Some(&src));
    assert_eq!(prep.problems["cfg"], "configmap \"app\" not found");
    let err = resolve_mounts(&p.spec.containers[0], &prep).unwrap_err();
    assert_eq!(err, "volume \"cfg\": configmap \"app\" not found");
    // Nothing received at all (agent restart without master) and nothing on disk: wait.
    let prep = prepare(&l, &p, None);
    assert!(prep.problems["cfg"].starts_with("waiting for the master"));

    src.config_maps.insert(
        "app".into(),
        Some(BTreeMap::from([("k".to_string(), "aGk=".to_string())])),
    );
    let prep = prepare(&l, &p, Some(&src));
    assert!(prep.problems.is_empty(), "{prep:?}");
    let mounts = resolve_mounts(&p.spec.containers[0], &prep).unwrap();
    let pod_dir = l.pod_dir(&p.metadata.uid);
    assert_eq!(
        mounts[0].source,
        pod_dir.canonicalize().unwrap().join("scratch/a/b")
    );
    assert!(!mounts[0].read_only);
    assert_eq!(mounts[1].source, pod_dir.join("cfg"));
    assert!(
        mounts[1].read_only,
        "configMap volumes are always read-only"
    );
    assert_eq!(
        std::fs::read_to_string(pod_dir.join("cfg/k")).unwrap(),
        "hi"
    );
    // After a restart (no sources yet) the existing projection is used as it is.
    assert!(prepare(&l, &p, None).problems.is_empty());
    teardown(&l, &p.metadata.uid).unwrap();
    assert!(!pod_dir.exists());
}

#[test]
fn a_sub_path_symlink_out_of_the_volume_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layout(tmp.path());
    let p = pod(
        vec![Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirSource::default()),
            ..Default::default()
        }],
        vec![vm("scratch", "/s", "evil")],
    );
    let prep = prepare(&l, &p, None);
    std::os::unix::fs::symlink("/etc", l.pod_dir(&p.metadata.uid).join("scratch/evil")).unwrap();
    let e = resolve_mounts(&p.spec.containers[0], &prep).unwrap_err();
    assert!(e.contains("leads out of the volume"), "{e}");
}

#[test]
fn host_path_types_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let f = tmp.path().join("f");
    let ds = d.to_str().unwrap();
    let fs = f.to_str().unwrap();
    assert!(check_host_path(ds, "Directory").is_err());
    check_host_path(ds, "DirectoryOrCreate").unwrap();
    assert!(d.is_dir());
    check_host_path(ds, "Directory").unwrap();
    assert!(check_host_path(ds, "File")
        .unwrap_err()
        .contains("type File"));
    check_host_path(fs, "FileOrCreate").unwrap();
    assert!(f.is_file());
    check_host_path(fs, "File").unwrap();
    assert!(check_host_path(fs, "Socket").is_err());
    assert!(check_host_path(fs, "DirectoryOrCreate").is_err());
}

#[test]
fn a_claim_is_used_only_on_its_node_and_its_dir_is_found_again_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layout(tmp.path());
    let p = pod(
        vec![Volume {
            name: "data".into(),
            persistent_volume_claim: Some(ClaimSource {
                claim_name: "db".into(),
                read_only: true,
            }),
            ..Default::default()
        }],
        vec![vm("data", "/data", "")],
    );
    let uid = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    let mut src = VolumeSources::default();
    src.claims.insert(
        "db".into(),
        Some(BoundClaim {
            uid: uid.into(),
            node: Some("w2".into()),
        }),
    );
    assert_eq!(
        prepare(&l, &p, Some(&src)).problems["data"],
        "persistentvolumeclaim \"db\" is bound to node \"w2\""
    );
    src.claims.get_mut("db").unwrap().as_mut().unwrap().node = Some("w1".into());
    let prep = prepare(&l, &p, Some(&src));
    let want = l.claims_dir().join(format!("default-db-{uid}"));
    assert_eq!(
        prep.ready["data"],
        Ready {
            host: want.clone(),
            read_only: true
        }
    );
    assert_eq!(prepare(&l, &p, None).ready["data"].host, want);
    assert_eq!(claim_dirs(&p, Some(&src)), [format!("default-db-{uid}")]);
    assert_eq!(claim_dirs(&p, None), ["default-db-"]);
    // Unbound on the master and unused: removed.
    let removed = gc_claims(&l, &[], &BTreeSet::new());
    assert_eq!(removed, [format!("default-db-{uid}")]);
    assert!(!want.exists());
}

#[test]
fn host_path_volumes_are_bound_as_they_are() {
    let p = pod(
        vec![Volume {
            name: "h".into(),
            host_path: Some(HostPathSource {
                path: "/".into(),
                type_: "Directory".into(),
            }),
            ..Default::default()
        }],
        vec![VolumeMount {
            read_only: true,
            ..vm("h", "/host", "")
        }],
    );
    let tmp = tempfile::tempdir().unwrap();
    let prep = prepare(&layout(tmp.path()), &p, None);
    let m = resolve_mounts(&p.spec.containers[0], &prep).unwrap();
    assert_eq!(
        m,
        [BindMount {
            source: "/".into(),
            destination: "/host".into(),
            read_only: true
        }]
    );
}
