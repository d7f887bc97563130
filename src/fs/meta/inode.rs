//! The inode table: numbers the kernel knows, the (parent, name) → inode map, and what we
//! last learned of each inode's object.
//!
//! An inode number stands for one *kind* at one path: if a name that was a file turns out to
//! be a directory (or the reverse), it gets a new number rather than changing kind under the
//! kernel's feet. Entries are dropped when the kernel's lookup count reaches zero.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

/// Inode number.
pub type Ino = u64;

/// The mount root's inode number (FUSE_ROOT_ID).
pub const ROOT_INO: Ino = 1;

/// File or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file backed by one object.
    File,
    /// A directory: a common prefix, a `dir/` marker object, or both.
    Dir,
    /// A symbolic link: an object whose body is the target and whose mode says S_IFLNK.
    Symlink,
    /// A FIFO, character or block device, or unix socket (the `S_IF*` type bits): an empty
    /// object whose mode says so, as s3fs stores them (devices with `x-amz-meta-rdev`). A
    /// name with metadata: opening it is the kernel's business.
    Special(u32),
}

/// What is known of an object (or directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// ETag of the object this stat describes.
    pub etag: Option<String>,
    /// POSIX attributes from the object's metadata; `None` until a HEAD told us (listings
    /// carry no metadata).
    pub posix: Option<super::posix::Posix>,
}

impl Stat {
    /// A stat with no metadata known.
    pub fn new(size: u64, mtime: SystemTime, etag: Option<String>) -> Stat {
        Stat {
            size,
            mtime,
            etag,
            posix: None,
        }
    }
}

/// Whether the inode's content lives in S3 or is still being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residence {
    /// Backed by an object (or a prefix) in S3.
    Remote,
    /// Being written (or unlinked while open): its bytes are those of open state `id`
    /// (see `crate::fs::open`), which may not be in S3 yet.
    Writing(u64),
}

/// One inode.
#[derive(Clone, Debug)]
pub struct Node {
    /// Inode number.
    pub ino: Ino,
    /// Parent directory's inode.
    pub parent: Ino,
    /// Name inside the parent.
    pub name: String,
    /// Path relative to the mount root (`""` for the root).
    pub path: String,
    /// File or directory.
    pub kind: Kind,
    /// Last known attributes.
    pub stat: Stat,
    /// Where the content lives.
    pub residence: Residence,
    /// When `stat` was last confirmed with S3 (`None`: must be asked again).
    pub validated: Option<Instant>,
    /// ETag of the version whose pages the kernel may hold from an earlier open: when an
    /// open sees the same ETag, the page cache is kept.
    pub page_cache_etag: Option<String>,
    /// A symlink's target, once known.
    pub target: Option<String>,
    /// A directory's: when its marker was last read (HEAD), or found absent. Listings carry
    /// no metadata, so a directory only listed so far has `None` and its mode, owner and
    /// times are still to be read when it is itself looked at.
    pub marker_read: Option<Instant>,
    lookups: u64,
}

impl Node {
    /// Whether `stat` was confirmed with S3 less than `ttl` ago.
    pub fn fresh_within(&self, ttl: std::time::Duration) -> bool {
        self.validated.is_some_and(|v| v.elapsed() < ttl)
    }

    /// Whether a directory's marker was read less than `ttl` ago.
    pub fn marker_fresh_within(&self, ttl: std::time::Duration) -> bool {
        self.marker_read.is_some_and(|v| v.elapsed() < ttl)
    }
}

/// All inodes, behind one lock held only for short, non-blocking updates.
#[derive(Debug)]
pub struct InodeTable {
    nodes: HashMap<Ino, Node>,
    children: HashMap<(Ino, String), Ino>,
    next: Ino,
}

impl InodeTable {
    /// A table holding only the root directory.
    pub fn new(root_mtime: SystemTime) -> Self {
        let root = Node {
            ino: ROOT_INO,
            parent: ROOT_INO,
            name: String::new(),
            path: String::new(),
            kind: Kind::Dir,
            stat: Stat::new(0, root_mtime, None),
            residence: Residence::Remote,
            validated: Some(Instant::now()),
            page_cache_etag: None,
            target: None,
            marker_read: None,
            lookups: 1,
        };
        InodeTable {
            nodes: HashMap::from([(ROOT_INO, root)]),
            children: HashMap::new(),
            next: ROOT_INO + 1,
        }
    }

    /// A copy of inode `ino`.
    pub fn get(&self, ino: Ino) -> Option<Node> {
        self.nodes.get(&ino).cloned()
    }

    /// Mutable access to inode `ino`.
    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    /// The inode currently named `name` in `parent`, if any.
    pub fn child(&self, parent: Ino, name: &str) -> Option<&Node> {
        self.children
            .get(&(parent, name.to_owned()))
            .and_then(|i| self.nodes.get(i))
    }

    /// Record that `name` in `parent` is a `kind` with `stat`, and return its inode,
    /// adding `lookups` to the kernel's reference count. An existing inode of the same kind
    /// is reused (its stat refreshed unless it is being written locally); one of another kind
    /// is detached and replaced by a new number.
    pub fn upsert(
        &mut self,
        parent: Ino,
        name: &str,
        kind: Kind,
        stat: Stat,
        lookups: u64,
    ) -> Node {
        let key = (parent, name.to_owned());
        if let Some(&ino) = self.children.get(&key)
            && let Some(node) = self.nodes.get_mut(&ino)
        {
            // A listing cannot tell a symlink (or anything in metadata) from a plain file:
            // what a HEAD taught us stays true while the ETag is the same.
            let same_version =
                stat.posix.is_none() && node.stat.etag.is_some() && node.stat.etag == stat.etag;
            let kind = if same_version && node.kind == Kind::Symlink && kind == Kind::File {
                Kind::Symlink
            } else {
                kind
            };
            if node.kind == kind {
                if node.residence == Residence::Remote {
                    let mut stat = stat;
                    // A directory's metadata comes from its marker, which listings do not
                    // carry: keep what a lookup found.
                    if same_version || (kind == Kind::Dir && stat.posix.is_none()) {
                        stat.posix = node.stat.posix.take();
                    }
                    if node.stat.etag != stat.etag {
                        node.target = None;
                    }
                    node.stat = stat;
                    node.validated = Some(Instant::now());
                }
                node.lookups += lookups;
                return node.clone();
            }
        }
        let parent_path = self
            .nodes
            .get(&parent)
            .map(|p| p.path.clone())
            .unwrap_or_default();
        let ino = self.next;
        self.next += 1;
        let node = Node {
            ino,
            parent,
            name: name.to_owned(),
            path: super::key::child_path(&parent_path, name),
            kind,
            stat,
            residence: Residence::Remote,
            validated: Some(Instant::now()),
            page_cache_etag: None,
            target: None,
            marker_read: None,
            lookups,
        };
        self.children.insert(key, ino);
        self.nodes.insert(ino, node.clone());
        node
    }

    /// Record directory `name` just made in `parent` with `stat` (its marker's metadata, as
    /// written: nothing to read back), counting one kernel reference.
    pub fn made_dir(&mut self, parent: Ino, name: &str, stat: Stat) -> Node {
        let ino = self.upsert(parent, name, Kind::Dir, stat, 1).ino;
        let node = self.nodes.get_mut(&ino).expect("just inserted");
        node.marker_read = Some(Instant::now());
        node.clone()
    }

    /// Add `n` to the lookup count of `ino` (an entry handed to the kernel).
    pub fn add_lookups(&mut self, ino: Ino, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups += n;
        }
    }

    /// The kernel forgot `n` references; drop the inode when none remain.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups > 0 || matches!(node.residence, Residence::Writing(_)) {
            return;
        }
        let key = (node.parent, node.name.clone());
        self.nodes.remove(&ino);
        if self.children.get(&key) == Some(&ino) {
            self.children.remove(&key);
        }
    }

    /// Detach `name` from `parent` (after unlink/rmdir, or when S3 says it is gone). The
    /// inode itself lives on until the kernel forgets it.
    pub fn detach(&mut self, parent: Ino, name: &str) -> Option<Ino> {
        let ino = self.children.remove(&(parent, name.to_owned()))?;
        if let Some(node) = self.nodes.get(&ino)
            && node.lookups == 0
            && node.residence == Residence::Remote
        {
            self.nodes.remove(&ino);
        }
        Some(ino)
    }

    /// The write state `was` of `ino` is gone: its content is the object's again, and an
    /// inode no name and no kernel reference holds any more (unlinked while open) goes.
    pub fn written(&mut self, ino: Ino, was: Residence) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        if node.residence != was {
            return;
        }
        node.residence = Residence::Remote;
        let named = self.children.get(&(node.parent, node.name.clone())) == Some(&ino);
        if node.lookups == 0 && !named && ino != ROOT_INO {
            self.nodes.remove(&ino);
        }
    }

    /// Move inode `ino` to `name` in `new_parent`, replacing whatever was there, and fix
    /// the paths of everything below it (which must be re-validated before use).
    pub fn rename(&mut self, ino: Ino, new_parent: Ino, name: &str) {
        let Some(node) = self.nodes.get(&ino).cloned() else {
            return;
        };
        if self.children.get(&(node.parent, node.name.clone())) == Some(&ino) {
            self.children.remove(&(node.parent, node.name.clone()));
        }
        self.detach(new_parent, name);
        let parent_path = self
            .nodes
            .get(&new_parent)
            .map(|p| p.path.clone())
            .unwrap_or_default();
        let new_path = super::key::child_path(&parent_path, name);
        let old_prefix = format!("{}/", node.path);
        // Moved objects are copies: their ETags (and so reads pinned to them) may differ,
        // so each is checked with S3 before it is next used.
        for n in self.nodes.values_mut() {
            if n.ino == ino {
                n.parent = new_parent;
                n.name = name.to_owned();
                n.path = new_path.clone();
            } else if let Some(rest) = n.path.strip_prefix(&old_prefix) {
                n.path = format!("{new_path}/{rest}");
            } else {
                continue;
            }
            if n.residence == Residence::Remote {
                n.validated = None;
            }
            // Markers moved too (the renamed one with a new ctime): read them again.
            n.marker_read = None;
        }
        self.children.insert((new_parent, name.to_owned()), ino);
    }

    /// Names of `parent`'s children that are new files still being written.
    pub fn writing_children(&self, parent: Ino) -> Vec<Node> {
        self.nodes
            .values()
            .filter(|n| n.parent == parent && matches!(n.residence, Residence::Writing(_)))
            .filter(|n| self.children.get(&(n.parent, n.name.clone())) == Some(&n.ino))
            .cloned()
            .collect()
    }

    /// Files being written anywhere below directory `path`.
    pub fn writers_below(&self, path: &str) -> Vec<Node> {
        let prefix = format!("{path}/");
        self.nodes
            .values()
            .filter(|n| n.path.starts_with(&prefix) && matches!(n.residence, Residence::Writing(_)))
            // Not the ones unlinked while open: they have no name any more.
            .filter(|n| self.children.get(&(n.parent, n.name.clone())) == Some(&n.ino))
            .cloned()
            .collect()
    }

    /// Whether only the root is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(size: u64) -> Stat {
        Stat::new(size, SystemTime::UNIX_EPOCH, None)
    }

    #[test]
    fn rename_moves_descendants() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let a = t.upsert(ROOT_INO, "a", Kind::Dir, stat(0), 1);
        let b = t.upsert(a.ino, "b", Kind::Dir, stat(0), 1);
        let f = t.upsert(b.ino, "f", Kind::File, stat(0), 1);
        let z = t.upsert(ROOT_INO, "z", Kind::Dir, stat(0), 1);
        t.rename(a.ino, z.ino, "moved");
        assert_eq!(t.get(f.ino).unwrap().path, "z/moved/b/f");
        assert!(t.child(ROOT_INO, "a").is_none());
        assert_eq!(t.child(z.ino, "moved").unwrap().ino, a.ino);
    }

    #[test]
    fn same_kind_reuses_number_other_kind_gets_new_one() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let a = t.upsert(ROOT_INO, "a", Kind::File, stat(1), 1);
        let a2 = t.upsert(ROOT_INO, "a", Kind::File, stat(2), 1);
        assert_eq!(a.ino, a2.ino);
        assert_eq!(t.get(a.ino).unwrap().stat.size, 2);
        let d = t.upsert(ROOT_INO, "a", Kind::Dir, stat(0), 1);
        assert_ne!(d.ino, a.ino);
        assert_eq!(t.child(ROOT_INO, "a").unwrap().ino, d.ino);
        // The old file inode is still known to the kernel until forgotten.
        assert!(t.get(a.ino).is_some());
        t.forget(a.ino, 2);
        assert!(t.get(a.ino).is_none());
        assert_eq!(t.child(ROOT_INO, "a").unwrap().ino, d.ino);
    }

    #[test]
    fn paths_nest() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let d = t.upsert(ROOT_INO, "d", Kind::Dir, stat(0), 1);
        let f = t.upsert(d.ino, "f", Kind::File, stat(0), 1);
        assert_eq!(f.path, "d/f");
    }

    #[test]
    fn forget_drops_unreferenced() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let f = t.upsert(ROOT_INO, "f", Kind::File, stat(0), 2);
        t.forget(f.ino, 1);
        assert!(t.get(f.ino).is_some());
        t.forget(f.ino, 1);
        assert!(t.get(f.ino).is_none());
        assert!(t.child(ROOT_INO, "f").is_none());
        assert!(t.is_empty());
    }
}
