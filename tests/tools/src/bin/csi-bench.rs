//! Benchmarks that print figures (targets are checked by reading them, not by timed tests).
//!
//! - `csi-bench controller`: the real `fsx-csi-driver --mode controller` against an
//!   in-process emulator with realistic (scaled) creation delays; 200 volumes created
//!   concurrently by provisioner-like retry loops. Prints FSx calls per operation and per
//!   volume, the time from AVAILABLE to CreateVolume success (p50/p99) and peak RSS.
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
    let dir = tempfile_dir();
    let socket = dir.join("csi.sock");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(bin.join("fsx-csi-driver"))
        .args(["--mode", "controller", "--endpoint", &format!("unix://{}", socket.display())])
        .args(["--poll-interval", &format!("{poll_s}s")])
        .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}")])
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
    let pid = child.0.id();
    wait_socket(&socket, Instant::now()).await;
    let channel = fsx_csi_tools::connect(&socket).await.unwrap();

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
    }
}
