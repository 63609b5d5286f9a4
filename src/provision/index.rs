//! The in-memory index of file systems this driver (or the Go driver) created, by volume name.
//!
//! It is built once at start-up from one paged listing of the account and then kept current
//! from this process's own calls (create, describe, delete, the poller), so finding the file
//! system for a name never lists the account. A name can map to several file systems over
//! time (a FAILED one being deleted, then its replacement); [`Index::by_name`] picks the one
//! that counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::fsx::{FileSystem, Lifecycle};

#[derive(Debug, Default)]
struct Inner {
    by_id: BTreeMap<String, FileSystem>,
    ids_by_name: HashMap<String, Vec<String>>,
    generations: HashMap<String, u32>,
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
        let ids = inner.ids_by_name.entry(name.to_string()).or_default();
        if !ids.contains(&fs.id) {
            ids.push(fs.id.clone());
        }
        inner.by_id.insert(fs.id.clone(), fs.clone());
    }

    /// Forgets a file system that FSx no longer knows.
    pub fn remove(&self, id: &str) {
        let mut inner = self.lock();
        if let Some(fs) = inner.by_id.remove(id) {
            if let Some(name) = fs.volume_name() {
                if let Some(ids) = inner.ids_by_name.get_mut(name) {
                    ids.retain(|i| i != id);
                    if ids.is_empty() {
                        inner.ids_by_name.remove(name);
                    }
                }
            }
        }
    }

    /// Marks a file system as DELETING after a successful `DeleteFileSystem`.
    pub fn mark_deleting(&self, id: &str) {
        if let Some(fs) = self.lock().by_id.get_mut(id) {
            fs.lifecycle = Lifecycle::Deleting;
        }
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
    use crate::fsx::VOLUME_NAME_TAG;

    pub(crate) fn fs(id: &str, name: Option<&str>, lifecycle: Lifecycle) -> FileSystem {
        FileSystem {
            id: id.into(),
            lifecycle,
            failure_message: None,
            capacity_gib: 1200,
            storage_type: None,
            deployment_type: None,
            per_unit_storage_throughput: None,
            drive_cache_type: None,
            data_compression_type: None,
            subnet_ids: vec![],
            dns_name: String::new(),
            mount_name: String::new(),
            kms_key_id: None,
            file_system_type_version: None,
            efa_enabled: None,
            import_path: None,
            export_path: None,
            tags: name.map(|n| vec![(VOLUME_NAME_TAG.to_string(), n.to_string())]).unwrap_or_default(),
            updates: vec![],
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
