//! The controller's provisioning logic, independent of gRPC.
//!
//! [`Provisioner`] guarantees at most one file system per volume name, whatever the retries,
//! concurrent calls, time-outs or restarts:
//!
//! 1. parameters and capacity are checked before any call ([`params`], `capacity`);
//! 2. a call holds its name in a `crate::guard` (a concurrent call gets `Aborted`);
//! 3. an existing file system is found in the `index`, never by listing the account per call
//!    (the index is refreshed by a listing every `resync_interval`);
//! 4. a new one is created with a deterministic token (`token`), so a lost response or a
//!    restart returns the same file system;
//! 5. the call then waits on the `poller`, making no calls of its own, until AVAILABLE or
//!    its deadline; a FAILED file system is deleted and the next retry starts clean.

pub mod cadence;
pub(crate) mod capacity;
mod error;
mod expand;
pub(crate) mod index;
mod listing;
mod modify;
pub mod params;
mod poller;
mod progress;
mod snapshot;
pub(crate) mod token;

pub use snapshot::SnapshotRequest;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Chain;
use crate::events::{Claim, Events, Kind};
use crate::fsx::{AssociationLifecycle, FileSystem, Fsx, FsxError, Lifecycle, is_file_system_id};
use crate::guard::{Guards, Key};
use crate::topology::{self, PlacementError, Requirement, SubnetError, SubnetZones};
use index::{Backups, FileSystems};
use params::{ParamError, StorageClassParams, keys};

use cadence::Cadence;
pub use error::{CannotExpand, CannotRestore, CannotSnapshot, Pending, ProvisionError};
use listing::Listing;
use poller::{Poller, Seen};

/// `tags` with the [`SOURCE_SNAPSHOT_TAG`](crate::fsx::SOURCE_SNAPSHOT_TAG) naming `backup`
/// second, after the volume name (nothing can override either).
fn with_source_tag(mut tags: Vec<(String, String)>, backup: &str) -> Result<Vec<(String, String)>, ParamError> {
    use crate::fsx::SOURCE_SNAPSHOT_TAG;
    tags.retain(|(k, _)| k != SOURCE_SNAPSHOT_TAG);
    tags.insert(1.min(tags.len()), (SOURCE_SNAPSHOT_TAG.to_string(), backup.to_string()));
    if tags.len() > params::MAX_TAGS {
        return Err(ParamError {
            key: keys::EXTRA_TAGS.into(),
            message: format!(
                "a restored file system carries {SOURCE_SNAPSHOT_TAG} too, {} tags in all; FSx allows at most {}: remove some",
                tags.len(),
                params::MAX_TAGS
            ),
        });
    }
    Ok(tags)
}

/// How many token generations one call may step through when FSx keeps answering with
/// deleted file systems (each step is one CreateFileSystem call).
const MAX_GENERATION_STEPS: u32 = 8;

/// Settings that shape the provisioner.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tags added to every file system (`--extra-tags`).
    pub extra_tags: Vec<(String, String)>,
    /// How often in-flight resources are described (`--poll-interval`); `None`: adaptively
    /// ([`cadence`]).
    pub poll_interval: Option<Duration>,
    /// How often the whole account is listed again to refresh the index (see
    /// [`Provisioner::resync`]).
    pub resync_interval: Duration,
    /// Where subnets' zones are learned (EC2); `None`: unknown, so volumes report no zone and
    /// a StorageClass of several subnets cannot be served.
    pub subnet_zones: Option<Arc<SubnetZones>>,
    /// Where events on claims and VolumeSnapshots go (`None`: the log).
    pub events: Option<Arc<dyn Events>>,
    /// The most often a progress event is posted per resource (`--progress-event-interval`).
    pub progress_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            extra_tags: Vec::new(),
            poll_interval: None,
            resync_interval: Duration::from_secs(300),
            subnet_zones: None,
            events: None,
            progress_every: progress::PROGRESS_EVERY,
        }
    }
}

/// What CreateVolume asks for, gRPC types stripped.
#[derive(Debug, Clone, Copy)]
pub struct CreateRequest<'a> {
    pub name: &'a str,
    pub required_bytes: i64,
    pub limit_bytes: i64,
    pub parameters: &'a HashMap<String, String>,
    /// `volume_content_source.snapshot`: the backup to restore from.
    pub source_snapshot: Option<&'a str>,
    /// `accessibility_requirements`, as zones.
    pub topology: Option<&'a Requirement>,
    /// The claim it is for (events go on it).
    pub claim: Option<&'a Claim>,
}

/// Creates, finds, waits for and deletes file systems. See the module docs.
pub struct Provisioner {
    fsx: Arc<dyn Fsx>,
    index: Arc<FileSystems>,
    backup_index: Arc<Backups>,
    poller: Arc<Poller>,
    busy: Arc<Guards>,
    options: Options,
    /// The start-up listing of file systems: volumes wait on it, and only on it.
    file_systems: Listing,
    /// The start-up listing of backups: CreateSnapshot and ListSnapshots wait on it.
    backups: Listing,
    /// Events on claims and snapshots.
    progress: progress::Progress,
    /// The account's backups could not be listed for lack of permission (logged once).
    backups_denied: AtomicBool,
}

impl Provisioner {
    /// A provisioner over `fsx`. Call [`Provisioner::start`] to load the index and run the
    /// poller.
    pub fn new(fsx: Arc<dyn Fsx>, options: Options) -> Arc<Self> {
        let index = Arc::new(FileSystems::default());
        let backup_index = Arc::new(Backups::default());
        let poller = Poller::new(
            Arc::clone(&fsx),
            Arc::clone(&index),
            Arc::clone(&backup_index),
            Cadence::new(options.poll_interval),
        );
        let progress = progress::Progress::new(
            options.events.clone().unwrap_or_else(|| Arc::new(crate::events::Logged) as Arc<dyn Events>),
            options.progress_every,
        );
        Arc::new(Self {
            fsx,
            index,
            backup_index,
            poller,
            progress,
            busy: Guards::new(),
            options,
            file_systems: Listing::new("file systems"),
            backups: Listing::new("backups"),
            backups_denied: AtomicBool::new(false),
        })
    }

    /// Spawns the start-up listings (each retried until it succeeds, independently: volumes
    /// never wait for backups), the periodic resync and the poller on the current runtime.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(Arc::clone(&self.poller).run());
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.backups
                .load_until_done(|| async {
                    let backups = this.list_backups().await?;
                    for b in &backups {
                        this.backup_index.upsert(b);
                    }
                    Ok(backups.len())
                })
                .await;
        });
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.file_systems
                .load_until_done(|| async {
                    let listed = this.list_tagged().await?;
                    for fs in &listed {
                        this.index.upsert(fs);
                    }
                    Ok(listed.len())
                })
                .await;
            let mut tick = tokio::time::interval(this.options.resync_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match this.resync().await {
                    Ok((kept, dropped)) => {
                        tracing::debug!(file_systems = kept, dropped, "index of CSI file systems refreshed")
                    }
                    // The index stays as it was; the next tick tries again.
                    Err(e) => tracing::warn!(error = %Chain(&e), "refreshing the index of FSx file systems failed"),
                }
            }
        });
    }

    /// One listing of the account (every page): every file system tagged with a volume name.
    async fn list_tagged(&self) -> Result<Vec<FileSystem>, FsxError> {
        let all = self.fsx.list_file_systems().await?;
        Ok(all.into_iter().filter(|fs| fs.volume_name().is_some()).collect())
    }

    /// Every backup of the account. A role without `fsx:DescribeBackups` (an IAM policy from
    /// before snapshots) must not stop volumes: it is logged once, and snapshot calls report
    /// the missing permission themselves.
    async fn list_backups(&self) -> Result<Vec<crate::fsx::Backup>, FsxError> {
        match self.fsx.list_backups().await {
            Ok(b) => Ok(b),
            Err(e @ FsxError::AccessDenied { .. }) => {
                if !self.backups_denied.swap(true, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "cannot list FSx backups: VolumeSnapshots will fail until the IAM policy allows the backup actions in deploy/iam-policy.json; volumes are not affected");
                }
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Refreshes the index from one paged listing of the account, so file systems created or
    /// deleted by another replica (the previous leader) or out of band are known. It runs every
    /// `resync_interval`, never per call. What this process learned while the listing ran wins
    /// over the listing (see `index::Index::apply_listing`). Returns how many file systems were
    /// listed and how many were forgotten.
    pub async fn resync(&self) -> Result<(usize, usize), FsxError> {
        let snapshot = self.index.snapshot();
        let listed = self.list_tagged().await?;
        let dropped = self.index.apply_listing(&snapshot, &listed);
        // Until the start-up listing of backups has loaded, its own task keeps trying.
        if self.backups.is_loaded() {
            let mark = self.backup_index.snapshot();
            let backups = self.list_backups().await?;
            self.backup_index.apply_listing(&mark, &backups);
        }
        Ok((listed.len(), dropped))
    }

    /// True once the index of file systems is loaded (the identity service's Probe reports
    /// this).
    pub fn is_ready(&self) -> bool {
        self.file_systems.is_loaded()
    }

    /// Waits until the index of file systems is loaded, or `deadline`.
    async fn wait_ready(&self, deadline: Instant) -> Result<(), ProvisionError> {
        self.file_systems.wait(deadline).await
    }

    /// `NotReady` (naming the failing listing) until the index of backups has loaded.
    pub fn snapshots_ready(&self) -> Result<(), ProvisionError> {
        if self.backups.is_loaded() {
            return Ok(());
        }
        Err(ProvisionError::NotReady { listing: self.backups.what, cause: self.backups.last_error() })
    }

    /// Waits until the index of backups is loaded, or `deadline`: the snapshot calls that
    /// need it (idempotency by snapshot name, listings).
    pub async fn wait_snapshots_ready(&self, deadline: Instant) -> Result<(), ProvisionError> {
        self.backups.wait(deadline).await
    }

    /// The index (for listings and tests).
    pub fn index(&self) -> &FileSystems {
        &self.index
    }

    /// The index of snapshots (for ListSnapshots and tests).
    pub fn backup_index(&self) -> &Backups {
        &self.backup_index
    }

    /// The poller (for tests and metrics).
    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    /// Validates a CreateVolume request without any FSx call: the typed parameters and the
    /// rounded capacity in GiB.
    pub fn plan(req: &CreateRequest<'_>) -> Result<(StorageClassParams, i64), ProvisionError> {
        params::check_volume_name(req.name)?;
        let params = StorageClassParams::parse(req.parameters)?;
        if params.storage_type.is_elastic() {
            // Intelligent-Tiering has no size to provision: the claim's size is kept as asked
            // (in whole GiB), and no StorageCapacity is sent.
            capacity::check_range(req.required_bytes, req.limit_bytes)?;
            let gib = (req.required_bytes.max(0) + crate::fsx::GIB - 1) / crate::fsx::GIB;
            return Ok((params, gib.min(i64::from(i32::MAX))));
        }
        let steps =
            capacity::steps(params.deployment_type, params.storage_type, params.lustre.per_unit_storage_throughput);
        let what = format!("{} {}", params.deployment_type, params.storage_type);
        let gib = capacity::for_range(steps, &what, req.required_bytes, req.limit_bytes)?;
        Ok((params, gib))
    }

    /// Returns the AVAILABLE file system for `req.name`, creating it if needed, or an error
    /// by `deadline`. Idempotent; see the module docs.
    pub async fn create(&self, req: CreateRequest<'_>, deadline: Instant) -> Result<FileSystem, ProvisionError> {
        let (mut params, capacity_gib) = Self::plan(&req)?;
        let tags = params.tags(req.name, &self.options.extra_tags)?;
        if let Some(id) = req.source_snapshot
            && !crate::fsx::is_backup_id(id)
        {
            return Err(ProvisionError::SnapshotNotFound(id.to_string()));
        }
        self.wait_ready(deadline).await?;
        let name = req.name;
        let _guard = self
            .busy
            .try_lock(Key::VolumeName(name.to_string()))
            .ok_or_else(|| ProvisionError::Busy(name.to_string()))?;
        if let Some(claim) = req.claim {
            self.progress.remember(name, claim);
        }
        // A volume that exists answers a retry as it is, whatever happened to its source
        // backup since; a request for that name with another content source is not a retry.
        let existing = self.index.by_name(name).filter(|fs| fs.lifecycle != Lifecycle::Deleting);
        if let Some(fs) = &existing
            && fs.source_snapshot() != req.source_snapshot
        {
            let was =
                fs.source_snapshot().map_or("created empty".to_string(), |b| format!("restored from snapshot {b}"));
            let asked = req
                .source_snapshot
                .map_or("to create it empty".to_string(), |b| format!("to restore it from snapshot {b}"));
            return Err(ProvisionError::AlreadyExists {
                name: name.to_string(),
                id: fs.id.clone(),
                reason: format!("it was {was}, and this request asks {asked}"),
            });
        }
        // A new file system goes into the subnet of the zone asked for; an existing one stays
        // where it is (its subnet is compared with the class's below).
        if existing.is_none() {
            let requirement = req.topology.cloned().unwrap_or_default();
            if let Some(subnet) = self.place(&params, &requirement).await? {
                params.subnet_id = subnet;
            }
        }
        // A restore has the backup's size, and the keys a backup fixes must be the backup's.
        let (restore, capacity_gib) = match (req.source_snapshot, &existing) {
            (Some(id), None) => {
                let backup = self.restore_source(id, &params, &req, deadline).await?;
                (Some(backup.id), backup.file_system.capacity_gib)
            }
            (Some(id), Some(fs)) => (Some(id.to_string()), fs.capacity_gib),
            (None, _) => (None, capacity_gib),
        };
        let tags = match &restore {
            Some(backup) => with_source_tag(tags, backup)?,
            None => tags,
        };

        let mut steps = 0;
        let fs = loop {
            if let Some(fs) = self.index.by_name(name).filter(|fs| fs.lifecycle != Lifecycle::Deleting) {
                if steps == 0 {
                    crate::metrics::get().duplicate_avoided();
                }
                break fs;
            }
            let generation = self.index.generation(name);
            let token = token::client_request_token(name, generation);
            // capacity_gib fits: capacity::for_range caps it at i32::MAX.
            let spec = params.create_spec(capacity_gib as i32, token, tags.clone());
            let fs = match &restore {
                Some(backup) => {
                    by(deadline, "CreateFileSystemFromBackup", self.fsx.create_file_system_from_backup(backup, &spec))
                        .await?
                }
                None => by(deadline, "CreateFileSystem", self.fsx.create_file_system(&spec)).await?,
            };
            tracing::info!(volume.id = %fs.id, lifecycle = %fs.lifecycle, capacity_gib, generation, "CreateFileSystem answered");
            if fs.lifecycle == Lifecycle::Deleting {
                // The token still answers with a file system deleted earlier (after it
                // failed, or with its old PV): move to the next generation.
                self.index.bump_generation(name, generation);
                steps += 1;
                if steps >= MAX_GENERATION_STEPS {
                    return Err(ProvisionError::StillPending {
                        id: fs.id,
                        pending: Pending::Lifecycle(Lifecycle::Deleting),
                    });
                }
                continue;
            }
            self.index.upsert(&fs);
            if fs.lifecycle == Lifecycle::Creating {
                let what = match &restore {
                    Some(backup) => format!("Restoring backup {backup} as FSx for Lustre file system"),
                    None => "Creating FSx for Lustre file system".into(),
                };
                let class = cadence::Class::file_system(crate::metrics::InFlight::Creating, &fs);
                self.progress.post(
                    name,
                    false,
                    Kind::Normal,
                    progress::reason::CREATING,
                    format!(
                        "{what} {} in {}, {}, {} GiB; FSx usually takes 5 to 15 minutes (expected: {})",
                        fs.id,
                        params.subnet_id,
                        params.deployment_type,
                        fs.capacity_gib,
                        self.poller.expected_text(&class),
                    ),
                );
            }
            break fs;
        };

        if let Some(reason) =
            params.mismatch(&fs).or_else(|| capacity_mismatch(&fs, req.required_bytes, req.limit_bytes))
        {
            return Err(ProvisionError::AlreadyExists { name: name.to_string(), id: fs.id, reason });
        }
        let fs = self.await_available(fs, deadline).await?;
        // Associations link S3 once the file system is AVAILABLE; the volume is not reported
        // ready before every one of them is.
        let specs = params.association_specs(&fs.id, &association_tags(&fs.tags));
        if !specs.is_empty() {
            self.ensure_associations(&fs, specs, deadline).await?;
        }
        Ok(fs)
    }

    /// The subnet a new file system of `params` goes into for `requirement` (see
    /// [`crate::topology`]); `None`: the class's only subnet, whose zone could not be learned
    /// because EC2 refused the call (logged: the volume then reports no zone, as before zones
    /// were known). Zones are learned once per subnet set.
    async fn place(
        &self,
        params: &StorageClassParams,
        requirement: &Requirement,
    ) -> Result<Option<String>, ProvisionError> {
        let single = params.subnet_ids.len() == 1;
        if single && requirement.is_empty() && !params.zonal_affinity {
            return Ok(None);
        }
        let Some(zones) = &self.options.subnet_zones else {
            if single {
                return Ok(None);
            }
            return Err(ProvisionError::Placement(PlacementError::Invalid(
                "this controller cannot learn subnets' zones (no EC2 client): give one subnet".into(),
            )));
        };
        match zones.set(&params.subnet_ids).await {
            Ok(set) => Ok(Some(topology::place(&set, requirement)?.id.clone())),
            Err(PlacementError::Subnets(SubnetError::AccessDenied(why))) if single => {
                tracing::warn!(subnet = %params.subnet_ids[0], error = %why, "the subnet's zone is unknown: the volume reports no zone (allow ec2:DescribeSubnets for zone-aware placement)");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The zone `fs` reports, if the class asks for zonal affinity and its subnet's zone is
    /// known (learned when it was placed: no call here, unless the controller restarted since).
    pub async fn zone_of(&self, parameters: &HashMap<String, String>, fs: &FileSystem) -> Option<String> {
        let params = StorageClassParams::parse(parameters).ok()?;
        if !params.zonal_affinity {
            return None;
        }
        let subnet = fs.subnet_ids.first()?;
        let set = self.options.subnet_zones.as_ref()?.set(&params.subnet_ids).await.ok()?;
        set.get(subnet).map(|s| s.zone.clone())
    }

    /// Finds or creates each of the file system's data repository associations (one listing,
    /// then a create for each one missing) and waits (without API calls) until every one is
    /// AVAILABLE. An association is found again by its file system path, after retries and
    /// restarts; one there linked to another S3 path is a conflict, never replaced.
    async fn ensure_associations(
        &self,
        fs: &FileSystem,
        specs: Vec<crate::fsx::AssociationSpec>,
        deadline: Instant,
    ) -> Result<(), ProvisionError> {
        let existing = by(deadline, "DescribeDataRepositoryAssociations", self.fsx.associations_of(&fs.id)).await?;
        let mut found = Vec::with_capacity(specs.len());
        for spec in &specs {
            let association = match existing
                .iter()
                .find(|a| a.file_system_path == spec.file_system_path && a.lifecycle != AssociationLifecycle::Deleting)
            {
                Some(a) => {
                    if !params::same_s3_path(&a.data_repository_path, &spec.data_repository_path) {
                        return Err(ProvisionError::AlreadyExists {
                            name: fs.volume_name().unwrap_or_default().to_string(),
                            id: fs.id.clone(),
                            reason: format!(
                                "{} is linked to {}, requested {}",
                                a.file_system_path, a.data_repository_path, spec.data_repository_path
                            ),
                        });
                    }
                    a.clone()
                }
                None => {
                    let a = by(
                        deadline,
                        "CreateDataRepositoryAssociation",
                        self.fsx.create_data_repository_association(spec),
                    )
                    .await?;
                    tracing::info!(volume.id = %fs.id, association = %a.id, path = %spec.data_repository_path, "data repository association created");
                    if let Some(volume) = fs.volume_name() {
                        self.progress.post(
                            volume,
                            false,
                            Kind::Normal,
                            progress::reason::LINKING,
                            format!(
                                "Linking {} of {} to {} (association {}); the volume is ready once every link is AVAILABLE",
                                spec.file_system_path, fs.id, spec.data_repository_path, a.id
                            ),
                        );
                    }
                    a
                }
            };
            found.push(association);
        }
        // Watch every one at once, so the poller describes them together.
        let mut watches: Vec<_> =
            found.iter().map(|a| a.lifecycle.is_in_flight().then(|| self.poller.watch_association(&a.id))).collect();
        for (association, watch) in found.into_iter().zip(watches.iter_mut()) {
            let association = match watch {
                None => association,
                Some(rx) => match poller::wait_until(rx, deadline, Seen::is_settled).await {
                    Some(Seen::Found(a)) => {
                        if a.lifecycle == AssociationLifecycle::Available
                            && let Some(volume) = fs.volume_name()
                        {
                            self.progress.post(
                                volume,
                                false,
                                Kind::Normal,
                                progress::reason::LINKED,
                                format!(
                                    "{} of {} is linked to {} (association {})",
                                    a.file_system_path, fs.id, a.data_repository_path, a.id
                                ),
                            );
                        }
                        a
                    }
                    Some(Seen::Gone) => return Err(ProvisionError::Vanished(association.id)),
                    Some(Seen::Pending) | None => {
                        return Err(ProvisionError::AssociationPending {
                            id: fs.id.clone(),
                            association: association.id,
                            lifecycle: association.lifecycle.to_string(),
                        });
                    }
                },
            };
            let paths = format!(
                "{} ({} to {})",
                association.id, association.file_system_path, association.data_repository_path
            );
            match &association.lifecycle {
                AssociationLifecycle::Available => {}
                AssociationLifecycle::Failed => {
                    let message = association.failure_message.unwrap_or_else(|| "FSx gave no failure details".into());
                    let message = format!("association {paths}: {message}");
                    return Err(self
                        .discard(fs, message, progress::reason::LINK_FAILED, |id, message| {
                            ProvisionError::AssociationFailed { id, message }
                        })
                        .await);
                }
                other => {
                    return Err(ProvisionError::NotUsable {
                        id: fs.id.clone(),
                        lifecycle: format!("linked to S3 by association {paths} in state {other}"),
                        message: association
                            .failure_message
                            .unwrap_or_else(|| "see the FSx console for details".into()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Waits (without API calls) until `fs` settles, or `deadline`.
    async fn await_available(&self, fs: FileSystem, deadline: Instant) -> Result<FileSystem, ProvisionError> {
        let fs = if fs.lifecycle == Lifecycle::Creating {
            let mut rx = self.poller.watch(&fs.id);
            self.follow_file_system(&fs, crate::metrics::InFlight::Creating, rx.clone());
            let created = |o: &Seen<FileSystem>| {
                !matches!(o, Seen::Pending | Seen::Found(FileSystem { lifecycle: Lifecycle::Creating, .. }))
            };
            match poller::wait_until(&mut rx, deadline, created).await {
                Some(Seen::Found(seen)) => seen,
                Some(Seen::Gone) => return Err(ProvisionError::Vanished(fs.id)),
                Some(Seen::Pending) | None => {
                    return Err(ProvisionError::StillPending {
                        id: fs.id,
                        pending: Pending::Lifecycle(Lifecycle::Creating),
                    });
                }
            }
        } else {
            fs
        };
        match fs.lifecycle {
            Lifecycle::Available | Lifecycle::Updating => Ok(fs),
            Lifecycle::Failed => Err(self.clean_up_failed(fs).await),
            Lifecycle::Deleting => Err(ProvisionError::Vanished(fs.id)),
            Lifecycle::Creating => {
                Err(ProvisionError::StillPending { id: fs.id, pending: Pending::Lifecycle(Lifecycle::Creating) })
            }
            other => Err(ProvisionError::NotUsable {
                id: fs.id,
                lifecycle: other.to_string(),
                message: fs.failure_message.unwrap_or_else(|| "see the FSx console for details".into()),
            }),
        }
    }

    /// Deletes a FAILED file system so that a retry starts clean, and moves the name to the
    /// next token generation.
    async fn clean_up_failed(&self, fs: FileSystem) -> ProvisionError {
        let message = fs.failure_message.clone().unwrap_or_else(|| "FSx gave no failure details".into());
        self.discard(&fs, message, progress::reason::FAILED, |id, message| ProvisionError::CreationFailed {
            id,
            message,
        })
        .await
    }

    /// Deletes a file system that cannot become a volume (its creation or its S3 link
    /// failed), so nothing leaks and the next retry starts clean with a new token generation.
    /// Returns the error to report.
    async fn discard(
        &self,
        fs: &FileSystem,
        message: String,
        reason: &'static str,
        error: fn(String, String) -> ProvisionError,
    ) -> ProvisionError {
        tracing::warn!(volume.id = %fs.id, reason = %message, "file system cannot be used; deleting it");
        let volume = fs.volume_name().unwrap_or_default();
        // Nothing was ever stored on it: no final backup.
        match self.fsx.delete_file_system(&fs.id, None).await {
            Ok(_) | Err(FsxError::NotFound(_)) => {
                self.progress.post(
                    volume,
                    false,
                    Kind::Warning,
                    reason,
                    format!(
                        "{} FAILED: {message}. The driver deleted it; the provisioner's next attempt creates a new file system (a new request token)",
                        fs.id
                    ),
                );
                crate::metrics::get().failed_cleaned_up();
                self.index.mark_deleting(&fs.id);
                if let Some(name) = fs.volume_name() {
                    let generation = self.index.generation(name);
                    self.index.bump_generation(name, generation);
                }
                error(fs.id.clone(), message)
            }
            // Not deleted yet: the next retry finds it FAILED in the index and tries again.
            Err(e) => {
                tracing::warn!(volume.id = %fs.id, error = %Chain(&e), "deleting the FAILED file system failed; a retry will try again");
                self.progress.post(
                    volume,
                    false,
                    Kind::Warning,
                    reason,
                    format!(
                        "{} FAILED: {message}. Deleting it failed ({}); the provisioner's next attempt deletes it again, then creates a new one",
                        fs.id,
                        Chain(&e)
                    ),
                );
                ProvisionError::Fsx(e)
            }
        }
    }

    /// Deletes the file system `id`, answering by `deadline`. Unknown, malformed and
    /// already-deleted ids succeed.
    pub async fn delete(&self, id: &str, deadline: Instant) -> Result<(), ProvisionError> {
        if !is_file_system_id(id) {
            tracing::info!(volume.id = %crate::text::Field(id), "not a file system id; nothing to delete");
            return Ok(());
        }
        let _guard =
            self.busy.try_lock(Key::VolumeId(id.to_string())).ok_or_else(|| ProvisionError::Busy(id.to_string()))?;
        let known = self.index.by_id(id);
        if known.as_ref().is_some_and(|fs| fs.lifecycle == Lifecycle::Deleting) {
            // This process's own DeleteFileSystem was accepted: DELETING counts as done.
            return Ok(());
        }
        // A final backup is recorded on the file system's tags at creation
        // (finalBackupOnDelete). The index knows them; a file system it does not know is
        // described once, since deleting it without the backup asked for cannot be undone.
        let fs = match known {
            Some(fs) => fs,
            None => {
                match by(deadline, "DescribeFileSystems", self.fsx.describe_file_systems(&[id.to_string()])).await {
                    Ok(found) => match found.into_iter().find(|fs| fs.id == id) {
                        Some(fs) => fs,
                        None => return Ok(()),
                    },
                    Err(ProvisionError::Fsx(FsxError::NotFound(_))) => {
                        self.index.remove(id);
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if fs.lifecycle == Lifecycle::Deleting {
            return Ok(());
        }
        // A FAILED file system holds no data to keep, and FSx cannot back it up.
        let final_backup = fs.final_backup().filter(|_| fs.lifecycle != Lifecycle::Failed);
        match tokio::time::timeout_at(deadline, self.fsx.delete_file_system(id, final_backup.as_deref()))
            .await
            .map_err(|_| ProvisionError::FsxSlow("DeleteFileSystem"))?
        {
            Ok(lifecycle) => {
                tracing::info!(volume.id = %id, %lifecycle, final_backup = final_backup.is_some(), "DeleteFileSystem accepted");
                self.index.mark_deleting(id);
                Ok(())
            }
            Err(FsxError::NotFound(_)) => {
                self.index.remove(id);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Describes `id` (one call) and records it in the index.
    pub async fn get(&self, id: &str) -> Result<FileSystem, ProvisionError> {
        if !is_file_system_id(id) {
            return Err(ProvisionError::NotFound(id.to_string()));
        }
        match self.fsx.describe_file_systems(&[id.to_string()]).await {
            Ok(found) => {
                let fs =
                    found.into_iter().find(|fs| fs.id == id).ok_or_else(|| ProvisionError::NotFound(id.to_string()))?;
                self.index.upsert(&fs);
                Ok(fs)
            }
            Err(FsxError::NotFound(_)) => {
                self.index.remove(id);
                Err(ProvisionError::NotFound(id.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Runs one FSx call on a path that has a caller's deadline, giving up at the deadline so the
/// caller still gets an answer in time (the SDK's retries under throttling can outlast it).
/// Safe for every call it wraps: each is idempotent (a token, or a describe-first check) or
/// read-only, so the retry finds what an abandoned call did.
async fn by<T>(
    deadline: Instant,
    what: &'static str,
    call: impl std::future::Future<Output = Result<T, FsxError>>,
) -> Result<T, ProvisionError> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(result) => result.map_err(ProvisionError::from),
        Err(_) => Err(ProvisionError::FsxSlow(what)),
    }
}

/// The tags an association gets: the file system's, less the driver's records (the final
/// backup's), which mean nothing on an association.
fn association_tags(tags: &[(String, String)]) -> Vec<(String, String)> {
    tags.iter().filter(|(k, _)| !k.starts_with(crate::fsx::DRIVER_TAG_PREFIX)).cloned().collect()
}

/// Why an existing file system's size does not fit a capacity range, if it does not. An
/// Intelligent-Tiering file system has no fixed size: any range fits.
fn capacity_mismatch(fs: &FileSystem, required_bytes: i64, limit_bytes: i64) -> Option<String> {
    if fs.storage_type.is_some_and(|s| s.is_elastic()) {
        return None;
    }
    let have = fs.capacity_bytes();
    if have < required_bytes {
        return Some(format!("capacity is {} GiB, below the requested {required_bytes} bytes", fs.capacity_gib));
    }
    if limit_bytes > 0 && have > limit_bytes {
        return Some(format!("capacity is {} GiB, above the limit of {limit_bytes} bytes", fs.capacity_gib));
    }
    None
}

/// The core against the in-memory FSx, with paused tokio time: a 10-minute creation takes
/// microseconds and every outcome is deterministic.
#[cfg(test)]
mod tests;
