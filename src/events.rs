//! Events on the objects users watch while the controller works for them: the claim while its
//! file system is created, linked to S3 or grown, and the VolumeSnapshot while its backup is
//! taken. `kubectl describe pvc` shows them beside the provisioner's own.
//!
//! The provisioner says what happens through [`Events`], which never blocks and never fails:
//! [`KubeEvents`] queues each event (bounded: when the API server is slow, the newest are
//! dropped and counted in the log) and posts them from one task. Events are aggregated as the
//! Kubernetes event recorder does, one series per object, type and reason: the first is
//! created, the next ones patch its count, last timestamp and message; so a progress event
//! once a minute is one object with a count, never one object per poll. Without the API (not
//! in a pod), [`Logged`] writes them to the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::Chain;
use crate::kube::{KubeClient, ObjectRef};

/// The claim a volume was created for (from the external-provisioner's
/// `--extra-create-metadata` parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
}

/// The `csi.storage.k8s.io/pvc/name` and `/namespace` CreateVolume parameters.
pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
/// The `csi.storage.k8s.io/volumesnapshot/name` and `/namespace` CreateSnapshot parameters.
pub const SNAPSHOT_NAME: &str = "csi.storage.k8s.io/volumesnapshot/name";
pub const SNAPSHOT_NAMESPACE: &str = "csi.storage.k8s.io/volumesnapshot/namespace";

impl Claim {
    /// The claim named in CreateVolume's parameters, if both keys are there and well formed.
    pub fn from_parameters(p: &HashMap<String, String>, name_key: &str, namespace_key: &str) -> Option<Self> {
        let (name, namespace) = (p.get(name_key)?, p.get(namespace_key)?);
        (is_object_name(name) && is_object_name(namespace))
            .then(|| Self { namespace: namespace.clone(), name: name.clone() })
    }
}

/// A DNS-1123 subdomain (object names and namespaces): checked before it goes into a path.
pub fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A volume (its PV name, the file system's `CSIVolumeName`); the event goes on its claim:
    /// the one given, else the PV's claimRef.
    Volume { volume: String, claim: Option<(String, String)> },
    /// A VolumeSnapshot.
    Snapshot { namespace: String, name: String },
}

impl Subject {
    /// A volume, with its claim when known.
    pub fn volume(volume: &str, claim: Option<&Claim>) -> Self {
        Subject::Volume { volume: volume.to_string(), claim: claim.map(|c| (c.namespace.clone(), c.name.clone())) }
    }
}

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Normal,
    Warning,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub subject: Subject,
    pub kind: Kind,
    pub reason: &'static str,
    pub message: String,
}

/// Where the provisioner's events go. `post` returns at once and cannot fail.
pub trait Events: Send + Sync + std::fmt::Debug {
    fn post(&self, event: Event);
}

/// Events written to the log (no Kubernetes API).
#[derive(Debug, Default)]
pub struct Logged;

impl Events for Logged {
    fn post(&self, e: Event) {
        tracing::debug!(reason = e.reason, kind = e.kind.as_str(), message = %e.message, "event (no Kubernetes API to post it to)");
    }
}

/// Events kept in memory, for tests.
#[derive(Debug, Default)]
pub struct Recorded(Mutex<Vec<Event>>);

impl Recorded {
    /// Everything posted so far.
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Events for Recorded {
    fn post(&self, e: Event) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }
}

/// Events waiting to be posted, at most.
const QUEUE: usize = 1024;
/// Series remembered for aggregation, at most (the oldest go first).
const SERIES: usize = 4096;
/// A series older than this starts again as a new event (the API server keeps events an hour).
const SERIES_AGE: Duration = Duration::from_secs(3600);

/// One aggregated event: its object's name in the API, how many times it happened.
struct Series {
    namespace: String,
    name: String,
    count: i32,
    started: tokio::time::Instant,
}

/// Events posted to the Kubernetes API. See the module docs.
#[derive(Debug)]
pub struct KubeEvents {
    tx: mpsc::Sender<Event>,
}

impl KubeEvents {
    /// Starts the posting task on the current runtime; `component` is the event's source
    /// (`fsx-csi-controller`), `instance` this replica (its host name).
    pub fn start(client: KubeClient, component: &str, instance: &str) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let poster = Poster {
            client,
            component: component.to_string(),
            instance: instance.to_string(),
            series: HashMap::new(),
            claims: HashMap::new(),
        };
        tokio::spawn(poster.run(rx));
        Arc::new(Self { tx })
    }
}

impl Events for KubeEvents {
    fn post(&self, e: Event) {
        if let Err(mpsc::error::TrySendError::Full(e)) = self.tx.try_send(e) {
            tracing::warn!(reason = e.reason, message = %e.message, "the event queue is full (the API server is slow): event dropped");
        }
    }
}

type SeriesKey = (ObjectRef, Kind, &'static str);

struct Poster {
    client: KubeClient,
    component: String,
    instance: String,
    series: HashMap<SeriesKey, Series>,
    /// Claims of volumes, as read from their PVs.
    claims: HashMap<String, ObjectRef>,
}

impl Poster {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        while let Some(e) = rx.recv().await {
            let (reason, kind) = (e.reason, e.kind);
            if let Err(why) = self.post(e).await {
                tracing::warn!(reason, kind = kind.as_str(), error = %why, "cannot post the event (the log has the same)");
            }
        }
    }

    /// The object the event goes on.
    async fn object(&mut self, subject: &Subject) -> Result<ObjectRef, String> {
        match subject {
            Subject::Snapshot { namespace, name } => Ok(ObjectRef::snapshot(namespace, name)),
            Subject::Volume { volume, claim: Some((namespace, name)) } => {
                if let Some(uid) = uid_of_volume(volume) {
                    return Ok(ObjectRef::claim(namespace, name, Some(uid)));
                }
                // A PV named with another prefix than `pvc`: the claim's uid from the API.
                if let Some(found) = self.claims.get(volume) {
                    return Ok(found.clone());
                }
                let uid = self.client.claim_uid(namespace, name).await.map_err(|e| Chain(&e).to_string())?;
                let found = ObjectRef::claim(namespace, name, uid);
                if self.claims.len() >= SERIES {
                    self.claims.clear();
                }
                self.claims.insert(volume.clone(), found.clone());
                Ok(found)
            }
            Subject::Volume { volume, claim: None } => {
                if let Some(found) = self.claims.get(volume) {
                    return Ok(found.clone());
                }
                let found = self
                    .client
                    .claim_of_volume(volume)
                    .await
                    .map_err(|e| Chain(&e).to_string())?
                    .ok_or_else(|| format!("volume {volume} has no PersistentVolume with a claim"))?;
                if self.claims.len() >= SERIES {
                    self.claims.clear();
                }
                self.claims.insert(volume.clone(), found.clone());
                Ok(found)
            }
        }
    }

    async fn post(&mut self, e: Event) -> Result<(), String> {
        let object = self.object(&e.subject).await?;
        let key = (object.clone(), e.kind, e.reason);
        let now = tokio::time::Instant::now();
        if let Some(series) = self.series.get_mut(&key)
            && now.duration_since(series.started) < SERIES_AGE
        {
            series.count += 1;
            let (namespace, name, count) = (series.namespace.clone(), series.name.clone(), series.count);
            match self.client.bump_event(&namespace, &name, count, &e.message).await {
                Ok(true) => return Ok(()),
                // Gone (expired, or deleted): a new series.
                Ok(false) => {}
                Err(why) => return Err(Chain(&why).to_string()),
            }
        }
        let name = self
            .client
            .create_event(&object, e.kind.as_str(), e.reason, &e.message, &self.component, &self.instance)
            .await
            .map_err(|why| Chain(&why).to_string())?;
        if self.series.len() >= SERIES
            && let Some(oldest) = self.series.iter().min_by_key(|(_, s)| s.started).map(|(k, _)| k.clone())
        {
            self.series.remove(&oldest);
        }
        self.series.insert(key, Series { namespace: object.namespace.clone(), name, count: 1, started: now });
        Ok(())
    }
}

/// The claim's uid from the volume's name: the external-provisioner names a PV
/// `<prefix>-<claim uid>` (`pvc-…` by default). `kubectl describe pvc` finds events by uid;
/// without one in the name, the poster reads the claim.
pub fn uid_of_volume(volume: &str) -> Option<String> {
    let at = volume.len().checked_sub(36)?;
    let (prefix, uid) = (volume.get(..at)?, volume.get(at..)?);
    let ok = prefix.len() > 1
        && prefix.ends_with('-')
        && uid.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    ok.then(|| uid.to_string())
}

/// A duration for messages: `4m12s`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 { format!("{}m{:02}s", s / 60, s % 60) } else { format!("{s}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claims_uid_is_read_from_the_volume_name() {
        assert_eq!(
            uid_of_volume("pvc-0f6c2b0a-7d1e-4c55-9a1b-2f3e4d5c6b7a").as_deref(),
            Some("0f6c2b0a-7d1e-4c55-9a1b-2f3e4d5c6b7a")
        );
        assert_eq!(uid_of_volume("pvc-bench-0001"), None);
        assert_eq!(uid_of_volume("volume"), None);
    }

    #[test]
    fn claims_come_from_well_formed_parameters_only() {
        let p = |n: &str, ns: &str| -> HashMap<String, String> {
            [(PVC_NAME.to_string(), n.to_string()), (PVC_NAMESPACE.to_string(), ns.to_string())].into()
        };
        assert_eq!(
            Claim::from_parameters(&p("data", "team-a"), PVC_NAME, PVC_NAMESPACE),
            Some(Claim { namespace: "team-a".into(), name: "data".into() })
        );
        assert_eq!(Claim::from_parameters(&p("../x", "team-a"), PVC_NAME, PVC_NAMESPACE), None);
        assert_eq!(Claim::from_parameters(&HashMap::new(), PVC_NAME, PVC_NAMESPACE), None);
        assert_eq!(elapsed(Duration::from_secs(252)), "4m12s");
    }
}
