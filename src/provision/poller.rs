//! One background poller for everything in flight: file systems being created or updated,
//! data repository associations being created, and backups being taken.
//!
//! Calls that wait for a lifecycle change do not call FSx themselves: they [`Poller::watch`]
//! the id and sleep on a channel. Once per tick the poller describes every watched id in
//! calls of up to 50 ids (`DescribeFileSystems`, `DescribeDataRepositoryAssociations`,
//! `DescribeBackups`),
//! records file systems in the [`Index`], and wakes the waiters. An idle poller makes no calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

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
    fn created_and_usable(&self) -> Option<std::time::SystemTime> {
        None
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
    fn created_and_usable(&self) -> Option<std::time::SystemTime> {
        matches!(self.lifecycle, Lifecycle::Available | Lifecycle::Updating).then_some(self.created_at).flatten()
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

type Watches<T> = Mutex<HashMap<String, watch::Sender<Seen<T>>>>;

/// The batched poller. See the module docs.
pub struct Poller {
    fsx: Arc<dyn Fsx>,
    index: Arc<FileSystems>,
    backup_index: Arc<Backups>,
    interval: Duration,
    file_systems: Watches<FileSystem>,
    associations: Watches<Association>,
    backups: Watches<Backup>,
    /// Why each watched file system is watched (for the metrics).
    kinds: Mutex<HashMap<String, InFlight>>,
    wake: Notify,
}

fn lock<T>(m: &Watches<T>) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Seen<T>>>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn subscribe<T>(m: &Watches<T>, id: &str) -> watch::Receiver<Seen<T>> {
    let mut map = lock(m);
    match map.get(id) {
        Some(tx) => tx.subscribe(),
        None => {
            let (tx, rx) = watch::channel(Seen::Pending);
            map.insert(id.to_string(), tx);
            rx
        }
    }
}

impl Poller {
    /// A poller that describes watched resources every `interval`.
    pub fn new(
        fsx: Arc<dyn Fsx>,
        index: Arc<FileSystems>,
        backup_index: Arc<Backups>,
        interval: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            fsx,
            index,
            backup_index,
            interval,
            file_systems: Mutex::default(),
            associations: Mutex::default(),
            backups: Mutex::default(),
            kinds: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// Starts (or joins) watching file system `id`, being created. The receiver sees every
    /// new observation until the file system is no longer being created or updated.
    pub fn watch(&self, id: &str) -> watch::Receiver<Observation> {
        self.set_kind(id, InFlight::Creating);
        let rx = subscribe(&self.file_systems, id);
        self.report_in_flight();
        self.wake.notify_one();
        rx
    }

    /// Starts (or joins) watching file system `id`, being grown (see [`Poller::watch`]).
    pub fn watch_growth(&self, id: &str) -> watch::Receiver<Observation> {
        self.set_kind(id, InFlight::Growing);
        let rx = subscribe(&self.file_systems, id);
        self.report_in_flight();
        self.wake.notify_one();
        rx
    }

    /// Starts (or joins) watching file system `id`, whose settings are being changed
    /// (ModifyVolume; see [`Poller::watch`]).
    pub fn watch_modification(&self, id: &str) -> watch::Receiver<Observation> {
        self.set_kind(id, InFlight::Modifying);
        let rx = subscribe(&self.file_systems, id);
        self.report_in_flight();
        self.wake.notify_one();
        rx
    }

    /// Starts (or joins) watching backup `id`, being taken. It stays watched, with or without
    /// receivers, until it settles, so a CreateSnapshot that answered "not ready" leaves the
    /// poller to keep the index current for its retries.
    pub fn watch_backup(&self, id: &str) -> watch::Receiver<Seen<Backup>> {
        let rx = subscribe(&self.backups, id);
        self.report_in_flight();
        self.wake.notify_one();
        rx
    }

    /// Starts (or joins) watching data repository association `id`.
    pub fn watch_association(&self, id: &str) -> watch::Receiver<Seen<Association>> {
        let rx = subscribe(&self.associations, id);
        self.report_in_flight();
        self.wake.notify_one();
        rx
    }

    /// Number of resources being watched.
    pub fn in_flight(&self) -> usize {
        lock(&self.file_systems).len() + lock(&self.associations).len() + lock(&self.backups).len()
    }

    /// Sets the in-flight gauges: file systems by why they are watched, and associations.
    fn report_in_flight(&self) {
        let (mut creating, mut growing, mut modifying) = (0, 0, 0);
        let mut oldest: Option<std::time::SystemTime> = None;
        {
            let watched = lock(&self.file_systems);
            let kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
            for (id, tx) in watched.iter() {
                match kinds.get(id) {
                    Some(InFlight::Growing) => growing += 1,
                    Some(InFlight::Modifying) => modifying += 1,
                    _ => {
                        creating += 1;
                        if let Seen::Found(fs) = &*tx.borrow()
                            && let Some(at) = fs.created_at
                        {
                            oldest = Some(oldest.map_or(at, |o| o.min(at)));
                        }
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

    fn set_kind(&self, id: &str, kind: InFlight) {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        // A file system being created stays "creating" if a growth is asked meanwhile.
        kinds.entry(id.to_string()).or_insert(kind);
    }

    /// Runs the poll loop forever (until the runtime stops).
    pub async fn run(self: Arc<Self>) {
        loop {
            if self.in_flight() == 0 {
                self.wake.notified().await;
                continue;
            }
            tokio::time::sleep(self.interval).await;
            self.tick().await;
        }
    }

    /// One poll: describes every watched id in batches and publishes the results.
    pub async fn tick(&self) {
        self.poll(&self.file_systems).await;
        self.poll(&self.associations).await;
        self.poll(&self.backups).await;
        self.report_in_flight();
    }

    async fn poll<T: Tracked>(&self, watches: &Watches<T>) {
        let ids: Vec<String> = lock(watches).keys().cloned().collect();
        for batch in ids.chunks(DESCRIBE_BATCH) {
            match T::fetch(&*self.fsx, batch).await {
                Ok(found) => self.publish_batch(watches, batch, found),
                Err(FsxError::NotFound(_)) => {
                    // One of the batch is gone and FSx refuses the whole call: ask one by one
                    // (rare: only after an out-of-band deletion).
                    for id in batch {
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
                    tracing::warn!(error = %Chain(&e), batch = batch.len(), "describing in-flight resources failed; retrying next tick")
                }
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
        let mut map = lock(watches);
        if let Some(tx) = map.get(id) {
            tx.send_replace(seen.clone());
        }
        if settled {
            // Waiters keep the last value; the channel closes once they have read it.
            map.remove(id);
            drop(map);
            let kind = self.kinds.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
            if let (Some(InFlight::Creating), Seen::Found(x)) = (kind, &seen)
                && let Some(took) = x.created_and_usable().and_then(|t| t.elapsed().ok())
            {
                crate::metrics::get().file_system_created(took);
            }
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
        let poller =
            Poller::new(fsx.clone(), Arc::new(FileSystems::default()), Arc::default(), Duration::from_secs(15));
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
        let poller =
            Poller::new(fsx.clone(), Arc::new(FileSystems::default()), Arc::default(), Duration::from_secs(15));
        let (mut ra, mut rb) = (poller.watch(&a), poller.watch(&b));
        poller.tick().await;
        assert!(matches!(&*ra.borrow_and_update(), Seen::Found(_)));
        assert_eq!(*rb.borrow_and_update(), Seen::Gone);
    }
}
