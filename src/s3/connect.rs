//! From settings to a working, proven connection: credentials resolved (role assumed),
//! region known, and one ListObjectsV2 under the prefix answered. Every way this can fail
//! is turned into one sentence a user can act on.

use super::client::{AwsStore, StoreSettings};
use super::connection::{Connection, Target};
use super::{ErrorKind, ObjectStore, StoreError, auth, diagnose, region};

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
            .map_err(|e| ConnectError(diagnose::store(&e, target, &self.endpoint(None))))
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
        return Err(ConnectError(c.explain_listing(&e, target, &region).await));
    }
    Ok(Connected {
        store,
        region,
        credentials: c.identity.source,
    })
}

impl Connector<'_> {
    /// The S3 endpoint in words: the flag, the environment's or profile's, else AWS's.
    pub fn endpoint(&self, region: Option<&str>) -> String {
        endpoint(&self.identity.sdk_config, self.conn, region)
    }

    /// One sentence for a failed first listing of `target` in `region`.
    pub async fn explain_listing(&self, e: &StoreError, target: &Target, region: &str) -> String {
        tracing::debug!(error = %e, "first listing failed");
        match self.actual_region(e, target, region).await {
            Some(actual) => diagnose::wrong_region(&target.bucket, &actual, region),
            None => diagnose::store(e, target, &self.endpoint(Some(region))),
        }
    }

    /// When `e` smells of a wrong region (a redirect, a malformed-authorization complaint,
    /// a 400 under an explicit `--region`), the bucket's real region if it differs.
    pub async fn actual_region(
        &self,
        e: &StoreError,
        target: &Target,
        region: &str,
    ) -> Option<String> {
        let suspicious = matches!(
            e.code.as_deref(),
            Some(
                "PermanentRedirect"
                    | "AuthorizationHeaderMalformed"
                    | "IllegalLocationConstraintException"
            )
        ) || (e.kind == ErrorKind::InvalidRequest && self.conn.region.is_some());
        if !suspicious {
            return None;
        }
        // The server may name the region it wants in the message (AWS and Garage do), which
        // works where detection does not (S3-compatible servers without
        // `x-amz-bucket-region`).
        if let Some(actual) = e.message.as_deref().and_then(diagnose::region_in_message) {
            return (actual != region).then_some(actual);
        }
        let mut auto = self.conn.clone();
        auto.region = None;
        let actual = region::detect(&self.identity.sdk_config, &auto, &target.bucket)
            .await
            .ok()?;
        (actual != region).then_some(actual)
    }
}

fn endpoint(sdk: &aws_config::SdkConfig, conn: &Connection, region: Option<&str>) -> String {
    conn.endpoint_url
        .clone()
        .or_else(|| auth::configured_endpoint(sdk, "S3"))
        .unwrap_or_else(|| format!("AWS S3 ({})", region.unwrap_or("region not yet known")))
}
