//! Every example in deploy/examples is accepted by the driver's own parsers: StorageClass
//! parameters and mount options as CreateVolume and NodeStageVolume would check them, and
//! static PVs' volume attributes. Examples that the driver would refuse cannot land.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the test failing")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fsx_csi_driver::mount::lustre;
use fsx_csi_driver::provision::params::{MutableParams, StorageClassParams};
use yaml_rust2::{Yaml, YamlLoader};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec().map(|v| v.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn map(y: &Yaml) -> HashMap<String, String> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| {
                    let v = match v {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k.as_str()?.to_string(), v))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn examples_are_accepted_by_the_driver() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(files.len() >= 15, "expected the example scenarios, found {} files", files.len());
    let (mut classes, mut pvs, mut snapshot_classes) = (0, 0, 0);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display())) {
            match doc["kind"].as_str() {
                Some("StorageClass") if doc["provisioner"].as_str() == Some("fsx.csi.aws.com") => {
                    classes += 1;
                    let params = map(&doc["parameters"]);
                    let parsed = match fsx_csi_driver::subdir::params::mode(&params) {
                        Ok(fsx_csi_driver::subdir::params::Mode::Subdirectory) => {
                            fsx_csi_driver::subdir::params::SubdirParams::parse(&params).map(|_| ())
                        }
                        _ => StorageClassParams::parse(&params).map(|_| ()),
                    };
                    if let Err(e) = parsed {
                        panic!("{}: {e}", file.display());
                    }
                    lustre::check_options(&strings(&doc["mountOptions"]))
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                }
                Some("VolumeAttributesClass") => {
                    classes += 1;
                    assert_eq!(doc["driverName"].as_str(), Some("fsx.csi.aws.com"), "{}", file.display());
                    if let Err(e) = MutableParams::parse(&map(&doc["parameters"])) {
                        panic!("{}: {e}", file.display());
                    }
                }
                Some("VolumeSnapshotClass") => {
                    assert_eq!(doc["driver"].as_str(), Some("fsx.csi.aws.com"), "{}", file.display());
                    let params = map(&doc["parameters"]);
                    assert!(params.keys().all(|k| k == "extraTags"), "{}: {params:?}", file.display());
                    snapshot_classes += 1;
                }
                Some("PersistentVolume") if doc["spec"]["csi"]["driver"].as_str() == Some("fsx.csi.aws.com") => {
                    pvs += 1;
                    let csi = &doc["spec"]["csi"];
                    let id = csi["volumeHandle"].as_str().unwrap();
                    assert!(fsx_csi_driver::fsx::is_file_system_id(id), "{}: volumeHandle {id}", file.display());
                    let attrs = map(&csi["volumeAttributes"]);
                    assert!(lustre::is_host_name(&attrs["dnsname"]), "{}: dnsname", file.display());
                    assert!(lustre::is_mount_name(&attrs["mountname"]), "{}: mountname", file.display());
                    lustre::check_options(&strings(&doc["spec"]["mountOptions"]))
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                }
                _ => {}
            }
        }
    }
    assert!(classes >= 12, "{classes} StorageClasses and VolumeAttributesClasses");
    assert_eq!((pvs, snapshot_classes), (1, 1));
}

/// The StorageClasses of the chart's test values (the chart's `storageClasses` value) are
/// accepted by the driver, so a class the schema lets through is one the driver takes.
#[test]
fn the_chart_storage_class_fixture_is_accepted_by_the_driver() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/fixtures/storage-classes-values.yaml");
    let doc = YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap()).unwrap().remove(0);
    let classes = doc["storageClasses"].as_vec().unwrap();
    assert!(classes.len() >= 2);
    for class in classes {
        let params = map(&class["parameters"]);
        let parsed = match fsx_csi_driver::subdir::params::mode(&params) {
            Ok(fsx_csi_driver::subdir::params::Mode::Subdirectory) => {
                fsx_csi_driver::subdir::params::SubdirParams::parse(&params).map(|_| ())
            }
            _ => StorageClassParams::parse(&params).map(|_| ()),
        };
        parsed.unwrap_or_else(|e| panic!("{}: {e}", class["name"].as_str().unwrap_or("")));
        lustre::check_options(&strings(&class["mountOptions"])).unwrap();
    }
}
