//! The CSI Node service: one Lustre mount per file system per node (NodeStageVolume), bind
//! mounts into pods (NodePublishVolume), unmounts, stats and node info.
//!
//! Idempotency comes from `/proc/self/mountinfo`; every mount, unmount and `statvfs` runs in
//! a bounded worker (`crate::mount::worker`), so a hung Lustre server answers the RPC with
//! `DeadlineExceeded` and frees the volume's guard instead of freezing the plugin.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::info_span;

use super::context;
use super::{check_capabilities, deadline, observe};
use crate::guard::{Guard, Guards, Key};
use crate::metadata::InstanceMetadata;
use crate::mount::lnet::{self, Efa};
use crate::mount::lustre::{self, LustreError};
use crate::mount::ops::{Health, MountError, Mounts, Staged};
use crate::mount::paths::{KubeletPath, PathError, check_subdirectory};
use crate::mount::worker::Limits;
use crate::mount::{Mounter, Usage};
use crate::proto::node_server::Node;
use crate::proto::node_service_capability::{Rpc, Type as CapType, rpc};
use crate::proto::*;
use crate::text::{Field, Shown};
use crate::topology::{NodeZone, ZONE_KEY};

/// The longest any node call works, below the kubelet's 2-minute CSI time-out.
pub const MAX_OPERATION_TIME: Duration = Duration::from_secs(100);

/// How long `statvfs` may take before the volume is reported abnormal.
const STATS_TIME: Duration = Duration::from_secs(10);

/// Settings of the node service.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `--node-id` / `CSI_NODE_NAME`; `None` asks the instance metadata for the instance id.
    pub node_id: Option<String>,
    /// Every staging and target path must lie under this directory.
    pub kubelet_dir: PathBuf,
    /// The fstype passed to `mount(2)` for NodeStageVolume (`lustre`).
    pub fstype: String,
    /// Caps on the worker threads that hung file systems may hold.
    pub worker_limits: Limits,
    /// Where LNet lists its interfaces ([`crate::mount::lnet::NIS_FILES`]).
    pub lnet_files: Vec<PathBuf>,
}

impl NodeOptions {
    /// Options for the real driver.
    pub fn new(node_id: Option<String>, kubelet_dir: PathBuf) -> Self {
        Self {
            node_id,
            kubelet_dir,
            fstype: "lustre".into(),
            worker_limits: Limits::default(),
            lnet_files: lnet::default_files(),
        }
    }
}

/// Tells the cluster about something that works but not as the user meant: a Warning event
/// on this node, given its reason and message. It must return at once (post in the
/// background) and a failure to post must change nothing else.
pub type Warn = Arc<dyn Fn(&'static str, String) + Send + Sync>;

/// The reason of the Node event for an `efaEnabled` volume staged without EFA interfaces.
pub const NO_EFA_REASON: &str = "FsxEfaNotConfigured";

/// Why a node call did not succeed; the gRPC code for each is chosen in one place below.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A request field is missing or malformed.
    #[error("{0}")]
    Invalid(String),
    /// Another call holds the volume or the path.
    #[error("an operation on {0} is already in progress; retry later")]
    Busy(String),
    /// The path of a read-only call holds no volume.
    #[error("{0}")]
    NotFound(String),
    /// No node id could be found.
    #[error("no node id: set --node-id or CSI_NODE_NAME ({0})")]
    NodeId(String),
    /// The node's zone could not be learned (the API and the instance metadata failed).
    #[error("cannot learn this node's zone: {0}")]
    Zone(String),
    #[error(transparent)]
    Mount(#[from] MountError),
}

impl From<PathError> for NodeError {
    fn from(e: PathError) -> Self {
        NodeError::Mount(e.into())
    }
}

impl From<LustreError> for NodeError {
    fn from(e: LustreError) -> Self {
        NodeError::Mount(e.into())
    }
}

impl From<NodeError> for super::Failure {
    fn from(e: NodeError) -> Self {
        Status::from(e).into()
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        let message = e.to_string();
        match e {
            NodeError::Invalid(_) => Status::invalid_argument(message),
            NodeError::Busy(_) => Status::aborted(message),
            NodeError::NotFound(_) => Status::not_found(message),
            NodeError::NodeId(_) | NodeError::Zone(_) => Status::unavailable(message),
            NodeError::Mount(m) => match m {
                MountError::Path(p) if p.is_refusal() => Status::invalid_argument(message),
                MountError::Path(p) if p.is_not_found() => Status::not_found(message),
                MountError::Path(_) => Status::internal(message),
                MountError::Lustre(LustreError::Option(..) | LustreError::Source(_)) => {
                    Status::invalid_argument(message)
                }
                MountError::Lustre(LustreError::Resolve { .. }) => Status::unavailable(message),
                MountError::StillRunning { .. } => Status::aborted(message),
                MountError::Saturated(_) => Status::resource_exhausted(message),
                MountError::TimedOut { .. } => Status::deadline_exceeded(message),
                MountError::StagedElsewhere { .. } | MountError::PublishedElsewhere { .. } => {
                    Status::already_exists(message)
                }
                MountError::NotStaged(_) => Status::failed_precondition(message),
                MountError::Mount { errno, .. } => match errno {
                    Errno::ENODEV | Errno::EPERM | Errno::EACCES => Status::failed_precondition(message),
                    Errno::ENOENT | Errno::EINVAL => Status::invalid_argument(message),
                    Errno::EIO | Errno::ETIMEDOUT | Errno::ECONNREFUSED | Errno::EHOSTUNREACH => {
                        Status::unavailable(message)
                    }
                    _ => Status::internal(message),
                },
                MountError::Bind { .. }
                | MountError::Unmount { .. }
                | MountError::MountTable(_)
                | MountError::Spawn(_) => Status::internal(message),
            },
        }
    }
}

/// The node service: validates requests and holds per-volume guards; the mount work is
/// `Mounts`.
pub struct NodeService {
    options: NodeOptions,
    mounts: Mounts,
    metadata: Arc<dyn InstanceMetadata>,
    busy: Arc<Guards>,
    node_id: OnceCell<String>,
    warn: Option<Warn>,
    /// Where the node's zone comes from (NodeGetInfo's `accessible_topology`).
    zone_source: Option<Arc<dyn NodeZone>>,
    zone: OnceCell<Option<String>>,
    /// The `efaEnabled` volumes already warned about (once per volume per plugin start).
    efa_warned: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn invalid(message: impl Into<String>) -> NodeError {
    NodeError::Invalid(message.into())
}

/// A volume id: 1–128 of `[A-Za-z0-9._/-]` (file system ids are `fs-…`; subdirectory volumes
/// `fs-…/subdir/<project id>`). The node uses it for locks and logs, never in a path.
fn check_volume_id(id: &str) -> Result<(), NodeError> {
    if id.is_empty() {
        return Err(invalid("volume_id is required"));
    }
    if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')) {
        return Err(invalid(format!("volume_id {} must be 1-128 of A-Z a-z 0-9 . _ - /", Shown(id))));
    }
    Ok(())
}

/// The `subdirectory` of a volume context, relative to the file system's root: the
/// controller writes it as `/k8s/…` (and users write static PVs either way), so one leading
/// `/` is dropped; anything else is checked as given.
fn subdirectory(context: &std::collections::HashMap<String, String>) -> &str {
    let sub = context.get(context::SUBDIRECTORY).map(String::as_str).unwrap_or("");
    sub.strip_prefix('/').unwrap_or(sub)
}

/// The mount options of a volume capability (checked against the allow-list).
fn mount_options(cap: &Option<VolumeCapability>) -> Result<Vec<String>, NodeError> {
    let cap = cap.as_ref().ok_or_else(|| invalid("volume_capability is required"))?;
    check_capabilities(std::slice::from_ref(cap)).map_err(NodeError::Invalid)?;
    let options = match &cap.access_type {
        Some(volume_capability::AccessType::Mount(m)) => m.mount_flags.clone(),
        _ => Vec::new(),
    };
    lustre::check_options(&options)?;
    Ok(options)
}

impl NodeService {
    /// A node service using `mounter` for every kernel call and `metadata` for the node id
    /// when none is configured. Opens the kubelet directory (canonicalized once; see
    /// [`crate::mount::paths`]).
    pub fn new(
        options: NodeOptions,
        mounter: Arc<dyn Mounter>,
        metadata: Arc<dyn InstanceMetadata>,
    ) -> std::io::Result<Self> {
        let mounts = Mounts::new(&options.kubelet_dir, mounter, options.worker_limits, &options.fstype)?;
        Ok(Self {
            options,
            mounts,
            metadata,
            busy: Guards::new(),
            node_id: OnceCell::new(),
            warn: None,
            zone_source: None,
            zone: OnceCell::new(),
            efa_warned: Default::default(),
        })
    }

    /// Reports the node's zone from `source` in NodeGetInfo (none without it).
    pub fn zone_from(mut self, source: Arc<dyn NodeZone>) -> Self {
        self.zone_source = Some(source);
        self
    }

    /// The node's zone, learned once (an error is not remembered: the kubelet retries).
    async fn zone(&self, node_id: &str) -> Result<Option<String>, NodeError> {
        let Some(source) = &self.zone_source else { return Ok(None) };
        self.zone
            .get_or_try_init(|| async {
                let zone = source.zone(node_id).await.map_err(NodeError::Zone)?;
                tracing::info!(zone = zone.as_deref().unwrap_or("(none)"), "the node's zone");
                Ok(zone)
            })
            .await
            .cloned()
    }

    /// Posts Warning events through `warn` (none without it: the log lines say the same).
    pub fn warn_with(mut self, warn: Warn) -> Self {
        self.warn = Some(warn);
        self
    }

    /// Once a volume whose context says `efaEnabled` is staged, checks that LNet has EFA
    /// interfaces: without them the mount works over TCP at a fraction of the throughput the
    /// file system was sized for. Says so once per volume (a log line and a Warning event on
    /// the node); never fails the call.
    fn check_efa(&self, volume_id: &str, volume_context: &std::collections::HashMap<String, String>) {
        if volume_context.get(context::EFA_ENABLED).map(String::as_str) != Some("true") {
            return;
        }
        let found = lnet::detect(&self.options.lnet_files);
        crate::metrics::get().lnet_efa(found.as_str());
        let first = || self.efa_warned.lock().unwrap_or_else(|p| p.into_inner()).insert(volume_id.to_string());
        match found {
            Efa::Configured { nids } => {
                tracing::info!(volume_id, nids = %nids.join(", "), "an efaEnabled file system, and LNet has EFA interfaces")
            }
            Efa::NotConfigured { nids } => {
                if !first() {
                    return;
                }
                let nids = nids.join(", ");
                tracing::warn!(volume_id, %nids, "an efaEnabled file system is mounted without EFA: this node's LNet has no @efa interface, so its traffic goes over TCP");
                if let Some(warn) = &self.warn {
                    warn(
                        NO_EFA_REASON,
                        format!(
                            "FSx for Lustre volume {volume_id} has EFA enabled, but LNet on this node has no EFA interface (its NIDs: {nids}), so the volume is mounted over TCP at a fraction of its throughput. Use an EFA-capable instance type with its EFA interfaces added to LNet before the first mount (lnetctl net add --net efa), as in the FSx for Lustre user guide's EFA client setup."
                        ),
                    );
                }
            }
            Efa::Unknown { why } => {
                if first() {
                    tracing::warn!(volume_id, reason = %Field(&why), "an efaEnabled file system is mounted, and whether LNet has EFA interfaces cannot be told here (mount the host's /sys/kernel/debug read-only into the plugin, as the manifests do)");
                }
            }
        }
    }

    fn check_path(&self, field: &'static str, path: &str) -> Result<KubeletPath, NodeError> {
        Ok(self.mounts.check(field, path)?)
    }

    /// [`Self::check_path`] for the path the call's span shows as `target.path`: the span was
    /// opened with the request's text escaped and cut; once the path is known to lie below the
    /// kubelet directory (at most `PATH_MAX`, no control characters) it is shown whole, so an
    /// operator can find the mount (the kubelet's staging paths are 140 characters and more).
    fn check_span_path(&self, field: &'static str, path: &str) -> Result<KubeletPath, NodeError> {
        let checked = self.check_path(field, path)?;
        tracing::Span::current().record("target.path", tracing::field::display(checked.real().display()));
        Ok(checked)
    }

    /// Holds the volume and the path a call works on.
    fn lock(&self, volume_id: &str, path: &str) -> Result<Vec<Guard>, NodeError> {
        self.busy
            .try_lock_all([Key::VolumeId(volume_id.to_string()), Key::Path(path.to_string())])
            .ok_or_else(|| NodeError::Busy(format!("{}, {}", Field(volume_id), Field(path))))
    }

    fn deadline(&self, metadata: &tonic::metadata::MetadataMap) -> Instant {
        deadline(metadata).min(Instant::now() + MAX_OPERATION_TIME)
    }

    async fn stage(&self, req: NodeStageVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        let staging = self.check_span_path("staging_target_path", &req.staging_target_path)?;
        let mut options = mount_options(&req.volume_capability)?;
        if options.is_empty() {
            options = lustre::DEFAULT_OPTIONS.iter().map(|s| s.to_string()).collect();
        }
        let dns_name = req.volume_context.get(context::DNS_NAME).map(String::as_str).unwrap_or("");
        let mount_name = req.volume_context.get(context::MOUNT_NAME).map(String::as_str).unwrap_or("");
        if !lustre::is_host_name(dns_name) {
            return Err(invalid(format!(
                "volume_context {} {} must be the file system's DNS name",
                context::DNS_NAME,
                Shown(dns_name)
            )));
        }
        if !lustre::is_mount_name(mount_name) {
            return Err(invalid(format!(
                "volume_context {} {} must be 1-8 of A-Z a-z 0-9 _ -",
                context::MOUNT_NAME,
                Shown(mount_name)
            )));
        }
        let sub = subdirectory(&req.volume_context);
        check_subdirectory(sub).map_err(|why| invalid(format!("volume_context {}: {why}", context::SUBDIRECTORY)))?;
        let _guards = self.lock(&req.volume_id, &req.staging_target_path)?;
        // A subdirectory volume is a bind of its directory from the file system's one mount.
        match self.mounts.stage(&staging, dns_name, mount_name, sub, &options, deadline).await? {
            Staged::Already => tracing::info!("already staged"),
            Staged::Mounted(call) => tracing::info!(%call, "staged"),
        }
        // After the mount: LNet is up by then, and lists every interface it will use.
        self.check_efa(&req.volume_id, &req.volume_context);
        Ok(())
    }

    async fn unstage(&self, req: NodeUnstageVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        let staging = self.check_span_path("staging_target_path", &req.staging_target_path)?;
        let _guards = self.lock(&req.volume_id, &req.staging_target_path)?;
        Ok(self.mounts.unstage(&staging, deadline).await?)
    }

    async fn publish(&self, req: NodePublishVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        if req.staging_target_path.is_empty() {
            return Err(invalid("staging_target_path is required: this driver stages volumes"));
        }
        let staging = self.check_path("staging_target_path", &req.staging_target_path)?;
        let target = self.check_span_path("target_path", &req.target_path)?;
        let options = mount_options(&req.volume_capability)?;
        let read_only = req.readonly || options.iter().any(|f| f == "ro");
        let sub = subdirectory(&req.volume_context);
        let _guards = self.lock(&req.volume_id, &req.target_path)?;
        if !self.mounts.publish(&staging, sub, &target, read_only, deadline).await? {
            tracing::info!("already published");
        }
        Ok(())
    }

    async fn unpublish(&self, req: NodeUnpublishVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        let target = self.check_span_path("target_path", &req.target_path)?;
        let _guards = self.lock(&req.volume_id, &req.target_path)?;
        Ok(self.mounts.unmount_and_remove(&target, deadline).await?)
    }

    async fn stats(
        &self,
        req: NodeGetVolumeStatsRequest,
        deadline: Instant,
    ) -> Result<NodeGetVolumeStatsResponse, NodeError> {
        check_volume_id(&req.volume_id)?;
        if req.volume_path.is_empty() {
            return Err(invalid("volume_path is required"));
        }
        // A path that is not absolute, clean and under the kubelet directory cannot hold a
        // volume of ours: for this read-only call that is "not found", and nothing is touched.
        let path = self
            .check_span_path("volume_path", &req.volume_path)
            .map_err(|e| NodeError::NotFound(format!("no volume there: {e}")))?;
        let health = match self.mounts.health(&path, deadline.min(Instant::now() + STATS_TIME)).await {
            Err(MountError::Path(e)) if e.is_not_found() => {
                return Err(NodeError::NotFound(format!("volume_path {} does not exist", path.real().display())));
            }
            other => other?,
        };
        let real = path.real().display();
        let (usage, abnormal, message) = match health {
            Health::Healthy { usage, source } => (Some(usage), false, format!("mounted from {}", Shown(&source))),
            Health::NotLustre { usage, fstype } => {
                (Some(usage), true, format!("{real} is a {fstype} mount, not lustre"))
            }
            Health::NotMounted => (None, true, format!("{real} is not mounted")),
            Health::Unresponsive(why) | Health::Failed(why) => (None, true, why),
        };
        Ok(NodeGetVolumeStatsResponse {
            usage: usage.map(|u| usage_entries(&u)).unwrap_or_default(),
            volume_condition: Some(VolumeCondition { abnormal, message }),
        })
    }

    async fn resolve_node_id(&self) -> Result<String, NodeError> {
        self.node_id
            .get_or_try_init(|| async {
                if let Some(id) = self.options.node_id.clone().filter(|s| !s.is_empty()) {
                    return Ok(id);
                }
                self.metadata.instance_id().await.map_err(NodeError::NodeId)
            })
            .await
            .cloned()
    }
}

fn usage_entries(u: &Usage) -> Vec<VolumeUsage> {
    vec![
        VolumeUsage {
            available: u.available_bytes,
            total: u.total_bytes,
            used: u.used_bytes,
            unit: volume_usage::Unit::Bytes as i32,
        },
        VolumeUsage {
            available: u.free_inodes,
            total: u.total_inodes,
            used: u.used_inodes,
            unit: volume_usage::Unit::Inodes as i32,
        },
    ]
}

fn caps(types: &[rpc::Type]) -> Vec<NodeServiceCapability> {
    types.iter().map(|t| NodeServiceCapability { r#type: Some(CapType::Rpc(Rpc { r#type: *t as i32 })) }).collect()
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("NodeStageVolume", volume.id = %Field(&req.volume_id), target.path = %Field(&req.staging_target_path));
        observe(span, async { Ok(self.stage(req, deadline).await.map(|_| Response::new(NodeStageVolumeResponse {}))?) })
            .await
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("NodeUnstageVolume", volume.id = %Field(&req.volume_id), target.path = %Field(&req.staging_target_path));
        observe(span, async {
            Ok(self.unstage(req, deadline).await.map(|_| Response::new(NodeUnstageVolumeResponse {}))?)
        })
        .await
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let req = request.into_inner();
        let span =
            info_span!("NodePublishVolume", volume.id = %Field(&req.volume_id), target.path = %Field(&req.target_path));
        observe(span, async {
            Ok(self.publish(req, deadline).await.map(|_| Response::new(NodePublishVolumeResponse {}))?)
        })
        .await
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("NodeUnpublishVolume", volume.id = %Field(&req.volume_id), target.path = %Field(&req.target_path));
        observe(span, async {
            Ok(self.unpublish(req, deadline).await.map(|_| Response::new(NodeUnpublishVolumeResponse {}))?)
        })
        .await
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("NodeGetVolumeStats", volume.id = %Field(&req.volume_id), target.path = %Field(&req.volume_path));
        observe(span, async { Ok(self.stats(req, deadline).await.map(Response::new)?) }).await
    }

    async fn node_expand_volume(
        &self,
        _: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Err(Status::unimplemented("FSx file systems grow online in the controller; no node expansion is needed"))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: caps(&[rpc::Type::StageUnstageVolume, rpc::Type::GetVolumeStats, rpc::Type::VolumeCondition]),
        }))
    }

    async fn node_get_info(&self, _: Request<NodeGetInfoRequest>) -> Result<Response<NodeGetInfoResponse>, Status> {
        let span = info_span!("NodeGetInfo");
        observe(span, async {
            let node_id = self.resolve_node_id().await?;
            // Always set, as the plugin advertises VOLUME_ACCESSIBILITY_CONSTRAINTS: a node with
            // no zone reports no segment (its CSINode then lists no topology key).
            let segments = self.zone(&node_id).await?.map(|zone| (ZONE_KEY.to_string(), zone));
            let accessible_topology = Some(Topology { segments: segments.into_iter().collect() });
            Ok(Response::new(NodeGetInfoResponse { node_id, max_volumes_per_node: 0, accessible_topology }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids() {
        check_volume_id("fs-0123456789abcdef0").unwrap();
        assert!(check_volume_id("").is_err());
        check_volume_id("fs-0123456789abcdef0/subdir/1000000").unwrap();
        assert!(check_volume_id("fs x").is_err());
        assert!(check_volume_id("fs\n").is_err());
        assert!(check_volume_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn node_error_codes() {
        let code = |e: NodeError| Status::from(e).code();
        let mount = |e: MountError| code(NodeError::Mount(e));
        assert_eq!(
            mount(MountError::Mount { message: "m".into(), errno: Errno::ENODEV }),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(mount(MountError::Mount { message: "m".into(), errno: Errno::ETIMEDOUT }), tonic::Code::Unavailable);
        assert_eq!(mount(MountError::TimedOut { what: "mount", path: "/x".into() }), tonic::Code::DeadlineExceeded);
        assert_eq!(mount(MountError::NotStaged("/x".into())), tonic::Code::FailedPrecondition);
        assert_eq!(code(NodeError::Busy("v".into())), tonic::Code::Aborted);
        assert_eq!(code(NodeError::NodeId("IMDSv2 did not answer".into())), tonic::Code::Unavailable);
    }
}
