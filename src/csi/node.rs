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
use crate::mount::paths::{self, fd_path, KubeletDir, KubeletPath, PathError};
use crate::mount::worker::{self, Limits, WorkerError, Workers};
use crate::mount::{explain_mount_errno, Mounter, Usage};
use crate::proto::node_server::Node;
use crate::proto::node_service_capability::{rpc, Rpc, Type as CapType};
use crate::proto::*;
use crate::provision::inflight::InFlight;
use crate::text::{Field, Shown};

/// Optional volume attribute: a subdirectory of the file system to publish instead of its
/// root.
pub const CONTEXT_SUBDIRECTORY: &str = "subdirectory";

/// The longest any node call works, below the kubelet's 2-minute CSI time-out.
pub const MAX_OPERATION_TIME: Duration = Duration::from_secs(100);

/// How long `statvfs` may take before the volume is reported abnormal.
const STATS_TIME: Duration = Duration::from_secs(10);

/// The unmount escalation: plain, then `MNT_FORCE` (on EBUSY or a time-out), then a lazy
/// `MNT_DETACH`. Never follows a symlink in the last component.
const UNMOUNT_STEPS: [MntFlags; 3] = [
    MntFlags::UMOUNT_NOFOLLOW,
    MntFlags::UMOUNT_NOFOLLOW.union(MntFlags::MNT_FORCE),
    MntFlags::UMOUNT_NOFOLLOW.union(MntFlags::MNT_DETACH),
];

/// Settings of the node service.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `--node-id` / `CSI_NODE_NAME`; `None` asks IMDSv2 for the instance id.
    pub node_id: Option<String>,
    /// Every staging and target path must lie under this directory.
    pub kubelet_dir: PathBuf,
    /// The fstype passed to `mount(2)` for NodeStageVolume (`lustre`).
    pub fstype: String,
    /// Caps on the worker threads that hung file systems may hold.
    pub worker_limits: Limits,
}

impl NodeOptions {
    /// Options for the real driver.
    pub fn new(node_id: Option<String>, kubelet_dir: PathBuf) -> Self {
        Self { node_id, kubelet_dir, fstype: "lustre".into(), worker_limits: Limits::default() }
    }
}

/// Why a node call did not succeed; the gRPC code for each is chosen in one place below.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("an operation on {0} is already in progress; retry later")]
    Busy(String),
    #[error("a previous {what} on {path} is still running after {}s (the file system may be unresponsive); retry later", .running_for.as_secs())]
    StillRunning { what: &'static str, path: String, running_for: Duration },
    #[error("{0}")]
    Saturated(String),
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
            NodeError::Path(p) if p.is_refusal() => Status::invalid_argument(message),
            NodeError::Path(p) if p.is_not_found() => Status::not_found(message),
            NodeError::Path(_) => Status::internal(message),
            NodeError::Busy(_) | NodeError::StillRunning { .. } => Status::aborted(message),
            NodeError::Saturated(_) => Status::resource_exhausted(message),
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
    dir: Arc<KubeletDir>,
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
        return Err(invalid(format!("volume_id {} must be 1-128 of A-Z a-z 0-9 . _ -", Shown(id))));
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

impl NodeService {
    /// A node service using `mounter` for every kernel call. Opens the kubelet directory
    /// (canonicalized once; see [`crate::mount::paths`]).
    pub fn new(options: NodeOptions, mounter: Arc<dyn Mounter>) -> std::io::Result<Self> {
        let dir = Arc::new(KubeletDir::new(&options.kubelet_dir)?);
        let workers = Arc::new(Workers::with_limits(options.worker_limits));
        Ok(Self { options, dir, mounter, busy: InFlight::new(), workers, node_id: OnceCell::new() })
    }

    fn check_path(&self, field: &'static str, path: &str) -> Result<KubeletPath, NodeError> {
        Ok(self.dir.check(field, path)?)
    }

    fn lock(&self, keys: &[&str]) -> Result<Vec<crate::provision::inflight::Guard>, NodeError> {
        self.busy
            .try_lock_all(keys)
            .ok_or_else(|| NodeError::Busy(keys.iter().map(|k| Field(k).to_string()).collect::<Vec<_>>().join(", ")))
    }

    fn table(&self) -> Result<Vec<MountEntry>, NodeError> {
        let text =
            self.mounter.mount_table().map_err(|e| NodeError::Io(format!("reading /proc/self/mountinfo: {e}")))?;
        Ok(mountinfo::parse(&text))
    }

    /// Runs `f` in a worker bounded by `deadline`, if nothing else runs on `path`.
    async fn bounded<T: Send + 'static>(
        &self,
        path: &Path,
        what: &'static str,
        deadline: Instant,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NodeError> {
        self.bounded_beside(path, what, 1, deadline, f).await
    }

    /// [`NodeService::bounded`], allowing `max_on_path` calls on `path` at once.
    async fn bounded_beside<T: Send + 'static>(
        &self,
        path: &Path,
        what: &'static str,
        max_on_path: usize,
        deadline: Instant,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NodeError> {
        worker::run_beside(&self.workers, path, what, max_on_path, deadline, f)
            .await
            .map_err(|e| worker_error(e, path, what))
    }

    fn deadline(&self, metadata: &tonic::metadata::MetadataMap) -> Instant {
        deadline(metadata).min(Instant::now() + MAX_OPERATION_TIME)
    }

    /// Unmounts everything stacked at `path`, escalating through [`UNMOUNT_STEPS`] on EBUSY
    /// or a time-out. Not mounted counts as done.
    async fn unmount(&self, path: &KubeletPath, deadline: Instant) -> Result<(), NodeError> {
        let real = path.real();
        for _ in 0..8 {
            if mountinfo::at(&self.table()?, real).is_none() {
                return Ok(());
            }
            let mut done = false;
            for (i, flags) in UNMOUNT_STEPS.into_iter().enumerate() {
                let now = Instant::now();
                let left = deadline.saturating_duration_since(now);
                // The first two steps get a share of the time left; the lazy detach the rest.
                let step_deadline = now + left / (UNMOUNT_STEPS.len() - i) as u32;
                let (mounter, dir, target) = (Arc::clone(&self.mounter), Arc::clone(&self.dir), path.clone());
                // Each step may run beside the stuck ones before it: breaking them is its job.
                let step = self.bounded_beside(real, "unmount", i + 1, step_deadline, move || {
                    let (parent, name) = dir.open_parent(&target)?;
                    Ok::<_, PathError>(mounter.unmount(&KubeletDir::name_in(&parent, name), flags))
                });
                match step.await {
                    Ok(Ok(Ok(()) | Err(Errno::EINVAL | Errno::ENOENT))) => {
                        done = true;
                        break;
                    }
                    Ok(Ok(Err(Errno::EBUSY))) => {
                        tracing::warn!(target.path = %real.display(), ?flags, "unmount: busy; escalating")
                    }
                    Err(NodeError::TimedOut { .. }) => {
                        tracing::warn!(target.path = %real.display(), ?flags, "unmount: timed out; escalating")
                    }
                    Ok(Ok(Err(e))) => {
                        return Err(NodeError::Io(format!("unmount {}: {e}: {}", real.display(), e.desc())))
                    }
                    Ok(Err(e)) => return Err(e.into()),
                    Err(e) => return Err(e),
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            if !done {
                return Err(NodeError::TimedOut { what: "unmount", path: real.display().to_string() });
            }
        }
        Ok(())
    }

    /// Removes `path` (an empty directory, or a file the kubelet left) once it is unmounted.
    async fn remove(&self, path: &KubeletPath, deadline: Instant) -> Result<(), NodeError> {
        let (dir, p) = (Arc::clone(&self.dir), path.clone());
        Ok(self.bounded(path.real(), "rmdir", deadline, move || dir.remove(&p)).await??)
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
                "volume_context {CONTEXT_DNS_NAME} {} must be the file system's DNS name",
                Shown(dns_name)
            )));
        }
        if !lustre::is_mount_name(mount_name) {
            return Err(invalid(format!(
                "volume_context {CONTEXT_MOUNT_NAME} {} must be 1-8 of A-Z a-z 0-9 _ -",
                Shown(mount_name)
            )));
        }

        let _guards = self.lock(&[&req.volume_id, &req.staging_target_path])?;
        if let Some(e) = mountinfo::at(&self.table()?, staging.real()) {
            if e.fstype == self.options.fstype && lustre::fsname_of(&e.source) == Some(mount_name) {
                tracing::info!("already staged");
                return Ok(());
            }
            return Err(NodeError::AlreadyExists(format!(
                "staging path {} is already mounted with {} {}, not this volume",
                staging.real().display(),
                e.fstype,
                Shown(&e.source)
            )));
        }

        // Name resolution can block too: it runs in the worker with the mount.
        let mounter = Arc::clone(&self.mounter);
        let host = dns_name.to_string();
        let fsname = mount_name.to_string();
        let resolved = self
            .bounded(staging.real(), "resolve", deadline, move || {
                lustre::source(&[vec![host]], &fsname, None, &|h: &str| mounter.resolve(h))
            })
            .await??;
        let (flags, data) = lustre::flags_and_data(&options, &resolved)?;
        let call = lustre::describe_call(&resolved, staging.real(), &self.options.fstype, flags, &data);
        tracing::info!(%call, "mounting");

        let (mounter, dir) = (Arc::clone(&self.mounter), Arc::clone(&self.dir));
        let fstype = self.options.fstype.clone();
        let target = staging.clone();
        self.bounded(staging.real(), "mount", deadline, move || -> Result<(), NodeError> {
            let (fd, created) = dir.create(&target)?;
            let result = mounter.mount(Some(&resolved), &fd_path(&fd), Some(&fstype), flags, Some(&data));
            drop(fd);
            result.map_err(|errno| {
                if created {
                    let _ = dir.remove(&target);
                }
                NodeError::Mount { errno, message: explain_mount_errno(errno, &call) }
            })
        })
        .await?
    }

    async fn unstage(&self, req: NodeUnstageVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        let staging = self.check_path("staging_target_path", &req.staging_target_path)?;
        let _guards = self.lock(&[&req.volume_id, &req.staging_target_path])?;
        self.unmount(&staging, deadline).await?;
        self.remove(&staging, deadline).await
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
        let sub = req.volume_context.get(CONTEXT_SUBDIRECTORY).cloned().unwrap_or_default();
        paths::check_subdirectory(&sub).map_err(NodeError::Invalid)?;

        let _guards = self.lock(&[&req.volume_id, &req.target_path])?;
        let table = self.table()?;
        let stage =
            mountinfo::at(&table, staging.real()).filter(|e| e.fstype == self.options.fstype).ok_or_else(|| {
                NodeError::NotStaged(format!("volume {} is not staged at {}", req.volume_id, staging.real().display()))
            })?;
        let want_root = if sub.is_empty() { stage.root.clone() } else { stage.root.join(&sub) };
        if let Some(e) = mountinfo::at(&table, target.real()) {
            if e.device == stage.device && e.root == want_root && e.is_read_only() == read_only {
                tracing::info!("already published");
                return Ok(());
            }
            return Err(NodeError::AlreadyExists(format!(
                "target path {} is already mounted ({} {}{}), not this volume as requested",
                target.real().display(),
                e.fstype,
                e.root.display(),
                if e.is_read_only() { ", read-only" } else { "" }
            )));
        }

        let (mounter, dir) = (Arc::clone(&self.mounter), Arc::clone(&self.dir));
        let real = target.real().to_path_buf();
        self.bounded(&real, "bind mount", deadline, move || -> Result<(), NodeError> {
            bind(&*mounter, &dir, &staging, &sub, &target, read_only)
        })
        .await?
    }

    async fn unpublish(&self, req: NodeUnpublishVolumeRequest, deadline: Instant) -> Result<(), NodeError> {
        check_volume_id(&req.volume_id)?;
        let target = self.check_path("target_path", &req.target_path)?;
        let _guards = self.lock(&[&req.volume_id, &req.target_path])?;
        self.unmount(&target, deadline).await?;
        self.remove(&target, deadline).await
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
            .check_path("volume_path", &req.volume_path)
            .map_err(|e| NodeError::NotFound(format!("no volume there: {e}")))?;
        let real = path.real().to_path_buf();
        let entry = mountinfo::at(&self.table()?, &real).cloned();
        let deadline = deadline.min(Instant::now() + STATS_TIME);
        let abnormal = |message: String| NodeGetVolumeStatsResponse {
            usage: Vec::new(),
            volume_condition: Some(VolumeCondition { abnormal: true, message }),
        };
        // A probe already stuck on this path answers for this call too: no second thread.
        let unresponsive = |e: NodeError| match e {
            NodeError::StillRunning { what, running_for, .. } => Ok(abnormal(format!(
                "a previous {what} on {} has not returned for {}s: the file system is unresponsive",
                real.display(),
                running_for.as_secs()
            ))),
            NodeError::TimedOut { what, .. } => Ok(abnormal(format!(
                "{what} did not answer within {}s: the file system is unresponsive",
                STATS_TIME.as_secs()
            ))),
            other => Err(other),
        };
        let (dir, p) = (Arc::clone(&self.dir), path.clone());
        let Some(entry) = entry else {
            let opened = match self.bounded(&real, "stat", deadline, move || dir.open(&p).map(drop)).await {
                Ok(opened) => opened,
                Err(e) => return unresponsive(e),
            };
            return match opened {
                Err(e) if e.is_not_found() => {
                    Err(NodeError::NotFound(format!("volume_path {} does not exist", real.display())))
                }
                Err(e @ PathError::Symlink { .. }) => Err(e.into()),
                _ => Ok(abnormal(format!("{} is not mounted", real.display()))),
            };
        };
        let mounter = Arc::clone(&self.mounter);
        let probe = self.bounded(&real, "statvfs", deadline, move || -> Result<Usage, NodeError> {
            let fd = dir.open(&p)?;
            mounter.statvfs(&fd_path(&fd)).map_err(|e| NodeError::Io(format!("statvfs failed: {e}: {}", e.desc())))
        });
        let usage = match probe.await {
            Ok(Ok(usage)) => usage,
            Ok(Err(e @ NodeError::Path(PathError::Symlink { .. }))) => return Err(e),
            Ok(Err(e)) => return Ok(abnormal(e.to_string())),
            Err(e) => return unresponsive(e),
        };
        let condition = if entry.fstype == self.options.fstype {
            VolumeCondition { abnormal: false, message: format!("mounted from {}", Shown(&entry.source)) }
        } else {
            VolumeCondition {
                abnormal: true,
                message: format!("{} is a {} mount, not lustre", real.display(), entry.fstype),
            }
        };
        Ok(NodeGetVolumeStatsResponse { usage: usage_entries(&usage), volume_condition: Some(condition) })
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

/// What a worker refusal or time-out means for a node call on `path`.
fn worker_error(e: WorkerError, path: &Path, what: &'static str) -> NodeError {
    let path = path.display().to_string();
    match e {
        WorkerError::TimedOut => NodeError::TimedOut { what, path },
        WorkerError::PathBusy { what, running_for } => NodeError::StillRunning { what, path, running_for },
        e @ WorkerError::Saturated { .. } => NodeError::Saturated(e.to_string()),
        WorkerError::Spawn(e) => NodeError::Io(e),
    }
}

/// Bind-mounts the staged file system (or its subdirectory `sub`) on `target`, read-only if
/// asked, creating `target` if needed and removing it again if the mount fails. Every path is
/// resolved below the kubelet directory without following symlinks, including `sub` inside
/// the file system, whose contents users control. Runs on a worker thread.
fn bind(
    mounter: &dyn Mounter,
    dir: &KubeletDir,
    staging: &KubeletPath,
    sub: &str,
    target: &KubeletPath,
    read_only: bool,
) -> Result<(), NodeError> {
    let staged = dir.open(staging)?;
    let source = paths::open_below(&staged, sub, "subdirectory", staging.real())?;
    let (dest, created) = dir.create(target)?;
    let undo = || {
        if created {
            let _ = dir.remove(target);
        }
    };
    let shown = |p: &KubeletPath| p.real().display().to_string();
    if let Err(e) =
        mounter.mount(Some(&fd_path(&source).to_string_lossy()), &fd_path(&dest), None, MsFlags::MS_BIND, None)
    {
        drop(dest);
        undo();
        let from = staging.real().join(sub);
        return Err(NodeError::Io(format!("bind mount {} on {}: {e}: {}", from.display(), shown(target), e.desc())));
    }
    if read_only {
        // The descriptor opened before the mount refers to the directory underneath; the new
        // mount is reached through its name in the parent.
        let remount = (|| -> Result<Result<(), Errno>, PathError> {
            let (parent, name) = dir.open_parent(target)?;
            let top = KubeletDir::open_in(&parent, name, target)?;
            Ok(mounter.mount(
                None,
                &fd_path(&top),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None,
            ))
        })();
        let failed = match remount {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e}: {}", e.desc())),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            if let Ok((parent, name)) = dir.open_parent(target) {
                let _ = mounter
                    .unmount(&KubeletDir::name_in(&parent, name), MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
            }
            drop(dest);
            undo();
            return Err(NodeError::Io(format!("read-only remount of {}: {why}", shown(target))));
        }
    }
    Ok(())
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
