//! The chaos test: many concurrent creations, then deletions, against the FSx emulator under
//! throttling and 5xx errors, while the controller process is SIGKILLed and restarted every
//! few seconds. A client retries as the external-provisioner does (a per-call timeout, back-off,
//! the same name again until a final answer).
//!
//! It passes when every volume got exactly one file system, no file system exists that no
//! volume owns, and none is left after the deletions. It prints the figures (kills, FSx calls
//! per volume, time) and ends with "chaos: N passed, M failed".

#![allow(clippy::unwrap_used, reason = "a test program: a panic is the test failing")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use fsx_csi_driver::proto::controller_client::ControllerClient;
use fsx_csi_driver::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use fsx_csi_driver::proto::*;
use fsx_emulator::{Config, Emulator};
use tonic::Code;
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// The driver binary.
    #[arg(long, default_value = "target/debug/fsx-csi-driver")]
    driver: PathBuf,
    /// Volumes created concurrently, then deleted.
    #[arg(long, default_value_t = 20)]
    volumes: usize,
    /// Mean time between SIGKILLs of the controller, in milliseconds (each interval is drawn
    /// between half and one and a half times this).
    #[arg(long, default_value_t = 3000)]
    kill_every_ms: u64,
    /// Fraction of FSx requests answered with ThrottlingException.
    #[arg(long, default_value_t = 0.3)]
    throttle: f64,
    /// Fraction of FSx requests answered with HTTP 500.
    #[arg(long, default_value_t = 0.1)]
    errors: f64,
    /// Time from CreateFileSystem to AVAILABLE, in milliseconds (plus up to as much again).
    #[arg(long, default_value_t = 3000)]
    create_delay_ms: u64,
    /// Each call's gRPC timeout (the provisioner's --timeout), in milliseconds.
    #[arg(long, default_value_t = 5000)]
    call_timeout_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    limit_s: u64,
}

/// The controller process, restarted after each kill.
struct Controller {
    bin: PathBuf,
    socket: PathBuf,
    endpoint: String,
    child: Mutex<Option<Child>>,
    kills: AtomicU64,
}

impl Controller {
    fn start(&self) {
        let child = Command::new(&self.bin)
            .args(["--mode", "controller", "--endpoint", &format!("unix://{}", self.socket.display())])
            .args(["--poll-interval", "500ms"])
            .env("AWS_ENDPOINT_URL_FSX", &self.endpoint)
            .env("AWS_ENDPOINT_URL_EC2", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "chaos")
            .env("AWS_SECRET_ACCESS_KEY", "chaos")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fsx-csi-driver");
        *self.child.lock().unwrap() = Some(child);
    }

    fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: Mode::MultiNodeMultiWriter as i32 }),
    }
}

/// What the external-provisioner retries (everything but a final answer).
fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Unavailable
            | Code::ResourceExhausted
            | Code::Unknown
    )
}

async fn channel(socket: &Path) -> Channel {
    loop {
        if let Ok(c) = fsx_csi_tools::connect(socket).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One provisioner worker: creates `name` until a final answer, backing off between tries.
async fn create(socket: PathBuf, name: String, timeout: Duration, deadline: Instant) -> Result<String, String> {
    let mut backoff = Duration::from_millis(100);
    let mut client = ControllerClient::new(channel(&socket).await);
    while Instant::now() < deadline {
        let mut req = tonic::Request::new(CreateVolumeRequest {
            name: name.clone(),
            capacity_range: Some(CapacityRange { required_bytes: 1200 << 30, limit_bytes: 0 }),
            volume_capabilities: vec![cap()],
            parameters: HashMap::from([("subnetId".to_string(), "subnet-0123456789abcdef0".to_string())]),
            ..Default::default()
        });
        req.set_timeout(timeout);
        match client.create_volume(req).await {
            Ok(r) => return r.into_inner().volume.map(|v| v.volume_id).ok_or_else(|| "no volume".to_string()),
            Err(s) if retryable(&s) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                if s.code() == Code::Unavailable || s.code() == Code::Unknown {
                    client = ControllerClient::new(channel(&socket).await);
                }
            }
            Err(s) => return Err(format!("{name}: final {:?}: {}", s.code(), s.message())),
        }
    }
    Err(format!("{name}: not created in time"))
}

/// One deletion, retried until it succeeds.
async fn delete(socket: PathBuf, id: String, timeout: Duration, deadline: Instant) -> Result<(), String> {
    let mut backoff = Duration::from_millis(100);
    let mut client = ControllerClient::new(channel(&socket).await);
    while Instant::now() < deadline {
        let mut req = tonic::Request::new(DeleteVolumeRequest { volume_id: id.clone(), secrets: Default::default() });
        req.set_timeout(timeout);
        match client.delete_volume(req).await {
            Ok(_) => return Ok(()),
            Err(s) if retryable(&s) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                if s.code() == Code::Unavailable || s.code() == Code::Unknown {
                    client = ControllerClient::new(channel(&socket).await);
                }
            }
            Err(s) => return Err(format!("{id}: final {:?}: {}", s.code(), s.message())),
        }
    }
    Err(format!("{id}: not deleted in time"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let emulator = Emulator::start(
        Config {
            create_delay_ms: a.create_delay_ms,
            create_jitter_ms: a.create_delay_ms,
            delete_delay_ms: 500,
            throttle_rate: a.throttle,
            error_rate: a.errors,
            ..Config::default()
        },
        0,
    )
    .await
    .expect("start the emulator");
    let dir = std::env::temp_dir().join(format!("fsx-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let controller = Arc::new(Controller {
        bin: a.driver.clone(),
        socket: dir.join("csi.sock"),
        endpoint: emulator.endpoint(),
        child: Mutex::new(None),
        kills: AtomicU64::new(0),
    });
    controller.start();
    println!(
        "chaos: {} volumes; SIGKILL every ~{:.1}s; {:.0}% throttled, {:.0}% HTTP 500; creation {:.0}-{:.0}s; call timeout {:.0}s",
        a.volumes,
        a.kill_every_ms as f64 / 1000.0,
        a.throttle * 100.0,
        a.errors * 100.0,
        a.create_delay_ms as f64 / 1000.0,
        2.0 * a.create_delay_ms as f64 / 1000.0,
        a.call_timeout_ms as f64 / 1000.0
    );

    // The killer: SIGKILL, then restart at once (as the kubelet restarts the container).
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (controller, stop, every) = (Arc::clone(&controller), Arc::clone(&stop), a.kill_every_ms);
        tokio::spawn(async move {
            let mut seed = std::process::id() as u64 | 1;
            while !stop.load(Ordering::SeqCst) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let wait = every / 2 + seed % every.max(1);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                controller.kill();
                controller.start();
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(a.limit_s);
    let timeout = Duration::from_millis(a.call_timeout_ms);
    let mut checks: Vec<(String, bool)> = Vec::new();
    let started = Instant::now();

    let names: Vec<String> = (0..a.volumes).map(|i| format!("pvc-chaos-{i:04}")).collect();
    let tasks: Vec<_> =
        names.iter().map(|n| tokio::spawn(create(controller.socket.clone(), n.clone(), timeout, deadline))).collect();
    let mut created: HashMap<String, String> = HashMap::new();
    let mut failures = Vec::new();
    for (name, t) in names.iter().zip(tasks) {
        match t.await.expect("create task") {
            Ok(id) => {
                created.insert(name.clone(), id);
            }
            Err(e) => failures.push(e),
        }
    }
    let create_time = started.elapsed();
    let kills_creating = controller.kills.load(Ordering::SeqCst);
    for f in failures.iter().take(5) {
        println!("  create failed: {f}");
    }
    checks.push((format!("every volume was created ({} of {})", created.len(), a.volumes), created.len() == a.volumes));

    // Exactly one file system per volume name, the one CreateVolume returned; no orphans.
    let listed = emulator.file_systems_with_names();
    let mut per_name: HashMap<String, Vec<String>> = HashMap::new();
    let mut unnamed = 0;
    for (id, _, name) in &listed {
        match name {
            Some(n) => per_name.entry(n.clone()).or_default().push(id.clone()),
            None => unnamed += 1,
        }
    }
    let duplicates: Vec<_> = per_name.iter().filter(|(_, ids)| ids.len() > 1).collect();
    for (n, ids) in duplicates.iter().take(5) {
        println!("  duplicate: {n} has {ids:?}");
    }
    let mismatched = created.iter().filter(|(n, id)| per_name.get(*n).is_none_or(|ids| !ids.contains(id))).count();
    checks
        .push((format!("exactly one file system per volume ({} duplicates)", duplicates.len()), duplicates.is_empty()));
    checks.push((
        format!("each volume is the file system CreateVolume returned ({mismatched} mismatched)"),
        mismatched == 0,
    ));
    let orphans = per_name.keys().filter(|n| !names.contains(n)).count() + unnamed;
    checks.push((
        format!("no orphan file systems ({} of {} listed)", orphans, listed.len()),
        orphans == 0 && listed.len() == created.len(),
    ));
    let calls_create = emulator.all_calls();

    // Deletions, under the same chaos.
    let delete_started = Instant::now();
    let tasks: Vec<_> = created
        .values()
        .map(|id| tokio::spawn(delete(controller.socket.clone(), id.clone(), timeout, deadline)))
        .collect();
    let mut delete_failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.expect("delete task") {
            delete_failures.push(e);
        }
    }
    for f in delete_failures.iter().take(5) {
        println!("  delete failed: {f}");
    }
    checks.push((format!("every deletion succeeded ({} failed)", delete_failures.len()), delete_failures.is_empty()));
    stop.store(true, Ordering::SeqCst);
    let _ = killer.await;
    let delete_time = delete_started.elapsed();
    // DELETING file systems disappear after the emulator's deletion delay.
    let wait_until = Instant::now() + Duration::from_secs(30);
    let mut left = emulator.file_systems_with_names();
    while !left.is_empty() && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = emulator.file_systems_with_names();
    }
    checks.push((format!("no file system left after the deletions ({} left)", left.len()), left.is_empty()));
    let kills = controller.kills.load(Ordering::SeqCst);
    checks.push((format!("the controller was killed during the run ({kills} SIGKILLs)"), kills >= 2));

    let calls = emulator.all_calls();
    let n = a.volumes.max(1) as f64;
    let get = |m: &std::collections::BTreeMap<String, u64>, op: &str| m.get(op).copied().unwrap_or(0);
    println!("figures:");
    println!("  SIGKILLs: {kills} ({kills_creating} while creating)");
    println!(
        "  create phase: {:.1}s; CreateFileSystem {} ({:.2}/volume), DescribeFileSystems {} ({:.2}/volume)",
        create_time.as_secs_f64(),
        get(&calls_create, "CreateFileSystem"),
        get(&calls_create, "CreateFileSystem") as f64 / n,
        get(&calls_create, "DescribeFileSystems"),
        get(&calls_create, "DescribeFileSystems") as f64 / n,
    );
    println!(
        "  delete phase: {:.1}s; DeleteFileSystem {} ({:.2}/volume)",
        delete_time.as_secs_f64(),
        get(&calls, "DeleteFileSystem"),
        get(&calls, "DeleteFileSystem") as f64 / n
    );
    let total: u64 = calls.values().sum();
    println!("  all FSx calls (throttled and failed ones included): {total} ({:.1}/volume)", total as f64 / n);
    println!("  total time: {:.1}s", started.elapsed().as_secs_f64());

    let (mut passed, mut failed) = (0, 0);
    for (what, ok) in &checks {
        println!("{} {what}", if *ok { "ok  " } else { "FAIL" });
        if *ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    drop(controller);
    let _ = std::fs::remove_dir_all(&dir);
    println!("chaos: {passed} passed, {failed} failed");
    if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
