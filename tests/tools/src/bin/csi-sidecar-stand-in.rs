//! Stand-ins for node-driver-registrar and livenessprobe in the node tier: the Go module proxy
//! refuses both (their go.mod says v1 while their tags are v2.x), so they cannot be built here.
//! Each takes exactly the flags the manifests pass to the real sidecar (an unknown flag fails
//! the container, so the manifests and the stand-in cannot drift apart) and does what the
//! kubelet and the probes see of the real one:
//!
//! - `registrar`: GetPluginInfo on `--csi-address` for the driver's name, then serves the
//!   kubelet's `pluginregistration/v1` API on `<registration dir>/<driver>-reg.sock` (the
//!   driver's own `registration` module) naming `--kubelet-registration-path`; its
//!   `--http-endpoint` `/healthz` answers 200 once the kubelet said "registered" and the CSI
//!   socket is there, 500 before.
//! - `livenessprobe`: `/healthz` on `--health-port` calls the driver's Probe within
//!   `--probe-timeout`: 200 when ready, 500 otherwise.

#![allow(clippy::unwrap_used, reason = "a test program: a panic is the test failing")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fsx_csi_driver::proto::identity_client::IdentityClient;
use fsx_csi_driver::proto::{GetPluginInfoRequest, ProbeRequest};
use fsx_csi_driver::registration::{Outcome, RegistrationService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    sidecar: Sidecar,
}

#[derive(Subcommand)]
enum Sidecar {
    /// node-driver-registrar's flags as the manifests use them.
    Registrar {
        #[arg(long)]
        csi_address: PathBuf,
        #[arg(long)]
        kubelet_registration_path: String,
        #[arg(long, default_value = "/registration")]
        plugin_registration_path: PathBuf,
        #[arg(long)]
        http_endpoint: Option<String>,
        #[arg(long, default_value = "0")]
        v: u8,
    },
    /// livenessprobe's flags as the manifests use them.
    Livenessprobe {
        #[arg(long)]
        csi_address: PathBuf,
        #[arg(long, default_value = "9808")]
        health_port: u16,
        #[arg(long, default_value = "1s", value_parser = seconds)]
        probe_timeout: Duration,
        #[arg(long, default_value = "0")]
        v: u8,
    },
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.strip_suffix('s').and_then(|n| n.parse().ok()).map(Duration::from_secs).ok_or(format!("{s}: want <n>s"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    match Cli::parse().sidecar {
        Sidecar::Registrar {
            csi_address, kubelet_registration_path, plugin_registration_path, http_endpoint, ..
        } => registrar(&csi_address, &kubelet_registration_path, &plugin_registration_path, http_endpoint).await,
        Sidecar::Livenessprobe { csi_address, health_port, probe_timeout, .. } => {
            // PID 1 of its container: SIGTERM stops it only through a handler.
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            tokio::select! {
                _ = livenessprobe(csi_address, health_port, probe_timeout) => {}
                _ = term.recv() => {}
            }
        }
    }
}

async fn plugin_name(csi: &Path) -> String {
    loop {
        if let Ok(channel) = fsx_csi_tools::connect(csi).await
            && let Ok(r) = IdentityClient::new(channel).get_plugin_info(GetPluginInfoRequest {}).await
        {
            return r.into_inner().name;
        }
        eprintln!("stand-in registrar: waiting for the CSI socket {}", csi.display());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn registrar(csi: &Path, endpoint: &str, dir: &Path, http: Option<String>) {
    let name = plugin_name(csi).await;
    let service = RegistrationService::new(endpoint).unwrap();
    let mut status = service.status();
    let socket = dir.join(format!("{name}-reg.sock"));
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    eprintln!("stand-in registrar: serving {} for {name} at {endpoint}", socket.display());
    let registered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(addr) = http {
        let addr = if addr.starts_with(':') { format!("0.0.0.0{addr}") } else { addr };
        let (registered, csi) = (Arc::clone(&registered), csi.to_path_buf());
        tokio::spawn(serve_healthz(addr, move || {
            let ok = registered.load(std::sync::atomic::Ordering::SeqCst) && csi.exists();
            async move { ok }
        }));
    }
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let now = status.borrow().clone();
            eprintln!("stand-in registrar: the kubelet says {now:?}");
            registered.store(now == Outcome::Registered, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    fsx_csi_driver::registration::serve(listener, service, async move {
        term.recv().await;
    })
    .await
    .unwrap();
    // As the real registrar: the socket goes at exit, so the kubelet deregisters the plugin.
    let _ = std::fs::remove_file(&socket);
}

async fn livenessprobe(csi: PathBuf, port: u16, timeout: Duration) {
    serve_healthz(format!("0.0.0.0:{port}"), move || {
        let csi = csi.clone();
        async move {
            let probe = async {
                let channel = fsx_csi_tools::connect(&csi).await.ok()?;
                let r = IdentityClient::new(channel).probe(ProbeRequest {}).await.ok()?;
                Some(r.into_inner().ready.is_none_or(|r| r))
            };
            matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
        }
    })
    .await;
}

/// Answers `GET /healthz` with 200 when `healthy` says so, 500 otherwise; 404 elsewhere.
async fn serve_healthz<F, Fut>(addr: String, healthy: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let listener = TcpListener::bind(&addr).await.unwrap();
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.ok().and_then(Result::ok);
        let line = String::from_utf8_lossy(&buf[..n.unwrap_or(0)]).lines().next().unwrap_or("").to_string();
        let status = if line.starts_with("GET /healthz ") {
            if healthy().await { "200 OK" } else { "500 Internal Server Error" }
        } else {
            "404 Not Found"
        };
        let _ = stream
            .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
            .await;
    }
}
