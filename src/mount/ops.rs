//! The node plugin's mount operations, independent of gRPC: stage a Lustre file system, bind it
//! into a pod, unmount with escalation, remove what is left, and probe a volume's health.
//!
//! Every kernel call goes through the [`Mounter`] on a bounded worker ([`super::worker`]), on
//! paths resolved below the kubelet directory without following symlinks ([`super::paths`]);
//! idempotency comes from `/proc/self/mountinfo` ([`super::mountinfo`]), never from `stat` on
//! a path that may be a dead mount. Errors are one typed [`MountError`], with their cause kept;
//! the CSI layer chooses the gRPC code for each.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use tokio::time::Instant;

use super::lustre::{self, LustreError};
use super::mountinfo::{self, MountEntry};
use super::paths::{self, KubeletDir, KubeletPath, PathError, fd_path};
use super::worker::{self, Lane, Limits, WorkerError, Workers};
use super::{Mounter, Usage, explain_mount_errno};
use crate::text::Shown;

/// The unmount escalation: plain, then `MNT_FORCE` (on EBUSY or a time-out), then a lazy
/// `MNT_DETACH`. Never follows a symlink in the last component.
const UNMOUNT_STEPS: [MntFlags; 3] = [
    MntFlags::UMOUNT_NOFOLLOW,
    MntFlags::UMOUNT_NOFOLLOW.union(MntFlags::MNT_FORCE),
    MntFlags::UMOUNT_NOFOLLOW.union(MntFlags::MNT_DETACH),
];

/// Why a mount operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The path was refused, or a call on it failed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A mount option or the Lustre source was refused, or a host did not resolve.
    #[error(transparent)]
    Lustre(#[from] LustreError),
    /// A call on the same path has not returned yet.
    #[error("a previous {what} on {path} is still running after {}s (the file system may be unresponsive); retry later", .running_for.as_secs())]
    StillRunning { what: &'static str, path: String, running_for: Duration },
    /// Too many calls are blocked on unresponsive file systems.
    #[error(transparent)]
    Saturated(WorkerError),
    /// The deadline passed; the call may still be running.
    #[error(
        "{what} on {path} did not finish in time; the file system may be unresponsive, and a retry will find the real state"
    )]
    TimedOut { what: &'static str, path: String },
    /// The staging path holds another mount.
    #[error("staging path {path} is already mounted with {fstype} {}, not this volume", Shown(.source_text))]
    StagedElsewhere { path: String, fstype: String, source_text: String },
    /// The target path holds another mount.
    #[error("target path {path} is already mounted ({fstype} {root}{}), not this volume as requested", if *.read_only { ", read-only" } else { "" })]
    PublishedElsewhere { path: String, fstype: String, root: String, read_only: bool },
    /// Nothing of this driver is mounted at the staging path.
    #[error("the volume is not staged at {0}")]
    NotStaged(String),
    /// `mount(2)` of the Lustre file system failed; the message says what to check.
    #[error("{message}")]
    Mount {
        message: String,
        #[source]
        errno: Errno,
    },
    /// The bind mount (or its read-only remount) failed.
    #[error("{what} {path}: {errno}: {}", .errno.desc())]
    Bind {
        what: &'static str,
        path: String,
        #[source]
        errno: Errno,
    },
    /// `umount2(2)` failed with something other than busy.
    #[error("unmount {path}: {errno}: {}", .errno.desc())]
    Unmount {
        path: String,
        #[source]
        errno: Errno,
    },
    /// `/proc/self/mountinfo` could not be read.
    #[error("reading /proc/self/mountinfo: {0}")]
    MountTable(#[source] io::Error),
    /// No worker thread could be started.
    #[error("cannot start a worker thread: {0}")]
    Spawn(String),
}

/// What a staging call found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    /// This file system was already mounted there.
    Already,
    /// Mounted now, with this call (as C would write it).
    Mounted(String),
}

/// What a health probe of a published or staged volume found.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// A Lustre mount answering `statvfs`.
    Healthy { usage: Usage, source: String },
    /// A mount of another file system type.
    NotLustre { usage: Usage, fstype: String },
    /// The path exists and nothing is mounted there.
    NotMounted,
    /// The file system did not answer (or its earlier probe has not returned).
    Unresponsive(String),
    /// `statvfs` failed.
    Failed(String),
}

/// The mount engine of one node. See the module docs.
pub struct Mounts {
    dir: Arc<KubeletDir>,
    mounter: Arc<dyn Mounter>,
    workers: Arc<Workers>,
    fstype: String,
    /// One lock per shared mount ([`SHARED_DIR`]): mounting it and binding a volume from it,
    /// or unbinding a volume and unmounting it when it was the last, are one step each.
    shared: std::sync::Mutex<std::collections::HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// The directory, below this driver's plugin directory in the kubelet directory, where the
/// node mounts each file system once for all its subdirectory volumes
/// (`<kubelet-dir>/plugins/fsx.csi.aws.com/lustre/<mountname>-<hash>`, the hash over the host
/// and the file system's mount options). Below the kubelet directory, so the mounts propagate
/// to the host and outlive a restart of the plugin.
pub const SHARED_DIR: &str = "lustre";

fn worker_error(e: WorkerError, path: &Path, what: &'static str) -> MountError {
    let path = path.display().to_string();
    match e {
        WorkerError::TimedOut => MountError::TimedOut { what, path },
        WorkerError::PathBusy { what, running_for } => MountError::StillRunning { what, path, running_for },
        e @ WorkerError::Saturated { .. } => MountError::Saturated(e),
        WorkerError::Spawn(e) => MountError::Spawn(e),
    }
}

impl Mounts {
    /// Opens the kubelet directory (canonicalized once) and sets up the workers. `fstype` is
    /// what `mount(2)` is given for staging (`lustre`).
    pub fn new(kubelet_dir: &Path, mounter: Arc<dyn Mounter>, limits: Limits, fstype: &str) -> io::Result<Self> {
        Ok(Self {
            dir: Arc::new(KubeletDir::new(kubelet_dir)?),
            mounter,
            workers: Arc::new(Workers::with_limits(limits)),
            fstype: fstype.to_string(),
            shared: Default::default(),
        })
    }

    /// The textual check of a request path (see [`KubeletDir::check`]).
    pub fn check(&self, field: &'static str, path: &str) -> Result<KubeletPath, PathError> {
        self.dir.check(field, path)
    }

    fn table(&self) -> Result<Vec<MountEntry>, MountError> {
        self.mounter.mount_table().map(|t| mountinfo::parse(&t)).map_err(MountError::MountTable)
    }

    async fn bounded<T: Send + 'static>(
        &self,
        path: &Path,
        what: &'static str,
        lane: Lane,
        max_on_path: usize,
        deadline: Instant,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, MountError> {
        worker::run_beside(&self.workers, path, what, lane, max_on_path, deadline, f)
            .await
            .map_err(|e| worker_error(e, path, what))
    }

    async fn stage_inner(
        &self,
        staging: &KubeletPath,
        host: &str,
        fsname: &str,
        options: &[String],
        deadline: Instant,
    ) -> Result<Staged, MountError> {
        if let Some(e) = mountinfo::at(&self.table()?, staging.real()) {
            if e.fstype == self.fstype && lustre::fsname_of(&e.source) == Some(fsname) {
                return Ok(Staged::Already);
            }
            return Err(MountError::StagedElsewhere {
                path: staging.real().display().to_string(),
                fstype: e.fstype.clone(),
                source_text: e.source.clone(),
            });
        }
        // Name resolution can block too: it runs in a worker, like the mount.
        let (mounter, host, name) = (Arc::clone(&self.mounter), host.to_string(), fsname.to_string());
        let resolve = move || lustre::source(&[vec![host]], &name, None, &|h: &str| mounter.resolve(h));
        let source = self.bounded(staging.real(), "resolve", Lane::Change, 1, deadline, resolve).await??;
        let (flags, data) = lustre::flags_and_data(options, &source)?;
        let call = lustre::describe_call(&source, staging.real(), &self.fstype, flags, &data);
        tracing::info!(%call, "mounting");
        let (mounter, dir, fstype, target) =
            (Arc::clone(&self.mounter), Arc::clone(&self.dir), self.fstype.clone(), staging.clone());
        let described = call.clone();
        self.bounded(staging.real(), "mount", Lane::Change, 1, deadline, move || -> Result<(), MountError> {
            let (fd, created) = dir.create(&target)?;
            let result = mounter.mount(Some(&source), &fd_path(&fd), Some(&fstype), flags, Some(&data));
            drop(fd);
            result.map_err(|errno| {
                if created {
                    let _ = dir.remove(&target);
                }
                MountError::Mount { message: explain_mount_errno(errno, &described), errno }
            })
        })
        .await??;
        Ok(Staged::Mounted(call))
    }

    /// Bind-mounts the file system staged at `staging` (or its subdirectory `sub`) on
    /// `target`, read-only if asked. Idempotent: the same bind already there succeeds; another
    /// mount there is [`MountError::PublishedElsewhere`].
    pub async fn publish(
        &self,
        staging: &KubeletPath,
        sub: &str,
        target: &KubeletPath,
        read_only: bool,
        deadline: Instant,
    ) -> Result<bool, MountError> {
        timed("bind_mount", self.publish_inner(staging, sub, target, read_only, deadline)).await
    }

    async fn publish_inner(
        &self,
        staging: &KubeletPath,
        sub: &str,
        target: &KubeletPath,
        read_only: bool,
        deadline: Instant,
    ) -> Result<bool, MountError> {
        paths::check_subdirectory(sub).map_err(|why| PathError::Invalid {
            field: "subdirectory",
            path: Shown(sub).to_string(),
            why,
        })?;
        let table = self.table()?;
        let stage = mountinfo::at(&table, staging.real())
            .filter(|e| e.fstype == self.fstype)
            .ok_or_else(|| MountError::NotStaged(staging.real().display().to_string()))?;
        // A subdirectory volume staged as a bind of its directory (see [`Mounts::stage`])
        // is published whole; one staged as the file system's root (static volumes staged before
        // shared mounts, or by the Go driver) is published from its subdirectory.
        let sub = if !sub.is_empty() && stage.root == Path::new("/").join(sub) { "" } else { sub };
        let want_root = if sub.is_empty() { stage.root.clone() } else { stage.root.join(sub) };
        // A bind mount inherits the staged mount's per-mount flags (nosuid, nodev, noexec,
        // atime): the read-only remount must keep them, and an existing target must have them.
        let flags = stage.per_mount_flags();
        if let Some(e) = mountinfo::at(&table, target.real()) {
            if e.device == stage.device
                && e.root == want_root
                && e.is_read_only() == (read_only || stage.is_read_only())
                && e.per_mount_flags() == flags
            {
                return Ok(false);
            }
            return Err(MountError::PublishedElsewhere {
                path: target.real().display().to_string(),
                fstype: e.fstype.clone(),
                root: e.root.display().to_string(),
                read_only: e.is_read_only(),
            });
        }
        let (mounter, dir) = (Arc::clone(&self.mounter), Arc::clone(&self.dir));
        let (staging, sub, target) = (staging.clone(), sub.to_string(), target.clone());
        let real = target.real().to_path_buf();
        let remount = read_only.then_some(flags | MsFlags::MS_RDONLY);
        self.bounded(&real, "bind mount", Lane::Change, 1, deadline, move || {
            bind(&*mounter, &dir, &staging, &sub, &target, remount)
        })
        .await??;
        Ok(true)
    }

    /// Stages the Lustre file system `fsname` served by `host` at `staging` with `options`
    /// (already checked), creating the directory if needed (and removing it again if the mount
    /// fails). Idempotent: the same file system already there is [`Staged::Already`].
    ///
    /// With a subdirectory `sub` (a subdirectory volume), the file system is mounted once per node (per set of file-system options) in
    /// [`SHARED_DIR`], and `staging` is a bind of its directory `sub` (opened without
    /// following a symlink), with the volume's per-mount flags (`ro`, `nosuid`, ...). So ten
    /// subdirectory volumes of one file system cost one Lustre client instance, not ten.
    /// A volume staged as the file system's root (before shared mounts) counts as staged.
    pub async fn stage(
        &self,
        staging: &KubeletPath,
        host: &str,
        fsname: &str,
        sub: &str,
        options: &[String],
        deadline: Instant,
    ) -> Result<Staged, MountError> {
        timed("mount", self.stage_shared_inner(staging, host, fsname, sub, options, deadline)).await
    }

    async fn stage_shared_inner(
        &self,
        staging: &KubeletPath,
        host: &str,
        fsname: &str,
        sub: &str,
        options: &[String],
        deadline: Instant,
    ) -> Result<Staged, MountError> {
        if sub.is_empty() {
            return self.stage_inner(staging, host, fsname, options, deadline).await;
        }
        paths::check_subdirectory(sub).map_err(|why| PathError::Invalid {
            field: "subdirectory",
            path: Shown(sub).to_string(),
            why,
        })?;
        let staged_as = |e: &MountEntry| {
            e.fstype == self.fstype
                && lustre::fsname_of(&e.source) == Some(fsname)
                && (e.root == Path::new("/") || e.root == Path::new("/").join(sub))
        };
        if let Some(e) = mountinfo::at(&self.table()?, staging.real()) {
            if staged_as(e) {
                return Ok(Staged::Already);
            }
            return Err(MountError::StagedElsewhere {
                path: staging.real().display().to_string(),
                fstype: e.fstype.clone(),
                source_text: format!("{}:{}", e.source, e.root.display()),
            });
        }
        let (mut shared, flags) = lustre::split_per_mount(options)?;
        let root = self.shared_root(host, fsname, &shared)?;
        // Nothing is ever published from the shared mount itself.
        shared.extend(["nosuid".to_string(), "nodev".to_string()]);
        let _held = self.hold_shared(&root, deadline).await?;
        let mounted = self.stage_inner(&root, host, fsname, &shared, deadline).await?;
        let (mounter, dir) = (Arc::clone(&self.mounter), Arc::clone(&self.dir));
        let (from, below, to) = (root.clone(), sub.to_string(), staging.clone());
        let bound = self
            .bounded(staging.real(), "bind mount", Lane::Change, 1, deadline, move || {
                bind(&*mounter, &dir, &from, &below, &to, Some(flags))
            })
            .await
            .and_then(|r| r);
        if let Err(e) = bound {
            if let Err(undo) = self.release_shared(&root, deadline).await {
                tracing::warn!(error = %undo, shared = %root.real().display(), "the shared mount stays after a failed bind");
            }
            return Err(e);
        }
        let shown = format!("bind of {}/{sub}", root.real().display());
        Ok(Staged::Mounted(match mounted {
            Staged::Mounted(call) => format!("{call}, then {shown}"),
            Staged::Already => shown,
        }))
    }

    /// Unmounts and removes `staging`; if it was a bind from a shared mount ([`SHARED_DIR`]) and
    /// the last use of it, the shared mount goes too. The count comes from the mount table, so
    /// it survives a restart of the plugin.
    pub async fn unstage(&self, staging: &KubeletPath, deadline: Instant) -> Result<(), MountError> {
        timed("unmount", self.unstage_inner(staging, deadline)).await
    }

    async fn unstage_inner(&self, staging: &KubeletPath, deadline: Instant) -> Result<(), MountError> {
        let table = self.table()?;
        let Some(root) = mountinfo::at(&table, staging.real()).and_then(|e| self.shared_root_of(&table, e)) else {
            return self.unmount_and_remove_inner(staging, deadline).await;
        };
        let _held = self.hold_shared(&root, deadline).await?;
        self.unmount_and_remove_inner(staging, deadline).await?;
        self.release_shared(&root, deadline).await
    }

    /// The shared mount of `fsname` from `host` with the file-system options `shared`.
    fn shared_root(&self, host: &str, fsname: &str, shared: &[String]) -> Result<KubeletPath, MountError> {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(host.as_bytes());
        for o in shared {
            hash.update([0]);
            hash.update(o.as_bytes());
        }
        let hex: String = hash.finalize()[..6].iter().map(|b| format!("{b:02x}")).collect();
        let path = self.shared_dir().join(format!("{fsname}-{hex}"));
        Ok(self.dir.check("shared mount", &path.to_string_lossy())?)
    }

    fn shared_dir(&self) -> PathBuf {
        self.dir.real().join("plugins").join(crate::DRIVER_NAME).join(SHARED_DIR)
    }

    /// The shared mount a staging mount `e` is a bind of, if it is one.
    fn shared_root_of(&self, table: &[MountEntry], e: &MountEntry) -> Option<KubeletPath> {
        if e.fstype != self.fstype {
            return None;
        }
        let dir = self.shared_dir();
        let root = table.iter().find(|r| {
            r.device == e.device
                && r.source == e.source
                && r.fstype == e.fstype
                && r.root == Path::new("/")
                && r.mount_point.parent() == Some(dir.as_path())
        })?;
        self.dir.check("shared mount", &root.mount_point.to_string_lossy()).ok()
    }

    async fn hold_shared(
        &self,
        root: &KubeletPath,
        deadline: Instant,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, MountError> {
        let lock = {
            let mut map = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(root.real().to_path_buf()).or_default())
        };
        tokio::time::timeout_at(deadline, lock.lock_owned()).await.map_err(|_| MountError::TimedOut {
            what: "waiting for another call on the shared mount",
            path: root.real().display().to_string(),
        })
    }

    /// Unmounts the shared mount `root` (held) if nothing else of it is mounted any more.
    async fn release_shared(&self, root: &KubeletPath, deadline: Instant) -> Result<(), MountError> {
        let table = self.table()?;
        let Some(r) = mountinfo::at(&table, root.real()) else {
            return Ok(());
        };
        let in_use =
            table.iter().any(|e| e.device == r.device && e.source == r.source && e.mount_point != r.mount_point);
        if in_use {
            return Ok(());
        }
        tracing::info!(shared = %root.real().display(), "the file system's last subdirectory volume on this node is gone: unmounting it");
        self.unmount_and_remove_inner(root, deadline).await
    }

    /// Unmounts everything stacked at `path`, escalating (plain, `MNT_FORCE`, `MNT_DETACH`) on EBUSY
    /// or a time-out, then removes the directory (or a file the kubelet left). Not mounted and
    /// absent count as done.
    pub async fn unmount_and_remove(&self, path: &KubeletPath, deadline: Instant) -> Result<(), MountError> {
        timed("unmount", self.unmount_and_remove_inner(path, deadline)).await
    }

    async fn unmount_and_remove_inner(&self, path: &KubeletPath, deadline: Instant) -> Result<(), MountError> {
        self.unmount(path, deadline).await?;
        let (dir, p) = (Arc::clone(&self.dir), path.clone());
        Ok(self.bounded(path.real(), "rmdir", Lane::Change, 1, deadline, move || dir.remove(&p)).await??)
    }

    async fn unmount(&self, path: &KubeletPath, deadline: Instant) -> Result<(), MountError> {
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
                let step = self.bounded(real, "unmount", Lane::Change, i + 1, step_deadline, move || {
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
                    Err(MountError::TimedOut { .. }) => {
                        tracing::warn!(target.path = %real.display(), ?flags, "unmount: timed out; escalating")
                    }
                    Ok(Ok(Err(errno))) => {
                        return Err(MountError::Unmount { path: real.display().to_string(), errno });
                    }
                    Ok(Err(e)) => return Err(e.into()),
                    Err(e) => return Err(e),
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            if !done {
                return Err(MountError::TimedOut { what: "unmount", path: real.display().to_string() });
            }
        }
        Ok(())
    }

    /// Probes the volume at `path`: at most one probe per path is ever in flight, so a
    /// file system that stopped answering costs one blocked thread, and later probes answer at
    /// once from what is known. Errors: the path does not exist, or is refused.
    pub async fn health(&self, path: &KubeletPath, deadline: Instant) -> Result<Health, MountError> {
        timed("stats", self.health_inner(path, deadline)).await
    }

    async fn health_inner(&self, path: &KubeletPath, deadline: Instant) -> Result<Health, MountError> {
        let real: PathBuf = path.real().to_path_buf();
        let entry = mountinfo::at(&self.table()?, &real).cloned();
        let unresponsive = |e: MountError| match e {
            MountError::StillRunning { what, running_for, .. } => Ok(Health::Unresponsive(format!(
                "a previous {what} on {} has not returned for {}s: the file system is unresponsive",
                real.display(),
                running_for.as_secs()
            ))),
            MountError::TimedOut { what, .. } => {
                Ok(Health::Unresponsive(format!("{what} did not answer in time: the file system is unresponsive")))
            }
            other => Err(other),
        };
        let (dir, p) = (Arc::clone(&self.dir), path.clone());
        let Some(entry) = entry else {
            return match self.bounded(&real, "stat", Lane::Probe, 1, deadline, move || dir.open(&p).map(drop)).await {
                Ok(Ok(())) => Ok(Health::NotMounted),
                Ok(Err(e @ PathError::NotDirectory { .. })) => {
                    tracing::debug!(error = %e, "not a directory");
                    Ok(Health::NotMounted)
                }
                Ok(Err(e)) => Err(e.into()),
                Err(e) => unresponsive(e),
            };
        };
        let mounter = Arc::clone(&self.mounter);
        let probe = self.bounded(&real, "statvfs", Lane::Probe, 1, deadline, move || {
            let fd = dir.open(&p)?;
            Ok::<_, PathError>(mounter.statvfs(&fd_path(&fd)))
        });
        match probe.await {
            Ok(Ok(Ok(usage))) if entry.fstype == self.fstype => Ok(Health::Healthy { usage, source: entry.source }),
            Ok(Ok(Ok(usage))) => Ok(Health::NotLustre { usage, fstype: entry.fstype }),
            Ok(Ok(Err(errno))) => Ok(Health::Failed(format!("statvfs failed: {errno}: {}", errno.desc()))),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => unresponsive(e),
        }
    }
}

/// Bind-mounts the staged file system (or its subdirectory `sub`) on `target`, creating
/// `target` if needed and removing it again if the mount fails. With `remount_with`, the bind
/// is then remounted with exactly those per-mount flags (a bind remount replaces them all, so
/// a read-only publish passes `MS_RDONLY` with the staged mount's flags kept). Every path is resolved below the kubelet directory without
/// following symlinks, including `sub` inside the file system, whose contents users control.
/// Runs on a worker thread.
fn bind(
    mounter: &dyn Mounter,
    dir: &KubeletDir,
    staging: &KubeletPath,
    sub: &str,
    target: &KubeletPath,
    remount_with: Option<MsFlags>,
) -> Result<(), MountError> {
    let staged = dir.open(staging)?;
    let source = paths::open_below(&staged, sub, "subdirectory", staging.real())?;
    let (dest, created) = dir.create(target)?;
    let undo = || {
        if created {
            let _ = dir.remove(target);
        }
    };
    let shown = target.real().display().to_string();
    let source = fd_path(&source).to_string_lossy().into_owned();
    if let Err(errno) = mounter.mount(Some(&source), &fd_path(&dest), None, MsFlags::MS_BIND, None) {
        drop(dest);
        undo();
        return Err(MountError::Bind { what: "bind mount on", path: shown, errno });
    }
    if let Some(wanted) = remount_with {
        // The descriptor opened before the mount refers to the directory underneath; the new
        // mount is reached through its name in the parent.
        let remount = (|| -> Result<Result<(), Errno>, PathError> {
            let (parent, name) = dir.open_parent(target)?;
            let top = KubeletDir::open_in(&parent, name, target)?;
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | wanted;
            if let Err(errno) = mounter.mount(None, &fd_path(&top), None, flags, None) {
                return Ok(Err(errno));
            }
            // The remount is this namespace's alone: the host's copy of the target (what the
            // runtime gives the pod) is made read-only by mounting the read-only mount again.
            Ok(match mounter.republish(&fd_path(&top), std::os::fd::AsFd::as_fd(&parent), name) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    tracing::warn!(target = %shown, "this kernel has no open_tree(2) (Linux 5.2): the read-only flag of the target stays in the node plugin's mount namespace; the pod is still read-only through its runtime");
                    Ok(())
                }
                Err(errno) => Err(errno),
            })
        })();
        let failure = match remount {
            Ok(Ok(())) => None,
            Ok(Err(errno)) => Some(MountError::Bind { what: "remount of", path: shown, errno }),
            Err(e) => Some(e.into()),
        };
        if let Some(error) = failure {
            if let Ok((parent, name)) = dir.open_parent(target) {
                let flags = MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW;
                let _ = mounter.unmount(&KubeletDir::name_in(&parent, name), flags);
            }
            drop(dest);
            undo();
            return Err(error);
        }
    }
    Ok(())
}

/// Runs a node operation and records its duration and result ([`crate::metrics`]).
async fn timed<T: Outcome>(
    operation: &'static str,
    f: impl Future<Output = Result<T, MountError>>,
) -> Result<T, MountError> {
    use crate::metrics::NodeResult;
    let start = Instant::now();
    let result = f.await;
    let outcome = match &result {
        Ok(v) if v.unresponsive() => NodeResult::Timeout,
        Ok(_) => NodeResult::Success,
        Err(MountError::TimedOut { .. }) => NodeResult::Timeout,
        Err(MountError::StillRunning { .. } | MountError::Saturated(_)) => NodeResult::Refused,
        Err(_) => NodeResult::Error,
    };
    crate::metrics::get().node_operation(operation, outcome, start.elapsed());
    result
}

/// What a successful node operation says about the file system's health.
trait Outcome {
    fn unresponsive(&self) -> bool {
        false
    }
}

impl Outcome for () {}
impl Outcome for bool {}
impl Outcome for Staged {}
impl Outcome for Health {
    fn unresponsive(&self) -> bool {
        matches!(self, Health::Unresponsive(_))
    }
}
