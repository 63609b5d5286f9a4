//! Shared bits of the test-only programs.

#![allow(clippy::unwrap_used, reason = "a test program: a panic is the test failing")]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on the emulator (plain HTTP/1.1 on loopback); returns the body.
pub async fn http_get(base: &str, path: &str) -> std::io::Result<String> {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await??;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok(body)
}

/// A gRPC channel to a CSI socket, as the sidecars dial it (authority `localhost`).
pub async fn connect(path: &std::path::Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    // The URI is required by the API but unused: the connector dials the socket.
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
}

/// (VmRSS, VmHWM) of process `pid`, in KiB (0 when unreadable).
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The `p` quantile (0..=1) of sorted durations; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A child process that gets SIGTERM and is reaped when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Waits until the unix socket at `path` accepts a connection; returns the time since `start`.
/// Panics after 30 s.
pub async fn wait_socket(path: &std::path::Path, start: std::time::Instant) -> Duration {
    loop {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "socket {} never became ready", path.display());
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}
