//! [`Fsx`] on the real `aws-sdk-fsx` client.
//!
//! Credentials and region come from `aws-config`'s default chain (IRSA, EKS Pod Identity,
//! instance profile, environment; region from `--region`, `AWS_REGION` or IMDSv2), and the
//! endpoint honours `AWS_ENDPOINT_URL_FSX`, which is how tests point it at the emulator.
//! Retries use the SDK's adaptive mode, so throttling slows us down instead of failing calls.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_fsx::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_fsx::types as t;

use super::{
    Association, AssociationLifecycle, AssociationSpec, Backup, BackupLifecycle, BackupSpec, Cause, CreateSpec,
    FileSystem, Fsx, FsxError, Lifecycle, LustreSettings, Update, UpdateStatus,
};

/// Counts every HTTP attempt to FSx by operation and outcome, with its duration, and the
/// retries ([`crate::metrics`]). The operation comes from the request's `X-Amz-Target`; an
/// attempt that never reached the wire (credentials could not load) is not counted.
#[derive(Debug, Clone, Copy)]
struct ApiMetrics;

/// Per SDK call: how many attempts were sent, and when the current one was.
#[derive(Debug, Clone)]
struct AttemptState {
    sent: u32,
    /// The operation (read before transmit: the request is gone after it).
    operation: String,
    started: Option<tokio::time::Instant>,
}

impl aws_smithy_types::config_bag::Storable for AttemptState {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl aws_sdk_fsx::config::Intercept for ApiMetrics {
    fn name(&self) -> &'static str {
        "FsxCsiApiMetrics"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_fsx::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk_fsx::config::RuntimeComponents,
        cfg: &mut aws_sdk_fsx::config::ConfigBag,
    ) -> Result<(), BoxError> {
        let sent = cfg.load::<AttemptState>().map(|s| s.sent).unwrap_or(0);
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("")
            .to_string();
        cfg.interceptor_state().store_put(AttemptState {
            sent: sent + 1,
            operation,
            started: Some(tokio::time::Instant::now()),
        });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &aws_sdk_fsx::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _rc: &aws_sdk_fsx::config::RuntimeComponents,
        cfg: &mut aws_sdk_fsx::config::ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(state) = cfg.load::<AttemptState>().cloned() else { return Ok(()) };
        let Some(started) = state.started else { return Ok(()) };
        let (operation, sent) = (state.operation.clone(), state.sent);
        cfg.interceptor_state().store_put(AttemptState { started: None, ..state });
        let status = context.response().map(|r| r.status().as_u16());
        let code = context.response().and_then(|r| {
            r.headers().get("x-amzn-errortype").map(str::to_string).or_else(|| {
                let body = r.body().bytes()?;
                let v: serde_json::Value = serde_json::from_slice(body).ok()?;
                v.get("__type").and_then(|t| t.as_str()).map(str::to_string)
            })
        });
        let outcome = crate::metrics::Outcome::classify(status, code.as_deref());
        crate::metrics::get().api_attempt(&operation, outcome, started.elapsed(), sent > 1);
        Ok(())
    }
}

/// How many attempts the SDK makes per call before an error reaches the driver.
const MAX_ATTEMPTS: u32 = 10;

/// The FSx client used in production.
#[derive(Clone, Debug)]
pub struct AwsFsx {
    client: aws_sdk_fsx::Client,
    /// The credentials in use, described for permission errors.
    identity: String,
    /// At most [`MAX_CONCURRENT_CALLS`] FSx calls at a time. A thousand claims made at once
    /// would otherwise be a thousand simultaneous requests (and connections, each with its
    /// buffers) that FSx would throttle anyway. `csi-bench controller --volumes 1000`
    /// (`hack/bench.sh`) measures the peak RSS and the time to bind with it.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// How many FSx calls (each with the SDK's retries) run at once; the rest wait their turn,
/// within their callers' deadlines.
pub const MAX_CONCURRENT_CALLS: usize = 16;

/// The AWS configuration from the environment (credentials chain, region, endpoints), with
/// `region` if given.
pub async fn load_config(region: Option<String>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    loader.load().await
}

impl AwsFsx {
    /// Loads the shared AWS configuration (default credential and region chains) and builds
    /// the client with adaptive retries and bounded time-outs.
    pub async fn from_env(region: Option<String>) -> Self {
        Self::from_shared(&load_config(region).await)
    }

    /// The client of an SDK configuration ([`load_config`]), shared with the EC2 client.
    pub fn from_shared(shared: &aws_config::SdkConfig) -> Self {
        Self::from_conf(aws_sdk_fsx::config::Builder::from(shared))
    }

    /// Builds the client from an SDK config builder, adding the driver's retry and time-out
    /// policy. Tests use this to point a client at the emulator with static credentials.
    pub fn from_conf(conf: aws_sdk_fsx::config::Builder) -> Self {
        let conf = conf
            .retry_config(
                aws_sdk_fsx::config::retry::RetryConfig::adaptive()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                aws_sdk_fsx::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(90))
                    .build(),
            )
            .interceptor(ApiMetrics)
            .build();
        Self {
            client: aws_sdk_fsx::Client::from_conf(conf),
            identity: identity_in_use(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CALLS)),
        }
    }

    /// The region the client was configured with, if any.
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(|r| r.to_string())
    }
}

/// Which credentials the client uses, in words an operator can act on, read from the
/// environment the default credential chain reads (never the secret itself).
fn identity_in_use() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(role) = var("AWS_ROLE_ARN") {
        format!("role {role} (IRSA)")
    } else if var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some() {
        "the EKS Pod Identity role of the controller's service account".into()
    } else if var("AWS_ACCESS_KEY_ID").is_some() {
        "the static credentials in AWS_ACCESS_KEY_ID".into()
    } else if let Some(profile) = var("AWS_PROFILE") {
        format!("profile {profile}")
    } else {
        "the node's instance profile".into()
    }
}

impl AwsFsx {
    /// Runs one FSx call: waits for a permit ([`MAX_CONCURRENT_CALLS`]), then builds the
    /// request with `send` and awaits it, its error turned into the driver's few kinds as
    /// `operation`'s ([`classify`]).
    ///
    /// The SDK's future is tens of KiB. Inline, it would size every method's future, which
    /// exists from the moment the method is called, that is while it waits for a permit; built
    /// and boxed only once the call may go, a thousand waiting calls cost a thousand small
    /// futures, not a thousand large ones.
    async fn call<T, E, R, F>(&self, operation: &'static str, send: impl FnOnce() -> F) -> Result<T, FsxError>
    where
        F: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let _permit = self.permits.acquire().await.ok();
        Box::pin(send()).await.map_err(|err| classify(&self.identity, operation, err))
    }
}

/// Turns any SDK error of `operation` into the driver's few kinds, naming `identity` when
/// access is denied. This and [`classify_code`] are the only places AWS errors are matched.
fn classify<E, R>(identity: &str, operation: &'static str, err: SdkError<E, R>) -> FsxError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = e.message().unwrap_or("").to_string();
            match classify_code(code, message) {
                FsxError::AccessDenied { message, .. } => {
                    FsxError::AccessDenied { operation: operation.to_string(), identity: identity.to_string(), message }
                }
                other => other,
            }
        }
        SdkError::TimeoutError(_) => FsxError::unavailable("request timed out"),
        SdkError::DispatchFailure(_) => {
            FsxError::Unavailable { message: "could not reach FSx".into(), cause: Some(Cause::new(err)) }
        }
        SdkError::ResponseError(_) => {
            FsxError::Unavailable { message: "unreadable response from FSx".into(), cause: Some(Cause::new(err)) }
        }
        SdkError::ConstructionFailure(_) => FsxError::Other {
            code: "ConstructionFailure".into(),
            message: "the request could not be built".into(),
            cause: Some(Cause::new(err)),
        },
        _ => FsxError::Other { code: "Unknown".into(), message: "the SDK failed".into(), cause: Some(Cause::new(err)) },
    }
}

/// Maps an FSx error code and message to a [`FsxError`].
pub fn classify_code(code: String, message: String) -> FsxError {
    match code.as_str() {
        "FileSystemNotFound" | "ResourceNotFound" | "DataRepositoryAssociationNotFound" | "BackupNotFound" => {
            FsxError::NotFound(message)
        }
        "BadRequest"
        | "InvalidNetworkSettings"
        | "InvalidImportPath"
        | "InvalidExportPath"
        | "InvalidPerUnitStorageThroughput"
        | "InvalidDataRepositoryType"
        | "UnsupportedOperation"
        | "MissingFileSystemConfiguration"
        | "ValidationException" => FsxError::Invalid { code, message },
        "IncompatibleParameterError" => FsxError::Incompatible(message),
        "AccessDeniedException"
        | "AccessDenied"
        | "UnauthorizedOperation"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "InvalidSignatureException" => FsxError::AccessDenied {
            operation: String::new(),
            identity: String::new(),
            message: format!("{code}: {message}"),
        },
        "ServiceLimitExceeded" => FsxError::LimitExceeded(message),
        "InternalServerError"
        | "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "ServiceUnavailable"
        | "RequestTimeout" => FsxError::unavailable(format!("{code}: {message}")),
        "BackupInProgress" | "BackupRestoring" | "BackupBeingCopied" => {
            FsxError::BackupBusy(format!("{code}: {message}"))
        }
        _ => FsxError::Other { code, message, cause: None },
    }
}

fn parse<T: std::str::FromStr>(s: Option<&str>) -> Option<T> {
    s.and_then(|s| s.parse().ok())
}

/// Reads the parts of an SDK `FileSystem` the driver uses.
fn from_sdk(fs: &t::FileSystem) -> FileSystem {
    let lustre = fs.lustre_configuration();
    FileSystem {
        id: fs.file_system_id().unwrap_or_default().to_string(),
        lifecycle: fs.lifecycle().map(|l| Lifecycle::from_wire(l.as_str())).unwrap_or(Lifecycle::Other(String::new())),
        failure_message: fs.failure_details().and_then(|d| d.message()).map(str::to_string),
        capacity_gib: fs.storage_capacity().unwrap_or(0) as i64,
        storage_type: parse(fs.storage_type().map(|s| s.as_str())),
        subnet_ids: fs.subnet_ids().to_vec(),
        dns_name: fs.dns_name().unwrap_or_default().to_string(),
        mount_name: lustre.and_then(|l| l.mount_name()).unwrap_or_default().to_string(),
        kms_key_id: fs.kms_key_id().map(str::to_string),
        lustre: LustreSettings::from_sdk(fs),
        tags: tags_from_sdk(fs.tags()),
        created_at: fs.creation_time().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
        updates: fs
            .administrative_actions()
            .iter()
            .filter(|a| a.administrative_action_type() == Some(&t::AdministrativeActionType::FileSystemUpdate))
            .map(|a| Update {
                status: UpdateStatus::from_wire(a.status().map(|s| s.as_str()).unwrap_or_default()),
                target_capacity_gib: a.target_file_system_values().and_then(|v| v.storage_capacity()).map(i64::from),
                target: a.target_file_system_values().map(LustreSettings::from_sdk).unwrap_or_default(),
                failure_message: a.failure_details().and_then(|d| d.message()).map(str::to_string),
                progress_percent: a.progress_percent(),
            })
            .collect(),
    }
}

fn tags_from_sdk(tags: &[t::Tag]) -> Vec<(String, String)> {
    tags.iter().filter_map(|tag| Some((tag.key()?.to_string(), tag.value()?.to_string()))).collect()
}

fn backup_from_sdk(b: &t::Backup) -> Backup {
    Backup {
        id: b.backup_id().unwrap_or_default().to_string(),
        lifecycle: BackupLifecycle::from_wire(b.lifecycle().map(|l| l.as_str()).unwrap_or_default()),
        failure_message: b.failure_details().and_then(|d| d.message()).map(str::to_string),
        file_system: b.file_system().map(from_sdk).unwrap_or_default(),
        created_at: b.creation_time().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
        tags: tags_from_sdk(b.tags()),
        progress_percent: b.progress_percent(),
    }
}

fn sdk_tags(tags: &[(String, String)]) -> Vec<t::Tag> {
    tags.iter().map(|(k, v)| t::Tag::builder().key(k).value(v).build()).collect()
}

fn association_from_sdk(a: &t::DataRepositoryAssociation) -> Association {
    Association {
        id: a.association_id().unwrap_or_default().to_string(),
        file_system_id: a.file_system_id().unwrap_or_default().to_string(),
        lifecycle: AssociationLifecycle::from_wire(a.lifecycle().map(|l| l.as_str()).unwrap_or_default()),
        file_system_path: a.file_system_path().unwrap_or_default().to_string(),
        data_repository_path: a.data_repository_path().unwrap_or_default().to_string(),
        failure_message: a.failure_details().and_then(|d| d.message()).map(str::to_string),
    }
}

fn events(events: &[super::EventType]) -> Vec<t::EventType> {
    events.iter().map(|e| t::EventType::from(e.as_str())).collect()
}

#[async_trait]
impl Fsx for AwsFsx {
    async fn create_file_system(&self, spec: &CreateSpec) -> Result<FileSystem, FsxError> {
        // Intelligent-Tiering is elastic: FSx refuses a StorageCapacity for it.
        let elastic = spec.storage_type.is_some_and(|s| s.is_elastic());
        let out = self
            .call("CreateFileSystem", || {
                self.client
                    .create_file_system()
                    .client_request_token(&spec.client_request_token)
                    .file_system_type(t::FileSystemType::Lustre)
                    .set_storage_capacity((!elastic).then_some(spec.capacity_gib))
                    .set_storage_type(spec.storage_type.map(|s| s.as_str().into()))
                    .subnet_ids(&spec.subnet_id)
                    .set_security_group_ids(Some(spec.security_group_ids.clone()))
                    .set_tags(Some(sdk_tags(&spec.tags)))
                    .set_kms_key_id(spec.kms_key_id.clone())
                    .set_file_system_type_version(spec.lustre.file_system_type_version.clone())
                    .lustre_configuration(spec.lustre.create_configuration())
                    .send()
            })
            .await?;
        out.file_system()
            .map(from_sdk)
            .ok_or_else(|| FsxError::other("EmptyResponse", "CreateFileSystem returned no file system"))
    }

    async fn describe_file_systems(&self, ids: &[String]) -> Result<Vec<FileSystem>, FsxError> {
        let out = self
            .call("DescribeFileSystems", || {
                self.client.describe_file_systems().set_file_system_ids(Some(ids.to_vec())).send()
            })
            .await?;
        Ok(out.file_systems().iter().map(from_sdk).collect())
    }

    async fn list_file_systems(&self) -> Result<Vec<FileSystem>, FsxError> {
        let pages: Vec<_> = self
            .call("DescribeFileSystems", || {
                self.client.describe_file_systems().into_paginator().send().collect::<Result<_, _>>()
            })
            .await?;
        Ok(pages
            .iter()
            .flat_map(|page| page.file_systems())
            .filter(|fs| fs.file_system_type() == Some(&t::FileSystemType::Lustre))
            .map(from_sdk)
            .collect())
    }

    async fn delete_file_system(
        &self,
        id: &str,
        final_backup: Option<&[(String, String)]>,
    ) -> Result<Lifecycle, FsxError> {
        let lustre = match final_backup {
            None => t::DeleteFileSystemLustreConfiguration::builder().skip_final_backup(true),
            Some(tags) => t::DeleteFileSystemLustreConfiguration::builder()
                .skip_final_backup(false)
                .set_final_backup_tags((!tags.is_empty()).then(|| sdk_tags(tags))),
        };
        let out = self
            .call("DeleteFileSystem", || {
                self.client.delete_file_system().file_system_id(id).lustre_configuration(lustre.build()).send()
            })
            .await?;
        Ok(out.lifecycle().map(|l| Lifecycle::from_wire(l.as_str())).unwrap_or(Lifecycle::Deleting))
    }

    async fn update_storage_capacity(&self, id: &str, capacity_gib: i32) -> Result<FileSystem, FsxError> {
        let out = self
            .call("UpdateFileSystem", || {
                self.client.update_file_system().file_system_id(id).storage_capacity(capacity_gib).send()
            })
            .await?;
        out.file_system()
            .map(from_sdk)
            .ok_or_else(|| FsxError::other("EmptyResponse", "UpdateFileSystem returned no file system"))
    }

    async fn create_data_repository_association(&self, spec: &AssociationSpec) -> Result<Association, FsxError> {
        let mut s3 = t::S3DataRepositoryConfiguration::builder();
        if !spec.auto_import_events.is_empty() {
            s3 = s3.auto_import_policy(
                t::AutoImportPolicy::builder().set_events(Some(events(&spec.auto_import_events))).build(),
            );
        }
        if !spec.auto_export_events.is_empty() {
            s3 = s3.auto_export_policy(
                t::AutoExportPolicy::builder().set_events(Some(events(&spec.auto_export_events))).build(),
            );
        }
        let out = self
            .call("CreateDataRepositoryAssociation", || {
                self.client
                    .create_data_repository_association()
                    .client_request_token(&spec.client_request_token)
                    .file_system_id(&spec.file_system_id)
                    .file_system_path(&spec.file_system_path)
                    .data_repository_path(&spec.data_repository_path)
                    .batch_import_meta_data_on_create(spec.batch_import_metadata_on_create)
                    .set_imported_file_chunk_size(spec.imported_file_chunk_size)
                    .s3(s3.build())
                    .set_tags(Some(sdk_tags(&spec.tags)))
                    .send()
            })
            .await?;
        out.association()
            .map(association_from_sdk)
            .ok_or_else(|| FsxError::other("EmptyResponse", "CreateDataRepositoryAssociation returned no association"))
    }

    async fn describe_data_repository_associations(&self, ids: &[String]) -> Result<Vec<Association>, FsxError> {
        let out = self
            .call("DescribeDataRepositoryAssociations", || {
                self.client.describe_data_repository_associations().set_association_ids(Some(ids.to_vec())).send()
            })
            .await?;
        Ok(out.associations().iter().map(association_from_sdk).collect())
    }

    async fn associations_of(&self, file_system_id: &str) -> Result<Vec<Association>, FsxError> {
        let filter = t::Filter::builder().name(t::FilterName::FileSystemId).values(file_system_id).build();
        let pages: Vec<_> = self
            .call("DescribeDataRepositoryAssociations", || {
                self.client
                    .describe_data_repository_associations()
                    .filters(filter)
                    .into_paginator()
                    .send()
                    .collect::<Result<_, _>>()
            })
            .await?;
        Ok(pages.iter().flat_map(|page| page.associations()).map(association_from_sdk).collect())
    }

    async fn create_backup(&self, spec: &BackupSpec) -> Result<Backup, FsxError> {
        let out = self
            .call("CreateBackup", || {
                self.client
                    .create_backup()
                    .client_request_token(&spec.client_request_token)
                    .file_system_id(&spec.file_system_id)
                    .set_tags(Some(sdk_tags(&spec.tags)))
                    .send()
            })
            .await?;
        out.backup()
            .map(backup_from_sdk)
            .ok_or_else(|| FsxError::other("EmptyResponse", "CreateBackup returned no backup"))
    }

    async fn describe_backups(&self, ids: &[String]) -> Result<Vec<Backup>, FsxError> {
        self.backups_page(Some(ids.to_vec())).await
    }

    async fn list_backups(&self) -> Result<Vec<Backup>, FsxError> {
        self.backups_page(None).await
    }

    async fn delete_backup(&self, id: &str) -> Result<BackupLifecycle, FsxError> {
        let out = self.call("DeleteBackup", || self.client.delete_backup().backup_id(id).send()).await?;
        Ok(out.lifecycle().map(|l| BackupLifecycle::from_wire(l.as_str())).unwrap_or(BackupLifecycle::Deleted))
    }

    async fn create_file_system_from_backup(&self, backup_id: &str, spec: &CreateSpec) -> Result<FileSystem, FsxError> {
        let out = self
            .call("CreateFileSystemFromBackup", || {
                self.client
                    .create_file_system_from_backup()
                    .backup_id(backup_id)
                    .client_request_token(&spec.client_request_token)
                    .subnet_ids(&spec.subnet_id)
                    .set_security_group_ids(Some(spec.security_group_ids.clone()))
                    .set_tags(Some(sdk_tags(&spec.tags)))
                    .set_kms_key_id(spec.kms_key_id.clone())
                    .set_file_system_type_version(spec.lustre.file_system_type_version.clone())
                    .lustre_configuration(spec.lustre.create_configuration())
                    .send()
            })
            .await?;
        out.file_system()
            .map(from_sdk)
            .ok_or_else(|| FsxError::other("EmptyResponse", "CreateFileSystemFromBackup returned no file system"))
    }

    async fn update_lustre(&self, id: &str, u: &LustreSettings) -> Result<FileSystem, FsxError> {
        // The update request has no field for it: refused rather than silently dropped.
        if let Some(field) = u.immutable_field() {
            return Err(FsxError::Invalid {
                code: "ImmutableSetting".into(),
                message: format!("UpdateFileSystem cannot change {field}"),
            });
        }
        // The version is a top-level field; the rest is LustreConfiguration (sent only when
        // something in it changes).
        let rest = LustreSettings { file_system_type_version: None, ..u.clone() };
        let out = self
            .call("UpdateFileSystem", || {
                self.client
                    .update_file_system()
                    .file_system_id(id)
                    .set_file_system_type_version(u.file_system_type_version.clone())
                    .set_lustre_configuration((!rest.is_empty()).then(|| rest.update_configuration()))
                    .send()
            })
            .await?;
        out.file_system()
            .map(from_sdk)
            .ok_or_else(|| FsxError::other("EmptyResponse", "UpdateFileSystem returned no file system"))
    }
}

impl AwsFsx {
    async fn backups_page(&self, ids: Option<Vec<String>>) -> Result<Vec<Backup>, FsxError> {
        let mut request = self.client.describe_backups().set_backup_ids(ids.clone());
        if ids.is_none() {
            request = request
                .filters(t::Filter::builder().name(t::FilterName::FileSystemType).values("LUSTRE").build())
                .filters(t::Filter::builder().name(t::FilterName::BackupType).values("USER_INITIATED").build());
        }
        let pages: Vec<_> =
            self.call("DescribeBackups", || request.into_paginator().send().collect::<Result<_, _>>()).await?;
        Ok(pages.iter().flat_map(|page| page.backups()).map(backup_from_sdk).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_become_the_few_kinds_the_driver_acts_on() {
        let kind = |code: &str| classify_code(code.to_string(), "m".to_string());
        assert!(matches!(kind("FileSystemNotFound"), FsxError::NotFound(_)));
        assert!(matches!(kind("DataRepositoryAssociationNotFound"), FsxError::NotFound(_)));
        assert!(matches!(kind("BadRequest"), FsxError::Invalid { .. }));
        assert!(matches!(kind("InvalidNetworkSettings"), FsxError::Invalid { .. }));
        assert!(matches!(kind("IncompatibleParameterError"), FsxError::Incompatible(_)));
        assert!(matches!(kind("ServiceLimitExceeded"), FsxError::LimitExceeded(_)));
        for retryable in ["ThrottlingException", "InternalServerError", "ServiceUnavailable", "RequestTimeout"] {
            assert!(matches!(kind(retryable), FsxError::Unavailable { .. }), "{retryable}");
        }
        assert!(matches!(kind("SomethingNew"), FsxError::Other { .. }));
    }
}
