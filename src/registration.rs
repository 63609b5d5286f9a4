//! Registering the node plugin with the kubelet, without the node-driver-registrar sidecar.
//!
//! The kubelet's plugin watcher looks for sockets in `<kubelet dir>/plugins_registry/`. For
//! each new one it calls `GetInfo` (this plugin's type, name, CSI endpoint and CSI versions),
//! registers the driver (it then calls NodeGetInfo on the endpoint and writes the CSINode),
//! and reports the outcome with `NotifyRegistrationStatus`. When the socket goes away, it
//! deregisters the driver. That is what node-driver-registrar does from a sidecar; with
//! `--kubelet-registration-path` the plugin serves the same API itself, one container less on
//! every node. The manifests keep the standard registrar.
//!
//! The registration socket is bound like the CSI socket (mode 0600, a live instance's socket
//! never taken over) at `plugins_registry/fsx.csi.aws.com-reg.sock`, the registrar's own
//! name, so the two cannot both register one driver on a node. It is removed first at exit,
//! so the kubelet deregisters the plugin before its CSI socket goes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::pluginregistration::registration_server::{Registration, RegistrationServer};
use crate::pluginregistration::{InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse};

/// The plugin type the kubelet's CSI plugin handler registers.
pub const CSI_PLUGIN: &str = "CSIPlugin";

/// The CSI versions this plugin speaks, as the kubelet checks them (it needs a 1.x).
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0"];

/// The registration socket in the kubelet directory `kubelet_dir`: node-driver-registrar's
/// name for this driver.
pub fn socket_path(kubelet_dir: &Path) -> PathBuf {
    kubelet_dir.join("plugins_registry").join(format!("{}-reg.sock", crate::DRIVER_NAME))
}

/// What the kubelet last said of the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not told yet.
    Waiting,
    /// Registered.
    Registered,
    /// The kubelet refused the registration, with its reason.
    Refused(String),
}

/// The `pluginregistration.Registration` service.
pub struct RegistrationService {
    endpoint: String,
    status: watch::Sender<Outcome>,
}

impl RegistrationService {
    /// The service telling the kubelet that this plugin's CSI socket is `endpoint`, as the
    /// kubelet sees it on the host (for example
    /// `/var/lib/kubelet/plugins/fsx.csi.aws.com/csi.sock`).
    pub fn new(endpoint: &str) -> Result<Self, String> {
        if !endpoint.starts_with('/') || endpoint.chars().any(char::is_control) || endpoint.len() > 4096 {
            return Err(format!(
                "--kubelet-registration-path {} must be the absolute path of the CSI socket on the host",
                crate::text::Shown(endpoint)
            ));
        }
        Ok(Self { endpoint: endpoint.to_string(), status: watch::channel(Outcome::Waiting).0 })
    }

    /// What the kubelet last said, and every change of it.
    pub fn status(&self) -> watch::Receiver<Outcome> {
        self.status.subscribe()
    }
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        tracing::debug!("the kubelet asked for the plugin's registration info");
        Ok(Response::new(PluginInfo {
            r#type: CSI_PLUGIN.to_string(),
            name: crate::DRIVER_NAME.to_string(),
            endpoint: self.endpoint.clone(),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let r = request.into_inner();
        let status = if r.plugin_registered {
            tracing::info!(endpoint = %self.endpoint, "registered with the kubelet");
            Outcome::Registered
        } else {
            // The kubelet's text, escaped and bounded (on a character boundary).
            let why = crate::text::clip(&r.error);
            tracing::error!(error = %crate::text::Field(&why), endpoint = %self.endpoint, "the kubelet refused the registration; the plugin keeps serving and the kubelet retries when the socket is recreated");
            Outcome::Refused(why)
        };
        self.status.send_replace(status);
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

/// Serves `service` on `listener` (a few connections: only the kubelet calls) until
/// `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    service: RegistrationService,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = crate::server::connections::Incoming::new(listener, 8, Duration::from_secs(5));
    tonic::transport::Server::builder()
        .max_concurrent_streams(4)
        .http2_max_header_list_size(crate::server::hpack::MAX_HEADER_LIST as u32)
        .add_service(RegistrationServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_the_registrars_and_the_endpoint_must_be_a_host_path() {
        assert_eq!(
            socket_path(Path::new("/var/lib/kubelet")),
            Path::new("/var/lib/kubelet/plugins_registry/fsx.csi.aws.com-reg.sock")
        );
        assert!(RegistrationService::new("/var/lib/kubelet/plugins/fsx.csi.aws.com/csi.sock").is_ok());
        for bad in ["csi.sock", "unix:///x/csi.sock", "/x\n/csi.sock", ""] {
            let e = RegistrationService::new(bad).err().unwrap();
            assert!(e.contains("--kubelet-registration-path") && !e.contains('\n'), "{e}");
        }
    }

    #[tokio::test]
    async fn info_and_status_as_the_kubelet_sees_them() {
        let s = RegistrationService::new("/var/lib/kubelet/plugins/fsx.csi.aws.com/csi.sock").unwrap();
        let mut status = s.status();
        let info = s.get_info(Request::new(InfoRequest {})).await.unwrap().into_inner();
        assert_eq!((info.r#type.as_str(), info.name.as_str()), ("CSIPlugin", "fsx.csi.aws.com"));
        assert_eq!(info.supported_versions, vec!["1.0.0"]);
        s.notify_registration_status(Request::new(RegistrationStatus {
            plugin_registered: false,
            error: "x".repeat(5000),
        }))
        .await
        .unwrap();
        assert!(
            matches!(&*status.borrow_and_update(), Outcome::Refused(why) if why.len() <= crate::text::MAX_MESSAGE_BYTES)
        );
        // Multibyte text is cut on a character boundary, never mid-character.
        s.notify_registration_status(Request::new(RegistrationStatus {
            plugin_registered: false,
            error: format!("a{}", "é".repeat(3000)),
        }))
        .await
        .unwrap();
        assert!(
            matches!(&*status.borrow_and_update(), Outcome::Refused(why) if why.len() <= crate::text::MAX_MESSAGE_BYTES)
        );
        s.notify_registration_status(Request::new(RegistrationStatus {
            plugin_registered: true,
            error: String::new(),
        }))
        .await
        .unwrap();
        assert_eq!(*status.borrow_and_update(), Outcome::Registered);
    }
}
