//! Bounded execution of calls that may hang.
//!
//! A Lustre mount, unmount or `statvfs` against an unreachable server can block in the kernel
//! for minutes. Each such call runs on its own short-lived thread; the caller waits for it
//! only until a deadline, then answers, while the thread finishes (or stays stuck) on its
//! own. A hung call therefore never holds a per-volume guard or blocks another volume.
//! [`Pending`] remembers which paths still have a call running, so a retry does not pile a
//! second call on top of a stuck one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// The call did not finish by its deadline; it may still be running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operation did not finish in time")]
pub struct TimedOut;

/// Paths with a call still running, and what the call is.
#[derive(Debug, Default)]
pub struct Pending {
    paths: Mutex<HashMap<PathBuf, Vec<&'static str>>>,
}

impl Pending {
    /// What is still running on `path` (the oldest call), if anything.
    pub fn running(&self, path: &Path) -> Option<&'static str> {
        self.paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .and_then(|v| v.first().copied())
    }

    fn start(&self, path: &Path, what: &'static str) {
        self.paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(path.to_path_buf())
            .or_default()
            .push(what);
    }

    fn finish(&self, path: &Path, what: &'static str) {
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = paths.get_mut(path) {
            if let Some(i) = list.iter().position(|w| *w == what) {
                list.remove(i);
            }
            if list.is_empty() {
                paths.remove(path);
            }
        }
    }
}

/// Runs `f` on a new thread and waits for it until `deadline`. While it runs, `path` is
/// marked in `pending` with `what`.
pub async fn run<T: Send + 'static>(
    pending: &Arc<Pending>,
    path: &Path,
    what: &'static str,
    deadline: Instant,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TimedOut> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let marker = Arc::clone(pending);
    let key = path.to_path_buf();
    pending.start(path, what);
    let spawned = std::thread::Builder::new()
        .name("fsx-mount-worker".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let out = f();
            marker.finish(&key, what);
            let _ = tx.send(out);
        });
    if spawned.is_err() {
        pending.finish(path, what);
        return Err(TimedOut);
    }
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn finishes_or_times_out() {
        let pending = Arc::new(Pending::default());
        let p = Path::new("/x");
        assert_eq!(
            run(
                &pending,
                p,
                "test",
                Instant::now() + Duration::from_secs(5),
                || 7
            )
            .await,
            Ok(7)
        );
        assert!(pending.running(p).is_none());
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let r = run(
            &pending,
            p,
            "stuck",
            Instant::now() + Duration::from_millis(50),
            move || {
                let _ = release_rx.recv();
            },
        )
        .await;
        assert_eq!(r, Err(TimedOut));
        assert_eq!(pending.running(p), Some("stuck"));
        release_tx.send(()).unwrap();
        for _ in 0..100 {
            if pending.running(p).is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("worker did not clear its marker");
    }
}
