//! `fsx-csi-driver`: wires the real FSx client and the syscall mounter into the CSI services
//! and serves them on the endpoint's unix socket until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use fsx_csi_driver::cli::{Cli, Command, Mode, PreStopArgs};
use fsx_csi_driver::csi::controller::ControllerService;
use fsx_csi_driver::csi::identity::IdentityService;
use fsx_csi_driver::csi::node::{NodeOptions, NodeService};
use fsx_csi_driver::drain::{self, ApiNode, Outcome, Progress, Settings};
use fsx_csi_driver::error::Chain;
use fsx_csi_driver::fsx::aws::AwsFsx;
use fsx_csi_driver::kube::{KubeClient, KubeConfig};
use fsx_csi_driver::metadata::Imds;

use fsx_csi_driver::mount::paths::KubeletDir;
use fsx_csi_driver::provision::{Options, Provisioner};
use fsx_csi_driver::server::{self, Services};
use fsx_csi_driver::{DRIVER_NAME, VERSION, logging};

/// How long running calls may take to finish after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    // Every call waits on FSx or on a mount worker thread, so few runtime threads are needed:
    // two for the controller; one for the node plugin, which keeps its footprint and its
    // wake-up latency low (mounts run on their own worker threads).
    let runtime = if cli.mode == Mode::Node || cli.command.is_some() {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::PreStop(ref args)) => runtime.block_on(pre_stop(&cli, args)),
        None => runtime.block_on(run(cli)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let path = server::socket_path(&cli.endpoint)?;
    tracing::info!(driver = DRIVER_NAME, version = VERSION, mode = ?cli.mode, endpoint = %path.display(), "starting");

    let mut subdirs = None;
    let provisioner = if cli.mode.controller() {
        let shared = fsx_csi_driver::fsx::aws::load_config(cli.region.clone()).await;
        let fsx = AwsFsx::from_shared(&shared);
        let subnet_zones = match fsx_csi_driver::ec2::Ec2Subnets::new(&shared) {
            Ok(ec2) => Some(Arc::new(fsx_csi_driver::topology::SubnetZones::new(Arc::new(ec2)))),
            Err(e) => {
                tracing::error!(error = %e, "no EC2 client: subnets' zones are unknown, and StorageClasses of several subnets are refused");
                None
            }
        };
        tracing::info!(region = fsx.region().as_deref().unwrap_or("(unset)"), "FSx client configured");
        let fsx: Arc<dyn fsx_csi_driver::fsx::Fsx> = Arc::new(fsx);
        if let Some(dir) = &cli.subdirectory_mount_dir {
            tracing::info!(mount_dir = %dir.display(), "subdirectory volumes enabled: file systems are mounted here");
            let roots = fsx_csi_driver::subdir::roots::LustreRoots::new(dir.clone(), mounter(&cli));
            subdirs = Some(Arc::new(fsx_csi_driver::subdir::service::Subdirs::new(
                Arc::clone(&fsx),
                Arc::new(roots),
                quotas(),
            )));
        }
        let provisioner = Provisioner::new(
            fsx,
            Options {
                extra_tags: cli.extra_tags.0.clone(),
                poll_interval: cli.poll_interval,
                resync_interval: cli.resync_interval,
                subnet_zones,
                events: controller_events(),
                progress_every: cli.progress_event_interval,
            },
        );
        provisioner.start();
        Some(provisioner)
    } else {
        None
    };
    let node_api = if cli.mode.node() {
        fsx_csi_driver::mount::client::report(&lustre_client());
        fsx_csi_driver::mount::lnet::report(&fsx_csi_driver::mount::lnet::detect_here());
        node_api(&cli)
    } else {
        None
    };
    let node = if cli.mode.node() {
        let options = NodeOptions::new(cli.node_id.clone(), cli.kubelet_dir.clone());
        let service = NodeService::new(options, mounter(&cli), Arc::new(Imds))
            .map_err(|e| format!("cannot start the node service: {e}"))?
            .zone_from(Arc::new(fsx_csi_driver::topology::LabelOrImds {
                api: node_api.as_ref().map(|(client, _)| client.clone()),
                metadata: Arc::new(Imds),
            }));
        Some(match &node_api {
            Some((client, node)) => service.warn_with(node_warnings(client.clone(), node.clone())),
            None => service,
        })
    } else {
        None
    };
    let services = Services {
        identity: IdentityService::new(provisioner.clone()),
        controller: provisioner.map(|p| {
            let controller = ControllerService::new(p);
            match subdirs {
                Some(s) => controller.with_subdirs(s),
                None => controller,
            }
        }),
        node,
    };

    if let Some(addr) = cli.metrics_address {
        let bound = fsx_csi_driver::metrics::serve(addr)
            .map_err(|e| format!("cannot serve metrics on {addr} (--metrics-address): {e}"))?;
        tracing::info!(address = %bound, "serving metrics at /metrics");
    }

    // Signal handlers go in before the socket exists, so a SIGTERM right after start still
    // shuts down cleanly.
    let signals = Signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // 0660: the sidecars reach the socket through its group, the directory's. In the
    // controller's pod that is the pod's fsGroup (an emptyDir is given it, setgid), which every
    // container has, so they connect even when the driver runs as root (subdirectory volumes)
    // and they do not. On the node the directory is root's.
    let (listener, socket) =
        server::bind_with_mode(&path, 0o660).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    tracing::info!(socket = %path.display(), "listening");
    // On SIGTERM/SIGINT, stop accepting calls and let running ones finish, for at most
    // SHUTDOWN_GRACE: a call waiting on a creation must not hold up a rollout.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signals.recv().await;
        let _ = stop_tx.send(true);
    });
    let mut graceful_rx = stop_rx.clone();
    let stop_rx_registration = stop_rx.clone();
    let mut grace_rx = stop_rx;
    let graceful = server::serve(listener, services, async move {
        let _ = graceful_rx.wait_for(|stop| *stop).await;
    });
    // Registers with the kubelet once the CSI socket serves (the kubelet calls it right after).
    let registration = match (&cli.kubelet_registration_path, cli.mode.node()) {
        (Some(endpoint), true) => {
            let service = fsx_csi_driver::registration::RegistrationService::new(endpoint)?;
            let reg_path = fsx_csi_driver::registration::socket_path(&cli.kubelet_dir);
            let (listener, reg_socket) = server::bind(&reg_path)
                .map_err(|e| format!("cannot listen on {} to register with the kubelet: {e}", reg_path.display()))?;
            tracing::info!(socket = %reg_path.display(), endpoint = %endpoint, "registering with the kubelet");
            let mut stop = stop_rx_registration;
            let served = fsx_csi_driver::registration::serve(listener, service, async move {
                let _ = stop.wait_for(|stop| *stop).await;
            });
            Some((tokio::spawn(served), reg_socket))
        }
        (Some(_), false) => {
            tracing::warn!("--kubelet-registration-path is for the node plugin (--mode node or all); ignored");
            None
        }
        (None, _) => None,
    };
    if cli.remove_not_ready_taint && cli.mode.node() {
        remove_not_ready_taint(node_api);
    }
    let result = tokio::select! {
        r = graceful => r,
        _ = async {
            let _ = grace_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "calls still running after the grace period; exiting");
            Ok(())
        }
    };
    // The registration socket goes first, so the kubelet deregisters the plugin before its CSI
    // socket disappears. Only this process's own sockets: a newer instance may have bound
    // the paths since.
    if let Some((served, reg_socket)) = registration {
        served.abort();
        if !reg_socket.remove() {
            tracing::info!(socket = %reg_socket.path().display(), "the registration socket is no longer this process's; left in place");
        }
    }
    if !socket.remove() {
        tracing::info!(socket = %path.display(), "the socket is no longer this process's; left in place");
    }
    result.map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// The node plugin's client of the Kubernetes API and its node's name, for the taint and the
/// Node events: only in a pod, with the node name (CSI_NODE_NAME). Without them, says why once;
/// the log lines stand in for the events.
fn node_api(cli: &Cli) -> Option<(KubeClient, String)> {
    let Some(node) = cli.node_id.clone() else {
        tracing::info!("no node name (CSI_NODE_NAME): no Node events, and the agent-not-ready taint is left alone");
        return None;
    };
    if !KubeConfig::in_a_pod() {
        tracing::info!(
            "not running in a pod (no KUBERNETES_SERVICE_HOST): no Node events, and the agent-not-ready taint is left alone"
        );
        return None;
    }
    let file = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    match KubeConfig::in_cluster(file("KUBE_TOKEN_FILE"), file("KUBE_CA_FILE")).and_then(KubeClient::new) {
        Ok(client) => Some((client, node)),
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the Kubernetes API: no Node events, and the agent-not-ready taint is left alone");
            None
        }
    }
}

/// The controller's events on claims and VolumeSnapshots: posted to the API in a pod (the
/// pod's service account, or KUBE_TOKEN_FILE / KUBE_CA_FILE), else written to the log.
fn controller_events() -> Option<Arc<dyn fsx_csi_driver::events::Events>> {
    if !KubeConfig::in_a_pod() {
        tracing::info!("not running in a pod (no KUBERNETES_SERVICE_HOST): events on claims go to the log");
        return None;
    }
    let file = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    match KubeConfig::in_cluster(file("KUBE_TOKEN_FILE"), file("KUBE_CA_FILE")).and_then(KubeClient::new) {
        Ok(client) => {
            let host =
                std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
            Some(fsx_csi_driver::events::KubeEvents::start(client, "fsx-csi-controller", &host))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the Kubernetes API: events on claims go to the log");
            None
        }
    }
}

/// Warning events on the node, posted in the background; a failure is logged and changes
/// nothing else.
fn node_warnings(client: KubeClient, node: String) -> fsx_csi_driver::csi::node::Warn {
    Arc::new(move |reason: &'static str, message: String| {
        let (client, node) = (client.clone(), node.clone());
        tokio::spawn(async move {
            if let Err(e) = client.warn_node(&node, reason, &message).await {
                tracing::warn!(reason, error = %Chain(&e), "cannot post the Node event (the log line before says the same)");
            }
        });
    })
}

/// Starts removing the agent-not-ready taint in the background ([`fsx_csi_driver::taint`]),
/// once the socket serves: it never delays the plugin. Without the API ([`node_api`]), nothing.
fn remove_not_ready_taint(api: Option<(KubeClient, String)>) {
    let Some((client, node)) = api else { return };
    tokio::spawn(async move {
        fsx_csi_driver::taint::wait_for_client(&client, &node, lustre_client, fsx_csi_driver::taint::RECHECK).await;
        fsx_csi_driver::taint::remove_when_registered(&client, &node).await;
    });
}

/// The node plugin's preStop hook ([`drain`]). Fails (exit 1, which the kubelet reports as a
/// FailedPreStopHook event with this output) if the node cannot be read or volumes are still
/// mounted when the time runs out; the pod stops either way.
async fn pre_stop(cli: &Cli, args: &PreStopArgs) -> Result<(), String> {
    let name = cli.node_id.clone().ok_or("pre-stop: no node name: set CSI_NODE_NAME (the pod's spec.nodeName)")?;
    let kubelet = KubeletDir::new(&cli.kubelet_dir).map_err(|e| format!("pre-stop: {e}"))?;
    let config = KubeConfig::in_cluster(args.token_file.clone(), args.ca_file.clone())
        .map_err(|e| format!("pre-stop: cannot tell whether node {name} is being drained: {e}"))?;
    let client = KubeClient::new(config)
        .map_err(|e| format!("pre-stop: cannot tell whether node {name} is being drained: {e}"))?;
    let node = ApiNode { client, name: name.clone() };
    let settings = Settings { timeout: args.timeout, recheck: args.recheck_interval };
    let mut report = |p: Progress<'_>| match p {
        Progress::Draining(reason) => {
            tracing::info!(node = %name, reason, "pre-stop: the node is being drained; waiting for the kubelet to unmount FSx volumes")
        }
        Progress::Waiting(held) => {
            let volumes: Vec<&str> = held.iter().map(|h| h.volume.as_str()).collect();
            tracing::info!(count = held.len(), volumes = %volumes.join(", "), "pre-stop: waiting for unmounts")
        }
        Progress::RecheckFailed(e) => {
            tracing::warn!(error = %Chain(e), "pre-stop: cannot read the node again; still waiting")
        }
    };
    match drain::pre_stop(&kubelet, &node, settings, &mut report)
        .await
        .map_err(|e| format!("pre-stop: {}", Chain(&e)))?
    {
        Outcome::NotDraining => {
            tracing::info!(node = %name, "pre-stop: the node is not being drained; its pods keep their mounts")
        }
        Outcome::Released { waited } => tracing::info!(
            node = %name, waited = %humantime::format_duration(round(waited)),
            "pre-stop: no FSx volume is mounted on this node"
        ),
        Outcome::Cancelled { waited } => tracing::info!(
            node = %name, waited = %humantime::format_duration(round(waited)),
            "pre-stop: the node is no longer being drained; stopping without waiting further"
        ),
        Outcome::TimedOut { held } => {
            let volumes: Vec<String> =
                held.iter().map(|h| format!("{} at {}", h.volume, h.mount_point.display())).collect();
            return Err(format!(
                "pre-stop: {} FSx volume(s) still mounted after {}: {}; the kubelet unmounts them once the \
                 plugin is back (raise node.terminationGracePeriodSeconds to wait longer)",
                held.len(),
                humantime::format_duration(args.timeout),
                volumes.join("; ")
            ));
        }
    }
    Ok(())
}

fn round(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// SIGTERM and SIGINT handlers.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Completes on the first SIGTERM or SIGINT.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}

/// Whether this node has the Lustre client kernel module. Test builds with the Lustre stand-in
/// ask the same question: the node tier gives its node a module index, with or without Lustre.
fn lustre_client() -> fsx_csi_driver::mount::client::ClientModule {
    fsx_csi_driver::mount::client::detect_here()
}

/// The controller's project ids and quotas: Lustre's ioctls.
#[cfg(not(feature = "lustre-stand-in"))]
fn quotas() -> Arc<dyn fsx_csi_driver::subdir::quota::Quotas> {
    Arc::new(fsx_csi_driver::subdir::quota::LustreQuotas)
}

/// Test builds (feature `lustre-stand-in`): kept in extended attributes of the stood-in
/// file system's directories.
#[cfg(feature = "lustre-stand-in")]
fn quotas() -> Arc<dyn fsx_csi_driver::subdir::quota::Quotas> {
    Arc::new(fsx_csi_driver::subdir::stand_in::StandInQuotas)
}

/// The node plugin's mounter: `mount(2)` itself.
#[cfg(not(feature = "lustre-stand-in"))]
fn mounter(_cli: &Cli) -> Arc<dyn fsx_csi_driver::mount::Mounter> {
    Arc::new(fsx_csi_driver::mount::SyscallMounter)
}

/// Test builds (feature `lustre-stand-in`): Lustre stood in by a bind of a directory.
#[cfg(feature = "lustre-stand-in")]
fn mounter(cli: &Cli) -> Arc<dyn fsx_csi_driver::mount::Mounter> {
    tracing::warn!(
        store = %fsx_csi_driver::mount::stand_in::STORE,
        "TEST BUILD: Lustre mounts are stood in by bind mounts of directories (feature lustre-stand-in)"
    );
    Arc::new(fsx_csi_driver::mount::stand_in::StandInMounter::new(&cli.kubelet_dir))
}
