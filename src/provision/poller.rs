//! One background poller for every in-flight file system.
//!
//! Calls that wait for a lifecycle change (a creation reaching AVAILABLE) do not call FSx
//! themselves: they [`Poller::watch`] the id and sleep on a channel. Once per tick the poller
//! describes every watched id in `DescribeFileSystems` calls of up to 50 ids, records the
//! answers in the [`Index`], and wakes the waiters. An idle poller makes no calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::index::Index;
use crate::fsx::{FileSystem, Fsx, FsxError, Lifecycle, DESCRIBE_BATCH};

/// What the poller last learned of a watched file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Not described since it was watched.
    Pending,
    /// As last described.
    Seen(FileSystem),
    /// FSx no longer knows it.
    Gone,
}

impl Observation {
    /// True once the file system left the transitional lifecycles the poller waits out.
    pub fn is_settled(&self) -> bool {
        match self {
            Observation::Pending => false,
            Observation::Seen(fs) => fs.lifecycle != Lifecycle::Creating,
            Observation::Gone => true,
        }
    }
}

/// The batched poller. See the module docs.
pub struct Poller {
    fsx: Arc<dyn Fsx>,
    index: Arc<Index>,
    interval: Duration,
    watched: Mutex<HashMap<String, watch::Sender<Observation>>>,
    wake: Notify,
}

impl Poller {
    /// A poller that describes watched file systems every `interval`.
    pub fn new(fsx: Arc<dyn Fsx>, index: Arc<Index>, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            fsx,
            index,
            interval,
            watched: Mutex::default(),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Observation>>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or joins) watching `id`. The receiver sees every new observation until the
    /// file system settles.
    pub fn watch(&self, id: &str) -> watch::Receiver<Observation> {
        let rx = {
            let mut watched = self.lock();
            match watched.get(id) {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(Observation::Pending);
                    watched.insert(id.to_string(), tx);
                    rx
                }
            }
        };
        self.wake.notify_one();
        rx
    }

    /// Number of file systems being watched.
    pub fn in_flight(&self) -> usize {
        self.lock().len()
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
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        for batch in ids.chunks(DESCRIBE_BATCH) {
            match self.fsx.describe_file_systems(batch).await {
                Ok(found) => self.publish_batch(batch, found),
                Err(FsxError::NotFound(_)) => {
                    // One of the batch is gone and FSx refuses the whole call: ask one by one
                    // (rare: only after an out-of-band deletion).
                    for id in batch {
                        match self
                            .fsx
                            .describe_file_systems(std::slice::from_ref(id))
                            .await
                        {
                            Ok(found) => self.publish_batch(std::slice::from_ref(id), found),
                            Err(FsxError::NotFound(_)) => self.publish(id, Observation::Gone),
                            Err(e) => {
                                tracing::warn!(error = %e, "describing an in-flight file system failed; retrying next tick")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, batch = batch.len(), "describing in-flight file systems failed; retrying next tick")
                }
            }
        }
    }

    fn publish_batch(&self, batch: &[String], found: Vec<FileSystem>) {
        let mut seen: HashMap<String, FileSystem> =
            found.into_iter().map(|fs| (fs.id.clone(), fs)).collect();
        for id in batch {
            match seen.remove(id) {
                Some(fs) => self.publish(id, Observation::Seen(fs)),
                None => self.publish(id, Observation::Gone),
            }
        }
    }

    fn publish(&self, id: &str, obs: Observation) {
        match &obs {
            Observation::Seen(fs) => self.index.upsert(fs),
            Observation::Gone => self.index.remove(id),
            Observation::Pending => {}
        }
        let mut watched = self.lock();
        let settled = obs.is_settled();
        if let Some(tx) = watched.get(id) {
            tx.send_replace(obs);
        }
        if settled {
            // Waiters keep the last value; the channel closes once they have read it.
            watched.remove(id);
        }
    }
}
