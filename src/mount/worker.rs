//! Bounded execution of calls that may hang.
//!
//! A Lustre mount, unmount or `statvfs` against an unreachable server can block in the kernel
//! for minutes. Each such call runs on a worker thread; the caller waits for it only until a
//! deadline, then answers, while the thread finishes (or stays stuck) on its own. A hung call
//! therefore never holds a per-volume guard or blocks another volume: it occupies only its own
//! thread, and the next call gets another.
//!
//! Threads are reused: a finished worker waits a while for the next call (at most
//! [`MAX_IDLE`] wait at once), so the common case costs a wake-up, not a thread creation.
//! [`Workers`] also remembers which paths still have a call running, so a retry does not pile
//! a second call on top of a stuck one.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How many finished workers wait for more work.
pub const MAX_IDLE: usize = 4;

/// How long an idle worker waits before its thread exits.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The call did not finish by its deadline; it may still be running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operation did not finish in time")]
pub struct TimedOut;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
}

/// The worker threads, and the paths with a call still running.
#[derive(Default)]
pub struct Workers {
    paths: Mutex<HashMap<PathBuf, Vec<&'static str>>>,
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

impl Workers {
    /// What is still running on `path` (the oldest call), if anything.
    pub fn running(&self, path: &Path) -> Option<&'static str> {
        self.paths.lock().unwrap_or_else(|p| p.into_inner()).get(path).and_then(|v| v.first().copied())
    }

    fn start(&self, path: &Path, what: &'static str) {
        self.paths.lock().unwrap_or_else(|p| p.into_inner()).entry(path.to_path_buf()).or_default().push(what);
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

    /// Hands `job` to an idle worker, or starts a new one.
    fn submit(self: &Arc<Self>, job: Job) -> std::io::Result<()> {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.idle > q.jobs.len() {
                q.jobs.push_back(job);
                self.ready.notify_one();
                return Ok(());
            }
        }
        let workers = Arc::clone(self);
        std::thread::Builder::new()
            .name("fsx-mount-worker".into())
            .stack_size(256 * 1024)
            .spawn(move || workers.work(job))
            .map(|_| ())
    }

    fn work(&self, mut job: Job) {
        loop {
            job();
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.idle >= MAX_IDLE {
                return;
            }
            q.idle += 1;
            let next = loop {
                if let Some(next) = q.jobs.pop_front() {
                    break Some(next);
                }
                let (guard, timeout) = self.ready.wait_timeout(q, IDLE_TIMEOUT).unwrap_or_else(|p| p.into_inner());
                q = guard;
                if timeout.timed_out() && q.jobs.is_empty() {
                    break None;
                }
            };
            q.idle -= 1;
            match next {
                Some(next) => job = next,
                None => return,
            }
        }
    }
}

/// Runs `f` on a worker thread and waits for it until `deadline`. While it runs, `path` is
/// marked in `workers` with `what`.
pub async fn run<T: Send + 'static>(
    workers: &Arc<Workers>,
    path: &Path,
    what: &'static str,
    deadline: Instant,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TimedOut> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let marker = Arc::clone(workers);
    let key = path.to_path_buf();
    workers.start(path, what);
    let job: Job = Box::new(move || {
        let out = f();
        marker.finish(&key, what);
        let _ = tx.send(out);
    });
    if workers.submit(job).is_err() {
        workers.finish(path, what);
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

    #[tokio::test]
    async fn finishes_or_times_out() {
        let workers = Arc::new(Workers::default());
        let p = Path::new("/x");
        assert_eq!(run(&workers, p, "test", Instant::now() + Duration::from_secs(5), || 7).await, Ok(7));
        assert!(workers.running(p).is_none());
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let r = run(&workers, p, "stuck", Instant::now() + Duration::from_millis(50), move || {
            let _ = release_rx.recv();
        })
        .await;
        assert_eq!(r, Err(TimedOut));
        assert_eq!(workers.running(p), Some("stuck"));
        // Another call runs while the first is stuck.
        assert_eq!(run(&workers, Path::new("/y"), "other", Instant::now() + Duration::from_secs(5), || 8).await, Ok(8));
        release_tx.send(()).unwrap();
        for _ in 0..100 {
            if workers.running(p).is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("worker did not clear its marker");
    }

    #[tokio::test]
    async fn threads_are_reused() {
        let workers = Arc::new(Workers::default());
        let mut ids = std::collections::HashSet::new();
        for _ in 0..20 {
            let id = run(&workers, Path::new("/z"), "id", Instant::now() + Duration::from_secs(5), || {
                std::thread::current().id()
            })
            .await
            .unwrap();
            ids.insert(id);
            // Let the finished worker go idle before the next call.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(ids.len() <= 2, "{} threads for 20 sequential calls", ids.len());
    }
}
