//! Account-level operations for the buckets view: ListBuckets, CreateBucket, DeleteBucket,
//! and a store per bucket in the bucket's own region; and S3's bucket naming rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use super::client::{AwsStore, StoreSettings};
use super::connect::{ConnectError, Connector};
use super::connection::Connection;
use super::retry::{RetryPolicy, Retrying};
use super::{ObjectStore, StoreError, region};

/// Account-level operations, the seam under the buckets view.
#[async_trait]
pub trait BucketService: Send + Sync + 'static {
    /// ListBuckets: names and creation times.
    async fn list_buckets(&self) -> Result<Vec<(String, SystemTime)>, StoreError>;
    /// A store for `bucket`, in the bucket's own region.
    async fn open_bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError>;
    /// CreateBucket.
    async fn create_bucket(&self, bucket: &str) -> Result<(), StoreError>;
    /// DeleteBucket (fails when not empty).
    async fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError>;
}

/// S3's bucket naming rules (the subset every S3-compatible server accepts); the error says
/// which rule `b` breaks.
pub fn validate_bucket_name(b: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid bucket name '{b}': {why}"));
    if b.is_empty() {
        return bad("empty (expected BUCKET[/PREFIX])");
    }
    if b.len() < 3 || b.len() > 63 {
        return bad("must be 3 to 63 characters long");
    }
    if !b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return bad("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let first = b.as_bytes()[0];
    let last = b.as_bytes()[b.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return bad("must start and end with a letter or digit");
    }
    if b.contains("..") {
        return bad("must not contain '..'");
    }
    if b.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not look like an IP address");
    }
    Ok(())
}

/// Every bucket the credentials can see.
pub struct AwsBuckets {
    sdk: SdkConfig,
    conn: Connection,
    /// Region for ListBuckets and CreateBucket (`--region`, else the environment's).
    home: String,
    settings: StoreSettings,
    retry: RetryPolicy,
    clients: Mutex<HashMap<String, aws_sdk_s3::Client>>,
}

impl AwsBuckets {
    fn client(&self, region: &str) -> aws_sdk_s3::Client {
        self.clients
            .lock()
            .unwrap()
            .entry(region.to_owned())
            .or_insert_with(|| region::s3_client(&self.sdk, &self.conn, region))
            .clone()
    }

    async fn bucket_region(&self, bucket: &str) -> Result<String, StoreError> {
        let mut auto = self.conn.clone();
        auto.region = None;
        region::detect(&self.sdk, &auto, bucket).await
    }

    /// The home region.
    pub fn home(&self) -> &str {
        &self.home
    }
}

/// Resolve credentials and prove ListBuckets works (the buckets view needs
/// s3:ListAllMyBuckets).
pub async fn connect(
    conn: &Connection,
    settings: StoreSettings,
    retry: RetryPolicy,
) -> Result<(AwsBuckets, String), ConnectError> {
    let c = Connector::start(conn).await?;
    let b = AwsBuckets {
        sdk: c.sdk_config().clone(),
        conn: conn.clone(),
        home: c.home_region(),
        settings,
        retry,
        clients: Mutex::new(HashMap::new()),
    };
    if let Err(e) = b.list_buckets().await {
        let why = match e.kind {
            super::ErrorKind::AccessDenied if !super::diagnose::is_credential_problem(&e) => {
                format!(
                    "listing the buckets was refused: the buckets view needs \
                     s3:ListAllMyBuckets on * ({}); run `s3mount check` to see what is granted",
                    e.code.as_deref().unwrap_or("AccessDenied")
                )
            }
            _ => super::diagnose::store(
                &e,
                &super::connection::Target {
                    bucket: String::new(),
                    prefix: String::new(),
                },
                &c.endpoint(Some(&b.home)),
            ),
        };
        return Err(ConnectError(why));
    }
    Ok((b, c.credentials().to_owned()))
}

#[async_trait]
impl BucketService for AwsBuckets {
    async fn list_buckets(&self) -> Result<Vec<(String, SystemTime)>, StoreError> {
        let out = self
            .client(&self.home)
            .list_buckets()
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("ListBuckets", "", e))?;
        Ok(out
            .buckets()
            .iter()
            .filter_map(|b| {
                let created = b
                    .creation_date()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some((b.name()?.to_owned(), created))
            })
            .collect())
    }

    async fn open_bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let region = self.bucket_region(bucket).await?;
        let store = AwsStore::new(self.client(&region), bucket)
            .with_settings(self.settings.clone())
            .without_sdk_retries();
        Ok(Arc::new(Retrying::new(Arc::new(store), self.retry)))
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let mut req = self.client(&self.home).create_bucket().bucket(bucket);
        if self.home != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.home.as_str()))
                    .build(),
            );
        }
        req.send()
            .await
            .map_err(|e| StoreError::from_sdk("CreateBucket", bucket, e))?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let region = self.bucket_region(bucket).await?;
        self.client(&region)
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("DeleteBucket", bucket, e))?;
        Ok(())
    }
}
