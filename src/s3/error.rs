//! One error type for every object-store call: what failed (operation + key), how it failed
//! (a small [`ErrorKind`] the filesystem maps to an errno) and the server's own words (AWS
//! error code and message), so the failure can be logged once, precisely, at the FUSE edge.

use std::fmt;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;

/// How an object-store call failed, coarse enough to map to one errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The key (or upload) does not exist.
    NotFound,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The credentials are valid but not allowed to do this.
    AccessDenied,
    /// The credentials were rejected (unknown key id, wrong secret, expired token).
    InvalidCredentials,
    /// `If-Match` failed: the object changed since it was opened.
    PreconditionFailed,
    /// The server asked us to slow down and retries ran out.
    Throttled,
    /// A 5xx answer after retries.
    ServerError,
    /// The endpoint could not be reached (DNS, refused connection, TLS).
    Unreachable,
    /// The request timed out.
    Timeout,
    /// The connection broke while the response was being received, or the server found
    /// the body damaged on the way (its checksum did not match): worth another try.
    Interrupted,
    /// The local clock differs too much from the server's.
    ClockSkew,
    /// The object would be too large for the server.
    TooLarge,
    /// The server is out of space or over quota.
    NoSpace,
    /// The server said the request was malformed (4xx other than the above).
    InvalidRequest,
    /// Anything else (malformed response, credentials provider failure, ...).
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::NoSuchBucket => "bucket does not exist",
            ErrorKind::AccessDenied => "access denied",
            ErrorKind::InvalidCredentials => "credentials rejected",
            ErrorKind::PreconditionFailed => "object changed (ETag mismatch)",
            ErrorKind::Throttled => "throttled",
            ErrorKind::ServerError => "server error",
            ErrorKind::Unreachable => "endpoint unreachable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Interrupted => "connection interrupted",
            ErrorKind::ClockSkew => "clock skew too large",
            ErrorKind::TooLarge => "object too large",
            ErrorKind::NoSpace => "no space or quota exceeded",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::Other => "failed",
        };
        f.write_str(s)
    }
}

impl ErrorKind {
    /// A short fixed name (the `outcome` label of the S3 request metrics).
    pub fn label(&self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::NoSuchBucket => "no_such_bucket",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::InvalidCredentials => "invalid_credentials",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::Throttled => "throttled",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::ClockSkew => "clock_skew",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::NoSpace => "no_space",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Other => "other",
        }
    }
}

/// A failed object-store call.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{op} {key:?}: {kind}{}", self.detail())]
pub struct StoreError {
    /// S3 operation name, e.g. `GetObject`.
    pub op: &'static str,
    /// Key (or bucket for bucket-level calls) the operation was about.
    pub key: String,
    /// Classification.
    pub kind: ErrorKind,
    /// AWS error code, e.g. `AccessDenied`, when the server sent one.
    pub code: Option<String>,
    /// Server message or transport error chain.
    pub message: Option<String>,
}

impl StoreError {
    /// An error of `kind` with no server details (used by the in-memory store).
    pub fn new(op: &'static str, key: impl Into<String>, kind: ErrorKind) -> Self {
        StoreError {
            op,
            key: key.into(),
            kind,
            code: None,
            message: None,
        }
    }

    /// An error of `kind` explained by `message` (no AWS code: a local or transport cause).
    pub fn with_message(
        op: &'static str,
        key: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        StoreError {
            message: Some(message.into()),
            ..StoreError::new(op, key, kind)
        }
    }

    /// This error, as the last of `attempts` over `elapsed` (the deadline ran out).
    pub fn after_retries(mut self, attempts: u32, elapsed: std::time::Duration) -> Self {
        let note = format!(
            "gave up after {attempts} attempts over {:.1} s",
            elapsed.as_secs_f64()
        );
        self.message = Some(match self.message.take() {
            Some(m) => format!("{m}; {note}"),
            None => note,
        });
        self
    }

    fn detail(&self) -> String {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => format!(" ({c}: {m})"),
            (Some(c), None) => format!(" ({c})"),
            (None, Some(m)) => format!(" ({m})"),
            (None, None) => String::new(),
        }
    }

    /// Classify an aws-sdk error. `key` is the object key or bucket the call was about.
    pub fn from_sdk<E>(op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        // Credentials that could not be loaded or renewed (an expired SSO session, a
        // failing credential_process, a refused AssumeRole) arrive as a dispatch failure:
        // say so in the sentence the user would have read at mount time.
        if !matches!(err, SdkError::ServiceError(_))
            && let Some(c) = super::diagnose::nested_credentials_error(&err)
        {
            super::diagnose::log_raw(op, &err);
            return StoreError {
                op,
                key: key.to_owned(),
                kind: ErrorKind::InvalidCredentials,
                code: None,
                message: Some(super::diagnose::credentials(c, None)),
            };
        }
        let (kind, code, message) = match &err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().map(str::to_owned);
                let message = ctx.err().message().map(str::to_owned);
                (classify(status, code.as_deref()), code, message)
            }
            SdkError::DispatchFailure(d) => {
                use aws_smithy_types::retry::ErrorKind as Sdk;
                let kind = if d.is_timeout() {
                    ErrorKind::Timeout
                } else if d.is_io() {
                    ErrorKind::Unreachable
                } else if d.is_user() {
                    ErrorKind::Other
                } else {
                    match d.as_other() {
                        // A connection closed or reset mid-request, as the HTTP client saw it.
                        Some(Sdk::TransientError) => ErrorKind::Interrupted,
                        Some(Sdk::ThrottlingError) => ErrorKind::Throttled,
                        Some(Sdk::ServerError) => ErrorKind::ServerError,
                        Some(Sdk::ClientError) | Some(_) => ErrorKind::Other,
                        None => ErrorKind::Unreachable,
                    }
                };
                (kind, None, Some(DisplayErrorContext(&err).to_string()))
            }
            SdkError::TimeoutError(_) => (
                ErrorKind::Timeout,
                None,
                Some(DisplayErrorContext(&err).to_string()),
            ),
            SdkError::ResponseError(_) => (
                ErrorKind::Interrupted,
                None,
                Some(DisplayErrorContext(&err).to_string()),
            ),
            _ => (
                ErrorKind::Other,
                None,
                Some(DisplayErrorContext(&err).to_string()),
            ),
        };
        StoreError {
            op,
            key: key.to_owned(),
            kind,
            code,
            message,
        }
    }
}

/// Map an HTTP status and AWS error code to an [`ErrorKind`]. HEAD responses carry no body,
/// so the status alone must be enough there.
pub fn classify(status: u16, code: Option<&str>) -> ErrorKind {
    match code {
        Some("NoSuchKey" | "NotFound" | "NoSuchUpload") => return ErrorKind::NotFound,
        Some("NoSuchBucket") => return ErrorKind::NoSuchBucket,
        Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem") => {
            return ErrorKind::AccessDenied;
        }
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "InvalidClientTokenId"
            | "AuthorizationHeaderMalformed",
        ) => return ErrorKind::InvalidCredentials,
        Some("PreconditionFailed") => return ErrorKind::PreconditionFailed,
        Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded") => {
            return ErrorKind::Throttled;
        }
        Some("RequestTimeTooSkewed") => return ErrorKind::ClockSkew,
        // The body's checksum did not match: bytes damaged in transit, sent again as they
        // are (Garage says InvalidDigest; we never send a Content-MD5 it could be about).
        Some("BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch") => {
            return ErrorKind::Interrupted;
        }
        // A 501: the server does not do this at all; asking again will not help.
        Some("NotImplemented") => return ErrorKind::InvalidRequest,
        Some("EntityTooLarge") => return ErrorKind::TooLarge,
        Some("QuotaExceeded" | "NotEnoughSpace" | "InsufficientStorage") => {
            return ErrorKind::NoSpace;
        }
        _ => {}
    }
    match status {
        404 => ErrorKind::NotFound,
        403 => ErrorKind::AccessDenied,
        401 => ErrorKind::InvalidCredentials,
        412 => ErrorKind::PreconditionFailed,
        429 | 503 => ErrorKind::Throttled,
        507 => ErrorKind::NoSpace,
        500..=599 => ErrorKind::ServerError,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checksum_mismatch_is_sent_again() {
        for code in ["BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"] {
            assert_eq!(classify(400, Some(code)), ErrorKind::Interrupted, "{code}");
        }
    }

    #[test]
    fn codes_win_over_status() {
        assert_eq!(classify(404, Some("NoSuchBucket")), ErrorKind::NoSuchBucket);
        assert_eq!(
            classify(403, Some("SignatureDoesNotMatch")),
            ErrorKind::InvalidCredentials
        );
        assert_eq!(classify(403, None), ErrorKind::AccessDenied);
        assert_eq!(classify(404, None), ErrorKind::NotFound);
        assert_eq!(classify(503, Some("SlowDown")), ErrorKind::Throttled);
        assert_eq!(classify(500, None), ErrorKind::ServerError);
    }

    #[test]
    fn display_names_operation_key_and_code() {
        let e = StoreError {
            op: "GetObject",
            key: "p/a.txt".into(),
            kind: ErrorKind::AccessDenied,
            code: Some("AccessDenied".into()),
            message: Some("nope".into()),
        };
        assert_eq!(
            e.to_string(),
            "GetObject \"p/a.txt\": access denied (AccessDenied: nope)"
        );
    }
}
