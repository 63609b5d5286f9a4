//! Zone-aware placement through the real server: a StorageClass of several subnets, the
//! external-provisioner's `accessibility_requirements`, and the emulator's EC2
//! `DescribeSubnets` (the driver's narrow, signed Query client against it).

#![allow(clippy::unwrap_used, reason = "tests: a panic is the test failing")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use fsx_csi_driver::proto::*;
use fsx_csi_driver::topology::ZONE_KEY;
use fsx_emulator::{Emulator, SubnetPlace};
use tonic::Code;

const POLL: Duration = Duration::from_millis(100);
/// Zones us-east-1a, b and c in the emulator (by the last hex digit).
const A: &str = "subnet-0123456789abcdef0";
const B: &str = "subnet-0123456789abcdef1";
const C: &str = "subnet-0123456789abcdef2";

async fn setup() -> (Emulator, Driver) {
    let emulator = Emulator::start(config(200), 0).await.unwrap();
    let driver = Driver::controller(&emulator, POLL).await;
    emulator.reset_calls();
    (emulator, driver)
}

fn zones(zones: &[&str]) -> Vec<Topology> {
    zones.iter().map(|z| Topology { segments: HashMap::from([(ZONE_KEY.to_string(), z.to_string())]) }).collect()
}

/// A CreateVolume as the external-provisioner sends it for a pod scheduled in `zone`
/// (WaitForFirstConsumer: the selected node's zone, requisite and preferred).
fn for_zone(
    name: &str,
    parameters: HashMap<String, String>,
    requisite: &[&str],
    preferred: &[&str],
) -> tonic::Request<CreateVolumeRequest> {
    let mut req = create_request(name, 1200, parameters, Duration::from_secs(20));
    req.get_mut().accessibility_requirements =
        Some(TopologyRequirement { requisite: zones(requisite), preferred: zones(preferred) });
    req
}

fn three() -> HashMap<String, String> {
    params(&[("subnetIds", &format!("{A},{B}, {C}")), ("deploymentType", "SCRATCH_2")])
}

fn zone_of(v: &Volume) -> Vec<String> {
    v.accessible_topology.iter().filter_map(|t| t.segments.get(ZONE_KEY).cloned()).collect()
}

fn subnet_of(emu: &Emulator, id: &str) -> String {
    emu.subnet_of(id).unwrap()
}

#[tokio::test]
async fn each_file_system_goes_to_the_subnet_of_its_pods_zone_and_says_so() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let mut made = Vec::new();
    for (name, zone, subnet) in [("pvc-a", "us-east-1a", A), ("pvc-b", "us-east-1b", B), ("pvc-c", "us-east-1c", C)] {
        let v = c.create_volume(for_zone(name, three(), &[zone], &[zone])).await.unwrap().into_inner().volume.unwrap();
        assert_eq!(subnet_of(&emu, &v.volume_id), subnet, "{name}");
        assert_eq!(zone_of(&v), [zone], "{name}: the PV's node affinity");
        made.push(v);
    }
    // Immediate binding: every node's zone is requisite; the preferred one wins.
    let v = c
        .create_volume(for_zone("pvc-any", three(), &["us-east-1a", "us-east-1c"], &["us-east-1c", "us-east-1a"]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!((subnet_of(&emu, &v.volume_id), zone_of(&v)), (C.to_string(), vec!["us-east-1c".to_string()]));
    // No requirement at all (no node reports a zone): the first subnet.
    let v = c.create_volume(create_request("pvc-none", 1200, three(), Duration::from_secs(20))).await.unwrap();
    let v = v.into_inner().volume.unwrap();
    assert_eq!((subnet_of(&emu, &v.volume_id), zone_of(&v)), (A.to_string(), vec!["us-east-1a".to_string()]));
    // A retry answers with the same file system and zone, whatever zone it now names.
    let again = c.create_volume(for_zone("pvc-b", three(), &["us-east-1a"], &["us-east-1a"])).await.unwrap();
    let again = again.into_inner().volume.unwrap();
    assert_eq!(
        (again.volume_id.as_str(), zone_of(&again)),
        (made[1].volume_id.as_str(), vec!["us-east-1b".to_string()])
    );
    assert_eq!(emu.calls("DescribeSubnets"), 1, "one DescribeSubnets for the class's subnet set");
    assert_eq!(emu.calls("CreateFileSystem"), 5);
}

#[tokio::test]
async fn a_zone_without_a_subnet_is_resource_exhausted_naming_the_zones_with_no_creation() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let two = params(&[("subnetIds", &format!("{A},{B}"))]);
    let e = c.create_volume(for_zone("pvc-d", two, &["us-east-1c"], &["us-east-1c"])).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("us-east-1c") && e.message().contains("us-east-1a, us-east-1b"), "{}", e.message());
    assert_eq!(emu.calls("CreateFileSystem"), 0);
}

#[tokio::test]
async fn subnet_sets_that_cannot_work_are_refused_naming_the_subnet_before_any_creation() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let other_vpc = "subnet-0123456789abcdef3";
    let same_zone = "subnet-0123456789abcdef6"; // 6 % 3 = 0: us-east-1a, as A
    emu.update_config(|cfg| {
        cfg.subnets
            .insert(other_vpc.into(), SubnetPlace { zone: "us-east-1c".into(), vpc: "vpc-0fedcba9876543210".into() });
    });
    let cases = [
        (params(&[("subnetId", A), ("subnetIds", B)]), Code::InvalidArgument, "subnetId,subnetIds"),
        (params(&[("subnetIds", &format!("{A},{other_vpc}"))]), Code::InvalidArgument, other_vpc),
        (params(&[("subnetIds", &format!("{A},{same_zone}"))]), Code::InvalidArgument, same_zone),
        (
            params(&[("subnetIds", &format!("{A},subnet-0123456789deadbe"))]),
            Code::InvalidArgument,
            "subnet-0123456789deadbe",
        ),
        (params(&[("subnetIds", &format!("{A},{A}"))]), Code::InvalidArgument, "listed twice"),
        (params(&[]), Code::InvalidArgument, "subnetIds"),
    ];
    for (i, (p, code, named)) in cases.into_iter().enumerate() {
        let e = c.create_volume(for_zone(&format!("pvc-bad-{i}"), p, &["us-east-1a"], &[])).await.unwrap_err();
        assert_eq!(e.code(), code, "case {i}: {e:?}");
        assert!(e.message().contains(named), "case {i}: {}", e.message());
    }
    assert_eq!(emu.calls("CreateFileSystem"), 0);
}

#[tokio::test]
async fn zonal_affinity_false_reports_no_zone() {
    let (emu, driver) = setup().await;
    let mut c = driver.controller_client().await;
    let mut p = three();
    p.insert("zonalAffinity".into(), "false".into());
    let v = c.create_volume(for_zone("pvc-free", p, &["us-east-1b"], &["us-east-1b"])).await.unwrap();
    let v = v.into_inner().volume.unwrap();
    assert_eq!(subnet_of(&emu, &v.volume_id), B, "still created where its first pod runs");
    assert!(v.accessible_topology.is_empty(), "{:?}", v.accessible_topology);
}

#[tokio::test]
async fn without_ec2_permission_one_subnet_works_as_before_and_several_are_refused_naming_the_action() {
    let (emu, driver) = setup().await;
    emu.update_config(|cfg| cfg.deny_operations.push("DescribeSubnets".into()));
    let mut c = driver.controller_client().await;
    let v = c
        .create_volume(for_zone("pvc-one", params(&[("subnetId", A)]), &["us-east-1a", "us-east-1b"], &["us-east-1b"]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(subnet_of(&emu, &v.volume_id), A);
    assert!(v.accessible_topology.is_empty(), "an unknown zone is not reported");
    let e = c.create_volume(for_zone("pvc-many", three(), &["us-east-1a"], &[])).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("ec2:DescribeSubnets"), "{}", e.message());
    // The refusal is remembered: no DescribeSubnets per volume.
    assert_eq!(emu.calls("DescribeSubnets"), 1);
    assert_eq!(emu.calls("CreateFileSystem"), 1);
}
