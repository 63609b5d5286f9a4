//! Whether this node's LNet has EFA interfaces: the `@efa` NIDs an EFA-enabled FSx for Lustre
//! file system needs to reach its full per-client throughput.
//!
//! An EFA-enabled file system still mounts over TCP (`@tcp` NIDs), so a node without EFA
//! interfaces works, at a fraction of the throughput its pods were sized for. Nobody would
//! notice; the node plugin says so instead: the `fsx_csi_node_lnet_efa` gauge, a log line, and
//! a Warning event on the Node when an `efaEnabled` volume is staged there (see
//! [`crate::csi::node`]).
//!
//! LNet lists its network interfaces, one line per interface and CPU partition, in `nis`:
//! debugfs (`/sys/kernel/debug/lnet/nis`) since Lustre 2.12, sysctl (`/proc/sys/lnet/nis`)
//! before. The manifests mount the host's debugfs read-only into the plugin for it. Reading it
//! has no side effects; nothing is configured, loaded or executed. Until LNet is up (the first
//! Lustre mount, or `lnetctl lnet configure` at boot, which EFA nodes need) there is no file,
//! and the answer is "unknown".

use std::io::Read;
use std::path::PathBuf;

/// Where LNet lists its interfaces: debugfs (Lustre 2.12 and later), then sysctl (before).
pub const NIS_FILES: &[&str] = &["/sys/kernel/debug/lnet/nis", "/proc/sys/lnet/nis"];

/// The most read of a `nis` file (a line is about 80 bytes per interface and CPU partition).
const MAX_NIS: u64 = 1 << 20;

/// The longest NID kept (`<IPv6 address>@efa<n>` is well under it).
const MAX_NID: usize = 64;

/// The most NIDs kept: a node has a handful.
const MAX_NIDS: usize = 64;

/// What LNet on this node has of EFA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Efa {
    /// LNet is up with these EFA NIDs.
    Configured { nids: Vec<String> },
    /// LNet is up with these NIDs, none of them EFA.
    NotConfigured { nids: Vec<String> },
    /// No interface list could be read (LNet is not up yet, or debugfs is not mounted).
    Unknown { why: String },
}

impl Efa {
    /// The metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Efa::Configured { .. } => "efa",
            Efa::NotConfigured { .. } => "none",
            Efa::Unknown { .. } => "unknown",
        }
    }

    /// Every metric label, for the gauge's fixed set.
    pub const STATES: &'static [&'static str] = &["efa", "none", "unknown"];
}

/// True if `nid`'s network is EFA: `<address>@efa` or `@efa<n>`.
pub fn is_efa(nid: &str) -> bool {
    nid.rsplit_once('@')
        .is_some_and(|(_, net)| net.strip_prefix("efa").is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
}

/// The NIDs a `nis` text lists, each once, in order: the first column of every line but the
/// header. Anything that is not a plausible NID (printable ASCII with one `@`, bounded) is
/// skipped, so a strange file cannot put control characters into a log line or an event.
pub fn parse_nids(text: &str) -> Vec<String> {
    let mut nids: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(nid) = line.split_whitespace().next() else { continue };
        let plausible = nid.len() <= MAX_NID
            && nid.bytes().all(|b| b.is_ascii_graphic())
            && nid.bytes().filter(|&b| b == b'@').count() == 1;
        if nid == "nid" || !plausible || nids.iter().any(|n| n == nid) {
            continue;
        }
        if nids.len() == MAX_NIDS {
            break;
        }
        nids.push(nid.to_string());
    }
    nids
}

/// What the first readable of `files` says about EFA.
pub fn detect(files: &[PathBuf]) -> Efa {
    let mut why = Vec::new();
    for file in files {
        let mut text = String::new();
        let read = std::fs::File::open(file).and_then(|f| f.take(MAX_NIS).read_to_string(&mut text));
        match read {
            Ok(_) => {
                let nids = parse_nids(&text);
                let efa: Vec<String> = nids.iter().filter(|n| is_efa(n)).cloned().collect();
                return if efa.is_empty() { Efa::NotConfigured { nids } } else { Efa::Configured { nids: efa } };
            }
            Err(e) => why.push(format!("{}: {e}", file.display())),
        }
    }
    Efa::Unknown { why: why.join("; ") }
}

/// [`detect`] on this node's [`NIS_FILES`].
pub fn detect_here() -> Efa {
    detect(&default_files())
}

/// [`NIS_FILES`] as paths.
pub fn default_files() -> Vec<PathBuf> {
    NIS_FILES.iter().map(PathBuf::from).collect()
}

/// Records `found` in the metrics and logs it once, at start-up.
pub fn report(found: &Efa) {
    crate::metrics::get().lnet_efa(found.as_str());
    match found {
        Efa::Configured { nids } => tracing::info!(nids = %nids.join(","), "LNet has EFA interfaces"),
        Efa::NotConfigured { nids } => tracing::info!(
            nids = %nids.join(","),
            "LNet is up without EFA interfaces: efaEnabled file systems are reached over TCP from this node"
        ),
        Efa::Unknown { why } => tracing::info!(
            reason = %crate::text::Field(why),
            "LNet is not up yet (or debugfs is not mounted into the plugin): EFA interfaces are checked again when an efaEnabled volume is staged"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header and line format of `proc_lnet_nis` (lnet/lnet/router_proc.c): one line per
    /// interface and CPU partition.
    const TCP_ONLY: &str = "nid                      status alive refs peer  rtr   max    tx   min\n\
        0@lo                         up     0    2    0    0     0     0     0\n\
        0@lo                         up     0    0    0    0     0     0     0\n\
        10.0.1.5@tcp                 up    -1    1    8    0   256   256   252\n\
        10.0.1.5@tcp                 up    -1    1    8    0   256   256   250\n";

    #[test]
    fn efa_nids_are_told_from_the_others() {
        for nid in ["10.0.1.5@efa", "10.0.1.5@efa1", "10.0.1.5@efa12"] {
            assert!(is_efa(nid), "{nid}");
        }
        for nid in ["10.0.1.5@tcp", "0@lo", "10.0.1.5@o2ib", "10.0.1.5@efax", "efa", "10.0.1.5@tcpefa", "a@efa@x"] {
            assert!(!is_efa(nid), "{nid}");
        }
    }

    #[test]
    fn the_nids_of_a_nis_file_once_each_without_the_header() {
        assert_eq!(parse_nids(TCP_ONLY), ["0@lo", "10.0.1.5@tcp"]);
        assert_eq!(parse_nids(""), Vec::<String>::new());
        // Nothing implausible gets through: control characters, no '@', megabyte lines.
        let hostile = format!("x\u{1b}[31m@tcp up\nnoat up\n{}@tcp up\n\n   \n10.0.0.1@efa up\n", "9".repeat(1 << 20));
        assert_eq!(parse_nids(&hostile), ["10.0.0.1@efa"]);
        let many: String = (0..1000).map(|i| format!("10.0.{}.{}@tcp up\n", i / 256, i % 256)).collect();
        assert_eq!(parse_nids(&many).len(), MAX_NIDS);
    }

    #[test]
    fn each_state_from_what_lnet_lists() {
        let dir = tempfile::tempdir().unwrap();
        let debugfs = dir.path().join("debug-nis");
        let sysctl = dir.path().join("proc-nis");
        let files = vec![debugfs.clone(), sysctl.clone()];

        // LNet not up: no file.
        let Efa::Unknown { why } = detect(&files) else { panic!("{:?}", detect(&files)) };
        assert!(why.contains("debug-nis") && why.contains("proc-nis"), "{why}");
        // Up over TCP only (the older sysctl file is read when debugfs has none).
        std::fs::write(&sysctl, TCP_ONLY).unwrap();
        assert_eq!(detect(&files), Efa::NotConfigured { nids: vec!["0@lo".into(), "10.0.1.5@tcp".into()] });
        // Up with EFA (debugfs first); only the EFA NIDs are kept.
        std::fs::write(
            &debugfs,
            format!("{TCP_ONLY}10.0.1.5@efa up -1 1 8 0 256 256 256\n10.0.1.6@efa1 up -1 1 8 0 256 256 256\n"),
        )
        .unwrap();
        assert_eq!(detect(&files), Efa::Configured { nids: vec!["10.0.1.5@efa".into(), "10.0.1.6@efa1".into()] });
        assert_eq!(Efa::STATES.len(), 3);
    }

    /// This machine has no LNet.
    #[test]
    fn this_machine_has_no_lnet() {
        assert!(matches!(detect_here(), Efa::Unknown { .. }), "{:?}", detect_here());
    }
}
