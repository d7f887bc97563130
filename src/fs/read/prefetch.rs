//! The read path of one open file: the block cache first, then a sequential-stream
//! prefetcher over ranged GETs.
//!
//! A read that continues where the last one ended (the first read at offset 0 included)
//! starts or continues a *stream*: block-aligned ranged GETs are issued ahead of the reader
//! as spawned tasks, a small first one (fast first byte) followed by doubling sizes up to
//! the part size, at most `download_threads` of them ahead of the reader and only while the
//! shared memory budget allows (under pressure the window shrinks to what the reader is
//! waiting for; each GET's reservation includes its connection's read buffer,
//! [`ObjectStore::get_overhead`], which outweighs a small chunk). Reads that land inside
//! the stream's window (the kernel's readahead reorders a little) are served from it;
//! anything else is a random read, served by one GET of the blocks it touches, and resets
//! the stream so no bandwidth is spent on data nobody asked for. Random reads and the first
//! megabyte of a stream go into the shared block cache. With a disk cache ([`super::disk`])
//! every fetch — stream chunk or random read — first takes the blocks it finds on disk and
//! GETs only the span of those it does not, and the blocks it GETs are queued for the disk.
//! Every GET carries `If-Match` with the ETag seen at open, so a file replaced mid-read
//! fails with EIO instead of mixing two versions.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::task::AbortHandle;

use super::budget::{Budget, Reservation};
use super::cache::{BLOCK, BlockCache, ObjectVersion};
use super::disk::DiskCache;
use crate::s3::{ErrorKind, ObjectStore, StoreError};
/// How far behind the reader a fetched chunk is kept (for slightly reordered reads).
const BACK_SLACK: u64 = 1 << 20;
/// Largest stream chunk that is also put in the block cache.
const STREAM_CACHE_MAX: u64 = 1 << 20;
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

/// What all readers share: the block cache, its disk tier and the memory budget.
#[derive(Clone)]
pub struct ReadShared {
    /// Block cache.
    pub cache: Arc<BlockCache>,
    /// Memory budget.
    pub budget: Arc<Budget>,
    /// The disk tier (`--cache-dir` with a `--max-cache-size` above zero).
    pub disk: Option<Arc<DiskCache>>,
}

impl ReadShared {
    /// Memory for what may also go without (prefetching ahead, the disk's write queue):
    /// from the budget, after asking the cache to give some back if needed; `None` when
    /// even that is not enough.
    fn reserve_optional(&self, bytes: u64) -> Option<Reservation> {
        self.budget.try_reserve(bytes).or_else(|| {
            self.cache.make_room(bytes);
            self.budget.try_reserve(bytes)
        })
    }
}

/// Where one fetch looks for blocks before the network, and leaves what it got.
#[derive(Clone)]
struct Tiers {
    bucket: Arc<str>,
    version: ObjectVersion,
    /// Whether the fetched blocks go into the memory cache (`shared.cache`) too.
    in_memory: bool,
    /// The caches, the disk tier, and the budget its write queue holds blocks in.
    shared: ReadShared,
}

type ChunkFuture = Shared<BoxFuture<'static, Result<Bytes, StoreError>>>;

struct Chunk {
    range: Range<u64>,
    data: ChunkFuture,
    /// Readers currently awaiting this chunk: it is only cancelled when there are none.
    waiters: Arc<AtomicUsize>,
    abort: AbortHandle,
    _memory: Reservation,
}

/// One reader's claim on a chunk, given up when dropped: also when the read is abandoned
/// half-way (an interrupted request), so the chunk can still be cancelled later.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
    /// Chunks allowed ahead of the reader: 1 when a stream starts (so the first GET has the
    /// bandwidth to itself: fast first byte), doubling with each read that continues it, up
    /// to `download_threads`.
    max_ahead: usize,
}

/// An open file being read.
pub struct Reader {
    store: Arc<dyn ObjectStore>,
    key: String,
    bucket: Arc<str>,
    size: u64,
    etag: Option<String>,
    /// Cache identity; `None` when the server gave no ETag (nothing is cached then).
    version: Option<ObjectVersion>,
    cfg: ReadConfig,
    shared: ReadShared,
    stream: Mutex<Stream>,
}

/// A read's plan: chunks to await, or one direct GET.
enum Plan {
    Chunks(Vec<(Range<u64>, ChunkFuture, Waiting)>),
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
        shared: ReadShared,
    ) -> Self {
        let version = etag.as_ref().map(|e| ObjectVersion {
            key: key.as_str().into(),
            etag: e.as_str().into(),
        });
        Reader {
            bucket: store.bucket().into(),
            store,
            key,
            size,
            etag,
            version,
            cfg,
            shared,
            stream: Mutex::new(Stream::default()),
        }
    }

    /// Read up to `len` bytes at `off`; short only at end of file.
    pub async fn read(&self, off: u64, len: u32) -> Result<Bytes, StoreError> {
        let end = off.saturating_add(len as u64).min(self.size);
        if off >= end {
            return Ok(Bytes::new());
        }
        // Streams are served by their own window (so it keeps moving ahead of the reader);
        // the cache serves the random reads.
        match self.plan(off, end) {
            Plan::Direct => {
                if let Some(hit) = self.cached(off..end) {
                    return Ok(hit);
                }
                // Whole blocks, so the neighbourhood is cached for the next random read.
                let blocks =
                    off / BLOCK * BLOCK..end.div_ceil(BLOCK).saturating_mul(BLOCK).min(self.size);
                let _memory = self
                    .shared
                    .budget
                    .reserve(blocks.end - blocks.start + self.store.get_overhead());
                let data = fetch(
                    self.store.as_ref(),
                    &self.key,
                    blocks.clone(),
                    self.etag.as_deref(),
                    self.tiers(true).as_ref(),
                )
                .await?;
                Ok(assemble(off..end, &[(blocks, data)]))
            }
            Plan::Chunks(parts) => {
                let mut results = Vec::with_capacity(parts.len());
                for (range, fut, waiting) in parts {
                    let r = fut.await;
                    drop(waiting);
                    match r {
                        Ok(data) => results.push((range, data)),
                        Err(e) => {
                            self.drop_failed();
                            return Err(e);
                        }
                    }
                }
                Ok(assemble(off..end, &results))
            }
        }
    }

    /// Forget the chunks whose GET failed, so that the next read asks again instead of
    /// being answered with the same error.
    fn drop_failed(&self) {
        let mut st = self.stream.lock().unwrap();
        st.chunks.retain(|c| !matches!(c.data.peek(), Some(Err(_))));
        if let Some(first_gap) = st
            .chunks
            .iter()
            .zip(st.chunks.iter().skip(1))
            .find(|(a, b)| a.range.end != b.range.start)
            .map(|(a, _)| a.range.end)
        {
            // Keep the window contiguous: chunks after a hole are dropped and rescheduled.
            st.chunks.retain(|c| c.range.end <= first_gap);
        }
        let resume = st.chunks.back().map(|c| c.range.end);
        match resume {
            Some(at) => st.next_start = at,
            None => st.active = false,
        }
    }

    /// The bytes of `want` if every block they touch is cached.
    fn cached(&self, want: Range<u64>) -> Option<Bytes> {
        let version = self.version.as_ref()?;
        let first = want.start / BLOCK;
        let last = (want.end - 1) / BLOCK;
        let mut blocks = Vec::with_capacity((last - first + 1) as usize);
        for i in first..=last {
            let b = self.shared.cache.get(version, i)?;
            blocks.push((i * BLOCK..i * BLOCK + b.len() as u64, b));
        }
        Some(assemble(want, &blocks))
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
            st.next_start = off / BLOCK * BLOCK;
            st.next_len = BLOCK;
            st.max_ahead = 1;
        } else {
            st.max_ahead = (st.max_ahead * 2).clamp(1, self.cfg.threads);
        }
        while st
            .chunks
            .front()
            .is_some_and(|c| c.range.end + BACK_SLACK <= off)
        {
            st.chunks.pop_front();
        }
        let max_part = (self.cfg.max_part / BLOCK).max(1) * BLOCK;
        loop {
            if st.next_start >= self.size {
                break;
            }
            let needed = st.next_start < end;
            let ahead = st.chunks.iter().filter(|c| c.range.end > off).count();
            if !needed && ahead >= st.max_ahead {
                break;
            }
            let start = st.next_start;
            let mut stop = (start + st.next_len).min(self.size);
            // The GET's connection buffer too: many small chunks at once hold more of it
            // than of data.
            let overhead = self.store.get_overhead();
            let memory = match self.shared.reserve_optional(stop - start + overhead) {
                Some(r) => r,
                // Budget spent: what the reader waits for is fetched anyway, but only
                // that (whole blocks), not the chunk the window would have grown to — many
                // readers in a small budget must not each force a multi-MiB chunk.
                None if needed => {
                    stop = stop.min(end.div_ceil(BLOCK).saturating_mul(BLOCK).min(self.size));
                    st.next_len = BLOCK;
                    self.shared.budget.reserve(stop - start + overhead)
                }
                // Budget spent: the window stops growing here.
                None => break,
            };
            let chunk = self.spawn_chunk(start..stop, memory);
            st.chunks.push_back(chunk);
            st.next_start = stop;
            st.next_len = (st.next_len * 2).min(max_part);
        }
        st.last_end = end;
        let parts = st
            .chunks
            .iter()
            .filter(|c| c.range.start < end && c.range.end > off)
            .map(|c| {
                c.waiters.fetch_add(1, Ordering::AcqRel);
                (c.range.clone(), c.data.clone(), Waiting(c.waiters.clone()))
            })
            .collect();
        Plan::Chunks(parts)
    }

    /// The caches a fetch uses: the memory one only when `memory`; none without an ETag.
    fn tiers(&self, memory: bool) -> Option<Tiers> {
        let version = self.version.clone()?;
        (memory || self.shared.disk.is_some()).then(|| Tiers {
            bucket: self.bucket.clone(),
            version,
            in_memory: memory,
            shared: self.shared.clone(),
        })
    }

    fn spawn_chunk(&self, range: Range<u64>, memory: Reservation) -> Chunk {
        let store = self.store.clone();
        let key = self.key.clone();
        let etag = self.etag.clone();
        // Only a stream's first, small chunks are cached in memory (they hold whole small
        // files, which are worth keeping); the bulk of a large file streams through without
        // evicting everything else, and a re-read of it is served by the kernel's page
        // cache, or by the disk cache, which takes every chunk.
        let tiers = self.tiers(range.end - range.start <= STREAM_CACHE_MAX);
        let r = range.clone();
        let handle = tokio::spawn(async move {
            fetch(store.as_ref(), &key, r, etag.as_deref(), tiers.as_ref()).await
        });
        let abort = handle.abort_handle();
        let key = self.key.clone();
        let data = handle
            .map(move |res| match res {
                Ok(r) => r,
                Err(e) => Err(StoreError::with_message(
                    "GetObject",
                    key,
                    ErrorKind::Other,
                    format!("prefetch task failed: {e}"),
                )),
            })
            .boxed()
            .shared();
        Chunk {
            range,
            data,
            waiters: Arc::new(AtomicUsize::new(0)),
            abort,
            _memory: memory,
        }
    }
}

/// The bytes of a block-aligned `range` (ending at a block boundary or the end of the
/// object): from the disk tier where it has them, else GET; then put its blocks in the
/// memory cache.
async fn fetch(
    store: &dyn ObjectStore,
    key: &str,
    range: Range<u64>,
    etag: Option<&str>,
    tiers: Option<&Tiers>,
) -> Result<Bytes, StoreError> {
    let start = range.start;
    let Some(tiers) = tiers else {
        return store.get_range(key, range, etag).await;
    };
    let data = match &tiers.shared.disk {
        Some(disk) => fetch_via_disk(store, key, range, etag, tiers, disk).await?,
        None => store.get_range(key, range, etag).await?,
    };
    if tiers.in_memory {
        let mut at = 0u64;
        while at < data.len() as u64 {
            let stop = (at + BLOCK).min(data.len() as u64);
            tiers.shared.cache.insert(
                &tiers.version,
                (start + at) / BLOCK,
                data.slice(at as usize..stop as usize),
            );
            at = stop;
        }
    }
    Ok(data)
}

/// [`fetch`] with a disk tier, into one buffer of the range's size: runs of blocks found on
/// disk are read straight into it, and each stretch from a block the disk lacks to the last
/// block it lacks is one GET appended to it (and queued for the disk afterwards). Blocks in
/// the index cost a file read; blocks not in it, none.
async fn fetch_via_disk(
    store: &dyn ObjectStore,
    key: &str,
    range: Range<u64>,
    etag: Option<&str>,
    tiers: &Tiers,
    disk: &Arc<DiskCache>,
) -> Result<Bytes, StoreError> {
    let first = range.start / BLOCK;
    let lens: Vec<usize> = (range.start..range.end)
        .step_by(BLOCK as usize)
        .map(|at| (range.end - at).min(BLOCK) as usize)
        .collect();
    let n = lens.len();
    let indexed = |i: usize| disk.any_indexed(&tiers.bucket, &tiers.version, first + i as u64, 1);
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    // Where in `out` the GETs put what they fetched: queued for the disk at the end.
    let mut fetched: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < n {
        if disk.any_indexed(
            &tiers.bucket,
            &tiers.version,
            first + i as u64,
            (n - i) as u64,
        ) {
            let lens = lens[i..].to_vec();
            let (back, read) = disk
                .append_run(
                    tiers.bucket.clone(),
                    tiers.version.clone(),
                    first + i as u64,
                    lens,
                    out,
                )
                .await
                .map_err(|e| {
                    StoreError::with_message(
                        "GetObject",
                        key.to_owned(),
                        ErrorKind::Other,
                        format!("reading the disk cache failed: {e}"),
                    )
                })?;
            out = back;
            i += read;
            if i == n {
                break;
            }
        }
        // Block i is not on disk: one GET from it to the last block of the range that
        // is not indexed either.
        let last = (i..n).rev().find(|&j| !indexed(j)).unwrap_or(i);
        let span = range.start + i as u64 * BLOCK
            ..(range.start + (last as u64 + 1) * BLOCK).min(range.end);
        let at = out.len();
        store.get_range_into(key, span, etag, &mut out).await?;
        crate::metrics::disk_cache_misses((last + 1 - i) as u64);
        fetched.push(at..out.len());
        i = last + 1;
    }
    let data = out.freeze();
    for span in fetched {
        let block = first + (span.start as u64) / BLOCK;
        // Queued blocks stay in memory until written: they hold budget meanwhile, or are
        // not cached when there is none.
        disk.put(
            tiers.bucket.clone(),
            tiers.version.clone(),
            block,
            data.slice(span),
            |bytes| tiers.shared.reserve_optional(bytes),
        );
    }
    Ok(data)
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

    fn shared(limit: u64) -> ReadShared {
        let budget = Budget::new(limit);
        ReadShared {
            cache: Arc::new(BlockCache::new(limit / 2, budget.clone())),
            budget,
            disk: None,
        }
    }

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
            shared(64 << 20),
        );
        (store, r, d)
    }

    #[tokio::test]
    async fn a_failed_prefetch_is_asked_again_by_the_next_read() {
        use crate::s3::faulty::{Faults, Faulty};
        let store = Arc::new(MemoryStore::new("b", 1000));
        let d = data(3_000_000);
        store.insert("k", d.clone());
        let etag = store.head("k").await.unwrap().etag;
        let faults = Faults {
            before: 0.5,
            ..Faults::default()
        };
        let faulty = Arc::new(Faulty::new(store, faults, 5));
        let cfg = ReadConfig {
            threads: 4,
            max_part: 1 << 20,
        };
        let r = Reader::new(
            faulty.clone(),
            "k".into(),
            3_000_000,
            etag,
            cfg,
            shared(64 << 20),
        );
        let (mut got, mut off, mut failures) = (Vec::new(), 0u64, 0);
        while off < 3_000_000 {
            match r.read(off, 131072).await {
                Ok(b) => {
                    off += b.len() as u64;
                    got.extend_from_slice(&b);
                }
                Err(_) => {
                    failures += 1;
                    assert!(failures < 200, "a failed chunk keeps failing every read");
                }
            }
        }
        assert!(got == d);
        assert!(failures > 0 && faulty.injected() > 0);
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
    async fn each_chunk_holds_its_connection_buffer_in_the_budget_too() {
        const OVERHEAD: u64 = 1 << 20;
        let store = Arc::new(MemoryStore::new("b", 1000));
        store.set_get_overhead(OVERHEAD);
        let d = data(32 << 20);
        store.insert("k", d.clone());
        let etag = store.head("k").await.unwrap().etag;
        let limit = 8 << 20;
        let shared = shared(limit);
        let budget = shared.budget.clone();
        let cfg = ReadConfig {
            threads: 8,
            max_part: 1 << 20,
        };
        let r = Reader::new(store, "k".into(), d.len() as u64, etag, cfg, shared);
        let mut off = 0u64;
        let mut most = 0;
        while off < 8 << 20 {
            let b = r.read(off, 131072).await.unwrap();
            assert_eq!(&b[..], &d[off as usize..off as usize + b.len()]);
            off += b.len() as u64;
            let st = r.stream.lock().unwrap();
            let data: u64 = st.chunks.iter().map(|c| c.range.end - c.range.start).sum();
            let n = st.chunks.len() as u64;
            most = most.max(n);
            // Cached blocks are the stream's first chunks, shared with it: counted once.
            assert_eq!(budget.used() - r.shared.cache.bytes(), data + n * OVERHEAD);
            assert!(budget.used() <= limit, "{} over {limit}", budget.used());
        }
        // 8 MiB of budget holds at most 4 chunks of 1 MiB with their 1 MiB buffers, where
        // it held 8 without them.
        assert!((2..=4).contains(&most), "{most} chunks at once");
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

    /// With a disk tier, a second reader with a cold memory cache (a remount) reads the
    /// whole object from disk with no GET; blocks missing from disk are fetched as one
    /// span; a new ETag is never answered from the old one's blocks.
    #[tokio::test]
    async fn the_disk_tier_serves_a_reread_and_never_an_old_etag() {
        use super::super::disk::{DiskCache, DiskConfig};
        let t = tempfile::tempdir().unwrap();
        let disk = DiskCache::open(&DiskConfig {
            dir: t.path().to_path_buf(),
            max_size: 1 << 30,
            min_free: Some(0),
            queue_bytes: 64 << 20,
        })
        .unwrap();
        let store = Arc::new(MemoryStore::new("b", 1000));
        let n = 3_000_000usize;
        let d = data(n);
        store.insert("k", d.clone());
        let read_all = |r: Reader| async move {
            let mut got = Vec::new();
            loop {
                let b = r.read(got.len() as u64, 131072).await.unwrap();
                if b.is_empty() {
                    return got;
                }
                got.extend_from_slice(&b);
            }
        };
        let open = || async {
            let mut sh = shared(64 << 20);
            sh.disk = Some(disk.clone());
            let info = store.head("k").await.unwrap();
            let cfg = ReadConfig {
                threads: 4,
                max_part: 1 << 20,
            };
            Reader::new(store.clone(), "k".into(), n as u64, info.etag, cfg, sh)
        };
        assert!(read_all(open().await).await == d);
        disk.flush();
        let gets = store.count("GetObject");
        assert!(gets > 0);
        assert_eq!(disk.blocks(), n.div_ceil(BLOCK as usize));
        assert!(read_all(open().await).await == d);
        assert_eq!(store.count("GetObject"), gets, "the re-read came from disk");
        // Random reads too, with a block gone from disk: one GET for it.
        let name = |i: u64| {
            let p = t.path().join(super::super::disk::SUBDIR);
            let mut found = None;
            for sub in std::fs::read_dir(&p).unwrap().flatten() {
                if sub.path().is_dir() {
                    for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
                        let bytes = std::fs::read(f.path()).unwrap();
                        if bytes.len() > 24 && bytes[16..24] == i.to_le_bytes() {
                            found = Some(f.path());
                        }
                    }
                }
            }
            found.unwrap()
        };
        std::fs::write(name(5), b"garbage").unwrap();
        let r = open().await;
        let off = 4 * BLOCK + 10;
        let got = r.read(off, 3 * BLOCK as u32).await.unwrap();
        assert_eq!(
            &got[..],
            &d[off as usize..off as usize + 3 * BLOCK as usize]
        );
        assert_eq!(store.count("GetObject"), gets + 1);
        // The object changes: its new bytes, never the old blocks.
        let d2: Vec<u8> = d.iter().map(|b| b ^ 0xff).collect();
        store.insert("k", d2.clone());
        assert!(read_all(open().await).await == d2);
        assert!(store.count("GetObject") > gets + 1);
    }

    #[tokio::test]
    async fn changed_object_fails_instead_of_mixing_versions() {
        let (store, r, _) = reader(1000).await;
        store.insert("k", vec![1u8; 1000]);
        let e = r.read(0, 100).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
    }

    /// Any mix of sequential runs and jumps returns exactly the object's bytes, with several
    /// readers sharing one cache and a small budget.
    #[tokio::test]
    async fn any_read_sequence_returns_the_object_bytes() {
        let store = Arc::new(MemoryStore::new("b", 1000));
        let n = 6_000_000usize;
        let d = data(n);
        store.insert("k", d.clone());
        let etag = store.head("k").await.unwrap().etag;
        let sh = shared(8 << 20);
        let mut seed = 12345u64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _reader in 0..6 {
            let r = Reader::new(
                store.clone(),
                "k".into(),
                n as u64,
                etag.clone(),
                ReadConfig {
                    threads: 1 + next(8) as usize,
                    max_part: 1 << (18 + next(5)),
                },
                sh.clone(),
            );
            let mut off = next(n as u64);
            for _ in 0..60 {
                let len = 1 + next(300_000) as u32;
                let b = r.read(off, len).await.unwrap();
                let end = (off as usize + len as usize).min(n);
                let start = (off as usize).min(end);
                assert_eq!(&b[..], &d[start..end], "read {off}+{len}");
                assert!(sh.cache.bytes() <= 4 << 20, "cache within capacity");
                // Mostly sequential, sometimes a jump (forward, backward, past EOF).
                off = match next(10) {
                    0 => next(n as u64 + 1000),
                    1 => off.saturating_sub(next(100_000)),
                    _ => off + b.len() as u64,
                };
            }
        }
        drop(sh.cache);
    }
}
