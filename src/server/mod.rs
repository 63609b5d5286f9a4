//! The gRPC server on a unix socket.
//!
//! [`bind`] creates the socket with mode 0600 in a directory that is never world-writable
//! ([`bind_with_mode`]: the CSI socket is 0660, for the pod's other containers through the
//! directory's group; see `main.rs`). A
//! socket file on which a process still accepts connections belongs to a live driver (two
//! instances overlap during a DaemonSet update with surge, or a manual restart): it is never
//! taken over, and start-up fails naming the path (the kubelet restarts the pod once the old
//! one is gone). Only a stale socket, where nothing listens, is replaced; never a regular file
//! or directory someone pointed `--endpoint` at. At exit, [`SocketFile::remove`] unlinks the path
//! only if it is still the socket this process bound, so an old instance's shutdown never
//! deletes a newer one's socket.
//!
//! [`serve`] takes an already-bound listener and a shutdown future, so tests start the real
//! server in-process on a temp socket. Each connection accepts any `:authority`
//! (`authority`), so non-Go gRPC clients work too.
//!
//! The socket is root's only, but the node plugin is root on every node and must outlive a
//! misbehaving client: every resource a peer can make the server hold is bounded ([`Limits`]).
//! Connections are capped and half-open or idle ones make room for new clients
//! (`connections`); the preface and each header block must arrive promptly, and a header
//! block may neither decode past the advertised header-list size nor span more CONTINUATION
//! frames than `h2` allows (`authority`, `hpack`); streams per connection, reset streams
//! and calls in progress are capped, and a request body must arrive whole, promptly, within a
//! shared byte budget (`admission`); idle connections are pinged, and a peer that stops
//! answering is dropped.

mod admission;
pub(crate) mod authority;
pub(crate) mod connections;
pub(crate) mod hpack;

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::time::Duration;

use tokio::net::UnixListener;

use crate::csi::controller::ControllerService;
use crate::csi::identity::IdentityService;
use crate::csi::node::NodeService;
use crate::proto::controller_server::ControllerServer;
use crate::proto::identity_server::IdentityServer;
use crate::proto::node_server::NodeServer;

/// The services one process serves.
pub struct Services {
    pub identity: IdentityService,
    pub controller: Option<ControllerService>,
    pub node: Option<NodeService>,
}

/// What the server holds at most, whatever its clients do; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections (the kubelet, the registrar and the probe use one each; the
    /// controller's sidecars four in all).
    pub max_connections: usize,
    /// Concurrent streams per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_streams: u32,
    /// Streams the server may reset for a client's errors before it closes the connection.
    pub max_error_resets: usize,
    /// Time to send the connection preface, and to finish each header block.
    pub handshake_time: Duration,
    /// Calls in progress, request bodies' time and shared byte budget.
    pub admission: admission::Bounds,
    /// The HTTP/2 connection window: what a stalled peer can make the server buffer per
    /// connection. h2 also bounds the framing overhead of small DATA frames buffered at once
    /// to half of it (and closes the connection with ENHANCE_YOUR_CALM beyond): each call's
    /// request is one small frame, so the window must hold `max_streams` of them arriving at
    /// once (about 160 bytes of budget each).
    pub connection_window: u32,
    /// An idle connection is pinged this often, and dropped if the ping is not answered
    /// within `keepalive_timeout`.
    pub keepalive: Duration,
    pub keepalive_timeout: Duration,
}

impl Limits {
    /// The node plugin's: the kubelet calls for every pod of the node at once (hundreds of
    /// publishes), within the chart's 64 MiB.
    pub const NODE: Limits = Limits {
        max_connections: 32,
        max_streams: 256,
        max_error_resets: 1024,
        handshake_time: Duration::from_secs(5),
        admission: admission::Bounds { max_calls: 512, body_time: Duration::from_secs(10), max_body_bytes: 8 << 20 },
        keepalive: Duration::from_secs(60),
        keepalive_timeout: Duration::from_secs(20),
        connection_window: 256 * 1024,
    };

    /// The controller's (and both modes'): the external-provisioner runs up to its worker
    /// count of CreateVolume calls on one connection, each waiting for minutes, within the
    /// chart's 128 MiB.
    pub const CONTROLLER: Limits = Limits {
        max_connections: 64,
        max_streams: 2048,
        admission: admission::Bounds { max_calls: 2048, max_body_bytes: 16 << 20, ..Self::NODE.admission },
        // 2048 requests arriving at once (a provisioner with that many workers): 2048 x 160
        // bytes of small-frame budget, which is half the window.
        connection_window: 1024 * 1024,
        ..Self::NODE
    };

    /// The limits for what `services` serve.
    pub fn for_services(services: &Services) -> Limits {
        if services.controller.is_some() { Self::CONTROLLER } else { Self::NODE }
    }
}

/// Turns `unix:///path`, `unix:/path` or `/path` into a socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint.strip_prefix("unix://").or_else(|| endpoint.strip_prefix("unix:")).unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(format!("endpoint {} must be unix:///absolute/path/to/csi.sock", crate::text::Shown(endpoint)));
    }
    Ok(PathBuf::from(path))
}

/// The socket file this process bound, identified by device and inode.
#[derive(Debug, Clone)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Removes the socket file, if it is still the one this process bound (same device and
    /// inode). Returns whether it was removed.
    pub fn remove(&self) -> bool {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => std::fs::remove_file(&self.path).is_ok(),
            _ => false,
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether a process accepts connections on the socket at `path`. A full backlog counts as
/// alive; a refused connection or a vanished file as not.
fn is_live(path: &Path) -> io::Result<bool> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)?;
    let addr = UnixAddr::new(path)?;
    match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINPROGRESS) => Ok(true),
        Err(nix::errno::Errno::ECONNREFUSED | nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// [`bind_with_mode`] with mode 0600: the owner only.
pub fn bind(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    bind_with_mode(path, 0o600)
}

/// Binds a unix socket at `path` with `mode`, creating its directory (mode 0750) if needed.
/// Refuses a path where a live process listens, or that is not a socket.
pub fn bind_with_mode(path: &Path, mode: u32) -> io::Result<(UnixListener, SocketFile)> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if is_live(path)? {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is the socket of a running process (another instance of the driver?); refusing to take it over. This instance will start once that process has exited",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; refusing to replace it", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        // Mode 0750 whatever the umask (a umask only removes bits).
        std::fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o770))?;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((listener, SocketFile { path: path.to_path_buf(), dev: meta.dev(), ino: meta.ino() }))
}

/// Serves `services` on `listener` within [`Limits::for_services`] until `shutdown`
/// completes, then finishes the calls in progress and returns.
pub async fn serve(
    listener: UnixListener,
    services: Services,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let limits = Limits::for_services(&services);
    serve_with(listener, services, limits, shutdown).await
}

/// [`serve`] with the given limits.
pub async fn serve_with(
    listener: UnixListener,
    services: Services,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = connections::Incoming::new(listener, limits.max_connections, limits.handshake_time);
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams)
        .http2_max_header_list_size(hpack::MAX_HEADER_LIST as u32)
        .max_frame_size(authority::MAX_FRAME as u32)
        .http2_max_local_error_reset_streams(Some(limits.max_error_resets))
        .http2_max_pending_accept_reset_streams(Some(20))
        // What a stalled peer can make the server buffer per stream (HTTP/2's default; CSI
        // messages are a few KiB) and per connection (see Limits::connection_window).
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(limits.connection_window)
        .http2_keepalive_interval(Some(limits.keepalive))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .layer(crate::metrics::GrpcMetricsLayer)
        .layer(admission::AdmissionLayer::new(limits.admission))
        .add_service(IdentityServer::new(services.identity))
        .add_optional_service(services.controller.map(ControllerServer::new))
        .add_optional_service(services.node.map(NodeServer::new))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(socket_path("unix:///csi/csi.sock").unwrap(), PathBuf::from("/csi/csi.sock"));
        assert_eq!(socket_path("unix:/csi/csi.sock").unwrap(), PathBuf::from("/csi/csi.sock"));
        assert_eq!(socket_path("/csi/csi.sock").unwrap(), PathBuf::from("/csi/csi.sock"));
        assert!(socket_path("tcp://127.0.0.1:10000").is_err());
        assert!(socket_path("unix://relative").is_err());
    }

    #[tokio::test]
    async fn bind_is_0600_and_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sub/csi.sock");
        let first = bind(&sock).unwrap();
        assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("sub")).unwrap().permissions().mode() & 0o777, 0o750);
        // A live socket is not taken over.
        let err = bind(&sock).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&sock.display().to_string()), "{err}");
        drop(first);
        // A stale socket is replaced.
        let (_l, second) = bind(&sock).unwrap();
        assert!(second.remove());
        assert!(!sock.exists());
        // A regular file is not.
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep me").unwrap();
        assert!(bind(&file).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    }

    #[tokio::test]
    async fn only_our_own_socket_is_removed_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("csi.sock");
        let (_l1, old) = bind(&sock).unwrap();
        // The old instance's socket disappears (its pod's volume was cleaned) and a new
        // instance binds the path; the old one's exit must leave the new socket alone.
        std::fs::remove_file(&sock).unwrap();
        let (_l2, new) = bind(&sock).unwrap();
        assert!(!old.remove());
        assert!(sock.exists());
        assert!(new.remove());
        assert!(!sock.exists());
    }

    /// A gRPC channel over the socket at `sock`.
    async fn channel_to(sock: &Path) -> tonic::transport::Channel {
        let path = sock.to_path_buf();
        tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move { tokio::net::UnixStream::connect(path).await.map(hyper_util::rt::TokioIo::new) }
            }))
            .await
            .unwrap()
    }

    /// A provisioner with as many workers as the controller allows streams sends that many
    /// requests at once on one connection: each is a small DATA frame, all buffered before
    /// their calls read them, and h2 closes a connection whose small frames exceed half its
    /// window ("too_many_data_frames"). The controller's window holds them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_as_many_calls_as_streams_on_one_connection_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("csi.sock");
        let (listener, _) = bind(&sock).unwrap();
        let services = Services { identity: IdentityService::new(None), controller: None, node: None };
        tokio::spawn(serve_with(listener, services, Limits::CONTROLLER, std::future::pending()));
        let channel = channel_to(&sock).await;
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..Limits::CONTROLLER.max_streams {
            let mut client = crate::proto::identity_client::IdentityClient::new(channel.clone());
            calls.spawn(async move { client.get_plugin_info(crate::proto::GetPluginInfoRequest {}).await.map(|_| ()) });
        }
        let failed: Vec<tonic::Status> = calls.join_all().await.into_iter().filter_map(Result::err).collect();
        assert!(
            failed.is_empty(),
            "{} of {} failed, first: {:?}",
            failed.len(),
            Limits::CONTROLLER.max_streams,
            failed.first()
        );
    }

    /// Calls in progress are capped (one more is RESOURCE_EXHAUSTED at once), and a request
    /// whose body never arrives gives its slot back after the body time.
    #[tokio::test]
    async fn calls_in_progress_and_unfinished_bodies_are_bounded() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("csi.sock");
        let (listener, _) = bind(&sock).unwrap();
        let limits = Limits {
            admission: admission::Bounds {
                max_calls: 1,
                body_time: Duration::from_millis(500),
                max_body_bytes: 1 << 20,
            },
            ..Limits::NODE
        };
        let services = Services { identity: IdentityService::new(None), controller: None, node: None };
        tokio::spawn(serve_with(listener, services, limits, std::future::pending()));
        // A request whose body never comes: HEADERS without END_STREAM.
        let mut raw = tokio::net::UnixStream::connect(&sock).await.unwrap();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let mut block = vec![0x83, 0x86, 0x04, 30];
        block.extend_from_slice(b"/csi.v1.Identity/GetPluginInfo");
        block.extend_from_slice(&[0x01, 9]);
        block.extend_from_slice(b"localhost");
        block.extend_from_slice(&[0x0f, 0x10, 16]);
        block.extend_from_slice(b"application/grpc");
        bytes.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
        bytes.extend_from_slice(&[0x1, 0x4, 0, 0, 0, 1]);
        bytes.extend_from_slice(&block);
        raw.write_all(&bytes).await.unwrap();

        let channel = channel_to(&sock).await;
        let mut client = crate::proto::identity_client::IdentityClient::new(channel);
        // Once the held request has the only slot, a new call is refused at once.
        let refused = loop {
            match client.get_plugin_info(crate::proto::GetPluginInfoRequest {}).await {
                Err(s) => break s,
                Ok(_) => tokio::task::yield_now().await,
            }
        };
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
        // The held request is answered (its status, in a HEADERS frame on stream 1) when its
        // body time is up...
        let mut input = Vec::new();
        let mut buf = [0u8; 4096];
        'answered: loop {
            let n = raw.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            input.extend_from_slice(&buf[..n]);
            let mut at = 0;
            while at + 9 <= input.len() {
                let len = u32::from_be_bytes([0, input[at], input[at + 1], input[at + 2]]) as usize;
                let stream = u32::from_be_bytes([input[at + 5], input[at + 6], input[at + 7], input[at + 8]]);
                if input[at + 3] == 0x1 && stream == 1 {
                    break 'answered;
                }
                at += 9 + len;
            }
        }
        // ...and its slot is free again.
        client.get_plugin_info(crate::proto::GetPluginInfoRequest {}).await.unwrap();
    }

    #[tokio::test]
    async fn a_backlogged_live_socket_still_counts_as_live() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("csi.sock");
        let _live = bind(&sock).unwrap();
        // Fill the backlog without accepting, until a connection would block.
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
        let addr = UnixAddr::new(&sock).unwrap();
        let mut held = Vec::new();
        for _ in 0..5000 {
            let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).unwrap();
            let full = connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).is_err();
            held.push(fd);
            if full {
                break;
            }
        }
        assert!(is_live(&sock).unwrap());
    }
}
