//! The write path of one new (or truncated) file: sequential writes streamed to S3.
//!
//! Bytes accumulate in a buffer; each time it holds a full part, a multipart upload is
//! started (once) and the part is uploaded by a spawned task, with at most `upload_threads`
//! parts in flight (a writer faster than S3 waits here instead of growing memory). Closing a
//! file smaller than one part costs a single PutObject. The upload ends in exactly one of two
//! states: the object holds exactly the bytes written, or every caller of `finish` gets the
//! error and the multipart upload is aborted — never a success for data not in S3.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tracing::warn;

use super::{MEMORY_PATIENCE, Uploads, WriteConfig};
use crate::fs::error::{FsError, Result};
use crate::fs::read::Budget;
use crate::fs::read::budget::Reservation;
use crate::s3::{
    CompletedPart, ErrorKind, MultipartUpload, ObjectStore, PutOptions, PutResult, StoreError,
};

/// Granularity of a write buffer's memory reservation.
const BUF_STEP: u64 = 64 << 10;

/// S3's limit on parts per upload.
pub const MAX_PARTS: i32 = 10_000;

/// S3's limit on the size of an object (5 TiB).
pub const MAX_OBJECT: u64 = 5 << 40;

struct Multipart {
    upload: Arc<dyn MultipartUpload>,
    next_part: i32,
    inflight: VecDeque<JoinHandle<std::result::Result<CompletedPart, StoreError>>>,
    done: Vec<CompletedPart>,
}

enum State {
    Open,
    Committed(Committed),
    Failed(FsError),
    Cancelled,
}

/// What a successful upload produced.
#[derive(Clone, Debug)]
pub struct Committed {
    /// Bytes in the object.
    pub size: u64,
    /// Its ETag.
    pub etag: Option<String>,
}

/// One file being written.
pub struct Upload {
    store: Arc<dyn ObjectStore>,
    key: String,
    cfg: WriteConfig,
    budget: Arc<Budget>,
    opts: PutOptions,
    buf: Vec<u8>,
    /// The budget's memory for `buf` (at least its capacity): writers wait for it, so many
    /// writers in a small budget queue instead of growing the process.
    buf_memory: Option<Reservation>,
    written: u64,
    multipart: Option<Multipart>,
    state: State,
}

impl Upload {
    /// Start writing `key` from empty (see [`Uploads::stream`]).
    pub(super) fn new(up: &Uploads, key: String, opts: PutOptions) -> Self {
        Upload {
            store: up.store.clone(),
            key,
            cfg: up.cfg,
            budget: up.budget.clone(),
            opts,
            buf: Vec::new(),
            buf_memory: None,
            written: 0,
            multipart: None,
            state: State::Open,
        }
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the upload has been committed to S3.
    pub fn is_committed(&self) -> bool {
        matches!(self.state, State::Committed(_))
    }

    /// The metadata the object will get, while it can still change (nothing sent yet).
    pub fn opts_mut(&mut self) -> Option<&mut PutOptions> {
        (self.multipart.is_none() && matches!(self.state, State::Open)).then_some(&mut self.opts)
    }

    /// The metadata given at start (or changed since).
    pub fn opts(&self) -> &PutOptions {
        &self.opts
    }

    /// The bytes written so far, if none has been sent yet (to move them elsewhere).
    pub fn take_unsent(&mut self) -> Option<Bytes> {
        if self.multipart.is_none() && matches!(self.state, State::Open) {
            self.state = State::Cancelled;
            self.buf_memory = None;
            Some(Bytes::from(std::mem::take(&mut self.buf)))
        } else {
            None
        }
    }

    /// Append `data` at `off`, which must be where the previous write ended.
    pub async fn write(&mut self, off: u64, data: &[u8]) -> Result<u32> {
        match &self.state {
            State::Open => {}
            State::Committed(_) => return Err(FsError::AlreadyCommitted),
            State::Failed(e) => return Err(e.clone()),
            // The file was unlinked while open: accept and discard, as POSIX does.
            State::Cancelled => return Ok(data.len() as u32),
        }
        if data.is_empty() {
            return Ok(0);
        }
        if off != self.written {
            return Err(FsError::OutOfOrderWrite {
                expected: self.written,
                got: off,
            });
        }
        let part_size = self.cfg.part_size as usize;
        let mut rest = data;
        while !rest.is_empty() {
            // Up to the part boundary only: a part is cut from a full buffer, never from
            // the front of a longer one whose tail would keep the part's memory alive.
            let (now, later) = rest.split_at(rest.len().min(part_size - self.buf.len()));
            self.make_room(self.buf.len() + now.len()).await;
            self.buf.extend_from_slice(now);
            self.written += now.len() as u64;
            rest = later;
            if self.buf.len() >= part_size {
                let part = Bytes::from(std::mem::take(&mut self.buf));
                let memory = self.take_buf_memory();
                if let Err(e) = self.send_part(part, memory).await {
                    return Err(self.fail(e).await);
                }
            }
        }
        Ok(data.len() as u32)
    }

    /// Give `buf` room for `len` bytes in all (at most a part), with the budget holding
    /// its capacity. Capacity is grown here, exactly, rather than by `BytesMut` itself:
    /// left alone it doubles past the part size (a buffer of 8 MiB and one byte holds
    /// 16 MiB), and the budget, counting only what was written, would miss half of it.
    /// Once a file is past its first part it is a large one, and each new buffer is a
    /// whole part at once.
    async fn make_room(&mut self, len: usize) {
        if self.buf.capacity() >= len {
            return;
        }
        let part_size = self.cfg.part_size as usize;
        let cap = if self.multipart.is_some() {
            part_size
        } else {
            (self.buf.capacity() * 2)
                .max(BUF_STEP as usize)
                .clamp(len, part_size.max(len))
        };
        self.hold_memory(cap as u64).await;
        // One realloc (an mremap for large buffers), not a copy. The buffer is a Vec and
        // not a BytesMut for this: it can grow exactly, and it becomes a part's `Bytes`
        // without a copy.
        self.buf.reserve_exact(cap - self.buf.len());
    }

    /// Make `buf_memory` cover `len` bytes, waiting (a while) for the budget.
    async fn hold_memory(&mut self, len: u64) {
        let held = self.buf_memory.as_ref().map_or(0, Reservation::bytes);
        if len <= held {
            return;
        }
        // In 64 KiB steps: fewer trips to the budget, little held beyond what is written.
        let more = (len - held).div_ceil(BUF_STEP) * BUF_STEP;
        let r = self.budget.reserve_patiently(more, MEMORY_PATIENCE).await;
        match &mut self.buf_memory {
            Some(m) => m.absorb(r),
            None => self.buf_memory = Some(r),
        }
    }

    /// The memory of the whole buffer, for the part cut from it (the buffer is empty now).
    fn take_buf_memory(&mut self) -> Reservation {
        self.buf_memory
            .take()
            .unwrap_or_else(|| self.budget.reserve(0))
    }

    async fn send_part(&mut self, body: Bytes, memory: Reservation) -> Result<()> {
        if self.multipart.is_none() {
            let upload = self.store.start_multipart(&self.key, &self.opts).await?;
            self.multipart = Some(Multipart {
                upload,
                next_part: 1,
                inflight: VecDeque::new(),
                done: Vec::new(),
            });
        }
        let mp = self.multipart.as_mut().expect("multipart just started");
        if mp.next_part > MAX_PARTS {
            return Err(FsError::FileTooLarge);
        }
        // At most `threads` parts in flight; their memory was reserved as they were
        // written (see `hold_memory`), so a spent budget already slowed the writer.
        while mp.inflight.len() >= self.cfg.threads.max(1) {
            let oldest = mp.inflight.pop_front().expect("non-empty");
            mp.done.push(join_part(&self.key, oldest).await?);
        }
        let number = mp.next_part;
        mp.next_part += 1;
        let upload = mp.upload.clone();
        mp.inflight.push_back(tokio::spawn(async move {
            let _memory = memory;
            upload.put_part(number, body).await
        }));
        Ok(())
    }

    /// Commit everything written so far; idempotent (later calls return the same outcome).
    pub async fn finish(&mut self) -> Result<Committed> {
        match &self.state {
            State::Open => {}
            State::Committed(c) => return Ok(c.clone()),
            State::Failed(e) => return Err(e.clone()),
            State::Cancelled => {
                return Ok(Committed {
                    size: self.written,
                    etag: None,
                });
            }
        }
        match self.commit().await {
            Ok(put) => {
                let c = Committed {
                    size: self.written,
                    etag: put.etag,
                };
                self.state = State::Committed(c.clone());
                self.buf = Vec::new();
                Ok(c)
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn commit(&mut self) -> Result<PutResult> {
        if self.multipart.is_none() {
            let body = Bytes::from(std::mem::take(&mut self.buf));
            let _memory = self.buf_memory.take();
            return Ok(self.store.put(&self.key, body, &self.opts).await?);
        }
        if !self.buf.is_empty() {
            let last = Bytes::from(std::mem::take(&mut self.buf));
            let memory = self.take_buf_memory();
            self.send_part(last, memory).await?;
        }
        self.buf_memory = None;
        let mp = self.multipart.as_mut().expect("multipart");
        while let Some(h) = mp.inflight.pop_front() {
            mp.done.push(join_part(&self.key, h).await?);
        }
        let parts = std::mem::take(&mut mp.done);
        let put = mp.upload.complete(parts).await?;
        self.multipart = None;
        Ok(put)
    }

    /// Give up: abort any multipart upload and remember `e` for every later call.
    async fn fail(&mut self, e: FsError) -> FsError {
        self.abort_multipart().await;
        self.buf = Vec::new();
        self.buf_memory = None;
        self.state = State::Failed(e.clone());
        e
    }

    /// The file was unlinked while open: drop what was written, upload nothing.
    pub async fn cancel(&mut self) {
        if matches!(self.state, State::Open) {
            self.abort_multipart().await;
            self.buf = Vec::new();
            self.buf_memory = None;
            self.state = State::Cancelled;
        }
    }

    async fn abort_multipart(&mut self) {
        let Some(mp) = self.multipart.take() else {
            return;
        };
        for h in mp.inflight {
            h.abort();
        }
        if let Err(e) = mp.upload.abort().await {
            warn!(error = %e, key = %self.key, "could not abort multipart upload yet");
        }
    }
}

async fn join_part(
    key: &str,
    h: JoinHandle<std::result::Result<CompletedPart, StoreError>>,
) -> Result<CompletedPart> {
    match h.await {
        Ok(r) => Ok(r?),
        Err(e) => Err(FsError::Store(StoreError::with_message(
            "UploadPart",
            key.to_owned(),
            ErrorKind::Other,
            format!("upload task failed: {e}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::memory::MemoryStore;

    fn upload(store: &Arc<MemoryStore>) -> Upload {
        let cfg = WriteConfig {
            part_size: 5 << 20,
            threads: 2,
        };
        Uploads::new(
            store.clone(),
            cfg,
            std::env::temp_dir(),
            Budget::new(1 << 30),
        )
        .stream("k".into(), PutOptions::default())
    }

    #[tokio::test]
    async fn small_file_is_one_put() {
        let store = Arc::new(MemoryStore::new("b", 1000));
        let mut u = upload(&store);
        u.write(0, b"hello ").await.unwrap();
        u.write(6, b"world").await.unwrap();
        let c = u.finish().await.unwrap();
        assert_eq!(c.size, 11);
        assert_eq!(&store.get("k").unwrap()[..], b"hello world");
        assert_eq!(store.count("PutObject"), 1);
        assert_eq!(store.count("CreateMultipartUpload"), 0);
        // Idempotent.
        u.finish().await.unwrap();
        assert_eq!(store.count("PutObject"), 1);
        assert!(matches!(
            u.write(11, b"x").await,
            Err(FsError::AlreadyCommitted)
        ));
    }

    #[tokio::test]
    async fn large_file_is_multipart_and_exact() {
        let store = Arc::new(MemoryStore::new("b", 1000));
        let mut u = upload(&store);
        let data: Vec<u8> = (0..(12 << 20) + 123).map(|i| (i % 253) as u8).collect();
        let mut off = 0;
        for chunk in data.chunks(1 << 20) {
            u.write(off, chunk).await.unwrap();
            off += chunk.len() as u64;
        }
        u.finish().await.unwrap();
        assert_eq!(store.get("k").unwrap().to_vec(), data);
        assert_eq!(store.count("UploadPart"), 3);
        assert_eq!(store.pending_uploads(), 0);
    }

    #[tokio::test]
    async fn out_of_order_write_is_refused() {
        let store = Arc::new(MemoryStore::new("b", 1000));
        let mut u = upload(&store);
        u.write(0, b"abc").await.unwrap();
        assert!(matches!(
            u.write(10, b"x").await,
            Err(FsError::OutOfOrderWrite {
                expected: 3,
                got: 10
            })
        ));
    }

    #[tokio::test]
    async fn cancelled_upload_leaves_nothing() {
        let store = Arc::new(MemoryStore::new("b", 1000));
        let mut u = upload(&store);
        u.write(0, &vec![1u8; 6 << 20]).await.unwrap();
        u.cancel().await;
        u.finish().await.unwrap();
        assert!(store.get("k").is_none());
        assert_eq!(store.pending_uploads(), 0);
    }

    /// The budget holds what a write buffer really occupies (its capacity, not only the
    /// bytes in it), and no buffer grows past a part: with writes that do not divide the
    /// part size, a `BytesMut` left to grow itself reached twice the part.
    #[tokio::test]
    async fn the_budget_covers_each_buffers_capacity_which_never_exceeds_a_part() {
        const PART: usize = 5 << 20;
        let store = Arc::new(MemoryStore::new("b", 1000));
        let mut u = upload(&store);
        let data: Vec<u8> = (0..3 * PART + 4321).map(|i| (i % 251) as u8).collect();
        let mut off = 0;
        for chunk in data.chunks(700 << 10) {
            u.write(off, chunk).await.unwrap();
            off += chunk.len() as u64;
            let held = u.buf_memory.as_ref().map_or(0, Reservation::bytes);
            assert!(
                u.buf.capacity() as u64 <= held,
                "capacity {} with {held} held",
                u.buf.capacity()
            );
            assert!(u.buf.capacity() <= PART, "capacity {}", u.buf.capacity());
        }
        u.finish().await.unwrap();
        assert_eq!(store.get("k").unwrap().to_vec(), data);
        assert_eq!(store.count("UploadPart"), 4);
    }

    /// Two writers sharing a budget of one part: their buffered and in-flight bytes stay
    /// within it (the second waits for the first's part to be sent), and both files are
    /// exact. Before, each writer forced a part past the limit.
    #[tokio::test(start_paused = true)]
    async fn writers_queue_for_a_small_budget_instead_of_overshooting_it() {
        const PART: u64 = 5 << 20;
        let store = Arc::new(MemoryStore::new("b", 1000));
        store.set_part_latency(std::time::Duration::from_millis(200));
        let budget = Budget::new(PART + BUF_STEP);
        let uploads = Uploads::new(
            store.clone(),
            WriteConfig {
                part_size: PART,
                threads: 2,
            },
            std::env::temp_dir(),
            budget.clone(),
        );
        let write = |name: &'static str, seed: u8| {
            let mut u = uploads.stream(name.into(), PutOptions::default());
            async move {
                let data: Vec<u8> = (0..(3 * PART) as usize)
                    .map(|i| (i as u8).wrapping_mul(seed))
                    .collect();
                for (n, chunk) in data.chunks(1 << 20).enumerate() {
                    u.write((n << 20) as u64, chunk).await.unwrap();
                }
                u.finish().await.unwrap();
                data
            }
        };
        let (a, b) = tokio::join!(write("a", 3), write("b", 7));
        assert_eq!(&store.get("a").unwrap()[..], &a[..]);
        assert_eq!(&store.get("b").unwrap()[..], &b[..]);
        assert!(
            budget.peak() <= PART + BUF_STEP,
            "peak {} over the budget of {}",
            budget.peak(),
            PART + BUF_STEP
        );
        assert_eq!(budget.used(), 0);
    }
}
