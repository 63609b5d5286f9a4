//! The Lustre settings of a file system, each declared once.
//!
//! One entry per field of FSx's `LustreConfiguration`: its domain type, how it is read from a
//! described file system (`read`), how it goes into `CreateFileSystem` (`create`), and, for
//! the settings `UpdateFileSystem` changes in place, how it goes into the update (`update`).
//! From the table come [`LustreSettings`] (what a StorageClass asks for, what FSx describes,
//! and what an update changes are all this one type), the comparisons the provisioner makes
//! ([`LustreSettings::covered_by`], [`LustreSettings::changes_from`]) and the three SDK
//! mappings [`super::aws`] uses. A new create-only setting is one entry with `read` and
//! `create`; a mutable one adds `update`.
//!
//! The Lustre version (`FileSystemTypeVersion`) is a top-level field of the FSx requests, but
//! `UpdateFileSystem` changes it in place like the others, so it is an entry here too: `read`
//! takes the described file system as well as its `LustreConfiguration`, and [`super::aws`]
//! puts the version at the top of the create and update requests. The storage type and KMS
//! key, fixed at creation and top-level, stay fields of [`super::CreateSpec`] and
//! [`super::FileSystem`].

use aws_sdk_fsx::types as t;

use super::{
    AutoImportPolicy, DataCompressionType, DeploymentType, DriveCacheType, LogLevel, MetadataMode, ReadCacheSizingMode,
};

/// Reads a wire enum from the SDK's spelling (an unknown value reads as not set).
fn wire<T: std::str::FromStr>(s: Option<&str>) -> Option<T> {
    s.and_then(|s| s.parse().ok())
}

/// `RootSquashConfiguration`: the squash and the clients it spares travel together.
fn root_squash(uid_gid: Option<&str>, nids: Option<&Vec<String>>) -> t::LustreRootSquashConfiguration {
    t::LustreRootSquashConfiguration::builder()
        .set_root_squash(uid_gid.map(str::to_string))
        .set_no_squash_nids(nids.cloned())
        .build()
}

/// `DataReadCacheConfiguration`: the mode, and the size with USER_PROVISIONED.
fn read_cache(mode: ReadCacheSizingMode, size_gib: Option<i32>) -> t::LustreReadCacheConfiguration {
    t::LustreReadCacheConfiguration::builder().sizing_mode(mode.as_str().into()).set_size_gib(size_gib).build()
}

/// `LogConfiguration`: the level, and the log group it writes to.
fn log(level: LogLevel, destination: Option<&String>) -> t::LustreLogCreateConfiguration {
    t::LustreLogCreateConfiguration::builder()
        .level(level.as_str().into())
        .set_destination(destination.cloned())
        .build()
}

macro_rules! lustre_settings {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty {
            read($fs:pat, $l:pat) => $read:expr,
            create($cb:ident, $cv:ident, $cs:pat) => $create:expr
            $(, update($ub:ident, $uv:ident, $us:pat) => $update:expr)?
            $(,)?
        }
    )+) => {
        /// Lustre settings (`LustreConfiguration`): what a StorageClass asks for, what FSx
        /// describes, or what an update changes. `None`: not asked for, not reported, not
        /// changed.
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct LustreSettings {
            $($(#[doc = $doc])* pub $field: Option<$ty>,)+
        }

        impl LustreSettings {
            /// The settings `UpdateFileSystem` can change in place, by field name.
            pub const MUTABLE: &'static [&'static str] = &[$($(lustre_settings!(@name $field $update),)?)+];

            /// True if nothing is set.
            pub fn is_empty(&self) -> bool {
                *self == Self::default()
            }

            /// True if `other` has every value set here (an update is in effect on a
            /// described file system, or a running update makes at least these changes).
            pub fn covered_by(&self, other: &Self) -> bool {
                true $(&& (self.$field.is_none() || self.$field == other.$field))+
            }

            /// What is set here and differs from `have`: the update that brings `have` to
            /// these values.
            pub fn changes_from(&self, have: &Self) -> Self {
                Self { $($field: self.$field.as_ref().filter(|want| have.$field.as_ref() != Some(*want)).cloned(),)+ }
            }

            /// Takes every value `update` sets.
            pub fn apply(&mut self, update: &Self) {
                $(if update.$field.is_some() {
                    self.$field.clone_from(&update.$field);
                })+
            }

            /// The first field set here that `UpdateFileSystem` cannot change, if any.
            pub fn immutable_field(&self) -> Option<&'static str> {
                [$((stringify!($field), self.$field.is_some())),+]
                    .into_iter()
                    .find(|(name, set)| *set && !Self::MUTABLE.contains(name))
                    .map(|(name, _)| name)
            }

            /// Reads a described file system's (or an administrative action's target values)
            /// `LustreConfiguration` and `FileSystemTypeVersion`.
            pub(super) fn from_sdk(fs: &t::FileSystem) -> Self {
                let l = fs.lustre_configuration();
                Self {
                    $($field: {
                        fn read($fs: &t::FileSystem, $l: Option<&t::LustreFileSystemConfiguration>) -> Option<$ty> {
                            $read
                        }
                        read(fs, l)
                    },)+
                }
            }

            /// `CreateFileSystem`'s (and `CreateFileSystemFromBackup`'s) `LustreConfiguration`.
            pub(super) fn create_configuration(&self) -> t::CreateFileSystemLustreConfiguration {
                let mut builder = t::CreateFileSystemLustreConfiguration::builder();
                $(if let Some(value) = &self.$field {
                    let ($cb, $cv, $cs): (_, &$ty, &Self) = (builder, value, self);
                    builder = $create;
                })+
                builder.build()
            }

            /// `UpdateFileSystem`'s `LustreConfiguration`: the mutable settings set here.
            pub(super) fn update_configuration(&self) -> t::UpdateFileSystemLustreConfiguration {
                #[allow(unused_mut)]
                let mut builder = t::UpdateFileSystemLustreConfiguration::builder();
                $($(if let Some(value) = &self.$field {
                    let ($ub, $uv, $us): (_, &$ty, &Self) = (builder, value, self);
                    builder = $update;
                })?)+
                builder.build()
            }
        }
    };
    (@name $field:ident $($update:tt)*) => { stringify!($field) };
}

lustre_settings! {
    /// `DeploymentType`.
    deployment_type: DeploymentType {
        read(_, l) => wire(l?.deployment_type().map(|d| d.as_str())),
        create(b, v, _) => b.deployment_type(v.as_str().into()),
    }
    /// `PerUnitStorageThroughput` (MB/s per TiB; PERSISTENT types).
    per_unit_storage_throughput: i32 {
        read(_, l) => l?.per_unit_storage_throughput(),
        create(b, v, _) => b.per_unit_storage_throughput(*v),
        update(b, v, _) => b.per_unit_storage_throughput(*v),
    }
    /// `DriveCacheType` (HDD only).
    drive_cache_type: DriveCacheType {
        read(_, l) => wire(l?.drive_cache_type().map(|d| d.as_str())),
        create(b, v, _) => b.drive_cache_type(v.as_str().into()),
    }
    /// `DataCompressionType`.
    data_compression_type: DataCompressionType {
        read(_, l) => wire(l?.data_compression_type().map(|d| d.as_str())),
        create(b, v, _) => b.data_compression_type(v.as_str().into()),
        update(b, v, _) => b.data_compression_type(v.as_str().into()),
    }
    /// `ImportPath`: the S3 link of every type but PERSISTENT_2.
    import_path: String {
        read(_, l) => l?.data_repository_configuration()?.import_path().map(str::to_string),
        create(b, v, _) => b.import_path(v),
    }
    /// `ExportPath`.
    export_path: String {
        read(_, l) => l?.data_repository_configuration()?.export_path().map(str::to_string),
        create(b, v, _) => b.export_path(v),
    }
    /// `ImportedFileChunkSize` (MiB).
    imported_file_chunk_size: i32 {
        read(_, l) => l?.data_repository_configuration()?.imported_file_chunk_size(),
        create(b, v, _) => b.imported_file_chunk_size(*v),
    }
    /// `AutoImportPolicy` of the legacy S3 link.
    auto_import_policy: AutoImportPolicy {
        read(_, l) => wire(l?.data_repository_configuration()?.auto_import_policy().map(|p| p.as_str())),
        create(b, v, _) => b.auto_import_policy(v.as_str().into()),
        update(b, v, _) => b.auto_import_policy(v.as_str().into()),
    }
    /// `WeeklyMaintenanceStartTime`: `d:HH:MM`.
    weekly_maintenance_start_time: String {
        read(_, l) => l?.weekly_maintenance_start_time().map(str::to_string),
        create(b, v, _) => b.weekly_maintenance_start_time(v),
        update(b, v, _) => b.weekly_maintenance_start_time(v),
    }
    /// `DailyAutomaticBackupStartTime`: `HH:MM`.
    daily_automatic_backup_start_time: String {
        read(_, l) => l?.daily_automatic_backup_start_time().map(str::to_string),
        create(b, v, _) => b.daily_automatic_backup_start_time(v),
        update(b, v, _) => b.daily_automatic_backup_start_time(v),
    }
    /// `AutomaticBackupRetentionDays`.
    automatic_backup_retention_days: i32 {
        read(_, l) => l?.automatic_backup_retention_days(),
        create(b, v, _) => b.automatic_backup_retention_days(*v),
        update(b, v, _) => b.automatic_backup_retention_days(*v),
    }
    /// `CopyTagsToBackups`.
    copy_tags_to_backups: bool {
        read(_, l) => l?.copy_tags_to_backups(),
        create(b, v, _) => b.copy_tags_to_backups(*v),
    }
    /// `EfaEnabled` (PERSISTENT_2).
    efa_enabled: bool {
        read(_, l) => l?.efa_enabled(),
        create(b, v, _) => b.efa_enabled(*v),
    }
    /// `MetadataConfiguration.Mode` (PERSISTENT_2); the request carries `metadata_iops` with it.
    metadata_mode: MetadataMode {
        read(_, l) => wire(l?.metadata_configuration()?.mode().map(|m| m.as_str())),
        create(b, v, s) => b.metadata_configuration(
            t::CreateFileSystemLustreMetadataConfiguration::builder()
                .mode(v.as_str().into())
                .set_iops(s.metadata_iops)
                .build(),
        ),
        update(b, v, s) => b.metadata_configuration(
            t::UpdateFileSystemLustreMetadataConfiguration::builder()
                .mode(v.as_str().into())
                .set_iops(s.metadata_iops)
                .build(),
        ),
    }
    /// `MetadataConfiguration.Iops` (USER_PROVISIONED mode): sent in the mode's configuration
    /// when a mode is set, alone otherwise (an update of the IOPS only).
    metadata_iops: i32 {
        read(_, l) => l?.metadata_configuration()?.iops(),
        create(b, _v, _) => b,
        update(b, v, s) => if s.metadata_mode.is_some() {
            b
        } else {
            b.metadata_configuration(t::UpdateFileSystemLustreMetadataConfiguration::builder().iops(*v).build())
        },
    }
    /// `RootSquashConfiguration.RootSquash`: `UID:GID` (`0:0` turns it off).
    root_squash: String {
        read(_, l) => l?.root_squash_configuration()?.root_squash().map(str::to_string),
        create(b, v, s) => b.root_squash_configuration(root_squash(Some(v), s.no_squash_nids.as_ref())),
        update(b, v, s) => b.root_squash_configuration(root_squash(Some(v), s.no_squash_nids.as_ref())),
    }
    /// `RootSquashConfiguration.NoSquashNids`: clients root squash does not apply to; sent in
    /// the root squash configuration when the squash is set, alone otherwise.
    no_squash_nids: Vec<String> {
        read(_, l) => Some(l?.root_squash_configuration()?.no_squash_nids().to_vec()).filter(|n| !n.is_empty()),
        create(b, _v, _) => b,
        update(b, v, s) => if s.root_squash.is_some() {
            b
        } else {
            b.root_squash_configuration(root_squash(None, Some(v)))
        },
    }
    /// `ThroughputCapacity` (MBps; Intelligent-Tiering only).
    throughput_capacity: i32 {
        read(_, l) => l?.throughput_capacity(),
        create(b, v, _) => b.throughput_capacity(*v),
        update(b, v, _) => b.throughput_capacity(*v),
    }
    /// `DataReadCacheConfiguration.SizingMode` (Intelligent-Tiering only); carries the size.
    data_read_cache_sizing_mode: ReadCacheSizingMode {
        read(_, l) => wire(l?.data_read_cache_configuration()?.sizing_mode().map(|m| m.as_str())),
        create(b, v, s) => b.data_read_cache_configuration(read_cache(*v, s.data_read_cache_size_gib)),
        update(b, v, s) => b.data_read_cache_configuration(read_cache(*v, s.data_read_cache_size_gib)),
    }
    /// `DataReadCacheConfiguration.SizeGiB` (USER_PROVISIONED): sent with the mode; alone, a
    /// new size of a cache that is already USER_PROVISIONED.
    data_read_cache_size_gib: i32 {
        read(_, l) => l?.data_read_cache_configuration()?.size_gib(),
        create(b, _v, _) => b,
        update(b, v, s) => if s.data_read_cache_sizing_mode.is_some() {
            b
        } else {
            b.data_read_cache_configuration(read_cache(ReadCacheSizingMode::UserProvisioned, Some(*v)))
        },
    }
    /// `LogConfiguration.Level`; carries the destination.
    log_level: LogLevel {
        read(_, l) => wire(l?.log_configuration()?.level().map(|v| v.as_str())),
        create(b, v, s) => b.log_configuration(log(*v, s.log_destination.as_ref())),
        update(b, v, s) => b.log_configuration(log(*v, s.log_destination.as_ref())),
    }
    /// `LogConfiguration.Destination`: a CloudWatch Logs log group ARN, sent with the level
    /// (which FSx requires in the same configuration).
    log_destination: String {
        read(_, l) => l?.log_configuration()?.destination().map(|d| d.strip_suffix(":*").unwrap_or(d).to_string()),
        create(b, _v, _) => b,
        update(b, _v, _) => b,
    }
    /// `FileSystemTypeVersion`: top-level in the requests ([`super::aws`] sends it there).
    file_system_type_version: String {
        read(fs, _) => fs.file_system_type_version().map(str::to_string),
        create(b, _v, _) => b,
        update(b, _v, _) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_setting() -> LustreSettings {
        LustreSettings {
            deployment_type: Some(DeploymentType::Persistent2),
            per_unit_storage_throughput: Some(250),
            drive_cache_type: Some(DriveCacheType::Read),
            data_compression_type: Some(DataCompressionType::Lz4),
            import_path: Some("s3://b/in".into()),
            export_path: Some("s3://b/out".into()),
            imported_file_chunk_size: Some(2048),
            auto_import_policy: Some(AutoImportPolicy::NewChanged),
            weekly_maintenance_start_time: Some("1:02:00".into()),
            daily_automatic_backup_start_time: Some("03:00".into()),
            automatic_backup_retention_days: Some(7),
            copy_tags_to_backups: Some(true),
            efa_enabled: Some(true),
            metadata_mode: Some(MetadataMode::UserProvisioned),
            metadata_iops: Some(12000),
            root_squash: Some("65534:65534".into()),
            no_squash_nids: Some(vec!["10.0.1.6@tcp".into(), "10.0.[2-10].[1-255]@tcp".into()]),
            throughput_capacity: Some(4000),
            data_read_cache_sizing_mode: Some(ReadCacheSizingMode::UserProvisioned),
            data_read_cache_size_gib: Some(64),
            log_level: Some(LogLevel::WarnError),
            log_destination: Some("arn:aws:logs:us-east-1:123456789012:log-group:/aws/fsx/team".into()),
            file_system_type_version: Some("2.15".into()),
        }
    }

    /// What the create request carries, read back as FSx would describe it: every setting
    /// survives the round trip (the S3 fields go into `DataRepositoryConfiguration`).
    #[test]
    fn every_setting_goes_into_the_create_request_and_reads_back() {
        let want = every_setting();
        let c = want.create_configuration();
        let repo = t::DataRepositoryConfiguration::builder()
            .set_import_path(c.import_path().map(str::to_string))
            .set_export_path(c.export_path().map(str::to_string))
            .set_imported_file_chunk_size(c.imported_file_chunk_size())
            .set_auto_import_policy(c.auto_import_policy().cloned())
            .build();
        let metadata = c.metadata_configuration().map(|m| {
            t::FileSystemLustreMetadataConfiguration::builder().set_iops(m.iops()).set_mode(m.mode().cloned()).build()
        });
        let described = t::LustreFileSystemConfiguration::builder()
            .set_deployment_type(c.deployment_type().cloned())
            .set_per_unit_storage_throughput(c.per_unit_storage_throughput())
            .set_drive_cache_type(c.drive_cache_type().cloned())
            .set_data_compression_type(c.data_compression_type().cloned())
            .data_repository_configuration(repo)
            .set_weekly_maintenance_start_time(c.weekly_maintenance_start_time().map(str::to_string))
            .set_daily_automatic_backup_start_time(c.daily_automatic_backup_start_time().map(str::to_string))
            .set_automatic_backup_retention_days(c.automatic_backup_retention_days())
            .set_copy_tags_to_backups(c.copy_tags_to_backups())
            .set_efa_enabled(c.efa_enabled())
            .set_metadata_configuration(metadata)
            .set_root_squash_configuration(c.root_squash_configuration().cloned())
            .set_throughput_capacity(c.throughput_capacity())
            .set_data_read_cache_configuration(c.data_read_cache_configuration().cloned())
            .set_log_configuration(c.log_configuration().map(|l| {
                t::LustreLogConfiguration::builder()
                    .set_level(l.level().cloned())
                    .set_destination(l.destination().map(str::to_string))
                    .build()
            }))
            .build();
        // The version is top-level (aws.rs sends it there).
        let fs = t::FileSystem::builder()
            .lustre_configuration(described)
            .set_file_system_type_version(want.file_system_type_version.clone())
            .build();
        assert_eq!(LustreSettings::from_sdk(&fs), want);
    }

    #[test]
    fn an_update_carries_only_mutable_settings() {
        let u = every_setting().update_configuration();
        assert_eq!(u.per_unit_storage_throughput(), Some(250));
        assert_eq!(u.data_compression_type(), Some(&t::DataCompressionType::Lz4));
        assert_eq!(u.auto_import_policy(), Some(&t::AutoImportPolicyType::NewChanged));
        assert_eq!(u.weekly_maintenance_start_time(), Some("1:02:00"));
        assert_eq!(u.daily_automatic_backup_start_time(), Some("03:00"));
        assert_eq!(u.automatic_backup_retention_days(), Some(7));
        let m = u.metadata_configuration().unwrap();
        assert_eq!((m.mode(), m.iops()), (Some(&t::MetadataConfigurationMode::UserProvisioned), Some(12000)));
        let squash = u.root_squash_configuration().unwrap();
        assert_eq!((squash.root_squash(), squash.no_squash_nids().len()), (Some("65534:65534"), 2));
        assert_eq!(u.throughput_capacity(), Some(4000));
        let cache = u.data_read_cache_configuration().unwrap();
        assert_eq!(
            (cache.sizing_mode(), cache.size_gib()),
            (Some(&t::LustreReadCacheSizingMode::UserProvisioned), Some(64))
        );
        let log = u.log_configuration().unwrap();
        assert_eq!((log.level(), log.destination().is_some()), (Some(&t::LustreAccessAuditLogLevel::WarnError), true));
        // Half of a pair alone still makes a valid configuration.
        let nids = LustreSettings { no_squash_nids: Some(vec!["10.0.0.1@tcp".into()]), ..Default::default() };
        assert_eq!(nids.update_configuration().root_squash_configuration().unwrap().no_squash_nids().len(), 1);
        let size = LustreSettings { data_read_cache_size_gib: Some(128), ..Default::default() }.update_configuration();
        assert_eq!(size.data_read_cache_configuration().unwrap().size_gib(), Some(128));
        // The IOPS alone (the mode is already USER_PROVISIONED).
        let iops = LustreSettings { metadata_iops: Some(24000), ..Default::default() }.update_configuration();
        let m = iops.metadata_configuration().unwrap();
        assert_eq!((m.mode(), m.iops()), (None, Some(24000)));
        assert_eq!(every_setting().immutable_field(), Some("deployment_type"));
        let mutable = LustreSettings { root_squash: Some("0:0".into()), metadata_iops: Some(1), ..Default::default() };
        assert_eq!(mutable.immutable_field(), None);
    }

    #[test]
    fn changes_and_coverage() {
        let have = every_setting();
        let want = LustreSettings {
            per_unit_storage_throughput: Some(500),
            root_squash: have.root_squash.clone(),
            ..Default::default()
        };
        let change = want.changes_from(&have);
        assert_eq!(change, LustreSettings { per_unit_storage_throughput: Some(500), ..Default::default() });
        assert!(!change.covered_by(&have));
        let mut after = have.clone();
        after.apply(&change);
        assert!(change.covered_by(&after) && want.covered_by(&after));
        assert!(LustreSettings::default().covered_by(&have));
    }
}
