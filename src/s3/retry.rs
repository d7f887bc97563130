//! One retry layer for every S3 request of a mount, so that the filesystem core only ever
//! sees errors that will not go away.
//!
//! [`Retrying`] wraps any [`ObjectStore`] (and the multipart uploads it starts). A request
//! that fails with a transient error — throttling (503 SlowDown, 429), a 5xx, a timeout, a
//! refused, reset or closed connection, a response cut off midway — is tried again after an
//! exponential backoff with full jitter, until it succeeds or its deadline
//! (`--retry-deadline`, default 60 s) has passed; errors that cannot succeed on a second try
//! (access denied, no such key, a failed `If-Match`, an invalid request) are returned at
//! once. Every attempt is bounded: the SDK's connect timeout and stalled-stream protection
//! (a body that moves no byte for 5 s), and an attempt timeout here that grows with the
//! bytes to move, so a silent network fails the attempt instead of hanging.
//!
//! Why our own layer and not the SDK's retry strategy: the SDK counts attempts (3 by
//! default) and keeps a retry quota that a burst of failures empties for the rest of the
//! process, while a mount must ride out an outage of a known length. The SDK's retries are
//! switched off for the clients this layer wraps, so there is exactly one retry loop.
//!
//! What a retry keeps: a PutObject or UploadPart is sent again with the same body (the
//! caller's buffer is held until S3 has it); a GET that broke off continues from the first
//! byte not received, with the same `If-Match`; a CompleteMultipartUpload whose response
//! was lost (the retry finds no such upload) is resolved by checking the object's ETag; an
//! AbortMultipartUpload that finds nothing to abort succeeded.
//!
//! Being where every attempt is made, this layer is also where S3 requests are counted
//! ([`crate::metrics`]): each attempt with its outcome and duration, each retry, the object
//! bytes moved, and the multipart uploads in flight.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use md5::Digest;
use tracing::{debug, info, warn};

use crate::metrics;

use super::{
    CompletedPart, CopyMeta, ErrorKind, ListPage, MultipartUpload, ObjectDetails, ObjectInfo,
    ObjectStore, PutOptions, PutResult, StoreError,
};

/// How long and how hard to retry.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// How long one request may keep retrying; zero means a single attempt.
    pub deadline: Duration,
    /// Backoff before the second attempt (the bound of its random delay).
    pub initial_backoff: Duration,
    /// Largest backoff between two attempts.
    pub max_backoff: Duration,
    /// Time an attempt may take without moving data, before its bytes are counted.
    pub attempt_base: Duration,
    /// Slowest transfer rate an attempt is allowed (bytes per second) before it is given up
    /// and tried again.
    pub min_rate: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            deadline: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
            attempt_base: Duration::from_secs(10),
            min_rate: 1 << 20,
        }
    }
}

/// How long an abort that failed within its deadline keeps being retried in the background.
const ABORT_PATIENCE: Duration = Duration::from_secs(600);

/// After retrying this long, a request is worth a warning (once).
const WARN_AFTER: Duration = Duration::from_secs(5);

impl RetryPolicy {
    /// The bound on one attempt that moves `bytes` bytes.
    fn attempt_timeout(&self, bytes: u64) -> Duration {
        self.attempt_base + Duration::from_secs(bytes / self.min_rate.max(1))
    }

    /// Full jitter: a random delay up to the exponential bound for attempt `n` (1-based).
    fn backoff(&self, n: u32) -> Duration {
        let cap = self
            .initial_backoff
            .saturating_mul(1 << n.saturating_sub(1).min(16))
            .min(self.max_backoff);
        cap.mul_f64(fastrand::f64())
    }
}

/// Whether another attempt may succeed where this one failed.
pub fn is_transient(e: &StoreError) -> bool {
    matches!(
        e.kind,
        ErrorKind::Throttled
            | ErrorKind::ServerError
            | ErrorKind::Unreachable
            | ErrorKind::Timeout
            | ErrorKind::Interrupted
    )
}

/// The attempts of one request: when to try again, and what to log.
struct Attempts<'a> {
    policy: &'a RetryPolicy,
    op: &'static str,
    key: &'a str,
    start: Instant,
    n: u32,
    warned: bool,
}

impl<'a> Attempts<'a> {
    fn new(policy: &'a RetryPolicy, op: &'static str, key: &'a str) -> Self {
        Attempts {
            policy,
            op,
            key,
            start: Instant::now(),
            n: 1,
            warned: false,
        }
    }

    /// Run one attempt that moves `bytes` bytes, bounded by the attempt timeout.
    async fn run<T>(
        &self,
        bytes: u64,
        attempt: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.policy.attempt_timeout(bytes);
        let metered = metrics::S3Attempt::start(self.op);
        let r = match tokio::time::timeout(limit, attempt).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::with_message(
                self.op,
                self.key,
                ErrorKind::Timeout,
                format!("no answer within {} s", limit.as_secs()),
            )),
        };
        metered.done(r.as_ref().map(|_| ()).map_err(|e| e.kind));
        r
    }

    /// The request succeeded.
    fn succeeded(&self) {
        if self.warned {
            info!(
                op = self.op,
                key = self.key,
                attempts = self.n,
                "S3 request recovered after {:.1?}",
                self.start.elapsed()
            );
        }
    }

    /// The attempt failed with `e`: wait and return `Ok` to try again, or give `e` back when
    /// it is permanent or the deadline would pass.
    async fn failed(&mut self, e: StoreError) -> Result<(), StoreError> {
        if !is_transient(&e) {
            return Err(e);
        }
        let elapsed = self.start.elapsed();
        let pause = self.policy.backoff(self.n);
        if elapsed + pause >= self.policy.deadline {
            return Err(if self.n > 1 {
                e.after_retries(self.n, elapsed)
            } else {
                e
            });
        }
        debug!(op = self.op, key = self.key, attempt = self.n, error = %e, "S3 request failed; retrying");
        if !self.warned && elapsed >= WARN_AFTER {
            self.warned = true;
            warn!(
                op = self.op,
                key = self.key,
                attempts = self.n,
                error = %e,
                "S3 request still failing after {:.1?}; retrying until the deadline",
                elapsed
            );
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        self.n += 1;
        metrics::s3_retry(self.op);
        Ok(())
    }
}

/// Run `attempt` (given the attempt number, from 1) until it succeeds, fails for good, or
/// the deadline passes. `bytes` sizes the attempt timeout.
async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    op: &'static str,
    key: &str,
    bytes: u64,
    mut attempt: F,
) -> Result<T, StoreError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempts = Attempts::new(policy, op, key);
    loop {
        match attempts.run(bytes, attempt(attempts.n)).await {
            Ok(v) => {
                attempts.succeeded();
                return Ok(v);
            }
            Err(e) => attempts.failed(e).await?,
        }
    }
}

/// Any store, with every request retried to a deadline.
pub struct Retrying {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl Retrying {
    /// Retry `inner`'s requests under `policy`.
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        Retrying { inner, policy }
    }
}

#[async_trait]
impl ObjectStore for Retrying {
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
        retry(&self.policy, "ListObjectsV2", prefix, 0, |_| {
            self.inner
                .list(prefix, delimited, continuation.clone(), max_keys)
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        retry(&self.policy, "HeadObject", key, 0, |_| self.inner.head(key)).await
    }

    async fn get_range_into(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        buf: &mut BytesMut,
    ) -> Result<(), StoreError> {
        let start = buf.len() as u64;
        let mut attempts = Attempts::new(&self.policy, "GetObject", key);
        loop {
            // Each attempt asks only for what is still missing.
            let got = buf.len() as u64 - start;
            if got > 0 {
                debug!(key, resumed_at = range.start + got, "resuming GetObject");
            }
            let rest = range.start + got..range.end;
            let len = rest.end - rest.start;
            let before = buf.len();
            let attempt = self.inner.get_range_into(key, rest, if_match, buf);
            let r = attempts.run(len, attempt).await;
            // What arrived counts even from an attempt that broke off: it is kept.
            metrics::s3_bytes_read((buf.len() - before) as u64);
            match r {
                Ok(()) => {
                    attempts.succeeded();
                    return Ok(());
                }
                Err(e) => attempts.failed(e).await?,
            }
        }
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
    ) -> Result<PutResult, StoreError> {
        let mut resent = false;
        let r = retry(&self.policy, "PutObject", key, body.len() as u64, |n| {
            resent = n > 1;
            self.inner.put(key, body.clone(), opts)
        })
        .await;
        let r = match r {
            // A create-only PUT sent again finds the object: it may be the one our earlier
            // attempt stored before its answer was lost. It is when it holds our bytes.
            Err(e) if opts.create_only && resent && e.kind == ErrorKind::PreconditionFailed => {
                let digest = md5::Md5::digest(&body);
                let ours: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                let ours = format!("\"{ours}\"");
                let head = Attempts::new(&self.policy, "HeadObject", key);
                match head.run(0, self.inner.head(key)).await {
                    Ok(info) if info.etag.as_deref() == Some(ours.as_str()) => {
                        debug!(
                            key,
                            "create-only PutObject: the earlier attempt had stored it"
                        );
                        Ok(PutResult { etag: info.etag })
                    }
                    _ => Err(e),
                }
            }
            r => r,
        };
        if r.is_ok() {
            metrics::s3_bytes_written(body.len() as u64);
        }
        r
    }

    async fn start_multipart(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> Result<Arc<dyn MultipartUpload>, StoreError> {
        let inner = retry(&self.policy, "CreateMultipartUpload", key, 0, |_| {
            self.inner.start_multipart(key, opts)
        })
        .await?;
        Ok(Arc::new(RetryingUpload {
            store: self.inner.clone(),
            inner,
            policy: self.policy,
            resent: Default::default(),
            in_flight: metrics::UploadInFlight::start(),
        }))
    }

    async fn copy_object(
        &self,
        src: &str,
        dst: &str,
        meta: CopyMeta<'_>,
        src_etag: Option<&str>,
    ) -> Result<PutResult, StoreError> {
        retry(&self.policy, "CopyObject", src, 0, |_| {
            self.inner.copy_object(src, dst, meta, src_etag)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        retry(&self.policy, "DeleteObject", key, 0, |_| {
            self.inner.delete(key)
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<Vec<StoreError>, StoreError> {
        let first = keys.first().map(String::as_str).unwrap_or_default();
        retry(&self.policy, "DeleteObjects", first, 0, |_| {
            self.inner.delete_many(keys)
        })
        .await
    }

    async fn details(&self, key: &str) -> Result<ObjectDetails, StoreError> {
        retry(&self.policy, "HeadObject", key, 0, |_| {
            self.inner.details(key)
        })
        .await
    }

    async fn get_tags(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        retry(&self.policy, "GetObjectTagging", key, 0, |_| {
            self.inner.get_tags(key)
        })
        .await
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<(), StoreError> {
        retry(&self.policy, "PutObjectTagging", key, 0, |_| {
            self.inner.put_tags(key, tags)
        })
        .await
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, StoreError> {
        // Computed locally: nothing to retry.
        self.inner.presign_get(key, expires).await
    }
}

/// A multipart upload whose every request is retried; each part keeps its body until S3
/// acknowledged it — and a part that had to be sent again keeps it until the upload is
/// complete (see [`RetryingUpload::complete`]).
struct RetryingUpload {
    store: Arc<dyn ObjectStore>,
    inner: Arc<dyn MultipartUpload>,
    policy: RetryPolicy,
    /// Parts acknowledged only on a later attempt, with their bodies.
    resent: std::sync::Mutex<Vec<(i32, Bytes)>>,
    /// Counts the upload in flight until it is completed or aborted.
    in_flight: metrics::UploadInFlight,
}

/// The ETag S3 gives a multipart object: the MD5 of the parts' MD5s, then `-N`. Only
/// computable when every part ETag is a plain MD5 (not with SSE-KMS, for instance).
pub(crate) fn multipart_etag(parts: &[CompletedPart]) -> Option<String> {
    let mut digests = Vec::with_capacity(parts.len() * 16);
    for p in parts {
        let hex = p.etag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        for i in (0..32).step_by(2) {
            digests.push(u8::from_str_radix(&hex[i..i + 2], 16).ok()?);
        }
    }
    let digest = md5::Md5::digest(&digests);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("\"{hex}-{}\"", parts.len()))
}

#[async_trait]
impl MultipartUpload for RetryingUpload {
    fn key(&self) -> &str {
        self.inner.key()
    }

    async fn put_part(&self, number: i32, body: Bytes) -> Result<CompletedPart, StoreError> {
        let key = self.inner.key();
        let mut resent = false;
        let part = retry(&self.policy, "UploadPart", key, body.len() as u64, |n| {
            resent = n > 1;
            self.inner.put_part(number, body.clone())
        })
        .await?;
        metrics::s3_bytes_written(body.len() as u64);
        if resent {
            self.resent.lock().unwrap().push((number, body));
        }
        Ok(part)
    }

    async fn copy_part(
        &self,
        number: i32,
        src: &str,
        range: Range<u64>,
        src_etag: Option<&str>,
    ) -> Result<CompletedPart, StoreError> {
        let key = self.inner.key();
        retry(&self.policy, "UploadPartCopy", key, 0, |_| {
            self.inner.copy_part(number, src, range.clone(), src_etag)
        })
        .await
    }

    /// See [`RetryingUpload::complete_parts`]; once complete, the upload is no longer in
    /// flight (after a failure it still is, until aborted).
    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<PutResult, StoreError> {
        let r = self.complete_parts(parts).await;
        if r.is_ok() {
            self.in_flight.finish();
        }
        r
    }

    async fn abort(&self) -> Result<(), StoreError> {
        // Given up, whether or not S3 has heard of it yet (it is retried in the background).
        self.in_flight.finish();
        self.abort_upload().await
    }
}

impl RetryingUpload {
    /// A part sent again after an attempt whose fate was unknown (a timeout, a cut
    /// connection) can be shadowed by that first attempt: its bytes, still on the way,
    /// reach the server after the retry did and leave a newer, broken version of the part
    /// (Garage then refuses the completion with InvalidPart). Such parts are sent once more
    /// now that the stale attempts are over, and the completion asked again.
    async fn complete_parts(&self, parts: Vec<CompletedPart>) -> Result<PutResult, StoreError> {
        let r = self.complete_once(parts.clone()).await;
        let resent = std::mem::take(&mut *self.resent.lock().unwrap());
        match r {
            Err(e) if e.code.as_deref() == Some("InvalidPart") && !resent.is_empty() => {
                warn!(
                    key = self.inner.key(),
                    parts = resent.len(),
                    "the server has an older attempt of parts that were sent again; sending them once more"
                );
                let mut parts = parts;
                for (number, body) in resent {
                    let again = self.put_part(number, body).await?;
                    if let Some(p) = parts.iter_mut().find(|p| p.number == number) {
                        *p = again;
                    }
                }
                self.resent.lock().unwrap().clear();
                self.complete_once(parts).await
            }
            r => r,
        }
    }

    async fn abort_upload(&self) -> Result<(), StoreError> {
        let key = self.inner.key();
        let r = retry(&self.policy, "AbortMultipartUpload", key, 0, |_| {
            self.inner.abort()
        })
        .await;
        match r {
            // Nothing left to abort: an earlier attempt did it.
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) if is_transient(&e) => {
                // The caller has its error already; the parts must not linger once the
                // server is back, so keep trying in the background for a while.
                let (inner, policy) = (self.inner.clone(), self.policy);
                tokio::spawn(async move {
                    let key = inner.key().to_owned();
                    let patient = RetryPolicy {
                        deadline: ABORT_PATIENCE,
                        ..policy
                    };
                    match retry(&patient, "AbortMultipartUpload", &key, 0, |_| inner.abort()).await
                    {
                        Ok(()) => {
                            info!(key, "aborted the failed multipart upload once S3 was back")
                        }
                        Err(e) if e.kind == ErrorKind::NotFound => {}
                        Err(e) => {
                            warn!(key, error = %e, "could not abort the failed multipart upload; it may linger until a lifecycle rule removes it")
                        }
                    }
                });
                Err(e)
            }
            other => other,
        }
    }

    async fn complete_once(&self, parts: Vec<CompletedPart>) -> Result<PutResult, StoreError> {
        let key = self.inner.key();
        // A retry that finds no upload — or, create-only, finds the object — may follow a
        // first attempt that completed it and lost the answer: the object tells.
        let mut resent = false;
        let r = retry(&self.policy, "CompleteMultipartUpload", key, 0, |n| {
            resent = n > 1;
            self.inner.complete(parts.clone())
        })
        .await;
        match r {
            Err(e)
                if e.kind == ErrorKind::NotFound
                    || (resent && e.kind == ErrorKind::PreconditionFailed) =>
            {
                let want = multipart_etag(&parts);
                let head = retry(&self.policy, "HeadObject", key, 0, |_| self.store.head(key));
                match (want, head.await) {
                    (Some(want), Ok(info)) if info.etag.as_deref() == Some(want.as_str()) => {
                        info!(
                            key,
                            "CompleteMultipartUpload's answer was lost; the object is complete"
                        );
                        Ok(PutResult { etag: info.etag })
                    }
                    _ => Err(e),
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::faulty::{Faults, Faulty};
    use crate::s3::memory::MemoryStore;

    fn quick(deadline: Duration) -> RetryPolicy {
        RetryPolicy {
            deadline,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            ..RetryPolicy::default()
        }
    }

    fn data(n: usize, seed: u8) -> Bytes {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
            .collect::<Vec<_>>()
            .into()
    }

    #[tokio::test]
    async fn every_operation_survives_transient_faults_exactly() {
        let memory = Arc::new(MemoryStore::new("b", 2));
        let faults = Faults {
            before: 0.3,
            after: 0.3,
            cut_body: 0.5,
        };
        let faulty = Arc::new(Faulty::new(memory.clone(), faults, 7));
        let s = Retrying::new(faulty.clone(), quick(Duration::from_secs(20)));
        for i in 0..5u8 {
            let key = format!("d/k{i}");
            s.put(&key, data(300_000, i), &PutOptions::default())
                .await
                .unwrap();
            let got = s.get_range(&key, 1000..250_000, None).await.unwrap();
            assert_eq!(got, data(300_000, i).slice(1000..250_000));
        }
        let up = s
            .start_multipart("d/big", &PutOptions::default())
            .await
            .unwrap();
        let part = data(5 << 20, 9);
        let p1 = up.put_part(1, part.clone()).await.unwrap();
        let p2 = up.copy_part(2, "d/k0", 0..300_000, None).await.unwrap();
        up.complete(vec![p1, p2]).await.unwrap();
        let mut want = part.to_vec();
        want.extend_from_slice(&data(300_000, 0));
        assert!(memory.get("d/big").unwrap() == want);
        let keys: Vec<String> = (0..5).map(|i| format!("d/k{i}")).collect();
        assert!(s.delete_many(&keys).await.unwrap().is_empty());
        let listed: Vec<ListPage> = futures::TryStreamExt::try_collect(s.list_all("d/", true))
            .await
            .unwrap();
        let names: Vec<String> = listed
            .into_iter()
            .flat_map(|p| p.objects)
            .map(|o| o.key)
            .collect();
        assert_eq!(names, ["d/big"]);
        assert_eq!(memory.pending_uploads(), 0);
        assert!(faulty.injected() > 10, "faults were injected");
    }

    #[tokio::test]
    async fn a_cut_get_resumes_where_it_broke_off() {
        let memory = Arc::new(MemoryStore::new("b", 2));
        memory.insert("k", data(100_000, 1));
        let etag = memory.head("k").await.unwrap().etag;
        // Every body is cut: starting over would never finish; resuming does.
        let faults = Faults {
            cut_body: 1.0,
            ..Faults::default()
        };
        let faulty = Arc::new(Faulty::new(memory.clone(), faults, 3));
        let s = Retrying::new(faulty, quick(Duration::from_secs(30)));
        let got = s.get_range("k", 0..100_000, etag.as_deref()).await.unwrap();
        assert_eq!(got, data(100_000, 1));
        assert!(memory.count("GetObject") > 2);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let memory = Arc::new(MemoryStore::new("b", 2));
        let s = Retrying::new(memory.clone(), quick(Duration::from_secs(30)));
        let e = s.head("missing").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(memory.count("HeadObject"), 1);
        memory.insert("k", "x");
        let e = s.get_range("k", 0..1, Some("\"other\"")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
        assert_eq!(memory.count("GetObject"), 1);
    }

    #[tokio::test]
    async fn past_the_deadline_the_last_error_is_returned() {
        let memory = Arc::new(MemoryStore::new("b", 2));
        let always = Faults {
            before: 1.0,
            ..Faults::default()
        };
        let once = Retrying::new(
            Arc::new(Faulty::new(memory.clone(), always, 1)),
            quick(Duration::ZERO),
        );
        let e = once.head("k").await.unwrap_err();
        assert!(is_transient(&e));
        let faulty = Arc::new(Faulty::new(memory.clone(), always, 1));
        let s = Retrying::new(faulty.clone(), quick(Duration::from_millis(200)));
        let t = Instant::now();
        let e = s
            .put("k", data(10, 0), &PutOptions::default())
            .await
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(faulty.injected() > 3, "retried until the deadline");
        assert!(e.to_string().contains("gave up after"), "{e}");
        assert!(memory.get("k").is_none());
    }

    #[test]
    fn attempts_outcomes_retries_bytes_and_uploads_are_counted() {
        use crate::metrics::testing::{scrape, value};
        let requests = |text: &str, op: &str, outcome: &str| {
            value(
                text,
                &format!("s3mount_s3_requests_total{{operation=\"{op}\",outcome=\"{outcome}\"}}"),
            )
            .unwrap_or(0.0)
        };
        let mut in_flight_during = None;
        let text = scrape(|metrics| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let memory = Arc::new(MemoryStore::new("b", 2));
                let s = Retrying::new(memory.clone(), quick(Duration::from_secs(5)));
                s.put("k", data(1000, 1), &PutOptions::default())
                    .await
                    .unwrap();
                s.get_range("k", 100..1000, None).await.unwrap();
                s.head("missing").await.unwrap_err();
                let up = s
                    .start_multipart("big", &PutOptions::default())
                    .await
                    .unwrap();
                let p1 = up.put_part(1, data(5 << 20, 2)).await.unwrap();
                in_flight_during =
                    value(&metrics.render(), "s3mount_s3_multipart_uploads_in_flight");
                up.complete(vec![p1]).await.unwrap();
                let always = Faults {
                    before: 1.0,
                    ..Faults::default()
                };
                let failing = Retrying::new(
                    Arc::new(Faulty::new(memory, always, 5)),
                    quick(Duration::from_millis(200)),
                );
                failing.head("k").await.unwrap_err();
            })
        });
        assert_eq!(in_flight_during, Some(1.0));
        assert_eq!(requests(&text, "PutObject", "ok"), 1.0, "{text}");
        assert_eq!(requests(&text, "GetObject", "ok"), 1.0);
        assert_eq!(requests(&text, "HeadObject", "not_found"), 1.0);
        assert_eq!(requests(&text, "UploadPart", "ok"), 1.0);
        assert_eq!(requests(&text, "CompleteMultipartUpload", "ok"), 1.0);
        assert_eq!(value(&text, "s3mount_s3_read_bytes_total"), Some(900.0));
        assert_eq!(
            value(&text, "s3mount_s3_written_bytes_total"),
            Some((1000 + (5 << 20)) as f64)
        );
        assert_eq!(
            value(&text, "s3mount_s3_multipart_uploads_in_flight"),
            Some(0.0)
        );
        let failed = requests(&text, "HeadObject", "server_error")
            + requests(&text, "HeadObject", "unreachable");
        let retries = value(&text, "s3mount_s3_retries_total{operation=\"HeadObject\"}").unwrap();
        assert!(retries >= 2.0, "{text}");
        assert_eq!(
            failed,
            retries + 1.0,
            "every attempt but the first is a retry"
        );
    }

    /// Completes the upload, then loses the answer (once).
    /// What a test upload does wrong.
    #[derive(Clone, Copy, PartialEq)]
    enum Misstep {
        /// The first CompleteMultipartUpload succeeds but its answer is lost.
        LoseFirstComplete,
        /// Part 2's first attempt times out yet reaches the server late and shadows the
        /// retry: the completion is refused (InvalidPart) until part 2 is sent once more.
        StalePart2,
    }

    struct Misbehaving {
        inner: Arc<dyn MultipartUpload>,
        misstep: Misstep,
        lost: std::sync::atomic::AtomicBool,
        part2_puts: std::sync::atomic::AtomicU32,
    }

    fn misbehaving(inner: Arc<dyn MultipartUpload>, misstep: Misstep) -> Arc<Misbehaving> {
        Arc::new(Misbehaving {
            inner,
            misstep,
            lost: Default::default(),
            part2_puts: Default::default(),
        })
    }

    #[async_trait]
    impl MultipartUpload for Misbehaving {
        fn key(&self) -> &str {
            self.inner.key()
        }
        async fn put_part(&self, n: i32, body: Bytes) -> Result<CompletedPart, StoreError> {
            if n == 2 && self.misstep == Misstep::StalePart2 {
                let puts = self
                    .part2_puts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if puts == 0 {
                    return Err(StoreError::new("UploadPart", "k", ErrorKind::Timeout));
                }
            }
            self.inner.put_part(n, body).await
        }
        async fn copy_part(
            &self,
            n: i32,
            src: &str,
            range: Range<u64>,
            etag: Option<&str>,
        ) -> Result<CompletedPart, StoreError> {
            self.inner.copy_part(n, src, range, etag).await
        }
        async fn complete(&self, parts: Vec<CompletedPart>) -> Result<PutResult, StoreError> {
            match self.misstep {
                Misstep::StalePart2
                    if self.part2_puts.load(std::sync::atomic::Ordering::Relaxed) < 3 =>
                {
                    let mut e =
                        StoreError::new("CompleteMultipartUpload", "k", ErrorKind::InvalidRequest);
                    e.code = Some("InvalidPart".into());
                    Err(e)
                }
                Misstep::LoseFirstComplete => {
                    let r = self.inner.complete(parts).await;
                    if !self.lost.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        return Err(StoreError::new(
                            "CompleteMultipartUpload",
                            "k",
                            ErrorKind::Timeout,
                        ));
                    }
                    r
                }
                Misstep::StalePart2 => self.inner.complete(parts).await,
            }
        }
        async fn abort(&self) -> Result<(), StoreError> {
            self.inner.abort().await
        }
    }

    /// Two parts (5 MiB and 10 bytes) uploaded through a retrying upload over `misstep`,
    /// then completed: the store, and what the completion returned.
    async fn two_parts_completed(
        misstep: Misstep,
    ) -> (Arc<MemoryStore>, Result<PutResult, StoreError>) {
        let memory = Arc::new(MemoryStore::new("b", 2));
        let inner = memory
            .start_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        let up = RetryingUpload {
            store: memory.clone(),
            inner: misbehaving(inner, misstep),
            policy: quick(Duration::from_secs(10)),
            resent: Default::default(),
            in_flight: metrics::UploadInFlight::start(),
        };
        let p1 = up.put_part(1, data(5 << 20, 1)).await.unwrap();
        let p2 = up.put_part(2, data(10, 2)).await.unwrap();
        let put = up.complete(vec![p1, p2]).await;
        (memory, put)
    }

    #[tokio::test]
    async fn a_part_shadowed_by_its_stale_first_attempt_is_sent_once_more() {
        let (memory, put) = two_parts_completed(Misstep::StalePart2).await;
        assert!(put.is_ok(), "{put:?}");
        let mut want = data(5 << 20, 1).to_vec();
        want.extend_from_slice(&data(10, 2));
        assert_eq!(memory.get("k").unwrap(), want);
    }

    #[tokio::test]
    async fn a_lost_complete_answer_is_resolved_by_the_object() {
        let (memory, put) = two_parts_completed(Misstep::LoseFirstComplete).await;
        let put = put.unwrap();
        assert_eq!(put.etag, memory.head("k").await.unwrap().etag);
        assert_eq!(memory.get("k").unwrap().len(), (5 << 20) + 10);
    }
}
