//! From settings to a working, proven connection: credentials resolved (role assumed),
//! region known, and one ListObjectsV2 under the prefix answered. Every way this can fail
//! is turned into one sentence a user can act on.

use super::client::{AwsStore, StoreSettings};
use super::connection::{Connection, Target};
use super::{ErrorKind, ObjectStore, StoreError, auth, region};

/// A failed connection, already worded for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

/// A proven connection.
pub struct Connected {
    /// The store for the target bucket.
    pub store: AwsStore,
    /// Region in use.
    pub region: String,
    /// Where the credentials came from.
    pub credentials: String,
}

/// A connection being made, one step at a time: credentials first ([`Connector::start`]),
/// then the bucket's region, then a store. [`connect`] runs every step for a mount;
/// `s3mount check` runs the same steps and reports each.
pub struct Connector<'a> {
    conn: &'a Connection,
    identity: auth::Identity,
}

impl<'a> Connector<'a> {
    /// Resolve the credentials (assuming the role when asked).
    pub async fn start(conn: &'a Connection) -> Result<Self, ConnectError> {
        let identity = auth::resolve(conn)
            .await
            .map_err(|e| ConnectError(e.to_string()))?;
        Ok(Connector { conn, identity })
    }

    /// Where the credentials come from (never the secret).
    pub fn credentials(&self) -> &str {
        &self.identity.source
    }

    /// The SDK configuration carrying the credentials, for other AWS clients (STS).
    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.identity.sdk_config
    }

    /// The settings being connected with.
    pub fn connection(&self) -> &Connection {
        self.conn
    }

    /// The region of `target`'s bucket: `--region`, else detected.
    pub async fn region(&self, target: &Target) -> Result<String, ConnectError> {
        region::detect(&self.identity.sdk_config, self.conn, &target.bucket)
            .await
            .map_err(|e| ConnectError(explain(&e, target, self.conn, None)))
    }

    /// The region for account-level calls: `--region`, else the environment's or
    /// profile's, else us-east-1.
    pub fn home_region(&self) -> String {
        self.conn
            .region
            .clone()
            .or_else(|| {
                self.identity
                    .sdk_config
                    .region()
                    .map(|r| r.as_ref().to_owned())
            })
            .unwrap_or_else(|| auth::FALLBACK_REGION.to_owned())
    }

    /// An S3 client for `region`.
    pub fn client(&self, region: &str) -> aws_sdk_s3::Client {
        region::s3_client(&self.identity.sdk_config, self.conn, region)
    }

    /// A store for `bucket` in `region`, with `settings` on every request.
    pub fn store(&self, bucket: &str, region: &str, settings: StoreSettings) -> AwsStore {
        AwsStore::new(self.client(region), bucket).with_settings(settings)
    }
}

/// Resolve credentials, detect the region and check that the target can be listed.
pub async fn connect(target: &Target, conn: &Connection) -> Result<Connected, ConnectError> {
    let c = Connector::start(conn).await?;
    let region = c.region(target).await?;
    let store = c.store(&target.bucket, &region, conn.request_settings());
    if let Err(e) = store.list(&target.prefix, true, None, Some(1)).await {
        return Err(ConnectError(explain(&e, target, conn, Some(&region))));
    }
    Ok(Connected {
        store,
        region,
        credentials: c.identity.source,
    })
}

fn endpoint(conn: &Connection, region: Option<&str>) -> String {
    conn.endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .unwrap_or_else(|| format!("AWS S3 ({})", region.unwrap_or("region not yet known")))
}

/// One sentence for a failed connection check.
pub fn explain(e: &StoreError, target: &Target, conn: &Connection, region: Option<&str>) -> String {
    let bucket = &target.bucket;
    let at = endpoint(conn, region);
    let server = match (&e.code, &e.message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => e.kind.to_string(),
    };
    match e.kind {
        ErrorKind::NoSuchBucket | ErrorKind::NotFound => {
            format!("bucket '{bucket}' does not exist at {at} ({server})")
        }
        ErrorKind::InvalidCredentials => {
            let why = match e.code.as_deref() {
                Some("SignatureDoesNotMatch") => "the secret access key is wrong",
                Some("InvalidAccessKeyId" | "InvalidClientTokenId") => {
                    "the access key id is not known to the server"
                }
                Some("ExpiredToken" | "TokenRefreshRequired") => "the session token has expired",
                _ => "the credentials were rejected",
            };
            format!("{why} ({server}) at {at}")
        }
        ErrorKind::AccessDenied if message_has(e, "signature") => {
            format!("the secret access key is wrong ({server}) at {at}")
        }
        ErrorKind::AccessDenied if message_has(e, "no such key") => {
            format!("the access key id is not known to the server ({server}) at {at}")
        }
        ErrorKind::AccessDenied => format!(
            "access denied listing s3://{bucket}/{}: the credentials need s3:ListBucket on \
             arn:aws:s3:::{bucket} ({server})",
            target.prefix
        ),
        ErrorKind::Unreachable => format!("cannot reach the S3 endpoint {at}: {server}"),
        ErrorKind::Timeout => format!("the S3 endpoint {at} did not answer in time: {server}"),
        ErrorKind::ClockSkew => format!(
            "the local clock differs too much from the server's; fix the system time ({server})"
        ),
        _ => format!("cannot list s3://{bucket}/{} at {at}: {e}", target.prefix),
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

    fn target() -> Target {
        Target {
            bucket: "b".into(),
            prefix: "p/".into(),
        }
    }

    #[test]
    fn explains_each_failure() {
        let conn = Connection {
            endpoint_url: Some("http://127.0.0.1:1".into()),
            ..Connection::default()
        };
        let mut e = StoreError::new("ListObjectsV2", "p/", ErrorKind::NoSuchBucket);
        assert!(explain(&e, &target(), &conn, None).contains("bucket 'b' does not exist"));
        e.kind = ErrorKind::InvalidCredentials;
        e.code = Some("SignatureDoesNotMatch".into());
        assert!(explain(&e, &target(), &conn, None).contains("secret access key is wrong"));
        e.kind = ErrorKind::AccessDenied;
        e.code = Some("AccessDenied".into());
        assert!(explain(&e, &target(), &conn, None).contains("s3:ListBucket"));
        e.kind = ErrorKind::Unreachable;
        assert!(
            explain(&e, &target(), &conn, None)
                .contains("cannot reach the S3 endpoint http://127.0.0.1:1")
        );
    }
}
