//! How to reach and authenticate to S3, and what a mount may touch: the settings the store
//! layer connects with. `crate::config` builds them from the command line (validating
//! everything that can be checked offline); nothing here parses flags.

/// Static keys given on the command line. `Debug` shows the access key id only.
#[derive(Clone)]
pub struct StaticKeys {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never logged).
    pub secret_access_key: String,
    /// Optional session token.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// A role to assume.
#[derive(Clone, Debug)]
pub struct RoleConfig {
    /// Role ARN, validated.
    pub arn: String,
    /// External ID for the trust policy's sts:ExternalId condition.
    pub external_id: Option<String>,
    /// Role session name.
    pub session_name: String,
    /// STS endpoint override.
    pub sts_endpoint_url: Option<String>,
}

/// How to reach and authenticate to S3.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// Explicit region; `None` means detect.
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
    /// Path-style addressing.
    pub force_path_style: bool,
    /// Named profile.
    pub profile: Option<String>,
    /// Static keys from the command line.
    pub static_keys: Option<StaticKeys>,
    /// Role to assume.
    pub role: Option<RoleConfig>,
    /// Anonymous requests.
    pub no_sign_request: bool,
    /// Expected bucket owner account id.
    pub expected_bucket_owner: Option<String>,
    /// Requester pays.
    pub requester_pays: bool,
}

impl Connection {
    /// Settings every request carries (bucket owner, requester pays).
    pub fn request_settings(&self) -> super::client::StoreSettings {
        super::client::StoreSettings {
            expected_bucket_owner: self.expected_bucket_owner.clone(),
            requester_pays: self.requester_pays,
            ..Default::default()
        }
    }
}

/// Bucket and prefix: the only part of S3 a mount may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Bucket name, validated.
    pub bucket: String,
    /// Key prefix: empty, or ending in `/`, with no empty, `.` or `..` components.
    pub prefix: String,
}

/// Virtual-host addressing needs DNS for `bucket.host`; an IP or localhost has none.
pub fn endpoint_needs_path_style(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok() || url.contains('[')
}
