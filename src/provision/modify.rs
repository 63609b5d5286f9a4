//! ControllerModifyVolume: changing a file system's Lustre settings in place
//! (VolumeAttributesClass). Every key is checked against the file system before any update;
//! an update already running towards the same values is joined, as expansion does; the call
//! waits on the poller (no calls of its own) until FSx reports the new values in effect.

use std::collections::HashMap;

use tokio::time::Instant;

use super::params::MutableParams;
use super::poller::{self, Seen};
use super::{Pending, ProvisionError, Provisioner, by};
use crate::fsx::{FileSystem, LustreSettings, UpdateStatus, is_file_system_id};
use crate::guard::Key;

/// Whether `fs` has `update` in effect (`Some(Ok)`), the update FAILED (`Some(Err)`), or it is
/// still running (`None`).
fn outcome(fs: &FileSystem, update: &LustreSettings) -> Option<Result<(), ProvisionError>> {
    let ours = fs.updates.iter().rev().find(|u| u.target_capacity_gib.is_none() && update.covered_by(&u.target));
    if let Some(u) = ours
        && u.status == UpdateStatus::Failed
    {
        return Some(Err(ProvisionError::ModifyFailed {
            id: fs.id.clone(),
            message: u.failure_message.clone().unwrap_or_else(|| "FSx gave no failure details".into()),
        }));
    }
    (update.covered_by(&fs.lustre) && !fs.updates.iter().any(|u| u.is_running())).then_some(Ok(()))
}

impl Provisioner {
    /// Brings file system `id` to the mutable parameters, answering by `deadline`.
    pub async fn modify(
        &self,
        id: &str,
        parameters: &HashMap<String, String>,
        deadline: Instant,
    ) -> Result<(), ProvisionError> {
        let wanted = MutableParams::parse(parameters)?;
        if !is_file_system_id(id) {
            return Err(ProvisionError::NotFound(id.to_string()));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let _guard =
            self.busy.try_lock(Key::VolumeId(id.to_string())).ok_or_else(|| ProvisionError::Busy(id.to_string()))?;
        let fs = tokio::time::timeout_at(deadline, self.get(id))
            .await
            .map_err(|_| ProvisionError::FsxSlow("DescribeFileSystems"))??;
        let update = wanted.update_for(&fs)?;
        if update.is_empty() && !fs.updates.iter().any(|u| u.is_running()) {
            return Ok(());
        }
        if let Some(running) = fs.updates.iter().find(|u| u.is_running()) {
            if running.target_capacity_gib.is_some() || !update.covered_by(&running.target) {
                let what = match running.target_capacity_gib {
                    Some(gib) => format!("growing to {gib} GiB"),
                    None => "changing other settings".into(),
                };
                return Err(ProvisionError::ModifyInProgress { id: id.to_string(), running: what });
            }
            tracing::info!(volume.id = %id, "joining the settings update in progress");
        } else if !update.is_empty() {
            let now = by(deadline, "UpdateFileSystem", self.fsx.update_lustre(id, &update)).await?;
            tracing::info!(volume.id = %id, keys = %wanted.names().collect::<Vec<_>>().join(","), "UpdateFileSystem accepted");
            self.index.upsert(&now);
            if let Some(done) = outcome(&now, &update) {
                return done;
            }
        }
        let mut rx = self.poller.watch_modification(id);
        let settled = |o: &Seen<FileSystem>| match o {
            Seen::Pending => None,
            Seen::Gone => Some(Err(ProvisionError::NotFound(id.to_string()))),
            Seen::Found(fs) => outcome(fs, &update),
        };
        let seen = poller::wait_until(&mut rx, deadline, |o| settled(o).is_some()).await;
        seen.and_then(|o| settled(&o))
            .unwrap_or_else(|| Err(ProvisionError::StillPending { id: id.to_string(), pending: Pending::Modifying }))
    }
}
