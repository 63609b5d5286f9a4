//! The node plugin's pre-stop hook (`fsx-csi-driver pre-stop`): on a node being drained,
//! keep the plugin alive until the kubelet has unmounted every FSx volume.
//!
//! Why: when a node goes away (a drain before a scale-in, Karpenter consolidation, a node
//! upgrade), the kubelet unmounts the volumes of the evicted pods by calling this plugin. If
//! the plugin is stopped first, those calls fail, and the Lustre clients are never unmounted:
//! the file system's servers keep the dead node's client until they evict it, which stalls
//! locks that other nodes wait on. The Go driver's hook waits, on a drained node, until no pod
//! with a PVC of this driver remains on it. This hook waits for what actually matters, that
//! no mount of this driver remains under the kubelet directory (pod targets and staging
//! mounts, including targets mounted by the Go driver before a switch), read from the
//! kernel's mount table and woken by its change notifications, not by polling pods.
//!
//! - On a node that is not being drained (a rolling update of the DaemonSet, a restart) it
//!   returns at once: the pods keep running and their mounts stay.
//! - "Being drained" is the node's `spec.unschedulable` (`kubectl drain` / `cordon`) or one of
//!   the taints that drains and autoscalers set ([`DRAIN_TAINTS`]).
//! - The wait is bounded ([`Settings::timeout`], below the pod's termination grace period),
//!   ends early if the drain is cancelled (the node is uncordoned), and never touches a
//!   mounted file system: a hung Lustre server cannot hang the hook.
//! - The volume directories are read below the kubelet directory without following a
//!   symlink, as the node service does ([`crate::mount::paths`]).

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::{Mode, SFlag, fstat};
use serde::Deserialize;
use tokio::time::Instant;

use crate::DRIVER_NAME;
use crate::error::Cause;
use crate::kube::{KubeClient, KubeError, NoAnswer};
use crate::mount::mountinfo::{self, MountEntry};
use crate::mount::paths::KubeletDir;
use crate::text::{Field, Shown};
use k8s_openapi::api::core::v1::Node;

/// Taints that mean the node is being emptied: `kubectl drain` (with the node lifecycle
/// controller), the cluster autoscaler's scale-in, and Karpenter's disruption (v1 and
/// v1beta1).
pub const DRAIN_TAINTS: &[&str] = &[
    "node.kubernetes.io/unschedulable",
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
];

/// The largest `vol_data.json` read.
const MAX_VOL_DATA: u64 = 64 << 10;

/// Why the node is being drained, if it is.
pub fn drain_reason(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    if spec.unschedulable == Some(true) {
        return Some("the node is cordoned (spec.unschedulable)".into());
    }
    spec.taints
        .iter()
        .flatten()
        .find(|t| DRAIN_TAINTS.contains(&t.key.as_str()))
        .map(|t| format!("the node has the taint {}", Shown(&t.key)))
}

/// A mount of this driver that the kubelet has not unmounted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The PersistentVolume's name (or the volume handle, or the directory's name).
    pub volume: String,
    pub mount_point: PathBuf,
}

/// What the kubelet writes beside each CSI mount.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VolData {
    #[serde(rename = "driverName")]
    driver_name: String,
    #[serde(rename = "specVolID")]
    spec_vol_id: String,
    #[serde(rename = "volumeHandle")]
    volume_handle: String,
}

/// Reads `vol_data.json` in the volume directory `rel` below the kubelet directory, following
/// no symlink, refusing anything but a small regular file.
fn vol_data(kubelet: &KubeletDir, rel: &Path) -> Result<VolData, String> {
    let text = kubelet.real().join(rel);
    let text = text.to_str().ok_or("the path is not UTF-8")?;
    let dir = kubelet.check("volume directory", text).map_err(|e| e.to_string())?;
    let dir = kubelet.open(&dir).map_err(|e| e.to_string())?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd: OwnedFd = openat(dir.as_fd(), "vol_data.json", flags, Mode::empty()).map_err(|e| e.desc().to_string())?;
    let st = fstat(fd.as_fd()).map_err(|e| e.desc().to_string())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err("vol_data.json is not a regular file".into());
    }
    let mut buf = Vec::new();
    std::fs::File::from(fd).take(MAX_VOL_DATA).read_to_end(&mut buf).map_err(|e| e.to_string())?;
    serde_json::from_slice(&buf).map_err(|e| format!("vol_data.json: {e}"))
}

/// The mounts of this driver below the kubelet directory in `table`:
///
/// - `pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount` whose `vol_data.json` names this
///   driver (a pod's target; the Go driver mounted Lustre there directly);
/// - `plugins/kubernetes.io/csi/fsx.csi.aws.com/<hash>/globalmount` (a staging mount);
/// - `plugins/kubernetes.io/csi/pv/<pv>/globalmount` whose `vol_data.json` names this driver
///   (staging paths of kubelets before 1.24).
///
/// A target whose `vol_data.json` cannot be read counts as this driver's: waiting for it costs
/// at most the bounded wait, while stopping early strands a Lustre client.
pub fn held(kubelet: &KubeletDir, table: &[MountEntry]) -> Vec<Held> {
    let mut out: Vec<Held> = Vec::new();
    for e in table {
        let Ok(rel) = e.mount_point.strip_prefix(kubelet.real()) else { continue };
        let parts: Vec<&OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => n,
                _ => OsStr::new(".."),
            })
            .collect();
        let s = |i: usize| parts[i].to_str().unwrap_or("");
        let (dir, always_ours) = match parts.len() {
            6 if s(0) == "pods" && s(2) == "volumes" && s(3) == "kubernetes.io~csi" && s(5) == "mount" => {
                (rel.parent(), false)
            }
            6 if s(0) == "plugins" && s(1) == "kubernetes.io" && s(2) == "csi" && s(5) == "globalmount" => match s(3) {
                DRIVER_NAME => (rel.parent(), true),
                "pv" => (rel.parent(), false),
                _ => continue,
            },
            _ => continue,
        };
        let Some(dir) = dir else { continue };
        let fallback = parts[4].to_string_lossy().into_owned();
        let volume = match vol_data(kubelet, dir) {
            Ok(d) if d.driver_name == DRIVER_NAME || always_ours => {
                [d.spec_vol_id, d.volume_handle].into_iter().find(|v| !v.is_empty()).unwrap_or(fallback)
            }
            Ok(_) => continue,
            Err(_) if always_ours => fallback,
            Err(why) => format!("{fallback} (driver unknown: {why})"),
        };
        if !out.iter().any(|h| h.mount_point == e.mount_point) {
            out.push(Held { volume: Field(&volume).to_string(), mount_point: e.mount_point.clone() });
        }
    }
    out
}

/// Where the hook reads whether the node is being drained.
#[async_trait::async_trait]
pub trait NodeState: Send + Sync {
    /// Why the node is being drained, or `None`.
    async fn drain_reason(&self) -> Result<Option<String>, KubeError>;
}

/// The node named `name`, read from the Kubernetes API.
pub struct ApiNode {
    pub client: KubeClient,
    pub name: String,
}

#[async_trait::async_trait]
impl NodeState for ApiNode {
    async fn drain_reason(&self) -> Result<Option<String>, KubeError> {
        self.client.node(&self.name).await.map(|n| drain_reason(&n))
    }
}

/// Bounds of the wait.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The longest the hook waits for unmounts; keep it below the pod's
    /// `terminationGracePeriodSeconds`, so the plugin still gets its SIGTERM in time.
    pub timeout: Duration,
    /// How often the node is read again while waiting (a cancelled drain ends the wait).
    pub recheck: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(50), recheck: Duration::from_secs(10) }
    }
}

/// How the hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The node is not being drained: its pods keep their mounts.
    NotDraining,
    /// Nothing of this driver is mounted (any more).
    Released { waited: Duration },
    /// The node was uncordoned while the hook waited.
    Cancelled { waited: Duration },
    /// These volumes were still mounted when the time ran out.
    TimedOut { held: Vec<Held> },
}

/// What the hook is doing, for the log (and for tests, to act at the right moment).
#[derive(Debug)]
pub enum Progress<'a> {
    /// The node is being drained, for this reason.
    Draining(&'a str),
    /// These mounts remain (reported when the set changes).
    Waiting(&'a [Held]),
    /// The node could not be read again; the wait goes on.
    RecheckFailed(&'a KubeError),
}

/// Why the hook could not decide.
#[derive(Debug, thiserror::Error)]
pub enum PreStopError {
    #[error("cannot tell whether the node is being drained: {0}")]
    Node(#[from] KubeError),
    #[error("reading /proc/self/mountinfo: {0}")]
    MountTable(std::io::Error),
}

/// `/proc/self/mountinfo`, opened once: `poll(2)` on it reports every change of the mount
/// table since the last report (the kernel keeps the event count per open file), so no
/// change between a reading and the wait is missed.
struct MountWatch {
    file: Option<std::fs::File>,
}

impl MountWatch {
    fn open() -> std::io::Result<Self> {
        Ok(Self { file: Some(std::fs::File::open("/proc/self/mountinfo")?) })
    }

    fn table(&self) -> std::io::Result<Vec<MountEntry>> {
        std::fs::read_to_string("/proc/self/mountinfo").map(|t| mountinfo::parse(&t))
    }

    /// Waits at most `within` for a change of the mount table.
    async fn changed(&mut self, within: Duration) {
        let Some(file) = self.file.take() else {
            tokio::time::sleep(within).await;
            return;
        };
        let ms = u16::try_from(within.as_millis()).unwrap_or(u16::MAX);
        let file = tokio::task::spawn_blocking(move || {
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => tracing::debug!(error = %e, "poll on /proc/self/mountinfo"),
            }
            file
        })
        .await;
        self.file = file.ok();
    }
}

/// Runs the hook: returns at once unless the node is being drained, then waits until no mount
/// of this driver remains below `kubelet`, the drain is cancelled or `settings.timeout` passes.
pub async fn pre_stop(
    kubelet: &KubeletDir,
    node: &dyn NodeState,
    settings: Settings,
    report: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Outcome, PreStopError> {
    let start = Instant::now();
    let deadline = start + settings.timeout;
    // Every read of the node is bounded by the time left: an API server that hangs mid-wait
    // must not carry the hook past its timeout (and into the kubelet's SIGKILL).
    let read = || async {
        match tokio::time::timeout_at(deadline, node.drain_reason()).await {
            Ok(result) => result,
            Err(_) => Err(KubeError::Unreachable {
                what: "get node".into(),
                cause: Cause::new(NoAnswer(format!("the hook's {}s", settings.timeout.as_secs()))),
            }),
        }
    };
    let Some(reason) = read().await? else {
        return Ok(Outcome::NotDraining);
    };
    report(Progress::Draining(&reason));
    let mut watch = MountWatch::open().map_err(PreStopError::MountTable)?;
    let mut next_check = Instant::now() + settings.recheck;
    let mut last: Option<Vec<Held>> = None;
    loop {
        let now = held(kubelet, &watch.table().map_err(PreStopError::MountTable)?);
        if now.is_empty() {
            return Ok(Outcome::Released { waited: start.elapsed() });
        }
        if last.as_ref() != Some(&now) {
            report(Progress::Waiting(&now));
        }
        let t = Instant::now();
        if t >= deadline {
            return Ok(Outcome::TimedOut { held: now });
        }
        if t >= next_check {
            match read().await {
                Ok(None) => return Ok(Outcome::Cancelled { waited: start.elapsed() }),
                Ok(Some(_)) => {}
                Err(e) => report(Progress::RecheckFailed(&e)),
            }
            next_check = Instant::now() + settings.recheck;
        }
        last = Some(now);
        // Mount changes are checked at least once a second, in case poll(2) reports none
        // (a mount namespace that changed under an old kernel, a failed poll).
        let wake = deadline.min(next_check).saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        watch.changed(wake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};

    fn node(unschedulable: bool, taints: &[&str]) -> Node {
        Node {
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                taints: Some(
                    taints
                        .iter()
                        .map(|k| Taint { key: k.to_string(), effect: "NoSchedule".into(), ..Taint::default() })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn drains_are_told_from_cordons_and_autoscaler_taints() {
        assert_eq!(drain_reason(&Node::default()), None);
        assert_eq!(drain_reason(&node(false, &[])), None);
        assert_eq!(drain_reason(&node(false, &["dedicated", "nvidia.com/gpu"])), None);
        assert!(drain_reason(&node(true, &[])).unwrap().contains("cordoned"));
        for t in DRAIN_TAINTS {
            assert!(drain_reason(&node(false, &["dedicated", t])).unwrap().contains(t), "{t}");
        }
        // The hostile case: a taint key is shown escaped.
        assert_eq!(drain_reason(&node(false, &["karpenter.sh/disrupted\n"])), None);
    }

    fn entry(mount_point: &Path) -> MountEntry {
        mountinfo::parse_line(&format!(
            "40 30 0:50 / {} rw,relatime shared:1 - lustre 10.0.0.1@tcp:/abcdefgh rw",
            mount_point.display()
        ))
        .unwrap()
    }

    fn volume(kubelet: &Path, rel: &str, vol_data: Option<&str>) -> PathBuf {
        let dir = kubelet.join(rel);
        std::fs::create_dir_all(dir.join("mount")).unwrap();
        std::fs::create_dir_all(dir.join("globalmount")).unwrap();
        if let Some(v) = vol_data {
            std::fs::write(dir.join("vol_data.json"), v).unwrap();
        }
        dir
    }

    #[test]
    fn only_this_drivers_mounts_are_held() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path().join("kubelet");
        std::fs::create_dir(&k).unwrap();
        let kd = KubeletDir::new(&k).unwrap();
        let k = kd.real().to_path_buf();
        let ours = r#"{"driverName":"fsx.csi.aws.com","specVolID":"pv-ours","volumeHandle":"fs-1"}"#;
        let theirs = r#"{"driverName":"ebs.csi.aws.com","specVolID":"pv-ebs"}"#;
        let a = volume(&k, "pods/uid-1/volumes/kubernetes.io~csi/pv-ours", Some(ours));
        let b = volume(&k, "pods/uid-1/volumes/kubernetes.io~csi/pv-ebs", Some(theirs));
        let c = volume(&k, "plugins/kubernetes.io/csi/fsx.csi.aws.com/0a1b2c/", Some(r#"{"volumeHandle":"fs-2"}"#));
        let d = volume(&k, "plugins/kubernetes.io/csi/ebs.csi.aws.com/3d4e5f", None);
        let e = volume(&k, "plugins/kubernetes.io/csi/pv/pv-old", Some(ours));
        let f = volume(&k, "pods/uid-2/volumes/kubernetes.io~csi/pv-unknown", None);
        let g = volume(&k, "pods/uid-3/volumes/kubernetes.io~empty-dir/cache", None);
        let table: Vec<MountEntry> = [
            a.join("mount"),
            a.join("mount"), // stacked on the same point: one entry
            b.join("mount"),
            c.join("globalmount"),
            d.join("globalmount"),
            e.join("globalmount"),
            f.join("mount"),
            g.join("mount"),
            PathBuf::from("/mnt/elsewhere"),
            k.join("pods/uid-1/volumes/kubernetes.io~csi/pv-ours/mount/below"),
        ]
        .iter()
        .map(|p| entry(p))
        .collect();
        let held = held(&kd, &table);
        let volumes: Vec<&str> = held.iter().map(|h| h.volume.as_str()).collect();
        assert_eq!(volumes.len(), 4, "{held:?}");
        assert_eq!(volumes[0], "pv-ours");
        assert_eq!(volumes[1], "fs-2");
        assert_eq!(volumes[2], "pv-ours");
        assert!(volumes[3].starts_with("pv-unknown (driver unknown"), "{}", volumes[3]);
        assert_eq!(held[1].mount_point, c.join("globalmount"));
    }

    #[test]
    fn a_symlinked_or_strange_vol_data_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path().join("kubelet");
        std::fs::create_dir(&k).unwrap();
        let kd = KubeletDir::new(&k).unwrap();
        let k = kd.real().to_path_buf();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("vol_data.json"), r#"{"driverName":"other"}"#).unwrap();
        // The volume directory is a symlink out of the kubelet dir: not read through.
        std::fs::create_dir_all(k.join("pods/u/volumes/kubernetes.io~csi")).unwrap();
        std::os::unix::fs::symlink(&outside, k.join("pods/u/volumes/kubernetes.io~csi/pv-link")).unwrap();
        // vol_data.json itself a symlink, and one that is a directory.
        let s = volume(&k, "pods/v/volumes/kubernetes.io~csi/pv-s", None);
        std::os::unix::fs::symlink(outside.join("vol_data.json"), s.join("vol_data.json")).unwrap();
        let d = volume(&k, "pods/w/volumes/kubernetes.io~csi/pv-d", None);
        std::fs::create_dir(d.join("vol_data.json")).unwrap();
        let table: Vec<MountEntry> =
            [k.join("pods/u/volumes/kubernetes.io~csi/pv-link/mount"), s.join("mount"), d.join("mount")]
                .iter()
                .map(|p| entry(p))
                .collect();
        let held = held(&kd, &table);
        assert_eq!(held.len(), 3, "{held:?}");
        assert!(held.iter().all(|h| h.volume.contains("driver unknown")), "{held:?}");
    }

    struct Fixed(std::sync::Mutex<Vec<Result<Option<String>, u16>>>);

    #[async_trait::async_trait]
    impl NodeState for Fixed {
        async fn drain_reason(&self) -> Result<Option<String>, KubeError> {
            let mut v = self.0.lock().unwrap();
            let next = if v.len() > 1 { v.remove(0) } else { v[0].clone() };
            next.map_err(|status| KubeError::Refused {
                what: "get nodes/n".into(),
                status,
                message: "no".into(),
                hint: String::new(),
            })
        }
    }

    #[tokio::test]
    async fn a_node_that_is_not_drained_returns_at_once_and_an_unreadable_one_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let kd = KubeletDir::new(tmp.path()).unwrap();
        let seen = std::sync::atomic::AtomicUsize::new(0);
        let mut report = |_: Progress<'_>| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let out = pre_stop(&kd, &Fixed(vec![Ok(None)].into()), Settings::default(), &mut report).await.unwrap();
        assert_eq!(out, Outcome::NotDraining);
        let e = pre_stop(&kd, &Fixed(vec![Err(403)].into()), Settings::default(), &mut report).await.unwrap_err();
        assert!(e.to_string().contains("cannot tell whether the node is being drained"), "{e}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 0);
        // Draining with nothing of ours mounted (this test's kubelet dir is empty).
        let out = pre_stop(&kd, &Fixed(vec![Ok(Some("x".into()))].into()), Settings::default(), &mut report).await;
        assert!(matches!(out, Ok(Outcome::Released { .. })), "{out:?}");
    }
}
