//! The only code that speaks S3.
//!
//! [`ObjectStore`] is the one small trait the filesystem core depends on; [`client::AwsStore`]
//! implements it with aws-sdk-s3 and [`memory::MemoryStore`] in memory for unit and property
//! tests. Everything else in this folder is about *connecting*: credentials ([`auth`]) and the
//! bucket's region ([`region`]). Nothing here knows about inodes or FUSE.

pub mod auth;
pub mod buckets;
pub mod client;
pub mod conformance;
pub mod connect;
pub mod connection;
pub mod diagnose;
pub mod error;
pub mod faulty;
pub mod https;
pub mod memory;
pub mod profile;
pub mod region;
pub mod retry;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;

pub use error::{ErrorKind, StoreError};

/// What the store knows of one object, as listed or HEADed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full key, including any mount prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last-Modified as reported by the server.
    pub mtime: SystemTime,
    /// ETag, quotes included, exactly as the server sent it (used for `If-Match`).
    pub etag: Option<String>,
    /// User metadata (`x-amz-meta-*`, names lowercased without the prefix); `None` when
    /// unknown (listings carry none).
    pub meta: Option<UserMeta>,
    /// The stored headers (HEAD only; listings carry none): what a copy must restate.
    pub headers: Option<ObjectHeaders>,
}

/// The headers S3 stores with an object besides its user metadata.
///
/// A CopyObject that replaces the metadata (chmod, chown, touch) keeps none of them unless
/// they are sent again, and even one that copies the metadata (rename) drops the storage
/// class and the encryption settings, so every copy carries them from a HEAD of the source.
/// On puts and copies, a `None` storage class or encryption means "the mount's
/// `--storage-class` / `--sse`" (those flags are for what the mount writes); a HEAD states
/// `STANDARD` when the server omits the class, so a copy keeps the source's class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// Content-Type (`None`: application/octet-stream).
    pub content_type: Option<String>,
    /// Content-Encoding.
    pub content_encoding: Option<String>,
    /// Content-Disposition.
    pub content_disposition: Option<String>,
    /// Content-Language.
    pub content_language: Option<String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
    /// Expires, as the HTTP date the server sent.
    pub expires: Option<String>,
    /// Storage class (`STANDARD`, `STANDARD_IA`, ...).
    pub storage_class: Option<String>,
    /// Server-side encryption: `AES256` or `aws:kms`.
    pub server_side_encryption: Option<String>,
    /// KMS key of an `aws:kms` object.
    pub sse_kms_key_id: Option<String>,
    /// Whether an `aws:kms` object uses an S3 Bucket Key.
    pub bucket_key_enabled: Option<bool>,
}

/// How a copy sets the new object's headers and metadata.
#[derive(Clone, Copy, Debug)]
pub enum CopyMeta<'a> {
    /// As the source has them: the server copies the metadata and content headers
    /// (MetadataDirective COPY); the storage class and encryption, which it does not copy,
    /// are sent from these (the source's) headers.
    Keep(&'a ObjectHeaders),
    /// Exactly these instead (MetadataDirective REPLACE): every header is sent.
    Replace(&'a PutOptions),
}

/// What HeadObject says beyond [`ObjectInfo`] (for the `user.s3.*` extended attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectDetails {
    /// ETag.
    pub etag: Option<String>,
    /// Version id (versioned buckets).
    pub version_id: Option<String>,
    /// Storage class (`STANDARD` when the server omits it).
    pub storage_class: Option<String>,
    /// Content-Type.
    pub content_type: Option<String>,
}

/// User metadata of an object: `x-amz-meta-NAME: value`, keyed by NAME in lowercase.
pub type UserMeta = BTreeMap<String, String>;

/// What to store along with an object's body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Content-Type, other content headers, storage class and encryption.
    pub headers: ObjectHeaders,
    /// User metadata.
    pub meta: UserMeta,
    /// Create only (`If-None-Match: *` on PutObject and CompleteMultipartUpload): fail with
    /// [`ErrorKind::PreconditionFailed`] instead of replacing an object that exists, so a
    /// writer elsewhere is not silently overwritten (`O_EXCL`, `--no-overwrite`).
    pub create_only: bool,
}

impl PutOptions {
    /// Options with only a Content-Type (the mount's settings for the rest).
    pub fn typed(content_type: impl Into<String>) -> Self {
        PutOptions {
            headers: ObjectHeaders {
                content_type: Some(content_type.into()),
                ..ObjectHeaders::default()
            },
            meta: UserMeta::new(),
            create_only: false,
        }
    }
}

/// Most keys one DeleteObjects request may name.
pub const MAX_DELETE_BATCH: usize = 1000;

/// Largest object a single CopyObject may copy (5 GiB); larger ones use UploadPartCopy.
pub const MAX_COPY: u64 = 5 << 30;

/// One page of a ListObjectsV2 call with `/` as delimiter.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Objects directly under the listed prefix.
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes (full keys ending in `/`): the sub-directories.
    pub prefixes: Vec<String>,
    /// Continuation token for the next page, `None` on the last page.
    pub next: Option<String>,
}

/// Result of a successful upload.
#[derive(Clone, Debug)]
pub struct PutResult {
    /// ETag of the new object, when the server returned one.
    pub etag: Option<String>,
}

/// One uploaded part of a multipart upload.
#[derive(Clone, Debug)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: i32,
    /// ETag the server returned for this part.
    pub etag: String,
    /// Its CRC32C (base64), which CompleteMultipartUpload must repeat when the upload was
    /// started with checksums.
    pub crc32c: Option<String>,
}

/// Every page of a listing, fetched one page at a time as the stream is polled.
pub type ListStream<'a> = BoxStream<'a, Result<ListPage, StoreError>>;

/// A multipart upload under way: parts go in (uploaded, or copied server-side from another
/// object), then it is completed or aborted. Parts may be sent concurrently; the upload
/// object is shared between the tasks sending them.
#[async_trait]
pub trait MultipartUpload: Send + Sync {
    /// The key being written.
    fn key(&self) -> &str;

    /// UploadPart of `body` as part `number` (1-based).
    async fn put_part(&self, number: i32, body: Bytes) -> Result<CompletedPart, StoreError>;

    /// UploadPartCopy of `range` (end exclusive) of `src` as part `number`, only while the
    /// source's ETag is `src_etag` when given.
    async fn copy_part(
        &self,
        number: i32,
        src: &str,
        range: Range<u64>,
        src_etag: Option<&str>,
    ) -> Result<CompletedPart, StoreError>;

    /// CompleteMultipartUpload with `parts` in order: the object appears.
    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<PutResult, StoreError>;

    /// AbortMultipartUpload: the parts are discarded, nothing appears.
    async fn abort(&self) -> Result<(), StoreError>;
}

/// Size of each UploadPartCopy when an object too large for CopyObject is copied.
const COPY_PART: u64 = 512 << 20;

/// The object-store operations the filesystem needs, on one bucket.
///
/// Keys are full keys (the mount prefix already applied by the caller). Every error carries
/// the operation and key so that it can be logged once where it becomes an errno. The
/// provided methods ([`ObjectStore::list_all`], [`ObjectStore::copy`]) hold the S3 mechanics
/// (pagination, CopyObject or UploadPartCopy) so that no caller repeats them.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// The bucket this store talks to (for messages only).
    fn bucket(&self) -> &str;

    /// Memory a GET in flight holds besides the bytes it returns: the read buffer of its
    /// HTTP connection. Readers count it in the memory budget, so that many small GETs at
    /// once cannot hold more than the budget says (none for a store without connections).
    fn get_overhead(&self) -> u64 {
        0
    }

    /// One page of ListObjectsV2 under `prefix`, with `/` as delimiter when `delimited`
    /// (else every key below the prefix, as objects).
    async fn list(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, StoreError>;

    /// HeadObject.
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError>;

    /// GetObject of `range` (end exclusive) appended to `buf` as it arrives. With
    /// `if_match`, fails with [`ErrorKind::PreconditionFailed`] when the object changed.
    /// When the response breaks off, `buf` keeps what was received, so a retry can
    /// continue from there (with the same `if_match`) instead of starting over.
    async fn get_range_into(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        buf: &mut BytesMut,
    ) -> Result<(), StoreError>;

    /// GetObject of `range` (end exclusive) into a buffer of the exact size (see
    /// [`ObjectStore::get_range_into`]).
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        let mut buf = BytesMut::with_capacity(range.end.saturating_sub(range.start) as usize);
        self.get_range_into(key, range, if_match, &mut buf).await?;
        Ok(buf.freeze())
    }

    /// PutObject of a whole body.
    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions)
    -> Result<PutResult, StoreError>;

    /// CreateMultipartUpload: an upload object to send the parts through.
    async fn start_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Arc<dyn MultipartUpload>, StoreError>;

    /// CopyObject `src` (at most [`MAX_COPY`] bytes) to `dst` with headers and metadata as
    /// `meta` says, only while the source's ETag is `src_etag` when given. Callers use
    /// [`ObjectStore::copy`].
    async fn copy_object(
        &self,
        src: &str,
        dst: &str,
        meta: CopyMeta<'_>,
        src_etag: Option<&str>,
    ) -> Result<PutResult, StoreError>;

    /// DeleteObject (succeeds when the key does not exist, as S3 does).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// DeleteObjects: delete up to [`MAX_DELETE_BATCH`] keys in one request. Returns the
    /// keys that could not be deleted, each with its error (a key that does not exist
    /// counts as deleted); `Err` when the request as a whole failed.
    async fn delete_many(&self, keys: &[String]) -> Result<Vec<StoreError>, StoreError>;

    /// HeadObject details: version, storage class, content type.
    async fn details(&self, key: &str) -> Result<ObjectDetails, StoreError>;

    /// GetObjectTagging, in order.
    async fn get_tags(&self, key: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// PutObjectTagging (replaces all tags).
    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<(), StoreError>;

    /// A presigned GET URL valid for `expires`.
    async fn presign_get(
        &self,
        key: &str,
        expires: std::time::Duration,
    ) -> Result<String, StoreError>;

    /// Every page of the listing under `prefix` (see [`ObjectStore::list`]), as a stream:
    /// pagination is the store's business, not the caller's.
    fn list_all<'a>(&'a self, prefix: &'a str, delimited: bool) -> ListStream<'a> {
        // State: the continuation token (`None` once the last page was returned), and the
        // tokens already used: a server that hands one out again would make a listing that
        // never ends.
        futures::stream::try_unfold(
            (Some(None), std::collections::HashSet::new()),
            move |(token, mut seen): (
                Option<Option<String>>,
                std::collections::HashSet<String>,
            )| async move {
                let Some(token) = token else {
                    return Ok(None);
                };
                let page = self.list(prefix, delimited, token, None).await?;
                if let Some(next) = &page.next
                    && !seen.insert(next.clone())
                {
                    return Err(StoreError::with_message(
                        "ListObjectsV2",
                        prefix.to_owned(),
                        ErrorKind::Other,
                        "the server repeated a continuation token (the listing would never end)",
                    ));
                }
                let next = page.next.clone().map(Some);
                Ok(Some((page, (next, seen))))
            },
        )
        .boxed()
    }

    /// Copy `src` to `dst`, keeping its headers and metadata or replacing them with
    /// `opts` (which must then state every header to keep: see [`ObjectHeaders`]).
    /// CopyObject up to 5 GiB, a multipart upload of UploadPartCopy parts above.
    ///
    /// Keeping costs a HEAD of the source first: S3 copies neither the storage class nor
    /// the encryption, so they are read and sent. The copy is conditional on the ETag that
    /// HEAD saw (headers and body of one version), and HEAD and copy are redone when the
    /// source changed in between. Replacing an object up to `size_hint` <= 5 GiB (what the
    /// caller believes the size is) needs no HEAD. Returns the new object's ETag.
    async fn copy(
        &self,
        src: &str,
        dst: &str,
        size_hint: u64,
        opts: Option<&PutOptions>,
    ) -> Result<PutResult, StoreError> {
        if let Some(o) = opts
            && size_hint <= MAX_COPY
        {
            return self.copy_object(src, dst, CopyMeta::Replace(o), None).await;
        }
        Ok(copy_headed(self, src, dst, &|_| opts.cloned()).await?.0)
    }

    /// Copy `src` to `dst` with its headers and metadata restated as a HEAD of the source
    /// shows them and then changed by `edit` (MetadataDirective REPLACE: a rename that must
    /// change one value, such as ctime, yet keep every header and other clients'
    /// metadata). Conditional on that HEAD's ETag, so what is restated belongs to the
    /// version copied; redone when the source changed in between. Returns the new object's
    /// ETag and the options it was written with.
    async fn copy_restated(
        &self,
        src: &str,
        dst: &str,
        edit: &(dyn for<'o> Fn(&'o mut PutOptions) + Send + Sync),
    ) -> Result<(PutResult, PutOptions), StoreError> {
        let (put, opts) = copy_headed(self, src, dst, &|info| {
            let mut opts = PutOptions {
                headers: info.headers.clone().unwrap_or_default(),
                meta: info.meta.clone().unwrap_or_default(),
                create_only: false,
            };
            edit(&mut opts);
            Some(opts)
        })
        .await?;
        Ok((put, opts.expect("options made for every attempt")))
    }
}

/// HEAD `src`, then copy it to `dst` conditionally on the ETag seen, with the options
/// `opts` makes of that HEAD (`None`: the source's own, MetadataDirective COPY); redone
/// when the source changed in between. CopyObject up to 5 GiB, UploadPartCopy parts above.
/// Returns the new object's ETag and the options made for the copy that succeeded.
async fn copy_headed<S: ObjectStore + ?Sized>(
    store: &S,
    src: &str,
    dst: &str,
    opts: &(dyn Fn(&ObjectInfo) -> Option<PutOptions> + Send + Sync),
) -> Result<(PutResult, Option<PutOptions>), StoreError> {
    let mut attempt = 1;
    loop {
        let info = store.head(src).await?;
        let opts = opts(&info);
        let r = if info.size <= MAX_COPY {
            let headers = info.headers.clone().unwrap_or_default();
            let meta = match &opts {
                Some(o) => CopyMeta::Replace(o),
                None => CopyMeta::Keep(&headers),
            };
            store
                .copy_object(src, dst, meta, info.etag.as_deref())
                .await
        } else {
            let stated = opts.clone().unwrap_or_else(|| PutOptions {
                headers: info.headers.clone().unwrap_or_default(),
                meta: info.meta.clone().unwrap_or_default(),
                create_only: false,
            });
            copy_parts(store, src, dst, &info, &stated).await
        };
        match r {
            Err(e) if e.kind == ErrorKind::PreconditionFailed && attempt < COPY_ATTEMPTS => {
                attempt += 1;
            }
            r => return r.map(|put| (put, opts)),
        }
    }
}

/// How often [`ObjectStore::copy`] HEADs and copies a source that keeps changing.
const COPY_ATTEMPTS: u32 = 3;

/// Copy `info` (the source's HEAD) to `dst` as a multipart upload of UploadPartCopy parts,
/// each conditional on the HEAD's ETag; the upload is aborted on failure.
async fn copy_parts<S: ObjectStore + ?Sized>(
    store: &S,
    src: &str,
    dst: &str,
    info: &ObjectInfo,
    opts: &PutOptions,
) -> Result<PutResult, StoreError> {
    let upload = store.start_multipart(dst, opts).await?;
    let mut parts = Vec::new();
    let mut start = 0;
    while start < info.size {
        let end = (start + COPY_PART).min(info.size);
        let number = parts.len() as i32 + 1;
        match upload
            .copy_part(number, src, start..end, info.etag.as_deref())
            .await
        {
            Ok(p) => parts.push(p),
            Err(e) => {
                let _ = upload.abort().await;
                return Err(e);
            }
        }
        start = end;
    }
    match upload.complete(parts).await {
        Ok(put) => Ok(put),
        Err(e) => {
            let _ = upload.abort().await;
            Err(e)
        }
    }
}
