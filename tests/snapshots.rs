//! Snapshots (FSx backups), restores and ControllerModifyVolume through the real server, the
//! real aws-sdk-fsx client and the FSx emulator's wire protocol: the calls a csi-snapshotter,
//! an external-provisioner restoring a claim and an external-resizer applying a
//! VolumeAttributesClass make, retried the way they retry.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the test failing")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use fsx_csi_driver::proto::controller_client::ControllerClient;
use fsx_csi_driver::proto::*;
use fsx_emulator::{Config, Emulator};
use tonic::Code;
use tonic::transport::Channel;

const POLL: Duration = Duration::from_millis(100);

fn p2() -> HashMap<String, String> {
    params(&[("subnetId", SUBNET), ("deploymentType", "PERSISTENT_2"), ("perUnitStorageThroughput", "125")])
}

fn snapshot_request(name: &str, source: &str) -> tonic::Request<CreateSnapshotRequest> {
    let mut req = tonic::Request::new(CreateSnapshotRequest {
        source_volume_id: source.into(),
        name: name.into(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(10));
    req
}

/// Calls CreateSnapshot as the csi-snapshotter does, until the snapshot is ready to use.
/// Returns it and how many calls it took.
async fn snapshot_until_ready(c: &mut ControllerClient<Channel>, name: &str, source: &str) -> (Snapshot, usize) {
    for calls in 1..=200 {
        let s = c.create_snapshot(snapshot_request(name, source)).await.unwrap().into_inner().snapshot.unwrap();
        if s.ready_to_use {
            return (s, calls);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("snapshot {name} never became ready");
}

#[tokio::test]
async fn a_snapshot_is_one_backup_and_restores_into_a_new_file_system() {
    let emulator = Emulator::start(config(200), 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    let mut c = driver.controller_client().await;
    let source = create_until_done(&mut c, "pvc-src", 1200, p2(), Duration::from_secs(10), 5).await.unwrap();
    emulator.reset_calls();

    let (snap, calls) = snapshot_until_ready(&mut c, "snapshot-1", &source.volume_id).await;
    assert!(calls > 1, "the first answer is not ready: FSx takes the backup in the background");
    assert!(snap.snapshot_id.starts_with("backup-"));
    assert_eq!((snap.source_volume_id.as_str(), snap.size_bytes), (source.volume_id.as_str(), 1200 * GIB));
    assert!(snap.creation_time.is_some());
    assert_eq!(emulator.calls("CreateBackup"), 1, "retries are answered from the index");
    // The poller described it in batches, never once per CreateSnapshot call.
    assert!(emulator.calls("DescribeBackups") < calls as u64, "{} describes", emulator.calls("DescribeBackups"));
    let backups = emulator.backups();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].1, source.volume_id);

    // ListSnapshots: by source volume, by id, paged.
    let list = |req: ListSnapshotsRequest| {
        let mut c = c.clone();
        async move { c.list_snapshots(req).await.unwrap().into_inner() }
    };
    let by_source =
        list(ListSnapshotsRequest { source_volume_id: source.volume_id.clone(), ..Default::default() }).await;
    assert_eq!(by_source.entries.len(), 1);
    let by_id = list(ListSnapshotsRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() }).await;
    assert_eq!(by_id.entries[0].snapshot.as_ref().unwrap().snapshot_id, snap.snapshot_id);
    let none =
        list(ListSnapshotsRequest { snapshot_id: "backup-0123456789abcdef0".into(), ..Default::default() }).await;
    assert!(none.entries.is_empty());

    // Restore: a new file system of the backup's size, once per claim name.
    let mut restore = create_request("pvc-restored", 1000, p2(), Duration::from_secs(10));
    restore.get_mut().volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(volume_content_source::SnapshotSource {
            snapshot_id: snap.snapshot_id.clone(),
        })),
    });
    let restored = loop {
        let mut req = tonic::Request::new(restore.get_ref().clone());
        req.set_timeout(Duration::from_secs(10));
        match c.create_volume(req).await {
            Ok(r) => break r.into_inner().volume.unwrap(),
            Err(s) if retryable(&s) => continue,
            Err(s) => panic!("{s:?}"),
        }
    };
    assert_ne!(restored.volume_id, source.volume_id);
    assert_eq!(restored.capacity_bytes, 1200 * GIB);
    assert!(restored.content_source.is_some(), "the response names its source");
    assert_eq!(emulator.calls("CreateFileSystemFromBackup"), 1);
    assert_eq!(emulator.calls("CreateFileSystem"), 0);

    // The same snapshot name for another volume is refused; deletion is idempotent.
    let other = c.create_snapshot(snapshot_request("snapshot-1", &restored.volume_id)).await.unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
    for _ in 0..2 {
        c.delete_snapshot(DeleteSnapshotRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() })
            .await
            .unwrap();
    }
    assert!(emulator.backups().is_empty());
    assert_eq!(emulator.calls("DeleteBackup"), 2, "the second answers BackupNotFound, which is success");
}

#[tokio::test]
async fn what_fsx_cannot_back_up_or_restore_is_refused_by_name_before_any_call() {
    let emulator = Emulator::start(config(100), 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    let mut c = driver.controller_client().await;
    let scratch = create_until_done(
        &mut c,
        "pvc-scratch",
        1200,
        params(&[("subnetId", SUBNET), ("deploymentType", "SCRATCH_2")]),
        Duration::from_secs(10),
        5,
    )
    .await
    .unwrap();
    emulator.reset_calls();
    let e = c.create_snapshot(snapshot_request("snap-s", &scratch.volume_id)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("SCRATCH_2") && e.message().contains("PERSISTENT"), "{}", e.message());
    // A class key that does not exist.
    let mut req = snapshot_request("snap-k", &scratch.volume_id);
    req.get_mut().parameters = params(&[("retention", "7d")]);
    let e = c.create_snapshot(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("retention"), "{}", e.message());
    // A clone, and a snapshot that does not exist.
    let mut clone = create_request("pvc-clone", 1200, p2(), Duration::from_secs(5));
    clone.get_mut().volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(volume_content_source::VolumeSource {
            volume_id: scratch.volume_id.clone(),
        })),
    });
    let e = c.create_volume(clone).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("VolumeSnapshot"), "{}", e.message());
    // Immutable and unknown VolumeAttributesClass keys.
    let e = c
        .controller_modify_volume(ControllerModifyVolumeRequest {
            volume_id: scratch.volume_id.clone(),
            mutable_parameters: params(&[("deploymentType", "PERSISTENT_2")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("deploymentType") && e.message().contains("perUnitStorageThroughput"));
    let total: u64 = emulator.all_calls().values().sum();
    assert_eq!(total, 0, "{:?}", emulator.all_calls());
}

#[tokio::test]
async fn modify_volume_reaches_fsx_once_and_waits_until_the_values_are_in_effect() {
    let emulator = Emulator::start(Config { update_delay_ms: 600, ..config(100) }, 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    let mut c = driver.controller_client().await;
    let v = create_until_done(&mut c, "pvc-vac", 1200, p2(), Duration::from_secs(10), 5).await.unwrap();
    let modify = |secs: u64, pairs: &[(&str, &str)]| {
        let mut req = tonic::Request::new(ControllerModifyVolumeRequest {
            volume_id: v.volume_id.clone(),
            mutable_parameters: params(pairs),
            ..Default::default()
        });
        req.set_timeout(Duration::from_secs(secs));
        req
    };
    let faster = [("perUnitStorageThroughput", "500"), ("weeklyMaintenanceStartTime", "7:03:30")];
    c.controller_modify_volume(modify(10, &faster)).await.unwrap();
    assert_eq!(emulator.calls("UpdateFileSystem"), 1);
    let updates = emulator.setting_updates(&v.volume_id);
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].1["PerUnitStorageThroughput"], 500);
    assert!(
        matches!(updates[0].0.as_str(), "UPDATED_OPTIMIZING" | "COMPLETED"),
        "the new values are in effect: {updates:?}"
    );
    // In effect: the resizer's retry makes no update.
    c.controller_modify_volume(modify(10, &faster)).await.unwrap();
    assert_eq!(emulator.calls("UpdateFileSystem"), 1);
    // A value FSx refuses for this type is refused by name, without an update.
    let e = c.controller_modify_volume(modify(10, &[("perUnitStorageThroughput", "200")])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("125, 250, 500 or 1000"), "{}", e.message());
    assert_eq!(emulator.calls("UpdateFileSystem"), 1);
}

#[tokio::test]
async fn a_role_without_the_backup_actions_still_serves_volumes_and_names_what_is_missing() {
    let denied = vec!["DescribeBackups".to_string(), "CreateBackup".to_string()];
    let emulator = Emulator::start(Config { deny_operations: denied, ..config(100) }, 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    let mut c = driver.controller_client().await;
    let v = create_until_done(&mut c, "pvc-old-role", 1200, p2(), Duration::from_secs(10), 5).await.unwrap();
    let e = c.create_snapshot(snapshot_request("snap-denied", &v.volume_id)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("fsx:CreateBackup"), "{}", e.message());
}

#[tokio::test]
async fn a_volume_attributes_class_named_at_creation_applies_from_the_start() {
    let emulator = Emulator::start(config(100), 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    let mut c = driver.controller_client().await;
    let mut req = create_request("pvc-vac-new", 1200, p2(), Duration::from_secs(10));
    req.get_mut().mutable_parameters = params(&[("perUnitStorageThroughput", "500")]);
    let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    let fs = emulator.file_system(&v.volume_id).unwrap();
    assert_eq!(fs["LustreConfiguration"]["PerUnitStorageThroughput"], 500);
    emulator.reset_calls();
    // A key FSx cannot change later is refused in mutable_parameters, with no call.
    let mut req = create_request("pvc-vac-bad", 1200, p2(), Duration::from_secs(10));
    req.get_mut().mutable_parameters = params(&[("subnetId", SUBNET)]);
    let e = c.create_volume(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("subnetId"), "{}", e.message());
    assert_eq!(emulator.all_calls().values().sum::<u64>(), 0);
}

fn from_snapshot(name: &str, snapshot: &str) -> CreateVolumeRequest {
    let mut req = create_request(name, 1200, p2(), Duration::from_secs(10)).into_inner();
    req.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(volume_content_source::SnapshotSource {
            snapshot_id: snapshot.into(),
        })),
    });
    req
}

/// Calls CreateVolume as the external-provisioner does until it answers, or fails for good.
async fn create_until_answered(
    c: &mut ControllerClient<Channel>,
    req: &CreateVolumeRequest,
) -> Result<Volume, tonic::Status> {
    loop {
        let mut r = tonic::Request::new(req.clone());
        r.set_timeout(Duration::from_secs(10));
        match c.create_volume(r).await {
            Ok(r) => return Ok(r.into_inner().volume.unwrap()),
            Err(s) if retryable(&s) => continue,
            Err(s) => return Err(s),
        }
    }
}

/// A retry of a completed restore answers the same volume after its backup was deleted, and
/// a name that exists with another content source (or none) is ALREADY_EXISTS, as the CSI
/// spec asks, never a volume with the wrong contents.
#[tokio::test]
async fn a_restore_is_idempotent_by_name_and_content_source() {
    let emulator = Emulator::start(config(200), 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    let mut c = driver.controller_client().await;
    let source = create_until_done(&mut c, "pvc-src", 1200, p2(), Duration::from_secs(10), 5).await.unwrap();
    let (snap, _) = snapshot_until_ready(&mut c, "snapshot-1", &source.volume_id).await;
    let restored = create_until_answered(&mut c, &from_snapshot("pvc-restored", &snap.snapshot_id)).await.unwrap();
    c.delete_snapshot(DeleteSnapshotRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() })
        .await
        .unwrap();
    assert!(emulator.backups().is_empty());
    emulator.reset_calls();

    let again = create_until_answered(&mut c, &from_snapshot("pvc-restored", &snap.snapshot_id)).await.unwrap();
    assert_eq!(again.volume_id, restored.volume_id);
    assert!(again.content_source.is_some());
    assert_eq!(emulator.calls("CreateFileSystemFromBackup") + emulator.calls("DescribeBackups"), 0);

    let empty = create_request("pvc-restored", 1200, p2(), Duration::from_secs(10)).into_inner();
    let err = create_until_answered(&mut c, &empty).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("restored from snapshot"), "{}", err.message());
    let err = create_until_answered(&mut c, &from_snapshot("pvc-src", &snap.snapshot_id)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("created empty"), "{}", err.message());
    let err =
        create_until_answered(&mut c, &from_snapshot("pvc-restored", "backup-0fedcba987654321f")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(emulator.calls("CreateFileSystemFromBackup") + emulator.calls("CreateFileSystem"), 0);
}

/// Volumes never wait on the backup listing: with an FSx-compatible endpoint that does not
/// implement DescribeBackups, claims bind at once, and the snapshot calls that need the
/// listing answer UNAVAILABLE naming it.
#[tokio::test]
async fn volumes_never_wait_for_the_backup_listing() {
    let emulator = Emulator::start(Config { unsupported_operations: vec!["DescribeBackups".into()], ..config(200) }, 0)
        .await
        .unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    let mut c = driver.controller_client().await;
    let started = std::time::Instant::now();
    let volume = create_until_done(&mut c, "pvc-1", 1200, p2(), Duration::from_secs(10), 5).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "bound after {:?}", started.elapsed());
    let mut req = snapshot_request("snapshot-1", &volume.volume_id);
    req.set_timeout(Duration::from_millis(500));
    let err = c.create_snapshot(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("index of backups") && err.message().contains("UnknownOperation"),
        "{}",
        err.message()
    );
    let err = c.list_snapshots(ListSnapshotsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // A well-formed token this driver never handed out is ABORTED, as the spec asks.
    let err = c
        .list_volumes(ListVolumesRequest { starting_token: "fs-0123456789abcdef9".into(), max_entries: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
}
