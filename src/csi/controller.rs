//! The CSI Controller service: CreateVolume, DeleteVolume, ControllerGetVolume, ListVolumes
//! and ValidateVolumeCapabilities, on top of [`Provisioner`].
//!
//! Every error's gRPC code is chosen in `impl From<ProvisionError> for Status` below, and
//! nowhere else. Retryable outcomes (in progress, throttled) get codes the external-provisioner
//! retries without giving up (`Aborted`, `DeadlineExceeded`, `Unavailable`,
//! `ResourceExhausted`); a creation that FAILED and was cleaned up is final (`Internal`), so a
//! deleted PVC is not provisioned again in the background.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::info_span;

use super::{check_capabilities, deadline, observe, Failure};
use crate::fsx::{is_file_system_id, FileSystem, FsxError, Lifecycle};
use crate::proto::controller_server::Controller;
use crate::proto::controller_service_capability::{rpc, Rpc, Type as CapType};
use crate::proto::*;
use crate::provision::capacity::CapacityError;
use crate::provision::{CreateRequest, ProvisionError, Provisioner};
use crate::text::{Field, Shown};

/// Volume context key for the file system's DNS name (shared with the Go driver).
pub const CONTEXT_DNS_NAME: &str = "dnsname";
/// Volume context key for the file system's Lustre mount name (shared with the Go driver).
pub const CONTEXT_MOUNT_NAME: &str = "mountname";

/// The controller service.
pub struct ControllerService {
    provisioner: Arc<Provisioner>,
}

impl ControllerService {
    /// A controller over `provisioner`.
    pub fn new(provisioner: Arc<Provisioner>) -> Self {
        Self { provisioner }
    }
}

impl From<FsxError> for Status {
    fn from(e: FsxError) -> Self {
        let message = e.to_string();
        match e {
            FsxError::NotFound(_) => Status::not_found(message),
            FsxError::Invalid { .. } => Status::invalid_argument(message),
            FsxError::Incompatible(_) => Status::already_exists(message),
            FsxError::LimitExceeded(_) => Status::resource_exhausted(message),
            FsxError::Unavailable(_) => Status::unavailable(message),
            FsxError::Other { .. } => Status::internal(message),
        }
    }
}

impl From<ProvisionError> for Failure {
    fn from(e: ProvisionError) -> Self {
        // The index loads at start-up: the external-provisioner's first calls meet it, and
        // retry. That is not an error anyone should be paged for.
        let level = match &e {
            ProvisionError::NotReady => Some(tracing::Level::INFO),
            _ => None,
        };
        let status = Status::from(e);
        match level {
            Some(level) => Failure::at(status, level),
            None => status.into(),
        }
    }
}

impl From<ProvisionError> for Status {
    fn from(e: ProvisionError) -> Self {
        let message = e.to_string();
        match e {
            ProvisionError::Parameter(_) | ProvisionError::InvalidName(_) => Status::invalid_argument(message),
            ProvisionError::Capacity(CapacityError::Invalid(_)) => Status::invalid_argument(message),
            ProvisionError::Capacity(CapacityError::OutOfRange { .. }) => Status::out_of_range(message),
            ProvisionError::AlreadyExists { .. } => Status::already_exists(message),
            ProvisionError::Busy(_) => Status::aborted(message),
            ProvisionError::StillPending { .. } => Status::deadline_exceeded(message),
            ProvisionError::CreationFailed { .. } => Status::internal(message),
            ProvisionError::NotUsable { .. } => Status::unavailable(message),
            ProvisionError::Vanished(_) => Status::aborted(message),
            ProvisionError::NotFound(_) => Status::not_found(message),
            ProvisionError::NotReady => Status::unavailable(message),
            ProvisionError::FsxSlow(_) => Status::deadline_exceeded(message),
            ProvisionError::CannotExpand(_) => Status::invalid_argument(message),
            ProvisionError::UpdateInProgress { .. } => Status::aborted(message),
            ProvisionError::UpdateFailed { .. } => Status::internal(message),
            ProvisionError::AssociationPending { .. } => Status::deadline_exceeded(message),
            ProvisionError::AssociationFailed { .. } => Status::internal(message),
            ProvisionError::Fsx(fsx) => fsx.into(),
        }
    }
}

/// The CSI volume for a file system.
pub fn volume(fs: &FileSystem) -> Volume {
    Volume {
        capacity_bytes: fs.capacity_bytes(),
        volume_id: fs.id.clone(),
        volume_context: HashMap::from([
            (CONTEXT_DNS_NAME.to_string(), fs.dns_name.clone()),
            (CONTEXT_MOUNT_NAME.to_string(), fs.mount_name.clone()),
        ]),
        content_source: None,
        accessible_topology: Vec::new(),
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

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("CreateVolume", volume.name = %Field(&req.name));
        observe(span, async {
            check_capabilities(&req.volume_capabilities).map_err(|e| Failure::from(Status::invalid_argument(e)))?;
            if req.volume_content_source.is_some() {
                return Err(Status::invalid_argument(
                    "volume_content_source is not supported: FSx volumes cannot be created from snapshots or clones",
                )
                .into());
            }
            if !req.mutable_parameters.is_empty() {
                return Err(Status::invalid_argument("mutable_parameters are not supported by this driver").into());
            }
            let range = req.capacity_range.unwrap_or_default();
            let fs = self
                .provisioner
                .create(
                    CreateRequest {
                        name: &req.name,
                        required_bytes: range.required_bytes,
                        limit_bytes: range.limit_bytes,
                        parameters: &req.parameters,
                    },
                    deadline,
                )
                .await?;
            tracing::info!(volume.id = %fs.id, capacity_gib = fs.capacity_gib, "volume ready");
            Ok(Response::new(CreateVolumeResponse { volume: Some(volume(&fs)) }))
        })
        .await
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("DeleteVolume", volume.id = %Field(&req.volume_id));
        observe(span, async {
            if req.volume_id.is_empty() {
                return Err(Status::invalid_argument("volume_id is required").into());
            }
            self.provisioner.delete(&req.volume_id, deadline).await?;
            Ok(Response::new(DeleteVolumeResponse {}))
        })
        .await
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
        observe(span, async {
            if req.volume_id.is_empty() {
                return Err(Status::invalid_argument("volume_id is required").into());
            }
            if req.volume_capabilities.is_empty() {
                return Err(Status::invalid_argument("volume_capabilities must not be empty").into());
            }
            self.provisioner.get(&req.volume_id).await?;
            let response = match check_capabilities(&req.volume_capabilities) {
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
            };
            Ok(Response::new(response))
        })
        .await
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("ListVolumes");
        observe(span, async {
            if req.max_entries < 0 {
                return Err(Status::invalid_argument("max_entries must not be negative").into());
            }
            let after = match req.starting_token.as_str() {
                "" => None,
                t if is_file_system_id(t) => Some(t),
                t => {
                    let message = format!("starting_token {} was not returned by ListVolumes", Shown(t));
                    return Err(Status::aborted(message).into());
                }
            };
            let max = if req.max_entries == 0 { usize::MAX } else { req.max_entries as usize };
            let (page, more) = self.provisioner.index().page(after, max);
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
            Ok(Response::new(ListVolumesResponse { entries, next_token }))
        })
        .await
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
            ]),
        }))
    }

    async fn create_snapshot(
        &self,
        _: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    async fn delete_snapshot(
        &self,
        _: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    async fn list_snapshots(
        &self,
        _: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    async fn get_snapshot(&self, _: Request<GetSnapshotRequest>) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("ControllerExpandVolume", volume.id = %Field(&req.volume_id));
        observe(span, async {
            if req.volume_id.is_empty() {
                return Err(Status::invalid_argument("volume_id is required").into());
            }
            let range = req
                .capacity_range
                .ok_or_else(|| Failure::from(Status::invalid_argument("capacity_range is required")))?;
            if let Some(cap) = &req.volume_capability {
                check_capabilities(std::slice::from_ref(cap))
                    .map_err(|e| Failure::from(Status::invalid_argument(e)))?;
            }
            let gib =
                self.provisioner.expand(&req.volume_id, range.required_bytes, range.limit_bytes, deadline).await?;
            tracing::info!(capacity_gib = gib, "volume expanded");
            Ok(Response::new(ControllerExpandVolumeResponse {
                capacity_bytes: gib.saturating_mul(crate::fsx::GIB),
                // Lustre clients see the new size at once: nothing to do on the nodes.
                node_expansion_required: false,
            }))
        })
        .await
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("ControllerGetVolume", volume.id = %Field(&req.volume_id));
        observe(span, async {
            if req.volume_id.is_empty() {
                return Err(Status::invalid_argument("volume_id is required").into());
            }
            let fs = self.provisioner.get(&req.volume_id).await?;
            Ok(Response::new(ControllerGetVolumeResponse {
                volume: Some(volume(&fs)),
                status: Some(controller_get_volume_response::VolumeStatus {
                    published_node_ids: Vec::new(),
                    volume_condition: Some(condition(&fs)),
                }),
            }))
        })
        .await
    }

    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented("ControllerModifyVolume is not supported"))
    }
}
