//! The demo's CSI client: walks one volume through its whole life over the driver's socket,
//! the way the external-provisioner and the kubelet would, printing each step.
//!
//! Exits non-zero on any unexpected result.

#![allow(clippy::unwrap_used, reason = "a test program: a panic is the test failing")]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use fsx_csi_driver::proto::controller_client::ControllerClient;
use fsx_csi_driver::proto::identity_client::IdentityClient;
use fsx_csi_driver::proto::node_client::NodeClient;
use fsx_csi_driver::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use fsx_csi_driver::proto::*;
use tonic::Code;

#[derive(Parser)]
#[command(about = "Walk one FSx volume through CreateVolume → NodeStage/Publish → Delete over a CSI socket")]
struct Args {
    /// The driver's socket.
    #[arg(long)]
    socket: PathBuf,
    /// The emulator's base URL, for the API call summary.
    #[arg(long)]
    emulator: String,
    /// The kubelet directory the driver was started with.
    #[arg(long)]
    kubelet_dir: PathBuf,
    /// A hosts file the driver resolves through (the demo maps the file system's DNS name
    /// to 127.0.0.1 there); omit to skip the node steps.
    #[arg(long)]
    hosts_file: Option<PathBuf>,
    /// Requested size in GiB.
    #[arg(long, default_value_t = 3000)]
    size_gib: i64,
    /// Subnet for the StorageClass.
    #[arg(long, default_value = "subnet-0123456789abcdef0")]
    subnet: String,
}

const GIB: i64 = 1 << 30;

fn step(n: u32, title: &str) {
    println!("\n\x1b[1m[{n}] {title}\x1b[0m");
}

fn cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: String::new(),
            mount_flags: vec![],
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode { mode: Mode::MultiNodeMultiWriter as i32 }),
    }
}

fn with_timeout<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

async fn run(a: Args) -> Result<(), String> {
    let channel =
        fsx_csi_tools::connect(&a.socket).await.map_err(|e| format!("connect {}: {e}", a.socket.display()))?;
    let mut identity = IdentityClient::new(channel.clone());
    let mut controller = ControllerClient::new(channel.clone());
    let mut node = NodeClient::new(channel);

    let info = identity.get_plugin_info(GetPluginInfoRequest {}).await.map_err(|e| e.to_string())?.into_inner();
    println!("driver {} {} on {}", info.name, info.vendor_version, a.socket.display());

    step(1, &format!("CreateVolume pvc-demo: {} GiB, SCRATCH_1, subnet {}", a.size_gib, a.subnet));
    let parameters: HashMap<String, String> = [("subnetId".to_string(), a.subnet.clone())].into();
    let request = CreateVolumeRequest {
        name: "pvc-demo".into(),
        capacity_range: Some(CapacityRange { required_bytes: a.size_gib * GIB, limit_bytes: 0 }),
        volume_capabilities: vec![cap()],
        parameters,
        ..Default::default()
    };
    let started = Instant::now();
    step(2, "waiting for the file system (the provisioner retries; each call waits up to 3 s)");
    let mut unavailable = 0;
    let volume = loop {
        match controller.create_volume(with_timeout(request.clone(), Duration::from_secs(3))).await {
            Ok(r) => break r.into_inner().volume.ok_or("CreateVolume returned no volume")?,
            Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Aborted | Code::Unavailable) => {
                unavailable = if s.code() == Code::Unavailable { unavailable + 1 } else { 0 };
                if unavailable > 10 {
                    return Err(format!("the driver stopped answering: {}", s.message()));
                }
                println!("    {:>4.1}s  {:?}: {}", started.elapsed().as_secs_f64(), s.code(), s.message());
                if started.elapsed() > Duration::from_secs(300) {
                    return Err("the file system did not become AVAILABLE in 5 minutes".into());
                }
            }
            Err(s) => return Err(format!("CreateVolume failed: {:?}: {}", s.code(), s.message())),
        }
    };
    let gib = volume.capacity_bytes / GIB;
    println!(
        "    {:>4.1}s  AVAILABLE: {} — {} GiB requested, {} GiB created (SCRATCH_1 sizes: 1200, 2400, then multiples of 3600)",
        started.elapsed().as_secs_f64(),
        volume.volume_id,
        a.size_gib,
        gib
    );
    println!(
        "    volume context: dnsname={} mountname={}",
        volume.volume_context["dnsname"], volume.volume_context["mountname"]
    );
    if a.size_gib == 3000 && gib != 3600 {
        return Err(format!("expected 3600 GiB, got {gib}"));
    }

    step(3, "ControllerGetVolume");
    let got = controller
        .controller_get_volume(ControllerGetVolumeRequest { volume_id: volume.volume_id.clone() })
        .await
        .map_err(|e| format!("ControllerGetVolume: {e}"))?
        .into_inner();
    let condition = got.status.and_then(|s| s.volume_condition).ok_or("no volume condition")?;
    println!("    condition: abnormal={} — {}", condition.abnormal, condition.message);
    if condition.abnormal {
        return Err("volume reported abnormal".into());
    }

    let staging = a.kubelet_dir.join("plugins/kubernetes.io/csi/fsx.csi.aws.com/demo/globalmount");
    let target = a.kubelet_dir.join("pods/demo-pod/volumes/kubernetes.io~csi/pvc-demo/mount");
    match &a.hosts_file {
        None => println!("\n(node steps skipped: they need root and a private mount namespace)"),
        Some(hosts) => {
            let dns = &volume.volume_context["dnsname"];
            let mut text = std::fs::read_to_string(hosts).map_err(|e| format!("{}: {e}", hosts.display()))?;
            text.push_str(&format!("127.0.0.1 {dns}\n"));
            std::fs::write(hosts, text).map_err(|e| format!("{}: {e}", hosts.display()))?;
            step(4, "NodeStageVolume (mount(2) with fstype lustre), then NodePublishVolume");
            let stage = node
                .node_stage_volume(with_timeout(
                    NodeStageVolumeRequest {
                        volume_id: volume.volume_id.clone(),
                        staging_target_path: staging.display().to_string(),
                        volume_capability: Some(cap()),
                        volume_context: volume.volume_context.clone(),
                        ..Default::default()
                    },
                    Duration::from_secs(30),
                ))
                .await;
            let lustre_loaded = std::fs::read_to_string("/proc/filesystems")
                .map(|f| f.lines().any(|l| l.ends_with("\tlustre")))
                .unwrap_or(false);
            match stage {
                Ok(_) => {
                    println!("    staged at {}", staging.display());
                    node.node_publish_volume(NodePublishVolumeRequest {
                        volume_id: volume.volume_id.clone(),
                        staging_target_path: staging.display().to_string(),
                        target_path: target.display().to_string(),
                        volume_capability: Some(cap()),
                        volume_context: volume.volume_context.clone(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("NodePublishVolume: {e}"))?;
                    println!("    published at {}", target.display());
                }
                Err(s) if !lustre_loaded && s.code() == Code::FailedPrecondition && s.message().contains("ENODEV") => {
                    println!("    this machine has no Lustre client, so the kernel refused, as expected:");
                    println!("    {:?}: {}", s.code(), s.message());
                    if staging.exists() {
                        return Err(format!("the failed stage left {} behind", staging.display()));
                    }
                }
                Err(s) => return Err(format!("NodeStageVolume: {:?}: {}", s.code(), s.message())),
            }
            step(5, "NodeUnpublishVolume, NodeUnstageVolume (idempotent: fine even if nothing was mounted)");
            node.node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: volume.volume_id.clone(),
                target_path: target.display().to_string(),
            })
            .await
            .map_err(|e| format!("NodeUnpublishVolume: {e}"))?;
            node.node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: volume.volume_id.clone(),
                staging_target_path: staging.display().to_string(),
            })
            .await
            .map_err(|e| format!("NodeUnstageVolume: {e}"))?;
            println!("    OK");
        }
    }

    step(6, "DeleteVolume (twice: the second is a no-op)");
    for _ in 0..2 {
        controller
            .delete_volume(DeleteVolumeRequest { volume_id: volume.volume_id.clone(), secrets: Default::default() })
            .await
            .map_err(|e| format!("DeleteVolume: {e}"))?;
    }
    println!("    deleted {}", volume.volume_id);

    step(
        7,
        "AWS API calls made, by operation (from the emulator's counters; DescribeSubnets is EC2, once per set of subnets)",
    );
    let stats =
        fsx_csi_tools::http_get(&a.emulator, "/_emulator/stats").await.map_err(|e| format!("emulator stats: {e}"))?;
    let calls = stats.split("\"calls\":{").nth(1).and_then(|s| s.split('}').next()).unwrap_or("");
    for entry in calls.split(',').filter(|s| !s.is_empty()) {
        let (op, n) = entry.split_once(':').unwrap_or((entry, ""));
        println!("    {:<24} {n}", op.trim_matches('"'));
    }
    println!("\ndemo: OK");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
