//! The CSI Controller service: CreateVolume (new, or restored from a snapshot), DeleteVolume,
//! ControllerExpandVolume, ControllerModifyVolume, ControllerGetVolume, ListVolumes,
//! ValidateVolumeCapabilities, and snapshots as FSx backups (CreateSnapshot, DeleteSnapshot,
//! ListSnapshots), on top of [`Provisioner`].
//!
//! Every error's gRPC code is chosen in [`failure`] below, per RPC family, and nowhere else:
//! handlers return a [`ControllerError`]. The same error can mean different things to
//! different RPCs: FSx's `IncompatibleParameterError` is `AlreadyExists` for CreateVolume (the
//! name exists with other parameters) but `FailedPrecondition` for DeleteVolume and
//! ControllerExpandVolume (the file system's state refuses the change), where the CSI spec
//! does not list `AlreadyExists`. Retryable outcomes (in progress, throttled) get codes the
//! external-provisioner retries without giving up (`Aborted`, `DeadlineExceeded`,
//! `Unavailable`, `ResourceExhausted`); a creation that FAILED and was cleaned up is final
//! (`Internal`), so a deleted PVC is not provisioned again in the background.

use crate::events::{self, Claim};
use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::info_span;

use super::{Failure, check_capabilities, context, deadline, observe};
use crate::fsx::{Backup, BackupLifecycle, FileSystem, FsxError, Lifecycle, is_backup_id, is_file_system_id};
use crate::proto::controller_server::Controller;
use crate::proto::controller_service_capability::{Rpc, Type as CapType, rpc};
use crate::proto::*;
use crate::provision::capacity::CapacityError;
use crate::provision::params::MutableParams;
use crate::provision::{CreateRequest, ProvisionError, Provisioner, SnapshotRequest};
use crate::subdir::id::SubdirId;
use crate::subdir::params::Mode as ProvisioningMode;
use crate::subdir::service::{SubdirError, SubdirRequest, SubdirVolume, Subdirs};
use crate::text::{Field, Shown};
use crate::topology::{PlacementError, Requirement, SubnetError, ZONE_KEY};

/// The controller service.
pub struct ControllerService {
    provisioner: Arc<Provisioner>,
    /// Subdirectory volumes, when enabled (`--subdirectory-mount-dir`).
    subdirs: Option<Arc<Subdirs>>,
}

impl ControllerService {
    /// A controller over `provisioner`.
    pub fn new(provisioner: Arc<Provisioner>) -> Self {
        Self { provisioner, subdirs: None }
    }

    /// Also serves subdirectory volumes (`provisioningMode: subdirectory`).
    pub fn with_subdirs(mut self, subdirs: Arc<Subdirs>) -> Self {
        self.subdirs = Some(subdirs);
        self
    }

    fn subdirs(&self) -> Result<&Subdirs, ControllerError> {
        self.subdirs.as_deref().ok_or(ControllerError::Subdir(SubdirError::NotEnabled))
    }
}

/// Why a controller call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A request field is missing or malformed.
    #[error("{0}")]
    Invalid(String),
    /// A listing token this driver did not hand out, or whose entry is gone.
    #[error("starting_token {} was not returned by {call} (or its entry is gone): restart the listing", Shown(.token))]
    UnknownToken { call: &'static str, token: String },
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Subdir(#[from] SubdirError),
}

impl From<FsxError> for ControllerError {
    fn from(e: FsxError) -> Self {
        ControllerError::Provision(e.into())
    }
}

/// The RPC families whose codes differ for the same error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// CreateVolume.
    Create,
    /// DeleteVolume.
    Delete,
    /// ControllerExpandVolume.
    Expand,
    /// ControllerModifyVolume.
    Modify,
    /// CreateSnapshot and DeleteSnapshot.
    Snapshot,
    /// ControllerGetVolume, ValidateVolumeCapabilities, ListVolumes.
    Read,
}

fn invalid(message: impl Into<String>) -> ControllerError {
    ControllerError::Invalid(message.into())
}

/// The status (and log level) of a failed call of `family`: the one place codes are chosen.
pub fn failure(e: ControllerError, family: Family) -> Failure {
    use tonic::Code;
    let message = crate::error::Chain(&e).to_string();
    let code = match &e {
        ControllerError::Invalid(_) => Code::InvalidArgument,
        ControllerError::UnknownToken { .. } => Code::Aborted,
        ControllerError::Subdir(d) => match d {
            SubdirError::Parameter(_) | SubdirError::Invalid(_) => Code::InvalidArgument,
            SubdirError::FileSystem(_) | SubdirError::NotEnabled => Code::FailedPrecondition,
            SubdirError::AlreadyExists { .. } => Code::AlreadyExists,
            SubdirError::Busy(_) => Code::Aborted,
            SubdirError::NotFound(_) => Code::NotFound,
            SubdirError::Slow { .. } => Code::DeadlineExceeded,
            SubdirError::Io { .. } => Code::Internal,
            SubdirError::Fsx(fsx) => match fsx {
                FsxError::NotFound(_) => Code::NotFound,
                FsxError::AccessDenied { .. } => Code::PermissionDenied,
                FsxError::LimitExceeded(_) => Code::ResourceExhausted,
                FsxError::Unavailable { .. } | FsxError::BackupBusy(_) => Code::Unavailable,
                FsxError::Invalid { .. } | FsxError::Incompatible(_) | FsxError::Other { .. } => Code::Internal,
            },
        },
        ControllerError::Provision(p) => match p {
            ProvisionError::Parameter(_) | ProvisionError::InvalidName(_) => Code::InvalidArgument,
            // ResourceExhausted is the CSI answer for "not in this topology": with
            // WaitForFirstConsumer the external-provisioner then lets the scheduler choose again.
            ProvisionError::Placement(PlacementError::NoSubnetInZone { .. }) => Code::ResourceExhausted,
            ProvisionError::Placement(PlacementError::Invalid(_)) => Code::InvalidArgument,
            ProvisionError::Placement(PlacementError::Subnets(s)) => match s {
                SubnetError::NotFound { .. } => Code::InvalidArgument,
                SubnetError::AccessDenied(_) => Code::PermissionDenied,
                SubnetError::Unavailable(_) => Code::Unavailable,
            },
            ProvisionError::Capacity(CapacityError::Invalid(_)) => Code::InvalidArgument,
            ProvisionError::Capacity(CapacityError::OutOfRange { .. }) => Code::OutOfRange,
            ProvisionError::AlreadyExists { .. } => Code::AlreadyExists,
            ProvisionError::Busy(_) => Code::Aborted,
            ProvisionError::StillPending { .. } => Code::DeadlineExceeded,
            ProvisionError::CreationFailed { .. } => Code::Internal,
            ProvisionError::NotUsable { .. } => Code::Unavailable,
            ProvisionError::Vanished(_) => Code::Aborted,
            ProvisionError::NotFound(_) => Code::NotFound,
            ProvisionError::NotReady { .. } => Code::Unavailable,
            ProvisionError::FsxSlow(_) => Code::DeadlineExceeded,
            ProvisionError::CannotExpand(_) => Code::InvalidArgument,
            ProvisionError::UpdateInProgress { .. } => Code::Aborted,
            ProvisionError::UpdateFailed { .. } => Code::Internal,
            ProvisionError::AssociationPending { .. } => Code::DeadlineExceeded,
            ProvisionError::AssociationFailed { .. } => Code::Internal,
            ProvisionError::CannotSnapshot(_) => Code::FailedPrecondition,
            ProvisionError::SnapshotFailed { .. } => Code::Internal,
            ProvisionError::SnapshotNotFound(_) => Code::NotFound,
            ProvisionError::BackupPending(_) => Code::DeadlineExceeded,
            ProvisionError::SnapshotNotReady { .. } => Code::Unavailable,
            ProvisionError::CannotRestore(_) => Code::InvalidArgument,
            ProvisionError::ModifyInProgress { .. } => Code::Aborted,
            ProvisionError::ModifyFailed { .. } => Code::Internal,
            ProvisionError::Fsx(fsx) => match (fsx, family) {
                (FsxError::NotFound(_), _) => Code::NotFound,
                (FsxError::Invalid { .. }, Family::Create | Family::Expand | Family::Modify) => Code::InvalidArgument,
                (FsxError::Invalid { .. }, Family::Delete | Family::Read | Family::Snapshot) => {
                    Code::FailedPrecondition
                }
                (FsxError::Incompatible(_), Family::Create | Family::Snapshot) => Code::AlreadyExists,
                (FsxError::Incompatible(_), Family::Delete | Family::Expand | Family::Modify) => {
                    Code::FailedPrecondition
                }
                (FsxError::Incompatible(_), Family::Read) => Code::Internal,
                (FsxError::AccessDenied { .. }, _) => Code::PermissionDenied,
                (FsxError::LimitExceeded(_), _) => Code::ResourceExhausted,
                (FsxError::Unavailable { .. } | FsxError::BackupBusy(_), _) => Code::Unavailable,
                (FsxError::Other { .. }, _) => Code::Internal,
            },
        },
    };
    let status = Status::new(code, message);
    // The index loads at start-up: the external-provisioner's first calls meet it, and retry.
    // That is not an error anyone should be paged for.
    match e {
        ControllerError::Provision(ProvisionError::NotReady { .. }) => Failure::at(status, tracing::Level::INFO),
        _ => status.into(),
    }
}

/// The zones of a CreateVolume's `accessibility_requirements` (other keys are not this
/// driver's: ignored).
pub fn requirement(req: Option<&TopologyRequirement>) -> Requirement {
    let zones = |t: &[Topology]| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for z in t.iter().filter_map(|t| t.segments.get(ZONE_KEY)) {
            if !out.contains(z) {
                out.push(z.clone());
            }
        }
        out
    };
    req.map_or_else(Requirement::default, |r| Requirement {
        requisite: zones(&r.requisite),
        preferred: zones(&r.preferred),
    })
}

/// The topology of a zone.
pub fn zone_topology(zone: String) -> Topology {
    Topology { segments: HashMap::from([(ZONE_KEY.to_string(), zone)]) }
}

/// The CSI volume for a file system.
pub fn volume(fs: &FileSystem) -> Volume {
    let mut volume_context = HashMap::from([
        (context::DNS_NAME.to_string(), fs.dns_name.clone()),
        (context::MOUNT_NAME.to_string(), fs.mount_name.clone()),
    ]);
    if fs.lustre.efa_enabled == Some(true) {
        volume_context.insert(context::EFA_ENABLED.to_string(), "true".to_string());
    }
    Volume {
        capacity_bytes: fs.capacity_bytes(),
        volume_id: fs.id.clone(),
        volume_context,
        content_source: None,
        accessible_topology: Vec::new(),
    }
}

/// How long a read of a subdirectory volume's record may take (the read calls carry no
/// deadline of their own here).
const GET_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The CSI volume for a subdirectory volume: the file system's names and the directory, so
/// the node publishes it as it publishes a static subdirectory PV.
pub fn subdir_volume(v: &SubdirVolume) -> Volume {
    Volume {
        capacity_bytes: v.capacity_bytes,
        volume_id: v.id.to_string(),
        volume_context: HashMap::from([
            (context::DNS_NAME.to_string(), v.dns_name.clone()),
            (context::MOUNT_NAME.to_string(), v.mount_name.clone()),
            (context::SUBDIRECTORY.to_string(), format!("/{}", v.path)),
        ]),
        content_source: None,
        accessible_topology: Vec::new(),
    }
}

/// The CSI snapshot for a backup: ready once AVAILABLE, the size of the backed-up file
/// system.
pub fn snapshot(backup: &Backup) -> Snapshot {
    let creation_time = backup
        .created_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 });
    Snapshot {
        size_bytes: backup.file_system.capacity_bytes(),
        snapshot_id: backup.id.clone(),
        source_volume_id: backup.file_system.id.clone(),
        creation_time,
        ready_to_use: backup.lifecycle == BackupLifecycle::Available,
        group_snapshot_id: String::new(),
    }
}

/// The volume condition for a file system: abnormal unless AVAILABLE (or UPDATING, which
/// stays mountable), with FSx's message.
pub fn condition(fs: &FileSystem) -> VolumeCondition {
    let abnormal = !fs.lifecycle.is_usable();
    let message = match (&fs.lifecycle, &fs.failure_message) {
        (Lifecycle::Available, _) => "file system is AVAILABLE".to_string(),
        (l, Some(m)) => format!("file system is {l}: {m}"),
        (l, None) => format!("file system is {l}"),
    };
    VolumeCondition { abnormal, message }
}

fn caps(types: &[rpc::Type]) -> Vec<ControllerServiceCapability> {
    types
        .iter()
        .map(|t| ControllerServiceCapability { r#type: Some(CapType::Rpc(Rpc { r#type: *t as i32 })) })
        .collect()
}

impl ControllerService {
    async fn create(
        &self,
        req: CreateVolumeRequest,
        deadline: Instant,
    ) -> Result<CreateVolumeResponse, ControllerError> {
        check_capabilities(&req.volume_capabilities).map_err(invalid)?;
        if crate::subdir::params::mode(&req.parameters).map_err(ProvisionError::Parameter)?
            == ProvisioningMode::Subdirectory
        {
            return self.create_subdir(req, deadline).await;
        }
        use volume_content_source::Type as Source;
        let source_snapshot = match req.volume_content_source.as_ref().and_then(|s| s.r#type.as_ref()) {
            None => None,
            Some(Source::Snapshot(s)) if s.snapshot_id.is_empty() => {
                return Err(invalid("volume_content_source.snapshot.snapshot_id is required"));
            }
            Some(Source::Snapshot(s)) => Some(s.snapshot_id.as_str()),
            Some(Source::Volume(_)) => {
                return Err(invalid(
                    "cloning a volume is not supported: FSx has no clone; take a VolumeSnapshot of it and restore a new claim from that snapshot",
                ));
            }
        };
        // A VolumeAttributesClass's values override the StorageClass's, and must be keys FSx
        // can change later.
        let mut parameters = req.parameters.clone();
        if !req.mutable_parameters.is_empty() {
            MutableParams::parse(&req.mutable_parameters).map_err(ProvisionError::Parameter)?;
            parameters.extend(req.mutable_parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let range = req.capacity_range.unwrap_or_default();
        let topology = requirement(req.accessibility_requirements.as_ref());
        let claim = Claim::from_parameters(&req.parameters, events::PVC_NAME, events::PVC_NAMESPACE);
        let request = CreateRequest {
            name: &req.name,
            required_bytes: range.required_bytes,
            limit_bytes: range.limit_bytes,
            parameters: &parameters,
            source_snapshot,
            topology: Some(&topology),
            claim: claim.as_ref(),
        };
        let fs = self.provisioner.create(request, deadline).await?;
        let zone = self.provisioner.zone_of(&parameters, &fs).await;
        tracing::info!(volume.id = %fs.id, capacity_gib = fs.capacity_gib, subnet = fs.subnet_ids.first().map_or("", String::as_str), zone = zone.as_deref().unwrap_or(""), "volume ready");
        let mut volume = volume(&fs);
        if let Some(zone) = zone {
            volume.accessible_topology = vec![zone_topology(zone)];
        }
        if fs.storage_type.is_some_and(|s| s.is_elastic()) {
            // Intelligent-Tiering grows with its data: the volume is the size asked for.
            volume.capacity_bytes = range.required_bytes.max(0);
        }
        volume.content_source = req.volume_content_source;
        Ok(CreateVolumeResponse { volume: Some(volume) })
    }

    /// CreateVolume of a subdirectory class: a directory on an existing file system.
    async fn create_subdir(
        &self,
        req: CreateVolumeRequest,
        deadline: Instant,
    ) -> Result<CreateVolumeResponse, ControllerError> {
        if req.volume_content_source.is_some() {
            return Err(invalid(
                "a subdirectory volume cannot be restored from a snapshot or cloned: snapshots are backups of whole file systems; restore the snapshot into a claim of a fileSystem StorageClass",
            ));
        }
        if !req.mutable_parameters.is_empty() {
            return Err(invalid(
                "a subdirectory volume has no settings of its own for a VolumeAttributesClass: modify a claim of the whole file system instead",
            ));
        }
        crate::provision::params::check_volume_name(&req.name).map_err(ProvisionError::InvalidName)?;
        let range = req.capacity_range.unwrap_or_default();
        let request = SubdirRequest {
            name: &req.name,
            required_bytes: range.required_bytes,
            limit_bytes: range.limit_bytes,
            parameters: &req.parameters,
        };
        // The parameters are checked before anything else, enabled or not.
        crate::subdir::params::SubdirParams::parse(&req.parameters).map_err(SubdirError::Parameter)?;
        let v = self.subdirs()?.create(request, deadline).await?;
        Ok(CreateVolumeResponse { volume: Some(subdir_volume(&v)) })
    }

    async fn delete(
        &self,
        req: DeleteVolumeRequest,
        deadline: Instant,
    ) -> Result<DeleteVolumeResponse, ControllerError> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is required"));
        }
        if let Some(id) = SubdirId::parse(&req.volume_id) {
            self.subdirs()?.delete(&id, deadline).await?;
            return Ok(DeleteVolumeResponse {});
        }
        self.provisioner.delete(&req.volume_id, deadline).await?;
        Ok(DeleteVolumeResponse {})
    }

    async fn validate(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse, ControllerError> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is required"));
        }
        if req.volume_capabilities.is_empty() {
            return Err(invalid("volume_capabilities must not be empty"));
        }
        match SubdirId::parse(&req.volume_id) {
            Some(id) => {
                self.subdirs()?.get(&id, Instant::now() + GET_WITHIN).await?;
            }
            None => {
                self.provisioner.get(&req.volume_id).await?;
            }
        }
        Ok(match check_capabilities(&req.volume_capabilities) {
            Ok(()) => ValidateVolumeCapabilitiesResponse {
                confirmed: Some(validate_volume_capabilities_response::Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                    mutable_parameters: req.mutable_parameters,
                }),
                message: String::new(),
            },
            Err(why) => ValidateVolumeCapabilitiesResponse { confirmed: None, message: why },
        })
    }

    fn list(&self, req: ListVolumesRequest) -> Result<ListVolumesResponse, ControllerError> {
        if req.max_entries < 0 {
            return Err(invalid("max_entries must not be negative"));
        }
        // A token is the id of the last volume of the page before: one that names no indexed
        // volume was not issued here (or its volume is gone), and the listing must restart.
        let after = match req.starting_token.as_str() {
            "" => None,
            t if is_file_system_id(t) && self.provisioner.index().by_id(t).is_some() => Some(t),
            t => return Err(ControllerError::UnknownToken { call: "ListVolumes", token: t.to_string() }),
        };
        let max = if req.max_entries == 0 { usize::MAX } else { req.max_entries as usize };
        let (page, more) = self.provisioner.index().page(after, max, |fs| fs.lifecycle != Lifecycle::Deleting);
        let next_token = if more { page.last().map(|fs| fs.id.clone()).unwrap_or_default() } else { String::new() };
        let entries = page
            .iter()
            .map(|fs| list_volumes_response::Entry {
                volume: Some(volume(fs)),
                status: Some(list_volumes_response::VolumeStatus {
                    published_node_ids: Vec::new(),
                    volume_condition: Some(condition(fs)),
                }),
            })
            .collect();
        Ok(ListVolumesResponse { entries, next_token })
    }

    async fn expand(
        &self,
        req: ControllerExpandVolumeRequest,
        deadline: Instant,
    ) -> Result<ControllerExpandVolumeResponse, ControllerError> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is required"));
        }
        let range = req.capacity_range.ok_or_else(|| invalid("capacity_range is required"))?;
        if let Some(cap) = &req.volume_capability {
            check_capabilities(std::slice::from_ref(cap)).map_err(invalid)?;
        }
        if let Some(id) = SubdirId::parse(&req.volume_id) {
            let bytes = self.subdirs()?.expand(&id, range.required_bytes, range.limit_bytes, deadline).await?;
            tracing::info!(capacity_bytes = bytes, "subdirectory volume's quota raised");
            return Ok(ControllerExpandVolumeResponse { capacity_bytes: bytes, node_expansion_required: false });
        }
        let gib = self.provisioner.expand(&req.volume_id, range.required_bytes, range.limit_bytes, deadline).await?;
        tracing::info!(capacity_gib = gib, "volume expanded");
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: gib.saturating_mul(crate::fsx::GIB),
            // Lustre clients see the new size at once: nothing to do on the nodes.
            node_expansion_required: false,
        })
    }

    async fn modify(
        &self,
        req: ControllerModifyVolumeRequest,
        deadline: Instant,
    ) -> Result<ControllerModifyVolumeResponse, ControllerError> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is required"));
        }
        if req.mutable_parameters.is_empty() {
            return Err(invalid("mutable_parameters must not be empty"));
        }
        if SubdirId::parse(&req.volume_id).is_some() {
            return Err(invalid(
                "a subdirectory volume has no settings of its own: modify a claim of the whole file system instead",
            ));
        }
        self.provisioner.modify(&req.volume_id, &req.mutable_parameters, deadline).await?;
        tracing::info!("volume settings in effect");
        Ok(ControllerModifyVolumeResponse {})
    }

    async fn create_snapshot(
        &self,
        req: CreateSnapshotRequest,
        deadline: Instant,
    ) -> Result<CreateSnapshotResponse, ControllerError> {
        if req.name.is_empty() {
            return Err(invalid("name is required"));
        }
        if req.source_volume_id.is_empty() {
            return Err(invalid("source_volume_id is required"));
        }
        if SubdirId::parse(&req.source_volume_id).is_some() {
            return Err(SubdirError::FileSystem(format!(
                "a VolumeSnapshot of subdirectory volume {} is not supported: FSx backs up whole file systems; snapshot a claim of the whole file system ({}) instead",
                req.source_volume_id,
                req.source_volume_id.split('/').next().unwrap_or_default()
            ))
            .into());
        }
        let of = Claim::from_parameters(&req.parameters, events::SNAPSHOT_NAME, events::SNAPSHOT_NAMESPACE);
        let request = SnapshotRequest {
            name: &req.name,
            source_volume_id: &req.source_volume_id,
            parameters: &req.parameters,
            snapshot: of.as_ref(),
        };
        let backup = self.provisioner.snapshot(request, deadline).await?;
        tracing::info!(snapshot.id = %backup.id, lifecycle = %backup.lifecycle, "snapshot answered");
        Ok(CreateSnapshotResponse { snapshot: Some(snapshot(&backup)) })
    }

    async fn delete_snapshot(
        &self,
        req: DeleteSnapshotRequest,
        deadline: Instant,
    ) -> Result<DeleteSnapshotResponse, ControllerError> {
        if req.snapshot_id.is_empty() {
            return Err(invalid("snapshot_id is required"));
        }
        self.provisioner.delete_snapshot(&req.snapshot_id, deadline).await?;
        Ok(DeleteSnapshotResponse {})
    }

    fn list_snapshots(&self, req: ListSnapshotsRequest) -> Result<ListSnapshotsResponse, ControllerError> {
        if req.max_entries < 0 {
            return Err(invalid("max_entries must not be negative"));
        }
        self.provisioner.snapshots_ready()?;
        let snapshots = self.provisioner.backup_index();
        let entry = |b: &Backup| list_snapshots_response::Entry { snapshot: Some(snapshot(b)) };
        // One snapshot by id: it, or nothing (never an error, as the spec asks).
        if !req.snapshot_id.is_empty() {
            let found = is_backup_id(&req.snapshot_id)
                .then(|| snapshots.by_id(&req.snapshot_id))
                .flatten()
                .filter(|b| req.source_volume_id.is_empty() || b.file_system.id == req.source_volume_id);
            return Ok(ListSnapshotsResponse { entries: found.iter().map(entry).collect(), next_token: String::new() });
        }
        let after = match req.starting_token.as_str() {
            "" => None,
            t if is_backup_id(t) && snapshots.by_id(t).is_some() => Some(t),
            t => return Err(ControllerError::UnknownToken { call: "ListSnapshots", token: t.to_string() }),
        };
        let source = (!req.source_volume_id.is_empty()).then_some(req.source_volume_id.as_str());
        let max = if req.max_entries == 0 { usize::MAX } else { req.max_entries as usize };
        let (page, more) = snapshots.page(after, max, |b| source.is_none_or(|s| b.file_system.id == s));
        let next_token = if more { page.last().map(|b| b.id.clone()).unwrap_or_default() } else { String::new() };
        Ok(ListSnapshotsResponse { entries: page.iter().map(entry).collect(), next_token })
    }

    async fn get_volume(
        &self,
        req: ControllerGetVolumeRequest,
    ) -> Result<ControllerGetVolumeResponse, ControllerError> {
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is required"));
        }
        if let Some(id) = SubdirId::parse(&req.volume_id) {
            let v = self.subdirs()?.get(&id, Instant::now() + GET_WITHIN).await?;
            return Ok(ControllerGetVolumeResponse {
                volume: Some(subdir_volume(&v)),
                status: Some(controller_get_volume_response::VolumeStatus {
                    published_node_ids: Vec::new(),
                    volume_condition: Some(VolumeCondition {
                        abnormal: false,
                        message: format!("directory {} on {} is there", Shown(&v.path), v.id.file_system_id),
                    }),
                }),
            });
        }
        let fs = self.provisioner.get(&req.volume_id).await?;
        Ok(ControllerGetVolumeResponse {
            volume: Some(volume(&fs)),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: Vec::new(),
                volume_condition: Some(condition(&fs)),
            }),
        })
    }
}

/// Runs a handler body in its span and turns its error into the family's status.
fn answer<'a, T: 'a>(
    span: tracing::Span,
    family: Family,
    body: impl std::future::Future<Output = Result<T, ControllerError>> + 'a,
) -> impl std::future::Future<Output = Result<Response<T>, Status>> + 'a {
    // `observe` boxes what it is given at once, so the body is allocated once, alone.
    observe(span, async move { body.await.map(Response::new).map_err(|e| failure(e, family)) })
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("CreateVolume", volume.name = %Field(&req.name));
        answer(span, Family::Create, self.create(req, deadline)).await
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("DeleteVolume", volume.id = %Field(&req.volume_id));
        answer(span, Family::Delete, self.delete(req, deadline)).await
    }

    async fn controller_publish_volume(
        &self,
        _: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        Err(Status::unimplemented("FSx volumes need no attach: ControllerPublishVolume is not supported"))
    }

    async fn controller_unpublish_volume(
        &self,
        _: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        Err(Status::unimplemented("FSx volumes need no detach: ControllerUnpublishVolume is not supported"))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("ValidateVolumeCapabilities", volume.id = %Field(&req.volume_id));
        answer(span, Family::Read, self.validate(req)).await
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let span = info_span!("ListVolumes");
        answer(span, Family::Read, async { self.list(request.into_inner()) }).await
    }

    async fn get_capacity(&self, _: Request<GetCapacityRequest>) -> Result<Response<GetCapacityResponse>, Status> {
        Err(Status::unimplemented("GetCapacity is not supported: FSx capacity is not limited per topology"))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: caps(&[
                rpc::Type::CreateDeleteVolume,
                rpc::Type::GetVolume,
                rpc::Type::VolumeCondition,
                rpc::Type::ListVolumes,
                rpc::Type::ExpandVolume,
                rpc::Type::CreateDeleteSnapshot,
                rpc::Type::ListSnapshots,
                rpc::Type::ModifyVolume,
            ]),
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let span =
            info_span!("CreateSnapshot", snapshot.name = %Field(&req.name), volume.id = %Field(&req.source_volume_id));
        answer(span, Family::Snapshot, self.create_snapshot(req, deadline)).await
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("DeleteSnapshot", snapshot.id = %Field(&req.snapshot_id));
        answer(span, Family::Snapshot, self.delete_snapshot(req, deadline)).await
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let span = info_span!("ListSnapshots");
        answer(span, Family::Read, async { self.list_snapshots(request.into_inner()) }).await
    }

    async fn get_snapshot(&self, _: Request<GetSnapshotRequest>) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(Status::unimplemented("GetSnapshot is not supported: use ListSnapshots with snapshot_id"))
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("ControllerExpandVolume", volume.id = %Field(&req.volume_id));
        answer(span, Family::Expand, self.expand(req, deadline)).await
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("ControllerGetVolume", volume.id = %Field(&req.volume_id));
        answer(span, Family::Read, self.get_volume(req)).await
    }

    async fn controller_modify_volume(
        &self,
        request: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("ControllerModifyVolume", volume.id = %Field(&req.volume_id));
        answer(span, Family::Modify, self.modify(req, deadline)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn code(e: impl Into<ControllerError>, family: Family) -> Code {
        let Failure { status, .. } = failure(e.into(), family);
        status.code()
    }

    #[test]
    fn an_incompatible_parameter_is_already_exists_only_for_create_volume() {
        let incompatible = || FsxError::Incompatible("the token was used with other parameters".into());
        assert_eq!(code(incompatible(), Family::Create), Code::AlreadyExists);
        assert_eq!(code(incompatible(), Family::Delete), Code::FailedPrecondition);
        assert_eq!(code(incompatible(), Family::Expand), Code::FailedPrecondition);
        let invalid = || FsxError::Invalid { code: "BadRequest".into(), message: "file system is CREATING".into() };
        assert_eq!(code(invalid(), Family::Create), Code::InvalidArgument);
        assert_eq!(code(invalid(), Family::Delete), Code::FailedPrecondition);
    }

    #[test]
    fn subdirectory_refusals_say_what_to_change() {
        let param = crate::provision::params::ParamError { key: "uid".into(), message: "m".into() };
        assert_eq!(code(SubdirError::Parameter(param), Family::Create), Code::InvalidArgument);
        assert_eq!(code(SubdirError::FileSystem("runs Lustre 2.12".into()), Family::Create), Code::FailedPrecondition);
        assert_eq!(code(SubdirError::NotEnabled, Family::Create), Code::FailedPrecondition);
        let slow = SubdirError::Slow {
            what: "making the volume's directory",
            fs: "fs-1".into(),
            why: crate::mount::worker::WorkerError::TimedOut,
        };
        assert_eq!(code(slow, Family::Create), Code::DeadlineExceeded);
        assert_eq!(code(SubdirError::Busy("pvc-1".into()), Family::Delete), Code::Aborted);
        let text = failure(SubdirError::NotEnabled.into(), Family::Create).status.message().to_string();
        assert!(text.contains("controller.subdirectoryVolumes.enabled"), "{text}");
    }

    #[test]
    fn retryable_outcomes_get_codes_the_sidecars_retry() {
        for e in [
            ProvisionError::StillPending {
                id: "fs-1".into(),
                pending: crate::provision::Pending::Lifecycle(crate::fsx::Lifecycle::Creating),
            },
            ProvisionError::FsxSlow("CreateFileSystem"),
            ProvisionError::Busy("pvc-1".into()),
            ProvisionError::NotReady { listing: "file systems", cause: None },
            ProvisionError::Fsx(FsxError::unavailable("ThrottlingException")),
        ] {
            let c = code(e, Family::Create);
            assert!(matches!(c, Code::DeadlineExceeded | Code::Aborted | Code::Unavailable), "{c:?}");
        }
        assert_eq!(
            code(ProvisionError::CreationFailed { id: "fs-1".into(), message: "m".into() }, Family::Create),
            Code::Internal
        );
        let Failure { level, .. } =
            failure(ProvisionError::NotReady { listing: "file systems", cause: None }.into(), Family::Create);
        assert_eq!(level, tracing::Level::INFO, "the loading index is not paged for");
    }
}
