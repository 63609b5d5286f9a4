//! The command line. Every flag has an environment variable; doc comments are the help text.
//! Bad flags exit with code 2 and a message naming the flag (clap's behaviour).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

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
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Tags added to every file system the controller creates: key=value,key=value.
    #[arg(long, env = "EXTRA_TAGS", value_parser = parse_tag_list, default_value = "")]
    pub extra_tags: Tags,

    /// How often the controller describes file systems that are being created or updated.
    #[arg(long, env = "POLL_INTERVAL", value_parser = parse_duration, default_value = "15s")]
    pub poll_interval: Duration,

    /// How often the controller re-lists the account to refresh its index of file systems, so a
    /// standby replica that takes over leadership knows what the previous leader created. Keep it
    /// well inside FSx's ClientRequestToken window.
    #[arg(long, env = "RESYNC_INTERVAL", value_parser = parse_duration, default_value = "5m")]
    pub resync_interval: Duration,

    /// Node id reported to Kubernetes; else CSI_NODE_NAME, else the EC2 instance id (IMDSv2).
    #[arg(long, env = "CSI_NODE_NAME")]
    pub node_id: Option<String>,

    /// The kubelet's root directory; every staging and target path must lie under it.
    #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,
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
}
