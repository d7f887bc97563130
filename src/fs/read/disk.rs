//! The disk tier of the block cache (`--cache-dir` with `--max-cache-size`): object blocks
//! kept in files, so a re-read after the page cache and the memory cache let go of them —
//! or after a remount — costs a local file read instead of a GET.
//!
//! It owns the cache directory's `read-cache/` subtree: the lock file that keeps a second
//! mount out, one file per block (named by a SHA-256 of bucket, key, ETag and block index,
//! spread over 256 subdirectories), the index of those files in LRU order with their total
//! size, and the writer thread that stores new blocks and evicts old ones. It sits behind
//! the memory cache ([`super::cache`]): memory miss → disk → network.
//!
//! Why each design point:
//! - The ETag is part of a block's identity, so a changed object is never served from old
//!   blocks: they are simply not looked up again and age out through the LRU.
//! - Every file starts with a header (magic, version, bucket, key, ETag, index, length and a
//!   CRC-32 over header and data). A file whose header does not name exactly the block asked
//!   for, or whose data is short or fails the checksum (a hash collision, a truncated file
//!   after a crash, a bit flip, a foreign file) is removed and refetched, never served.
//! - Files are written to a temporary name and renamed, so a reader sees a whole file or
//!   none; writes happen on the writer thread, off the reply path, through a queue bounded
//!   in bytes: when it is full the block is not cached (the read already has its data).
//! - The total is kept under `max_size`, and writing stops (after evicting what it can) when
//!   the file system's free space would fall under `min_free`, so the cache never fills the
//!   disk that staging files and everything else on it need.
//! - A disk error (ENOSPC, EIO, permissions, a removed directory) never fails a read: it is
//!   logged once and the block comes from the network.
//! - At start the subtree is scanned to rebuild the index in modification-time order (a hit
//!   refreshes a file's mtime), so the cache and its LRU order survive remounts.
//!
//! Everything here is blocking file I/O: callers on the async runtime go through
//! `spawn_blocking` ([`DiskCache::append_run`]); [`DiskCache::put`] only queues.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use lru::LruCache;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::budget::Reservation;
use super::cache::{BLOCK, ObjectVersion};
use crate::metrics;

/// The subdirectory of `--cache-dir` the disk tier owns.
pub const SUBDIR: &str = "read-cache";
const LOCK_FILE: &str = "lock";
const MAGIC: &[u8; 8] = b"S3MBLOCK";
const VERSION: u32 = 1;
/// Fixed part of the header: magic, version, crc, index, data length, three name lengths.
const FIXED: usize = 8 + 4 + 4 + 8 + 4 + 2 + 2 + 2;
/// Largest file a block can make (names are at most 64 KiB each).
const MAX_FILE: u64 = FIXED as u64 + 3 * u16::MAX as u64 + BLOCK;

/// Settings of the disk tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// `--cache-dir`: the tier lives in its `read-cache/` subdirectory.
    pub dir: PathBuf,
    /// `--max-cache-size`: most bytes of block files kept.
    pub max_size: u64,
    /// `--cache-min-free`: free space of the file system under which nothing is written
    /// (and old blocks are evicted to get back over it); `None`: 5% of its size.
    pub min_free: Option<u64>,
    /// Most bytes waiting in the write queue; more is not cached.
    pub queue_bytes: u64,
}

/// Why the disk tier could not be opened (the mount is refused: the user asked for it).
#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    /// Another process holds the lock.
    #[error(
        "--cache-dir {0}: the read cache there is in use by another s3mount (lock {1} is held); \
         give each mount its own --cache-dir"
    )]
    InUse(String, String),
    /// The directory or lock file cannot be made.
    #[error("--cache-dir {0}: cannot set up the read cache: {1}")]
    Io(String, std::io::Error),
}

/// Identity of one block: which bucket, which object version, which block.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockId {
    /// Bucket name (one mount may serve many: the buckets view).
    pub bucket: Arc<str>,
    /// Object key and ETag.
    pub version: ObjectVersion,
    /// Block index (offset / [`BLOCK`]).
    pub index: u64,
}

type Name = [u8; 32];

impl BlockId {
    fn name(&self) -> Name {
        let mut h = Sha256::new();
        for part in [
            self.bucket.as_bytes(),
            self.version.key.as_bytes(),
            self.version.etag.as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(self.index.to_le_bytes());
        h.finalize().into()
    }
}

fn hex(name: &Name) -> String {
    use std::fmt::Write as _;
    name.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<Name> {
    if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The header a block file of `id` with `len` data bytes starts with, its checksum field
/// (bytes 12..16) zeroed: what a reader compares a file's header with, and what a writer
/// completes with the checksum.
fn header_for(id: &BlockId, len: usize) -> Vec<u8> {
    let names = [
        id.bucket.as_bytes(),
        id.version.key.as_bytes(),
        id.version.etag.as_bytes(),
    ];
    let mut h = Vec::with_capacity(FIXED + names.iter().map(|n| n.len()).sum::<usize>());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&[0; 4]); // crc
    h.extend_from_slice(&id.index.to_le_bytes());
    h.extend_from_slice(&(len as u32).to_le_bytes());
    for n in names {
        h.extend_from_slice(&(n.len() as u16).to_le_bytes());
    }
    for n in names {
        h.extend_from_slice(n);
    }
    h
}

/// The CRC-32 a block file carries: over its header after the checksum field, then its data.
fn checksum(header: &[u8], data: &[u8]) -> [u8; 4] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[16..]);
    crc.update(data);
    crc.finalize().to_le_bytes()
}

/// The header, with its checksum, of the block file of `id` holding `data`.
fn encode_header(id: &BlockId, data: &[u8]) -> Vec<u8> {
    let mut h = header_for(id, data.len());
    let sum = checksum(&h, data);
    h[12..16].copy_from_slice(&sum);
    h
}

/// Fill `buf` from `f`; `Ok(false)` when the file ends first.
fn fill(f: &mut File, buf: &mut [u8]) -> std::io::Result<bool> {
    match f.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Read the data of `id`'s block file `f` into `dest` (exactly its length): `Ok(false)`
/// when the file is not exactly that block intact (another block's or a foreign header,
/// other length, truncated, longer, failing the checksum).
fn read_checked(f: &mut File, id: &BlockId, dest: &mut [u8]) -> std::io::Result<bool> {
    let want = header_for(id, dest.len());
    let mut head = vec![0u8; want.len()];
    if !fill(f, &mut head)? || head[..12] != want[..12] || head[16..] != want[16..] {
        return Ok(false);
    }
    if !fill(f, dest)? || f.read(&mut [0u8; 1])? != 0 {
        return Ok(false);
    }
    Ok(checksum(&head, dest) == head[12..16])
}

struct Index {
    lru: LruCache<Name, u64>,
    bytes: u64,
}

struct Inner {
    root: PathBuf,
    max_size: u64,
    min_free: u64,
    index: Mutex<Index>,
    /// Bytes in the write queue.
    queued: AtomicU64,
    queue_bytes: u64,
    read_warned: AtomicBool,
    write_warned: AtomicBool,
    check_warned: AtomicBool,
    /// Held for the cache's life: the exclusive `flock`.
    _lock: File,
}

struct Job {
    bucket: Arc<str>,
    version: ObjectVersion,
    /// Block index of `data`'s first byte.
    first: u64,
    data: Bytes,
    /// The memory budget `data` holds until it is written.
    _memory: Reservation,
}

/// The disk tier; one per mount, shared by all handles and buckets.
pub struct DiskCache {
    inner: Arc<Inner>,
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for DiskCache {
    /// Finish the queued writes and let go of the lock before returning, so the directory
    /// can be opened again at once.
    fn drop(&mut self) {
        drop(self.queue.lock().unwrap().take());
        if let Some(w) = self.writer.lock().unwrap().take() {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("root", &self.inner.root)
            .field("max_size", &self.inner.max_size)
            .finish_non_exhaustive()
    }
}

impl DiskCache {
    /// Lock and scan `cfg.dir/read-cache`, start the writer thread. Blocking.
    pub fn open(cfg: &DiskConfig) -> Result<Arc<DiskCache>, DiskCacheError> {
        let shown = cfg.dir.display().to_string();
        let root = cfg.dir.join(SUBDIR);
        let io = |e| DiskCacheError::Io(shown.clone(), e);
        fs::create_dir_all(&root).map_err(io)?;
        let lock_path = root.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == ErrorKind::WouldBlock {
                DiskCacheError::InUse(shown, lock_path.display().to_string())
            } else {
                io(e)
            });
        }
        let (lru, bytes) = scan(&root);
        let min_free = cfg
            .min_free
            .unwrap_or_else(|| statvfs(&root).map_or(0, |(_, size)| size / 20));
        let inner = Arc::new(Inner {
            root,
            max_size: cfg.max_size,
            min_free,
            index: Mutex::new(Index { lru, bytes }),
            queued: AtomicU64::new(0),
            queue_bytes: cfg.queue_bytes,
            read_warned: AtomicBool::new(false),
            write_warned: AtomicBool::new(false),
            check_warned: AtomicBool::new(false),
            _lock: lock,
        });
        {
            let mut idx = inner.index.lock().unwrap();
            metrics::disk_cache_bytes(idx.bytes as i64);
            inner.evict_to(&mut idx, inner.max_size);
            info!(
                dir = %inner.root.display(),
                blocks = idx.lru.len(),
                bytes = idx.bytes,
                max_size = inner.max_size,
                min_free = inner.min_free,
                "read cache on disk"
            );
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let writer = inner.clone();
        let thread = std::thread::Builder::new()
            .name("s3mount-disk".into())
            .spawn(move || {
                for job in rx {
                    let len = job.data.len() as u64;
                    writer.store(job);
                    writer.queued.fetch_sub(len, Ordering::AcqRel);
                }
            })
            .map_err(io)?;
        Ok(Arc::new(DiskCache {
            inner,
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(thread)),
        }))
    }

    /// Whether block `id` is in the index (no I/O): a cheap pre-check before going to a
    /// blocking thread.
    pub fn contains(&self, id: &BlockId) -> bool {
        self.inner.index.lock().unwrap().lru.contains(&id.name())
    }

    /// Block `id`, which must hold exactly `len` bytes, if a valid file has it (the tests'
    /// view of one block; reads go through [`DiskCache::append_run`]). A file that fails the
    /// check is removed.
    #[cfg(test)]
    fn get(&self, id: &BlockId, len: usize) -> Option<Bytes> {
        let mut buf = vec![0; len];
        self.inner.read_into(id, &mut buf).then(|| Bytes::from(buf))
    }

    /// Whether any of blocks `first..first + n` of `version` in `bucket` is indexed (no I/O).
    pub fn any_indexed(
        &self,
        bucket: &Arc<str>,
        version: &ObjectVersion,
        first: u64,
        n: u64,
    ) -> bool {
        (first..first + n).any(|index| {
            self.contains(&BlockId {
                bucket: bucket.clone(),
                version: version.clone(),
                index,
            })
        })
    }

    /// Append to `out`, on a blocking thread, blocks `first..` of `version` in `bucket`
    /// with lengths `lens`, in order, for as long as the disk has them; gives `out` back
    /// with how many blocks it appended. Each block is read straight into `out`, the
    /// buffer the chunk is served from: no buffer per block and no second copy.
    pub async fn append_run(
        self: &Arc<Self>,
        bucket: Arc<str>,
        version: ObjectVersion,
        first: u64,
        lens: Vec<usize>,
        mut out: BytesMut,
    ) -> Result<(BytesMut, usize), tokio::task::JoinError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut appended = 0;
            for (index, len) in (first..).zip(lens) {
                let id = BlockId {
                    bucket: bucket.clone(),
                    version: version.clone(),
                    index,
                };
                let at = out.len();
                out.resize(at + len, 0);
                if !me.inner.read_into(&id, &mut out[at..]) {
                    out.truncate(at);
                    break;
                }
                appended += 1;
            }
            metrics::disk_cache_hits(appended as u64);
            (out, appended)
        })
        .await
    }

    /// Store the blocks of `data`, which starts at block `first` of `version` (whole
    /// blocks; the last may be short at the end of the object), in the background, holding
    /// the budget `reserve` gives for its length until written. Dropped when the write queue
    /// is full (then `reserve` is not asked, so nothing is evicted for it) or `reserve`
    /// gives nothing.
    pub fn put(
        &self,
        bucket: Arc<str>,
        version: ObjectVersion,
        first: u64,
        data: Bytes,
        reserve: impl FnOnce(u64) -> Option<Reservation>,
    ) {
        let len = data.len() as u64;
        if len == 0 {
            return;
        }
        let queued = self.inner.queued.fetch_add(len, Ordering::AcqRel);
        let memory = if queued + len > self.inner.queue_bytes {
            None
        } else {
            reserve(len)
        };
        let Some(memory) = memory else {
            self.inner.queued.fetch_sub(len, Ordering::AcqRel);
            metrics::disk_cache_dropped_write();
            return;
        };
        let job = Job {
            bucket,
            version,
            first,
            data,
            _memory: memory,
        };
        let sent = match self.queue.lock().unwrap().as_ref() {
            Some(q) => q.send(job).is_ok(),
            None => false,
        };
        if !sent {
            self.inner.queued.fetch_sub(len, Ordering::AcqRel);
        }
    }

    /// Wait until every queued write is done (tests, and the bench's remount).
    pub fn flush(&self) {
        while self.inner.queued.load(Ordering::Acquire) > 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Bytes of block files indexed.
    pub fn bytes(&self) -> u64 {
        self.inner.index.lock().unwrap().bytes
    }

    /// Blocks indexed.
    pub fn blocks(&self) -> usize {
        self.inner.index.lock().unwrap().lru.len()
    }
}

impl Inner {
    fn path(&self, name: &Name) -> PathBuf {
        let h = hex(name);
        self.root.join(&h[..2]).join(h)
    }

    /// Block `id` into `dest` (exactly its length) if it is indexed and its file holds
    /// exactly that block, intact; a file failing the check is removed, an unreadable one
    /// forgotten.
    fn read_into(&self, id: &BlockId, dest: &mut [u8]) -> bool {
        let name = id.name();
        // Promotes it in the LRU order; nothing to read when it is not indexed.
        if self.index.lock().unwrap().lru.get(&name).is_none() {
            return false;
        }
        let path = self.path(&name);
        let checked = File::open(&path).and_then(|mut f| Ok((read_checked(&mut f, id, dest)?, f)));
        match checked {
            Ok((true, file)) => {
                // The LRU order survives a remount through the mtime.
                let _ = file.set_modified(SystemTime::now());
                true
            }
            Ok((false, _)) => {
                if !self.check_warned.swap(true, Ordering::AcqRel) {
                    warn!(
                        path = %path.display(),
                        "disk cache: a block file failed its check (truncated, corrupted or \
                         foreign); removed, the block is read from S3 (logged once)"
                    );
                } else {
                    debug!(path = %path.display(), "disk cache: a block file failed its check; removed");
                }
                let _ = fs::remove_file(&path);
                self.forget(&name);
                false
            }
            Err(e) => {
                if e.kind() != ErrorKind::NotFound {
                    self.warn_once(&self.read_warned, "reading", &path, &e);
                }
                self.forget(&name);
                false
            }
        }
    }

    fn forget(&self, name: &Name) {
        let mut idx = self.index.lock().unwrap();
        if let Some(len) = idx.lru.pop(name) {
            idx.bytes -= len;
            metrics::disk_cache_bytes(-(len as i64));
        }
    }

    fn warn_once(&self, flag: &AtomicBool, what: &str, path: &Path, e: &std::io::Error) {
        if !flag.swap(true, Ordering::AcqRel) {
            warn!(
                path = %path.display(),
                error = %e,
                "disk cache: {what} failed; reads go to S3 instead (logged once)"
            );
        } else {
            debug!(path = %path.display(), error = %e, "disk cache: {what} failed");
        }
    }

    /// Evict least-recently-used files until at most `target` bytes are indexed.
    fn evict_to(&self, idx: &mut Index, target: u64) {
        while idx.bytes > target {
            if !self.evict_one(idx) {
                break;
            }
        }
    }

    fn evict_one(&self, idx: &mut Index) -> bool {
        let Some((name, len)) = idx.lru.pop_lru() else {
            return false;
        };
        idx.bytes -= len;
        metrics::disk_cache_bytes(-(len as i64));
        let _ = fs::remove_file(self.path(&name));
        true
    }

    /// Free bytes of the cache's file system (`None` when statvfs fails).
    fn free_space(&self) -> Option<u64> {
        statvfs(&self.root).map(|(free, _)| free)
    }

    /// Make room for `need` more bytes under both the size cap and the free-space floor;
    /// false when the floor cannot be met even with the cache empty.
    fn make_room(&self, need: u64) -> bool {
        let mut idx = self.index.lock().unwrap();
        self.evict_to(&mut idx, self.max_size.saturating_sub(need));
        if self.min_free == 0 {
            return true;
        }
        loop {
            match self.free_space() {
                Some(free) if free >= self.min_free.saturating_add(need) => return true,
                None => return true,
                Some(_) => {
                    if !self.evict_one(&mut idx) {
                        return false;
                    }
                }
            }
        }
    }

    /// The writer thread's work: one file per block.
    fn store(&self, job: Job) {
        let mut at = 0usize;
        let mut index = job.first;
        while at < job.data.len() {
            let stop = (at + BLOCK as usize).min(job.data.len());
            let id = BlockId {
                bucket: job.bucket.clone(),
                version: job.version.clone(),
                index,
            };
            self.store_block(&id, &job.data[at..stop]);
            at = stop;
            index += 1;
        }
    }

    fn store_block(&self, id: &BlockId, data: &[u8]) {
        let name = id.name();
        if self.index.lock().unwrap().lru.contains(&name) {
            return;
        }
        let header = encode_header(id, data);
        let len = (header.len() + data.len()) as u64;
        if len > self.max_size || !self.make_room(len) {
            return;
        }
        let path = self.path(&name);
        let tmp = path.with_file_name(format!(".tmp-{}", hex(&name)));
        let write = |tmp: &Path| -> std::io::Result<()> {
            let mut f = File::create(tmp)?;
            f.write_all(&header)?;
            f.write_all(data)?;
            fs::rename(tmp, &path)
        };
        let mut r = write(&tmp);
        if matches!(&r, Err(e) if e.kind() == ErrorKind::NotFound) {
            // The subdirectory (or the whole tree) is missing: make it and try once more.
            r = path
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| write(&tmp));
        }
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            self.warn_once(&self.write_warned, "writing", &path, &e);
            return;
        }
        let mut idx = self.index.lock().unwrap();
        if let Some(old) = idx.lru.put(name, len) {
            idx.bytes -= old;
            metrics::disk_cache_bytes(-(old as i64));
        }
        idx.bytes += len;
        metrics::disk_cache_bytes(len as i64);
        self.evict_to(&mut idx, self.max_size);
    }
}

/// Free bytes (for an unprivileged user) and size of the file system holding `path`.
fn statvfs(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}

/// The block files under `root`, least recently used first, and their total size. Leftover
/// temporary files (a crash mid-write; no other mount can be writing: the lock) are
/// removed; anything else that is not named like a block file is left alone.
fn scan(root: &Path) -> (LruCache<Name, u64>, u64) {
    let mut found: Vec<(SystemTime, Name, u64)> = Vec::new();
    let Ok(dirs) = fs::read_dir(root) else {
        return (LruCache::unbounded(), 0);
    };
    for dir in dirs.flatten() {
        let dname = dir.file_name();
        let Some(dname) = dname.to_str() else {
            continue;
        };
        if dname.len() != 2 || !dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            let fname = f.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            if fname.starts_with(".tmp-") && unhex(&fname[5..]).is_some() {
                let _ = fs::remove_file(f.path());
                continue;
            }
            let Some(name) = unhex(fname) else {
                continue;
            };
            if !fname.starts_with(dname) {
                continue;
            }
            let Ok(meta) = f.metadata() else {
                continue;
            };
            if !meta.is_file() || meta.len() < FIXED as u64 || meta.len() > MAX_FILE {
                continue;
            }
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((mtime, name, meta.len()));
        }
    }
    found.sort();
    let mut lru = LruCache::unbounded();
    let mut bytes = 0;
    for (_, name, len) in found {
        bytes += len;
        lru.put(name, len);
    }
    (lru, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::budget::Budget;

    fn cfg(dir: &Path, max: u64) -> DiskConfig {
        DiskConfig {
            dir: dir.to_path_buf(),
            max_size: max,
            min_free: Some(0),
            queue_bytes: 64 << 20,
        }
    }

    fn version(etag: &str) -> ObjectVersion {
        ObjectVersion {
            key: "dir/k".into(),
            etag: etag.into(),
        }
    }

    fn id(etag: &str, index: u64) -> BlockId {
        BlockId {
            bucket: "b".into(),
            version: version(etag),
            index,
        }
    }

    fn data(n: usize, seed: u8) -> Bytes {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn put(c: &DiskCache, etag: &str, first: u64, d: &Bytes) {
        let budget = Budget::new(1 << 40);
        c.put("b".into(), version(etag), first, d.clone(), |n| {
            budget.try_reserve(n)
        });
        c.flush();
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in fs::read_dir(dir.join(SUBDIR)).unwrap().flatten() {
            if d.path().is_dir() {
                out.extend(fs::read_dir(d.path()).unwrap().flatten().map(|f| f.path()));
            }
        }
        out
    }

    #[test]
    fn roundtrip_per_block_and_other_etag_misses() {
        let t = tempfile::tempdir().unwrap();
        let c = DiskCache::open(&cfg(t.path(), 1 << 30)).unwrap();
        let d = data(2 * BLOCK as usize + 100, 1);
        put(&c, "e1", 4, &d);
        assert_eq!(c.blocks(), 3);
        let b = BLOCK as usize;
        assert_eq!(c.get(&id("e1", 4), b).unwrap(), d.slice(..b));
        assert_eq!(c.get(&id("e1", 5), b).unwrap(), d.slice(b..2 * b));
        assert_eq!(c.get(&id("e1", 6), 100).unwrap(), d.slice(2 * b..));
        assert!(
            c.get(&id("e2", 4), b).is_none(),
            "another ETag is another block"
        );
        assert!(c.get(&id("e1", 7), b).is_none());
        assert!(
            c.get(&id("e1", 6), 99).is_none(),
            "a length that differs fails"
        );
    }

    #[test]
    fn eviction_keeps_total_under_cap_lru_first() {
        let t = tempfile::tempdir().unwrap();
        let one = BLOCK + 200; // a block file with its header, roughly
        let c = DiskCache::open(&cfg(t.path(), 3 * one)).unwrap();
        let b = BLOCK as usize;
        for i in 0..3 {
            put(&c, "e", i, &data(b, i as u8));
        }
        assert_eq!(c.blocks(), 3);
        assert!(c.get(&id("e", 0), b).is_some()); // 0 is now the most recent
        put(&c, "e", 3, &data(b, 3));
        assert!(c.bytes() <= 3 * one);
        assert!(c.get(&id("e", 1), b).is_none(), "the LRU block went");
        assert!(c.get(&id("e", 0), b).is_some());
        assert!(c.get(&id("e", 3), b).is_some());
        assert_eq!(files(t.path()).iter().filter(|p| p.is_file()).count(), 3);
        let on_disk: u64 = files(t.path())
            .iter()
            .map(|p| p.metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, c.bytes());
    }

    #[test]
    fn corrupted_or_foreign_files_are_not_served_and_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let b = BLOCK as usize;
        let d = data(6 * b, 7);
        {
            let c = DiskCache::open(&cfg(t.path(), 1 << 30)).unwrap();
            put(&c, "e", 0, &d);
        }
        let c = DiskCache::open(&cfg(t.path(), 1 << 30)).unwrap();
        let path = |i| c.inner.path(&id("e", i).name());
        // 0: a flipped data byte; 1: truncated; 2: a foreign file; 3: another block's file
        // (the header names index 0 of another key); 4: bytes appended after the data;
        // 5: a flipped byte in the key inside the header.
        let mut f0 = fs::read(path(0)).unwrap();
        let last = f0.len() - 1;
        f0[last] ^= 0x40;
        fs::write(path(0), f0).unwrap();
        let f1 = fs::read(path(1)).unwrap();
        fs::write(path(1), &f1[..f1.len() - 10]).unwrap();
        fs::write(path(2), b"not a block file at all, but in the right place").unwrap();
        let other = BlockId {
            bucket: "b".into(),
            version: ObjectVersion {
                key: "other".into(),
                etag: "e".into(),
            },
            index: 3,
        };
        let mut forged = encode_header(&other, &d[3 * b..]);
        forged.extend_from_slice(&d[3 * b..]);
        fs::write(path(3), forged).unwrap();
        let mut f4 = fs::read(path(4)).unwrap();
        f4.extend_from_slice(b"more");
        fs::write(path(4), f4).unwrap();
        let mut f5 = fs::read(path(5)).unwrap();
        f5[FIXED + 1] ^= 0x01; // in the bucket name, "b"'s length is 1: the key's first byte
        fs::write(path(5), f5).unwrap();
        for i in 0..6 {
            assert!(c.get(&id("e", i), b).is_none(), "block {i} not served");
            assert!(!path(i).exists(), "block {i}'s bad file removed");
        }
        assert_eq!(c.blocks(), 0);
        assert_eq!(c.bytes(), 0);
        // Refetched blocks are cached again.
        put(&c, "e", 0, &d);
        assert_eq!(c.get(&id("e", 2), b).unwrap(), d.slice(2 * b..3 * b));
    }

    #[test]
    fn reopen_rescans_in_lru_order_and_ignores_foreign_files() {
        let t = tempfile::tempdir().unwrap();
        let b = BLOCK as usize;
        let one = BLOCK + 200;
        {
            let c = DiskCache::open(&cfg(t.path(), 1 << 30)).unwrap();
            for i in 0..3 {
                put(&c, "e", i, &data(b, i as u8));
                // Distinct mtimes, whatever the file system's resolution.
                let p = c.inner.path(&id("e", i).name());
                let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i);
                File::options()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_modified(at)
                    .unwrap();
            }
        }
        let foreign = t.path().join(SUBDIR).join("ab");
        fs::create_dir_all(&foreign).unwrap();
        fs::write(foreign.join("notes.txt"), b"mine").unwrap();
        fs::write(t.path().join(SUBDIR).join("README"), b"mine too").unwrap();
        let tmp = foreign.join(format!(".tmp-{}", "ab".repeat(32)));
        fs::write(&tmp, b"half a block").unwrap();
        // A cap of two blocks: the oldest (block 0) goes at open.
        let c = DiskCache::open(&cfg(t.path(), 2 * one)).unwrap();
        assert_eq!(c.blocks(), 2);
        assert!(c.get(&id("e", 0), b).is_none());
        assert_eq!(c.get(&id("e", 1), b).unwrap(), data(b, 1));
        assert_eq!(c.get(&id("e", 2), b).unwrap(), data(b, 2));
        assert!(
            foreign.join("notes.txt").exists(),
            "foreign files are left alone"
        );
        assert!(t.path().join(SUBDIR).join("README").exists());
        assert!(!tmp.exists(), "a leftover temporary file is removed");
    }

    #[test]
    fn a_second_opener_of_the_same_dir_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let c = DiskCache::open(&cfg(t.path(), 1 << 30)).unwrap();
        let e = DiskCache::open(&cfg(t.path(), 1 << 30)).unwrap_err();
        assert!(matches!(e, DiskCacheError::InUse(..)), "{e}");
        assert!(e.to_string().contains("in use by another s3mount"), "{e}");
        drop(c);
        DiskCache::open(&cfg(t.path(), 1 << 30)).expect("free again once the first is gone");
    }

    #[test]
    fn disk_errors_fall_back_without_failing() {
        let t = tempfile::tempdir().unwrap();
        let b = BLOCK as usize;
        let c = DiskCache::open(&cfg(t.path(), 1 << 30)).unwrap();
        put(&c, "e", 0, &data(b, 0));
        // The whole tree vanishes: lookups miss, writes recreate it.
        fs::remove_dir_all(t.path().join(SUBDIR)).unwrap();
        assert!(c.get(&id("e", 0), b).is_none());
        put(&c, "e", 1, &data(b, 1));
        assert_eq!(c.get(&id("e", 1), b).unwrap(), data(b, 1));
        // A directory that refuses writes (root ignores modes, so make it a file instead):
        // writes fail quietly, nothing is indexed, reads still answer.
        fs::remove_dir_all(t.path().join(SUBDIR)).unwrap();
        fs::write(t.path().join(SUBDIR), b"in the way").unwrap();
        put(&c, "e", 2, &data(b, 2));
        assert!(c.get(&id("e", 2), b).is_none());
        assert!(c.get(&id("e", 1), b).is_none());
        assert_eq!(c.blocks(), 0);
    }

    #[test]
    fn a_free_space_floor_above_the_disk_stops_writing() {
        let t = tempfile::tempdir().unwrap();
        let mut cf = cfg(t.path(), 1 << 30);
        cf.min_free = Some(u64::MAX / 2);
        let c = DiskCache::open(&cf).unwrap();
        put(&c, "e", 0, &data(BLOCK as usize, 0));
        assert_eq!(c.blocks(), 0);
        assert!(files(t.path()).is_empty());
    }

    #[test]
    fn a_full_queue_drops_writes() {
        let t = tempfile::tempdir().unwrap();
        let mut cf = cfg(t.path(), 1 << 30);
        cf.queue_bytes = BLOCK;
        let c = DiskCache::open(&cf).unwrap();
        // Two blocks at once exceed the queue: not cached at all, and no budget is asked
        // for them (so nothing is evicted from the memory cache for them).
        let mut asked = false;
        c.put(
            "b".into(),
            version("e"),
            0,
            data(2 * BLOCK as usize, 0),
            |_| {
                asked = true;
                None
            },
        );
        c.flush();
        assert!(!asked, "a block the queue cannot take costs no reservation");
        assert_eq!(c.blocks(), 0);
        put(&c, "e", 0, &data(BLOCK as usize, 0));
        assert_eq!(c.blocks(), 1);
    }

    #[test]
    fn queued_blocks_hold_their_budget_until_written_and_none_drops_them() {
        let t = tempfile::tempdir().unwrap();
        let c = DiskCache::open(&cfg(t.path(), 1 << 30)).unwrap();
        let budget = Budget::new(4 * BLOCK);
        let d = data(2 * BLOCK as usize, 3);
        c.put("b".into(), version("e"), 0, d.clone(), |n| {
            budget.try_reserve(n)
        });
        // Until the writer is done the budget holds the queued bytes (nothing else does).
        assert!(budget.used() == 2 * BLOCK || c.blocks() == 2);
        c.flush();
        assert_eq!(c.blocks(), 2);
        assert_eq!(budget.used(), 0, "written blocks give their budget back");
        // No budget for them: not queued, not cached.
        c.put("b".into(), version("e"), 4, d.clone(), |_| None);
        c.flush();
        assert_eq!(c.blocks(), 2);
    }
}
