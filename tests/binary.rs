//! Tests of the shipped binary itself: flags, socket, shutdown, and what it logs.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the test failing")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fsx_csi_driver::proto::controller_client::ControllerClient;
use fsx_csi_driver::proto::identity_client::IdentityClient;
use fsx_csi_driver::proto::*;
use fsx_emulator::Emulator;

const BIN: &str = env!("CARGO_BIN_EXE_fsx-csi-driver");
const SECRET: &str = "sup3r-s3cret-t0ken-value";
const SECRET_KEY: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";

/// A driver process that is killed when the test ends, however it ends (a failed assertion
/// must not leave it running).
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_driver(emulator: &Emulator, socket: &Path, log: &Path, extra: &[&str]) -> Running {
    let log = std::fs::File::create(log).unwrap();
    Running(
        Command::new(BIN)
            .args([
                "--mode",
                "controller",
                "--endpoint",
                &format!("unix://{}", socket.display()),
                "--poll-interval",
                "100ms",
            ])
            .args(extra)
            .env("AWS_ENDPOINT_URL_FSX", emulator.endpoint())
            .env("AWS_ENDPOINT_URL_EC2", emulator.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Waits until the socket accepts connections (the file appears at bind(2), a moment before
/// listen(2)).
async fn wait_for_socket(socket: &Path) {
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "socket never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "driver did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs_even_at_trace() {
    let emulator = Emulator::start(config(300), 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let log = dir.path().join("driver.log");
    let mut child = spawn_driver(&emulator, &socket, &log, &["--log-format", "json"]);
    wait_for_socket(&socket).await;
    // Group-readable for the pod's sidecars (the directory's group), never others'.
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o660);

    let channel = connect(&socket).await.unwrap();
    let mut c = ControllerClient::new(channel.clone());
    let secrets: std::collections::HashMap<String, String> = [("password".to_string(), SECRET.to_string())].into();
    // A good call, a refused one and a failing one all carry the secret.
    let mut ok = create_request("pvc-secret", 1200, params(&[("subnetId", SUBNET)]), Duration::from_secs(10));
    ok.get_mut().secrets = secrets.clone();
    let mut v = None;
    for _ in 0..20 {
        let mut r = create_request("pvc-secret", 1200, params(&[("subnetId", SUBNET)]), Duration::from_secs(10));
        r.get_mut().secrets = secrets.clone();
        match c.create_volume(r).await {
            Ok(resp) => {
                v = resp.into_inner().volume;
                break;
            }
            Err(s) if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::DeadlineExceeded => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    let v = v.expect("volume created");
    let mut bad = create_request("pvc-secret-bad", 1200, params(&[("subnetId", "nope")]), Duration::from_secs(10));
    bad.get_mut().secrets = secrets.clone();
    assert!(c.create_volume(bad).await.is_err());
    c.delete_volume(DeleteVolumeRequest { volume_id: v.volume_id, secrets: secrets.clone() }).await.unwrap();

    drop(c);
    drop(channel);
    let status = terminate(&mut child).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(!socket.exists(), "socket left behind after shutdown");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("CreateVolume"), "no span in the log:\n{text}");
    assert!(text.contains("subnetId"), "the refusal was not logged:\n{text}");
    // The SDK logs the resolved identity at debug and trace: the key id must not appear.
    assert!(text.contains("resolved identity"), "the SDK's identity line is gone; is the test still at trace?");
    for secret in [SECRET, SECRET_KEY, ACCESS_KEY_ID, &ACCESS_KEY_ID[4..]] {
        assert!(!text.contains(secret), "secret {secret:?} found in the log");
    }
    // Every line is JSON with --log-format json.
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.starts_with('{'), "not JSON: {line}");
    }
}

/// Ready means "the process serves": the livenessprobe sidecar must not restart the
/// controller while FSx is slow to answer its first listing.
#[tokio::test]
async fn probe_is_ready_as_soon_as_the_process_serves() {
    let emulator = Emulator::start(config(100), 0).await.unwrap();
    emulator.update_config(|c| c.latency_ms = 3_000);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let mut child = spawn_driver(&emulator, &socket, &dir.path().join("log"), &[]);
    wait_for_socket(&socket).await;
    let mut i = IdentityClient::new(connect(&socket).await.unwrap());
    assert_eq!(i.probe(ProbeRequest {}).await.unwrap().into_inner().ready, Some(true));
    drop(i);
    assert!(terminate(&mut child).await.success());
}

/// A role without a permission is one steady, clear error on every call that needs it (and
/// once in the log), not restarts: the process stays ready.
#[tokio::test]
async fn a_missing_permission_is_reported_on_every_call_and_logged_once() {
    let emulator = Emulator::start(config(100), 0).await.unwrap();
    emulator.update_config(|c| c.deny_operations = vec!["DescribeFileSystems".into()]);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let log = dir.path().join("log");
    let mut child = spawn_driver(&emulator, &socket, &log, &["--log-format", "text"]);
    wait_for_socket(&socket).await;
    let channel = connect(&socket).await.unwrap();
    let mut i = IdentityClient::new(channel.clone());
    assert_eq!(i.probe(ProbeRequest {}).await.unwrap().into_inner().ready, Some(true));
    let mut c = ControllerClient::new(channel);
    // Wait for the start-up listing to have been refused a few times.
    let start = Instant::now();
    while emulator.calls("DescribeFileSystems") < 3 {
        assert!(start.elapsed() < Duration::from_secs(20), "the listing was not retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..2 {
        let start = Instant::now();
        let err = c
            .create_volume(create_request("pvc-denied", 1200, params(&[("subnetId", SUBNET)]), Duration::from_secs(10)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("fsx:DescribeFileSystems"), "{}", err.message());
        assert!(err.message().contains("static credentials"), "the identity in use is not named: {}", err.message());
        assert!(start.elapsed() < Duration::from_secs(2), "the call waited for its deadline");
    }
    assert_eq!(emulator.calls("CreateFileSystem"), 0);
    drop(c);
    drop(i);
    assert!(terminate(&mut child).await.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let listed = text.lines().filter(|l| l.contains("listing FSx file systems failed")).count();
    assert_eq!(listed, 1, "logged once per change, not per retry:\n{text}");
    assert!(!text.contains(SECRET_KEY) && !text.contains(ACCESS_KEY_ID));
}

#[test]
fn refuses_to_replace_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    let out = Command::new(BIN)
        .args(["--mode", "node", "--node-id", "n1", "--endpoint", &format!("unix://{}", file.display())])
        .arg("--kubelet-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
}

#[test]
fn bad_flags_exit_2_with_a_clear_message() {
    for args in [
        vec!["--mode", "sideways"],
        vec!["--log-format", "xml"],
        vec!["--poll-interval", "soon"],
        vec!["--extra-tags", "novalue"],
        vec!["--no-such-flag"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(args[0]) || err.contains(&args[0][2..]), "{args:?}: {err}");
    }
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// Starts the node plugin with umask 0, so the modes of what it creates are its own choice.
fn spawn_node(socket: &Path, kubelet: &Path, log: &Path) -> Running {
    let log = std::fs::File::create(log).unwrap();
    Running(
        Command::new("sh")
            .args(["-c", "umask 0 && exec \"$@\"", "sh", BIN])
            .args(["--mode", "node", "--node-id", "n1", "--endpoint", &format!("unix://{}", socket.display())])
            .arg("--kubelet-dir")
            .arg(kubelet)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn plugin_name(socket: &Path) -> String {
    let mut i = IdentityClient::new(connect(socket).await.unwrap());
    i.get_plugin_info(GetPluginInfoRequest {}).await.unwrap().into_inner().name
}

/// Finding: a second instance took over a live socket, and the first one's exit then deleted
/// the second one's socket, leaving the node without a CSI socket.
#[tokio::test]
async fn a_live_socket_is_never_taken_over_nor_a_newer_one_removed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plugin/csi.sock");
    let mut first = spawn_node(&socket, dir.path(), &dir.path().join("first.log"));
    wait_for_socket(&socket).await;
    assert_eq!(plugin_name(&socket).await, "fsx.csi.aws.com");

    // A second instance on the same path refuses to start and names the path.
    let out = Command::new(BIN)
        .args(["--mode", "node", "--node-id", "n1", "--endpoint", &format!("unix://{}", socket.display())])
        .arg("--kubelet-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&socket.display().to_string()) && err.contains("running process"), "{err}");
    // The first still serves.
    assert_eq!(plugin_name(&socket).await, "fsx.csi.aws.com");

    // The path is taken by a newer instance (the old socket file was removed meanwhile); the
    // old one's shutdown must leave the new socket alone.
    std::fs::remove_file(&socket).unwrap();
    let mut second = spawn_node(&socket, dir.path(), &dir.path().join("second.log"));
    wait_for_socket(&socket).await;
    assert!(terminate(&mut first).await.success());
    assert!(socket.exists(), "the old instance deleted the new instance's socket");
    assert_eq!(plugin_name(&socket).await, "fsx.csi.aws.com");
    assert!(terminate(&mut second).await.success());
    assert!(!socket.exists(), "the instance did not remove its own socket");
    // The directory the driver created is not world-writable, whatever the umask.
    assert_eq!(std::fs::metadata(dir.path().join("plugin")).unwrap().permissions().mode() & 0o002, 0);
}

/// Findings: a name with CR/LF wrote attacker-chosen text as a new log line, and the normal
/// start-up `Unavailable` (index still loading) was logged at ERROR, where operators page.
#[tokio::test]
async fn hostile_text_never_forges_a_log_line_and_startup_unavailable_is_not_an_error() {
    let emulator = Emulator::start(config(100), 0).await.unwrap();
    // The start-up listing takes a while, so the first calls meet the loading index.
    emulator.update_config(|c| c.latency_ms = 1500);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let log = dir.path().join("driver.log");
    let mut child = spawn_driver(&emulator, &socket, &log, &["--log-format", "text"]);
    wait_for_socket(&socket).await;
    let mut c = ControllerClient::new(connect(&socket).await.unwrap());
    let forged = "pvc-1\nFORGED ERROR line written by the caller";
    let err = c
        .create_volume(create_request(forged, 1200, params(&[("subnetId", SUBNET)]), Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let mut p = params(&[("subnetId", SUBNET)]);
    p.insert("key\r\nFORGED WARN line".into(), "v".into());
    let err = c.create_volume(create_request("pvc-2", 1200, p, Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = c
        .create_volume(create_request("pvc-3", 1200, params(&[("subnetId", SUBNET)]), Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    drop(c);
    assert!(terminate(&mut child).await.success());
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines() {
        assert!(!line.starts_with("FORGED"), "a forged line in the log:\n{text}");
    }
    assert!(text.contains("FORGED ERROR line"), "the refusal was not logged:\n{text}");
    let loading: Vec<&str> = text.lines().filter(|l| l.contains("still loading its index")).collect();
    assert!(!loading.is_empty(), "no start-up Unavailable logged:\n{text}");
    for line in loading {
        assert!(line.contains(" INFO ") && !line.contains("ERROR"), "logged above info: {line}");
    }
}

/// A path the node plugin has checked (below the kubelet directory, at most PATH_MAX, no
/// control characters) is logged whole, so an operator finds the mount; one it refused is
/// still cut.
#[tokio::test]
async fn validated_paths_are_logged_whole_and_refused_ones_cut() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    let socket = dir.path().join("csi.sock");
    let log = dir.path().join("driver.log");
    // The kubelet's real shape: a 64-hex volume hash makes staging paths 140 characters and more.
    let hash = "0123456789abcdef".repeat(4);
    let staging = kubelet.join(format!("plugins/kubernetes.io/csi/fsx.csi.aws.com/{hash}/globalmount"));
    std::fs::create_dir_all(staging.parent().unwrap()).unwrap();
    // A file where the staging directory should be: the call fails, and the failure is logged.
    std::fs::write(&staging, "not a directory").unwrap();
    let mut child = Running(
        Command::new(BIN)
            .args(["--mode", "node", "--node-id", "n1", "--log-format", "text"])
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .arg("--kubelet-dir")
            .arg(&kubelet)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_socket(&socket).await;
    let mut n = fsx_csi_driver::proto::node_client::NodeClient::new(connect(&socket).await.unwrap());
    let shown = staging.display().to_string();
    assert!(shown.len() > 140);
    let req =
        |path: String| NodeUnstageVolumeRequest { volume_id: "fs-0123456789abcdef0".into(), staging_target_path: path };
    n.node_unstage_volume(req(shown.clone())).await.unwrap_err();
    let outside = format!("/etc/{}", "x".repeat(300));
    n.node_unstage_volume(req(outside)).await.unwrap_err();
    drop(n);
    assert!(terminate(&mut child).await.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let real = std::fs::canonicalize(staging.parent().unwrap()).unwrap().join("globalmount");
    assert!(text.contains(&format!("target.path={}", real.display())), "the whole path is not in the log:\n{text}");
    assert!(text.contains("(305 characters)"), "a refused path was not cut:\n{text}");
}

/// Reads `/metrics` over plain HTTP/1.1.
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("application/openmetrics-text"), "{out}");
    out
}

/// `name{labels} value` lines of one metric, as a map from the label text to the value.
fn samples(text: &str, name: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.trim_start_matches('{').trim_end_matches('}').to_string(), value.parse().ok()?))
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Issue 13: the FSx request counters match, per operation and outcome, exactly what the
/// emulator answered (under throttling and server errors); CSI calls are counted by method and
/// code as the client saw them; duplicates avoided, FAILED clean-ups and creation times are
/// recorded.
#[tokio::test]
async fn metrics_count_exactly_what_fsx_answered_and_what_clients_saw() {
    let emulator = Emulator::start(config(300), 0).await.unwrap();
    emulator.update_config(|c| {
        c.throttle_rate = 0.2;
        c.error_rate = 0.05;
    });
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let log = dir.path().join("log");
    let port = free_port();
    let mut child = spawn_driver(
        &emulator,
        &socket,
        &log,
        &["--metrics-address", &format!("127.0.0.1:{port}"), "--log-format", "text"],
    );
    wait_for_socket(&socket).await;
    let mut c = ControllerClient::new(connect(&socket).await.unwrap());
    let mut seen: std::collections::BTreeMap<String, f64> = Default::default();
    let mut count = |method: &str, code: tonic::Code| {
        let code = match code {
            tonic::Code::Ok => "OK".to_string(),
            tonic::Code::Cancelled => "Canceled".to_string(),
            other => format!("{other:?}"),
        };
        *seen.entry(format!(r#"method="{method}",code="{code}""#)).or_default() += 1.0;
    };
    let names: Vec<String> = (0..3).map(|i| format!("pvc-metrics-{i}")).collect();
    emulator.fail_next_creates(1, "subnet out of addresses");
    for name in &names {
        let t0 = Instant::now();
        loop {
            let r = c
                .create_volume(create_request(name, 1200, params(&[("subnetId", SUBNET)]), Duration::from_secs(30)))
                .await;
            match r {
                Ok(_) => {
                    count("CreateVolume", tonic::Code::Ok);
                    println!("{name}: created in {:?}", t0.elapsed());
                    break;
                }
                Err(s) => {
                    count("CreateVolume", s.code());
                    println!("{name}: {:?} after {:?}", s.code(), t0.elapsed());
                    assert!(retryable(&s) || s.code() == tonic::Code::Internal, "{s:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    // A bad request: refused, no FSx call.
    let bad = c
        .create_volume(create_request("pvc-bad", 1200, params(&[("subnetId", "nope")]), Duration::from_secs(30)))
        .await;
    count("CreateVolume", bad.unwrap_err().code());
    let before = scrape(port).await;
    let dup_before = samples(&before, "fsx_csi_duplicate_creations_avoided_total").values().sum::<f64>();
    let creates_before = emulator.calls("CreateFileSystem");
    // Each name again: answered from the index, no CreateFileSystem.
    for name in &names {
        c.create_volume(create_request(name, 1200, params(&[("subnetId", SUBNET)]), Duration::from_secs(30)))
            .await
            .unwrap();
        count("CreateVolume", tonic::Code::Ok);
    }
    assert_eq!(emulator.calls("CreateFileSystem"), creates_before);

    // FSx requests: exactly the emulator's answers, per operation and outcome. A call can be
    // in flight when the two are read (the start-up listing of backups retries under this
    // throttling on its own schedule): wait until the driver has counted every answer the
    // emulator gave, then the two must be equal.
    let want_now = || {
        let mut want: std::collections::BTreeMap<String, f64> = Default::default();
        for (op, outcomes) in emulator.outcomes() {
            for (outcome, n) in outcomes {
                want.insert(format!(r#"operation="{op}",outcome="{outcome}""#), n as f64);
            }
        }
        want
    };
    let settle = Instant::now() + Duration::from_secs(60);
    let (text, want) = loop {
        let want = want_now();
        let text = scrape(port).await;
        // A call the client gave up on is counted when the server drops it, just after.
        let grpc_now: std::collections::BTreeMap<String, f64> = samples(&text, "fsx_csi_grpc_requests_total")
            .into_iter()
            .filter(|(k, _)| k.starts_with(r#"method="CreateVolume""#))
            .collect();
        if samples(&text, "fsx_csi_api_requests_total") == want && want_now() == want && grpc_now == seen {
            break (text, want);
        }
        if Instant::now() > settle {
            break (text, want);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got = samples(&text, "fsx_csi_api_requests_total");
    assert_eq!(got, want, "\n{text}");
    assert!(want.keys().any(|k| k.contains("throttled")), "the emulator throttled nothing: {want:?}");
    // Every retry follows a throttle or a server error of the same operation.
    for (labels, retries) in samples(&text, "fsx_csi_api_retries_total") {
        let op = labels.trim_start_matches("operation=").trim_matches('"').to_string();
        let failures: f64 = ["throttled", "server_error"]
            .iter()
            .filter_map(|o| want.get(&format!(r#"operation="{op}",outcome="{o}""#)))
            .sum();
        assert!(retries <= failures, "{op}: {retries} retries after {failures} retryable failures");
    }
    let attempts = samples(&text, "fsx_csi_api_request_duration_seconds_count").values().sum::<f64>();
    assert_eq!(attempts, want.values().sum::<f64>());
    // CSI calls: as the client saw them.
    let grpc: std::collections::BTreeMap<String, f64> = samples(&text, "fsx_csi_grpc_requests_total")
        .into_iter()
        .filter(|(k, _)| k.starts_with(r#"method="CreateVolume""#))
        .collect();
    assert_eq!(grpc, seen, "\n{text}");
    // Provisioning.
    let dup = samples(&text, "fsx_csi_duplicate_creations_avoided_total").values().sum::<f64>();
    assert_eq!(dup - dup_before, names.len() as f64);
    assert_eq!(samples(&text, "fsx_csi_failed_file_systems_cleaned_up_total").values().sum::<f64>(), 1.0);
    let created = samples(&text, "fsx_csi_file_system_creation_seconds_count").values().sum::<f64>();
    assert!((1.0..=names.len() as f64).contains(&created), "{created} creations timed\n{text}");
    for (kind, n) in samples(&text, "fsx_csi_file_systems_in_flight") {
        assert_eq!(n, 0.0, "{kind} still in flight");
    }
    // No label carries a volume name or id.
    assert!(!text.contains("pvc-metrics") && !text.contains("fs-0"), "{text}");
    drop(c);
    assert!(terminate(&mut child).await.success());
}

/// `--kubelet-registration-path`: the node plugin registers itself as node-driver-registrar
/// would. A client calling as the kubelet's plugin watcher does (GetInfo, then
/// NotifyRegistrationStatus) on `plugins_registry/fsx.csi.aws.com-reg.sock` gets the driver's
/// name, the CSI socket's host path and a 1.x version; the kubelet's verdict is logged; at exit
/// the registration socket is removed first, and only this instance's.
#[tokio::test]
async fn the_node_plugin_registers_itself_with_the_kubelet() {
    use fsx_csi_driver::pluginregistration::registration_client::RegistrationClient;
    use fsx_csi_driver::pluginregistration::{InfoRequest, RegistrationStatus};
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir(&kubelet).unwrap();
    let socket = kubelet.join("plugins/fsx.csi.aws.com/csi.sock");
    let reg = kubelet.join("plugins_registry/fsx.csi.aws.com-reg.sock");
    let log = dir.path().join("node.log");
    let host_path = "/var/lib/kubelet/plugins/fsx.csi.aws.com/csi.sock";
    let spawn = |log: &Path| {
        Running(
            Command::new(BIN)
                .args(["--mode", "node", "--node-id", "n1", "--endpoint", &format!("unix://{}", socket.display())])
                .arg("--kubelet-dir")
                .arg(&kubelet)
                .args(["--kubelet-registration-path", host_path])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let mut node = spawn(&log);
    wait_for_socket(&reg).await;
    let mode = std::fs::metadata(&reg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the registration socket is root's only");
    let mut watcher = RegistrationClient::new(connect(&reg).await.unwrap());
    let info = watcher.get_info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (info.r#type.as_str(), info.name.as_str(), info.endpoint.as_str()),
        ("CSIPlugin", "fsx.csi.aws.com", host_path)
    );
    assert!(info.supported_versions.iter().all(|v| v.starts_with("1.")) && !info.supported_versions.is_empty());
    watcher
        .notify_registration_status(RegistrationStatus { plugin_registered: true, error: String::new() })
        .await
        .unwrap();
    // The endpoint it names serves CSI.
    assert_eq!(plugin_name(&socket).await, "fsx.csi.aws.com");

    // A second instance refuses to take over the live registration socket.
    let second = dir.path().join("second.log");
    let out = Command::new(BIN)
        .args([
            "--mode",
            "node",
            "--node-id",
            "n1",
            "--endpoint",
            &format!("unix://{}", dir.path().join("other.sock").display()),
        ])
        .arg("--kubelet-dir")
        .arg(&kubelet)
        .args(["--kubelet-registration-path", host_path])
        .stderr(std::fs::File::create(&second).unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = std::fs::read_to_string(&second).unwrap();
    assert!(err.contains("register with the kubelet") && err.contains("running process"), "{err}");

    assert!(terminate(&mut node).await.success());
    assert!(!reg.exists() && !socket.exists(), "the sockets outlived the plugin");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("registered with the kubelet"), "{text}");
    // The node plugin says at start what the node has of the Lustre client (this machine: none).
    assert!(text.contains("Lustre client kernel module") && !text.contains("module is loaded"), "{text}");

    // A refusal is logged with the kubelet's reason; a bad path is refused at start.
    let mut node = spawn(&log);
    wait_for_socket(&reg).await;
    let mut watcher = RegistrationClient::new(connect(&reg).await.unwrap());
    watcher
        .notify_registration_status(RegistrationStatus { plugin_registered: false, error: "no 1.x version".into() })
        .await
        .unwrap();
    assert!(terminate(&mut node).await.success());
    assert!(std::fs::read_to_string(&log).unwrap().contains("no 1.x version"));
    let out = Command::new(BIN)
        .args(["--mode", "node", "--node-id", "n1", "--endpoint", &format!("unix://{}", socket.display())])
        .arg("--kubelet-dir")
        .arg(&kubelet)
        .args(["--kubelet-registration-path", "relative/csi.sock"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kubelet-registration-path"));
}
