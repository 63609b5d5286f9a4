//! A minimal in-cluster Kubernetes API client: what the node plugin's pre-stop hook needs
//! (read its Node object), on the pod's service account token and the cluster CA, over
//! HTTPS with rustls. One connection per request: the hook asks a few times a minute at most.
//!
//! Everything comes from where Kubernetes puts it in a pod (`KUBERNETES_SERVICE_HOST` /
//! `_PORT`, the projected token and `ca.crt`); the token file is read for every request,
//! because projected tokens are rotated while the pod runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::text::Shown;

/// Where a pod's service account token and the cluster CA are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The longest one request may take, connection included.
const REQUEST_TIME: Duration = Duration::from_secs(10);

/// The largest response read (a Node with its image list is tens of kilobytes).
const MAX_BODY: usize = 4 << 20;

/// The largest token or CA file read.
const MAX_FILE: u64 = 1 << 20;

/// Why a request to the Kubernetes API failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The pod's environment does not say where the API is, or a file is missing.
    #[error("{0}")]
    Config(String),
    /// No answer: connection, TLS or time-out.
    #[error("the Kubernetes API at {endpoint} did not answer {what}: {reason}")]
    Unreachable { endpoint: String, what: String, reason: String },
    /// The API answered with an error status.
    #[error("the Kubernetes API refused {what} ({status}): {message}{hint}")]
    Refused { what: String, status: u16, message: String, hint: &'static str },
    /// The answer was not the expected object.
    #[error("the Kubernetes API's answer to {what} could not be read: {reason}")]
    Decode { what: String, reason: String },
}

impl KubeError {
    /// True for 404: the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KubeError::Refused { status: 404, .. })
    }
}

/// Where the API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// `host:port` (an IPv6 address in brackets).
    pub authority: String,
    /// The name the server certificate must carry.
    pub server_name: String,
    /// The bearer token's file, read for every request.
    pub token_file: PathBuf,
    /// PEM certificates trusted for the API server.
    pub ca_file: PathBuf,
}

impl KubeConfig {
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
        if host.is_empty() || host.chars().any(|c| c.is_control() || c.is_whitespace() || c == '/' || c == '@') {
            return Err(KubeError::Config(format!("KUBERNETES_SERVICE_HOST {} is not a host", Shown(&host))));
        }
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let dir = Path::new(SERVICE_ACCOUNT_DIR);
        Ok(Self {
            authority,
            server_name: host,
            token_file: token_file.unwrap_or_else(|| dir.join("token")),
            ca_file: ca_file.unwrap_or_else(|| dir.join("ca.crt")),
        })
    }
}

/// The parts of a Node the pre-stop hook reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Node {
    #[serde(default)]
    pub spec: NodeSpec,
}

/// `Node.spec`: whether the node is cordoned, and its taints.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeSpec {
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
}

/// One taint of a Node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Taint {
    pub key: String,
    pub effect: String,
}

/// The `Status` object the API answers errors with.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ApiStatus {
    message: String,
}

/// A client for the API server of the cluster this pod runs in.
#[derive(Clone)]
pub struct KubeClient {
    config: KubeConfig,
    tls: TlsConnector,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient").field("authority", &self.config.authority).finish_non_exhaustive()
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

impl KubeClient {
    /// Reads the CA file and sets up TLS with it as the only trust anchor.
    pub fn new(config: KubeConfig) -> Result<Self, KubeError> {
        let pem = read_small(&config.ca_file, "cluster CA file")?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                KubeError::Config(format!("the cluster CA file {} is not PEM: {e}", config.ca_file.display()))
            })?;
            roots.add(cert).map_err(|e| {
                KubeError::Config(format!(
                    "the cluster CA file {} holds a bad certificate: {e}",
                    config.ca_file.display()
                ))
            })?;
        }
        if roots.is_empty() {
            return Err(KubeError::Config(format!(
                "the cluster CA file {} holds no certificate",
                config.ca_file.display()
            )));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| KubeError::Config(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { config, tls: TlsConnector::from(Arc::new(tls)) })
    }

    /// `GET /api/v1/nodes/{name}`.
    pub async fn node(&self, name: &str) -> Result<Node, KubeError> {
        let what = format!("get nodes/{}", Shown(name));
        if name.is_empty()
            || name.len() > 253
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(KubeError::Config(format!(
                "node name {} is not a Kubernetes object name (lowercase letters, digits, '-' and '.')",
                Shown(name)
            )));
        }
        let body = self.get(&format!("/api/v1/nodes/{name}"), &what).await?;
        serde_json::from_slice(&body).map_err(|e| KubeError::Decode { what, reason: e.to_string() })
    }

    /// One GET, bounded by [`REQUEST_TIME`], answering the body of a 200.
    async fn get(&self, path: &str, what: &str) -> Result<Bytes, KubeError> {
        let token = read_small(&self.config.token_file, "service account token")?;
        let token = String::from_utf8(token)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                KubeError::Config(format!(
                    "the service account token {} is empty or not a token",
                    self.config.token_file.display()
                ))
            })?;
        let unreachable = |reason: String| KubeError::Unreachable {
            endpoint: self.config.authority.clone(),
            what: what.to_string(),
            reason,
        };
        let exchange = async {
            let tcp = TcpStream::connect(&self.config.authority).await.map_err(|e| unreachable(e.to_string()))?;
            let name = ServerName::try_from(self.config.server_name.clone())
                .map_err(|e| KubeError::Config(format!("API server name {}: {e}", Shown(&self.config.server_name))))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| unreachable(format!("TLS: {e}")))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let driver = tokio::spawn(connection);
            let request = http::Request::get(path)
                .header(http::header::HOST, &self.config.authority)
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::USER_AGENT, concat!("fsx-csi-driver/", env!("CARGO_PKG_VERSION")))
                .body(Empty::<Bytes>::new())
                .map_err(|e| KubeError::Config(format!("request {path}: {e}")))?;
            let response = sender.send_request(request).await.map_err(|e| unreachable(e.to_string()));
            let result = match response {
                Ok(response) => {
                    let status = response.status();
                    let body = Limited::new(response.into_body(), MAX_BODY)
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .map_err(|e| KubeError::Decode { what: what.to_string(), reason: e.to_string() });
                    body.map(|b| (status, b))
                }
                Err(e) => Err(e),
            };
            driver.abort();
            result
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIME, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {}", humantime::format_duration(REQUEST_TIME))))??;
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<ApiStatus>(&body)
            .ok()
            .map(|s| s.message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let hint = match status.as_u16() {
            401 => " (the service account token was not accepted)",
            403 => " (the node plugin's ClusterRole must allow get on nodes)",
            _ => "",
        };
        Err(KubeError::Refused {
            what: what.to_string(),
            status: status.as_u16(),
            message: Shown(&message).to_string(),
            hint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_parses_with_only_what_is_read() {
        let node: Node = serde_json::from_str(
            r#"{"kind":"Node","metadata":{"name":"n"},"spec":{"unschedulable":true,
                "taints":[{"key":"node.kubernetes.io/unschedulable","effect":"NoSchedule","timeAdded":"x"}]},
                "status":{"images":[]}}"#,
        )
        .unwrap();
        assert!(node.spec.unschedulable);
        assert_eq!(node.spec.taints[0].key, "node.kubernetes.io/unschedulable");
        let bare: Node = serde_json::from_str(r#"{"kind":"Node","spec":{}}"#).unwrap();
        assert!(!bare.spec.unschedulable && bare.spec.taints.is_empty());
    }

    #[test]
    fn a_missing_or_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = |ca: &str| KubeConfig {
            authority: "127.0.0.1:1".into(),
            server_name: "127.0.0.1".into(),
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
    async fn a_bad_node_name_or_token_is_refused_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        // A self-signed certificate generated for this test would need a dependency; the
        // refusals below happen before TLS is set up, so any parsable CA will do.
        let client = KubeClient {
            config: KubeConfig {
                authority: "127.0.0.1:1".into(),
                server_name: "127.0.0.1".into(),
                token_file: dir.path().join("token"),
                ca_file: dir.path().join("ca.crt"),
            },
            tls: TlsConnector::from(Arc::new(
                ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth(),
            )),
        };
        let e = client.node("Node_1/../x").await.unwrap_err().to_string();
        assert!(e.contains("not a Kubernetes object name"), "{e}");
        let e = client.node("node-1").await.unwrap_err().to_string();
        assert!(e.contains("service account token") && e.contains("token"), "{e}");
        std::fs::write(dir.path().join("token"), "\n").unwrap();
        let e = client.node("node-1").await.unwrap_err().to_string();
        assert!(e.contains("empty or not a token"), "{e}");
        std::fs::write(dir.path().join("token"), "abc").unwrap();
        let e = client.node("node-1").await.unwrap_err();
        assert!(matches!(e, KubeError::Unreachable { .. }), "{e}");
    }
}
