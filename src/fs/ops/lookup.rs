//! Finding names and attributes: lookup (a file being written here, the metadata caches,
//! or HeadObject ∥ ListObjectsV2 in S3), getattr with re-validation after the TTL, and the
//! kernel's forget.
//!
//! "Does not exist" is never answered from memory by default: another client may have
//! created the name a moment ago, and the next `stat`/`open` through the mount must find it
//! (issue 12, §4). What memory knows (this mount's listings, mkdirs, deletes and failed
//! lookups: [`KnownDirs`](crate::fs::meta::known::KnownDirs),
//! [`NegativeCache`](crate::fs::meta::negative::NegativeCache)) only picks the cheaper
//! question: a name expected absent is checked with one ListObjectsV2 (see
//! [`Fs::absent_in_s3`]) instead of HeadObject ∥ ListObjectsV2. With `--negative-cache`
//! (`FsConfig::negative_cache`) memory answers instead, for `--metadata-ttl`.

use std::time::Instant;

use tracing::debug;

use crate::fs::meta::inode::{Node, Residence};
use crate::fs::meta::key;
use crate::fs::meta::known::Known;
use crate::fs::meta::posix::Posix;
use crate::fs::{Attr, Fs, FsError, Ino, Kind, Result, check_name};
use crate::s3::ErrorKind;

/// Entries the one-listing absence check asks for. The name's own key and its `name/`
/// prefix sort after the siblings that extend the name with a byte below `/` (`name.txt`,
/// `name-old`), so a few entries settle almost every case, and more than a few would cost:
/// Garage reads up to max-keys live keys from the prefix on, past its end too.
const PROBE_KEYS: i32 = 4;

impl Fs {
    /// Look `name` up in `parent`, asking S3, and count one kernel reference.
    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Attr> {
        let node = self.resolve(parent, name, 1).await?;
        Ok(self.attr(&node))
    }

    /// Find `name` in `parent`: a file being written here or a node validated within the
    /// TTL; a name memory expects absent is checked with one listing
    /// ([`Fs::absent_in_s3`]; with `--negative-cache`, answered absent at once); else, and
    /// when that listing finds something, HeadObject `key` and ListObjectsV2 `key/`
    /// (max-keys 1) concurrently; a directory wins over a file.
    pub(in crate::fs) async fn resolve(
        &self,
        parent: Ino,
        name: &str,
        lookups: u64,
    ) -> Result<Node> {
        let dir = self.dir_node(parent)?;
        check_name(name)?;
        let known = {
            let mut t = self.inodes.lock().unwrap();
            match t.child(parent, name) {
                Some(n)
                    if matches!(n.residence, Residence::Writing(_))
                        || n.fresh_within(self.cfg.metadata_ttl) =>
                {
                    let n = n.clone();
                    t.add_lookups(n.ino, lookups);
                    Some(n)
                }
                _ => None,
            }
        };
        if let Some(n) = known {
            // A directory known from a listing: its own metadata is its marker's.
            return Ok(match n.kind {
                Kind::Dir => self.fresh_dir(n).await,
                _ => n,
            });
        }
        let path = key::child_path(&dir.path, name);
        let object_key = self.prefix.key(&path);
        let dir_key = self.prefix.dir_key(&path);
        let expect_absent =
            self.negative.is_absent(parent, name) || self.known(&dir, name).await? == Known::Absent;
        if expect_absent {
            // Trusted only with --negative-cache: otherwise another client's new name would
            // stay hidden for the TTL. Without it, one listing settles the usual case (still
            // absent: `cp -r`, `tar -x` creating names); a name that turned up is looked up
            // in full below.
            if self.cfg.negative_cache {
                // Not remembered again: the answer stays as old as its evidence, so the
                // name shows up a TTL after S3 was last asked, however often it is probed.
                return Err(FsError::NotFound);
            }
            if self.absent_in_s3(&object_key, &dir_key).await? {
                self.inodes.lock().unwrap().detach(parent, name);
                self.negative.remember(parent, name);
                return Err(FsError::NotFound);
            }
        }
        let (head, list) = tokio::join!(
            self.store.head(&object_key),
            self.store.list(&dir_key, true, None, Some(1))
        );
        let list = list?;
        let mut marker_read = false;
        let (kind, stat) = if !list.objects.is_empty() || !list.prefixes.is_empty() {
            let mut stat = self.dir_stat();
            // A marker sorts first under its prefix; its metadata is the directory's mode,
            // owner and times (mkdir, chmod, or s3fs). Best effort: defaults otherwise.
            marker_read = true;
            if list.objects.first().is_some_and(|o| o.key == dir_key) {
                match self.store.head(&dir_key).await {
                    Ok(info) => stat.posix = info.meta.as_ref().map(Posix::from_meta),
                    Err(e) if e.kind == ErrorKind::NotFound => {}
                    Err(e) => {
                        debug!(key = %dir_key, error = %e, "directory marker metadata");
                        marker_read = false;
                    }
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
        let mut t = self.inodes.lock().unwrap();
        let node = t.upsert(parent, name, kind, stat, lookups);
        if marker_read && let Some(n) = t.get_mut(node.ino) {
            n.marker_read = Some(Instant::now());
            return Ok(n.clone());
        }
        Ok(node)
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
        if node.kind == Kind::Dir {
            return Ok(self.fresh_dir(node).await);
        }
        if node.residence != Residence::Remote || node.fresh_within(self.cfg.metadata_ttl) {
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

    /// Directory `node` with its own mode, owner and times as its marker holds them, read
    /// (one HEAD of `dir/`) when never read yet — a directory only listed, the mount root,
    /// a moved one — or longer ago than the metadata TTL. Without a marker, what is known
    /// here stays (defaults, and times its entries changed). Best effort: a failed HEAD
    /// leaves what was known. Listings never cost this HEAD: only a directory itself being
    /// looked at does (see [`Fs::entry_ttl`]).
    pub(in crate::fs) async fn fresh_dir(&self, node: Node) -> Node {
        if node.marker_fresh_within(self.cfg.metadata_ttl) {
            return node;
        }
        let key = self.prefix.dir_key(&node.path);
        let posix = if key.is_empty() {
            // The root of a whole-bucket mount: no key can be its marker.
            None
        } else {
            match self.store.head(&key).await {
                Ok(info) => Some(info.meta.as_ref().map(Posix::from_meta).unwrap_or_default()),
                Err(e) if e.kind == ErrorKind::NotFound => None,
                Err(e) => {
                    debug!(key, error = %e, "directory marker metadata");
                    return node;
                }
            }
        };
        let mut t = self.inodes.lock().unwrap();
        let Some(n) = t.get_mut(node.ino) else {
            return node;
        };
        if let Some(p) = posix {
            n.stat.posix = Some(p);
        }
        n.marker_read = Some(Instant::now());
        n.clone()
    }

    /// How long the kernel may keep a listed entry's attributes: a directory whose marker
    /// was not read within the TTL gets none, so that looking at it (`stat`, `ls -l`) asks
    /// for its own metadata instead of showing the listing's defaults; a listing of
    /// thousands of files costs no HEAD.
    pub fn entry_ttl(&self, ino: Ino) -> std::time::Duration {
        match self.node(ino) {
            Ok(n) if n.kind == Kind::Dir && !n.marker_fresh_within(self.cfg.metadata_ttl) => {
                std::time::Duration::ZERO
            }
            _ => self.cfg.metadata_ttl,
        }
    }

    /// Whether neither the object `object_key` nor anything below `dir_key` (its key plus
    /// `/`) exists, from one ListObjectsV2 of `object_key` with `/` as delimiter: the object
    /// is listed as itself, a directory (marker or keys below, as another client may make
    /// it) as the common prefix `dir_key`. Half the requests of HeadObject ∥ ListObjectsV2,
    /// for a name expected absent; `false` (ask in full) also when the page was cut short
    /// before the place where `dir_key` sorts, as it can be when many siblings extend the
    /// name.
    async fn absent_in_s3(&self, object_key: &str, dir_key: &str) -> Result<bool> {
        let page = self
            .store
            .list(object_key, true, None, Some(PROBE_KEYS))
            .await?;
        let found = page.objects.iter().any(|o| o.key == object_key)
            || page.prefixes.iter().any(|p| p == dir_key);
        // Entries sort by key, objects and common prefixes together: one at or past
        // `dir_key` means both places were covered even if more pages follow.
        let covered = page.next.is_none()
            || page
                .objects
                .iter()
                .map(|o| o.key.as_str())
                .chain(page.prefixes.iter().map(String::as_str))
                .any(|k| k >= dir_key);
        Ok(!found && covered)
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
