//! Hostile and malformed input to the controller: every refusal is `InvalidArgument` naming
//! the field, is made before any FSx call, and echoes at most a bounded, escaped prefix of the
//! value. Each case is a finding of the adversarial review (issue 9).

#![allow(clippy::unwrap_used, reason = "tests: a panic is the test failing")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use fsx_csi_driver::proto::*;
use fsx_emulator::Emulator;
use tonic::Code;

const POLL: Duration = Duration::from_millis(100);

async fn setup() -> (Emulator, Driver) {
    // Everything the driver logs in these tests goes through the real log setup, and every
    // test ends by scanning it (`logs_clean`).
    captured_logs(fsx_csi_driver::logging::LogFormat::Json);
    let emulator = Emulator::start(config(50), 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    emulator.reset_calls();
    (emulator, driver)
}

fn logs_clean() {
    assert_logs_clean(fsx_csi_driver::logging::LogFormat::Json);
}

fn assert_bounded(status: &tonic::Status, what: &str) {
    assert!(status.message().len() < 4096, "{what}: a {}-byte status message", status.message().len());
    assert!(!status.message().chars().any(char::is_control), "{what}: control characters in {:?}", status.message());
}

#[tokio::test]
async fn volume_names_fsx_would_refuse_are_invalid_argument_with_zero_calls() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let huge = "p".repeat(1 << 20);
    let long = "p".repeat(129);
    for name in ["pvc-a\0b", "pvc-1\r\nINFO forged line", " ", "..", long.as_str(), huge.as_str(), ""] {
        let err = c
            .create_volume(create_request(name, 1200, params(&[("subnetId", SUBNET)]), Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{:?}: {err:?}", &name[..name.len().min(20)]);
        assert!(err.message().starts_with("name"), "{}", err.message());
        assert_bounded(&err, "name");
    }
    assert!(emu.all_calls().is_empty(), "FSx was called: {:?}", emu.all_calls());
    logs_clean();
}

#[tokio::test]
async fn tags_and_versions_fsx_would_refuse_are_invalid_argument_with_zero_calls() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let sixty: Vec<String> = (0..60).map(|i| format!("k{i}=v")).collect();
    let cases: Vec<(&str, String)> = vec![
        ("extraTags", "team=a\nb".into()),
        ("extraTags", "team=\u{1b}[31mred".into()),
        ("extraTags", "k\u{2028}x=v".into()),
        ("extraTags", sixty.join(",")),
        ("fileSystemTypeVersion", "12345678901234567890".into()),
        ("fileSystemTypeVersion", "2.12.1".into()),
    ];
    for (key, value) in cases {
        let p = params(&[("subnetId", SUBNET), (key, &value)]);
        let err = c.create_volume(create_request("pvc-tags", 1200, p, Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{key}={value:?}: {err:?}");
        assert!(err.message().contains(key), "{}", err.message());
        assert_bounded(&err, key);
    }
    assert!(emu.all_calls().is_empty(), "FSx was called: {:?}", emu.all_calls());
    logs_clean();
}

/// A 1 MiB value used to come back as a 650 KB grpc-message, which clients refuse
/// (RESOURCE_EXHAUSTED) instead of showing the InvalidArgument.
#[tokio::test]
async fn a_megabyte_value_gets_a_short_invalid_argument() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let huge = "subnet-".to_string() + &"0".repeat(1 << 20);
    for (key, value) in [("subnetId", huge.clone()), ("securityGroupIds", huge.clone()), (huge.as_str(), "x".into())] {
        let mut p = params(&[("subnetId", SUBNET)]);
        p.insert(key.to_string(), value);
        let err = c.create_volume(create_request("pvc-huge", 1200, p, Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_bounded(&err, "huge value");
        assert!(err.message().contains("characters)"), "the length is not said: {}", err.message());
    }
    assert!(emu.all_calls().is_empty());
    logs_clean();
}

#[tokio::test]
async fn expansion_with_a_bad_range_makes_no_call() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    for (required, limit) in [(-1, 0), (0, -1), (2400 * GIB, 1200 * GIB)] {
        let err = c
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: "fs-0123456789abcdef0".into(),
                capacity_range: Some(CapacityRange { required_bytes: required, limit_bytes: limit }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{required}/{limit}: {err:?}");
    }
    assert!(emu.all_calls().is_empty(), "FSx was called: {:?}", emu.all_calls());
    logs_clean();
}

/// DeleteVolume used to outlive its caller's deadline when FSx was slow.
#[tokio::test]
async fn delete_answers_within_the_callers_deadline() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let v =
        create_until_done(&mut c, "pvc-slow-delete", 1200, params(&[("subnetId", SUBNET)]), Duration::from_secs(5), 50)
            .await
            .unwrap();
    emu.update_config(|c| c.latency_ms = 5_000);
    let mut req =
        tonic::Request::new(DeleteVolumeRequest { volume_id: v.volume_id.clone(), secrets: Default::default() });
    req.set_timeout(Duration::from_secs(2));
    let start = Instant::now();
    let err = c.delete_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "the driver did not answer first: {err:?}");
    assert!(start.elapsed() < Duration::from_secs(2), "answered after {:?}", start.elapsed());
    // The retry, once FSx is fast again, completes the deletion.
    emu.update_config(|c| c.latency_ms = 0);
    let mut done = false;
    for _ in 0..100 {
        match c.delete_volume(DeleteVolumeRequest { volume_id: v.volume_id.clone(), secrets: Default::default() }).await
        {
            Ok(_) => {
                done = true;
                break;
            }
            Err(s) if retryable(&s) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(s) => panic!("{s:?}"),
        }
    }
    assert!(done);
    logs_clean();
}

/// A volume id that would forge a log line (a newline) or bloat one (3 MiB) reaches the log
/// escaped and cut, in the event that says there is nothing to delete as in every other.
#[tokio::test]
async fn a_hostile_volume_id_never_forges_or_bloats_a_log_line() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let forged = format!("x\n{{\"level\":\"ERROR\",\"message\":\"forged\"}}\n{}", "y".repeat(3 << 20));
    c.delete_volume(DeleteVolumeRequest { volume_id: forged, secrets: Default::default() }).await.unwrap();
    assert!(emu.all_calls().is_empty());
    logs_clean();
}
