//! The rules between keys that FSx would refuse, checked before any call. Rules about one
//! key and the deployment types that take it are not here: they come from each key's
//! description ([`super::keys`]).

use super::{OneOf, ParamError, StorageClassParams, allowed_throughputs, err, keys, s3_bucket, same_s3_path};
use crate::fsx::{DeploymentType, MetadataMode, StorageType};
use crate::text::Shown;

impl StorageClassParams {
    /// Combinations FSx would refuse, caught before any call.
    pub(super) fn check_combinations(&self) -> Result<(), ParamError> {
        let d = self.deployment_type;
        if self.storage_type == StorageType::Hdd && d != DeploymentType::Persistent1 {
            return Err(err(
                keys::STORAGE_TYPE,
                format!("HDD is available only with {} PERSISTENT_1, not {d}", keys::DEPLOYMENT_TYPE),
            ));
        }
        if self.lustre.per_unit_storage_throughput.is_none() && !allowed_throughputs(d, self.storage_type).is_empty() {
            return Err(err(
                keys::PER_UNIT_STORAGE_THROUGHPUT,
                format!(
                    "is required for {d} {}: use {} (MB/s/TiB)",
                    self.storage_type,
                    allowed_text(d, self.storage_type)
                ),
            ));
        }
        if let Some(t) = self.lustre.per_unit_storage_throughput {
            check_throughput(t, d, self.storage_type)?;
        }
        match (self.storage_type, self.lustre.drive_cache_type) {
            (StorageType::Hdd, None) => {
                return Err(err(
                    keys::DRIVE_CACHE_TYPE,
                    format!("is required with {} HDD: use NONE or READ", keys::STORAGE_TYPE),
                ));
            }
            (StorageType::Ssd, Some(_)) => {
                return Err(err(
                    keys::DRIVE_CACHE_TYPE,
                    format!("applies only to {} HDD; remove it", keys::STORAGE_TYPE),
                ));
            }
            _ => {}
        }
        if d.is_scratch() && self.lustre.automatic_backup_retention_days.is_some_and(|days| days > 0) {
            return Err(err(
                keys::AUTOMATIC_BACKUP_RETENTION_DAYS,
                format!("{d} file systems have no backups: use 0, or PERSISTENT_1 or PERSISTENT_2"),
            ));
        }
        check_metadata(self.lustre.metadata_mode, self.lustre.metadata_iops, "")?;
        if d == DeploymentType::Persistent2 && self.file_system_type_version.as_deref() == Some("2.10") {
            return Err(err(keys::FILE_SYSTEM_TYPE_VERSION, "PERSISTENT_2 needs Lustre 2.12 or later"));
        }
        // The keys that describe an S3 link need the link itself.
        let needs_import = [
            (keys::S3_EXPORT_PATH, self.s3_export_path.is_some()),
            (keys::AUTO_IMPORT_POLICY, self.auto_import_policy.is_some()),
            (keys::AUTO_EXPORT_POLICY, self.auto_export_policy.is_some()),
            (keys::IMPORTED_FILE_CHUNK_SIZE, self.imported_file_chunk_size.is_some()),
            (keys::FILE_SYSTEM_PATH, self.file_system_path.is_some()),
            (keys::BATCH_IMPORT_META_DATA_ON_CREATE, self.batch_import_metadata_on_create.is_some()),
        ];
        if self.s3_import_path.is_none()
            && let Some((key, _)) = needs_import.into_iter().find(|(_, set)| *set)
        {
            return Err(err(key, format!("needs {} (the S3 bucket to link)", keys::S3_IMPORT_PATH)));
        }
        if let Some(import) = &self.s3_import_path {
            if d == DeploymentType::Persistent2 {
                // Linked through one data repository association: one S3 path, both ways.
                if let Some(export) = &self.s3_export_path {
                    if !same_s3_path(export, import) {
                        return Err(err(
                            keys::S3_EXPORT_PATH,
                            format!(
                                "on PERSISTENT_2 the S3 link is one data repository association, so the export path must be the import path {import_shown}, not {export_shown}",
                                import_shown = Shown(import),
                                export_shown = Shown(export)
                            ),
                        ));
                    }
                }
            } else {
                if let Some(export) = &self.s3_export_path {
                    let (ib, eb) = (s3_bucket(keys::S3_IMPORT_PATH, import)?, s3_bucket(keys::S3_EXPORT_PATH, export)?);
                    if ib != eb {
                        return Err(err(
                            keys::S3_EXPORT_PATH,
                            format!(
                                "must be in the import bucket {ib_shown}, not {eb_shown}",
                                ib_shown = Shown(ib),
                                eb_shown = Shown(eb)
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The throughputs FSx allows for `d` and `storage`, in words.
fn allowed_text(d: DeploymentType, storage: StorageType) -> String {
    let allowed: Vec<String> = allowed_throughputs(d, storage).iter().map(i32::to_string).collect();
    OneOf(&allowed.iter().map(String::as_str).collect::<Vec<_>>()).to_string()
}

/// `perUnitStorageThroughput` `t` on a `d` `storage` file system: in a StorageClass, and as a
/// change in place.
pub(super) fn check_throughput(t: i32, d: DeploymentType, storage: StorageType) -> Result<(), ParamError> {
    let allowed = allowed_throughputs(d, storage);
    if allowed.is_empty() {
        return Err(err(
            keys::PER_UNIT_STORAGE_THROUGHPUT,
            format!("{t} is not allowed: {d} file systems have no per-unit throughput; remove the key"),
        ));
    }
    if !allowed.contains(&t) {
        return Err(err(
            keys::PER_UNIT_STORAGE_THROUGHPUT,
            format!("{t} is not valid for {d} {storage}: use {} (MB/s/TiB)", allowed_text(d, storage)),
        ));
    }
    Ok(())
}

/// The metadata configuration: `iops` needs USER_PROVISIONED `mode`, which needs `iops`.
/// `hint` (empty, or starting with a space) says where the mode may be set.
pub(super) fn check_metadata(mode: Option<MetadataMode>, iops: Option<i32>, hint: &str) -> Result<(), ParamError> {
    match (mode, iops) {
        (Some(MetadataMode::UserProvisioned), None) => Err(err(
            keys::METADATA_IOPS,
            format!("is required with {} USER_PROVISIONED", keys::METADATA_CONFIGURATION_MODE),
        )),
        (Some(MetadataMode::Automatic) | None, Some(_)) => {
            Err(err(keys::METADATA_IOPS, format!("needs {} USER_PROVISIONED{hint}", keys::METADATA_CONFIGURATION_MODE)))
        }
        _ => Ok(()),
    }
}
