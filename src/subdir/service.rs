//! The controller's subdirectory volumes: create, delete and expand, on the file system
//! itself through [`Roots`] (a Lustre mount per file system) and [`Quotas`].
//!
//! - **Create**: the StorageClass is checked first (no call at all for a bad one); the file
//!   system is described once and cached while it is AVAILABLE (Lustre, AVAILABLE, 2.15 or
//!   later when the quota is asked for: `FailedPrecondition` otherwise); then, on the file
//!   system, the name gets its project id ([`Registry::reserve`]), the directory is made with
//!   its owner and mode, given the project id with inheritance, and the quota set. Every step
//!   is idempotent, so a retry after any failure (or a restart, or another controller) picks
//!   up where the last one stopped, and the name has exactly one directory.
//! - **Delete** follows the record's `onDelete`: `delete` renames the directory into the
//!   trash (atomic, whatever its size), unbinds the name and answers; the tree is then removed
//!   in the background, the quota cleared and the id released. An interrupted removal resumes
//!   when the file system's registry is next opened, or on a DeleteVolume retry.
//! - **Expand** raises the quota; nothing to do on the nodes.
//!
//! Calls on the file system run on worker threads bounded by the caller's deadline
//! ([`crate::mount::worker`]): a Lustre server that stops answering costs a thread, never a
//! stuck call.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::id::SubdirId;
use super::params::SubdirParams;
use super::quota::Quotas;
use super::registry::{OnDelete, Record, Registry, State};
use crate::fsx::{FileSystem, Fsx, FsxError};
use crate::guard::{Guards, Key};
use crate::mount::worker::{self, Lane, Limits, WorkerError, Workers};
use crate::provision::params::ParamError;
use crate::text::Shown;

/// How long a described file system is trusted (its DNS name and mount name never change;
/// its lifecycle and version rarely do).
pub const DESCRIBE_TTL: Duration = Duration::from_secs(300);

/// How old a reservation never bound to its name must be before it is released (far longer
/// than the two links of a reservation take, whatever the file system's latency).
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// The oldest Lustre version whose project quotas FSx enforces.
pub const QUOTA_VERSION: (u32, u32) = (2, 15);

/// Where the controller reaches a file system's root directory.
pub trait Roots: Send + Sync + 'static {
    /// Opens the root directory of `fs`, mounting it on first use. Blocks (a mount may hang).
    fn open(&self, fs: &FileSystem) -> io::Result<OwnedFd>;
}

/// Why a subdirectory call did not succeed; `crate::csi::controller::failure` gives each
/// its code.
#[derive(Debug, thiserror::Error)]
pub enum SubdirError {
    #[error(transparent)]
    Parameter(#[from] ParamError),
    /// A request that cannot be a subdirectory volume (a size, a content source).
    #[error("{0}")]
    Invalid(String),
    /// The StorageClass's file system cannot hold subdirectory volumes as asked.
    #[error("{0}")]
    FileSystem(String),
    #[error("volume {} already exists as {id} with other parameters: {reason}", Shown(.name))]
    AlreadyExists { name: String, id: String, reason: String },
    #[error("an operation on {} is already in progress; retry later", Shown(.0))]
    Busy(String),
    #[error("volume {} not found", Shown(.0))]
    NotFound(String),
    /// The file system did not answer in time (the call may still complete).
    #[error("{what} on {fs} did not finish before the caller's deadline ({why}); the call will complete on a retry")]
    Slow { what: &'static str, fs: String, why: WorkerError },
    #[error("{what} on {fs} failed: {error}")]
    Io { what: &'static str, fs: String, error: io::Error },
    #[error(transparent)]
    Fsx(#[from] FsxError),
    /// Subdirectory volumes are not enabled in this controller.
    #[error(
        "provisioningMode: subdirectory is not enabled in this controller: install with the chart value controller.subdirectoryVolumes.enabled=true or the kustomize component deploy/kubernetes/components/subdirectory (it lets the controller mount Lustre)"
    )]
    NotEnabled,
}

/// A volume the controller made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubdirVolume {
    pub id: SubdirId,
    pub capacity_bytes: i64,
    /// The directory, relative to the file system's root.
    pub path: String,
    pub dns_name: String,
    pub mount_name: String,
}

/// What a CreateVolume asks of a subdirectory class.
pub struct SubdirRequest<'a> {
    pub name: &'a str,
    pub required_bytes: i64,
    pub limit_bytes: i64,
    pub parameters: &'a HashMap<String, String>,
}

/// The controller's subdirectory volumes.
pub struct Subdirs {
    fsx: Arc<dyn Fsx>,
    roots: Arc<dyn Roots>,
    quotas: Arc<dyn Quotas>,
    workers: Arc<Workers>,
    busy: Arc<Guards>,
    described: tokio::sync::Mutex<HashMap<String, (FileSystem, Instant)>>,
    registries: Mutex<HashMap<String, Arc<Registry>>>,
    /// Trash removals running (file system, project id).
    removing: Arc<Mutex<HashSet<(String, u32)>>>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `2.15` → `(2, 15)`.
fn version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl Subdirs {
    pub fn new(fsx: Arc<dyn Fsx>, roots: Arc<dyn Roots>, quotas: Arc<dyn Quotas>) -> Self {
        Self {
            fsx,
            roots,
            quotas,
            workers: Arc::new(Workers::with_limits(Limits::default())),
            busy: Guards::new(),
            described: tokio::sync::Mutex::new(HashMap::new()),
            registries: Mutex::new(HashMap::new()),
            removing: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The file system `id`, described once and cached while AVAILABLE (so ten claims on it
    /// cost one DescribeFileSystems). `None` if FSx does not know it.
    async fn describe(&self, id: &str) -> Result<Option<FileSystem>, SubdirError> {
        let mut cache = self.described.lock().await;
        if let Some((fs, at)) = cache.get(id)
            && at.elapsed() < DESCRIBE_TTL
        {
            return Ok(Some(fs.clone()));
        }
        let found = match self.fsx.describe_file_systems(&[id.to_string()]).await {
            Ok(mut v) => v.pop(),
            Err(FsxError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        match &found {
            Some(fs) if fs.lifecycle.is_usable() => {
                cache.insert(id.to_string(), (fs.clone(), Instant::now()));
            }
            _ => {
                cache.remove(id);
            }
        }
        Ok(found)
    }

    /// The checks of a file system before anything is made on it.
    fn check_file_system(fs: &FileSystem, quota: bool) -> Result<(), SubdirError> {
        if fs.dns_name.is_empty() || fs.mount_name.is_empty() {
            return Err(SubdirError::FileSystem(format!(
                "{} is not an FSx for Lustre file system with a DNS name and mount name",
                fs.id
            )));
        }
        if !fs.lifecycle.is_usable() {
            return Err(SubdirError::FileSystem(format!(
                "file system {} is {}, not AVAILABLE: directories are made once it is",
                fs.id, fs.lifecycle
            )));
        }
        if quota {
            let v = fs.lustre.file_system_type_version.as_deref().unwrap_or("unknown");
            if version(v).is_none_or(|v| v < QUOTA_VERSION) {
                return Err(SubdirError::FileSystem(format!(
                    "file system {} runs Lustre {v}, and FSx enforces project quotas from Lustre 2.15: set projectQuota: \"false\" in the StorageClass (claims are then not limited to their size), or upgrade the file system to 2.15 in place (a VolumeAttributesClass with fileSystemTypeVersion: \"2.15\" on a claim of it, or the FSx console)",
                    fs.id
                )));
            }
        }
        Ok(())
    }

    /// Runs `f` on a worker thread until `deadline`.
    async fn blocking<T: Send + 'static>(
        &self,
        fs: &str,
        key: &str,
        what: &'static str,
        deadline: Instant,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<T, SubdirError> {
        let path = PathBuf::from(format!("{fs}/{key}"));
        match worker::run_beside(&self.workers, &path, what, Lane::Change, 1, deadline, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(error)) => Err(SubdirError::Io { what, fs: fs.to_string(), error }),
            Err(why) => Err(SubdirError::Slow { what, fs: fs.to_string(), why }),
        }
    }

    /// The registry of `fs`, its root opened (mounted) on first use. Opening it resumes the
    /// removals an earlier controller left in its trash.
    async fn registry(&self, fs: &FileSystem, deadline: Instant) -> Result<Arc<Registry>, SubdirError> {
        if let Some(r) = self.registries.lock().unwrap_or_else(|p| p.into_inner()).get(&fs.id) {
            return Ok(Arc::clone(r));
        }
        let roots = Arc::clone(&self.roots);
        let target = fs.clone();
        let registry = self
            .blocking(&fs.id, "", "mounting the file system and opening its registry", deadline, move || {
                Registry::open(roots.open(&target)?)
            })
            .await?;
        let registry = Arc::new(registry);
        let registry = Arc::clone(
            self.registries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(fs.id.clone())
                .or_insert_with(|| Arc::clone(&registry)),
        );
        match registry.trashed() {
            Ok(ids) => {
                for id in ids {
                    self.remove_in_background(&fs.id, &registry, id);
                }
            }
            Err(e) => tracing::warn!(fs = %fs.id, error = %e, "cannot list the registry's trash"),
        }
        self.collect_in_background(&fs.id, &registry);
        Ok(registry)
    }

    /// Releases, off the caller's path, the reservations crashed calls left on `fs`
    /// ([`Registry::collect_orphans`]); once per registry opening, so once per controller
    /// start and file system.
    fn collect_in_background(&self, fs: &str, registry: &Arc<Registry>) {
        let registry = Arc::clone(registry);
        let fs = fs.to_string();
        tokio::task::spawn_blocking(move || match registry.collect_orphans(now_secs(), ORPHAN_GRACE.as_secs()) {
            Ok((released, staged)) if !released.is_empty() || staged > 0 => {
                tracing::info!(fs = %fs, ?released, staged, "released project ids reserved by calls that did not finish")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(fs = %fs, error = %e, "cannot collect the registry's unfinished reservations"),
        });
    }

    /// Creates (or finds) the volume `req.name`.
    pub async fn create(&self, req: SubdirRequest<'_>, deadline: Instant) -> Result<SubdirVolume, SubdirError> {
        let params = SubdirParams::parse(req.parameters)?;
        let path = params.directory(req.name)?;
        if req.required_bytes < 0 || req.limit_bytes < 0 {
            return Err(SubdirError::Invalid("capacity_range must not be negative".into()));
        }
        if req.limit_bytes > 0 && req.required_bytes > req.limit_bytes {
            return Err(SubdirError::Invalid(format!(
                "required_bytes {} is more than limit_bytes {}",
                req.required_bytes, req.limit_bytes
            )));
        }
        let capacity = if req.required_bytes > 0 { req.required_bytes } else { req.limit_bytes };
        if capacity == 0 && params.quota {
            return Err(SubdirError::Invalid(
                "a subdirectory volume with projectQuota needs a size: the claim's storage request is its limit".into(),
            ));
        }
        let name = req.name.to_string();
        let _guard =
            self.busy.try_lock(Key::VolumeName(name.clone())).ok_or_else(|| SubdirError::Busy(name.clone()))?;
        let fs = self.describe(&params.file_system_id).await?.ok_or_else(|| {
            SubdirError::FileSystem(format!(
                "file system {} (the StorageClass's fileSystemId) does not exist in this account and region",
                params.file_system_id
            ))
        })?;
        Self::check_file_system(&fs, params.quota)?;
        let registry = self.registry(&fs, deadline).await?;

        let record = Record {
            volume: name.clone(),
            claim: params.claim(),
            path: path.clone(),
            capacity_bytes: capacity,
            quota: params.quota,
            on_delete: params.on_delete,
            state: State::Active,
            created: now_secs(),
        };
        let quotas = Arc::clone(&self.quotas);
        let r = Arc::clone(&registry);
        let (uid, gid, mode) = (params.uid, params.gid, params.mode);
        let (project, found) = self
            .blocking(&fs.id, &name, "making the volume's directory", deadline, move || {
                let (project, found) = r.reserve(&record)?;
                if found.path != record.path || found.quota != record.quota || found.state != State::Active {
                    return Ok((project, found));
                }
                let (dir, made) = r.make_directory(&found.path, uid, gid, mode)?;
                if found.quota {
                    if !made {
                        // A directory that was there (ensureUniqueDirectory: "false"): not
                        // while another live volume holds it.
                        let (held, _) = quotas.project_of(dir.as_fd())?;
                        if held != 0 && held != project && r.record(held)?.is_some_and(|o| o.state == State::Active) {
                            // This name holds nothing then: give its reservation back.
                            r.unbind(project, &found)?;
                            r.release(project)?;
                            return Err(io::Error::new(
                                io::ErrorKind::AlreadyExists,
                                format!("the directory {} is volume project {held}'s", found.path),
                            ));
                        }
                    }
                    quotas.set_project(dir.as_fd(), project)?;
                    quotas.set_limit(r.root(), project, found.capacity_bytes as u64)?;
                }
                Ok((project, found))
            })
            .await
            .map_err(|e| match e {
                SubdirError::Io { error, .. } if error.kind() == io::ErrorKind::AlreadyExists => {
                    SubdirError::AlreadyExists { name: name.clone(), id: fs.id.clone(), reason: error.to_string() }
                }
                e => e,
            })?;
        let id = SubdirId { file_system_id: fs.id.clone(), project };
        let compatible = found.capacity_bytes >= req.required_bytes
            && (req.limit_bytes == 0 || found.capacity_bytes <= req.limit_bytes);
        let reason = if found.path != path {
            Some(format!("its directory is {}, this request's would be {}", Shown(&found.path), Shown(&path)))
        } else if found.quota != params.quota {
            Some(format!("projectQuota is {}, this request asks {}", found.quota, params.quota))
        } else if found.state != State::Active {
            Some("it is being deleted".to_string())
        } else if !compatible {
            Some(format!("it has {} bytes, outside this request's capacity range", found.capacity_bytes))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(SubdirError::AlreadyExists { name, id: id.to_string(), reason });
        }
        tracing::info!(volume.id = %id, path = %crate::text::Field(&found.path), "subdirectory volume ready");
        Ok(SubdirVolume {
            id,
            capacity_bytes: found.capacity_bytes,
            path: found.path,
            dns_name: fs.dns_name.clone(),
            mount_name: fs.mount_name.clone(),
        })
    }

    /// Deletes the volume `id` as its record's `onDelete` says. A volume (or file system)
    /// that is gone is deleted.
    pub async fn delete(&self, id: &SubdirId, deadline: Instant) -> Result<(), SubdirError> {
        let key = id.to_string();
        let _guard = self.busy.try_lock(Key::VolumeId(key.clone())).ok_or_else(|| SubdirError::Busy(key.clone()))?;
        let Some(fs) = self.describe(&id.file_system_id).await? else {
            tracing::info!(volume.id = %key, "the file system is gone, and the directory with it");
            return Ok(());
        };
        if !fs.lifecycle.is_usable() {
            return Err(SubdirError::FileSystem(format!(
                "file system {} is {}: the directory is deleted once it is AVAILABLE again",
                fs.id, fs.lifecycle
            )));
        }
        let registry = self.registry(&fs, deadline).await?;
        let r = Arc::clone(&registry);
        let project = id.project;
        let deleting = self
            .blocking(&fs.id, &key, "deleting the volume's directory", deadline, move || {
                let Some(mut record) = r.record(project)? else { return Ok(false) };
                match (record.state.clone(), record.on_delete) {
                    (State::Active, OnDelete::Delete) => {
                        r.move_to_trash(project, &record.path)?;
                        record.state = State::Deleting;
                        r.rewrite(project, &record)?;
                    }
                    (State::Active, OnDelete::Retain) => {
                        record.state = State::Retained;
                        r.rewrite(project, &record)?;
                    }
                    (State::Active, OnDelete::Archive) => {
                        let claim = record.claim.clone().unwrap_or_else(|| record.volume.clone()).replace('/', "-");
                        let name = format!("archived-{claim}-{}", now_secs());
                        if let Some(path) = r.rename_beside(&record.path, &name)? {
                            record.path = path;
                        }
                        record.state = State::Archived;
                        r.rewrite(project, &record)?;
                    }
                    _ => {}
                }
                r.unbind(project, &record)?;
                Ok(record.state == State::Deleting)
            })
            .await?;
        if deleting {
            self.remove_in_background(&fs.id, &registry, id.project);
        }
        tracing::info!(volume.id = %key, "subdirectory volume deleted");
        Ok(())
    }

    /// Removes project `id`'s trash, then clears its quota and releases the id, on a thread
    /// of its own (once per id at a time). A failure is logged; the next open or delete
    /// retries.
    fn remove_in_background(&self, fs: &str, registry: &Arc<Registry>, id: u32) {
        let key = (fs.to_string(), id);
        if !self.removing.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
            return;
        }
        let (r, quotas, removing) = (Arc::clone(registry), Arc::clone(&self.quotas), Arc::clone(&self.removing));
        let spawned = std::thread::Builder::new().name("fsx-trash".into()).spawn(move || {
            let started = std::time::Instant::now();
            let done = (|| {
                r.empty_trash(id)?;
                if r.record(id)?.is_some_and(|rec| rec.quota) {
                    quotas.set_limit(r.root(), id, 0)?;
                }
                r.release(id)
            })();
            match done {
                Ok(()) => tracing::info!(fs = %key.0, project = id, seconds = started.elapsed().as_secs_f64(), "deleted volume's directory removed, its project id released"),
                Err(e) => tracing::warn!(fs = %key.0, project = id, error = %e, "cannot finish removing a deleted volume's directory; retried when the file system is next used"),
            }
            removing.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the trash removal");
            self.removing.lock().unwrap_or_else(|p| p.into_inner()).remove(&(fs.to_string(), id));
        }
    }

    /// True while a removal runs (tests).
    pub fn removing(&self) -> usize {
        self.removing.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The volume `id` as it is (ControllerGetVolume, ValidateVolumeCapabilities):
    /// `NotFound` once deleted.
    pub async fn get(&self, id: &SubdirId, deadline: Instant) -> Result<SubdirVolume, SubdirError> {
        let key = id.to_string();
        let fs = self.describe(&id.file_system_id).await?.ok_or_else(|| SubdirError::NotFound(key.clone()))?;
        Self::check_file_system(&fs, false)?;
        let registry = self.registry(&fs, deadline).await?;
        let project = id.project;
        let record = self
            .blocking(&fs.id, &key, "reading the volume's record", deadline, move || registry.record(project))
            .await?
            .filter(|r| r.state == State::Active)
            .ok_or(SubdirError::NotFound(key))?;
        Ok(SubdirVolume {
            id: id.clone(),
            capacity_bytes: record.capacity_bytes,
            path: record.path,
            dns_name: fs.dns_name.clone(),
            mount_name: fs.mount_name.clone(),
        })
    }

    /// Raises the volume's quota to `required_bytes`; returns its capacity.
    pub async fn expand(
        &self,
        id: &SubdirId,
        required_bytes: i64,
        limit_bytes: i64,
        deadline: Instant,
    ) -> Result<i64, SubdirError> {
        if required_bytes <= 0 || (limit_bytes > 0 && required_bytes > limit_bytes) {
            return Err(SubdirError::Invalid(format!(
                "capacity_range must ask for more than 0 bytes, and no more than its limit (required_bytes {required_bytes}, limit_bytes {limit_bytes})"
            )));
        }
        let key = id.to_string();
        let _guard = self.busy.try_lock(Key::VolumeId(key.clone())).ok_or_else(|| SubdirError::Busy(key.clone()))?;
        let fs = self.describe(&id.file_system_id).await?.ok_or_else(|| SubdirError::NotFound(key.clone()))?;
        Self::check_file_system(&fs, false)?;
        let registry = self.registry(&fs, deadline).await?;
        let (r, quotas, project) = (Arc::clone(&registry), Arc::clone(&self.quotas), id.project);
        let capacity = self
            .blocking(&fs.id, &key, "raising the volume's quota", deadline, move || {
                let Some(mut record) = r.record(project)?.filter(|rec| rec.state == State::Active) else {
                    return Ok(None);
                };
                if record.capacity_bytes >= required_bytes {
                    return Ok(Some(record.capacity_bytes));
                }
                if record.quota {
                    quotas.set_limit(r.root(), project, required_bytes as u64)?;
                }
                record.capacity_bytes = required_bytes;
                r.rewrite(project, &record)?;
                Ok(Some(required_bytes))
            })
            .await?;
        capacity.ok_or(SubdirError::NotFound(key))
    }
}

#[cfg(test)]
mod tests;
