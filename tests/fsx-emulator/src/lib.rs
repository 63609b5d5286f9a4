//! An Amazon FSx for Lustre API emulator, for tests, the demo and the benchmarks.
//!
//! It speaks the real wire protocol (AWS JSON 1.1, `X-Amz-Target:
//! AWSSimbaAPIService_v20180301.<Operation>`) on 127.0.0.1, so the real `aws-sdk-fsx` client
//! runs end to end against it through `AWS_ENDPOINT_URL_FSX`. The contract is botocore's
//! `data/fsx/2018-03-01/service-2.json`; the shapes and error codes here follow it.
//!
//! It models what the driver's correctness depends on:
//! - `CreateFileSystem` with FSx's Lustre validation (capacity steps per deployment and
//!   storage type, throughput per type, `SubnetIds` required, HDD only on PERSISTENT_1, ...);
//! - `ClientRequestToken` idempotency: same token and parameters → the same file system, even
//!   a FAILED or deleted one; other parameters → `IncompatibleParameterError`;
//! - the lifecycle CREATING → AVAILABLE after a configurable delay, or FAILED when injected;
//! - `DescribeFileSystems` by id (≤ 50, `FileSystemNotFound`) and paged;
//! - `DeleteFileSystem` (DELETING for a while, then gone), `TagResource`, `ListTagsForResource`;
//! - `UpdateFileSystem` storage growth, tracked as a FILE_SYSTEM_UPDATE administrative action
//!   (PENDING → IN_PROGRESS → UPDATED_OPTIMIZING → COMPLETED, or FAILED when injected), with
//!   FSx's refusals: SCRATCH_1, an update already running, sizes off the step;
//! - data repository associations (create, describe by id or file system, delete) with their
//!   lifecycle, and FSx's refusal of `ImportPath` on PERSISTENT_2;
//! - injectable throttling, 5xx and latency, and per-operation call counters.
//!
//! Tests use it in-process through [`Emulator`]; scripts run the `fsx-emulator` binary and
//! read or change it over `/_emulator/*` HTTP endpoints (`stats`, `file-systems`, `config`,
//! `fail-next-creates`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const TARGET_PREFIX: &str = "AWSSimbaAPIService_v20180301.";
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// Behaviour knobs. All delays are wall-clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Time from CreateFileSystem to AVAILABLE (or FAILED).
    pub create_delay_ms: u64,
    /// A random extra delay, up to this, per file system.
    pub create_jitter_ms: u64,
    /// Time a deleted file system stays DELETING before it is gone.
    pub delete_delay_ms: u64,
    /// Fraction (0..1) of requests answered with `ThrottlingException`.
    pub throttle_rate: f64,
    /// Fraction (0..1) of requests answered with HTTP 500 `InternalServerError`.
    pub error_rate: f64,
    /// Added to every request.
    pub latency_ms: u64,
    /// Page size for listings without ids.
    pub page_size: usize,
    /// How long a `ClientRequestToken` keeps answering with its file system.
    pub token_window_ms: u64,
    /// Time from UpdateFileSystem to UPDATED_OPTIMIZING (the new size in effect).
    pub update_delay_ms: u64,
    /// Further time from UPDATED_OPTIMIZING to COMPLETED.
    pub optimize_delay_ms: u64,
    /// Time from CreateDataRepositoryAssociation to AVAILABLE (or FAILED).
    pub association_delay_ms: u64,
    /// Operations answered with `AccessDeniedException`, as a role without them would be.
    pub deny_operations: Vec<String>,
    /// Operations answered with `UnknownOperationException`, as an FSx-compatible endpoint
    /// (or a region) without them would.
    pub unsupported_operations: Vec<String>,
    /// Time from CreateBackup to AVAILABLE (or FAILED).
    pub backup_delay_ms: u64,
    /// EC2's subnets (`DescribeSubnets`, on the same port): id → where it is. A well-formed
    /// subnet id not listed here is in [`DEFAULT_VPC`], in zone `us-east-1a`, `b` or `c` by its
    /// last hex digit (so every existing test's subnet exists); `subnet-…dead…` ids do not.
    pub subnets: BTreeMap<String, SubnetPlace>,
}

/// Where an emulated subnet is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubnetPlace {
    pub zone: String,
    pub vpc: String,
}

/// The VPC of subnets the configuration does not place.
pub const DEFAULT_VPC: &str = "vpc-0123456789abcdef0";

impl Default for Config {
    fn default() -> Self {
        Self {
            create_delay_ms: 2_000,
            create_jitter_ms: 0,
            delete_delay_ms: 1_000,
            throttle_rate: 0.0,
            error_rate: 0.0,
            latency_ms: 0,
            page_size: 100,
            token_window_ms: 8 * 3600 * 1000,
            update_delay_ms: 2_000,
            optimize_delay_ms: 2_000,
            association_delay_ms: 1_000,
            deny_operations: Vec::new(),
            unsupported_operations: Vec::new(),
            backup_delay_ms: 1_500,
            subnets: BTreeMap::new(),
        }
    }
}

/// The creation/deletion clock shared by file systems and associations: DELETING for
/// `delete_delay_ms` after deletion (then gone), CREATING until `ready_after`, then FAILED
/// (with `fail` as FSx's message) or AVAILABLE.
#[derive(Debug, Clone)]
struct Clock {
    created: Instant,
    creation_time: f64,
    ready_after: Duration,
    fail: Option<String>,
    deleted: Option<Instant>,
}

impl Clock {
    fn start(now: Instant, ready_after: Duration, fail: Option<String>) -> Self {
        Self { created: now, creation_time: now_unix(), ready_after, fail, deleted: None }
    }

    fn available_at(&self) -> Instant {
        self.created + self.ready_after
    }

    /// The lifecycle at `now`, or `None` once gone.
    fn lifecycle(&self, config: &Config, now: Instant) -> Option<&'static str> {
        if let Some(deleted) = self.deleted {
            if now.duration_since(deleted) >= Duration::from_millis(config.delete_delay_ms) {
                return None;
            }
            return Some("DELETING");
        }
        if now.duration_since(self.created) < self.ready_after {
            return Some("CREATING");
        }
        Some(if self.fail.is_some() { "FAILED" } else { "AVAILABLE" })
    }
}

#[derive(Debug, Clone)]
struct Fs {
    id: String,
    request: Value,
    clock: Clock,
    tags: Vec<(String, String)>,
    mount_name: String,
    updates: Vec<UpdateRec>,
}

#[derive(Debug, Clone)]
struct UpdateRec {
    requested: Instant,
    request_time: f64,
    /// The new storage capacity, for a capacity update.
    target: Option<i64>,
    /// The LustreConfiguration values that take effect when the update is done (throughput,
    /// metadata), for a settings update.
    lustre: Value,
    /// The new Lustre version, for an upgrade (`FileSystemTypeVersion`).
    version: Option<String>,
    fail: Option<String>,
}

#[derive(Debug, Clone)]
struct Bk {
    id: String,
    fs_id: String,
    /// The file system's description when the backup was taken.
    file_system: Value,
    /// The file system's creation request, which a restore starts from.
    source_request: Value,
    tags: Value,
    clock: Clock,
}

#[derive(Debug, Clone)]
struct Dra {
    id: String,
    fs_id: String,
    request: Value,
    clock: Clock,
}

#[derive(Debug, Clone)]
struct Token {
    fs_id: String,
    fingerprint: Value,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    config: Config,
    file_systems: BTreeMap<String, Fs>,
    tokens: HashMap<String, Token>,
    calls: BTreeMap<String, u64>,
    /// Per operation, answers by outcome (`success`, `throttled`, `client_error`, `server_error`).
    outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    fail_next_creates: Vec<String>,
    fail_next_updates: Vec<String>,
    fail_next_associations: Vec<String>,
    associations: BTreeMap<String, Dra>,
    association_tokens: HashMap<String, String>,
    backups: BTreeMap<String, Bk>,
    /// Token → (file system, backup).
    backup_tokens: HashMap<String, (String, String)>,
    fail_next_backups: Vec<String>,
    next_id: u64,
    /// Largest number of ids seen in one DescribeFileSystems call.
    max_describe_ids: usize,
    /// DescribeFileSystems calls naming each file system (the listing, without ids, is not
    /// counted here).
    described: BTreeMap<String, u64>,
}

/// A handle on a running emulator. Dropping it does not stop the server; the server stops
/// with the runtime it was started on.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
}

/// An FSx error response.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: "BadRequest", message: message.into() }
    }
    fn not_found(id: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "FileSystemNotFound",
            message: format!("File system '{id}' does not exist."),
        }
    }
    fn code(code: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"__type": self.code, "Message": self.message});
        if self.code == "IncompatibleParameterError" {
            body["Parameter"] = json!("ClientRequestToken");
        }
        (self.status, [("content-type", JSON_CONTENT_TYPE), ("x-amzn-errortype", self.code)], body.to_string())
            .into_response()
    }
}

impl Emulator {
    /// Starts the emulator on `127.0.0.1:<port>` (0 for any) on the current tokio runtime.
    pub async fn start(config: Config, port: u16) -> std::io::Result<Self> {
        Self::start_on(config, std::net::Ipv4Addr::LOCALHOST, port).await
    }

    /// Starts the emulator on `<address>:<port>`: the node tier serves the controller's pod
    /// from its node's bridge address, inside a private network namespace.
    pub async fn start_on(config: Config, address: std::net::Ipv4Addr, port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((address, port)).await?;
        let addr = listener.local_addr()?;
        let emulator = Self { inner: Arc::new(Mutex::new(Inner { config, next_id: 1, ..Default::default() })), addr };
        let app = Router::new()
            .route("/", post(api))
            .route("/_emulator/stats", get(stats))
            .route("/_emulator/file-systems", get(file_systems))
            .route("/_emulator/config", post(set_config))
            .route("/_emulator/fail-next-creates", post(fail_next))
            .with_state(emulator.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(emulator)
    }

    /// The emulator's base URL, for `AWS_ENDPOINT_URL_FSX`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The number of calls made to `operation` (e.g. `"CreateFileSystem"`), including
    /// throttled and failed ones.
    pub fn calls(&self, operation: &str) -> u64 {
        self.lock().calls.get(operation).copied().unwrap_or(0)
    }

    /// All call counters, by operation.
    pub fn all_calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// Per operation, how many answers had each outcome (`success`, `throttled`,
    /// `client_error`, `server_error`).
    pub fn outcomes(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.lock().outcomes.clone()
    }

    /// Resets the call counters.
    pub fn reset_calls(&self) {
        let mut inner = self.lock();
        inner.calls.clear();
        inner.outcomes.clear();
        inner.max_describe_ids = 0;
        inner.described.clear();
    }

    /// The largest number of ids seen in one `DescribeFileSystems` call.
    pub fn max_describe_ids(&self) -> usize {
        self.lock().max_describe_ids
    }

    /// Replaces the configuration; applies to file systems created afterwards and to every
    /// later request.
    pub fn set_config(&self, config: Config) {
        self.lock().config = config;
    }

    /// The current configuration.
    pub fn config(&self) -> Config {
        self.lock().config.clone()
    }

    /// Changes the configuration in place.
    pub fn update_config(&self, f: impl FnOnce(&mut Config)) {
        f(&mut self.lock().config)
    }

    /// The next `n` created file systems end FAILED with `message` instead of AVAILABLE.
    pub fn fail_next_creates(&self, n: usize, message: &str) {
        let mut inner = self.lock();
        inner.fail_next_creates.extend(std::iter::repeat_n(message.to_string(), n));
    }

    /// File system `id` as `DescribeFileSystems` shows it now, if it exists.
    pub fn file_system(&self, id: &str) -> Option<Value> {
        let inner = self.lock();
        let now = Instant::now();
        let fs = inner.file_systems.get(id)?;
        let lc = lifecycle(fs, &inner.config, now)?;
        Some(describe(fs, lc, &inner.config, now))
    }

    /// The next `n` backups end FAILED with `message`.
    pub fn fail_next_backups(&self, n: usize, message: &str) {
        self.lock().fail_next_backups.extend(std::iter::repeat_n(message.to_string(), n));
    }

    /// (backup id, source file system id, lifecycle) of every backup not deleted.
    pub fn backups(&self) -> Vec<(String, String, String)> {
        let inner = self.lock();
        let now = Instant::now();
        inner
            .backups
            .values()
            .filter_map(|b| {
                let d = inner.describe_backup(b, now)?;
                let lc = d["Lifecycle"].as_str().unwrap_or("").to_string();
                (lc != "DELETED").then(|| (b.id.clone(), b.fs_id.clone(), lc))
            })
            .collect()
    }

    /// The next `n` capacity updates end FAILED with `message`.
    /// A backup's tags, as (key, value).
    pub fn backup_tags(&self, id: &str) -> Vec<(String, String)> {
        let inner = self.lock();
        let Some(b) = inner.backups.get(id) else { return Vec::new() };
        b.tags
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t.get("Key")?.as_str()?.to_string(), t.get("Value")?.as_str()?.to_string())))
            .collect()
    }

    pub fn fail_next_updates(&self, n: usize, message: &str) {
        self.lock().fail_next_updates.extend(std::iter::repeat_n(message.to_string(), n));
    }

    /// The next `n` associations end FAILED with `message`.
    pub fn fail_next_associations(&self, n: usize, message: &str) {
        self.lock().fail_next_associations.extend(std::iter::repeat_n(message.to_string(), n));
    }

    /// (id, file system id, lifecycle, data repository path) of every association that still
    /// exists.
    pub fn associations(&self) -> Vec<(String, String, String, String)> {
        let inner = self.lock();
        let now = Instant::now();
        inner
            .associations
            .values()
            .filter_map(|a| {
                let l = dra_lifecycle(a, &inner.config, now)?;
                let repo = a.request["DataRepositoryPath"].as_str().unwrap_or("").to_string();
                Some((a.id.clone(), a.fs_id.clone(), l.to_string(), repo))
            })
            .collect()
    }

    /// When association `id` became (or becomes) AVAILABLE.
    /// An association as DescribeDataRepositoryAssociations shows it.
    pub fn association(&self, id: &str) -> Option<Value> {
        let inner = self.lock();
        let a = inner.associations.get(id)?;
        let l = dra_lifecycle(a, &inner.config, Instant::now())?;
        Some(describe_association(a, l))
    }

    pub fn association_available_at(&self, id: &str) -> Option<Instant> {
        self.lock().associations.get(id).map(|a| a.clock.available_at())
    }

    /// (status, target GiB) of every capacity update of file system `id`.
    pub fn updates(&self, id: &str) -> Vec<(String, i64)> {
        let inner = self.lock();
        let now = Instant::now();
        inner
            .file_systems
            .get(id)
            .map(|fs| {
                fs.updates
                    .iter()
                    .filter_map(|u| Some((update_status(u, &inner.config, now).to_string(), u.target?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (status, LustreConfiguration changes) of every settings update of file system `id`.
    pub fn setting_updates(&self, id: &str) -> Vec<(String, Value)> {
        let inner = self.lock();
        let now = Instant::now();
        inner
            .file_systems
            .get(id)
            .map(|fs| {
                fs.updates
                    .iter()
                    .filter(|u| u.target.is_none())
                    .map(|u| (update_status(u, &inner.config, now).to_string(), u.lustre.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ids and lifecycles of every file system that still exists (not gone).
    pub fn file_systems(&self) -> Vec<(String, String)> {
        let inner = self.lock();
        let now = Instant::now();
        inner
            .file_systems
            .values()
            .filter_map(|fs| lifecycle(fs, &inner.config, now).map(|l| (fs.id.clone(), l.to_string())))
            .collect()
    }

    /// The subnet file system `id` was created in.
    pub fn subnet_of(&self, id: &str) -> Option<String> {
        let inner = self.lock();
        inner.file_systems.get(id)?.request["SubnetIds"][0].as_str().map(str::to_string)
    }

    /// (id, lifecycle, `CSIVolumeName` tag) of every file system that still exists.
    pub fn file_systems_with_names(&self) -> Vec<(String, String, Option<String>)> {
        let inner = self.lock();
        let now = Instant::now();
        inner
            .file_systems
            .values()
            .filter_map(|fs| {
                let l = lifecycle(fs, &inner.config, now)?;
                let name = fs.tags.iter().find(|(k, _)| k == "CSIVolumeName").map(|(_, v)| v.clone());
                Some((fs.id.clone(), l.to_string(), name))
            })
            .collect()
    }

    /// Makes every CREATING file system finish now (AVAILABLE or FAILED).
    pub fn finish_creations(&self) {
        let mut inner = self.lock();
        for fs in inner.file_systems.values_mut() {
            fs.clock.ready_after = Duration::ZERO;
        }
    }

    /// The time at which `id` became (or becomes) AVAILABLE.
    pub fn available_at(&self, id: &str) -> Option<Instant> {
        let inner = self.lock();
        inner.file_systems.get(id).map(|fs| fs.clock.available_at())
    }

    /// Removes a file system immediately, as if deleted out of band long ago.
    pub fn forget(&self, id: &str) {
        self.lock().file_systems.remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The lifecycle of `fs` at `now`, or `None` once it is gone.
fn lifecycle(fs: &Fs, config: &Config, now: Instant) -> Option<&'static str> {
    match fs.clock.lifecycle(config, now)? {
        "AVAILABLE" if fs.updates.iter().any(|u| update_status(u, config, now) == "IN_PROGRESS") => Some("UPDATING"),
        other => Some(other),
    }
}

/// The status of a FILE_SYSTEM_UPDATE at `now`.
fn update_status(u: &UpdateRec, config: &Config, now: Instant) -> &'static str {
    let elapsed = now.duration_since(u.requested);
    let update = Duration::from_millis(config.update_delay_ms);
    if elapsed < update / 4 {
        "PENDING"
    } else if elapsed < update {
        "IN_PROGRESS"
    } else if u.fail.is_some() {
        "FAILED"
    } else if elapsed < update + Duration::from_millis(config.optimize_delay_ms) {
        "UPDATED_OPTIMIZING"
    } else {
        "COMPLETED"
    }
}

/// The storage capacity in effect at `now`.
fn capacity(fs: &Fs, config: &Config, now: Instant) -> i64 {
    let mut capacity = fs.request["StorageCapacity"].as_i64().unwrap_or(0);
    for u in &fs.updates {
        if let Some(target) = u.target
            && matches!(update_status(u, config, now), "UPDATED_OPTIMIZING" | "COMPLETED")
        {
            capacity = target;
        }
    }
    capacity
}

/// The Lustre version in effect at `now`: the creation request's (FSx's defaults otherwise),
/// or that of the last finished upgrade.
fn version_in_effect(fs: &Fs, config: &Config, now: Instant) -> Value {
    let lustre = fs.request.get("LustreConfiguration").cloned().unwrap_or_else(|| json!({}));
    let default = if lustre.get("DeploymentType").and_then(Value::as_str) == Some("PERSISTENT_2") {
        if lustre.get("MetadataConfiguration").is_some() { "2.15" } else { "2.12" }
    } else {
        "2.10"
    };
    let mut version = fs.request.get("FileSystemTypeVersion").cloned().unwrap_or(json!(default));
    for u in &fs.updates {
        if let Some(v) = &u.version
            && matches!(update_status(u, config, now), "UPDATED_OPTIMIZING" | "COMPLETED")
        {
            version = json!(v);
        }
    }
    version
}

/// The LustreConfiguration request values in effect at `now`: the creation request's, with
/// the settings of finished updates laid over.
fn lustre_in_effect(fs: &Fs, config: &Config, now: Instant) -> Value {
    let mut lustre = fs.request.get("LustreConfiguration").cloned().unwrap_or_else(|| json!({}));
    for u in &fs.updates {
        if u.target.is_none() && matches!(update_status(u, config, now), "UPDATED_OPTIMIZING" | "COMPLETED") {
            for (k, v) in u.lustre.as_object().into_iter().flatten() {
                lustre[k] = v.clone();
            }
        }
    }
    lustre
}

/// The lifecycle of an association at `now`, or `None` once it is gone.
fn dra_lifecycle(a: &Dra, config: &Config, now: Instant) -> Option<&'static str> {
    a.clock.lifecycle(config, now)
}

fn describe_association(a: &Dra, lifecycle: &str) -> Value {
    let mut out = json!({
        "AssociationId": a.id,
        "ResourceARN": format!("arn:aws:fsx:{REGION}:{ACCOUNT}:association/{}/{}", a.fs_id, a.id),
        "FileSystemId": a.fs_id,
        "Lifecycle": lifecycle,
        "FileSystemPath": a.request.get("FileSystemPath").cloned().unwrap_or(json!("/")),
        "DataRepositoryPath": a.request["DataRepositoryPath"],
        "BatchImportMetaDataOnCreate": a.request.get("BatchImportMetaDataOnCreate").cloned().unwrap_or(json!(false)),
        "ImportedFileChunkSize": a.request.get("ImportedFileChunkSize").cloned().unwrap_or(json!(1024)),
        "Tags": a.request.get("Tags").cloned().unwrap_or(json!([])),
        "CreationTime": a.clock.creation_time,
    });
    if let Some(s3) = a.request.get("S3") {
        out["S3"] = s3.clone();
    }
    if lifecycle == "FAILED" {
        out["FailureDetails"] = json!({"Message": a.clock.fail.clone().unwrap_or_default()});
    }
    out
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn describe(fs: &Fs, lifecycle: &str, config: &Config, now: Instant) -> Value {
    let req = &fs.request;
    let lustre_req = lustre_in_effect(fs, config, now);
    let deployment = lustre_req.get("DeploymentType").and_then(Value::as_str).unwrap_or("SCRATCH_1");
    let mut lustre = json!({
        "DeploymentType": deployment,
        "MountName": fs.mount_name,
        "WeeklyMaintenanceStartTime": lustre_req.get("WeeklyMaintenanceStartTime").cloned().unwrap_or(json!("1:05:00")),
        "DataCompressionType": lustre_req.get("DataCompressionType").cloned().unwrap_or(json!("NONE")),
    });
    for key in [
        "PerUnitStorageThroughput",
        "DriveCacheType",
        "DailyAutomaticBackupStartTime",
        "AutomaticBackupRetentionDays",
        "CopyTagsToBackups",
        "EfaEnabled",
        "MetadataConfiguration",
        "RootSquashConfiguration",
        "ThroughputCapacity",
        "DataReadCacheConfiguration",
    ] {
        if let Some(v) = lustre_req.get(key) {
            lustre[key] = v.clone();
        }
    }
    if let Some(log) = lustre_req.get("LogConfiguration") {
        let mut log = log.clone();
        // FSx logs to /aws/fsx/lustre unless told otherwise.
        if log.get("Level").and_then(Value::as_str) != Some("DISABLED") && log.get("Destination").is_none() {
            log["Destination"] = json!(format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/fsx/lustre"));
        }
        lustre["LogConfiguration"] = log;
    }
    if deployment == "SCRATCH_1" {
        lustre["MountName"] = json!("fsx");
    }
    if let Some(import) = lustre_req.get("ImportPath") {
        let export = lustre_req.get("ExportPath").cloned().unwrap_or_else(|| {
            json!(format!("{}/FSxLustre{}", import.as_str().unwrap_or(""), fs.clock.creation_time as u64))
        });
        lustre["DataRepositoryConfiguration"] = json!({
            "Lifecycle": if lifecycle == "AVAILABLE" { "AVAILABLE" } else { "CREATING" },
            "ImportPath": import,
            "ExportPath": export,
            "ImportedFileChunkSize": lustre_req.get("ImportedFileChunkSize").cloned().unwrap_or(json!(1024)),
            "AutoImportPolicy": lustre_req.get("AutoImportPolicy").cloned().unwrap_or(json!("NONE")),
        });
    }
    let mut out = json!({
        "OwnerId": ACCOUNT,
        "CreationTime": fs.clock.creation_time,
        "FileSystemId": fs.id,
        "FileSystemType": "LUSTRE",
        "Lifecycle": lifecycle,
        "StorageType": req.get("StorageType").cloned().unwrap_or(json!("SSD")),
        "VpcId": "vpc-0123456789abcdef0",
        "SubnetIds": req["SubnetIds"],
        "NetworkInterfaceIds": ["eni-0123456789abcdef0"],
        "DNSName": format!("{}.fsx.{REGION}.amazonaws.com", fs.id),
        "ResourceARN": format!("arn:aws:fsx:{REGION}:{ACCOUNT}:file-system/{}", fs.id),
        "Tags": fs.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
        "LustreConfiguration": lustre,
        "FileSystemTypeVersion": version_in_effect(fs, config, now),
    });
    // An Intelligent-Tiering file system has no provisioned size to report.
    if req.get("StorageType").and_then(Value::as_str) != Some("INTELLIGENT_TIERING") {
        out["StorageCapacity"] = json!(capacity(fs, config, now));
    }
    if let Some(kms) = req.get("KmsKeyId") {
        out["KmsKeyId"] = kms.clone();
    }
    if lifecycle == "FAILED" {
        out["FailureDetails"] = json!({"Message": fs.clock.fail.clone().unwrap_or_default()});
    }
    if !fs.updates.is_empty() {
        out["AdministrativeActions"] = json!(
            fs.updates
                .iter()
                .map(|u| {
                    let status = update_status(u, config, now);
                    let mut target = match u.target {
                        Some(gib) => json!({"StorageCapacity": gib}),
                        None => json!({"LustreConfiguration": u.lustre}),
                    };
                    if let Some(v) = &u.version {
                        target["FileSystemTypeVersion"] = json!(v);
                        if u.lustre.as_object().is_some_and(|l| l.is_empty()) {
                            target.as_object_mut().map(|t| t.remove("LustreConfiguration"));
                        }
                    }
                    let mut a = json!({
                        "AdministrativeActionType": "FILE_SYSTEM_UPDATE",
                        "RequestTime": u.request_time,
                        "Status": status,
                        "ProgressPercent": match status { "PENDING" => 0, "IN_PROGRESS" => 50, _ => 100 },
                        "TargetFileSystemValues": target,
                    });
                    if status == "FAILED" {
                        a["FailureDetails"] = json!({"Message": u.fail.clone().unwrap_or_default()});
                    }
                    a
                })
                .collect::<Vec<_>>()
        );
    }
    out
}

/// One page of `items` under `key`, honouring `MaxResults` and `NextToken`.
fn paged(key: &str, items: Vec<Value>, req: &Value, default_page: usize) -> Result<Value, ApiError> {
    let page = req.get("MaxResults").and_then(Value::as_u64).map(|m| m as usize).unwrap_or(default_page).max(1);
    let start = match req.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| ApiError::bad_request("Invalid NextToken."))?,
    };
    let end = (start + page).min(items.len());
    let mut out = json!({ key: items.get(start..end).unwrap_or(&[]) });
    if end < items.len() {
        // Digits in groups of four fit the API's NextToken pattern.
        out["NextToken"] = json!(format!("{end:08}"));
    }
    Ok(out)
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// The LustreConfiguration settings FSx added with Intelligent-Tiering, logging, NID
/// exceptions and EFA: the same rules on create and (for the mutable ones) on update.
fn validate_lustre_extras(
    lustre: &Value,
    deployment: &str,
    storage: &str,
    version: Option<&str>,
) -> Result<(), ApiError> {
    let tiering = storage == "INTELLIGENT_TIERING";
    if tiering && deployment != "PERSISTENT_2" {
        return Err(ApiError::bad_request(
            "INTELLIGENT_TIERING is supported only with the PERSISTENT_2 deployment type.",
        ));
    }
    let throughput = int(lustre, "ThroughputCapacity");
    match (tiering, throughput) {
        (false, Some(_)) => {
            return Err(ApiError::bad_request("ThroughputCapacity is supported only with INTELLIGENT_TIERING."));
        }
        (true, None) => return Err(ApiError::bad_request("ThroughputCapacity is required with INTELLIGENT_TIERING.")),
        (true, Some(t)) if !(4000..=2_000_000).contains(&t) || t % 4000 != 0 => {
            return Err(ApiError::bad_request(format!(
                "Invalid ThroughputCapacity {t}: use 4000 MBps or a multiple of 4000."
            )));
        }
        _ => {}
    }
    match (tiering, lustre.get("DataReadCacheConfiguration")) {
        (false, Some(_)) => {
            return Err(ApiError::bad_request(
                "DataReadCacheConfiguration is supported only with INTELLIGENT_TIERING.",
            ));
        }
        (true, None) => {
            return Err(ApiError::bad_request("DataReadCacheConfiguration is required with INTELLIGENT_TIERING."));
        }
        (true, Some(cache)) => validate_read_cache(cache, throughput.unwrap_or(0))?,
        _ => {}
    }
    if let Some(m) = lustre.get("MetadataConfiguration") {
        let mode = m.get("Mode").and_then(Value::as_str).unwrap_or("");
        let iops = m.get("Iops").and_then(Value::as_i64);
        if tiering && (mode == "AUTOMATIC" || iops.is_some_and(|i| i != 6000 && i != 12000)) {
            return Err(ApiError::bad_request(
                "INTELLIGENT_TIERING takes USER_PROVISIONED metadata with 6000 or 12000 IOPS.",
            ));
        }
    }
    if let Some(log) = lustre.get("LogConfiguration") {
        validate_log(log)?;
    }
    if let Some(squash) = lustre.get("RootSquashConfiguration") {
        validate_no_squash(squash)?;
    }
    if lustre.get("EfaEnabled").and_then(Value::as_bool) == Some(true) {
        if lustre.get("MetadataConfiguration").is_none() {
            return Err(ApiError::bad_request("EfaEnabled requires a MetadataConfiguration."));
        }
        if tiering && throughput.is_some_and(|t| t % 4000 != 0) {
            return Err(ApiError::bad_request(
                "EFA on INTELLIGENT_TIERING needs a ThroughputCapacity of 4000 MBps or a multiple.",
            ));
        }
    }
    match version {
        Some("2.10") if deployment == "PERSISTENT_2" => {
            return Err(ApiError::bad_request("PERSISTENT_2 file systems need Lustre 2.12 or later."));
        }
        Some("2.12") if deployment == "PERSISTENT_2" && lustre.get("MetadataConfiguration").is_some() => {
            return Err(ApiError::bad_request(
                "Lustre 2.12 is not supported for PERSISTENT_2 with a metadata configuration.",
            ));
        }
        Some("2.10" | "2.12" | "2.15") | None => {}
        Some(v) => return Err(ApiError::bad_request(format!("Invalid FileSystemTypeVersion {v}."))),
    }
    Ok(())
}

/// `DataReadCacheConfiguration` at `throughput` MBps: 32-131072 GiB per 4000 MBps, a size
/// only with USER_PROVISIONED.
fn validate_read_cache(cache: &Value, throughput: i64) -> Result<(), ApiError> {
    let mode = cache.get("SizingMode").and_then(Value::as_str).unwrap_or("");
    let size = cache.get("SizeGiB").and_then(Value::as_i64);
    match (mode, size) {
        ("USER_PROVISIONED", None) => Err(ApiError::bad_request("SizeGiB is required with USER_PROVISIONED.")),
        ("USER_PROVISIONED", Some(g)) if g < throughput / 1000 * 8 || g > throughput / 1000 * 32768 => {
            Err(ApiError::bad_request(format!("SizeGiB {g} is outside the range for {throughput} MBps.")))
        }
        ("NO_CACHE" | "PROPORTIONAL_TO_THROUGHPUT_CAPACITY", Some(_)) => {
            Err(ApiError::bad_request("SizeGiB is supported only with USER_PROVISIONED."))
        }
        ("USER_PROVISIONED" | "NO_CACHE" | "PROPORTIONAL_TO_THROUGHPUT_CAPACITY", _) => Ok(()),
        (other, _) => Err(ApiError::bad_request(format!("Invalid SizingMode {other}."))),
    }
}

/// `LogConfiguration`: a level; a destination only when logging, a CloudWatch Logs log
/// group in this account and region whose name starts with /aws/fsx.
fn validate_log(log: &Value) -> Result<(), ApiError> {
    let level = log.get("Level").and_then(Value::as_str).unwrap_or("");
    if !["DISABLED", "WARN_ONLY", "ERROR_ONLY", "WARN_ERROR"].contains(&level) {
        return Err(ApiError::bad_request(format!("Invalid LogConfiguration Level '{level}'.")));
    }
    if let Some(d) = log.get("Destination").and_then(Value::as_str) {
        if level == "DISABLED" {
            return Err(ApiError::bad_request("A Destination cannot be given when Level is DISABLED."));
        }
        let prefix = format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/fsx");
        if !d.starts_with(&prefix) || d.len() > 1024 {
            return Err(ApiError::bad_request(format!(
                "Destination must be a CloudWatch Logs log group in {REGION} of {ACCOUNT} whose name begins with /aws/fsx."
            )));
        }
    }
    Ok(())
}

/// `RootSquashConfiguration.NoSquashNids`: at most 64, FSx's pattern.
fn validate_no_squash(squash: &Value) -> Result<(), ApiError> {
    let nids = squash.get("NoSquashNids").and_then(Value::as_array).cloned().unwrap_or_default();
    if nids.len() > 64 {
        return Err(ApiError::bad_request("At most 64 NoSquashNids are allowed."));
    }
    for nid in &nids {
        let n = nid.as_str().unwrap_or("");
        let ok = (11..=43).contains(&n.len())
            && n.strip_suffix("@tcp").is_some_and(|ip| {
                ip.split('.').count() == 4 && ip.bytes().all(|b| b.is_ascii_digit() || b"[]-.".contains(&b))
            });
        if !ok {
            return Err(ApiError::bad_request(format!("Invalid NID '{n}'.")));
        }
    }
    Ok(())
}

/// FSx's Lustre validation for CreateFileSystem.
fn validate_create(req: &Value) -> Result<(), ApiError> {
    if req.get("FileSystemType").and_then(Value::as_str) != Some("LUSTRE") {
        return Err(ApiError::bad_request("This emulator supports only FileSystemType LUSTRE."));
    }
    let subnets = req.get("SubnetIds").and_then(Value::as_array).cloned().unwrap_or_default();
    if subnets.is_empty() {
        return Err(ApiError::code("InvalidNetworkSettings", "SubnetIds is required."));
    }
    if subnets.len() != 1 {
        return Err(ApiError::code("InvalidNetworkSettings", "Lustre file systems take exactly one subnet."));
    }
    for s in &subnets {
        let s = s.as_str().unwrap_or("");
        if !valid_id(s, "subnet-") {
            return Err(ApiError::code("InvalidNetworkSettings", format!("The subnet ID '{s}' is invalid.")));
        }
    }
    for sg in req.get("SecurityGroupIds").and_then(Value::as_array).into_iter().flatten() {
        let sg = sg.as_str().unwrap_or("");
        if !valid_id(sg, "sg-") {
            return Err(ApiError::code("InvalidNetworkSettings", format!("The security group ID '{sg}' is invalid.")));
        }
    }
    let lustre = req.get("LustreConfiguration").cloned().unwrap_or_else(|| json!({}));
    let deployment = lustre.get("DeploymentType").and_then(Value::as_str).unwrap_or("SCRATCH_1");
    let storage = req.get("StorageType").and_then(Value::as_str).unwrap_or("SSD");
    let throughput = int(&lustre, "PerUnitStorageThroughput");
    if !["SCRATCH_1", "SCRATCH_2", "PERSISTENT_1", "PERSISTENT_2"].contains(&deployment) {
        return Err(ApiError::bad_request(format!("Invalid DeploymentType {deployment}.")));
    }
    if !["SSD", "HDD", "INTELLIGENT_TIERING"].contains(&storage) {
        return Err(ApiError::bad_request(format!("Invalid StorageType {storage}.")));
    }
    validate_lustre_extras(&lustre, deployment, storage, req.get("FileSystemTypeVersion").and_then(Value::as_str))?;
    if storage == "INTELLIGENT_TIERING" {
        // Elastic: no StorageCapacity; the rest of the capacity rules do not apply.
        if req.get("StorageCapacity").is_some() {
            return Err(ApiError::bad_request(
                "StorageCapacity is not supported with the INTELLIGENT_TIERING storage class.",
            ));
        }
        if throughput.is_some() {
            return Err(ApiError::code(
                "InvalidPerUnitStorageThroughput",
                "PerUnitStorageThroughput is not supported with INTELLIGENT_TIERING; use ThroughputCapacity.",
            ));
        }
        return Ok(());
    }
    let capacity = int(req, "StorageCapacity").ok_or_else(|| ApiError::bad_request("StorageCapacity is required."))?;
    if storage == "HDD" && deployment != "PERSISTENT_1" {
        return Err(ApiError::bad_request("HDD storage is supported only with the PERSISTENT_1 deployment type."));
    }
    let allowed: &[i64] = match (deployment, storage) {
        ("SCRATCH_1" | "SCRATCH_2", _) => &[],
        ("PERSISTENT_1", "HDD") => &[12, 40],
        ("PERSISTENT_1", _) => &[50, 100, 200],
        _ => &[125, 250, 500, 1000],
    };
    match throughput {
        Some(t) if allowed.is_empty() => {
            return Err(ApiError::code(
                "InvalidPerUnitStorageThroughput",
                format!("PerUnitStorageThroughput {t} is not supported for {deployment}."),
            ));
        }
        Some(t) if !allowed.contains(&t) => {
            return Err(ApiError::code(
                "InvalidPerUnitStorageThroughput",
                format!("PerUnitStorageThroughput must be one of {allowed:?} for {deployment} {storage}."),
            ));
        }
        None if !allowed.is_empty() => {
            return Err(ApiError::bad_request(format!("PerUnitStorageThroughput is required for {deployment}.")));
        }
        _ => {}
    }
    if storage == "HDD" && lustre.get("DriveCacheType").is_none() {
        return Err(ApiError::bad_request("DriveCacheType is required for HDD storage."));
    }
    if !valid_capacity(deployment, storage, throughput, capacity) {
        return Err(ApiError::bad_request(format!(
            "Invalid StorageCapacity {capacity} GiB for {deployment} {storage}: see the FSx for Lustre storage capacity rules."
        )));
    }
    if deployment == "PERSISTENT_2" && (lustre.get("ImportPath").is_some() || lustre.get("ExportPath").is_some()) {
        return Err(ApiError::bad_request(
            "Linking a Persistent 2 file system to an S3 bucket using the LustreConfiguration is not supported. Create a data repository association to link your Lustre file system to an S3 bucket.",
        ));
    }
    if lustre.get("ExportPath").is_some() && lustre.get("ImportPath").is_none() {
        return Err(ApiError::code("InvalidExportPath", "ExportPath requires ImportPath."));
    }
    for key in ["ImportPath", "ExportPath"] {
        if let Some(p) = lustre.get(key).and_then(Value::as_str)
            && (!p.starts_with("s3://") || p.len() <= 5)
        {
            let code = if key == "ImportPath" { "InvalidImportPath" } else { "InvalidExportPath" };
            return Err(ApiError::code(code, format!("{key} must be an S3 URL, got '{p}'.")));
        }
    }
    if deployment.starts_with("SCRATCH")
        && (lustre.get("AutomaticBackupRetentionDays").and_then(Value::as_i64).unwrap_or(0) > 0
            || lustre.get("DailyAutomaticBackupStartTime").is_some())
    {
        return Err(ApiError::bad_request("Automatic backups are not supported on scratch file systems."));
    }
    if (lustre.get("EfaEnabled").is_some() || lustre.get("MetadataConfiguration").is_some())
        && deployment != "PERSISTENT_2"
    {
        return Err(ApiError::bad_request("EfaEnabled and MetadataConfiguration are supported only on PERSISTENT_2."));
    }
    Ok(())
}

fn valid_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|h| h.len() >= 8 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

/// FSx for Lustre capacity rules (GiB).
pub fn valid_capacity(deployment: &str, storage: &str, throughput: Option<i64>, gib: i64) -> bool {
    if gib <= 0 {
        return false;
    }
    match (deployment, storage) {
        ("PERSISTENT_1", "HDD") => {
            let step = if throughput == Some(12) { 6000 } else { 1800 };
            gib % step == 0
        }
        ("SCRATCH_1", _) => gib == 1200 || gib == 2400 || gib % 3600 == 0,
        _ => gib == 1200 || gib % 2400 == 0,
    }
}

/// The parameters that decide whether a token reuse is compatible.
fn fingerprint(req: &Value) -> Value {
    let mut v = req.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("ClientRequestToken");
    }
    v
}

fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n).map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)])).collect()
}

fn random_mount_name() -> String {
    let mut rng = rand::rng();
    (0..8).map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])).collect()
}

impl Inner {
    fn create(&mut self, req: Value) -> Result<Value, ApiError> {
        validate_create(&req)?;
        let now = Instant::now();
        let token = req.get("ClientRequestToken").and_then(Value::as_str).map(str::to_string);
        if let Some(token) = &token {
            if token.is_empty()
                || token.len() > 63
                || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            {
                return Err(ApiError::bad_request("ClientRequestToken must be 1-63 characters of [A-Za-z0-9_.-]."));
            }
            if let Some(t) = self.tokens.get(token)
                && now.duration_since(t.at) < Duration::from_millis(self.config.token_window_ms)
            {
                if t.fingerprint != fingerprint(&req) {
                    return Err(ApiError::code(
                        "IncompatibleParameterError",
                        "The ClientRequestToken was already used with different parameters.",
                    ));
                }
                let fs = self.file_systems.get(&t.fs_id).expect("token refers to a recorded file system");
                // Within the window the token answers with its file system as it is now,
                // even if it has failed or been deleted.
                let lc = lifecycle(fs, &self.config, now).unwrap_or("DELETING");
                return Ok(json!({"FileSystem": describe(fs, lc, &self.config, now)}));
            }
        }
        let id = format!("fs-{:08x}{}", self.next_id, random_hex(9));
        self.next_id += 1;
        let tags = req
            .get("Tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t.get("Key")?.as_str()?.to_string(), t.get("Value")?.as_str()?.to_string())))
            .collect();
        let fail = if self.fail_next_creates.is_empty() { None } else { Some(self.fail_next_creates.remove(0)) };
        let fs = Fs {
            id: id.clone(),
            request: req.clone(),
            clock: Clock::start(
                now,
                Duration::from_millis(
                    self.config.create_delay_ms
                        + if self.config.create_jitter_ms > 0 {
                            rand::rng().random_range(0..self.config.create_jitter_ms)
                        } else {
                            0
                        },
                ),
                fail,
            ),
            tags,
            mount_name: random_mount_name(),
            updates: Vec::new(),
        };
        let out = describe(&fs, lifecycle(&fs, &self.config, now).unwrap_or("CREATING"), &self.config, now);
        self.file_systems.insert(id.clone(), fs);
        if let Some(token) = token {
            self.tokens.insert(token, Token { fs_id: id, fingerprint: fingerprint(&req), at: now });
        }
        Ok(json!({"FileSystem": out}))
    }

    fn describe(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        if let Some(ids) = req.get("FileSystemIds").and_then(Value::as_array) {
            if ids.len() > 50 {
                return Err(ApiError::bad_request("At most 50 FileSystemIds may be given."));
            }
            self.max_describe_ids = self.max_describe_ids.max(ids.len());
            for id in ids {
                *self.described.entry(id.as_str().unwrap_or("").to_string()).or_default() += 1;
            }
            let mut out = Vec::new();
            for id in ids {
                let id = id.as_str().unwrap_or("");
                let fs = self.file_systems.get(id).ok_or_else(|| ApiError::not_found(id))?;
                let lc = lifecycle(fs, &self.config, now).ok_or_else(|| ApiError::not_found(id))?;
                out.push(describe(fs, lc, &self.config, now));
            }
            return Ok(json!({"FileSystems": out}));
        }
        let live: Vec<Value> = self
            .file_systems
            .values()
            .filter_map(|fs| lifecycle(fs, &self.config, now).map(|lc| describe(fs, lc, &self.config, now)))
            .collect();
        paged("FileSystems", live, &req, self.config.page_size)
    }

    fn delete(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        let id = req.get("FileSystemId").and_then(Value::as_str).unwrap_or("").to_string();
        let config = self.config.clone();
        let fs = self.file_systems.get(&id).ok_or_else(|| ApiError::not_found(&id))?;
        let lc = lifecycle(fs, &config, now).ok_or_else(|| ApiError::not_found(&id))?;
        let skip = req.pointer("/LustreConfiguration/SkipFinalBackup").and_then(Value::as_bool).unwrap_or(true);
        let mut final_backup = None;
        if !skip && lc != "DELETING" {
            // FSx takes the final backup as it deletes: only of file systems it can back up.
            let lustre = lustre_in_effect(fs, &config, now);
            let deployment = lustre.get("DeploymentType").and_then(Value::as_str).unwrap_or("SCRATCH_1");
            if deployment.starts_with("SCRATCH") || lustre.get("ImportPath").is_some() {
                return Err(ApiError::bad_request(format!(
                    "A final backup cannot be taken of this {deployment} file system; set SkipFinalBackup to true."
                )));
            }
            let copy = lustre.get("CopyTagsToBackups").and_then(Value::as_bool) == Some(true);
            let tags = match req.pointer("/LustreConfiguration/FinalBackupTags") {
                Some(t) => t.clone(),
                None if copy => json!(fs.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()),
                None => json!([]),
            };
            let mut request = fs.request.clone();
            request["LustreConfiguration"] = lustre;
            request["StorageCapacity"] = json!(capacity(fs, &config, now));
            let backup_id = format!("backup-{:08x}{}", self.next_id, random_hex(9));
            self.next_id += 1;
            final_backup = Some(Bk {
                id: backup_id,
                fs_id: id.clone(),
                file_system: describe(fs, lc, &config, now),
                source_request: request,
                tags,
                clock: Clock::start(now, Duration::from_millis(config.backup_delay_ms), None),
            });
        }
        let fs = self.file_systems.get_mut(&id).expect("checked above");
        if lc != "DELETING" {
            fs.clock.deleted = Some(now);
        }
        if let Some(b) = final_backup {
            self.backups.insert(b.id.clone(), b);
        }
        for a in self.associations.values_mut().filter(|a| a.fs_id == id && a.clock.deleted.is_none()) {
            a.clock.deleted = Some(now);
        }
        Ok(json!({"FileSystemId": id, "Lifecycle": "DELETING"}))
    }

    fn update(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        let id = req.get("FileSystemId").and_then(Value::as_str).unwrap_or("").to_string();
        let config = self.config.clone();
        let fail = self.fail_next_updates.first().cloned();
        let fs = self.file_systems.get_mut(&id).ok_or_else(|| ApiError::not_found(&id))?;
        let lc = lifecycle(fs, &config, now).ok_or_else(|| ApiError::not_found(&id))?;
        let Some(new) = req.get("StorageCapacity").and_then(Value::as_i64) else {
            let changes = req.get("LustreConfiguration").cloned().unwrap_or_else(|| json!({}));
            let version = req.get("FileSystemTypeVersion").and_then(Value::as_str).map(str::to_string);
            return self.update_lustre(&id, changes, version, fail);
        };
        if fs.request.get("StorageType").and_then(Value::as_str) == Some("INTELLIGENT_TIERING") {
            return Err(ApiError::bad_request(
                "StorageCapacity cannot be updated on an INTELLIGENT_TIERING file system.",
            ));
        }
        if fs.updates.iter().any(|u| matches!(update_status(u, &config, now), "PENDING" | "IN_PROGRESS")) {
            return Err(ApiError::bad_request(
                "Unable to perform the storage capacity update. There is an update already in progress.",
            ));
        }
        if lc != "AVAILABLE" {
            return Err(ApiError::bad_request(format!("The file system is {lc}; it must be AVAILABLE to be updated.")));
        }
        let lustre = fs.request.get("LustreConfiguration").cloned().unwrap_or_else(|| json!({}));
        let deployment = lustre.get("DeploymentType").and_then(Value::as_str).unwrap_or("SCRATCH_1").to_string();
        if deployment == "SCRATCH_1" {
            return Err(ApiError::bad_request(
                "Storage capacity increases are not supported for SCRATCH_1 file systems.",
            ));
        }
        let current = capacity(fs, &config, now);
        let storage = fs.request.get("StorageType").and_then(Value::as_str).unwrap_or("SSD").to_string();
        let throughput = int(&lustre, "PerUnitStorageThroughput");
        if new <= current {
            return Err(ApiError::bad_request(format!(
                "The new storage capacity {new} GiB must be larger than the current {current} GiB."
            )));
        }
        if !valid_capacity(&deployment, &storage, throughput, new) {
            return Err(ApiError::bad_request(format!(
                "Invalid StorageCapacity {new} GiB for {deployment} {storage}."
            )));
        }
        if fail.is_some() {
            self.fail_next_updates.remove(0);
        }
        let fs = self.file_systems.get_mut(&id).expect("checked above");
        fs.updates.push(UpdateRec {
            requested: now,
            request_time: now_unix(),
            target: Some(new),
            lustre: json!({}),
            version: None,
            fail,
        });
        let lc = lifecycle(fs, &config, now).unwrap_or("AVAILABLE");
        Ok(json!({"FileSystem": describe(fs, lc, &config, now)}))
    }

    /// UpdateFileSystem of LustreConfiguration settings, with FSx's refusals. Throughput and
    /// metadata changes run as an administrative action (`update_delay_ms`); the others
    /// (maintenance and backup windows, compression, auto import, root squash) apply at once.
    fn update_lustre(
        &mut self,
        id: &str,
        changes: Value,
        version: Option<String>,
        fail: Option<String>,
    ) -> Result<Value, ApiError> {
        let now = Instant::now();
        let config = self.config.clone();
        let fs = self.file_systems.get_mut(id).ok_or_else(|| ApiError::not_found(id))?;
        let lc = lifecycle(fs, &config, now).ok_or_else(|| ApiError::not_found(id))?;
        let changes = changes.as_object().cloned().unwrap_or_default();
        if changes.is_empty() && version.is_none() {
            return Err(ApiError::bad_request(
                "The request changes nothing: give StorageCapacity or LustreConfiguration values.",
            ));
        }
        if fs.updates.iter().any(|u| matches!(update_status(u, &config, now), "PENDING" | "IN_PROGRESS")) {
            return Err(ApiError::bad_request("Unable to perform the update. There is an update already in progress."));
        }
        if lc != "AVAILABLE" {
            return Err(ApiError::bad_request(format!("The file system is {lc}; it must be AVAILABLE to be updated.")));
        }
        let lustre = lustre_in_effect(fs, &config, now);
        let deployment = lustre.get("DeploymentType").and_then(Value::as_str).unwrap_or("SCRATCH_1").to_string();
        let storage = fs.request.get("StorageType").and_then(Value::as_str).unwrap_or("SSD").to_string();
        let scratch = deployment.starts_with("SCRATCH");
        let mut delayed = serde_json::Map::new();
        let mut immediate = serde_json::Map::new();
        for (key, value) in changes.clone() {
            match key.as_str() {
                "PerUnitStorageThroughput" => {
                    let allowed: &[i64] = match (deployment.as_str(), storage.as_str()) {
                        ("PERSISTENT_1", "SSD") => &[50, 100, 200],
                        ("PERSISTENT_2", _) => &[125, 250, 500, 1000],
                        _ => &[],
                    };
                    let t = value.as_i64().unwrap_or(0);
                    if allowed.is_empty() {
                        return Err(ApiError::bad_request(format!(
                            "Throughput changes are not supported for {deployment} {storage} file systems."
                        )));
                    }
                    if !allowed.contains(&t) {
                        return Err(ApiError::code(
                            "InvalidPerUnitStorageThroughput",
                            format!("PerUnitStorageThroughput must be one of {allowed:?} for {deployment}."),
                        ));
                    }
                    delayed.insert(key, value);
                }
                "MetadataConfiguration" => {
                    if deployment != "PERSISTENT_2" {
                        return Err(ApiError::bad_request("MetadataConfiguration is supported only on PERSISTENT_2."));
                    }
                    let have =
                        lustre.get("MetadataConfiguration").cloned().unwrap_or_else(|| json!({"Mode": "AUTOMATIC"}));
                    let mode = value.get("Mode").or(have.get("Mode")).and_then(Value::as_str).unwrap_or("AUTOMATIC");
                    let iops = value.get("Iops").and_then(Value::as_i64);
                    if mode == "USER_PROVISIONED" && iops.is_none() && have.get("Iops").is_none() {
                        return Err(ApiError::bad_request("Iops is required with Mode USER_PROVISIONED."));
                    }
                    if let (Some(new), Some(old)) = (iops, have.get("Iops").and_then(Value::as_i64))
                        && new < old
                    {
                        return Err(ApiError::bad_request("Metadata IOPS can only be increased."));
                    }
                    let mut merged = have.clone();
                    merged["Mode"] = json!(mode);
                    if let Some(i) = iops {
                        merged["Iops"] = json!(i);
                    }
                    delayed.insert(key, merged);
                }
                "ThroughputCapacity" => {
                    if storage != "INTELLIGENT_TIERING" {
                        return Err(ApiError::bad_request(
                            "ThroughputCapacity is supported only with INTELLIGENT_TIERING.",
                        ));
                    }
                    let t = value.as_i64().unwrap_or(0);
                    if !(4000..=2_000_000).contains(&t) || t % 4000 != 0 {
                        return Err(ApiError::bad_request(format!("Invalid ThroughputCapacity {t}.")));
                    }
                    if t < int(&lustre, "ThroughputCapacity").unwrap_or(0) {
                        return Err(ApiError::bad_request("ThroughputCapacity can only be increased."));
                    }
                    delayed.insert(key, value);
                }
                "DataReadCacheConfiguration" => {
                    if storage != "INTELLIGENT_TIERING" {
                        return Err(ApiError::bad_request(
                            "DataReadCacheConfiguration is supported only with INTELLIGENT_TIERING.",
                        ));
                    }
                    let throughput = changes
                        .get("ThroughputCapacity")
                        .and_then(Value::as_i64)
                        .or_else(|| int(&lustre, "ThroughputCapacity"))
                        .unwrap_or(0);
                    validate_read_cache(&value, throughput)?;
                    delayed.insert(key, value);
                }
                "LogConfiguration" => {
                    validate_log(&value)?;
                    immediate.insert(key, value);
                }
                "RootSquashConfiguration" => {
                    validate_no_squash(&value)?;
                    // Either half alone leaves the other as it was.
                    let mut merged = lustre.get("RootSquashConfiguration").cloned().unwrap_or_else(|| json!({}));
                    for (k, v) in value.as_object().into_iter().flatten() {
                        merged[k.as_str()] = v.clone();
                    }
                    immediate.insert(key, merged);
                }
                "AutomaticBackupRetentionDays" | "DailyAutomaticBackupStartTime" if scratch => {
                    return Err(ApiError::bad_request("Automatic backups are not supported on scratch file systems."));
                }
                "AutoImportPolicy" if lustre.get("ImportPath").is_none() => {
                    return Err(ApiError::bad_request(
                        "AutoImportPolicy can be updated only on file systems linked to S3 with ImportPath.",
                    ));
                }
                "WeeklyMaintenanceStartTime"
                | "DailyAutomaticBackupStartTime"
                | "AutomaticBackupRetentionDays"
                | "AutoImportPolicy"
                | "DataCompressionType" => {
                    immediate.insert(key, value);
                }
                other => return Err(ApiError::bad_request(format!("{other} cannot be updated."))),
            }
        }
        if let Some(v) = &version {
            // An upgrade to 2.12 or 2.15, newer than what runs; 2.15 for PERSISTENT_2 with
            // a metadata configuration.
            let have = version_in_effect(fs, &config, now);
            let have = have.as_str().unwrap_or("2.10");
            let number =
                |v: &str| v.split_once('.').and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
            if !matches!(v.as_str(), "2.12" | "2.15") {
                return Err(ApiError::bad_request(format!(
                    "FileSystemTypeVersion {v} is not a version FSx upgrades to (2.12, 2.15)."
                )));
            }
            if number(v) <= number(have) {
                return Err(ApiError::bad_request(format!(
                    "FileSystemTypeVersion {v} must be newer than the current {have}."
                )));
            }
            if v == "2.12" && deployment == "PERSISTENT_2" && lustre.get("MetadataConfiguration").is_some() {
                return Err(ApiError::bad_request(
                    "Lustre 2.12 is not supported for PERSISTENT_2 with a metadata configuration.",
                ));
            }
        }
        let lustre_req = fs.request.as_object_mut().and_then(|r| {
            r.entry("LustreConfiguration").or_insert_with(|| json!({}));
            r.get_mut("LustreConfiguration")
        });
        if let Some(l) = lustre_req {
            for (k, v) in immediate {
                l[k.as_str()] = v;
            }
        }
        if !delayed.is_empty() || version.is_some() {
            if fail.is_some() {
                self.fail_next_updates.remove(0);
            }
            let fs = self.file_systems.get_mut(id).expect("checked above");
            fs.updates.push(UpdateRec {
                requested: now,
                request_time: now_unix(),
                target: None,
                lustre: Value::Object(delayed),
                version,
                fail,
            });
        }
        let fs = self.file_systems.get(id).expect("checked above");
        let lc = lifecycle(fs, &config, now).unwrap_or("AVAILABLE");
        Ok(json!({"FileSystem": describe(fs, lc, &config, now)}))
    }

    fn describe_backup(&self, b: &Bk, now: Instant) -> Option<Value> {
        let lc = b.clock.lifecycle(&self.config, now)?;
        let lc = if lc == "DELETING" { "DELETED" } else { lc };
        let mut out = json!({
            "BackupId": b.id,
            "Lifecycle": lc,
            "Type": "USER_INITIATED",
            "ProgressPercent": if lc == "CREATING" { 50 } else { 100 },
            "CreationTime": b.clock.creation_time,
            "ResourceARN": format!("arn:aws:fsx:{REGION}:{ACCOUNT}:backup/{}", b.id),
            "Tags": b.tags,
            "FileSystem": b.file_system,
            "OwnerId": ACCOUNT,
            "ResourceType": "FILE_SYSTEM",
        });
        if lc == "FAILED" {
            out["FailureDetails"] = json!({"Message": b.clock.fail.clone().unwrap_or_default()});
        }
        Some(out)
    }

    fn create_backup(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        let config = self.config.clone();
        let fs_id = req.get("FileSystemId").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(token) = req.get("ClientRequestToken").and_then(Value::as_str)
            && let Some((for_fs, id)) = self.backup_tokens.get(token).cloned()
        {
            if for_fs != fs_id {
                return Err(ApiError::code(
                    "IncompatibleParameterError",
                    "The ClientRequestToken was already used with different parameters.",
                ));
            }
            let b = &self.backups[&id];
            return Ok(
                json!({"Backup": self.describe_backup(b, now).unwrap_or_else(|| json!({"BackupId": id, "Lifecycle": "DELETED"}))}),
            );
        }
        let fs = self.file_systems.get(&fs_id).ok_or_else(|| ApiError::not_found(&fs_id))?;
        let lc = lifecycle(fs, &config, now).ok_or_else(|| ApiError::not_found(&fs_id))?;
        if lc != "AVAILABLE" && lc != "UPDATING" {
            return Err(ApiError::bad_request(format!(
                "The file system is {lc}; backups need an AVAILABLE file system."
            )));
        }
        let lustre = lustre_in_effect(fs, &config, now);
        let deployment = lustre.get("DeploymentType").and_then(Value::as_str).unwrap_or("SCRATCH_1");
        if deployment.starts_with("SCRATCH") {
            return Err(ApiError::bad_request(format!("Backups are not supported on {deployment} file systems.")));
        }
        if lustre.get("ImportPath").is_some() {
            return Err(ApiError::bad_request(
                "Backups are not supported on file systems linked to a data repository.",
            ));
        }
        let busy =
            self.backups.values().any(|b| b.fs_id == fs_id && b.clock.lifecycle(&config, now) == Some("CREATING"));
        if busy {
            return Err(ApiError::code("BackupInProgress", format!("A backup of {fs_id} is already in progress.")));
        }
        let id = format!("backup-{:08x}{}", self.next_id, random_hex(9));
        self.next_id += 1;
        let fail = if self.fail_next_backups.is_empty() { None } else { Some(self.fail_next_backups.remove(0)) };
        let mut request = fs.request.clone();
        request["LustreConfiguration"] = lustre;
        request["StorageCapacity"] = json!(capacity(fs, &config, now));
        let b = Bk {
            id: id.clone(),
            fs_id,
            file_system: describe(fs, lc, &config, now),
            source_request: request,
            tags: req.get("Tags").cloned().unwrap_or_else(|| json!([])),
            clock: Clock::start(now, Duration::from_millis(config.backup_delay_ms), fail),
        };
        let out = self.describe_backup(&b, now);
        self.backups.insert(id.clone(), b.clone());
        if let Some(token) = req.get("ClientRequestToken").and_then(Value::as_str) {
            self.backup_tokens.insert(token.to_string(), (b.fs_id, id));
        }
        Ok(json!({"Backup": out}))
    }

    fn describe_backups(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        if let Some(ids) = req.get("BackupIds").and_then(Value::as_array) {
            if ids.len() > 50 {
                return Err(ApiError::bad_request("At most 50 BackupIds may be given."));
            }
            let mut out = Vec::new();
            for id in ids {
                let id = id.as_str().unwrap_or("");
                let missing = || ApiError::code("BackupNotFound", format!("Backup '{id}' does not exist."));
                let b = self.backups.get(id).ok_or_else(missing)?;
                let d = self.describe_backup(b, now).filter(|d| d["Lifecycle"] != "DELETED").ok_or_else(missing)?;
                out.push(d);
            }
            return Ok(json!({"Backups": out}));
        }
        let mut fs_filter: Option<Vec<String>> = None;
        for f in req.get("Filters").and_then(Value::as_array).into_iter().flatten() {
            let values: Vec<String> = f
                .get("Values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            match f.get("Name").and_then(Value::as_str) {
                Some("file-system-id") => fs_filter = Some(values),
                // Every backup here is a user-initiated Lustre one.
                Some("backup-type") if values.iter().any(|v| v == "USER_INITIATED") => {}
                Some("file-system-type") if values.iter().any(|v| v == "LUSTRE") => {}
                Some("backup-type" | "file-system-type") => return Ok(json!({"Backups": []})),
                other => return Err(ApiError::bad_request(format!("Unsupported filter {other:?}."))),
            }
        }
        let live: Vec<Value> = self
            .backups
            .values()
            .filter(|b| fs_filter.as_ref().is_none_or(|ids| ids.contains(&b.fs_id)))
            .filter_map(|b| self.describe_backup(b, now))
            .filter(|d| d["Lifecycle"] != "DELETED")
            .collect();
        paged("Backups", live, &req, self.config.page_size)
    }

    fn delete_backup(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        let config = self.config.clone();
        let id = req.get("BackupId").and_then(Value::as_str).unwrap_or("").to_string();
        let missing = || ApiError::code("BackupNotFound", format!("Backup '{id}' does not exist."));
        let b = self.backups.get_mut(&id).ok_or_else(missing)?;
        match b.clock.lifecycle(&config, now) {
            None | Some("DELETING") => return Err(missing()),
            Some("CREATING") => {
                return Err(ApiError::code("BackupInProgress", format!("Backup '{id}' is still being created.")));
            }
            Some(_) => b.clock.deleted = Some(now),
        }
        Ok(json!({"BackupId": id, "Lifecycle": "DELETED"}))
    }

    fn create_from_backup(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        let config = self.config.clone();
        let id = req.get("BackupId").and_then(Value::as_str).unwrap_or("").to_string();
        let missing = || ApiError::code("BackupNotFound", format!("Backup '{id}' does not exist."));
        let b = self.backups.get(&id).ok_or_else(missing)?;
        match b.clock.lifecycle(&config, now) {
            Some("AVAILABLE") => {}
            None | Some("DELETING") => return Err(missing()),
            Some(other) => return Err(ApiError::bad_request(format!("Backup '{id}' is {other}, not AVAILABLE."))),
        }
        if req.get("StorageCapacity").is_some() {
            return Err(ApiError::bad_request(
                "StorageCapacity cannot be set when restoring a Lustre backup: the file system has the backup's size.",
            ));
        }
        let mut request = b.source_request.clone();
        let source_lustre = request["LustreConfiguration"].clone();
        let given = req.get("LustreConfiguration").cloned().unwrap_or_else(|| json!({}));
        for key in ["DeploymentType", "PerUnitStorageThroughput", "DriveCacheType"] {
            if let Some(v) = given.get(key)
                && source_lustre.get(key) != Some(v)
            {
                return Err(ApiError::bad_request(format!(
                    "{key} {v} differs from the backup's {}; a restore keeps it.",
                    source_lustre.get(key).cloned().unwrap_or(Value::Null)
                )));
            }
        }
        for (k, v) in given.as_object().into_iter().flatten() {
            request["LustreConfiguration"][k.as_str()] = v.clone();
        }
        for key in ["SubnetIds", "SecurityGroupIds", "Tags", "KmsKeyId", "FileSystemTypeVersion", "ClientRequestToken"]
        {
            match req.get(key) {
                Some(v) => request[key] = v.clone(),
                None => {
                    if let Some(o) = request.as_object_mut() {
                        o.remove(key);
                    }
                }
            }
        }
        request["RestoredFrom"] = json!(id);
        self.create(request)
    }

    fn create_association(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        let config = self.config.clone();
        if let Some(token) = req.get("ClientRequestToken").and_then(Value::as_str)
            && let Some(a) = self.association_tokens.get(token).and_then(|id| self.associations.get(id))
        {
            let lc = dra_lifecycle(a, &config, now).unwrap_or("DELETING");
            return Ok(json!({"Association": describe_association(a, lc)}));
        }
        let fs_id = req.get("FileSystemId").and_then(Value::as_str).unwrap_or("").to_string();
        let fs = self.file_systems.get(&fs_id).ok_or_else(|| ApiError::not_found(&fs_id))?;
        let lc = lifecycle(fs, &config, now).ok_or_else(|| ApiError::not_found(&fs_id))?;
        if lc != "AVAILABLE" && lc != "UPDATING" {
            return Err(ApiError::bad_request(format!(
                "The file system is {lc}; associations need an AVAILABLE file system."
            )));
        }
        let deployment =
            fs.request.pointer("/LustreConfiguration/DeploymentType").and_then(Value::as_str).unwrap_or("SCRATCH_1");
        let version = version_in_effect(fs, &config, now);
        // FSx: every Lustre 2.12 and 2.15 file system but SCRATCH_1 takes associations.
        if deployment == "SCRATCH_1"
            || version.as_str() == Some("2.10")
            || fs.request.pointer("/LustreConfiguration/ImportPath").is_some()
        {
            return Err(ApiError::code(
                "UnsupportedOperation",
                format!(
                    "Data repository associations are not supported on {deployment} file systems running Lustre {version} or linked with ImportPath."
                ),
            ));
        }
        let Some(path) = req.get("FileSystemPath").and_then(Value::as_str) else {
            return Err(ApiError::bad_request("FileSystemPath is required."));
        };
        if !path.starts_with('/') {
            return Err(ApiError::bad_request("FileSystemPath must start with /."));
        }
        let live: Vec<&Dra> = self
            .associations
            .values()
            .filter(|a| a.fs_id == fs_id && dra_lifecycle(a, &config, now).is_some_and(|l| l != "DELETING"))
            .collect();
        if live.len() >= 8 {
            return Err(ApiError::code(
                "ServiceLimitExceeded",
                format!("File system {fs_id} already has 8 data repository associations."),
            ));
        }
        let norm = |p: &str| p.trim_end_matches('/').to_string();
        let nested = |a: &str, b: &str| {
            let (a, b) = (norm(a), norm(b));
            b.is_empty() || a == b || a.starts_with(&format!("{b}/"))
        };
        for a in &live {
            let other = a.request.get("FileSystemPath").and_then(Value::as_str).unwrap_or("/");
            let repo = a.request.get("DataRepositoryPath").and_then(Value::as_str).unwrap_or("");
            if other != path && (nested(path, other) || nested(other, path)) {
                return Err(ApiError::bad_request(format!(
                    "FileSystemPath {path} overlaps the association at {other}."
                )));
            }
            if other != path && norm(repo) == norm(req.get("DataRepositoryPath").and_then(Value::as_str).unwrap_or(""))
            {
                return Err(ApiError::bad_request(format!("DataRepositoryPath {repo} is already linked to {fs_id}.")));
            }
        }
        let repo = req.get("DataRepositoryPath").and_then(Value::as_str).unwrap_or("");
        if !repo.starts_with("s3://") || repo.len() <= 5 {
            return Err(ApiError::code(
                "InvalidDataRepositoryType",
                format!("DataRepositoryPath must be an S3 URL, got '{repo}'."),
            ));
        }
        let taken = self.associations.values().any(|a| {
            a.fs_id == fs_id
                && a.request.get("FileSystemPath").and_then(Value::as_str).unwrap_or("/") == path
                && dra_lifecycle(a, &config, now).is_some_and(|l| l != "DELETING")
        });
        if taken {
            return Err(ApiError::bad_request(format!("File system {fs_id} already has an association at {path}.")));
        }
        let id = format!("dra-{:08x}{}", self.next_id, random_hex(9));
        self.next_id += 1;
        let fail =
            if self.fail_next_associations.is_empty() { None } else { Some(self.fail_next_associations.remove(0)) };
        let a = Dra {
            id: id.clone(),
            fs_id,
            request: req.clone(),
            clock: Clock::start(now, Duration::from_millis(config.association_delay_ms), fail),
        };
        let out = describe_association(&a, dra_lifecycle(&a, &config, now).unwrap_or("CREATING"));
        self.associations.insert(id.clone(), a);
        if let Some(token) = req.get("ClientRequestToken").and_then(Value::as_str) {
            self.association_tokens.insert(token.to_string(), id);
        }
        Ok(json!({"Association": out}))
    }

    fn describe_associations(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        let config = self.config.clone();
        if let Some(ids) = req.get("AssociationIds").and_then(Value::as_array) {
            if ids.len() > 50 {
                return Err(ApiError::bad_request("At most 50 AssociationIds may be given."));
            }
            let mut out = Vec::new();
            for id in ids {
                let id = id.as_str().unwrap_or("");
                let missing = || {
                    ApiError::code("DataRepositoryAssociationNotFound", format!("Association '{id}' does not exist."))
                };
                let a = self.associations.get(id).ok_or_else(missing)?;
                let lc = dra_lifecycle(a, &config, now).ok_or_else(missing)?;
                out.push(describe_association(a, lc));
            }
            return Ok(json!({"Associations": out}));
        }
        let mut fs_filter: Option<Vec<String>> = None;
        for f in req.get("Filters").and_then(Value::as_array).into_iter().flatten() {
            match f.get("Name").and_then(Value::as_str) {
                Some("file-system-id") => {
                    fs_filter = Some(
                        f.get("Values")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    )
                }
                Some("data-repository-type") => {}
                other => return Err(ApiError::bad_request(format!("Unsupported filter {other:?}."))),
            }
        }
        let live: Vec<Value> = self
            .associations
            .values()
            .filter(|a| fs_filter.as_ref().is_none_or(|ids| ids.contains(&a.fs_id)))
            .filter_map(|a| dra_lifecycle(a, &config, now).map(|lc| describe_association(a, lc)))
            .collect();
        paged("Associations", live, &req, config.page_size)
    }

    fn delete_association(&mut self, req: Value) -> Result<Value, ApiError> {
        let now = Instant::now();
        let config = self.config.clone();
        let id = req.get("AssociationId").and_then(Value::as_str).unwrap_or("").to_string();
        if req.get("DeleteDataInFileSystem").and_then(Value::as_bool).is_none() {
            return Err(ApiError::bad_request("DeleteDataInFileSystem is required."));
        }
        let missing =
            || ApiError::code("DataRepositoryAssociationNotFound", format!("Association '{id}' does not exist."));
        let a = self.associations.get_mut(&id).ok_or_else(missing)?;
        match dra_lifecycle(a, &config, now) {
            None => return Err(missing()),
            Some("DELETING") => {}
            Some(_) => a.clock.deleted = Some(now),
        }
        Ok(
            json!({"AssociationId": id, "Lifecycle": "DELETING", "DeleteDataInFileSystem": req["DeleteDataInFileSystem"]}),
        )
    }

    fn resource(&mut self, req: &Value) -> Result<&mut Fs, ApiError> {
        let arn = req.get("ResourceARN").and_then(Value::as_str).unwrap_or("");
        let id = arn.rsplit('/').next().unwrap_or("").to_string();
        let config = self.config.clone();
        match self.file_systems.get_mut(&id) {
            Some(fs) if lifecycle(fs, &config, Instant::now()).is_some() => Ok(fs),
            _ => Err(ApiError::code("ResourceNotFound", format!("Resource '{arn}' does not exist."))),
        }
    }

    fn tag(&mut self, req: Value) -> Result<Value, ApiError> {
        let tags: Vec<(String, String)> = req
            .get("Tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t.get("Key")?.as_str()?.to_string(), t.get("Value")?.as_str()?.to_string())))
            .collect();
        let fs = self.resource(&req)?;
        for (k, v) in tags {
            match fs.tags.iter_mut().find(|(key, _)| *key == k) {
                Some(existing) => existing.1 = v,
                None => fs.tags.push((k, v)),
            }
        }
        Ok(json!({}))
    }

    fn list_tags(&mut self, req: Value) -> Result<Value, ApiError> {
        let fs = self.resource(&req)?;
        Ok(json!({"Tags": fs.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()}))
    }
}

/// Answers one API call and counts its outcome as the driver's metrics name them
/// (`success`, `throttled`, `client_error`, `server_error`), per operation.
async fn api(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .map(str::to_string)
        .or_else(|| ec2_action(&body))
        .unwrap_or_default();
    let response = answer(State(emu.clone()), headers, body).await;
    let code = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).unwrap_or("");
    let outcome = match response.status().as_u16() {
        200..=299 => "success",
        _ if code == "ThrottlingException" || code == "RequestLimitExceeded" => "throttled",
        500.. => "server_error",
        _ => "client_error",
    };
    *emu.lock().outcomes.entry(operation).or_default().entry(outcome.to_string()).or_default() += 1;
    response
}

async fn answer(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    if !headers.contains_key("x-amz-target") && body.starts_with(b"Action=") {
        return ec2(&emu, &headers, &body);
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(operation) = target.strip_prefix(TARGET_PREFIX).map(str::to_string) else {
        return ApiError::code("UnknownOperationException", format!("Unknown target '{target}'.")).into_response();
    };
    let (latency, throttle, error, denied, unsupported) = {
        let mut inner = emu.lock();
        *inner.calls.entry(operation.clone()).or_default() += 1;
        let denied = inner.config.deny_operations.contains(&operation);
        let unsupported = inner.config.unsupported_operations.contains(&operation);
        (inner.config.latency_ms, inner.config.throttle_rate, inner.config.error_rate, denied, unsupported)
    };
    if unsupported {
        let message = format!("{operation} is not supported by this endpoint");
        return ApiError { status: StatusCode::BAD_REQUEST, code: "UnknownOperationException", message }
            .into_response();
    }
    if denied {
        let message = format!(
            "User: arn:aws:sts::{ACCOUNT}:assumed-role/fsx-csi-driver/i-0123 is not authorized to perform: fsx:{operation}"
        );
        return ApiError { status: StatusCode::BAD_REQUEST, code: "AccessDeniedException", message }.into_response();
    }
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let roll: f64 = rand::rng().random();
    if roll < throttle {
        return ApiError::code("ThrottlingException", "Rate exceeded").into_response();
    }
    if roll < throttle + error {
        return ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalServerError",
            message: "Injected failure".into(),
        }
        .into_response();
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return ApiError::code("SerializationException", format!("Malformed JSON body: {e}")).into_response(),
    };
    let result = {
        let mut inner = emu.lock();
        match operation.as_str() {
            "CreateFileSystem" => inner.create(req),
            "DescribeFileSystems" => inner.describe(req),
            "DeleteFileSystem" => inner.delete(req),
            "TagResource" => inner.tag(req),
            "ListTagsForResource" => inner.list_tags(req),
            "UpdateFileSystem" => inner.update(req),
            "CreateDataRepositoryAssociation" => inner.create_association(req),
            "DescribeDataRepositoryAssociations" => inner.describe_associations(req),
            "DeleteDataRepositoryAssociation" => inner.delete_association(req),
            "CreateBackup" => inner.create_backup(req),
            "DescribeBackups" => inner.describe_backups(req),
            "DeleteBackup" => inner.delete_backup(req),
            "CreateFileSystemFromBackup" => inner.create_from_backup(req),
            other => Err(ApiError::code("UnknownOperationException", format!("Operation '{other}' is not emulated."))),
        }
    };
    match result {
        Ok(v) => (StatusCode::OK, [("content-type", JSON_CONTENT_TYPE)], v.to_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn stats(State(emu): State<Emulator>) -> Response {
    let inner = emu.lock();
    let now = Instant::now();
    let mut lifecycles: BTreeMap<&str, u64> = BTreeMap::new();
    for fs in inner.file_systems.values() {
        if let Some(l) = lifecycle(fs, &inner.config, now) {
            *lifecycles.entry(l).or_default() += 1;
        }
    }
    let body = json!({
        "calls": inner.calls,
        "outcomes": inner.outcomes,
        "file_systems": lifecycles,
        "backups": inner.backups.values().filter_map(|b| inner.describe_backup(b, now)).filter(|d| d["Lifecycle"] != "DELETED").count(),
        "max_describe_ids": inner.max_describe_ids,
        "described": inner.described,
        "config": inner.config,
    });
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn set_config(State(emu): State<Emulator>, body: Bytes) -> Response {
    match serde_json::from_slice::<Config>(&body) {
        Ok(c) => {
            emu.set_config(c);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// Every file system that still exists as `DescribeFileSystems` shows it, plus its tags and
/// associations (with the time each became AVAILABLE, in Unix seconds), for scripts.
async fn file_systems(State(emu): State<Emulator>) -> Response {
    let inner = emu.lock();
    let now = Instant::now();
    let wall = now_unix();
    let list: Vec<Value> = inner
        .file_systems
        .values()
        .filter_map(|fs| {
            let l = lifecycle(fs, &inner.config, now)?;
            let mut v = describe(fs, l, &inner.config, now);
            let associations: Vec<Value> = inner
                .associations
                .values()
                .filter(|a| a.fs_id == fs.id)
                .filter_map(|a| {
                    let al = dra_lifecycle(a, &inner.config, now)?;
                    let mut d = describe_association(a, al);
                    let ready = a.clock.available_at();
                    let at = if ready <= now {
                        wall - (now - ready).as_secs_f64()
                    } else {
                        wall + (ready - now).as_secs_f64()
                    };
                    d["AvailableAtUnix"] = json!(at);
                    Some(d)
                })
                .collect();
            v["Associations"] = json!(associations);
            Some(v)
        })
        .collect();
    (StatusCode::OK, [("content-type", "application/json")], json!({ "FileSystems": list }).to_string()).into_response()
}

#[derive(Deserialize)]
struct FailNext {
    count: usize,
    message: String,
}

async fn fail_next(State(emu): State<Emulator>, body: Bytes) -> Response {
    match serde_json::from_slice::<FailNext>(&body) {
        Ok(f) => {
            emu.fail_next_creates(f.count, &f.message);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// The `Action` of an EC2 Query request.
fn ec2_action(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|kv| kv.strip_prefix("Action=")).map(str::to_string)
}

/// Where a subnet is (see [`Config::subnets`]), `None` if it does not exist.
fn subnet_place(config: &Config, id: &str) -> Option<SubnetPlace> {
    if let Some(p) = config.subnets.get(id) {
        return Some(p.clone());
    }
    let hex = id.strip_prefix("subnet-")?;
    if hex.len() < 8 || hex.len() > 17 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || hex.contains("dead") {
        return None;
    }
    let last = u32::from_str_radix(&hex[hex.len() - 1..], 16).ok()?;
    let zone = ["a", "b", "c"][(last % 3) as usize];
    Some(SubnetPlace { zone: format!("{REGION}{zone}"), vpc: DEFAULT_VPC.to_string() })
}

fn ec2_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{}</Message></Error></Errors><RequestID>emulated</RequestID></Response>",
        xml_escape(message)
    );
    (status, [("content-type", "text/xml;charset=UTF-8"), ("x-amzn-errortype", code)], body).into_response()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// EC2's Query protocol, `DescribeSubnets` only: the calls are counted (as `DescribeSubnets`)
/// and denied, throttled or delayed by the same knobs as FSx's; a signature must be present.
fn ec2(emu: &Emulator, headers: &HeaderMap, body: &[u8]) -> Response {
    let action = ec2_action(body).unwrap_or_default();
    let (denied, throttle, config) = {
        let mut inner = emu.lock();
        *inner.calls.entry(action.clone()).or_default() += 1;
        (inner.config.deny_operations.contains(&action), inner.config.throttle_rate, inner.config.clone())
    };
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 ") && a.contains("/ec2/aws4_request"));
    if !signed {
        return ec2_error(
            StatusCode::UNAUTHORIZED,
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
        );
    }
    if action != "DescribeSubnets" {
        return ec2_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("The action {action} is not valid for this web service."),
        );
    }
    if denied {
        return ec2_error(
            StatusCode::FORBIDDEN,
            "UnauthorizedOperation",
            "You are not authorized to perform this operation. User: arn:aws:iam::123456789012:role/driver is not authorized to perform: ec2:DescribeSubnets",
        );
    }
    if throttle > 0.0 && rand::random::<f64>() < throttle {
        return ec2_error(StatusCode::SERVICE_UNAVAILABLE, "RequestLimitExceeded", "Request limit exceeded.");
    }
    let text = String::from_utf8_lossy(body);
    let ids: Vec<&str> = text
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| k.starts_with("SubnetId."))
        .map(|(_, v)| v)
        .collect();
    let mut items = String::new();
    for id in &ids {
        let Some(place) = subnet_place(&config, id) else {
            return ec2_error(
                StatusCode::BAD_REQUEST,
                "InvalidSubnetID.NotFound",
                &format!("The subnet ID '{id}' does not exist"),
            );
        };
        items.push_str(&format!(
            "<item><subnetId>{}</subnetId><state>available</state><vpcId>{}</vpcId><cidrBlock>10.0.0.0/24</cidrBlock><availabilityZone>{}</availabilityZone><tagSet><item><key>Name</key><value>emulated</value></item></tagSet></item>",
            xml_escape(id),
            xml_escape(&place.vpc),
            xml_escape(&place.zone)
        ));
    }
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeSubnetsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>emulated</requestId><subnetSet>{items}</subnetSet></DescribeSubnetsResponse>"
    );
    (StatusCode::OK, [("content-type", "text/xml;charset=UTF-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_req(deployment: &str, extra: Value) -> Value {
        let mut lustre = json!({"DeploymentType": deployment});
        if deployment.starts_with("PERSISTENT") {
            lustre["PerUnitStorageThroughput"] = json!(125);
        }
        for (k, v) in extra.as_object().unwrap() {
            lustre[k] = v.clone();
        }
        json!({"FileSystemType": "LUSTRE", "StorageCapacity": 1200, "SubnetIds": ["subnet-0123456789abcdef0"], "LustreConfiguration": lustre})
    }

    fn inner() -> Inner {
        Inner {
            config: Config { create_delay_ms: 0, update_delay_ms: 0, ..Config::default() },
            next_id: 1,
            ..Default::default()
        }
    }

    #[test]
    fn persistent_2_refuses_import_path() {
        let mut i = inner();
        let err = i.create(create_req("PERSISTENT_2", json!({"ImportPath": "s3://bucket"}))).unwrap_err();
        assert_eq!(err.code, "BadRequest");
        assert!(err.message.contains("Persistent 2"), "{}", err.message);
        i.create(create_req("SCRATCH_2", json!({"ImportPath": "s3://bucket"}))).unwrap();
    }

    fn id(v: &Value, key: &str, field: &str) -> String {
        v[key][field].as_str().unwrap().to_string()
    }

    #[test]
    fn backups_and_restores_follow_fsx_rules() {
        let mut i = inner();
        i.config.backup_delay_ms = 0;
        let scratch = id(&i.create(create_req("SCRATCH_2", json!({}))).unwrap(), "FileSystem", "FileSystemId");
        let err = i.create_backup(json!({"FileSystemId": scratch})).unwrap_err();
        assert!(err.message.contains("SCRATCH_2"), "{}", err.message);
        let legacy = id(
            &i.create(create_req("PERSISTENT_1", json!({"PerUnitStorageThroughput": 50, "ImportPath": "s3://b"})))
                .unwrap(),
            "FileSystem",
            "FileSystemId",
        );
        assert!(i.create_backup(json!({"FileSystemId": legacy})).is_err(), "a legacy S3 link was backed up");
        let p2 = id(&i.create(create_req("PERSISTENT_2", json!({}))).unwrap(), "FileSystem", "FileSystemId");
        let b = i.create_backup(json!({"FileSystemId": p2, "ClientRequestToken": "t1"})).unwrap();
        let backup = id(&b, "Backup", "BackupId");
        let again = i.create_backup(json!({"FileSystemId": p2, "ClientRequestToken": "t1"})).unwrap();
        assert_eq!(id(&again, "Backup", "BackupId"), backup, "the token answers with the same backup");
        let err = i.create_backup(json!({"FileSystemId": scratch, "ClientRequestToken": "t1"})).unwrap_err();
        assert_eq!(err.code, "IncompatibleParameterError");
        // A restore keeps the backup's type and size, and refuses a size or another type.
        let bad = json!({"BackupId": backup, "SubnetIds": ["subnet-0123456789abcdef0"], "StorageCapacity": 2400});
        assert!(i.create_from_backup(bad).is_err());
        let bad = json!({"BackupId": backup, "SubnetIds": ["subnet-0123456789abcdef0"],
            "LustreConfiguration": {"DeploymentType": "PERSISTENT_1"}});
        assert!(i.create_from_backup(bad).is_err());
        let fs = i.create_from_backup(json!({"BackupId": backup, "SubnetIds": ["subnet-0123456789abcdef0"]})).unwrap();
        assert_eq!(fs["FileSystem"]["StorageCapacity"], 1200);
        assert_eq!(fs["FileSystem"]["LustreConfiguration"]["DeploymentType"], "PERSISTENT_2");
        i.delete_backup(json!({"BackupId": backup})).unwrap();
        assert_eq!(i.delete_backup(json!({"BackupId": backup})).unwrap_err().code, "BackupNotFound");
        assert_eq!(i.describe_backups(json!({"BackupIds": [backup]})).unwrap_err().code, "BackupNotFound");
    }

    #[test]
    fn setting_updates_follow_fsx_rules() {
        let mut i = inner();
        let scratch = id(&i.create(create_req("SCRATCH_2", json!({}))).unwrap(), "FileSystem", "FileSystemId");
        let err = i
            .update(json!({"FileSystemId": scratch, "LustreConfiguration": {"PerUnitStorageThroughput": 250}}))
            .unwrap_err();
        assert!(err.message.contains("SCRATCH_2"), "{}", err.message);
        assert!(
            i.update(json!({"FileSystemId": scratch, "LustreConfiguration": {"AutoImportPolicy": "NEW"}})).is_err(),
            "auto import without an import path"
        );
        let p2 = id(&i.create(create_req("PERSISTENT_2", json!({}))).unwrap(), "FileSystem", "FileSystemId");
        let err = i
            .update(json!({"FileSystemId": p2, "LustreConfiguration": {"PerUnitStorageThroughput": 200}}))
            .unwrap_err();
        assert_eq!(err.code, "InvalidPerUnitStorageThroughput");
        let fs = i
            .update(json!({"FileSystemId": p2, "LustreConfiguration": {"PerUnitStorageThroughput": 250, "DataCompressionType": "LZ4"}}))
            .unwrap();
        // update_delay_ms is 0 here: in effect at once.
        assert_eq!(fs["FileSystem"]["LustreConfiguration"]["PerUnitStorageThroughput"], 250);
        assert_eq!(fs["FileSystem"]["LustreConfiguration"]["DataCompressionType"], "LZ4");
    }

    #[test]
    fn update_refusals() {
        let mut i = inner();
        let s1 = i.create(create_req("SCRATCH_1", json!({}))).unwrap()["FileSystem"]["FileSystemId"]
            .as_str()
            .unwrap()
            .to_string();
        let err = i.update(json!({"FileSystemId": s1, "StorageCapacity": 2400})).unwrap_err();
        assert!(err.message.contains("SCRATCH_1"), "{}", err.message);
        let s2 = i.create(create_req("SCRATCH_2", json!({}))).unwrap()["FileSystem"]["FileSystemId"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(i.update(json!({"FileSystemId": s2, "StorageCapacity": 3600})).is_err(), "off-step size accepted");
        assert!(i.update(json!({"FileSystemId": s2, "StorageCapacity": 1200})).is_err(), "shrink accepted");
        let fs = i.update(json!({"FileSystemId": s2, "StorageCapacity": 2400})).unwrap();
        assert_eq!(fs["FileSystem"]["AdministrativeActions"][0]["TargetFileSystemValues"]["StorageCapacity"], 2400);
    }

    #[test]
    fn capacity_rules() {
        assert!(valid_capacity("SCRATCH_1", "SSD", None, 1200));
        assert!(valid_capacity("SCRATCH_1", "SSD", None, 3600));
        assert!(!valid_capacity("SCRATCH_1", "SSD", None, 4800));
        assert!(valid_capacity("SCRATCH_2", "SSD", None, 4800));
        assert!(!valid_capacity("PERSISTENT_2", "SSD", Some(125), 3600));
        assert!(valid_capacity("PERSISTENT_1", "HDD", Some(12), 6000));
        assert!(!valid_capacity("PERSISTENT_1", "HDD", Some(12), 1800));
        assert!(valid_capacity("PERSISTENT_1", "HDD", Some(40), 1800));
    }
}
