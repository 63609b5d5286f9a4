//! Node integration tests: the real server on a temp socket and the real syscall mounter, in
//! a private mount namespace, with tmpfs standing in for Lustre in the stage step.
//!
//! This file has its own `main` (harness = false): a mount namespace can only be unshared
//! while the process is single-threaded, so `main` unshares first, then runs the cases on a
//! runtime. It needs root; without it, it says so and runs nothing.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the test failing")]

mod common;
#[path = "common/tmpfs_mounter.rs"]
mod tmpfs_mounter;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Driver, mount_cap};
use fsx_csi_driver::csi::node::{NodeOptions, NodeService};
use fsx_csi_driver::drain;
use fsx_csi_driver::metadata::Unavailable;
use fsx_csi_driver::mount::mountinfo;
use fsx_csi_driver::mount::{Mounter, SyscallMounter};
use fsx_csi_driver::proto::node_client::NodeClient;
use fsx_csi_driver::proto::volume_capability::AccessType;
use fsx_csi_driver::proto::volume_capability::access_mode::Mode;
use fsx_csi_driver::proto::*;
use tmpfs_mounter::TmpfsLustre;
use tonic::Code;
use tonic::transport::Channel;

const VOLUME: &str = "fs-0123456789abcdef0";
const DNS: &str = "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com";

struct Env {
    _dir: tempfile::TempDir,
    kubelet: PathBuf,
    driver: Driver,
    client: NodeClient<Channel>,
    mounter: TmpfsLustre,
}

impl Env {
    async fn new() -> Self {
        let mounter = TmpfsLustre::default();
        Self::with_mounter(mounter.clone(), Arc::new(mounter)).await
    }

    async fn with_mounter(handle: TmpfsLustre, mounter: Arc<dyn Mounter>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubelet = dir.path().join("kubelet");
        std::fs::create_dir_all(&kubelet).unwrap();
        Self::serve(dir, kubelet, handle, mounter).await
    }

    /// The kubelet directory as a node plugin sees it: a shared mount (the DaemonSet's
    /// `Bidirectional`) whose peer at `<dir>/host` is the host's view of it.
    async fn shared() -> Self {
        use nix::mount::MsFlags;
        let dir = tempfile::tempdir().unwrap();
        let kubelet = dir.path().join("kubelet");
        let host = dir.path().join("host");
        std::fs::create_dir_all(&kubelet).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        SyscallMounter.mount(Some("kubelet"), &kubelet, Some("tmpfs"), MsFlags::empty(), None).unwrap();
        SyscallMounter.mount(None, &kubelet, None, MsFlags::MS_SHARED, None).unwrap();
        SyscallMounter.mount(Some(kubelet.to_str().unwrap()), &host, None, MsFlags::MS_BIND, None).unwrap();
        let mounter = TmpfsLustre::default();
        Self::serve(dir, kubelet, mounter.clone(), Arc::new(mounter)).await
    }

    async fn serve(dir: tempfile::TempDir, kubelet: PathBuf, handle: TmpfsLustre, mounter: Arc<dyn Mounter>) -> Self {
        let node =
            NodeService::new(NodeOptions::new(Some("node-1".into()), kubelet.clone()), mounter, Arc::new(Unavailable))
                .unwrap();
        let driver = Driver::serve(None, Some(node)).await;
        let client = driver.node_client().await;
        Self { _dir: dir, kubelet, driver, client, mounter: handle }
    }

    fn staging(&self, vol: &str) -> String {
        self.kubelet.join(format!("plugins/kubernetes.io/csi/fsx.csi.aws.com/{vol}/globalmount")).display().to_string()
    }

    fn target(&self, pod: &str) -> String {
        self.kubelet.join(format!("pods/{pod}/volumes/kubernetes.io~csi/pv/mount")).display().to_string()
    }

    async fn stage(&mut self, vol: &str, mount_name: &str, timeout: Duration) -> Result<(), tonic::Status> {
        let mut req = tonic::Request::new(stage_request(vol, &self.staging(vol), mount_name));
        req.set_timeout(timeout);
        self.client.node_stage_volume(req).await.map(|_| ())
    }

    async fn publish(
        &mut self,
        vol: &str,
        pod: &str,
        readonly: bool,
        context: HashMap<String, String>,
    ) -> Result<(), tonic::Status> {
        let req = NodePublishVolumeRequest {
            volume_id: vol.into(),
            staging_target_path: self.staging(vol),
            target_path: self.target(pod),
            volume_capability: Some(mount_cap(Mode::MultiNodeMultiWriter)),
            readonly,
            volume_context: context,
            ..Default::default()
        };
        self.client.node_publish_volume(req).await.map(|_| ())
    }

    async fn unpublish(&mut self, vol: &str, pod: &str) -> Result<(), tonic::Status> {
        let req = NodeUnpublishVolumeRequest { volume_id: vol.into(), target_path: self.target(pod) };
        self.client.node_unpublish_volume(req).await.map(|_| ())
    }

    async fn unstage(&mut self, vol: &str) -> Result<(), tonic::Status> {
        let req = NodeUnstageVolumeRequest { volume_id: vol.into(), staging_target_path: self.staging(vol) };
        self.client.node_unstage_volume(req).await.map(|_| ())
    }

    /// Mounts below this test's kubelet dir, from the real mount table.
    fn mounts(&self) -> Vec<mountinfo::MountEntry> {
        let table = mountinfo::parse(&SyscallMounter.mount_table().unwrap());
        table.into_iter().filter(|e| e.mount_point.starts_with(&self.kubelet)).collect()
    }
}

fn context(mount_name: &str) -> HashMap<String, String> {
    HashMap::from([("dnsname".to_string(), DNS.to_string()), ("mountname".to_string(), mount_name.to_string())])
}

fn stage_request(vol: &str, staging: &str, mount_name: &str) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: vol.into(),
        staging_target_path: staging.into(),
        volume_capability: Some(mount_cap(Mode::MultiNodeMultiWriter)),
        volume_context: context(mount_name),
        ..Default::default()
    }
}

async fn full_lifecycle() {
    let mut env = Env::new().await;
    env.stage(VOLUME, "abcdefgh", Duration::from_secs(10)).await.unwrap();
    let staged = env.mounts();
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert_eq!(staged[0].source, "127.0.0.1@tcp:/abcdefgh");
    // Default options: relatime.
    assert!(staged[0].options.iter().any(|o| o == "relatime"), "{:?}", staged[0].options);

    for pod in ["p1", "p2", "p3"] {
        env.publish(VOLUME, pod, false, context("abcdefgh")).await.unwrap();
    }
    env.publish(VOLUME, "ro", true, context("abcdefgh")).await.unwrap();
    // One file system mount, shared by four bind mounts.
    let mounts = env.mounts();
    assert_eq!(mounts.len(), 5, "{mounts:?}");
    assert!(mounts.iter().all(|m| m.device == staged[0].device));

    std::fs::write(Path::new(&env.target("p1")).join("out.txt"), "hello from FSx").unwrap();
    assert_eq!(std::fs::read_to_string(Path::new(&env.target("p3")).join("out.txt")).unwrap(), "hello from FSx");
    assert_eq!(std::fs::read_to_string(Path::new(&env.target("ro")).join("out.txt")).unwrap(), "hello from FSx");
    let err = std::fs::write(Path::new(&env.target("ro")).join("x"), "no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    let stats = env
        .client
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: VOLUME.into(),
            volume_path: env.target("p2"),
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let bytes = &stats.usage[0];
    assert_eq!(bytes.total, 64 << 20);
    assert!(bytes.used > 0 && bytes.available > 0);
    assert!(stats.usage[1].total > 0, "inodes");
    assert!(!stats.volume_condition.unwrap().abnormal);

    for pod in ["p1", "p2", "p3", "ro"] {
        env.unpublish(VOLUME, pod).await.unwrap();
        assert!(!Path::new(&env.target(pod)).exists());
    }
    env.unstage(VOLUME).await.unwrap();
    assert!(env.mounts().is_empty());
    assert!(!Path::new(&env.staging(VOLUME)).exists());
}

/// Subdirectory volumes (`provisioningMode: subdirectory`, or static PVs with a
/// `subdirectory`): the node mounts each file system once and stages each volume as a bind of
/// its directory; the last unstage, even after a restart of the plugin, unmounts it.
async fn subdirectory_volumes_share_one_mount_per_file_system() {
    let mut env = Env::new().await;
    let subs: Vec<String> = (0..10).map(|i| format!("k8s/team-{i}")).collect();
    *env.mounter.dirs.lock().unwrap() = subs.clone();
    let id = |i: usize| format!("{VOLUME}/subdir/{}", 1_000_000 + i);
    let staging = |env: &Env, i: usize| env.staging(&format!("sub-{i}"));
    let ctx = |i: usize| {
        let mut c = context("abcdefgh");
        // As the controller writes it (`/k8s/…`), and as a static PV may (`k8s/…`).
        let lead = if i % 2 == 0 { "/" } else { "" };
        c.insert("subdirectory".into(), format!("{lead}k8s/team-{i}"));
        c
    };
    for i in 0..10 {
        let req =
            NodeStageVolumeRequest { volume_context: ctx(i), ..stage_request(&id(i), &staging(&env, i), "abcdefgh") };
        env.client.node_stage_volume(req.clone()).await.unwrap();
        // Idempotent.
        env.client.node_stage_volume(req).await.unwrap();
    }
    let mounts = env.mounts();
    let shared: Vec<_> = mounts.iter().filter(|m| m.root == Path::new("/")).collect();
    assert_eq!(shared.len(), 1, "one Lustre mount for ten volumes of one file system: {mounts:?}");
    let shared = shared[0].clone();
    assert!(shared.mount_point.starts_with(env.kubelet.join("plugins/fsx.csi.aws.com/lustre")), "{shared:?}");
    assert!(shared.options.iter().any(|o| o == "nosuid") && shared.options.iter().any(|o| o == "nodev"));
    assert_eq!(mounts.len(), 11, "{mounts:?}");
    for i in 0..10 {
        let m = mounts.iter().find(|m| m.mount_point == Path::new(&staging(&env, i))).unwrap();
        assert_eq!(
            (m.device.as_str(), m.root.clone()),
            (shared.device.as_str(), PathBuf::from(format!("/k8s/team-{i}")))
        );
        assert!(!m.options.iter().any(|o| o == "nosuid"), "the volume's own flags, not the shared mount's: {m:?}");
    }

    // A pod sees only its own directory, and writes land in it.
    let publish = |i: usize, pod: &str, env: &Env| NodePublishVolumeRequest {
        volume_id: id(i),
        staging_target_path: staging(env, i),
        target_path: env.target(pod),
        volume_capability: Some(mount_cap(Mode::MultiNodeMultiWriter)),
        volume_context: ctx(i),
        ..Default::default()
    };
    env.client.node_publish_volume(publish(3, "p3", &env)).await.unwrap();
    env.client.node_publish_volume(publish(3, "p3", &env)).await.unwrap();
    env.client.node_publish_volume(publish(4, "p4", &env)).await.unwrap();
    std::fs::write(Path::new(&env.target("p3")).join("mine.txt"), "team 3").unwrap();
    assert_eq!(std::fs::read_to_string(shared.mount_point.join("k8s/team-3/mine.txt")).unwrap(), "team 3");
    assert_eq!(std::fs::read_dir(env.target("p4")).unwrap().count(), 0, "team 4 sees nothing of team 3");
    let bind = env.mounts().into_iter().find(|m| m.mount_point == Path::new(&env.target("p3"))).unwrap();
    assert_eq!(bind.root, PathBuf::from("/k8s/team-3"));
    for pod in ["p3", "p4"] {
        env.unpublish(&id(if pod == "p3" { 3 } else { 4 }), pod).await.unwrap();
    }

    // A subdirectory that is not there: refused, and the shared mount still serves the others.
    let mut missing = stage_request(&id(10), &staging(&env, 10), "abcdefgh");
    missing.volume_context.insert("subdirectory".into(), "k8s/gone".into());
    assert!(env.client.node_stage_volume(missing).await.is_err());
    assert_eq!(env.mounts().len(), 11);

    // Nine unstaged: the shared mount stays for the tenth.
    for i in 0..9 {
        let req = NodeUnstageVolumeRequest { volume_id: id(i), staging_target_path: staging(&env, i) };
        env.client.node_unstage_volume(req).await.unwrap();
    }
    assert_eq!(env.mounts().len(), 2, "{:?}", env.mounts());

    // The plugin restarts: a new node service on the same kubelet directory counts from the
    // mount table, and the last unstage takes the shared mount with it.
    let node = NodeService::new(
        NodeOptions::new(Some("node-1".into()), env.kubelet.clone()),
        Arc::new(env.mounter.clone()),
        Arc::new(Unavailable),
    )
    .unwrap();
    let restarted = Driver::serve(None, Some(node)).await;
    let mut client = restarted.node_client().await;
    let req = NodeUnstageVolumeRequest { volume_id: id(9), staging_target_path: staging(&env, 9) };
    client.node_unstage_volume(req.clone()).await.unwrap();
    client.node_unstage_volume(req).await.unwrap();
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    assert!(!shared.mount_point.exists());
}

async fn repeated_calls_are_idempotent() {
    let mut env = Env::new().await;
    for _ in 0..3 {
        env.stage(VOLUME, "abcdefgh", Duration::from_secs(10)).await.unwrap();
    }
    for _ in 0..3 {
        env.publish(VOLUME, "p1", false, context("abcdefgh")).await.unwrap();
    }
    assert_eq!(env.mounts().len(), 2);
    // The same paths with something else are refused.
    let err = env.stage(VOLUME, "otherfs", Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let err = env.publish(VOLUME, "p1", true, context("abcdefgh")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let mut sub = context("abcdefgh");
    sub.insert("subdirectory".into(), "team".into());
    std::fs::create_dir(Path::new(&env.staging(VOLUME)).join("team")).unwrap();
    let err = env.publish(VOLUME, "p1", false, sub.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    env.publish(VOLUME, "p2", false, sub).await.unwrap();
    let p2 = env.mounts().into_iter().find(|m| m.mount_point == Path::new(&env.target("p2"))).unwrap();
    assert_eq!(p2.root, Path::new("/team"));

    for _ in 0..2 {
        env.unpublish(VOLUME, "p1").await.unwrap();
        env.unpublish(VOLUME, "p2").await.unwrap();
    }
    for _ in 0..2 {
        env.unstage(VOLUME).await.unwrap();
    }
    assert!(env.mounts().is_empty());
}

/// A bind remount replaces the per-mount flags: a read-only publish of a volume staged
/// `nosuid,nodev,noexec,noatime` must keep every one of them, and a target that lacks them is
/// not taken as already published.
async fn read_only_publish_keeps_nosuid_nodev_noexec_and_atime() {
    let mut env = Env::new().await;
    let mut req = stage_request(VOLUME, &env.staging(VOLUME), "abcdefgh");
    let flags: Vec<String> = ["nosuid", "nodev", "noexec", "noatime"].map(String::from).to_vec();
    req.volume_capability = Some(VolumeCapability {
        access_type: Some(AccessType::Mount(volume_capability::MountVolume {
            mount_flags: flags.clone(),
            ..Default::default()
        })),
        ..mount_cap(Mode::MultiNodeMultiWriter)
    });
    env.client.node_stage_volume(req).await.unwrap();
    for (pod, readonly) in [("ro", true), ("rw", false)] {
        for _ in 0..2 {
            env.publish(VOLUME, pod, readonly, context("abcdefgh")).await.unwrap();
        }
        let target = env.mounts().into_iter().find(|m| m.mount_point == Path::new(&env.target(pod))).unwrap();
        for flag in &flags {
            assert!(target.options.contains(flag), "{pod}: {flag} missing from {:?}", target.options);
        }
        assert_eq!(target.is_read_only(), readonly, "{:?}", target.options);
    }
    // A target bind-mounted without those flags (by hand) is someone else's publish.
    let odd = env.target("odd");
    std::fs::create_dir_all(&odd).unwrap();
    SyscallMounter
        .mount(Some(&env.staging(VOLUME)), Path::new(&odd), None, nix::mount::MsFlags::MS_BIND, None)
        .unwrap();
    SyscallMounter
        .mount(
            None,
            Path::new(&odd),
            None,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
            None,
        )
        .unwrap();
    let err = env.publish(VOLUME, "odd", true, context("abcdefgh")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    for pod in ["ro", "rw", "odd"] {
        env.unpublish(VOLUME, pod).await.unwrap();
    }
    env.unstage(VOLUME).await.unwrap();
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

/// A read-only publish is read-only where the kubelet and the container runtime see it (the
/// host's peer of the plugin's `Bidirectional` kubelet directory), not only in the plugin's
/// own mount namespace: a remount does not propagate, so the read-only mount is mounted again.
/// Found by the node tier: the host's copy of a read-only target was `rw`.
async fn read_only_publish_is_read_only_on_the_host_too() {
    let mut env = Env::shared().await;
    env.stage(VOLUME, "abcdefgh", Duration::from_secs(10)).await.unwrap();
    env.publish(VOLUME, "ro", true, context("abcdefgh")).await.unwrap();
    env.publish(VOLUME, "rw", false, context("abcdefgh")).await.unwrap();
    let host = env.kubelet.parent().unwrap().join("host");
    let table = mountinfo::parse(&SyscallMounter.mount_table().unwrap());
    for (pod, read_only) in [("ro", true), ("rw", false)] {
        let seen = |root: &Path| {
            let at = root.join(format!("pods/{pod}/volumes/kubernetes.io~csi/pv/mount"));
            let found: Vec<_> = table.iter().filter(|m| m.mount_point == at).collect();
            assert_eq!(found.len(), 1, "{pod}: one mount at {} in {table:?}", at.display());
            found[0].is_read_only()
        };
        assert_eq!(seen(&env.kubelet), read_only, "{pod} in the plugin's view");
        assert_eq!(seen(&host), read_only, "{pod} in the host's view");
    }
    // Idempotent: the republished mount is taken as this publish.
    env.publish(VOLUME, "ro", true, context("abcdefgh")).await.unwrap();
    for pod in ["ro", "rw"] {
        env.unpublish(VOLUME, pod).await.unwrap();
    }
    env.unstage(VOLUME).await.unwrap();
    let left: Vec<_> = mountinfo::parse(&SyscallMounter.mount_table().unwrap())
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&host) && m.mount_point != host)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// NodeUnpublishVolume and NodeUnstageVolume remove only the empty directories the driver
/// makes: the kubelet's own files below its directory survive any request naming them.
async fn unpublish_and_unstage_never_delete_the_kubelets_files() {
    let mut env = Env::new().await;
    let kubeconfig = env.kubelet.join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1").unwrap();
    std::fs::create_dir_all(env.kubelet.join("device-plugins")).unwrap();
    let socket = env.kubelet.join("device-plugins/kubelet.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::create_dir_all(env.kubelet.join("pods/p9/volumes/kubernetes.io~empty-dir/cache/data")).unwrap();
    let err = env
        .client
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: VOLUME.into(),
            target_path: kubeconfig.display().to_string(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("is a file, which this driver never creates there"), "{err:?}");
    let err = env
        .client
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: VOLUME.into(),
            staging_target_path: socket.display().to_string(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("is a socket"), "{err:?}");
    let err = env
        .client
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: VOLUME.into(),
            target_path: env.kubelet.join("pods/p9/volumes/kubernetes.io~empty-dir/cache").display().to_string(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("a directory that is not empty"), "{err:?}");
    assert_eq!(std::fs::read_to_string(&kubeconfig).unwrap(), "apiVersion: v1");
    assert!(socket.exists());
    assert!(env.kubelet.join("pods/p9/volumes/kubernetes.io~empty-dir/cache/data").is_dir());
}

async fn unpublish_and_unstage_of_missing_paths_are_ok() {
    let mut env = Env::new().await;
    env.unpublish(VOLUME, "never-published").await.unwrap();
    env.unstage("fs-00000000000000000").await.unwrap();
    // A target directory that exists but is not mounted is removed.
    std::fs::create_dir_all(env.target("leftover")).unwrap();
    env.unpublish(VOLUME, "leftover").await.unwrap();
    assert!(!Path::new(&env.target("leftover")).exists());
}

async fn publish_needs_a_staged_volume() {
    let mut env = Env::new().await;
    let err = env.publish(VOLUME, "p1", false, context("abcdefgh")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(!Path::new(&env.target("p1")).exists());
}

async fn stuck_mount_answers_in_time_and_blocks_nothing_else() {
    let mut env = Env::new().await;
    let stuck_vol = "fs-00000000000000001";
    let staging = PathBuf::from(env.staging(stuck_vol));
    env.mounter.blocker.block(&staging);

    let start = Instant::now();
    let err = env.stage(stuck_vol, "stuckfs", Duration::from_secs(4)).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(took < Duration::from_secs(4), "answered after {took:?}");

    // Another volume works while the first is stuck.
    env.stage(VOLUME, "abcdefgh", Duration::from_secs(10)).await.unwrap();
    env.publish(VOLUME, "p1", false, context("abcdefgh")).await.unwrap();
    // The guard was released: a retry is not Aborted for the guard, but told the previous
    // mount is still running.
    let err = env.stage(stuck_vol, "stuckfs", Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("still running"), "{}", err.message());

    // Once the server answers, a retry finds the true state from mountinfo.
    env.mounter.blocker.release();
    for _ in 0..100 {
        if env.stage(stuck_vol, "stuckfs", Duration::from_secs(2)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(env.mounts().iter().any(|m| m.mount_point == staging));

    // A hung unmount escalates and still answers in time.
    env.mounter.blocker.block(&staging);
    let start = Instant::now();
    let mut req = tonic::Request::new(NodeUnstageVolumeRequest {
        volume_id: stuck_vol.into(),
        staging_target_path: staging.display().to_string(),
    });
    req.set_timeout(Duration::from_secs(4));
    let err = env.client.node_unstage_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(4));
    env.mounter.blocker.release();
    // As the kubelet does, retry while the released calls are still returning (Aborted).
    let mut result = env.unstage(stuck_vol).await;
    for _ in 0..200 {
        match &result {
            Err(s) if s.code() == Code::Aborted => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => break,
        }
        result = env.unstage(stuck_vol).await;
    }
    result.unwrap();
    env.unpublish(VOLUME, "p1").await.unwrap();
    env.unstage(VOLUME).await.unwrap();
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

async fn concurrent_calls_on_one_volume_are_aborted() {
    let mut env = Env::new().await;
    let staging = PathBuf::from(env.staging(VOLUME));
    env.mounter.blocker.block(&staging);
    let mut other = env.driver.node_client().await;
    let req = stage_request(VOLUME, &env.staging(VOLUME), "abcdefgh");
    let first = tokio::spawn(async move {
        let mut r = tonic::Request::new(req);
        r.set_timeout(Duration::from_secs(5));
        other.node_stage_volume(r).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = env.stage(VOLUME, "abcdefgh", Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    env.mounter.blocker.release();
    first.await.unwrap().unwrap();
    env.unstage(VOLUME).await.unwrap();
}

async fn real_lustre_fstype_fails_with_enodev_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir_all(&kubelet).unwrap();
    let node = NodeService::new(
        NodeOptions::new(Some("node-1".into()), kubelet.clone()),
        Arc::new(SyscallMounter),
        Arc::new(Unavailable),
    )
    .unwrap();
    let driver = Driver::serve(None, Some(node)).await;
    let mut client = driver.node_client().await;
    let staging = kubelet.join("plugins/kubernetes.io/csi/fsx.csi.aws.com/x/globalmount");
    let mut req = stage_request(VOLUME, &staging.display().to_string(), "abcdefgh");
    // An IPv4 literal needs no DNS.
    req.volume_context.insert("dnsname".into(), "127.0.0.1".into());
    let lustre_loaded = std::fs::read_to_string("/proc/filesystems").unwrap().lines().any(|l| l.ends_with("\tlustre"));
    if lustre_loaded {
        println!("    (this machine has a Lustre client; the ENODEV case cannot be shown)");
        return;
    }
    let err = client.node_stage_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("the Lustre client kernel module is not loaded on this node"), "{}", err.message());
    assert!(
        err.message().contains(r#""lustre", MS_RELATIME, "flock,device=127.0.0.1@tcp:/abcdefgh")"#),
        "{}",
        err.message()
    );
    assert!(!staging.exists(), "the failed stage left its directory behind");
    let table = mountinfo::parse(&SyscallMounter.mount_table().unwrap());
    assert!(!table.iter().any(|e| e.mount_point.starts_with(&kubelet)));
}

/// An `efaEnabled` volume staged on a node whose LNet has no `@efa` interface mounts (over
/// TCP) and gives one Warning per volume; with EFA interfaces, or when LNet cannot be read,
/// no event. The gauge follows what was read.
async fn efa_volume_without_efa_interfaces_warns_once_and_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir_all(&kubelet).unwrap();
    let nis = dir.path().join("nis");
    let mut options = NodeOptions::new(Some("node-1".into()), kubelet.clone());
    options.lnet_files = vec![nis.clone()];
    let warned: Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
    let record = warned.clone();
    let mounter = TmpfsLustre::default();
    let node = NodeService::new(options, Arc::new(mounter), Arc::new(Unavailable))
        .unwrap()
        .warn_with(Arc::new(move |reason, message| record.lock().unwrap().push((reason.to_string(), message))));
    let driver = Driver::serve(None, Some(node)).await;
    let mut client = driver.node_client().await;
    let gauge = |state: &str| {
        let line = format!(r#"fsx_csi_node_lnet_efa{{state="{state}"}} 1"#);
        fsx_csi_driver::metrics::get().encode().lines().any(|l| l == line)
    };
    let stage = |vol: &str, efa: bool| {
        let staging = kubelet.join(format!("plugins/kubernetes.io/csi/fsx.csi.aws.com/{vol}/globalmount"));
        let mut req = stage_request(vol, &staging.display().to_string(), "abcdefgh");
        if efa {
            req.volume_context.insert("efaEnabled".into(), "true".into());
        }
        req
    };
    std::fs::write(
        &nis,
        "nid status alive refs peer rtr max tx min\n0@lo up 0 2 0 0 0 0 0\n10.0.1.5@tcp up -1 1 8 0 256 256 252\n",
    )
    .unwrap();

    // A volume without EFA: nothing to say.
    client.node_stage_volume(stage("fs-00000000000000001", false)).await.unwrap();
    assert!(warned.lock().unwrap().is_empty());
    // An EFA volume on a TCP-only node: mounted, one Warning naming the volume and the NIDs.
    for _ in 0..2 {
        client.node_stage_volume(stage("fs-00000000000000002", true)).await.unwrap();
    }
    {
        let w = warned.lock().unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].0, "FsxEfaNotConfigured");
        assert!(w[0].1.contains("fs-00000000000000002") && w[0].1.contains("0@lo, 10.0.1.5@tcp"), "{}", w[0].1);
        assert!(w[0].1.contains("lnetctl net add --net efa"), "{}", w[0].1);
    }
    assert!(gauge("none"));
    let staged = mountinfo::parse(&SyscallMounter.mount_table().unwrap())
        .into_iter()
        .filter(|e| e.mount_point.starts_with(&kubelet))
        .count();
    assert_eq!(staged, 2);
    // With EFA interfaces: no event.
    std::fs::write(&nis, "nid status alive refs peer rtr max tx min\n10.0.1.5@tcp up -1 1 8 0 256 256 252\n10.0.1.5@efa up -1 1 8 0 256 256 252\n").unwrap();
    client.node_stage_volume(stage("fs-00000000000000003", true)).await.unwrap();
    assert_eq!(warned.lock().unwrap().len(), 1);
    assert!(gauge("efa"));
    // LNet cannot be read: a log line, no event.
    std::fs::remove_file(&nis).unwrap();
    client.node_stage_volume(stage("fs-00000000000000004", true)).await.unwrap();
    assert_eq!(warned.lock().unwrap().len(), 1);
    assert!(gauge("unknown"));
    for vol in ["fs-00000000000000001", "fs-00000000000000002", "fs-00000000000000003", "fs-00000000000000004"] {
        let staging = kubelet.join(format!("plugins/kubernetes.io/csi/fsx.csi.aws.com/{vol}/globalmount"));
        let req =
            NodeUnstageVolumeRequest { volume_id: vol.into(), staging_target_path: staging.display().to_string() };
        client.node_unstage_volume(req).await.unwrap();
    }
}

async fn bad_input_is_refused_and_changes_nothing() {
    let mut env = Env::new().await;
    let outside = "/tmp/elsewhere/globalmount".to_string();
    let traversal = format!("{}/../../../etc", env.kubelet.display());
    for staging in [outside, traversal, "relative/path".into(), String::new()] {
        let err = env.client.node_stage_volume(stage_request(VOLUME, &staging, "abcdefgh")).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{staging}: {err:?}");
    }
    let staging = env.staging(VOLUME);
    for (key, value) in [("mountname", "toolongname"), ("mountname", "a/b"), ("dnsname", "bad host"), ("dnsname", "")] {
        let mut req = stage_request(VOLUME, &staging, "abcdefgh");
        req.volume_context.insert(key.into(), value.into());
        let err = env.client.node_stage_volume(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{key}={value}: {err:?}");
    }
    for flags in
        [vec!["device=1.2.3.4@tcp:/x"], vec!["mgsname=x"], vec!["relatime,flock"], vec!["flock\n"], vec!["bogus"]]
    {
        let mut req = stage_request(VOLUME, &staging, "abcdefgh");
        if let Some(AccessType::Mount(m)) = req.volume_capability.as_mut().unwrap().access_type.as_mut() {
            m.mount_flags = flags.iter().map(|s| s.to_string()).collect();
        }
        let err = env.client.node_stage_volume(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{flags:?}: {err:?}");
        assert!(err.message().contains("not allowed"), "{}", err.message());
    }
    let err = env.client.node_stage_volume(stage_request("fs ../x\n", &staging, "abcdefgh")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut ctx = context("abcdefgh");
    ctx.insert("subdirectory".into(), "../escape".into());
    let err = env.publish(VOLUME, "p1", false, ctx.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = env
        .client
        .node_stage_volume(NodeStageVolumeRequest {
            volume_context: ctx,
            ..stage_request(VOLUME, &staging, "abcdefgh")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("subdirectory"), "{}", err.message());
    assert!(env.mounts().is_empty());
    assert!(!Path::new(&staging).exists());
}

async fn stats_condition_and_info() {
    let mut env = Env::new().await;
    let missing = env.target("missing");
    let err = env
        .client
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: VOLUME.into(),
            volume_path: missing,
            staging_target_path: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let plain = env.target("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let r = env
        .client
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: VOLUME.into(),
            volume_path: plain,
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.volume_condition.unwrap().abnormal);

    let info = env.client.node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, "node-1");
    // No zone known here: a topology with no segment (the capability is advertised).
    assert_eq!(info.accessible_topology, Some(Topology::default()));
    let caps = env.client.node_get_capabilities(NodeGetCapabilitiesRequest {}).await.unwrap().into_inner();
    assert_eq!(caps.capabilities.len(), 3);
}

/// Finding: symlinks below the kubelet dir led unlink, rmdir, mkdir and mount(2) outside it.
async fn symlinks_never_lead_outside_the_kubelet_dir() {
    let mut env = Env::new().await;
    let outside = env._dir.path().join("outside");
    std::fs::create_dir_all(outside.join("emptydir")).unwrap();
    std::fs::write(outside.join("victim_file"), "keep").unwrap();
    let pod = env.kubelet.join("pods/p1");
    std::fs::create_dir_all(&pod).unwrap();
    std::os::unix::fs::symlink(&outside, pod.join("link")).unwrap();
    let via = |leaf: &str| pod.join("link").join(leaf).display().to_string();
    let refused = |r: Result<(), tonic::Status>, what: &str| {
        let err = r.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains("symbolic link") && err.message().contains("link"), "{what}: {}", err.message());
    };

    for leaf in ["victim_file", "emptydir"] {
        let r = env
            .client
            .node_unpublish_volume(NodeUnpublishVolumeRequest { volume_id: VOLUME.into(), target_path: via(leaf) })
            .await
            .map(|_| ());
        refused(r, &format!("unpublish {leaf}"));
        let r = env
            .client
            .node_unstage_volume(NodeUnstageVolumeRequest { volume_id: VOLUME.into(), staging_target_path: via(leaf) })
            .await
            .map(|_| ());
        refused(r, &format!("unstage {leaf}"));
    }
    assert_eq!(std::fs::read_to_string(outside.join("victim_file")).unwrap(), "keep");
    assert!(outside.join("emptydir").is_dir());

    let r = env.client.node_stage_volume(stage_request(VOLUME, &via("new/deeper"), "abcdefgh")).await.map(|_| ());
    refused(r, "stage");
    assert!(!outside.join("new").exists(), "stage created a directory outside the kubelet dir");

    // A real staging, then a publish through the link and a subdirectory that is a link.
    env.stage(VOLUME, "abcdefgh", Duration::from_secs(10)).await.unwrap();
    let req = NodePublishVolumeRequest {
        volume_id: VOLUME.into(),
        staging_target_path: env.staging(VOLUME),
        target_path: via("target"),
        volume_capability: Some(mount_cap(Mode::MultiNodeMultiWriter)),
        volume_context: context("abcdefgh"),
        ..Default::default()
    };
    refused(env.client.node_publish_volume(req).await.map(|_| ()), "publish through a link");
    assert!(!outside.join("target").exists());
    std::os::unix::fs::symlink("/etc", Path::new(&env.staging(VOLUME)).join("etc")).unwrap();
    let mut sub = context("abcdefgh");
    sub.insert("subdirectory".into(), "etc".into());
    let err = env.publish(VOLUME, "p2", false, sub).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("symbolic link"), "{}", err.message());
    let stats = env
        .client
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: VOLUME.into(),
            volume_path: via("emptydir"),
            staging_target_path: String::new(),
        })
        .await;
    assert_eq!(stats.unwrap_err().code(), Code::InvalidArgument);

    // Only the one staging mount exists, and it is inside the kubelet dir.
    let all = mountinfo::parse(&SyscallMounter.mount_table().unwrap());
    assert!(!all.iter().any(|m| m.mount_point.starts_with(&outside)), "a mount outside the kubelet dir");
    assert_eq!(env.mounts().len(), 1, "{:?}", env.mounts());
    env.unstage(VOLUME).await.unwrap();
}

/// The count of one node operation's duration histogram.
fn node_count(operation: &str, result: &str) -> u64 {
    let text = fsx_csi_driver::metrics::get().encode();
    let prefix =
        format!(r#"fsx_csi_node_operation_duration_seconds_count{{operation="{operation}",result="{result}"}} "#);
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
}

fn blocked_workers() -> i64 {
    let text = fsx_csi_driver::metrics::get().encode();
    text.lines().find_map(|l| l.strip_prefix("fsx_csi_node_blocked_workers ")).unwrap().trim().parse().unwrap()
}

/// Issue 13: every node operation is timed by operation and result, a hung one counts as a
/// timeout and a blocked worker until it returns. (Cases run one at a time in this process.)
async fn node_operations_are_timed_by_operation_and_result() {
    let mut env = Env::new().await;
    let ops = [("mount", "success"), ("bind_mount", "success"), ("unmount", "success"), ("stats", "success")];
    let before: Vec<u64> = ops.iter().map(|(o, r)| node_count(o, r)).collect();
    env.stage(VOLUME, "abcdefgh", Duration::from_secs(10)).await.unwrap();
    env.publish(VOLUME, "p1", false, context("abcdefgh")).await.unwrap();
    let stats = NodeGetVolumeStatsRequest {
        volume_id: VOLUME.into(),
        volume_path: env.target("p1"),
        staging_target_path: String::new(),
    };
    env.client.node_get_volume_stats(stats).await.unwrap();
    env.unpublish(VOLUME, "p1").await.unwrap();
    env.unstage(VOLUME).await.unwrap();
    let after: Vec<u64> = ops.iter().map(|(o, r)| node_count(o, r)).collect();
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // One mount, one bind, two unmounts (target and staging), one stats.
    assert_eq!(delta, vec![1, 1, 2, 1], "{ops:?}");

    // A hung mount: a timeout, and one blocked worker until the server answers.
    let (timeouts, refused, blocked) =
        (node_count("mount", "timeout"), node_count("mount", "refused"), blocked_workers());
    let stuck = "fs-00000000000000001";
    env.mounter.blocker.block(Path::new(&env.staging(stuck)));
    env.stage(stuck, "stuckfs", Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(node_count("mount", "timeout"), timeouts + 1);
    assert_eq!(blocked_workers(), blocked + 1);
    env.stage(stuck, "stuckfs", Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(node_count("mount", "refused"), refused + 1);
    env.mounter.blocker.release();
    let start = Instant::now();
    while blocked_workers() != blocked {
        assert!(start.elapsed() < Duration::from_secs(20), "the worker never returned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut result = env.unstage(stuck).await;
    while matches!(&result, Err(s) if s.code() == Code::Aborted) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        result = env.unstage(stuck).await;
    }
    result.unwrap();
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

/// A node whose drain state the test scripts: each read takes the next answer, the last one
/// repeats.
struct ScriptedNode(std::sync::Mutex<Vec<Option<&'static str>>>);

#[async_trait::async_trait]
impl drain::NodeState for ScriptedNode {
    async fn drain_reason(&self) -> Result<Option<String>, fsx_csi_driver::kube::KubeError> {
        let mut v = self.0.lock().unwrap();
        let next = if v.len() > 1 { v.remove(0) } else { v[0] };
        Ok(next.map(str::to_string))
    }
}

/// A drained node whose API server answers the first read and then hangs.
#[derive(Default)]
struct HangingAfterFirstRead(std::sync::atomic::AtomicBool);

#[async_trait::async_trait]
impl drain::NodeState for HangingAfterFirstRead {
    async fn drain_reason(&self) -> Result<Option<String>, fsx_csi_driver::kube::KubeError> {
        if self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(Some("cordoned".into()))
    }
}

fn vol_data(dir: &Path, driver: &str, pv: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let json = format!(r#"{{"driverName":"{driver}","specVolID":"{pv}","volumeHandle":"{VOLUME}"}}"#);
    std::fs::write(dir.join("vol_data.json"), json).unwrap();
}

/// Issue 12: on a drained node the preStop hook keeps the plugin up until the kubelet has
/// unpublished and unstaged every volume through it, and wakes on the unmounts themselves.
async fn pre_stop_on_a_drained_node_waits_for_the_kubelet_to_unmount() {
    let mut env = Env::new().await;
    // The kubelet writes vol_data.json beside each CSI target.
    let pod_dir = env.kubelet.join("pods/p1/volumes/kubernetes.io~csi/pv");
    vol_data(&pod_dir, "fsx.csi.aws.com", "pv-shared");
    env.stage(VOLUME, "abcdefgh", Duration::from_secs(10)).await.unwrap();
    env.publish(VOLUME, "p1", false, context("abcdefgh")).await.unwrap();
    assert_eq!(env.mounts().len(), 2);

    let kubelet = fsx_csi_driver::mount::paths::KubeletDir::new(&env.kubelet).unwrap();
    // A rolling update: not drained, so it returns at once and the mounts stay.
    let settings = drain::Settings { timeout: Duration::from_secs(50), recheck: Duration::from_secs(10) };
    let idle = ScriptedNode(vec![None].into());
    let out = drain::pre_stop(&kubelet, &idle, settings, &mut |_| {}).await.unwrap();
    assert_eq!(out, drain::Outcome::NotDraining);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
    let hook = tokio::spawn(async move {
        let draining = ScriptedNode(vec![Some("the node is cordoned")].into());
        let mut report = move |p: drain::Progress<'_>| {
            if let drain::Progress::Waiting(held) = p {
                let _ = tx.send(held.iter().map(|h| h.volume.clone()).collect());
            }
        };
        drain::pre_stop(&kubelet, &draining, settings, &mut report).await
    });
    // It reports both mounts of the volume, then the staging mount alone.
    let first = rx.recv().await.unwrap();
    assert_eq!(first, vec![VOLUME.to_string(), "pv-shared".to_string()], "{first:?}");
    env.unpublish(VOLUME, "p1").await.unwrap();
    let second = rx.recv().await.unwrap();
    assert_eq!(second, vec![VOLUME.to_string()], "{second:?}");
    let unstaged = Instant::now();
    env.unstage(VOLUME).await.unwrap();
    let out = hook.await.unwrap().unwrap();
    assert!(matches!(out, drain::Outcome::Released { .. }), "{out:?}");
    println!("  pre-stop: returned {:?} after the last unmount", unstaged.elapsed());
    assert!(env.mounts().is_empty());
}

/// Issue 12: the wait ends when the drain is cancelled or the time runs out, counts a target
/// the Go driver mounted (no staging), and ignores other drivers' mounts.
async fn pre_stop_is_bounded_and_ignores_other_drivers() {
    let env = Env::new().await;
    let go_target = env.kubelet.join("pods/p1/volumes/kubernetes.io~csi/pv-go");
    let ebs_target = env.kubelet.join("pods/p2/volumes/kubernetes.io~csi/pv-ebs");
    vol_data(&go_target, "fsx.csi.aws.com", "pv-go");
    vol_data(&ebs_target, "ebs.csi.aws.com", "pv-ebs");
    for t in [&go_target, &ebs_target] {
        std::fs::create_dir_all(t.join("mount")).unwrap();
        SyscallMounter
            .mount(Some("tmpfs"), &t.join("mount"), Some("tmpfs"), nix::mount::MsFlags::empty(), None)
            .unwrap();
    }
    let kubelet = fsx_csi_driver::mount::paths::KubeletDir::new(&env.kubelet).unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = held.clone();
    let mut report = move |p: drain::Progress<'_>| {
        if let drain::Progress::Waiting(h) = p {
            *seen.lock().unwrap() = h.iter().map(|h| h.volume.clone()).collect::<Vec<_>>();
        }
    };

    // Uncordoned on the first re-read: the wait ends without waiting for the timeout.
    let settings = drain::Settings { timeout: Duration::from_secs(50), recheck: Duration::from_millis(50) };
    let node = ScriptedNode(vec![Some("cordoned"), None].into());
    let out = drain::pre_stop(&kubelet, &node, settings, &mut report).await.unwrap();
    assert!(matches!(out, drain::Outcome::Cancelled { .. }), "{out:?}");
    assert_eq!(*held.lock().unwrap(), vec!["pv-go".to_string()]);

    // Still drained and still mounted: it gives up at the timeout, naming what is left.
    let settings = drain::Settings { timeout: Duration::from_millis(300), recheck: Duration::from_secs(10) };
    let node = ScriptedNode(vec![Some("cordoned")].into());
    let out = drain::pre_stop(&kubelet, &node, settings, &mut report).await.unwrap();
    let drain::Outcome::TimedOut { held } = out else { panic!("{out:?}") };
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].mount_point, kubelet.real().join("pods/p1/volumes/kubernetes.io~csi/pv-go/mount"));

    // An API server that stops answering mid-wait does not carry the hook past its timeout.
    let settings = drain::Settings { timeout: Duration::from_millis(800), recheck: Duration::from_millis(100) };
    let started = Instant::now();
    let out = drain::pre_stop(&kubelet, &HangingAfterFirstRead::default(), settings, &mut |_| {}).await.unwrap();
    assert!(matches!(out, drain::Outcome::TimedOut { .. }), "{out:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "returned after {:?}", started.elapsed());

    // Once the Go driver's target is unmounted, the other driver's mount holds nothing up.
    SyscallMounter.unmount(&go_target.join("mount"), nix::mount::MntFlags::empty()).unwrap();
    let out = drain::pre_stop(&kubelet, &node, settings, &mut |_| {}).await.unwrap();
    assert!(matches!(out, drain::Outcome::Released { .. }), "{out:?}");
    SyscallMounter.unmount(&ebs_target.join("mount"), nix::mount::MntFlags::empty()).unwrap();
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Finding: every NodeGetVolumeStats on a hung mount left one more thread blocked.
async fn a_hung_file_system_costs_one_thread_not_one_per_call() {
    let mut env = Env::new().await;
    env.stage(VOLUME, "abcdefgh", Duration::from_secs(10)).await.unwrap();
    for pod in ["hung", "healthy"] {
        env.publish(VOLUME, pod, false, context("abcdefgh")).await.unwrap();
    }
    let hung = env.target("hung");
    env.mounter.blocker.block(Path::new(&hung));
    let stats = |path: String, timeout: Duration| {
        let mut client = env.client.clone();
        async move {
            let mut req = tonic::Request::new(NodeGetVolumeStatsRequest {
                volume_id: VOLUME.into(),
                volume_path: path,
                staging_target_path: String::new(),
            });
            req.set_timeout(timeout);
            client.node_get_volume_stats(req).await.map(|r| r.into_inner())
        }
    };
    // The first call times out with the abnormal condition; its probe stays blocked.
    let first = stats(hung.clone(), Duration::from_millis(500)).await.unwrap();
    let condition = first.volume_condition.unwrap();
    assert!(condition.abnormal && condition.message.contains("unresponsive"), "{}", condition.message);
    let before = threads();
    for round in 0..3 {
        let calls: Vec<_> = (0..30).map(|_| tokio::spawn(stats(hung.clone(), Duration::from_secs(5)))).collect();
        let start = Instant::now();
        for call in calls {
            let r = call.await.unwrap().unwrap();
            let c = r.volume_condition.unwrap();
            assert!(c.abnormal && c.message.contains("has not returned"), "{}", c.message);
        }
        assert!(start.elapsed() < Duration::from_secs(3), "round {round}: calls waited for the hung probe");
        assert!(threads() <= before + 1, "round {round}: threads went from {before} to {}", threads());
        // A healthy volume stays fast meanwhile.
        let start = Instant::now();
        let ok = stats(env.target("healthy"), Duration::from_secs(5)).await.unwrap();
        assert!(!ok.volume_condition.unwrap().abnormal);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
    env.mounter.blocker.release();
    for pod in ["hung", "healthy"] {
        env.unpublish(VOLUME, pod).await.unwrap();
    }
    env.unstage(VOLUME).await.unwrap();
}

type Case = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => { vec![$((stringify!($name), (|| Box::pin($name()) as Pin<Box<dyn Future<Output = ()> + Send>>) as Case)),*] };
}

fn main() -> ExitCode {
    let cases: Vec<(&str, Case)> = cases![
        full_lifecycle,
        subdirectory_volumes_share_one_mount_per_file_system,
        repeated_calls_are_idempotent,
        read_only_publish_keeps_nosuid_nodev_noexec_and_atime,
        read_only_publish_is_read_only_on_the_host_too,
        unpublish_and_unstage_never_delete_the_kubelets_files,
        unpublish_and_unstage_of_missing_paths_are_ok,
        publish_needs_a_staged_volume,
        stuck_mount_answers_in_time_and_blocks_nothing_else,
        concurrent_calls_on_one_volume_are_aborted,
        real_lustre_fstype_fails_with_enodev_and_leaves_nothing,
        efa_volume_without_efa_interfaces_warns_once_and_mounts,
        bad_input_is_refused_and_changes_nothing,
        stats_condition_and_info,
        symlinks_never_lead_outside_the_kubelet_dir,
        a_hung_file_system_costs_one_thread_not_one_per_call,
        pre_stop_on_a_drained_node_waits_for_the_kubelet_to_unmount,
        pre_stop_is_bounded_and_ignores_other_drivers,
        node_operations_are_timed_by_operation_and_result,
    ];
    // libtest's arguments: name filters, and `--skip PATTERN`; other flags are ignored.
    let (mut filter, mut skip) = (Vec::<String>::new(), Vec::<String>::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--skip" {
            skip.extend(args.next());
        } else if !a.starts_with('-') {
            filter.push(a);
        }
    }
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|(n, _)| filter.is_empty() || filter.iter().any(|f| n.contains(f.as_str())))
        .filter(|(n, _)| !skip.iter().any(|s| n.contains(s.as_str())))
        .collect();

    println!("\nrunning {} tests", cases.len());
    if !nix::unistd::geteuid().is_root() {
        println!("node tests need root to mount (CI runs as root): SKIPPED");
        println!("\ntest result: ok. 0 passed; 0 failed; {} ignored; 0 measured; 0 filtered out\n", cases.len());
        return ExitCode::SUCCESS;
    }
    // Still single-threaded here: a private mount namespace keeps every mount of these tests
    // away from the machine, and ends with the process.
    tmpfs_mounter::enter_private_mount_namespace().expect("a private mount namespace");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let (mut passed, mut failed) = (0, 0);
    let start = Instant::now();
    for (name, case) in cases {
        let result =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(60), tokio::spawn(case())).await });
        match result {
            Ok(Ok(())) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Ok(Err(e)) => {
                failed += 1;
                println!("test {name} ... FAILED ({e})");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED (timed out)");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s\n",
        start.elapsed().as_secs_f64()
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
