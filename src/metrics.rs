//! Prometheus metrics, served at `/metrics` when `--metrics-address` is given (off by
//! default).
//!
//! One process-wide set ([`get`]), recorded where the work happens whether or not it is
//! served (an atomic add each). Every label value comes from a fixed set, never from a request:
//! no volume id, name or path is ever a label.
//!
//! | metric | labels | recorded in |
//! |---|---|---|
//! | `fsx_csi_api_requests_total` | `operation`, `outcome` | every HTTP attempt to FSx (`fsx::aws::ApiMetrics`, an SDK interceptor), and to EC2's `DescribeSubnets` (`ec2`) |
//! | `fsx_csi_api_request_duration_seconds` | `operation` | the same attempts |
//! | `fsx_csi_api_retries_total` | `operation` | attempts after the first of one SDK call |
//! | `fsx_csi_grpc_requests_total` | `method`, `code` | every CSI call ([`GrpcMetricsLayer`]) |
//! | `fsx_csi_grpc_request_duration_seconds` | `method` | the same calls |
//! | `fsx_csi_file_systems_in_flight` | `kind` (`creating`, `growing`, `modifying`, `associating`, `backing_up`) | the poller, every tick |
//! | `fsx_csi_file_system_creation_seconds` | | FSx's CreationTime to the poll that saw AVAILABLE |
//! | `fsx_csi_oldest_creation_in_flight_seconds` | | the poller: the oldest creation still waited on (0 if none) |
//! | `fsx_csi_failed_file_systems_cleaned_up_total` | | FAILED file systems (or S3 links) deleted |
//! | `fsx_csi_duplicate_creations_avoided_total` | | CreateVolume retries answered from the index |
//! | `fsx_csi_node_operation_duration_seconds` | `operation`, `result` | node mounts, unmounts and stats |
//! | `fsx_csi_node_blocked_workers` | | calls still stuck on unresponsive file systems |
//! | `fsx_csi_node_lustre_client` | `state` | 1 for what the node has of the Lustre client module |
//! | `fsx_csi_node_lnet_efa` | `state` | 1 for what LNet on the node has of EFA (`efa`, `none`, `unknown`) |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The FSx API operations this driver calls; anything else is counted as `other`.
const OPERATIONS: &[&str] = &[
    "CreateFileSystem",
    "DescribeFileSystems",
    "UpdateFileSystem",
    "DeleteFileSystem",
    "TagResource",
    "ListTagsForResource",
    "CreateDataRepositoryAssociation",
    "DescribeDataRepositoryAssociations",
    "DeleteDataRepositoryAssociation",
    "CreateBackup",
    "DescribeBackups",
    "DeleteBackup",
    "CreateFileSystemFromBackup",
    // EC2 (src/ec2.rs): the one EC2 call, counted with FSx's.
    "DescribeSubnets",
];

/// The CSI methods; anything else is counted as `other`.
const METHODS: &[&str] = &[
    "GetPluginInfo",
    "GetPluginCapabilities",
    "Probe",
    "CreateVolume",
    "DeleteVolume",
    "ControllerPublishVolume",
    "ControllerUnpublishVolume",
    "ValidateVolumeCapabilities",
    "ListVolumes",
    "GetCapacity",
    "ControllerGetCapabilities",
    "CreateSnapshot",
    "DeleteSnapshot",
    "ListSnapshots",
    "GetSnapshot",
    "ControllerExpandVolume",
    "ControllerGetVolume",
    "ControllerModifyVolume",
    "NodeStageVolume",
    "NodeUnstageVolume",
    "NodePublishVolume",
    "NodeUnpublishVolume",
    "NodeGetVolumeStats",
    "NodeExpandVolume",
    "NodeGetCapabilities",
    "NodeGetInfo",
];

/// gRPC status names, indexed by code.
const CODES: &[&str] = &[
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Error codes AWS uses for throttling (as the SDK's retry classifier knows them).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// How one attempt to FSx ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Throttled,
    ClientError,
    ServerError,
    /// No HTTP answer: connection, TLS or time-out.
    NetworkError,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Throttled => "throttled",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::NetworkError => "network_error",
        }
    }

    /// Classifies an HTTP answer by its status and AWS error code (`x-amzn-ErrorType` or the
    /// body's `__type`, with or without a namespace or a `:` suffix).
    pub fn classify(status: Option<u16>, error_code: Option<&str>) -> Self {
        let code = error_code.map(|c| {
            let c = c.split(':').next().unwrap_or(c);
            c.rsplit('#').next().unwrap_or(c)
        });
        match status {
            None => Outcome::NetworkError,
            Some(200..=299) => Outcome::Success,
            Some(429) => Outcome::Throttled,
            Some(_) if code.is_some_and(|c| THROTTLING_CODES.contains(&c)) => Outcome::Throttled,
            Some(500..) => Outcome::ServerError,
            Some(_) => Outcome::ClientError,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    operation: &'static str,
    result: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// What is in flight at FSx, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InFlight {
    Creating,
    Growing,
    /// Settings being changed (ModifyVolume).
    Modifying,
    Associating,
    /// Backups being taken (CreateSnapshot).
    BackingUp,
}

/// How a node operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeResult {
    Success,
    Error,
    /// The deadline passed; the call may still be running.
    Timeout,
    /// Refused without starting: a call on the path still runs, or too many are blocked.
    Refused,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    api_requests: Family<ApiLabels, Counter>,
    api_duration: Histograms<OperationLabel>,
    api_retries: Family<OperationLabel, Counter>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_duration: Histograms<MethodLabel>,
    in_flight: Family<KindLabel, Gauge>,
    oldest_creation: Gauge,
    creation: Histogram,
    cleaned_up: Counter,
    duplicates_avoided: Counter,
    node_duration: Histograms<NodeLabels>,
    blocked_workers: Gauge,
    lustre_client: Family<StateLabel, Gauge>,
    lnet_efa: Family<StateLabel, Gauge>,
}

fn api_buckets() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn grpc_buckets() -> Histogram {
    // 1 ms to about 2 min (calls that wait on a creation answer near their deadline).
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

fn node_buckets() -> Histogram {
    // 100 µs to about 100 s (hung mounts end at their deadline).
    Histogram::new(exponential_buckets(0.0001, 2.5, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("fsx_csi");
        let api_requests = Family::<ApiLabels, Counter>::default();
        r.register("api_requests", "HTTP requests to the FSx API, by operation and outcome", api_requests.clone());
        let api_duration = Histograms::<OperationLabel>::new_with_constructor(api_buckets as fn() -> Histogram);
        r.register_with_unit(
            "api_request_duration",
            "Duration of each HTTP request to the FSx API",
            Unit::Seconds,
            api_duration.clone(),
        );
        let api_retries = Family::<OperationLabel, Counter>::default();
        r.register("api_retries", "FSx API requests that were retries of an earlier attempt", api_retries.clone());
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        r.register("grpc_requests", "CSI calls, by method and gRPC status code", grpc_requests.clone());
        let grpc_duration = Histograms::<MethodLabel>::new_with_constructor(grpc_buckets as fn() -> Histogram);
        r.register_with_unit("grpc_request_duration", "Duration of CSI calls", Unit::Seconds, grpc_duration.clone());
        let in_flight = Family::<KindLabel, Gauge>::default();
        r.register(
            "file_systems_in_flight",
            "File systems being created or grown, and S3 links being created, that the controller waits on",
            in_flight.clone(),
        );
        let oldest_creation = Gauge::default();
        r.register_with_unit(
            "oldest_creation_in_flight",
            "Age of the oldest file system the controller waits on to become AVAILABLE (since FSx's CreationTime; 0 when none)",
            Unit::Seconds,
            oldest_creation.clone(),
        );
        // 1 to about 68 minutes.
        let creation = Histogram::new(exponential_buckets(60.0, 1.5, 12));
        r.register_with_unit(
            "file_system_creation",
            "Time from CreateFileSystem (FSx's CreationTime) to the poll that saw the file system AVAILABLE",
            Unit::Seconds,
            creation.clone(),
        );
        let cleaned_up = Counter::default();
        r.register(
            "failed_file_systems_cleaned_up",
            "File systems deleted because their creation or their S3 link FAILED",
            cleaned_up.clone(),
        );
        let duplicates_avoided = Counter::default();
        r.register(
            "duplicate_creations_avoided",
            "CreateVolume calls for a name that already has a file system, answered without CreateFileSystem",
            duplicates_avoided.clone(),
        );
        let node_duration = Histograms::<NodeLabels>::new_with_constructor(node_buckets as fn() -> Histogram);
        r.register_with_unit(
            "node_operation_duration",
            "Duration of node mounts, bind mounts, unmounts and stats, by operation and result",
            Unit::Seconds,
            node_duration.clone(),
        );
        let blocked_workers = Gauge::default();
        r.register(
            "node_blocked_workers",
            "Mount, unmount or stats calls still blocked in the kernel after their caller gave up",
            blocked_workers.clone(),
        );
        let lustre_client = Family::<StateLabel, Gauge>::default();
        r.register(
            "node_lustre_client",
            "1 for what the node has of the Lustre client kernel module (loaded, installed, missing, unknown)",
            lustre_client.clone(),
        );
        let lnet_efa = Family::<StateLabel, Gauge>::default();
        r.register(
            "node_lnet_efa",
            "1 for what LNet on the node has of EFA interfaces (efa, none, unknown: LNet not up or not visible)",
            lnet_efa.clone(),
        );
        Self {
            registry: r,
            api_requests,
            api_duration,
            api_retries,
            grpc_requests,
            grpc_duration,
            in_flight,
            oldest_creation,
            creation,
            cleaned_up,
            duplicates_avoided,
            node_duration,
            blocked_workers,
            lustre_client,
            lnet_efa,
        }
    }

    /// One HTTP attempt to FSx.
    pub fn api_attempt(&self, operation: &str, outcome: Outcome, took: Duration, retry: bool) {
        let operation = bounded(operation, OPERATIONS);
        self.api_requests.get_or_create(&ApiLabels { operation, outcome: outcome.as_str() }).inc();
        self.api_duration.get_or_create(&OperationLabel { operation }).observe(took.as_secs_f64());
        if retry {
            self.api_retries.get_or_create(&OperationLabel { operation }).inc();
        }
    }

    /// One CSI call, by its path (`/csi.v1.Controller/CreateVolume`) and gRPC code.
    pub fn grpc_call(&self, path: &str, code: i32, took: Duration) {
        let method = bounded(path.rsplit('/').next().unwrap_or(""), METHODS);
        let code = usize::try_from(code).ok().and_then(|c| CODES.get(c)).copied().unwrap_or("Unknown");
        self.grpc_requests.get_or_create(&GrpcLabels { method, code }).inc();
        self.grpc_duration.get_or_create(&MethodLabel { method }).observe(took.as_secs_f64());
    }

    /// Sets how many resources of `kind` the controller waits on.
    pub fn set_in_flight(&self, kind: InFlight, n: usize) {
        let kind = match kind {
            InFlight::Creating => "creating",
            InFlight::Growing => "growing",
            InFlight::Modifying => "modifying",
            InFlight::Associating => "associating",
            InFlight::BackingUp => "backing_up",
        };
        self.in_flight.get_or_create(&KindLabel { kind }).set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The age of the oldest creation in flight (`None`: none).
    pub fn set_oldest_creation(&self, age: Option<Duration>) {
        self.oldest_creation.set(age.map_or(0, |a| i64::try_from(a.as_secs()).unwrap_or(i64::MAX)));
    }

    /// A file system became AVAILABLE `took` after FSx's CreationTime.
    pub fn file_system_created(&self, took: Duration) {
        self.creation.observe(took.as_secs_f64());
    }

    /// A FAILED file system (or one whose S3 link failed) was deleted.
    pub fn failed_cleaned_up(&self) {
        self.cleaned_up.inc();
    }

    /// A CreateVolume found its file system in the index instead of creating one.
    pub fn duplicate_avoided(&self) {
        self.duplicates_avoided.inc();
    }

    /// One node operation (`mount`, `bind_mount`, `unmount`, `stats`).
    pub fn node_operation(&self, operation: &'static str, result: NodeResult, took: Duration) {
        let result = match result {
            NodeResult::Success => "success",
            NodeResult::Error => "error",
            NodeResult::Timeout => "timeout",
            NodeResult::Refused => "refused",
        };
        self.node_duration.get_or_create(&NodeLabels { operation, result }).observe(took.as_secs_f64());
    }

    /// What the node has of the Lustre client: 1 for `state`, 0 for the others.
    pub fn lustre_client(&self, state: &'static str) {
        for s in crate::mount::client::ClientModule::STATES {
            self.lustre_client.get_or_create(&StateLabel { state: s }).set(i64::from(*s == state));
        }
    }

    /// What LNet on the node has of EFA ([`crate::mount::lnet::Efa::as_str`]).
    pub fn lnet_efa(&self, state: &'static str) {
        for s in crate::mount::lnet::Efa::STATES {
            self.lnet_efa.get_or_create(&StateLabel { state: s }).set(i64::from(*s == state));
        }
    }

    /// A call outlived its caller (+1) or finally returned after that (-1).
    pub fn blocked_workers(&self, delta: i64) {
        self.blocked_workers.inc_by(delta);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn bounded(value: &str, known: &'static [&'static str]) -> &'static str {
    known.iter().find(|k| **k == value).copied().unwrap_or("other")
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// How many scrapes the endpoint serves at once; more connections are closed at once.
/// Prometheus holds one.
pub const MAX_METRICS_CONNECTIONS: usize = 8;

/// How long a client may take to send its request head.
const METRICS_HEADER_TIME: Duration = Duration::from_secs(5);

/// hyper's smallest read buffer: a scrape request is a few hundred bytes.
const METRICS_READ_BUFFER: usize = 8 * 1024;

/// Binds the metrics listener. The unspecified IPv6 address (`[::]`, which `:PORT` means)
/// listens on IPv4 too, as Go's `:PORT` does, so scraping works on IPv4, dual-stack and
/// IPv6-only clusters; where the node has no IPv6 at all, it falls back to `0.0.0.0`.
fn bind_metrics(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, sockopt};
    use nix::sys::socket::{bind, listen, setsockopt, socket};
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = match socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None) {
        Err(nix::errno::Errno::EAFNOSUPPORT) if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED => {
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
            tracing::info!(address = %v4, "no IPv6 on this node: metrics listen on IPv4 only");
            return bind_metrics(v4);
        }
        r => r?,
    };
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    match addr {
        SocketAddr::V4(a) => bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => {
            if a.ip().is_unspecified() {
                setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
            }
            bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(a))?
        }
    }
    listen(&fd, Backlog::new(64).unwrap_or(Backlog::MAXCONN))?;
    Ok(std::net::TcpListener::from(fd))
}

/// Serves `GET /metrics` on `addr` (HTTP/1.1) on a thread of its own, so that no client of
/// the metrics port, however many or slow, takes time from a CSI call. At most
/// [`MAX_METRICS_CONNECTIONS`] connections are served at once (the others are closed as they
/// come), each with a small read buffer and 5 s to send its request head. Returns the bound
/// address (`:0` picks a free port).
pub fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = bind_metrics(addr)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => accept_scrapes(listener).await,
                Err(e) => tracing::error!(error = %e, "metrics: cannot serve"),
            }
        })
    })?;
    Ok(local)
}

async fn accept_scrapes(listener: tokio::net::TcpListener) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Method, Response, StatusCode};

    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_METRICS_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = std::sync::Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("metrics: too many connections; closing a new one");
            continue;
        };
        let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
            let response = if req.uri().path() != "/metrics" {
                Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::from_static(b"not found\n")))
            } else if req.method() != Method::GET && req.method() != Method::HEAD {
                Response::builder()
                    .status(StatusCode::METHOD_NOT_ALLOWED)
                    .body(Full::new(Bytes::from_static(b"GET only\n")))
            } else {
                Response::builder()
                    .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                    .body(Full::new(Bytes::from(get().encode())))
            };
            Ok::<_, Infallible>(response.unwrap_or_default())
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(METRICS_HEADER_TIME)
                .max_buf_size(METRICS_READ_BUFFER)
                .serve_connection(io, service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics: connection ended");
            }
            drop(slot);
        });
    }
}

/// Records every CSI call's method, code and duration: a tower layer on the gRPC server.
///
/// tonic answers a failed unary call with the status in the response headers
/// ("trailers-only"); a successful one carries `grpc-status: 0` in the trailers after the
/// message. So a response without `grpc-status` in its headers is OK.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The ready service answers this call; a fresh clone waits for the next readiness.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut pending = Unanswered { path: Some(req.uri().path().to_string()), start: tokio::time::Instant::now() };
        Box::pin(async move {
            let response = inner.call(req).await;
            let (Some(path), start) = (pending.path.take(), pending.start) else { return response };
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0),
                Err(_) => 2,
            };
            get().grpc_call(&path, code, start.elapsed());
            response
        })
    }
}

/// A call in progress: dropped before it was answered (the client cancelled it or its deadline
/// passed, and the server dropped the call), it counts as `Canceled`, as the client saw it.
struct Unanswered {
    path: Option<String>,
    start: tokio::time::Instant,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            get().grpc_call(&path, tonic::Code::Cancelled as i32, self.start.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(addr: SocketAddr) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// `:PORT` listens on IPv6 and IPv4, as Go's does (IPv6-only EKS clusters scrape over
    /// IPv6); at most a few connections are served at once, and the others are closed at once.
    #[test]
    fn every_interface_means_both_families_and_connections_are_capped() {
        let bound = serve(crate::cli::parse_listen_address(":0").unwrap()).unwrap();
        let port = bound.port();
        let v4 = SocketAddr::from(([127, 0, 0, 1], port));
        let body = scrape(v4).unwrap();
        assert!(body.starts_with("HTTP/1.1 200") && body.contains("# EOF"), "{body}");
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            assert!(scrape(v6).unwrap().starts_with("HTTP/1.1 200"));
        }
        let held: Vec<std::net::TcpStream> =
            (0..MAX_METRICS_CONNECTIONS).map(|_| std::net::TcpStream::connect(v4).unwrap()).collect();
        // Wait until the server has taken them all (a scrape over the cap is closed at once).
        let start = std::time::Instant::now();
        loop {
            // Closed at once: an empty answer, or a reset.
            match scrape(v4) {
                Ok(body) if body.starts_with("HTTP/1.1 200") => {
                    assert!(start.elapsed() < Duration::from_secs(5), "a connection over the cap was served");
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break,
            }
        }
        drop(held);
        let start = std::time::Instant::now();
        while !scrape(v4).is_ok_and(|b| b.starts_with("HTTP/1.1 200")) {
            assert!(start.elapsed() < Duration::from_secs(5), "no scrape after the connections went away");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn outcomes_are_told_from_status_and_error_code() {
        assert_eq!(Outcome::classify(Some(200), None), Outcome::Success);
        assert_eq!(Outcome::classify(Some(400), Some("ThrottlingException")), Outcome::Throttled);
        assert_eq!(
            Outcome::classify(Some(400), Some("ThrottlingException:http://internal.amazon.com/coral/")),
            Outcome::Throttled
        );
        assert_eq!(Outcome::classify(Some(400), Some("com.amazonaws.fsx#ThrottlingException")), Outcome::Throttled);
        assert_eq!(Outcome::classify(Some(429), None), Outcome::Throttled);
        assert_eq!(Outcome::classify(Some(400), Some("BadRequest")), Outcome::ClientError);
        assert_eq!(Outcome::classify(Some(403), Some("AccessDeniedException")), Outcome::ClientError);
        assert_eq!(Outcome::classify(Some(500), Some("InternalServerError")), Outcome::ServerError);
        assert_eq!(Outcome::classify(Some(503), Some("SlowDown")), Outcome::Throttled);
        assert_eq!(Outcome::classify(None, None), Outcome::NetworkError);
    }

    /// A call the client gives up on is dropped by the server before it is answered: it is
    /// counted as Canceled, not forgotten.
    #[tokio::test]
    async fn a_call_dropped_before_its_answer_counts_as_canceled() {
        use tower::{Layer, Service};
        let count = || {
            get()
                .encode()
                .lines()
                .find(|l| l.starts_with(r#"fsx_csi_grpc_requests_total{method="ListSnapshots",code="Canceled"}"#))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let before = count();
        let never = tower::service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<http::Response<()>, std::convert::Infallible>>()
        });
        let mut svc = GrpcMetricsLayer.layer(never);
        let call = svc.call(http::Request::builder().uri("/csi.v1.Controller/ListSnapshots").body(()).unwrap());
        assert!(tokio::time::timeout(Duration::from_millis(10), call).await.is_err());
        assert_eq!(count(), before + 1.0);
    }

    /// The README's metric table lists exactly what the registry serves (the chart's dashboard
    /// and alerts are checked against that table: hack/tiers/deploy/monitoring.py).
    #[test]
    fn the_readme_metric_table_is_the_registry() {
        let m = Metrics::new();
        // One sample in every family, so that each is encoded.
        m.api_attempt("CreateFileSystem", Outcome::Success, Duration::from_millis(20), true);
        m.grpc_call("/csi.v1.Controller/CreateVolume", 0, Duration::from_secs(1));
        m.set_in_flight(InFlight::Creating, 1);
        m.node_operation("mount", NodeResult::Success, Duration::from_secs(1));
        m.lustre_client("installed");
        m.lnet_efa("none");
        let mut served: Vec<(String, String)> = m
            .encode()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| {
                let name = if kind == "counter" { format!("{name}_total") } else { name.to_string() };
                (name, kind.to_string())
            })
            .collect();
        served.sort();
        let readme = include_str!("../README.md");
        let table = readme.split("\n## Metrics\n").nth(1).unwrap().split("\n## ").next().unwrap();
        let mut listed: Vec<(String, String)> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `fsx_csi_"))
            .filter_map(|l| {
                let (name, rest) = l.split_once("` | ")?;
                Some((format!("fsx_csi_{name}"), rest.split(' ').next()?.to_string()))
            })
            .collect();
        listed.sort();
        assert_eq!(listed, served, "README.md's metric table (name, type) against the registry");
    }

    #[test]
    fn labels_stay_in_fixed_sets_and_names_follow_conventions() {
        let m = Metrics::new();
        m.api_attempt("CreateFileSystem", Outcome::Throttled, Duration::from_millis(20), true);
        m.api_attempt("fs-0123456789abcdef0", Outcome::Success, Duration::from_millis(20), false);
        m.grpc_call("/csi.v1.Controller/CreateVolume", 4, Duration::from_secs(3));
        m.grpc_call("/evil/pvc-1234", 99, Duration::from_secs(3));
        m.set_in_flight(InFlight::Creating, 3);
        m.node_operation("mount", NodeResult::Timeout, Duration::from_secs(100));
        m.lustre_client("installed");
        m.lustre_client("missing");
        m.lnet_efa("unknown");
        m.lnet_efa("none");
        let text = m.encode();
        // One state at a time, every state present.
        assert!(text.contains(r#"fsx_csi_node_lustre_client{state="missing"} 1"#), "{text}");
        assert!(text.contains(r#"fsx_csi_node_lustre_client{state="installed"} 0"#), "{text}");
        assert!(text.contains(r#"fsx_csi_node_lustre_client{state="loaded"} 0"#), "{text}");
        assert!(text.contains(r#"fsx_csi_node_lnet_efa{state="none"} 1"#), "{text}");
        assert!(text.contains(r#"fsx_csi_node_lnet_efa{state="unknown"} 0"#), "{text}");
        assert!(
            text.contains(r#"fsx_csi_api_requests_total{operation="CreateFileSystem",outcome="throttled"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"fsx_csi_api_requests_total{operation="other",outcome="success"} 1"#), "{text}");
        assert!(text.contains(r#"fsx_csi_api_retries_total{operation="CreateFileSystem"} 1"#), "{text}");
        assert!(text.contains(r#"fsx_csi_grpc_requests_total{method="CreateVolume",code="DeadlineExceeded"} 1"#));
        assert!(text.contains(r#"fsx_csi_grpc_requests_total{method="other",code="Unknown"} 1"#), "{text}");
        assert!(text.contains(r#"fsx_csi_file_systems_in_flight{kind="creating"} 3"#), "{text}");
        assert!(text.contains("fsx_csi_node_operation_duration_seconds_bucket{"), "{text}");
        assert!(text.contains("# TYPE fsx_csi_file_system_creation_seconds histogram"), "{text}");
        assert!(!text.contains("fs-0123") && !text.contains("pvc-1234"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
