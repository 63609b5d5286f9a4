//! EC2 `DescribeSubnets`, the one EC2 call the driver makes (each subnet's zone and VPC, for
//! [`crate::topology`]).
//!
//! A narrow client rather than `aws-sdk-ec2`: that crate generates every EC2 operation (the
//! largest AWS SDK crate by far), which would multiply the controller's build time and grow
//! its binary for one read-only call (see the README's "Several Availability Zones" for the
//! figures). The call is EC2's Query protocol: a form-encoded POST
//! (`Action=DescribeSubnets&Version=2016-11-15&SubnetId.N=…`), signed with SigV4
//! (`aws-sigv4`, which the FSx SDK already builds) using the same credentials chain as the FSx
//! client (IRSA, Pod Identity, instance profile), and an XML answer read with `aws-smithy-xml`.
//! The endpoint is `AWS_ENDPOINT_URL_EC2` (or `AWS_ENDPOINT_URL`) when set, as for every AWS
//! SDK, else `https://ec2.<region>.amazonaws.com`.
//!
//! Bounded: one attempt takes at most [`ATTEMPT_TIMEOUT`], throttling and 5xx are retried
//! [`ATTEMPTS`] times with a backoff; anything else is answered at once.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use crate::metrics::Outcome;
use crate::topology::{Subnet, SubnetError, SubnetLookup};

/// The EC2 API version of the Query protocol.
const API_VERSION: &str = "2016-11-15";
/// How long one HTTP attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts for throttling and server errors.
pub const ATTEMPTS: u32 = 4;
/// The largest answer read.
const MAX_BODY: usize = 4 << 20;

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// `DescribeSubnets` over EC2's Query protocol.
pub struct Ec2Subnets {
    client: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    credentials: Option<SharedCredentialsProvider>,
    region: String,
    endpoint: String,
}

/// The endpoint: `AWS_ENDPOINT_URL_EC2`, then `AWS_ENDPOINT_URL`, then EC2's regional one.
pub fn endpoint(region: &str, env: impl Fn(&str) -> Option<String>) -> String {
    env("AWS_ENDPOINT_URL_EC2")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"))
}

/// The form body of a `DescribeSubnets` of `ids`.
pub fn request_body(ids: &[String]) -> String {
    let mut body = format!("Action=DescribeSubnets&Version={API_VERSION}");
    for (i, id) in ids.iter().enumerate() {
        // Subnet ids are checked (`subnet-` and hex) before they get here: nothing to escape.
        body.push_str(&format!("&SubnetId.{}={}", i + 1, id));
    }
    body
}

impl Ec2Subnets {
    /// A client with the FSx client's configuration (`aws-config`'s credentials and region),
    /// at [`endpoint`].
    pub fn new(config: &aws_config::SdkConfig) -> Result<Self, String> {
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        Self::with_endpoint(config, endpoint(&region, |k| std::env::var(k).ok()))
    }

    /// The same, at `endpoint` (tests: the emulator).
    pub fn with_endpoint(config: &aws_config::SdkConfig, endpoint: String) -> Result<Self, String> {
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self { client, credentials: config.credentials_provider(), endpoint, region })
    }

    async fn attempt(&self, body: &str) -> Result<(u16, Vec<u8>), SubnetError> {
        let unavailable = |e: String| SubnetError::Unavailable(e);
        let mut req = http::Request::builder()
            .method("POST")
            .uri(&self.endpoint)
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| unavailable(format!("the request: {e}")))?;
        self.sign(&mut req, body).await?;
        let answer = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
            let res = self.client.request(req).await.map_err(|e| unavailable(format!("{} : {e}", self.endpoint)))?;
            let status = res.status().as_u16();
            let body = http_body_util::Limited::new(res.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| unavailable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, SubnetError>((status, body.to_vec()))
        })
        .await
        .map_err(|_| unavailable(format!("no answer from {} within {ATTEMPT_TIMEOUT:?}", self.endpoint)))??;
        Ok(answer)
    }

    async fn sign(&self, req: &mut http::Request<Full<Bytes>>, body: &str) -> Result<(), SubnetError> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let Some(provider) = &self.credentials else {
            return Err(SubnetError::AccessDenied("no AWS credentials are configured".into()));
        };
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| SubnetError::AccessDenied(format!("loading credentials: {e}")))?;
        let identity = credentials.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SubnetError::Unavailable(format!("signing: {e}")))?
            .into();
        let headers = req.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signable =
            SignableRequest::new("POST", req.uri().to_string(), headers, SignableBody::Bytes(body.as_bytes()))
                .map_err(|e| SubnetError::Unavailable(format!("signing: {e}")))?;
        let (instructions, _) =
            sign(signable, &params).map_err(|e| SubnetError::Unavailable(format!("signing: {e}")))?.into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}

#[async_trait]
impl SubnetLookup for Ec2Subnets {
    async fn describe_subnets(&self, ids: &[String]) -> Result<Vec<Subnet>, SubnetError> {
        let body = request_body(ids);
        let mut backoff = Duration::from_millis(200);
        let mut last = SubnetError::Unavailable("no attempt".into());
        for attempt in 1..=ATTEMPTS {
            let started = std::time::Instant::now();
            let answer = self.attempt(&body).await;
            let (outcome, error) = match answer {
                Ok((200, answer)) => {
                    crate::metrics::get().api_attempt(
                        "DescribeSubnets",
                        Outcome::Success,
                        started.elapsed(),
                        attempt > 1,
                    );
                    return parse_subnets(&answer);
                }
                Ok((status, answer)) => {
                    let (code, message) = parse_error(&answer);
                    let outcome = match code.as_str() {
                        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => Outcome::Throttled,
                        _ if status >= 500 => Outcome::ServerError,
                        _ => Outcome::ClientError,
                    };
                    (outcome, classify(status, &code, &message, ids))
                }
                Err(e) => (Outcome::NetworkError, Retry::Yes(e)),
            };
            crate::metrics::get().api_attempt("DescribeSubnets", outcome, started.elapsed(), attempt > 1);
            let error = match error {
                Retry::No(e) => return Err(e),
                Retry::Yes(e) => e,
            };
            tracing::debug!(attempt, error = %error, "DescribeSubnets failed");
            last = error;
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(last)
    }
}

enum Retry {
    Yes(SubnetError),
    No(SubnetError),
}

fn classify(status: u16, code: &str, message: &str, ids: &[String]) -> Retry {
    let shown = format!("{code}: {}", crate::text::Shown(message));
    if code.starts_with("InvalidSubnetID") {
        // "The subnet ID 'subnet-…' does not exist": name the one EC2 names.
        let subnet = ids.iter().find(|id| message.contains(id.as_str())).cloned().unwrap_or_else(|| ids.join(","));
        return Retry::No(SubnetError::NotFound { subnet, message: shown });
    }
    if matches!(code, "UnauthorizedOperation" | "AuthFailure" | "AccessDenied" | "OptInRequired")
        || status == 401
        || status == 403
    {
        return Retry::No(SubnetError::AccessDenied(shown));
    }
    if status >= 500 || matches!(code, "RequestLimitExceeded" | "Throttling" | "ThrottlingException") {
        return Retry::Yes(SubnetError::Unavailable(shown));
    }
    Retry::No(SubnetError::Unavailable(format!("HTTP {status} {shown}")))
}

/// The subnets of a `DescribeSubnetsResponse`.
pub fn parse_subnets(xml: &[u8]) -> Result<Vec<Subnet>, SubnetError> {
    use aws_smithy_xml::decode::{Document, try_data};
    let bad = |e: String| SubnetError::Unavailable(format!("an answer that is not DescribeSubnets XML: {e}"));
    let mut doc = Document::try_from(xml).map_err(|e| bad(e.to_string()))?;
    let mut root = doc.root_element().map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(mut tag) = root.next_tag() {
        if !tag.start_el().matches("subnetSet") {
            continue;
        }
        while let Some(mut item) = tag.next_tag() {
            if !item.start_el().matches("item") {
                continue;
            }
            let mut s = Subnet { id: String::new(), zone: String::new(), vpc_id: String::new() };
            while let Some(mut field) = item.next_tag() {
                let name = field.start_el().local().to_string();
                let slot = match name.as_str() {
                    "subnetId" => &mut s.id,
                    "availabilityZone" => &mut s.zone,
                    "vpcId" => &mut s.vpc_id,
                    _ => continue,
                };
                *slot = try_data(&mut field).map_err(|e| bad(e.to_string()))?.to_string();
            }
            if s.id.is_empty() || s.zone.is_empty() || s.vpc_id.is_empty() {
                return Err(bad(format!("a subnet without its id, zone or VPC ({})", crate::text::Shown(&s.id))));
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// The code and message of an EC2 error answer (`<Response><Errors><Error>`).
pub fn parse_error(xml: &[u8]) -> (String, String) {
    use aws_smithy_xml::decode::{Document, try_data};
    let mut code = String::new();
    let mut message = String::new();
    let Ok(mut doc) = Document::try_from(xml) else { return ("Unknown".into(), String::new()) };
    let Ok(mut root) = doc.root_element() else { return ("Unknown".into(), String::new()) };
    while let Some(mut errors) = root.next_tag() {
        if !errors.start_el().matches("Errors") {
            continue;
        }
        while let Some(mut error) = errors.next_tag() {
            while let Some(mut field) = error.next_tag() {
                if field.start_el().matches("Code") {
                    code = try_data(&mut field).map(|c| c.to_string()).unwrap_or_default();
                } else if field.start_el().matches("Message") {
                    message = try_data(&mut field).map(|c| c.to_string()).unwrap_or_default();
                }
            }
        }
    }
    if code.is_empty() {
        code = "Unknown".into();
    }
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_query_protocol() {
        let ids = vec!["subnet-0123456789abcdef0".to_string(), "subnet-0123456789abcdef1".to_string()];
        assert_eq!(
            request_body(&ids),
            "Action=DescribeSubnets&Version=2016-11-15&SubnetId.1=subnet-0123456789abcdef0&SubnetId.2=subnet-0123456789abcdef1"
        );
        let env = |k: &str| (k == "AWS_ENDPOINT_URL_EC2").then(|| "http://127.0.0.1:9".to_string());
        assert_eq!(endpoint("us-east-1", env), "http://127.0.0.1:9");
        assert_eq!(endpoint("eu-west-1", |_| None), "https://ec2.eu-west-1.amazonaws.com");
    }

    #[test]
    fn answers_are_read_whatever_else_they_hold() {
        // As EC2 answers (trimmed): nested item lists (tags, IPv6 sets) must not confuse it.
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeSubnetsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>
    <subnetSet>
        <item>
            <subnetId>subnet-0123456789abcdef0</subnetId>
            <state>available</state>
            <vpcId>vpc-0123456789abcdef0</vpcId>
            <cidrBlock>10.0.1.0/24</cidrBlock>
            <ipv6CidrBlockAssociationSet><item><ipv6CidrBlock>2001:db8::/64</ipv6CidrBlock></item></ipv6CidrBlockAssociationSet>
            <availabilityZone>us-east-1a</availabilityZone>
            <availabilityZoneId>use1-az6</availabilityZoneId>
            <tagSet><item><key>Name</key><value>a &amp; b</value></item></tagSet>
        </item>
        <item>
            <subnetId>subnet-0123456789abcdef1</subnetId>
            <vpcId>vpc-0123456789abcdef0</vpcId>
            <availabilityZone>us-east-1b</availabilityZone>
        </item>
    </subnetSet>
</DescribeSubnetsResponse>"#;
        let subnets = parse_subnets(xml).unwrap();
        assert_eq!(
            subnets,
            vec![
                Subnet {
                    id: "subnet-0123456789abcdef0".into(),
                    zone: "us-east-1a".into(),
                    vpc_id: "vpc-0123456789abcdef0".into()
                },
                Subnet {
                    id: "subnet-0123456789abcdef1".into(),
                    zone: "us-east-1b".into(),
                    vpc_id: "vpc-0123456789abcdef0".into()
                },
            ]
        );
        assert!(parse_subnets(b"<DescribeSubnetsResponse><subnetSet><item><subnetId>subnet-1</subnetId></item></subnetSet></DescribeSubnetsResponse>").is_err());
        assert!(parse_subnets(b"not xml").is_err());
    }

    #[test]
    fn errors_are_named_and_only_transient_ones_retried() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidSubnetID.NotFound</Code><Message>The subnet ID 'subnet-0123456789abcdef9' does not exist</Message></Error></Errors><RequestID>x</RequestID></Response>"#;
        let (code, message) = parse_error(xml);
        assert_eq!(code, "InvalidSubnetID.NotFound");
        let ids = vec!["subnet-0123456789abcdef0".to_string(), "subnet-0123456789abcdef9".to_string()];
        match classify(400, &code, &message, &ids) {
            Retry::No(SubnetError::NotFound { subnet, .. }) => assert_eq!(subnet, "subnet-0123456789abcdef9"),
            _ => panic!("not found"),
        }
        assert!(matches!(classify(403, "UnauthorizedOperation", "", &ids), Retry::No(SubnetError::AccessDenied(_))));
        assert!(matches!(classify(503, "RequestLimitExceeded", "", &ids), Retry::Yes(_)));
        assert!(matches!(classify(500, "InternalError", "", &ids), Retry::Yes(_)));
        assert_eq!(parse_error(b"<html>").0, "Unknown");
    }
}
