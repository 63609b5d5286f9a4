//! The command line. Every flag has an environment variable; doc comments are the help text.
//! Bad flags exit with code 2 and a message naming the flag (clap's behaviour).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;
use crate::provision::params::parse_tags;
use crate::text::Shown;

/// What this process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The controller service (create, expand, delete file systems), beside the CSI sidecars.
    Controller,
    /// The node service (mount and unmount), on every node.
    Node,
    /// Both on one socket (development and tests).
    All,
}

impl Mode {
    /// True if the controller service is served.
    pub fn controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }
    /// True if the node service is served.
    pub fn node(self) -> bool {
        matches!(self, Mode::Node | Mode::All)
    }
}

/// `key=value,...` tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(pub Vec<(String, String)>);

fn parse_tag_list(s: &str) -> Result<Tags, String> {
    parse_tags("--extra-tags", s).map(Tags).map_err(|e| e.message)
}

/// Parses a duration as `humantime` does (`500ms`, `15s`, `2m`, `1h 30m`); a bare number is
/// seconds. Above zero and under a day.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 86_400.0 => Duration::from_secs_f64(secs),
        Ok(_) => Duration::ZERO,
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("{} is not a duration such as 500ms, 15s or 2m ({e})", Shown(s)))?,
    };
    if d.is_zero() || d >= Duration::from_secs(86_400) {
        return Err(format!("{} must be above zero and under a day", Shown(s)));
    }
    Ok(d)
}

/// Parses a listen address: `host:port`, `[v6]:port`, or `:port` for every interface, IPv6
/// and IPv4 (`[::]:port`, which the metrics server binds dual-stack).
pub fn parse_listen_address(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') { format!("[::]{s}") } else { s.to_string() };
    full.parse().map_err(|_| format!("{} is not an address such as :3301 or 127.0.0.1:3301", Shown(s)))
}

/// CSI driver for Amazon FSx for Lustre (fsx.csi.aws.com).
#[derive(Debug, Parser)]
#[command(name = "fsx-csi-driver", version, about, long_about = None)]
pub struct Cli {
    /// Which CSI services to serve.
    #[arg(long, env = "CSI_MODE", value_enum, default_value = "all")]
    pub mode: Mode,

    /// The CSI endpoint: unix:///path/to/csi.sock.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///var/lib/csi/sockets/pluginproxy/csi.sock")]
    pub endpoint: String,

    /// AWS region of the file systems; else AWS_REGION, else the instance's region from IMDSv2.
    #[arg(long)]
    pub region: Option<String>,

    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,

    /// Tags added to every file system the controller creates: key=value,key=value.
    #[arg(long, env = "EXTRA_TAGS", value_parser = parse_tag_list, default_value = "")]
    pub extra_tags: Tags,

    /// How often the controller describes file systems, associations and backups in flight,
    /// fixed. Unset: adaptively, rarely early in a creation and every second once it is due
    /// (from what this controller has seen such work take), at no more FSx calls than a 15 s
    /// poll makes.
    #[arg(long, env = "POLL_INTERVAL", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,

    /// The most often the controller posts a progress event on a claim (or VolumeSnapshot)
    /// while FSx creates, grows or backs it up; repeated events are one aggregated series.
    #[arg(long, env = "PROGRESS_EVENT_INTERVAL", value_parser = parse_duration, default_value = "1m")]
    pub progress_event_interval: Duration,

    /// How often the controller re-lists the account to refresh its index of file systems, so a
    /// standby replica that takes over leadership knows what the previous leader created. Keep it
    /// well inside FSx's ClientRequestToken window.
    #[arg(long, env = "RESYNC_INTERVAL", value_parser = parse_duration, default_value = "5m")]
    pub resync_interval: Duration,

    /// Node id reported to Kubernetes; else CSI_NODE_NAME, else the EC2 instance id (IMDSv2).
    #[arg(long, env = "CSI_NODE_NAME", global = true)]
    pub node_id: Option<String>,

    /// The kubelet's root directory; every staging and target path must lie under it.
    #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet", global = true)]
    pub kubelet_dir: PathBuf,

    /// Serve Prometheus metrics at http://ADDRESS/metrics (for example :3301); off when unset.
    #[arg(long, env = "METRICS_ADDRESS", value_parser = parse_listen_address)]
    pub metrics_address: Option<std::net::SocketAddr>,

    /// Node plugin: remove the fsx.csi.aws.com/agent-not-ready taint from this node once the
    /// kubelet has registered the plugin (in a pod only; needs get/patch on nodes and get/watch
    /// on csinodes).
    #[arg(long, env = "REMOVE_NOT_READY_TAINT")]
    pub remove_not_ready_taint: bool,

    /// Node mode: register with the kubelet directly, in place of the node-driver-registrar
    /// sidecar, telling it this path as the CSI socket (the socket's path on the host, as
    /// the registrar's flag of the same name takes it). The registration socket goes in
    /// `<kubelet-dir>/plugins_registry`. Unset: the sidecar registers the plugin.
    #[arg(long, env = "KUBELET_REGISTRATION_PATH")]
    pub kubelet_registration_path: Option<String>,

    /// Controller: serve `provisioningMode: subdirectory` StorageClasses, mounting each file
    /// system they name here (needs the Lustre client on the controller's node and
    /// CAP_SYS_ADMIN: the chart's controller.subdirectoryVolumes.enabled). Unset: such classes are refused
    /// with how to enable them.
    #[arg(long, env = "SUBDIRECTORY_MOUNT_DIR")]
    pub subdirectory_mount_dir: Option<PathBuf>,

    /// Without a command, serve the CSI services of --mode.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands other than serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The node plugin's preStop hook: on a node being drained (cordoned, or tainted by a
    /// drain or an autoscaler), wait until the kubelet has unmounted every FSx volume, so the
    /// plugin outlives the unmount calls. Returns at once on a node that is not being drained.
    /// Exits 1 if the node cannot be read or volumes are still mounted at --timeout.
    PreStop(PreStopArgs),
}

/// `pre-stop` flags.
#[derive(Debug, Args)]
pub struct PreStopArgs {
    /// The longest wait for unmounts: keep it below the pod's terminationGracePeriodSeconds,
    /// so the plugin still has time to stop after the hook.
    #[arg(long, env = "PRE_STOP_TIMEOUT", value_parser = parse_duration, default_value = "50s")]
    pub timeout: Duration,

    /// How often the node is read again while waiting; an uncordoned node ends the wait.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub recheck_interval: Duration,

    /// The service account token for the Kubernetes API (default: the pod's).
    #[arg(long, env = "KUBE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// The cluster CA for the Kubernetes API (default: the pod's).
    #[arg(long, env = "KUBE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn flags() {
        let cli = Cli::try_parse_from([
            "fsx-csi-driver",
            "--mode",
            "controller",
            "--extra-tags",
            "a=b,c=d",
            "--poll-interval",
            "1s",
        ])
        .unwrap();
        assert_eq!(cli.mode, Mode::Controller);
        assert_eq!(cli.extra_tags.0.len(), 2);
        let err = Cli::try_parse_from(["fsx-csi-driver", "--mode", "sideways"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(Cli::try_parse_from(["fsx-csi-driver", "--extra-tags", "aws:x=1"]).is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_address(":3301").unwrap().to_string(), "[::]:3301");
        assert_eq!(parse_listen_address("127.0.0.1:0").unwrap().port(), 0);
        assert_eq!(parse_listen_address("[::1]:3301").unwrap().port(), 3301);
        assert!(parse_listen_address("3301").is_err());
        assert!(parse_listen_address("localhost:3301").is_err());
    }

    #[test]
    fn pre_stop_takes_the_node_flags_on_either_side() {
        let cli = Cli::try_parse_from(["fsx-csi-driver", "--kubelet-dir=/k", "pre-stop", "--timeout=20s"]).unwrap();
        let Some(Command::PreStop(args)) = cli.command else { panic!("no pre-stop") };
        assert_eq!(args.timeout, Duration::from_secs(20));
        assert_eq!(cli.kubelet_dir, PathBuf::from("/k"));
        let cli = Cli::try_parse_from(["fsx-csi-driver", "pre-stop", "--kubelet-dir=/k2", "--node-id=n"]).unwrap();
        assert_eq!(cli.kubelet_dir, PathBuf::from("/k2"));
        assert_eq!(cli.node_id.as_deref(), Some("n"));
        assert!(Cli::try_parse_from(["fsx-csi-driver", "pre-stop", "--timeout=0s"]).is_err());
        assert!(Cli::try_parse_from(["fsx-csi-driver"]).unwrap().command.is_none());
    }
}
