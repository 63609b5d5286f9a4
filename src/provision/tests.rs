//! The core against the in-memory FSx, with paused tokio time: a 10-minute creation takes
//! microseconds and every outcome is deterministic.

use super::*;
use crate::fsx::memory::{MemoryFsx, Timing};

const MIN: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(15);

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut p: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    p.entry("subnetId".into()).or_insert_with(|| "subnet-0123456789abcdef0".into());
    p
}

async fn provisioner(fsx: &Arc<MemoryFsx>) -> Arc<Provisioner> {
    let p = Provisioner::new(
        Arc::clone(fsx) as Arc<dyn Fsx>,
        Options {
            extra_tags: Vec::new(),
            poll_interval: Some(POLL),
            resync_interval: Duration::from_secs(3600),
            subnet_zones: None,
            events: None,
            progress_every: Duration::from_secs(60),
        },
    );
    p.start();
    p.wait_ready(Instant::now() + MIN).await.unwrap();
    p
}

async fn create(
    p: &Provisioner,
    name: &str,
    pairs: &[(&str, &str)],
    within: Duration,
) -> Result<FileSystem, ProvisionError> {
    let parameters = params(pairs);
    let req = CreateRequest {
        name,
        required_bytes: 1200 * crate::fsx::GIB,
        limit_bytes: 0,
        parameters: &parameters,
        source_snapshot: None,
        topology: None,
        claim: None,
    };
    p.create(req, Instant::now() + within).await
}

#[tokio::test(start_paused = true)]
async fn a_long_creation_waits_on_the_poller_with_no_calls_of_its_own() {
    let fsx = Arc::new(MemoryFsx::new(Timing::default()));
    let p = provisioner(&fsx).await;
    let listing = fsx.calls("DescribeFileSystems");
    let start = Instant::now();
    let (a, b) = tokio::join!(create(&p, "pvc-a", &[], 20 * MIN), create(&p, "pvc-b", &[], 20 * MIN));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.lifecycle, b.lifecycle), (Lifecycle::Available, Lifecycle::Available));
    // Bound within one poll tick of AVAILABLE (10 minutes of creation).
    assert!(start.elapsed() <= Timing::default().create + POLL, "{:?}", start.elapsed());
    assert_eq!(fsx.calls("CreateFileSystem"), 2);
    // One batched describe per tick for both, never one per waiting call.
    let ticks = Timing::default().create.as_secs() / POLL.as_secs();
    assert_eq!(fsx.calls("DescribeFileSystems") - listing, ticks, "one describe per tick for both volumes");
}

#[tokio::test(start_paused = true)]
async fn retries_after_the_deadline_join_the_same_file_system() {
    let fsx = Arc::new(MemoryFsx::new(Timing::default()));
    let p = provisioner(&fsx).await;
    let mut ids = std::collections::HashSet::new();
    let fs = loop {
        match create(&p, "pvc-retry", &[], MIN).await {
            Ok(fs) => break fs,
            Err(ProvisionError::StillPending { id, .. }) => {
                ids.insert(id);
            }
            Err(e) => panic!("{e}"),
        }
    };
    ids.insert(fs.id.clone());
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(fsx.calls("CreateFileSystem"), 1, "later retries are answered from the index");
}

#[tokio::test(start_paused = true)]
async fn a_failed_creation_is_deleted_and_the_retry_uses_a_new_token() {
    let fsx = Arc::new(MemoryFsx::new(Timing::default()));
    fsx.fail_next_creates(1, "subnet has no free IP addresses");
    let p = provisioner(&fsx).await;
    let err = create(&p, "pvc-fail", &[], 20 * MIN).await.unwrap_err();
    let ProvisionError::CreationFailed { id: failed, message } = err else { panic!("{err}") };
    assert!(message.contains("no free IP"), "{message}");
    assert!(fsx.file_systems().iter().any(|(id, l, _)| *id == failed && *l == Lifecycle::Deleting));
    let fs = create(&p, "pvc-fail", &[], 20 * MIN).await.unwrap();
    assert_ne!(fs.id, failed);
    assert_eq!(fsx.calls("CreateFileSystem"), 2);
    assert_eq!(fsx.calls("DeleteFileSystem"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_controller_finds_the_file_system_instead_of_creating_another() {
    let fsx = Arc::new(MemoryFsx::new(Timing::default()));
    let first = provisioner(&fsx).await;
    assert!(matches!(create(&first, "pvc-restart", &[], MIN).await, Err(ProvisionError::StillPending { .. })));
    drop(first);
    // A new process: an empty index, loaded from a paged listing.
    let second = provisioner(&fsx).await;
    let fs = create(&second, "pvc-restart", &[], 20 * MIN).await.unwrap();
    assert_eq!(fsx.calls("CreateFileSystem"), 1);
    assert_eq!(fsx.file_systems().len(), 1);
    assert_eq!(fs.volume_name(), Some("pvc-restart"));
}

#[tokio::test(start_paused = true)]
async fn a_name_whose_file_system_was_deleted_moves_to_a_new_token_generation() {
    let fsx = Arc::new(MemoryFsx::new(Timing { delete: 10 * MIN, ..Timing::default() }));
    let old = {
        let p = provisioner(&fsx).await;
        let fs = create(&p, "pvc-again", &[], 20 * MIN).await.unwrap();
        fsx.delete_out_of_band(&fs.id);
        fs
    };
    // After a restart the token still answers with the DELETING file system.
    let p = provisioner(&fsx).await;
    let fs = create(&p, "pvc-again", &[], 20 * MIN).await.unwrap();
    assert_ne!(fs.id, old.id);
    assert_eq!(fsx.calls("CreateFileSystem"), 3, "first, the DELETING answer, then the next generation");
}

#[tokio::test(start_paused = true)]
async fn throttling_beyond_the_sdk_retries_is_retryable_and_never_duplicates() {
    let fsx = Arc::new(MemoryFsx::new(Timing::default()));
    let p = provisioner(&fsx).await;
    fsx.throttle_next(1);
    let err = create(&p, "pvc-throttled", &[], 20 * MIN).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Fsx(FsxError::Unavailable { .. })), "{err}");
    let fs = create(&p, "pvc-throttled", &[], 20 * MIN).await.unwrap();
    assert_eq!(fs.lifecycle, Lifecycle::Available);
    assert_eq!(fsx.file_systems().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn expansion_joins_an_update_already_running_towards_the_size() {
    let fsx = Arc::new(MemoryFsx::new(Timing { create: MIN, ..Timing::default() }));
    let p = provisioner(&fsx).await;
    let fs = create(&p, "pvc-grow", &[("deploymentType", "SCRATCH_2")], 20 * MIN).await.unwrap();
    let gib = crate::fsx::GIB;
    // The first call runs out of time while FSx grows the file system.
    let first = p.expand(&fs.id, 4000 * gib, 0, Instant::now() + MIN).await.unwrap_err();
    assert!(matches!(first, ProvisionError::StillPending { .. }), "{first}");
    // A retry for a size the running update covers joins it.
    assert_eq!(p.expand(&fs.id, 3000 * gib, 0, Instant::now() + 20 * MIN).await.unwrap(), 4800);
    assert_eq!(fsx.calls("UpdateFileSystem"), 1);
    // Bad ranges are refused before any call.
    let calls = fsx.calls("DescribeFileSystems");
    assert!(matches!(p.expand(&fs.id, -1, 0, Instant::now() + MIN).await, Err(ProvisionError::Capacity(_))));
    assert_eq!(fsx.calls("DescribeFileSystems"), calls);
    let scratch1 = create(&p, "pvc-fixed", &[], 20 * MIN).await.unwrap();
    assert!(matches!(
        p.expand(&scratch1.id, 4800 * gib, 0, Instant::now() + MIN).await,
        Err(ProvisionError::CannotExpand(CannotExpand::Scratch1 { .. }))
    ));
}

#[tokio::test(start_paused = true)]
async fn persistent_2_links_s3_by_one_association_before_the_volume_is_ready() {
    let fsx = Arc::new(MemoryFsx::new(Timing { create: MIN, ..Timing::default() }));
    let p = provisioner(&fsx).await;
    let s3 =
        [("deploymentType", "PERSISTENT_2"), ("perUnitStorageThroughput", "125"), ("s3ImportPath", "s3://bucket/data")];
    // The file system is AVAILABLE before the association is; the call waits for both.
    let err = create(&p, "pvc-s3", &s3, 2 * MIN).await.unwrap_err();
    assert!(matches!(err, ProvisionError::AssociationPending { .. }), "{err}");
    let fs = create(&p, "pvc-s3", &s3, 20 * MIN).await.unwrap();
    let associations = fsx.associations();
    assert_eq!(associations.len(), 1, "{associations:?}");
    assert_eq!(associations[0].file_system_id, fs.id);
    assert_eq!(associations[0].lifecycle, AssociationLifecycle::Available);
    // A FAILED association discards the file system, and the retry starts clean.
    fsx.fail_next_associations(1, "the bucket policy denies FSx");
    let err = create(&p, "pvc-s3-bad", &s3, 20 * MIN).await.unwrap_err();
    assert!(
        matches!(&err, ProvisionError::AssociationFailed { message, .. } if message.contains("bucket policy")),
        "{err}"
    );
    create(&p, "pvc-s3-bad", &s3, 20 * MIN).await.unwrap();
}

const P2: [(&str, &str); 2] = [("deploymentType", "PERSISTENT_2"), ("perUnitStorageThroughput", "125")];

async fn take_snapshot(p: &Provisioner, name: &str, source: &str) -> Result<crate::fsx::Backup, ProvisionError> {
    let parameters = HashMap::new();
    p.snapshot(
        SnapshotRequest { name, source_volume_id: source, parameters: &parameters, snapshot: None },
        Instant::now() + MIN,
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_is_one_backup_per_name_ready_once_the_poller_sees_it_available() {
    use crate::fsx::BackupLifecycle;
    let fsx = Arc::new(MemoryFsx::new(Timing { create: MIN, ..Timing::default() }));
    let p = provisioner(&fsx).await;
    let fs = create(&p, "pvc-src", &P2, 20 * MIN).await.unwrap();
    // Answers at once, not ready; retries are answered from the index, with no call.
    let first = take_snapshot(&p, "snap-1", &fs.id).await.unwrap();
    assert_eq!(first.lifecycle, BackupLifecycle::Creating);
    let describes = fsx.calls("DescribeBackups");
    for _ in 0..3 {
        assert_eq!(take_snapshot(&p, "snap-1", &fs.id).await.unwrap().id, first.id);
    }
    assert_eq!((fsx.calls("CreateBackup"), fsx.calls("DescribeBackups")), (1, describes));
    // The poller (one batched describe per tick) makes it ready.
    tokio::time::sleep(Timing::default().backup + 2 * POLL).await;
    let ready = take_snapshot(&p, "snap-1", &fs.id).await.unwrap();
    assert_eq!(ready.lifecycle, BackupLifecycle::Available);
    assert_eq!(fsx.calls("CreateBackup"), 1);
    // The same name for another volume is refused.
    let other = create(&p, "pvc-other", &P2, 20 * MIN).await.unwrap();
    assert!(matches!(take_snapshot(&p, "snap-1", &other.id).await, Err(ProvisionError::AlreadyExists { .. })));
    // A restarted controller finds it by name.
    let again = provisioner(&fsx).await;
    assert_eq!(take_snapshot(&again, "snap-1", &fs.id).await.unwrap().id, first.id);
    assert_eq!(fsx.calls("CreateBackup"), 1);
    // Deletion is idempotent.
    for _ in 0..2 {
        p.delete_snapshot(&first.id, Instant::now() + MIN).await.unwrap();
    }
    p.delete_snapshot("not-a-backup", Instant::now() + MIN).await.unwrap();
    assert!(fsx.backups().is_empty());
}

#[tokio::test(start_paused = true)]
async fn scratch_volumes_are_refused_before_any_call_and_a_failed_backup_is_deleted() {
    let fsx = Arc::new(MemoryFsx::new(Timing { create: MIN, ..Timing::default() }));
    let p = provisioner(&fsx).await;
    let scratch = create(&p, "pvc-scratch", &[("deploymentType", "SCRATCH_2")], 20 * MIN).await.unwrap();
    let err = take_snapshot(&p, "snap-s", &scratch.id).await.unwrap_err();
    assert!(
        matches!(&err, ProvisionError::CannotSnapshot(CannotSnapshot::Scratch { .. }))
            && err.to_string().contains("SCRATCH_2"),
        "{err}"
    );
    assert_eq!(fsx.calls("CreateBackup"), 0);
    let fs = create(&p, "pvc-p2", &P2, 20 * MIN).await.unwrap();
    fsx.fail_next_backups(1, "the file system is busy");
    let taken = take_snapshot(&p, "snap-f", &fs.id).await.unwrap();
    tokio::time::sleep(Timing::default().backup + 2 * POLL).await;
    let err = take_snapshot(&p, "snap-f", &fs.id).await.unwrap_err();
    assert!(matches!(&err, ProvisionError::SnapshotFailed { id, .. } if *id == taken.id), "{err}");
    assert!(fsx.backups().is_empty(), "the FAILED backup is deleted");
    let retried = take_snapshot(&p, "snap-f", &fs.id).await.unwrap();
    assert_ne!(retried.id, taken.id, "a new token generation");
}

#[tokio::test(start_paused = true)]
async fn a_restore_is_one_new_file_system_of_the_backups_size_and_type() {
    let fsx = Arc::new(MemoryFsx::new(Timing { create: MIN, ..Timing::default() }));
    let p = provisioner(&fsx).await;
    let src = create(&p, "pvc-src", &P2, 20 * MIN).await.unwrap();
    let backup = take_snapshot(&p, "snap-r", &src.id).await.unwrap();
    let restore_within = |name: &'static str, pairs: Vec<(&'static str, &'static str)>, gib: i64, within| {
        let p = Arc::clone(&p);
        let id = backup.id.clone();
        async move {
            let parameters = params(&pairs);
            let req = CreateRequest {
                name,
                required_bytes: gib * crate::fsx::GIB,
                limit_bytes: 0,
                parameters: &parameters,
                source_snapshot: Some(&id),
                topology: None,
                claim: None,
            };
            p.create(req, Instant::now() + within).await
        }
    };
    let restore = |name, pairs, gib| restore_within(name, pairs, gib, 20 * MIN);
    // Not AVAILABLE yet: waited for on the poller up to the deadline, then retryable.
    let err = restore_within("pvc-r", P2.to_vec(), 1200, MIN).await.unwrap_err();
    assert!(matches!(err, ProvisionError::SnapshotNotReady { .. }), "{err}");
    assert_eq!(fsx.calls("CreateFileSystemFromBackup"), 0);
    let restored = restore("pvc-r", P2.to_vec(), 1000).await.unwrap();
    assert_ne!(restored.id, src.id);
    assert_eq!(restored.capacity_gib, 1200);
    assert_eq!(restore("pvc-r", P2.to_vec(), 1000).await.unwrap().id, restored.id, "idempotent by name");
    assert_eq!(fsx.calls("CreateFileSystemFromBackup"), 1);
    // Keys a backup fixes, and sizes above it, are refused naming them, with no call.
    let err = restore("pvc-x", vec![("deploymentType", "SCRATCH_2")], 1200).await.unwrap_err();
    assert!(
        matches!(&err, ProvisionError::CannotRestore(CannotRestore::Differs { key: "deploymentType", .. }))
            && err.to_string().contains("deploymentType"),
        "{err}"
    );
    let err = restore("pvc-y", P2.to_vec(), 2400).await.unwrap_err();
    assert!(
        matches!(&err, ProvisionError::CannotRestore(CannotRestore::Larger { have_gib: 1200, .. }))
            && err.to_string().contains("1200"),
        "{err}"
    );
    let missing = CreateRequest {
        name: "pvc-z",
        required_bytes: crate::fsx::GIB,
        limit_bytes: 0,
        parameters: &params(&P2),
        source_snapshot: Some("backup-0123456789abcdef0"),
        topology: None,
        claim: None,
    };
    assert!(matches!(p.create(missing, Instant::now() + MIN).await, Err(ProvisionError::SnapshotNotFound(_))));
    assert_eq!(fsx.calls("CreateFileSystemFromBackup"), 1);
}

#[tokio::test(start_paused = true)]
async fn modify_changes_only_what_differs_and_joins_a_running_update() {
    let fsx = Arc::new(MemoryFsx::new(Timing { create: MIN, ..Timing::default() }));
    let p = provisioner(&fsx).await;
    let fs = create(&p, "pvc-m", &P2, 20 * MIN).await.unwrap();
    let m = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let faster = m(&[("perUnitStorageThroughput", "250"), ("dataCompressionType", "LZ4")]);
    // The first call runs out of time; the retry joins the same update.
    let err = p.modify(&fs.id, &faster, Instant::now() + MIN).await.unwrap_err();
    assert!(matches!(err, ProvisionError::StillPending { .. }), "{err}");
    p.modify(&fs.id, &faster, Instant::now() + 20 * MIN).await.unwrap();
    assert_eq!(fsx.calls("UpdateFileSystem"), 1);
    // Already in effect: no call.
    p.modify(&fs.id, &faster, Instant::now() + MIN).await.unwrap();
    assert_eq!(fsx.calls("UpdateFileSystem"), 1);
    // Bad input names the key and makes no call.
    let calls = fsx.calls("DescribeFileSystems");
    let err = p.modify(&fs.id, &m(&[("deploymentType", "SCRATCH_1")]), Instant::now() + MIN).await.unwrap_err();
    assert!(err.to_string().contains("deploymentType"), "{err}");
    assert_eq!(fsx.calls("DescribeFileSystems"), calls);
    let scratch = create(&p, "pvc-sm", &[("deploymentType", "SCRATCH_2")], 20 * MIN).await.unwrap();
    let err = p.modify(&scratch.id, &faster, Instant::now() + MIN).await.unwrap_err();
    assert!(err.to_string().contains("perUnitStorageThroughput"), "{err}");
    assert_eq!(fsx.calls("UpdateFileSystem"), 1);
}

#[tokio::test(start_paused = true)]
async fn deletion_is_idempotent_and_bounded_by_the_deadline() {
    let fsx = Arc::new(MemoryFsx::new(Timing::default()));
    let p = provisioner(&fsx).await;
    let fs = create(&p, "pvc-del", &[], 20 * MIN).await.unwrap();
    for _ in 0..3 {
        p.delete(&fs.id, Instant::now() + MIN).await.unwrap();
    }
    assert_eq!(fsx.calls("DeleteFileSystem"), 1, "a DELETING file system is not deleted again");
    p.delete("fs-0123456789abcdef0", Instant::now() + MIN).await.unwrap();
    p.delete("not-an-id", Instant::now() + MIN).await.unwrap();
}

/// A provisioner at the default, adaptive cadence over an FSx whose creations take `creation`.
async fn adaptive(creation: Duration) -> (Arc<MemoryFsx>, Arc<Provisioner>) {
    let fsx = Arc::new(MemoryFsx::new(Timing { create: creation, ..Timing::default() }));
    let p = Provisioner::new(
        Arc::clone(&fsx) as Arc<dyn Fsx>,
        Options { resync_interval: Duration::from_secs(3600), ..Options::default() },
    );
    p.start();
    p.wait_ready(Instant::now() + MIN).await.unwrap();
    (fsx, p)
}

/// Creates `n` volumes `<prefix>-<i>` at once; returns when the last one was answered.
async fn at_once(p: &Arc<Provisioner>, prefix: &str, n: usize) -> Duration {
    let start = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        let (p, name) = (Arc::clone(p), format!("{prefix}-{i}"));
        calls.spawn(async move {
            create(&p, &name, &[], 20 * MIN).await.unwrap();
            start.elapsed()
        });
    }
    calls.join_all().await.into_iter().max().unwrap_or_default()
}

/// A provisioner with a fixed poll whose events are recorded.
async fn recording(fsx: &Arc<MemoryFsx>) -> (Arc<Provisioner>, Arc<crate::events::Recorded>) {
    let recorded = Arc::new(crate::events::Recorded::default());
    let p = Provisioner::new(
        Arc::clone(fsx) as Arc<dyn Fsx>,
        Options {
            poll_interval: Some(POLL),
            resync_interval: Duration::from_secs(3600),
            events: Some(Arc::clone(&recorded) as Arc<dyn Events>),
            ..Options::default()
        },
    );
    p.start();
    p.wait_ready(Instant::now() + MIN).await.unwrap();
    (p, recorded)
}

/// The adaptive cadence (no `--poll-interval`): once this controller has seen creations of a
/// class end (the first seen by the early cadence, so imprecisely; the next closely), the next
/// ones are noticed within two seconds of AVAILABLE, for about the describes per volume a 15 s
/// poll makes, and the more volumes, the fewer per volume.
#[tokio::test(start_paused = true)]
async fn the_adaptive_cadence_binds_within_seconds_of_available_for_less_than_a_fixed_poll() {
    for creation in [3 * MIN, 10 * MIN] {
        let (fsx, p) = adaptive(creation).await;
        // Cold: the prior (6 min for scratch) is wrong, so this one may be noticed late, but no
        // later than twice the base interval.
        let start = Instant::now();
        create(&p, "pvc-cold", &[], 20 * MIN).await.unwrap();
        assert!(start.elapsed() <= creation + 2 * POLL, "{:?}", start.elapsed());
        let start = Instant::now();
        create(&p, "pvc-second", &[], 20 * MIN).await.unwrap();
        assert!(start.elapsed() <= creation + POLL, "{:?}", start.elapsed());
        for n in [1usize, 50] {
            let before = fsx.calls("DescribeFileSystems");
            let lag = at_once(&p, &format!("pvc-warm-{n}"), n).await.saturating_sub(creation);
            assert!(lag <= Duration::from_secs(2), "{n} volumes: bound {lag:?} after AVAILABLE");
            let per_volume = (fsx.calls("DescribeFileSystems") - before) as f64 / n as f64;
            let fixed = (creation.as_secs() / POLL.as_secs()) as f64;
            assert!(
                per_volume <= fixed + cadence::INITIAL_CREDIT + 1.0,
                "{n} volumes: {per_volume} describes per volume, a 15 s poll makes {fixed}"
            );
            if n == 50 {
                assert!(per_volume <= fixed / 8.0, "50 volumes share each describe: {per_volume} per volume");
            }
        }
    }
}

/// Events on the claim: the creation, progress at most once a minute (the recorder aggregates
/// them into one series), AVAILABLE; and a FAILED creation's Warning saying what the driver did.
#[tokio::test(start_paused = true)]
async fn a_creation_tells_its_claim_how_it_goes_and_a_failure_what_was_done() {
    let fsx = Arc::new(MemoryFsx::new(Timing::default()));
    fsx.fail_next_creates(1, "subnet has no free IP addresses");
    let (p, recorded) = recording(&fsx).await;
    let claim = Claim { namespace: "team-a".into(), name: "data".into() };
    let parameters = params(&[]);
    let req = CreateRequest {
        name: "pvc-0f6c2b0a-7d1e-4c55-9a1b-2f3e4d5c6b7a",
        required_bytes: 1200 * crate::fsx::GIB,
        limit_bytes: 0,
        parameters: &parameters,
        source_snapshot: None,
        topology: None,
        claim: Some(&claim),
    };
    let failed = p.create(req, Instant::now() + 20 * MIN).await.unwrap_err();
    let fs = p.create(req, Instant::now() + 20 * MIN).await.unwrap();
    // The follower posts the end once the poller's observation reaches it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = recorded.all();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason).collect();
    let count = |r: &str| reasons.iter().filter(|x| **x == r).count();
    assert!(events.iter().all(|e| e.subject == crate::events::Subject::volume(req.name, Some(&claim))));
    assert_eq!(count(progress::reason::CREATING), 2, "{reasons:?}");
    let warning = events.iter().find(|e| e.reason == progress::reason::FAILED).expect("a FAILED warning");
    assert_eq!(warning.kind, Kind::Warning);
    assert!(warning.message.contains("no free IP") && warning.message.contains("deleted it"), "{}", warning.message);
    assert!(failed.to_string().contains("no free IP"), "{failed}");
    // Two 10-minute creations: at most one progress event a minute each.
    let progress = count(progress::reason::PROGRESS);
    assert!((10..=20).contains(&progress), "{progress} progress events: {reasons:?}");
    let available = events.iter().find(|e| e.reason == progress::reason::AVAILABLE).expect("AVAILABLE");
    assert!(available.message.contains(&fs.id), "{}", available.message);
    let creating = events.iter().find(|e| e.reason == progress::reason::CREATING).unwrap();
    assert!(
        creating.message.contains("subnet-0123456789abcdef0") && creating.message.contains("1200 GiB"),
        "{}",
        creating.message
    );
}

/// Many creations at once share each describe, so even a fresh controller, whose guess of the
/// creation time is wrong, watches them closely: every one binds within a few seconds.
#[tokio::test(start_paused = true)]
async fn many_creations_at_once_are_watched_closely_even_before_anything_was_learned() {
    let creation = 3 * MIN;
    let (fsx, p) = adaptive(creation).await;
    let before = fsx.calls("DescribeFileSystems");
    let lag = at_once(&p, "pvc-cold", 50).await.saturating_sub(creation);
    assert!(lag <= cadence::EARLY_FLOOR + Duration::from_secs(1), "bound {lag:?} after AVAILABLE");
    let per_volume = (fsx.calls("DescribeFileSystems") - before) as f64 / 50.0;
    assert!(per_volume <= 2.0, "{per_volume} describes per volume (a 15 s poll makes 12 for one)");

    // A thousand at once, with a prior too short (10-minute creations): 20 batches, at most
    // 4 calls a second in all, each volume still noticed within the stretched cadence.
    let creation = 10 * MIN;
    let (fsx, p) = adaptive(creation).await;
    let before = fsx.calls("DescribeFileSystems");
    let lag = at_once(&p, "pvc-many", 1000).await.saturating_sub(creation);
    let rate = (fsx.calls("DescribeFileSystems") - before) as f64 / (creation + lag).as_secs_f64();
    assert!(rate <= 4.5, "{rate:.2} describes a second");
    assert!(lag <= 20 * cadence::SPACING + Duration::from_secs(1), "bound {lag:?} after AVAILABLE");
}

/// Growth and backups tell their objects too: the claim sees the growth start, its progress
/// and the new size; the VolumeSnapshot sees its backup being taken and AVAILABLE.
#[tokio::test(start_paused = true)]
async fn growth_and_backups_tell_the_claim_and_the_snapshot() {
    use crate::events::Subject;
    let fsx = Arc::new(MemoryFsx::new(Timing { create: MIN, ..Timing::default() }));
    let (p, recorded) = recording(&fsx).await;
    let claim = Claim { namespace: "ml".into(), name: "data".into() };
    let parameters = params(&P2);
    let name = "pvc-0f6c2b0a-7d1e-4c55-9a1b-2f3e4d5c6b7b";
    let req = CreateRequest {
        name,
        required_bytes: 1200 * crate::fsx::GIB,
        limit_bytes: 0,
        parameters: &parameters,
        source_snapshot: None,
        topology: None,
        claim: Some(&claim),
    };
    let fs = p.create(req, Instant::now() + 20 * MIN).await.unwrap();
    p.expand(&fs.id, 2400 * crate::fsx::GIB, 0, Instant::now() + 20 * MIN).await.unwrap();
    let snapshot = Claim { namespace: "ml".into(), name: "data-snap".into() };
    let none = HashMap::new();
    let backup = p
        .snapshot(
            SnapshotRequest {
                name: "snapcontent-1",
                source_volume_id: &fs.id,
                parameters: &none,
                snapshot: Some(&snapshot),
            },
            Instant::now() + MIN,
        )
        .await
        .unwrap();
    tokio::time::sleep(Timing::default().backup + 2 * POLL).await;
    let events = recorded.all();
    let on_claim: Vec<&str> =
        events.iter().filter(|e| e.subject == Subject::volume(name, Some(&claim))).map(|e| e.reason).collect();
    let growing = events.iter().find(|e| e.reason == progress::reason::GROWING).expect("growing");
    assert!(growing.message.contains("from 1200 to 2400 GiB"), "{}", growing.message);
    assert!(on_claim.contains(&progress::reason::GROWN), "{on_claim:?}");
    // Five minutes of growth: progress about once a minute.
    let progress = on_claim.iter().filter(|r| **r == progress::reason::PROGRESS).count();
    assert!((3..=6).contains(&progress), "{on_claim:?}");
    let on_snapshot: Vec<&crate::events::Event> = events
        .iter()
        .filter(|e| e.subject == Subject::Snapshot { namespace: "ml".into(), name: "data-snap".into() })
        .collect();
    let reasons: Vec<&str> = on_snapshot.iter().map(|e| e.reason).collect();
    assert_eq!(reasons.first(), Some(&progress::reason::BACKUP_STARTED), "{reasons:?}");
    assert_eq!(reasons.last(), Some(&progress::reason::BACKUP_AVAILABLE), "{reasons:?}");
    assert!(on_snapshot.iter().all(|e| e.message.contains(&backup.id)));
}
