//! The in-memory index of file systems this driver (or the Go driver) created, by volume name.
//!
//! It is built at start-up from one paged listing of the account and then kept current from
//! this process's own calls (create, describe, delete, the poller), so finding the file system
//! for a name never lists the account. A listing every few minutes ([`Index::apply_listing`])
//! brings in what another replica (the previous leader) or a person did meanwhile; the
//! interval is far inside FSx's `ClientRequestToken` window, so a file system created by the
//! previous leader too recently to be listed is still found by its token. A name can map to several file systems over
//! time (a FAILED one being deleted, then its replacement); [`Index::by_name`] picks the one
//! that counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::fsx::{FileSystem, Lifecycle};

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

#[derive(Debug, Default)]
struct Inner {
    by_id: BTreeMap<String, FileSystem>,
    ids_by_name: HashMap<String, Vec<String>>,
    generations: HashMap<String, u32>,
    changes: Changes,
}

impl Inner {
    fn touch(&mut self, id: &str) {
        self.changes.touch(id);
    }

    fn unchanged_since(&self, id: &str, mark: u64) -> bool {
        self.changes.unchanged_since(id, mark)
    }

    fn insert(&mut self, fs: &FileSystem, name: &str) {
        let ids = self.ids_by_name.entry(name.to_string()).or_default();
        if !ids.contains(&fs.id) {
            ids.push(fs.id.clone());
        }
        self.by_id.insert(fs.id.clone(), fs.clone());
    }

    fn forget(&mut self, id: &str) {
        if let Some(fs) = self.by_id.remove(id) {
            if let Some(name) = fs.volume_name() {
                if let Some(ids) = self.ids_by_name.get_mut(name) {
                    ids.retain(|i| i != id);
                    if ids.is_empty() {
                        self.ids_by_name.remove(name);
                    }
                }
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

/// Name → file system index. Cheap to query; every method takes a short lock.
#[derive(Debug, Default)]
pub struct Index {
    inner: Mutex<Inner>,
}

/// Which of several file systems for one name counts: a usable one first, then one being
/// created, then a failed one; a DELETING one only if nothing else exists.
fn rank(l: &Lifecycle) -> u8 {
    match l {
        Lifecycle::Available | Lifecycle::Updating => 0,
        Lifecycle::Creating => 1,
        Lifecycle::Misconfigured | Lifecycle::MisconfiguredUnavailable | Lifecycle::Other(_) => 2,
        Lifecycle::Failed => 3,
        Lifecycle::Deleting => 4,
    }
}

impl Index {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what FSx said of a file system. File systems without a `CSIVolumeName` tag
    /// are not indexed.
    pub fn upsert(&self, fs: &FileSystem) {
        let Some(name) = fs.volume_name() else { return };
        let mut inner = self.lock();
        inner.touch(&fs.id);
        inner.insert(fs, name);
    }

    /// Forgets a file system that FSx no longer knows.
    pub fn remove(&self, id: &str) {
        let mut inner = self.lock();
        inner.touch(id);
        inner.forget(id);
    }

    /// Marks a file system as DELETING after a successful `DeleteFileSystem`.
    pub fn mark_deleting(&self, id: &str) {
        let mut inner = self.lock();
        inner.touch(id);
        if let Some(fs) = inner.by_id.get_mut(id) {
            fs.lifecycle = Lifecycle::Deleting;
        }
    }

    /// Marks the start of a resync: the ids indexed now, and the point after which this
    /// process's own news wins over the listing.
    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        let mark = inner.changes.begin();
        Snapshot { mark, ids: inner.by_id.keys().cloned().collect() }
    }

    /// Applies a complete listing taken after `snapshot`: records every listed file system and
    /// forgets every one indexed at the snapshot that the listing no longer has, except where
    /// this process learned something newer meanwhile. Returns how many were forgotten.
    pub fn apply_listing(&self, snapshot: &Snapshot, listed: &[FileSystem]) -> usize {
        let mut inner = self.lock();
        for fs in listed {
            if let Some(name) = fs.volume_name() {
                if inner.unchanged_since(&fs.id, snapshot.mark) {
                    inner.insert(fs, name);
                }
            }
        }
        let seen: std::collections::HashSet<&str> = listed.iter().map(|fs| fs.id.as_str()).collect();
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

    /// The file system that counts for `name`, if any.
    pub fn by_name(&self, name: &str) -> Option<FileSystem> {
        let inner = self.lock();
        inner
            .ids_by_name
            .get(name)?
            .iter()
            .filter_map(|id| inner.by_id.get(id))
            .min_by_key(|fs| rank(&fs.lifecycle))
            .cloned()
    }

    /// The indexed file system with this id.
    pub fn by_id(&self, id: &str) -> Option<FileSystem> {
        self.lock().by_id.get(id).cloned()
    }

    /// The token generation to use for `name`'s next creation.
    pub fn generation(&self, name: &str) -> u32 {
        self.lock().generations.get(name).copied().unwrap_or(0)
    }

    /// Moves `name` to the next token generation (after its file system FAILED or its token
    /// answered with a deleted file system).
    pub fn bump_generation(&self, name: &str, seen: u32) {
        let mut inner = self.lock();
        let g = inner.generations.entry(name.to_string()).or_insert(0);
        *g = (*g).max(seen + 1);
    }

    /// Up to `max` indexed file systems not being deleted, by id, starting after `after`.
    /// Returns them and whether more remain.
    pub fn page(&self, after: Option<&str>, max: usize) -> (Vec<FileSystem>, bool) {
        let inner = self.lock();
        let mut live = inner
            .by_id
            .iter()
            .filter(|(id, fs)| after.is_none_or(|a| id.as_str() > a) && fs.lifecycle != Lifecycle::Deleting)
            .map(|(_, fs)| fs);
        let out: Vec<FileSystem> = live.by_ref().take(max).cloned().collect();
        let more = live.next().is_some();
        (out, more)
    }

    /// Number of indexed file systems.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// True if nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes are remembered only while a listing runs, so ids sent by clients and unknown to
    /// FSx do not accumulate; what a running listing must not overwrite is still kept.
    #[test]
    fn changes_are_remembered_only_while_a_listing_runs() {
        let index = Index::default();
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
    use crate::fsx::VOLUME_NAME_TAG;

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
        let index = Index::default();
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
        let index = Index::default();
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
        let index = Index::default();
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
        let index = Index::default();
        index.upsert(&fs("fs-00000001", None, Lifecycle::Available));
        assert!(index.is_empty());
    }

    #[test]
    fn generations_only_move_forward() {
        let index = Index::default();
        assert_eq!(index.generation("a"), 0);
        index.bump_generation("a", 0);
        index.bump_generation("a", 0);
        assert_eq!(index.generation("a"), 1);
        index.bump_generation("a", 4);
        assert_eq!(index.generation("a"), 5);
    }

    #[test]
    fn pages_by_id() {
        let index = Index::default();
        for i in 1..=5 {
            index.upsert(&fs(&format!("fs-0000000{i}"), Some(&format!("v{i}")), Lifecycle::Available));
        }
        index.mark_deleting("fs-00000003");
        let (p1, more) = index.page(None, 2);
        assert_eq!(p1.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["fs-00000001", "fs-00000002"]);
        assert!(more);
        let (p2, more) = index.page(Some("fs-00000002"), 2);
        assert_eq!(p2.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["fs-00000004", "fs-00000005"]);
        assert!(!more);
    }
}
