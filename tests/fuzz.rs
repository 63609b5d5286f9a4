//! Fuzz targets for everything that parses outside input, with bolero (stable Rust).
//!
//! Each target replays its checked-in corpus (`tests/__fuzz__/<target>/corpus/`) and then runs
//! random inputs for `BOLERO_RANDOM_TEST_TIME_MS` (bolero's default is about a second, so a
//! plain `cargo test` runs them briefly; `hack/test.sh` gives each a few seconds and
//! `hack/tiers/fuzz.sh SECONDS` as long as wanted). The properties, for every input:
//!
//! - nothing panics;
//! - every refusal is `InvalidArgument` (or, for capacity, `OutOfRange`), with a message that
//!   names the field, stays under 4 KiB and holds no control character;
//! - anything accepted is something FSx or the kernel accepts: the `CreateFileSystem` request
//!   is checked against the patterns of botocore's FSx model, mount data against what
//!   `mount.lustre` would pass, and every path the node plugin acts on lies inside the kubelet
//!   directory.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the test failing")]

mod common;
#[path = "common/tmpfs_mounter.rs"]
#[allow(dead_code)]
mod tmpfs_mounter;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fsx_csi_driver::csi::controller::{Family, failure};
use fsx_csi_driver::csi::node::{NodeOptions, NodeService};
use fsx_csi_driver::fsx::{CreateSpec, GIB, LustreSettings, is_file_system_id};
use fsx_csi_driver::metadata::Unavailable;
use fsx_csi_driver::mount::lustre;
use fsx_csi_driver::mount::paths::{KubeletDir, check_subdirectory};
use fsx_csi_driver::mount::{Mounter, Usage, mountinfo};
use fsx_csi_driver::proto::node_server::Node;
use fsx_csi_driver::proto::volume_capability::AccessType;
use fsx_csi_driver::proto::volume_capability::access_mode::Mode;
use fsx_csi_driver::proto::*;
use fsx_csi_driver::provision::params::{self, KEYS, MutableParams, StorageClassParams};
use fsx_csi_driver::provision::{CreateRequest, Provisioner};
use fsx_csi_driver::testing::client_request_token;
use fsx_csi_driver::testing::rewrite_stream;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use tonic::{Code, Status};

/// A refusal the client sees: the code is one of `codes`, and the message is bounded and
/// printable.
fn check_refusal(status: &Status, codes: &[Code], input: &dyn std::fmt::Debug) {
    assert!(codes.contains(&status.code()), "{:?} for {input:?}: {}", status.code(), status.message());
    let m = status.message();
    assert!(!m.is_empty() && m.len() < 4096, "a {}-byte message for {input:?}", m.len());
    assert!(!m.chars().any(char::is_control), "control characters in {m:?}");
}

// ---------------------------------------------------------------------------------------
// What FSx accepts, from botocore's `data/fsx/2018-03-01/service-2.json`.

fn is_hex_id(s: &str, prefix: &str, max: usize) -> bool {
    s.len() <= max
        && s.strip_prefix(prefix)
            .is_some_and(|h| h.len() >= 8 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`
fn is_fsx_tag_text(s: &str) -> bool {
    s.chars().all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
}

/// `^[^\u0000\u0085\u2028\u2029\r\n]{3,4357}$`
fn is_fsx_s3_path(s: &str) -> bool {
    (3..=4357).contains(&s.chars().count())
        && !s.chars().any(|c| matches!(c, '\0' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\r' | '\n'))
}

fn two_digits(s: &str, max: u32) -> bool {
    s.len() == 2 && s.parse::<u32>().is_ok_and(|n| n <= max) && s.bytes().all(|b| b.is_ascii_digit())
}

fn fsx_accepts(spec: &CreateSpec) -> Result<(), String> {
    let t = &spec.client_request_token;
    if !(1..=63).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return Err(format!("ClientRequestToken {t:?}"));
    }
    if !is_hex_id(&spec.subnet_id, "subnet-", 24) {
        return Err(format!("SubnetId {:?}", spec.subnet_id));
    }
    if spec.security_group_ids.len() > 50 || !spec.security_group_ids.iter().all(|g| is_hex_id(g, "sg-", 20)) {
        return Err("SecurityGroupIds".into());
    }
    if spec.tags.is_empty() || spec.tags.len() > 50 {
        return Err(format!("{} tags", spec.tags.len()));
    }
    for (k, v) in &spec.tags {
        if !(1..=128).contains(&k.chars().count())
            || !is_fsx_tag_text(k)
            || v.chars().count() > 256
            || !is_fsx_tag_text(v)
        {
            return Err(format!("tag {k:?}={v:?}"));
        }
    }
    if let Some(k) = &spec.kms_key_id {
        if !(1..=2048).contains(&k.len()) {
            return Err("KmsKeyId".into());
        }
    }
    if let Some(v) = &spec.lustre.file_system_type_version {
        let ok = (1..=20).contains(&v.len())
            && v.as_bytes()[0].is_ascii_digit()
            && v.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !ok {
            return Err(format!("FileSystemTypeVersion {v:?}"));
        }
    }
    let l = &spec.lustre;
    let deployment = l.deployment_type.map(|d| d.to_string()).unwrap_or_else(|| "SCRATCH_1".into());
    let storage = spec.storage_type.map(|s| s.to_string()).unwrap_or_else(|| "SSD".into());
    let throughput = l.per_unit_storage_throughput.map(i64::from);
    // Intelligent-Tiering is sent with no StorageCapacity.
    if storage != "INTELLIGENT_TIERING"
        && !fsx_emulator::valid_capacity(&deployment, &storage, throughput, i64::from(spec.capacity_gib))
    {
        return Err(format!("StorageCapacity {} for {deployment} {storage} {throughput:?}", spec.capacity_gib));
    }
    if let Some(t) = l.per_unit_storage_throughput {
        if !(12..=1000).contains(&t) {
            return Err("PerUnitStorageThroughput".into());
        }
    }
    for p in [&l.import_path, &l.export_path].into_iter().flatten() {
        if !is_fsx_s3_path(p) {
            return Err(format!("ImportPath/ExportPath {p:?}"));
        }
    }
    if let Some(c) = l.imported_file_chunk_size {
        if !(1..=512_000).contains(&c) {
            return Err("ImportedFileChunkSize".into());
        }
    }
    if let Some(w) = &l.weekly_maintenance_start_time {
        let ok = matches!(w.split_once(':'), Some((d, hm)) if d.len() == 1 && ("1"..="7").contains(&d)
            && matches!(hm.split_once(':'), Some((h, m)) if two_digits(h, 23) && two_digits(m, 59)));
        if !ok {
            return Err(format!("WeeklyMaintenanceStartTime {w:?}"));
        }
    }
    if let Some(d) = &l.daily_automatic_backup_start_time {
        if !matches!(d.split_once(':'), Some((h, m)) if two_digits(h, 23) && two_digits(m, 59)) {
            return Err(format!("DailyAutomaticBackupStartTime {d:?}"));
        }
    }
    if let Some(r) = l.automatic_backup_retention_days {
        if !(0..=90).contains(&r) {
            return Err("AutomaticBackupRetentionDays".into());
        }
    }
    if let Some(i) = l.metadata_iops {
        if !(1500..=192_000).contains(&i) {
            return Err("MetadataConfiguration.Iops".into());
        }
    }
    // The newer fields, by botocore's shapes: ThroughputCapacityMbps 4000-2000000,
    // LustreNoSquashNids (at most 64 of 11-43 characters matching the NID pattern),
    // GeneralARN for the log destination, and Intelligent-Tiering's required cache.
    if let Some(t) = l.throughput_capacity {
        if !(4000..=2_000_000).contains(&t) || storage != "INTELLIGENT_TIERING" {
            return Err(format!("ThroughputCapacity {t} on {storage}"));
        }
    }
    if storage == "INTELLIGENT_TIERING" && (l.data_read_cache_sizing_mode.is_none() || deployment != "PERSISTENT_2") {
        return Err("Intelligent-Tiering needs PERSISTENT_2 and DataReadCacheConfiguration".into());
    }
    if let Some(nids) = &l.no_squash_nids {
        let nid = |n: &str| {
            (11..=43).contains(&n.len())
                && n.strip_suffix("@tcp").is_some_and(|ip| {
                    ip.split('.').count() == 4 && ip.bytes().all(|b| b.is_ascii_digit() || b"[]-.".contains(&b))
                })
        };
        if nids.len() > 64 || !nids.iter().all(|n| nid(n)) || l.root_squash.is_none() {
            return Err(format!("NoSquashNids {nids:?}"));
        }
    }
    if let Some(d) = &l.log_destination {
        let parts: Vec<&str> = d.splitn(6, ':').collect();
        let arn = (8..=1024).contains(&d.len())
            && parts.len() == 6
            && parts[0] == "arn"
            && (parts[4].is_empty() || (parts[4].len() == 12 && parts[4].bytes().all(|b| b.is_ascii_digit())))
            && !parts[5].starts_with('/');
        if !arn || matches!(l.log_level, None | Some(fsx_csi_driver::fsx::LogLevel::Disabled)) {
            return Err(format!("LogConfiguration.Destination {d:?}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// StorageClass parameters, the volume name and the capacity: one CreateVolume's input.

/// The property of CreateVolume's input: refused with InvalidArgument/OutOfRange (no panic),
/// or turned into a request FSx accepts.
fn check_create_volume(name: &str, required_gib: i64, raw: &HashMap<String, String>) {
    let req = CreateRequest {
        name,
        required_bytes: required_gib.saturating_mul(GIB),
        limit_bytes: 0,
        parameters: raw,
        source_snapshot: None,
        topology: None,
        claim: None,
    };
    let planned = Provisioner::plan(&req).and_then(|(p, gib)| {
        let tags = p.tags(name, &[("cluster".into(), "fuzz".into())])?;
        Ok((p, gib, tags))
    });
    match planned {
        Err(e) => {
            let status = failure(e.into(), Family::Create).into_status();
            check_refusal(&status, &[Code::InvalidArgument, Code::OutOfRange], &(name, required_gib, raw));
        }
        Ok((p, gib, tags)) => {
            let token = client_request_token(name, 0);
            let spec = p.create_spec(gib as i32, token, tags);
            if let Err(what) = fsx_accepts(&spec) {
                panic!("accepted, but FSx would refuse {what}: name {name:?}, {required_gib} GiB, {raw:?}");
            }
        }
    }
}

/// Known values per key, so random inputs also reach the combination rules.
const VALUES: &[&str] = &[
    "subnet-0123456789abcdef0",
    "sg-0123456789abcdef0",
    "sg-0123456789abcdef0,sg-0fedcba987654321f",
    "SCRATCH_1",
    "SCRATCH_2",
    "PERSISTENT_1",
    "PERSISTENT_2",
    "SSD",
    "HDD",
    "NONE",
    "READ",
    "12",
    "40",
    "50",
    "125",
    "200",
    "1000",
    "s3://bucket",
    "s3://data-bucket/prefix",
    "NEW_CHANGED",
    "NEW_CHANGED_DELETED",
    "LZ4",
    "1:02:30",
    "02:30",
    "7",
    "true",
    "false",
    "2.15",
    "team=ml,env=prod",
    "USER_PROVISIONED",
    "AUTOMATIC",
    "1500",
    "12000",
    "/data",
    "",
    " ",
    "\n",
    "..",
    "x\u{0}y",
    "INTELLIGENT_TIERING",
    "4000",
    "8000",
    "PROPORTIONAL_TO_THROUGHPUT_CAPACITY",
    "NO_CACHE",
    "64",
    "WARN_ERROR",
    "DISABLED",
    "arn:aws:logs:us-east-1:123456789012:log-group:/aws/fsx/ml",
    "65534:65534",
    "10.0.1.6@tcp,10.0.[2-10].[1-255]@tcp",
    "DELETED",
    "NEW,CHANGED",
    "2.12",
    r#"[{"fileSystemPath": "/a", "dataRepositoryPath": "s3://bucket-a/x", "autoImportEvents": ["DELETED"]}, {"fileSystemPath": "/b", "dataRepositoryPath": "s3://bucket-b"}]"#,
    r#"[{"fileSystemPath": "/", "dataRepositoryPath": "s3://bucket-a"}, {"fileSystemPath": "/b", "dataRepositoryPath": "s3://bucket-b"}]"#,
];

#[test]
fn fuzz_storage_class_structured() {
    bolero::check!().with_type::<(Vec<(u8, u8, String)>, u16, String)>().for_each(|(entries, gib, name)| {
        let mut raw = HashMap::new();
        for (k, v, text) in entries.iter().take(40) {
            let key = match KEYS.get(*k as usize) {
                Some(key) => key.name.to_string(),
                None if *k == 250 => format!("{}pvc/name", params::RESERVED_PREFIX),
                None => text.clone(),
            };
            let value = match VALUES.get(*v as usize) {
                Some(value) => value.to_string(),
                None => text.clone(),
            };
            raw.insert(key, value);
        }
        raw.entry("subnetId".into()).or_insert_with(|| VALUES[0].into());
        let name = if name.is_empty() { "pvc-0b4a3c2e" } else { name.as_str() };
        check_create_volume(name, i64::from(*gib) * 10, &raw);
    });
}

/// VolumeAttributesClass parameters (ControllerModifyVolume): any keys and values, checked
/// against file systems of every deployment and storage type. A refusal is InvalidArgument
/// naming something, short and clean; an accepted update only sets values FSx takes for that
/// file system, and never a value the file system already has.
#[test]
fn fuzz_mutable_parameters() {
    use fsx_csi_driver::fsx::{DeploymentType, FileSystem, MetadataMode, StorageType};
    bolero::check!().with_type::<(Vec<(u8, u8, String)>, u8, u8)>().for_each(|(entries, kind, have)| {
        let mut raw = HashMap::new();
        for (k, v, text) in entries.iter().take(20) {
            let key = KEYS.get(*k as usize).map(|key| key.name.to_string()).unwrap_or_else(|| text.clone());
            let value = VALUES.get(*v as usize).map(|v| v.to_string()).unwrap_or_else(|| text.clone());
            raw.insert(key, value);
        }
        let parsed = match MutableParams::parse(&raw) {
            Ok(p) => p,
            Err(e) => return check_refusal(&Status::invalid_argument(e.to_string()), &[Code::InvalidArgument], &raw),
        };
        let deployment = [
            DeploymentType::Scratch1,
            DeploymentType::Scratch2,
            DeploymentType::Persistent1,
            DeploymentType::Persistent2,
        ][(*kind % 4) as usize];
        let storage = match (*kind & 4 != 0, deployment) {
            (true, DeploymentType::Persistent1) => StorageType::Hdd,
            (true, DeploymentType::Persistent2) => StorageType::IntelligentTiering,
            _ => StorageType::Ssd,
        };
        let mut fs = FileSystem {
            id: "fs-0123456789abcdef0".into(),
            storage_type: Some(storage),
            lustre: LustreSettings {
                deployment_type: Some(deployment),
                per_unit_storage_throughput: params::allowed_throughputs(deployment, storage).first().copied(),
                ..LustreSettings::default()
            },
            ..FileSystem::default()
        };
        if *have & 1 != 0 && deployment == DeploymentType::Persistent2 {
            fs.lustre.metadata_mode = Some(MetadataMode::UserProvisioned);
            fs.lustre.metadata_iops = Some(if storage.is_elastic() { 6000 } else { 3000 });
        }
        if storage.is_elastic() {
            fs.lustre.throughput_capacity = Some(if *have & 2 != 0 { 8000 } else { 4000 });
            fs.lustre.data_read_cache_sizing_mode = Some(fsx_csi_driver::fsx::ReadCacheSizingMode::NoCache);
        }
        if *have & 4 != 0 {
            fs.lustre.file_system_type_version = Some("2.15".into());
        }
        match parsed.update_for(&fs) {
            Err(e) => check_refusal(&Status::invalid_argument(e.to_string()), &[Code::InvalidArgument], &raw),
            Ok(u) => {
                if let Some(t) = u.per_unit_storage_throughput {
                    assert!(params::allowed_throughputs(deployment, storage).contains(&t), "{t} for {deployment}");
                    assert_ne!(Some(t), fs.lustre.per_unit_storage_throughput);
                }
                if u.metadata_iops.is_some() || u.metadata_mode.is_some() {
                    assert_eq!(deployment, DeploymentType::Persistent2);
                }
                if let Some(i) = u.metadata_iops {
                    assert!(i >= fs.lustre.metadata_iops.unwrap_or(0), "metadata IOPS lowered to {i}");
                }
                if deployment.is_scratch() {
                    assert!(
                        u.daily_automatic_backup_start_time.is_none() && u.automatic_backup_retention_days.is_none()
                    );
                }
                assert!(u.auto_import_policy.is_none(), "no import path, so no auto import change");
                if let Some(t) = u.throughput_capacity {
                    assert!(storage.is_elastic(), "throughput capacity on {storage}");
                    assert!(t > fs.lustre.throughput_capacity.unwrap_or(0) && t % 4000 == 0, "{t}");
                }
                if u.data_read_cache_sizing_mode.is_some() || u.data_read_cache_size_gib.is_some() {
                    assert!(storage.is_elastic());
                }
                if let Some(v) = &u.file_system_type_version {
                    assert!(v == "2.12" || v == "2.15", "{v}");
                    assert_ne!(
                        fs.lustre.file_system_type_version.as_deref(),
                        Some("2.15"),
                        "a downgrade or no-op to {v}"
                    );
                }
                if u.log_destination.is_some() {
                    assert!(!matches!(u.log_level, None | Some(fsx_csi_driver::fsx::LogLevel::Disabled)));
                }
                if u.no_squash_nids.is_some() {
                    assert!(u.root_squash.as_deref().is_some_and(|r| r != "0:0"), "NIDs without a squash");
                }
                assert_eq!(u.immutable_field(), None);
            }
        }
    });
}

/// `dataRepositoryAssociations`: lists built from parts FSx cares about (paths that nest,
/// repeat or break the rules, S3 paths that repeat, events, chunk sizes, lengths past 8),
/// and raw text (deep nesting, huge values). A refusal names the key and is short; an
/// accepted list is what FSx takes: 1-8 entries, clean paths none inside another, each S3
/// path once, events without repeats.
#[test]
fn fuzz_data_repository_associations() {
    const PATHS: &[&str] = &["/", "/a", "/a/b", "/b", "/ab", "a", "/a/", "/a/../b", "/c\u{0}", "//x", "/d/e/f"];
    const S3: &[&str] =
        &["s3://bucket-a", "s3://bucket-a/", "s3://bucket-a/x", "s3://bucket-b", "s3://B", "bucket", "s3://bucket-c/y"];
    const EVENTS: &[&str] = &["NEW", "CHANGED", "DELETED", "MOVED", "new"];
    fn check(value: &str) {
        let raw: HashMap<String, String> = [
            ("subnetId", "subnet-0123456789abcdef0"),
            ("deploymentType", "PERSISTENT_2"),
            ("perUnitStorageThroughput", "125"),
            ("dataRepositoryAssociations", value),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match params::StorageClassParams::parse(&raw) {
            Err(e) => {
                assert_eq!(e.key, "dataRepositoryAssociations", "{e}");
                let text = e.to_string();
                assert!(text.len() < 1500 && !text.contains('\n'), "{} bytes: {text:?}", text.len());
            }
            Ok(p) => {
                let specs = p.association_specs("fs-0123456789abcdef0", &[]);
                // An empty value means "not set", as for every key.
                let want = if value.trim().is_empty() { 0..=0 } else { 1..=8 };
                assert!(want.contains(&specs.len()), "{} associations from {value:?}", specs.len());
                for (i, a) in specs.iter().enumerate() {
                    assert!(a.file_system_path.starts_with('/') && !a.file_system_path.contains(".."));
                    let mut events = a.auto_import_events.clone();
                    events.dedup();
                    assert_eq!(events.len(), a.auto_import_events.len());
                    for b in &specs[..i] {
                        let nested = |x: &str, y: &str| y == "/" || x == y || x.starts_with(&format!("{y}/"));
                        assert!(
                            !nested(&a.file_system_path, &b.file_system_path)
                                && !nested(&b.file_system_path, &a.file_system_path)
                        );
                        assert_ne!(
                            a.data_repository_path.trim_end_matches('/'),
                            b.data_repository_path.trim_end_matches('/')
                        );
                        assert_ne!(a.client_request_token, b.client_request_token);
                    }
                }
            }
        }
    }
    bolero::check!().with_type::<(Vec<(u8, u8, Option<i32>, Option<bool>, Vec<u8>, Vec<u8>)>, String, u8)>().for_each(
        |(entries, text, mode)| match mode % 4 {
            0 => check(text),
            1 => check(&format!("{}{}", "[".repeat(usize::from(*mode) * 40), text)),
            _ => {
                let items: Vec<serde_json::Value> = entries
                    .iter()
                    .take(12)
                    .map(|(p, s3, chunk, batch, import, export)| {
                        let mut v = serde_json::json!({
                            "fileSystemPath": PATHS[usize::from(*p) % PATHS.len()],
                            "dataRepositoryPath": S3[usize::from(*s3) % S3.len()],
                        });
                        if let Some(c) = chunk {
                            v["importedFileChunkSize"] = serde_json::json!(c);
                        }
                        if let Some(b) = batch {
                            v["batchImportMetaDataOnCreate"] = serde_json::json!(b);
                        }
                        let pick = |e: &Vec<u8>| {
                            e.iter().take(4).map(|i| EVENTS[usize::from(*i) % EVENTS.len()]).collect::<Vec<_>>()
                        };
                        if !import.is_empty() {
                            v["autoImportEvents"] = serde_json::json!(pick(import));
                        }
                        if !export.is_empty() {
                            v["autoExportEvents"] = serde_json::json!(pick(export));
                        }
                        v
                    })
                    .collect();
                check(&serde_json::Value::Array(items).to_string());
            }
        },
    );
}

/// Readable corpus: one `key=value` per line; a first line `#name gib` sets the volume name
/// and size.
#[test]
fn fuzz_storage_class_text() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let mut name = "pvc-1".to_string();
        let mut gib = 1200;
        let mut raw = HashMap::new();
        for line in text.lines() {
            if let Some(head) = line.strip_prefix('#') {
                let mut parts = head.splitn(2, ' ');
                name = parts.next().unwrap_or("").to_string();
                gib = parts.next().and_then(|g| g.trim().parse().ok()).unwrap_or(1200);
            } else if let Some((k, v)) = line.split_once('=') {
                raw.insert(k.to_string(), v.to_string());
            }
        }
        check_create_volume(&name, gib, &raw);
    });
}

/// The seeds that are real StorageClasses are accepted, so the corpus reaches the request
/// building and the FSx checks, not only the refusals.
#[test]
fn real_storage_class_seeds_are_accepted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/__fuzz__/storage_class_text/corpus");
    for seed in ["persistent2-dra", "scratch2-s3", "persistent1-hdd-backups", "scratch1-3000"] {
        let text = std::fs::read_to_string(dir.join(seed)).unwrap();
        let raw: HashMap<String, String> =
            text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let req = CreateRequest {
            name: "pvc-1",
            required_bytes: 1200 * GIB,
            limit_bytes: 0,
            parameters: &raw,
            source_snapshot: None,
            topology: None,
            claim: None,
        };
        let (p, gib) = Provisioner::plan(&req).unwrap_or_else(|e| panic!("{seed}: {e}"));
        let spec = p.create_spec(gib as i32, client_request_token("pvc-1", 0), p.tags("pvc-1", &[]).unwrap());
        fsx_accepts(&spec).unwrap_or_else(|e| panic!("{seed}: {e}"));
    }
}

#[test]
fn fuzz_volume_names_and_ids() {
    bolero::check!().with_type::<String>().for_each(|name| {
        match params::check_volume_name(name) {
            Ok(()) => {
                assert!(name.chars().count() <= 128 && is_fsx_tag_text(name) && !name.trim().is_empty(), "{name:?}");
                let t = client_request_token(name, 7);
                assert!(
                    (1..=63).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
                    "{t:?}"
                );
            }
            Err(e) => check_refusal(&Status::invalid_argument(e.to_string()), &[Code::InvalidArgument], name),
        }
        if is_file_system_id(name) {
            assert!((11..=21).contains(&name.len()) && name.starts_with("fs-"), "{name:?}");
        }
        let _ = params::parse_tags("extraTags", name).map(|tags| {
            for (k, v) in tags {
                assert!(
                    is_fsx_tag_text(&k) && is_fsx_tag_text(&v) && !k.is_empty() && !k.starts_with("aws:"),
                    "{k:?}={v:?}"
                );
            }
        });
        let _ = StorageClassParams::parse(&HashMap::from([("subnetId".to_string(), name.clone())]));
    });
}

// ---------------------------------------------------------------------------------------
// Mount options, volume context and the Lustre source.

#[test]
fn fuzz_mount_options() {
    bolero::check!().with_type::<Vec<String>>().for_each(|options| {
        let source = "172.31.5.6@tcp:/abcdefgh";
        match lustre::flags_and_data(options, source) {
            Ok((_flags, data)) => {
                assert!(data.len() <= lustre::MAX_DATA_LEN);
                let (before, device) = data.rsplit_once("device=").unwrap_or(("", &data));
                assert_eq!(device, source, "device= is not last, or the user set it: {data:?}");
                assert!(!before.contains("device=") && !before.contains("mgsname="), "{data:?}");
                for o in options {
                    assert!(!o.contains(',') && !o.chars().any(char::is_control), "{o:?} accepted");
                }
            }
            Err(e) => {
                assert!(matches!(e, lustre::LustreError::Option(..)), "{e:?}");
                check_refusal(&Status::invalid_argument(e.to_string()), &[Code::InvalidArgument], options);
            }
        }
    });
}

#[test]
fn fuzz_volume_context_and_lustre_source() {
    bolero::check!().with_type::<(String, String, Option<String>)>().for_each(|(hosts, fsname, subdir)| {
        let resolve = |_: &str| -> std::io::Result<Ipv4Addr> { Ok(Ipv4Addr::new(10, 0, 0, 1)) };
        let servers = lustre::parse_servers(hosts);
        match lustre::source(&servers, fsname, subdir.as_deref(), &resolve) {
            Ok(source) => {
                assert!(lustre::is_mount_name(fsname));
                assert_eq!(lustre::fsname_of(&source), Some(fsname.as_str()), "{source:?}");
                // Only NIDs, separators and the path: nothing that could end the device in the
                // mount data or smuggle an option.
                let (nids, _) = source.split_once(":/").unwrap();
                for nid in nids.split([',', ':']) {
                    let (ip, net) = nid.split_once('@').expect("a NID");
                    assert!(
                        ip.parse::<Ipv4Addr>().is_ok()
                            && !net.is_empty()
                            && net.bytes().all(|b| b.is_ascii_alphanumeric()),
                        "{nid:?} in {source:?}"
                    );
                }
                assert!(!source.chars().any(|c| c.is_control() || c == ' '), "{source:?}");
                if let Ok((_, data)) = lustre::flags_and_data(&["flock".to_string()], &source) {
                    assert!(data.ends_with(&format!("device={source}")));
                }
            }
            Err(e) => {
                let status = match e {
                    lustre::LustreError::Resolve { .. } => Status::unavailable(e.to_string()),
                    _ => Status::invalid_argument(e.to_string()),
                };
                check_refusal(&status, &[Code::InvalidArgument], &(hosts, fsname, subdir));
            }
        }
        if lustre::is_host_name(hosts) {
            assert!(hosts.len() <= 253 && hosts.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
        }
    });
}

#[test]
fn fuzz_mountinfo() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        for e in mountinfo::parse(&text) {
            assert!(!e.fstype.contains(' '));
            let _ = mountinfo::at(std::slice::from_ref(&e), &e.mount_point);
        }
    });
}

#[test]
fn fuzz_http2_authority_rewriter() {
    bolero::check!().with_type::<(Vec<u8>, u8)>().for_each(|(bytes, split)| {
        // The client preface, then whatever the client sends, in two chunks.
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend_from_slice(bytes);
        let at = (*split as usize).min(stream.len());
        let whole = rewrite_stream(&[&stream]);
        let split = rewrite_stream(&[&stream[..at], &stream[at..]]);
        // Delivery in pieces never changes what the server reads, and the rewriter never
        // expands what it is given: a patched block is at most a few bytes longer.
        match (whole, split) {
            (Ok(a), Ok(b)) => {
                assert!(a.len() <= 2 * stream.len() + 16, "{} bytes out of {}", a.len(), stream.len());
                assert_eq!(a, b)
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("whole {:?} vs split {:?}", a.map(|v| v.len()), b.map(|v| v.len())),
        }
    });
}

/// A client's HPACK encoder, choosing every representation the fuzzer asks for, with its own
/// dynamic table (RFC 7541), so the test knows what the client meant.
struct Client {
    table: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
}

const NAMES: [&[u8]; 4] = [b":authority", b"content-type", b"x-a", b"x-a-rather-longer-header-name"];

impl Client {
    fn entry(&self, index: usize) -> (Vec<u8>, Vec<u8>) {
        let statics = fsx_csi_driver::testing::static_entry(index);
        match statics {
            Some((n, v)) => (n.as_bytes().to_vec(), v.as_bytes().to_vec()),
            None => self.table[index - 62].clone(),
        }
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + 32;
        while self.size + size > 4096 {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => break,
            }
        }
        if size <= 4096 {
            self.size += size;
            self.table.push_front((name, value));
        }
    }

    /// Encodes one field; returns what it means.
    fn field(&mut self, out: &mut Vec<u8>, kind: u8, pick: u8, value: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let int = fsx_csi_driver::testing::write_integer;
        let string = |out: &mut Vec<u8>, s: &[u8]| {
            int(out, 0, 7, s.len());
            out.extend_from_slice(s);
        };
        match kind % 4 {
            0 => {
                let index = pick as usize % (61 + self.table.len()) + 1;
                int(out, 0x80, 7, index);
                self.entry(index)
            }
            k => {
                // 1: incremental indexing, 2: without indexing, 3: never indexed.
                let (high, prefix) = [(0x40, 6), (0x00, 4), (0x10, 4)][k as usize - 1];
                let name = if pick % 2 == 0 {
                    let index = (pick as usize / 2) % (61 + self.table.len()) + 1;
                    int(out, high, prefix, index);
                    self.entry(index).0
                } else {
                    let name = NAMES[(pick as usize / 2) % NAMES.len()];
                    int(out, high, prefix, 0);
                    string(out, name);
                    name.to_vec()
                };
                string(out, value);
                if k == 1 {
                    self.insert(name.clone(), value.to_vec());
                }
                (name, value.to_vec())
            }
        }
    }
}

/// The `:authority` patcher keeps the server's HPACK table in step with the client's: over any
/// sequence of blocks, with every representation, table entries replaced, evicted and reused,
/// the server decodes exactly the client's fields, except that an invalid `:authority`
/// arrives valid; and a block never grows by more than a few bytes.
#[test]
fn fuzz_hpack_authority_patcher() {
    use fsx_csi_driver::testing::{MAX_HEADER_LIST, Patcher};
    let valid = |v: &[u8]| http::uri::Authority::try_from(v).is_ok();
    bolero::check!().with_type::<Vec<Vec<(u8, u8, Vec<u8>)>>>().for_each(|blocks| {
        let mut client = Client { table: Default::default(), size: 0 };
        let mut patcher = Patcher::default();
        let mut server = loona_hpack::Decoder::new();
        for fields in blocks {
            let mut block = Vec::new();
            let mut meant = Vec::new();
            for (kind, pick, value) in fields {
                // Long values now and then, to make the table evict.
                let value: Vec<u8> =
                    if kind & 0x80 != 0 { value.repeat(40).into_iter().take(1500).collect() } else { value.clone() };
                meant.push(client.field(&mut block, *kind, *pick, &value));
            }
            let mut out = Vec::new();
            let authorities = meant.iter().filter(|(n, _)| n == b":authority").count();
            let list: usize = meant.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
            match patcher.patch(&block, &mut out) {
                Ok(()) => assert!(
                    authorities <= 1 && list <= MAX_HEADER_LIST,
                    "accepted {authorities} authorities, {list} bytes"
                ),
                Err(_) => {
                    assert!(authorities > 1 || list > MAX_HEADER_LIST, "refused a good block");
                    return;
                }
            }
            assert!(out.len() <= block.len() + 16, "{} bytes from {}", out.len(), block.len());
            let got = server.decode(&out).unwrap();
            assert_eq!(got.len(), meant.len());
            for ((gn, gv), (mn, mv)) in got.iter().zip(&meant) {
                assert_eq!(gn, mn);
                if mn == b":authority" && !valid(mv) {
                    assert!(valid(gv) || (gv.is_empty() && mv.is_empty()), "{gv:?} for {mv:?}");
                } else {
                    assert_eq!(gv, mv);
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// Paths, and the node service end to end with a mounter that only records.

#[test]
fn fuzz_kubelet_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("kubelet");
    std::fs::create_dir(&root).unwrap();
    let dir = KubeletDir::new(&root).unwrap();
    let prefix = root.display().to_string();
    bolero::check!().with_type::<(bool, String)>().for_each(|(under, rest)| {
        let path = if *under { format!("{prefix}{rest}") } else { rest.clone() };
        match dir.check("target_path", &path) {
            Ok(p) => {
                assert!(p.real().starts_with(dir.real()) && p.real() != dir.real(), "{path:?}");
                assert!(!path.split('/').any(|c| c == ".." || c == "."), "{path:?}");
                assert!(!path.chars().any(char::is_control), "{path:?}");
            }
            Err(e) => check_refusal(&Status::invalid_argument(e.to_string()), &[Code::InvalidArgument], &path),
        }
        if check_subdirectory(rest).is_ok() && !rest.is_empty() {
            assert!(
                !rest.starts_with('/') && !rest.split('/').any(|c| c == ".." || c == "." || c.is_empty()),
                "{rest:?}"
            );
        }
    });
}

/// Records what the node service asks of the kernel, mounting nothing; its mount table shows
/// one staged Lustre volume, so publishes go as far as the bind mount.
#[derive(Default)]
struct Recorder {
    targets: Mutex<Vec<PathBuf>>,
    table: String,
}

impl Mounter for Recorder {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        _: Option<&str>,
        _: MsFlags,
        _: Option<&str>,
    ) -> Result<(), Errno> {
        let mut t = self.targets.lock().unwrap();
        t.push(tmpfs_mounter::real_path(target));
        if let Some(s) = source.filter(|s| s.starts_with("/proc/self/fd/")) {
            t.push(tmpfs_mounter::real_path(Path::new(s)));
        }
        Ok(())
    }
    fn unmount(&self, target: &Path, _: MntFlags) -> Result<(), Errno> {
        self.targets.lock().unwrap().push(tmpfs_mounter::real_path(target));
        Err(Errno::EINVAL)
    }
    fn mount_table(&self) -> std::io::Result<String> {
        Ok(self.table.clone())
    }
    fn statvfs(&self, path: &Path) -> Result<Usage, Errno> {
        self.targets.lock().unwrap().push(tmpfs_mounter::real_path(path));
        Ok(Usage::default())
    }
    fn resolve(&self, _: &str) -> std::io::Result<Ipv4Addr> {
        Ok(Ipv4Addr::LOCALHOST)
    }
}

#[test]
fn fuzz_node_requests() {
    // Everything the node service logs for these inputs goes through the real log setup.
    common::captured_logs(fsx_csi_driver::logging::LogFormat::Text);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("kubelet");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("pods/p1")).unwrap();
    std::fs::create_dir_all(outside.join("victim")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("pods/p1/link")).unwrap();
    let real_root = std::fs::canonicalize(&root).unwrap();
    let staged = real_root.join("plugins/kubernetes.io/csi/fsx.csi.aws.com/h/globalmount");
    std::fs::create_dir_all(&staged).unwrap();
    let table =
        format!("101 22 0:52 / {} rw,relatime shared:70 - lustre 127.0.0.1@tcp:/abcdefgh rw,flock\n", staged.display());
    let recorder = Arc::new(Recorder { targets: Mutex::default(), table });
    let node =
        NodeService::new(NodeOptions::new(Some("n".into()), root.clone()), recorder.clone(), Arc::new(Unavailable))
            .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let prefixes = [
        root.join("plugins/kubernetes.io/csi/fsx.csi.aws.com/h/globalmount").display().to_string(),
        root.join("pods/p1/volumes/kubernetes.io~csi/pv/mount").display().to_string(),
        root.join("pods/p1/link").display().to_string(),
        root.display().to_string(),
        "/etc".to_string(),
        String::new(),
    ];
    // The service holds locks and cells; a failing input ends the test, so nothing observes
    // them half-updated.
    let state = std::panic::AssertUnwindSafe((node, runtime, recorder));
    bolero::check!().with_type::<(u8, u8, String, String, Vec<String>, Vec<(u8, String)>, u8)>().for_each(
        |(pa, pb, sa, sb, flags, context, which)| {
            let (node, runtime, recorder) = &*state;
            let path = |i: &u8, suffix: &str| format!("{}{}", prefixes[*i as usize % prefixes.len()], suffix);
            let (a, b) = (path(pa, sa), path(pb, sb));
            let keys = ["dnsname", "mountname", "subdirectory"];
            let mut ctx: HashMap<String, String> = HashMap::from([
                ("dnsname".into(), "fs-1.fsx.us-east-1.amazonaws.com".into()),
                ("mountname".into(), "abcdefgh".into()),
            ]);
            for (k, v) in context.iter().take(4) {
                ctx.insert(keys.get(*k as usize).map(|k| k.to_string()).unwrap_or_else(|| v.clone()), v.clone());
            }
            let cap = VolumeCapability {
                access_type: Some(AccessType::Mount(volume_capability::MountVolume {
                    mount_flags: flags.clone(),
                    ..Default::default()
                })),
                access_mode: Some(volume_capability::AccessMode { mode: Mode::MultiNodeMultiWriter as i32 }),
            };
            let vol = if sa.len() % 3 == 0 { sa.clone() } else { "fs-0123456789abcdef0".to_string() };
            let result = runtime.block_on(async {
                match which % 5 {
                    0 => node
                        .node_stage_volume(tonic::Request::new(NodeStageVolumeRequest {
                            volume_id: vol,
                            staging_target_path: a.clone(),
                            volume_capability: Some(cap),
                            volume_context: ctx,
                            ..Default::default()
                        }))
                        .await
                        .map(drop),
                    1 => node
                        .node_publish_volume(tonic::Request::new(NodePublishVolumeRequest {
                            volume_id: vol,
                            staging_target_path: a.clone(),
                            target_path: b.clone(),
                            volume_capability: Some(cap),
                            volume_context: ctx,
                            ..Default::default()
                        }))
                        .await
                        .map(drop),
                    2 => node
                        .node_unpublish_volume(tonic::Request::new(NodeUnpublishVolumeRequest {
                            volume_id: vol,
                            target_path: b.clone(),
                        }))
                        .await
                        .map(drop),
                    3 => node
                        .node_unstage_volume(tonic::Request::new(NodeUnstageVolumeRequest {
                            volume_id: vol,
                            staging_target_path: a.clone(),
                        }))
                        .await
                        .map(drop),
                    _ => node
                        .node_get_volume_stats(tonic::Request::new(NodeGetVolumeStatsRequest {
                            volume_id: vol,
                            volume_path: b.clone(),
                            staging_target_path: String::new(),
                        }))
                        .await
                        .map(drop),
                }
            });
            if let Err(status) = &result {
                let allowed = [Code::InvalidArgument, Code::NotFound, Code::FailedPrecondition, Code::AlreadyExists];
                check_refusal(status, &allowed, &(which, &a, &b));
            }
            for t in recorder.targets.lock().unwrap().drain(..) {
                assert!(
                    t.starts_with(&real_root) && t != real_root,
                    "the kernel was asked to act on {t:?} for {a:?} / {b:?}"
                );
            }
            assert!(
                outside.join("victim").is_dir() && std::fs::read_dir(&outside).unwrap().count() == 1,
                "{a:?} / {b:?} touched outside"
            );
        },
    );
    let lines = common::assert_logs_clean(fsx_csi_driver::logging::LogFormat::Text);
    assert!(lines > 0, "the node service logged nothing");
}

// ---------------------------------------------------------------------------------------
// Subdirectory volumes: the path pattern and the volume id.

/// Whatever the pattern, the base path and the claim's names, a directory that is accepted is
/// strictly below the base: relative, no `.`, `..` or empty component, bounded; a refusal
/// names the key. A subdirectory volume id that parses prints back to itself and fits CSI.
#[test]
fn fuzz_subdirectory_patterns_and_ids() {
    use fsx_csi_driver::subdir::id::SubdirId;
    use fsx_csi_driver::subdir::params::SubdirParams;
    use fsx_csi_driver::subdir::pattern::MAX_PATH;
    bolero::check!().with_type::<(String, String, String, String, String)>().for_each(
        |(pattern, base, namespace, claim, id)| {
            let raw = HashMap::from([
                ("provisioningMode".to_string(), "subdirectory".to_string()),
                ("fileSystemId".to_string(), "fs-0123456789abcdef0".to_string()),
                ("subPathPattern".to_string(), pattern.clone()),
                ("basePath".to_string(), base.clone()),
                ("csi.storage.k8s.io/pvc/namespace".to_string(), namespace.clone()),
                ("csi.storage.k8s.io/pvc/name".to_string(), claim.clone()),
            ]);
            let refused = |e: params::ParamError| {
                check_refusal(&Status::invalid_argument(e.to_string()), &[Code::InvalidArgument], &(pattern, base));
                assert!(e.to_string().contains(&e.key), "{e}");
            };
            match SubdirParams::parse(&raw) {
                Err(e) => refused(e),
                Ok(p) => match p.directory("pvc-1") {
                    Err(e) => refused(e),
                    Ok(dir) => {
                        assert!(!dir.is_empty() && dir.len() <= MAX_PATH, "{dir:?}");
                        assert!(!dir.starts_with('/') && !dir.chars().any(char::is_control), "{dir:?}");
                        assert!(dir.split('/').all(|c| !matches!(c, "" | "." | "..") && c.len() <= 255), "{dir:?}");
                        let below = p.base.relative();
                        assert!(
                            below.is_empty() || dir.starts_with(&format!("{below}/")),
                            "{dir:?} not below {below:?}"
                        );
                        assert!(!dir.starts_with(".fsx-csi-driver"), "{dir:?}");
                    }
                },
            }
            if let Some(parsed) = SubdirId::parse(id) {
                assert_eq!(&parsed.to_string(), id);
                assert!(id.len() <= 128 && is_file_system_id(&parsed.file_system_id), "{id:?}");
            }
        },
    );
}
