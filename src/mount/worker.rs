//! Bounded execution of calls that may hang.
//!
//! A Lustre mount, unmount or `statvfs` against an unreachable server can block in the kernel
//! for minutes. Each such call runs on a worker thread; the caller waits for it only until a
//! deadline, then answers, while the thread finishes (or stays stuck) on its own. A hung call
//! therefore never holds a per-volume guard or blocks another volume: it occupies only its own
//! thread.
//!
//! What a hung server may cost is bounded too, since the kubelet keeps calling (stats for every
//! volume every minute, unmount retries):
//! - **one call per path and [`Lane`]**: while a call on a path is running, another call in
//!   the same lane is refused at once ([`WorkerError::PathBusy`], saying what runs and for how
//!   long) without a thread. Probes (`statvfs`, `stat`) and changes (mount, unmount, rmdir)
//!   have separate lanes, so a probe stuck on a dead mount never stops the unmount that
//!   removes it; only unmount's escalation (`MNT_FORCE`, then `MNT_DETACH`, meant to break a
//!   stuck unmount) may add changes beside it, up to its number of steps;
//! - **a cap on blocked workers**: once [`Limits::blocked`] calls have outlived their callers,
//!   new work is refused with [`WorkerError::Saturated`], a clear error, until some return; and
//!   at most [`Limits::in_flight`] calls run at once.
//!
//! Threads are reused: a finished worker waits a while for the next call (at most
//! [`MAX_IDLE`] wait at once), so the common case costs a wake-up, not a thread creation.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// How many finished workers wait for more work.
pub const MAX_IDLE: usize = 4;

/// How long an idle worker waits before its thread exits.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Caps on what hung calls may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls still running after their caller gave up, beyond which new work is refused.
    pub blocked: usize,
    /// Calls running at once.
    pub in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { blocked: 64, in_flight: 128 }
    }
}

/// Why a call did not return a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The deadline passed; the call may still be running.
    #[error("the operation did not finish in time")]
    TimedOut,
    /// A call on the same path is still running; nothing was started.
    #[error("a previous {what} on this path has been running for {}s (the file system may be unresponsive)", .running_for.as_secs())]
    PathBusy { what: &'static str, running_for: Duration },
    /// Too many calls are blocked; nothing was started.
    #[error("{blocked} operations are blocked on unresponsive file systems (the oldest, {oldest_what} on {oldest_path}, for {}s); the node plugin refuses new work until some return", .oldest_for.as_secs())]
    Saturated { blocked: usize, oldest_what: &'static str, oldest_path: String, oldest_for: Duration },
    /// No thread could be started.
    #[error("cannot start a worker thread: {0}")]
    Spawn(String),
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
}

/// Which calls on a path exclude each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Reads that may hang on a dead mount (`statvfs`, `stat`).
    Probe,
    /// Calls that change the mount table or the directory (mount, unmount, rmdir, ...).
    Change,
}

#[derive(Debug)]
struct Running {
    id: u64,
    lane: Lane,
    what: &'static str,
    started: Instant,
    /// Its caller gave up waiting.
    abandoned: bool,
}

#[derive(Default)]
struct Table {
    paths: HashMap<PathBuf, Vec<Running>>,
    next_id: u64,
    in_flight: usize,
    blocked: usize,
}

/// The worker threads, and the calls still running per path.
#[derive(Default)]
pub struct Workers {
    limits: Limits,
    table: Mutex<Table>,
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Workers {
    /// Workers with the given caps.
    pub fn with_limits(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is running on `path` (the oldest call) and for how long, if anything.
    #[cfg(test)]
    pub fn running(&self, path: &Path) -> Option<(&'static str, Duration)> {
        self.table().paths.get(path).and_then(|v| v.first()).map(|r| (r.what, r.started.elapsed()))
    }

    /// Calls still running after their callers gave up.
    #[cfg(test)]
    pub fn blocked(&self) -> usize {
        self.table().blocked
    }

    /// Registers a call on `path` if the limits allow it; `max_on_path` is how many calls of
    /// `lane` may run on `path` at once, this one included.
    fn admit(&self, path: &Path, what: &'static str, lane: Lane, max_on_path: usize) -> Result<u64, WorkerError> {
        let mut t = self.table();
        if let Some(list) = t.paths.get(path) {
            let same: Vec<&Running> = list.iter().filter(|r| r.lane == lane).collect();
            if same.len() >= max_on_path {
                let first = same[0];
                return Err(WorkerError::PathBusy { what: first.what, running_for: first.started.elapsed() });
            }
        }
        if t.blocked >= self.limits.blocked || t.in_flight >= self.limits.in_flight {
            let oldest = t.paths.iter().flat_map(|(p, l)| l.iter().map(move |r| (p, r))).min_by_key(|(_, r)| r.started);
            let (oldest_what, oldest_path, oldest_for) = oldest
                .map(|(p, r)| (r.what, p.display().to_string(), r.started.elapsed()))
                .unwrap_or(("call", String::new(), Duration::ZERO));
            return Err(WorkerError::Saturated {
                blocked: t.blocked.max(t.in_flight),
                oldest_what,
                oldest_path: crate::text::Field(&oldest_path).to_string(),
                oldest_for,
            });
        }
        let id = t.next_id;
        t.next_id += 1;
        t.in_flight += 1;
        t.paths.entry(path.to_path_buf()).or_default().push(Running {
            id,
            lane,
            what,
            started: Instant::now(),
            abandoned: false,
        });
        Ok(id)
    }

    fn finish(&self, path: &Path, id: u64) {
        let mut t = self.table();
        let Some(list) = t.paths.get_mut(path) else { return };
        let Some(i) = list.iter().position(|r| r.id == id) else { return };
        let r = list.remove(i);
        if list.is_empty() {
            t.paths.remove(path);
        }
        t.in_flight -= 1;
        if r.abandoned {
            t.blocked -= 1;
            crate::metrics::get().blocked_workers(-1);
        }
    }

    fn abandon(&self, path: &Path, id: u64) {
        let mut t = self.table();
        let Some(r) = t.paths.get_mut(path).and_then(|l| l.iter_mut().find(|r| r.id == id)) else { return };
        if !r.abandoned {
            r.abandoned = true;
            t.blocked += 1;
            crate::metrics::get().blocked_workers(1);
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

/// Runs `f` on a worker thread and waits for it until `deadline`, if no other call of `lane`
/// runs on `path` (see [`run_beside`]) and the limits allow. While it runs, `path` is marked
/// busy with `what`.
#[cfg(test)]
pub async fn run<T: Send + 'static>(
    workers: &Arc<Workers>,
    path: &Path,
    what: &'static str,
    lane: Lane,
    deadline: Instant,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WorkerError> {
    run_beside(workers, path, what, lane, 1, deadline, f).await
}

/// [`run`], allowing up to `max_on_path` calls of `lane` on `path` at once (this one
/// included): for unmount's escalation steps, which exist to break a stuck call.
pub async fn run_beside<T: Send + 'static>(
    workers: &Arc<Workers>,
    path: &Path,
    what: &'static str,
    lane: Lane,
    max_on_path: usize,
    deadline: Instant,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WorkerError> {
    let id = workers.admit(path, what, lane, max_on_path)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let marker = Arc::clone(workers);
    let key = path.to_path_buf();
    let job: Job = Box::new(move || {
        let out = f();
        marker.finish(&key, id);
        let _ = tx.send(out);
    });
    if let Err(e) = workers.submit(job) {
        workers.finish(path, id);
        return Err(WorkerError::Spawn(e.to_string()));
    }
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => {
            workers.abandon(path, id);
            Err(WorkerError::TimedOut)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// A call that blocks until the returned sender is dropped or sent to.
    fn stuck() -> (std::sync::mpsc::Sender<()>, impl FnOnce() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        (tx, move || {
            let _ = rx.recv();
        })
    }

    async fn until_idle(workers: &Workers, p: &Path) {
        for _ in 0..500 {
            if workers.running(p).is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("worker did not clear its marker");
    }

    #[tokio::test]
    async fn finishes_or_times_out() {
        let workers = Arc::new(Workers::default());
        let p = Path::new("/x");
        assert_eq!(run(&workers, p, "test", Lane::Change, soon(), || 7).await, Ok(7));
        assert!(workers.running(p).is_none());
        let (release, f) = stuck();
        let r = run(&workers, p, "stuck", Lane::Change, Instant::now() + Duration::from_millis(50), f).await;
        assert_eq!(r, Err(WorkerError::TimedOut));
        assert_eq!(workers.running(p).map(|r| r.0), Some("stuck"));
        assert_eq!(workers.blocked(), 1);
        // Another path runs while the first is stuck.
        assert_eq!(run(&workers, Path::new("/y"), "other", Lane::Change, soon(), || 8).await, Ok(8));
        release.send(()).unwrap();
        until_idle(&workers, p).await;
        assert_eq!(workers.blocked(), 0);
    }

    #[tokio::test]
    async fn one_call_per_path_and_no_thread_for_a_refusal() {
        let workers = Arc::new(Workers::default());
        let p = Path::new("/hung");
        let (release, f) = stuck();
        assert_eq!(
            run(&workers, p, "statvfs", Lane::Probe, Instant::now() + Duration::from_millis(20), f).await,
            Err(WorkerError::TimedOut)
        );
        let admitted = workers.table().next_id;
        for _ in 0..30 {
            let r = run(&workers, p, "statvfs", Lane::Probe, soon(), || ()).await;
            assert!(matches!(r, Err(WorkerError::PathBusy { what: "statvfs", .. })), "{r:?}");
        }
        assert_eq!(workers.table().next_id, admitted, "refused calls were handed to a thread");
        // A stuck probe never stops a change (the unmount that removes the dead mount).
        assert_eq!(run(&workers, p, "unmount", Lane::Change, soon(), || 1).await, Ok(1));
        let (release_unmount, stuck_unmount) = stuck();
        let r =
            run(&workers, p, "unmount", Lane::Change, Instant::now() + Duration::from_millis(20), stuck_unmount).await;
        assert_eq!(r, Err(WorkerError::TimedOut));
        let r = run(&workers, p, "rmdir", Lane::Change, soon(), || ()).await;
        assert!(matches!(r, Err(WorkerError::PathBusy { what: "unmount", .. })), "{r:?}");
        // Escalation may run beside the stuck change, up to its limit.
        assert_eq!(run_beside(&workers, p, "unmount", Lane::Change, 2, soon(), || 3).await, Ok(3));
        drop(release);
        drop(release_unmount);
        until_idle(&workers, p).await;
        assert_eq!(run(&workers, p, "statvfs", Lane::Probe, soon(), || 2).await, Ok(2));
    }

    #[tokio::test]
    async fn blocked_workers_are_capped_with_a_clear_error() {
        let workers = Arc::new(Workers::with_limits(Limits { blocked: 3, in_flight: 100 }));
        let mut releases = Vec::new();
        for i in 0..3 {
            let (release, f) = stuck();
            releases.push(release);
            let p = PathBuf::from(format!("/hung/{i}"));
            let r = run(&workers, &p, "statvfs", Lane::Probe, Instant::now() + Duration::from_millis(10), f).await;
            assert_eq!(r, Err(WorkerError::TimedOut));
        }
        let r = run(&workers, Path::new("/healthy"), "statvfs", Lane::Probe, soon(), || ()).await;
        let Err(e @ WorkerError::Saturated { .. }) = r else { panic!("{r:?}") };
        let text = e.to_string();
        assert!(text.contains("3 operations are blocked") && text.contains("/hung/0"), "{text}");
        drop(releases);
        for i in 0..3 {
            until_idle(&workers, &PathBuf::from(format!("/hung/{i}"))).await;
        }
        assert_eq!(run(&workers, Path::new("/healthy"), "statvfs", Lane::Probe, soon(), || 3).await, Ok(3));
    }

    #[tokio::test]
    async fn threads_are_reused() {
        let workers = Arc::new(Workers::default());
        let mut ids = std::collections::HashSet::new();
        for _ in 0..20 {
            let id = run(&workers, Path::new("/z"), "id", Lane::Change, soon(), || std::thread::current().id())
                .await
                .unwrap();
            ids.insert(id);
            // Let the finished worker go idle before the next call.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(ids.len() <= 2, "{} threads for 20 sequential calls", ids.len());
    }
}
