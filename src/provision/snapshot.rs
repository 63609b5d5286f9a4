//! CSI snapshots as FSx backups: CreateSnapshot, DeleteSnapshot, and the backup a restore
//! starts from. Idempotent by snapshot name exactly as volumes are by volume name: a
//! deterministic token per name and generation, the [backup index](super::index::Backups)
//! index instead of listing per call, and the shared poller (batched `DescribeBackups`) keeping
//! the index current while a backup is taken. CreateSnapshot never waits for the backup: it
//! answers `ready_to_use = false` until the poller has seen it AVAILABLE, and the
//! csi-snapshotter calls again.

use super::cadence::Class;
use super::progress;
use crate::events::{Claim, Event, Kind, Subject};
use crate::metrics::InFlight;
use std::collections::HashMap;

use tokio::time::Instant;

use super::params::{self, ParamError, RESERVED_PREFIX, StorageClassParams, keys};
use super::poller::{self, Seen};
use super::{CannotRestore, CannotSnapshot, CreateRequest, ProvisionError, Provisioner, by, token};
use crate::fsx::{
    Backup, BackupLifecycle, BackupSpec, DeploymentType, FileSystem, FsxError, GIB, SNAPSHOT_NAME_TAG, StorageType,
    is_backup_id, is_file_system_id,
};
use crate::guard::Key;
use crate::text::Shown;

/// What CreateSnapshot asks for, gRPC types stripped.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotRequest<'a> {
    pub name: &'a str,
    pub source_volume_id: &'a str,
    /// The VolumeSnapshotClass parameters.
    pub parameters: &'a HashMap<String, String>,
    /// The VolumeSnapshot it is for (events go on it).
    pub snapshot: Option<&'a Claim>,
}

/// The tags of a new backup: `CSISnapshotName` first, then the driver's `--extra-tags`, the
/// snapshotter's `--extra-create-metadata` names, and the class's `extraTags`. The only class
/// key is `extraTags`.
fn backup_tags(
    name: &str,
    parameters: &HashMap<String, String>,
    driver_tags: &[(String, String)],
) -> Result<Vec<(String, String)>, ParamError> {
    let mut keys: Vec<&String> = parameters.keys().collect();
    keys.sort();
    let mut kubernetes = Vec::new();
    let mut extra = Vec::new();
    for key in keys {
        let value = parameters[key].trim();
        if let Some(rest) = key.strip_prefix(RESERVED_PREFIX) {
            let tag = match rest {
                "volumesnapshot/name" => "kubernetes.io/created-for/volumesnapshot/name",
                "volumesnapshot/namespace" => "kubernetes.io/created-for/volumesnapshot/namespace",
                "volumesnapshotcontent/name" => "kubernetes.io/created-for/volumesnapshotcontent/name",
                _ => continue,
            };
            if !value.is_empty() && params::is_tag_text(value) && value.len() <= 256 {
                kubernetes.push((tag.to_string(), value.to_string()));
            }
            continue;
        }
        match key.as_str() {
            keys::EXTRA_TAGS if value.is_empty() => {}
            keys::EXTRA_TAGS => extra = params::parse_tags(keys::EXTRA_TAGS, value)?,
            _ => {
                return Err(ParamError {
                    key: key.clone(),
                    message: format!("unknown VolumeSnapshotClass key; the only key is {} (k=v,k=v)", keys::EXTRA_TAGS),
                });
            }
        }
    }
    let mut tags = vec![(SNAPSHOT_NAME_TAG.to_string(), name.to_string())];
    for (k, v) in driver_tags.iter().chain(&kubernetes).chain(&extra).filter(|(k, _)| k != SNAPSHOT_NAME_TAG) {
        match tags.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => tags.push((k.clone(), v.clone())),
        }
    }
    if tags.len() > params::MAX_TAGS {
        return Err(ParamError {
            key: keys::EXTRA_TAGS.into(),
            message: format!("the backup would carry {} tags; FSx allows at most {}", tags.len(), params::MAX_TAGS),
        });
    }
    Ok(tags)
}

/// Why `fs` cannot be backed up, if it cannot.
fn cannot_back_up(fs: &FileSystem) -> Option<CannotSnapshot> {
    let id = fs.id.clone();
    match fs.lustre.deployment_type {
        Some(deployment @ (DeploymentType::Scratch1 | DeploymentType::Scratch2)) => {
            Some(CannotSnapshot::Scratch { id, deployment })
        }
        None => Some(CannotSnapshot::NotLustre { id }),
        Some(deployment) if fs.lustre.import_path.is_some() => Some(CannotSnapshot::LegacyS3 { id, deployment }),
        Some(_) => None,
    }
}

impl Provisioner {
    /// Returns the backup for snapshot `req.name`, taking it if needed. Answers at once: the
    /// backup may still be CREATING (`ready_to_use` false); retries read the index the poller
    /// keeps current. A FAILED backup is deleted and reported, and the next retry takes a
    /// new one.
    pub async fn snapshot(&self, req: SnapshotRequest<'_>, deadline: Instant) -> Result<Backup, ProvisionError> {
        let name = req.name;
        params::check_name(name, params::NameOf::Snapshot)?;
        let tags = backup_tags(name, req.parameters, &self.options.extra_tags)?;
        let source = req.source_volume_id;
        if !is_file_system_id(source) {
            return Err(ProvisionError::NotFound(source.to_string()));
        }
        self.wait_ready(deadline).await?;
        self.wait_snapshots_ready(deadline).await?;
        let key = Key::SnapshotName(name.to_string());
        let _guard = self.busy.try_lock(key).ok_or_else(|| ProvisionError::Busy(name.to_string()))?;
        if let Some(b) = self.backup_index.by_name(name) {
            if b.file_system.id != source {
                return Err(ProvisionError::AlreadyExists {
                    name: name.to_string(),
                    id: b.id.clone(),
                    reason: format!("it is a backup of {}, requested {}", b.file_system.id, Shown(source)),
                });
            }
            crate::metrics::get().duplicate_avoided();
            return self.settle_backup(b).await;
        }
        let fs = match self.index.by_id(source) {
            Some(fs) => fs,
            None => tokio::time::timeout_at(deadline, self.get(source))
                .await
                .map_err(|_| ProvisionError::FsxSlow("DescribeFileSystems"))??,
        };
        if let Some(why) = cannot_back_up(&fs) {
            return Err(why.into());
        }
        let generation = self.backup_index.generation(name);
        let spec = BackupSpec {
            client_request_token: token::client_request_token(name, generation),
            file_system_id: source.to_string(),
            tags,
        };
        let backup = by(deadline, "CreateBackup", self.fsx.create_backup(&spec)).await?;
        tracing::info!(snapshot.id = %backup.id, volume.id = %source, lifecycle = %backup.lifecycle, generation, "CreateBackup answered");
        self.backup_index.upsert(&backup);
        if let Some(of) = req.snapshot
            && backup.lifecycle.is_in_flight()
        {
            let subject = Subject::Snapshot { namespace: of.namespace.clone(), name: of.name.clone() };
            let expected = self.poller.expected_text(&Class::of(InFlight::BackingUp));
            self.progress.events.post(Event {
                subject: subject.clone(),
                kind: Kind::Normal,
                reason: progress::reason::BACKUP_STARTED,
                message: format!("Taking backup {} of {source} (expected: {expected})", backup.id),
            });
            self.follow_backup(&backup, subject, self.poller.watch_backup(&backup.id));
        }
        self.settle_backup(backup).await
    }

    /// An AVAILABLE backup is returned; one being taken is left to the poller and returned
    /// as it is; a FAILED one is deleted so the next retry starts clean.
    async fn settle_backup(&self, backup: Backup) -> Result<Backup, ProvisionError> {
        match &backup.lifecycle {
            BackupLifecycle::Failed => {
                let message = backup.failure_message.clone().unwrap_or_else(|| "FSx gave no failure details".into());
                tracing::warn!(snapshot.id = %backup.id, reason = %message, "backup FAILED; deleting it");
                match self.fsx.delete_backup(&backup.id).await {
                    Ok(_) | Err(FsxError::NotFound(_)) => {
                        crate::metrics::get().failed_cleaned_up();
                        self.backup_index.remove(&backup.id);
                        if let Some(name) = backup.snapshot_name() {
                            self.backup_index.bump_generation(name, self.backup_index.generation(name));
                        }
                        Err(ProvisionError::SnapshotFailed { id: backup.id, message })
                    }
                    Err(e) => Err(e.into()),
                }
            }
            l if l.is_in_flight() => {
                // Keeps it described until it settles, for the snapshotter's next call.
                drop(self.poller.watch_backup(&backup.id));
                Ok(backup)
            }
            _ => Ok(backup),
        }
    }

    /// Deletes the backup `id`. Unknown, malformed and already-deleted ids succeed.
    pub async fn delete_snapshot(&self, id: &str, deadline: Instant) -> Result<(), ProvisionError> {
        if !is_backup_id(id) {
            tracing::info!(snapshot.id = %crate::text::Field(id), "not a backup id; nothing to delete");
            return Ok(());
        }
        let _guard =
            self.busy.try_lock(Key::SnapshotId(id.to_string())).ok_or_else(|| ProvisionError::Busy(id.to_string()))?;
        // FSx refuses to delete a backup it is still taking: wait for it on the poller (no
        // calls of its own) within the deadline, then delete.
        if self.backup_index.by_id(id).is_some_and(|b| b.lifecycle.is_in_flight()) {
            self.backup_settled(id, deadline).await?;
        }
        let mut result = by(deadline, "DeleteBackup", self.fsx.delete_backup(id)).await;
        if let Err(ProvisionError::Fsx(FsxError::BackupBusy(_))) = &result {
            self.backup_settled(id, deadline).await?;
            result = by(deadline, "DeleteBackup", self.fsx.delete_backup(id)).await;
        }
        match result {
            Ok(lifecycle) => {
                tracing::info!(snapshot.id = %id, %lifecycle, "DeleteBackup accepted");
                self.backup_index.remove(id);
                Ok(())
            }
            Err(ProvisionError::Fsx(FsxError::NotFound(_))) => {
                self.backup_index.remove(id);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Waits on the poller until backup `id` is no longer being taken, or `deadline`.
    async fn backup_settled(&self, id: &str, deadline: Instant) -> Result<(), ProvisionError> {
        let mut rx = self.poller.watch_backup(id);
        match poller::wait_until(&mut rx, deadline, Seen::is_settled).await {
            Some(_) => Ok(()),
            None => Err(ProvisionError::BackupPending(id.to_string())),
        }
    }

    /// The AVAILABLE backup a restore starts from, checked against the request: the keys a
    /// backup fixes must be the backup's (or not set), and the requested range must hold the
    /// backup's size, since a restore has it.
    pub(super) async fn restore_source(
        &self,
        id: &str,
        params: &StorageClassParams,
        req: &CreateRequest<'_>,
        deadline: Instant,
    ) -> Result<Backup, ProvisionError> {
        let backup = match self.backup_index.by_id(id) {
            Some(b) => b,
            None => match by(deadline, "DescribeBackups", self.fsx.describe_backups(&[id.to_string()])).await {
                Ok(found) => {
                    found.into_iter().find(|b| b.id == id).ok_or_else(|| ProvisionError::SnapshotNotFound(id.into()))?
                }
                Err(ProvisionError::Fsx(FsxError::NotFound(_))) => {
                    return Err(ProvisionError::SnapshotNotFound(id.to_string()));
                }
                Err(e) => return Err(e),
            },
        };
        // A backup still being taken is waited for on the poller (no calls of its own), as
        // far as the caller's deadline allows.
        let backup = if backup.lifecycle.is_in_flight() {
            let mut rx = self.poller.watch_backup(&backup.id);
            match poller::wait_until(&mut rx, deadline, Seen::is_settled).await {
                Some(Seen::Found(b)) => b,
                Some(Seen::Gone) => return Err(ProvisionError::SnapshotNotFound(backup.id)),
                Some(Seen::Pending) | None => backup,
            }
        } else {
            backup
        };
        if backup.lifecycle != BackupLifecycle::Available {
            return Err(ProvisionError::SnapshotNotReady { id: backup.id, lifecycle: backup.lifecycle.to_string() });
        }
        let source = &backup.file_system;
        let differs = |key: &'static str, want: String, have: Option<String>| {
            let have = have.unwrap_or_else(|| "not set".into());
            (want != have).then(|| CannotRestore::Differs { key, want, have, snapshot: id.to_string() })
        };
        let deployment = source.lustre.deployment_type.map(|d| d.to_string());
        if let Some(e) = differs(keys::DEPLOYMENT_TYPE, params.deployment_type.to_string(), deployment) {
            return Err(e.into());
        }
        let storage = source.storage_type.unwrap_or(StorageType::Ssd).to_string();
        if let Some(e) = differs(keys::STORAGE_TYPE, params.storage_type.to_string(), Some(storage)) {
            return Err(e.into());
        }
        if let Some(t) = params.lustre.per_unit_storage_throughput
            && let Some(e) = differs(
                keys::PER_UNIT_STORAGE_THROUGHPUT,
                t.to_string(),
                source.lustre.per_unit_storage_throughput.map(|t| t.to_string()),
            )
        {
            return Err(e.into());
        }
        let have = source.capacity_gib;
        if req.required_bytes > have.saturating_mul(GIB) {
            let requested_gib = (req.required_bytes + GIB - 1) / GIB;
            return Err(CannotRestore::Larger { snapshot: id.to_string(), requested_gib, have_gib: have }.into());
        }
        if req.limit_bytes > 0 && have.saturating_mul(GIB) > req.limit_bytes {
            let limit_gib = req.limit_bytes / GIB;
            return Err(CannotRestore::AboveLimit { snapshot: id.to_string(), have_gib: have, limit_gib }.into());
        }
        Ok(backup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_keys_and_tags() {
        let p = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let tags = backup_tags(
            "snapshot-1",
            &p(&[("csi.storage.k8s.io/volumesnapshot/name", "daily"), ("extraTags", "team=ml")]),
            &[],
        )
        .unwrap();
        assert_eq!(tags[0], (SNAPSHOT_NAME_TAG.into(), "snapshot-1".into()));
        assert!(tags.contains(&("team".into(), "ml".into())));
        assert!(tags.iter().any(|(k, v)| k.ends_with("volumesnapshot/name") && v == "daily"));
        let e = backup_tags("s", &p(&[("deploymentType", "SCRATCH_1")]), &[]).unwrap_err();
        assert_eq!(e.key, "deploymentType");
    }

    #[test]
    fn only_persistent_file_systems_without_a_legacy_s3_link_can_be_backed_up() {
        let fs = |d: DeploymentType, import: bool| FileSystem {
            id: "fs-0123456789abcdef0".into(),
            lustre: crate::fsx::LustreSettings {
                deployment_type: Some(d),
                import_path: import.then(|| "s3://b".into()),
                ..Default::default()
            },
            ..FileSystem::default()
        };
        let why = cannot_back_up(&fs(DeploymentType::Scratch2, false)).unwrap();
        assert!(matches!(why, CannotSnapshot::Scratch { deployment: DeploymentType::Scratch2, .. }));
        let why = why.to_string();
        assert!(why.contains("SCRATCH_2") && why.contains("PERSISTENT_1 or PERSISTENT_2"), "{why}");
        let why = cannot_back_up(&fs(DeploymentType::Persistent1, true)).unwrap();
        assert!(matches!(why, CannotSnapshot::LegacyS3 { .. }) && why.to_string().contains("s3ImportPath"));
        assert!(cannot_back_up(&fs(DeploymentType::Persistent2, false)).is_none());
        assert!(cannot_back_up(&fs(DeploymentType::Persistent1, false)).is_none());
    }
}
