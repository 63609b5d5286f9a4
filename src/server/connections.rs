//! Accepting connections on the CSI socket within bounds.
//!
//! [`Incoming`] is the server's stream of accepted connections. It keeps at most
//! `max_connections` of them open. A new client over the cap makes room by evicting, in this
//! order: the oldest connection that has not sent its preface [`HALF_OPEN_GRACE`] after it
//! was accepted; the oldest that sent its preface but no request for
//! [`SILENT_GRACE`]; the one idle longest, if it has sent nothing for [`EVICTABLE_AFTER`]. If
//! none qualifies, the new client is turned away. The kubelet and the sidecars hold a handful
//! of long-lived connections and make a call as soon as they connect: a flood of idle or
//! half-open connections displaces itself, not them, and a client whose idle connection was
//! evicted reconnects on its next call. The graces keep a burst of new connections from
//! evicting a client whose first bytes the server has not read yet. When `accept` fails
//! because the process is out of file descriptors (or the kernel out of memory), the stream
//! evicts one connection the same way and backs off (10 ms doubling to 250 ms) instead of
//! retrying in a tight loop.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::time::{Instant, Sleep};

use super::authority::AnyAuthority;

/// How long a connection may go without sending its preface before it may be evicted.
pub const HALF_OPEN_GRACE: Duration = Duration::from_millis(100);
/// How long a connection may go without sending a request after its preface before it may be
/// evicted.
pub const SILENT_GRACE: Duration = Duration::from_millis(250);
/// How long a connection that has made requests must have sent nothing before it may be
/// evicted.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(10);

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// One accepted connection, as the registry sees it.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    opened: Instant,
    /// Milliseconds since the registry's epoch of the last bytes read.
    last_read_ms: AtomicU64,
    /// The connection preface has been received.
    established: AtomicBool,
    /// A request header block has been received.
    requested: AtomicBool,
    evicted: AtomicBool,
    /// The reader to wake when the connection is evicted.
    waker: Mutex<Option<Waker>>,
    registry: Weak<Registry>,
}

impl Connection {
    /// True once the registry has asked this connection to close.
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Records that bytes were read, whether the preface is complete and whether a request
    /// has been received.
    pub fn touch(&self, established: bool, requested: bool) {
        if let Some(registry) = self.registry.upgrade() {
            self.last_read_ms.store(registry.now_ms(), Ordering::Relaxed);
        }
        if established {
            self.established.store(true, Ordering::Relaxed);
        }
        if requested {
            self.requested.store(true, Ordering::Relaxed);
        }
    }

    /// Remembers the waker of a pending read, to wake it on eviction.
    pub fn park(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.wake();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.forget(self.id);
        }
    }
}

/// The open connections.
#[derive(Debug)]
pub struct Registry {
    max: usize,
    epoch: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// By id. Never upgraded while the lock is held: dropping the last reference to a
    /// connection takes the lock.
    open: Vec<(u64, Weak<Connection>)>,
}

impl Registry {
    /// A registry admitting at most `max` open connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max: max.max(1), epoch: Instant::now(), state: Mutex::default() })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, id: u64) {
        self.lock().open.retain(|(i, w)| *i != id && w.strong_count() > 0);
    }

    /// The open connections not asked to close.
    fn live(&self) -> Vec<Arc<Connection>> {
        let weak: Vec<Weak<Connection>> = self.lock().open.iter().map(|(_, w)| w.clone()).collect();
        weak.iter().filter_map(Weak::upgrade).filter(|c| !c.is_evicted()).collect()
    }

    /// How many connections are open and not asked to close.
    pub fn open(&self) -> usize {
        self.live().len()
    }

    /// Asks one connection to close, chosen as the module docs say. Returns whether one was
    /// found.
    pub fn evict_one(&self) -> bool {
        let live = self.live();
        let now = self.now_ms();
        let opened_for = |c: &Connection| c.opened.elapsed();
        let idle_for =
            |c: &Connection| Duration::from_millis(now.saturating_sub(c.last_read_ms.load(Ordering::Relaxed)));
        let victim = live
            .iter()
            .filter(|c| !c.established.load(Ordering::Relaxed) && opened_for(c) >= HALF_OPEN_GRACE)
            .min_by_key(|c| c.opened)
            .or_else(|| {
                live.iter()
                    .filter(|c| !c.requested.load(Ordering::Relaxed) && opened_for(c) >= SILENT_GRACE)
                    .min_by_key(|c| c.opened)
            })
            .or_else(|| live.iter().filter(|c| idle_for(c) >= EVICTABLE_AFTER).max_by_key(|c| idle_for(c)));
        match victim {
            Some(c) => {
                c.evict();
                true
            }
            None => false,
        }
    }

    /// Registers a new connection, evicting one if the registry is full. `None` if it is full
    /// and nothing can be evicted: the caller closes the new connection.
    pub fn admit(self: &Arc<Self>) -> Option<Arc<Connection>> {
        {
            let mut state = self.lock();
            state.open.retain(|(_, w)| w.strong_count() > 0);
            // Connections asked to close still hold memory until they have: bound them too.
            if state.open.len() >= 2 * self.max {
                return None;
            }
        }
        if self.open() >= self.max && !self.evict_one() {
            return None;
        }
        let mut state = self.lock();
        state.next_id += 1;
        let now = self.now_ms();
        let conn = Arc::new(Connection {
            id: state.next_id,
            opened: Instant::now(),
            last_read_ms: AtomicU64::new(now),
            established: AtomicBool::new(false),
            requested: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            waker: Mutex::new(None),
            registry: Arc::downgrade(self),
        });
        let id = state.next_id;
        state.open.push((id, Arc::downgrade(&conn)));
        Some(conn)
    }
}

/// Whether an `accept` error means the process or the kernel is out of a resource (back off
/// and make room) rather than one failed handshake (go on).
fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(nix::errno::Errno::from_raw),
        Some(
            nix::errno::Errno::EMFILE
                | nix::errno::Errno::ENFILE
                | nix::errno::Errno::ENOBUFS
                | nix::errno::Errno::ENOMEM
        )
    )
}

/// The server's stream of accepted connections: see the module docs.
pub struct Incoming {
    listener: UnixListener,
    registry: Arc<Registry>,
    handshake_time: Duration,
    backoff: Duration,
    pause: Option<Pin<Box<Sleep>>>,
    /// Whether the last resource error was logged (it is logged once per episode).
    exhausted: bool,
}

impl Incoming {
    /// Accepts on `listener`, at most `max_connections` at a time; each connection must send
    /// its preface and each header block within `handshake_time`.
    pub fn new(listener: UnixListener, max_connections: usize, handshake_time: Duration) -> Self {
        Self {
            listener,
            registry: Registry::new(max_connections),
            handshake_time,
            backoff: BACKOFF_MIN,
            pause: None,
            exhausted: false,
        }
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<AnyAuthority<UnixStream>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                std::task::ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, _))) => {
                    if this.exhausted {
                        tracing::info!("accepting connections on the CSI socket again");
                        this.exhausted = false;
                    }
                    this.backoff = BACKOFF_MIN;
                    match this.registry.admit() {
                        Some(conn) => {
                            return Poll::Ready(Some(Ok(AnyAuthority::new(stream, Some(conn), this.handshake_time))));
                        }
                        None => {
                            tracing::debug!("CSI socket: connection limit reached; closing a new connection");
                            drop(stream);
                        }
                    }
                }
                Poll::Ready(Err(e)) if is_resource_error(&e) => {
                    if !this.exhausted {
                        tracing::warn!(error = %e, open = this.registry.open(), "CSI socket: cannot accept connections; closing an idle one and backing off");
                        this.exhausted = true;
                    }
                    this.registry.evict_one();
                    this.pause = Some(Box::pin(tokio::time::sleep(this.backoff)));
                    this.backoff = (this.backoff * 2).min(BACKOFF_MAX);
                }
                // The client went away during accept: nothing to do.
                Poll::Ready(Err(e)) => tracing::debug!(error = %e, "CSI socket: accept failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_registry_evicts_half_open_then_idle_connections_and_never_busy_ones() {
        let registry = Registry::new(2);
        let a = registry.admit().unwrap();
        let b = registry.admit().unwrap();
        a.touch(true, true);
        // Nobody is past a grace yet: a new client is turned away, nobody evicted.
        assert!(registry.admit().is_none());
        assert!(!a.is_evicted() && !b.is_evicted());
        tokio::time::advance(HALF_OPEN_GRACE).await;
        // b has not finished its handshake: it goes first.
        let c = registry.admit().unwrap();
        assert!(b.is_evicted() && !a.is_evicted());
        drop(b);
        c.touch(true, false);
        tokio::time::advance(SILENT_GRACE).await;
        a.touch(true, true);
        // c sent its preface and no request.
        let d = registry.admit().unwrap();
        assert!(c.is_evicted() && !a.is_evicted());
        drop(c);
        d.touch(true, true);
        // Both have made requests and were active just now: nobody can be evicted.
        assert!(registry.admit().is_none());
        tokio::time::advance(EVICTABLE_AFTER).await;
        d.touch(true, true);
        // a has been idle past the floor, d was just active.
        let e = registry.admit().unwrap();
        assert!(a.is_evicted() && !d.is_evicted());
        drop((a, e));
        assert_eq!(registry.open(), 1);
    }
}
