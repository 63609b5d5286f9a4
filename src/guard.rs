//! Per-key guards, for the controller and the node alike: at most one call works on a
//! volume, snapshot or path at a time.
//!
//! A second call for a key that is in flight is refused at once (the caller answers
//! `Aborted`, and the CO retries), rather than queued behind a call that may wait minutes.
//! Guards are released on drop, so a handler that returns early, times out or is cancelled
//! by its client never leaves a key locked. Keys are typed, so a volume name never collides
//! with a volume id or a snapshot name that happens to be spelled the same.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// What a call works on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A CreateVolume name.
    VolumeName(String),
    /// A volume id (a file system id; on the node, whatever the CO sent).
    VolumeId(String),
    /// A CreateSnapshot name.
    SnapshotName(String),
    /// A snapshot id (a backup id).
    SnapshotId(String),
    /// A staging or target path on the node.
    Path(String),
}

/// The keys currently being worked on.
#[derive(Debug, Default)]
pub struct Guards {
    keys: Mutex<HashSet<Key>>,
}

/// Holds a key until dropped.
#[derive(Debug)]
pub struct Guard {
    set: Arc<Guards>,
    key: Key,
}

impl Guards {
    /// A new, empty set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes `key`, or returns `None` if another call holds it.
    pub fn try_lock(self: &Arc<Self>, key: Key) -> Option<Guard> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(key.clone()).then(|| Guard { set: Arc::clone(self), key })
    }

    /// Takes every key in `keys`, or none of them.
    pub fn try_lock_all(self: &Arc<Self>, keys: impl IntoIterator<Item = Key>) -> Option<Vec<Guard>> {
        let mut guards: Vec<Guard> = Vec::new();
        for key in keys {
            if guards.iter().any(|g| g.key == key) {
                continue;
            }
            guards.push(self.try_lock(key)?);
        }
        Some(guards)
    }

    /// True if `key` is held.
    #[cfg(test)]
    pub fn is_locked(&self, key: &Key) -> bool {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).contains(key)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.set.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Key {
        Key::VolumeName(s.into())
    }

    #[test]
    fn exclusive_until_dropped() {
        let set = Guards::new();
        let g = set.try_lock(name("a")).unwrap();
        assert!(set.try_lock(name("a")).is_none());
        assert!(set.try_lock(name("b")).is_some());
        drop(g);
        assert!(set.try_lock(name("a")).is_some());
    }

    #[test]
    fn all_or_nothing() {
        let set = Guards::new();
        let _held = set.try_lock(name("b")).unwrap();
        assert!(set.try_lock_all([name("a"), name("b")]).is_none());
        assert!(!set.is_locked(&name("a")));
        let both = set.try_lock_all([name("a"), name("c"), name("a")]).unwrap();
        assert_eq!(both.len(), 2);
    }

    /// A volume name spelled like an id, or like a snapshot name, is another key.
    #[test]
    fn kinds_never_collide() {
        let set = Guards::new();
        let _a = set.try_lock(name("fs-0123456789abcdef0")).unwrap();
        let _b = set.try_lock(Key::VolumeId("fs-0123456789abcdef0".into())).unwrap();
        let _c = set.try_lock(Key::SnapshotName("fs-0123456789abcdef0".into())).unwrap();
        let _d = set.try_lock(Key::SnapshotName("snapshot:x".into())).unwrap();
        assert!(set.try_lock(name("snapshot:x")).is_some());
    }
}
