//! The one place that turns a failure to connect — credentials, STS, S3, the network — into
//! the sentence a user reads: what failed, why (the AWS error code and message when there is
//! one), and what to do. `mount`, `check` and the log of a running mount all word these
//! failures through here, so they say the same thing.
//!
//! The SDK's own error values nest `Debug` dumps of HTTP responses; those never reach the
//! terminal. The caller logs the raw chain at debug level ([`log_raw`]) and shows only this
//! module's sentence, which is one line of a few hundred characters at most.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::connection::Target;
use super::profile::{Base, ProfileInfo};
use super::{ErrorKind, StoreError};

/// Longest piece of a server's or helper's own message quoted in a sentence.
const QUOTE: usize = 90;

/// `s` on one line, at most `max` characters, cut before anything that looks like a `Debug`
/// dump (`{`), so that quoting a server or a helper never floods the terminal.
pub fn clip(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let one = match one.find(['{', '}']) {
        Some(i) => one[..i]
            .trim_end()
            .trim_end_matches([':', '(', ','])
            .to_owned(),
        None => one,
    };
    if one.chars().count() <= max {
        return one;
    }
    let cut: String = one.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// Log the raw error chain at debug level (it may hold the SDK's `Debug` output, never a
/// secret: credentials are redacted in the SDK's `Debug` and by the log redactor).
pub fn log_raw(what: &str, e: &dyn StdError) {
    tracing::debug!(error = %DisplayErrorContext(e), "{what}");
}

/// The AWS error code and message carried somewhere in `e`'s source chain: an STS or S3
/// service error, found by type.
pub fn aws_error(e: &(dyn StdError + 'static)) -> Option<(String, Option<String>)> {
    use aws_sdk_s3::error::SdkError;
    use aws_sdk_sts::operation::{
        assume_role::AssumeRoleError,
        assume_role_with_web_identity::AssumeRoleWithWebIdentityError,
        get_caller_identity::GetCallerIdentityError,
    };
    fn meta<E: ProvideErrorMetadata>(
        e: &SdkError<E, HttpResponse>,
    ) -> Option<(String, Option<String>)> {
        match e {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                // Some servers (moto) send STS errors in a shape the query protocol's
                // parser does not read; STS's 403 is AccessDenied whatever the body.
                let code = ctx
                    .err()
                    .code()
                    .map(str::to_owned)
                    .unwrap_or_else(|| match status {
                        403 => "AccessDenied".to_owned(),
                        _ => format!("HTTP {status}"),
                    });
                Some((code, ctx.err().message().map(str::to_owned)))
            }
            _ => None,
        }
    }
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(s) = err.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
            return meta(s);
        }
        if let Some(s) =
            err.downcast_ref::<SdkError<AssumeRoleWithWebIdentityError, HttpResponse>>()
        {
            return meta(s);
        }
        if let Some(s) = err.downcast_ref::<SdkError<GetCallerIdentityError, HttpResponse>>() {
            return meta(s);
        }
        cur = err.source();
    }
    None
}

/// How a request failed to reach the server, from the transport's error text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Nothing listens there (connection refused).
    Refused,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed (not TLS, bad certificate).
    Tls,
    /// No answer in time.
    Timeout,
    /// Something else on the way.
    Other,
}

impl Transport {
    /// Classify a transport error chain's text.
    pub fn of(text: &str) -> Transport {
        let t = text.to_ascii_lowercase();
        if t.contains("dns error")
            || t.contains("failed to lookup address")
            || t.contains("name or service not known")
            || t.contains("no address associated")
            || t.contains("temporary failure in name resolution")
        {
            Transport::Dns
        } else if t.contains("certificate")
            || t.contains("tls")
            || t.contains("corrupt message")
            || t.contains("invalidcontenttype")
            || t.contains("handshake")
            || t.contains("ssl")
        {
            Transport::Tls
        } else if t.contains("connection refused") {
            Transport::Refused
        } else if t.contains("timed out") || t.contains("timeout") {
            Transport::Timeout
        } else {
            Transport::Other
        }
    }

    /// What went wrong reaching `at`, and what to do about it.
    pub fn sentence(self, what: &str, at: &str, text: &str) -> String {
        match self {
            Transport::Refused => format!(
                "cannot reach the {what} endpoint {at}: connection refused; check the URL and \
                 port, and that the server is running"
            ),
            Transport::Dns => format!(
                "cannot reach the {what} endpoint {at}: its host name does not resolve (DNS); \
                 check the host name in the URL and the network's DNS"
            ),
            Transport::Tls => {
                let cert = text.to_ascii_lowercase().contains("certificate");
                let why = if cert {
                    "the server's certificate is not trusted or does not match the host"
                } else {
                    "the server does not speak TLS there"
                };
                format!(
                    "cannot reach the {what} endpoint {at}: the TLS handshake failed ({why}); \
                     use http:// for a plain-HTTP server, or give the port that serves HTTPS"
                )
            }
            Transport::Timeout => format!(
                "the {what} endpoint {at} did not answer in time; check the URL, the network \
                 and any firewall or proxy between"
            ),
            Transport::Other => format!(
                "cannot reach the {what} endpoint {at}: {}",
                clip(&last_cause(text), QUOTE)
            ),
        }
    }
}

/// The innermost cause in a `DisplayErrorContext` text (`a: b: c` → `c`).
fn last_cause(text: &str) -> String {
    text.rsplit(": ")
        .find(|s| !s.trim().is_empty())
        .unwrap_or(text)
        .to_owned()
}

/// `CODE: message` for quoting, the message clipped.
fn quoted(code: &str, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{code}: {}", clip(m, QUOTE)),
        None => code.to_owned(),
    }
}

/// The places the default credential chain looks, in its order, for "no credentials".
pub fn no_credentials() -> String {
    let (config, credentials) = super::profile::files();
    let imds = if std::env::var("AWS_EC2_METADATA_DISABLED")
        .is_ok_and(|v| v.eq_ignore_ascii_case("true"))
    {
        "EC2 instance metadata (disabled)"
    } else {
        "EC2 instance metadata"
    };
    format!(
        "no AWS credentials found: tried environment variables, profile 'default' in {config} \
         and {credentials}, web identity, ECS and {imds}; set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, use --profile, or --no-sign-request for a public bucket"
    )
}

/// Who is asked to assume a role, for the advice on the External ID.
#[derive(Clone, Copy, Debug)]
pub enum RoleVia<'a> {
    /// `--role-arn`/`--external-id` on the command line.
    Flags,
    /// A profile's `role_arn`/`external_id`.
    Profile(&'a str),
}

/// Why `AssumeRole` of `arn` failed, from STS's code and message (or the transport).
pub fn assume_role(
    arn: &str,
    has_external_id: bool,
    via: RoleVia<'_>,
    sts_endpoint: &str,
    e: &(dyn StdError + 'static),
) -> String {
    let (set_id, base) = match via {
        RoleVia::Flags => (
            "--external-id".to_owned(),
            "the base credentials".to_owned(),
        ),
        RoleVia::Profile(p) => (
            format!("external_id in profile '{p}'"),
            format!("the source credentials of profile '{p}'"),
        ),
    };
    let Some((code, message)) = aws_error(e) else {
        let text = DisplayErrorContext(e).to_string();
        return format!(
            "cannot assume role {arn}: {}",
            Transport::of(&text).sentence("STS", sts_endpoint, &text)
        );
    };
    let server = quoted(&code, message.as_deref());
    match code.as_str() {
        "AccessDenied" if has_external_id => format!(
            "cannot assume role {arn} ({server}): the External ID was rejected, or the caller \
             is not trusted by the role's trust policy; check {set_id}"
        ),
        "AccessDenied" => format!(
            "cannot assume role {arn} ({server}): the caller is not trusted by the role's \
             trust policy; if it requires an External ID, set {set_id}"
        ),
        "InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException" => {
            format!("cannot assume role {arn}: STS rejected {base} ({server}); check them")
        }
        "ExpiredToken" | "ExpiredTokenException" => {
            format!("cannot assume role {arn}: {base} have expired ({server}); renew them")
        }
        "RegionDisabledException" => format!(
            "cannot assume role {arn}: STS is not enabled in this region ({server}); use \
             another --region or enable the region in IAM"
        ),
        _ => format!("cannot assume role {arn}: STS answered {server}"),
    }
}

/// A credentials error nested inside another error (the SDK wraps the identity resolver's
/// failure in a dispatch failure when a request needs credentials it cannot get).
pub fn nested_credentials_error<'a>(
    e: &'a (dyn StdError + 'static),
) -> Option<&'a CredentialsError> {
    let mut cur = e.source();
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<CredentialsError>() {
            return Some(c);
        }
        cur = err.source();
    }
    None
}

/// Why the credentials of `profile` (or the default chain) could not be loaded.
pub fn credentials(e: &CredentialsError, profile: Option<&ProfileInfo>) -> String {
    if let CredentialsError::CredentialsNotLoaded(_) = e {
        return match profile {
            Some(p) => format!(
                "profile '{}' gives no credentials (no keys, role, SSO or credential_process); \
                 add them to it, or pick another profile",
                p.name
            ),
            None => no_credentials(),
        };
    }
    let cause = credentials_cause(e, profile);
    match profile {
        Some(p) if !cause.contains('\'') => format!("profile '{}': {cause}", p.name),
        _ => cause,
    }
}

/// The body of [`credentials`]: which source failed and why.
fn credentials_cause(e: &CredentialsError, profile: Option<&ProfileInfo>) -> String {
    let text = DisplayErrorContext(e).to_string();
    let lower = text.to_ascii_lowercase();
    let named = |what: &str| match profile {
        Some(p) => format!("{what} of profile '{}'", p.name),
        None => what.to_owned(),
    };
    let (process, sso) = match profile.map(|p| &p.base) {
        Some(Base::Process(p)) => (Some(p.as_str()), None),
        Some(Base::Sso { profile, session }) => (None, Some((profile.as_str(), session))),
        _ => (None, None),
    };
    if lower.contains("external process exited") {
        let stderr = text
            .split("Stderr:")
            .nth(1)
            .and_then(|s| s.lines().map(str::trim).find(|l| !l.is_empty()))
            .map(|l| format!(": {}", clip(l, 70)))
            .unwrap_or_default();
        let status = text
            .split("exited with code ")
            .nth(1)
            .and_then(|s| s.split('.').next())
            .unwrap_or("a failure status");
        let who = process.map_or_else(
            || named("credential_process"),
            |p| format!("credential_process of profile '{p}'"),
        );
        return format!("{who} failed ({status}{stderr}); run that command by hand to see why");
    }
    if lower.contains("could not parse response") || lower.contains("could not decode output") {
        let who = process.map_or_else(
            || named("credential_process"),
            |p| format!("credential_process of profile '{p}'"),
        );
        return format!(
            "{who} printed something that is not credentials: expected JSON with Version 1, \
             AccessKeyId and SecretAccessKey on stdout"
        );
    }
    if lower.contains("error retrieving credentials from external process") {
        return format!(
            "{} could not be started ({}); check the command in the profile",
            named("credential_process"),
            clip(&last_cause(&text), 70)
        );
    }
    if lower.contains("sso token has expired") || lower.contains("sso") && lower.contains("expired")
    {
        let (p, session) = sso.map_or_else(
            || (profile.map_or("default", |p| p.name.as_str()), None),
            |(p, s)| (p, s.as_deref()),
        );
        let which = session.map_or_else(String::new, |s| format!(" '{s}'"));
        return format!(
            "the SSO session{which} of profile '{p}' has expired; sign in again with \
             `aws sso login --profile {p}`"
        );
    }
    if lower.contains("sso") {
        let p = sso.map_or_else(|| profile.map_or("default", |p| p.name.as_str()), |s| s.0);
        return format!(
            "the SSO login of profile '{p}' cannot be used ({}); run `aws sso login --profile {p}`",
            clip(&last_cause(&text), 80)
        );
    }
    if let Some((code, message)) = aws_error(e) {
        return format!(
            "STS refused the credentials ({}); check them",
            quoted(&code, message.as_deref())
        );
    }
    format!(
        "could not load credentials: {}",
        clip(&last_cause(&text), 120)
    )
}

/// The region a server says it expected, from a wrong-region complaint's message:
/// AWS's "the region 'X' is wrong; expecting 'Y'" or a credential scope
/// "expected: 'DATE/Y/s3/aws4_request'" (Garage).
pub fn region_in_message(message: &str) -> Option<String> {
    let quoted_after = |marker: &str| {
        let rest = &message[message.find(marker)? + marker.len()..];
        let rest = rest.strip_prefix('\'')?;
        Some(rest[..rest.find('\'')?].to_owned())
    };
    let region = quoted_after("expecting ").or_else(|| {
        let scope = quoted_after("expected: ")?;
        scope.split('/').nth(1).map(str::to_owned)
    })?;
    let plausible = !region.is_empty()
        && region.len() <= 64
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plausible.then_some(region)
}

/// The bucket's region, for "wrong region" (what to pass instead of `given`).
pub fn wrong_region(bucket: &str, actual: &str, given: &str) -> String {
    format!(
        "bucket '{bucket}' is in region {actual}, not {given}; use --region {actual} (or omit \
         --region to detect it)"
    )
}

/// Why listing `target` at `at` (the endpoint, in words) failed.
pub fn store(e: &StoreError, target: &Target, at: &str) -> String {
    let bucket = &target.bucket;
    let server = match (&e.code, &e.message) {
        (Some(c), m) => quoted(c, m.as_deref()),
        (None, _) => e.kind.to_string(),
    };
    let transport = || {
        let text = e.message.clone().unwrap_or_default();
        let t = if e.kind == ErrorKind::Timeout {
            Transport::Timeout
        } else {
            Transport::of(&text)
        };
        t.sentence("S3", at, &text)
    };
    match e.kind {
        ErrorKind::NoSuchBucket | ErrorKind::NotFound => format!(
            "bucket '{bucket}' does not exist at {at} ({server}); check the bucket name and \
             the endpoint, or create the bucket"
        ),
        ErrorKind::InvalidCredentials if e.code.is_none() && e.message.is_some() => {
            // A credentials provider that failed mid-request: already a sentence.
            e.message.clone().unwrap_or_default()
        }
        ErrorKind::InvalidCredentials => match e.code.as_deref() {
            Some("SignatureDoesNotMatch") => format!(
                "the secret access key is wrong ({server}) at {at}; check the secret that goes \
                 with the access key id"
            ),
            Some("InvalidAccessKeyId" | "InvalidClientTokenId") => format!(
                "the access key id is not known to the server ({server}) at {at}; check it, or \
                 whether the key was deleted"
            ),
            Some("ExpiredToken" | "TokenRefreshRequired") => format!(
                "the session token has expired ({server}) at {at}; get fresh temporary \
                 credentials, or use a profile or --role-arn that renews them"
            ),
            Some("InvalidToken") => format!(
                "the session token is not valid ({server}) at {at}; it must come with the \
                 access key it was issued with"
            ),
            _ => format!("the credentials were rejected ({server}) at {at}; check them"),
        },
        ErrorKind::AccessDenied if message_has(e, "signature") => format!(
            "the secret access key is wrong ({server}) at {at}; check the secret that goes \
             with the access key id"
        ),
        ErrorKind::AccessDenied if message_has(e, "no such key") => format!(
            "the access key id is not known to the server ({server}) at {at}; check it, or \
             whether the key was deleted"
        ),
        ErrorKind::AccessDenied => {
            let path = match target.prefix.as_str() {
                "" => bucket.clone(),
                p => format!("{bucket}/{p}"),
            };
            format!(
                "access denied listing s3://{path}: the credentials need s3:ListBucket on \
                 arn:aws:s3:::{bucket} ({server}); run `s3mount check {path}` to see every \
                 permission"
            )
        }
        ErrorKind::Unreachable | ErrorKind::Timeout => transport(),
        ErrorKind::ClockSkew => format!(
            "the local clock differs from the server's by too much ({server}) at {at}; fix the \
             system time (e.g. enable NTP)"
        ),
        _ => format!(
            "cannot list s3://{bucket}/{} at {at}: {}{}",
            target.prefix,
            e.kind,
            if e.code.is_some() {
                format!(" ({server})")
            } else {
                String::new()
            }
        ),
    }
}

/// Whether `e` says the credentials themselves are bad (not merely lacking a permission).
pub fn is_credential_problem(e: &StoreError) -> bool {
    e.kind == ErrorKind::InvalidCredentials
        || (e.kind == ErrorKind::AccessDenied
            && (message_has(e, "signature") || message_has(e, "no such key")))
}

/// Some servers (Garage among them) answer a wrong secret or an unknown access key with a
/// plain 403 AccessDenied whose message says which ("Invalid signature", "No such key").
fn message_has(e: &StoreError, needle: &str) -> bool {
    e.message
        .as_deref()
        .is_some_and(|m| m.to_ascii_lowercase().contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = "http://127.0.0.1:1";

    fn target() -> Target {
        Target {
            bucket: "b".into(),
            prefix: "p/".into(),
        }
    }

    /// One line, short, no `Debug` artefacts.
    fn sentence(m: &str) -> &str {
        assert!(!m.contains('\n'), "{m}");
        assert!(m.chars().count() < 300, "{} chars: {m}", m.chars().count());
        for bad in ["{", "}", "ProviderError", "Response {", "DispatchFailure"] {
            assert!(!m.contains(bad), "{bad} in {m}");
        }
        m
    }

    fn coded(kind: ErrorKind, code: &str) -> StoreError {
        StoreError {
            op: "ListObjectsV2",
            key: "p/".into(),
            kind,
            code: Some(code.into()),
            message: Some("the server's words".into()),
        }
    }

    #[test]
    fn each_s3_code_has_its_sentence() {
        use super::super::error::classify;
        for (status, code, want) in [
            (404, "NoSuchBucket", "bucket 'b' does not exist"),
            (403, "SignatureDoesNotMatch", "secret access key is wrong"),
            (403, "InvalidAccessKeyId", "access key id is not known"),
            (400, "ExpiredToken", "session token has expired"),
            (400, "TokenRefreshRequired", "session token has expired"),
            (400, "InvalidToken", "session token is not valid"),
            (403, "AccessDenied", "s3:ListBucket on arn:aws:s3:::b"),
            (403, "RequestTimeTooSkewed", "fix the system time"),
            (301, "PermanentRedirect", "cannot list s3://b/p/"),
        ] {
            let e = coded(classify(status, Some(code)), code);
            let m = store(&e, &target(), AT);
            assert!(sentence(&m).contains(want), "{code}: {m}");
            assert!(m.contains(code), "names the code: {m}");
        }
        let m = store(
            &coded(ErrorKind::AccessDenied, "AccessDenied"),
            &target(),
            AT,
        );
        assert!(m.contains("s3mount check b/p/"), "{m}");
    }

    #[test]
    fn transport_failures_name_the_endpoint_and_cause() {
        for (text, want) in [
            (
                "dispatch failure: io error: error trying to connect: tcp connect error: \
                 Connection refused (os error 111)",
                "connection refused",
            ),
            (
                "dispatch failure: other: error trying to connect: dns error: failed to \
                 lookup address information: Name or service not known",
                "does not resolve",
            ),
            (
                "dispatch failure: io error: error trying to connect: received corrupt \
                 message of type InvalidContentType",
                "does not speak TLS",
            ),
            (
                "dispatch failure: io error: invalid peer certificate: UnknownIssuer",
                "certificate is not trusted",
            ),
        ] {
            let e = StoreError::with_message("ListObjectsV2", "p/", ErrorKind::Unreachable, text);
            let m = store(&e, &target(), AT);
            assert!(sentence(&m).contains(want), "{m}");
            assert!(m.contains(AT), "{m}");
        }
        let e = StoreError::with_message("ListObjectsV2", "p/", ErrorKind::Timeout, "x");
        assert!(sentence(&store(&e, &target(), AT)).contains("did not answer in time"));
    }

    #[test]
    fn assume_role_codes() {
        use aws_sdk_sts::operation::assume_role::AssumeRoleError;
        use aws_smithy_runtime_api::client::result::SdkError;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;
        let err = |code: &str| {
            let meta = ErrorMetadata::builder()
                .code(code)
                .message("User: arn:aws:iam::123456789012:user/u is not authorized")
                .build();
            let raw = HttpResponse::new(403u16.try_into().unwrap(), SdkBody::empty());
            let sdk: SdkError<AssumeRoleError, HttpResponse> =
                SdkError::service_error(AssumeRoleError::generic(meta), raw);
            CredentialsError::provider_error(sdk)
        };
        let arn = "arn:aws:iam::123456789012:role/s3mount-role";
        for (code, ext, via, want) in [
            (
                "AccessDenied",
                true,
                RoleVia::Flags,
                "External ID was rejected",
            ),
            ("AccessDenied", false, RoleVia::Flags, "set --external-id"),
            (
                "AccessDenied",
                false,
                RoleVia::Profile("team"),
                "set external_id in profile 'team'",
            ),
            (
                "InvalidClientTokenId",
                true,
                RoleVia::Profile("team"),
                "source credentials of profile 'team'",
            ),
            ("ExpiredToken", true, RoleVia::Flags, "have expired"),
            (
                "Throttling",
                true,
                RoleVia::Flags,
                "STS answered Throttling",
            ),
        ] {
            let m = assume_role(arn, ext, via, AT, &err(code));
            assert!(sentence(&m).contains(want), "{code}: {m}");
            assert!(m.contains(arn) && m.contains(code), "{m}");
        }
    }

    #[test]
    fn credential_helpers_and_sso() {
        let process = ProfileInfo {
            name: "p".into(),
            base: Base::Process("p".into()),
            ..ProfileInfo::default()
        };
        let e = CredentialsError::provider_error(
            "Error retrieving credentials: external process exited with code exit status: 3. \
             Stderr: token service says no\n",
        );
        let m = credentials(&e, Some(&process));
        assert!(
            sentence(&m).contains("credential_process of profile 'p' failed"),
            "{m}"
        );
        assert!(
            m.contains("token service says no") && m.contains("exit status: 3"),
            "{m}"
        );
        let e = CredentialsError::provider_error(
            "Error retrieving credentials from external process, could not parse response: \
             invalid JSON credentials: expected a JSON object",
        );
        let m = credentials(&e, Some(&process));
        assert!(sentence(&m).contains("not credentials"), "{m}");
        let sso = ProfileInfo {
            name: "dev".into(),
            base: Base::Sso {
                profile: "dev".into(),
                session: Some("corp".into()),
            },
            ..ProfileInfo::default()
        };
        let e = CredentialsError::provider_error(
            "failed to load a token: the SSO token has expired and cannot be refreshed",
        );
        let m = credentials(&e, Some(&sso));
        assert!(sentence(&m).contains("SSO session 'corp' of profile 'dev' has expired"));
        assert!(m.contains("aws sso login --profile dev"), "{m}");
        assert!(sentence(&no_credentials()).contains("tried environment variables"));
    }

    #[test]
    fn clip_cuts_debug_dumps_and_length() {
        assert_eq!(clip("a: ProviderError { x }", 50), "a: ProviderError");
        assert_eq!(clip(&"x".repeat(20), 10).chars().count(), 10);
        assert_eq!(clip("a\n  b", 10), "a b");
    }

    #[test]
    fn the_expected_region_is_read_from_aws_and_garage_messages() {
        assert_eq!(
            region_in_message(
                "The authorization header is malformed; the region 'us-east-1' is wrong; \
                 expecting 'eu-west-1'"
            )
            .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_in_message(
                "Authorization header malformed, unexpected scope: \
                 '20261203/eu-west-3/s3/aws4_request', expected: '20261203/garage/s3/aws4_request'"
            )
            .as_deref(),
            Some("garage")
        );
        for m in [
            "Authorization header malformed",
            "expected: 'nonsense'",
            "expecting 'a b'",
            "expecting 'unterminated",
        ] {
            assert_eq!(region_in_message(m), None, "{m}");
        }
    }
}
