//! Directory contents and names: listing, mkdir/rmdir, unlink, rename, symlinks.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tracing::warn;

use crate::fs::dirstream::DirStream;
use crate::fs::meta::inode::{Node, Stat};
use crate::fs::meta::posix::{self as meta, Posix};
use crate::fs::meta::{key, listing as dir};
use crate::fs::ops::times;
use crate::fs::{
    Attr, Caller, DIR_CONTENT_TYPE, DirHandle, Fs, FsError, Handle, Ino, Kind, Listed, Result,
    check_name,
};
use crate::s3::{MAX_DELETE_BATCH, PutOptions, StoreError};

/// What one DeleteObjects request left behind (per-key failures), or why it failed.
type DeleteOutcome = std::result::Result<Vec<StoreError>, StoreError>;

/// Concurrent copies (and deletes) when renaming a directory.
const RENAME_CONCURRENCY: usize = 32;

impl Fs {
    /// Open directory `ino` for listing. Nothing is listed before the first readdir.
    pub fn opendir(&self, ino: Ino) -> Result<u64> {
        let dir = self.dir_node(ino)?;
        let stream = DirStream::new(
            self.store.clone(),
            self.prefix.dir_key(&dir.path),
            self.mount_time,
        );
        Ok(self.add_handle(Handle::Dir(Arc::new(DirHandle {
            ino,
            stream: tokio::sync::Mutex::new(stream),
        }))))
    }

    /// Entries of an open directory from position `pos` on (0: its first entry), as many as
    /// the handle has at hand (none: the end). The first call lists the first page; later
    /// ones are served from the handle while the next page is fetched in the background.
    /// `rewind` (position 0 asked for again), or a position the handle no longer holds,
    /// lists the directory again from its start, as other clients have left it.
    pub async fn readdir(&self, fh: u64, pos: u64, rewind: bool) -> Result<Vec<Listed>> {
        let Handle::Dir(dh) = self.handle(fh)? else {
            return Err(FsError::BadHandle);
        };
        let mut stream = dh.stream.lock().await;
        if stream.needs_restart(pos, rewind) {
            let writing = self.writing_entries(dh.ino);
            stream.restart(writing, self.known.epoch());
        }
        let (entries, complete) = stream.read(pos, &self.warnings).await?;
        if let Some(c) = complete {
            self.know_dir(dh.ino, c.since, c.epoch, c.names);
        }
        Ok(entries)
    }

    /// Files being written into directory `dir` (not in S3 yet), as entries.
    fn writing_entries(&self, dir: Ino) -> Vec<Listed> {
        let writing = self.inodes.lock().unwrap().writing_children(dir);
        writing
            .into_iter()
            .map(|n| Listed {
                name: n.name,
                kind: Kind::File,
                stat: n.stat,
            })
            .collect()
    }

    /// Every entry of directory `dir`: its listing, plus new files still being written
    /// into it (not in S3 yet).
    pub(in crate::fs) async fn list_dir(&self, dir: &Node) -> Result<Vec<Listed>> {
        let mut listed = dir::list(
            self.store.as_ref(),
            &self.prefix,
            &dir.path,
            self.mount_time,
            &self.warnings,
        )
        .await?;
        let writing = self.inodes.lock().unwrap().writing_children(dir.ino);
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
        Ok(listed)
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
        self.node(ino)
            .map(|n| n.parent)
            .unwrap_or(crate::fs::ROOT_INO)
    }

    /// Close a directory handle.
    pub fn releasedir(&self, fh: u64) {
        self.handles.lock().unwrap().remove(&fh);
    }

    fn new_posix(&self, caller: Caller, mode: u32) -> Posix {
        Posix::new(mode, caller.uid, caller.gid)
    }

    /// Create directory `name` in `parent`: a zero-byte `name/` marker object (with
    /// s3fs-compatible mode and owner), so other clients see it too.
    pub async fn mkdir(&self, parent: Ino, name: &str, mode: u32, caller: Caller) -> Result<Attr> {
        self.guards.writable()?;
        let dir = self.dir_node(parent)?;
        self.check_new(&dir, name, true)?;
        // The kernel looks a name up before mkdir, so an unknown name is absent; a known one
        // (possibly stale) is checked with S3.
        let known = self.inodes.lock().unwrap().child(parent, name).is_some();
        if known {
            match self.resolve(parent, name, 0).await {
                Ok(_) => return Err(FsError::Exists),
                Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let path = key::child_path(&dir.path, name);
        let posix = self.new_posix(caller, meta::S_IFDIR | (mode & 0o7777));
        let mut opts = PutOptions::typed(DIR_CONTENT_TYPE);
        posix.to_meta(&mut opts.meta);
        self.store
            .put(&self.prefix.dir_key(&path), Bytes::new(), &opts)
            .await?;
        self.name_created(parent, name);
        let mut stat = self.dir_stat();
        stat.posix = Some(posix);
        let node = self.inodes.lock().unwrap().made_dir(parent, name, stat);
        // A directory made just now is empty: names created in it need not be looked up.
        self.know_dir(node.ino, Instant::now(), self.known.epoch(), []);
        Ok(self.attr(&node))
    }

    /// Remove the empty directory `name` (its marker object, if any).
    pub async fn rmdir(&self, parent: Ino, name: &str) -> Result<()> {
        self.guards.delete()?;
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
            Err(FsError::NotFound) if known_dir => {
                self.name_removed(parent, name);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if node.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        self.check_empty(node.ino, &node.path).await?;
        let dir_key = self.prefix.dir_key(&node.path);
        self.store.delete(&dir_key).await?;
        self.inodes.lock().unwrap().detach(parent, name);
        self.name_removed(parent, name);
        Ok(())
    }

    async fn check_empty(&self, ino: Ino, path: &str) -> Result<()> {
        if !self.inodes.lock().unwrap().writing_children(ino).is_empty() {
            return Err(FsError::NotEmpty);
        }
        let dir_key = self.prefix.dir_key(path);
        let page = self.store.list(&dir_key, true, None, Some(2)).await?;
        if !page.prefixes.is_empty() || page.objects.iter().any(|o| o.key != dir_key) {
            return Err(FsError::NotEmpty);
        }
        Ok(())
    }

    /// Delete file or symlink `name`. A file open here stays readable and writable
    /// through its open descriptors until they close, with its bytes kept locally and
    /// nothing uploaded for it any more; its name is free at once.
    pub async fn unlink(&self, parent: Ino, name: &str) -> Result<()> {
        self.guards.delete()?;
        let node = self.resolve(parent, name, 0).await?;
        if node.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        self.orphan(&node).await?;
        // Also when the file was never committed: an object of that name from before (or
        // from another client) goes with the name. Deleting a missing key succeeds.
        self.store.delete(&self.prefix.key(&node.path)).await?;
        self.inodes.lock().unwrap().detach(parent, name);
        self.name_removed(parent, name);
        Ok(())
    }

    /// Create symlink `name` → `target`: an object whose body is the target, with an
    /// S_IFLNK mode (as s3fs writes them).
    pub async fn symlink(
        &self,
        parent: Ino,
        name: &str,
        target: &str,
        caller: Caller,
    ) -> Result<Attr> {
        self.guards.writable()?;
        let dir = self.dir_node(parent)?;
        self.check_new(&dir, name, false)?;
        let path = key::child_path(&dir.path, name);
        let posix = self.new_posix(caller, meta::S_IFLNK | 0o777);
        let mut opts = PutOptions::default();
        posix.to_meta(&mut opts.meta);
        let put = self
            .store
            .put(
                &self.prefix.key(&path),
                Bytes::copy_from_slice(target.as_bytes()),
                &opts,
            )
            .await?;
        self.name_created(parent, name);
        let stat = Stat {
            size: target.len() as u64,
            mtime: SystemTime::now(),
            etag: put.etag,
            posix: Some(posix),
        };
        let mut t = self.inodes.lock().unwrap();
        let node = t.upsert(parent, name, Kind::Symlink, stat, 1);
        if let Some(n) = t.get_mut(node.ino) {
            n.target = Some(target.to_owned());
        }
        Ok(self.attr(&node))
    }

    /// `mknod(2)`: an empty object whose `x-amz-meta-mode` carries the type (and, for
    /// devices, `x-amz-meta-rdev` the device number), as s3fs stores them; a regular file
    /// is simply an empty one. Nothing more is needed: the kernel serves FIFOs and sockets
    /// itself, and the mount is `nodev`.
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> Result<Attr> {
        self.guards.writable()?;
        let ty = match mode & meta::S_IFMT {
            0 => meta::S_IFREG,
            t
            @ (meta::S_IFREG | meta::S_IFIFO | meta::S_IFCHR | meta::S_IFBLK | meta::S_IFSOCK) => t,
            _ => return Err(FsError::InvalidName("mknod of an unknown file type".into())),
        };
        let dir = self.dir_node(parent)?;
        self.check_new(&dir, name, false)?;
        let path = key::child_path(&dir.path, name);
        let mut posix = self.new_posix(caller, ty | (mode & 0o7777));
        if matches!(ty, meta::S_IFCHR | meta::S_IFBLK) {
            posix.rdev = Some(rdev);
        }
        let mut opts = PutOptions::default();
        posix.to_meta(&mut opts.meta);
        let put = self
            .store
            .put(&self.prefix.key(&path), Bytes::new(), &opts)
            .await?;
        self.name_created(parent, name);
        let stat = Stat {
            size: 0,
            mtime: SystemTime::now(),
            etag: put.etag,
            posix: Some(posix),
        };
        let kind = if ty == meta::S_IFREG {
            Kind::File
        } else {
            Kind::Special(ty)
        };
        let node = self
            .inodes
            .lock()
            .unwrap()
            .upsert(parent, name, kind, stat, 1);
        Ok(self.attr(&node))
    }

    /// The target of symlink `ino`.
    pub async fn readlink(&self, ino: Ino) -> Result<String> {
        let node = self.fresh(ino).await?;
        if node.kind != Kind::Symlink {
            return Err(FsError::InvalidName("not a symbolic link".into()));
        }
        if let Some(t) = node.target {
            return Ok(t);
        }
        let body = self
            .store
            .get_range(
                &self.prefix.key(&node.path),
                0..node.stat.size,
                node.stat.etag.as_deref(),
            )
            .await?;
        let target = String::from_utf8_lossy(&body).into_owned();
        if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
            n.target = Some(target.clone());
        }
        Ok(target)
    }

    /// Rename `name` in `parent` to `new_name` in `new_parent`, replacing a file there.
    /// A file is copied (metadata kept) and the source deleted; a directory moves every key
    /// below it, concurrently. With `no_replace`, an existing target is an error.
    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        self.guards.delete()?;
        check_name(new_name)?;
        let src = self.resolve(parent, name, 0).await?;
        if parent == new_parent && name == new_name {
            // rename(2) of a name onto itself does nothing (and must delete nothing).
            return Ok(());
        }
        let dst_dir = self.dir_node(new_parent)?;
        if src.kind == Kind::Dir
            && (dst_dir.path == src.path || dst_dir.path.starts_with(&format!("{}/", src.path)))
        {
            return Err(FsError::InvalidName(
                "cannot move a directory into itself".into(),
            ));
        }
        let dst = match self.resolve(new_parent, new_name, 0).await {
            Ok(n) => Some(n),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if let Some(d) = &dst {
            if d.ino == src.ino {
                return Ok(());
            }
            if no_replace {
                return Err(FsError::Exists);
            }
            self.guards.overwrite()?;
            match (src.kind, d.kind) {
                (Kind::Dir, Kind::Dir) => self.check_empty(d.ino, &d.path).await?,
                (Kind::Dir, _) => return Err(FsError::NotDir),
                (_, Kind::Dir) => return Err(FsError::IsDir),
                _ => {}
            }
        }
        // Files still being written are committed first: their bytes must exist to be
        // moved. Their handles follow them afterwards.
        let writers = if src.kind == Kind::Dir {
            self.inodes.lock().unwrap().writers_below(&src.path)
        } else {
            vec![src.clone()]
        };
        for w in &writers {
            if let Some(file) = self.open_files.get(w.ino) {
                self.commit(&file).await?;
            }
        }
        // A file replaced while open keeps its bytes for its descriptors, as on a local
        // disk; its state must not write over the object moved onto its name.
        if let Some(d) = &dst
            && d.kind != Kind::Dir
        {
            self.orphan(d).await?;
        }
        let dst_path = key::child_path(&dst_dir.path, new_name);
        if src.kind == Kind::Dir {
            // Keys move in bulk and may fail halfway: no directory's contents stay known.
            self.known.clear();
            let moved = self.rename_dir(&src.path, &dst_path).await?;
            if let Some(d) = &dst
                && moved.keys > 0
                && !moved.marker
            {
                // The replaced empty directory's marker stands for it no more: the moved
                // keys do (a marker the move wrote, the source's, is the directory's now).
                // With nothing moved at all (an implicit source emptied meanwhile), the
                // marker stays so that the directory does not vanish.
                let _ = self.store.delete(&self.prefix.dir_key(&d.path)).await;
            }
        } else {
            let (from, to) = (self.prefix.key(&src.path), self.prefix.key(&dst_path));
            self.copy_renamed(&from, &to).await?;
            // The copy exists even if deleting the source fails below.
            self.known.added(new_parent, new_name);
            self.store.delete(&from).await?;
        }
        self.name_created(new_parent, new_name);
        self.name_removed(parent, name);
        self.inodes
            .lock()
            .unwrap()
            .rename(src.ino, new_parent, new_name);
        self.status_changed(src.ino);
        for w in writers {
            if let Ok(n) = self.node(w.ino) {
                let key = self.prefix.key(&n.path);
                if let Err(e) = self.retarget_writer(n.ino, n.parent, &n.name, key).await {
                    warn!(file = %n.path, error = %e, "moved, but its open handle could not follow");
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Copy `from` to `to`, keeping the metadata or replacing it with `opts`; returns the
    /// new ETag.
    pub(in crate::fs) async fn copy_object(
        &self,
        from: &str,
        to: &str,
        size: u64,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>> {
        Ok(self.store.copy(from, to, size, opts).await?.etag)
    }

    /// Move every key below directory `from` to `to`. Copies run concurrently; sources are
    /// deleted only once every copy succeeded, so a failure leaves all sources in place and
    /// says which keys were already copied.
    async fn rename_dir(&self, from: &str, to: &str) -> Result<Moved> {
        type Outcome = (String, Result<Option<String>>);
        let (src_prefix, dst_prefix) = (self.prefix.dir_key(from), self.prefix.dir_key(to));
        let mut objects = Vec::new();
        let mut pages = self.store.list_all(&src_prefix, false);
        while let Some(page) = pages.try_next().await? {
            for o in page.objects {
                // Only keys below the directory move: a key the server listed outside it is
                // never copied or deleted.
                match o.key.strip_prefix(src_prefix.as_str()) {
                    Some(rest) => objects.push((format!("{dst_prefix}{rest}"), o)),
                    None => self
                        .warnings
                        .once(&o.key, &"listed outside the directory being renamed"),
                }
            }
        }
        drop(pages);
        let moved = Moved {
            keys: objects.len(),
            marker: objects.iter().any(|(dst, _)| *dst == dst_prefix),
        };
        let stamp = &times::ctime_stamp(SystemTime::now());
        let copies: Vec<Outcome> = futures::stream::iter(objects.clone())
            .map(|(dst, o)| {
                let store = self.store.clone();
                // The moved marker is the directory itself, whose ctime the rename changes;
                // the keys below keep theirs.
                let marker = dst == dst_prefix;
                async move {
                    let r = match marker {
                        true => store
                            .copy_restated(&o.key, &dst, stamp)
                            .await
                            .map(|(p, _)| p),
                        false => store.copy(&o.key, &dst, o.size, None).await,
                    };
                    (o.key, r.map(|p| p.etag).map_err(FsError::from))
                }
            })
            .buffer_unordered(RENAME_CONCURRENCY)
            .collect()
            .await;
        let failed: Vec<&Outcome> = copies.iter().filter(|(_, r)| r.is_err()).collect();
        if let Some((key, Err(e))) = failed.first() {
            let copied = copies.len() - failed.len();
            return Err(FsError::PartialRename(format!(
                "renaming {src_prefix} to {dst_prefix}: {} of {} keys could not be copied \
                 (first: {key}: {e}); {copied} were copied to the new name and the originals \
                 were all kept",
                failed.len(),
                copies.len()
            )));
        }
        // DeleteObjects, up to 1,000 keys a request (a few requests at a time for huge
        // directories) instead of one DeleteObject per key.
        let batches: Vec<Vec<String>> = objects
            .chunks(MAX_DELETE_BATCH)
            .map(|c| c.iter().map(|(_, o)| o.key.clone()).collect())
            .collect();
        let outcomes: Vec<(Vec<String>, DeleteOutcome)> = futures::stream::iter(batches)
            .map(|batch| {
                let store = self.store.clone();
                async move {
                    let r = store.delete_many(&batch).await;
                    (batch, r)
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let mut left: Vec<String> = Vec::new();
        for (batch, outcome) in outcomes {
            match outcome {
                Ok(failed) => left.extend(failed.iter().map(|e| format!("{}: {e}", e.key))),
                Err(e) => left.extend(batch.iter().map(|k| format!("{k}: {e}"))),
            }
        }
        if !left.is_empty() {
            return Err(FsError::PartialRename(format!(
                "renamed {src_prefix} to {dst_prefix}, but {} originals could not be deleted \
                 (first: {})",
                left.len(),
                left[0]
            )));
        }
        Ok(moved)
    }
}

/// What a directory rename moved.
struct Moved {
    /// Keys copied and deleted.
    keys: usize,
    /// Whether one of them was the directory's marker (now the new name's marker).
    marker: bool,
}
