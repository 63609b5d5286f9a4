//! The CSI Identity service: who we are, what we can do, and whether we are ready.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::identity_server::Identity;
use crate::proto::plugin_capability::{self, service, volume_expansion};
use crate::proto::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest, GetPluginInfoResponse,
    PluginCapability, ProbeRequest, ProbeResponse,
};
use crate::provision::Provisioner;

/// Identity service. `provisioner` is `Some` when this process serves the controller.
pub struct IdentityService {
    provisioner: Option<Arc<Provisioner>>,
}

impl IdentityService {
    /// An identity service; `provisioner` is given when this process serves the controller.
    pub fn new(provisioner: Option<Arc<Provisioner>>) -> Self {
        Self { provisioner }
    }
}

fn capability(c: plugin_capability::Type) -> PluginCapability {
    PluginCapability { r#type: Some(c) }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: crate::DRIVER_NAME.to_string(),
            vendor_version: crate::VERSION.to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let mut capabilities = Vec::new();
        if self.provisioner.is_some() {
            capabilities.push(capability(plugin_capability::Type::Service(plugin_capability::Service {
                r#type: service::Type::ControllerService as i32,
            })));
        }
        // Volumes report their file system's zone, nodes their own (crate::topology).
        capabilities.push(capability(plugin_capability::Type::Service(plugin_capability::Service {
            r#type: service::Type::VolumeAccessibilityConstraints as i32,
        })));
        capabilities.push(capability(plugin_capability::Type::VolumeExpansion(plugin_capability::VolumeExpansion {
            r#type: volume_expansion::Type::Online as i32,
        })));
        Ok(Response::new(GetPluginCapabilitiesResponse { capabilities }))
    }

    /// Ready means "this process serves": the livenessprobe sidecar restarts the container
    /// while it is not, and restarting never fixes FSx being unreachable or a missing IAM
    /// permission. Those are answered on every call that needs FSx (`Unavailable` while the
    /// index loads, `PermissionDenied` naming the IAM action and the identity in use) and
    /// logged once per change.
    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}
