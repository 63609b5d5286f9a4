//! The FSx boundary: what the controller needs from Amazon FSx, in domain terms.
//!
//! The provisioning logic talks only to the [`Fsx`] trait; [`aws::AwsFsx`] implements it on
//! `aws-sdk-fsx`. AWS error codes become the few [`FsxError`] variants here, at the boundary,
//! so the rest of the driver never matches on strings.

pub mod aws;
#[cfg(test)]
pub mod memory;
mod settings;

pub use settings::LustreSettings;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;

pub use crate::error::Cause;

/// Tag key that names the CSI volume a file system was created for (shared with the Go driver).
pub const VOLUME_NAME_TAG: &str = "CSIVolumeName";

/// At most this many ids go into one `DescribeFileSystems` call (the API's limit).
pub const DESCRIBE_BATCH: usize = 50;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every accepted value, in wire spelling.
            pub const ALL: &'static [&'static str] = &[$($wire),+];

            /// The value as the FSx API spells it.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire),+ }
            }
        }

        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($wire => Ok(Self::$variant),)+ _ => Err(()) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// `LustreConfiguration.DeploymentType`.
    DeploymentType { Scratch1 => "SCRATCH_1", Scratch2 => "SCRATCH_2", Persistent1 => "PERSISTENT_1", Persistent2 => "PERSISTENT_2" }
);
wire_enum!(
    /// `StorageType`: SSD, HDD (PERSISTENT_1), or the elastic Intelligent-Tiering class
    /// (PERSISTENT_2), which has no fixed capacity.
    StorageType { Ssd => "SSD", Hdd => "HDD", IntelligentTiering => "INTELLIGENT_TIERING" }
);
wire_enum!(
    /// `LustreConfiguration.DriveCacheType` (HDD only).
    DriveCacheType { None => "NONE", Read => "READ" }
);
wire_enum!(
    /// `LustreConfiguration.DataCompressionType`.
    DataCompressionType { None => "NONE", Lz4 => "LZ4" }
);
wire_enum!(
    /// `LustreConfiguration.AutoImportPolicy`.
    AutoImportPolicy { None => "NONE", New => "NEW", NewChanged => "NEW_CHANGED", NewChangedDeleted => "NEW_CHANGED_DELETED" }
);
wire_enum!(
    /// `DataReadCacheConfiguration.SizingMode` (Intelligent-Tiering only).
    ReadCacheSizingMode {
        NoCache => "NO_CACHE",
        UserProvisioned => "USER_PROVISIONED",
        ProportionalToThroughputCapacity => "PROPORTIONAL_TO_THROUGHPUT_CAPACITY",
    }
);
wire_enum!(
    /// `LogConfiguration.Level`: which data repository events Lustre logs to CloudWatch Logs.
    LogLevel { Disabled => "DISABLED", WarnOnly => "WARN_ONLY", ErrorOnly => "ERROR_ONLY", WarnError => "WARN_ERROR" }
);
wire_enum!(
    /// An S3 event type of a data repository association's import or export policy.
    EventType { New => "NEW", Changed => "CHANGED", Deleted => "DELETED" }
);
wire_enum!(
    /// `LustreConfiguration.MetadataConfiguration.Mode` (PERSISTENT_2 only).
    MetadataMode { Automatic => "AUTOMATIC", UserProvisioned => "USER_PROVISIONED" }
);

/// FSx's default deployment type.
impl Default for DeploymentType {
    fn default() -> Self {
        Self::Scratch1
    }
}

/// FSx's default storage type.
impl Default for StorageType {
    fn default() -> Self {
        Self::Ssd
    }
}

impl StorageType {
    /// Intelligent-Tiering is elastic: no `StorageCapacity` is sent, and its size grows with
    /// the data.
    pub fn is_elastic(self) -> bool {
        self == Self::IntelligentTiering
    }
}

impl DeploymentType {
    /// Scratch file systems have no backups and no throughput tiers.
    pub fn is_scratch(self) -> bool {
        matches!(self, Self::Scratch1 | Self::Scratch2)
    }
}

/// An enum of FSx states that keeps values this driver does not know yet (`Other`), so a new
/// state from FSx is reported, never refused.
macro_rules! wire_state {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($variant,)+
            /// A value this driver does not know yet; kept verbatim.
            Other(String),
        }

        impl $name {
            /// Parses the wire spelling; unknown values are kept, never refused.
            pub fn from_wire(s: &str) -> Self {
                match s { $($wire => Self::$variant,)+ other => Self::Other(other.to_string()) }
            }

            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self { $(Self::$variant => $wire,)+ Self::Other(s) => s }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_state!(
    /// The lifecycle of a file system (`FileSystem.Lifecycle`).
    Lifecycle {
        Creating => "CREATING",
        Available => "AVAILABLE",
        Updating => "UPDATING",
        Deleting => "DELETING",
        Failed => "FAILED",
        Misconfigured => "MISCONFIGURED",
        MisconfiguredUnavailable => "MISCONFIGURED_UNAVAILABLE",
    }
);

/// Not described yet (an empty, unknown lifecycle).
impl Default for Lifecycle {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

impl Lifecycle {
    /// A file system that can be mounted (UPDATING file systems stay mountable).
    pub fn is_usable(&self) -> bool {
        matches!(self, Self::Available | Self::Updating)
    }
}

wire_state!(
    /// The status of an administrative action (`AdministrativeAction.Status`).
    UpdateStatus {
        Pending => "PENDING",
        InProgress => "IN_PROGRESS",
        UpdatedOptimizing => "UPDATED_OPTIMIZING",
        Optimizing => "OPTIMIZING",
        Completed => "COMPLETED",
        Failed => "FAILED",
    }
);

wire_state!(
    /// The lifecycle of a data repository association.
    AssociationLifecycle {
        Creating => "CREATING",
        Available => "AVAILABLE",
        Misconfigured => "MISCONFIGURED",
        Updating => "UPDATING",
        Deleting => "DELETING",
        Failed => "FAILED",
    }
);

impl AssociationLifecycle {
    /// FSx is still working on it: the poller keeps describing it.
    pub fn is_in_flight(&self) -> bool {
        matches!(self, Self::Creating | Self::Updating)
    }
}

/// A Lustre file system as described by FSx: what the driver reads of `FileSystem`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileSystem {
    pub id: String,
    pub lifecycle: Lifecycle,
    /// `FailureDetails.Message`, for FAILED (and sometimes MISCONFIGURED) file systems.
    pub failure_message: Option<String>,
    pub capacity_gib: i64,
    pub storage_type: Option<StorageType>,
    pub subnet_ids: Vec<String>,
    pub dns_name: String,
    pub mount_name: String,
    pub kms_key_id: Option<String>,
    /// `LustreConfiguration` (and `FileSystemTypeVersion`), as described.
    pub lustre: LustreSettings,
    pub tags: Vec<(String, String)>,
    /// `AdministrativeActions` of type FILE_SYSTEM_UPDATE (storage capacity changes).
    pub updates: Vec<Update>,
    /// `CreationTime`: when FSx accepted the CreateFileSystem call.
    pub created_at: Option<std::time::SystemTime>,
}

/// A FILE_SYSTEM_UPDATE administrative action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub status: UpdateStatus,
    /// `TargetFileSystemValues.StorageCapacity`, when the update changes capacity.
    pub target_capacity_gib: Option<i64>,
    /// The Lustre settings the update changes, when it changes settings (ModifyVolume).
    pub target: LustreSettings,
    pub failure_message: Option<String>,
    /// `ProgressPercent`, when FSx gives one.
    pub progress_percent: Option<i32>,
}

impl Update {
    /// FSx is still working on it and will refuse another update.
    pub fn is_running(&self) -> bool {
        matches!(self.status, UpdateStatus::Pending | UpdateStatus::InProgress)
    }

    /// The new capacity is in effect (optimization may continue in the background).
    pub fn is_done(&self) -> bool {
        matches!(self.status, UpdateStatus::UpdatedOptimizing | UpdateStatus::Completed | UpdateStatus::Optimizing)
    }
}

wire_state!(
    /// The lifecycle of a backup (`Backup.Lifecycle`).
    BackupLifecycle {
        Available => "AVAILABLE",
        Creating => "CREATING",
        Transferring => "TRANSFERRING",
        Deleted => "DELETED",
        Failed => "FAILED",
        Pending => "PENDING",
        Copying => "COPYING",
    }
);

impl BackupLifecycle {
    /// FSx is still taking (or copying) it: the poller keeps describing it.
    pub fn is_in_flight(&self) -> bool {
        matches!(self, Self::Creating | Self::Transferring | Self::Pending | Self::Copying)
    }
}

/// Tag keys under this prefix are the driver's own records on a file system; no StorageClass
/// or flag may set them, and they are not copied to associations.
pub const DRIVER_TAG_PREFIX: &str = "fsx.csi.aws.com/";

/// Tag key that records, at creation, that DeleteVolume takes a final backup
/// (`finalBackupOnDelete`): DeleteVolume gets only the volume id.
pub const FINAL_BACKUP_TAG: &str = "fsx.csi.aws.com/final-backup";

/// Prefix of the tags that carry the final backup's tags (`finalBackupTags`) until deletion:
/// `<prefix><key>` = value.
pub const FINAL_BACKUP_TAG_PREFIX: &str = "fsx.csi.aws.com/final-backup-tag/";

/// Tag key that names the CSI snapshot a backup was made for.
pub const SNAPSHOT_NAME_TAG: &str = "CSISnapshotName";

/// Tag key that names the backup (CSI snapshot) a file system was restored from: a volume's
/// content source, so a retried restore is told from a different request for the same name.
pub const SOURCE_SNAPSHOT_TAG: &str = "CSIVolumeSourceSnapshot";

/// A user-initiated backup of a Lustre file system (a CSI snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub id: String,
    pub lifecycle: BackupLifecycle,
    pub failure_message: Option<String>,
    /// The backed-up file system as it was when the backup was taken (FSx keeps this after
    /// the file system is deleted): its id, deployment type, capacity and settings.
    pub file_system: FileSystem,
    pub created_at: Option<std::time::SystemTime>,
    pub tags: Vec<(String, String)>,
    /// `ProgressPercent`, when FSx gives one.
    pub progress_percent: Option<i32>,
}

impl Backup {
    /// The CSI snapshot name this backup was made for, if this driver made it.
    pub fn snapshot_name(&self) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == SNAPSHOT_NAME_TAG).map(|(_, v)| v.as_str())
    }
}

/// What `CreateBackup` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSpec {
    /// Idempotency token: the same token for the same file system returns the same backup.
    pub client_request_token: String,
    pub file_system_id: String,
    pub tags: Vec<(String, String)>,
}

/// A data repository association (S3 link of a PERSISTENT_2 file system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub id: String,
    pub file_system_id: String,
    pub lifecycle: AssociationLifecycle,
    pub file_system_path: String,
    pub data_repository_path: String,
    pub failure_message: Option<String>,
}

/// What `CreateDataRepositoryAssociation` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationSpec {
    pub client_request_token: String,
    pub file_system_id: String,
    pub file_system_path: String,
    pub data_repository_path: String,
    pub batch_import_metadata_on_create: bool,
    pub imported_file_chunk_size: Option<i32>,
    /// S3 event types imported automatically; empty for none.
    pub auto_import_events: Vec<EventType>,
    /// S3 event types exported automatically; empty for none.
    pub auto_export_events: Vec<EventType>,
    pub tags: Vec<(String, String)>,
}

impl FileSystem {
    /// The value of a tag, if present.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The CSI volume name this file system was created for, if this driver (or the Go
    /// driver) created it.
    pub fn volume_name(&self) -> Option<&str> {
        self.tag(VOLUME_NAME_TAG)
    }

    /// The final backup DeleteVolume takes, if the StorageClass asked for one: its tags.
    pub fn final_backup(&self) -> Option<Vec<(String, String)>> {
        (self.tag(FINAL_BACKUP_TAG) == Some("true")).then(|| {
            self.tags
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(FINAL_BACKUP_TAG_PREFIX)?.to_string(), v.clone())))
                .collect()
        })
    }

    /// The backup this file system was restored from, if this driver restored it.
    pub fn source_snapshot(&self) -> Option<&str> {
        self.tag(SOURCE_SNAPSHOT_TAG)
    }

    /// Capacity in bytes, as CSI reports it.
    pub fn capacity_bytes(&self) -> i64 {
        self.capacity_gib.saturating_mul(GIB)
    }
}

/// One GiB in bytes.
pub const GIB: i64 = 1 << 30;

/// Everything `CreateFileSystem` needs for one Lustre file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSpec {
    /// Idempotency token: same token and same spec → the same file system.
    pub client_request_token: String,
    pub capacity_gib: i32,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub storage_type: Option<StorageType>,
    pub kms_key_id: Option<String>,
    pub lustre: LustreSettings,
}

/// What can go wrong at the FSx boundary, in the few kinds the driver acts on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FsxError {
    /// The file system does not exist (`FileSystemNotFound`).
    #[error("file system not found: {0}")]
    NotFound(String),
    /// FSx refused the request as malformed or not allowed (`BadRequest`,
    /// `InvalidNetworkSettings`, `InvalidImportPath`, ...). Retrying will not help.
    #[error("FSx refused the request ({code}): {message}")]
    Invalid { code: String, message: String },
    /// The same idempotency token was used with other parameters, or the request conflicts
    /// with the file system's state (`IncompatibleParameterError`).
    #[error("FSx reports incompatible parameters: {0}")]
    Incompatible(String),
    /// The credentials in use may not call `operation` (`AccessDeniedException`, or refused
    /// credentials). Retrying will not help until the IAM policy changes.
    #[error(
        "the IAM identity in use ({identity}) may not call fsx:{operation} ({message}); allow fsx:{operation} in its policy (deploy/iam-policy.json lists what the driver needs)"
    )]
    AccessDenied { operation: String, identity: String, message: String },
    /// An account quota is exhausted (`ServiceLimitExceeded`).
    #[error("FSx service limit exceeded: {0}")]
    LimitExceeded(String),
    /// A backup is still being taken, restored or copied (`BackupInProgress`,
    /// `BackupRestoring`, `BackupBeingCopied`): the same call succeeds once it is done.
    #[error("FSx is busy with the backup: {0}")]
    BackupBusy(String),
    /// Throttling, 5xx, time-outs or network errors that outlived the SDK's retries; the
    /// SDK's error, when there is one, is the source.
    #[error("FSx is unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    /// Anything else, with FSx's code and message (and the SDK's error as the source when the
    /// request never reached FSx).
    #[error("FSx error ({code}): {message}")]
    Other {
        code: String,
        message: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl FsxError {
    /// [`FsxError::Unavailable`] without an underlying error (throttling, a 5xx).
    pub fn unavailable(message: impl Into<String>) -> Self {
        FsxError::Unavailable { message: message.into(), cause: None }
    }

    /// [`FsxError::Other`] without an underlying error.
    pub fn other(code: impl Into<String>, message: impl Into<String>) -> Self {
        FsxError::Other { code: code.into(), message: message.into(), cause: None }
    }
}

/// The FSx operations the controller uses. Every method is one API call (plus the SDK's
/// retries); none waits for a lifecycle change.
#[async_trait]
pub trait Fsx: Send + Sync + 'static {
    /// `CreateFileSystem`. Idempotent through `spec.client_request_token`: the same token with
    /// the same spec returns the same file system (even a FAILED or deleted one, within
    /// FSx's window); with another spec it returns [`FsxError::Incompatible`].
    async fn create_file_system(&self, spec: &CreateSpec) -> Result<FileSystem, FsxError>;

    /// `DescribeFileSystems` for up to [`DESCRIBE_BATCH`] ids. Fails with
    /// [`FsxError::NotFound`] if any id does not exist. Read-only.
    async fn describe_file_systems(&self, ids: &[String]) -> Result<Vec<FileSystem>, FsxError>;

    /// Every Lustre file system of the account: `DescribeFileSystems` without ids, one call
    /// per page. Read-only.
    async fn list_file_systems(&self) -> Result<Vec<FileSystem>, FsxError>;

    /// `DeleteFileSystem`: with no final backup when `final_backup` is `None`, else with a
    /// final backup carrying those tags (`FinalBackupTags`; none: FSx's defaults). Returns the
    /// lifecycle FSx reports (normally DELETING). Deleting a file system that is already
    /// DELETING succeeds; one that is gone gives [`FsxError::NotFound`].
    async fn delete_file_system(
        &self,
        id: &str,
        final_backup: Option<&[(String, String)]>,
    ) -> Result<Lifecycle, FsxError>;

    /// `UpdateFileSystem` with a new `StorageCapacity`. Not idempotent by itself (callers
    /// check `FileSystem::updates` first); FSx refuses it (`Invalid`) while another update is
    /// running and for SCRATCH_1.
    async fn update_storage_capacity(&self, id: &str, capacity_gib: i32) -> Result<FileSystem, FsxError>;

    /// `CreateDataRepositoryAssociation`. Idempotent through `spec.client_request_token`.
    async fn create_data_repository_association(&self, spec: &AssociationSpec) -> Result<Association, FsxError>;

    /// `DescribeDataRepositoryAssociations` for up to 50 association ids.
    async fn describe_data_repository_associations(&self, ids: &[String]) -> Result<Vec<Association>, FsxError>;

    /// Every data repository association of one file system (filter `file-system-id`).
    async fn associations_of(&self, file_system_id: &str) -> Result<Vec<Association>, FsxError>;

    /// `CreateBackup` of a Lustre file system. Idempotent through `spec.client_request_token`.
    /// FSx refuses scratch file systems and file systems linked to S3 the legacy way
    /// (`Invalid`), and a second backup while one is being taken (`Unavailable`).
    async fn create_backup(&self, spec: &BackupSpec) -> Result<Backup, FsxError>;

    /// `DescribeBackups` for up to 50 backup ids; [`FsxError::NotFound`] if any is unknown.
    async fn describe_backups(&self, ids: &[String]) -> Result<Vec<Backup>, FsxError>;

    /// Every user-initiated Lustre backup of the account, one call per page. Read-only.
    async fn list_backups(&self) -> Result<Vec<Backup>, FsxError>;

    /// `DeleteBackup`. [`FsxError::NotFound`] if the backup is gone.
    async fn delete_backup(&self, id: &str) -> Result<BackupLifecycle, FsxError>;

    /// `CreateFileSystemFromBackup`: a new file system with the backup's data, deployment
    /// type and size. Idempotent through `spec.client_request_token` like
    /// [`Fsx::create_file_system`]; `spec.capacity_gib` is not sent (a restore has the
    /// backup's size).
    async fn create_file_system_from_backup(&self, backup_id: &str, spec: &CreateSpec) -> Result<FileSystem, FsxError>;

    /// `UpdateFileSystem` of Lustre settings: the ones `update` sets, all of them mutable
    /// ([`LustreSettings::immutable_field`] is `None`). Not idempotent by itself (callers
    /// check `FileSystem::updates` first); FSx refuses it (`Invalid`) while another update
    /// runs and for settings the deployment type does not have.
    async fn update_lustre(&self, id: &str, update: &LustreSettings) -> Result<FileSystem, FsxError>;
}

/// True if `id` has the shape of a backup id: `backup-` and 8 to 17 lowercase hex digits.
pub fn is_backup_id(id: &str) -> bool {
    id.len() <= 24
        && id
            .strip_prefix("backup-")
            .is_some_and(|hex| hex.len() >= 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// True if `id` has the shape of a file system id: `fs-` and 8 to 18 lowercase hex digits.
pub fn is_file_system_id(id: &str) -> bool {
    id.len() <= 21
        && id
            .strip_prefix("fs-")
            .is_some_and(|hex| hex.len() >= 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_system_ids() {
        assert!(is_file_system_id("fs-0123456789abcdef0"));
        assert!(is_file_system_id("fs-01234567"));
        assert!(!is_file_system_id("fs-0123456"));
        assert!(!is_file_system_id("fs-0123456789ABCDEF0"));
        assert!(!is_file_system_id("fs-0123456789abcdef012"));
        assert!(!is_file_system_id("vol-01234567"));
        assert!(!is_file_system_id(""));
    }

    #[test]
    fn the_final_backup_records_are_driver_tags() {
        assert!(FINAL_BACKUP_TAG.starts_with(DRIVER_TAG_PREFIX));
        assert!(FINAL_BACKUP_TAG_PREFIX.starts_with(DRIVER_TAG_PREFIX));
        // The marker is not read as a final backup tag itself.
        let fs = FileSystem { tags: vec![(FINAL_BACKUP_TAG.into(), "true".into())], ..Default::default() };
        assert_eq!(fs.final_backup(), Some(Vec::new()));
    }

    #[test]
    fn enums_round_trip() {
        for s in DeploymentType::ALL {
            assert_eq!(s.parse::<DeploymentType>().unwrap().as_str(), *s);
        }
        assert!("scratch_1".parse::<DeploymentType>().is_err());
        assert_eq!(Lifecycle::from_wire("NEW_STATE"), Lifecycle::Other("NEW_STATE".into()));
    }
}
