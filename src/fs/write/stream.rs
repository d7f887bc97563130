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

use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;
use tracing::warn;

use super::{Uploads, WriteConfig};
use crate::fs::error::{FsError, Result};
use crate::fs::read::Budget;
use crate::s3::{
    CompletedPart, ErrorKind, MultipartUpload, ObjectStore, PutOptions, PutResult, StoreError,
};

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
    buf: BytesMut,
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
            buf: BytesMut::new(),
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
    pub fn take_unsent(&mut self) -> Option<BytesMut> {
        if self.multipart.is_none() && matches!(self.state, State::Open) {
            self.state = State::Cancelled;
            Some(std::mem::take(&mut self.buf))
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
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        while self.buf.len() as u64 >= self.cfg.part_size {
            let part = self.buf.split_to(self.cfg.part_size as usize).freeze();
            if let Err(e) = self.send_part(part).await {
                return Err(self.fail(e).await);
            }
        }
        Ok(data.len() as u32)
    }

    async fn send_part(&mut self, body: Bytes) -> Result<()> {
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
        // Fewer parts in flight when the shared memory budget is spent; at least one.
        let len = body.len() as u64;
        let memory = loop {
            if mp.inflight.len() < self.cfg.threads
                && let Some(r) = self.budget.try_reserve(len)
            {
                break r;
            }
            match mp.inflight.pop_front() {
                Some(oldest) => mp.done.push(join_part(&self.key, oldest).await?),
                None => break self.budget.reserve(len),
            }
        };
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
                self.buf = BytesMut::new();
                Ok(c)
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn commit(&mut self) -> Result<PutResult> {
        if self.multipart.is_none() {
            let body = std::mem::take(&mut self.buf).freeze();
            return Ok(self.store.put(&self.key, body, &self.opts).await?);
        }
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf).freeze();
            self.send_part(last).await?;
        }
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
        self.buf = BytesMut::new();
        self.state = State::Failed(e.clone());
        e
    }

    /// The file was unlinked while open: drop what was written, upload nothing.
    pub async fn cancel(&mut self) {
        if matches!(self.state, State::Open) {
            self.abort_multipart().await;
            self.buf = BytesMut::new();
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
}
