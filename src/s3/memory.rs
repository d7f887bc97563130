//! An in-memory [`ObjectStore`] with S3's listing semantics, for unit and property tests of
//! the filesystem core. It also counts requests per operation so tests can assert how many
//! calls a filesystem operation costs.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{
    CompletedPart, CopyMeta, ErrorKind, ListPage, MAX_COPY, MultipartUpload, ObjectHeaders,
    ObjectInfo, ObjectStore, PutOptions, PutResult, StoreError, UserMeta,
};

#[derive(Clone)]
struct Object {
    body: Bytes,
    etag: String,
    mtime: SystemTime,
    meta: UserMeta,
    headers: ObjectHeaders,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Object>,
    uploads: HashMap<String, (String, PutOptions, BTreeMap<i32, Bytes>)>,
    tags: HashMap<String, Vec<(String, String)>>,
    counts: HashMap<&'static str, u64>,
}

/// Content-Type of objects stored without one (as S3 does).
const DEFAULT_TYPE: &str = "application/octet-stream";

/// The headers S3 would store from an upload stating `h`: the default type when none is
/// given, the storage class only when not STANDARD (a HEAD then omits it, as S3's does).
fn as_stored(h: &ObjectHeaders) -> ObjectHeaders {
    let mut h = h.clone();
    h.content_type
        .get_or_insert_with(|| DEFAULT_TYPE.to_owned());
    if h.storage_class.as_deref() == Some("STANDARD") {
        h.storage_class = None;
    }
    h
}

/// What a HEAD reports of stored headers: STANDARD when no class is stored.
fn reported(h: &ObjectHeaders) -> ObjectHeaders {
    let mut h = h.clone();
    h.storage_class.get_or_insert_with(|| "STANDARD".to_owned());
    h
}

/// A part's ETag as S3 computes it: the MD5 of its bytes, quoted.
fn md5_etag(body: &[u8]) -> String {
    use md5::Digest;
    let hex: String = md5::Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

/// What the store and its multipart uploads share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// How long each UploadPart takes (0: no wait), so that tests can see parts overlap.
    part_latency_ms: AtomicU64,
    /// UploadParts running now, and the most that ever ran at once.
    parts_running: AtomicU64,
    parts_peak: AtomicU64,
    /// An UploadPart of this part number fails (0: none), as a server error would.
    failing_part: std::sync::atomic::AtomicI32,
    /// What [`ObjectStore::get_overhead`] answers (a connection's buffer, as a real client has).
    get_overhead: AtomicU64,
}

impl Shared {
    fn etag(&self) -> String {
        format!("\"{}\"", self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn tick(&self, op: &'static str) -> std::sync::MutexGuard<'_, State> {
        let mut st = self.state.lock().unwrap();
        *st.counts.entry(op).or_default() += 1;
        st
    }
}

/// A bucket held in memory.
pub struct MemoryStore {
    bucket: String,
    shared: Arc<Shared>,
    page_size: usize,
}

/// A multipart upload into a [`MemoryStore`].
struct MemoryUpload {
    shared: Arc<Shared>,
    key: String,
    id: String,
}

impl MemoryStore {
    /// An empty bucket whose listings return at most `page_size` entries per page.
    pub fn new(bucket: &str, page_size: usize) -> Self {
        MemoryStore {
            bucket: bucket.to_owned(),
            shared: Arc::default(),
            page_size: page_size.max(1),
        }
    }

    /// Make every UploadPart take `latency` (as a network would), so that a test can tell
    /// parts sent one at a time from parts sent together ([`MemoryStore::parts_peak`]).
    pub fn set_part_latency(&self, latency: std::time::Duration) {
        self.shared
            .part_latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Make every UploadPart of part `number` fail with a server error (0: none again).
    pub fn fail_part(&self, number: i32) {
        self.shared.failing_part.store(number, Ordering::Relaxed);
    }

    /// Answer `bytes` to [`ObjectStore::get_overhead`], as a store with HTTP connections does.
    pub fn set_get_overhead(&self, bytes: u64) {
        self.shared.get_overhead.store(bytes, Ordering::Relaxed);
    }

    /// The most UploadParts that were ever in progress at once.
    pub fn parts_peak(&self) -> u64 {
        self.shared.parts_peak.load(Ordering::Relaxed)
    }

    /// Store an object directly (as another client would).
    pub fn insert(&self, key: &str, body: impl Into<Bytes>) {
        let etag = self.etag();
        self.state().objects.insert(
            key.to_owned(),
            Object {
                body: body.into(),
                etag,
                mtime: SystemTime::now(),
                meta: UserMeta::new(),
                headers: as_stored(&ObjectHeaders::default()),
            },
        );
    }

    /// Store an object with user metadata (as another client, e.g. s3fs, would).
    pub fn insert_with_meta(&self, key: &str, body: impl Into<Bytes>, meta: UserMeta) {
        self.insert(key, body);
        if let Some(o) = self.state().objects.get_mut(key) {
            o.meta = meta;
        }
    }

    /// Store an object with headers and user metadata (as another client would).
    pub fn insert_with(&self, key: &str, body: impl Into<Bytes>, opts: &PutOptions) {
        self.insert_with_meta(key, body, opts.meta.clone());
        if let Some(o) = self.state().objects.get_mut(key) {
            o.headers = as_stored(&opts.headers);
        }
    }

    /// User metadata of an object, if present.
    pub fn meta(&self, key: &str) -> Option<UserMeta> {
        let st = self.state();
        st.objects.get(key).map(|o| o.meta.clone())
    }

    /// The body of an object, if present.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let st = self.state();
        st.objects.get(key).map(|o| o.body.clone())
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.state().objects.keys().cloned().collect()
    }

    /// Number of multipart uploads started and neither completed nor aborted.
    pub fn pending_uploads(&self) -> usize {
        self.state().uploads.len()
    }

    /// How many requests of operation `op` (e.g. `"HeadObject"`) were made.
    pub fn count(&self, op: &str) -> u64 {
        let st = self.state();
        st.counts.get(op).copied().unwrap_or(0)
    }

    fn etag(&self) -> String {
        self.shared.etag()
    }

    fn tick(&self, op: &'static str) -> std::sync::MutexGuard<'_, State> {
        self.shared.tick(op)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn get_overhead(&self) -> u64 {
        self.shared.get_overhead.load(Ordering::Relaxed)
    }

    async fn list(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, StoreError> {
        let st = self.tick("ListObjectsV2");
        let limit = max_keys
            .map(|m| m.max(1) as usize)
            .unwrap_or(usize::MAX)
            .min(self.page_size);
        let after = continuation.unwrap_or_default();
        // Entries in key order: an object directly under `prefix`, or the common prefix that
        // stands for everything below one sub-directory. The token is the last entry's key.
        let mut entries: Vec<(String, Option<ObjectInfo>)> = Vec::new();
        for (key, obj) in st.objects.range(prefix.to_owned()..) {
            if !key.starts_with(prefix) {
                break;
            }
            let rest = &key[prefix.len()..];
            let entry = match rest.find('/').filter(|_| delimited) {
                Some(i) => (format!("{prefix}{}", &rest[..=i]), None),
                None => (
                    key.clone(),
                    Some(ObjectInfo {
                        key: key.clone(),
                        size: obj.body.len() as u64,
                        mtime: obj.mtime,
                        etag: Some(obj.etag.clone()),
                        meta: None,
                        headers: None,
                    }),
                ),
            };
            if entry.0 <= after || entries.last().is_some_and(|l| l.0 == entry.0) {
                continue;
            }
            entries.push(entry);
        }
        let mut page = ListPage::default();
        if entries.len() > limit {
            page.next = Some(entries[limit - 1].0.clone());
            entries.truncate(limit);
        }
        for (key, obj) in entries {
            match obj {
                Some(o) => page.objects.push(o),
                None => page.prefixes.push(key),
            }
        }
        Ok(page)
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let st = self.tick("HeadObject");
        let o = st
            .objects
            .get(key)
            .ok_or_else(|| StoreError::new("HeadObject", key, ErrorKind::NotFound))?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: o.body.len() as u64,
            mtime: o.mtime,
            etag: Some(o.etag.clone()),
            meta: Some(o.meta.clone()),
            headers: Some(reported(&o.headers)),
        })
    }

    async fn get_range_into(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        buf: &mut BytesMut,
    ) -> Result<(), StoreError> {
        let st = self.tick("GetObject");
        let o = st
            .objects
            .get(key)
            .ok_or_else(|| StoreError::new("GetObject", key, ErrorKind::NotFound))?;
        if if_match.is_some_and(|e| e != o.etag) {
            return Err(StoreError::new(
                "GetObject",
                key,
                ErrorKind::PreconditionFailed,
            ));
        }
        let len = o.body.len() as u64;
        let start = range.start.min(len) as usize;
        let end = range.end.min(len) as usize;
        buf.extend_from_slice(&o.body[start..end]);
        Ok(())
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        let etag = self.etag();
        let mut st = self.tick("PutObject");
        if opts.create_only && st.objects.contains_key(key) {
            return Err(StoreError::new(
                "PutObject",
                key,
                ErrorKind::PreconditionFailed,
            ));
        }
        st.objects.insert(
            key.to_owned(),
            Object {
                body,
                etag: etag.clone(),
                mtime: SystemTime::now(),
                meta: opts.meta.clone(),
                headers: as_stored(&opts.headers),
            },
        );
        Ok(PutResult { etag: Some(etag) })
    }

    async fn start_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Arc<dyn MultipartUpload>, StoreError> {
        let id = format!(
            "upload-{}",
            self.shared.next_id.fetch_add(1, Ordering::Relaxed) + 1
        );
        let mut st = self.tick("CreateMultipartUpload");
        st.uploads
            .insert(id.clone(), (key.to_owned(), opts.clone(), BTreeMap::new()));
        Ok(Arc::new(MemoryUpload {
            shared: self.shared.clone(),
            key: key.to_owned(),
            id,
        }))
    }

    async fn copy_object(
        &self,
        src: &str,
        dst: &str,
        meta: CopyMeta<'_>,
        src_etag: Option<&str>,
    ) -> Result<PutResult, StoreError> {
        let etag = self.etag();
        let mut st = self.tick("CopyObject");
        let o = st
            .objects
            .get(src)
            .ok_or_else(|| StoreError::new("CopyObject", src, ErrorKind::NotFound))?
            .clone();
        if src_etag.is_some_and(|e| e != o.etag) {
            return Err(StoreError::new(
                "CopyObject",
                src,
                ErrorKind::PreconditionFailed,
            ));
        }
        if o.body.len() as u64 > MAX_COPY {
            return Err(StoreError::new(
                "CopyObject",
                src,
                ErrorKind::InvalidRequest,
            ));
        }
        let (meta, headers) = match meta {
            CopyMeta::Replace(opts) => (opts.meta.clone(), as_stored(&opts.headers)),
            // As S3 does: the content headers are copied, the storage class and encryption
            // are what the request states (the defaults when it states none).
            CopyMeta::Keep(h) => {
                let stated = as_stored(h);
                let headers = ObjectHeaders {
                    storage_class: stated.storage_class,
                    server_side_encryption: stated.server_side_encryption,
                    sse_kms_key_id: stated.sse_kms_key_id,
                    bucket_key_enabled: stated.bucket_key_enabled,
                    ..o.headers
                };
                (o.meta, headers)
            }
        };
        st.objects.insert(
            dst.to_owned(),
            Object {
                body: o.body,
                etag: etag.clone(),
                mtime: SystemTime::now(),
                meta,
                headers,
            },
        );
        Ok(PutResult { etag: Some(etag) })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut st = self.tick("DeleteObject");
        st.objects.remove(key);
        st.tags.remove(key);
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<Vec<StoreError>, StoreError> {
        let mut st = self.tick("DeleteObjects");
        for k in keys {
            st.objects.remove(k);
            st.tags.remove(k);
        }
        Ok(Vec::new())
    }

    async fn details(&self, key: &str) -> Result<super::ObjectDetails, StoreError> {
        let st = self.tick("HeadObject");
        let o = st
            .objects
            .get(key)
            .ok_or_else(|| StoreError::new("HeadObject", key, ErrorKind::NotFound))?;
        Ok(super::ObjectDetails {
            etag: Some(o.etag.clone()),
            version_id: None,
            storage_class: reported(&o.headers).storage_class,
            content_type: o.headers.content_type.clone(),
        })
    }

    async fn get_tags(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let st = self.tick("GetObjectTagging");
        if !st.objects.contains_key(key) {
            return Err(StoreError::new(
                "GetObjectTagging",
                key,
                ErrorKind::NotFound,
            ));
        }
        Ok(st.tags.get(key).cloned().unwrap_or_default())
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<(), StoreError> {
        let mut st = self.tick("PutObjectTagging");
        if !st.objects.contains_key(key) {
            return Err(StoreError::new(
                "PutObjectTagging",
                key,
                ErrorKind::NotFound,
            ));
        }
        st.tags.insert(key.to_owned(), tags.to_vec());
        Ok(())
    }

    async fn presign_get(
        &self,
        key: &str,
        expires: std::time::Duration,
    ) -> Result<String, StoreError> {
        Ok(format!(
            "memory://{}/{key}?expires={}",
            self.bucket,
            expires.as_secs()
        ))
    }
}

#[async_trait]
impl MultipartUpload for MemoryUpload {
    fn key(&self) -> &str {
        &self.key
    }

    async fn put_part(&self, number: i32, body: Bytes) -> Result<CompletedPart, StoreError> {
        let sh = &self.shared;
        let now = sh.parts_running.fetch_add(1, Ordering::AcqRel) + 1;
        sh.parts_peak.fetch_max(now, Ordering::AcqRel);
        let ms = sh.part_latency_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        sh.parts_running.fetch_sub(1, Ordering::AcqRel);
        if sh.failing_part.load(Ordering::Relaxed) == number {
            return Err(StoreError::new(
                "UploadPart",
                &*self.key,
                ErrorKind::ServerError,
            ));
        }
        let mut st = self.shared.tick("UploadPart");
        let (_, _, parts) = st
            .uploads
            .get_mut(&self.id)
            .ok_or_else(|| StoreError::new("UploadPart", &*self.key, ErrorKind::NotFound))?;
        let etag = md5_etag(&body);
        parts.insert(number, body);
        Ok(CompletedPart {
            number,
            etag,
            crc32c: None,
        })
    }

    async fn copy_part(
        &self,
        number: i32,
        src: &str,
        range: Range<u64>,
        src_etag: Option<&str>,
    ) -> Result<CompletedPart, StoreError> {
        let mut st = self.shared.tick("UploadPartCopy");
        let o = st
            .objects
            .get(src)
            .ok_or_else(|| StoreError::new("UploadPartCopy", src, ErrorKind::NotFound))?;
        if src_etag.is_some_and(|e| e != o.etag) {
            return Err(StoreError::new(
                "UploadPartCopy",
                src,
                ErrorKind::PreconditionFailed,
            ));
        }
        let body = o.body.clone();
        if range.end > body.len() as u64 || range.is_empty() {
            return Err(StoreError::new(
                "UploadPartCopy",
                src,
                ErrorKind::InvalidRequest,
            ));
        }
        let (_, _, parts) = st
            .uploads
            .get_mut(&self.id)
            .ok_or_else(|| StoreError::new("UploadPartCopy", &*self.key, ErrorKind::NotFound))?;
        let part = body.slice(range.start as usize..range.end as usize);
        let etag = md5_etag(&part);
        parts.insert(number, part);
        Ok(CompletedPart {
            number,
            etag,
            crc32c: None,
        })
    }

    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<PutResult, StoreError> {
        let key = self.key.as_str();
        // As S3 does: the MD5 of the parts' MD5s, then the number of parts.
        let etag = super::retry::multipart_etag(&parts).unwrap_or_else(|| self.shared.etag());
        let mut st = self.shared.tick("CompleteMultipartUpload");
        if st
            .uploads
            .get(&self.id)
            .is_some_and(|(_, o, _)| o.create_only)
            && st.objects.contains_key(key)
        {
            return Err(StoreError::new(
                "CompleteMultipartUpload",
                key,
                ErrorKind::PreconditionFailed,
            ));
        }
        let (_, opts, stored) = st
            .uploads
            .remove(&self.id)
            .ok_or_else(|| StoreError::new("CompleteMultipartUpload", key, ErrorKind::NotFound))?;
        let mut body = BytesMut::new();
        for p in &parts {
            let part = stored.get(&p.number).ok_or_else(|| {
                StoreError::new("CompleteMultipartUpload", key, ErrorKind::InvalidRequest)
            })?;
            body.extend_from_slice(part);
        }
        st.objects.insert(
            key.to_owned(),
            Object {
                body: body.freeze(),
                etag: etag.clone(),
                mtime: SystemTime::now(),
                meta: opts.meta.clone(),
                headers: as_stored(&opts.headers),
            },
        );
        Ok(PutResult { etag: Some(etag) })
    }

    async fn abort(&self) -> Result<(), StoreError> {
        let mut st = self.shared.tick("AbortMultipartUpload");
        st.uploads.remove(&self.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn list_all(s: &MemoryStore, prefix: &str) -> (Vec<String>, Vec<String>) {
        let (mut objs, mut pfx) = (vec![], vec![]);
        let mut token = None;
        loop {
            let page = s.list(prefix, true, token, None).await.unwrap();
            objs.extend(page.objects.into_iter().map(|o| o.key));
            pfx.extend(page.prefixes);
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        (objs, pfx)
    }

    #[tokio::test]
    async fn behaves_like_s3() {
        crate::s3::conformance::run(&MemoryStore::new("b", 2), "conformance/").await;
    }

    #[tokio::test]
    async fn listing_groups_common_prefixes_across_pages() {
        let s = MemoryStore::new("b", 2);
        for k in ["a/1", "a/2", "a/3", "b", "c/x/y", "c/z", "d"] {
            s.insert(k, "x");
        }
        let (objs, pfx) = list_all(&s, "").await;
        assert_eq!(objs, vec!["b", "d"]);
        assert_eq!(pfx, vec!["a/", "c/"]);
        let (objs, pfx) = list_all(&s, "c/").await;
        assert_eq!(objs, vec!["c/z"]);
        assert_eq!(pfx, vec!["c/x/"]);
    }
}
