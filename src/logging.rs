//! Logging setup: `--log-format text|json`, level from `RUST_LOG` (default `info`).
//!
//! The AWS SDK's own crates are held at `warn` unless `RUST_LOG` names them, so request
//! bodies are not logged by default. Whatever the level, every line goes through [`redact`]
//! before it is written: at `debug` and `trace` the SDK logs the resolved identity, access key
//! id included, and no credential material may reach a log at any level.

use std::borrow::Cow;
use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with span fields.
    Json,
}

/// The default filter: `info` for the driver, `warn` for the libraries beneath it.
pub const DEFAULT_FILTER: &str = "info,aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_sdk_fsx=warn,h2=warn,hyper=warn,tower=warn,tonic=warn";

/// Installs the global subscriber, writing to stderr through [`redact`]. Safe to call more
/// than once (later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Redacting).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
}

/// Makes [`RedactingWriter`]s: stderr, with credentials masked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Redacting;

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter
    }
}

/// Writes to stderr with [`redact`] applied. The formatter writes each event in one call, so
/// a value never straddles two writes.
#[derive(Debug)]
pub struct RedactingWriter;

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().lock().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

/// Prefixes of AWS access key ids (user, temporary, role, ...).
const KEY_ID_PREFIXES: &[&str] =
    &["AKIA", "ASIA", "AIDA", "AROA", "AGPA", "ANPA", "ANVA", "APKA", "ABIA", "ACCA", "AIPA"];

/// Names after which a credential's value follows (matched without regard to case).
const SECRET_FIELDS: &[&str] = &[
    "access_key_id",
    "accesskeyid",
    "secret_access_key",
    "secretaccesskey",
    "session_token",
    "sessiontoken",
    "security_token",
    "security-token",
    "credential=",
    "signature=",
    "authorization",
];

const MASK: &str = "** redacted **";

/// `text` with credential material masked: AWS access key ids wherever they appear, and the
/// value after any field named like a credential (`access_key_id: "..."`,
/// `x-amz-security-token`, `Credential=`, `Signature=`, `authorization`).
pub fn redact(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    // (start, end) ranges to mask, in bytes.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for field in SECRET_FIELDS {
        let mut from = 0;
        while let Some(i) = lower[from..].find(field) {
            let mut at = from + i + field.len();
            // A longer name (`session_token_mode`) is not this field.
            if !field.ends_with('=') && bytes.get(at).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                from = at;
                continue;
            }
            while at < bytes.len() && matches!(bytes[at], b' ' | b':' | b'=' | b'"' | b'\'' | b'\\') {
                at += 1;
            }
            let start = at;
            while at < bytes.len() && is_secret_byte(bytes[at]) {
                at += 1;
            }
            if at > start && !text[start..].starts_with('*') {
                spans.push((start, at));
            }
            from = at.max(from + i + field.len());
        }
    }
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let boundary = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        if boundary && KEY_ID_PREFIXES.iter().any(|p| bytes[at..].starts_with(p.as_bytes())) {
            let mut end = at + 4;
            while end < bytes.len() && (bytes[end].is_ascii_uppercase() || bytes[end].is_ascii_digit()) {
                end += 1;
            }
            if end - at >= 16 {
                spans.push((at, end));
                at = end;
                continue;
            }
        }
        at += 1;
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in spans {
        if start < last {
            continue;
        }
        out.push_str(&text[last..start]);
        out.push_str(MASK);
        last = end;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

fn is_secret_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b'=' | b'_' | b'-' | b'.' | b'%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked() {
        let line = r#"resolved identity identity=Identity { data: Credentials { provider_name: "Environment", access_key_id: "AKIDEXAMPLE", secret_access_key: "** redacted **", expires_after: None } }"#;
        let out = redact(line);
        assert!(!out.contains("AKIDEXAMPLE"), "{out}");
        assert!(out.contains("provider_name: \"Environment\""));
        let json = r#"{"message":"access_key_id: \"ASIAIOSFODNN7EXAMPLE\"","x":"AKIAIOSFODNN7EXAMPLE in text"}"#;
        let out = redact(json);
        assert!(!out.contains("IOSFODNN7EXAMPLE"), "{out}");
        let header = "authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/us-east-1/fsx/aws4_request, SignedHeaders=host, Signature=abcdef0123456789 x-amz-security-token: FwoGZXIvYXdzEJr//////////";
        let out = redact(header);
        for secret in ["AKIDEXAMPLE", "abcdef0123456789", "FwoGZXIvYXdzEJr"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("SignedHeaders=host"));
        assert_eq!(redact("session_token_mode: Include"), "session_token_mode: Include");
    }

    #[test]
    fn ordinary_lines_pass_unchanged() {
        for line in ["CreateVolume volume.name=pvc-1 capacity_gib=1200", "AKIA is only four letters", "ÉTÉ é"] {
            assert!(matches!(redact(line), Cow::Borrowed(_)), "{line}");
        }
    }
}
