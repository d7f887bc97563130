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

use super::connection::Connection;

/// Default region when neither flag, environment nor profile names one.
pub const FALLBACK_REGION: &str = "us-east-1";

/// Why credentials could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No source in the chain produced credentials.
    #[error(
        "no AWS credentials found ({0}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, use \
         --profile, --access-key-id/--secret-access-key, or --no-sign-request for a public bucket"
    )]
    NoCredentials(&'static str),
    /// A credentials source was configured but failed.
    #[error("could not load credentials: {0}")]
    Credentials(String),
    /// STS refused the AssumeRole call.
    #[error("{0}")]
    AssumeRole(String),
}

/// Credentials and settings ready to build clients from.
#[derive(Clone, Debug)]
pub struct Identity {
    /// SDK configuration carrying the credentials provider, the (possibly provisional)
    /// region, timeouts and any endpoint override from the environment.
    pub sdk_config: SdkConfig,
    /// Human description of where the credentials come from (never the secret).
    pub source: String,
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
    let mut source = match &conn.profile {
        Some(p) => format!("profile '{p}'"),
        None => "default credential chain".to_owned(),
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
    let base_creds = provider.provide_credentials().await.map_err(|e| match e {
        CredentialsError::CredentialsNotLoaded(_) => AuthError::NoCredentials(
            "tried the environment, the shared config and credentials files, web \
                 identity, ECS and instance metadata",
        ),
        other => AuthError::Credentials(DisplayErrorContext(&other).to_string()),
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
        return Err(AuthError::AssumeRole(describe_assume_role_error(
            &role.arn,
            role.external_id.is_some(),
            &DisplayErrorContext(&e).to_string(),
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

/// Turn STS's answer into a sentence that names the role and the likely cause.
fn describe_assume_role_error(arn: &str, has_external_id: bool, detail: &str) -> String {
    let cause = if detail.contains("AccessDenied") {
        if has_external_id {
            "the External ID was rejected, or the calling identity is not trusted by the \
             role's trust policy"
        } else {
            "the calling identity is not trusted by the role's trust policy (does the role \
             require an External ID? pass --external-id)"
        }
    } else if detail.contains("InvalidClientTokenId") || detail.contains("SignatureDoesNotMatch") {
        "the base credentials used to call STS were rejected"
    } else if detail.contains("ExpiredToken") {
        "the base credentials used to call STS have expired"
    } else if detail.contains("dispatch failure") || detail.contains("connect") {
        "the STS endpoint could not be reached"
    } else {
        "STS returned an error"
    };
    format!("cannot assume role {arn}: {cause} ({detail})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assume_role_errors_name_role_and_external_id() {
        let m = describe_assume_role_error(
            "arn:aws:iam::123456789012:role/r",
            true,
            "service error: AccessDenied: not authorized",
        );
        assert!(m.contains("arn:aws:iam::123456789012:role/r"));
        assert!(m.contains("External ID was rejected"));
        let m = describe_assume_role_error("arn:x", false, "AccessDenied");
        assert!(m.contains("--external-id"));
    }
}
