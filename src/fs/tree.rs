//! The seam between the FUSE adapter and the core: what a mounted tree can do, in inode
//! numbers and file handles. [`super::Fs`] is one bucket (or one path in it);
//! [`super::Buckets`] shows every bucket as a folder. The adapter holds a `dyn Tree` and
//! cannot tell which.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Attr, Caller, Ino, Listed, OpenMode, Opened, Result, SetAttr};

/// Told when a name disappears without the kernel having asked for it (a new file whose
/// upload failed), so that the kernel's cached entry can be dropped at once instead of
/// lingering for the entry TTL.
pub trait Invalidator: Send + Sync {
    /// `name` in directory `parent` no longer exists.
    fn entry_gone(&self, parent: Ino, name: &str);
}

/// A mounted file system tree. Every method may run concurrently with the others.
#[async_trait]
pub trait Tree: Send + Sync + 'static {
    /// How long the kernel may cache entries and attributes.
    fn ttl(&self) -> Duration;

    /// Install the kernel-cache invalidator (once, after mounting).
    fn set_invalidator(&self, inv: Arc<dyn Invalidator>);

    /// Look `name` up in `parent` and count one kernel reference to it.
    async fn lookup(&self, parent: Ino, name: &str) -> Result<Attr>;

    /// The kernel dropped `n` references to `ino`.
    fn forget(&self, ino: Ino, n: u64);

    /// Attributes of `ino`, re-checked with S3 once older than the TTL.
    async fn getattr(&self, ino: Ino) -> Result<Attr>;

    /// `chmod`, `chown`, `truncate`, `touch` (`fh`: the handle it came through, if any).
    async fn setattr(&self, ino: Ino, change: SetAttr, fh: Option<u64>) -> Result<Attr>;

    /// Open directory `ino` for listing.
    async fn opendir(&self, ino: Ino) -> Result<u64>;

    /// Entries of open directory `ino` from position `pos` on (0: its first entry; `.` and
    /// `..` are the adapter's), as many as are at hand: none means the end. `rewind`: the
    /// reader went back to the start, which lists the directory again.
    async fn readdir(&self, ino: Ino, fh: u64, pos: u64, rewind: bool) -> Result<Vec<Listed>>;

    /// Register a listed entry of `parent` and count `lookups` kernel references to it.
    fn entry(&self, parent: Ino, e: &Listed, lookups: u64) -> Result<Attr>;

    /// How long the kernel may keep what [`Tree::entry`] gave for `ino`: the TTL, or
    /// nothing when the entry's own metadata is still to be read (a directory whose marker
    /// a listing cannot show).
    fn entry_ttl(&self, ino: Ino) -> Duration;

    /// Attributes of `ino` as known now, without asking S3 (for `.` and `..`).
    fn cached_attr(&self, ino: Ino) -> Result<Attr>;

    /// Parent of directory `ino`.
    fn parent_of(&self, ino: Ino) -> Ino;

    /// Close a directory handle.
    async fn releasedir(&self, ino: Ino, fh: u64) -> Result<()>;

    /// Create directory `name` in `parent`.
    async fn mkdir(&self, parent: Ino, name: &str, mode: u32, caller: Caller) -> Result<Attr>;

    /// Remove the empty directory `name` from `parent`.
    async fn rmdir(&self, parent: Ino, name: &str) -> Result<()>;

    /// Delete file or symlink `name` from `parent`.
    async fn unlink(&self, parent: Ino, name: &str) -> Result<()>;

    /// Create symlink `name` in `parent` pointing at `target`.
    async fn symlink(&self, parent: Ino, name: &str, target: &str, caller: Caller) -> Result<Attr>;

    /// The target of symlink `ino`.
    async fn readlink(&self, ino: Ino) -> Result<String>;

    /// `mknod(2)`: an empty regular file, or a FIFO, device or socket (`mode` carries the
    /// type, `rdev` the device number), stored as s3fs stores them.
    async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> Result<Attr>;

    /// Rename `name` in `parent` to `new_name` in `new_parent`.
    async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()>;

    /// Create and open the new file `name` in `parent` for writing; `exclusive`
    /// (`O_EXCL`): its upload must not replace an object created meanwhile elsewhere.
    async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        exclusive: bool,
        caller: Caller,
    ) -> Result<(Attr, u64)>;

    /// Open file `ino`.
    async fn open(&self, ino: Ino, mode: OpenMode, caller: Caller) -> Result<Opened>;

    /// Read from an open file.
    async fn read(&self, fh: u64, off: u64, len: u32) -> Result<Bytes>;

    /// Write to a file open for writing.
    async fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32>;

    /// `close()` of a descriptor by process `pid`.
    async fn flush(&self, fh: u64, pid: u32) -> Result<()>;

    /// `fsync()`.
    async fn fsync(&self, fh: u64) -> Result<()>;

    /// Last close of a handle.
    async fn release(&self, fh: u64) -> Result<()>;

    /// Value of extended attribute `name`.
    async fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>>;

    /// Names of the extended attributes.
    async fn listxattr(&self, ino: Ino) -> Result<Vec<String>>;

    /// Set extended attribute `name` (`create`: must not exist; `replace`: must exist).
    async fn setxattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<()>;

    /// Remove extended attribute `name`.
    async fn removexattr(&self, ino: Ino, name: &str) -> Result<()>;

    /// Refuse new files and opens for writing from now on (shutdown began); returns how
    /// many files are still open for writing.
    fn stop_new_writers(&self) -> usize;

    /// Commit every file still being written and refuse new writers (on unmount); how many
    /// files could not be stored.
    async fn shutdown(&self) -> usize;

    /// Write the directory times changed by entries since the last call to the
    /// directories' markers (about once a second, and once more after [`Tree::shutdown`]).
    async fn persist_dir_times(&self);

    /// Abort every upload under way, leaving nothing partial and no multipart upload
    /// pending (a second signal: stop now).
    async fn abort(&self);
}
