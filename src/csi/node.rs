//! The CSI Node service: one Lustre mount per file system per node (NodeStageVolume), bind
//! mounts into pods (NodePublishVolume), unmounts, stats and node info.
//!
//! Idempotency comes from `/proc/self/mountinfo`; every mount, unmount and `statvfs` runs in
//! a bounded worker ([`crate::mount::worker`]), so a hung Lustre server answers the RPC with
//! `DeadlineExceeded` and frees the volume's guard instead of freezing the plugin.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::info_span;

use super::controller::{CONTEXT_DNS_NAME, CONTEXT_MOUNT_NAME};
use super::{check_capabilities, deadline, observe};
use crate::mount::lustre::{self, LustreError};
use crate::mount::mountinfo::{self, MountEntry};
use crate::mount::worker::{self, Workers};
use crate::mount::{check_path, check_subdirectory, explain_mount_errno, Mounter, Usage};
use crate::proto::node_server::Node;
use crate::proto::node_service_capability::{rpc, Rpc, Type as CapType};
use crate::proto::*;
use crate::provision::inflight::InFlight;

/// Optional volume attribute: a subdirectory of the file system to publish instead of its
/// root.
pub const CONTEXT_SUBDIRECTORY: &str = "subdirectory";

/// The longest any node call works, below the kubelet's 2-minute CSI time-out.
pub const MAX_OPERATION_TIME: Duration = Duration::from_secs(100);

/// How long `statvfs` may take before the volume is reported abnormal.
const STATS_TIME: Duration = Duration::from_secs(10);

/// Settings of the node service.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `--node-id` / `CSI_NODE_NAME`; `None` asks IMDSv2 for the instance id.
    pub node_id: Option<String>,
    /// Every staging and target path must lie under this directory.
    pub kubelet_dir: PathBuf,
    /// The fstype passed to `mount(2)` for NodeStageVolume (`lustre`).
    pub fstype: String,
}

impl NodeOptions {
    /// Options for the real driver.
    pub fn new(node_id: Option<String>, kubelet_dir: PathBuf) -> Self {
        Self { node_id, kubelet_dir, fstype: "lustre".into() }
    }
}

/// Why a node call did not succeed; the gRPC code for each is chosen in one place below.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Invalid(String),
    #[error("an operation on {0} is already in progress; retry later")]
    Busy(String),
    #[error("a previous {what} on {path} is still running (the file system may be unresponsive); retry later")]
    StillRunning { what: &'static str, path: String },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotStaged(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{what} on {path} did not finish in time; the file system may be unresponsive, and a retry will find the real state")]
    TimedOut { what: &'static str, path: String },
    #[error(transparent)]
    Lustre(#[from] LustreError),
    #[error("{message}")]
    Mount { errno: Errno, message: String },
    #[error("{0}")]
    Io(String),
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        let message = e.to_string();
        match e {
            NodeError::Invalid(_) => Status::invalid_argument(message),
            NodeError::Busy(_) | NodeError::StillRunning { .. } => Status::aborted(message),
            NodeError::AlreadyExists(_) => Status::already_exists(message),
            NodeError::NotStaged(_) => Status::failed_precondition(message),
            NodeError::NotFound(_) => Status::not_found(message),
            NodeError::TimedOut { .. } => Status::deadline_exceeded(message),
            NodeError::Lustre(LustreError::Option(..) | LustreError::Source(_)) => Status::invalid_argument(message),
            NodeError::Lustre(LustreError::Resolve { .. }) => Status::unavailable(message),
            NodeError::Mount { errno, .. } => match errno {
                Errno::ENODEV | Errno::EPERM | Errno::EACCES => Status::failed_precondition(message),
                Errno::ENOENT | Errno::EINVAL => Status::invalid_argument(message),
                Errno::EIO | Errno::ETIMEDOUT | Errno::ECONNREFUSED | Errno::EHOSTUNREACH => {
                    Status::unavailable(message)
                }
                _ => Status::internal(message),
            },
            NodeError::Io(_) => Status::internal(message),
        }
    }
}

/// The node service.
pub struct NodeService {
    options: NodeOptions,
    mounter: Arc<dyn Mounter>,
    busy: Arc<InFlight>,
    workers: Arc<Workers>,
    node_id: OnceCell<String>,
}

fn invalid(message: impl Into<String>) -> NodeError {
    NodeError::Invalid(message.into())
}

/// A volume id: 1–128 of `[A-Za-z0-9._-]` (file system ids are `fs-…`).
fn check_volume_id(id: &str) -> Result<(), NodeError> {
    if id.is_empty() {
        return Err(invalid("volume_id is required"));
    }
    if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(invalid(format!("volume_id {id:?} must be 1-128 of A-Z a-z 0-9 . _ -")));
    }
    Ok(())
}

fn mount_flags(cap: &Option<VolumeCapability>) -> Result<Vec<String>, NodeError> {
    let cap = cap.as_ref().ok_or_else(|| invalid("volume_capability is required"))?;
    check_capabilities(std::slice::from_ref(cap)).map_err(NodeError::Invalid)?;
    Ok(match &cap.access_type {
        Some(volume_capability::AccessType::Mount(m)) => m.mount_flags.clone(),
        _ => Vec::new(),
    })
}

fn errno_of(e: &std::io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO)
}

impl NodeService {
    /// A node service using `mounter` for every kernel call.
    pub fn new(options: NodeOptions, mounter: Arc<dyn Mounter>) -> Self {
        Self { options, mounter, busy: InFlight::new(), workers: Arc::default(), node_id: OnceCell::new() }
    }

    fn check_path(&self, field: &'static str, path: &str) -> Result<PathBuf, NodeError> {
        check_path(field, path, &self.options.kubelet_dir).map_err(|e| invalid(e.to_string()))?;
        Ok(PathBuf::from(path))
    }

    fn lock(&self, keys: &[&str]) -> Result<Vec<crate::provision::inflight::Guard>, NodeError> {
        self.busy.try_lock_all(keys).ok_or_else(|| NodeError::Busy(keys.join(", ")))
    }

    fn table(&self) -> Result<Vec<MountEntry>, NodeError> {
        let text =
            self.mounter.mount_table().map_err(|e| NodeError::Io(format!("reading /proc/self/mountinfo: {e}")))?;
        Ok(mountinfo::parse(&text))
    }

    /// Runs `f` in a worker bounded by `deadline`.
    async fn bounded<T: Send + 'static>(
        &self,
        path: &Path,
        what: &'static str,
        deadline: Instant,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NodeError> {
        worker::run(&self.workers, path, what, deadline, f)
            .await
            .map_err(|_| NodeError::TimedOut { what, path: path.display().to_string() })
    }

    fn refuse_if_running(&self, path: &Path) -> Result<(), NodeError> {
        match self.workers.running(path) {
            Some(what) => Err(NodeError::StillRunning { what, path: path.display().to_string() }),
            None => Ok(()),
        }
    }

    fn deadline(&self, metadata: &tonic::metadata::MetadataMap) -> Instant {
        deadline(metadata).min(Instant::now() + MAX_OPERATION_TIME)
    }

    /// Unmounts everything stacked at `path`: `UMOUNT_NOFOLLOW`, then `MNT_FORCE` on EBUSY or
    /// time-out, then `MNT_DETACH`. Not mounted counts as done.
    async fn unmount(&self, path: &Path, deadline: Instant) -> Result<(), NodeError> {
        for _ in 0..8 {
            if mountinfo::at(&self.table()?, path).is_none() {
                return Ok(());
            }
            let steps = [
                MntFlags::UMOUNT_NOFOLLOW,
                MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_FORCE,
                MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH,
            ];
            let mut done = false;
            for (i, flags) in steps.into_iter().enumerate() {
                let now = Instant::now();
                let left = deadline.saturating_duration_since(now);
                // The first two steps get a share of the time left; the lazy detach the rest.
                let step_deadline = now + left / (steps.len() - i) as u32;
                let mounter = Arc::clone(&self.mounter);
                let target = path.to_path_buf();
                match self.bounded(path, "unmount", step_deadline, move || mounter.unmount(&target, flags)).await {
                    Ok(Ok(())) | Ok(Err(Errno::EINVAL | Errno::ENOENT)) => {
                        done = true;
                        break;
                    }
                    Ok(Err(Errno::EBUSY)) => {
                        tracing::warn!(target.path = %path.display(), ?flags, "unmount: busy; escalating")
                    }
                    Err(_) => {
                        tracing::warn!(target.path = %path.display(), ?flags, "unmount: timed out; escalating")
                    }
                    Ok(Err(e)) => return Err(NodeError::Io(format!("unmount {}: {e}: {}", path.display(), e.desc()))),
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            if !done {
                return Err(NodeError::TimedOut { what: "unmount", path: path.display().to_string() });
            }
        }
        Ok(())
    }

    /// Removes the directory `path` if it exists (after it was unmounted).
    async fn remove_dir(&self, path: &Path, deadline: Instant) -> Result<(), NodeError> {
        let target = path.to_path_buf();
        match self.bounded(path, "rmdir", deadline, move || std::fs::remove_dir(&target)).await? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            // A file where the kubelet expected a directory (some COs create target files).
            Err(e) if errno_of(&e) == Errno::ENOTDIR => {
                let target = path.to_path_buf();
                self.bounded(path, "unlink", deadline, move || std::fs::remove_file(&target))
                    .await?
                    .map_err(|e| NodeError::Io(format!("removing {}: {e}", path.display())))
            }
            Err(e) => Err(NodeError::Io(format!("removing {}: {e}", path.display()))),
        }
    }

    async fn stage(&self, req: NodeStageVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        let staging = self.check_path("staging_target_path", &req.staging_target_path)?;
        let mut options = mount_flags(&req.volume_capability)?;
        if options.is_empty() {
            options = lustre::DEFAULT_OPTIONS.iter().map(|s| s.to_string()).collect();
        }
        lustre::check_options(&options)?;
        let dns_name = req.volume_context.get(CONTEXT_DNS_NAME).map(String::as_str).unwrap_or("");
        let mount_name = req.volume_context.get(CONTEXT_MOUNT_NAME).map(String::as_str).unwrap_or("");
        if !lustre::is_host_name(dns_name) {
            return Err(invalid(format!(
                "volume_context {CONTEXT_DNS_NAME} {dns_name:?} must be the file system's DNS name"
            )));
        }
        if !lustre::is_mount_name(mount_name) {
            return Err(invalid(format!(
                "volume_context {CONTEXT_MOUNT_NAME} {mount_name:?} must be 1-8 of A-Z a-z 0-9 _ -"
            )));
        }

        let _guards = self.lock(&[&req.volume_id, &req.staging_target_path])?;
        if let Some(e) = mountinfo::at(&self.table()?, &staging) {
            if e.fstype == self.options.fstype && lustre::fsname_of(&e.source) == Some(mount_name) {
                tracing::info!("already staged");
                return Ok(());
            }
            return Err(NodeError::AlreadyExists(format!(
                "staging path {} is already mounted with {} {}, not this volume",
                staging.display(),
                e.fstype,
                e.source
            )));
        }
        self.refuse_if_running(&staging)?;

        // Name resolution can block too: it runs in the worker with the mount.
        let mounter = Arc::clone(&self.mounter);
        let host = dns_name.to_string();
        let fsname = mount_name.to_string();
        let resolved = self
            .bounded(&staging, "resolve", deadline, move || {
                lustre::source(&[vec![host]], &fsname, None, &|h: &str| mounter.resolve(h))
            })
            .await??;
        let (flags, data) = lustre::flags_and_data(&options, &resolved)?;
        let call = lustre::describe_call(&resolved, &staging, &self.options.fstype, flags, &data);
        tracing::info!(%call, "mounting");

        let mounter = Arc::clone(&self.mounter);
        let fstype = self.options.fstype.clone();
        let target = staging.clone();
        let source = resolved.clone();
        let result = self
            .bounded(&staging, "mount", deadline, move || -> Result<(), Errno> {
                let created = match std::fs::symlink_metadata(&target) {
                    Ok(_) => false,
                    Err(_) => {
                        std::fs::create_dir_all(&target).map_err(|e| errno_of(&e))?;
                        true
                    }
                };
                let r = mounter.mount(Some(&source), &target, Some(&fstype), flags, Some(&data));
                if r.is_err() && created {
                    let _ = std::fs::remove_dir(&target);
                }
                r
            })
            .await?;
        result.map_err(|errno| NodeError::Mount { errno, message: explain_mount_errno(errno, &call) })
    }

    async fn unstage(&self, req: NodeUnstageVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        let staging = self.check_path("staging_target_path", &req.staging_target_path)?;
        let _guards = self.lock(&[&req.volume_id, &req.staging_target_path])?;
        self.unmount(&staging, deadline).await?;
        self.remove_dir(&staging, deadline).await
    }

    async fn publish(&self, req: NodePublishVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        if req.staging_target_path.is_empty() {
            return Err(invalid("staging_target_path is required: this driver stages volumes"));
        }
        let staging = self.check_path("staging_target_path", &req.staging_target_path)?;
        let target = self.check_path("target_path", &req.target_path)?;
        let flags = mount_flags(&req.volume_capability)?;
        lustre::check_options(&flags)?;
        let read_only = req.readonly || flags.iter().any(|f| f == "ro");
        let sub = req.volume_context.get(CONTEXT_SUBDIRECTORY).map(String::as_str).unwrap_or("");
        check_subdirectory(sub).map_err(NodeError::Invalid)?;

        let _guards = self.lock(&[&req.volume_id, &req.target_path])?;
        let table = self.table()?;
        let stage = mountinfo::at(&table, &staging).filter(|e| e.fstype == self.options.fstype).ok_or_else(|| {
            NodeError::NotStaged(format!("volume {} is not staged at {}", req.volume_id, staging.display()))
        })?;
        let want_root = if sub.is_empty() { stage.root.clone() } else { stage.root.join(sub) };
        if let Some(e) = mountinfo::at(&table, &target) {
            if e.device == stage.device && e.root == want_root && e.is_read_only() == read_only {
                tracing::info!("already published");
                return Ok(());
            }
            return Err(NodeError::AlreadyExists(format!(
                "target path {} is already mounted ({} {}{}), not this volume as requested",
                target.display(),
                e.fstype,
                e.root.display(),
                if e.is_read_only() { ", read-only" } else { "" }
            )));
        }
        self.refuse_if_running(&target)?;

        let source = if sub.is_empty() { staging.clone() } else { staging.join(sub) };
        let mounter = Arc::clone(&self.mounter);
        let dest = target.clone();
        let result = self
            .bounded(&target, "bind mount", deadline, move || -> Result<(), String> {
                if !source.is_dir() {
                    return Err(format!("{} is not a directory of the file system", source.display()));
                }
                let created = match std::fs::symlink_metadata(&dest) {
                    Ok(_) => false,
                    Err(_) => {
                        std::fs::create_dir_all(&dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
                        true
                    }
                };
                let undo = |created: bool| {
                    if created {
                        let _ = std::fs::remove_dir(&dest);
                    }
                };
                if let Err(e) = mounter.mount(Some(&source.to_string_lossy()), &dest, None, MsFlags::MS_BIND, None) {
                    undo(created);
                    return Err(format!("bind mount {} on {}: {e}: {}", source.display(), dest.display(), e.desc()));
                }
                if read_only {
                    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                    if let Err(e) = mounter.mount(None, &dest, None, flags, None) {
                        let _ = mounter.unmount(&dest, MntFlags::MNT_DETACH);
                        undo(created);
                        return Err(format!("read-only remount of {}: {e}: {}", dest.display(), e.desc()));
                    }
                }
                Ok(())
            })
            .await?;
        result.map_err(NodeError::Io)
    }

    async fn unpublish(&self, req: NodeUnpublishVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        let target = self.check_path("target_path", &req.target_path)?;
        let _guards = self.lock(&[&req.volume_id, &req.target_path])?;
        self.unmount(&target, deadline).await?;
        self.remove_dir(&target, deadline).await
    }

    async fn stats(&self, req: NodeGetVolumeStatsRequest) -> Result<NodeGetVolumeStatsResponse, NodeError> {
        check_volume_id(&req.volume_id)?;
        if req.volume_path.is_empty() {
            return Err(invalid("volume_path is required"));
        }
        // A path that is not absolute, clean and under the kubelet directory cannot hold a
        // volume of ours: for this read-only call that is "not found", and nothing is touched.
        let path = self
            .check_path("volume_path", &req.volume_path)
            .map_err(|e| NodeError::NotFound(format!("no volume at {:?}: {e}", req.volume_path)))?;
        let table = self.table()?;
        let entry = mountinfo::at(&table, &path).cloned();
        let deadline = Instant::now() + STATS_TIME;
        let Some(entry) = entry else {
            let p = path.clone();
            let exists = self.bounded(&path, "stat", deadline, move || p.exists()).await?;
            if !exists {
                return Err(NodeError::NotFound(format!("volume_path {} does not exist", path.display())));
            }
            return Ok(NodeGetVolumeStatsResponse {
                usage: Vec::new(),
                volume_condition: Some(VolumeCondition {
                    abnormal: true,
                    message: format!("{} is not mounted", path.display()),
                }),
            });
        };
        let mounter = Arc::clone(&self.mounter);
        let p = path.clone();
        let usage = match self.bounded(&path, "statvfs", deadline, move || mounter.statvfs(&p)).await {
            Ok(Ok(u)) => Ok(u),
            Ok(Err(e)) => Err(format!("statvfs failed: {e}: {}", e.desc())),
            Err(_) => {
                Err(format!("statvfs did not answer within {}s: the file system is unresponsive", STATS_TIME.as_secs()))
            }
        };
        let lustre = entry.fstype == self.options.fstype;
        let condition = match (&usage, lustre) {
            (Ok(_), true) => VolumeCondition { abnormal: false, message: format!("mounted from {}", entry.source) },
            (Ok(_), false) => VolumeCondition {
                abnormal: true,
                message: format!("{} is a {} mount, not lustre", path.display(), entry.fstype),
            },
            (Err(why), _) => VolumeCondition { abnormal: true, message: why.clone() },
        };
        let usage = usage.map(|u| usage_entries(&u)).unwrap_or_default();
        Ok(NodeGetVolumeStatsResponse { usage, volume_condition: Some(condition) })
    }

    async fn resolve_node_id(&self) -> Result<String, NodeError> {
        self.node_id
            .get_or_try_init(|| async {
                if let Some(id) = self.options.node_id.clone().filter(|s| !s.is_empty()) {
                    return Ok(id);
                }
                instance_id_from_imds().await
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

/// The EC2 instance id from IMDSv2, when no node id was given.
async fn instance_id_from_imds() -> Result<String, NodeError> {
    let client = aws_config::imds::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(2))
        .build();
    let id = tokio::time::timeout(Duration::from_secs(10), client.get("/latest/meta-data/instance-id"))
        .await
        .map_err(|_| {
            NodeError::Io("no node id: set --node-id or CSI_NODE_NAME (IMDSv2 did not answer in time)".into())
        })?
        .map_err(|e| NodeError::Io(format!("no node id: set --node-id or CSI_NODE_NAME (IMDSv2: {e})")))?;
    Ok(String::from(id))
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
        let span = info_span!("NodeStageVolume", volume.id = %req.volume_id, target.path = %req.staging_target_path);
        observe(span, async { Ok(self.stage(req, deadline).await.map(|_| Response::new(NodeStageVolumeResponse {}))?) })
            .await
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let req = request.into_inner();
        let span = info_span!("NodeUnstageVolume", volume.id = %req.volume_id, target.path = %req.staging_target_path);
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
        let span = info_span!("NodePublishVolume", volume.id = %req.volume_id, target.path = %req.target_path);
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
        let span = info_span!("NodeUnpublishVolume", volume.id = %req.volume_id, target.path = %req.target_path);
        observe(span, async {
            Ok(self.unpublish(req, deadline).await.map(|_| Response::new(NodeUnpublishVolumeResponse {}))?)
        })
        .await
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("NodeGetVolumeStats", volume.id = %req.volume_id, target.path = %req.volume_path);
        observe(span, async { Ok(self.stats(req).await.map(Response::new)?) }).await
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
            Ok(Response::new(NodeGetInfoResponse { node_id, max_volumes_per_node: 0, accessible_topology: None }))
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
        assert!(check_volume_id("fs/../x").is_err());
        assert!(check_volume_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn node_error_codes() {
        let s: Status = NodeError::Mount { errno: Errno::ENODEV, message: "m".into() }.into();
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        let s: Status = NodeError::TimedOut { what: "mount", path: "/x".into() }.into();
        assert_eq!(s.code(), tonic::Code::DeadlineExceeded);
        let s: Status = NodeError::Busy("v".into()).into();
        assert_eq!(s.code(), tonic::Code::Aborted);
    }
}
