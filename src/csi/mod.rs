//! The CSI surface: one file per service.
//!
//! Handlers validate the request, open a span carrying `volume.id` / `volume.name` /
//! `target.path`, call into [`crate::provision`] or [`crate::mount`], and pick the gRPC code
//! for every error in one place per service: the controller's [`controller::failure`] (by
//! error and RPC family), the node's `From<NodeError> for Status`. [`observe`] logs each
//! non-OK status once.
//! Requests are never printed with `{:?}`: prost's `Debug` would print `secrets`.

pub mod context;
pub mod controller;
pub mod identity;
pub mod node;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Code, Status};
use tracing::Instrument;

use crate::proto::VolumeCapability;
use crate::proto::volume_capability::AccessType;
use crate::proto::volume_capability::access_mode::Mode;

/// How long a call may take when its client sent no `grpc-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Parses a `grpc-timeout` header value (`<digits><H|M|S|m|u|n>`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// When a handler must answer: the caller's deadline less a margin (a tenth, between 100 ms
/// and 5 s) so the answer arrives before the caller gives up.
pub fn deadline(metadata: &tonic::metadata::MetadataMap) -> Instant {
    let timeout = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let margin = (timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(5)).min(timeout / 2);
    Instant::now() + timeout.saturating_sub(margin)
}

/// A failed call: the status the client gets, and how loudly it is logged.
#[derive(Debug)]
pub struct Failure {
    status: Status,
    level: tracing::Level,
}

impl Failure {
    /// A failure logged at `level` instead of its code's default.
    pub fn at(status: Status, level: tracing::Level) -> Self {
        Self { status, level }
    }

    /// The status the client gets.
    pub fn into_status(self) -> Status {
        self.status
    }
}

/// How loudly a status is logged by default: expected, retryable outcomes (an operation in
/// progress, still creating) at info, refusals of bad input at warn, everything else at
/// error, where operators page.
fn default_level(code: Code) -> tracing::Level {
    match code {
        Code::Aborted | Code::DeadlineExceeded => tracing::Level::INFO,
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::FailedPrecondition
        | Code::ResourceExhausted => tracing::Level::WARN,
        _ => tracing::Level::ERROR,
    }
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        let level = default_level(status.code());
        Self { status, level }
    }
}

/// Runs a handler inside `span` and logs its status once if it is not OK, at the failure's
/// level. The message is bounded (`crate::text::clip`) in the log and in the status the
/// client gets: gRPC clients refuse oversized trailers, and a log line is one line.
pub fn observe<'a, T: 'a>(
    span: tracing::Span,
    fut: impl Future<Output = Result<T, Failure>> + 'a,
) -> impl Future<Output = Result<T, Status>> + 'a {
    // The handler's future, boxed here, before any wrapper exists: a future that owns another
    // and then awaits it holds room for it twice over, so with the wrappers (this one, the
    // span's, tonic's) inline it would be several times its size for every call in progress
    // (a thousand CreateVolume calls waiting on creations held 12 KiB each, not 2).
    let fut = Box::pin(fut);
    async move {
        let Failure { status, level } = match fut.await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let code = status.code();
        let message = crate::text::clip(status.message());
        if level == tracing::Level::INFO {
            tracing::info!(?code, message, "call not complete");
        } else if level == tracing::Level::WARN {
            tracing::warn!(?code, message, "call refused");
        } else if level == tracing::Level::ERROR {
            tracing::error!(?code, message, "call failed");
        } else {
            tracing::debug!(?code, message, "call not complete");
        }
        Err(Status::new(code, message))
    }
    .instrument(span)
}

/// Checks volume capabilities: mount access (any fs type of `""` or `lustre`) in any access
/// mode. Returns why a capability is unsupported.
pub fn check_capabilities(caps: &[VolumeCapability]) -> Result<(), String> {
    if caps.is_empty() {
        return Err("volume_capabilities must not be empty".into());
    }
    for cap in caps {
        match &cap.access_type {
            Some(AccessType::Mount(m)) => {
                if !(m.fs_type.is_empty() || m.fs_type == "lustre") {
                    return Err(format!(
                        "fs_type {} is not supported: FSx volumes are lustre",
                        crate::text::Shown(&m.fs_type)
                    ));
                }
            }
            Some(AccessType::Block(_)) => {
                return Err("block access is not supported: FSx for Lustre volumes are file systems".into());
            }
            None => return Err("access_type (mount) is required".into()),
        }
        let mode = cap.access_mode.as_ref().map(|m| m.mode()).unwrap_or(Mode::Unknown);
        if mode == Mode::Unknown {
            return Err("access_mode is required".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("-5S"), None);
    }
}
