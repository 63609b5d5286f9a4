//! One background poller for everything in flight: file systems being created or updated,
//! data repository associations being created, and backups being taken.
//!
//! Calls that wait for a lifecycle change do not call FSx themselves: they [`Poller::watch`]
//! the id and sleep on a channel. The poller describes watched ids in calls of up to 50 ids
//! (`DescribeFileSystems`, `DescribeDataRepositoryAssociations`, `DescribeBackups`) when the
//! [`Cadence`] says one is due (every resource every `--poll-interval` when that is set, else
//! adaptively: rarely early in a creation, every second when it is due), records file
//! systems in the [`Index`], and wakes the waiters. An idle poller makes no calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::cadence::{Cadence, Class, Track};
use super::index::{Backups, FileSystems};
use crate::error::Chain;
use crate::fsx::{Association, Backup, DESCRIBE_BATCH, FileSystem, Fsx, FsxError, Lifecycle};
use crate::metrics::InFlight;

/// What the poller last learned of a watched resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen<T> {
    /// Not described since it was watched.
    Pending,
    /// As last described.
    Found(T),
    /// FSx no longer knows it.
    Gone,
}

/// What the poller learned of a file system.
pub type Observation = Seen<FileSystem>;

/// A resource the poller can describe in batches.
#[async_trait]
pub trait Tracked: Clone + Send + Sync + 'static {
    /// Describes up to 50 ids in one call; `NotFound` if any is unknown.
    async fn fetch(fsx: &dyn Fsx, ids: &[String]) -> Result<Vec<Self>, FsxError>;
    /// The resource's id.
    fn id(&self) -> &str;
    /// True while FSx is still working on it, so the poller keeps describing it.
    fn in_flight(&self) -> bool;
    /// Records what was seen of `id` beyond the waiters (file systems and backups go into
    /// their indexes).
    fn record(_index: &FileSystems, _backups: &Backups, _id: &str, _seen: &Seen<Self>) {}
    /// When FSx accepted its creation, if this is a file system that has become usable.
    fn created_and_usable(&self) -> Option<SystemTime> {
        None
    }
    /// When FSx accepted its creation (for the cadence: how far along it is).
    fn created_at(&self) -> Option<SystemTime> {
        None
    }
    /// Its class for the cadence, watched as `kind`.
    fn class(&self, kind: InFlight) -> Class {
        Class::of(kind)
    }
}

#[async_trait]
impl Tracked for FileSystem {
    async fn fetch(fsx: &dyn Fsx, ids: &[String]) -> Result<Vec<Self>, FsxError> {
        fsx.describe_file_systems(ids).await
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn in_flight(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Creating | Lifecycle::Updating)
            || self.updates.iter().any(|u| u.is_running())
    }
    fn record(index: &FileSystems, _backups: &Backups, id: &str, seen: &Seen<Self>) {
        match seen {
            Seen::Found(fs) => index.upsert(fs),
            Seen::Gone => index.remove(id),
            Seen::Pending => {}
        }
    }
    fn created_and_usable(&self) -> Option<SystemTime> {
        matches!(self.lifecycle, Lifecycle::Available | Lifecycle::Updating).then_some(self.created_at).flatten()
    }
    fn created_at(&self) -> Option<SystemTime> {
        self.created_at
    }
    fn class(&self, kind: InFlight) -> Class {
        Class::file_system(kind, self)
    }
}

#[async_trait]
impl Tracked for Association {
    async fn fetch(fsx: &dyn Fsx, ids: &[String]) -> Result<Vec<Self>, FsxError> {
        fsx.describe_data_repository_associations(ids).await
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn in_flight(&self) -> bool {
        self.lifecycle.is_in_flight()
    }
}

#[async_trait]
impl Tracked for Backup {
    async fn fetch(fsx: &dyn Fsx, ids: &[String]) -> Result<Vec<Self>, FsxError> {
        fsx.describe_backups(ids).await
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn in_flight(&self) -> bool {
        self.lifecycle.is_in_flight()
    }
    fn record(_index: &FileSystems, backups: &Backups, id: &str, seen: &Seen<Self>) {
        match seen {
            Seen::Found(b) => backups.upsert(b),
            Seen::Gone => backups.remove(id),
            Seen::Pending => {}
        }
    }
    fn created_at(&self) -> Option<SystemTime> {
        self.created_at
    }
}

impl<T: Tracked> Seen<T> {
    /// True once the resource left the transitional states the poller waits out.
    pub fn is_settled(&self) -> bool {
        match self {
            Seen::Pending => false,
            Seen::Found(x) => !x.in_flight(),
            Seen::Gone => true,
        }
    }
}

/// Waits on `rx` until `done` holds for what the poller saw, or `deadline`; returns that
/// observation, or `None` at the deadline.
pub async fn wait_until<T: Clone>(
    rx: &mut watch::Receiver<Seen<T>>,
    deadline: tokio::time::Instant,
    done: impl FnMut(&Seen<T>) -> bool,
) -> Option<Seen<T>> {
    match tokio::time::timeout_at(deadline, rx.wait_for(done)).await {
        Ok(Ok(seen)) => Some(seen.clone()),
        _ => None,
    }
}

/// One watched resource: its waiters' channel, why it is watched and its schedule.
struct Watched<T> {
    tx: watch::Sender<Seen<T>>,
    kind: InFlight,
    track: Track,
    /// The class and start were taken from a description (not guessed at watch time).
    described: bool,
}

type Watches<T> = Mutex<HashMap<String, Watched<T>>>;

/// The batched poller. See the module docs.
pub struct Poller {
    fsx: Arc<dyn Fsx>,
    index: Arc<FileSystems>,
    backup_index: Arc<Backups>,
    cadence: Cadence,
    file_systems: Watches<FileSystem>,
    associations: Watches<Association>,
    backups: Watches<Backup>,
    wake: Notify,
}

fn lock<T>(m: &Watches<T>) -> std::sync::MutexGuard<'_, HashMap<String, Watched<T>>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long ago `at` was, on tokio's clock: `now` minus its age (bounded to a day, since a
/// clock far off says nothing useful).
fn instant_of(at: SystemTime, now: Instant) -> Option<Instant> {
    let age = SystemTime::now().duration_since(at).ok()?;
    (age < Duration::from_secs(86_400)).then(|| now.checked_sub(age)).flatten()
}

impl Poller {
    /// A poller that describes watched resources at `cadence`.
    pub fn new(fsx: Arc<dyn Fsx>, index: Arc<FileSystems>, backup_index: Arc<Backups>, cadence: Cadence) -> Arc<Self> {
        Arc::new(Self {
            fsx,
            index,
            backup_index,
            cadence,
            file_systems: Mutex::default(),
            associations: Mutex::default(),
            backups: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// What this controller expects work of `class` to take (the cadence's estimate).
    pub fn expected(&self, class: &Class) -> Duration {
        self.cadence.expected(class)
    }

    /// The estimate in words: "about 6m12s, as it took here" or "about 6m00s".
    pub fn expected_text(&self, class: &Class) -> String {
        let about = format!("about {}", crate::events::elapsed(self.cadence.expected(class)));
        if self.cadence.has_seen(class) { format!("{about}, as such work took on this controller") } else { about }
    }

    fn subscribe<T>(&self, m: &Watches<T>, id: &str, kind: InFlight) -> watch::Receiver<Seen<T>> {
        let rx = {
            let mut map = lock(m);
            match map.get(id) {
                // A file system being created stays "creating" if a growth is asked meanwhile.
                Some(w) => w.tx.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(Seen::Pending);
                    let now = Instant::now();
                    let mut track = Track::new(Class::of(kind), now, now);
                    // The caller has just seen it in flight.
                    track.last_busy = Some(now);
                    // The first description: at the cadence's first step, not at once (the
                    // caller has just seen it in flight).
                    self.cadence.described(&mut track, now, None, map.len() + 1);
                    map.insert(id.to_string(), Watched { tx, kind, track, described: false });
                    rx
                }
            }
        };
        self.report_in_flight();
        self.wake.notify_one();
        rx
    }

    /// Starts (or joins) watching file system `id`, being created. The receiver sees every
    /// new observation until the file system is no longer being created or updated.
    pub fn watch(&self, id: &str) -> watch::Receiver<Observation> {
        self.subscribe(&self.file_systems, id, InFlight::Creating)
    }

    /// Starts (or joins) watching file system `id`, being grown (see [`Poller::watch`]).
    pub fn watch_growth(&self, id: &str) -> watch::Receiver<Observation> {
        self.subscribe(&self.file_systems, id, InFlight::Growing)
    }

    /// Starts (or joins) watching file system `id`, whose settings are being changed
    /// (ModifyVolume; see [`Poller::watch`]).
    pub fn watch_modification(&self, id: &str) -> watch::Receiver<Observation> {
        self.subscribe(&self.file_systems, id, InFlight::Modifying)
    }

    /// Starts (or joins) watching backup `id`, being taken. It stays watched, with or without
    /// receivers, until it settles, so a CreateSnapshot that answered "not ready" leaves the
    /// poller to keep the index current for its retries.
    pub fn watch_backup(&self, id: &str) -> watch::Receiver<Seen<Backup>> {
        self.subscribe(&self.backups, id, InFlight::BackingUp)
    }

    /// Starts (or joins) watching data repository association `id`.
    pub fn watch_association(&self, id: &str) -> watch::Receiver<Seen<Association>> {
        self.subscribe(&self.associations, id, InFlight::Associating)
    }

    /// Number of resources being watched.
    pub fn in_flight(&self) -> usize {
        lock(&self.file_systems).len() + lock(&self.associations).len() + lock(&self.backups).len()
    }

    /// Sets the in-flight gauges: file systems by why they are watched, and associations.
    fn report_in_flight(&self) {
        let (mut creating, mut growing, mut modifying) = (0, 0, 0);
        let mut oldest: Option<SystemTime> = None;
        for w in lock(&self.file_systems).values() {
            match w.kind {
                InFlight::Growing => growing += 1,
                InFlight::Modifying => modifying += 1,
                _ => {
                    creating += 1;
                    if let Seen::Found(fs) = &*w.tx.borrow()
                        && let Some(at) = fs.created_at
                    {
                        oldest = Some(oldest.map_or(at, |o| o.min(at)));
                    }
                }
            }
        }
        let m = crate::metrics::get();
        m.set_oldest_creation(oldest.and_then(|at| at.elapsed().ok()));
        m.set_in_flight(InFlight::Creating, creating);
        m.set_in_flight(InFlight::Growing, growing);
        m.set_in_flight(InFlight::Modifying, modifying);
        m.set_in_flight(InFlight::Associating, lock(&self.associations).len());
        m.set_in_flight(InFlight::BackingUp, lock(&self.backups).len());
    }

    /// When the next description is due, if anything is watched.
    fn next_due(&self) -> Option<Instant> {
        fn min<T>(m: &Watches<T>) -> Option<Instant> {
            lock(m).values().map(|w| w.track.next).min()
        }
        [min(&self.file_systems), min(&self.associations), min(&self.backups)].into_iter().flatten().min()
    }

    /// Runs the poll loop forever (until the runtime stops).
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Cadence::Fixed(every) = self.cadence {
                if self.in_flight() == 0 {
                    self.wake.notified().await;
                    continue;
                }
                tokio::time::sleep(every).await;
                self.tick().await;
                continue;
            }
            match self.next_due() {
                None => self.wake.notified().await,
                Some(at) => {
                    // A new watch may be due sooner: look again when one comes.
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => self.poll_due().await,
                        () = self.wake.notified() => {}
                    }
                }
            }
        }
    }

    /// One poll of everything watched, in batches, publishing the results.
    pub async fn tick(&self) {
        self.poll(&self.file_systems, true).await;
        self.poll(&self.associations, true).await;
        self.poll(&self.backups, true).await;
        self.report_in_flight();
    }

    /// One poll of what is due (each call filled up with what is not, which rides free).
    pub async fn poll_due(&self) {
        self.poll(&self.file_systems, false).await;
        self.poll(&self.associations, false).await;
        self.poll(&self.backups, false).await;
        self.report_in_flight();
    }

    async fn poll<T: Tracked>(&self, watches: &Watches<T>, all: bool) {
        let now = Instant::now();
        // Due ids first, then the rest by when they are due: calls are made for batches
        // holding a due id, and the batch that has room takes the soonest of the rest.
        let mut order: Vec<(bool, Instant, String)> =
            lock(watches).iter().map(|(id, w)| (all || w.track.next <= now, w.track.next, id.clone())).collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for batch in order.chunks(DESCRIBE_BATCH) {
            let due = batch.iter().filter(|(d, _, _)| *d).count();
            if due == 0 {
                break;
            }
            let share = 1.0 / due as f64;
            let ids: Vec<String> = batch.iter().map(|(_, _, id)| id.clone()).collect();
            let paid: Vec<bool> = batch.iter().map(|(d, _, _)| *d).collect();
            self.charge(watches, &ids, &paid, share);
            match T::fetch(&*self.fsx, &ids).await {
                Ok(found) => self.publish_batch(watches, &ids, found),
                Err(FsxError::NotFound(_)) => {
                    // One of the batch is gone and FSx refuses the whole call: ask one by one
                    // (rare: only after an out-of-band deletion).
                    for id in &ids {
                        match T::fetch(&*self.fsx, std::slice::from_ref(id)).await {
                            Ok(found) => self.publish_batch(watches, std::slice::from_ref(id), found),
                            Err(FsxError::NotFound(_)) => self.publish(watches, id, Seen::Gone),
                            Err(e) => {
                                tracing::warn!(error = %Chain(&e), "describing an in-flight resource failed; retrying next tick")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), batch = ids.len(), "describing in-flight resources failed; retrying next tick")
                }
            }
        }
    }

    /// Pays for a call about to be made and schedules the next one for each id in it (a
    /// failed call is retried at the same cadence).
    fn charge<T>(&self, watches: &Watches<T>, ids: &[String], paid: &[bool], share: f64) {
        let now = Instant::now();
        let mut map = lock(watches);
        let peers = map.len();
        for (id, paid) in ids.iter().zip(paid) {
            if let Some(w) = map.get_mut(id) {
                self.cadence.described(&mut w.track, now, paid.then_some(share), peers);
            }
        }
    }

    fn publish_batch<T: Tracked>(&self, watches: &Watches<T>, batch: &[String], found: Vec<T>) {
        let mut seen: HashMap<String, T> = found.into_iter().map(|x| (x.id().to_string(), x)).collect();
        for id in batch {
            match seen.remove(id) {
                Some(x) => self.publish(watches, id, Seen::Found(x)),
                None => self.publish(watches, id, Seen::Gone),
            }
        }
    }

    fn publish<T: Tracked>(&self, watches: &Watches<T>, id: &str, seen: Seen<T>) {
        T::record(&self.index, &self.backup_index, id, &seen);
        let settled = seen.is_settled();
        let now = Instant::now();
        let mut map = lock(watches);
        let peers = map.len();
        let Some(w) = map.get_mut(id) else { return };
        if let Seen::Found(x) = &seen
            && !w.described
        {
            // What it is and how far along, from its description: the schedule set at watch
            // time is set again from those.
            w.described = true;
            w.track.class = x.class(w.kind);
            // Watched right after the call that started it, or later (a retry after a
            // restart): the earlier of the two.
            if matches!(w.kind, InFlight::Creating | InFlight::BackingUp)
                && let Some(started) = x.created_at().and_then(|at| instant_of(at, now))
            {
                w.track.started = w.track.started.min(started);
            }
            if !settled {
                self.cadence.described(&mut w.track, now, None, peers);
            }
        }
        w.tx.send_replace(seen.clone());
        if !settled {
            w.track.last_busy = Some(now);
            return;
        }
        // Waiters keep the last value; the channel closes once they have read it.
        let Some(w) = map.remove(id) else { return };
        drop(map);
        // Done between the last busy sighting and now: the middle, wrong by half the gap at
        // most (a second, once the polls near the end are close; up to 15 s for a first one
        // seen by the early cadence, which the next observation corrects).
        if let Some(busy) = w.track.last_busy
            && matches!(seen, Seen::Found(_))
        {
            let gap = now.saturating_duration_since(busy);
            let done = busy + gap / 2;
            self.cadence.observed(&w.track.class, done.saturating_duration_since(w.track.started), gap);
        }
        if let (InFlight::Creating, Seen::Found(x)) = (w.kind, &seen)
            && let Some(took) = x.created_and_usable().and_then(|t| t.elapsed().ok())
        {
            crate::metrics::get().file_system_created(took);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsx::memory::{MemoryFsx, Timing};
    use crate::fsx::{CreateSpec, LustreSettings};

    fn spec(i: usize) -> CreateSpec {
        CreateSpec {
            client_request_token: format!("t{i}"),
            capacity_gib: 1200,
            subnet_id: "subnet-0123456789abcdef0".into(),
            security_group_ids: Vec::new(),
            tags: vec![("CSIVolumeName".into(), format!("pvc-{i}"))],
            storage_type: None,
            kms_key_id: None,
            lustre: LustreSettings::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn everything_in_flight_is_described_in_batches_of_50() {
        let fsx = Arc::new(MemoryFsx::new(Timing { create: Duration::from_secs(60), ..Timing::default() }));
        let mut ids = Vec::new();
        for i in 0..120 {
            ids.push(fsx.create_file_system(&spec(i)).await.unwrap().id);
        }
        let poller = Poller::new(
            fsx.clone(),
            Arc::new(FileSystems::default()),
            Arc::default(),
            Cadence::Fixed(Duration::from_secs(15)),
        );
        let mut rxs: Vec<_> = ids.iter().map(|id| poller.watch(id)).collect();
        poller.tick().await;
        assert_eq!(fsx.calls("DescribeFileSystems"), 3, "120 ids in 3 calls of at most 50");
        assert!(
            rxs.iter_mut()
                .all(|rx| matches!(&*rx.borrow_and_update(), Seen::Found(fs) if fs.lifecycle == Lifecycle::Creating))
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        poller.tick().await;
        assert!(
            rxs.iter_mut()
                .all(|rx| matches!(&*rx.borrow_and_update(), Seen::Found(fs) if fs.lifecycle == Lifecycle::Available))
        );
        // Settled: nothing is watched, and an idle poller makes no calls.
        assert_eq!(poller.in_flight(), 0);
        let calls = fsx.calls("DescribeFileSystems");
        poller.tick().await;
        assert_eq!(fsx.calls("DescribeFileSystems"), calls);
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_system_gone_from_a_batch_is_reported_gone_and_the_rest_still_found() {
        let fsx = Arc::new(MemoryFsx::new(Timing { delete: Duration::from_secs(1), ..Timing::default() }));
        let a = fsx.create_file_system(&spec(1)).await.unwrap().id;
        let b = fsx.create_file_system(&spec(2)).await.unwrap().id;
        fsx.delete_out_of_band(&b);
        tokio::time::advance(Duration::from_secs(2)).await;
        let poller = Poller::new(
            fsx.clone(),
            Arc::new(FileSystems::default()),
            Arc::default(),
            Cadence::Fixed(Duration::from_secs(15)),
        );
        let (mut ra, mut rb) = (poller.watch(&a), poller.watch(&b));
        poller.tick().await;
        assert!(matches!(&*ra.borrow_and_update(), Seen::Found(_)));
        assert_eq!(*rb.borrow_and_update(), Seen::Gone);
    }
}
