//! A fault-injecting [`ObjectStore`] wrapper for unit and model tests: transient errors
//! before a request reaches the store, lost answers after it did (the request took effect
//! but the caller sees an error), and GET bodies that break off midway. Faults are drawn
//! from a seeded generator, so a failing test can be replayed.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{
    CompletedPart, CopyMeta, ErrorKind, ListPage, MultipartUpload, ObjectDetails, ObjectInfo,
    ObjectStore, PutOptions, PutResult, StoreError,
};

/// What to inject, as probabilities per request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// The request fails before it reaches the store (503, reset, refused).
    pub before: f64,
    /// The request takes effect but its answer is lost (timeout, reset after sending).
    pub after: f64,
    /// A GET body breaks off after some of its bytes.
    pub cut_body: f64,
}

struct Shared {
    faults: Faults,
    rng: Mutex<fastrand::Rng>,
    injected: AtomicU64,
}

impl Shared {
    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().unwrap().f64() < p
    }

    fn error(&self, op: &'static str, key: &str, why: &str) -> StoreError {
        self.injected.fetch_add(1, Ordering::Relaxed);
        let kind = if self.rng.lock().unwrap().bool() {
            ErrorKind::ServerError
        } else {
            ErrorKind::Unreachable
        };
        StoreError::with_message(op, key, kind, format!("injected fault: {why}"))
    }

    /// Run `f` with faults around it.
    async fn around<T>(
        &self,
        op: &'static str,
        key: &str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.roll(self.faults.before) {
            return Err(self.error(op, key, "before the request"));
        }
        let r = f.await;
        if r.is_ok() && self.roll(self.faults.after) {
            return Err(self.error(op, key, "answer lost"));
        }
        r
    }
}

/// A store whose requests fail now and then.
pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

impl Faulty {
    /// Wrap `inner`, injecting `faults` from a generator seeded with `seed`.
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Faults, seed: u64) -> Self {
        Faulty {
            inner,
            shared: Arc::new(Shared {
                faults,
                rng: Mutex::new(fastrand::Rng::with_seed(seed)),
                injected: AtomicU64::new(0),
            }),
        }
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    fn get_overhead(&self) -> u64 {
        self.inner.get_overhead()
    }

    async fn list(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, StoreError> {
        let f = self.inner.list(prefix, delimited, continuation, max_keys);
        self.shared.around("ListObjectsV2", prefix, f).await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.shared
            .around("HeadObject", key, self.inner.head(key))
            .await
    }

    async fn get_range_into(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        buf: &mut BytesMut,
    ) -> Result<(), StoreError> {
        let s = &self.shared;
        if s.roll(s.faults.before) {
            return Err(s.error("GetObject", key, "before the request"));
        }
        let data = self.inner.get_range(key, range, if_match).await?;
        if data.len() > 1 && s.roll(s.faults.cut_body) {
            let cut = s.rng.lock().unwrap().usize(1..data.len());
            buf.extend_from_slice(&data[..cut]);
            s.injected.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::with_message(
                "GetObject",
                key,
                ErrorKind::Interrupted,
                format!("injected fault: body cut after {cut} bytes"),
            ));
        }
        buf.extend_from_slice(&data);
        Ok(())
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        self.shared
            .around("PutObject", key, self.inner.put(key, body, opts))
            .await
    }

    async fn start_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Arc<dyn MultipartUpload>, StoreError> {
        // Only before: a lost answer here would orphan an upload, which S3 allows but no
        // test could check for.
        let s = &self.shared;
        if s.roll(s.faults.before) {
            return Err(s.error("CreateMultipartUpload", key, "before the request"));
        }
        let inner = self.inner.start_multipart(key, opts).await?;
        Ok(Arc::new(FaultyUpload {
            inner,
            shared: self.shared.clone(),
        }))
    }

    async fn copy_object(
        &self,
        src: &str,
        dst: &str,
        meta: CopyMeta<'_>,
        src_etag: Option<&str>,
    ) -> Result<PutResult, StoreError> {
        let f = self.inner.copy_object(src, dst, meta, src_etag);
        self.shared.around("CopyObject", src, f).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.shared
            .around("DeleteObject", key, self.inner.delete(key))
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<Vec<StoreError>, StoreError> {
        let first = keys.first().map(String::as_str).unwrap_or_default();
        let f = self.inner.delete_many(keys);
        self.shared.around("DeleteObjects", first, f).await
    }

    async fn details(&self, key: &str) -> Result<ObjectDetails, StoreError> {
        self.shared
            .around("HeadObject", key, self.inner.details(key))
            .await
    }

    async fn get_tags(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let f = self.inner.get_tags(key);
        self.shared.around("GetObjectTagging", key, f).await
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<(), StoreError> {
        let f = self.inner.put_tags(key, tags);
        self.shared.around("PutObjectTagging", key, f).await
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, StoreError> {
        self.inner.presign_get(key, expires).await
    }
}

struct FaultyUpload {
    inner: Arc<dyn MultipartUpload>,
    shared: Arc<Shared>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn key(&self) -> &str {
        self.inner.key()
    }

    async fn put_part(&self, number: i32, body: Bytes) -> Result<CompletedPart, StoreError> {
        let f = self.inner.put_part(number, body);
        self.shared.around("UploadPart", self.inner.key(), f).await
    }

    async fn copy_part(
        &self,
        number: i32,
        src: &str,
        range: Range<u64>,
        src_etag: Option<&str>,
    ) -> Result<CompletedPart, StoreError> {
        let f = self.inner.copy_part(number, src, range, src_etag);
        self.shared
            .around("UploadPartCopy", self.inner.key(), f)
            .await
    }

    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<PutResult, StoreError> {
        let f = self.inner.complete(parts);
        let key = self.inner.key();
        self.shared.around("CompleteMultipartUpload", key, f).await
    }

    async fn abort(&self) -> Result<(), StoreError> {
        let f = self.inner.abort();
        self.shared
            .around("AbortMultipartUpload", self.inner.key(), f)
            .await
    }
}
