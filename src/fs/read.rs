//! The read path of one open file: a sequential-stream prefetcher over ranged GETs.
//!
//! A read that continues where the last one ended (the first read at offset 0 included)
//! starts or continues a *stream*: ranged GETs are issued ahead of the reader as spawned
//! tasks, a small first one (fast first byte) followed by doubling sizes up to the part size,
//! at most `download_threads` of them ahead of the reader. Reads that land inside the
//! stream's window (the kernel's readahead reorders a little) are served from it; anything
//! else is a random read, served by one exact ranged GET, and resets the stream so no
//! bandwidth is spent on data nobody asked for. Every GET carries `If-Match` with the ETag
//! seen at open, so a file replaced mid-read fails with EIO instead of mixing two versions.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::task::AbortHandle;

use crate::s3::{ErrorKind, ObjectStore, StoreError};

/// Size of the first GET of a stream: small, so the first bytes arrive quickly.
const FIRST_PART: u64 = 256 << 10;
/// How far behind the reader a fetched chunk is kept (for slightly reordered reads).
const BACK_SLACK: u64 = 1 << 20;
/// How far beyond the scheduled window a read may land and still count as the stream.
const FORWARD_SLACK: u64 = 2 << 20;

/// Prefetcher tuning.
#[derive(Clone, Copy, Debug)]
pub struct ReadConfig {
    /// Most GETs in flight ahead of the reader.
    pub threads: usize,
    /// Largest GET.
    pub max_part: u64,
}

type ChunkFuture = Shared<BoxFuture<'static, Result<Bytes, StoreError>>>;

struct Chunk {
    range: Range<u64>,
    data: ChunkFuture,
    /// Readers currently awaiting this chunk: it is only cancelled when there are none.
    waiters: Arc<AtomicUsize>,
    abort: AbortHandle,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.waiters.load(Ordering::Acquire) == 0 {
            self.abort.abort();
        }
    }
}

#[derive(Default)]
struct Stream {
    chunks: VecDeque<Chunk>,
    /// Start of the next chunk to schedule (end of the window).
    next_start: u64,
    /// Size of the next chunk to schedule.
    next_len: u64,
    /// End of the last read served: a read starting here is sequential.
    last_end: u64,
    active: bool,
}

/// An open file being read.
pub struct Reader {
    store: Arc<dyn ObjectStore>,
    key: String,
    size: u64,
    etag: Option<String>,
    cfg: ReadConfig,
    stream: Mutex<Stream>,
}

/// A read's plan: chunks to await, or one direct GET.
enum Plan {
    Chunks(Vec<(Range<u64>, ChunkFuture, Arc<AtomicUsize>)>),
    Direct,
}

impl Reader {
    /// A reader of `size` bytes of `key` at version `etag`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        key: String,
        size: u64,
        etag: Option<String>,
        cfg: ReadConfig,
    ) -> Self {
        Reader {
            store,
            key,
            size,
            etag,
            cfg,
            stream: Mutex::new(Stream::default()),
        }
    }

    /// Object size at open.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Read up to `len` bytes at `off`; short only at end of file.
    pub async fn read(&self, off: u64, len: u32) -> Result<Bytes, StoreError> {
        let end = off.saturating_add(len as u64).min(self.size);
        if off >= end {
            return Ok(Bytes::new());
        }
        match self.plan(off, end) {
            Plan::Direct => {
                self.store
                    .get_range(&self.key, off..end, self.etag.as_deref())
                    .await
            }
            Plan::Chunks(parts) => {
                let mut results = Vec::with_capacity(parts.len());
                for (range, fut, waiters) in parts {
                    let r = fut.await;
                    waiters.fetch_sub(1, Ordering::AcqRel);
                    results.push((range, r?));
                }
                Ok(assemble(off..end, &results))
            }
        }
    }

    fn plan(&self, off: u64, end: u64) -> Plan {
        let mut st = self.stream.lock().unwrap();
        let window_start = st.chunks.front().map_or(st.next_start, |c| c.range.start);
        let in_window = st.active && off >= window_start && off < st.next_start + FORWARD_SLACK;
        if !in_window {
            let sequential = off == st.last_end;
            st.chunks.clear();
            st.active = sequential;
            if !sequential {
                st.last_end = end;
                return Plan::Direct;
            }
            st.next_start = off;
            st.next_len = FIRST_PART.min(self.cfg.max_part);
        }
        while st
            .chunks
            .front()
            .is_some_and(|c| c.range.end + BACK_SLACK <= off)
        {
            st.chunks.pop_front();
        }
        loop {
            let ahead = st.chunks.iter().filter(|c| c.range.end > off).count();
            let needed = st.next_start < end;
            let room = ahead < self.cfg.threads;
            if st.next_start >= self.size || !(needed || room) {
                break;
            }
            let start = st.next_start;
            let stop = (start + st.next_len).min(self.size);
            let chunk = self.spawn_chunk(start..stop);
            st.chunks.push_back(chunk);
            st.next_start = stop;
            st.next_len = (st.next_len * 2).min(self.cfg.max_part);
        }
        st.last_end = end;
        let parts = st
            .chunks
            .iter()
            .filter(|c| c.range.start < end && c.range.end > off)
            .map(|c| {
                c.waiters.fetch_add(1, Ordering::AcqRel);
                (c.range.clone(), c.data.clone(), c.waiters.clone())
            })
            .collect();
        Plan::Chunks(parts)
    }

    fn spawn_chunk(&self, range: Range<u64>) -> Chunk {
        let store = self.store.clone();
        let key = self.key.clone();
        let etag = self.etag.clone();
        let r = range.clone();
        let handle = tokio::spawn(async move { store.get_range(&key, r, etag.as_deref()).await });
        let abort = handle.abort_handle();
        let key = self.key.clone();
        let data = handle
            .map(move |res| match res {
                Ok(r) => r,
                Err(e) => Err(StoreError {
                    op: "GetObject",
                    key,
                    kind: ErrorKind::Other,
                    code: None,
                    message: Some(format!("prefetch task failed: {e}")),
                }),
            })
            .boxed()
            .shared();
        Chunk {
            range,
            data,
            waiters: Arc::new(AtomicUsize::new(0)),
            abort,
        }
    }
}

/// Cut `want` out of chunks that cover it; zero-copy when one chunk does.
fn assemble(want: Range<u64>, chunks: &[(Range<u64>, Bytes)]) -> Bytes {
    let slice = |r: &Range<u64>, b: &Bytes| {
        let s = want.start.max(r.start) - r.start;
        let e = (want.end.min(r.end) - r.start).min(b.len() as u64);
        b.slice(s.min(e) as usize..e as usize)
    };
    if let [(r, b)] = chunks {
        return slice(r, b);
    }
    let mut out = BytesMut::with_capacity((want.end - want.start) as usize);
    for (r, b) in chunks {
        out.extend_from_slice(&slice(r, b));
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::memory::MemoryStore;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    async fn reader(n: usize) -> (Arc<MemoryStore>, Reader, Vec<u8>) {
        let store = Arc::new(MemoryStore::new("b", 1000));
        let d = data(n);
        store.insert("k", d.clone());
        let info = store.head("k").await.unwrap();
        let r = Reader::new(
            store.clone(),
            "k".into(),
            n as u64,
            info.etag,
            ReadConfig {
                threads: 4,
                max_part: 1 << 20,
            },
        );
        (store, r, d)
    }

    #[tokio::test]
    async fn sequential_read_returns_exact_bytes() {
        let (_, r, d) = reader(5_000_000).await;
        let mut got = Vec::new();
        let mut off = 0u64;
        loop {
            let b = r.read(off, 131072).await.unwrap();
            if b.is_empty() {
                break;
            }
            off += b.len() as u64;
            got.extend_from_slice(&b);
        }
        assert_eq!(got, d);
    }

    #[tokio::test]
    async fn random_reads_are_exact_and_do_not_prefetch() {
        let (store, r, d) = reader(3_000_000).await;
        for &(off, len) in &[
            (1_000_000u64, 4096u32),
            (17, 100),
            (2_999_990, 4096),
            (3_000_000, 10),
        ] {
            let b = r.read(off, len).await.unwrap();
            let end = (off as usize + len as usize).min(d.len());
            let start = (off as usize).min(end);
            assert_eq!(&b[..], &d[start..end]);
        }
        // One GET per random read (the one at EOF costs none).
        assert_eq!(store.count("GetObject"), 3);
    }

    #[tokio::test]
    async fn changed_object_fails_instead_of_mixing_versions() {
        let (store, r, _) = reader(1000).await;
        store.insert("k", vec![1u8; 1000]);
        let e = r.read(0, 100).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
    }
}
