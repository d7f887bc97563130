//! The filesystem core: inodes, directories, reads and writes over an [`ObjectStore`].
//!
//! It knows nothing of FUSE or HTTP: the FUSE adapter (`crate::fuse`) turns kernel requests
//! into calls on [`Fs`] and [`FsError`]s into errnos; the object store turns our calls into
//! S3 requests. All methods take `&self` and may run concurrently; locks are held only for
//! short in-memory updates, never across a request to S3.

pub mod budget;
pub mod cache;
pub mod dir;
pub mod error;
pub mod inode;
pub mod key;
pub mod read;
pub mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tracing::{debug, warn};

pub use dir::Listed;
pub use error::{FsError, Result};
pub use inode::{Ino, Kind, ROOT_INO};

use crate::config::FsConfig;
use crate::s3::{ErrorKind, ObjectStore};
use budget::Budget;
use cache::BlockCache;
use dir::Warnings;
use inode::{InodeTable, Node, Residence, Stat};
use key::{BadName, Prefix, validate_name};
use read::{ReadConfig, ReadShared, Reader};
use write::{Upload, WriteConfig};

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

struct WriteHandle {
    ino: Ino,
    parent: Ino,
    name: String,
    /// Process that opened the file: its close commits the upload (see [`Fs::flush`]).
    pid: u32,
    /// Whether this handle created the file (a failed upload then removes the name).
    created: bool,
    upload: tokio::sync::Mutex<Upload>,
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
        let (perm, size) = match node.kind {
            Kind::File => (self.cfg.file_mode, node.stat.size),
            Kind::Dir => (self.cfg.dir_mode, 0),
        };
        Attr {
            ino: node.ino,
            kind: node.kind,
            size,
            mtime: node.stat.mtime,
            perm,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
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
        Stat {
            size: 0,
            mtime: self.mount_time,
            etag: None,
        }
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
        let path = key::child_path(&dir.path, name);
        let object_key = self.prefix.key(&path);
        let dir_key = self.prefix.dir_key(&path);
        let (head, list) = tokio::join!(
            self.store.head(&object_key),
            self.store.list(&dir_key, None, Some(1))
        );
        let list = list?;
        let (kind, stat) = if !list.objects.is_empty() || !list.prefixes.is_empty() {
            (Kind::Dir, self.dir_stat())
        } else {
            match head {
                Ok(info) => (
                    Kind::File,
                    Stat {
                        size: info.size,
                        mtime: info.mtime,
                        etag: info.etag,
                    },
                ),
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
                let mut t = self.inodes.lock().unwrap();
                let Some(n) = t.get_mut(ino) else {
                    return Err(FsError::NotFound);
                };
                if n.residence == Residence::Remote {
                    n.stat = Stat {
                        size: info.size,
                        mtime: info.mtime,
                        etag: info.etag,
                    };
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

    /// Change attributes. Truncation to zero is supported (an empty object, or a no-op on
    /// a file being written that is still empty); other sizes are not yet. Mode, owner and
    /// times are accepted and not persisted: every inode shows the mount's
    /// `--uid/--gid/--file-mode/--dir-mode`.
    pub async fn setattr(&self, ino: Ino, size: Option<u64>, fh: Option<u64>) -> Result<Attr> {
        let node = self.node(ino)?;
        if let Some(size) = size {
            self.check_writable()?;
            if node.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            if let Residence::Writing(wfh) = node.residence {
                let Handle::Write(wh) = self.handle(fh.unwrap_or(wfh))? else {
                    return Err(FsError::BadHandle);
                };
                if wh.upload.lock().await.written() != size {
                    return Err(FsError::NotSupported(
                        "changing the size of a file being written",
                    ));
                }
            } else if size != node.stat.size {
                if size != 0 {
                    return Err(FsError::NotSupported("truncating to a non-zero size"));
                }
                let put = self
                    .store
                    .put(
                        &self.prefix.key(&node.path),
                        Bytes::new(),
                        "application/octet-stream",
                    )
                    .await?;
                let mut t = self.inodes.lock().unwrap();
                if let Some(n) = t.get_mut(ino) {
                    n.stat = Stat {
                        size: 0,
                        mtime: SystemTime::now(),
                        etag: put.etag,
                    };
                    n.validated = Some(Instant::now());
                }
            }
        }
        self.getattr(ino).await
    }

    // ----- directories -----------------------------------------------------------------

    /// Open directory `ino` for listing.
    pub fn opendir(&self, ino: Ino) -> Result<u64> {
        self.dir_node(ino)?;
        Ok(self.add_handle(Handle::Dir(Arc::new(DirHandle {
            ino,
            entries: tokio::sync::Mutex::new(None),
        }))))
    }

    /// Entries of an open directory; listed from S3 when `offset` is 0 (a rewind) or on
    /// first use, and kept in the handle for the following calls.
    pub async fn readdir(&self, fh: u64, offset: u64) -> Result<Arc<Vec<Listed>>> {
        let Handle::Dir(dh) = self.handle(fh)? else {
            return Err(FsError::BadHandle);
        };
        let mut entries = dh.entries.lock().await;
        if offset == 0 || entries.is_none() {
            let dir = self.dir_node(dh.ino)?;
            let mut listed = dir::list(
                self.store.as_ref(),
                &self.prefix,
                &dir.path,
                self.mount_time,
                &self.warnings,
            )
            .await?;
            let writing = self.inodes.lock().unwrap().writing_children(dh.ino);
            for n in writing {
                if let Err(i) = listed.binary_search_by(|e| e.name.cmp(&n.name)) {
                    listed.insert(
                        i,
                        Listed {
                            name: n.name,
                            kind: Kind::File,
                            stat: n.stat,
                        },
                    );
                }
            }
            *entries = Some(Arc::new(listed));
        }
        Ok(entries.clone().expect("just listed"))
    }

    /// Register a listed entry of `parent` as an inode and count `lookups` kernel
    /// references to it (1 for readdirplus, 0 for plain readdir).
    pub fn entry(&self, parent: Ino, e: &Listed, lookups: u64) -> Attr {
        let node =
            self.inodes
                .lock()
                .unwrap()
                .upsert(parent, &e.name, e.kind, e.stat.clone(), lookups);
        self.attr(&node)
    }

    /// Attributes of `ino` as known now, without asking S3 (for `.` and `..`).
    pub fn cached_attr(&self, ino: Ino) -> Result<Attr> {
        Ok(self.attr(&self.node(ino)?))
    }

    /// Parent of directory `ino`.
    pub fn parent_of(&self, ino: Ino) -> Ino {
        self.node(ino).map(|n| n.parent).unwrap_or(ROOT_INO)
    }

    /// Close a file or directory handle that needs no commit.
    pub fn releasedir(&self, fh: u64) {
        self.handles.lock().unwrap().remove(&fh);
    }

    /// Create directory `name` in `parent`: a zero-byte `name/` marker object, so other
    /// clients see it too.
    pub async fn mkdir(&self, parent: Ino, name: &str) -> Result<Attr> {
        self.check_writable()?;
        let dir = self.dir_node(parent)?;
        check_name(name)?;
        if self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .is_some_and(|n| matches!(n.residence, Residence::Writing(_)))
        {
            return Err(FsError::Exists);
        }
        let path = key::child_path(&dir.path, name);
        self.store
            .put(&self.prefix.dir_key(&path), Bytes::new(), DIR_CONTENT_TYPE)
            .await?;
        self.forget_absent(parent, name);
        let node = self.inodes.lock().unwrap().upsert(
            parent,
            name,
            Kind::Dir,
            Stat {
                size: 0,
                mtime: SystemTime::now(),
                etag: None,
            },
            1,
        );
        Ok(self.attr(&node))
    }

    /// Remove the empty directory `name` (its marker object, if any).
    pub async fn rmdir(&self, parent: Ino, name: &str) -> Result<()> {
        self.check_writable()?;
        let known_dir = self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .is_some_and(|n| n.kind == Kind::Dir);
        let node = match self.resolve(parent, name, 0).await {
            Ok(n) => n,
            // An implicit directory vanishes from S3 with its last entry (`rm -r` unlinks
            // the files, then removes the directory): it is empty, so removing it succeeds.
            Err(FsError::NotFound) if known_dir => return Ok(()),
            Err(e) => return Err(e),
        };
        if node.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if !self
            .inodes
            .lock()
            .unwrap()
            .writing_children(node.ino)
            .is_empty()
        {
            return Err(FsError::NotEmpty);
        }
        let dir_key = self.prefix.dir_key(&node.path);
        let page = self.store.list(&dir_key, None, Some(2)).await?;
        let has_entries =
            !page.prefixes.is_empty() || page.objects.iter().any(|o| o.key != dir_key);
        if has_entries {
            return Err(FsError::NotEmpty);
        }
        self.store.delete(&dir_key).await?;
        self.inodes.lock().unwrap().detach(parent, name);
        self.remember_absent(parent, name);
        Ok(())
    }

    /// Delete file `name`. A file still being written is discarded when its writer closes.
    pub async fn unlink(&self, parent: Ino, name: &str) -> Result<()> {
        self.check_writable()?;
        let node = self.resolve(parent, name, 0).await?;
        match (node.kind, node.residence) {
            (Kind::Dir, _) => Err(FsError::IsDir),
            (Kind::File, Residence::Writing(fh)) => {
                if let Ok(Handle::Write(wh)) = self.handle(fh) {
                    wh.upload.lock().await.cancel().await;
                }
                let mut t = self.inodes.lock().unwrap();
                if let Some(n) = t.get_mut(node.ino) {
                    n.residence = Residence::Remote;
                }
                t.detach(parent, name);
                Ok(())
            }
            (Kind::File, Residence::Remote) => {
                self.store.delete(&self.prefix.key(&node.path)).await?;
                self.inodes.lock().unwrap().detach(parent, name);
                self.remember_absent(parent, name);
                Ok(())
            }
        }
    }

    // ----- files -----------------------------------------------------------------------

    /// Create and open the new file `name` in `parent` for writing, on behalf of `pid`.
    pub async fn create(&self, parent: Ino, name: &str, pid: u32) -> Result<(Attr, u64)> {
        self.check_writable()?;
        self.dir_node(parent)?;
        check_name(name)?;
        if self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .is_some_and(|n| matches!(n.residence, Residence::Writing(_)))
        {
            return Err(FsError::Busy("the file is already being written"));
        }
        self.forget_absent(parent, name);
        let node = self.inodes.lock().unwrap().upsert(
            parent,
            name,
            Kind::File,
            Stat {
                size: 0,
                mtime: SystemTime::now(),
                etag: None,
            },
            1,
        );
        let fh = self.start_upload(&node, pid, true);
        let node = self.node(node.ino)?;
        Ok((self.attr(&node), fh))
    }

    fn start_upload(&self, node: &Node, pid: u32, created: bool) -> u64 {
        let upload = Upload::new(
            self.store.clone(),
            self.prefix.key(&node.path),
            WriteConfig {
                part_size: self.cfg.write_part_size,
                threads: self.cfg.upload_threads,
            },
            self.read_shared.budget.clone(),
        );
        let fh = self.add_handle(Handle::Write(Arc::new(WriteHandle {
            ino: node.ino,
            parent: node.parent,
            name: node.name.clone(),
            pid,
            created,
            upload: tokio::sync::Mutex::new(upload),
        })));
        let mut t = self.inodes.lock().unwrap();
        if let Some(n) = t.get_mut(node.ino) {
            n.residence = Residence::Writing(fh);
            n.stat = Stat {
                size: 0,
                mtime: SystemTime::now(),
                etag: None,
            };
        }
        fh
    }

    /// Open file `ino`. Writing is supported for replacing the whole file (O_TRUNC).
    pub async fn open(&self, ino: Ino, mode: OpenMode, pid: u32) -> Result<Opened> {
        let node = self.node(ino)?;
        if node.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if matches!(node.residence, Residence::Writing(_)) {
            return Err(FsError::Busy("the file is being written"));
        }
        if mode.write {
            self.check_writable()?;
            if mode.truncate {
                return Ok(Opened {
                    fh: self.start_upload(&node, pid, false),
                    keep_cache: false,
                });
            }
            return Err(FsError::NotSupported(
                "modifying an existing file in place (open it with O_TRUNC to replace it)",
            ));
        }
        let node = self.fresh(ino).await?;
        let keep_cache = {
            let mut t = self.inodes.lock().unwrap();
            match t.get_mut(ino) {
                Some(n) => {
                    let same = n.stat.etag.is_some() && n.page_cache_etag == n.stat.etag;
                    n.page_cache_etag = n.stat.etag.clone();
                    same
                }
                None => false,
            }
        };
        let reader = Reader::new(
            self.store.clone(),
            self.prefix.key(&node.path),
            node.stat.size,
            node.stat.etag.clone(),
            ReadConfig {
                threads: self.cfg.download_threads,
                max_part: self.cfg.read_part_size,
            },
            self.read_shared.clone(),
        );
        Ok(Opened {
            fh: self.add_handle(Handle::Read(Arc::new(reader))),
            keep_cache,
        })
    }

    /// Read from an open file.
    pub async fn read(&self, fh: u64, off: u64, len: u32) -> Result<Bytes> {
        match self.handle(fh)? {
            Handle::Read(r) => Ok(r.read(off, len).await?),
            Handle::Write(_) => Err(FsError::NotSupported(
                "reading a file while it is being written",
            )),
            Handle::Dir(_) => Err(FsError::IsDir),
        }
    }

    /// Write to a file opened for writing.
    pub async fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        let Handle::Write(wh) = self.handle(fh)? else {
            return Err(FsError::BadHandle);
        };
        let mut up = wh.upload.lock().await;
        let n = up.write(off, data).await?;
        let size = up.written();
        drop(up);
        if let Some(node) = self.inodes.lock().unwrap().get_mut(wh.ino)
            && node.residence == Residence::Writing(fh)
        {
            node.stat.size = size;
            node.stat.mtime = SystemTime::now();
        }
        Ok(n)
    }

    /// `close()` of a descriptor. The upload is committed — and its error returned to the
    /// closing process — when the process that opened the file closes a descriptor after
    /// writing to it. Other closes leave the commit to `release`: one from another process
    /// (a forked child sharing the descriptor), and one before any write, which is how a
    /// shell redirection looks (`open`, `dup2` onto stdout, `close` of the original, then
    /// the writes).
    pub async fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        match self.handle(fh)? {
            Handle::Write(wh) if wh.pid == pid && wh.upload.lock().await.written() > 0 => {
                self.commit(fh, &wh).await
            }
            _ => Ok(()),
        }
    }

    /// `fsync()`: commit a file being written, returning the upload's error.
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        match self.handle(fh)? {
            Handle::Write(wh) => self.commit(fh, &wh).await,
            _ => Ok(()),
        }
    }

    /// Last close of a handle: commit if nobody did, then forget the handle.
    pub async fn release(&self, fh: u64) -> Result<()> {
        let h = self.handles.lock().unwrap().remove(&fh);
        match h {
            Some(Handle::Write(wh)) => self.commit(fh, &wh).await,
            Some(_) => Ok(()),
            None => Err(FsError::BadHandle),
        }
    }

    async fn commit(&self, fh: u64, wh: &WriteHandle) -> Result<()> {
        let mut up = wh.upload.lock().await;
        let was_committed = up.is_committed();
        let result = up.finish().await;
        drop(up);
        if was_committed {
            return result.map(|_| ());
        }
        let mut t = self.inodes.lock().unwrap();
        let ours = t
            .get(wh.ino)
            .is_some_and(|n| n.residence == Residence::Writing(fh));
        if !ours {
            // Unlinked while open, or already settled.
            return result.map(|_| ());
        }
        let node = t.get_mut(wh.ino).expect("checked");
        node.residence = Residence::Remote;
        let gone = result.is_err() && wh.created;
        let result = match result {
            Ok(c) => {
                debug!(key = %self.prefix.key(&node.path), size = c.size, "upload committed");
                node.stat = Stat {
                    size: c.size,
                    mtime: SystemTime::now(),
                    etag: c.etag,
                };
                node.validated = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                if wh.created {
                    // The object never came to exist: the name must not linger.
                    t.detach(wh.parent, &wh.name);
                } else {
                    // The old object is untouched; make the next getattr ask S3.
                    node.validated = None;
                }
                Err(e)
            }
        };
        drop(t);
        if gone && let Some(inv) = self.invalidator.get() {
            inv.entry_gone(wh.parent, &wh.name);
        }
        result
    }

    /// Commit every file still being written (on unmount). Errors are logged.
    pub async fn shutdown(&self) {
        let writers: Vec<(u64, Arc<WriteHandle>)> = self
            .handles
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(fh, h)| match h {
                Handle::Write(w) => Some((*fh, w.clone())),
                _ => None,
            })
            .collect();
        for (fh, wh) in writers {
            if let Err(e) = self.commit(fh, &wh).await {
                warn!(file = %wh.name, error = %e, "upload failed at unmount");
            }
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
