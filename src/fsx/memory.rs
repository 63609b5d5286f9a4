//! An in-memory [`Fsx`] for unit tests beside the provisioning core.
//!
//! Lifecycles run on tokio's clock, so a test with paused time (`start_paused = true`) sees a
//! 10-minute creation in microseconds, deterministically. It models what the core's guarantees
//! rest on: `ClientRequestToken` idempotency (the same token answers with the same file system,
//! even a FAILED or deleted one, and refuses other parameters), CREATING → AVAILABLE or FAILED,
//! DELETING then gone, capacity updates as administrative actions, data repository
//! associations, injected throttling, and per-operation call counters. The FSx emulator keeps
//! its role for the wire protocol, the demo and the benchmarks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    Association, AssociationLifecycle, AssociationSpec, Backup, BackupLifecycle, BackupSpec, CreateSpec,
    DeploymentType, FileSystem, Fsx, FsxError, Lifecycle, LustreSettings, Update, UpdateStatus,
};

/// Delays of the simulated lifecycles.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub create: Duration,
    pub delete: Duration,
    /// Until the new capacity is in effect (UPDATED_OPTIMIZING).
    pub update: Duration,
    pub association: Duration,
    /// Until a backup is AVAILABLE.
    pub backup: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            create: Duration::from_secs(600),
            delete: Duration::from_secs(60),
            update: Duration::from_secs(300),
            association: Duration::from_secs(120),
            backup: Duration::from_secs(300),
        }
    }
}

struct Fs {
    base: FileSystem,
    spec: CreateSpec,
    created: Instant,
    fail: Option<String>,
    deleted: Option<Instant>,
    updates: Vec<MemUpdate>,
}

struct MemUpdate {
    capacity: Option<i64>,
    lustre: LustreSettings,
    started: Instant,
    fail: Option<String>,
}

struct Bk {
    base: Backup,
    created: Instant,
    fail: Option<String>,
    deleted: bool,
}

struct Dra {
    base: Association,
    created: Instant,
    fail: Option<String>,
}

#[derive(Default)]
struct State {
    file_systems: BTreeMap<String, Fs>,
    tokens: HashMap<String, String>,
    associations: BTreeMap<String, Dra>,
    association_tokens: HashMap<String, String>,
    backups: BTreeMap<String, Bk>,
    backup_tokens: HashMap<String, (String, String)>,
    fail_next_backups: VecDeque<String>,
    calls: BTreeMap<&'static str, u64>,
    fail_next_creates: VecDeque<String>,
    fail_next_associations: VecDeque<String>,
    throttle_next: u32,
    next_id: u64,
    /// Final backups asked for by DeleteFileSystem: (file system, tags).
    final_backups: Vec<(String, Vec<(String, String)>)>,
}

/// See the module docs.
pub struct MemoryFsx {
    timing: Timing,
    page_size: usize,
    state: Mutex<State>,
}

impl MemoryFsx {
    /// An empty account with the given delays.
    pub fn new(timing: Timing) -> Self {
        Self { timing, page_size: 2, state: Mutex::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls made to `operation`, throttled ones included.
    pub fn calls(&self, operation: &str) -> u64 {
        self.state().calls.get(operation).copied().unwrap_or(0)
    }

    /// The next `n` created file systems end FAILED with `message`.
    pub fn fail_next_creates(&self, n: usize, message: &str) {
        self.state().fail_next_creates.extend(std::iter::repeat_n(message.to_string(), n));
    }

    /// The next `n` associations end FAILED with `message`.
    pub fn fail_next_associations(&self, n: usize, message: &str) {
        self.state().fail_next_associations.extend(std::iter::repeat_n(message.to_string(), n));
    }

    /// The next `n` backups end FAILED with `message`.
    pub fn fail_next_backups(&self, n: usize, message: &str) {
        self.state().fail_next_backups.extend(std::iter::repeat_n(message.to_string(), n));
    }

    /// (id, lifecycle) of every backup that still exists.
    pub fn backups(&self) -> Vec<(String, BackupLifecycle)> {
        let now = Instant::now();
        self.state()
            .backups
            .values()
            .filter(|b| !b.deleted)
            .map(|b| (b.base.id.clone(), describe_backup(b, &self.timing, now).lifecycle))
            .collect()
    }

    /// The next `n` calls, of any operation, are throttled (what outlives the SDK's retries).
    /// The final backups DeleteFileSystem was asked for: (file system, tags).
    pub fn final_backups(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.state().final_backups.clone()
    }

    pub fn throttle_next(&self, n: u32) {
        self.state().throttle_next = n;
    }

    /// Deletes a file system as if out of band (its token keeps answering with it).
    pub fn delete_out_of_band(&self, id: &str) {
        if let Some(fs) = self.state().file_systems.get_mut(id) {
            fs.deleted.get_or_insert_with(Instant::now);
        }
    }

    /// (id, lifecycle, CSIVolumeName) of every file system that still exists.
    pub fn file_systems(&self) -> Vec<(String, Lifecycle, Option<String>)> {
        let now = Instant::now();
        let timing = self.timing;
        self.state()
            .file_systems
            .values()
            .filter_map(|fs| {
                let l = lifecycle(fs, &timing, now)?;
                Some((fs.base.id.clone(), l, fs.base.volume_name().map(str::to_string)))
            })
            .collect()
    }

    /// Every association that still exists.
    pub fn associations(&self) -> Vec<Association> {
        let now = Instant::now();
        self.state().associations.values().map(|a| describe_association(a, &self.timing, now)).collect()
    }

    /// Counts a call, or throttles it.
    fn call(&self, state: &mut State, operation: &'static str) -> Result<(), FsxError> {
        *state.calls.entry(operation).or_default() += 1;
        if state.throttle_next > 0 {
            state.throttle_next -= 1;
            return Err(FsxError::unavailable(format!("ThrottlingException: {operation} rate exceeded")));
        }
        Ok(())
    }
}

fn lifecycle(fs: &Fs, timing: &Timing, now: Instant) -> Option<Lifecycle> {
    if let Some(d) = fs.deleted {
        return (now < d + timing.delete).then_some(Lifecycle::Deleting);
    }
    if now < fs.created + timing.create {
        return Some(Lifecycle::Creating);
    }
    if fs.fail.is_some() {
        return Some(Lifecycle::Failed);
    }
    Some(Lifecycle::Available)
}

fn describe(fs: &Fs, timing: &Timing, now: Instant) -> Option<FileSystem> {
    let lifecycle = lifecycle(fs, timing, now)?;
    let mut out = fs.base.clone();
    out.failure_message = (lifecycle == Lifecycle::Failed).then(|| fs.fail.clone()).flatten();
    out.updates = fs
        .updates
        .iter()
        .map(|u| {
            let status = match (now >= u.started + timing.update, &u.fail) {
                (false, _) => UpdateStatus::InProgress,
                (true, Some(_)) => UpdateStatus::Failed,
                (true, None) => UpdateStatus::Completed,
            };
            if status == UpdateStatus::Completed {
                if let Some(target) = u.capacity {
                    out.capacity_gib = out.capacity_gib.max(target);
                }
                apply(&mut out, &u.lustre);
            }
            Update {
                failure_message: (status == UpdateStatus::Failed).then(|| u.fail.clone()).flatten(),
                status,
                target_capacity_gib: u.capacity,
                target: u.lustre.clone(),
                progress_percent: None,
            }
        })
        .collect();
    out.lifecycle = if lifecycle == Lifecycle::Available && out.updates.iter().any(Update::is_running) {
        Lifecycle::Updating
    } else {
        lifecycle
    };
    Some(out)
}

/// Applies the settings of a completed update.
fn apply(fs: &mut FileSystem, u: &LustreSettings) {
    fs.lustre.apply(u);
}

fn describe_backup(b: &Bk, timing: &Timing, now: Instant) -> Backup {
    let mut out = b.base.clone();
    out.lifecycle = match (now >= b.created + timing.backup, &b.fail) {
        (false, _) => BackupLifecycle::Creating,
        (true, Some(m)) => {
            out.failure_message = Some(m.clone());
            BackupLifecycle::Failed
        }
        (true, None) => BackupLifecycle::Available,
    };
    out
}

fn describe_association(a: &Dra, timing: &Timing, now: Instant) -> Association {
    let mut out = a.base.clone();
    out.lifecycle = match (now >= a.created + timing.association, &a.fail) {
        (false, _) => AssociationLifecycle::Creating,
        (true, Some(m)) => {
            out.failure_message = Some(m.clone());
            AssociationLifecycle::Failed
        }
        (true, None) => AssociationLifecycle::Available,
    };
    out
}

impl MemoryFsx {
    /// Creates (or, by token, finds) a file system; the call is already counted.
    fn insert_file_system(&self, s: &mut State, spec: &CreateSpec) -> Result<FileSystem, FsxError> {
        let now = Instant::now();
        if let Some(id) = s.tokens.get(&spec.client_request_token).cloned() {
            let fs = &s.file_systems[&id];
            if fs.spec != *spec {
                return Err(FsxError::Incompatible("the token was used with other parameters".into()));
            }
            return describe(fs, &self.timing, now)
                .ok_or_else(|| FsxError::NotFound(format!("file system {id} no longer exists")));
        }
        s.next_id += 1;
        let id = format!("fs-{:017x}", s.next_id);
        let fail = s.fail_next_creates.pop_front();
        let base = FileSystem {
            id: id.clone(),
            lifecycle: Lifecycle::Creating,
            failure_message: None,
            // Intelligent-Tiering has no provisioned size.
            capacity_gib: if spec.storage_type.is_some_and(|s| s.is_elastic()) {
                0
            } else {
                i64::from(spec.capacity_gib)
            },
            storage_type: spec.storage_type,
            subnet_ids: vec![spec.subnet_id.clone()],
            dns_name: format!("{id}.fsx.us-east-1.amazonaws.com"),
            mount_name: "abcdefgh".into(),
            kms_key_id: spec.kms_key_id.clone(),
            lustre: spec.lustre.clone(),
            tags: spec.tags.clone(),
            updates: Vec::new(),
            created_at: Some(std::time::SystemTime::now()),
        };
        s.tokens.insert(spec.client_request_token.clone(), id.clone());
        let fs = Fs { base, spec: spec.clone(), created: now, fail, deleted: None, updates: Vec::new() };
        let out = describe(&fs, &self.timing, now);
        s.file_systems.insert(id, fs);
        out.ok_or_else(|| FsxError::other("Internal", "created and gone"))
    }
}

#[async_trait]
impl Fsx for MemoryFsx {
    async fn create_file_system(&self, spec: &CreateSpec) -> Result<FileSystem, FsxError> {
        let mut s = self.state();
        self.call(&mut s, "CreateFileSystem")?;
        self.insert_file_system(&mut s, spec)
    }

    async fn create_backup(&self, spec: &BackupSpec) -> Result<Backup, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "CreateBackup")?;
        if let Some((fs_id, id)) = s.backup_tokens.get(&spec.client_request_token).cloned() {
            if fs_id != spec.file_system_id {
                return Err(FsxError::Incompatible("the token was used for another file system".into()));
            }
            return Ok(describe_backup(&s.backups[&id], &self.timing, now));
        }
        let timing = self.timing;
        let fs = s
            .file_systems
            .get(&spec.file_system_id)
            .and_then(|fs| describe(fs, &timing, now))
            .ok_or_else(|| FsxError::NotFound(format!("file system {} does not exist", spec.file_system_id)))?;
        if fs.lustre.deployment_type.is_none_or(DeploymentType::is_scratch) || fs.lustre.import_path.is_some() {
            return Err(FsxError::Invalid {
                code: "BadRequest".into(),
                message: "backups need a persistent file system not linked to S3".into(),
            });
        }
        if s.backups.values().any(|b| {
            !b.deleted && b.base.file_system.id == fs.id && describe_backup(b, &timing, now).lifecycle.is_in_flight()
        }) {
            return Err(FsxError::BackupBusy("BackupInProgress: a backup of this file system is running".into()));
        }
        s.next_id += 1;
        let id = format!("backup-{:017x}", s.next_id);
        let fail = s.fail_next_backups.pop_front();
        let base = Backup {
            id: id.clone(),
            lifecycle: BackupLifecycle::Creating,
            failure_message: None,
            file_system: fs,
            created_at: Some(std::time::SystemTime::now()),
            tags: spec.tags.clone(),
            progress_percent: None,
        };
        s.backup_tokens.insert(spec.client_request_token.clone(), (spec.file_system_id.clone(), id.clone()));
        let b = Bk { base, created: now, fail, deleted: false };
        let out = describe_backup(&b, &timing, now);
        s.backups.insert(id, b);
        Ok(out)
    }

    async fn describe_backups(&self, ids: &[String]) -> Result<Vec<Backup>, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "DescribeBackups")?;
        ids.iter()
            .map(|id| {
                s.backups
                    .get(id)
                    .filter(|b| !b.deleted)
                    .map(|b| describe_backup(b, &self.timing, now))
                    .ok_or_else(|| FsxError::NotFound(format!("backup {id} does not exist")))
            })
            .collect()
    }

    async fn list_backups(&self) -> Result<Vec<Backup>, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        let all: Vec<Backup> =
            s.backups.values().filter(|b| !b.deleted).map(|b| describe_backup(b, &self.timing, now)).collect();
        for _ in 0..all.len().div_ceil(self.page_size).max(1) {
            self.call(&mut s, "DescribeBackups")?;
        }
        Ok(all)
    }

    async fn delete_backup(&self, id: &str) -> Result<BackupLifecycle, FsxError> {
        let mut s = self.state();
        self.call(&mut s, "DeleteBackup")?;
        let timing = self.timing;
        let b = s
            .backups
            .get_mut(id)
            .filter(|b| !b.deleted)
            .ok_or_else(|| FsxError::NotFound(format!("backup {id} does not exist")))?;
        if describe_backup(b, &timing, Instant::now()).lifecycle.is_in_flight() {
            return Err(FsxError::BackupBusy(format!("BackupInProgress: backup {id} is still being created")));
        }
        b.deleted = true;
        Ok(BackupLifecycle::Deleted)
    }

    async fn create_file_system_from_backup(&self, backup_id: &str, spec: &CreateSpec) -> Result<FileSystem, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "CreateFileSystemFromBackup")?;
        let backup = s
            .backups
            .get(backup_id)
            .filter(|b| !b.deleted)
            .map(|b| describe_backup(b, &self.timing, now))
            .ok_or_else(|| FsxError::NotFound(format!("backup {backup_id} does not exist")))?;
        if backup.lifecycle != BackupLifecycle::Available {
            return Err(FsxError::Invalid {
                code: "BadRequest".into(),
                message: format!("backup {backup_id} is {}", backup.lifecycle),
            });
        }
        let source = &backup.file_system;
        if spec.lustre.deployment_type.is_some_and(|d| Some(d) != source.lustre.deployment_type) {
            return Err(FsxError::Invalid {
                code: "BadRequest".into(),
                message: "the deployment type must be the backup's".into(),
            });
        }
        let mut spec = spec.clone();
        spec.capacity_gib = i32::try_from(source.capacity_gib).unwrap_or(i32::MAX);
        spec.lustre.deployment_type = source.lustre.deployment_type;
        spec.storage_type = source.storage_type;
        spec.lustre.per_unit_storage_throughput = source.lustre.per_unit_storage_throughput;
        self.insert_file_system(&mut s, &spec)
    }

    async fn update_lustre(&self, id: &str, update: &LustreSettings) -> Result<FileSystem, FsxError> {
        if let Some(field) = update.immutable_field() {
            return Err(FsxError::Invalid {
                code: "ImmutableSetting".into(),
                message: format!("UpdateFileSystem cannot change {field}"),
            });
        }
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "UpdateFileSystem")?;
        let timing = self.timing;
        let fs = s
            .file_systems
            .get_mut(id)
            .filter(|fs| lifecycle(fs, &timing, now).is_some())
            .ok_or_else(|| FsxError::NotFound(format!("file system {id} does not exist")))?;
        let described = describe(fs, &timing, now).ok_or_else(|| FsxError::NotFound(id.to_string()))?;
        if described.updates.iter().any(Update::is_running) {
            return Err(FsxError::Invalid { code: "BadRequest".into(), message: "an update is in progress".into() });
        }
        if update.per_unit_storage_throughput.is_some()
            && described.lustre.deployment_type.is_none_or(DeploymentType::is_scratch)
        {
            return Err(FsxError::Invalid {
                code: "BadRequest".into(),
                message: "scratch file systems have no throughput tiers".into(),
            });
        }
        fs.updates.push(MemUpdate { capacity: None, lustre: update.clone(), started: now, fail: None });
        describe(fs, &timing, now).ok_or_else(|| FsxError::NotFound(id.to_string()))
    }

    async fn describe_file_systems(&self, ids: &[String]) -> Result<Vec<FileSystem>, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "DescribeFileSystems")?;
        assert!(ids.len() <= super::DESCRIBE_BATCH, "FSx takes at most 50 ids; {} asked", ids.len());
        ids.iter()
            .map(|id| {
                s.file_systems
                    .get(id)
                    .and_then(|fs| describe(fs, &self.timing, now))
                    .ok_or_else(|| FsxError::NotFound(format!("file system {id} does not exist")))
            })
            .collect()
    }

    async fn list_file_systems(&self) -> Result<Vec<FileSystem>, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        let all: Vec<FileSystem> = s.file_systems.values().filter_map(|fs| describe(fs, &self.timing, now)).collect();
        // One call per page, as the SDK's paginator makes them.
        for _ in 0..all.len().div_ceil(self.page_size).max(1) {
            self.call(&mut s, "DescribeFileSystems")?;
        }
        Ok(all)
    }

    async fn delete_file_system(
        &self,
        id: &str,
        final_backup: Option<&[(String, String)]>,
    ) -> Result<Lifecycle, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "DeleteFileSystem")?;
        let timing = self.timing;
        let fs = s
            .file_systems
            .get_mut(id)
            .filter(|fs| lifecycle(fs, &timing, now).is_some())
            .ok_or_else(|| FsxError::NotFound(format!("file system {id} does not exist")))?;
        if lifecycle(fs, &timing, now) == Some(Lifecycle::Creating) {
            return Err(FsxError::Invalid { code: "BadRequest".into(), message: "file system is CREATING".into() });
        }
        let first = fs.deleted.is_none();
        fs.deleted.get_or_insert(now);
        if let Some(tags) = final_backup
            && first
        {
            s.final_backups.push((id.to_string(), tags.to_vec()));
        }
        Ok(Lifecycle::Deleting)
    }

    async fn update_storage_capacity(&self, id: &str, capacity_gib: i32) -> Result<FileSystem, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "UpdateFileSystem")?;
        let timing = self.timing;
        let fs = s
            .file_systems
            .get_mut(id)
            .filter(|fs| lifecycle(fs, &timing, now).is_some())
            .ok_or_else(|| FsxError::NotFound(format!("file system {id} does not exist")))?;
        let described = describe(fs, &timing, now).ok_or_else(|| FsxError::NotFound(id.to_string()))?;
        if described.updates.iter().any(Update::is_running) {
            return Err(FsxError::Invalid { code: "BadRequest".into(), message: "an update is in progress".into() });
        }
        fs.updates.push(MemUpdate {
            capacity: Some(i64::from(capacity_gib)),
            lustre: LustreSettings::default(),
            started: now,
            fail: None,
        });
        describe(fs, &timing, now).ok_or_else(|| FsxError::NotFound(id.to_string()))
    }

    async fn create_data_repository_association(&self, spec: &AssociationSpec) -> Result<Association, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "CreateDataRepositoryAssociation")?;
        if let Some(id) = s.association_tokens.get(&spec.client_request_token) {
            return Ok(describe_association(&s.associations[id], &self.timing, now));
        }
        s.next_id += 1;
        let id = format!("dra-{:017x}", s.next_id);
        let fail = s.fail_next_associations.pop_front();
        let base = Association {
            id: id.clone(),
            file_system_id: spec.file_system_id.clone(),
            lifecycle: AssociationLifecycle::Creating,
            file_system_path: spec.file_system_path.clone(),
            data_repository_path: spec.data_repository_path.clone(),
            failure_message: None,
        };
        s.association_tokens.insert(spec.client_request_token.clone(), id.clone());
        let dra = Dra { base, created: now, fail };
        let out = describe_association(&dra, &self.timing, now);
        s.associations.insert(id, dra);
        Ok(out)
    }

    async fn describe_data_repository_associations(&self, ids: &[String]) -> Result<Vec<Association>, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "DescribeDataRepositoryAssociations")?;
        ids.iter()
            .map(|id| {
                s.associations
                    .get(id)
                    .map(|a| describe_association(a, &self.timing, now))
                    .ok_or_else(|| FsxError::NotFound(format!("association {id} does not exist")))
            })
            .collect()
    }

    async fn associations_of(&self, file_system_id: &str) -> Result<Vec<Association>, FsxError> {
        let now = Instant::now();
        let mut s = self.state();
        self.call(&mut s, "DescribeDataRepositoryAssociations")?;
        Ok(s.associations
            .values()
            .filter(|a| a.base.file_system_id == file_system_id)
            .map(|a| describe_association(a, &self.timing, now))
            .collect())
    }
}
