//! Finding names and attributes: lookup (a file being written here, the metadata caches,
//! or HeadObject ∥ ListObjectsV2 in S3), getattr with re-validation after the TTL, and the
//! kernel's forget.

use std::time::Instant;

use tracing::debug;

use crate::fs::meta::inode::{Node, Residence};
use crate::fs::meta::key;
use crate::fs::meta::known::Known;
use crate::fs::meta::posix::Posix;
use crate::fs::{Attr, Fs, FsError, Ino, Kind, Result, check_name};
use crate::s3::ErrorKind;

impl Fs {
    /// Look `name` up in `parent`, asking S3, and count one kernel reference.
    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Attr> {
        let node = self.resolve(parent, name, 1).await?;
        Ok(self.attr(&node))
    }

    /// Find `name` in `parent`: a file being written here, else HeadObject `key` and
    /// ListObjectsV2 `key/` (max-keys 1) concurrently; a directory wins over a file.
    pub(in crate::fs) async fn resolve(
        &self,
        parent: Ino,
        name: &str,
        lookups: u64,
    ) -> Result<Node> {
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
        if self.negative.is_absent(parent, name) {
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
                    self.negative.remember(parent, name);
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

    pub(in crate::fs) async fn fresh(&self, ino: Ino) -> Result<Node> {
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
}
