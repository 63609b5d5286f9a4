//! Per-key guards: at most one call works on a volume name or id at a time.
//!
//! A second call for a key that is in flight is refused at once (the caller answers
//! `Aborted`, and the CO retries), rather than queued behind a call that may wait minutes.
//! Guards are released on drop, so a handler that returns early, times out or is cancelled
//! by its client never leaves a key locked.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// A set of keys currently being worked on.
#[derive(Debug, Default)]
pub struct InFlight {
    keys: Mutex<HashSet<String>>,
}

/// Holds a key until dropped.
#[derive(Debug)]
pub struct Guard {
    set: Arc<InFlight>,
    key: String,
}

impl InFlight {
    /// A new, empty set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes `key`, or returns `None` if another call holds it.
    pub fn try_lock(self: &Arc<Self>, key: &str) -> Option<Guard> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(key.to_string()).then(|| Guard { set: Arc::clone(self), key: key.to_string() })
    }

    /// Takes every key in `keys`, or none of them.
    pub fn try_lock_all(self: &Arc<Self>, keys: &[&str]) -> Option<Vec<Guard>> {
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            if guards.iter().any(|g: &Guard| g.key == *key) {
                continue;
            }
            guards.push(self.try_lock(key)?);
        }
        Some(guards)
    }

    /// True if `key` is held.
    pub fn is_locked(&self, key: &str) -> bool {
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

    #[test]
    fn exclusive_until_dropped() {
        let set = InFlight::new();
        let g = set.try_lock("a").unwrap();
        assert!(set.try_lock("a").is_none());
        assert!(set.try_lock("b").is_some());
        drop(g);
        assert!(set.try_lock("a").is_some());
    }

    #[test]
    fn all_or_nothing() {
        let set = InFlight::new();
        let _held = set.try_lock("b").unwrap();
        assert!(set.try_lock_all(&["a", "b"]).is_none());
        assert!(!set.is_locked("a"));
        let both = set.try_lock_all(&["a", "c", "a"]).unwrap();
        assert_eq!(both.len(), 2);
    }
}
