//! StorageClass parameters, parsed once into [`StorageClassParams`].
//!
//! Every key and value the Go driver accepts is checked here, before any FSx call: an unknown
//! key, a malformed value, a key the deployment type does not take, or a combination FSx would
//! refuse gives a [`ParamError`] naming the key and what would be accepted. Nothing past this
//! module sees the raw map.
//!
//! - `keys`: every key described once (values, default, which deployment types take it,
//!   whether FSx can change it later, how it is read); parsing and the README's table come
//!   from it;
//! - `associations`: the `dataRepositoryAssociations` JSON list;
//! - `rules`: the rules between keys;
//! - `request`: the FSx requests a StorageClass makes, its tags, and the comparison with an
//!   existing file system.

pub(crate) mod associations;
pub(crate) mod keys;
mod mutable;
mod request;
mod rules;

pub use keys::{KEYS, Key, Takes};
pub use mutable::MutableParams;

use std::collections::HashMap;
use std::fmt;

use crate::fsx::{
    AutoImportPolicy, DRIVER_TAG_PREFIX, DeploymentType, EventType, LustreSettings, StorageType, VOLUME_NAME_TAG,
};
use crate::text::Shown;
pub use associations::AssociationParams;

/// Keys with this prefix are set by the external-provisioner and are not ours to validate.
pub const RESERVED_PREFIX: &str = "csi.storage.k8s.io/";

/// A StorageClass parameter that cannot be used, with what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid StorageClass parameter {}: {message}", Shown(key))]
pub struct ParamError {
    /// The offending key (or keys, for a combination).
    pub key: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ParamError {
    ParamError { key: key.to_string(), message: message.into() }
}

/// The StorageClass, typed. Built only by [`StorageClassParams::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageClassParams {
    /// The subnet the file system is created in: the first of `subnet_ids` until
    /// [`crate::topology::place`] chooses.
    pub subnet_id: String,
    /// The StorageClass's subnets (`subnetIds`, or `subnetId` as a list of one), one per zone.
    pub subnet_ids: Vec<String>,
    /// The volume reports its file system's zone (`zonalAffinity`, default true).
    pub zonal_affinity: bool,
    pub security_group_ids: Vec<String>,
    pub deployment_type: DeploymentType,
    pub storage_type: StorageType,
    pub kms_key_id: Option<String>,
    pub s3_import_path: Option<String>,
    pub s3_export_path: Option<String>,
    pub auto_import_policy: Option<AutoImportPolicy>,
    /// PERSISTENT_2 only: S3 events exported automatically (same values as autoImportPolicy).
    pub auto_export_policy: Option<AutoImportPolicy>,
    pub imported_file_chunk_size: Option<i32>,
    /// PERSISTENT_2 only: where in the file system the S3 path appears (default `/`).
    pub file_system_path: Option<String>,
    /// PERSISTENT_2 only: import the bucket's metadata when the association is created.
    pub batch_import_metadata_on_create: Option<bool>,
    /// PERSISTENT_2 only: the `s3ImportPath` association's import events, as a subset.
    pub auto_import_events: Option<Vec<EventType>>,
    /// PERSISTENT_2 only: its export events.
    pub auto_export_events: Option<Vec<EventType>>,
    /// `dataRepositoryAssociations`: one association per entry.
    pub associations: Vec<AssociationParams>,
    /// DeleteVolume takes a final backup (`finalBackupOnDelete`).
    pub final_backup_on_delete: bool,
    /// The final backup's tags (`finalBackupTags`).
    pub final_backup_tags: Vec<(String, String)>,
    /// The `LustreConfiguration` settings the keys set directly (throughput, compression,
    /// maintenance and backup windows, metadata, root squash, logging, read cache, the Lustre
    /// version, ...); the deployment type and the S3 link are added by
    /// [`StorageClassParams::create_spec`].
    pub lustre: LustreSettings,
    pub extra_tags: Vec<(String, String)>,
    /// `csi.storage.k8s.io/pvc/namespace`, `pvc/name`, `pv/name`, when the provisioner runs
    /// with `--extra-create-metadata`; they become descriptive tags.
    pub kubernetes_tags: Vec<(String, String)>,
}

/// A `Display` list of accepted values: `A, B or C`.
struct OneOf<'a>(&'a [&'a str]);

impl fmt::Display for OneOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(if i + 1 == self.0.len() { " or " } else { ", " })?;
            }
            f.write_str(v)?;
        }
        Ok(())
    }
}

fn parse_enum<T: std::str::FromStr>(value: &str, all: &[&str]) -> Result<T, String> {
    value.parse().map_err(|_| format!("{} is not one of {}", Shown(value), OneOf(all)))
}

pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(format!("{} is not true or false", Shown(value))),
    }
}

/// A subset of S3 event types: `NEW,CHANGED`, `DELETED`, or `NONE` for none.
fn parse_events(value: &str) -> Result<Vec<EventType>, String> {
    if value == "NONE" {
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    for item in value.split(',').map(str::trim) {
        let e: EventType = item.parse().map_err(|_| {
            format!("{} is not NEW, CHANGED or DELETED (give a comma-separated subset, or NONE)", Shown(item))
        })?;
        if !events.contains(&e) {
            events.push(e);
        }
    }
    Ok(events)
}

/// A clean absolute path in the file system (an association's `FileSystemPath`): `/` or
/// `/a/b`, no `.`, `..`, empty or trailing components, no control characters, at most 4096
/// bytes.
fn check_fs_path(v: &str) -> Result<(), String> {
    let clean = v.starts_with('/')
        && v.len() <= 4096
        && !v.contains("//")
        && (v == "/" || !v.ends_with('/'))
        && !v.split('/').any(|c| c == "." || c == "..")
        && !v.chars().any(|c| c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}'));
    if !clean {
        return Err(format!("{} is not a clean absolute path such as / or /data", Shown(v)));
    }
    Ok(())
}

fn parse_int(value: &str, min: i32, max: i32) -> Result<i32, String> {
    match value.parse::<i32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{} is not a whole number from {min} to {max}", Shown(value))),
    }
}

fn is_hex_id(value: &str, prefix: &str, max_len: usize) -> bool {
    value.len() <= max_len
        && value
            .strip_prefix(prefix)
            .is_some_and(|h| h.len() >= 8 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn two_digits(s: &str, max: u32) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok_and(|n| n <= max)
}

/// `HH:MM`, 24-hour, UTC.
fn is_daily_time(s: &str) -> bool {
    matches!(s.split_once(':'), Some((h, m)) if two_digits(h, 23) && two_digits(m, 59))
}

/// `d:HH:MM`, d = 1 (Monday) to 7 (Sunday).
fn is_weekly_time(s: &str) -> bool {
    matches!(s.split_once(':'), Some((d, hm)) if d.len() == 1 && ("1"..="7").contains(&d) && is_daily_time(hm))
}

/// Checks `s3://bucket[/prefix]` and returns the bucket.
pub fn s3_bucket<'a>(key: &str, path: &'a str) -> Result<&'a str, ParamError> {
    let accepted = "expected s3://bucket or s3://bucket/prefix, with a bucket name of 3-63 lowercase letters, digits, dots or hyphens";
    let rest = path.strip_prefix("s3://").ok_or_else(|| {
        err(key, format!("{path_shown} does not start with s3:// ({accepted})", path_shown = Shown(path)))
    })?;
    let bucket = rest.split('/').next().unwrap_or("");
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.as_bytes().first().is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket.as_bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if !bucket_ok {
        return Err(err(
            key,
            format!(
                "{path_shown} has an invalid bucket name {bucket_shown} ({accepted})",
                path_shown = Shown(path),
                bucket_shown = Shown(bucket)
            ),
        ));
    }
    if path.len() > 4357 || path.chars().any(|c| c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}')) {
        return Err(err(
            key,
            format!("{path_shown} is too long or has control characters ({accepted})", path_shown = Shown(path)),
        ));
    }
    Ok(bucket)
}

/// FSx's limit on tags per resource.
pub const MAX_TAGS: usize = 50;

/// A tag key or value may hold letters, digits, spaces and `_.:/=+-@` (FSx's
/// `[\p{L}\p{Z}\p{N}_.:/=+\-@]`, with the space as the only separator: no line or
/// paragraph separators, no control characters).
pub fn is_tag_text(s: &str) -> bool {
    s.chars().all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
}

/// The longest volume name accepted (CreateVolume's `name`, which becomes the
/// `CSIVolumeName` tag).
pub const MAX_NAME_CHARS: usize = 128;

/// What a checked name is for: it becomes that resource's name tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameOf {
    /// A CreateVolume name: the file system's `CSIVolumeName` tag.
    Volume,
    /// A CreateSnapshot name: the backup's `CSISnapshotName` tag.
    Snapshot,
}

impl NameOf {
    fn resource(self) -> &'static str {
        match self {
            NameOf::Volume => "file system",
            NameOf::Snapshot => "backup",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            NameOf::Volume => VOLUME_NAME_TAG,
            NameOf::Snapshot => crate::fsx::SNAPSHOT_NAME_TAG,
        }
    }
}

/// A CreateVolume or CreateSnapshot name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is required")]
    Empty,
    #[error(
        "name {} must be 1-{MAX_NAME_CHARS} of A-Z a-z 0-9 _ . : / = + - @, starting and ending with a letter or digit (it becomes the {}'s {} tag)",
        Shown(.name), .of.resource(), .of.tag()
    )]
    Invalid { name: String, of: NameOf },
}

/// Checks a CreateVolume or CreateSnapshot name: 1-128 of ASCII letters, digits and
/// `_.:/=+-@`, starting and ending with a letter or digit (`pvc-<uid>` from the
/// external-provisioner). The name is sent to FSx as a tag value and written to logs, so
/// nothing else is accepted.
pub fn check_name(name: &str, of: NameOf) -> Result<(), NameError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_.:/=+-@".contains(c);
    let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS
        || !name.chars().all(ok_char)
        || !edges(name.chars().next())
        || !edges(name.chars().last())
    {
        return Err(NameError::Invalid { name: name.to_string(), of });
    }
    Ok(())
}

/// [`check_name`] for a CreateVolume name.
pub fn check_volume_name(name: &str) -> Result<(), NameError> {
    check_name(name, NameOf::Volume)
}

/// Parses `key=value,key=value` tags (the `extraTags` key and the `--extra-tags` flag).
pub fn parse_tags(key: &str, value: &str) -> Result<Vec<(String, String)>, ParamError> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| err(key, format!("{item_shown} is not of the form key=value", item_shown = Shown(item))))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || k.chars().count() > 128 || !is_tag_text(k) {
            return Err(err(
                key,
                format!("tag key {k_shown} must be 1-128 letters, digits, spaces or _.:/=+-@", k_shown = Shown(k)),
            ));
        }
        if v.chars().count() > 256 || !is_tag_text(v) {
            return Err(err(
                key,
                format!(
                    "tag value {v_shown} for {k_shown} must be at most 256 letters, digits, spaces or _.:/=+-@",
                    v_shown = Shown(v),
                    k_shown = Shown(k)
                ),
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(err(key, format!("tag key {k_shown} uses the reserved prefix aws:", k_shown = Shown(k))));
        }
        if k.starts_with(DRIVER_TAG_PREFIX) {
            return Err(err(
                key,
                format!("tag key {k_shown} uses the driver's prefix {DRIVER_TAG_PREFIX}", k_shown = Shown(k)),
            ));
        }
        if k == VOLUME_NAME_TAG {
            return Err(err(key, format!("tag key {VOLUME_NAME_TAG} is set by the driver and cannot be overridden")));
        }
        match tags.iter_mut().find(|(existing, _)| existing == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => tags.push((k.to_string(), v.to_string())),
        }
    }
    Ok(tags)
}

/// Valid metadata IOPS for USER_PROVISIONED mode: 1500, 3000, 6000, then multiples of 12000
/// up to 192000.
fn valid_metadata_iops(n: i32) -> bool {
    matches!(n, 1500 | 3000 | 6000) || ((12000..=192000).contains(&n) && n % 12000 == 0)
}

/// The per-unit throughputs FSx allows for a deployment and storage type; empty means the
/// key is not allowed at all.
pub fn allowed_throughputs(deployment: DeploymentType, storage: StorageType) -> &'static [i32] {
    match (deployment, storage) {
        (DeploymentType::Scratch1 | DeploymentType::Scratch2, _) => &[],
        // Intelligent-Tiering's throughput is a total (throughputCapacity), not per TiB.
        (_, StorageType::IntelligentTiering) => &[],
        (DeploymentType::Persistent1, StorageType::Hdd) => &[12, 40],
        (DeploymentType::Persistent1, StorageType::Ssd) => &[50, 100, 200],
        (DeploymentType::Persistent2, _) => &[125, 250, 500, 1000],
    }
}

impl StorageClassParams {
    /// Parses and validates the StorageClass parameters of a CreateVolume request: every key
    /// through its description in [`KEYS`], then which deployment types take it, then the
    /// rules between keys.
    pub fn parse(raw: &HashMap<String, String>) -> Result<Self, ParamError> {
        // Walk keys in a fixed order so that the first error reported does not depend on
        // hash order.
        let mut names: Vec<&String> = raw.keys().collect();
        names.sort();
        let mut p = StorageClassParams { zonal_affinity: true, ..StorageClassParams::default() };
        let mut given: Vec<&'static Key> = Vec::new();
        for name in names {
            let value = raw[name].trim();
            if let Some(rest) = name.strip_prefix(RESERVED_PREFIX) {
                let tag = match rest {
                    "pvc/name" => "kubernetes.io/created-for/pvc/name",
                    "pvc/namespace" => "kubernetes.io/created-for/pvc/namespace",
                    "pv/name" => "kubernetes.io/created-for/pv/name",
                    _ => continue,
                };
                if !value.is_empty() && is_tag_text(value) && value.len() <= 256 {
                    p.kubernetes_tags.push((tag.to_string(), value.to_string()));
                }
                continue;
            }
            // The mode is read before this parser is chosen (crate::subdir::params::mode).
            if name == crate::subdir::params::PROVISIONING_MODE {
                continue;
            }
            let Some(key) = keys::find(name) else {
                let accepted: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
                return Err(err(name, format!("unknown key; accepted keys are {}", OneOf(&accepted))));
            };
            // An empty value means "not set", as templated StorageClasses often carry empty
            // strings (subnetId is then reported as missing below).
            if value.is_empty() {
                continue;
            }
            (key.set)(&mut p, value).map_err(|message| err(key.name, message))?;
            given.push(key);
        }
        let both = [keys::SUBNET_ID, keys::SUBNET_IDS].iter().all(|k| given.iter().any(|g| g.name == *k));
        if both {
            return Err(err(
                &format!("{},{}", keys::SUBNET_ID, keys::SUBNET_IDS),
                "give one of them: subnetIds lists the subnets (one per Availability Zone), subnetId is a list of one",
            ));
        }
        match p.subnet_ids.first() {
            Some(first) => p.subnet_id = first.clone(),
            None => {
                return Err(err(
                    keys::SUBNET_IDS,
                    "is required (or subnetId): the subnets file systems are created in, one per Availability Zone",
                ));
            }
        }
        let d = p.deployment_type;
        if let Some(key) = given.iter().find(|k| !k.takes.allows(d)) {
            return Err(err(key.name, format!("is available only with {}, not {d}", key.takes.describe())));
        }
        p.check_combinations()?;
        Ok(p)
    }
}

/// True if two S3 paths name the same place (a trailing `/` does not matter).
pub fn same_s3_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const SUBNET: (&str, &str) = ("subnetId", "subnet-0123456789abcdef0");

    fn parse(pairs: &[(&str, &str)]) -> Result<StorageClassParams, ParamError> {
        StorageClassParams::parse(&map(pairs))
    }

    #[test]
    fn minimal_is_scratch_1_ssd() {
        let p = parse(&[SUBNET]).unwrap();
        assert_eq!(p.deployment_type, DeploymentType::Scratch1);
        assert_eq!(p.storage_type, StorageType::Ssd);
        assert!(p.security_group_ids.is_empty());
    }

    #[test]
    fn subnet_is_required_and_checked() {
        let e = parse(&[]).unwrap_err();
        assert_eq!(e.key, "subnetIds");
        assert!(e.to_string().contains("required (or subnetId)"), "{e}");
        let e = parse(&[("subnetId", "subnet-XYZ")]).unwrap_err();
        assert_eq!(e.key, "subnetId");
    }

    #[test]
    fn unknown_key_names_key_and_accepted_keys() {
        let e = parse(&[SUBNET, ("deploymentTyp", "SCRATCH_2")]).unwrap_err();
        assert_eq!(e.key, "deploymentTyp");
        assert!(e.message.contains("deploymentType"), "{e}");
    }

    #[test]
    fn reserved_prefix_is_ignored_and_becomes_tags() {
        let p = parse(&[SUBNET, ("csi.storage.k8s.io/pvc/name", "data"), ("csi.storage.k8s.io/fstype", "x")]).unwrap();
        assert_eq!(p.kubernetes_tags, vec![("kubernetes.io/created-for/pvc/name".to_string(), "data".to_string())]);
    }

    #[test]
    fn bad_enum_lists_allowed_values() {
        let e = parse(&[SUBNET, ("deploymentType", "scratch_1")]).unwrap_err();
        assert_eq!(e.key, "deploymentType");
        assert!(e.message.contains("SCRATCH_1, SCRATCH_2, PERSISTENT_1 or PERSISTENT_2"), "{e}");
    }

    #[test]
    fn security_groups_are_a_checked_list() {
        let p = parse(&[SUBNET, ("securityGroupIds", "sg-01234567, sg-89abcdef")]).unwrap();
        assert_eq!(p.security_group_ids, vec!["sg-01234567", "sg-89abcdef"]);
        assert_eq!(parse(&[SUBNET, ("securityGroupIds", "sg-01234567,default")]).unwrap_err().key, "securityGroupIds");
    }

    #[test]
    fn hdd_needs_persistent_1_and_cache() {
        let e = parse(&[SUBNET, ("deploymentType", "SCRATCH_2"), ("storageType", "HDD")]).unwrap_err();
        assert_eq!(e.key, "storageType");
        let e = parse(&[
            SUBNET,
            ("deploymentType", "PERSISTENT_1"),
            ("storageType", "HDD"),
            ("perUnitStorageThroughput", "12"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "driveCacheType");
        parse(&[
            SUBNET,
            ("deploymentType", "PERSISTENT_1"),
            ("storageType", "HDD"),
            ("perUnitStorageThroughput", "40"),
            ("driveCacheType", "READ"),
        ])
        .unwrap();
    }

    #[test]
    fn throughput_per_type() {
        let e = parse(&[SUBNET, ("perUnitStorageThroughput", "125")]).unwrap_err();
        assert_eq!(e.key, "perUnitStorageThroughput");
        let e = parse(&[SUBNET, ("deploymentType", "PERSISTENT_2")]).unwrap_err();
        assert!(e.message.contains("125, 250, 500 or 1000"), "{e}");
        let e = parse(&[SUBNET, ("deploymentType", "PERSISTENT_2"), ("perUnitStorageThroughput", "200")]).unwrap_err();
        assert_eq!(e.key, "perUnitStorageThroughput");
        parse(&[SUBNET, ("deploymentType", "PERSISTENT_1"), ("perUnitStorageThroughput", "200")]).unwrap();
        assert_eq!(parse(&[SUBNET, ("perUnitStorageThroughput", "fast")]).unwrap_err().key, "perUnitStorageThroughput");
    }

    #[test]
    fn times_and_numbers() {
        parse(&[SUBNET, ("weeklyMaintenanceStartTime", "7:23:59")]).unwrap();
        assert!(parse(&[SUBNET, ("weeklyMaintenanceStartTime", "8:00:00")]).is_err());
        assert!(parse(&[SUBNET, ("weeklyMaintenanceStartTime", "1:24:00")]).is_err());
        let p = [SUBNET, ("deploymentType", "PERSISTENT_1"), ("perUnitStorageThroughput", "50")];
        let mut with = p.to_vec();
        with.push(("dailyAutomaticBackupStartTime", "03:00"));
        with.push(("automaticBackupRetentionDays", "90"));
        parse(&with).unwrap();
        with.push(("copyTagsToBackups", "yes"));
        assert_eq!(parse(&with).unwrap_err().key, "copyTagsToBackups");
        let mut bad = p.to_vec();
        bad.push(("automaticBackupRetentionDays", "91"));
        assert_eq!(parse(&bad).unwrap_err().key, "automaticBackupRetentionDays");
    }

    #[test]
    fn scratch_has_no_backups_or_kms() {
        assert!(parse(&[SUBNET, ("dailyAutomaticBackupStartTime", "03:00")]).is_err());
        assert_eq!(parse(&[SUBNET, ("kmsKeyId", "abc")]).unwrap_err().key, "kmsKeyId");
        parse(&[SUBNET, ("automaticBackupRetentionDays", "0")]).unwrap();
    }

    #[test]
    fn metadata_configuration() {
        let p2 = [SUBNET, ("deploymentType", "PERSISTENT_2"), ("perUnitStorageThroughput", "125")];
        let mut ok = p2.to_vec();
        ok.extend([("metadataConfigurationMode", "USER_PROVISIONED"), ("metadataIops", "24000")]);
        parse(&ok).unwrap();
        let mut bad = p2.to_vec();
        bad.extend([("metadataConfigurationMode", "USER_PROVISIONED"), ("metadataIops", "13000")]);
        assert_eq!(parse(&bad).unwrap_err().key, "metadataIops");
        let mut missing = p2.to_vec();
        missing.push(("metadataConfigurationMode", "USER_PROVISIONED"));
        assert_eq!(parse(&missing).unwrap_err().key, "metadataIops");
        assert_eq!(parse(&[SUBNET, ("efaEnabled", "true")]).unwrap_err().key, "efaEnabled");
    }

    #[test]
    fn s3_paths() {
        let p = parse(&[
            SUBNET,
            ("deploymentType", "SCRATCH_2"),
            ("s3ImportPath", "s3://my-bucket/in"),
            ("s3ExportPath", "s3://my-bucket/out"),
            ("autoImportPolicy", "NEW_CHANGED"),
        ])
        .unwrap();
        assert_eq!(p.s3_import_path.as_deref(), Some("s3://my-bucket/in"));
        assert_eq!(parse(&[SUBNET, ("s3ImportPath", "my-bucket")]).unwrap_err().key, "s3ImportPath");
        assert_eq!(parse(&[SUBNET, ("s3ImportPath", "s3://My_Bucket")]).unwrap_err().key, "s3ImportPath");
        assert_eq!(parse(&[SUBNET, ("s3ExportPath", "s3://my-bucket")]).unwrap_err().key, "s3ExportPath");
        assert_eq!(
            parse(&[SUBNET, ("s3ImportPath", "s3://a-bucket"), ("s3ExportPath", "s3://b-bucket")]).unwrap_err().key,
            "s3ExportPath"
        );
        assert_eq!(parse(&[SUBNET, ("autoImportPolicy", "NEW")]).unwrap_err().key, "autoImportPolicy");
    }

    #[test]
    fn s3_keys_on_lustre_configuration_types() {
        assert_eq!(parse(&[SUBNET, ("importedFileChunkSize", "1024")]).unwrap_err().key, "importedFileChunkSize");
        // Association-only keys are refused where there is no association.
        let e = parse(&[
            SUBNET,
            ("deploymentType", "SCRATCH_2"),
            ("s3ImportPath", "s3://b-bucket"),
            ("fileSystemPath", "/data"),
        ])
        .unwrap_err();
        assert_eq!(e.key, "fileSystemPath");
        let spec = parse(&[
            SUBNET,
            ("deploymentType", "SCRATCH_2"),
            ("s3ImportPath", "s3://b-bucket"),
            ("importedFileChunkSize", "2048"),
        ])
        .unwrap()
        .create_spec(1200, "t".into(), vec![]);
        assert_eq!(spec.lustre.import_path.as_deref(), Some("s3://b-bucket"));
        assert_eq!(spec.lustre.imported_file_chunk_size, Some(2048));
    }

    #[test]
    fn persistent_2_links_s3_by_association() {
        let base = [SUBNET, ("deploymentType", "PERSISTENT_2"), ("perUnitStorageThroughput", "125")];
        let mut with = base.to_vec();
        with.extend([
            ("s3ImportPath", "s3://data-bucket/train"),
            ("s3ExportPath", "s3://data-bucket/train/"),
            ("autoImportPolicy", "NEW_CHANGED"),
            ("autoExportPolicy", "NEW_CHANGED_DELETED"),
            ("fileSystemPath", "/train"),
            ("batchImportMetaDataOnCreate", "true"),
        ]);
        let p = parse(&with).unwrap();
        assert!(p.uses_association());
        let spec = p.create_spec(1200, "t".into(), vec![]);
        assert_eq!(spec.lustre.import_path, None, "PERSISTENT_2 must not use LustreConfiguration.ImportPath");
        assert_eq!(spec.lustre.auto_import_policy, None);
        let specs = p.association_specs("fs-0123456789abcdef0", &[]);
        let a = &specs[0];
        assert_eq!(specs.len(), 1);
        assert_eq!(a.client_request_token, "fs-0123456789abcdef0.dra.g0", "the token it always had");
        assert_eq!(a.data_repository_path, "s3://data-bucket/train");
        assert_eq!(a.file_system_path, "/train");
        assert_eq!(a.auto_import_events, vec![EventType::New, EventType::Changed]);
        assert_eq!(a.auto_export_events, vec![EventType::New, EventType::Changed, EventType::Deleted]);
        assert!(a.batch_import_metadata_on_create);

        let mut other = base.to_vec();
        other.extend([("s3ImportPath", "s3://data-bucket/in"), ("s3ExportPath", "s3://data-bucket/out")]);
        assert_eq!(parse(&other).unwrap_err().key, "s3ExportPath");
        let mut bad_path = base.to_vec();
        bad_path.extend([("s3ImportPath", "s3://data-bucket"), ("fileSystemPath", "data/../x")]);
        assert_eq!(parse(&bad_path).unwrap_err().key, "fileSystemPath");
        let mut plain = base.to_vec();
        plain.push(("s3ImportPath", "s3://data-bucket"));
        let default_path = parse(&plain).unwrap().association_specs("fs-0123456789abcdef0", &[]).remove(0);
        assert_eq!(default_path.file_system_path, "/");
        assert!(default_path.auto_import_events.is_empty());
        // No association without S3.
        assert!(parse(&base).unwrap().association_specs("fs-0123456789abcdef0", &[]).is_empty());
        // Event subsets the cumulative policies cannot say.
        let mut subsets = plain.clone();
        subsets.extend([("autoImportEvents", "DELETED"), ("autoExportEvents", "NEW, CHANGED")]);
        let a = parse(&subsets).unwrap().association_specs("fs-0123456789abcdef0", &[]).remove(0);
        assert_eq!(
            (a.auto_import_events, a.auto_export_events),
            (vec![EventType::Deleted], vec![EventType::New, EventType::Changed])
        );
        let mut none = plain.clone();
        none.push(("autoImportEvents", "NONE"));
        assert!(parse(&none).unwrap().association_specs("fs-0123456789abcdef0", &[])[0].auto_import_events.is_empty());
        let mut both = plain.clone();
        both.extend([("autoImportEvents", "NEW"), ("autoImportPolicy", "NEW")]);
        assert_eq!(parse(&both).unwrap_err().key, "autoImportEvents");
        assert_eq!(
            parse(&[&plain[..], &[("autoExportEvents", "MOVED")]].concat()).unwrap_err().key,
            "autoExportEvents"
        );
        assert_eq!(parse(&[&base[..], &[("autoImportEvents", "NEW")]].concat()).unwrap_err().key, "autoImportEvents");
    }

    const P2: [(&str, &str); 3] = [SUBNET, ("deploymentType", "PERSISTENT_2"), ("perUnitStorageThroughput", "125")];
    const TIERING: [(&str, &str); 5] = [
        SUBNET,
        ("deploymentType", "PERSISTENT_2"),
        ("storageType", "INTELLIGENT_TIERING"),
        ("throughputCapacity", "4000"),
        ("dataReadCacheSizingMode", "PROPORTIONAL_TO_THROUGHPUT_CAPACITY"),
    ];

    fn with(
        base: &[(&'static str, &'static str)],
        more: &[(&'static str, &'static str)],
    ) -> Result<StorageClassParams, ParamError> {
        parse(&[base, more].concat())
    }

    #[test]
    fn intelligent_tiering_and_its_rules() {
        let p = parse(&TIERING).unwrap();
        let spec = p.create_spec(0, "t".into(), vec![]);
        assert_eq!(spec.storage_type, Some(StorageType::IntelligentTiering));
        assert_eq!(spec.lustre.throughput_capacity, Some(4000));
        assert_eq!(spec.lustre.per_unit_storage_throughput, None);
        let refused = |more: &[(&'static str, &'static str)], key: &str, says: &str| {
            let e = with(&TIERING, more).unwrap_err();
            assert_eq!(e.key, key, "{more:?}: {e}");
            assert!(e.message.contains(says), "{more:?}: {e}");
        };
        // The tiering keys are PERSISTENT_2's, and so is the storage class.
        refused(
            &[("deploymentType", "PERSISTENT_1"), ("perUnitStorageThroughput", "50")],
            "dataReadCacheSizingMode",
            "only with PERSISTENT_2",
        );
        let p1 = [
            SUBNET,
            ("deploymentType", "PERSISTENT_1"),
            ("perUnitStorageThroughput", "50"),
            ("storageType", "INTELLIGENT_TIERING"),
        ];
        assert!(parse(&p1).unwrap_err().message.contains("only with deploymentType PERSISTENT_2"));
        refused(&[("perUnitStorageThroughput", "125")], "perUnitStorageThroughput", "throughputCapacity");
        refused(&[("throughputCapacity", "6000")], "throughputCapacity", "a multiple of 4000");
        refused(&[("throughputCapacity", "2000")], "throughputCapacity", "from 4000");
        refused(&[("dataReadCacheSizingMode", "USER_PROVISIONED")], "dataReadCacheSizeGiB", "32 to 131072");
        refused(
            &[("dataReadCacheSizingMode", "USER_PROVISIONED"), ("dataReadCacheSizeGiB", "31")],
            "dataReadCacheSizeGiB",
            "outside 32 to 131072",
        );
        refused(
            &[("dataReadCacheSizeGiB", "64")],
            "dataReadCacheSizeGiB",
            "only to dataReadCacheSizingMode USER_PROVISIONED",
        );
        refused(&[("metadataConfigurationMode", "AUTOMATIC")], "metadataConfigurationMode", "AUTOMATIC is for SSD");
        refused(
            &[("metadataConfigurationMode", "USER_PROVISIONED"), ("metadataIops", "24000")],
            "metadataIops",
            "6000 or 12000",
        );
        refused(&[("driveCacheType", "READ")], "driveCacheType", "HDD");
        refused(&[("fileSystemTypeVersion", "2.12")], "fileSystemTypeVersion", "use 2.15");
        with(&TIERING, &[("dataReadCacheSizingMode", "USER_PROVISIONED"), ("dataReadCacheSizeGiB", "131072")]).unwrap();
        // Without Intelligent-Tiering the tiering keys are refused; without them it is.
        assert_eq!(with(&P2, &[("throughputCapacity", "4000")]).unwrap_err().key, "throughputCapacity");
        let no_cache: Vec<_> = TIERING.iter().copied().filter(|(k, _)| *k != "dataReadCacheSizingMode").collect();
        assert_eq!(parse(&no_cache).unwrap_err().key, "dataReadCacheSizingMode");
        let no_throughput: Vec<_> = TIERING.iter().copied().filter(|(k, _)| *k != "throughputCapacity").collect();
        assert_eq!(parse(&no_throughput).unwrap_err().key, "throughputCapacity");
    }

    #[test]
    fn efa_logging_root_squash_and_version_rules() {
        let efa = [("efaEnabled", "true")];
        assert!(with(&P2, &efa).unwrap_err().message.contains("metadata configuration"));
        with(&P2, &[("efaEnabled", "true"), ("metadataConfigurationMode", "AUTOMATIC")]).unwrap();
        // EFA on Intelligent-Tiering needs 4000 MBps or a multiple: every accepted throughput is.
        with(
            &TIERING,
            &[("efaEnabled", "true"), ("metadataConfigurationMode", "USER_PROVISIONED"), ("metadataIops", "6000")],
        )
        .unwrap();
        let e = with(
            &P2,
            &[("efaEnabled", "true"), ("metadataConfigurationMode", "AUTOMATIC"), ("fileSystemTypeVersion", "2.12")],
        )
        .unwrap_err();
        assert_eq!(e.key, "fileSystemTypeVersion");

        let group = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/fsx/ml";
        let p = parse(&[SUBNET, ("lustreLogLevel", "WARN_ERROR"), ("lustreLogDestination", group)]).unwrap();
        assert_eq!(p.lustre.log_destination.as_deref(), Some(group));
        assert_eq!(parse(&[SUBNET, ("lustreLogDestination", group)]).unwrap_err().key, "lustreLogDestination");
        let e = parse(&[SUBNET, ("lustreLogLevel", "DISABLED"), ("lustreLogDestination", group)]).unwrap_err();
        assert!(e.message.contains("DISABLED"), "{e}");
        for bad in [
            "arn:aws:logs:us-east-1:123456789012:log-group:/var/log/x",
            "arn:aws:s3:us-east-1:123456789012:log-group:/aws/fsx/x",
            "arn:aws:logs:us-east-1:1234:log-group:/aws/fsx/x",
            "/aws/fsx/lustre",
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/fsx/a b",
        ] {
            assert_eq!(
                parse(&[SUBNET, ("lustreLogLevel", "WARN_ONLY"), ("lustreLogDestination", bad)]).unwrap_err().key,
                "lustreLogDestination",
                "{bad}"
            );
        }
        let star = parse(&[SUBNET, ("lustreLogLevel", "ERROR_ONLY"), ("lustreLogDestination", &format!("{group}:*"))])
            .unwrap();
        assert_eq!(star.lustre.log_destination.as_deref(), Some(group), "one spelling, as FSx's is read");

        let p =
            parse(&[SUBNET, ("rootSquash", "65534:65534"), ("noSquashNids", "10.0.1.6@tcp, 10.0.[2-10].[1-255]@tcp")])
                .unwrap();
        assert_eq!(p.lustre.no_squash_nids.unwrap().len(), 2);
        assert_eq!(parse(&[SUBNET, ("noSquashNids", "10.0.1.6@tcp")]).unwrap_err().key, "noSquashNids");
        assert_eq!(
            parse(&[SUBNET, ("rootSquash", "0:0"), ("noSquashNids", "10.0.1.6@tcp")]).unwrap_err().key,
            "noSquashNids"
        );
        for bad in ["10.0.1.6", "10.0.1@tcp", "10.0.1.256@tcp", "10.0.[9-2].1@tcp", "a.b.c.d@tcp", "10.0.1.6@o2ib"] {
            assert_eq!(
                parse(&[SUBNET, ("rootSquash", "1:1"), ("noSquashNids", bad)]).unwrap_err().key,
                "noSquashNids",
                "{bad}"
            );
        }
        let many: Vec<String> = (0..65).map(|i| format!("10.0.0.{i}@tcp")).collect();
        assert!(
            parse(&[SUBNET, ("rootSquash", "1:1"), ("noSquashNids", &many.join(","))])
                .unwrap_err()
                .message
                .contains("at most 64")
        );
    }

    #[test]
    fn several_associations_and_final_backups() {
        let list = r#"[{"fileSystemPath": "/a", "dataRepositoryPath": "s3://bucket-a/x", "autoImportEvents": ["DELETED"]},
                       {"fileSystemPath": "/b", "dataRepositoryPath": "s3://bucket-b", "autoExportEvents": ["NEW"]}]"#;
        let p = with(&P2, &[("dataRepositoryAssociations", list)]).unwrap();
        assert!(p.uses_association());
        let specs = p.association_specs("fs-0123456789abcdef0", &[]);
        assert_eq!(specs.len(), 2);
        assert_ne!(specs[0].client_request_token, specs[1].client_request_token);
        assert_eq!(specs[0].auto_import_events, vec![EventType::Deleted]);
        assert_eq!(specs[1].auto_export_events, vec![EventType::New]);
        let e = with(&P2, &[("dataRepositoryAssociations", list), ("s3ImportPath", "s3://bucket-a")]).unwrap_err();
        assert_eq!(e.key, "dataRepositoryAssociations");
        // Other types take associations from Lustre 2.12 on; SCRATCH_1 never.
        let p1 = [SUBNET, ("deploymentType", "PERSISTENT_1"), ("perUnitStorageThroughput", "50")];
        assert!(with(&p1, &[("dataRepositoryAssociations", list)]).unwrap_err().message.contains("2.12"));
        with(&p1, &[("dataRepositoryAssociations", list), ("fileSystemTypeVersion", "2.15")]).unwrap();
        assert!(
            parse(&[SUBNET, ("dataRepositoryAssociations", list)])
                .unwrap_err()
                .message
                .contains("SCRATCH_2, PERSISTENT_1 or PERSISTENT_2")
        );
        let e = with(&P2, &[("dataRepositoryAssociations", r#"[{"fileSystemPath": "/a"}]"#)]).unwrap_err();
        assert!(e.key == "dataRepositoryAssociations" && e.message.contains("dataRepositoryPath"), "{e}");

        // Final backups: recorded on the file system's tags, read back at deletion.
        let p = with(&P2, &[("finalBackupOnDelete", "true"), ("finalBackupTags", "team=ml,keep=yes")]).unwrap();
        let tags = p.tags("pvc-1", &[]).unwrap();
        let fs = crate::fsx::FileSystem { tags, ..Default::default() };
        assert_eq!(fs.final_backup(), Some(vec![("team".into(), "ml".into()), ("keep".into(), "yes".into())]));
        let plain =
            crate::fsx::FileSystem { tags: with(&P2, &[]).unwrap().tags("pvc-1", &[]).unwrap(), ..Default::default() };
        assert_eq!(plain.final_backup(), None);
        assert_eq!(parse(&[SUBNET, ("finalBackupOnDelete", "true")]).unwrap_err().key, "finalBackupOnDelete");
        assert_eq!(with(&P2, &[("finalBackupTags", "a=b")]).unwrap_err().key, "finalBackupTags");
        let p1_s3 = [
            SUBNET,
            ("deploymentType", "PERSISTENT_1"),
            ("perUnitStorageThroughput", "50"),
            ("s3ImportPath", "s3://bucket-a"),
        ];
        assert_eq!(with(&p1_s3, &[("finalBackupOnDelete", "true")]).unwrap_err().key, "finalBackupOnDelete");
        // The driver's record cannot be forged through extraTags.
        assert_eq!(parse(&[SUBNET, ("extraTags", "fsx.csi.aws.com/final-backup=true")]).unwrap_err().key, "extraTags");
        let long = format!("{}=v", "k".repeat(100));
        assert!(
            with(&P2, &[("finalBackupOnDelete", "true"), ("finalBackupTags", Box::leak(long.into_boxed_str()))])
                .unwrap_err()
                .message
                .contains("too long")
        );
    }

    #[test]
    fn tags() {
        let t = parse_tags("extraTags", "team=ml, cost-center=42,team=data").unwrap();
        assert_eq!(t, vec![("team".to_string(), "data".to_string()), ("cost-center".to_string(), "42".to_string())]);
        assert!(parse_tags("extraTags", "novalue").is_err());
        assert!(parse_tags("extraTags", "aws:x=1").is_err());
        assert!(parse_tags("extraTags", "CSIVolumeName=x").is_err());
        assert!(parse_tags("extraTags", "k=v;rm").is_err());
    }

    #[test]
    fn spec_tags_put_volume_name_first_and_let_storage_class_win() {
        let p = parse(&[SUBNET, ("extraTags", "team=sc")]).unwrap();
        let tags = p.tags("pvc-1", &[("team".into(), "driver".into()), ("env".into(), "prod".into())]).unwrap();
        assert_eq!(tags[0], (VOLUME_NAME_TAG.to_string(), "pvc-1".to_string()));
        assert!(tags.contains(&("team".to_string(), "sc".to_string())));
        assert!(tags.contains(&("env".to_string(), "prod".to_string())));
        assert_eq!(p.create_spec(1200, "t".into(), tags.clone()).tags, tags);
    }

    /// Finding: more than 50 tags were silently cut to 50.
    #[test]
    fn more_tags_than_fsx_allows_are_refused_not_cut() {
        let extra: Vec<String> = (0..45).map(|i| format!("k{i}=v")).collect();
        let p = parse(&[SUBNET, ("extraTags", &extra.join(","))]).unwrap();
        assert_eq!(p.tags("pvc-1", &[]).unwrap().len(), 46);
        let driver: Vec<(String, String)> = (0..5).map(|i| (format!("d{i}"), "v".to_string())).collect();
        let e = p.tags("pvc-1", &driver).unwrap_err();
        assert_eq!(e.key, "extraTags");
        assert!(e.message.contains("51 tags") && e.message.contains("at most 50"), "{}", e.message);
        // Overriding a key does not count twice.
        let same: Vec<(String, String)> = (0..5).map(|i| (format!("k{i}"), "d".to_string())).collect();
        assert_eq!(p.tags("pvc-1", &same).unwrap().len(), 46);
    }

    /// Finding: names and tags with control characters, and oversized names, reached FSx and
    /// the log.
    #[test]
    fn names_and_tag_text_are_what_fsx_accepts() {
        for good in ["pvc-0b4a3c2e-1f1e-4c3b-9d1a-2b3c4d5e6f70", "a", "sanity-create-1A2B", &"x".repeat(128)] {
            check_volume_name(good).unwrap();
        }
        for bad in ["", " ", "..", "a\u{0}b", "pvc-1\r\nINFO forged", "-x", "x.", "a b", &"x".repeat(129), "é"] {
            let e = check_volume_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("name"), "{e}");
            assert!(!e.contains('\n') && !e.contains('\r') && e.len() < 500, "{e:?}");
        }
        let huge = "x".repeat(1 << 20);
        assert!(check_volume_name(&huge).unwrap_err().to_string().len() < 500);
        let e = check_name("-x", NameOf::Snapshot).unwrap_err().to_string();
        assert!(e.ends_with("(it becomes the backup's CSISnapshotName tag)"), "{e}");
        for bad in ["team=a\nb", "te\tam=x", "k=a\u{2028}b", "k=\u{1b}[2J"] {
            assert_eq!(parse_tags("extraTags", bad).unwrap_err().key, "extraTags", "{bad:?}");
        }
        parse_tags("extraTags", "team=ML Platform,cost:center=a/b+c@d").unwrap();
        for bad in ["2.12.1", "12345678901234567890", "2.", ".2", "2.123", "x.y", "2,12"] {
            assert_eq!(parse(&[SUBNET, ("fileSystemTypeVersion", bad)]).unwrap_err().key, "fileSystemTypeVersion");
        }
        for good in ["2.10", "2.12", "2.15"] {
            parse(&[SUBNET, ("fileSystemTypeVersion", good)]).unwrap();
        }
    }

    /// Finding: a megabyte value was echoed whole in the error (a 650 KB grpc-message).
    #[test]
    fn errors_echo_at_most_a_bounded_prefix_of_a_value() {
        let huge = "subnet-".to_string() + &"a".repeat(1 << 20);
        let e = parse(&[("subnetId", &huge)]).unwrap_err();
        let text = e.to_string();
        assert!(text.len() < 600, "{} bytes", text.len());
        assert!(text.contains("subnetId") && text.contains("1048583 characters"), "{text}");
        let big_key = "k".repeat(100_000);
        let e = parse(&[SUBNET, (&big_key, "v")]).unwrap_err();
        assert!(e.to_string().len() < 2000, "{}", e.to_string().len());
    }

    #[test]
    fn empty_optional_values_are_unset() {
        let p = parse(&[SUBNET, ("kmsKeyId", ""), ("securityGroupIds", "")]).unwrap();
        assert_eq!(p.kms_key_id, None);
        assert!(p.security_group_ids.is_empty());
    }
}
