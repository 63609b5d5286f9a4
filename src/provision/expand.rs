//! ControllerExpandVolume: growing a file system to the smallest valid size within the
//! requested range, joining an update already running towards it, and waiting on the poller
//! (no calls of its own) until FSx reports the new size in effect.

use tokio::time::Instant;

use super::poller::{self, Seen};
use super::progress;
use super::{CannotExpand, Pending, ProvisionError, Provisioner, by, capacity};
use crate::events::Kind;
use crate::fsx::{DeploymentType, FileSystem, StorageType, UpdateStatus, is_file_system_id};
use crate::guard::Key;
use crate::metrics::InFlight;

impl Provisioner {
    /// Grows file system `id` to the smallest valid size within the range, waiting (without
    /// API calls) until FSx reports the new size in effect. Returns the capacity in GiB.
    /// An update already running towards at least that size is joined.
    pub async fn expand(
        &self,
        id: &str,
        required_bytes: i64,
        limit_bytes: i64,
        deadline: Instant,
    ) -> Result<i64, ProvisionError> {
        // Everything that can be judged without the file system is, before any call.
        capacity::check_range(required_bytes, limit_bytes)?;
        if !is_file_system_id(id) {
            return Err(ProvisionError::NotFound(id.to_string()));
        }
        let _guard =
            self.busy.try_lock(Key::VolumeId(id.to_string())).ok_or_else(|| ProvisionError::Busy(id.to_string()))?;
        let fs = tokio::time::timeout_at(deadline, self.get(id))
            .await
            .map_err(|_| ProvisionError::FsxSlow("DescribeFileSystems"))??;
        let deployment = fs.lustre.deployment_type.ok_or_else(|| CannotExpand::NotLustre { id: id.to_string() })?;
        if deployment == DeploymentType::Scratch1 {
            return Err(CannotExpand::Scratch1 { id: id.to_string() }.into());
        }
        let storage = fs.storage_type.unwrap_or(StorageType::Ssd);
        if storage.is_elastic() {
            // Intelligent-Tiering has no provisioned size (FSx refuses a StorageCapacity for
            // it): the claim grows, and nothing is asked of FSx.
            tracing::info!(volume.id = %id, "Intelligent-Tiering grows with its data; nothing to change on FSx");
            return Ok((required_bytes.max(0) + crate::fsx::GIB - 1) / crate::fsx::GIB);
        }
        let steps = capacity::steps(deployment, storage, fs.lustre.per_unit_storage_throughput);
        let target = capacity::for_range(steps, &format!("{deployment} {storage}"), required_bytes, limit_bytes)?;
        if fs.capacity_gib >= target {
            return Ok(fs.capacity_gib);
        }
        let wanted = match fs.updates.iter().find(|u| u.is_running()) {
            Some(running) => match running.target_capacity_gib {
                Some(t) if t >= target => {
                    tracing::info!(volume.id = %id, target_gib = t, "joining the capacity update in progress");
                    t
                }
                other => {
                    return Err(ProvisionError::UpdateInProgress {
                        id: id.to_string(),
                        target_gib: other.unwrap_or(fs.capacity_gib),
                    });
                }
            },
            None => {
                // capacity::for_range caps the target at i32::MAX.
                by(deadline, "UpdateFileSystem", self.fsx.update_storage_capacity(id, target as i32)).await?;
                tracing::info!(volume.id = %id, from_gib = fs.capacity_gib, to_gib = target, "UpdateFileSystem accepted");
                if let Some(volume) = fs.volume_name() {
                    self.progress.post(
                        volume,
                        true,
                        Kind::Normal,
                        progress::reason::GROWING,
                        format!(
                            "Growing {id} from {} to {target} GiB; FSx takes minutes for the new size, then optimizes in the background",
                            fs.capacity_gib
                        ),
                    );
                }
                target
            }
        };
        let mut rx = self.poller.watch_growth(id);
        self.follow_file_system(&fs, InFlight::Growing, rx.clone());
        let outcome = |o: &Seen<FileSystem>| match o {
            Seen::Pending => None,
            Seen::Gone => Some(Err(ProvisionError::NotFound(id.to_string()))),
            Seen::Found(fs) => update_outcome(fs, wanted),
        };
        let seen = poller::wait_until(&mut rx, deadline, |o| outcome(o).is_some()).await;
        seen.and_then(|o| outcome(&o)).unwrap_or_else(|| {
            Err(ProvisionError::StillPending { id: id.to_string(), pending: Pending::Growing { target_gib: wanted } })
        })
    }
}

/// Whether a capacity update to `target` GiB is done (new size in effect), failed, or still
/// running (`None`).
fn update_outcome(fs: &FileSystem, target: i64) -> Option<Result<i64, ProvisionError>> {
    let update = fs.updates.iter().rev().find(|u| u.target_capacity_gib == Some(target));
    match update {
        Some(u) if u.is_done() => Some(Ok(target.max(fs.capacity_gib))),
        Some(u) if u.status == UpdateStatus::Failed => Some(Err(ProvisionError::UpdateFailed {
            id: fs.id.clone(),
            target_gib: target,
            message: u.failure_message.clone().unwrap_or_else(|| "FSx gave no failure details".into()),
        })),
        Some(_) => None,
        None if fs.capacity_gib >= target && !fs.updates.iter().any(|u| u.is_running()) => Some(Ok(fs.capacity_gib)),
        None => None,
    }
}
