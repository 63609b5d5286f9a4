//! VolumeAttributesClass parameters (ControllerModifyVolume, and CreateVolume's
//! `mutable_parameters`): the StorageClass keys FSx's `UpdateFileSystem` can change in place,
//! read through the same key table, then checked against the file system they would change.

use std::collections::HashMap;

use super::{Key, OneOf, ParamError, RESERVED_PREFIX, StorageClassParams, err, keys, rules};
use crate::fsx::{FileSystem, LustreSettings, MetadataMode, StorageType};

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
        if let Some(t) = v.per_unit_storage_throughput {
            let storage = fs.storage_type.unwrap_or(StorageType::Ssd);
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
            rules::check_metadata(v.metadata_mode.or(fs.lustre.metadata_mode), v.metadata_iops, hint)?;
        }
        if let (Some(iops), Some(have)) = (v.metadata_iops, fs.lustre.metadata_iops)
            && iops < have
        {
            return Err(err(
                keys::METADATA_IOPS,
                format!("{iops} is below the {have} {} has; FSx can only raise metadata IOPS", fs.id),
            ));
        }
        if v.metadata_mode == Some(MetadataMode::Automatic)
            && fs.lustre.metadata_mode == Some(MetadataMode::UserProvisioned)
        {
            return Err(err(
                keys::METADATA_CONFIGURATION_MODE,
                format!("{} has USER_PROVISIONED metadata; FSx does not switch it back to AUTOMATIC", fs.id),
            ));
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
        Ok(want.changes_from(&fs.lustre))
    }
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
            &[("rootSquash", "0:0")],
        ];
        let mut sampled: Vec<&str> = samples.iter().flat_map(|s| s.iter().map(|(k, _)| *k)).collect();
        let mut mutable = mutable_keys();
        sampled.sort_unstable();
        mutable.sort_unstable();
        assert_eq!(sampled, mutable, "every mutable key has a sample, and only those");
        let mut fs = fs(DeploymentType::Persistent2);
        fs.lustre.import_path = Some("s3://bucket".into());
        for sample in samples {
            let update = parse(sample).unwrap().update_for(&fs).unwrap();
            assert!(!update.is_empty(), "{sample:?} changes nothing");
            assert_eq!(update.immutable_field(), None, "{sample:?}");
        }
    }
}
