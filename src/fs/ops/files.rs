//! Open files: reading, writing (streamed or staged), committing to S3.
//!
//! A file written from its first byte onwards (a new file, or `O_TRUNC`) streams to S3 as a
//! (multipart) upload. Anything else — opening an existing file for writing, appending, a
//! write out of order, a truncate, reading back what is being written, writing again after
//! an `fsync` — goes through a local staging file (see `crate::fs::write::stage`). A stream switches
//! to staging on the first such request: the bytes not yet sent move into the staging file,
//! or, once parts are sent, the stream is committed and becomes the staged file's base.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tracing::{debug, warn};

use crate::fs::meta::inode::{Node, Residence, Stat};
use crate::fs::meta::posix::{self as meta, Posix};
use crate::fs::read::prefetch::ReadConfig;
use crate::fs::write::{Base, Committed};
use crate::fs::{
    Attr, Body, Caller, Fs, FsError, Handle, Ino, Kind, Location, OpenMode, Opened, Reader, Result,
    WriteHandle, WriteState,
};
use crate::s3::PutOptions;

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
        let writer = self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .and_then(|n| match n.residence {
                Residence::Writing(fh) => Some(fh),
                Residence::Remote => None,
            });
        if let Some(fh) = writer
            && !self.writer_is_clean(fh).await
        {
            return Err(FsError::Busy("the file is already being written"));
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
        let upload = self.uploads.stream(key, opts);
        let fh = self.start_write(&node, caller.pid, true, Body::Stream(upload), 0);
        let node = self.node(node.ino)?;
        Ok((self.attr(&node), fh))
    }

    fn start_write(&self, node: &Node, pid: u32, created: bool, body: Body, size: u64) -> u64 {
        let fh = self.add_handle(Handle::Write(Arc::new(WriteHandle {
            ino: node.ino,
            pid,
            created,
            body: tokio::sync::Mutex::new(WriteState {
                at: Location {
                    parent: node.parent,
                    name: node.name.clone(),
                    key: self.prefix.key(&node.path),
                },
                body,
                meta_pending: None,
                cancelled: false,
            }),
        })));
        let mut t = self.inodes.lock().unwrap();
        if let Some(n) = t.get_mut(node.ino) {
            n.residence = Residence::Writing(fh);
            n.stat.size = size;
            n.stat.mtime = SystemTime::now();
        }
        fh
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
    /// place (staged).
    pub async fn open(&self, ino: Ino, mode: OpenMode, caller: Caller) -> Result<Opened> {
        let node = self.node(ino)?;
        if node.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if let Residence::Writing(wfh) = node.residence
            && !self.writer_is_clean(wfh).await
        {
            return Err(FsError::Busy("the file is being written"));
        }
        if mode.write {
            self.guards.overwrite()?;
            self.check_open()?;
            let (node, key, opts) = self.rewrite_start(ino).await?;
            let (body, size) = if mode.truncate {
                let up = self.uploads.stream(key, opts);
                (Body::Stream(up), 0)
            } else {
                let base = Base {
                    size: node.stat.size,
                    etag: node.stat.etag.clone(),
                };
                let staged = self.uploads.stage(key, Some(base), b"", opts)?;
                (Body::Staged(staged), node.stat.size)
            };
            return Ok(Opened {
                fh: self.start_write(&node, caller.pid, false, body, size),
                keep_cache: false,
            });
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

    /// Whether the handle writing a file has nothing uncommitted: its last close (flush)
    /// already put everything in S3 and only the kernel's release is still to come. Such a
    /// file may be opened again at once (`echo a > f; cat f`).
    pub(in crate::fs) async fn writer_is_clean(&self, fh: u64) -> bool {
        let Ok(Handle::Write(wh)) = self.handle(fh) else {
            return true;
        };
        let st = wh.body.lock().await;
        st.cancelled
            || match &st.body {
                Body::Stream(up) => up.is_committed(),
                Body::Staged(s) => !s.is_changed(),
            }
    }

    /// After a metadata change made to the object itself while `fh` had nothing new to
    /// upload: a staged body goes on from the changed object (its ETag and metadata).
    pub(in crate::fs) async fn rebase_writer(&self, fh: u64, ino: Ino) {
        let Ok(Handle::Write(wh)) = self.handle(fh) else {
            return;
        };
        let Ok(node) = self.node(ino) else {
            return;
        };
        let mut st = wh.body.lock().await;
        if let Body::Staged(s) = &mut st.body
            && !s.is_changed()
        {
            if let Some(p) = &node.stat.posix {
                p.to_meta(&mut s.opts.meta);
            }
            s.rebase(node.stat.etag.clone());
        }
    }

    /// Switch a streamed body to a staged one (see the module doc).
    async fn to_staged(&self, st: &mut WriteState) -> Result<()> {
        let Body::Stream(up) = &mut st.body else {
            return Ok(());
        };
        let mut opts = up.opts().clone();
        let (base, initial) = match up.take_unsent() {
            Some(buf) => (None, buf.freeze()),
            None => {
                let c = up.finish().await?;
                opts.create_only = false;
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

    fn write_handle(&self, fh: u64) -> Result<Arc<WriteHandle>> {
        match self.handle(fh)? {
            Handle::Write(wh) => Ok(wh),
            _ => Err(FsError::BadHandle),
        }
    }

    /// Read from an open file (a file open for writing reads what was written).
    pub async fn read(&self, fh: u64, off: u64, len: u32) -> Result<Bytes> {
        let wh = match self.handle(fh)? {
            Handle::Read(r) => return Ok(r.read(off, len).await?),
            Handle::Write(wh) => wh,
            Handle::Dir(_) => return Err(FsError::IsDir),
        };
        let mut st = wh.body.lock().await;
        self.to_staged(&mut st).await?;
        match &mut st.body {
            Body::Staged(s) => s.read(off, len).await,
            Body::Stream(_) => unreachable!("just staged"),
        }
    }

    /// Write to a file opened for writing.
    pub async fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        if off.saturating_add(data.len() as u64) > self.uploads.max_size() {
            return Err(FsError::FileTooLarge);
        }
        let wh = self.write_handle(fh)?;
        let mut st = wh.body.lock().await;
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
                        self.to_staged(&mut st).await?;
                    }
                    r => break (r?, up.written()),
                },
                Body::Staged(s) => break (s.write(off, data)?, s.size()),
            }
        };
        drop(st);
        self.set_writing_size(fh, wh.ino, size);
        Ok(n)
    }

    fn set_writing_size(&self, fh: u64, ino: Ino, size: u64) {
        if let Some(node) = self.inodes.lock().unwrap().get_mut(ino)
            && node.residence == Residence::Writing(fh)
        {
            node.stat.size = size;
            node.stat.mtime = SystemTime::now();
        }
    }

    /// Change the size of a file open for writing.
    pub(in crate::fs) async fn truncate_open(&self, fh: u64, size: u64) -> Result<()> {
        let wh = self.write_handle(fh)?;
        let mut st = wh.body.lock().await;
        if let Body::Stream(up) = &st.body
            && up.written() == size
        {
            return Ok(());
        }
        self.to_staged(&mut st).await?;
        if let Body::Staged(s) = &mut st.body {
            s.truncate(size)?;
        }
        drop(st);
        self.set_writing_size(fh, wh.ino, size);
        Ok(())
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
    pub async fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        let Handle::Write(wh) = self.handle(fh)? else {
            return Ok(());
        };
        let pending = match &wh.body.lock().await.body {
            // A new file is committed at its close even when empty (`touch`, `: > f`), so
            // that close returns the upload's error.
            Body::Stream(up) => up.written() > 0 || (wh.created && !up.is_committed()),
            Body::Staged(s) => s.is_changed(),
        };
        if wh.pid == pid && pending {
            self.commit(fh, &wh).await
        } else {
            Ok(())
        }
    }

    /// `fsync()`: commit a file being written, returning the upload's error.
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        match self.handle(fh)? {
            Handle::Write(wh) => self.commit(fh, &wh).await,
            _ => Ok(()),
        }
    }

    /// Last close of a handle: commit if needed, then forget the handle.
    pub async fn release(&self, fh: u64) -> Result<()> {
        let h = self.handles.lock().unwrap().remove(&fh);
        match h {
            Some(Handle::Write(wh)) => {
                let r = self.commit(fh, &wh).await;
                let mut t = self.inodes.lock().unwrap();
                if let Some(n) = t.get_mut(wh.ino)
                    && n.residence == Residence::Writing(fh)
                {
                    n.residence = Residence::Remote;
                }
                r
            }
            Some(_) => Ok(()),
            None => Err(FsError::BadHandle),
        }
    }

    /// Make what was written durable in S3. Idempotent: with nothing new to send it is a
    /// no-op returning the last outcome.
    pub(in crate::fs) async fn commit(&self, fh: u64, wh: &WriteHandle) -> Result<()> {
        let mut st = wh.body.lock().await;
        if st.cancelled {
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
        let Location { parent, name, key } = &st.at;
        let (parent, name, key) = (*parent, name.clone(), key.clone());
        drop(st);
        let mut t = self.inodes.lock().unwrap();
        let ours = t
            .get(wh.ino)
            .is_some_and(|n| n.residence == Residence::Writing(fh));
        if !ours {
            return result.map(|_| ());
        }
        let node = t.get_mut(wh.ino).expect("checked");
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
                node.residence = Residence::Remote;
                node.validated = None;
                let gone = wh.created;
                if gone {
                    // The object never came to exist: the name must not linger.
                    t.detach(parent, &name);
                }
                drop(t);
                if gone {
                    self.known.removed(parent, &name);
                    if let Some(inv) = self.invalidator.get() {
                        inv.entry_gone(parent, &name);
                    }
                }
                Err(e)
            }
        }
    }

    /// Point the handle of a file open for writing at `key` (`name` in `parent`), where
    /// rename just moved it (it was committed first): later writes change the moved object,
    /// staged against it, instead of bringing the old name back.
    pub(in crate::fs) async fn retarget_writer(
        &self,
        fh: u64,
        parent: Ino,
        name: &str,
        key: String,
    ) -> Result<()> {
        let Ok(Handle::Write(wh)) = self.handle(fh) else {
            return Ok(());
        };
        let mut st = wh.body.lock().await;
        if st.cancelled {
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

    /// Commit every file still being written and refuse new writers (on unmount). Errors
    /// are logged.
    pub async fn shutdown(&self) {
        for (fh, wh) in self.close_to_writers() {
            if let Err(e) = self.commit(fh, &wh).await {
                let key = wh.body.lock().await.at.key.clone();
                warn!(key, error = %e, "upload failed at unmount");
            }
        }
    }

    /// Refuse new writers from now on; how many files are still open for writing.
    pub fn stop_new_writers(&self) -> usize {
        self.close_to_writers().len()
    }

    /// Abort every upload under way (a second signal): nothing partial becomes visible and
    /// no multipart upload is left pending. What was not committed is lost, as asked.
    pub async fn abort(&self) {
        for (_, wh) in self.close_to_writers() {
            let mut st = wh.body.lock().await;
            if let Body::Stream(up) = &mut st.body {
                up.cancel().await;
            }
            st.cancelled = true;
        }
    }

    /// Refuse new writers from now on, and return the handles of the files still open for
    /// writing.
    fn close_to_writers(&self) -> Vec<(u64, Arc<WriteHandle>)> {
        self.closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(fh, h)| match h {
                Handle::Write(w) => Some((*fh, w.clone())),
                _ => None,
            })
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
