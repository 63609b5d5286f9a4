//! The EC2 instance metadata service (IMDSv2): where the node plugin learns its node id when
//! none is configured. A trait, so the node service takes it as a dependency like the others.

use std::time::Duration;

use async_trait::async_trait;

/// What the node plugin asks of the instance it runs on.
#[async_trait]
pub trait InstanceMetadata: Send + Sync + 'static {
    /// The EC2 instance id. Read-only; bounded in time.
    async fn instance_id(&self) -> Result<String, String>;
    /// The instance's Availability Zone (`placement/availability-zone`). Read-only; bounded.
    async fn availability_zone(&self) -> Result<String, String> {
        Err("no instance metadata service here".into())
    }
}

/// The real IMDSv2 client, with short time-outs (off EC2 it fails fast and says why).
#[derive(Debug, Default, Clone, Copy)]
pub struct Imds;

#[async_trait]
impl InstanceMetadata for Imds {
    async fn availability_zone(&self) -> Result<String, String> {
        Self::get("/latest/meta-data/placement/availability-zone").await
    }

    async fn instance_id(&self) -> Result<String, String> {
        Self::get("/latest/meta-data/instance-id").await
    }
}

impl Imds {
    async fn get(path: &str) -> Result<String, String> {
        let client = aws_config::imds::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(2))
            .build();
        match tokio::time::timeout(Duration::from_secs(10), client.get(path)).await {
            Ok(Ok(id)) => Ok(String::from(id)),
            Ok(Err(e)) => Err(format!("IMDSv2: {}", aws_sdk_fsx::error::DisplayErrorContext(&e))),
            Err(_) => Err("IMDSv2 did not answer in time".into()),
        }
    }
}

/// No instance metadata: for processes that are given their node id (tests, tools).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unavailable;

#[async_trait]
impl InstanceMetadata for Unavailable {
    async fn instance_id(&self) -> Result<String, String> {
        Err("no instance metadata service here".into())
    }
}
