//! Test harness: the FSx emulator, the real CSI server on a temp socket, and tonic clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fsx_csi_driver::csi::controller::ControllerService;
use fsx_csi_driver::csi::identity::IdentityService;
use fsx_csi_driver::csi::node::NodeService;
use fsx_csi_driver::fsx::aws::AwsFsx;
use fsx_csi_driver::proto::controller_client::ControllerClient;
use fsx_csi_driver::proto::identity_client::IdentityClient;
use fsx_csi_driver::proto::node_client::NodeClient;
use fsx_csi_driver::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use fsx_csi_driver::proto::*;
use fsx_csi_driver::provision::{Options, Provisioner};
use fsx_csi_driver::server::{self, Services};
use fsx_emulator::{Config, Emulator};
use tonic::transport::Channel;

pub const SUBNET: &str = "subnet-0123456789abcdef0";
pub const GIB: i64 = 1 << 30;

/// Every line the driver logged in this test process (installed once, at `debug` for the
/// driver, in `format`).
pub fn captured_logs(format: fsx_csi_driver::logging::LogFormat) -> Arc<std::sync::Mutex<Vec<u8>>> {
    static BUFFER: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
            let filter = tracing_subscriber::EnvFilter::new(format!(
                "{},fsx_csi_driver=debug",
                fsx_csi_driver::logging::DEFAULT_FILTER
            ));
            fsx_csi_driver::logging::init_to(
                format,
                filter,
                fsx_csi_driver::logging::Output::Capture(Arc::clone(&buffer)),
            );
            buffer
        })
        .clone()
}

/// Checks every line logged so far: none longer than 8 KiB, none with a raw control
/// character (a forged line or a terminal escape). Returns how many lines were read.
pub fn assert_logs_clean(format: fsx_csi_driver::logging::LogFormat) -> usize {
    let buffer = captured_logs(format);
    let text = String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned();
    let mut lines = 0;
    for line in text.split_terminator('\n') {
        lines += 1;
        assert!(line.len() <= fsx_csi_driver::logging::MAX_LINE_BYTES, "a {}-byte log line", line.len());
        assert!(
            !line.chars().any(char::is_control),
            "a control character in the log line {:?}",
            &line[..line.len().min(300)]
        );
    }
    lines
}

/// An FSx client for the emulator, as the driver builds it (adaptive retries, time-outs).
pub fn fsx_client(emulator: &Emulator) -> AwsFsx {
    let conf = aws_sdk_fsx::config::Builder::new()
        .behavior_version(aws_sdk_fsx::config::BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint())
        .region(aws_sdk_fsx::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_fsx::config::Credentials::new("AKIDTEST", "test-secret-key", None, None, "test"));
    AwsFsx::from_conf(conf)
}

/// The EC2 client for the emulator's `DescribeSubnets`, as the driver builds it.
pub fn ec2_client(emulator: &Emulator) -> fsx_csi_driver::ec2::Ec2Subnets {
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_sdk_fsx::config::Credentials::new("AKIDTEST", "test-secret-key", None, None, "test"),
        ))
        .build();
    fsx_csi_driver::ec2::Ec2Subnets::with_endpoint(&config, emulator.endpoint()).unwrap()
}

/// Emulator config with a creation delay.
pub fn config(create_delay_ms: u64) -> Config {
    Config { create_delay_ms, delete_delay_ms: 200, ..Config::default() }
}

/// A running driver (controller, and node if given) on a temp socket.
pub struct Driver {
    pub socket: PathBuf,
    pub provisioner: Option<Arc<Provisioner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Driver {
    /// Starts a controller-only driver on the emulator with a fast poll interval.
    pub async fn controller(emulator: &Emulator, poll: Duration) -> Self {
        Self::controller_with(emulator, poll, Duration::from_secs(300)).await
    }

    /// Starts a controller-only driver on the emulator with the given poll and resync intervals.
    pub async fn controller_with(emulator: &Emulator, poll: Duration, resync: Duration) -> Self {
        let provisioner = Provisioner::new(
            Arc::new(fsx_client(emulator)),
            Options {
                extra_tags: vec![("team".into(), "storage".into())],
                poll_interval: Some(poll),
                resync_interval: resync,
                subnet_zones: Some(Arc::new(fsx_csi_driver::topology::SubnetZones::new(Arc::new(ec2_client(
                    emulator,
                ))))),
                events: None,
                progress_every: Duration::from_secs(60),
            },
        );
        provisioner.start();
        Self::serve(Some(provisioner), None).await
    }

    /// Starts a driver with the given services.
    pub async fn serve(provisioner: Option<Arc<Provisioner>>, node: Option<NodeService>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("csi.sock");
        let (listener, _) = server::bind(&socket).unwrap();
        let services = Services {
            identity: IdentityService::new(provisioner.clone()),
            controller: provisioner.clone().map(ControllerService::new),
            node,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::serve(listener, services, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let driver = Self { socket, provisioner, stop: Some(stop), task: Some(task), _dir: dir };
        if let Some(p) = &driver.provisioner {
            for _ in 0..500 {
                if p.is_ready() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        driver
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.socket).await.unwrap()
    }

    pub async fn controller_client(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel().await)
    }

    pub async fn identity_client(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel().await)
    }

    pub async fn node_client(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel().await)
    }

    /// Stops the server, as a controller restart would.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

pub fn mount_cap(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: String::new(),
            mount_flags: vec![],
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

pub fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A CreateVolume request with `deadline` as its gRPC timeout.
pub fn create_request(
    name: &str,
    required_gib: i64,
    parameters: HashMap<String, String>,
    deadline: Duration,
) -> tonic::Request<CreateVolumeRequest> {
    let mut req = tonic::Request::new(CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange { required_bytes: required_gib * GIB, limit_bytes: 0 }),
        volume_capabilities: vec![mount_cap(Mode::MultiNodeMultiWriter)],
        parameters,
        ..Default::default()
    });
    req.set_timeout(deadline);
    req
}

/// True for the answers a CO treats as "not done yet, call again" when a call runs out of
/// time: the driver's own `DeadlineExceeded`, or, on a loaded machine, the client's timer
/// firing first (`Cancelled: Timeout expired`).
pub fn timed_out(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::DeadlineExceeded
        || (s.code() == tonic::Code::Cancelled && s.message().contains("Timeout expired"))
}

/// What a sidecar's retry loop treats as "try again": a timeout, `Aborted` when the previous
/// attempt's handler still holds the volume (the client's own timer can fire before the
/// server's deadline on a loaded machine), or `Unavailable` (the controller still loading its
/// index, which takes longer under throttling on a loaded machine).
pub fn retryable(s: &tonic::Status) -> bool {
    timed_out(s) || matches!(s.code(), tonic::Code::Aborted | tonic::Code::Unavailable)
}

/// Calls CreateVolume the way the external-provisioner does: retry on non-final codes until
/// success or a final error.
pub async fn create_until_done(
    client: &mut ControllerClient<Channel>,
    name: &str,
    gib: i64,
    parameters: HashMap<String, String>,
    per_call: Duration,
    max_tries: usize,
) -> Result<Volume, tonic::Status> {
    let mut last = None;
    for _ in 0..max_tries {
        match client.create_volume(create_request(name, gib, parameters.clone(), per_call)).await {
            Ok(r) => return Ok(r.into_inner().volume.unwrap()),
            Err(s) if retryable(&s) => {
                last = Some(s);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => return Err(s),
        }
    }
    Err(last.unwrap())
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
