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

use std::io::Write;
use std::sync::Arc;

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
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

/// Set up the global subscriber: stderr (the log file once daemonized), filtered by
/// `level` or `RUST_LOG`, capped by [`CAPS`], with `secrets` and credential-bearing values
/// masked by a [`Redactor`].
pub fn init(level: &str, secrets: Vec<String>) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = env_filter(level, rust_log.as_deref())
        .and(filter_fn(|meta| allowed(meta.target(), meta.level())));
    let writer = RedactingWriter {
        redactor: Arc::new(Redactor::new(secrets)),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    use tracing_subscriber::Layer;
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
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
    /// them would mangle every line without hiding anything).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut all = Vec::new();
        for s in secrets.into_iter().filter(|s| s.len() >= 8) {
            let encoded = url_encode(&s);
            if encoded != s {
                all.push(encoded);
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

/// A [`MakeWriter`] to stderr that passes each formatted event through a [`Redactor`].
/// (The fmt layer writes each event with one `write_all` of the whole formatted text.)
#[derive(Clone, Debug)]
pub struct RedactingWriter {
    redactor: Arc<Redactor>,
}

/// One event's writer: see [`RedactingWriter`].
#[derive(Debug)]
pub struct RedactingHandle {
    redactor: Arc<Redactor>,
}

impl Write for RedactingHandle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr()
            .lock()
            .write_all(self.redactor.redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for RedactingWriter {
    type Writer = RedactingHandle;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingHandle {
            redactor: self.redactor.clone(),
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

    #[test]
    fn url_encoding_matches_sigv4() {
        assert_eq!(url_encode("a+b/c="), "a%2Bb%2Fc%3D");
        assert_eq!(url_encode("A-z_0.~"), "A-z_0.~");
    }
}
