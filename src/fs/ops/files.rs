//! Open files: reading, writing (streamed or staged), committing to S3.
//!
//! A file written from its first byte onwards (a new file, or `O_TRUNC`) streams to S3 as a
//! (multipart) upload. Anything else — opening an existing file for writing, appending, a
//! write out of order, a truncate, reading back what is being written, writing again after
//! an `fsync` — goes through a local staging file (see `crate::fs::write::stage`). A stream switches
//! to staging on the first such request: the bytes not yet sent move into the staging file,
//! or, once parts are sent, the stream is committed and becomes the staged file's base.
//!
//! Every descriptor of a file shares one write state (see `crate::fs::open`): several
//! writers write the same bytes, readers read them, and the last writer to close commits.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tracing::{debug, warn};

use crate::fs::meta::inode::{Node, Residence, Stat};
use crate::fs::meta::posix::{self as meta, Posix};
use crate::fs::open::{Body, Location, OpenFile, WriteState};
use crate::fs::read::prefetch::ReadConfig;
use crate::fs::write::{Base, Committed};
use crate::fs::{
    Attr, Caller, FileHandle, Fs, FsError, Handle, Ino, Kind, OpenMode, Opened, Reader, ReaderOf,
    Result,
};
use crate::s3::PutOptions;

/// Files committed at once at unmount (each commit sends its own parts in parallel too).
const SHUTDOWN_COMMITS: usize = 4;

impl Fs {
    /// Metadata and Content-Type (from the key's extension) for writing `key`.
    pub(in crate::fs) fn put_options(&self, key: &str, posix: &Posix) -> PutOptions {
        let mut opts = PutOptions::typed(
            mime_guess::from_path(key)
                .first_raw()
                .unwrap_or(&self.cfg.content_type_default),
        );
        posix.to_meta(&mut opts.meta);
        opts
    }

    /// Start rewriting the object of `ino` (an edit, an append, `O_TRUNC`, a truncate):
    /// the node, its key, and the options for the new body — the object's Content-Type,
    /// other content headers, storage class, encryption and every other client's metadata
    /// as one HEAD shows them, with our POSIX metadata written over them (mtime and ctime
    /// now): a new body must not cost the object what it carried. That same HEAD supplies
    /// our metadata when only a listing had been seen. When the object is gone, the last
    /// known metadata and the mount's defaults.
    async fn rewrite_start(&self, ino: Ino) -> Result<(Node, String, PutOptions)> {
        let mut node = self.fresh(ino).await?;
        let key = self.prefix.key(&node.path);
        let unknown = node.stat.posix.is_none() && node.residence == Residence::Remote;
        let found = match self.store.head(&key).await {
            Ok(info) => Some(info),
            // Without even our own metadata, the object must be there (as `with_posix`).
            Err(e) if e.kind == crate::s3::ErrorKind::NotFound && !unknown => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(info) = &found
            && unknown
        {
            let (_, stat) = Self::head_stat(info.clone());
            let mut t = self.inodes.lock().unwrap();
            let n = t.get_mut(ino).ok_or(FsError::NotFound)?;
            n.stat = stat;
            n.validated = Some(Instant::now());
            node = n.clone();
        }
        let mut posix = node.stat.posix.clone().unwrap_or_default();
        // Written now: its data (mtime) and so its status (ctime) change.
        let now = Some(SystemTime::now());
        (posix.mtime, posix.ctime) = (now, now);
        let mut opts = self.put_options(&key, &posix);
        if let Some(info) = found {
            let mut headers = info.headers.unwrap_or_default();
            headers.content_type = headers.content_type.or(opts.headers.content_type);
            let mut meta = info.meta.unwrap_or_default();
            posix.to_meta(&mut meta);
            (opts.headers, opts.meta) = (headers, meta);
        }
        Ok((node, key, opts))
    }

    /// Create and open the new file `name` in `parent` for writing.
    pub async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        exclusive: bool,
        caller: Caller,
    ) -> Result<(Attr, u64)> {
        self.guards.writable()?;
        self.check_open()?;
        let dir = self.dir_node(parent)?;
        self.check_new(&dir, name, false)?;
        let writing = self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .filter(|n| matches!(n.residence, Residence::Writing(_)))
            .cloned();
        if let Some(n) = writing {
            // The kernel thought the name free, but a descriptor here is writing it: as
            // `open(O_CREAT)` of an existing file, join it (or EEXIST for O_EXCL).
            if exclusive {
                return Err(FsError::Exists);
            }
            let mode = OpenMode {
                write: true,
                truncate: false,
            };
            let o = self.open(n.ino, mode, caller).await?;
            return Ok((self.attr(&self.node(n.ino)?), o.fh));
        }
        self.name_created(parent, name);
        let posix = Posix::new(meta::S_IFREG | (mode & 0o7777), caller.uid, caller.gid);
        let mut stat = Stat::new(0, SystemTime::now(), None);
        stat.posix = Some(posix.clone());
        let node = self
            .inodes
            .lock()
            .unwrap()
            .upsert(parent, name, Kind::File, stat, 1);
        let key = self.prefix.key(&node.path);
        let mut opts = self.put_options(&key, &posix);
        // Until the first commit: then the object is ours, and later commits replace it.
        opts.create_only = exclusive || self.guards.no_overwrite;
        let (fh, file) = self.attach(node.ino, caller.pid, true);
        // Not being written (checked above): a state of its own, that readers of an older
        // object of this name (gone from S3 meanwhile) now read too.
        let mut guard = file.state.lock().await;
        let body = Body::Stream(self.uploads.stream(key, opts));
        *guard = Some(self.new_state(&node, body, true));
        self.set_writing(&file, 0);
        drop(guard);
        let node = self.node(node.ino)?;
        Ok((self.attr(&node), fh))
    }

    /// A new handle on `ino` for process `pid`, registered with the inode's open state.
    fn attach(&self, ino: Ino, pid: u32, write: bool) -> (u64, Arc<OpenFile>) {
        let fh = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = self.open_files.attach(ino, fh, write);
        self.handles.lock().unwrap().insert(
            fh,
            Handle::File(Arc::new(FileHandle {
                file: file.clone(),
                pid,
                write,
                reader: std::sync::Mutex::new(None),
            })),
        );
        (fh, file)
    }

    /// Undo [`Fs::attach`] for a handle whose open failed.
    fn unattach(&self, fh: u64, file: &Arc<OpenFile>) {
        self.handles.lock().unwrap().remove(&fh);
        self.open_files.detach(file, fh);
    }

    fn new_state(&self, node: &Node, body: Body, created: bool) -> WriteState {
        WriteState {
            at: Location {
                parent: node.parent,
                name: node.name.clone(),
                key: self.prefix.key(&node.path),
            },
            body,
            meta_pending: None,
            created,
            cancelled: false,
            unlinked: false,
            _counted: crate::metrics::FileBeingWritten::new(),
        }
    }

    /// The inode of `file` now has a write state, `size` bytes long (its lock is held).
    fn set_writing(&self, file: &OpenFile, size: u64) {
        let mut t = self.inodes.lock().unwrap();
        if let Some(n) = t.get_mut(file.ino) {
            n.residence = Residence::Writing(file.id);
            n.stat.size = size;
            n.stat.mtime = SystemTime::now();
        }
    }

    /// The node with its POSIX metadata known (a HEAD when the listing left it unknown).
    pub(in crate::fs) async fn with_posix(&self, ino: Ino) -> Result<Node> {
        let node = self.fresh(ino).await?;
        if node.stat.posix.is_some()
            || node.kind == Kind::Dir
            || node.residence != Residence::Remote
        {
            return Ok(node);
        }
        let info = self.store.head(&self.prefix.key(&node.path)).await?;
        let (_, stat) = Self::head_stat(info);
        let mut t = self.inodes.lock().unwrap();
        let n = t.get_mut(ino).ok_or(FsError::NotFound)?;
        n.stat = stat;
        n.validated = Some(Instant::now());
        Ok(n.clone())
    }

    /// Open file `ino`: for reading, for replacing (O_TRUNC, streamed), or for changing in
    /// place (staged). A file already open for writing elsewhere is joined: every handle
    /// reads and writes the same bytes.
    pub async fn open(&self, ino: Ino, mode: OpenMode, caller: Caller) -> Result<Opened> {
        let node = self.node(ino)?;
        if node.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if mode.write {
            self.guards.overwrite()?;
            self.check_open()?;
            let (fh, file) = self.attach(ino, caller.pid, true);
            return match self.open_for_write(&file, fh, mode).await {
                Ok(()) => Ok(Opened {
                    fh,
                    keep_cache: false,
                }),
                Err(e) => {
                    self.unattach(fh, &file);
                    Err(e)
                }
            };
        }
        let (fh, file) = self.attach(ino, caller.pid, false);
        if file.state.lock().await.is_some() {
            // Being written here: reads go to the shared bytes, and the kernel's pages of
            // an earlier version must go.
            return Ok(Opened {
                fh,
                keep_cache: false,
            });
        }
        let node = match self.fresh(ino).await {
            Ok(n) => n,
            Err(e) => {
                self.unattach(fh, &file);
                return Err(e);
            }
        };
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
        if let Ok(Handle::File(h)) = self.handle(fh) {
            *h.reader.lock().unwrap() = Some(self.reader_of(&node));
        }
        Ok(Opened { fh, keep_cache })
    }

    /// Give the new writer `fh` of `file` the shared state: a new one (streamed for
    /// O_TRUNC, else staged over the object), or the one other handles already write.
    async fn open_for_write(&self, file: &Arc<OpenFile>, fh: u64, mode: OpenMode) -> Result<()> {
        let mut guard = file.state.lock().await;
        if let Some(st) = guard.as_mut() {
            if mode.truncate {
                self.truncate_state(st, 0).await?;
                file.wrote(fh);
                drop(guard);
                self.set_size(file, 0);
            }
            return Ok(());
        }
        let (node, key, opts) = self.rewrite_start(file.ino).await?;
        let (body, size) = if mode.truncate {
            (Body::Stream(self.uploads.stream(key, opts)), 0)
        } else {
            let base = Base {
                size: node.stat.size,
                etag: node.stat.etag.clone(),
            };
            let staged = self.uploads.stage(key, Some(base), b"", opts)?;
            (Body::Staged(staged), node.stat.size)
        };
        *guard = Some(self.new_state(&node, body, false));
        self.set_writing(file, size);
        Ok(())
    }

    /// A reader of `node`'s object as it is now.
    fn reader_of(&self, node: &Node) -> ReaderOf {
        let key = self.prefix.key(&node.path);
        ReaderOf {
            reader: Arc::new(Reader::new(
                self.store.clone(),
                key.clone(),
                node.stat.size,
                node.stat.etag.clone(),
                ReadConfig {
                    threads: self.cfg.download_threads,
                    max_part: self.cfg.read_part_size,
                },
                self.read_shared.clone(),
            )),
            key,
            etag: node.stat.etag.clone(),
            size: node.stat.size,
        }
    }

    /// The reader of handle `h`, for the version of the file this mount knows now: a
    /// commit through another descriptor, a truncate or a rename since the last read means
    /// a new reader (a renamed object is asked about first: its copy has a new ETag).
    async fn reader(&self, h: &FileHandle) -> Result<Arc<Reader>> {
        let mut node = self.node(h.file.ino)?;
        let key = self.prefix.key(&node.path);
        {
            let r = h.reader.lock().unwrap();
            if let Some(r) = r.as_ref()
                && r.key == key
                && r.etag == node.stat.etag
                && r.size == node.stat.size
            {
                return Ok(r.reader.clone());
            }
            if r.as_ref().is_some_and(|r| r.key != key) {
                node.validated = None;
            }
        }
        if !node.fresh_within(self.cfg.metadata_ttl) {
            node = self.fresh(h.file.ino).await?;
        }
        let r = self.reader_of(&node);
        let reader = r.reader.clone();
        *h.reader.lock().unwrap() = Some(r);
        Ok(reader)
    }

    /// Whether the file `ino` has nothing uncommitted: no write state, or its last close
    /// (flush) already put everything in S3 and only the kernel's release is still to
    /// come. Its object may then be changed directly (`cp -p` sets modes and times there).
    pub(in crate::fs) async fn file_is_clean(&self, ino: Ino) -> bool {
        let Some(file) = self.open_files.get(ino) else {
            return true;
        };
        match file.state.lock().await.as_ref() {
            Some(st) => !st.unlinked && st.is_clean(),
            None => true,
        }
    }

    /// After a metadata change made to the object itself while `ino` had nothing new to
    /// upload: the write state goes on from the changed object (its ETag and metadata), or
    /// its next commit would put the old metadata back.
    pub(in crate::fs) async fn rebase_writer(&self, ino: Ino) -> Result<()> {
        let Some(file) = self.open_files.get(ino) else {
            return Ok(());
        };
        let node = self.node(ino)?;
        let mut guard = file.state.lock().await;
        let Some(st) = guard.as_mut() else {
            return Ok(());
        };
        match &mut st.body {
            Body::Staged(s) if !s.is_changed() => {
                if let Some(p) = &node.stat.posix {
                    p.to_meta(&mut s.opts.meta);
                }
                s.rebase(node.stat.etag.clone());
            }
            // Committed: the changed object is the base of whatever is written next.
            Body::Stream(up) if up.is_committed() => {
                let mut opts = up.opts().clone();
                opts.create_only = false;
                if let Some(p) = &node.stat.posix {
                    p.to_meta(&mut opts.meta);
                }
                let base = Base {
                    size: node.stat.size,
                    etag: node.stat.etag.clone(),
                };
                st.body =
                    Body::Staged(
                        self.uploads
                            .stage(st.at.key.clone(), Some(base), b"", opts)?,
                    );
                st.created = false;
            }
            _ => {}
        }
        Ok(())
    }

    /// Switch a streamed body to a staged one (see the module doc).
    async fn to_staged(&self, st: &mut WriteState) -> Result<()> {
        let Body::Stream(up) = &mut st.body else {
            return Ok(());
        };
        let mut opts = up.opts().clone();
        let (base, initial) = match up.take_unsent() {
            Some(buf) => (None, buf),
            None => {
                let c = up.finish().await?;
                opts.create_only = false;
                st.created = false;
                (
                    Some(Base {
                        size: c.size,
                        etag: c.etag,
                    }),
                    Bytes::new(),
                )
            }
        };
        debug!(key = %st.at.key, "switching to a staging file");
        st.body = Body::Staged(
            self.uploads
                .stage(st.at.key.clone(), base, &initial, opts)?,
        );
        Ok(())
    }

    /// Make the bytes of `st` live only in its staging file, independent of any object
    /// (unlink or replacement while open): what was sent is fetched back, an upload under
    /// way is finished first, since its bytes exist nowhere else.
    pub(in crate::fs) async fn make_local(&self, st: &mut WriteState) -> Result<()> {
        self.to_staged(st).await?;
        if let Body::Staged(s) = &mut st.body {
            s.make_local().await?;
        }
        Ok(())
    }

    fn file_handle(&self, fh: u64) -> Result<Arc<FileHandle>> {
        match self.handle(fh)? {
            Handle::File(h) => Ok(h),
            Handle::Dir(_) => Err(FsError::IsDir),
        }
    }

    /// Read from an open file: the shared bytes while it is being written (whichever
    /// descriptor wrote them), else the object.
    pub async fn read(&self, fh: u64, off: u64, len: u32) -> Result<Bytes> {
        let h = self.file_handle(fh)?;
        {
            let mut guard = h.file.state.lock().await;
            if let Some(st) = guard.as_mut() {
                self.to_staged(st).await?;
                return match &mut st.body {
                    Body::Staged(s) => s.read(off, len).await,
                    Body::Stream(_) => unreachable!("just staged"),
                };
            }
        }
        Ok(self.reader(&h).await?.read(off, len).await?)
    }

    /// Write to a file opened for writing.
    pub async fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        if off.saturating_add(data.len() as u64) > self.uploads.max_size() {
            return Err(FsError::FileTooLarge);
        }
        let h = self.file_handle(fh)?;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        let mut guard = h.file.state.lock().await;
        let st = guard.as_mut().ok_or(FsError::BadHandle)?;
        if st.cancelled {
            return Ok(data.len() as u32);
        }
        let (n, size) = loop {
            match &mut st.body {
                Body::Stream(up) => match up.write(off, data).await {
                    // Committed empty by a close before any write (`cmd > f`: the shell's
                    // dup2 and close come first): writing from the start streams a new body
                    // instead of staging the file.
                    Err(FsError::AlreadyCommitted) if off == 0 && up.written() == 0 => {
                        let mut opts = up.opts().clone();
                        // The empty commit made the object ours.
                        opts.create_only = false;
                        st.body = Body::Stream(self.uploads.stream(st.at.key.clone(), opts));
                    }
                    Err(FsError::OutOfOrderWrite { .. } | FsError::AlreadyCommitted) => {
                        self.to_staged(st).await?;
                    }
                    r => break (r?, up.written()),
                },
                Body::Staged(s) => break (s.write(off, data)?, s.size()),
            }
        };
        h.file.wrote(fh);
        drop(guard);
        self.set_size(&h.file, size);
        Ok(n)
    }

    /// The file of `file` is `size` bytes long now (it was written or truncated).
    fn set_size(&self, file: &OpenFile, size: u64) {
        if let Some(node) = self.inodes.lock().unwrap().get_mut(file.ino)
            && node.residence == Residence::Writing(file.id)
        {
            node.stat.size = size;
            node.stat.mtime = SystemTime::now();
        }
    }

    /// Set the size of the shared bytes `st`.
    async fn truncate_state(&self, st: &mut WriteState, size: u64) -> Result<()> {
        if let Body::Stream(up) = &st.body
            && up.written() == size
        {
            return Ok(());
        }
        self.to_staged(st).await?;
        if let Body::Staged(s) = &mut st.body {
            s.truncate(size)?;
        }
        Ok(())
    }

    /// Change the size of a file open for writing (through handle `fh`, if one was named).
    /// Whether it was open for writing: else the object is truncated instead.
    pub(in crate::fs) async fn truncate_open(
        &self,
        ino: Ino,
        fh: Option<u64>,
        size: u64,
    ) -> Result<bool> {
        let Some(file) = self.open_files.get(ino) else {
            return Ok(false);
        };
        let mut guard = file.state.lock().await;
        let Some(st) = guard.as_mut() else {
            return Ok(false);
        };
        self.truncate_state(st, size).await?;
        if let Some(fh) = fh {
            file.wrote(fh);
        }
        drop(guard);
        self.set_size(&file, size);
        Ok(true)
    }

    /// Change the size of a file that is not open for writing: an empty object for 0,
    /// else the file is staged, truncated and committed.
    pub(in crate::fs) async fn truncate_closed(&self, node: &Node, size: u64) -> Result<()> {
        self.guards.overwrite()?;
        let (node, key, opts) = self.rewrite_start(node.ino).await?;
        let committed = if size == 0 {
            let put = self.store.put(&key, Bytes::new(), &opts).await?;
            Committed {
                size: 0,
                etag: put.etag,
            }
        } else {
            let mut s = self.uploads.stage(
                key,
                Some(Base {
                    size: node.stat.size,
                    etag: node.stat.etag.clone(),
                }),
                b"",
                opts,
            )?;
            s.truncate(size)?;
            s.commit().await?
        };
        let mut t = self.inodes.lock().unwrap();
        if let Some(n) = t.get_mut(node.ino) {
            n.stat.size = committed.size;
            n.stat.etag = committed.etag;
            n.stat.mtime = SystemTime::now();
            n.validated = Some(Instant::now());
        }
        Ok(())
    }

    /// `close()` of a descriptor. What was written is committed — and its error returned to
    /// the closing process — when the process that opened the file (any of its threads:
    /// `pid` is the process, not the thread) closes a descriptor after writing to it, or
    /// closes a new file before any write (`touch`; also the first close of a shell
    /// redirection, `open` + `dup2` + `close` of the original: the empty object is then
    /// replaced by the writes that follow, streamed). A close from another process (a forked
    /// child sharing the descriptor) leaves the commit to the opener's close or `release`.
    /// While another handle of the file still has writes of its own to finish (several
    /// writers at once), the commit waits for the last of them to close.
    pub async fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        let Handle::File(h) = self.handle(fh)? else {
            return Ok(());
        };
        if !h.write || h.pid != pid || h.file.settle(fh) {
            return Ok(());
        }
        if self.pending(&h.file).await {
            self.commit(&h.file).await
        } else {
            Ok(())
        }
    }

    /// Whether `file` has something a close must commit.
    async fn pending(&self, file: &OpenFile) -> bool {
        match file.state.lock().await.as_ref() {
            None => false,
            Some(st) => match &st.body {
                // A new file is committed at its close even when empty (`touch`, `: > f`),
                // so that close returns the upload's error.
                Body::Stream(up) => up.written() > 0 || (st.created && !up.is_committed()),
                Body::Staged(s) => s.is_changed(),
            },
        }
    }

    /// `fsync()`: commit a file being written, returning the upload's error.
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        match self.handle(fh)? {
            Handle::File(h) => self.commit(&h.file).await,
            Handle::Dir(_) => Ok(()),
        }
    }

    /// Last close of a handle: commit if no other handle still writes, then forget the
    /// handle; the shared bytes go with the last writer (with the last handle of a file
    /// unlinked while open).
    pub async fn release(&self, fh: u64) -> Result<()> {
        let h = self.handles.lock().unwrap().remove(&fh);
        let h = match h {
            Some(Handle::File(h)) => h,
            Some(Handle::Dir(_)) => return Ok(()),
            None => return Err(FsError::BadHandle),
        };
        let file = &h.file;
        let last = self.open_files.detach(file, fh);
        // Not only what `flush` would commit: an `O_TRUNC` that wrote nothing empties the
        // object here.
        let r = if h.write && !file.any_dirty() {
            self.commit(file).await
        } else {
            Ok(())
        };
        let mut guard = file.state.lock().await;
        let done = guard
            .as_ref()
            .is_some_and(|st| (!st.unlinked && file.writers() == 0) || last);
        if done {
            *guard = None;
            self.inodes
                .lock()
                .unwrap()
                .written(file.ino, Residence::Writing(file.id));
        }
        r
    }

    /// Make what was written durable in S3. Idempotent: with nothing new to send it is a
    /// no-op returning the last outcome.
    pub(in crate::fs) async fn commit(&self, file: &OpenFile) -> Result<()> {
        let mut guard = file.state.lock().await;
        let Some(st) = guard.as_mut() else {
            return Ok(());
        };
        if st.cancelled || st.unlinked {
            return Ok(());
        }
        let create_only = match &st.body {
            Body::Stream(up) => up.opts().create_only,
            Body::Staged(s) => s.opts.create_only,
        };
        let result = match &mut st.body {
            Body::Stream(up) => {
                if up.is_committed() {
                    return up.finish().await.map(|_| ());
                }
                up.finish().await.map(|c| (c, up.opts().clone()))
            }
            Body::Staged(s) => {
                if !s.is_changed() {
                    return Ok(());
                }
                s.commit().await.map(|c| (c, s.opts.clone()))
            }
        };
        // Metadata that changed after a multipart upload had started: one self-copy, with
        // the headers the upload stated (the mount's settings for what it did not state).
        let result = match (result, st.meta_pending.take()) {
            (Ok((c, mut opts)), Some(posix)) => {
                let key = &st.at.key;
                posix.to_meta(&mut opts.meta);
                match self.copy_object(key, key, c.size, Some(&opts)).await {
                    Ok(etag) => Ok((Committed { size: c.size, etag }, opts)),
                    Err(e) => Err(e),
                }
            }
            (r, _) => r,
        };
        // A create-only upload found the name taken by a writer elsewhere: EEXIST, as
        // `open(O_EXCL)` would have said had that object existed a moment earlier.
        let result = result.map_err(|e| match e {
            FsError::Store(se)
                if create_only && se.kind == crate::s3::ErrorKind::PreconditionFailed =>
            {
                FsError::Exists
            }
            e => e,
        });
        let gone = result.is_err() && st.created;
        if result.is_ok() {
            st.created = false;
        }
        let Location { parent, name, key } = &st.at;
        let (parent, name, key) = (*parent, name.clone(), key.clone());
        drop(guard);
        let mut t = self.inodes.lock().unwrap();
        let ours = t
            .get(file.ino)
            .is_some_and(|n| n.residence == Residence::Writing(file.id));
        if !ours {
            return result.map(|_| ());
        }
        let node = t.get_mut(file.ino).expect("checked");
        match result {
            Ok((c, opts)) => {
                debug!(key = %key, size = c.size, "upload committed");
                node.stat = Stat {
                    size: c.size,
                    mtime: SystemTime::now(),
                    etag: c.etag,
                    posix: Some(Posix::from_meta(&opts.meta)),
                };
                node.validated = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                node.validated = None;
                if gone {
                    // The object never came to exist: the name must not linger.
                    t.detach(parent, &name);
                }
                drop(t);
                if gone {
                    self.known.removed(parent, &name);
                    self.entries_changed(parent);
                    if let Some(inv) = self.invalidator.get() {
                        inv.entry_gone(parent, &name);
                    }
                }
                Err(e)
            }
        }
    }

    /// Point the write state of `ino` at `key` (`name` in `parent`), where rename just
    /// moved it (it was committed first): later writes change the moved object, staged
    /// against it, instead of bringing the old name back.
    pub(in crate::fs) async fn retarget_writer(
        &self,
        ino: Ino,
        parent: Ino,
        name: &str,
        key: String,
    ) -> Result<()> {
        let Some(file) = self.open_files.get(ino) else {
            return Ok(());
        };
        let mut guard = file.state.lock().await;
        let Some(st) = guard.as_mut() else {
            return Ok(());
        };
        if st.cancelled || st.unlinked {
            return Ok(());
        }
        let meta = match &st.body {
            Body::Stream(up) => up.opts().meta.clone(),
            Body::Staged(s) => s.opts.meta.clone(),
        };
        let opts = self.put_options(&key, &Posix::from_meta(&meta));
        let info = self.store.head(&key).await?;
        st.body = Body::Staged(self.uploads.stage(
            key.clone(),
            Some(Base {
                size: info.size,
                etag: info.etag,
            }),
            b"",
            opts,
        )?);
        st.at = Location {
            parent,
            name: name.to_owned(),
            key,
        };
        Ok(())
    }

    /// The file `node` is being unlinked, or replaced by a rename, while open here: its
    /// descriptors keep its bytes, now only local, and nothing more is uploaded for it.
    /// With no write state yet (open only for reading), the object is fetched whole into
    /// a staging file first; if that fails, so does the unlink, and nothing is deleted.
    pub(in crate::fs) async fn orphan(&self, node: &Node) -> Result<()> {
        let Some(file) = self.open_files.get(node.ino) else {
            return Ok(());
        };
        let mut guard = file.state.lock().await;
        match guard.as_mut() {
            Some(st) if st.cancelled || st.unlinked => return Ok(()),
            Some(st) => self.make_local(st).await?,
            None => {
                let key = self.prefix.key(&node.path);
                let base = Base {
                    size: node.stat.size,
                    etag: node.stat.etag.clone(),
                };
                let mut s = self
                    .uploads
                    .stage(key, Some(base), b"", PutOptions::default())?;
                s.make_local().await?;
                *guard = Some(self.new_state(node, Body::Staged(s), false));
                self.set_writing(&file, node.stat.size);
            }
        }
        if let Some(st) = guard.as_mut() {
            st.unlinked = true;
        }
        Ok(())
    }

    /// Commit every file still being written and refuse new writers (on unmount); how many
    /// could not be stored (each is logged). Files are committed a few at a time: against a
    /// server that is gone each waits out the retry deadline, and one after another they
    /// would multiply it.
    pub async fn shutdown(&self) -> usize {
        use futures::StreamExt;
        futures::stream::iter(self.close_to_writers())
            .map(|file| async move {
                let Err(e) = self.commit(&file).await else {
                    return 0;
                };
                let key = match file.state.lock().await.as_ref() {
                    Some(st) => st.at.key.clone(),
                    None => String::new(),
                };
                warn!(key, error = %e, "upload failed at unmount");
                1
            })
            .buffer_unordered(SHUTDOWN_COMMITS)
            .fold(0, |n, failed| async move { n + failed })
            .await
    }

    /// Refuse new writers from now on; how many files are still open for writing.
    pub fn stop_new_writers(&self) -> usize {
        self.close_to_writers().len()
    }

    /// Abort every upload under way (a second signal): nothing partial becomes visible and
    /// no multipart upload is left pending. What was not committed is lost, as asked.
    pub async fn abort(&self) {
        for file in self.close_to_writers() {
            if let Some(st) = file.state.lock().await.as_mut() {
                if let Body::Stream(up) = &mut st.body {
                    up.cancel().await;
                }
                st.cancelled = true;
            }
        }
    }

    /// Refuse new writers from now on, and return the files still open for writing.
    fn close_to_writers(&self) -> Vec<Arc<OpenFile>> {
        self.closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.open_files
            .all()
            .into_iter()
            .filter(|f| f.writers() > 0)
            .collect()
    }

    /// New files and opens for writing are refused once shutdown began.
    fn check_open(&self) -> Result<()> {
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(FsError::ShuttingDown);
        }
        Ok(())
    }
}
