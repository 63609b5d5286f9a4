//! The Kubernetes API, for the node plugin: its preStop hook reads its Node
//! ([`crate::drain`]), and at start it removes the `agent-not-ready` taint once the kubelet has
//! registered it ([`crate::taint`]); and for the controller: events on claims and
//! VolumeSnapshots ([`crate::events`]). kube-rs on rustls (aws-lc-rs, the provider the AWS SDK
//! already builds), with the pod's service account.
//!
//! The configuration is the in-cluster one (`KUBERNETES_SERVICE_HOST` / `_PORT`, the projected
//! token and `ca.crt`), with the token and CA files replaceable for tests; kube-rs re-reads both
//! while the process runs, since projected tokens rotate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, ObjectReference, Taint};
use k8s_openapi::api::storage::v1::CSINode;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use tokio_stream::StreamExt;

use crate::error::Cause;
use crate::text::Shown;

/// Where a pod's service account token and the cluster CA are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The longest one request may take.
const REQUEST_TIME: Duration = Duration::from_secs(10);

/// The largest CA file read.
const MAX_FILE: u64 = 1 << 20;

/// The largest answer read from the API server (a Node with many images is a few hundred KiB).
const MAX_BODY: usize = 4 << 20;

/// How long the API server keeps one watch open before the client opens the next.
const WATCH_SECONDS: u32 = 290;

/// The JSON patch (RFC 6902) that removes every taint with `key` from a node whose taints are
/// `taints` at `resource_version`, or `None` if it has none. Removals go from the last index
/// to the first, so each index is still right when its operation runs; every one is preceded
/// by a `test` of that taint's key and effect, and the patch begins with a `test` of the
/// resourceVersion (absent when the node had none: then only the taints are tested).
pub fn taint_removal(taints: &[Taint], resource_version: Option<&str>, key: &str) -> Option<serde_json::Value> {
    let mut ops = Vec::new();
    if let Some(rv) = resource_version {
        ops.push(serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    let mut any = false;
    for (i, t) in taints.iter().enumerate().rev().filter(|(_, t)| t.key == key) {
        any = true;
        ops.push(serde_json::json!({"op": "test", "path": format!("/spec/taints/{i}/key"), "value": t.key}));
        ops.push(serde_json::json!({"op": "test", "path": format!("/spec/taints/{i}/effect"), "value": t.effect}));
        ops.push(serde_json::json!({"op": "remove", "path": format!("/spec/taints/{i}")}));
    }
    any.then_some(serde_json::Value::Array(ops))
}

/// Cuts off every answer's body past `max` bytes (reading it fails).
fn bounded_bodies<B>(
    max: usize,
) -> tower::util::MapResponseLayer<impl Fn(http::Response<B>) -> http::Response<http_body_util::Limited<B>> + Clone> {
    tower::util::MapResponseLayer::new(move |response: http::Response<B>| {
        response.map(|body| http_body_util::Limited::new(body, max))
    })
}

/// Why a request to the Kubernetes API failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The pod's environment does not say where the API is, or a file is missing.
    #[error("{0}")]
    Config(String),
    /// No answer: connection, TLS or time-out.
    #[error("the Kubernetes API did not answer {what}")]
    Unreachable {
        what: String,
        #[source]
        cause: Cause,
    },
    /// The API answered with an error status.
    #[error("the Kubernetes API refused {what} ({status}): {message}{hint}")]
    Refused { what: String, status: u16, message: String, hint: String },
}

/// The API server did not answer within a bound (the bound, in words).
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0}")]
pub struct NoAnswer(pub String);

impl KubeError {
    /// True for 404: the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KubeError::Refused { status: 404, .. })
    }

    /// True when someone else changed the object first: 409, or (for a JSON patch) a `test`
    /// operation that no longer holds, which the API server answers with 422.
    pub fn is_conflict(&self) -> bool {
        match self {
            KubeError::Refused { status: 409, .. } => true,
            KubeError::Refused { status: 422, message, .. } => message.contains("test"),
            _ => false,
        }
    }

    fn from_kube(what: &str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => {
                // `what` is "<verb> <resource>/<name>".
                let (verb, rest) = what.split_once(' ').unwrap_or((what, ""));
                let resource = rest.split('/').next().unwrap_or(rest);
                let hint = match s.code {
                    401 => " (the service account token was not accepted)".to_string(),
                    403 => {
                        format!(
                            " (the service account's ClusterRole, fsx-csi-node-role for the node plugin or fsx-csi-controller-role for the controller, must allow {verb} on {resource})"
                        )
                    }
                    _ => String::new(),
                };
                KubeError::Refused {
                    what: what.to_string(),
                    status: s.code,
                    message: Shown(&s.message).to_string(),
                    hint,
                }
            }
            other => KubeError::Unreachable { what: what.to_string(), cause: Cause::new(other) },
        }
    }
}

/// Where the API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// `https://host:port`.
    pub url: String,
    /// The bearer token's file, read again as it rotates.
    pub token_file: PathBuf,
    /// PEM certificates trusted for the API server.
    pub ca_file: PathBuf,
}

impl KubeConfig {
    /// True if the process runs in a pod (the API's address is in the environment).
    pub fn in_a_pod() -> bool {
        std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty())
    }

    /// The in-cluster configuration: `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`,
    /// and the token and CA files (by default in [`SERVICE_ACCOUNT_DIR`]).
    pub fn in_cluster(token_file: Option<PathBuf>, ca_file: Option<PathBuf>) -> Result<Self, KubeError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (Some(host), Some(port)) = (var("KUBERNETES_SERVICE_HOST"), var("KUBERNETES_SERVICE_PORT")) else {
            return Err(KubeError::Config(
                "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: not running in a pod".into(),
            ));
        };
        let port: u16 = port
            .trim()
            .parse()
            .map_err(|_| KubeError::Config(format!("KUBERNETES_SERVICE_PORT {} is not a port number", Shown(&port))))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']').to_string();
        if host.is_empty() || host.chars().any(|c| c.is_control() || c.is_whitespace() || "/@?#".contains(c)) {
            return Err(KubeError::Config(format!("KUBERNETES_SERVICE_HOST {} is not a host", Shown(&host))));
        }
        let url =
            if host.contains(':') { format!("https://[{host}]:{port}") } else { format!("https://{host}:{port}") };
        let dir = Path::new(SERVICE_ACCOUNT_DIR);
        Ok(Self {
            url,
            token_file: token_file.unwrap_or_else(|| dir.join("token")),
            ca_file: ca_file.unwrap_or_else(|| dir.join("ca.crt")),
        })
    }
}

fn read_small(path: &Path, what: &str) -> Result<Vec<u8>, KubeError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| KubeError::Config(format!("cannot read the {what} {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| KubeError::Config(format!("cannot read the {what} {}: {e}", path.display())))?;
    if buf.len() as u64 > MAX_FILE {
        return Err(KubeError::Config(format!("the {what} {} is larger than {MAX_FILE} bytes", path.display())));
    }
    Ok(buf)
}

/// The certificates of a PEM file, as DER.
fn pem_certificates(pem: &[u8], path: &Path) -> Result<Vec<Vec<u8>>, KubeError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut out = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert =
            cert.map_err(|e| KubeError::Config(format!("the cluster CA file {} is not PEM: {e}", path.display())))?;
        out.push(cert.to_vec());
    }
    if out.is_empty() {
        return Err(KubeError::Config(format!("the cluster CA file {} holds no certificate", path.display())));
    }
    Ok(out)
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

impl ObjectRef {
    /// A PersistentVolumeClaim.
    pub fn claim(namespace: &str, name: &str, uid: Option<String>) -> Self {
        Self { api_version: "v1", kind: "PersistentVolumeClaim", namespace: namespace.into(), name: name.into(), uid }
    }

    /// A VolumeSnapshot.
    pub fn snapshot(namespace: &str, name: &str) -> Self {
        Self {
            api_version: "snapshot.storage.k8s.io/v1",
            kind: "VolumeSnapshot",
            namespace: namespace.into(),
            name: name.into(),
            uid: None,
        }
    }
}

/// A client for the API server of the cluster this pod runs in.
#[derive(Clone)]
pub struct KubeClient {
    client: kube::Client,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient").finish_non_exhaustive()
    }
}

/// Runs one request, bounded by [`REQUEST_TIME`].
async fn bounded<T>(what: &str, f: impl Future<Output = Result<T, kube::Error>>) -> Result<T, KubeError> {
    match tokio::time::timeout(REQUEST_TIME, f).await {
        Ok(r) => r.map_err(|e| KubeError::from_kube(what, e)),
        Err(_) => Err(KubeError::Unreachable {
            what: what.to_string(),
            cause: Cause::new(NoAnswer(humantime::format_duration(REQUEST_TIME).to_string())),
        }),
    }
}

/// Checks a node name before it goes into a path or a field selector.
fn check_node_name(name: &str) -> Result<(), KubeError> {
    if name.is_empty()
        || name.len() > 253
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(KubeError::Config(format!(
            "node name {} is not a Kubernetes object name (lowercase letters, digits, '-' and '.')",
            Shown(name)
        )));
    }
    Ok(())
}

impl KubeClient {
    /// Reads the CA file and builds the client (TLS with the cluster CA as the only trust
    /// anchor, the bearer token from its file). Needs a tokio runtime.
    pub fn new(config: KubeConfig) -> Result<Self, KubeError> {
        let pem = read_small(&config.ca_file, "cluster CA file")?;
        let roots = pem_certificates(&pem, &config.ca_file)?;
        let url: http::Uri = config
            .url
            .parse()
            .map_err(|e| KubeError::Config(format!("the API address {}: {e}", Shown(&config.url))))?;
        let mut c = kube::Config::new(url);
        c.root_cert = Some(roots);
        c.root_cert_file = Some(config.ca_file.clone());
        c.auth_info.token_file = Some(config.token_file.display().to_string());
        c.connect_timeout = Some(Duration::from_secs(5));
        // The bounded() wrapper limits each request; watches stay open for WATCH_SECONDS.
        c.read_timeout = None;
        // Every answer is read into memory before it is parsed: a bounded body keeps a hostile or
        // broken API server (or proxy) from making the node plugin hold hundreds of MiB.
        let client = kube::client::ClientBuilder::try_from(c)
            .map_err(|e| KubeError::Config(format!("Kubernetes client: {e}")))?
            .with_layer(&bounded_bodies(MAX_BODY))
            .build();
        Ok(Self { client })
    }

    /// `GET /api/v1/nodes/{name}`.
    pub async fn node(&self, name: &str) -> Result<Node, KubeError> {
        check_node_name(name)?;
        let api: Api<Node> = Api::all(self.client.clone());
        bounded(&format!("get nodes/{name}"), api.get(name)).await
    }

    /// Removes every taint with `key` from node `name` and touches nothing else: a JSON patch
    /// of `remove` operations at those taints' indices ([`taint_removal`]), each checked by a
    /// `test` of the taint's key and effect, and the whole by a `test` of the node's
    /// resourceVersion, so a concurrent change fails the patch (a conflict: read and retry)
    /// instead of removing the wrong taint. Returns how many taints were removed.
    pub async fn remove_taint(&self, name: &str, key: &str) -> Result<usize, KubeError> {
        let node = self.node(name).await?;
        let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let Some(patch) = taint_removal(&taints, node.metadata.resource_version.as_deref(), key) else {
            return Ok(0);
        };
        let removed = taints.iter().filter(|t| t.key == key).count();
        // check_node_name (in node()) made the name safe in a path.
        let request = http::Request::patch(format!("/api/v1/nodes/{name}?fieldManager=fsx-csi-driver"))
            .header(http::header::CONTENT_TYPE, "application/json-patch+json")
            .body(patch.to_string().into_bytes())
            .map_err(|e| KubeError::Config(format!("building the taint patch: {e}")))?;
        bounded(&format!("patch nodes/{name}"), self.client.request::<Node>(request)).await?;
        Ok(removed)
    }

    /// Posts a Warning event on node `name` (in `default`, where events of cluster-scoped
    /// objects go), as the kubelet's recorder would: `kubectl describe node` shows it. The
    /// message is bounded.
    pub async fn warn_node(&self, name: &str, reason: &str, message: &str) -> Result<(), KubeError> {
        let node = self.node(name).await?;
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: kube::api::ObjectMeta {
                // The recorder's naming: the object's name and a unique suffix.
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: Some("default".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(name.to_string()),
                uid: node.metadata.uid.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(crate::text::clip(message)),
            type_: Some("Warning".into()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some("fsx-csi-node".into()),
                host: Some(name.to_string()),
            }),
            reporting_component: Some(format!("{}/node", crate::DRIVER_NAME)),
            reporting_instance: Some(name.to_string()),
            first_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            last_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        bounded(&format!("create events for nodes/{name}"), api.create(&PostParams::default(), &event)).await?;
        Ok(())
    }

    /// Creates an event on `object` (count 1), as the event recorder does; returns its name.
    pub async fn create_event(
        &self,
        object: &ObjectRef,
        kind: &str,
        reason: &str,
        message: &str,
        component: &str,
        instance: &str,
    ) -> Result<String, KubeError> {
        if !crate::events::is_object_name(&object.namespace) || !crate::events::is_object_name(&object.name) {
            return Err(KubeError::Config(format!(
                "{}/{} is not a Kubernetes object name",
                Shown(&object.namespace),
                Shown(&object.name)
            )));
        }
        let now = k8s_openapi::jiff::Timestamp::now();
        let name = format!("{}.{:x}", object.name, now.as_nanosecond());
        let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now);
        let event = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(object.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(object.api_version.into()),
                kind: Some(object.kind.into()),
                name: Some(object.name.clone()),
                namespace: Some(object.namespace.clone()),
                uid: object.uid.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(crate::text::clip(message)),
            type_: Some(kind.to_string()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(component.to_string()),
                host: Some(instance.to_string()),
            }),
            reporting_component: Some(component.to_string()),
            reporting_instance: Some(instance.to_string()),
            first_timestamp: Some(time.clone()),
            last_timestamp: Some(time),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &object.namespace);
        let what = format!("create events for {}/{}", object.kind.to_lowercase(), object.name);
        bounded(&what, api.create(&PostParams::default(), &event)).await?;
        Ok(name)
    }

    /// Counts one more occurrence of event `name` (a merge patch of its count, last timestamp
    /// and message, as the event recorder aggregates). `Ok(false)`: the event is gone.
    pub async fn bump_event(&self, namespace: &str, name: &str, count: i32, message: &str) -> Result<bool, KubeError> {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
        let patch = serde_json::json!({
            "count": count,
            "lastTimestamp": now,
            "message": crate::text::clip(message),
        });
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let params = kube::api::PatchParams::default();
        match bounded(&format!("patch events/{name}"), api.patch(name, &params, &kube::api::Patch::Merge(&patch))).await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The uid of claim `namespace`/`name`, if it exists.
    pub async fn claim_uid(&self, namespace: &str, name: &str) -> Result<Option<String>, KubeError> {
        if !crate::events::is_object_name(namespace) || !crate::events::is_object_name(name) {
            return Ok(None);
        }
        let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), namespace);
        let claim = bounded(&format!("get persistentvolumeclaims/{name}"), api.get_opt(name)).await?;
        Ok(claim.and_then(|c| c.metadata.uid))
    }

    /// The claim bound to PersistentVolume `volume` (its claimRef), if any.
    pub async fn claim_of_volume(&self, volume: &str) -> Result<Option<ObjectRef>, KubeError> {
        if !crate::events::is_object_name(volume) {
            return Ok(None);
        }
        let api: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(self.client.clone());
        let pv = bounded(&format!("get persistentvolumes/{volume}"), api.get_opt(volume)).await?;
        Ok(pv.and_then(|pv| pv.spec?.claim_ref).and_then(|r| Some(ObjectRef::claim(&r.namespace?, &r.name?, r.uid))))
    }

    /// True if the CSINode of node `name` lists `driver` now (absent: false).
    pub async fn csi_node_registered(&self, name: &str, driver: &str) -> Result<bool, KubeError> {
        check_node_name(name)?;
        let api: Api<CSINode> = Api::all(self.client.clone());
        let found = bounded(&format!("get csinodes/{name}"), api.get_opt(name)).await?;
        Ok(found.is_some_and(|n| n.spec.drivers.iter().any(|d| d.name == driver)))
    }

    /// Waits until the CSINode of node `name` lists `driver` (the kubelet registered the
    /// plugin), watching it: one watch stays open until the API server closes it, and the
    /// next one starts again (errors return, for the caller to back off). Returns `Ok(true)`
    /// once listed, `Ok(false)` when the watch ended without it.
    pub async fn csi_node_lists(&self, name: &str, driver: &str) -> Result<bool, KubeError> {
        check_node_name(name)?;
        let what = format!("watch csinodes/{name}");
        let api: Api<CSINode> = Api::all(self.client.clone());
        let params = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(WATCH_SECONDS);
        // "0": the current object first (a synthetic ADDED), then its changes.
        let stream = bounded(&what, api.watch(&params, "0")).await?;
        let mut stream = std::pin::pin!(stream);
        let lists = |n: &CSINode| n.spec.drivers.iter().any(|d| d.name == driver);
        let limit = Duration::from_secs(u64::from(WATCH_SECONDS) + 30);
        loop {
            let next = match tokio::time::timeout(limit, stream.next()).await {
                Ok(next) => next,
                Err(_) => return Ok(false),
            };
            match next {
                None => return Ok(false),
                Some(Ok(WatchEvent::Added(n) | WatchEvent::Modified(n))) if lists(&n) => return Ok(true),
                Some(Ok(WatchEvent::Error(s))) => return Err(KubeError::from_kube(&what, kube::Error::Api(s))),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(KubeError::from_kube(&what, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = |ca: &str| KubeConfig {
            url: "https://127.0.0.1:1".into(),
            token_file: dir.path().join("token"),
            ca_file: dir.path().join(ca),
        };
        let e = KubeClient::new(config("absent.crt")).unwrap_err().to_string();
        assert!(e.contains("absent.crt"), "{e}");
        std::fs::write(dir.path().join("empty.crt"), "not a certificate\n").unwrap();
        let e = KubeClient::new(config("empty.crt")).unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }

    #[tokio::test]
    async fn answers_are_read_up_to_a_bound() {
        use http_body_util::BodyExt;
        use tower::{Layer, ServiceExt};
        let big = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(
                vec![b'{'; 5 << 20],
            ))))
        });
        let response = bounded_bodies(MAX_BODY).layer(big).oneshot(http::Request::new(())).await.unwrap();
        let err = response.into_body().collect().await.unwrap_err();
        assert!(err.to_string().contains("length limit exceeded"), "{err}");
    }

    #[test]
    fn the_taint_patch_removes_exactly_that_taint_and_tests_what_it_read() {
        let taint = |key: &str, effect: &str| Taint { key: key.into(), effect: effect.into(), ..Taint::default() };
        let taints = [
            taint("dedicated", "NoSchedule"),
            taint("fsx.csi.aws.com/agent-not-ready", "NoExecute"),
            taint("other", "NoSchedule"),
            taint("fsx.csi.aws.com/agent-not-ready", "NoSchedule"),
        ];
        let patch = taint_removal(&taints, Some("4711"), "fsx.csi.aws.com/agent-not-ready").unwrap();
        let ops = patch.as_array().unwrap();
        assert_eq!(ops[0], serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": "4711"}));
        let removes: Vec<&str> =
            ops.iter().filter(|o| o["op"] == "remove").map(|o| o["path"].as_str().unwrap()).collect();
        // Last index first, so each index still points at its taint.
        assert_eq!(removes, ["/spec/taints/3", "/spec/taints/1"]);
        assert!(
            ops.contains(&serde_json::json!({"op": "test", "path": "/spec/taints/1/effect", "value": "NoExecute"}))
        );
        // Nothing else is written: no other taint, no spec, no metadata.
        assert!(ops.iter().all(|o| o["op"] == "test" || o["op"] == "remove"));
        assert!(taint_removal(&taints[..1], Some("1"), "fsx.csi.aws.com/agent-not-ready").is_none());
        // A failed test is a conflict: read again and retry.
        let failed = kube::core::Status::failure("the server rejected our request: test operation failed", "Invalid")
            .with_code(422);
        assert!(KubeError::from_kube("patch nodes/n", kube::Error::Api(Box::new(failed))).is_conflict());
    }

    #[test]
    fn node_names_are_checked_before_any_request() {
        assert!(check_node_name("ip-10-0-1-2.ec2.internal").is_ok());
        for bad in ["", "Node_1", "a/../b", "a,metadata.name=b", &"a".repeat(254)] {
            let e = check_node_name(bad).unwrap_err().to_string();
            assert!(e.contains("not a Kubernetes object name"), "{e}");
        }
    }

    #[test]
    fn api_errors_name_the_request_and_what_to_fix() {
        let status = kube::core::Status::failure("nodes \"n\" is forbidden", "Forbidden").with_code(403);
        let e = KubeError::from_kube("patch nodes/n", kube::Error::Api(Box::new(status)));
        let text = e.to_string();
        assert!(text.contains("patch nodes/n") && text.contains("403"), "{text}");
        assert!(text.contains("must allow patch on nodes"), "{text}");
        let status = kube::core::Status::failure("conflict", "Conflict").with_code(409);
        assert!(KubeError::from_kube("x", kube::Error::Api(Box::new(status))).is_conflict());
    }
}
