//! VolumeAttributesClass parameters (ControllerModifyVolume, and CreateVolume's
//! `mutable_parameters`): the StorageClass keys FSx's `UpdateFileSystem` can change in place,
//! read through the same key table, then checked against the file system they would change.

use std::collections::HashMap;

use super::{Key, OneOf, ParamError, RESERVED_PREFIX, StorageClassParams, err, keys, rules};
use crate::fsx::{
    DeploymentType, FileSystem, LogLevel, LustreSettings, MetadataMode, ReadCacheSizingMode, StorageType,
};

/// Parsed mutable parameters: the values, and which keys were given.
#[derive(Clone, Default)]
pub struct MutableParams {
    values: StorageClassParams,
    given: Vec<&'static Key>,
}

impl std::fmt::Debug for MutableParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.given.iter().map(|k| k.name)).finish()
    }
}

/// The names of the keys that can change in place.
pub fn mutable_keys() -> Vec<&'static str> {
    keys::KEYS.iter().filter(|k| k.mutable).map(|k| k.name).collect()
}

impl MutableParams {
    /// Reads mutable parameters: every key must be one FSx can change in place, with a valid
    /// value. Nothing about the file system is known yet (see [`MutableParams::update_for`]).
    pub fn parse(raw: &HashMap<String, String>) -> Result<Self, ParamError> {
        let mut names: Vec<&String> = raw.keys().collect();
        names.sort();
        let mut out = MutableParams::default();
        for name in names {
            let value = raw[name].trim();
            if name.starts_with(RESERVED_PREFIX) {
                continue;
            }
            let Some(key) = keys::find(name) else {
                return Err(err(
                    name,
                    format!("unknown key; keys that can change in place are {}", OneOf(&mutable_keys())),
                ));
            };
            if !key.mutable {
                return Err(err(
                    name,
                    format!(
                        "cannot change on an existing file system (FSx's UpdateFileSystem does not change it); keys that can are {}",
                        OneOf(&mutable_keys())
                    ),
                ));
            }
            if value.is_empty() {
                continue;
            }
            (key.set)(&mut out.values, value).map_err(|message| err(key.name, message))?;
            out.given.push(key);
        }
        Ok(out)
    }

    /// True if no key was given.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }

    /// The names of the keys given, in the order read (for logs: never their values).
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.given.iter().map(|k| k.name)
    }

    /// The `UpdateFileSystem` that brings `fs` to these values: only what differs. Refused,
    /// naming the key, if the file system's deployment type does not take a key or FSx would
    /// refuse the value for this file system.
    pub fn update_for(&self, fs: &FileSystem) -> Result<LustreSettings, ParamError> {
        let Some(deployment) = fs.lustre.deployment_type else {
            return Err(err(keys::DEPLOYMENT_TYPE, format!("{} reports no Lustre deployment type", fs.id)));
        };
        for key in &self.given {
            if !key.takes.allows(deployment) {
                return Err(err(
                    key.name,
                    format!("is available only with {}; {} is {deployment}", key.takes.describe(), fs.id),
                ));
            }
        }
        let v = &self.values.lustre;
        let have = &fs.lustre;
        let storage = fs.storage_type.unwrap_or(StorageType::Ssd);
        // Scratch file systems have no automatic backups: 0 keeps them so (nothing to send;
        // FSx refuses backup settings in a scratch file system's update), more is refused.
        let scratch_no_backups = deployment.is_scratch() && v.automatic_backup_retention_days.is_some();
        if deployment.is_scratch()
            && let Some(days) = v.automatic_backup_retention_days.filter(|d| *d > 0)
        {
            return Err(err(
                keys::AUTOMATIC_BACKUP_RETENTION_DAYS,
                format!(
                    "{days} days: {} is {deployment}, which has no backups; use 0, or a PERSISTENT_1 or PERSISTENT_2 file system",
                    fs.id
                ),
            ));
        }
        if let Some(t) = v.per_unit_storage_throughput {
            if storage == StorageType::Hdd {
                return Err(err(
                    keys::PER_UNIT_STORAGE_THROUGHPUT,
                    format!("{} is {deployment} HDD, whose throughput FSx cannot change", fs.id),
                ));
            }
            rules::check_throughput(t, deployment, storage)?;
        }
        if v.metadata_mode.is_some() || v.metadata_iops.is_some() {
            let hint = " (set it in the same class, or on the file system first)";
            rules::check_metadata(v.metadata_mode.or(have.metadata_mode), v.metadata_iops, hint)?;
        }
        if let (Some(iops), Some(had)) = (v.metadata_iops, have.metadata_iops)
            && iops < had
        {
            return Err(err(
                keys::METADATA_IOPS,
                format!("{iops} is below the {had} {} has; FSx can only raise metadata IOPS", fs.id),
            ));
        }
        if v.metadata_mode == Some(MetadataMode::Automatic) && have.metadata_mode == Some(MetadataMode::UserProvisioned)
        {
            return Err(err(
                keys::METADATA_CONFIGURATION_MODE,
                format!("{} has USER_PROVISIONED metadata; FSx does not switch it back to AUTOMATIC", fs.id),
            ));
        }
        if let (Some(t), Some(had)) = (v.throughput_capacity, have.throughput_capacity)
            && t < had
        {
            return Err(err(
                keys::THROUGHPUT_CAPACITY,
                format!(
                    "{t} MBps is below the {had} MBps {} has; FSx can only raise an Intelligent-Tiering file system's throughput",
                    fs.id
                ),
            ));
        }
        // Intelligent-Tiering: the whole configuration it would have must hold.
        let tiering_keys = v.throughput_capacity.is_some()
            || v.data_read_cache_sizing_mode.is_some()
            || v.data_read_cache_size_gib.is_some();
        if tiering_keys || (storage.is_elastic() && (v.metadata_mode.is_some() || v.metadata_iops.is_some())) {
            let mut after = have.clone();
            after.apply(v);
            if after.data_read_cache_sizing_mode != Some(ReadCacheSizingMode::UserProvisioned) {
                after.data_read_cache_size_gib = v.data_read_cache_size_gib;
            }
            rules::check_tiering(&after, storage).map_err(|e| ParamError {
                message: format!("{} ({} is {deployment} {storage})", e.message, fs.id),
                ..e
            })?;
        }
        if v.log_level.is_some() || v.log_destination.is_some() {
            rules::check_logging(v.log_level.or(have.log_level), v.log_destination.as_deref())?;
        }
        if v.no_squash_nids.is_some() && v.root_squash.as_ref().or(have.root_squash.as_ref()).is_none_or(|r| r == "0:0")
        {
            return Err(err(
                keys::NO_SQUASH_NIDS,
                format!("needs root squash: {} has none, so set {} in the same class", fs.id, keys::ROOT_SQUASH),
            ));
        }
        if let Some(want) = &v.file_system_type_version {
            check_upgrade(fs, deployment, want)?;
        }
        if self.values.auto_import_policy.is_some() && fs.lustre.import_path.is_none() {
            return Err(err(
                keys::AUTO_IMPORT_POLICY,
                format!(
                    "{} is not linked to S3 with {} (PERSISTENT_2 links S3 through an association, whose events are set at creation)",
                    fs.id,
                    keys::S3_IMPORT_PATH
                ),
            ));
        }
        // autoImportPolicy is read beside the Lustre settings (on PERSISTENT_2 it becomes an
        // association's events); in place it is the legacy link's policy.
        let want = LustreSettings { auto_import_policy: self.values.auto_import_policy, ..v.clone() };
        let mut changes = want.changes_from(have);
        if scratch_no_backups {
            changes.automatic_backup_retention_days = None;
        }
        // FSx takes these pairs in one configuration each: a change to either half sends the
        // whole pair, the other half as requested or as it is, so nothing is reset by omission.
        if changes.log_level.is_some() || changes.log_destination.is_some() {
            changes.log_level = want.log_level.or(have.log_level);
            changes.log_destination = match changes.log_level {
                Some(LogLevel::Disabled) | None => None,
                Some(_) => want.log_destination.clone().or_else(|| have.log_destination.clone()),
            };
        }
        if changes.root_squash.is_some() || changes.no_squash_nids.is_some() {
            changes.root_squash = want.root_squash.clone().or_else(|| have.root_squash.clone());
            changes.no_squash_nids = match changes.root_squash.as_deref() {
                Some("0:0") | None => None,
                Some(_) => want.no_squash_nids.clone().or_else(|| have.no_squash_nids.clone()),
            };
        }
        if changes.data_read_cache_sizing_mode.is_some() || changes.data_read_cache_size_gib.is_some() {
            changes.data_read_cache_sizing_mode = want.data_read_cache_sizing_mode.or(have.data_read_cache_sizing_mode);
            changes.data_read_cache_size_gib = match changes.data_read_cache_sizing_mode {
                Some(ReadCacheSizingMode::UserProvisioned) => {
                    want.data_read_cache_size_gib.or(have.data_read_cache_size_gib)
                }
                _ => None,
            };
        }
        Ok(changes)
    }
}

/// A Lustre version change FSx makes in place: an upgrade to 2.12 or 2.15, never a
/// downgrade, and 2.15 for PERSISTENT_2 with a metadata configuration.
fn check_upgrade(fs: &FileSystem, deployment: DeploymentType, want: &str) -> Result<(), ParamError> {
    let number = |v: &str| -> Option<(u32, u32)> {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    };
    if !matches!(want, "2.12" | "2.15") {
        return Err(err(
            keys::FILE_SYSTEM_TYPE_VERSION,
            format!("{} FSx upgrades file systems to 2.12 or 2.15, not {}", fs.id, crate::text::Shown(want)),
        ));
    }
    let have = fs.lustre.file_system_type_version.as_deref();
    if let Some(have) = have
        && number(want) < number(have)
    {
        return Err(err(
            keys::FILE_SYSTEM_TYPE_VERSION,
            format!("{want} is older than the {have} {} runs; FSx upgrades Lustre, never downgrades it", fs.id),
        ));
    }
    if want == "2.12" && deployment == DeploymentType::Persistent2 && fs.lustre.metadata_mode.is_some() {
        return Err(err(
            keys::FILE_SYSTEM_TYPE_VERSION,
            format!("2.12 cannot run PERSISTENT_2 with a metadata configuration ({}): use 2.15", fs.id),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsx::DeploymentType;

    fn parse(pairs: &[(&str, &str)]) -> Result<MutableParams, ParamError> {
        MutableParams::parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn fs(deployment: DeploymentType) -> FileSystem {
        FileSystem {
            id: "fs-0123456789abcdef0".into(),
            storage_type: Some(StorageType::Ssd),
            lustre: LustreSettings {
                deployment_type: Some(deployment),
                per_unit_storage_throughput: (!deployment.is_scratch()).then_some(125),
                ..LustreSettings::default()
            },
            ..FileSystem::default()
        }
    }

    fn tiering() -> FileSystem {
        let mut fs = fs(DeploymentType::Persistent2);
        fs.storage_type = Some(StorageType::IntelligentTiering);
        fs.lustre.per_unit_storage_throughput = None;
        fs.lustre.throughput_capacity = Some(4000);
        fs.lustre.data_read_cache_sizing_mode = Some(ReadCacheSizingMode::NoCache);
        fs.lustre.file_system_type_version = Some("2.15".into());
        fs
    }

    #[test]
    fn new_settings_change_in_place_within_fsx_rules() {
        let it = tiering();
        let mut fast = it.clone();
        fast.lustre.throughput_capacity = Some(12000);
        let e = parse(&[("throughputCapacity", "8000")]).unwrap().update_for(&fast).unwrap_err();
        assert!(e.message.contains("only raise"), "{e}");
        let e =
            parse(&[("throughputCapacity", "8000")]).unwrap().update_for(&fs(DeploymentType::Persistent2)).unwrap_err();
        assert!(e.key == "throughputCapacity" && e.message.contains("INTELLIGENT_TIERING"), "{e}");
        // The cache size needs USER_PROVISIONED, and fits the throughput.
        let e = parse(&[("dataReadCacheSizeGiB", "64")]).unwrap().update_for(&it).unwrap_err();
        assert_eq!(e.key, "dataReadCacheSizeGiB");
        let e = parse(&[("dataReadCacheSizingMode", "USER_PROVISIONED"), ("dataReadCacheSizeGiB", "200000")])
            .unwrap()
            .update_for(&it)
            .unwrap_err();
        assert!(e.message.contains("32 to 131072"), "{e}");
        // More throughput widens the range.
        let u = parse(&[
            ("throughputCapacity", "8000"),
            ("dataReadCacheSizingMode", "USER_PROVISIONED"),
            ("dataReadCacheSizeGiB", "200000"),
        ])
        .unwrap()
        .update_for(&it)
        .unwrap();
        assert_eq!((u.throughput_capacity, u.data_read_cache_size_gib), (Some(8000), Some(200000)));
        // A new size alone on a USER_PROVISIONED cache carries the mode with it.
        let mut up = it.clone();
        up.lustre.data_read_cache_sizing_mode = Some(ReadCacheSizingMode::UserProvisioned);
        up.lustre.data_read_cache_size_gib = Some(64);
        let u = parse(&[("dataReadCacheSizeGiB", "128")]).unwrap().update_for(&up).unwrap();
        assert_eq!(
            (u.data_read_cache_sizing_mode, u.data_read_cache_size_gib),
            (Some(ReadCacheSizingMode::UserProvisioned), Some(128))
        );

        // Logging: a new level keeps the destination; DISABLED drops it.
        let mut logged = fs(DeploymentType::Persistent2);
        logged.lustre.log_level = Some(LogLevel::WarnOnly);
        logged.lustre.log_destination = Some("arn:aws:logs:us-east-1:123456789012:log-group:/aws/fsx/a".into());
        let u = parse(&[("lustreLogLevel", "WARN_ERROR")]).unwrap().update_for(&logged).unwrap();
        assert_eq!((u.log_level, u.log_destination.is_some()), (Some(LogLevel::WarnError), true));
        let u = parse(&[("lustreLogLevel", "DISABLED")]).unwrap().update_for(&logged).unwrap();
        assert_eq!((u.log_level, u.log_destination), (Some(LogLevel::Disabled), None));
        let e = parse(&[("lustreLogDestination", "arn:aws:logs:us-east-1:123456789012:log-group:/aws/fsx/b")])
            .unwrap()
            .update_for(&fs(DeploymentType::Persistent2))
            .unwrap_err();
        assert_eq!(e.key, "lustreLogDestination");

        // NIDs need a squash; a new squash keeps the NIDs.
        let e =
            parse(&[("noSquashNids", "10.0.1.6@tcp")]).unwrap().update_for(&fs(DeploymentType::Scratch2)).unwrap_err();
        assert_eq!(e.key, "noSquashNids");
        let mut squashed = fs(DeploymentType::Scratch2);
        squashed.lustre.root_squash = Some("1:1".into());
        squashed.lustre.no_squash_nids = Some(vec!["10.0.1.6@tcp".into()]);
        let u = parse(&[("rootSquash", "2:2")]).unwrap().update_for(&squashed).unwrap();
        assert_eq!(u.no_squash_nids, squashed.lustre.no_squash_nids);

        // Versions: upgrades only, to 2.12 or 2.15; 2.15 where metadata is configured.
        let mut old = fs(DeploymentType::Scratch2);
        old.lustre.file_system_type_version = Some("2.10".into());
        assert_eq!(
            parse(&[("fileSystemTypeVersion", "2.12")])
                .unwrap()
                .update_for(&old)
                .unwrap()
                .file_system_type_version
                .as_deref(),
            Some("2.12")
        );
        let mut new = old.clone();
        new.lustre.file_system_type_version = Some("2.15".into());
        assert!(
            parse(&[("fileSystemTypeVersion", "2.12")])
                .unwrap()
                .update_for(&new)
                .unwrap_err()
                .message
                .contains("never downgrades")
        );
        assert!(
            parse(&[("fileSystemTypeVersion", "2.10")])
                .unwrap()
                .update_for(&old)
                .unwrap_err()
                .message
                .contains("2.12 or 2.15")
        );
        assert!(parse(&[("fileSystemTypeVersion", "2.15")]).unwrap().update_for(&new).unwrap().is_empty());
        let mut meta = fs(DeploymentType::Persistent2);
        meta.lustre.metadata_mode = Some(MetadataMode::Automatic);
        assert!(
            parse(&[("fileSystemTypeVersion", "2.12")])
                .unwrap()
                .update_for(&meta)
                .unwrap_err()
                .message
                .contains("use 2.15")
        );
    }

    #[test]
    fn only_keys_fsx_can_change_are_accepted_and_each_is_named() {
        let e = parse(&[("deploymentType", "PERSISTENT_2")]).unwrap_err();
        assert_eq!(e.key, "deploymentType");
        assert!(e.message.contains("cannot change") && e.message.contains("perUnitStorageThroughput"), "{e}");
        assert_eq!(parse(&[("nope", "1")]).unwrap_err().key, "nope");
        assert_eq!(parse(&[("perUnitStorageThroughput", "lots")]).unwrap_err().key, "perUnitStorageThroughput");
        assert!(parse(&[("perUnitStorageThroughput", "250"), ("dataCompressionType", "LZ4")]).is_ok());
    }

    #[test]
    fn each_key_is_checked_against_the_file_system() {
        let p2 = fs(DeploymentType::Persistent2);
        let up = parse(&[("perUnitStorageThroughput", "250"), ("dataCompressionType", "LZ4")]).unwrap();
        let u = up.update_for(&p2).unwrap();
        assert_eq!((u.per_unit_storage_throughput, u.data_compression_type.is_some()), (Some(250), true));
        // Scratch file systems have no throughput tiers; the key and the type are named.
        let e = up.update_for(&fs(DeploymentType::Scratch2)).unwrap_err();
        assert_eq!(e.key, "perUnitStorageThroughput");
        assert!(e.message.contains("SCRATCH_2"), "{e}");
        let e = parse(&[("perUnitStorageThroughput", "200")]).unwrap().update_for(&p2).unwrap_err();
        assert!(e.message.contains("125, 250, 500 or 1000"), "{e}");
        // Nothing differs: an empty update.
        assert!(parse(&[("perUnitStorageThroughput", "125")]).unwrap().update_for(&p2).unwrap().is_empty());
        let e = parse(&[("metadataIops", "3000")]).unwrap().update_for(&p2).unwrap_err();
        assert!(e.message.contains("USER_PROVISIONED"), "{e}");
        let e = parse(&[("autoImportPolicy", "NEW")]).unwrap().update_for(&p2).unwrap_err();
        assert_eq!(e.key, "autoImportPolicy");
        // Scratch has no backups: 0 changes nothing, more is refused with the key named
        // (found by fuzz_mutable_parameters; FSx refuses backup settings on scratch).
        for d in [DeploymentType::Scratch1, DeploymentType::Scratch2] {
            assert!(parse(&[("automaticBackupRetentionDays", "0")]).unwrap().update_for(&fs(d)).unwrap().is_empty());
            let e = parse(&[("automaticBackupRetentionDays", "3")]).unwrap().update_for(&fs(d)).unwrap_err();
            assert!(e.key == "automaticBackupRetentionDays" && e.message.contains("no backups"), "{e}");
        }
        let u = parse(&[("automaticBackupRetentionDays", "0")]).unwrap().update_for(&p2).unwrap();
        assert_eq!(u.automatic_backup_retention_days, Some(0));
    }

    /// A key marked mutable in the table reaches UpdateFileSystem: parsed, it makes an update
    /// of mutable settings only (the table in fsx/settings.rs sends it). A new mutable key
    /// needs a sample here.
    #[test]
    fn every_mutable_key_becomes_a_setting_update_file_system_sends() {
        let samples: &[&[(&str, &str)]] = &[
            &[("perUnitStorageThroughput", "250")],
            &[("dataCompressionType", "LZ4")],
            &[("weeklyMaintenanceStartTime", "2:03:00")],
            &[("dailyAutomaticBackupStartTime", "04:00")],
            &[("automaticBackupRetentionDays", "3")],
            &[("autoImportPolicy", "NEW")],
            &[("metadataConfigurationMode", "USER_PROVISIONED"), ("metadataIops", "12000")],
            &[("rootSquash", "1:1"), ("noSquashNids", "10.0.1.6@tcp")],
            &[
                ("lustreLogLevel", "WARN_ERROR"),
                ("lustreLogDestination", "arn:aws:logs:us-east-1:123456789012:log-group:/aws/fsx/a"),
            ],
            &[("fileSystemTypeVersion", "2.15")],
            // Intelligent-Tiering's (on such a file system, below).
            &[("throughputCapacity", "8000")],
            &[("dataReadCacheSizingMode", "USER_PROVISIONED"), ("dataReadCacheSizeGiB", "64")],
        ];
        let mut sampled: Vec<&str> = samples.iter().flat_map(|s| s.iter().map(|(k, _)| *k)).collect();
        let mut mutable = mutable_keys();
        sampled.sort_unstable();
        mutable.sort_unstable();
        assert_eq!(sampled, mutable, "every mutable key has a sample, and only those");
        let mut ssd = fs(DeploymentType::Persistent2);
        ssd.lustre.import_path = Some("s3://bucket".into());
        ssd.lustre.file_system_type_version = Some("2.12".into());
        let tiering = tiering();
        for sample in samples {
            let fs = if sample[0].0.starts_with("throughput") || sample[0].0.starts_with("dataReadCache") {
                &tiering
            } else {
                &ssd
            };
            let update = parse(sample).unwrap().update_for(fs).unwrap();
            assert!(!update.is_empty(), "{sample:?} changes nothing");
            assert_eq!(update.immutable_field(), None, "{sample:?}");
        }
    }
}
