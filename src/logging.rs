//! Logging: the `--log-level` parser and the subscriber, which keeps secrets and data out of
//! every log whatever `RUST_LOG` asks for.
//!
//! Two independent guards, both always on:
//! - [`CAPS`]: the targets that log wire data (the SigV4 signer's canonical requests and
//!   string-to-sign, which carry `X-Amz-Security-Token` for every presigned URL; the SDK
//!   orchestrator's request/response dumps and bodies; hyper/h2 frames) are capped at a
//!   level that never includes them. This is a filter of its own, not a directive merged
//!   into `RUST_LOG`, so no directive, however specific, turns them back on.
//! - [`Redactor`]: every line is scanned before it is written and the known secret values
//!   (given on the command line or in `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`), the
//!   values of `X-Amz-Security-Token`, `X-Amz-Signature`, `Authorization` and STS
//!   `SecretAccessKey` / `SessionToken` elements are masked.
//!
//! Lines are text, or with `--log-format json` one JSON object each ([`JsonFormat`]). The
//! redactor masks text lines once they are formatted; JSON lines are redacted value by
//! value before they are encoded instead, so that a mask never cuts through the encoding
//! (a header value is masked to the end of its line, which in a JSON line would be the
//! rest of the object) and a secret is found as logged, not as JSON escaped it.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The bare levels `--log-level` accepts.
pub const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Targets that log wire data, and the most verbose level each may log at.
///
/// - `aws_sigv4`: at trace, the canonical request and string-to-sign (a presigned URL's
///   query carries the session token) and, with `LOG_SIGNABLE_BODY`, request bodies;
/// - `aws_smithy_runtime::client::orchestrator`: at trace, every request and response
///   (headers) and, with `LOG_SENSITIVE_BODIES`, bodies (an STS answer holds the temporary
///   secret key and session token);
/// - `hyper`, `h2`: frame and header dumps at debug/trace.
pub const CAPS: [(&str, Level); 4] = [
    ("aws_sigv4", Level::INFO),
    ("aws_smithy_runtime::client::orchestrator", Level::DEBUG),
    ("hyper", Level::INFO),
    ("h2", Level::INFO),
];

/// Environment variables with which the AWS SDK itself would log bodies; removed at start.
pub const BODY_LOGGING_ENV: [&str; 2] = ["LOG_SENSITIVE_BODIES", "LOG_SIGNABLE_BODY"];

/// Validate `--log-level`: one of [`LEVELS`] (any case), or a tracing filter with
/// directives (`warn,s3mount=debug`). Returns the value to use.
pub fn parse_log_level(s: &str) -> Result<String, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if LEVELS.contains(&lower.as_str()) {
        return Ok(lower);
    }
    let expected = "expected one of error, warn, info, debug, trace, off, or a tracing \
                    filter such as warn,s3mount=debug";
    if t.contains('=') || t.contains(',') {
        return EnvFilter::builder()
            .parse(t)
            .map(|_| t.to_owned())
            .map_err(|e| format!("{e}; {expected}"));
    }
    Err(expected.to_owned())
}

/// The filter for a validated `--log-level`, unless `rust_log` (non-empty) overrides it.
pub fn env_filter(level: &str, rust_log: Option<&str>) -> EnvFilter {
    match rust_log {
        Some(f) if !f.is_empty() => EnvFilter::new(f),
        // A bare level applies to s3mount; other crates (the AWS SDK, fuser — which warns
        // on every external unmount) only report errors unless debugging, RUST_LOG or a
        // full filter asks for more.
        _ if !level.contains('=') && !level.contains(',') => {
            let others = if matches!(level, "debug" | "trace") {
                level
            } else {
                "error"
            };
            EnvFilter::new(format!("error,s3mount={level},fuser={others}"))
        }
        _ => EnvFilter::new(level),
    }
}

/// Whether an event or span of `target` at `level` may be logged at all ([`CAPS`]).
pub fn allowed(target: &str, level: &Level) -> bool {
    CAPS.iter().all(|(prefix, max)| {
        let under = target
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        !under || level <= max
    })
}

/// How log lines are written (`--log-format`; the variants' docs are its `--help`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Time, level, target, message and fields as text
    #[default]
    Text,
    /// One JSON object per line
    Json,
}

/// Set up the global subscriber: stderr (the log file once daemonized), filtered by
/// `level` or `RUST_LOG`, capped by [`CAPS`], in `format`, with `secrets` and
/// credential-bearing values masked by a [`Redactor`].
pub fn init(level: &str, format: LogFormat, secrets: Vec<String>) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = env_filter(level, rust_log.as_deref())
        .and(filter_fn(|meta| allowed(meta.target(), meta.level())));
    let redactor = Arc::new(Redactor::new(secrets));
    tracing_subscriber::registry()
        .with(layer(format, redactor, std::io::stderr).with_filter(filter))
        .init();
}

/// Append one ERROR event saying `message` to the file at `path`, in `format` and with
/// `secrets` masked, as the log of a running mount would hold it. A background mount that
/// fails before it is live prints why on the terminal it was started from; this puts the
/// same sentence in its log file too (the one place a service's failures are looked for),
/// without printing it twice.
pub fn append_error(
    path: &std::path::Path,
    format: LogFormat,
    secrets: Vec<String>,
    message: &str,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let redactor = Arc::new(Redactor::new(secrets));
    let subscriber =
        tracing_subscriber::registry().with(layer(format, redactor, std::sync::Mutex::new(file)));
    tracing::subscriber::with_default(subscriber, || {
        tracing::error!(target: "s3mount", "not mounted: {message}");
    });
    Ok(())
}

/// The formatting layer writing to `sink`, secrets masked by `redactor` either way.
fn layer<S, W>(
    format: LogFormat,
    redactor: Arc<Redactor>,
    sink: W,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(RedactingWriter {
                redactor,
                inner: sink,
            })
            .with_ansi(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonFormat { redactor })
            .with_writer(sink)
            .with_ansi(false)
            .boxed(),
    }
}

/// `--log-format json`: each event is one line holding one JSON object:
///
/// ```text
/// {"timestamp":"2025-01-01T12:00:00.000000Z","level":"WARN","target":"s3mount::fuse",
///  "message":"write failed","fields":{"key":"a/b","attempts":3},"spans":[...]}
/// ```
///
/// `fields` are the event's other fields (numbers and booleans as such, anything else as
/// its text); `spans`, only inside spans, lists each span from the outermost as `name` and
/// its fields as text. Events of the `log` crate (fuser logs through it) carry their own
/// target. Every string is passed through the [`Redactor`] before it is encoded.
pub struct JsonFormat {
    redactor: Arc<Redactor>,
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        use tracing_log::NormalizeEvent;
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut timestamp = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = JsonFields {
            redactor: &self.redactor,
            message: String::new(),
            fields: serde_json::Map::new(),
        };
        event.record(&mut fields);
        let string = |s: &str| Value::String(s.to_owned());
        write!(
            writer,
            "{{\"timestamp\":{},\"level\":{},\"target\":{},\"message\":{},\"fields\":{}",
            string(&timestamp),
            string(meta.level().as_str()),
            string(meta.target()),
            string(&fields.message),
            Value::Object(fields.fields),
        )?;
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let ext = span.extensions();
                    let text = ext
                        .get::<FormattedFields<N>>()
                        .map_or("", |f| f.fields.as_str());
                    serde_json::json!({
                        "name": span.name(),
                        "fields": self.redactor.redact(text),
                    })
                })
                .collect();
            write!(writer, ",\"spans\":{}", Value::Array(spans))?;
        }
        writeln!(writer, "}}")
    }
}

/// Collects an event's fields for [`JsonFormat`], redacting every string.
struct JsonFields<'a> {
    redactor: &'a Redactor,
    message: String,
    fields: serde_json::Map<String, Value>,
}

impl JsonFields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            // The `log` crate's origin, already in `target`.
            name if name.starts_with("log.") => {}
            name => {
                self.fields.insert(name.to_owned(), value);
            }
        }
    }

    fn text(&mut self, field: &Field, text: &str) {
        let redacted = self.redactor.redact(text);
        self.put(field, Value::String(redacted));
    }
}

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match serde_json::Number::from_f64(value) {
            Some(n) => self.put(field, Value::Number(n)),
            None => self.text(field, &value.to_string()),
        }
    }
}

/// What a masked value is replaced with.
pub const MASK: &str = "[redacted]";

/// Masks secrets in log text: known values (and their URL-encoded forms) and the values of
/// credential-bearing parameters, headers and XML elements, whatever their case.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// Keys whose value is masked up to the end of the value (`&`, quote, whitespace, ...).
const KEYED: [&str; 2] = ["x-amz-security-token", "x-amz-signature"];

/// Header names whose value (which may hold spaces) is masked to the end of the line or
/// the closing quote.
const HEADERS: [&str; 2] = ["authorization", "proxy-authorization"];

/// XML elements whose text is masked.
const ELEMENTS: [&str; 2] = ["SecretAccessKey", "SessionToken"];

impl Redactor {
    /// A redactor for these secret values (empty and very short ones are ignored: masking
    /// them would mangle every line without hiding anything). Each is also looked for
    /// URL-encoded and as `{:?}` writes it (string fields are formatted so: a quote or
    /// backslash in a secret would otherwise hide it).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut all = Vec::new();
        for s in secrets.into_iter().filter(|s| s.len() >= 8) {
            let encoded = url_encode(&s);
            if encoded != s {
                all.push(encoded);
            }
            let debug = format!("{s:?}");
            let debug = &debug[1..debug.len() - 1];
            if debug != s {
                all.push(debug.to_owned());
            }
            all.push(s);
        }
        // Longest first, so a secret containing another is masked whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Redactor { secrets: all }
    }

    /// `text` with every secret masked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        for key in KEYED {
            out = mask_after_key(&out, key, false);
        }
        for key in HEADERS {
            out = mask_after_key(&out, key, true);
        }
        for el in ELEMENTS {
            out = mask_element(&out, el);
        }
        out
    }
}

/// Percent-encoding as in a SigV4 query string (unreserved characters kept).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Mask the value after each occurrence of `key` (ASCII case-insensitive) that is followed
/// (after an optional closing quote and spaces) by `=` or `:`. A quoted value is masked to
/// its closing quote; otherwise to the first delimiter, or, for `to_eol` (header values,
/// which hold spaces), to the end of the line. Values already redacted (`**`) are left.
fn mask_after_key(text: &str, key: &str, to_eol: bool) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(key) {
        let start = from + found;
        let mut i = start + key.len();
        from = i;
        // The key must not be the tail of a longer name (`x-authorization`, `fooauthorization`).
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-') {
            continue;
        }
        if bytes.get(i) == Some(&b'"') {
            i += 1;
        }
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        if !matches!(bytes.get(i), Some(b'=' | b':')) {
            continue;
        }
        i += 1;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        if text[i..].starts_with("**") {
            continue;
        }
        let quoted = bytes.get(i) == Some(&b'"');
        if quoted {
            i += 1;
        }
        let end = text[i..]
            .find(|c: char| {
                if quoted {
                    c == '"' || c == '\n'
                } else if to_eol {
                    c == '\n' || c == '\r'
                } else {
                    c.is_whitespace()
                        || matches!(
                            c,
                            '&' | '"' | '\'' | ',' | ';' | '<' | '>' | ')' | ']' | '}' | '\\'
                        )
                }
            })
            .map_or(text.len(), |n| i + n);
        if end > i {
            out.push_str(&text[copied..i]);
            out.push_str(MASK);
            copied = end;
        }
        from = end.max(from);
    }
    out.push_str(&text[copied..]);
    out
}

/// Mask the text of every `<el>...</el>`.
fn mask_element(text: &str, el: &str) -> String {
    let open = format!("<{el}>");
    let close = format!("</{el}>");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(o) = rest.find(&open) {
        let body = o + open.len();
        let Some(c) = rest[body..].find(&close) else {
            break;
        };
        out.push_str(&rest[..body]);
        out.push_str(MASK);
        rest = &rest[body + c..];
    }
    out.push_str(rest);
    out
}

/// A [`MakeWriter`] that passes each formatted event through a [`Redactor`] on its way to
/// `inner` (stderr). (The fmt layer writes each event with one `write_all` of the whole
/// formatted text.)
#[derive(Clone, Debug)]
pub struct RedactingWriter<W> {
    redactor: Arc<Redactor>,
    inner: W,
}

/// One event's writer: see [`RedactingWriter`].
#[derive(Debug)]
pub struct RedactingHandle<T> {
    redactor: Arc<Redactor>,
    inner: T,
}

impl<T: Write> Write for RedactingHandle<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner
            .write_all(self.redactor.redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<W> {
    type Writer = RedactingHandle<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingHandle {
            redactor: self.redactor.clone(),
            inner: self.inner.make_writer(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        for l in [
            "error", "warn", "info", "debug", "trace", "off", "WARN", " Debug ",
        ] {
            assert!(parse_log_level(l).is_ok(), "{l}");
        }
        assert_eq!(parse_log_level("WARN").unwrap(), "warn");
        assert_eq!(
            parse_log_level("warn,s3mount=debug").unwrap(),
            "warn,s3mount=debug"
        );
        assert!(parse_log_level("s3mount=trace").is_ok());
        for bad in [
            "loud",
            "s3mount",
            "verbose",
            "",
            "s3mount=loud",
            "warn,s3mount=loud",
        ] {
            let e = parse_log_level(bad).unwrap_err();
            assert!(
                e.contains("error, warn, info, debug, trace, off"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn caps_block_wire_targets_at_any_filter() {
        assert!(!allowed("aws_sigv4::http_request::sign", &Level::TRACE));
        assert!(!allowed("aws_sigv4", &Level::DEBUG));
        assert!(allowed("aws_sigv4", &Level::WARN));
        assert!(!allowed(
            "aws_smithy_runtime::client::orchestrator::http",
            &Level::TRACE
        ));
        assert!(allowed(
            "aws_smithy_runtime::client::orchestrator",
            &Level::DEBUG
        ));
        assert!(allowed(
            "aws_smithy_runtime::client::retries",
            &Level::TRACE
        ));
        assert!(!allowed("h2::codec", &Level::TRACE));
        assert!(allowed("hyper_util::client", &Level::TRACE));
        assert!(allowed("s3mount::s3::client", &Level::TRACE));
    }

    #[test]
    fn redacts_known_secrets_and_credential_values() {
        let r = Redactor::new(["wJalrXUtnFEMI/K7MDENG+bPxRfiCY".to_string(), "x".into()]);
        let line = "secret wJalrXUtnFEMI/K7MDENG+bPxRfiCY and wJalrXUtnFEMI%2FK7MDENG%2BbPxRfiCY x";
        assert_eq!(r.redact(line), "secret [redacted] and [redacted] x");

        let url =
            "GET /b/k?X-Amz-Date=1&X-Amz-Security-Token=FQoG%2Babc%3D&X-Amz-Signature=d057a3\nhost";
        assert_eq!(
            r.redact(url),
            "GET /b/k?X-Amz-Date=1&X-Amz-Security-Token=[redacted]&X-Amz-Signature=[redacted]\nhost"
        );
        let canonical = "host:h\nx-amz-security-token:FQoGtoken==\nx-amz-user-agent:a";
        assert_eq!(
            r.redact(canonical),
            "host:h\nx-amz-security-token:[redacted]\nx-amz-user-agent:a"
        );
        let header = "Authorization: AWS4-HMAC-SHA256 Credential=AK/x, Signature=abc\nnext";
        assert_eq!(r.redact(header), "Authorization: [redacted]\nnext");
        let debug = r#"{"authorization": "AWS4-HMAC-SHA256 Credential=AK, Signature=abc", "x-amz-date": "1"}"#;
        assert_eq!(
            r.redact(debug),
            r#"{"authorization": "[redacted]", "x-amz-date": "1"}"#
        );
        // Already redacted by the SDK, or a mere mention of the name: left alone.
        let sdk =
            r#""authorization": ** redacted (length=249) **, excluded: ["authorization", "ua"]"#;
        assert_eq!(r.redact(sdk), sdk);
        let signed = "SignedHeaders=host;x-amz-security-token;x-amz-user-agent";
        assert_eq!(r.redact(signed), signed);
        let xml = "<Credentials><SecretAccessKey>abc/def</SecretAccessKey><SessionToken>FQo</SessionToken></Credentials>";
        assert_eq!(
            r.redact(xml),
            "<Credentials><SecretAccessKey>[redacted]</SecretAccessKey><SessionToken>[redacted]</SessionToken></Credentials>"
        );
        let plain = "s3mount: PUT a/b.txt (3 bytes) failed: AccessDenied";
        assert_eq!(r.redact(plain), plain);
    }

    /// A secret with the characters JSON escapes, so an escaped copy would be found too.
    const SECRET: &str = r#"wJalr"XUtn\FEMI/K7MDENG+bPxRfiCY"#;

    /// What the logging layer in `format` writes while `f` logs, with [`SECRET`] known.
    fn logged(format: LogFormat, f: impl FnOnce()) -> String {
        #[derive(Clone)]
        struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink(Arc::default());
        let out = sink.clone();
        let redactor = Arc::new(Redactor::new([SECRET.to_string()]));
        let subscriber =
            tracing_subscriber::registry().with(layer(format, redactor, move || sink.clone()));
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    /// Logs a secret in a span field, an event field and the message, next to a header.
    fn log_secrets() {
        let span = tracing::info_span!("request", token = SECRET, n = 1).entered();
        tracing::warn!(
            key = "a/b.txt",
            secret = SECRET,
            attempts = 3,
            retried = true,
            "sent {SECRET} as \"quoted\"\nAuthorization: AWS4-HMAC-SHA256 Credential=AK, Signature=abc"
        );
        drop(span);
        tracing::info!("plain");
    }

    fn no_secret_in(out: &str) {
        let escaped = serde_json::to_string(SECRET).unwrap();
        for form in [SECRET, escaped.trim_matches('"'), &url_encode(SECRET)] {
            assert!(!out.contains(form), "{form} in {out}");
        }
        assert!(!out.contains("Signature=abc"), "{out}");
    }

    #[test]
    fn json_lines_are_one_object_each_with_secrets_masked() {
        let out = logged(LogFormat::Json, log_secrets);
        no_secret_in(&out);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        for l in &lines {
            for key in ["timestamp", "level", "target", "message"] {
                assert!(l[key].is_string(), "{key} in {l}");
            }
            assert!(l["fields"].is_object(), "{l}");
        }
        let warn = &lines[0];
        assert_eq!(warn["level"], "WARN");
        assert_eq!(warn["target"], "s3mount::logging::tests");
        assert_eq!(
            warn["message"],
            "sent [redacted] as \"quoted\"\nAuthorization: [redacted]"
        );
        assert_eq!(
            warn["fields"],
            serde_json::json!({"key": "a/b.txt", "secret": MASK, "attempts": 3, "retried": true})
        );
        assert_eq!(
            warn["spans"],
            serde_json::json!([{"name": "request", "fields": "token=\"[redacted]\" n=1"}])
        );
        assert!(warn["timestamp"].as_str().unwrap().ends_with('Z'), "{warn}");
        assert_eq!(lines[1]["message"], "plain");
        assert_eq!(lines[1]["fields"], serde_json::json!({}));
        assert!(lines[1].get("spans").is_none());
    }

    #[test]
    fn text_lines_are_redacted_as_a_whole() {
        let out = logged(LogFormat::Text, log_secrets);
        no_secret_in(&out);
        assert!(out.contains("request{token=\"[redacted]\" n=1}"), "{out}");
        assert!(
            out.contains(" INFO s3mount::logging::tests: plain"),
            "{out}"
        );
    }

    #[test]
    fn url_encoding_matches_sigv4() {
        assert_eq!(url_encode("a+b/c="), "a%2Bb%2Fc%3D");
        assert_eq!(url_encode("A-z_0.~"), "A-z_0.~");
    }

    #[test]
    fn a_failure_appended_to_the_log_file_is_one_error_line_with_secrets_masked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/dir/s3mount.log");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "earlier line\n").unwrap();
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned();
        append_error(
            &path,
            LogFormat::Text,
            vec![secret.clone()],
            &format!("bad secret {secret} given"),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "appended, not truncated: {text}");
        assert!(
            lines[1].contains(" ERROR s3mount: not mounted: bad secret "),
            "{text}"
        );
        assert!(!text.contains(&secret) && text.contains(MASK), "{text}");

        let json = dir.path().join("j.log");
        append_error(&json, LogFormat::Json, vec![], "why").unwrap();
        let v: Value =
            serde_json::from_str(std::fs::read_to_string(&json).unwrap().trim()).unwrap();
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["message"], "not mounted: why");
    }
}
