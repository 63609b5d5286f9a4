//! Zone-aware placement: which of a StorageClass's subnets a new file system goes into, and
//! the zone a volume reports, so that the PV's node affinity keeps pods in the file system's
//! Availability Zone.
//!
//! - A StorageClass lists one or more subnets (`subnetIds`; `subnetId` is a list of one). Their
//!   zones and VPCs are learned, not typed: [`SubnetLookup`] asks EC2 (`DescribeSubnets`,
//!   [`crate::ec2`]) once per set of subnets, and [`SubnetZones`] keeps the answer for the
//!   controller's life (a subnet never changes zone or VPC).
//! - A set is checked before any creation: one VPC, and at most one subnet per zone (two
//!   subnets in one zone would make the choice arbitrary), each refusal naming the subnet.
//! - [`place`] picks the subnet: the first preferred topology whose zone has a listed subnet,
//!   else the first requisite one (the external-provisioner passes the scheduled node's zone
//!   with `WaitForFirstConsumer`), else (no requirement at all) the first subnet. A requirement
//!   no listed subnet meets is refused, naming the zones asked for and the class's zones.
//! - The volume reports [`ZONE_KEY`] = its file system's zone (unless the class says
//!   `zonalAffinity: "false"`); the node plugin reports its node's zone under the same key.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;

use crate::text::Shown;

/// The topology key of a zone: the one the kubelet, the scheduler and EKS already use.
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// Where the node plugin learns its node's zone (the Node's `topology.kubernetes.io/zone`
/// label, else the instance metadata's placement): no AWS permission needed.
#[async_trait]
pub trait NodeZone: Send + Sync + 'static {
    /// The zone of node `name`; `None` if it has none (not on AWS, no label).
    async fn zone(&self, name: &str) -> Result<Option<String>, String>;
}

/// [`NodeZone`] from the Node object's label, else the instance metadata.
pub struct LabelOrImds {
    pub api: Option<crate::kube::KubeClient>,
    pub metadata: Arc<dyn crate::metadata::InstanceMetadata>,
}

#[async_trait]
impl NodeZone for LabelOrImds {
    async fn zone(&self, name: &str) -> Result<Option<String>, String> {
        // Why the API gave no zone; `None` when the API answered that the node has none (or
        // there is no API), so that no instance metadata means no zone rather than an error.
        let api_failed = match &self.api {
            None => None,
            Some(api) => match api.node(name).await {
                Ok(node) => {
                    if let Some(zone) = node.metadata.labels.as_ref().and_then(|l| l.get(ZONE_KEY)) {
                        return Ok(Some(zone.clone()));
                    }
                    None
                }
                Err(e) => Some(format!("reading node {name}: {}", crate::error::Chain(&e))),
            },
        };
        match (self.metadata.availability_zone().await, api_failed) {
            (Ok(zone), _) if !zone.is_empty() => Ok(Some(zone)),
            (Ok(_), _) => Ok(None),
            // Not on EC2, and the API has no zone for it: the node reports no topology.
            (Err(imds), None) => {
                tracing::info!(imds = %imds, "neither the Node's label nor the instance metadata gives a zone: this node reports none");
                Ok(None)
            }
            (Err(imds), Some(api)) => Err(format!("{api}; the instance metadata: {imds}")),
        }
    }
}

/// What EC2 says of a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    /// The Availability Zone's name (`us-east-1a`).
    pub zone: String,
    pub vpc_id: String,
}

/// Why the zones of a StorageClass's subnets are not known.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubnetError {
    /// A subnet EC2 does not know (in this account and region).
    #[error("subnet {} does not exist in this account and region (EC2 DescribeSubnets: {message})", Shown(.subnet))]
    NotFound { subnet: String, message: String },
    /// The credentials may not call `ec2:DescribeSubnets`.
    #[error(
        "the IAM identity in use may not call ec2:DescribeSubnets ({0}); allow ec2:DescribeSubnets in its policy (deploy/iam-policy.json): the driver learns each subnet's zone from it"
    )]
    AccessDenied(String),
    /// EC2 could not be reached or failed; a retry may succeed.
    #[error("EC2 DescribeSubnets failed: {0}")]
    Unavailable(String),
}

/// Where the zones of subnets come from.
#[async_trait]
pub trait SubnetLookup: Send + Sync + 'static {
    /// The subnets `ids` (each exactly once, in any order), or why not.
    async fn describe_subnets(&self, ids: &[String]) -> Result<Vec<Subnet>, SubnetError>;
}

/// A StorageClass's subnets, learned and checked: one VPC, one subnet per zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetSet {
    /// In the class's order.
    pub subnets: Vec<Subnet>,
}

impl SubnetSet {
    /// Checks what EC2 said of `ids` (in the class's order).
    pub fn check(ids: &[String], found: Vec<Subnet>) -> Result<Self, PlacementError> {
        let mut by_id: HashMap<String, Subnet> = found.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut subnets = Vec::with_capacity(ids.len());
        for id in ids {
            let s = by_id.remove(id).ok_or_else(|| {
                PlacementError::Subnets(SubnetError::NotFound {
                    subnet: id.clone(),
                    message: "not in the answer".into(),
                })
            })?;
            subnets.push(s);
        }
        let mut zones: BTreeMap<&str, &str> = BTreeMap::new();
        for s in &subnets {
            if s.vpc_id != subnets[0].vpc_id {
                return Err(PlacementError::Invalid(format!(
                    "subnet {} is in {}, and subnet {} in {}: the subnets of one StorageClass must be in one VPC",
                    s.id, s.vpc_id, subnets[0].id, subnets[0].vpc_id
                )));
            }
            if let Some(other) = zones.insert(&s.zone, &s.id) {
                return Err(PlacementError::Invalid(format!(
                    "subnets {other} and {} are both in {}: list at most one subnet per Availability Zone",
                    s.id, s.zone
                )));
            }
        }
        Ok(Self { subnets })
    }

    /// The zones, in the class's order.
    pub fn zones(&self) -> Vec<&str> {
        self.subnets.iter().map(|s| s.zone.as_str()).collect()
    }

    /// The subnet `id`, if listed.
    pub fn get(&self, id: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.id == id)
    }
}

/// The topology a CreateVolume asks for, reduced to zones (`accessibility_requirements`:
/// other keys are not this driver's and are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    pub requisite: Vec<String>,
    pub preferred: Vec<String>,
}

impl Requirement {
    /// No zone asked for.
    pub fn is_empty(&self) -> bool {
        self.requisite.is_empty() && self.preferred.is_empty()
    }
}

/// Why no subnet can be chosen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlacementError {
    /// The class's subnets cannot be used together (another VPC, two in one zone).
    #[error("{0}")]
    Invalid(String),
    /// The zones asked for have no listed subnet.
    #[error(
        "no subnet of the StorageClass is in {wanted}: its subnets are in {have}; add a subnet of {wanted} to subnetIds, or keep the pods out of that zone"
    )]
    NoSubnetInZone { wanted: String, have: String },
    #[error(transparent)]
    Subnets(#[from] SubnetError),
}

/// The subnet a new file system goes into (see the module's doc).
pub fn place<'s>(set: &'s SubnetSet, req: &Requirement) -> Result<&'s Subnet, PlacementError> {
    if req.is_empty() {
        return Ok(&set.subnets[0]);
    }
    let in_zone = |zone: &str| set.subnets.iter().find(|s| s.zone == zone);
    if let Some(s) = req.preferred.iter().find_map(|z| in_zone(z)) {
        return Ok(s);
    }
    if let Some(s) = req.requisite.iter().find_map(|z| in_zone(z)) {
        return Ok(s);
    }
    let mut wanted: Vec<&str> = req.preferred.iter().chain(&req.requisite).map(String::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();
    Err(PlacementError::NoSubnetInZone { wanted: wanted.join(", "), have: set.zones().join(", ") })
}

/// How long a refusal of `ec2:DescribeSubnets` is remembered before asking again (an IAM
/// policy may be fixed meanwhile; until then every volume would pay a refused call).
pub const DENIED_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// The subnets' zones, learned once per set for the controller's life.
pub struct SubnetZones {
    lookup: Arc<dyn SubnetLookup>,
    known: tokio::sync::Mutex<Known>,
}

#[derive(Default)]
struct Known {
    sets: HashMap<Vec<String>, SubnetSet>,
    denied: Option<(tokio::time::Instant, SubnetError)>,
}

impl std::fmt::Debug for SubnetZones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubnetZones").finish_non_exhaustive()
    }
}

impl SubnetZones {
    pub fn new(lookup: Arc<dyn SubnetLookup>) -> Self {
        Self { lookup, known: tokio::sync::Mutex::new(Known::default()) }
    }

    /// The checked set of `ids` (a StorageClass's list): one `DescribeSubnets` the first time,
    /// none after. Concurrent first calls for one set make one call; a refusal (IAM) is
    /// answered from memory for [`DENIED_FOR`].
    pub async fn set(&self, ids: &[String]) -> Result<SubnetSet, PlacementError> {
        let mut known = self.known.lock().await;
        if let Some(set) = known.sets.get(ids) {
            return Ok(set.clone());
        }
        if let Some((at, e)) = &known.denied
            && at.elapsed() < DENIED_FOR
        {
            return Err(e.clone().into());
        }
        let found = match self.lookup.describe_subnets(ids).await {
            Ok(found) => found,
            Err(e @ SubnetError::AccessDenied(_)) => {
                known.denied = Some((tokio::time::Instant::now(), e.clone()));
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        known.denied = None;
        let set = SubnetSet::check(ids, found)?;
        known.sets.insert(ids.to_vec(), set.clone());
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn subnet(id: &str, zone: &str, vpc: &str) -> Subnet {
        Subnet { id: id.into(), zone: zone.into(), vpc_id: vpc.into() }
    }

    fn three() -> SubnetSet {
        let ids: Vec<String> = ["subnet-a", "subnet-b", "subnet-c"].map(String::from).into();
        SubnetSet::check(
            &ids,
            vec![
                subnet("subnet-c", "us-east-1c", "vpc-1"),
                subnet("subnet-a", "us-east-1a", "vpc-1"),
                subnet("subnet-b", "us-east-1b", "vpc-1"),
            ],
        )
        .unwrap()
    }

    fn req(requisite: &[&str], preferred: &[&str]) -> Requirement {
        Requirement {
            requisite: requisite.iter().map(|s| s.to_string()).collect(),
            preferred: preferred.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_scheduled_zone_chooses_the_subnet() {
        let set = three();
        assert_eq!(set.zones(), ["us-east-1a", "us-east-1b", "us-east-1c"]);
        // WaitForFirstConsumer: the selected node's zone, as requisite and preferred.
        assert_eq!(place(&set, &req(&["us-east-1b"], &["us-east-1b"])).unwrap().id, "subnet-b");
        // Immediate: every node's zone, the preferred first.
        assert_eq!(
            place(&set, &req(&["us-east-1a", "us-east-1c"], &["us-east-1c", "us-east-1a"])).unwrap().id,
            "subnet-c"
        );
        assert_eq!(place(&set, &req(&["us-east-1d", "us-east-1c"], &[])).unwrap().id, "subnet-c");
        // No requirement: the first subnet.
        assert_eq!(place(&set, &Requirement::default()).unwrap().id, "subnet-a");
    }

    #[test]
    fn a_zone_without_a_subnet_is_refused_naming_both_sides() {
        let e = place(&three(), &req(&["us-east-1d"], &["us-east-1d"])).unwrap_err().to_string();
        assert!(e.contains("in us-east-1d") && e.contains("us-east-1a, us-east-1b, us-east-1c"), "{e}");
    }

    #[test]
    fn sets_across_vpcs_or_with_two_subnets_in_a_zone_are_refused_naming_the_subnet() {
        let ids: Vec<String> = ["subnet-a", "subnet-x"].map(String::from).into();
        let e = SubnetSet::check(&ids, vec![subnet("subnet-a", "z1", "vpc-1"), subnet("subnet-x", "z2", "vpc-2")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("subnet subnet-x is in vpc-2") && e.contains("one VPC"), "{e}");
        let e = SubnetSet::check(&ids, vec![subnet("subnet-a", "z1", "vpc-1"), subnet("subnet-x", "z1", "vpc-1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("subnet-a and subnet-x are both in z1"), "{e}");
        let e = SubnetSet::check(&ids, vec![subnet("subnet-a", "z1", "vpc-1")]).unwrap_err().to_string();
        assert!(e.contains("subnet-x"), "{e}");
    }

    struct Counting(AtomicUsize);

    #[async_trait]
    impl SubnetLookup for Counting {
        async fn describe_subnets(&self, ids: &[String]) -> Result<Vec<Subnet>, SubnetError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(ids.iter().enumerate().map(|(i, id)| subnet(id, &format!("zone-{i}"), "vpc-1")).collect())
        }
    }

    #[tokio::test]
    async fn each_set_is_looked_up_once() {
        let lookup = Arc::new(Counting(AtomicUsize::new(0)));
        let zones = Arc::new(SubnetZones::new(lookup.clone()));
        let ids: Vec<String> = ["subnet-a", "subnet-b"].map(String::from).into();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (zones, ids) = (Arc::clone(&zones), ids.clone());
                tokio::spawn(async move { zones.set(&ids).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().zones(), ["zone-0", "zone-1"]);
        }
        zones.set(&ids[..1]).await.unwrap();
        assert_eq!(lookup.0.load(Ordering::SeqCst), 2);
    }
}
