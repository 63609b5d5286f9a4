//! The in-memory index of backups this driver made for CSI snapshots, by snapshot name.
//!
//! Like the file system [`super::index::Index`], it is loaded at start-up from one paged
//! listing of the account's user-initiated Lustre backups and kept current from this process's
//! calls and the poller, so CreateSnapshot retries and ListSnapshots never list the account. A
//! listing every resync interval brings in what another replica or a person did meanwhile;
//! what this process learned while that listing ran wins over it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::index::Changes;
use crate::fsx::{Backup, BackupLifecycle};

#[derive(Debug, Default)]
struct Inner {
    by_id: BTreeMap<String, Backup>,
    generations: HashMap<String, u32>,
    /// What this process changed while a listing ran (see [`Changes`]).
    changes: Changes,
}

impl Inner {
    fn touch(&mut self, id: &str) {
        self.changes.touch(id);
    }
}

/// Snapshot name → backup. Every method takes a short lock.
#[derive(Debug, Default)]
pub struct Snapshots {
    inner: Mutex<Inner>,
}

/// Which of several backups for one name counts: an AVAILABLE one, then one being taken, then
/// a FAILED one.
fn rank(l: &BackupLifecycle) -> u8 {
    match l {
        BackupLifecycle::Available => 0,
        l if l.is_in_flight() => 1,
        BackupLifecycle::Failed => 3,
        BackupLifecycle::Deleted => 4,
        _ => 2,
    }
}

impl Snapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what FSx said of a backup. Backups without a snapshot name tag are not indexed.
    pub fn upsert(&self, backup: &Backup) {
        if backup.snapshot_name().is_none() {
            return;
        }
        let mut inner = self.lock();
        inner.touch(&backup.id);
        if backup.lifecycle == BackupLifecycle::Deleted {
            inner.by_id.remove(&backup.id);
        } else {
            inner.by_id.insert(backup.id.clone(), backup.clone());
        }
    }

    /// Forgets a backup FSx no longer knows (or that this process deleted).
    pub fn remove(&self, id: &str) {
        let mut inner = self.lock();
        inner.touch(id);
        inner.by_id.remove(id);
    }

    /// The backup that counts for snapshot `name`, if any.
    pub fn by_name(&self, name: &str) -> Option<Backup> {
        let inner = self.lock();
        inner.by_id.values().filter(|b| b.snapshot_name() == Some(name)).min_by_key(|b| rank(&b.lifecycle)).cloned()
    }

    /// The backup with this id, if indexed.
    pub fn by_id(&self, id: &str) -> Option<Backup> {
        self.lock().by_id.get(id).cloned()
    }

    /// The token generation of snapshot `name` (moves on after a FAILED backup).
    pub fn generation(&self, name: &str) -> u32 {
        self.lock().generations.get(name).copied().unwrap_or(0)
    }

    /// Moves `name` past `from` (no-op if another call already did).
    pub fn bump_generation(&self, name: &str, from: u32) {
        let mut inner = self.lock();
        let g = inner.generations.entry(name.to_string()).or_insert(0);
        if *g == from {
            *g += 1;
        }
    }

    /// Up to `max` backups after id `after` (in id order), optionally only of one source file
    /// system, and whether more follow.
    pub fn page(&self, after: Option<&str>, max: usize, source: Option<&str>) -> (Vec<Backup>, bool) {
        let inner = self.lock();
        let range = match after {
            Some(a) => inner.by_id.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => inner.by_id.range::<str, _>(..),
        };
        let mut matching = range.map(|(_, b)| b).filter(|b| source.is_none_or(|s| b.file_system.id == s));
        let page: Vec<Backup> = matching.by_ref().take(max).cloned().collect();
        let more = matching.next().is_some();
        (page, more)
    }

    /// The clock now: changes after this mark win over a listing begun now.
    pub fn mark(&self) -> (u64, Vec<String>) {
        let mut inner = self.lock();
        let mark = inner.changes.begin();
        (mark, inner.by_id.keys().cloned().collect())
    }

    /// Applies a listing begun at `mark`: listed backups are recorded and indexed ones the
    /// listing no longer shows are forgotten, unless this process changed them since.
    pub fn apply_listing(&self, (mark, before): &(u64, Vec<String>), listed: &[Backup]) {
        let mut inner = self.lock();
        let fresh = |inner: &Inner, id: &str| !inner.changes.unchanged_since(id, *mark);
        for b in listed.iter().filter(|b| b.snapshot_name().is_some()) {
            if !fresh(&inner, &b.id) {
                inner.by_id.insert(b.id.clone(), b.clone());
            }
        }
        let seen: std::collections::HashSet<&str> = listed.iter().map(|b| b.id.as_str()).collect();
        for id in before {
            if !seen.contains(id.as_str()) && !fresh(&inner, id) {
                inner.by_id.remove(id);
            }
        }
        inner.changes.end();
    }

    /// How many backups are indexed.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// True if no backup is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsx::{FileSystem, SNAPSHOT_NAME_TAG};

    fn backup(id: &str, name: &str, source: &str, lifecycle: BackupLifecycle) -> Backup {
        Backup {
            id: id.into(),
            lifecycle,
            failure_message: None,
            file_system: FileSystem { id: source.into(), ..FileSystem::default() },
            created_at: None,
            tags: vec![(SNAPSHOT_NAME_TAG.into(), name.into())],
        }
    }

    #[test]
    fn names_pages_and_listings() {
        let s = Snapshots::default();
        s.upsert(&backup("backup-00000001", "a", "fs-00000001", BackupLifecycle::Failed));
        s.upsert(&backup("backup-00000002", "a", "fs-00000001", BackupLifecycle::Creating));
        s.upsert(&backup("backup-00000003", "b", "fs-00000002", BackupLifecycle::Available));
        assert_eq!(s.by_name("a").unwrap().id, "backup-00000002");
        let (page, more) = s.page(None, 2, None);
        assert_eq!((page.len(), more), (2, true));
        let (page, more) = s.page(Some("backup-00000002"), 2, None);
        assert_eq!((page[0].id.as_str(), more), ("backup-00000003", false));
        assert_eq!(s.page(None, 10, Some("fs-00000002")).0.len(), 1);
        // A listing that no longer shows a backup forgets it, unless this process just made it.
        let mark = s.mark();
        s.upsert(&backup("backup-00000004", "c", "fs-00000002", BackupLifecycle::Creating));
        s.apply_listing(&mark, &[backup("backup-00000003", "b", "fs-00000002", BackupLifecycle::Available)]);
        assert!(s.by_name("a").is_none());
        assert!(s.by_name("c").is_some());
        assert_eq!(s.len(), 2);
    }
}
