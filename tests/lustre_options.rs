//! The FSx for Lustre options of today's API, each through the real server, the real SDK and
//! the emulator (an independent referee with FSx's own refusals): Intelligent-Tiering, Lustre
//! logging, root squash exceptions, S3 event subsets, several data repository associations,
//! final backups on delete, and in-place Lustre upgrades.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the test failing")]

mod common;

use std::time::Duration;

use common::*;
use fsx_csi_driver::proto::controller_client::ControllerClient;
use fsx_csi_driver::proto::*;
use fsx_emulator::{Config, Emulator};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

const POLL: Duration = Duration::from_millis(100);
const GROUP: &str = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/fsx/ml-team";

async fn setup() -> (Emulator, Driver, ControllerClient<Channel>) {
    let config = Config {
        create_delay_ms: 200,
        delete_delay_ms: 200,
        update_delay_ms: 500,
        optimize_delay_ms: 200,
        association_delay_ms: 300,
        backup_delay_ms: 200,
        ..Config::default()
    };
    let emulator = Emulator::start(config, 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    let c = driver.controller_client().await;
    (emulator, driver, c)
}

fn modify(id: &str, pairs: &[(&str, &str)]) -> tonic::Request<ControllerModifyVolumeRequest> {
    let mut req = tonic::Request::new(ControllerModifyVolumeRequest {
        volume_id: id.into(),
        mutable_parameters: params(pairs),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(15));
    req
}

fn delete(id: &str) -> tonic::Request<DeleteVolumeRequest> {
    let mut req = tonic::Request::new(DeleteVolumeRequest { volume_id: id.into(), ..Default::default() });
    req.set_timeout(Duration::from_secs(10));
    req
}

/// What the emulator describes for a file system's LustreConfiguration.
fn lustre_of(emulator: &Emulator, id: &str) -> Value {
    emulator.file_system(id).unwrap()["LustreConfiguration"].clone()
}

const TIERING: &[(&str, &str)] = &[
    ("subnetId", SUBNET),
    ("deploymentType", "PERSISTENT_2"),
    ("storageType", "INTELLIGENT_TIERING"),
    ("throughputCapacity", "4000"),
    ("dataReadCacheSizingMode", "USER_PROVISIONED"),
    ("dataReadCacheSizeGiB", "64"),
    ("metadataConfigurationMode", "USER_PROVISIONED"),
    ("metadataIops", "6000"),
];

/// Intelligent-Tiering: no StorageCapacity sent, the claim's size kept as asked, growth with
/// no FSx call, and the throughput and cache changed in place (upwards only).
#[tokio::test]
async fn intelligent_tiering_end_to_end() {
    let (emulator, _driver, mut c) = setup().await;
    let v = create_until_done(&mut c, "pvc-tiering", 3000, params(TIERING), Duration::from_secs(10), 5).await.unwrap();
    assert_eq!(v.capacity_bytes, 3000 * GIB, "the claim's size, not an FSx step");
    let fs = emulator.file_system(&v.volume_id).unwrap();
    assert_eq!(fs["StorageType"], "INTELLIGENT_TIERING");
    assert!(fs.get("StorageCapacity").is_none(), "{fs}");
    assert_eq!(fs["LustreConfiguration"]["ThroughputCapacity"], 4000);
    assert_eq!(
        fs["LustreConfiguration"]["DataReadCacheConfiguration"],
        json!({"SizingMode": "USER_PROVISIONED", "SizeGiB": 64})
    );
    // A retry answers with the same volume.
    let again =
        create_until_done(&mut c, "pvc-tiering", 3000, params(TIERING), Duration::from_secs(10), 5).await.unwrap();
    assert_eq!((again.volume_id, emulator.calls("CreateFileSystem")), (v.volume_id.clone(), 1));

    // Growth: nothing to provision on FSx.
    let mut grow = tonic::Request::new(ControllerExpandVolumeRequest {
        volume_id: v.volume_id.clone(),
        capacity_range: Some(CapacityRange { required_bytes: 5000 * GIB, limit_bytes: 0 }),
        ..Default::default()
    });
    grow.set_timeout(Duration::from_secs(10));
    let grown = c.controller_expand_volume(grow).await.unwrap().into_inner();
    assert_eq!((grown.capacity_bytes, grown.node_expansion_required), (5000 * GIB, false));
    assert_eq!(emulator.calls("UpdateFileSystem"), 0);

    // Throughput and cache in place; the cache's range follows the new throughput.
    c.controller_modify_volume(modify(
        &v.volume_id,
        &[
            ("throughputCapacity", "8000"),
            ("dataReadCacheSizingMode", "USER_PROVISIONED"),
            ("dataReadCacheSizeGiB", "200000"),
        ],
    ))
    .await
    .unwrap();
    let l = lustre_of(&emulator, &v.volume_id);
    assert_eq!(
        (l["ThroughputCapacity"].clone(), l["DataReadCacheConfiguration"]["SizeGiB"].clone()),
        (json!(8000), json!(200000))
    );
    assert_eq!(emulator.calls("UpdateFileSystem"), 1);
    let e = c.controller_modify_volume(modify(&v.volume_id, &[("throughputCapacity", "4000")])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("throughputCapacity") && e.message().contains("only raise"), "{}", e.message());
    assert_eq!(emulator.calls("UpdateFileSystem"), 1);

    // Refused before any call: the rules between the tiering keys.
    let calls = emulator.all_calls();
    let mut bad = params(TIERING);
    bad.insert("perUnitStorageThroughput".into(), "125".into());
    let e = c.create_volume(create_request("pvc-bad", 1200, bad, Duration::from_secs(5))).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().contains("perUnitStorageThroughput"), "{e:?}");
    let mut bad = params(TIERING);
    bad.remove("dataReadCacheSizingMode");
    let e = c.create_volume(create_request("pvc-bad", 1200, bad, Duration::from_secs(5))).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().contains("dataReadCacheSizingMode"), "{e:?}");
    assert_eq!(emulator.all_calls(), calls);
}

/// Several S3 links: each created once, all watched together, the claim bound when every one
/// is AVAILABLE; a FAILED one names its paths and the file system is deleted.
#[tokio::test]
async fn several_associations_bind_once_all_are_available() {
    let (emulator, _driver, mut c) = setup().await;
    let list = r#"[
        {"fileSystemPath": "/datasets", "dataRepositoryPath": "s3://ml-datasets/imagenet", "autoImportEvents": ["DELETED"]},
        {"fileSystemPath": "/checkpoints", "dataRepositoryPath": "s3://ml-checkpoints/run-42",
         "autoExportEvents": ["NEW", "CHANGED"], "importedFileChunkSize": 2048, "batchImportMetaDataOnCreate": true}
    ]"#;
    let p = params(&[
        ("subnetId", SUBNET),
        ("deploymentType", "PERSISTENT_2"),
        ("perUnitStorageThroughput", "125"),
        ("dataRepositoryAssociations", list),
    ]);
    let v = create_until_done(&mut c, "pvc-two-links", 1200, p.clone(), Duration::from_secs(10), 10).await.unwrap();
    let links: Vec<_> = emulator.associations().into_iter().filter(|a| a.1 == v.volume_id).collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(links.iter().all(|a| a.2 == "AVAILABLE"), "bound before every association was AVAILABLE: {links:?}");
    let described: Vec<Value> = links.iter().map(|a| emulator.association(&a.0).unwrap()).collect();
    let by_path = |p: &str| described.iter().find(|a| a["FileSystemPath"] == p).unwrap().clone();
    assert_eq!(by_path("/datasets")["S3"]["AutoImportPolicy"]["Events"], json!(["DELETED"]));
    assert!(by_path("/datasets")["S3"].get("AutoExportPolicy").is_none());
    assert_eq!(by_path("/checkpoints")["S3"]["AutoExportPolicy"]["Events"], json!(["NEW", "CHANGED"]));
    assert_eq!(by_path("/checkpoints")["ImportedFileChunkSize"], 2048);
    assert_eq!(emulator.calls("CreateDataRepositoryAssociation"), 2);
    // A retry (and a restarted controller) finds them by path: no new association.
    let again = create_until_done(&mut c, "pvc-two-links", 1200, p.clone(), Duration::from_secs(10), 5).await.unwrap();
    assert_eq!(again.volume_id, v.volume_id);
    let restarted = Driver::controller(&emulator, POLL).await;
    let mut c2 = restarted.controller_client().await;
    create_until_done(&mut c2, "pvc-two-links", 1200, p.clone(), Duration::from_secs(10), 10).await.unwrap();
    assert_eq!(emulator.calls("CreateDataRepositoryAssociation"), 2);

    // One of two fails: the reason and its paths are reported, and nothing is left running.
    emulator.fail_next_associations(1, "the S3 bucket ml-datasets does not exist");
    let e = create_until_done(&mut c, "pvc-link-fails", 1200, p, Duration::from_secs(10), 10).await.unwrap_err();
    assert!(e.message().contains("does not exist"), "{}", e.message());
    assert!(e.message().contains("/datasets") && e.message().contains("s3://ml-datasets/imagenet"), "{}", e.message());
    let failed: Vec<_> =
        emulator.file_systems_with_names().into_iter().filter(|f| f.2.as_deref() == Some("pvc-link-fails")).collect();
    assert!(failed.iter().all(|f| f.1 == "DELETING"), "{failed:?}");

    // SCRATCH_2 takes associations too, from Lustre 2.12 on (FSx's default there is 2.10).
    let scratch = params(&[
        ("subnetId", SUBNET),
        ("deploymentType", "SCRATCH_2"),
        ("fileSystemTypeVersion", "2.15"),
        ("dataRepositoryAssociations", r#"[{"fileSystemPath": "/in", "dataRepositoryPath": "s3://scratch-input"}]"#),
    ]);
    let v = create_until_done(&mut c, "pvc-scratch-link", 1200, scratch, Duration::from_secs(10), 10).await.unwrap();
    let links: Vec<_> = emulator.associations().into_iter().filter(|a| a.1 == v.volume_id).collect();
    assert_eq!((links.len(), links[0].2.as_str(), links[0].3.as_str()), (1, "AVAILABLE", "s3://scratch-input"));
    assert!(
        emulator.file_system(&v.volume_id).unwrap()["LustreConfiguration"].get("DataRepositoryConfiguration").is_none()
    );
}

/// Lustre logging, root squash exceptions and S3 event subsets reach FSx; the pairs change
/// in place without resetting their other half.
#[tokio::test]
async fn logging_root_squash_and_event_subsets_reach_fsx() {
    let (emulator, _driver, mut c) = setup().await;
    let p = params(&[
        ("subnetId", SUBNET),
        ("deploymentType", "PERSISTENT_2"),
        ("perUnitStorageThroughput", "125"),
        ("lustreLogLevel", "WARN_ERROR"),
        ("lustreLogDestination", GROUP),
        ("rootSquash", "65534:65534"),
        ("noSquashNids", "10.0.1.6@tcp,10.0.[2-10].[1-255]@tcp"),
        ("s3ImportPath", "s3://ml-datasets/train"),
        ("autoImportEvents", "DELETED"),
        ("autoExportEvents", "NEW,CHANGED"),
    ]);
    let v = create_until_done(&mut c, "pvc-logged", 1200, p, Duration::from_secs(10), 10).await.unwrap();
    let l = lustre_of(&emulator, &v.volume_id);
    assert_eq!(l["LogConfiguration"], json!({"Level": "WARN_ERROR", "Destination": GROUP}));
    assert_eq!(l["RootSquashConfiguration"]["NoSquashNids"], json!(["10.0.1.6@tcp", "10.0.[2-10].[1-255]@tcp"]));
    let link = emulator.associations().into_iter().find(|a| a.1 == v.volume_id).unwrap();
    let link = emulator.association(&link.0).unwrap();
    assert_eq!(link["S3"]["AutoImportPolicy"]["Events"], json!(["DELETED"]));
    assert_eq!(link["S3"]["AutoExportPolicy"]["Events"], json!(["NEW", "CHANGED"]));

    // A new level keeps the destination; new NIDs keep the squash.
    c.controller_modify_volume(modify(
        &v.volume_id,
        &[("lustreLogLevel", "ERROR_ONLY"), ("noSquashNids", "10.0.9.9@tcp")],
    ))
    .await
    .unwrap();
    let l = lustre_of(&emulator, &v.volume_id);
    assert_eq!(l["LogConfiguration"], json!({"Level": "ERROR_ONLY", "Destination": GROUP}));
    assert_eq!(l["RootSquashConfiguration"], json!({"RootSquash": "65534:65534", "NoSquashNids": ["10.0.9.9@tcp"]}));
    // DISABLED drops the destination, as FSx requires.
    c.controller_modify_volume(modify(&v.volume_id, &[("lustreLogLevel", "DISABLED")])).await.unwrap();
    assert_eq!(lustre_of(&emulator, &v.volume_id)["LogConfiguration"], json!({"Level": "DISABLED"}));
    // A log group FSx cannot use is refused by name, before any call.
    let updates = emulator.calls("UpdateFileSystem");
    let e = c
        .controller_modify_volume(modify(
            &v.volume_id,
            &[
                ("lustreLogLevel", "WARN_ONLY"),
                ("lustreLogDestination", "arn:aws:logs:us-east-1:123456789012:log-group:/team/logs"),
            ],
        ))
        .await
        .unwrap_err();
    assert!(
        e.code() == Code::InvalidArgument
            && e.message().contains("lustreLogDestination")
            && e.message().contains("/aws/fsx"),
        "{e:?}"
    );
    assert_eq!(emulator.calls("UpdateFileSystem"), updates);
}

/// finalBackupOnDelete: recorded on the file system at creation, honoured by DeleteVolume
/// with the given tags, also by a controller that restarted and never saw the creation.
#[tokio::test]
async fn a_final_backup_is_taken_on_delete_when_asked_for() {
    let (emulator, _driver, mut c) = setup().await;
    let base = [("subnetId", SUBNET), ("deploymentType", "PERSISTENT_2"), ("perUnitStorageThroughput", "125")];
    let mut asked = params(&base);
    asked.insert("finalBackupOnDelete".into(), "true".into());
    asked.insert("finalBackupTags".into(), "retain=90d,team=ml".into());
    let kept = create_until_done(&mut c, "pvc-keep", 1200, asked, Duration::from_secs(10), 5).await.unwrap();
    let plain = create_until_done(&mut c, "pvc-plain", 1200, params(&base), Duration::from_secs(10), 5).await.unwrap();
    assert!(emulator.backups().is_empty());

    c.delete_volume(delete(&plain.volume_id)).await.unwrap();
    assert!(emulator.backups().is_empty(), "a backup nobody asked for: {:?}", emulator.backups());
    // A controller started after the creation learns the choice from the file system.
    let restarted = Driver::controller(&emulator, POLL).await;
    let mut c2 = restarted.controller_client().await;
    c2.delete_volume(delete(&kept.volume_id)).await.unwrap();
    let backups = emulator.backups();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0].1, kept.volume_id);
    assert_eq!(
        emulator.backup_tags(&backups[0].0),
        vec![("retain".into(), "90d".into()), ("team".into(), "ml".into())]
    );
    // Deleting again (a retry) takes no second backup.
    c2.delete_volume(delete(&kept.volume_id)).await.unwrap();
    assert_eq!(emulator.backups().len(), 1);
    // Scratch file systems have no backups: refused before any call.
    let mut scratch = params(&[("subnetId", SUBNET), ("deploymentType", "SCRATCH_2")]);
    scratch.insert("finalBackupOnDelete".into(), "true".into());
    let e = c.create_volume(create_request("pvc-scratch", 1200, scratch, Duration::from_secs(5))).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().contains("finalBackupOnDelete"), "{e:?}");
}

/// fileSystemTypeVersion through ControllerModifyVolume: an upgrade waits on the poller until
/// FSx runs the new version; a downgrade is refused by name with no call.
#[tokio::test]
async fn lustre_upgrades_in_place() {
    let (emulator, _driver, mut c) = setup().await;
    let p = params(&[("subnetId", SUBNET), ("deploymentType", "SCRATCH_2"), ("fileSystemTypeVersion", "2.12")]);
    let v = create_until_done(&mut c, "pvc-upgrade", 1200, p, Duration::from_secs(10), 5).await.unwrap();
    assert_eq!(emulator.file_system(&v.volume_id).unwrap()["FileSystemTypeVersion"], "2.12");
    c.controller_modify_volume(modify(&v.volume_id, &[("fileSystemTypeVersion", "2.15")])).await.unwrap();
    assert_eq!(
        emulator.file_system(&v.volume_id).unwrap()["FileSystemTypeVersion"],
        "2.15",
        "answered before the upgrade was in effect"
    );
    assert_eq!(emulator.calls("UpdateFileSystem"), 1);
    // Already there: nothing to do.
    c.controller_modify_volume(modify(&v.volume_id, &[("fileSystemTypeVersion", "2.15")])).await.unwrap();
    let e = c.controller_modify_volume(modify(&v.volume_id, &[("fileSystemTypeVersion", "2.12")])).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().contains("never downgrades"), "{e:?}");
    assert_eq!(emulator.calls("UpdateFileSystem"), 1);
}

/// EFA: FSx's rules are checked before any call (a metadata configuration is needed, and 2.15);
/// a class that meets them creates a file system with EFA on.
#[tokio::test]
async fn efa_needs_a_metadata_configuration_and_lustre_2_15() {
    let (emulator, _driver, mut c) = setup().await;
    let base = [
        ("subnetId", SUBNET),
        ("deploymentType", "PERSISTENT_2"),
        ("perUnitStorageThroughput", "250"),
        ("efaEnabled", "true"),
    ];
    let refused = |extra: &[(&'static str, &'static str)]| {
        let mut p = params(&base);
        p.extend(params(extra));
        create_request("pvc-efa", 1200, p, Duration::from_secs(5))
    };
    let e = c.create_volume(refused(&[])).await.unwrap_err();
    assert!(
        e.code() == Code::InvalidArgument && e.message().contains("efaEnabled") && e.message().contains("metadata"),
        "{e:?}"
    );
    let e = c
        .create_volume(refused(&[("metadataConfigurationMode", "AUTOMATIC"), ("fileSystemTypeVersion", "2.12")]))
        .await
        .unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().contains("fileSystemTypeVersion"), "{e:?}");
    assert_eq!(emulator.calls("CreateFileSystem"), 0, "refused before any call");
    let mut ok = params(&base);
    ok.insert("metadataConfigurationMode".into(), "AUTOMATIC".into());
    let v = create_until_done(&mut c, "pvc-efa", 1200, ok, Duration::from_secs(10), 5).await.unwrap();
    let fs = emulator.file_system(&v.volume_id).unwrap();
    assert_eq!(
        (fs["LustreConfiguration"]["EfaEnabled"].clone(), fs["FileSystemTypeVersion"].clone()),
        (json!(true), json!("2.15"))
    );
}
