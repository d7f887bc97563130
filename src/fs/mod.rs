//! The filesystem core: inodes, directories, reads and writes over an [`ObjectStore`].
//!
//! It knows nothing of FUSE or HTTP: the FUSE adapter (`crate::fuse`) turns kernel requests
//! into calls on [`Fs`] and [`FsError`]s into errnos; the object store turns our calls into
//! S3 requests. All methods take `&self` and may run concurrently; locks are held only for
//! short in-memory updates, never across a request to S3.

mod attrs;
pub mod budget;
pub mod cache;
pub mod dir;
pub mod error;
mod files;
pub mod inode;
pub mod key;
pub mod known;
pub mod meta;
mod namespace;
pub mod ranges;
pub mod read;
pub mod stage;
pub mod tree;
pub mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use dir::Listed;
pub use error::{FsError, Result};
pub use inode::{Ino, Kind, ROOT_INO};
pub use tree::{BucketService, Buckets, Tree};

use crate::config::FsConfig;
use crate::s3::{ErrorKind, ObjectStore};
use budget::Budget;
use cache::BlockCache;
use dir::Warnings;
use inode::{InodeTable, Node, Residence, Stat};
use key::{BadName, Prefix, validate_name};
use known::{Known, KnownDirs};
use meta::Posix;
use read::{ReadShared, Reader};
use stage::Staged;
use tracing::debug;
use write::Upload;

/// How many names are remembered as absent (the negative cache).
const NEGATIVE_ENTRIES: usize = 100_000;

/// Content type of directory marker objects (as s3fs and the S3 console write them).
const DIR_CONTENT_TYPE: &str = "application/x-directory";

/// Attributes of an inode, as the kernel will see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File or directory.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// Permission bits.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// An opened file.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    /// File handle.
    pub fh: u64,
    /// The kernel may keep the pages it cached from an earlier open (same ETag).
    pub keep_cache: bool,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    /// O_WRONLY or O_RDWR.
    pub write: bool,
    /// O_TRUNC.
    pub truncate: bool,
}

/// Who asks: the caller's identity, for new objects' owner and the guard checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Caller {
    /// Process id (its close commits what it wrote).
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Attribute changes (`chmod`, `chown`, `truncate`, `touch`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    /// New permission bits (file type bits ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
}

/// How a file being written holds its bytes.
enum Body {
    /// Sequential writes streamed to S3 as they come.
    Stream(Upload),
    /// Random access through a local staging file.
    Staged(Staged),
}

struct WriteHandle {
    ino: Ino,
    /// Process that opened the file: its close commits the upload (see [`Fs::flush`]).
    pid: u32,
    /// Whether this handle created the file (a failed upload then removes the name).
    created: bool,
    body: tokio::sync::Mutex<WriteState>,
}

/// Where a file being written lives; changed when it is renamed while open.
struct Location {
    parent: Ino,
    name: String,
    key: String,
}

struct WriteState {
    at: Location,
    body: Body,
    /// Metadata changed after the multipart upload started: applied by a copy at commit.
    meta_pending: Option<Posix>,
    /// The file was unlinked while open: nothing is uploaded.
    cancelled: bool,
}

struct DirHandle {
    ino: Ino,
    entries: tokio::sync::Mutex<Option<Arc<Vec<Listed>>>>,
}

#[derive(Clone)]
enum Handle {
    Read(Arc<Reader>),
    Write(Arc<WriteHandle>),
    Dir(Arc<DirHandle>),
}

/// Told when a name disappears without the kernel having asked for it (a new file whose
/// upload failed), so that the kernel's cached entry can be dropped at once instead of
/// lingering for the entry TTL.
pub trait Invalidator: Send + Sync {
    /// `name` in directory `parent` no longer exists.
    fn entry_gone(&self, parent: Ino, name: &str);
}

/// The filesystem.
pub struct Fs {
    store: Arc<dyn ObjectStore>,
    prefix: Prefix,
    cfg: FsConfig,
    inodes: Mutex<InodeTable>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    warnings: Warnings,
    mount_time: SystemTime,
    invalidator: std::sync::OnceLock<Box<dyn Invalidator>>,
    read_shared: ReadShared,
    /// Names recently found absent, per directory: the negative cache.
    negative: Mutex<lru::LruCache<(Ino, String), Instant>>,
    /// Directories whose every name is known (made or listed here within the TTL).
    known: KnownDirs,
}

impl Fs {
    /// A filesystem showing the keys under `prefix` (normalized: `""` or ending in `/`).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, cfg: FsConfig) -> Self {
        let mount_time = SystemTime::now();
        let budget = Budget::new(cfg.memory_limit);
        let read_shared = ReadShared {
            cache: Arc::new(BlockCache::new(cfg.cache_memory, budget.clone())),
            budget,
        };
        Fs {
            store,
            prefix: Prefix::new(prefix),
            cfg,
            inodes: Mutex::new(InodeTable::new(mount_time)),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            warnings: Warnings::default(),
            mount_time,
            invalidator: std::sync::OnceLock::new(),
            read_shared,
            negative: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(NEGATIVE_ENTRIES).expect("non-zero"),
            )),
            known: KnownDirs::default(),
        }
    }

    /// How long the kernel may cache entries and attributes (`--metadata-ttl`).
    pub fn ttl(&self) -> Duration {
        self.cfg.metadata_ttl
    }

    /// The shared memory budget (for diagnostics and tests).
    pub fn budget(&self) -> &Budget {
        &self.read_shared.budget
    }

    fn remember_absent(&self, parent: Ino, name: &str) {
        if !self.cfg.metadata_ttl.is_zero() {
            self.negative
                .lock()
                .unwrap()
                .put((parent, name.to_owned()), Instant::now());
        }
    }

    fn forget_absent(&self, parent: Ino, name: &str) {
        self.negative
            .lock()
            .unwrap()
            .pop(&(parent, name.to_owned()));
    }

    /// This mount made `name` exist in `parent` (create, mkdir, symlink, rename target).
    fn name_created(&self, parent: Ino, name: &str) {
        self.forget_absent(parent, name);
        self.known.added(parent, name);
    }

    /// This mount made `name` in `parent` disappear (unlink, rmdir, rename source).
    fn name_removed(&self, parent: Ino, name: &str) {
        self.remember_absent(parent, name);
        self.known.removed(parent, name);
    }

    /// Remember that directory `dir` (just listed, or just made) holds exactly `names` as
    /// of `since`; `epoch` was taken before the evidence was gathered.
    fn know_dir<I: IntoIterator<Item = String>>(
        &self,
        dir: Ino,
        since: Instant,
        epoch: u64,
        names: I,
    ) {
        if !self.cfg.metadata_ttl.is_zero() {
            self.known.install(dir, since, epoch, names);
        }
    }

    /// What the known directory contents say about `name` in `dir`; a stale answer is
    /// refreshed by listing the directory again (once, however many lookups wait for it).
    async fn known(&self, dir: &Node, name: &str) -> Result<Known> {
        let ttl = self.cfg.metadata_ttl;
        if ttl.is_zero() {
            return Ok(Known::Unknown);
        }
        match self.known.lookup(dir.ino, name, ttl) {
            Known::Stale => {}
            k => return Ok(k),
        }
        let _one_at_a_time = self.known.relist.lock().await;
        match self.known.lookup(dir.ino, name, ttl) {
            Known::Stale => {}
            k => return Ok(k),
        }
        let (epoch, since) = (self.known.epoch(), Instant::now());
        let listed = self.list_dir(dir).await?;
        self.know_dir(dir.ino, since, epoch, listed.into_iter().map(|e| e.name));
        Ok(self.known.lookup(dir.ino, name, ttl))
    }

    fn known_absent(&self, parent: Ino, name: &str) -> bool {
        let mut neg = self.negative.lock().unwrap();
        let key = (parent, name.to_owned());
        match neg.get(&key) {
            Some(at) if at.elapsed() < self.cfg.metadata_ttl => true,
            Some(_) => {
                neg.pop(&key);
                false
            }
            None => false,
        }
    }

    /// Install the kernel-cache invalidator (once, after mounting).
    pub fn set_invalidator(&self, inv: Box<dyn Invalidator>) {
        let _ = self.invalidator.set(inv);
    }

    /// The bucket and prefix, for messages.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.store.bucket(), self.prefix.as_str())
    }

    fn attr(&self, node: &Node) -> Attr {
        let (default_perm, size) = match node.kind {
            Kind::File => (self.cfg.file_mode, node.stat.size),
            Kind::Dir => (self.cfg.dir_mode, 0),
            Kind::Symlink => (0o777, node.stat.size),
        };
        let posix = node.stat.posix.as_ref();
        Attr {
            ino: node.ino,
            kind: node.kind,
            size,
            mtime: posix.and_then(|p| p.mtime).unwrap_or(node.stat.mtime),
            perm: posix
                .and_then(|p| p.mode)
                .map_or(default_perm, |m| (m & 0o7777) as u16),
            uid: posix.and_then(|p| p.uid).unwrap_or(self.cfg.uid),
            gid: posix.and_then(|p| p.gid).unwrap_or(self.cfg.gid),
        }
    }

    fn node(&self, ino: Ino) -> Result<Node> {
        self.inodes
            .lock()
            .unwrap()
            .get(ino)
            .ok_or(FsError::NotFound)
    }

    fn dir_node(&self, ino: Ino) -> Result<Node> {
        let n = self.node(ino)?;
        if n.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(n)
    }

    fn check_writable(&self) -> Result<()> {
        if self.cfg.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn handle(&self, fh: u64) -> Result<Handle> {
        self.handles
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().unwrap().insert(fh, h);
        fh
    }

    fn dir_stat(&self) -> Stat {
        Stat::new(0, self.mount_time, None)
    }

    /// Refuse deletions under `--no-delete`.
    fn check_delete(&self) -> Result<()> {
        self.check_writable()?;
        if self.cfg.no_delete {
            return Err(FsError::Guarded("--no-delete"));
        }
        Ok(())
    }

    /// Refuse changes to existing objects under `--no-overwrite`.
    fn check_overwrite(&self) -> Result<()> {
        self.check_writable()?;
        if self.cfg.no_overwrite {
            return Err(FsError::Guarded("--no-overwrite"));
        }
        Ok(())
    }

    /// Stat of an object from HeadObject: kind from the s3fs mode (symlinks), POSIX
    /// attributes from the metadata.
    fn head_stat(info: crate::s3::ObjectInfo) -> (Kind, Stat) {
        let posix = info.meta.as_ref().map(Posix::from_meta);
        let kind = match posix.as_ref().and_then(Posix::file_type) {
            Some(meta::S_IFLNK) => Kind::Symlink,
            _ => Kind::File,
        };
        (
            kind,
            Stat {
                size: info.size,
                mtime: info.mtime,
                etag: info.etag,
                posix,
            },
        )
    }

    // ----- names -----------------------------------------------------------------------

    /// Look `name` up in `parent`, asking S3, and count one kernel reference.
    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Attr> {
        let node = self.resolve(parent, name, 1).await?;
        Ok(self.attr(&node))
    }

    /// Find `name` in `parent`: a file being written here, else HeadObject `key` and
    /// ListObjectsV2 `key/` (max-keys 1) concurrently; a directory wins over a file.
    async fn resolve(&self, parent: Ino, name: &str, lookups: u64) -> Result<Node> {
        let dir = self.dir_node(parent)?;
        check_name(name)?;
        {
            let mut t = self.inodes.lock().unwrap();
            if let Some(n) = t.child(parent, name)
                && (matches!(n.residence, Residence::Writing(_))
                    || n.fresh_within(self.cfg.metadata_ttl))
            {
                let n = n.clone();
                t.add_lookups(n.ino, lookups);
                return Ok(n);
            }
        }
        if self.known_absent(parent, name) {
            return Err(FsError::NotFound);
        }
        match self.known(&dir, name).await? {
            Known::Absent => return Err(FsError::NotFound),
            Known::Present | Known::Stale | Known::Unknown => {}
        }
        let path = key::child_path(&dir.path, name);
        let object_key = self.prefix.key(&path);
        let dir_key = self.prefix.dir_key(&path);
        let (head, list) = tokio::join!(
            self.store.head(&object_key),
            self.store.list(&dir_key, true, None, Some(1))
        );
        let list = list?;
        let (kind, stat) = if !list.objects.is_empty() || !list.prefixes.is_empty() {
            let mut stat = self.dir_stat();
            // A marker sorts first under its prefix; its metadata is the directory's mode,
            // owner and mtime (mkdir, chmod, or s3fs). Best effort: defaults otherwise.
            if list.objects.first().is_some_and(|o| o.key == dir_key) {
                match self.store.head(&dir_key).await {
                    Ok(info) => stat.posix = info.meta.as_ref().map(Posix::from_meta),
                    Err(e) => debug!(key = %dir_key, error = %e, "directory marker metadata"),
                }
            }
            (Kind::Dir, stat)
        } else {
            match head {
                Ok(info) => Self::head_stat(info),
                Err(e) if e.kind == ErrorKind::NotFound => {
                    self.inodes.lock().unwrap().detach(parent, name);
                    self.remember_absent(parent, name);
                    return Err(FsError::NotFound);
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(self
            .inodes
            .lock()
            .unwrap()
            .upsert(parent, name, kind, stat, lookups))
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.inodes.lock().unwrap().forget(ino, n);
    }

    /// Attributes of `ino`; a file's are re-checked with HeadObject once older than the
    /// metadata TTL, so changes by other clients show up.
    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        let node = self.fresh(ino).await?;
        Ok(self.attr(&node))
    }

    async fn fresh(&self, ino: Ino) -> Result<Node> {
        let node = self.node(ino)?;
        if node.kind == Kind::Dir
            || node.residence != Residence::Remote
            || node.fresh_within(self.cfg.metadata_ttl)
        {
            return Ok(node);
        }
        match self.store.head(&self.prefix.key(&node.path)).await {
            Ok(info) => {
                let (kind, stat) = Self::head_stat(info);
                let mut t = self.inodes.lock().unwrap();
                let Some(n) = t.get_mut(ino) else {
                    return Err(FsError::NotFound);
                };
                if kind != n.kind {
                    // A file became a symlink (or back): the kernel must look it up again.
                    t.detach(node.parent, &node.name);
                    return Err(FsError::NotFound);
                }
                if n.residence == Residence::Remote {
                    if n.stat.etag != stat.etag {
                        n.target = None;
                    }
                    n.stat = stat;
                    n.validated = Some(Instant::now());
                }
                Ok(n.clone())
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.inodes.lock().unwrap().detach(node.parent, &node.name);
                Err(FsError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    match validate_name(name) {
        Ok(()) => Ok(()),
        Err(BadName::TooLong) => Err(FsError::NameTooLong),
        Err(e) => Err(FsError::InvalidName(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
