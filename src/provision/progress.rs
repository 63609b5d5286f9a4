//! What the provisioner tells users while FSx works: events on the claim (through
//! [`crate::events`]) when a file system's creation starts, once a minute while it runs, when
//! it ends, and the same for growth, S3 links and backups.
//!
//! A follower task per resource reads the poller's observations (no calls of its own) and
//! posts the progress events at most once per `--progress-event-interval` ([`PROGRESS_EVERY`] by default); it ends when the resource
//! settles. One follower per resource, however many CSI calls wait on it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::Provisioner;
use super::cadence::Class;
use super::poller::{Seen, Tracked};
use crate::events::{Claim, Event, Events, Kind, Subject, elapsed};
use crate::fsx::{Backup, BackupLifecycle, FileSystem, Lifecycle};
use crate::metrics::InFlight;

/// The most often a progress event is posted for one resource, by default.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// Claims remembered per volume name, at most (the oldest entries are dropped in bulk).
const CLAIMS: usize = 4096;

/// Event reasons.
pub mod reason {
    pub const CREATING: &str = "FileSystemCreating";
    pub const PROGRESS: &str = "FileSystemProgress";
    pub const AVAILABLE: &str = "FileSystemAvailable";
    pub const FAILED: &str = "FileSystemFailed";
    pub const LINKING: &str = "S3LinkCreating";
    pub const LINKED: &str = "S3Linked";
    pub const LINK_FAILED: &str = "S3LinkFailed";
    pub const GROWING: &str = "FileSystemGrowing";
    pub const GROWN: &str = "FileSystemGrown";
    pub const GROWTH_FAILED: &str = "FileSystemGrowthFailed";
    pub const BACKUP_STARTED: &str = "BackupCreating";
    pub const BACKUP_PROGRESS: &str = "BackupProgress";
    pub const BACKUP_AVAILABLE: &str = "BackupAvailable";
    pub const BACKUP_FAILED: &str = "BackupFailed";
}

/// The provisioner's event state: where events go, whose claim each volume is, and which
/// resources have a follower.
pub(super) struct Progress {
    pub events: Arc<dyn Events>,
    every: Duration,
    claims: Mutex<std::collections::HashMap<String, Claim>>,
    followed: Arc<Mutex<HashSet<String>>>,
}

impl Progress {
    pub fn new(events: Arc<dyn Events>, every: Duration) -> Self {
        Self { events, every, claims: Mutex::default(), followed: Arc::default() }
    }

    /// Remembers that `volume` is `claim`'s.
    pub fn remember(&self, volume: &str, claim: &Claim) {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        if claims.len() >= CLAIMS && !claims.contains_key(volume) {
            claims.clear();
        }
        claims.insert(volume.to_string(), claim.clone());
    }

    fn claim(&self, volume: &str) -> Option<Claim> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner()).get(volume).cloned()
    }

    /// The subject for `volume`: its claim if known; else, with `via_pv`, the PV's claimRef
    /// (a volume that exists); else none (a creation without the provisioner's metadata).
    pub fn subject(&self, volume: &str, via_pv: bool) -> Option<Subject> {
        match self.claim(volume) {
            Some(c) => Some(Subject::volume(volume, Some(&c))),
            None => via_pv.then(|| Subject::volume(volume, None)),
        }
    }

    /// Posts an event about `volume` (see [`Progress::subject`]).
    pub fn post(&self, volume: &str, via_pv: bool, kind: Kind, reason: &'static str, message: String) {
        if let Some(subject) = self.subject(volume, via_pv) {
            self.events.post(Event { subject, kind, reason, message });
        }
    }

    /// Claims `id` for a follower; false if one already follows it.
    fn follow(&self, id: &str) -> Option<Followed> {
        let mut set = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_string()).then(|| Followed { id: id.to_string(), set: Arc::clone(&self.followed) })
    }
}

/// A follower's claim on its resource, released when it ends.
struct Followed {
    id: String,
    set: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Followed {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// Follows `rx` until the resource settles: `tick` at most once per `every` while it is in
/// flight, with what was last seen and the time since `start`; then `settled` once, with the
/// same. Ends without `settled` if the poller stops watching without a settled observation
/// (never, in practice).
async fn follow_until_settled<T: Tracked>(
    mut rx: watch::Receiver<Seen<T>>,
    every: Duration,
    start: Instant,
    mut tick: impl FnMut(&Seen<T>, Duration),
    settled: impl FnOnce(&Seen<T>, Duration),
) {
    let mut next = Instant::now() + every;
    loop {
        let ticked = tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() && !rx.borrow().is_settled() {
                    return;
                }
                false
            }
            () = tokio::time::sleep_until(next) => true,
        };
        let seen = rx.borrow_and_update().clone();
        if seen.is_settled() {
            settled(&seen, start.elapsed());
            return;
        }
        if ticked {
            next += every;
            tick(&seen, start.elapsed());
        }
    }
}

/// "about 4m10s left", or that it runs longer than `expected`.
fn left(expected: Duration, took: Duration) -> String {
    match expected.checked_sub(took) {
        Some(left) if !left.is_zero() => format!("about {} left", elapsed(left)),
        _ => "longer than expected; still waiting".into(),
    }
}

/// When work that FSx accepted at `at` started, on tokio's clock (now, if unknown).
fn origin(at: Option<SystemTime>) -> Instant {
    let now = Instant::now();
    at.and_then(|t| t.elapsed().ok()).and_then(|age| now.checked_sub(age)).unwrap_or(now)
}

fn percent(p: Option<i32>) -> String {
    p.map(|p| format!(", {p}% done")).unwrap_or_default()
}

impl Provisioner {
    /// Follows file system `fs` (being created, grown or modified, as `kind`) until it
    /// settles, posting progress events on its claim at most once a minute, and the end.
    pub(super) fn follow_file_system(&self, fs: &FileSystem, kind: InFlight, rx: watch::Receiver<Seen<FileSystem>>) {
        let Some(volume) = fs.volume_name().map(str::to_string) else { return };
        let Some(subject) = self.progress.subject(&volume, kind != InFlight::Creating) else { return };
        let Some(followed) = self.progress.follow(&fs.id) else { return };
        let events = Arc::clone(&self.progress.events);
        let every = self.progress.every;
        let expected = self.poller.expected(&Class::file_system(kind, fs));
        let created_at = (kind == InFlight::Creating).then_some(fs.created_at).flatten();
        let id = fs.id.clone();
        let post = move |kind: Kind, reason: &'static str, message: String| {
            events.post(Event { subject: subject.clone(), kind, reason, message });
        };
        let tick_post = post.clone();
        tokio::spawn(async move {
            let _followed = followed;
            let tick = |seen: &Seen<FileSystem>, took: Duration| {
                let state = match seen {
                    Seen::Found(fs) => {
                        let update = fs.updates.iter().find(|u| u.is_running());
                        format!("{}{}", fs.lifecycle, percent(update.and_then(|u| u.progress_percent)))
                    }
                    _ => "not described yet".into(),
                };
                tick_post(
                    Kind::Normal,
                    reason::PROGRESS,
                    format!("{id} is {state}, {} so far ({})", elapsed(took), left(expected, took)),
                );
            };
            let settled = |seen: &Seen<FileSystem>, took: Duration| {
                let took = elapsed(took);
                match (seen, kind) {
                    (Seen::Found(fs), InFlight::Creating)
                        if matches!(fs.lifecycle, Lifecycle::Available | Lifecycle::Updating) =>
                    {
                        post(Kind::Normal, reason::AVAILABLE, format!("{} is AVAILABLE after {took}", fs.id))
                    }
                    (Seen::Found(fs), InFlight::Growing) => {
                        match fs.updates.iter().rev().find_map(|u| u.failure_message.as_deref()) {
                            Some(why) => post(
                                Kind::Warning,
                                reason::GROWTH_FAILED,
                                format!(
                                    "growing {} failed: {why}; the claim keeps its size, and the resizer retries",
                                    fs.id
                                ),
                            ),
                            None => post(
                                Kind::Normal,
                                reason::GROWN,
                                format!("{} now has {} GiB, after {took}", fs.id, fs.capacity_gib),
                            ),
                        }
                    }
                    // FAILED creations are reported where they are deleted.
                    _ => {}
                }
            };
            follow_until_settled(rx, every, origin(created_at), tick, settled).await;
        });
    }

    /// Follows backup `backup` until it settles: progress on the VolumeSnapshot at most once
    /// a minute, then AVAILABLE or FAILED (the driver deletes a FAILED backup on the
    /// snapshotter's next call and takes a new one).
    pub(super) fn follow_backup(&self, backup: &Backup, subject: Subject, rx: watch::Receiver<Seen<Backup>>) {
        let Some(followed) = self.progress.follow(&backup.id) else { return };
        let events = Arc::clone(&self.progress.events);
        let every = self.progress.every;
        let expected = self.poller.expected(&Class::of(InFlight::BackingUp));
        let (id, source, created_at) = (backup.id.clone(), backup.file_system.id.clone(), backup.created_at);
        let post = move |kind: Kind, reason: &'static str, message: String| {
            events.post(Event { subject: subject.clone(), kind, reason, message });
        };
        let tick_post = post.clone();
        tokio::spawn(async move {
            let _followed = followed;
            let tick = |seen: &Seen<Backup>, took: Duration| {
                let state = match seen {
                    Seen::Found(b) => format!("{}{}", b.lifecycle, percent(b.progress_percent)),
                    _ => "not described yet".into(),
                };
                tick_post(
                    Kind::Normal,
                    reason::BACKUP_PROGRESS,
                    format!("backup {id} of {source} is {state}, {} so far ({})", elapsed(took), left(expected, took)),
                );
            };
            let settled = |seen: &Seen<Backup>, took: Duration| {
                let took = elapsed(took);
                match seen {
                    Seen::Found(b) if b.lifecycle == BackupLifecycle::Available => post(
                        Kind::Normal,
                        reason::BACKUP_AVAILABLE,
                        format!("backup {id} of {source} is AVAILABLE after {took}"),
                    ),
                    Seen::Found(b) if b.lifecycle == BackupLifecycle::Failed => post(
                        Kind::Warning,
                        reason::BACKUP_FAILED,
                        format!(
                            "backup {id} of {source} FAILED: {}; the driver deletes it at the snapshotter's next call and takes a new one",
                            b.failure_message.as_deref().unwrap_or("FSx gave no failure details")
                        ),
                    ),
                    _ => {}
                }
            };
            follow_until_settled(rx, every, origin(created_at), tick, settled).await;
        });
    }
}
