//! The csi-sanity harness: the driver's real services, composed from the library, served on
//! a socket for csi-sanity.
//!
//! This is test composition, not a mode of the shipped binary: the controller talks to an
//! in-process FSx emulator through the real aws-sdk-fsx client, and the node uses the real
//! syscall mounter with tmpfs standing in for Lustre (`tests/common/tmpfs_mounter.rs`), inside
//! a private mount namespace this program makes for itself (it needs root).
//!
//! Prints `ready` on stdout once the socket is listening.

#![allow(clippy::unwrap_used, reason = "a test program: a panic is the test failing")]

#[allow(dead_code)]
#[path = "../../../common/tmpfs_mounter.rs"]
mod tmpfs_mounter;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use fsx_csi_driver::csi::controller::ControllerService;
use fsx_csi_driver::csi::identity::IdentityService;
use fsx_csi_driver::csi::node::{NodeOptions, NodeService};
use fsx_csi_driver::fsx::aws::AwsFsx;
use fsx_csi_driver::provision::{Options, Provisioner};
use fsx_csi_driver::server::{self, Services};
use fsx_emulator::{Config, Emulator};

#[derive(Parser)]
struct Args {
    /// Socket path to serve on.
    #[arg(long)]
    socket: PathBuf,
    /// Kubelet directory (csi-sanity's mount and staging dirs must lie under it).
    #[arg(long)]
    kubelet_dir: PathBuf,
    /// Emulator creation delay in milliseconds.
    #[arg(long, default_value_t = 300)]
    create_delay_ms: u64,
    /// Controller poll interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// Serve only the node service (for node benchmarks).
    #[arg(long)]
    node_only: bool,
    /// Print the emulator's call counters to stderr on exit.
    #[arg(long)]
    report_calls: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("csi-sanity-harness needs root: it mounts in a private mount namespace");
        return std::process::ExitCode::FAILURE;
    }
    // Single-threaded still: make this process's mounts private to it.
    if let Err(e) = tmpfs_mounter::enter_private_mount_namespace() {
        eprintln!("cannot make a private mount namespace: {e}");
        return std::process::ExitCode::FAILURE;
    }
    fsx_csi_driver::logging::init(fsx_csi_driver::logging::LogFormat::Text);
    // The same runtime shape as the shipped binary: one thread for the node plugin.
    let runtime = if args.node_only {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
    }
    .expect("runtime");
    runtime.block_on(run(args));
    std::process::ExitCode::SUCCESS
}

async fn run(args: Args) {
    let provisioner = if args.node_only {
        None
    } else {
        let emulator = Emulator::start(
            Config {
                create_delay_ms: args.create_delay_ms,
                delete_delay_ms: 200,
                update_delay_ms: 300,
                optimize_delay_ms: 300,
                association_delay_ms: 200,
                backup_delay_ms: 300,
                ..Config::default()
            },
            0,
        )
        .await
        .expect("emulator");
        let conf = aws_sdk_fsx::config::Builder::new()
            .behavior_version(aws_sdk_fsx::config::BehaviorVersion::latest())
            .endpoint_url(emulator.endpoint())
            .region(aws_sdk_fsx::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_fsx::config::Credentials::new("AKIDTEST", "test", None, None, "test"));
        // Subnets' zones from the emulator's EC2 DescribeSubnets, as the driver learns them.
        let ec2_config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_sdk_fsx::config::Credentials::new("AKIDTEST", "test", None, None, "test"),
            ))
            .build();
        let ec2 = fsx_csi_driver::ec2::Ec2Subnets::with_endpoint(&ec2_config, emulator.endpoint()).expect("EC2 client");
        let provisioner = Provisioner::new(
            Arc::new(AwsFsx::from_conf(conf)),
            Options {
                poll_interval: Some(Duration::from_millis(args.poll_ms)),
                subnet_zones: Some(Arc::new(fsx_csi_driver::topology::SubnetZones::new(Arc::new(ec2)))),
                ..Options::default()
            },
        );
        provisioner.start();
        if args.report_calls {
            let e = emulator.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("FSx calls: {:?}", e.all_calls());
            });
        }
        Some(provisioner)
    };
    let node = NodeService::new(
        NodeOptions::new(Some("sanity-node".into()), args.kubelet_dir.clone()),
        Arc::new(tmpfs_mounter::TmpfsLustre::default()),
        Arc::new(fsx_csi_driver::metadata::Unavailable),
    )
    .expect("the kubelet directory")
    .zone_from(Arc::new(SanityZone));
    let services = Services {
        identity: IdentityService::new(provisioner.clone()),
        controller: provisioner.map(ControllerService::new),
        node: Some(node),
    };
    let (listener, _) = server::bind(&args.socket).expect("bind");
    println!("ready");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let _ = server::serve(listener, services, shutdown).await;
}

/// The sanity node's zone, as EKS labels a node (the plugin reads its Node's label; there is
/// no API server here).
struct SanityZone;

#[async_trait::async_trait]
impl fsx_csi_driver::topology::NodeZone for SanityZone {
    async fn zone(&self, _: &str) -> Result<Option<String>, String> {
        Ok(Some("us-east-1a".into()))
    }
}
