//! Credentials: which source signs our requests, resolved and proven *before* anything is
//! mounted, so that a wrong secret or a rejected External ID is a one-line error at the
//! prompt rather than EACCES on the first `ls`.
//!
//! Sources, in the order of precedence: `--no-sign-request`, static keys from the command
//! line, `--profile`, then aws-config's default chain (env vars, shared config and
//! credentials files, SSO, web identity, ECS/IMDS). With `--role-arn` the resolved source is
//! only the *base* identity that calls STS AssumeRole (with the External ID); aws-config's
//! [`AssumeRoleProvider`] behind the SDK's identity cache refreshes the temporary credentials
//! before they expire.

use std::time::Duration;

use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_types::error::display::DisplayErrorContext;

use aws_types::service_config::ServiceConfigKey;

use super::connection::Connection;
use super::{diagnose, profile};

/// Default region when neither flag, environment nor profile names one.
pub const FALLBACK_REGION: &str = "us-east-1";

/// Why credentials could not be obtained, each already worded by [`super::diagnose`].
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No source in the chain produced credentials.
    #[error("{0}")]
    NoCredentials(String),
    /// The selected profile, or one its chain names, is missing or inconsistent.
    #[error("{0}")]
    Profile(String),
    /// A credentials source was configured but failed.
    #[error("{0}")]
    Credentials(String),
    /// STS refused the AssumeRole call.
    #[error("{0}")]
    AssumeRole(String),
}

/// Credentials and settings ready to build clients from.
#[derive(Clone, Debug)]
pub struct Identity {
    /// SDK configuration carrying the credentials provider, the (possibly provisional)
    /// region, timeouts and any endpoint from the environment or the profile.
    pub sdk_config: SdkConfig,
    /// Human description of where the credentials come from (never the secret).
    pub source: String,
}

/// The endpoint the SDK would use for `service` (`"S3"`, `"STS"`) from the environment
/// or the profile (`AWS_ENDPOINT_URL_<SERVICE>`, the profile's `services` section,
/// `AWS_ENDPOINT_URL`, the profile's `endpoint_url`), or `None` for AWS's own.
pub fn configured_endpoint(sdk: &SdkConfig, service: &str) -> Option<String> {
    let key = ServiceConfigKey::builder()
        .service_id(service)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// Load the base configuration and resolve credentials, assuming the role when asked.
pub async fn resolve(conn: &Connection) -> Result<Identity, AuthError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(super::https::client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .build(),
        );
    if let Some(region) = &conn.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &conn.profile {
        loader = loader.profile_name(profile);
    }
    let uses_profile = !conn.no_sign_request && conn.static_keys.is_none();
    // A missing profile must not fall through to instance metadata: name it instead.
    let profile = if uses_profile || conn.profile.is_some() {
        profile::inspect(conn.profile.as_deref())
            .await
            .map_err(AuthError::Profile)?
    } else {
        None
    };
    let mut source = match (&profile, &conn.profile) {
        (Some(p), _) => describe_profile(p),
        (None, Some(p)) => format!("profile '{p}'"),
        (None, None) => "default credential chain".to_owned(),
    };
    if conn.no_sign_request {
        loader = loader.no_credentials();
        source = "anonymous (unsigned requests)".to_owned();
    } else if let Some(keys) = &conn.static_keys {
        loader = loader.credentials_provider(Credentials::new(
            &keys.access_key_id,
            &keys.secret_access_key,
            keys.session_token.clone(),
            None,
            "s3mount-command-line",
        ));
        source = format!("access key {} from the command line", keys.access_key_id);
    }
    let base = loader.load().await;

    let Some(provider) = base.credentials_provider() else {
        return Ok(Identity {
            sdk_config: base,
            source,
        });
    };
    let profile_for_errors = profile.as_ref().filter(|_| uses_profile);
    let base_creds = provider.provide_credentials().await.map_err(|e| {
        diagnose::log_raw("loading credentials", &e);
        if let (Some(p), Some(arn)) = (
            profile_for_errors,
            profile_for_errors.and_then(|p| p.role_arn.as_ref()),
        ) && !matches!(e, CredentialsError::CredentialsNotLoaded(_))
            && !is_base_failure(&e)
        {
            return AuthError::AssumeRole(diagnose::assume_role(
                arn,
                p.has_external_id,
                diagnose::RoleVia::Profile(&p.name),
                &sts_endpoint(&base, None),
                &e,
            ));
        }
        match e {
            CredentialsError::CredentialsNotLoaded(_) if profile_for_errors.is_none() => {
                AuthError::NoCredentials(diagnose::no_credentials())
            }
            other => AuthError::Credentials(diagnose::credentials(&other, profile_for_errors)),
        }
    })?;
    if conn.static_keys.is_none() && !conn.no_sign_request {
        source = format!("{source} (access key {})", base_creds.access_key_id());
    }

    let Some(role) = &conn.role else {
        return Ok(Identity {
            sdk_config: base,
            source,
        });
    };
    let sts_at = sts_endpoint(&base, role.sts_endpoint_url.as_deref());
    let mut sts_config = base.clone().into_builder();
    if let Some(url) = &role.sts_endpoint_url {
        sts_config = sts_config.endpoint_url(url);
    }
    if base.region().is_none() {
        sts_config = sts_config.region(Region::new(FALLBACK_REGION));
    }
    let sts_config = sts_config.build();
    let mut builder = AssumeRoleProvider::builder(&role.arn)
        .session_name(&role.session_name)
        .configure(&sts_config);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id);
    }
    let assume = builder.build().await;
    // Prove the role can be assumed now; the SDK's identity cache makes later calls refresh.
    if let Err(e) = assume.provide_credentials().await {
        diagnose::log_raw("assuming the role", &e);
        return Err(AuthError::AssumeRole(diagnose::assume_role(
            &role.arn,
            role.external_id.is_some(),
            diagnose::RoleVia::Flags,
            &sts_at,
            &e,
        )));
    }
    let sdk_config = base
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(assume))
        .build();
    Ok(Identity {
        sdk_config,
        source: format!(
            "role {} assumed via STS{} by {source}",
            role.arn,
            if role.external_id.is_some() {
                " with External ID"
            } else {
                ""
            }
        ),
    })
}

/// The STS endpoint in words: the flag, else the environment's or profile's, else AWS's.
fn sts_endpoint(sdk: &SdkConfig, flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| configured_endpoint(sdk, "STS"))
        .unwrap_or_else(|| {
            format!(
                "AWS STS ({})",
                sdk.region().map_or(FALLBACK_REGION, |r| r.as_ref())
            )
        })
}

/// The profile's own role and where its base credentials come from, for the report.
fn describe_profile(p: &profile::ProfileInfo) -> String {
    match &p.role_arn {
        Some(arn) => format!(
            "profile '{}': role {arn} assumed via STS{}{}",
            p.name,
            if p.has_external_id {
                " with External ID"
            } else {
                ""
            },
            p.source_profile
                .as_deref()
                .map(|s| format!(" by profile '{s}'"))
                .unwrap_or_default()
        ),
        None => format!("profile '{}'", p.name),
    }
}

/// Whether a profile chain failed before its AssumeRole (the base credentials: a helper, SSO)
/// rather than in STS.
fn is_base_failure(e: &CredentialsError) -> bool {
    let text = DisplayErrorContext(e).to_string().to_ascii_lowercase();
    diagnose::aws_error(e).is_none()
        && (text.contains("external process")
            || text.contains("sso")
            || text.contains("failed to load base credentials")
            || text.contains("could not be built"))
}
