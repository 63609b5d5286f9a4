//! Logging setup: `--log-format text|json`, level from `RUST_LOG` (default `info`).
//!
//! The AWS SDK's own crates are held at `warn` unless `RUST_LOG` names them, so request
//! bodies are not logged by default. Whatever the level, every line goes through [`redact`]
//! before it is written: at `debug` and `trace` the SDK logs the resolved identity, access key
//! id included, and no credential material may reach a log at any level.
//!
//! Values from outside reach log events in many places (request fields, FSx's messages,
//! errors that quote them). Call sites escape and cut what they know to be outside text
//! (`crate::text::Field`); beneath them, the log itself holds every line to what a log
//! reader can trust, whatever a call site forgot: every field value of every event and span
//! has its control characters escaped and is cut at [`MAX_FIELD_BYTES`] (text format,
//! [`BoundedFields`]), and every line is at most [`MAX_LINE_BYTES`] with no raw control
//! character but its final newline (both formats, [`bound_line`]).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::Write;

use tracing::field::{Field as TracingField, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// The longest field value a log line shows (a path may be `PATH_MAX` long).
pub const MAX_FIELD_BYTES: usize = 4096;

/// The longest log line.
pub const MAX_LINE_BYTES: usize = 8192;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with span fields.
    Json,
}

/// The default filter: `info` for the driver, `warn` for the libraries beneath it.
/// kube-client logs a body it cannot parse whole, at `warn`: its errors reach the driver's own
/// log through the calls that fail, so its events are off.
pub const DEFAULT_FILTER: &str = "info,aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_sdk_fsx=warn,h2=warn,hyper=warn,tower=warn,tonic=warn,kube_client=off,kube=off";

/// Installs the global subscriber, writing to stderr through [`redact`]. Safe to call more
/// than once (later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    init_to(format, filter, Output::Stderr);
}

/// Where log lines go.
#[derive(Debug, Clone, Default)]
pub enum Output {
    #[default]
    Stderr,
    /// Into a buffer: tests that scan every line the driver logs.
    Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>),
}

/// [`init`] with a filter and an output of the caller's choice.
pub fn init_to(format: LogFormat, filter: EnvFilter, output: Output) {
    // No colours: an escape sequence in a line is either a forgery or noise to a log reader.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Redacting(output)).with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).fmt_fields(BoundedFields).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
}

/// Makes [`RedactingWriter`]s: credentials masked, lines bounded.
#[derive(Debug, Clone, Default)]
pub struct Redacting(pub Output);

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(&self.0)
    }
}

/// Writes with [`redact`] and [`bound_line`] applied. The formatter writes each event in one
/// call, so a value never straddles two writes.
#[derive(Debug)]
pub struct RedactingWriter<'a>(&'a Output);

impl Write for RedactingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let line = bound_line(&redact(&text)).into_owned();
        match self.0 {
            Output::Stderr => std::io::stderr().lock().write_all(line.as_bytes())?,
            Output::Capture(buffer) => {
                buffer.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(line.as_bytes())
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.0 {
            Output::Stderr => std::io::stderr().lock().flush(),
            Output::Capture(_) => Ok(()),
        }
    }
}

/// Formats the fields of events and spans (text format) as `name=value`, every value with
/// its control characters escaped and cut at [`MAX_FIELD_BYTES`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BoundedFields;

impl<'writer> FormatFields<'writer> for BoundedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = BoundedVisitor { writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct BoundedVisitor<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Visit for BoundedVisitor<'_> {
    fn record_str(&mut self, field: &TracingField, value: &str) {
        // As tracing's own formatter: a string field is quoted, a message is not.
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &TracingField, value: &dyn fmt::Debug) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let text = format!("{value:?}");
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{separator}{}", Bounded(&text))
        } else {
            write!(self.writer, "{separator}{}={}", field.name(), Bounded(&text))
        };
    }
}

/// A field value with control characters escaped, cut at [`MAX_FIELD_BYTES`].
struct Bounded<'a>(&'a str);

impl fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = 0;
        for c in self.0.chars() {
            if written + c.len_utf8() > MAX_FIELD_BYTES {
                return write!(f, "…({} bytes)", self.0.len());
            }
            written += c.len_utf8();
            if c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') {
                write!(f, "{}", c.escape_debug())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// One formatted log line (text or JSON), held to what a reader can trust: no raw control
/// character but the final newline, and at most [`MAX_LINE_BYTES`]. A JSON line too long is
/// cut in its longest strings, so it stays one valid JSON object.
pub fn bound_line(line: &str) -> Cow<'_, str> {
    let body = line.strip_suffix('\n').unwrap_or(line);
    let clean = body.len() <= MAX_LINE_BYTES && !body.chars().any(|c| c.is_control());
    if clean {
        return Cow::Borrowed(line);
    }
    if body.starts_with('{')
        && let Ok(mut value) = serde_json::from_str::<serde_json::Value>(body)
    {
        while let Ok(text) = serde_json::to_string(&value) {
            if text.len() <= MAX_LINE_BYTES || !cut_longest_string(&mut value) {
                return Cow::Owned(text + "\n");
            }
        }
    }
    let mut out = String::with_capacity(body.len().min(MAX_LINE_BYTES) + 1);
    for c in body.chars() {
        let escaped: Cow<'_, str> =
            if c.is_control() { c.escape_debug().to_string().into() } else { c.to_string().into() };
        if out.len() + escaped.len() > MAX_LINE_BYTES - 32 {
            let _ = write!(out, "…({} bytes)", body.len());
            break;
        }
        out.push_str(&escaped);
    }
    out.push('\n');
    Cow::Owned(out)
}

/// Halves the longest string in `value` (a JSON line's fields); false if none is worth cutting.
fn cut_longest_string(value: &mut serde_json::Value) -> bool {
    fn longest(v: &mut serde_json::Value) -> Option<&mut String> {
        match v {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Array(items) => items.iter_mut().filter_map(longest).max_by_key(|s| s.len()),
            serde_json::Value::Object(map) => map.values_mut().filter_map(longest).max_by_key(|s| s.len()),
            _ => None,
        }
    }
    let Some(s) = longest(value) else { return false };
    if s.len() < 64 {
        return false;
    }
    let total = s.len();
    let mut keep = total / 2;
    while !s.is_char_boundary(keep) {
        keep -= 1;
    }
    s.truncate(keep);
    let _ = write!(s, "…({total} bytes)");
    true
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
    fn lines_are_bounded_and_carry_no_raw_control_characters() {
        assert!(matches!(bound_line("plain line\n"), Cow::Borrowed(_)));
        let forged = "volume.id=x\nERROR forged line\u{1b}[2J\n";
        let out = bound_line(forged);
        assert_eq!(out.matches('\n').count(), 1);
        assert!(out.ends_with('\n') && !out.trim_end_matches('\n').chars().any(char::is_control), "{out}");
        let huge = format!("INFO call {}\n", "x".repeat(3 << 20));
        let out = bound_line(&huge);
        assert!(out.len() <= MAX_LINE_BYTES + 1 && out.contains("bytes)"), "{}", out.len());
        let json = serde_json::json!({"message": "m", "volume.id": "y".repeat(3 << 20), "a": "z".repeat(10_000)});
        let line = json.to_string() + "\n";
        let out = bound_line(&line);
        assert!(out.len() <= MAX_LINE_BYTES + 1, "{}", out.len());
        let back: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(back["message"], "m");
    }

    #[test]
    fn every_field_of_every_event_is_escaped_and_cut() {
        use tracing_subscriber::layer::SubscriberExt;
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_target(false)
            .fmt_fields(BoundedFields)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        let id = format!("a\nforged=1 {}", "b".repeat(3 << 20));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("DeleteVolume", volume.id = %id);
            let _e = span.enter();
            tracing::info!(volume.id = %id, raw = id.as_str(), "not a file system id; {}", id);
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{}", &text[..200]);
        assert!(text.contains("volume.id=a\\nforged=1 b"), "{}", &text[..200]);
        assert!(text.len() < 4 * MAX_FIELD_BYTES + 512, "{}", text.len());
        assert!(text.contains("(3145739 bytes)"));
    }

    #[test]
    fn ordinary_lines_pass_unchanged() {
        for line in ["CreateVolume volume.name=pvc-1 capacity_gib=1200", "AKIA is only four letters", "ÉTÉ é"] {
            assert!(matches!(redact(line), Cow::Borrowed(_)), "{line}");
        }
    }
}
