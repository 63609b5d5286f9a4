//! The subdirectory service against the in-memory FSx, a directory per file system standing
//! in for its Lustre mount, and quotas kept in memory (the ioctls' own tests are in
//! `quota.rs`; the real project ids and quotas are the mount-namespace tier's).

use std::os::fd::BorrowedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::fsx::memory::{MemoryFsx, Timing};
use crate::provision::params::StorageClassParams;

/// A directory per file system under one temporary directory.
struct DirRoots {
    base: tempfile::TempDir,
    opens: AtomicUsize,
}

impl Roots for DirRoots {
    fn open(&self, fs: &FileSystem) -> io::Result<OwnedFd> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let dir = self.base.path().join(&fs.id);
        std::fs::create_dir_all(&dir)?;
        Ok(std::fs::File::open(dir)?.into())
    }
}

/// Project ids by inode, limits by project.
#[derive(Default)]
struct MemoryQuotas {
    projects: Mutex<HashMap<u64, u32>>,
    limits: Mutex<HashMap<u32, u64>>,
}

impl Quotas for MemoryQuotas {
    fn set_project(&self, dir: BorrowedFd<'_>, project: u32) -> io::Result<()> {
        let ino = rustix::fs::fstat(dir)?.st_ino;
        self.projects.lock().unwrap().insert(ino, project);
        Ok(())
    }
    fn project_of(&self, dir: BorrowedFd<'_>) -> io::Result<(u32, bool)> {
        let ino = rustix::fs::fstat(dir)?.st_ino;
        Ok(self.projects.lock().unwrap().get(&ino).map_or((0, false), |p| (*p, true)))
    }
    fn set_limit(&self, _: BorrowedFd<'_>, project: u32, bytes: u64) -> io::Result<()> {
        self.limits.lock().unwrap().insert(project, bytes);
        Ok(())
    }
}

struct Fixture {
    fsx: Arc<MemoryFsx>,
    roots: Arc<DirRoots>,
    quotas: Arc<MemoryQuotas>,
    subdirs: Subdirs,
    fs: String,
}

const GIB: i64 = 1 << 30;

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

async fn fixture(version: &str) -> Fixture {
    let fsx = Arc::new(MemoryFsx::new(Timing { create: Duration::ZERO, ..Timing::default() }));
    let params = StorageClassParams::parse(&HashMap::from([
        ("subnetId".to_string(), "subnet-0123456789abcdef0".to_string()),
        ("deploymentType".to_string(), "PERSISTENT_2".to_string()),
        ("perUnitStorageThroughput".to_string(), "125".to_string()),
        ("fileSystemTypeVersion".to_string(), version.to_string()),
    ]))
    .unwrap();
    let fs = fsx.create_file_system(&params.create_spec(1200, "token".into(), Vec::new())).await.unwrap();
    let roots = Arc::new(DirRoots { base: tempfile::tempdir().unwrap(), opens: AtomicUsize::new(0) });
    let quotas = Arc::new(MemoryQuotas::default());
    let subdirs = Subdirs::new(
        Arc::clone(&fsx) as Arc<dyn Fsx>,
        Arc::clone(&roots) as Arc<dyn Roots>,
        Arc::clone(&quotas) as Arc<dyn Quotas>,
    );
    Fixture { fsx, roots, quotas, subdirs, fs: fs.id }
}

fn class(fs: &str, claim: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = [
        ("provisioningMode", "subdirectory"),
        ("fileSystemId", fs),
        ("basePath", "/k8s"),
        ("subPathPattern", "${.PVC.namespace}/${.PVC.name}"),
        ("uid", "1000"),
        ("gid", "2000"),
        ("csi.storage.k8s.io/pvc/namespace", "team-a"),
        ("csi.storage.k8s.io/pvc/name", claim),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    m.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    m
}

impl Fixture {
    async fn create(
        &self,
        name: &str,
        claim: &str,
        bytes: i64,
        extra: &[(&str, &str)],
    ) -> Result<SubdirVolume, SubdirError> {
        let parameters = class(&self.fs, claim, extra);
        let req = SubdirRequest { name, required_bytes: bytes, limit_bytes: 0, parameters: &parameters };
        self.subdirs.create(req, soon()).await
    }

    fn root(&self) -> PathBuf {
        self.roots.base.path().join(&self.fs)
    }

    fn limit(&self, project: u32) -> Option<u64> {
        self.quotas.limits.lock().unwrap().get(&project).copied()
    }

    /// Waits for the background removals to end (the event, not a time).
    async fn removed(&self) {
        let until = Instant::now() + Duration::from_secs(30);
        while self.subdirs.removing() > 0 {
            assert!(Instant::now() < until, "the trash removal did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[tokio::test]
async fn ten_claims_one_describe_one_directory_and_one_project_each() {
    let f = fixture("2.15").await;
    let before = f.fsx.calls("DescribeFileSystems");
    let mut projects = HashSet::new();
    for i in 0..10 {
        let v = f.create(&format!("pvc-{i}"), &format!("claim-{i}"), (i + 1) * GIB, &[]).await.unwrap();
        assert_eq!(v.id.file_system_id, f.fs);
        assert_eq!(v.capacity_bytes, (i + 1) * GIB, "the size asked for, not a file system step");
        assert!(v.path.starts_with(&format!("k8s/team-a/claim-{i}-")), "{}", v.path);
        assert_eq!(SubdirId::parse(&v.id.to_string()), Some(v.id.clone()));
        let meta = std::fs::metadata(f.root().join(&v.path)).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (1000, 2000, 0o770));
        assert_eq!(f.limit(v.id.project), Some(((i + 1) * GIB) as u64));
        projects.insert(v.id.project);
        // A retry is the same volume.
        assert_eq!(f.create(&format!("pvc-{i}"), &format!("claim-{i}"), (i + 1) * GIB, &[]).await.unwrap(), v);
    }
    assert_eq!(projects.len(), 10);
    assert_eq!(f.fsx.calls("DescribeFileSystems") - before, 1, "one describe for ten claims");
    assert_eq!(f.roots.opens.load(Ordering::SeqCst), 1, "one mount for ten claims");
    // A retry asking for more than the volume has is another volume.
    let e = f.create("pvc-0", "claim-0", 5 * GIB, &[]).await.unwrap_err();
    assert!(matches!(e, SubdirError::AlreadyExists { .. }), "{e}");
}

#[tokio::test]
async fn bad_classes_are_refused_before_any_call() {
    let f = fixture("2.15").await;
    let before = f.fsx.calls("DescribeFileSystems");
    for extra in [
        &[("subPathPattern", "../${.PVC.name}")][..],
        &[("uid", "-1")],
        &[("directoryPerms", "rwx")],
        &[("subnetId", "subnet-0123456789abcdef0")],
        &[("colour", "blue")],
    ] {
        let e = f.create("pvc-x", "x", GIB, extra).await.unwrap_err();
        assert!(matches!(e, SubdirError::Parameter(ref p) if p.key == extra[0].0), "{e}");
    }
    let e = f.create("pvc-x", "x", 0, &[]).await.unwrap_err();
    assert!(matches!(e, SubdirError::Invalid(_)), "{e}");
    assert_eq!(f.fsx.calls("DescribeFileSystems"), before);
    assert_eq!(f.roots.opens.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_old_lustre_gives_both_ways_out() {
    let f = fixture("2.12").await;
    let e = f.create("pvc-1", "a", GIB, &[]).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, SubdirError::FileSystem(_)), "{text}");
    assert!(
        text.contains("Lustre 2.12") && text.contains("projectQuota: \"false\"") && text.contains("2.15"),
        "{text}"
    );
    assert_eq!(f.roots.opens.load(Ordering::SeqCst), 0, "nothing made");
    let v = f.create("pvc-1", "a", GIB, &[("projectQuota", "false")]).await.unwrap();
    assert_eq!(f.limit(v.id.project), None);

    let missing = class("fs-0123456789abcdef0", "a", &[]);
    let req = SubdirRequest { name: "pvc-2", required_bytes: GIB, limit_bytes: 0, parameters: &missing };
    let e = f.subdirs.create(req, soon()).await.unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[tokio::test]
async fn delete_moves_the_directory_out_then_removes_it_and_releases_the_id() {
    let f = fixture("2.15").await;
    let v = f.create("pvc-1", "a", GIB, &[]).await.unwrap();
    let dir = f.root().join(&v.path);
    std::fs::write(dir.join("data"), "x").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep"), "precious").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.join("escape")).unwrap();

    f.subdirs.delete(&v.id, soon()).await.unwrap();
    assert!(!exists(&dir), "out of the tree when DeleteVolume answers");
    f.removed().await;
    assert!(!exists(&f.root().join(".fsx-csi-driver/trash").join(v.id.project.to_string())));
    assert_eq!(f.limit(v.id.project), Some(0), "the quota is cleared");
    assert!(!exists(&f.root().join(".fsx-csi-driver/projects").join(v.id.project.to_string())));
    assert_eq!(std::fs::read_to_string(outside.path().join("keep")).unwrap(), "precious");
    // Again: already deleted.
    f.subdirs.delete(&v.id, soon()).await.unwrap();
    // A new claim of the same name and class gets a new, empty directory.
    let again = f.create("pvc-1", "a", GIB, &[]).await.unwrap();
    assert!(std::fs::read_dir(f.root().join(&again.path)).unwrap().next().is_none());
}

#[tokio::test]
async fn retain_and_archive_keep_the_data_and_the_id() {
    let f = fixture("2.15").await;
    let kept = f.create("pvc-1", "kept", GIB, &[("onDelete", "retain")]).await.unwrap();
    let archived = f.create("pvc-2", "old", GIB, &[("onDelete", "archive")]).await.unwrap();
    std::fs::write(f.root().join(&archived.path).join("data"), "x").unwrap();
    f.subdirs.delete(&kept.id, soon()).await.unwrap();
    f.subdirs.delete(&archived.id, soon()).await.unwrap();
    assert!(exists(&f.root().join(&kept.path)));
    assert!(!exists(&f.root().join(&archived.path)));
    let names: Vec<String> = std::fs::read_dir(f.root().join("k8s/team-a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let moved = names.iter().find(|n| n.starts_with("archived-team-a-old-")).expect("archived");
    assert_eq!(std::fs::read_to_string(f.root().join("k8s/team-a").join(moved).join("data")).unwrap(), "x");
    // Both ids stay taken: their directories still hold them.
    let ids = Registry::open(std::fs::File::open(f.root()).unwrap().into()).unwrap().projects().unwrap();
    assert!(ids.contains(&kept.id.project) && ids.contains(&archived.id.project), "{ids:?}");
    assert_eq!(f.limit(kept.id.project), Some(GIB as u64));
}

#[tokio::test]
async fn expand_raises_the_quota_only() {
    let f = fixture("2.15").await;
    let v = f.create("pvc-1", "a", GIB, &[]).await.unwrap();
    assert_eq!(f.subdirs.expand(&v.id, 3 * GIB, 0, soon()).await.unwrap(), 3 * GIB);
    assert_eq!(f.limit(v.id.project), Some(3 * GIB as u64));
    assert_eq!(f.subdirs.expand(&v.id, 2 * GIB, 0, soon()).await.unwrap(), 3 * GIB, "never shrinks");
    let unknown = SubdirId { file_system_id: f.fs.clone(), project: 7 };
    assert!(matches!(f.subdirs.expand(&unknown, GIB, 0, soon()).await, Err(SubdirError::NotFound(_))));
    assert_eq!(f.subdirs.get(&v.id, soon()).await.unwrap().capacity_bytes, 3 * GIB);
    f.subdirs.delete(&v.id, soon()).await.unwrap();
    assert!(matches!(f.subdirs.get(&v.id, soon()).await, Err(SubdirError::NotFound(_))));
}

#[tokio::test]
async fn a_shared_directory_is_not_taken_twice() {
    let f = fixture("2.15").await;
    let same = [("ensureUniqueDirectory", "false")];
    let first = f.create("pvc-1", "shared", GIB, &same).await.unwrap();
    assert_eq!(first.path, "k8s/team-a/shared");
    let e = f.create("pvc-2", "shared", GIB, &same).await.unwrap_err();
    assert!(matches!(e, SubdirError::AlreadyExists { .. }), "{e}");
    // The loser holds nothing: once the first is gone, the directory can be claimed again.
    let r = Registry::open(std::fs::File::open(f.root()).unwrap().into()).unwrap();
    assert_eq!(r.find("pvc-2").unwrap(), None);
    f.subdirs.delete(&first.id, soon()).await.unwrap();
    f.removed().await;
    f.create("pvc-2", "shared", GIB, &same).await.unwrap();
}
