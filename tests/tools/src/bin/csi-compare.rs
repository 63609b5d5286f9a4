//! Side by side with the Go driver (`hack/compare.sh`): the same work on both binaries, over
//! their real sockets, against the same in-process FSx emulator, with both columns and their
//! ratio, and how each figure grows with the number of volumes.
//!
//! Figures: binary size; start → socket ready (median of 10) and idle RSS per mode; for each N
//! concurrent CreateVolume calls (provisioner-like retry loops, each call bounded like the
//! external-provisioner's `--timeout`): CreateFileSystem and DescribeFileSystems calls, calls
//! per volume, AVAILABLE → CreateVolume success (p50, p99), peak RSS; and the start-up listing
//! of an account with many file systems (ours keeps an index; the Go driver lists nothing).
//! Both drivers run with their defaults (ours: the adaptive poll, no `--poll-interval`).

#![allow(clippy::unwrap_used, reason = "a test program: a panic is the comparison failing")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use fsx_csi_driver::fsx::aws::AwsFsx;
use fsx_csi_driver::fsx::{CreateSpec, Fsx, LustreSettings};
use fsx_csi_driver::proto::controller_client::ControllerClient;
use fsx_csi_driver::proto::identity_client::IdentityClient;
use fsx_csi_driver::proto::node_client::NodeClient;
use fsx_csi_driver::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use fsx_csi_driver::proto::*;
use fsx_csi_tools::{Killed, percentile, rss_kib, wait_socket};
use fsx_emulator::{Config, Emulator};
use tonic::Code;

#[derive(Parser)]
struct Args {
    /// This driver's binary.
    #[arg(long)]
    ours: PathBuf,
    /// The Go driver's binary (hack/lib/build-go-driver.sh).
    #[arg(long)]
    go: PathBuf,
    /// The Go driver's version, for the column heading.
    #[arg(long, default_value = "v1.9.0")]
    go_version: String,
    /// Numbers of concurrent creations.
    #[arg(long, value_delimiter = ',', default_value = "50,200,1000")]
    volumes: Vec<usize>,
    /// Creation time of each file system in the emulator (ms); real FSx takes 5-15 minutes.
    #[arg(long, default_value_t = 20_000)]
    create_delay_ms: u64,
    /// Per-call deadline of the provisioner-like clients (s), as `--timeout` in the manifests.
    #[arg(long, default_value_t = 300)]
    call_timeout_s: u64,
    /// File systems in the account for the start-up listing figure (0: skip).
    #[arg(long, default_value_t = 10_000)]
    account: usize,
    /// The csi-sanity harness (this driver's node service with tmpfs for Lustre), for the
    /// publish figures; they need root.
    #[arg(long)]
    harness: Option<PathBuf>,
    /// Volumes published on one node for the publish figures.
    #[arg(long, default_value_t = 200)]
    publishes: usize,
}

const GIB: i64 = 1 << 30;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Go,
}

struct Driver {
    kind: Kind,
    bin: PathBuf,
}

impl Driver {
    /// Starts the driver in `mode` on `socket`, pointed at `endpoint` (FSx).
    fn spawn(&self, mode: &str, socket: &Path, dir: &Path, endpoint: &str) -> Killed {
        let mut cmd = Command::new(&self.bin);
        let endpoint_arg = format!("unix://{}", socket.display());
        match self.kind {
            Kind::Ours => {
                cmd.args(["--mode", mode, "--endpoint", &endpoint_arg]);
                if mode == "node" {
                    let kubelet = dir.join("kubelet");
                    std::fs::create_dir_all(&kubelet).unwrap();
                    cmd.args(["--node-id", "compare-node", "--kubelet-dir", &kubelet.display().to_string()]);
                }
            }
            Kind::Go => {
                cmd.args([format!("--mode={mode}"), format!("--endpoint={endpoint_arg}"), "--v=0".to_string()]);
            }
        }
        let child = cmd
            .env("AWS_ENDPOINT_URL_FSX", endpoint)
            .env("AWS_ENDPOINT_URL_EC2", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "compare")
            .env("AWS_SECRET_ACCESS_KEY", "compare")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CSI_NODE_NAME", "compare-node")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        Killed(child)
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fsx-compare-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Start → socket ready (median of 10) and idle RSS (median, after one GetPluginInfo).
async fn start_up(d: &Driver, mode: &str, endpoint: &str) -> (Duration, u64) {
    let dir = temp_dir(mode);
    let socket = dir.join("csi.sock");
    let (mut ready, mut rss) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let _ = std::fs::remove_file(&socket);
        let start = Instant::now();
        let child = d.spawn(mode, &socket, &dir, endpoint);
        ready.push(wait_socket(&socket, start).await);
        let mut c = IdentityClient::new(fsx_csi_tools::connect(&socket).await.unwrap());
        c.get_plugin_info(GetPluginInfoRequest {}).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss.push(rss_kib(child.0.id()).0);
    }
    ready.sort();
    rss.sort();
    let _ = std::fs::remove_dir_all(&dir);
    (ready[ready.len() / 2], rss[rss.len() / 2])
}

struct Creation {
    create_calls: u64,
    describe_calls: u64,
    all_calls: u64,
    lag_p50: Duration,
    lag_p99: Duration,
    peak_kib: u64,
    wall: Duration,
}

/// `n` concurrent CreateVolume retry loops against a fresh emulator.
async fn creations(d: &Driver, n: usize, delay_ms: u64, call_timeout: Duration) -> Creation {
    let emulator = Emulator::start(Config { create_delay_ms: delay_ms, ..Config::default() }, 0).await.unwrap();
    let dir = temp_dir("create");
    let socket = dir.join("csi.sock");
    let child = d.spawn("controller", &socket, &dir, &emulator.endpoint());
    wait_socket(&socket, Instant::now()).await;
    let channel = fsx_csi_tools::connect(&socket).await.unwrap();
    emulator.reset_calls();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut c = ControllerClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let req = CreateVolumeRequest {
                name: format!("pvc-compare-{i:05}"),
                capacity_range: Some(CapacityRange { required_bytes: 1200 * GIB, limit_bytes: 0 }),
                volume_capabilities: vec![VolumeCapability {
                    access_type: Some(AccessType::Mount(MountVolume::default())),
                    access_mode: Some(AccessMode { mode: Mode::MultiNodeMultiWriter as i32 }),
                }],
                // The Go driver sends [""] as security groups when the key is absent, which FSx
                // refuses: both get one.
                parameters: [
                    ("subnetId".to_string(), "subnet-0123456789abcdef0".to_string()),
                    ("securityGroupIds".to_string(), "sg-0123456789abcdef0".to_string()),
                ]
                .into(),
                ..Default::default()
            };
            loop {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(call_timeout);
                match c.create_volume(r).await {
                    Ok(resp) => return (resp.into_inner().volume.unwrap().volume_id, Instant::now()),
                    Err(s)
                        if matches!(
                            s.code(),
                            Code::DeadlineExceeded | Code::Aborted | Code::Unavailable | Code::Cancelled
                        ) =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(s) => panic!("CreateVolume: {s:?}"),
                }
            }
        }));
    }
    let mut lags = Vec::new();
    for t in tasks {
        let (id, done) = t.await.unwrap();
        let available = emulator.available_at(&id).unwrap();
        lags.push(done.saturating_duration_since(available));
    }
    let wall = started.elapsed();
    lags.sort();
    let calls: BTreeMap<String, u64> = emulator.all_calls();
    let per = |op: &str| calls.get(op).copied().unwrap_or(0);
    let peak_kib = rss_kib(child.0.id()).1;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    Creation {
        create_calls: per("CreateFileSystem"),
        describe_calls: per("DescribeFileSystems"),
        all_calls: calls.values().sum(),
        lag_p50: percentile(&lags, 0.5),
        lag_p99: percentile(&lags, 0.99),
        peak_kib,
        wall,
    }
}

/// Our start-up listing of an account of `n` tagged file systems: DescribeFileSystems calls and
/// the time until ListVolumes (answered from the index) shows them all.
async fn listing(d: &Driver, n: usize) -> (u64, Duration) {
    let emulator = Emulator::start(Config { create_delay_ms: 0, ..Config::default() }, 0).await.unwrap();
    let conf = aws_sdk_fsx::config::Builder::new()
        .behavior_version(aws_sdk_fsx::config::BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint())
        .region(aws_sdk_fsx::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_fsx::config::Credentials::new("compare", "compare", None, None, "compare"));
    let client: std::sync::Arc<dyn Fsx> = std::sync::Arc::new(AwsFsx::from_conf(conf));
    let mut tasks = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..n {
        let (client, sem) = (client.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let spec = CreateSpec {
                client_request_token: format!("account-{i}"),
                capacity_gib: 1200,
                subnet_id: "subnet-0123456789abcdef0".into(),
                security_group_ids: Vec::new(),
                tags: vec![("CSIVolumeName".into(), format!("pvc-account-{i:05}"))],
                kms_key_id: None,
                storage_type: None,
                lustre: LustreSettings::default(),
            };
            client.create_file_system(&spec).await.unwrap();
        });
    }
    while tasks.join_next().await.is_some() {}
    emulator.reset_calls();
    let dir = temp_dir("listing");
    let socket = dir.join("csi.sock");
    let start = Instant::now();
    let _child = d.spawn("controller", &socket, &dir, &emulator.endpoint());
    wait_socket(&socket, start).await;
    // The index is loaded when ListVolumes (answered from it) shows every file system.
    let mut c = ControllerClient::new(fsx_csi_tools::connect(&socket).await.unwrap());
    loop {
        let listed = c.list_volumes(ListVolumesRequest::default()).await.map(|r| r.into_inner().entries.len());
        if listed.is_ok_and(|l| l >= n) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the index never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    (emulator.calls("DescribeFileSystems"), took)
}

/// A stand-in for mount(8) for the Go driver, which execs `mount -t lustre ... SOURCE TARGET`
/// for each publish: a tmpfs at TARGET (one mount(2), as ours makes per publish).
const STAND_IN_MOUNT: &str = "#!/bin/sh\n# stand-in for mount(8): a tmpfs at the target (the last argument)\nfor last; do :; done\nexec /bin/mount -t tmpfs fsx-stand-in \"$last\"\n";

/// NodePublishVolume of one file system to `n` pod targets on one node: (p50, p99, RSS after).
/// Ours through the harness (its node service, tmpfs for Lustre; one stage, then bind mounts);
/// the Go driver in a private mount namespace with the stand-in `mount` on PATH (it has no
/// stage step: one mount per publish).
async fn publishes(d: &Driver, harness: &Path, n: usize) -> (Duration, Duration, u64) {
    let dir = temp_dir("publish");
    let kubelet = dir.join("kubelet");
    std::fs::create_dir_all(&kubelet).unwrap();
    let socket = dir.join("csi.sock");
    let child = match d.kind {
        Kind::Ours => Command::new(harness)
            .args(["--node-only", "--socket", &socket.display().to_string()])
            .args(["--kubelet-dir", &kubelet.display().to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        Kind::Go => {
            let bin = dir.join("stand-in");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("mount"), STAND_IN_MOUNT).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(bin.join("mount"), std::fs::Permissions::from_mode(0o755)).unwrap();
            let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
            Command::new("unshare")
                .args(["-m", "--propagation", "private"])
                .arg(&d.bin)
                .args(["--mode=node", &format!("--endpoint=unix://{}", socket.display()), "--v=0"])
                .env("PATH", path)
                .env("CSI_NODE_NAME", "compare-node")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        }
    };
    let child = Killed(child);
    wait_socket(&socket, Instant::now()).await;
    let mut c = NodeClient::new(fsx_csi_tools::connect(&socket).await.unwrap());
    let vol = "fs-0123456789abcdef0";
    let context: std::collections::HashMap<String, String> = [
        ("dnsname".to_string(), "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com".to_string()),
        ("mountname".to_string(), "compare".to_string()),
    ]
    .into();
    let cap = VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: Mode::MultiNodeMultiWriter as i32 }),
    };
    let staging = kubelet.join("plugins/kubernetes.io/csi/fsx.csi.aws.com/compare/globalmount");
    let staging = if d.kind == Kind::Ours {
        c.node_stage_volume(NodeStageVolumeRequest {
            volume_id: vol.into(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap.clone()),
            volume_context: context.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        staging.display().to_string()
    } else {
        String::new()
    };
    let mut lat = Vec::new();
    for i in 0..n {
        let target = kubelet.join(format!("pods/pod-{i:04}/volumes/kubernetes.io~csi/pv/mount"));
        if d.kind == Kind::Go {
            // The kubelet makes the target's parent; the Go driver makes the target.
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        }
        let start = Instant::now();
        c.node_publish_volume(NodePublishVolumeRequest {
            volume_id: vol.into(),
            staging_target_path: staging.clone(),
            target_path: target.display().to_string(),
            volume_capability: Some(cap.clone()),
            volume_context: context.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("NodePublishVolume ({}): {e:?}", d.bin.display()));
        lat.push(start.elapsed());
    }
    let rss = rss_kib(child.0.id()).0;
    drop(child);
    lat.sort();
    // The mounts lived in the processes' private namespaces and went with them.
    let _ = std::fs::remove_dir_all(&dir);
    (percentile(&lat, 0.5), percentile(&lat, 0.99), rss)
}

fn mb(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn ratio(go: f64, ours: f64) -> String {
    if ours <= 0.0 { "-".into() } else { format!("{:.1}x", go / ours) }
}

fn row(figure: &str, go: String, ours: String, r: String) {
    println!("| {figure} | {go} | {ours} | {r} |");
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let ours = Driver { kind: Kind::Ours, bin: a.ours.clone() };
    let go = Driver { kind: Kind::Go, bin: a.go.clone() };
    let dead = "http://127.0.0.1:9";
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!("| figure | Go {} | ours | Go / ours |", a.go_version);
    println!("|---|---|---|---|");
    let (gs, os) = (size(&a.go), size(&a.ours));
    row(
        "binary",
        format!("{:.1} MB", gs as f64 / 1e6),
        format!("{:.1} MB", os as f64 / 1e6),
        ratio(gs as f64, os as f64),
    );
    for mode in ["controller", "node"] {
        let (g_ready, g_rss) = start_up(&go, mode, dead).await;
        let (o_ready, o_rss) = start_up(&ours, mode, dead).await;
        row(
            &format!("start → socket ready, {mode} (median of 10)"),
            ms(g_ready),
            ms(o_ready),
            ratio(g_ready.as_secs_f64(), o_ready.as_secs_f64()),
        );
        row(&format!("idle RSS, {mode}"), mb(g_rss), mb(o_rss), ratio(g_rss as f64, o_rss as f64));
    }
    let timeout = Duration::from_secs(a.call_timeout_s);
    let mut growth = Vec::new();
    for &n in &a.volumes {
        let g = creations(&go, n, a.create_delay_ms, timeout).await;
        let o = creations(&ours, n, a.create_delay_ms, timeout).await;
        let c = format!("{n} concurrent CreateVolume ({:.0} s creation)", a.create_delay_ms as f64 / 1000.0);
        row(
            &format!("{c}: CreateFileSystem"),
            g.create_calls.to_string(),
            o.create_calls.to_string(),
            ratio(g.create_calls as f64, o.create_calls as f64),
        );
        row(
            &format!("{c}: DescribeFileSystems"),
            g.describe_calls.to_string(),
            o.describe_calls.to_string(),
            ratio(g.describe_calls as f64, o.describe_calls as f64),
        );
        row(
            &format!("{c}: FSx calls per volume"),
            format!("{:.2}", g.all_calls as f64 / n as f64),
            format!("{:.2}", o.all_calls as f64 / n as f64),
            ratio(g.all_calls as f64, o.all_calls as f64),
        );
        row(
            &format!("{c}: AVAILABLE → call returns, p50 / p99"),
            format!("{} / {}", secs(g.lag_p50), secs(g.lag_p99)),
            format!("{} / {}", secs(o.lag_p50), secs(o.lag_p99)),
            ratio(g.lag_p50.as_secs_f64(), o.lag_p50.as_secs_f64()),
        );
        row(&format!("{c}: peak RSS"), mb(g.peak_kib), mb(o.peak_kib), ratio(g.peak_kib as f64, o.peak_kib as f64));
        row(
            &format!("{c}: all bound after"),
            secs(g.wall),
            secs(o.wall),
            ratio(g.wall.as_secs_f64(), o.wall.as_secs_f64()),
        );
        growth.push((n, g, o));
    }
    if a.account > 0 {
        let (calls, took) = listing(&ours, a.account).await;
        row(
            &format!("start-up listing of an account of {} file systems", a.account),
            "none (no index: finds nothing it created before a restart once its tokens expire)".into(),
            format!("{calls} DescribeFileSystems pages, index loaded in {}", ms(took)),
            "-".into(),
        );
    }
    match (&a.harness, nix::unistd::geteuid().is_root()) {
        (Some(harness), true) => {
            let (g50, g99, grss) = publishes(&go, harness, a.publishes).await;
            let (o50, o99, orss) = publishes(&ours, harness, a.publishes).await;
            row(
                &format!("NodePublishVolume of one volume to {} pods, p50 / p99 (*)", a.publishes),
                format!("{} / {}", ms(g50), ms(g99)),
                format!("{} / {}", ms(o50), ms(o99)),
                ratio(g50.as_secs_f64(), o50.as_secs_f64()),
            );
            row(
                &format!("node RSS with {} published targets", a.publishes),
                mb(grss),
                mb(orss),
                ratio(grss as f64, orss as f64),
            );
            println!();
            println!(
                "(*) no Lustre here: ours is its node service in the csi-sanity harness with tmpfs for Lustre (one stage, then a bind mount per pod; the RSS is the harness's, which also carries test scaffolding); the Go driver runs in a private mount namespace with a stand-in mount(8) on PATH that mounts a tmpfs (it execs mount for every publish, with no stage step)."
            );
        }
        _ => println!("(publish figures skipped: they need root and --harness)"),
    }
    println!();
    println!("How the cost grows with N (Go / ours):");
    for (n, g, o) in &growth {
        println!(
            "  N={n:>5}: DescribeFileSystems {:>6} / {:<5} ({:.2} / {:.3} per volume); peak RSS {} / {}; AVAILABLE → return p99 {} / {}",
            g.describe_calls,
            o.describe_calls,
            g.describe_calls as f64 / *n as f64,
            o.describe_calls as f64 / *n as f64,
            mb(g.peak_kib),
            mb(o.peak_kib),
            secs(g.lag_p99),
            secs(o.lag_p99)
        );
    }
}
