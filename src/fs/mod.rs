//! The filesystem core: inodes, directories, reads and writes over an [`ObjectStore`].
//!
//! It knows nothing of FUSE or HTTP: the FUSE adapter (`crate::fuse`) turns kernel requests
//! into calls on a [`Tree`] and [`FsError`]s into errnos; the object store turns our calls
//! into S3 requests. All methods take `&self` and may run concurrently; locks are held only
//! for short in-memory updates, never across a request to S3.
//!
//! Layout: [`Fs`] (this file) is one bucket or one path in it; [`Buckets`] shows every
//! bucket as a folder; both are a [`Tree`]. The operations on `Fs` live in `ops/` by concern
//! (lookup, namespace, files, attributes); `meta/` is what is known about names and objects,
//! `read/` the read path (prefetch, block cache, memory budget), `write/` the write path
//! (streamed and staged uploads).

mod buckets;
mod config;
mod dirstream;
mod error;
mod guard;
mod meta;
mod open;
mod ops;
mod read;
mod tree;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use buckets::Buckets;
pub use config::FsConfig;
pub use error::{FsError, Result};
pub use meta::inode::{Ino, Kind, ROOT_INO};
pub use meta::listing::Listed;
pub use read::{Budget, DiskCache, DiskCacheError, DiskConfig};
pub use tree::{Invalidator, Tree};

use crate::s3::ObjectStore;
use guard::Guards;
use meta::dirtimes::DirTimes;
use meta::inode::{InodeTable, Node, Stat};
use meta::key::{BadName, Prefix, validate_name};
use meta::known::KnownDirs;
use meta::listing::Warnings;
use meta::negative::NegativeCache;
use meta::posix::{self, Posix};
use open::{OpenFile, OpenFiles};
use read::cache::BlockCache;
use read::{ReadShared, Reader};
use write::{Uploads, WriteConfig};

/// Longest symlink target Linux accepts (PATH_MAX).
const PATH_MAX: u64 = 4096;

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
    /// Access time.
    pub atime: SystemTime,
    /// Status-change time.
    pub ctime: SystemTime,
    /// Permission bits.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number (character and block devices).
    pub rdev: u32,
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
    /// New access time.
    pub atime: Option<SystemTime>,
}

/// An open descriptor of a file (one per kernel file handle).
struct FileHandle {
    /// The inode's open state, shared with every other handle of it.
    file: Arc<OpenFile>,
    /// Process that opened the file: its close commits the upload (see [`Fs::flush`]).
    pid: u32,
    /// Opened for writing.
    write: bool,
    /// The object's reader while nobody writes, built for the key and version it reads.
    reader: Mutex<Option<ReaderOf>>,
}

/// A reader and what it reads: rebuilt when the file's key or version changed (a rename,
/// a commit through another descriptor, another client's new version).
struct ReaderOf {
    key: String,
    etag: Option<String>,
    size: u64,
    reader: Arc<Reader>,
}

struct DirHandle {
    ino: Ino,
    /// The streamed listing; a readdir waits here for the one before it.
    stream: tokio::sync::Mutex<dirstream::DirStream>,
}

#[derive(Clone)]
enum Handle {
    File(Arc<FileHandle>),
    Dir(Arc<DirHandle>),
}

/// One bucket, or one path inside it, as a file system.
pub struct Fs {
    store: Arc<dyn ObjectStore>,
    prefix: Prefix,
    cfg: FsConfig,
    guards: Guards,
    uploads: Uploads,
    inodes: Mutex<InodeTable>,
    handles: Mutex<HashMap<u64, Handle>>,
    /// One open state per open inode.
    open_files: OpenFiles,
    next_fh: AtomicU64,
    warnings: Warnings,
    mount_time: SystemTime,
    invalidator: std::sync::OnceLock<Arc<dyn Invalidator>>,
    read_shared: ReadShared,
    /// Names recently found absent, per directory.
    negative: NegativeCache,
    /// Directories whose every name is known (made or listed here within the TTL).
    known: KnownDirs,
    /// Shutdown began: no new writers.
    closing: std::sync::atomic::AtomicBool,
    /// Directory times changed by their entries, still to be written to their markers.
    dir_times: DirTimes,
}

impl Fs {
    /// A filesystem showing the keys under `prefix` (normalized: `""` or ending in `/`).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, cfg: FsConfig) -> Self {
        let mount_time = SystemTime::now();
        let budget = Budget::new(cfg.memory_limit);
        let read_shared = ReadShared {
            cache: Arc::new(BlockCache::new(cfg.cache_memory, budget.clone())),
            budget: budget.clone(),
            disk: None,
        };
        let uploads = Uploads::new(
            store.clone(),
            WriteConfig {
                part_size: cfg.write_part_size,
                threads: cfg.upload_threads,
            },
            cfg.cache_dir.clone(),
            budget,
        );
        Fs {
            store,
            prefix: Prefix::new(prefix),
            guards: cfg.guards(),
            negative: NegativeCache::new(cfg.metadata_ttl),
            cfg,
            uploads,
            inodes: Mutex::new(InodeTable::new(mount_time)),
            handles: Mutex::new(HashMap::new()),
            open_files: OpenFiles::default(),
            next_fh: AtomicU64::new(1),
            warnings: Warnings::default(),
            mount_time,
            invalidator: std::sync::OnceLock::new(),
            read_shared,
            known: KnownDirs::default(),
            closing: Default::default(),
            dir_times: DirTimes::default(),
        }
    }

    /// Serve and keep blocks through `disk` too (the mount opened it from
    /// `FsConfig::disk_cache`; one per mount, shared by every bucket).
    pub fn with_disk_cache(mut self, disk: Option<Arc<DiskCache>>) -> Self {
        self.read_shared.disk = disk;
        self
    }

    /// How long the kernel may cache entries and attributes (`--metadata-ttl`).
    pub fn ttl(&self) -> Duration {
        self.cfg.metadata_ttl
    }

    /// The shared memory budget (for diagnostics and tests).
    pub fn budget(&self) -> &Budget {
        &self.read_shared.budget
    }

    /// This mount made `name` exist in `parent` (create, mkdir, mknod, symlink, rename
    /// target): called once the change succeeded.
    fn name_created(&self, parent: Ino, name: &str) {
        self.negative.forget(parent, name);
        self.known.added(parent, name);
        self.entries_changed(parent);
    }

    /// This mount made `name` in `parent` disappear (unlink, rmdir, rename source): called
    /// once the change succeeded.
    fn name_removed(&self, parent: Ino, name: &str) {
        self.negative.remember(parent, name);
        self.known.removed(parent, name);
        self.entries_changed(parent);
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

    /// Install the kernel-cache invalidator (once, after mounting).
    pub fn set_invalidator(&self, inv: Arc<dyn Invalidator>) {
        let _ = self.invalidator.set(inv);
    }

    fn attr(&self, node: &Node) -> Attr {
        let (default_perm, size) = match node.kind {
            Kind::File => (self.cfg.file_mode, node.stat.size),
            Kind::Dir => (self.cfg.dir_mode, 0),
            Kind::Symlink => (0o777, node.stat.size),
            Kind::Special(_) => (self.cfg.file_mode, 0),
        };
        let shown = self.shown_posix(node);
        let posix = shown.as_ref();
        let mtime = posix.and_then(|p| p.mtime).unwrap_or(node.stat.mtime);
        Attr {
            ino: node.ino,
            kind: node.kind,
            size,
            mtime,
            atime: posix.and_then(|p| p.atime).unwrap_or(mtime),
            ctime: posix.and_then(|p| p.ctime).unwrap_or(mtime),
            perm: posix
                .and_then(|p| p.mode)
                .map_or(default_perm, |m| (m & 0o7777) as u16),
            uid: posix.and_then(|p| p.uid).unwrap_or(self.cfg.uid),
            gid: posix.and_then(|p| p.gid).unwrap_or(self.cfg.gid),
            rdev: posix.and_then(|p| p.rdev).unwrap_or(0),
        }
    }

    /// The POSIX attributes of `node` as shown: a directory's times changed by its
    /// entries and not yet in its marker put over what is known.
    fn shown_posix(&self, node: &Node) -> Option<Posix> {
        let pending = match node.kind {
            Kind::Dir => self.dir_times.pending(node.ino),
            _ => None,
        };
        match pending {
            Some(t) => {
                let mut p = node.stat.posix.clone().unwrap_or_default();
                t.apply(&mut p);
                Some(p)
            }
            None => node.stat.posix.clone(),
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

    /// Stat of an object from HeadObject: kind from the s3fs mode (symlinks), POSIX
    /// attributes from the metadata.
    fn head_stat(info: crate::s3::ObjectInfo) -> (Kind, Stat) {
        let posix = info.meta.as_ref().map(Posix::from_meta);
        let kind = match posix.as_ref().and_then(Posix::file_type) {
            // A target longer than PATH_MAX is no symlink, whatever the metadata claims:
            // readlink would otherwise load an arbitrary body into memory.
            Some(posix::S_IFLNK) if info.size <= PATH_MAX => Kind::Symlink,
            Some(posix::S_IFLNK) => {
                tracing::warn!(key = %info.key, size = info.size, "object claims to be a symlink but its target would exceed PATH_MAX; shown as a file");
                Kind::File
            }
            Some(t @ (posix::S_IFIFO | posix::S_IFCHR | posix::S_IFBLK | posix::S_IFSOCK)) => {
                Kind::Special(t)
            }
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
}

impl Fs {
    /// A new entry `name` in `dir` (a directory marker when `is_dir`): a valid name whose
    /// key fits S3's 1,024 bytes, refused with ENAMETOOLONG before anything is sent.
    fn check_new(&self, dir: &Node, name: &str, is_dir: bool) -> Result<()> {
        check_name(name)?;
        let key = self.prefix.key(&meta::key::child_path(&dir.path, name));
        if key.len() + usize::from(is_dir) > meta::key::KEY_MAX {
            return Err(FsError::NameTooLong);
        }
        Ok(())
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
#[cfg(test)]
mod tests_preserve;
#[cfg(test)]
mod tests_times;
#[cfg(test)]
mod tests_visible;
