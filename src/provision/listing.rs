//! The start-up listings of the account (file systems, backups): whether each has loaded, why
//! it last failed, and the calls waiting for it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::ProvisionError;
use crate::error::Chain;
use crate::fsx::FsxError;

/// One start-up listing of the account: loaded or not, why it failed last, and the calls
/// waiting for it.
pub(super) struct Listing {
    pub(super) what: &'static str,
    loaded: AtomicBool,
    notify: Notify,
    error: std::sync::Mutex<Option<FsxError>>,
}

impl Listing {
    pub(super) fn new(what: &'static str) -> Self {
        Self { what, loaded: AtomicBool::new(false), notify: Notify::new(), error: std::sync::Mutex::new(None) }
    }

    pub(super) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    pub(super) fn last_error(&self) -> Option<FsxError> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn succeeded(&self) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.loaded.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Records a failed attempt; logged once per distinct error, not once per retry.
    pub(super) fn failed(&self, e: FsxError) {
        let mut last = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref() != Some(&e) {
            tracing::error!(error = %Chain(&e), "listing FSx {} failed; retrying until it succeeds", self.what);
        }
        *last = Some(e);
        drop(last);
        self.notify.notify_waiters();
    }

    /// Waits until loaded, or `deadline`. A permission error is answered at once: waiting
    /// will not fix it.
    pub(super) async fn wait(&self, deadline: Instant) -> Result<(), ProvisionError> {
        loop {
            let notified = self.notify.notified();
            if self.is_loaded() {
                return Ok(());
            }
            if let Some(e @ FsxError::AccessDenied { .. }) = self.last_error() {
                return Err(ProvisionError::Fsx(e));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ProvisionError::NotReady { listing: self.what, cause: self.last_error() });
            }
        }
    }

    /// Runs `load` until it succeeds, backing off from 0.5 s to 30 s between attempts.
    pub(super) async fn load_until_done<F, Fut>(&self, mut load: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<usize, FsxError>>,
    {
        let mut backoff = Duration::from_millis(500);
        loop {
            match load().await {
                Ok(n) => {
                    tracing::info!(count = n, "index of CSI {} loaded", self.what);
                    self.succeeded();
                    return;
                }
                Err(e) => {
                    self.failed(e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}
