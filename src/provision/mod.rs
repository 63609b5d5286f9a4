//! The controller's provisioning logic, independent of gRPC.
//!
//! [`Provisioner`] guarantees at most one file system per volume name, whatever the retries,
//! concurrent calls, time-outs or restarts:
//!
//! 1. parameters and capacity are checked before any call ([`params`], [`capacity`]);
//! 2. a call holds its name in [`inflight`] (a concurrent call gets `Aborted`);
//! 3. an existing file system is found in the [`index`], never by listing the account;
//! 4. a new one is created with a deterministic token ([`token`]), so a lost response or a
//!    restart returns the same file system;
//! 5. the call then waits on the [`poller`], making no calls of its own, until AVAILABLE or
//!    its deadline; a FAILED file system is deleted and the next retry starts clean.

pub mod capacity;
pub mod index;
pub mod inflight;
pub mod params;
pub mod poller;
pub mod token;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::fsx::{is_file_system_id, FileSystem, Fsx, FsxError, Lifecycle};
use capacity::CapacityError;
use index::Index;
use inflight::InFlight;
use params::{ParamError, StorageClassParams};
use poller::{Observation, Poller};

/// How many token generations one call may step through when FSx keeps answering with
/// deleted file systems (each step is one CreateFileSystem call).
const MAX_GENERATION_STEPS: u32 = 8;

/// Why a provisioning call did not succeed. The gRPC code for each is chosen in
/// `csi::controller`.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Parameter(#[from] ParamError),
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    #[error("volume {name:?} already exists as {id} with other parameters: {reason}")]
    AlreadyExists {
        name: String,
        id: String,
        reason: String,
    },
    #[error("an operation on {0:?} is already in progress; retry later")]
    Busy(String),
    #[error("file system {id} is still {lifecycle}; the call will complete on a retry")]
    StillPending { id: String, lifecycle: String },
    #[error(
        "file system {id} failed to create and was deleted ({message}); a retry creates a new one"
    )]
    CreationFailed { id: String, message: String },
    #[error("file system {id} is {lifecycle}, not usable: {message}")]
    NotUsable {
        id: String,
        lifecycle: String,
        message: String,
    },
    #[error("file system {0} disappeared while waiting for it; a retry creates a new one")]
    Vanished(String),
    #[error("file system {0} not found")]
    NotFound(String),
    #[error("the controller is still loading its index of file systems from FSx; retry shortly")]
    NotReady,
    #[error(transparent)]
    Fsx(#[from] FsxError),
}

/// Settings that shape the provisioner.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tags added to every file system (`--extra-tags`).
    pub extra_tags: Vec<(String, String)>,
    /// How often in-flight file systems are described.
    pub poll_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            extra_tags: Vec::new(),
            poll_interval: Duration::from_secs(15),
        }
    }
}

/// What CreateVolume asks for, gRPC types stripped.
#[derive(Debug, Clone, Copy)]
pub struct CreateRequest<'a> {
    pub name: &'a str,
    pub required_bytes: i64,
    pub limit_bytes: i64,
    pub parameters: &'a HashMap<String, String>,
}

/// Creates, finds, waits for and deletes file systems. See the module docs.
pub struct Provisioner {
    fsx: Arc<dyn Fsx>,
    index: Arc<Index>,
    poller: Arc<Poller>,
    busy: Arc<InFlight>,
    options: Options,
    ready: AtomicBool,
    ready_notify: Notify,
}

impl Provisioner {
    /// A provisioner over `fsx`. Call [`Provisioner::start`] to load the index and run the
    /// poller.
    pub fn new(fsx: Arc<dyn Fsx>, options: Options) -> Arc<Self> {
        let index = Arc::new(Index::default());
        let poller = Poller::new(Arc::clone(&fsx), Arc::clone(&index), options.poll_interval);
        Arc::new(Self {
            fsx,
            index,
            poller,
            busy: InFlight::new(),
            options,
            ready: AtomicBool::new(false),
            ready_notify: Notify::new(),
        })
    }

    /// Spawns the index load (retried until it succeeds) and the poller on the current
    /// runtime.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(Arc::clone(&self.poller).run());
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                match this.load_index().await {
                    Ok(n) => {
                        tracing::info!(file_systems = n, "index of CSI file systems loaded");
                        this.ready.store(true, Ordering::SeqCst);
                        this.ready_notify.notify_waiters();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "listing FSx file systems failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }

    /// One paged listing of the account; indexes every file system tagged with a volume name.
    async fn load_index(&self) -> Result<usize, FsxError> {
        let mut next = None;
        let mut count = 0;
        loop {
            let page = self.fsx.list_file_systems(next).await?;
            for fs in &page.file_systems {
                if fs.volume_name().is_some() {
                    self.index.upsert(fs);
                    count += 1;
                }
            }
            match page.next_token {
                Some(t) => next = Some(t),
                None => return Ok(count),
            }
        }
    }

    /// True once the index is loaded (the identity service's Probe reports this).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    async fn wait_ready(&self, deadline: Instant) -> Result<(), ProvisionError> {
        loop {
            let notified = self.ready_notify.notified();
            if self.is_ready() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ProvisionError::NotReady);
            }
        }
    }

    /// The index (for listings and tests).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The poller (for tests and metrics).
    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    /// Validates a CreateVolume request without any FSx call: the typed parameters and the
    /// rounded capacity in GiB.
    pub fn plan(req: &CreateRequest<'_>) -> Result<(StorageClassParams, i64), ProvisionError> {
        let params = StorageClassParams::parse(req.parameters)?;
        let steps = capacity::steps(
            params.deployment_type,
            params.storage_type,
            params.per_unit_storage_throughput,
        );
        let what = format!("{} {}", params.deployment_type, params.storage_type);
        let gib = capacity::for_range(steps, &what, req.required_bytes, req.limit_bytes)?;
        Ok((params, gib))
    }

    /// Returns the AVAILABLE file system for `req.name`, creating it if needed, or an error
    /// by `deadline`. Idempotent; see the module docs.
    pub async fn create(
        &self,
        req: CreateRequest<'_>,
        deadline: Instant,
    ) -> Result<FileSystem, ProvisionError> {
        let (params, capacity_gib) = Self::plan(&req)?;
        self.wait_ready(deadline).await?;
        let name = req.name;
        let _guard = self
            .busy
            .try_lock(name)
            .ok_or_else(|| ProvisionError::Busy(name.to_string()))?;

        let mut steps = 0;
        let fs = loop {
            if let Some(fs) = self
                .index
                .by_name(name)
                .filter(|fs| fs.lifecycle != Lifecycle::Deleting)
            {
                break fs;
            }
            let generation = self.index.generation(name);
            let token = token::client_request_token(name, generation);
            // capacity_gib fits: capacity::for_range caps it at i32::MAX.
            let spec =
                params.create_spec(name, capacity_gib as i32, token, &self.options.extra_tags);
            let fs = self.fsx.create_file_system(&spec).await?;
            tracing::info!(volume.id = %fs.id, lifecycle = %fs.lifecycle, capacity_gib, generation, "CreateFileSystem answered");
            if fs.lifecycle == Lifecycle::Deleting {
                // The token still answers with a file system deleted earlier (after it
                // failed, or with its old PV): move to the next generation.
                self.index.bump_generation(name, generation);
                steps += 1;
                if steps >= MAX_GENERATION_STEPS {
                    return Err(ProvisionError::StillPending {
                        id: fs.id,
                        lifecycle: "DELETING".into(),
                    });
                }
                continue;
            }
            self.index.upsert(&fs);
            break fs;
        };

        if let Some(reason) = params
            .mismatch(&fs)
            .or_else(|| capacity_mismatch(&fs, req.required_bytes, req.limit_bytes))
        {
            return Err(ProvisionError::AlreadyExists {
                name: name.to_string(),
                id: fs.id,
                reason,
            });
        }
        self.await_available(fs, deadline).await
    }

    /// Waits (without API calls) until `fs` settles, or `deadline`.
    async fn await_available(
        &self,
        fs: FileSystem,
        deadline: Instant,
    ) -> Result<FileSystem, ProvisionError> {
        let fs = if fs.lifecycle == Lifecycle::Creating {
            let mut rx = self.poller.watch(&fs.id);
            let settled =
                match tokio::time::timeout_at(deadline, rx.wait_for(Observation::is_settled)).await
                {
                    Ok(Ok(obs)) => Some(obs.clone()),
                    _ => None,
                };
            match settled {
                Some(Observation::Seen(seen)) => seen,
                Some(Observation::Gone) => return Err(ProvisionError::Vanished(fs.id)),
                Some(Observation::Pending) | None => {
                    return Err(ProvisionError::StillPending {
                        id: fs.id,
                        lifecycle: "CREATING".into(),
                    })
                }
            }
        } else {
            fs
        };
        match fs.lifecycle {
            Lifecycle::Available | Lifecycle::Updating => Ok(fs),
            Lifecycle::Failed => Err(self.clean_up_failed(fs).await),
            Lifecycle::Deleting => Err(ProvisionError::Vanished(fs.id)),
            Lifecycle::Creating => Err(ProvisionError::StillPending {
                id: fs.id,
                lifecycle: "CREATING".into(),
            }),
            other => Err(ProvisionError::NotUsable {
                id: fs.id,
                lifecycle: other.to_string(),
                message: fs
                    .failure_message
                    .unwrap_or_else(|| "see the FSx console for details".into()),
            }),
        }
    }

    /// Deletes a FAILED file system so that a retry starts clean, and moves the name to the
    /// next token generation.
    async fn clean_up_failed(&self, fs: FileSystem) -> ProvisionError {
        let message = fs
            .failure_message
            .clone()
            .unwrap_or_else(|| "FSx gave no failure details".into());
        tracing::warn!(volume.id = %fs.id, reason = %message, "file system FAILED; deleting it");
        match self.fsx.delete_file_system(&fs.id).await {
            Ok(_) | Err(FsxError::NotFound(_)) => {
                self.index.mark_deleting(&fs.id);
                if let Some(name) = fs.volume_name() {
                    let generation = self.index.generation(name);
                    self.index.bump_generation(name, generation);
                }
                ProvisionError::CreationFailed { id: fs.id, message }
            }
            // Not deleted yet: the next retry finds it FAILED in the index and tries again.
            Err(e) => {
                tracing::warn!(volume.id = %fs.id, error = %e, "deleting the FAILED file system failed; a retry will try again");
                ProvisionError::Fsx(e)
            }
        }
    }

    /// Deletes the file system `id`. Unknown, malformed and already-deleted ids succeed.
    pub async fn delete(&self, id: &str) -> Result<(), ProvisionError> {
        if !is_file_system_id(id) {
            tracing::info!(volume.id = %id, "not a file system id; nothing to delete");
            return Ok(());
        }
        let _guard = self
            .busy
            .try_lock(id)
            .ok_or_else(|| ProvisionError::Busy(id.to_string()))?;
        if self
            .index
            .by_id(id)
            .is_some_and(|fs| fs.lifecycle == Lifecycle::Deleting)
        {
            // This process's own DeleteFileSystem was accepted: DELETING counts as done.
            return Ok(());
        }
        match self.fsx.delete_file_system(id).await {
            Ok(lifecycle) => {
                tracing::info!(volume.id = %id, %lifecycle, "DeleteFileSystem accepted");
                self.index.mark_deleting(id);
                Ok(())
            }
            Err(FsxError::NotFound(_)) => {
                self.index.remove(id);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Describes `id` (one call) and records it in the index.
    pub async fn get(&self, id: &str) -> Result<FileSystem, ProvisionError> {
        if !is_file_system_id(id) {
            return Err(ProvisionError::NotFound(id.to_string()));
        }
        match self.fsx.describe_file_systems(&[id.to_string()]).await {
            Ok(found) => {
                let fs = found
                    .into_iter()
                    .find(|fs| fs.id == id)
                    .ok_or_else(|| ProvisionError::NotFound(id.to_string()))?;
                self.index.upsert(&fs);
                Ok(fs)
            }
            Err(FsxError::NotFound(_)) => {
                self.index.remove(id);
                Err(ProvisionError::NotFound(id.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Why an existing file system's size does not fit a capacity range, if it does not.
fn capacity_mismatch(fs: &FileSystem, required_bytes: i64, limit_bytes: i64) -> Option<String> {
    let have = fs.capacity_bytes();
    if have < required_bytes {
        return Some(format!(
            "capacity is {} GiB, below the requested {required_bytes} bytes",
            fs.capacity_gib
        ));
    }
    if limit_bytes > 0 && have > limit_bytes {
        return Some(format!(
            "capacity is {} GiB, above the limit of {limit_bytes} bytes",
            fs.capacity_gib
        ));
    }
    None
}
