//! [`ObjectStore`] over aws-sdk-s3: one shared client (one connection pool) for a bucket.

use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart as SdkPart, Delete, ObjectIdentifier,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::{Bytes, BytesMut};
use tracing::{debug, info, trace, warn};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{
    MetadataDirective, ObjectCannedAcl, RequestPayer, ServerSideEncryption, StorageClass, Tag,
    Tagging,
};

use aws_sdk_s3::operation::head_object::HeadObjectOutput;

use super::{
    CompletedPart, CopyMeta, ErrorKind, ListPage, MultipartUpload, ObjectDetails, ObjectHeaders,
    ObjectInfo, ObjectStore, PutOptions, PutResult, StoreError, UserMeta,
};

/// `bucket`, expected owner and requester-pays on an object request, then the key. The
/// SDK's request builders share no trait, hence macros.
///
/// Every request is traced (`--log-level trace`): one line with the SDK operation and key.
macro_rules! on_object {
    ($s:ident, $op:ident, $key:expr) => {{
        let key: &str = $key;
        trace!(op = stringify!($op), key, "S3 request");
        on_bucket!($s, $op).key(key)
    }};
}

/// `bucket`, expected owner and requester-pays on a bucket-level request.
macro_rules! on_bucket {
    ($s:ident, $op:ident) => {
        $s.client
            .$op()
            .bucket(&$s.bucket)
            .set_expected_bucket_owner($s.owner())
            .set_request_payer($s.payer())
    };
}

/// What every upload and copy carries: the ACL, then the storage class and server-side
/// encryption `$h` ([`ObjectHeaders`]) states, else the mount's.
macro_rules! with_upload_settings {
    ($s:ident, $req:expr, $h:expr) => {{
        let h: &ObjectHeaders = $h;
        let (sse, key, bucket_key) = $s.encryption(h);
        $req.set_acl($s.acl())
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(key)
            .set_bucket_key_enabled(bucket_key)
            .set_storage_class($s.storage_class(h))
    }};
}

/// The content headers of `$h` ([`ObjectHeaders`]), for an upload or a copy that replaces
/// the metadata.
macro_rules! with_content_headers {
    ($req:expr, $h:expr) => {{
        let h: &ObjectHeaders = $h;
        $req.content_type(h.content_type.as_deref().unwrap_or(DEFAULT_TYPE))
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_content_language(h.content_language.clone())
            .set_cache_control(h.cache_control.clone())
            .set_expires(expires(h))
    }};
}

/// Settings applied to every request (bucket owner, requester pays) or every upload (ACL,
/// encryption, storage class) of a mount.
#[derive(Clone, Debug, Default)]
pub struct StoreSettings {
    /// Canned ACL for new objects (e.g. `bucket-owner-full-control`).
    pub acl: Option<String>,
    /// Server-side encryption: `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// KMS key for `aws:kms`.
    pub sse_kms_key_id: Option<String>,
    /// Storage class for new objects.
    pub storage_class: Option<String>,
    /// Fail unless the bucket belongs to this account.
    pub expected_bucket_owner: Option<String>,
    /// Accept requester-pays charges.
    pub requester_pays: bool,
}

/// An S3 bucket reached through aws-sdk-s3.
///
/// Uploads are sent with `UNSIGNED-PAYLOAD`: SigV4 still signs every header, but the
/// SHA-256 of each body, which cost ~44% of our CPU on a sequential write, is not computed.
/// On https endpoints TLS protects the bytes in transit; on plain-http endpoints only TCP's
/// checksum does (the same trade-off `aws s3 cp` makes with its default settings).
#[derive(Clone, Debug)]
pub struct AwsStore {
    client: Client,
    bucket: String,
    settings: StoreSettings,
    features: Arc<Features>,
}

/// Optional parts of S3 a server may refuse: used until it does, then off for the rest of
/// the mount, said once in the log, and the refused request is sent again without.
#[derive(Debug)]
struct Optional {
    /// What the log calls it.
    what: &'static str,
    /// What the server's error message names when it is this that it refuses.
    hint: &'static str,
    /// What the mount does without it.
    without: &'static str,
    on: std::sync::atomic::AtomicBool,
}

impl Optional {
    const fn new(what: &'static str, hint: &'static str, without: &'static str) -> Self {
        Optional {
            what,
            hint,
            without,
            on: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `e` answered a request that used this: true when it says the server does not
    /// support it (then it is off from now on). A checksum *mismatch* or a failed condition
    /// is not this: those are answers, not refusals. The refusal must name this feature,
    /// or be a bare NotImplemented to a request that used no other (`alone`): a bare one
    /// to a request with two says nothing about which, and turning off the wrong one would
    /// cost the mount a safeguard silently, so that error is returned as it is.
    fn refused(&self, e: &StoreError, alone: bool) -> bool {
        let named = e
            .message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains(self.hint));
        let refused = e.kind == ErrorKind::InvalidRequest
            && (named || (alone && e.code.as_deref() == Some("NotImplemented")));
        if refused && self.on.swap(false, std::sync::atomic::Ordering::Relaxed) {
            warn!(
                op = e.op,
                key = %e.key,
                "the server refuses {}: {} from now on ({e})",
                self.what,
                self.without
            );
        }
        refused
    }
}

/// What a mount uses of the server's optional features, shared by its clones.
#[derive(Debug)]
struct Features {
    /// Uploads carry a CRC32C the server verifies (`x-amz-checksum-crc32c`). The SHA-256
    /// payload hash is not sent (see [`AwsStore`]); a CRC32C costs a small fraction of
    /// that, and lets the server refuse bytes damaged on the way, which it then gets again.
    checksums: Optional,
    /// Create-only uploads carry `If-None-Match: *`.
    conditional: Optional,
    /// Said once: the server does not echo checksums, so it may not check them.
    unconfirmed: std::sync::Once,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            checksums: Optional::new(
                "upload checksums (x-amz-checksum-crc32c)",
                "checksum",
                "uploads are sent without",
            ),
            conditional: Optional::new(
                "conditional writes (If-None-Match)",
                "if-none-match",
                "new files replace an object created meanwhile elsewhere",
            ),
            unconfirmed: std::sync::Once::new(),
        }
    }
}

impl Features {
    /// A successful upload that carried a checksum: when the server does not echo it, it
    /// probably did not check it either; said once.
    fn confirmed(&self, op: &str, echoed: Option<&str>) {
        if echoed.is_none() {
            self.unconfirmed.call_once(|| {
                info!(
                    op,
                    "the server does not confirm upload checksums: damaged uploads may go unnoticed by it"
                );
            });
        }
    }
}

/// The CRC32C of `body`, base64 as S3 headers carry it.
fn crc32c(body: &[u8]) -> String {
    let mut c = aws_smithy_checksums::ChecksumAlgorithm::Crc32c.into_impl();
    c.update(body);
    aws_smithy_types::base64::encode(c.finalize())
}

impl AwsStore {
    /// Wrap a configured client for `bucket`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        AwsStore {
            client,
            bucket: bucket.into(),
            settings: StoreSettings::default(),
            features: Arc::default(),
        }
    }

    /// The same store with the SDK's own retries off, for use under [`super::retry::Retrying`]
    /// (one retry loop, with a deadline, instead of two).
    pub fn without_sdk_retries(mut self) -> Self {
        let conf = self
            .client
            .config()
            .to_builder()
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        self.client = Client::from_conf(conf);
        self
    }

    /// Apply `settings` to every request from now on.
    pub fn with_settings(mut self, settings: StoreSettings) -> Self {
        self.settings = settings;
        self
    }

    async fn head_object(&self, key: &str) -> Result<HeadObjectOutput, StoreError> {
        on_object!(self, head_object, key)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("HeadObject", key, e))
    }

    fn payer(&self) -> Option<RequestPayer> {
        self.settings
            .requester_pays
            .then_some(RequestPayer::Requester)
    }

    fn owner(&self) -> Option<String> {
        self.settings.expected_bucket_owner.clone()
    }

    fn acl(&self) -> Option<ObjectCannedAcl> {
        self.settings.acl.as_deref().map(ObjectCannedAcl::from)
    }

    /// Encryption, KMS key and bucket-key flag: the object's when `h` states an encryption
    /// (never mixed with the mount's key), else the mount's `--sse`.
    fn encryption(
        &self,
        h: &ObjectHeaders,
    ) -> (Option<ServerSideEncryption>, Option<String>, Option<bool>) {
        match &h.server_side_encryption {
            Some(sse) => (
                Some(ServerSideEncryption::from(sse.as_str())),
                h.sse_kms_key_id.clone(),
                h.bucket_key_enabled,
            ),
            None => (
                self.settings.sse.as_deref().map(ServerSideEncryption::from),
                self.settings.sse_kms_key_id.clone(),
                None,
            ),
        }
    }

    fn storage_class(&self, h: &ObjectHeaders) -> Option<StorageClass> {
        h.storage_class
            .as_deref()
            .or(self.settings.storage_class.as_deref())
            .map(StorageClass::from)
    }

    /// The underlying client, for connection checks.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Content-Type of objects stored without one (as S3 does).
const DEFAULT_TYPE: &str = "application/octet-stream";

fn user_meta(opts: &PutOptions) -> Option<std::collections::HashMap<String, String>> {
    (!opts.meta.is_empty()).then(|| opts.meta.clone().into_iter().collect())
}

/// Expires as the SDK sends it; a value that is no HTTP date (any client can store one) is
/// not sent, as a copy could not be made otherwise.
fn expires(h: &ObjectHeaders) -> Option<aws_smithy_types::DateTime> {
    let text = h.expires.as_deref()?;
    let parsed =
        aws_smithy_types::DateTime::from_str(text, aws_smithy_types::date_time::Format::HttpDate);
    if parsed.is_err() {
        debug!(
            expires = text,
            "Expires is not an HTTP date: not carried over"
        );
    }
    parsed.ok()
}

/// The headers a HEAD returned; a storage class the server omits is `STANDARD`.
fn headers_of(out: &HeadObjectOutput) -> ObjectHeaders {
    let own = |v: Option<&str>| v.map(str::to_owned);
    ObjectHeaders {
        content_type: own(out.content_type()),
        content_encoding: own(out.content_encoding()),
        content_disposition: own(out.content_disposition()),
        content_language: own(out.content_language()),
        cache_control: own(out.cache_control()),
        expires: own(out.expires_string()),
        storage_class: Some(
            out.storage_class()
                .map_or("STANDARD", |c| c.as_str())
                .to_owned(),
        ),
        server_side_encryption: own(out.server_side_encryption().map(|e| e.as_str())),
        sse_kms_key_id: own(out.ssekms_key_id()),
        bucket_key_enabled: out.bucket_key_enabled(),
    }
}

/// `x-amz-copy-source` is `bucket/key` URL-encoded (slashes kept).
fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", crate::escape::percent_encode(key, b"-_.~/"))
}

fn to_system_time(t: Option<&aws_smithy_types::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Page size of listings that ask for the server's default, from the hidden environment
/// variable `S3MOUNT_TEST_LIST_MAX_KEYS`: the end-to-end tests of listings that span pages
/// use a few keys per page instead of uploading thousands. Unset (as for users), the server
/// decides (1,000 keys for S3).
fn test_page_size() -> Option<i32> {
    static SIZE: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        std::env::var("S3MOUNT_TEST_LIST_MAX_KEYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
    })
}

#[async_trait]
impl ObjectStore for AwsStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn get_overhead(&self) -> u64 {
        super::https::READ_BUFFER
    }

    async fn list(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, StoreError> {
        trace!(op = "list_objects_v2", prefix, "S3 request");
        let out = on_bucket!(self, list_objects_v2)
            .prefix(prefix)
            .set_delimiter(delimited.then(|| "/".to_owned()))
            .set_continuation_token(continuation)
            .set_max_keys(max_keys.or_else(test_page_size))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("ListObjectsV2", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: o.key()?.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    mtime: to_system_time(o.last_modified()),
                    etag: o.e_tag().map(str::to_owned),
                    meta: None,
                    headers: None,
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned))
            .collect();
        let next = if out.is_truncated().unwrap_or(false) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage {
            objects,
            prefixes,
            next,
        })
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let out = self.head_object(key).await?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            mtime: to_system_time(out.last_modified()),
            etag: out.e_tag().map(str::to_owned),
            meta: Some(
                out.metadata()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                            .collect::<UserMeta>()
                    })
                    .unwrap_or_default(),
            ),
            headers: Some(headers_of(&out)),
        })
    }

    async fn get_range_into(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        buf: &mut BytesMut,
    ) -> Result<(), StoreError> {
        if range.is_empty() {
            return Ok(());
        }
        let out = on_object!(self, get_object, key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(if_match.map(str::to_owned))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetObject", key, e))?;
        let expect =
            ranged_answer(&range, out.content_range(), out.content_length()).map_err(|why| {
                StoreError::with_message("GetObject", key.to_owned(), ErrorKind::Other, why)
            })?;
        let mut body = out.body;
        let mut got = 0u64;
        loop {
            match body.try_next().await {
                Ok(Some(frame)) => {
                    got += frame.len() as u64;
                    if got > expect {
                        return Err(StoreError::with_message(
                            "GetObject",
                            key.to_owned(),
                            ErrorKind::Other,
                            format!("the server sent more than the {expect} bytes it announced"),
                        ));
                    }
                    buf.extend_from_slice(&frame);
                }
                // A body that ends short is a cut connection: the retry layer resumes it.
                Ok(None) if got < expect => {
                    return Err(StoreError::with_message(
                        "GetObject",
                        key.to_owned(),
                        ErrorKind::Interrupted,
                        format!("the body ended after {got} of {expect} bytes"),
                    ));
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(StoreError::with_message(
                        "GetObject",
                        key.to_owned(),
                        ErrorKind::Interrupted,
                        format!("reading body: {}", DisplayErrorContext(&e)),
                    ));
                }
            }
        }
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        loop {
            let crc = self.features.checksums.on().then(|| crc32c(&body));
            let sent = crc.is_some();
            let condition = (opts.create_only && self.features.conditional.on()).then_some("*");
            let r = with_upload_settings!(
                self,
                with_content_headers!(on_object!(self, put_object, key), &opts.headers)
                    .set_metadata(user_meta(opts)),
                &opts.headers
            )
            .set_checksum_crc32_c(crc)
            .set_if_none_match(condition.map(str::to_owned))
            .body(ByteStream::from(body.clone()))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("PutObject", key, e));
            match r {
                Ok(out) => {
                    if sent {
                        self.features.confirmed("PutObject", out.checksum_crc32_c());
                    }
                    return Ok(PutResult {
                        etag: out.e_tag().map(str::to_owned),
                    });
                }
                Err(e) if sent && self.features.checksums.refused(&e, condition.is_none()) => {
                    continue;
                }
                Err(e) if condition.is_some() && self.features.conditional.refused(&e, !sent) => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Arc<dyn MultipartUpload>, StoreError> {
        let (out, checksums) = loop {
            let sent = self.features.checksums.on();
            let r = with_upload_settings!(
                self,
                with_content_headers!(
                    on_object!(self, create_multipart_upload, key),
                    &opts.headers
                )
                .set_metadata(user_meta(opts)),
                &opts.headers
            )
            .set_checksum_algorithm(sent.then_some(ChecksumAlgorithm::Crc32C))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("CreateMultipartUpload", key, e));
            match r {
                // The parts carry checksums exactly when the upload was started with them.
                Ok(out) => break (out, sent),
                Err(e) if sent && self.features.checksums.refused(&e, true) => continue,
                Err(e) => return Err(e),
            }
        };
        let id = out.upload_id().map(str::to_owned).ok_or_else(|| {
            StoreError::with_message(
                "CreateMultipartUpload",
                key.to_owned(),
                ErrorKind::Other,
                "response carried no upload id",
            )
        })?;
        Ok(Arc::new(AwsUpload {
            store: self.clone(),
            key: key.to_owned(),
            id,
            checksums,
            create_only: opts.create_only,
        }))
    }

    async fn copy_object(
        &self,
        src: &str,
        dst: &str,
        meta: CopyMeta<'_>,
        src_etag: Option<&str>,
    ) -> Result<PutResult, StoreError> {
        let req = on_object!(self, copy_object, dst)
            .copy_source(copy_source(&self.bucket, src))
            .set_copy_source_if_match(src_etag.map(str::to_owned));
        let req = match meta {
            CopyMeta::Replace(o) => with_upload_settings!(
                self,
                with_content_headers!(req, &o.headers)
                    .metadata_directive(MetadataDirective::Replace)
                    .set_metadata(Some(o.meta.clone().into_iter().collect())),
                &o.headers
            ),
            CopyMeta::Keep(h) => {
                with_upload_settings!(self, req.metadata_directive(MetadataDirective::Copy), h)
            }
        };
        let out = req
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("CopyObject", src, e))?;
        Ok(PutResult {
            etag: out
                .copy_object_result()
                .and_then(|r| r.e_tag())
                .map(str::to_owned),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        on_object!(self, delete_object, key)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("DeleteObject", key, e))?;
        Ok(())
    }
    async fn delete_many(&self, keys: &[String]) -> Result<Vec<StoreError>, StoreError> {
        let first = keys.first().map(String::as_str).unwrap_or_default();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        trace!(
            op = "delete_objects",
            first,
            count = keys.len(),
            "S3 request"
        );
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                StoreError::with_message("DeleteObjects", first, ErrorKind::Other, e.to_string())
            })?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| {
                StoreError::with_message("DeleteObjects", first, ErrorKind::Other, e.to_string())
            })?;
        let out = on_bucket!(self, delete_objects)
            .delete(delete)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("DeleteObjects", first, e))?;
        Ok(out
            .errors()
            .iter()
            .filter_map(|e| {
                let kind = super::error::classify(400, e.code());
                (kind != ErrorKind::NotFound).then(|| StoreError {
                    op: "DeleteObjects",
                    key: e.key().unwrap_or_default().to_owned(),
                    kind,
                    code: e.code().map(str::to_owned),
                    message: e.message().map(str::to_owned),
                })
            })
            .collect())
    }

    async fn details(&self, key: &str) -> Result<ObjectDetails, StoreError> {
        let out = self.head_object(key).await?;
        Ok(ObjectDetails {
            etag: out.e_tag().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
            storage_class: headers_of(&out).storage_class,
            content_type: out.content_type().map(str::to_owned),
        })
    }

    async fn get_tags(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let out = on_object!(self, get_object_tagging, key)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetObjectTagging", key, e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<(), StoreError> {
        let invalid = |m: String| {
            StoreError::with_message("PutObjectTagging", key, ErrorKind::InvalidRequest, m)
        };
        let tag_set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        on_object!(self, put_object_tagging, key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("PutObjectTagging", key, e))?;
        Ok(())
    }

    async fn presign_get(
        &self,
        key: &str,
        expires: std::time::Duration,
    ) -> Result<String, StoreError> {
        let fail = |m: String| {
            StoreError::with_message(
                "presign GetObject",
                key.to_owned(),
                ErrorKind::InvalidRequest,
                m,
            )
        };
        let config = PresigningConfig::expires_in(expires).map_err(|e| fail(e.to_string()))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .set_request_payer(self.payer())
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(req.uri().to_owned())
    }
}

/// A multipart upload through aws-sdk-s3.
struct AwsUpload {
    store: AwsStore,
    key: String,
    id: String,
    /// Started with CRC32C checksums: every part carries one, and the completion repeats them.
    checksums: bool,
    /// Completed with `If-None-Match: *` (see [`PutOptions::create_only`]).
    create_only: bool,
}

#[async_trait]
impl MultipartUpload for AwsUpload {
    fn key(&self) -> &str {
        &self.key
    }

    async fn put_part(&self, number: i32, body: Bytes) -> Result<CompletedPart, StoreError> {
        let (s, key) = (&self.store, self.key.as_str());
        let crc = self.checksums.then(|| crc32c(&body));
        let out = on_object!(s, upload_part, key)
            .upload_id(&self.id)
            .part_number(number)
            .set_checksum_crc32_c(crc.clone())
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("UploadPart", key, e))?;
        let etag = out.e_tag().map(str::to_owned).ok_or_else(|| {
            StoreError::with_message(
                "UploadPart",
                key.to_owned(),
                ErrorKind::Other,
                format!("part {number}: response carried no ETag"),
            )
        })?;
        if crc.is_some() {
            s.features.confirmed("UploadPart", out.checksum_crc32_c());
        }
        Ok(CompletedPart {
            number,
            etag,
            crc32c: crc,
        })
    }

    async fn copy_part(
        &self,
        number: i32,
        src: &str,
        range: Range<u64>,
        src_etag: Option<&str>,
    ) -> Result<CompletedPart, StoreError> {
        let (s, key) = (&self.store, self.key.as_str());
        let out = on_object!(s, upload_part_copy, key)
            .upload_id(&self.id)
            .part_number(number)
            .copy_source(copy_source(&s.bucket, src))
            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_copy_source_if_match(src_etag.map(str::to_owned))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("UploadPartCopy", key, e))?;
        // In an upload with checksums, the server computes the copied part's own.
        let crc32c = out
            .copy_part_result()
            .and_then(|r| r.checksum_crc32_c())
            .map(str::to_owned);
        let etag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned)
            .ok_or_else(|| {
                StoreError::with_message(
                    "UploadPartCopy",
                    key.to_owned(),
                    ErrorKind::Other,
                    format!("part {number}: response carried no ETag"),
                )
            })?;
        Ok(CompletedPart {
            number,
            etag,
            crc32c,
        })
    }

    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<PutResult, StoreError> {
        let (s, key) = (&self.store, self.key.as_str());
        let parts = parts
            .into_iter()
            .map(|p| {
                SdkPart::builder()
                    .part_number(p.number)
                    .e_tag(p.etag)
                    .set_checksum_crc32_c(p.crc32c)
                    .build()
            })
            .collect();
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let out = loop {
            let condition = (self.create_only && s.features.conditional.on()).then_some("*");
            let r = on_object!(s, complete_multipart_upload, key)
                .upload_id(&self.id)
                .multipart_upload(parts.clone())
                .set_if_none_match(condition.map(str::to_owned))
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("CompleteMultipartUpload", key, e));
            match r {
                Ok(out) => break out,
                Err(e) if condition.is_some() && s.features.conditional.refused(&e, true) => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(PutResult {
            etag: out.e_tag().map(str::to_owned),
        })
    }

    async fn abort(&self) -> Result<(), StoreError> {
        let (s, key) = (&self.store, self.key.as_str());
        on_object!(s, abort_multipart_upload, key)
            .upload_id(&self.id)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("AbortMultipartUpload", key, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_source_is_url_encoded() {
        assert_eq!(super::copy_source("b", "a dir/é+x"), "b/a%20dir/%C3%A9%2Bx");
    }
}

/// How many bytes a ranged GET's answer must carry, or why it cannot be used: the server
/// honoured the range (206 with a `Content-Range` that starts where asked and ends no
/// later — earlier only at the object's end), or, for a range from 0, sent a whole object
/// no longer than asked (200). A server or proxy that ignores `Range` or answers another
/// range would otherwise put wrong bytes at this offset of the file.
fn ranged_answer(
    asked: &Range<u64>,
    content_range: Option<&str>,
    content_length: Option<i64>,
) -> Result<u64, String> {
    let length = content_length.and_then(|l| u64::try_from(l).ok());
    let Some(cr) = content_range else {
        return match length {
            Some(l) if asked.start == 0 && l <= asked.end => Ok(l),
            _ => Err(format!(
                "the server ignored the range {}-{} (no Content-Range in its answer)",
                asked.start,
                asked.end - 1
            )),
        };
    };
    let parsed = cr
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('/'))
        .and_then(|(span, _total)| span.split_once('-'))
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((first, last))
            if first == asked.start
                && last >= first
                && last < asked.end
                && length.is_none_or(|l| l == last - first + 1) =>
        {
            Ok(last - first + 1)
        }
        _ => Err(format!(
            "asked for bytes {}-{}, the server answered Content-Range {cr:?}",
            asked.start,
            asked.end - 1
        )),
    }
}

#[cfg(test)]
mod range_tests {
    use super::ranged_answer;

    #[test]
    fn an_honoured_range_is_accepted() {
        assert_eq!(
            ranged_answer(&(100..200), Some("bytes 100-199/1000"), Some(100)),
            Ok(100)
        );
        assert_eq!(
            ranged_answer(&(100..200), Some("bytes 100-199/*"), None),
            Ok(100)
        );
        // Cut at the object's end.
        assert_eq!(
            ranged_answer(&(900..1100), Some("bytes 900-999/1000"), Some(100)),
            Ok(100)
        );
    }

    #[test]
    fn a_whole_body_is_accepted_only_from_offset_0_and_no_longer_than_asked() {
        assert_eq!(ranged_answer(&(0..4096), None, Some(1000)), Ok(1000));
        assert!(ranged_answer(&(0..100), None, Some(1000)).is_err());
        assert!(ranged_answer(&(100..200), None, Some(1000)).is_err());
        assert!(ranged_answer(&(100..200), None, None).is_err());
    }

    #[test]
    fn another_range_or_garbage_is_refused() {
        for cr in [
            "bytes 0-99/1000",
            "bytes 101-200/1000",
            "bytes 100-299/1000",
            "bytes 150-120/1000",
            "bytes */1000",
            "items 100-199/1000",
            "bytes 100-199",
            "",
        ] {
            assert!(
                ranged_answer(&(100..200), Some(cr), Some(100)).is_err(),
                "{cr}"
            );
        }
        // A length that contradicts the range.
        assert!(ranged_answer(&(100..200), Some("bytes 100-199/1000"), Some(1000)).is_err());
    }
}
