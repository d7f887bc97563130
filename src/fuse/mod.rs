//! The FUSE adapter: decodes kernel requests, runs them on the tokio runtime so that a
//! request waiting on S3 never blocks the others, and replies. It is also the one place
//! where [`FsError`]s become errnos, and where each failure is logged — once, with the S3
//! operation, key and AWS error code.

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use futures::FutureExt;
use tokio::runtime::Handle;
use tracing::{debug, warn};

pub mod readahead;
mod reply;

use crate::fs::{Caller, FsError, OpenMode, SetAttr, Tree};
pub use reply::errno;
use reply::{ErrorReply, file_attr, file_type, log_failure, reply_entry, xattr_reply};

/// The tree the adapter serves: one bucket or every bucket, it cannot tell which.
type Shared = Arc<dyn Tree>;

/// Largest write the kernel may send in one request.
const MAX_WRITE: u32 = 1 << 20;
/// Largest readahead the kernel may ask for.
const MAX_READAHEAD: u32 = 1 << 20;

/// Raise the kernel's readahead for the mount at `mountpoint` to [`MAX_READAHEAD`], where
/// this process may (see [`readahead`]).
pub fn raise_readahead(mountpoint: &Path) {
    readahead::raise(mountpoint, MAX_READAHEAD >> 10);
}

/// Drops the kernel's cached entries through FUSE notifications, sent from a thread of
/// its own and never from inside a request handler: the kernel takes the directory's lock
/// to apply a notification, and a handler of a rename (whose commit can fail and drop a
/// name) runs while the kernel holds that very lock, so notifying from there would wait
/// on the reply it is holding up. Queued, the notification is sent after the reply.
pub struct KernelInvalidator(std::sync::mpsc::Sender<(u64, String)>);

impl KernelInvalidator {
    /// Start the notifying thread; it ends when the invalidator is dropped.
    pub fn new(notifier: fuser::Notifier) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<(u64, String)>();
        std::thread::Builder::new()
            .name("s3mount-notify".into())
            .spawn(move || {
                for (parent, name) in rx {
                    if let Err(e) = notifier.inval_entry(INodeNo(parent), OsStr::new(&name)) {
                        debug!(name, "could not invalidate kernel entry: {e}");
                    }
                }
            })?;
        Ok(KernelInvalidator(tx))
    }
}

impl crate::fs::Invalidator for KernelInvalidator {
    fn entry_gone(&self, parent: u64, name: &str) {
        // Only fails once the thread is gone, i.e. the session is over.
        let _ = self.0.send((parent, name.to_owned()));
    }
}

/// The core's entry position of a FUSE directory offset. Offsets are the cookies we hand
/// out: `.` is offset 1, `..` offset 2, entry `n` of the listing offset `n + 3`; the
/// kernel asks for what follows the last cookie it got (0: from the start).
fn entry_pos(offset: u64) -> u64 {
    offset.saturating_sub(2)
}

/// The `fuser::Filesystem` over our core.
pub struct FuseAdapter {
    fs: Shared,
    rt: Handle,
    pending: Pending,
}

impl FuseAdapter {
    /// Serve `fs` with tasks spawned on `rt`.
    pub fn new(fs: Shared, rt: Handle) -> Self {
        FuseAdapter {
            fs,
            rt,
            pending: Pending::default(),
        }
    }

    /// Run `work`; reply with `ok` on success or the mapped errno.
    fn spawn<R, T, F, W>(
        &self,
        op: &'static str,
        reply: R,
        work: W,
        ok: impl FnOnce(R, T) + Send + 'static,
    ) where
        R: ErrorReply,
        T: Send + 'static,
        F: Future<Output = Result<T, FsError>> + Send + 'static,
        W: FnOnce(Shared) -> F,
    {
        self.run(None, op, reply, work, ok)
    }

    /// [`spawn`](Self::spawn) for a request that changes nothing, so it can be abandoned
    /// at any await point: when its caller is interrupted (Ctrl-C, `timeout`) while it
    /// waits on S3, it is answered `EINTR` at once instead of after the retry deadline.
    /// Requests that change things are never cut half-way: they finish (bounded by the
    /// deadline) and report what happened.
    fn spawn_interruptible<R, T, F, W>(
        &self,
        req: &Request,
        op: &'static str,
        reply: R,
        work: W,
        ok: impl FnOnce(R, T) + Send + 'static,
    ) where
        R: ErrorReply,
        T: Send + 'static,
        F: Future<Output = Result<T, FsError>> + Send + 'static,
        W: FnOnce(Shared) -> F,
    {
        self.run(Some(req.unique().0), op, reply, work, ok)
    }

    /// The work is first polled right here on the FUSE thread: most requests (a cached
    /// lookup, a write into a buffer, a metadata change on a file being written, a known
    /// absent name) finish without waiting for anything, and answering them inline saves
    /// waking a runtime worker for each, which was the largest CPU cost per small file.
    /// Only work that has to wait (an S3 request) is handed to the runtime, which polls it
    /// again with a real waker; an interruptible one is registered under its request id
    /// first (the FUSE thread reads the kernel's interrupt only after this returns).
    fn run<R, T, F, W>(
        &self,
        unique: Option<u64>,
        op: &'static str,
        reply: R,
        work: W,
        ok: impl FnOnce(R, T) + Send + 'static,
    ) where
        R: ErrorReply,
        T: Send + 'static,
        F: Future<Output = Result<T, FsError>> + Send + 'static,
        W: FnOnce(Shared) -> F,
    {
        crate::metrics::fuse_request(op);
        let _in_runtime = self.rt.enter();
        let fut = std::panic::AssertUnwindSafe(work(self.fs.clone())).catch_unwind();
        let (cancel, cancelled) = match unique {
            Some(_) => {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let pending = self.pending.clone();
        let mut task = Box::pin(async move {
            let outcome = match cancelled {
                None => Some(fut.await),
                Some(mut rx) => {
                    tokio::select! {
                        biased;
                        r = fut => Some(r),
                        Ok(()) = &mut rx => None,
                    }
                }
            };
            if let Some(id) = unique {
                pending.forget(id);
            }
            match outcome {
                Some(Ok(Ok(v))) => ok(reply, v),
                Some(Ok(Err(e))) => {
                    log_failure(op, &e);
                    reply.fail(errno(&e));
                }
                // A bug must cost one request, not the mount.
                Some(Err(_)) => {
                    tracing::error!(op, "request handler panicked; answering EIO");
                    reply.fail(Errno::EIO);
                }
                None => {
                    debug!(op, "caller interrupted; answering EINTR");
                    reply.fail(Errno::EINTR);
                }
            }
        });
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if task.as_mut().poll(&mut cx).is_pending() {
            if let (Some(id), Some(tx)) = (unique, cancel) {
                self.pending.register(id, tx);
            }
            self.rt.spawn(task);
        }
    }
}

/// Interruptible requests waiting on S3, by the kernel's request id, each with the switch
/// that makes it answer `EINTR`.
#[derive(Clone, Default)]
struct Pending(
    Arc<std::sync::Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>>>,
);

impl Pending {
    fn register(&self, id: u64, cancel: tokio::sync::oneshot::Sender<()>) {
        self.lock().insert(id, cancel);
    }

    /// The request finished (or was interrupted): nothing left to cancel.
    fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Interrupt request `id`; false when it is not waiting (finished already, or a kind
    /// of request that is never cut short).
    fn interrupt(&self, id: u64) -> bool {
        match self.lock().remove(&id) {
            Some(cancel) => cancel.send(()).is_ok(),
            None => false,
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>>
    {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pair a result with the TTL the kernel may cache it for.
fn with_ttl<T>(fs: &Shared, r: Result<T, FsError>) -> Result<(T, Duration), FsError> {
    r.map(|v| (v, fs.ttl()))
}

/// FUSE reports the calling *thread*; a close from another thread of the process that
/// opened a file is that process's close. Its thread group id, from /proc (the thread id
/// itself when /proc does not know it, e.g. a caller in another PID namespace).
fn process_of(tid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}

/// Who asks, for ownership and guard checks (`pid` is the calling thread).
fn caller(req: &Request) -> Caller {
    Caller {
        pid: req.pid(),
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// Who opens a file for writing: its process, whose close commits (one /proc read, so
/// only where it counts).
fn writer(req: &Request) -> Caller {
    Caller {
        pid: process_of(req.pid()),
        ..caller(req)
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// File names arrive as bytes; S3 keys are UTF-8.
fn utf8_name<R: ErrorReply>(name: &OsStr, reply: R) -> Option<(String, R)> {
    match name.to_str() {
        Some(s) => Some((s.to_owned(), reply)),
        None => {
            warn!(name = ?name, "file name is not UTF-8; S3 keys must be");
            reply.fail(Errno::EINVAL);
            None
        }
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Readdirplus: the listing already carries size and mtime, so `ls -l` costs no
        // lookups. Atomic O_TRUNC: `open(O_TRUNC)` arrives as one request we can turn into
        // "replace the object" instead of a separate truncate.
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            if config.add_capabilities(cap).is_err() {
                debug!(?cap, "kernel does not offer capability");
            }
        }
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_READAHEAD);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    /// A missing name is answered with the error ENOENT, which the kernel does not cache
    /// (only an entry with node id 0 and a timeout is a negative dentry it trusts): every
    /// `stat` of a missing name comes back here, so that the core alone decides whether
    /// absence is checked with S3 (the default) or remembered (`--negative-cache`).
    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some((name, reply)) = utf8_name(name, reply) else {
            return;
        };
        self.spawn_interruptible(
            req,
            "lookup",
            reply,
            |fs| async move { with_ttl(&fs, fs.lookup(parent.0, &name).await) },
            reply_entry,
        );
    }

    fn interrupt(&self, _req: &Request, unique: fuser::RequestId) -> Result<(), Errno> {
        if self.pending.interrupt(unique.0) {
            debug!(request = unique.0, "interrupt delivered");
        }
        // Otherwise it finished already or is a request that always runs to its end.
        Ok(())
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn_interruptible(
            req,
            "getattr",
            reply,
            |fs| async move { with_ttl(&fs, fs.getattr(ino.0).await) },
            |r, (a, ttl)| r.attr(&ttl, &file_attr(&a)),
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.spawn(
            "setattr",
            reply,
            move |fs| async move {
                // Times as utimensat(2) gives them (UTIME_NOW resolved here, UTIME_OMIT as None).
                let change = SetAttr {
                    mode,
                    uid,
                    gid,
                    size,
                    mtime: mtime.map(time),
                    atime: atime.map(time),
                };
                with_ttl(&fs, fs.setattr(ino.0, change, fh.map(|f| f.0)).await)
            },
            |r, (a, ttl)| r.attr(&ttl, &file_attr(&a)),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let Some((name, reply)) = utf8_name(name, reply) else {
            return;
        };
        let who = caller(req);
        self.spawn(
            "mkdir",
            reply,
            |fs| async move { with_ttl(&fs, fs.mkdir(parent.0, &name, mode & !umask, who).await) },
            reply_entry,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some((name, reply)) = utf8_name(name, reply) else {
            return;
        };
        self.spawn(
            "unlink",
            reply,
            |fs| async move { fs.unlink(parent.0, &name).await },
            |r, ()| r.ok(),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some((name, reply)) = utf8_name(name, reply) else {
            return;
        };
        self.spawn(
            "rmdir",
            reply,
            |fs| async move { fs.rmdir(parent.0, &name).await },
            |r, ()| r.ok(),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let (Some(name), Some(newname)) = (name.to_str(), newname.to_str()) else {
            reply.error(Errno::EINVAL);
            return;
        };
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.spawn(
            "rename",
            reply,
            move |fs| async move {
                fs.rename(parent.0, &name, newparent.0, &newname, no_replace)
                    .await
            },
            |r, ()| r.ok(),
        );
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        self.spawn_interruptible(
            req,
            "readlink",
            reply,
            |fs| async move { fs.readlink(ino.0).await },
            |r, target| r.data(target.as_bytes()),
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mode = OpenMode {
            write: !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY),
            truncate: flags.0 & libc::O_TRUNC != 0,
        };
        let who = if mode.write { writer(req) } else { caller(req) };
        // An open for writing starts a write; only an open for reading may be cut short.
        let unique = (!mode.write).then(|| req.unique().0);
        self.run(
            unique,
            "open",
            reply,
            |fs| async move { fs.open(ino.0, mode, who).await },
            |r, o| {
                let flags = if o.keep_cache {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                r.opened(FileHandle(o.fh), flags)
            },
        );
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn_interruptible(
            req,
            "read",
            reply,
            |fs| async move { fs.read(fh.0, offset, size).await },
            |r, data| r.data(&data),
        );
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.spawn(
            "write",
            reply,
            |fs| async move { fs.write(fh.0, offset, &data).await },
            |r, n| r.written(n),
        );
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let pid = process_of(req.pid());
        self.spawn(
            "flush",
            reply,
            |fs| async move { fs.flush(fh.0, pid).await },
            |r, ()| r.ok(),
        );
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            "release",
            reply,
            |fs| async move { fs.release(fh.0).await },
            |r, ()| r.ok(),
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            "fsync",
            reply,
            |fs| async move { fs.fsync(fh.0).await },
            |r, ()| r.ok(),
        );
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn_interruptible(
            req,
            "opendir",
            reply,
            |fs| async move { fs.opendir(ino.0).await },
            |r, fh| r.opened(FileHandle(fh), FopenFlags::empty()),
        );
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.spawn_interruptible(
            req,
            "readdir",
            reply,
            |fs| async move {
                let entries = fs
                    .readdir(ino.0, fh.0, entry_pos(offset), offset == 0)
                    .await?;
                Ok((fs, entries))
            },
            move |mut r, (fs, entries)| {
                let parent = fs.parent_of(ino.0);
                let total = entry_pos(offset) + entries.len() as u64 + 2;
                for i in offset..total {
                    let full = match i {
                        0 => r.add(ino, 1, FileType::Directory, "."),
                        1 => r.add(INodeNo(parent), 2, FileType::Directory, ".."),
                        _ => {
                            let e = &entries[(i - 2 - entry_pos(offset)) as usize];
                            let Ok(a) = fs.entry(ino.0, e, 0) else {
                                continue;
                            };
                            r.add(INodeNo(a.ino), i + 1, file_type(e.kind), &e.name)
                        }
                    };
                    if full {
                        break;
                    }
                }
                r.ok();
            },
        );
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.spawn_interruptible(
            req,
            "readdirplus",
            reply,
            |fs| async move {
                let entries = fs
                    .readdir(ino.0, fh.0, entry_pos(offset), offset == 0)
                    .await?;
                Ok((fs, entries))
            },
            move |mut r, (fs, entries)| {
                let total = entry_pos(offset) + entries.len() as u64 + 2;
                for i in offset..total {
                    // The kernel takes no reference for "." and "..": count none.
                    let (attr, name, counted) = match i {
                        0 => (fs.cached_attr(ino.0), ".", false),
                        1 => (fs.cached_attr(fs.parent_of(ino.0)), "..", false),
                        _ => {
                            let e = &entries[(i - 2 - entry_pos(offset)) as usize];
                            (fs.entry(ino.0, e, 1), e.name.as_str(), true)
                        }
                    };
                    let Ok(attr) = attr else { continue };
                    let ttl = match counted {
                        true => fs.entry_ttl(attr.ino),
                        false => fs.ttl(),
                    };
                    let full = r.add(
                        INodeNo(attr.ino),
                        i + 1,
                        name,
                        &ttl,
                        &file_attr(&attr),
                        Generation(0),
                    );
                    if full {
                        if counted {
                            // Not handed to the kernel after all.
                            fs.forget(attr.ino, 1);
                        }
                        break;
                    }
                }
                r.ok();
            },
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            "releasedir",
            reply,
            |fs| async move { fs.releasedir(ino.0, fh.0).await },
            |r, ()| r.ok(),
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // S3 has no capacity to report: advertise a large, mostly free file system so
        // tools that check free space before writing proceed.
        const BLOCKS: u64 = 1 << 40;
        reply.statfs(BLOCKS, BLOCKS, BLOCKS, 1 << 32, 1 << 32, 4096, 1024, 4096);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some((name, reply)) = utf8_name(name, reply) else {
            return;
        };
        let who = writer(req);
        self.spawn(
            "create",
            reply,
            move |fs| async move {
                let exclusive = flags & libc::O_EXCL != 0;
                with_ttl(
                    &fs,
                    fs.create(parent.0, &name, mode & !umask, exclusive, who)
                        .await,
                )
            },
            |r, ((a, fh), ttl)| {
                r.created(
                    &ttl,
                    &file_attr(&a),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            },
        );
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name.to_str().map(str::to_owned) else {
            reply.error(Errno::from_i32(libc::ENODATA));
            return;
        };
        self.spawn_interruptible(
            req,
            "getxattr",
            reply,
            |fs| async move { fs.getxattr(ino.0, &name).await },
            move |r, value| xattr_reply(r, size, &value),
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let uid = req.uid();
        self.spawn_interruptible(
            req,
            "listxattr",
            reply,
            move |fs| async move {
                let mut names = fs.listxattr(ino.0).await?;
                // The kernel keeps trusted.* from everyone but root; listing them must too.
                if uid != 0 {
                    names.retain(|n| !n.starts_with("trusted."));
                }
                Ok(names)
            },
            move |r, names| {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(n.as_bytes());
                    buf.push(0);
                }
                xattr_reply(r, size, &buf)
            },
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let Some(name) = name.to_str().map(str::to_owned) else {
            reply.error(Errno::from_i32(libc::ENOTSUP));
            return;
        };
        let value = value.to_vec();
        let create = flags & libc::XATTR_CREATE != 0;
        let replace = flags & libc::XATTR_REPLACE != 0;
        self.spawn(
            "setxattr",
            reply,
            move |fs| async move { fs.setxattr(ino.0, &name, &value, create, replace).await },
            |r, ()| r.ok(),
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str().map(str::to_owned) else {
            reply.error(Errno::from_i32(libc::ENODATA));
            return;
        };
        self.spawn(
            "removexattr",
            reply,
            |fs| async move { fs.removexattr(ino.0, &name).await },
            |r, ()| r.ok(),
        );
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let Some((name, reply)) = utf8_name(link_name, reply) else {
            return;
        };
        let Some(target) = target.to_str().map(str::to_owned) else {
            reply.error(Errno::EINVAL);
            return;
        };
        let who = caller(req);
        self.spawn(
            "symlink",
            reply,
            |fs| async move { with_ttl(&fs, fs.symlink(parent.0, &name, &target, who).await) },
            reply_entry,
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some((name, reply)) = utf8_name(name, reply) else {
            return;
        };
        let who = caller(req);
        self.spawn(
            "mknod",
            reply,
            move |fs| async move {
                let mode = mode & !umask;
                with_ttl(&fs, fs.mknod(parent.0, &name, mode, rdev, who).await)
            },
            reply_entry,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::fs::{Fs, FsConfig};
    use crate::s3::memory::MemoryStore;

    /// A reply that reports what it was answered: `None` for success, or the errno.
    struct Probe(mpsc::Sender<Option<Errno>>);

    impl ErrorReply for Probe {
        fn fail(self, e: Errno) {
            let _ = self.0.send(Some(e));
        }
    }

    fn answered(p: Probe, (): ()) {
        let _ = p.0.send(None);
    }

    fn adapter() -> (FuseAdapter, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(MemoryStore::new("b", 3));
        let fs: Shared = Arc::new(Fs::new(store, "", FsConfig::default()));
        (FuseAdapter::new(fs, rt.handle().clone()), rt)
    }

    fn wait(rx: &mpsc::Receiver<Option<Errno>>) -> Option<Errno> {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the request was never answered")
    }

    #[test]
    fn a_panicking_handler_answers_eio_and_the_next_request_is_served() {
        let (a, _rt) = adapter();
        let (tx, rx) = mpsc::channel();
        a.spawn(
            "test",
            Probe(tx.clone()),
            |_fs| async {
                if std::hint::black_box(true) {
                    panic!("a bug in a handler");
                }
                Ok::<(), FsError>(())
            },
            answered,
        );
        assert_eq!(wait(&rx), Some(Errno::EIO));
        // Also when the panic comes after the request was handed to the runtime.
        a.spawn(
            "test",
            Probe(tx.clone()),
            |_fs| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                panic!("a bug after an await");
            },
            answered,
        );
        assert_eq!(wait(&rx), Some(Errno::EIO));
        a.spawn("test", Probe(tx), |_fs| async { Ok(()) }, answered);
        assert_eq!(wait(&rx), None);
    }

    #[test]
    fn an_interrupted_request_answers_eintr_and_others_are_left_alone() {
        let (a, _rt) = adapter();
        let (tx, rx) = mpsc::channel();
        // Waiting (on S3, say): the interrupt answers it EINTR at once.
        let never = |_fs| futures::future::pending::<Result<(), FsError>>();
        a.run(Some(7), "test", Probe(tx.clone()), never, answered);
        assert!(rx.try_recv().is_err(), "answered before the interrupt");
        assert!(a.pending.interrupt(7));
        assert_eq!(wait(&rx), Some(Errno::EINTR));
        assert!(!a.pending.interrupt(7), "interrupted twice");

        // Finished (inline) before the interrupt came: nothing to cancel.
        a.run(
            Some(8),
            "test",
            Probe(tx.clone()),
            |_fs| async { Ok(()) },
            answered,
        );
        assert_eq!(wait(&rx), None);
        assert!(!a.pending.interrupt(8));

        // A request that is never cut short is not registered, and finishes normally.
        a.run(
            None,
            "test",
            Probe(tx),
            |_fs| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(())
            },
            answered,
        );
        assert!(a.pending.lock().is_empty());
        assert_eq!(wait(&rx), None);
    }

    #[test]
    fn every_request_is_counted_by_opcode() {
        let (a, _rt) = adapter();
        let (tx, rx) = mpsc::channel();
        let text = crate::metrics::testing::scrape(|_| {
            for op in ["lookup", "lookup", "read"] {
                a.spawn(op, Probe(tx.clone()), |_fs| async { Ok(()) }, answered);
                assert_eq!(wait(&rx), None);
            }
        });
        let count = |op: &str| {
            crate::metrics::testing::value(
                &text,
                &format!("s3mount_fuse_requests_total{{opcode=\"{op}\"}}"),
            )
        };
        assert_eq!(count("lookup"), Some(2.0), "{text}");
        assert_eq!(count("read"), Some(1.0));
    }
}
