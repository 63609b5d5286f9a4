//! The in-memory indexes of what this driver made in FSx, by the name Kubernetes gave it: file
//! systems by volume name (the `CSIVolumeName` tag, shared with the Go driver) and backups by
//! snapshot name (`CSISnapshotName`). One generic [`Index`] serves both ([`Named`] says how a
//! resource is named and which of several for one name counts).
//!
//! An index is built at start-up from one paged listing of the account and then kept current
//! from this process's own calls (create, describe, delete, the poller), so finding the
//! resource for a name never lists the account. A listing every few minutes
//! ([`Index::apply_listing`]) brings in what another replica (the previous leader) or a person
//! did meanwhile; the interval is far inside FSx's `ClientRequestToken` window, so a file
//! system created by the previous leader too recently to be listed is still found by its
//! token. A name can map to several resources over time (a FAILED one being deleted, then its
//! replacement); [`Index::by_name`] picks the one that counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::fsx::{Backup, BackupLifecycle, FileSystem, Lifecycle};

/// The most changes remembered while one listing runs; past it, that listing is not applied
/// (the next one is).
const MAX_CHANGES: usize = 65_536;

/// What this process changed while a listing of the account ran, so that the listing never
/// overwrites fresher news: a counter bumped by every change, and its value at each id's last
/// change. Kept only while a listing runs (a listing begun later starts after every earlier
/// change), so ids that clients send and FSx does not know are not remembered for ever.
#[derive(Debug, Default)]
pub(super) struct Changes {
    clock: u64,
    listing: bool,
    changed_at: HashMap<String, u64>,
    overflowed: bool,
}

impl Changes {
    /// Records a change of `id`.
    pub(super) fn touch(&mut self, id: &str) {
        self.clock += 1;
        if !self.listing {
            return;
        }
        if self.changed_at.len() < MAX_CHANGES || self.changed_at.contains_key(id) {
            self.changed_at.insert(id.to_string(), self.clock);
        } else {
            self.overflowed = true;
        }
    }

    /// A listing begins: returns its mark.
    pub(super) fn begin(&mut self) -> u64 {
        self.changed_at.clear();
        self.overflowed = false;
        self.listing = true;
        self.clock
    }

    /// True if the listing begun at `mark` may decide about `id`: this process has not changed
    /// it since.
    pub(super) fn unchanged_since(&self, id: &str, mark: u64) -> bool {
        !self.overflowed && self.changed_at.get(id).is_none_or(|&at| at <= mark)
    }

    /// The listing has been applied.
    pub(super) fn end(&mut self) {
        self.changed_at = HashMap::new();
        self.listing = false;
    }

    #[cfg(test)]
    pub(super) fn remembered(&self) -> usize {
        self.changed_at.len()
    }
}

/// An FSx resource this driver names: a file system or a backup.
pub trait Named: Clone {
    /// The FSx id.
    fn id(&self) -> &str;
    /// The Kubernetes name it was made for (from its tag); untagged resources are not indexed.
    fn name(&self) -> Option<&str>;
    /// Which of several resources for one name counts: the lowest rank.
    fn rank(&self) -> u8;
    /// FSx reports it gone (a DELETED backup): recording it forgets it.
    fn is_gone(&self) -> bool {
        false
    }
}

impl Named for FileSystem {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> Option<&str> {
        self.volume_name()
    }

    /// A usable one first, then one being created, then a failed one; a DELETING one only if
    /// nothing else exists.
    fn rank(&self) -> u8 {
        match self.lifecycle {
            Lifecycle::Available | Lifecycle::Updating => 0,
            Lifecycle::Creating => 1,
            Lifecycle::Misconfigured | Lifecycle::MisconfiguredUnavailable | Lifecycle::Other(_) => 2,
            Lifecycle::Failed => 3,
            Lifecycle::Deleting => 4,
        }
    }
}

impl Named for Backup {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> Option<&str> {
        self.snapshot_name()
    }

    /// An AVAILABLE one, then one being taken, then a FAILED one.
    fn rank(&self) -> u8 {
        match &self.lifecycle {
            BackupLifecycle::Available => 0,
            l if l.is_in_flight() => 1,
            BackupLifecycle::Failed => 3,
            BackupLifecycle::Deleted => 4,
            _ => 2,
        }
    }

    fn is_gone(&self) -> bool {
        self.lifecycle == BackupLifecycle::Deleted
    }
}

#[derive(Debug)]
struct Inner<R> {
    by_id: BTreeMap<String, R>,
    ids_by_name: HashMap<String, Vec<String>>,
    generations: HashMap<String, u32>,
    changes: Changes,
}

impl<R: Named> Inner<R> {
    fn touch(&mut self, id: &str) {
        self.changes.touch(id);
    }

    fn unchanged_since(&self, id: &str, mark: u64) -> bool {
        self.changes.unchanged_since(id, mark)
    }

    fn insert(&mut self, r: &R, name: &str) {
        if r.is_gone() {
            self.forget(r.id());
            return;
        }
        let ids = self.ids_by_name.entry(name.to_string()).or_default();
        if !ids.iter().any(|i| i == r.id()) {
            ids.push(r.id().to_string());
        }
        self.by_id.insert(r.id().to_string(), r.clone());
    }

    fn forget(&mut self, id: &str) {
        if let Some(r) = self.by_id.remove(id)
            && let Some(name) = r.name()
            && let Some(ids) = self.ids_by_name.get_mut(name)
        {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.ids_by_name.remove(name);
            }
        }
    }
}

/// The index as it was when a resync's listing began: see [`Index::snapshot`].
#[derive(Debug)]
pub struct Snapshot {
    mark: u64,
    ids: Vec<String>,
}

/// Name → resource index. Cheap to query; every method takes a short lock.
#[derive(Debug)]
pub struct Index<R> {
    inner: Mutex<Inner<R>>,
}

/// File systems by volume name.
pub type FileSystems = Index<FileSystem>;

/// Backups by snapshot name.
pub type Backups = Index<Backup>;

impl<R> Default for Index<R> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                by_id: BTreeMap::new(),
                ids_by_name: HashMap::new(),
                generations: HashMap::new(),
                changes: Changes::default(),
            }),
        }
    }
}

impl<R: Named> Index<R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<R>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what FSx said of a resource. Untagged ones are not indexed; gone ones are
    /// forgotten.
    pub fn upsert(&self, r: &R) {
        let Some(name) = r.name() else { return };
        let mut inner = self.lock();
        inner.touch(r.id());
        inner.insert(r, name);
    }

    /// Forgets a resource that FSx no longer knows (or that this process deleted).
    pub fn remove(&self, id: &str) {
        let mut inner = self.lock();
        inner.touch(id);
        inner.forget(id);
    }

    /// Changes the indexed resource `id` in place (a file system this process just asked FSx
    /// to delete is DELETING).
    pub fn update(&self, id: &str, change: impl FnOnce(&mut R)) {
        let mut inner = self.lock();
        inner.touch(id);
        if let Some(r) = inner.by_id.get_mut(id) {
            change(r);
        }
    }

    /// Marks the start of a resync: the ids indexed now, and the point after which this
    /// process's own news wins over the listing.
    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        let mark = inner.changes.begin();
        Snapshot { mark, ids: inner.by_id.keys().cloned().collect() }
    }

    /// Applies a complete listing taken after `snapshot`: records every listed resource and
    /// forgets every one indexed at the snapshot that the listing no longer has, except where
    /// this process learned something newer meanwhile. Returns how many were forgotten.
    pub fn apply_listing(&self, snapshot: &Snapshot, listed: &[R]) -> usize {
        let mut inner = self.lock();
        for r in listed {
            if let Some(name) = r.name()
                && inner.unchanged_since(r.id(), snapshot.mark)
            {
                inner.insert(r, name);
            }
        }
        let seen: std::collections::HashSet<&str> = listed.iter().map(Named::id).collect();
        let mut dropped = 0;
        for id in &snapshot.ids {
            if !seen.contains(id.as_str()) && inner.unchanged_since(id, snapshot.mark) && inner.by_id.contains_key(id) {
                inner.forget(id);
                dropped += 1;
            }
        }
        inner.changes.end();
        dropped
    }

    /// The resource that counts for `name`, if any.
    pub fn by_name(&self, name: &str) -> Option<R> {
        let inner = self.lock();
        inner.ids_by_name.get(name)?.iter().filter_map(|id| inner.by_id.get(id)).min_by_key(|r| r.rank()).cloned()
    }

    /// The indexed resource with this id.
    pub fn by_id(&self, id: &str) -> Option<R> {
        self.lock().by_id.get(id).cloned()
    }

    /// The token generation to use for `name`'s next creation.
    pub fn generation(&self, name: &str) -> u32 {
        self.lock().generations.get(name).copied().unwrap_or(0)
    }

    /// Moves `name` past generation `seen` (after what was made with it FAILED or its token
    /// answered with a deleted resource). Calls that saw the same generation move it once.
    pub fn bump_generation(&self, name: &str, seen: u32) {
        let mut inner = self.lock();
        let g = inner.generations.entry(name.to_string()).or_insert(0);
        *g = (*g).max(seen + 1);
    }

    /// Up to `max` indexed resources that `keep` accepts, by id, starting after `after`.
    /// Returns them and whether more remain.
    pub fn page(&self, after: Option<&str>, max: usize, keep: impl Fn(&R) -> bool) -> (Vec<R>, bool) {
        let inner = self.lock();
        let range = match after {
            Some(a) => inner.by_id.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => inner.by_id.range::<str, _>(..),
        };
        let mut matching = range.map(|(_, r)| r).filter(|r| keep(r));
        let out: Vec<R> = matching.by_ref().take(max).cloned().collect();
        let more = matching.next().is_some();
        (out, more)
    }

    /// Number of indexed resources.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// True if nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Index<FileSystem> {
    /// Marks a file system as DELETING after a successful `DeleteFileSystem`.
    pub fn mark_deleting(&self, id: &str) {
        self.update(id, |fs| fs.lifecycle = Lifecycle::Deleting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes are remembered only while a listing runs, so ids sent by clients and unknown to
    /// FSx do not accumulate; what a running listing must not overwrite is still kept.
    #[test]
    fn changes_are_remembered_only_while_a_listing_runs() {
        let index = FileSystems::default();
        for i in 0..10_000 {
            index.remove(&format!("fs-{i:017x}"));
        }
        assert_eq!(index.lock().changes.remembered(), 0);
        let snapshot = index.snapshot();
        index.remove("fs-00000000000000001");
        assert_eq!(index.lock().changes.remembered(), 1);
        index.apply_listing(&snapshot, &[]);
        assert_eq!(index.lock().changes.remembered(), 0);
        // Past the cap, that listing decides nothing.
        let mut changes = Changes::default();
        let mark = changes.begin();
        for i in 0..=MAX_CHANGES {
            changes.touch(&format!("fs-{i:017x}"));
        }
        assert_eq!(changes.remembered(), MAX_CHANGES);
        assert!(!changes.unchanged_since("fs-ffffffffffffffff0", mark));
    }
    use crate::fsx::{SNAPSHOT_NAME_TAG, VOLUME_NAME_TAG};

    pub(crate) fn fs(id: &str, name: Option<&str>, lifecycle: Lifecycle) -> FileSystem {
        FileSystem {
            id: id.into(),
            lifecycle,
            capacity_gib: 1200,
            tags: name.map(|n| vec![(VOLUME_NAME_TAG.to_string(), n.to_string())]).unwrap_or_default(),
            ..FileSystem::default()
        }
    }

    #[test]
    fn prefers_live_file_systems() {
        let index = FileSystems::default();
        index.upsert(&fs("fs-00000001", Some("a"), Lifecycle::Failed));
        index.upsert(&fs("fs-00000002", Some("a"), Lifecycle::Creating));
        assert_eq!(index.by_name("a").unwrap().id, "fs-00000002");
        index.mark_deleting("fs-00000002");
        assert_eq!(index.by_name("a").unwrap().id, "fs-00000001");
        index.remove("fs-00000001");
        index.remove("fs-00000002");
        assert!(index.by_name("a").is_none());
        assert!(index.is_empty());
    }

    #[test]
    fn a_listing_adds_new_file_systems_and_forgets_vanished_ones() {
        let index = FileSystems::default();
        index.upsert(&fs("fs-00000001", Some("kept"), Lifecycle::Creating));
        index.upsert(&fs("fs-00000002", Some("vanished"), Lifecycle::Available));
        let snapshot = index.snapshot();
        let listed = [
            fs("fs-00000001", Some("kept"), Lifecycle::Available),
            fs("fs-00000003", Some("by-the-old-leader"), Lifecycle::Creating),
            fs("fs-00000004", None, Lifecycle::Available),
        ];
        assert_eq!(index.apply_listing(&snapshot, &listed), 1);
        assert_eq!(index.by_name("kept").unwrap().lifecycle, Lifecycle::Available);
        assert_eq!(index.by_name("by-the-old-leader").unwrap().id, "fs-00000003");
        assert!(index.by_name("vanished").is_none());
        assert!(index.by_id("fs-00000004").is_none(), "untagged file systems stay out");
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn news_from_during_the_listing_beats_the_listing() {
        let index = FileSystems::default();
        index.upsert(&fs("fs-00000001", Some("deleted-meanwhile"), Lifecycle::Available));
        index.upsert(&fs("fs-00000002", Some("gone-then-recreated"), Lifecycle::Available));
        let snapshot = index.snapshot();
        // While the listing runs, this process deletes one file system, learns that another
        // is gone, and creates a third; the listing (older) still shows the first two as they
        // were and does not show the third.
        index.mark_deleting("fs-00000001");
        index.remove("fs-00000002");
        index.upsert(&fs("fs-00000003", Some("created-meanwhile"), Lifecycle::Creating));
        let listed = [
            fs("fs-00000001", Some("deleted-meanwhile"), Lifecycle::Available),
            fs("fs-00000002", Some("gone-then-recreated"), Lifecycle::Available),
        ];
        assert_eq!(index.apply_listing(&snapshot, &listed), 0);
        assert_eq!(index.by_id("fs-00000001").unwrap().lifecycle, Lifecycle::Deleting);
        assert!(index.by_id("fs-00000002").is_none());
        assert_eq!(index.by_name("created-meanwhile").unwrap().id, "fs-00000003");
    }

    #[test]
    fn untagged_file_systems_are_not_indexed() {
        let index = FileSystems::default();
        index.upsert(&fs("fs-00000001", None, Lifecycle::Available));
        assert!(index.is_empty());
    }

    #[test]
    fn generations_only_move_forward() {
        let index = FileSystems::default();
        assert_eq!(index.generation("a"), 0);
        index.bump_generation("a", 0);
        index.bump_generation("a", 0);
        assert_eq!(index.generation("a"), 1);
        index.bump_generation("a", 4);
        assert_eq!(index.generation("a"), 5);
    }

    #[test]
    fn pages_by_id() {
        let index = FileSystems::default();
        for i in 1..=5 {
            index.upsert(&fs(&format!("fs-0000000{i}"), Some(&format!("v{i}")), Lifecycle::Available));
        }
        index.mark_deleting("fs-00000003");
        let (p1, more) = index.page(None, 2, |fs| fs.lifecycle != Lifecycle::Deleting);
        assert_eq!(p1.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["fs-00000001", "fs-00000002"]);
        assert!(more);
        let (p2, more) = index.page(Some("fs-00000002"), 2, |fs| fs.lifecycle != Lifecycle::Deleting);
        assert_eq!(p2.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["fs-00000004", "fs-00000005"]);
        assert!(!more);
    }

    fn backup(id: &str, name: &str, source: &str, lifecycle: BackupLifecycle) -> Backup {
        Backup {
            id: id.into(),
            lifecycle,
            failure_message: None,
            file_system: FileSystem { id: source.into(), ..FileSystem::default() },
            created_at: None,
            tags: vec![(SNAPSHOT_NAME_TAG.into(), name.into())],
            progress_percent: None,
        }
    }

    #[test]
    fn backups_by_snapshot_name_pages_and_listings() {
        let s = Backups::default();
        s.upsert(&backup("backup-00000001", "a", "fs-00000001", BackupLifecycle::Failed));
        s.upsert(&backup("backup-00000002", "a", "fs-00000001", BackupLifecycle::Creating));
        s.upsert(&backup("backup-00000003", "b", "fs-00000002", BackupLifecycle::Available));
        assert_eq!(s.by_name("a").unwrap().id, "backup-00000002");
        let (page, more) = s.page(None, 2, |_| true);
        assert_eq!((page.len(), more), (2, true));
        let (page, more) = s.page(Some("backup-00000002"), 2, |_| true);
        assert_eq!((page[0].id.as_str(), more), ("backup-00000003", false));
        assert_eq!(s.page(None, 10, |b| b.file_system.id == "fs-00000002").0.len(), 1);
        // A listing that no longer shows a backup forgets it, unless this process just made it.
        let mark = s.snapshot();
        s.upsert(&backup("backup-00000004", "c", "fs-00000002", BackupLifecycle::Creating));
        s.apply_listing(&mark, &[backup("backup-00000003", "b", "fs-00000002", BackupLifecycle::Available)]);
        assert!(s.by_name("a").is_none());
        assert!(s.by_name("c").is_some());
        assert_eq!(s.len(), 2);
    }
}
