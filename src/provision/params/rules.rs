//! The rules between keys that FSx would refuse, checked before any call. Rules about one
//! key and the deployment types that take it are not here: they come from each key's
//! description ([`super::keys`]).

use super::{OneOf, ParamError, StorageClassParams, allowed_throughputs, err, s3_bucket, same_s3_path};
use crate::fsx::{DeploymentType, MetadataMode, StorageType};
use crate::text::Shown;

impl StorageClassParams {
    /// Combinations FSx would refuse, caught before any call.
    pub(super) fn check_combinations(&self) -> Result<(), ParamError> {
        let d = self.deployment_type;
        if self.storage_type == StorageType::Hdd && d != DeploymentType::Persistent1 {
            return Err(err("storageType", format!("HDD is available only with deploymentType PERSISTENT_1, not {d}")));
        }
        let allowed = allowed_throughputs(d, self.storage_type);
        let allowed_text: Vec<String> = allowed.iter().map(i32::to_string).collect();
        let allowed_text: Vec<&str> = allowed_text.iter().map(String::as_str).collect();
        match self.lustre.per_unit_storage_throughput {
            Some(t) if allowed.is_empty() => {
                return Err(err(
                    "perUnitStorageThroughput",
                    format!("{t} is not allowed: {d} file systems have no per-unit throughput; remove the key"),
                ));
            }
            Some(t) if !allowed.contains(&t) => {
                return Err(err(
                    "perUnitStorageThroughput",
                    format!("{t} is not valid for {d} {}: use {} (MB/s/TiB)", self.storage_type, OneOf(&allowed_text)),
                ));
            }
            None if !allowed.is_empty() => {
                return Err(err(
                    "perUnitStorageThroughput",
                    format!("is required for {d} {}: use {} (MB/s/TiB)", self.storage_type, OneOf(&allowed_text)),
                ));
            }
            _ => {}
        }
        match (self.storage_type, self.lustre.drive_cache_type) {
            (StorageType::Hdd, None) => {
                return Err(err("driveCacheType", "is required with storageType HDD: use NONE or READ"));
            }
            (StorageType::Ssd, Some(_)) => {
                return Err(err("driveCacheType", "applies only to storageType HDD; remove it"));
            }
            _ => {}
        }
        if d.is_scratch() && self.lustre.automatic_backup_retention_days.is_some_and(|days| days > 0) {
            return Err(err(
                "automaticBackupRetentionDays",
                format!("{d} file systems have no backups: use 0, or PERSISTENT_1 or PERSISTENT_2"),
            ));
        }
        match (self.lustre.metadata_mode, self.lustre.metadata_iops) {
            (Some(MetadataMode::UserProvisioned), None) => {
                return Err(err("metadataIops", "is required with metadataConfigurationMode USER_PROVISIONED"));
            }
            (Some(MetadataMode::Automatic) | None, Some(_)) => {
                return Err(err("metadataIops", "needs metadataConfigurationMode USER_PROVISIONED"));
            }
            _ => {}
        }
        if d == DeploymentType::Persistent2 && self.file_system_type_version.as_deref() == Some("2.10") {
            return Err(err("fileSystemTypeVersion", "PERSISTENT_2 needs Lustre 2.12 or later"));
        }
        let s3_keys = self.s3_import_path.is_some()
            || self.s3_export_path.is_some()
            || self.auto_import_policy.is_some()
            || self.auto_export_policy.is_some()
            || self.imported_file_chunk_size.is_some()
            || self.file_system_path.is_some()
            || self.batch_import_metadata_on_create.is_some();
        if s3_keys {
            let Some(import) = &self.s3_import_path else {
                let key = [
                    ("s3ExportPath", self.s3_export_path.is_some()),
                    ("autoImportPolicy", self.auto_import_policy.is_some()),
                    ("autoExportPolicy", self.auto_export_policy.is_some()),
                    ("importedFileChunkSize", self.imported_file_chunk_size.is_some()),
                    ("fileSystemPath", self.file_system_path.is_some()),
                    ("batchImportMetaDataOnCreate", self.batch_import_metadata_on_create.is_some()),
                ]
                .into_iter()
                .find(|(_, set)| *set)
                .map(|(k, _)| k)
                .unwrap_or("s3ImportPath");
                return Err(err(key, "needs s3ImportPath (the S3 bucket to link)"));
            };
            if d == DeploymentType::Persistent2 {
                // Linked through one data repository association: one S3 path, both ways.
                if let Some(export) = &self.s3_export_path {
                    if !same_s3_path(export, import) {
                        return Err(err(
                            "s3ExportPath",
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
                    let (ib, eb) = (s3_bucket("s3ImportPath", import)?, s3_bucket("s3ExportPath", export)?);
                    if ib != eb {
                        return Err(err(
                            "s3ExportPath",
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
