//! Bucket region discovery and the one place that builds the S3 client.
//!
//! S3 tells the bucket's region in the `x-amz-bucket-region` header of HeadBucket, on
//! success *and* on the 301/400/403 answers a wrong region or missing permission produce, so
//! one HeadBucket is enough whatever the caller may do.

use aws_config::{Region, SdkConfig};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::SdkError;
use tracing::debug;

use super::auth::FALLBACK_REGION;
use super::connection::Connection;
use super::{ErrorKind, StoreError};

/// Build an S3 client for `region` from resolved credentials and the connection settings.
///
/// Checksums are computed and validated only where S3 requires them: ranged GETs cannot be
/// validated anyway, and on uploads SigV4 already signs the payload hash on plain HTTP while
/// TLS protects it on HTTPS.
pub fn s3_client(sdk: &SdkConfig, conn: &Connection, region: &str) -> aws_sdk_s3::Client {
    // An endpoint from the profile (`endpoint_url`, `services`) or the environment needs
    // path style on the same terms as one from the flag.
    let path_style = conn.force_path_style
        || (conn.endpoint_url.is_none()
            && super::auth::configured_endpoint(sdk, "S3")
                .is_some_and(|u| super::connection::endpoint_needs_path_style(&u)));
    let mut b = aws_sdk_s3::config::Builder::from(sdk)
        .region(Region::new(region.to_owned()))
        .force_path_style(path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(url) = &conn.endpoint_url {
        b = b.endpoint_url(url);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

/// The region to use for `bucket`: `--region` when given, else what HeadBucket reports,
/// else the environment's/profile's region, else `us-east-1`.
///
/// Only an unreachable endpoint is an error here; anything else (no HeadBucket permission,
/// no such bucket) is left for the bucket check to explain.
pub async fn detect(
    sdk: &SdkConfig,
    conn: &Connection,
    bucket: &str,
) -> Result<String, StoreError> {
    if let Some(r) = &conn.region {
        return Ok(r.clone());
    }
    let provisional = sdk
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_else(|| FALLBACK_REGION.to_owned());
    let client = s3_client(sdk, conn, &provisional);
    let header = match client.head_bucket().bucket(bucket).send().await {
        Ok(out) => out.bucket_region().map(str::to_owned),
        Err(e) => {
            let header = match &e {
                SdkError::ServiceError(ctx) => ctx
                    .raw()
                    .headers()
                    .get("x-amz-bucket-region")
                    .map(str::to_owned),
                _ => None,
            };
            let err = StoreError::from_sdk("HeadBucket", bucket, e);
            if matches!(err.kind, ErrorKind::Unreachable | ErrorKind::Timeout) {
                return Err(err);
            }
            debug!(error = %err, "HeadBucket for region detection failed");
            header
        }
    };
    Ok(header.unwrap_or(provisional))
}
