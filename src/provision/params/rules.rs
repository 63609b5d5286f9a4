//! The rules between keys that FSx would refuse, checked before any call. Rules about one
//! key and the deployment types that take it are not here: they come from each key's
//! description ([`super::keys`]).

use super::{OneOf, ParamError, StorageClassParams, allowed_throughputs, err, keys, s3_bucket, same_s3_path};
use crate::fsx::{DeploymentType, LogLevel, LustreSettings, MetadataMode, ReadCacheSizingMode, StorageType};
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
        if self.storage_type.is_elastic() && d != DeploymentType::Persistent2 {
            return Err(err(
                keys::STORAGE_TYPE,
                format!("INTELLIGENT_TIERING is available only with {} PERSISTENT_2, not {d}", keys::DEPLOYMENT_TYPE),
            ));
        }
        check_tiering(&self.lustre, self.storage_type)?;
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
            (StorageType::Ssd | StorageType::IntelligentTiering, Some(_)) => {
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
        let l = &self.lustre;
        let version = l.file_system_type_version.as_deref();
        if d == DeploymentType::Persistent2 && version == Some("2.10") {
            return Err(err(keys::FILE_SYSTEM_TYPE_VERSION, "PERSISTENT_2 needs Lustre 2.12 or later"));
        }
        // FSx: 2.12 is every type's except PERSISTENT_2 with a metadata configuration; EFA
        // and Intelligent-Tiering come with that configuration.
        let needs_2_15 = [
            (keys::METADATA_CONFIGURATION_MODE, l.metadata_mode.is_some()),
            (keys::EFA_ENABLED, l.efa_enabled == Some(true)),
            (keys::STORAGE_TYPE, self.storage_type.is_elastic()),
        ];
        if let (Some(v @ ("2.10" | "2.12")), Some((why, _))) = (version, needs_2_15.iter().find(|(_, set)| *set)) {
            return Err(err(
                keys::FILE_SYSTEM_TYPE_VERSION,
                format!("{v} cannot be used with {why}: use 2.15 (or leave it out: FSx then picks 2.15)"),
            ));
        }
        // EFA needs a metadata configuration. With Intelligent-Tiering FSx also needs 4000 MBps
        // or a multiple: every throughputCapacity the key accepts is one
        // (keys::valid_throughput_capacity).
        if l.efa_enabled == Some(true) && l.metadata_mode.is_none() {
            return Err(err(
                keys::EFA_ENABLED,
                format!(
                    "needs a metadata configuration: set {} (AUTOMATIC, or USER_PROVISIONED with {})",
                    keys::METADATA_CONFIGURATION_MODE,
                    keys::METADATA_IOPS
                ),
            ));
        }
        check_logging(l.log_level, l.log_destination.as_deref())?;
        if l.no_squash_nids.is_some() && l.root_squash.as_deref().is_none_or(|r| r == "0:0") {
            return Err(err(
                keys::NO_SQUASH_NIDS,
                format!(
                    "needs {} (a UID:GID other than 0:0): it lists the clients root squash spares",
                    keys::ROOT_SQUASH
                ),
            ));
        }
        for (events, policy) in [
            (keys::AUTO_IMPORT_EVENTS, self.auto_import_events.is_some() && self.auto_import_policy.is_some()),
            (keys::AUTO_EXPORT_EVENTS, self.auto_export_events.is_some() && self.auto_export_policy.is_some()),
        ] {
            if policy {
                let other = if events == keys::AUTO_IMPORT_EVENTS {
                    keys::AUTO_IMPORT_POLICY
                } else {
                    keys::AUTO_EXPORT_POLICY
                };
                return Err(err(events, format!("says the same as {other}: give one of them")));
            }
        }
        if !self.associations.is_empty() {
            if let Some(key) = [keys::S3_IMPORT_PATH, keys::S3_EXPORT_PATH].into_iter().find(|k| {
                if *k == keys::S3_IMPORT_PATH { self.s3_import_path.is_some() } else { self.s3_export_path.is_some() }
            }) {
                return Err(err(
                    keys::DATA_REPOSITORY_ASSOCIATIONS,
                    format!("cannot be used with {key}: list that S3 link as one of the associations"),
                ));
            }
            if d != DeploymentType::Persistent2 && !matches!(version, Some("2.12" | "2.15")) {
                return Err(err(
                    keys::DATA_REPOSITORY_ASSOCIATIONS,
                    format!(
                        "needs Lustre 2.12 or later on {d}: set {} to 2.15 (FSx's default there is 2.10)",
                        keys::FILE_SYSTEM_TYPE_VERSION
                    ),
                ));
            }
        }
        if self.final_backup_on_delete && d != DeploymentType::Persistent2 && self.s3_import_path.is_some() {
            return Err(err(
                keys::FINAL_BACKUP_ON_DELETE,
                format!("FSx takes no backups of a {d} file system linked to S3 with {}", keys::S3_IMPORT_PATH),
            ));
        }
        if !self.final_backup_tags.is_empty() && !self.final_backup_on_delete {
            return Err(err(keys::FINAL_BACKUP_TAGS, format!("needs {}: \"true\"", keys::FINAL_BACKUP_ON_DELETE)));
        }
        // The keys that describe an S3 link need the link itself.
        let needs_import = [
            (keys::S3_EXPORT_PATH, self.s3_export_path.is_some()),
            (keys::AUTO_IMPORT_POLICY, self.auto_import_policy.is_some()),
            (keys::AUTO_EXPORT_POLICY, self.auto_export_policy.is_some()),
            (keys::IMPORTED_FILE_CHUNK_SIZE, self.imported_file_chunk_size.is_some()),
            (keys::FILE_SYSTEM_PATH, self.file_system_path.is_some()),
            (keys::BATCH_IMPORT_META_DATA_ON_CREATE, self.batch_import_metadata_on_create.is_some()),
            (keys::AUTO_IMPORT_EVENTS, self.auto_import_events.is_some()),
            (keys::AUTO_EXPORT_EVENTS, self.auto_export_events.is_some()),
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
    if storage.is_elastic() {
        return Err(err(
            keys::PER_UNIT_STORAGE_THROUGHPUT,
            format!(
                "does not apply to Intelligent-Tiering, whose throughput is a total: use {} (MBps)",
                keys::THROUGHPUT_CAPACITY
            ),
        ));
    }
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

/// The Intelligent-Tiering settings: the throughput and the read cache are required with it
/// and refused without it; the cache size needs USER_PROVISIONED and fits the throughput;
/// metadata is USER_PROVISIONED with 6000 or 12000 IOPS (AUTOMATIC is for SSD).
pub(super) fn check_tiering(l: &LustreSettings, storage: StorageType) -> Result<(), ParamError> {
    let tiering = [
        (keys::THROUGHPUT_CAPACITY, l.throughput_capacity.is_some()),
        (keys::DATA_READ_CACHE_SIZING_MODE, l.data_read_cache_sizing_mode.is_some()),
        (keys::DATA_READ_CACHE_SIZE_GIB, l.data_read_cache_size_gib.is_some()),
    ];
    if !storage.is_elastic() {
        if let Some((key, _)) = tiering.iter().find(|(_, set)| *set) {
            return Err(err(key, format!("applies only to {} INTELLIGENT_TIERING, not {storage}", keys::STORAGE_TYPE)));
        }
        return Ok(());
    }
    let Some(throughput) = l.throughput_capacity else {
        return Err(err(keys::THROUGHPUT_CAPACITY, "is required with Intelligent-Tiering: a multiple of 4000 (MBps)"));
    };
    let Some(mode) = l.data_read_cache_sizing_mode else {
        return Err(err(
            keys::DATA_READ_CACHE_SIZING_MODE,
            "is required with Intelligent-Tiering: NO_CACHE, USER_PROVISIONED or PROPORTIONAL_TO_THROUGHPUT_CAPACITY",
        ));
    };
    check_read_cache(mode, l.data_read_cache_size_gib, throughput)?;
    if l.metadata_mode == Some(MetadataMode::Automatic) {
        return Err(err(
            keys::METADATA_CONFIGURATION_MODE,
            format!(
                "AUTOMATIC is for SSD; Intelligent-Tiering takes USER_PROVISIONED with {} 6000 or 12000",
                keys::METADATA_IOPS
            ),
        ));
    }
    if let Some(iops) = l.metadata_iops.filter(|i| !matches!(i, 6000 | 12000)) {
        return Err(err(
            keys::METADATA_IOPS,
            format!("{iops} is not valid with Intelligent-Tiering: use 6000 or 12000"),
        ));
    }
    Ok(())
}

/// The SSD read cache of an Intelligent-Tiering file system with `throughput` MBps: a size
/// only with USER_PROVISIONED, from 32 to 131072 GiB per 4000 MBps (FSx's API reference).
pub(super) fn check_read_cache(
    mode: ReadCacheSizingMode,
    size: Option<i32>,
    throughput: i32,
) -> Result<(), ParamError> {
    let per = i64::from(throughput) / 1000;
    let (min, max) = (8 * per, 32768 * per);
    match (mode, size) {
        (ReadCacheSizingMode::UserProvisioned, None) => Err(err(
            keys::DATA_READ_CACHE_SIZE_GIB,
            format!(
                "is required with {} USER_PROVISIONED: {min} to {max} GiB at {throughput} MBps",
                keys::DATA_READ_CACHE_SIZING_MODE
            ),
        )),
        (ReadCacheSizingMode::UserProvisioned, Some(gib)) if !(min..=max).contains(&i64::from(gib)) => Err(err(
            keys::DATA_READ_CACHE_SIZE_GIB,
            format!(
                "{gib} GiB is outside {min} to {max} GiB, FSx's range at {throughput} MBps (32 to 131072 GiB per 4000 MBps)"
            ),
        )),
        (ReadCacheSizingMode::UserProvisioned, Some(_)) | (_, None) => Ok(()),
        (other, Some(_)) => Err(err(
            keys::DATA_READ_CACHE_SIZE_GIB,
            format!("applies only to {} USER_PROVISIONED, not {other}", keys::DATA_READ_CACHE_SIZING_MODE),
        )),
    }
}

/// Lustre logging: a destination needs a level that logs (FSx refuses one with DISABLED).
pub(super) fn check_logging(level: Option<LogLevel>, destination: Option<&str>) -> Result<(), ParamError> {
    match (level, destination) {
        (None, Some(_)) => Err(err(
            keys::LUSTRE_LOG_DESTINATION,
            format!("needs {}: WARN_ONLY, ERROR_ONLY or WARN_ERROR", keys::LUSTRE_LOG_LEVEL),
        )),
        (Some(LogLevel::Disabled), Some(_)) => Err(err(
            keys::LUSTRE_LOG_DESTINATION,
            format!(
                "cannot be given with {} DISABLED (FSx refuses it): remove it, or log WARN_ONLY, ERROR_ONLY or WARN_ERROR",
                keys::LUSTRE_LOG_LEVEL
            ),
        )),
        _ => Ok(()),
    }
}
