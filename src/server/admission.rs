//! Bounds on the calls the server holds at once, whatever the number of connections: a tower
//! layer on every CSI call.
//!
//! - At most `max_calls` calls are in progress. One more is answered at once with
//!   `RESOURCE_EXHAUSTED` and costs nothing further; the kubelet and the sidecars retry.
//! - A request's body (one small protobuf message for every CSI call) must arrive whole within
//!   `body_time` of its headers, else the call fails with `DEADLINE_EXCEEDED` and its buffers
//!   are freed: a client cannot pin memory by sending half a message and stalling.
//! - Request bytes received and not yet decoded are counted across all calls; past
//!   `max_body_bytes`, the call whose bytes overflow it fails with `RESOURCE_EXHAUSTED`.
//!
//! Rejections are counted by [`crate::metrics`] like every other answer (the metrics layer sits
//! outside this one).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tonic::body::Body;

/// The bounds; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_calls: usize,
    pub body_time: Duration,
    pub max_body_bytes: usize,
}

#[derive(Debug)]
struct Counters {
    bounds: Bounds,
    calls: AtomicUsize,
    body_bytes: AtomicUsize,
}

/// The layer; clones share their counters.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    counters: Arc<Counters>,
}

impl AdmissionLayer {
    /// A layer enforcing `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        Self { counters: Arc::new(Counters { bounds, calls: AtomicUsize::new(0), body_bytes: AtomicUsize::new(0) }) }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Admission { inner, counters: Arc::clone(&self.counters) }
    }
}

/// The service of [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    counters: Arc<Counters>,
}

/// A call slot, given back when the call's response is ready or the call is dropped.
struct CallSlot(Arc<Counters>);

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R> tower::Service<http::Request<Body>> for Admission<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let counters = &self.counters;
        let before = counters.calls.fetch_add(1, Ordering::AcqRel);
        let slot = CallSlot(Arc::clone(counters));
        if before >= counters.bounds.max_calls {
            drop(slot);
            let status = Status::resource_exhausted(format!(
                "the driver is serving {} calls already; retry later",
                counters.bounds.max_calls
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let deadline = Instant::now() + counters.bounds.body_time;
        let req = req.map(|body| {
            Body::new(BoundedBody {
                inner: body,
                counters: Arc::clone(counters),
                held: 0,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                done: false,
            })
        });
        Box::pin(async move {
            let response = inner.call(req).await;
            drop(slot);
            response
        })
    }
}

/// A request body held to the body bounds; see the module docs.
struct BoundedBody {
    inner: Body,
    counters: Arc<Counters>,
    /// Bytes of this body counted in the shared total.
    held: usize,
    deadline: Pin<Box<Sleep>>,
    done: bool,
}

impl Drop for BoundedBody {
    fn drop(&mut self) {
        self.counters.body_bytes.fetch_sub(self.held, Ordering::AcqRel);
    }
}

impl HttpBody for BoundedBody {
    type Data = hyper::body::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len();
                    let total = this.counters.body_bytes.fetch_add(n, Ordering::AcqRel) + n;
                    this.held += n;
                    if total > this.counters.bounds.max_body_bytes {
                        this.done = true;
                        return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                            "the driver holds more than {} bytes of unfinished requests; retry later",
                            this.counters.bounds.max_body_bytes
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "the request did not arrive whole within {}s of its headers",
                        this.counters.bounds.body_time.as_secs()
                    )))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
