//! Volume expansion and S3 data repositories, through the real server and the emulator.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the test failing")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use fsx_csi_driver::proto::controller_client::ControllerClient;
use fsx_csi_driver::proto::*;
use fsx_emulator::{Config, Emulator};
use tonic::Code;
use tonic::transport::Channel;

const POLL: Duration = Duration::from_millis(100);

fn emulator_config() -> Config {
    Config {
        create_delay_ms: 200,
        delete_delay_ms: 200,
        update_delay_ms: 1200,
        optimize_delay_ms: 1000,
        association_delay_ms: 800,
        ..Config::default()
    }
}

async fn setup() -> (Emulator, Driver) {
    let emulator = Emulator::start(emulator_config(), 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    (emulator, driver)
}

fn expand_request(
    id: &str,
    gib: i64,
    limit_gib: i64,
    timeout: Duration,
) -> tonic::Request<ControllerExpandVolumeRequest> {
    let mut r = tonic::Request::new(ControllerExpandVolumeRequest {
        volume_id: id.into(),
        capacity_range: Some(CapacityRange { required_bytes: gib * GIB, limit_bytes: limit_gib * GIB }),
        ..Default::default()
    });
    r.set_timeout(timeout);
    r
}

async fn expand_until_done(
    c: &mut ControllerClient<Channel>,
    id: &str,
    gib: i64,
    per_call: Duration,
) -> Result<i64, tonic::Status> {
    for _ in 0..100 {
        match c.controller_expand_volume(expand_request(id, gib, 0, per_call)).await {
            Ok(r) => {
                let r = r.into_inner();
                assert!(!r.node_expansion_required);
                return Ok(r.capacity_bytes / GIB);
            }
            Err(s) if retryable(&s) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(s) => return Err(s),
        }
    }
    panic!("expansion never finished");
}

fn scratch2() -> std::collections::HashMap<String, String> {
    params(&[("subnetId", SUBNET), ("deploymentType", "SCRATCH_2")])
}

#[tokio::test]
async fn scratch_2_grows_2400_to_4800_for_4000_requested() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let v = create_until_done(&mut c, "pvc-grow", 2400, scratch2(), Duration::from_secs(5), 5).await.unwrap();
    assert_eq!(v.capacity_bytes, 2400 * GIB);
    let gib = expand_until_done(&mut c, &v.volume_id, 4000, Duration::from_secs(10)).await.unwrap();
    assert_eq!(gib, 4800);
    assert_eq!(emu.calls("UpdateFileSystem"), 1);
    let updates = emu.updates(&v.volume_id);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].1, 4800);
    assert!(matches!(updates[0].0.as_str(), "UPDATED_OPTIMIZING" | "COMPLETED"), "{updates:?}");
    // Already that size: OK with the current size, no call.
    let again = expand_until_done(&mut c, &v.volume_id, 3000, Duration::from_secs(5)).await.unwrap();
    assert_eq!(again, 4800);
    assert_eq!(emu.calls("UpdateFileSystem"), 1);
    // The capability is advertised.
    let caps = c.controller_get_capabilities(ControllerGetCapabilitiesRequest {}).await.unwrap().into_inner();
    assert!(caps.capabilities.iter().any(|cap| matches!(
        &cap.r#type,
        Some(controller_service_capability::Type::Rpc(r)) if r.r#type == controller_service_capability::rpc::Type::ExpandVolume as i32
    )));
}

#[tokio::test]
async fn retry_loop_with_short_deadlines_makes_one_update_and_joins_it() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let v = create_until_done(&mut c, "pvc-grow-retry", 1200, scratch2(), Duration::from_secs(5), 5).await.unwrap();
    let mut deadline_exceeded = 0;
    let gib = loop {
        match c.controller_expand_volume(expand_request(&v.volume_id, 2400, 0, Duration::from_millis(300))).await {
            Ok(r) => break r.into_inner().capacity_bytes / GIB,
            Err(s) => {
                assert!(retryable(&s), "{s:?}");
                deadline_exceeded += 1;
            }
        }
        assert!(deadline_exceeded < 100);
    };
    assert_eq!(gib, 2400);
    assert!(deadline_exceeded >= 2, "the update should outlive several calls");
    assert_eq!(emu.calls("UpdateFileSystem"), 1, "retries joined the running update");
}

#[tokio::test]
async fn expand_while_another_caller_runs_the_update_is_joined() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let v = create_until_done(&mut c, "pvc-grow-join", 1200, scratch2(), Duration::from_secs(5), 5).await.unwrap();
    // The first caller starts the update and gives up early. On a loaded machine its deadline may
    // pass before the UpdateFileSystem call goes out, so it retries (as the resizer would) until
    // the emulator has seen the update; the update takes far longer than any one of these calls.
    let mut tries = 0;
    while emu.updates(&v.volume_id).is_empty() {
        let err = c
            .controller_expand_volume(expand_request(&v.volume_id, 4800, 0, Duration::from_millis(300)))
            .await
            .unwrap_err();
        assert!(retryable(&err), "{err:?}");
        tries += 1;
        assert!(tries < 50, "the update never started");
    }
    assert_eq!(emu.updates(&v.volume_id)[0].1, 4800);
    // A smaller request joins the running update to 4800 rather than being refused.
    let gib = expand_until_done(&mut c, &v.volume_id, 2400, Duration::from_secs(10)).await.unwrap();
    assert_eq!(gib, 4800);
    assert_eq!(emu.calls("UpdateFileSystem"), 1);
}

#[tokio::test]
async fn scratch_1_cannot_grow_and_limits_are_enforced() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let s1 = create_until_done(&mut c, "pvc-s1", 1200, params(&[("subnetId", SUBNET)]), Duration::from_secs(5), 5)
        .await
        .unwrap();
    let err =
        c.controller_expand_volume(expand_request(&s1.volume_id, 2400, 0, Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("SCRATCH_1") && err.message().contains("cannot grow"), "{}", err.message());

    let s2 = create_until_done(&mut c, "pvc-s2-limit", 1200, scratch2(), Duration::from_secs(5), 5).await.unwrap();
    let err = c
        .controller_expand_volume(expand_request(&s2.volume_id, 3000, 4000, Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("4800"), "{}", err.message());
    let err = c
        .controller_expand_volume(expand_request("fs-0000000000000dead", 2400, 0, Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut missing = expand_request(&s2.volume_id, 2400, 0, Duration::from_secs(5));
    missing.get_mut().capacity_range = None;
    assert_eq!(c.controller_expand_volume(missing).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(emu.calls("UpdateFileSystem"), 0);
}

#[tokio::test]
async fn failed_update_returns_fsx_message() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let v = create_until_done(&mut c, "pvc-grow-fail", 1200, scratch2(), Duration::from_secs(5), 5).await.unwrap();
    emu.fail_next_updates(1, "Insufficient capacity in the Availability Zone.");
    let err = expand_until_done(&mut c, &v.volume_id, 2400, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("Insufficient capacity"), "{}", err.message());
}

#[tokio::test]
async fn scratch_2_links_s3_through_lustre_configuration() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let p = params(&[
        ("subnetId", SUBNET),
        ("deploymentType", "SCRATCH_2"),
        ("s3ImportPath", "s3://training-data/in"),
        ("s3ExportPath", "s3://training-data/out"),
        ("autoImportPolicy", "NEW_CHANGED"),
    ]);
    let v = create_until_done(&mut c, "pvc-s3-scratch2", 1200, p, Duration::from_secs(5), 5).await.unwrap();
    let fs = driver.provisioner.as_ref().unwrap().index().by_id(&v.volume_id).unwrap();
    assert_eq!(fs.lustre.import_path.as_deref(), Some("s3://training-data/in"));
    assert_eq!(fs.lustre.export_path.as_deref(), Some("s3://training-data/out"));
    assert_eq!(emu.calls("CreateDataRepositoryAssociation"), 0);
}

fn persistent2_s3() -> std::collections::HashMap<String, String> {
    params(&[
        ("subnetId", SUBNET),
        ("deploymentType", "PERSISTENT_2"),
        ("perUnitStorageThroughput", "250"),
        ("s3ImportPath", "s3://training-data/in"),
        ("autoImportPolicy", "NEW_CHANGED_DELETED"),
        ("autoExportPolicy", "NEW_CHANGED"),
        ("batchImportMetaDataOnCreate", "true"),
    ])
}

#[tokio::test]
async fn persistent_2_gets_one_association_after_available_and_binds_after_it() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let v =
        create_until_done(&mut c, "pvc-s3-p2", 1200, persistent2_s3(), Duration::from_millis(400), 100).await.unwrap();
    let bound = Instant::now();
    let associations = emu.associations();
    assert_eq!(associations.len(), 1, "{associations:?}");
    let (id, fs_id, lifecycle, repo) = &associations[0];
    assert_eq!(fs_id, &v.volume_id);
    assert_eq!(lifecycle, "AVAILABLE");
    assert_eq!(repo, "s3://training-data/in");
    assert_eq!(emu.calls("CreateDataRepositoryAssociation"), 1);
    // Created only once the file system was AVAILABLE; the volume reported only after the
    // association was.
    let fs_available = emu.available_at(&v.volume_id).unwrap();
    let dra_available = emu.association_available_at(id).unwrap();
    assert!(
        dra_available >= fs_available + Duration::from_millis(700),
        "association created before the file system was AVAILABLE"
    );
    assert!(bound >= dra_available, "bound before the association was AVAILABLE");
    // A retry returns the same volume without a second association.
    let again =
        create_until_done(&mut c, "pvc-s3-p2", 1200, persistent2_s3(), Duration::from_secs(5), 5).await.unwrap();
    assert_eq!(again.volume_id, v.volume_id);
    assert_eq!(emu.calls("CreateDataRepositoryAssociation"), 1);
}

#[tokio::test]
async fn restart_mid_association_makes_no_second_association() {
    let emu = Emulator::start(Config { association_delay_ms: 1500, ..emulator_config() }, 0).await.unwrap();
    let first = Driver::controller(&emu, POLL).await;
    let mut c = first.controller_client().await;
    // Give up while the association is CREATING.
    let mut saw_association_pending = false;
    for _ in 0..50 {
        let r =
            c.create_volume(create_request("pvc-s3-restart", 1200, persistent2_s3(), Duration::from_millis(300))).await;
        let s = r.unwrap_err();
        assert!(retryable(&s), "{s:?}");
        if s.message().contains("association") {
            saw_association_pending = true;
            break;
        }
    }
    assert!(saw_association_pending);
    assert_eq!(emu.associations().len(), 1);
    first.stop().await;

    let second = Driver::controller(&emu, POLL).await;
    let mut c = second.controller_client().await;
    let v =
        create_until_done(&mut c, "pvc-s3-restart", 1200, persistent2_s3(), Duration::from_secs(5), 10).await.unwrap();
    assert_eq!(emu.calls("CreateFileSystem"), 1);
    assert_eq!(emu.calls("CreateDataRepositoryAssociation"), 1);
    assert_eq!(emu.associations().len(), 1);
    assert_eq!(emu.associations()[0].1, v.volume_id);
}

#[tokio::test]
async fn failed_association_is_reported_and_the_file_system_not_leaked() {
    let (emu, driver) = setup().await;
    emu.fail_next_associations(1, "Amazon FSx does not have permission to access the S3 bucket.");
    let mut c = driver.controller_client().await;
    let err =
        create_until_done(&mut c, "pvc-s3-fail", 1200, persistent2_s3(), Duration::from_secs(5), 10).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("permission to access the S3 bucket"), "{}", err.message());
    let live: Vec<_> = emu.file_systems().into_iter().filter(|(_, l)| l != "DELETING").collect();
    assert!(live.is_empty(), "the file system leaked: {live:?}");
    // The next retry starts clean and succeeds.
    let v = create_until_done(&mut c, "pvc-s3-fail", 1200, persistent2_s3(), Duration::from_secs(5), 10).await.unwrap();
    let live: Vec<_> = emu.file_systems().into_iter().filter(|(_, l)| l != "DELETING").collect();
    assert_eq!(live, vec![(v.volume_id.clone(), "AVAILABLE".to_string())]);
}

#[tokio::test]
async fn bad_s3_paths_are_invalid_argument_with_zero_calls() {
    let (emu, driver) = setup().await;
    emu.reset_calls();
    let mut c = driver.controller_client().await;
    let cases = [
        vec![("s3ImportPath", "training-data/in")],
        vec![("s3ImportPath", "s3://Bad_Bucket/in")],
        vec![("s3ImportPath", "s3://")],
        vec![("s3ImportPath", "s3://a-bucket"), ("s3ExportPath", "s3://other-bucket")],
        vec![("s3ExportPath", "s3://a-bucket")],
    ];
    for extra in cases {
        let mut p = vec![("subnetId", SUBNET), ("deploymentType", "SCRATCH_2")];
        p.extend(extra.iter().copied());
        let err =
            c.create_volume(create_request("pvc-bad-s3", 1200, params(&p), Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{p:?}");
        assert!(err.message().contains("s3"), "{}", err.message());
    }
    let mut p2 = persistent2_s3();
    p2.insert("s3ExportPath".into(), "s3://training-data/elsewhere".into());
    let err = c.create_volume(create_request("pvc-bad-s3", 1200, p2, Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(emu.all_calls().is_empty(), "{:?}", emu.all_calls());
}

/// The settings table (src/fsx/settings.rs) against the independent emulator, through the
/// real SDK: what a create sends is what a describe reads back, an update of mutable settings
/// lands, and a setting UpdateFileSystem cannot change is refused with no call.
#[tokio::test]
async fn lustre_settings_reach_fsx_and_read_back_through_the_sdk() {
    use fsx_csi_driver::fsx::{
        CreateSpec, DataCompressionType, DeploymentType, Fsx, FsxError, LustreSettings, MetadataMode, StorageType,
    };
    let emulator = Emulator::start(Config { update_delay_ms: 100, ..emulator_config() }, 0).await.unwrap();
    let fsx = fsx_client(&emulator);
    let lustre = LustreSettings {
        deployment_type: Some(DeploymentType::Persistent2),
        per_unit_storage_throughput: Some(125),
        data_compression_type: Some(DataCompressionType::Lz4),
        weekly_maintenance_start_time: Some("2:03:00".into()),
        daily_automatic_backup_start_time: Some("04:00".into()),
        automatic_backup_retention_days: Some(3),
        metadata_mode: Some(MetadataMode::UserProvisioned),
        metadata_iops: Some(3000),
        root_squash: Some("65534:65534".into()),
        no_squash_nids: Some(vec!["10.0.1.6@tcp".into()]),
        log_level: Some(fsx_csi_driver::fsx::LogLevel::WarnOnly),
        log_destination: Some("arn:aws:logs:us-east-1:123456789012:log-group:/aws/fsx/x".into()),
        file_system_type_version: Some("2.15".into()),
        ..LustreSettings::default()
    };
    let spec = CreateSpec {
        client_request_token: "settings-round-trip".into(),
        capacity_gib: 1200,
        subnet_id: "subnet-0123456789abcdef0".into(),
        security_group_ids: Vec::new(),
        tags: vec![("CSIVolumeName".into(), "pvc-settings".into())],
        storage_type: Some(StorageType::Ssd),
        kms_key_id: None,
        lustre: lustre.clone(),
    };
    let created = fsx.create_file_system(&spec).await.unwrap();
    let described = fsx.describe_file_systems(std::slice::from_ref(&created.id)).await.unwrap().remove(0);
    assert!(lustre.covered_by(&described.lustre), "sent {lustre:?}\nread back {:?}", described.lustre);
    assert!(lustre.covered_by(&created.lustre), "the create's answer: {:?}", created.lustre);

    let deadline = Instant::now() + Duration::from_secs(10);
    while fsx.describe_file_systems(std::slice::from_ref(&created.id)).await.unwrap()[0].lifecycle
        != fsx_csi_driver::fsx::Lifecycle::Available
    {
        assert!(Instant::now() < deadline, "never AVAILABLE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let immutable = LustreSettings { efa_enabled: Some(true), ..LustreSettings::default() };
    let err = fsx.update_lustre(&created.id, &immutable).await.unwrap_err();
    assert!(matches!(&err, FsxError::Invalid { code, .. } if code == "ImmutableSetting"), "{err}");
    assert_eq!(emulator.calls("UpdateFileSystem"), 0);

    let change = LustreSettings {
        root_squash: Some("0:0".into()),
        weekly_maintenance_start_time: Some("5:06:00".into()),
        log_level: Some(fsx_csi_driver::fsx::LogLevel::ErrorOnly),
        ..LustreSettings::default()
    };
    fsx.update_lustre(&created.id, &change).await.unwrap();
    assert_eq!(emulator.calls("UpdateFileSystem"), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = fsx.describe_file_systems(std::slice::from_ref(&created.id)).await.unwrap().remove(0);
        if change.covered_by(&now.lustre) {
            break;
        }
        assert!(Instant::now() < deadline, "the update never took effect: {:?}", now.lustre);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
