//! Why a provisioning call did not succeed: [`ProvisionError`], with a typed reason for every
//! refusal and the FSx error kept as the source where FSx answered. The messages are what
//! users read in `kubectl describe`; the gRPC code for each is chosen in `csi::controller`.

use super::capacity::CapacityError;
use super::params::{NameError, ParamError};
use crate::fsx::{DeploymentType, FsxError, Lifecycle};

/// Why a provisioning call did not succeed. The gRPC code for each is chosen in
/// `csi::controller`.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Parameter(#[from] ParamError),
    /// No subnet of the StorageClass can take the file system where it is asked for.
    #[error(transparent)]
    Placement(#[from] crate::topology::PlacementError),
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    #[error("volume {} already exists as {id} with other parameters: {reason}", crate::text::Shown(name))]
    AlreadyExists { name: String, id: String, reason: String },
    #[error("an operation on {} is already in progress; retry later", crate::text::Shown(.0))]
    Busy(String),
    #[error("file system {id} is still {pending}; the call will complete on a retry")]
    StillPending { id: String, pending: Pending },
    #[error("file system {id} failed to create and was deleted ({message}); a retry creates a new one")]
    CreationFailed { id: String, message: String },
    #[error("file system {id} is {lifecycle}, not usable: {message}")]
    NotUsable { id: String, lifecycle: String, message: String },
    #[error("file system {0} disappeared while waiting for it; a retry creates a new one")]
    Vanished(String),
    /// The id comes from a request: shown escaped and cut, like every outside value.
    #[error("file system {} not found", crate::text::Shown(.0))]
    NotFound(String),
    #[error(transparent)]
    CannotExpand(#[from] CannotExpand),
    #[error("another capacity update of {id} (to {target_gib} GiB) is in progress; retry when it completes")]
    UpdateInProgress { id: String, target_gib: i64 },
    #[error("growing {id} to {target_gib} GiB failed: {message}")]
    UpdateFailed { id: String, target_gib: i64, message: String },
    #[error(
        "data repository association {association} of {id} is still {lifecycle}; the call will complete on a retry"
    )]
    AssociationPending { id: String, association: String, lifecycle: String },
    #[error("linking {id} to S3 failed and the file system was deleted ({message}); a retry creates a new one")]
    AssociationFailed { id: String, message: String },
    #[error(
        "the controller is still loading its index of {listing} from FSx{}; retry shortly",
        .cause.as_ref().map(|e| format!(" (the last attempt failed: {})", crate::error::Chain(e))).unwrap_or_default()
    )]
    NotReady { listing: &'static str, cause: Option<FsxError> },
    #[error(
        "FSx did not answer {0} before the caller's deadline (throttled or slow); the call will complete on a retry"
    )]
    FsxSlow(&'static str),
    /// The source volume cannot be backed up (scratch, or linked to S3 the legacy way).
    #[error(transparent)]
    CannotSnapshot(#[from] CannotSnapshot),
    #[error("backup {id} failed ({message}) and was deleted; a retry takes a new one")]
    SnapshotFailed { id: String, message: String },
    #[error("snapshot {} not found", crate::text::Shown(.0))]
    SnapshotNotFound(String),
    #[error(
        "backup {0} is still being taken, and FSx deletes it only once it is done; the call will complete on a retry"
    )]
    BackupPending(String),
    #[error("snapshot {id} is {lifecycle}, not yet AVAILABLE to restore from; retry when it is ready")]
    SnapshotNotReady { id: String, lifecycle: String },
    /// A restore that cannot be made as asked (a key that must be the backup's, the size).
    #[error(transparent)]
    CannotRestore(#[from] CannotRestore),
    #[error("another update of {id} is in progress ({running}); retry when it completes")]
    ModifyInProgress { id: String, running: String },
    #[error("changing the settings of {id} failed: {message}")]
    ModifyFailed { id: String, message: String },
    #[error(transparent)]
    Fsx(#[from] FsxError),
}

/// What a file system is still doing when a call must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Its lifecycle (CREATING, or DELETING for a name whose token keeps answering with a
    /// deleted file system).
    Lifecycle(Lifecycle),
    /// A storage capacity update towards this size.
    Growing { target_gib: i64 },
    /// A settings update (ControllerModifyVolume).
    Modifying,
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::Lifecycle(l) => write!(f, "{l}"),
            Pending::Growing { target_gib } => write!(f, "growing to {target_gib} GiB"),
            Pending::Modifying => f.write_str("changing its settings"),
        }
    }
}

/// Why a volume cannot grow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CannotExpand {
    #[error("{id} reports no Lustre deployment type")]
    NotLustre { id: String },
    #[error(
        "{id} is a SCRATCH_1 file system, which cannot grow: use SCRATCH_2, PERSISTENT_1 or PERSISTENT_2 for volumes that need to grow"
    )]
    Scratch1 { id: String },
}

/// Why a volume cannot be backed up: FSx backs up persistent file systems that are not linked
/// to S3 the legacy way (PERSISTENT_2 associations are fine).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CannotSnapshot {
    #[error(
        "volume {id} is a {deployment} file system, which FSx cannot back up: snapshots need deploymentType PERSISTENT_1 or PERSISTENT_2"
    )]
    Scratch { id: String, deployment: DeploymentType },
    #[error("volume {id} reports no Lustre deployment type; FSx backs up Lustre file systems only")]
    NotLustre { id: String },
    #[error(
        "volume {id} is a {deployment} file system linked to S3 with s3ImportPath, which FSx cannot back up: use PERSISTENT_2, whose S3 link (an association) allows backups, or a volume without s3ImportPath"
    )]
    LegacyS3 { id: String, deployment: DeploymentType },
}

/// Why a volume cannot be restored from a snapshot as asked: a restore has the backup's
/// deployment type, storage type, throughput and size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CannotRestore {
    #[error(
        "StorageClass parameter {key} is {want}, but snapshot {snapshot} is a backup of a {have} file system: a restore keeps the backup's {key}; use a StorageClass with {key}: {have}"
    )]
    Differs { key: &'static str, want: String, have: String, snapshot: String },
    #[error(
        "the requested {requested_gib} GiB is more than snapshot {snapshot}'s {have_gib} GiB, and a restore has the backup's size: request at most {have_gib}Gi, then expand the claim"
    )]
    Larger { snapshot: String, requested_gib: i64, have_gib: i64 },
    #[error(
        "snapshot {snapshot} is {have_gib} GiB, above the limit of {limit_gib} GiB, and a restore has the backup's size"
    )]
    AboveLimit { snapshot: String, have_gib: i64, limit_gib: i64 },
}
