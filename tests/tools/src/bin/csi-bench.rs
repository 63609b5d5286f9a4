//! Benchmarks that print figures (targets are checked by reading them, not by timed tests).
//!
//! - `csi-bench controller`: the real `fsx-csi-driver --mode controller` against an
//!   in-process emulator with realistic (scaled) creation delays; 200 volumes created
//!   concurrently by provisioner-like retry loops. Prints FSx calls per operation and per
//!   volume, the time from AVAILABLE to CreateVolume success (p50/p99) and peak RSS.
//! - `csi-bench cadence`: the controller at its defaults (the adaptive poll, no
//!   `--poll-interval`) against emulators whose creations, growths and backups take 3 and 10
//!   minutes, for 1, 50 and 200 concurrent creations, with provisioner-like callers (5 min call
//!   timeout, backoff from 1 s to 30 s): the time from done to the CSI call's answer, and the
//!   describe calls per volume beside what a fixed 15 s poll makes. Every scenario runs at
//!   once, each with its own emulator and driver, so the whole takes about twice the longest
//!   duration (a first and a second of each, as a fresh and a running controller see them).
//! - `csi-bench node`: time from start to socket ready and idle RSS of the real binary in
//!   node mode; then, through the test harness (real node service, tmpfs for lustre, needs
//!   root), NodePublish latency p50/p99 for an already-staged volume and RSS with 200 targets.

#![allow(clippy::unwrap_used, reason = "a test program: a panic is the test failing")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use fsx_csi_driver::proto::controller_client::ControllerClient;
use fsx_csi_driver::proto::node_client::NodeClient;
use fsx_csi_driver::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use fsx_csi_driver::proto::*;
use fsx_csi_tools::{Killed, percentile, rss_kib, wait_socket};
use fsx_emulator::{Config, Emulator};
use tonic::Code;

#[derive(Parser)]
struct Args {
    /// Directory holding the release binaries (fsx-csi-driver, csi-sanity-harness).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// 200 concurrent volumes through the controller.
    Controller {
        #[arg(long, default_value_t = 200)]
        volumes: usize,
        /// Creation delay (ms): real FSx takes 5-15 min; scaled down, with the same spread.
        #[arg(long, default_value_t = 20_000)]
        create_delay_ms: u64,
        #[arg(long, default_value_t = 20_000)]
        create_jitter_ms: u64,
        /// The driver's --poll-interval, in seconds.
        #[arg(long, default_value_t = 2)]
        poll_interval_s: u64,
        /// Each CreateVolume call's gRPC timeout (the provisioner's --timeout), in seconds.
        #[arg(long, default_value_t = 10)]
        call_timeout_s: u64,
    },
    /// The adaptive poll at the defaults: done -> answered, and describes per volume.
    Cadence {
        /// How long FSx takes (each of creation, growth, backup), in minutes.
        #[arg(long, value_delimiter = ',', default_value = "3,10")]
        minutes: Vec<u64>,
        /// Concurrent creations.
        #[arg(long, value_delimiter = ',', default_value = "1,50,200")]
        volumes: Vec<usize>,
        /// Each call's gRPC timeout (the sidecars' --timeout), in seconds.
        #[arg(long, default_value_t = 300)]
        call_timeout_s: u64,
        /// A random extra time per creation, up to this many seconds (FSx's spread).
        #[arg(long, default_value_t = 0)]
        jitter_s: u64,
    },
    /// Node plugin start-up, memory and publish latency.
    Node {
        #[arg(long, default_value_t = 200)]
        targets: usize,
    },
}

const GIB: i64 = 1 << 30;

fn cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: Mode::MultiNodeMultiWriter as i32 }),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn controller(bin: &Path, volumes: usize, delay: u64, jitter: u64, poll_s: u64, call_timeout_s: u64) {
    let emulator = Emulator::start(
        Config { create_delay_ms: delay, create_jitter_ms: jitter, delete_delay_ms: 1000, ..Config::default() },
        0,
    )
    .await
    .unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (poll, metrics) = (format!("{poll_s}s"), format!("127.0.0.1:{metrics_port}"));
    let driver =
        Driver::start(bin, &emulator, "controller", &["--poll-interval", &poll, "--metrics-address", &metrics]).await;
    let pid = driver.child.0.id();
    let channel = driver.channel.clone();

    println!(
        "controller: {volumes} volumes, creation {:.0}-{:.0} s, --poll-interval {poll_s}s, provisioner --timeout {call_timeout_s}s",
        delay as f64 / 1000.0,
        (delay + jitter) as f64 / 1000.0
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..volumes {
        let mut c = ControllerClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let req = CreateVolumeRequest {
                name: format!("pvc-bench-{i:04}"),
                capacity_range: Some(CapacityRange { required_bytes: 1200 * GIB, limit_bytes: 0 }),
                volume_capabilities: vec![cap()],
                parameters: [("subnetId".to_string(), "subnet-0123456789abcdef0".to_string())].into(),
                ..Default::default()
            };
            loop {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(Duration::from_secs(call_timeout_s));
                match c.create_volume(r).await {
                    Ok(resp) => return (resp.into_inner().volume.unwrap().volume_id, Instant::now()),
                    Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Aborted | Code::Unavailable) => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(s) => panic!("CreateVolume: {s:?}"),
                }
            }
        }));
    }
    let mut lags = Vec::new();
    let mut ids = Vec::new();
    for t in tasks {
        let (id, done) = t.await.unwrap();
        let available = emulator.available_at(&id).unwrap();
        lags.push(done.saturating_duration_since(available));
        ids.push(id);
    }
    let elapsed = started.elapsed();
    lags.sort();
    let calls = emulator.all_calls();
    let (_, hwm_after_create) = rss_kib(pid);

    let mut c = ControllerClient::new(channel.clone());
    for id in &ids {
        c.delete_volume(DeleteVolumeRequest { volume_id: id.clone(), secrets: Default::default() }).await.unwrap();
    }
    let (_, hwm) = rss_kib(pid);
    let calls_all = emulator.all_calls();
    let counted: f64 = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .filter(|l| l.starts_with("fsx_csi_api_requests_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };

    let per = |op: &str| calls.get(op).copied().unwrap_or(0);
    let ticks = (elapsed.as_secs_f64() / poll_s as f64).ceil() as u64 + 1;
    let batches = (volumes as u64).div_ceil(50);
    println!("  all {volumes} bound in {:.1} s", elapsed.as_secs_f64());
    println!("  FSx calls during creation:");
    for (op, n) in &calls {
        println!("    {op:<22} {n:>6}   {:.3} per volume", *n as f64 / volumes as f64);
    }
    println!(
        "  DescribeFileSystems bound: 1 start-up listing + ceil({volumes}/50) = {batches} per tick x {ticks} ticks = {}; measured {}; largest batch {} ids",
        1 + batches * ticks,
        per("DescribeFileSystems"),
        emulator.max_describe_ids()
    );
    println!(
        "  DeleteFileSystem calls for {volumes} deletions: {}",
        calls_all.get("DeleteFileSystem").copied().unwrap_or(0)
    );
    println!(
        "  AVAILABLE -> CreateVolume success: p50 {:.2} s, p99 {:.2} s, max {:.2} s (poll interval {poll_s} s)",
        percentile(&lags, 0.5).as_secs_f64(),
        percentile(&lags, 0.99).as_secs_f64(),
        lags.last().unwrap().as_secs_f64()
    );
    println!("  controller peak RSS with metrics served: {} (after creations {})", mib(hwm), mib(hwm_after_create));
    println!("  metrics: {} FSx requests counted, the emulator answered {}", counted, calls_all.values().sum::<u64>());
    let ok = per("CreateFileSystem") as usize <= volumes
        && per("DescribeFileSystems") <= 1 + batches * ticks
        && hwm < 30 * 1024;
    println!(
        "  targets (<=1 CreateFileSystem/volume, Describe within bound, RSS < 30 MiB): {}",
        if ok { "met" } else { "NOT MET" }
    );
}

/// A driver in controller mode at its defaults (plus `extra` flags) against `emulator`.
struct Driver {
    /// Killed when the scenario ends.
    child: Killed,
    channel: tonic::transport::Channel,
    dir: PathBuf,
}

impl Driver {
    async fn start(bin: &Path, emulator: &Emulator, tag: &str, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("fsx-bench-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("csi.sock");
        let child = Command::new(bin.join("fsx-csi-driver"))
            .args(["--mode", "controller", "--endpoint", &format!("unix://{}", socket.display())])
            .args(extra)
            .env("AWS_ENDPOINT_URL_FSX", emulator.endpoint())
            .env("AWS_ENDPOINT_URL_EC2", emulator.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start fsx-csi-driver");
        let child = Killed(child);
        wait_socket(&socket, Instant::now()).await;
        let channel = fsx_csi_tools::connect(&socket).await.unwrap();
        Self { child, channel, dir }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Calls `f` as a sidecar does: each call bounded by `timeout`, "not yet" answers retried
/// after a backoff from 1 s doubling to 30 s (the sidecars' retry interval flags).
async fn as_a_sidecar<T, F, Fut>(timeout: Duration, mut f: F) -> T
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut backoff = Duration::from_secs(1);
    loop {
        match f(timeout).await {
            Ok(v) => return v,
            Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Aborted | Code::Unavailable) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(s) => panic!("{}: {}", s.code(), s.message()),
        }
    }
}

fn request<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

fn class(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    let mut p: std::collections::HashMap<String, String> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    p.insert("subnetId".into(), "subnet-0123456789abcdef0".into());
    p
}

async fn create_volume(
    channel: &tonic::transport::Channel,
    name: String,
    params: &[(&str, &str)],
    timeout: Duration,
) -> String {
    let c = ControllerClient::new(channel.clone());
    let req = CreateVolumeRequest {
        name,
        capacity_range: Some(CapacityRange { required_bytes: 1200 * GIB, limit_bytes: 0 }),
        volume_capabilities: vec![cap()],
        parameters: class(params),
        ..Default::default()
    };
    as_a_sidecar(timeout, |t| {
        let mut c = c.clone();
        let req = req.clone();
        async move { c.create_volume(request(req, t)).await }
    })
    .await
    .into_inner()
    .volume
    .unwrap()
    .volume_id
}

/// One figure line of the cadence bench.
struct Row {
    what: String,
    lags: Vec<Duration>,
    describes: u64,
    per_volume_fixed: f64,
    volumes: usize,
}

impl Row {
    fn print(&self) {
        let mut lags = self.lags.clone();
        lags.sort();
        let per = self.describes as f64 / self.volumes as f64;
        println!(
            "  {:<44} done -> answered p50 {:>5.2} s  p99 {:>5.2} s  max {:>5.2} s   describes/volume {:>6.2} (15 s poll: {:>6.2})",
            self.what,
            percentile(&lags, 0.5).as_secs_f64(),
            percentile(&lags, 0.99).as_secs_f64(),
            lags.last().copied().unwrap_or_default().as_secs_f64(),
            per,
            self.per_volume_fixed,
        );
    }
}

/// What a fixed 15 s poll costs per volume for `volumes` in flight for `took`.
fn fixed_cost(volumes: usize, took: Duration) -> f64 {
    (volumes.div_ceil(50) as f64 * (took.as_secs_f64() / 15.0).ceil()) / volumes as f64
}

/// The rounds of a resource alone: what a fresh controller sees, then a running one.
const ORDINAL: [&str; 3] = [" (a fresh controller's 1st)", " (its 2nd)", " (its 3rd)"];

/// Creations of `minutes` each: `volumes` at once; with 1, three one after another.
async fn cadence_creations(bin: PathBuf, minutes: u64, volumes: usize, timeout: Duration, jitter_s: u64) -> Vec<Row> {
    let took = Duration::from_secs(minutes * 60);
    let config = Config {
        create_delay_ms: took.as_millis() as u64,
        create_jitter_ms: jitter_s * 1000,
        delete_delay_ms: 1000,
        ..Config::default()
    };
    let emulator = Emulator::start(config, 0).await.unwrap();
    let driver = Driver::start(&bin, &emulator, &format!("create-{minutes}-{volumes}"), &[]).await;
    let rounds = if volumes == 1 { 3 } else { 1 };
    let mut rows = Vec::new();
    for round in 0..rounds {
        let before = emulator.calls("DescribeFileSystems");
        let mut tasks = Vec::new();
        for i in 0..volumes {
            let channel = driver.channel.clone();
            tasks.push(tokio::spawn(async move {
                let id = create_volume(
                    &channel,
                    format!("pvc-cadence-{round}-{i:04}"),
                    &[("deploymentType", "SCRATCH_2")],
                    timeout,
                )
                .await;
                (id, Instant::now())
            }));
        }
        let mut lags = Vec::new();
        for t in tasks {
            let (id, done) = t.await.unwrap();
            lags.push(done.saturating_duration_since(emulator.available_at(&id).unwrap()));
        }
        let which = match (volumes, round) {
            (1, r) => ORDINAL[r],
            _ => " (a fresh controller)",
        };
        rows.push(Row {
            what: format!("creation {minutes} min x {volumes}{which}"),
            lags,
            describes: emulator.calls("DescribeFileSystems") - before,
            per_volume_fixed: fixed_cost(volumes, took),
            volumes,
        });
    }
    drop(driver);
    rows
}

/// Growths of `minutes` each, three one after another.
async fn cadence_growths(bin: PathBuf, minutes: u64, timeout: Duration) -> Vec<Row> {
    let took = Duration::from_secs(minutes * 60);
    let config = Config {
        create_delay_ms: 500,
        update_delay_ms: took.as_millis() as u64,
        optimize_delay_ms: 1000,
        delete_delay_ms: 1000,
        ..Config::default()
    };
    let emulator = Emulator::start(config, 0).await.unwrap();
    let driver = Driver::start(&bin, &emulator, &format!("grow-{minutes}"), &[]).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            create_volume(&driver.channel, format!("pvc-grow-{i}"), &[("deploymentType", "SCRATCH_2")], timeout).await,
        );
    }
    let mut rows = Vec::new();
    for (round, id) in ids.iter().enumerate() {
        let before = emulator.calls("DescribeFileSystems");
        let start = Instant::now();
        let c = ControllerClient::new(driver.channel.clone());
        as_a_sidecar(timeout, |t| {
            let mut c = c.clone();
            let req = ControllerExpandVolumeRequest {
                volume_id: id.clone(),
                capacity_range: Some(CapacityRange { required_bytes: 2400 * GIB, limit_bytes: 0 }),
                ..Default::default()
            };
            async move { c.controller_expand_volume(request(req, t)).await }
        })
        .await;
        rows.push(Row {
            what: format!("growth {minutes} min{}", ORDINAL[round]),
            lags: vec![start.elapsed().saturating_sub(took)],
            describes: emulator.calls("DescribeFileSystems") - before,
            per_volume_fixed: fixed_cost(1, took),
            volumes: 1,
        });
    }
    rows
}

/// Backups of `minutes` each, three one after another; the snapshotter's calls come every 200 ms
/// (they read the index the poller keeps, no FSx call of their own).
async fn cadence_backups(bin: PathBuf, minutes: u64, timeout: Duration) -> Vec<Row> {
    let took = Duration::from_secs(minutes * 60);
    let config = Config {
        create_delay_ms: 500,
        backup_delay_ms: took.as_millis() as u64,
        delete_delay_ms: 1000,
        ..Config::default()
    };
    let emulator = Emulator::start(config, 0).await.unwrap();
    let driver = Driver::start(&bin, &emulator, &format!("backup-{minutes}"), &[]).await;
    let persistent = [("deploymentType", "PERSISTENT_2"), ("perUnitStorageThroughput", "125")];
    let id = create_volume(&driver.channel, "pvc-backup".into(), &persistent, timeout).await;
    let mut rows = Vec::new();
    for (round, which) in ORDINAL.iter().enumerate() {
        let before = emulator.calls("DescribeBackups");
        let start = Instant::now();
        let mut c = ControllerClient::new(driver.channel.clone());
        loop {
            let req = CreateSnapshotRequest {
                source_volume_id: id.clone(),
                name: format!("snapshot-{round}"),
                ..Default::default()
            };
            match c.create_snapshot(request(req, timeout)).await {
                Ok(r) if r.get_ref().snapshot.as_ref().is_some_and(|s| s.ready_to_use) => break,
                Ok(_) => {}
                Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Aborted | Code::Unavailable) => {}
                Err(s) => panic!("CreateSnapshot: {}: {}", s.code(), s.message()),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        rows.push(Row {
            what: format!("backup {minutes} min{which}"),
            lags: vec![start.elapsed().saturating_sub(took)],
            describes: emulator.calls("DescribeBackups") - before,
            per_volume_fixed: fixed_cost(1, took),
            volumes: 1,
        });
    }
    rows
}

async fn cadence(bin: &Path, minutes: &[u64], volumes: &[usize], timeout: Duration, jitter_s: u64) {
    println!(
        "cadence: the controller at its defaults (adaptive poll), callers with a {} s timeout and 1-30 s backoff, creations {}; every scenario at once, each with its own emulator and driver",
        timeout.as_secs(),
        if jitter_s == 0 {
            "exactly as long as said".to_string()
        } else {
            format!("up to {jitter_s} s longer at random")
        }
    );
    let mut tasks = Vec::new();
    for &m in minutes {
        for &n in volumes {
            tasks.push(tokio::spawn(cadence_creations(bin.to_path_buf(), m, n, timeout, jitter_s)));
        }
        tasks.push(tokio::spawn(cadence_growths(bin.to_path_buf(), m, timeout)));
        tasks.push(tokio::spawn(cadence_backups(bin.to_path_buf(), m, timeout)));
    }
    let started = Instant::now();
    for t in tasks {
        for row in t.await.unwrap() {
            row.print();
        }
    }
    println!(
        "  (all in {:.0} s; describes: DescribeFileSystems for creations and growths, DescribeBackups for backups)",
        started.elapsed().as_secs_f64()
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fsx-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn node(bin: &Path, targets: usize) {
    let dir = tempfile_dir();
    let kubelet = dir.join("kubelet");
    std::fs::create_dir_all(&kubelet).unwrap();

    // 1. The shipped binary in node mode: start-up and idle memory.
    let socket = dir.join("node.sock");
    let mut ready = Vec::new();
    let mut idle = 0;
    for _ in 0..5 {
        let _ = std::fs::remove_file(&socket);
        let start = Instant::now();
        let child = Command::new(bin.join("fsx-csi-driver"))
            .args(["--mode", "node", "--node-id", "bench", "--endpoint", &format!("unix://{}", socket.display())])
            .args(["--kubelet-dir", &kubelet.display().to_string()])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let child = Killed(child);
        ready.push(wait_socket(&socket, start).await);
        let mut n = NodeClient::new(fsx_csi_tools::connect(&socket).await.unwrap());
        n.node_get_info(NodeGetInfoRequest {}).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        idle = idle.max(rss_kib(child.0.id()).0);
    }
    ready.sort();
    println!("node (fsx-csi-driver --mode node):");
    println!(
        "  start to socket ready: p50 {:.1} ms, max {:.1} ms (5 starts)",
        percentile(&ready, 0.5).as_secs_f64() * 1e3,
        ready.last().unwrap().as_secs_f64() * 1e3
    );
    println!("  idle RSS: {}", mib(idle));

    // 1b. As the DaemonSet runs it: metrics served (and scraped once), the taint flag on
    // (outside a pod it only says so; the control-plane tier measures it with a live watch).
    let mut idle_deployed = 0;
    for _ in 0..3 {
        let _ = std::fs::remove_file(&socket);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let start = Instant::now();
        let child = Command::new(bin.join("fsx-csi-driver"))
            .args(["--mode", "node", "--node-id", "bench", "--endpoint", &format!("unix://{}", socket.display())])
            .args(["--kubelet-dir", &kubelet.display().to_string(), "--remove-not-ready-taint"])
            .args(["--metrics-address", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let child = Killed(child);
        wait_socket(&socket, start).await;
        let mut n = NodeClient::new(fsx_csi_tools::connect(&socket).await.unwrap());
        n.node_get_info(NodeGetInfoRequest {}).await.unwrap();
        {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            assert!(body.contains("fsx_csi_grpc_requests_total"), "metrics not served");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        idle_deployed = idle_deployed.max(rss_kib(child.0.id()).0);
    }
    println!("  idle RSS as deployed (metrics served and scraped, --remove-not-ready-taint): {}", mib(idle_deployed));

    // 2. Publish latency through the harness (the same node service, tmpfs for lustre).
    if !nix::unistd::geteuid().is_root() {
        println!("  publish figures need root (mounts): skipped");
        return;
    }
    let socket = dir.join("harness.sock");
    let child = Command::new(bin.join("csi-sanity-harness"))
        .args([
            "--node-only",
            "--socket",
            &socket.display().to_string(),
            "--kubelet-dir",
            &kubelet.display().to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    wait_socket(&socket, Instant::now()).await;
    let mut n = NodeClient::new(fsx_csi_tools::connect(&socket).await.unwrap());
    let vol = "fs-0123456789abcdef0";
    let staging = kubelet.join("plugins/kubernetes.io/csi/fsx.csi.aws.com/bench/globalmount");
    let context: std::collections::HashMap<String, String> = [
        ("dnsname".to_string(), "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com".to_string()),
        ("mountname".to_string(), "bench".to_string()),
    ]
    .into();
    n.node_stage_volume(NodeStageVolumeRequest {
        volume_id: vol.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap()),
        volume_context: context.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let idle_harness = rss_kib(child.0.id()).0;
    let mut lat = Vec::new();
    let target =
        |i: usize| kubelet.join(format!("pods/pod-{i:04}/volumes/kubernetes.io~csi/pv/mount")).display().to_string();
    for i in 0..targets {
        let start = Instant::now();
        n.node_publish_volume(NodePublishVolumeRequest {
            volume_id: vol.into(),
            staging_target_path: staging.display().to_string(),
            target_path: target(i),
            volume_capability: Some(cap()),
            volume_context: context.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        lat.push(start.elapsed());
    }
    let (rss, _) = rss_kib(child.0.id());
    lat.sort();
    println!("node service through the test harness (tmpfs for lustre):");
    println!(
        "  NodePublish of an already-staged volume: p50 {:.2} ms, p99 {:.2} ms ({targets} targets)",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    println!("  RSS idle (staged) {}, with {targets} published targets {}", mib(idle_harness), mib(rss));
    for i in 0..targets {
        n.node_unpublish_volume(NodeUnpublishVolumeRequest { volume_id: vol.into(), target_path: target(i) })
            .await
            .unwrap();
    }
    n.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: vol.into(),
        staging_target_path: staging.display().to_string(),
    })
    .await
    .unwrap();
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    match a.what {
        What::Controller { volumes, create_delay_ms, create_jitter_ms, poll_interval_s, call_timeout_s } => {
            controller(&a.bin_dir, volumes, create_delay_ms, create_jitter_ms, poll_interval_s, call_timeout_s).await
        }
        What::Node { targets } => node(&a.bin_dir, targets).await,
        What::Cadence { minutes, volumes, call_timeout_s, jitter_s } => {
            cadence(&a.bin_dir, &minutes, &volumes, Duration::from_secs(call_timeout_s), jitter_s).await
        }
    }
}
