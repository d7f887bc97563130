//! Directories whose complete contents are known: created by this mount, or listed by it
//! within the metadata TTL.
//!
//! Why: creating a file makes the kernel look its name up first, and proving a name absent
//! costs a HeadObject and a ListObjectsV2 (is it a file? a directory?). `cp -r` and `tar -x`
//! create thousands of names in directories they just made, where the answer is already
//! expected: an empty directory plus what this mount put there since.
//!
//! What the knowledge buys depends on `--negative-cache`. By default it is only a hint: a
//! name it says is absent is still asked of S3 (another client may have just made it, and
//! the next lookup must find it), but with one ListObjectsV2 instead of two requests (see
//! `Fs::absent_in_s3`). With `--negative-cache` it is the answer, and a new file costs one
//! PutObject and no lookup at all; another client's new name then stays hidden until the
//! knowledge is older than the TTL.
//!
//! The knowledge is as old as its evidence (the mkdir, or the start of the listing); once
//! older than the metadata TTL, the next miss re-lists the directory (one request for up to
//! 1,000 names) instead of asking about the one name, which keeps long-running creates in a
//! directory cheap while refreshing what is known of other clients' names. Every local
//! change of a name goes through [`KnownDirs::added`] / [`KnownDirs::removed`], which also
//! bump an epoch: a listing that raced with a local change is not installed.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::inode::Ino;

/// Directories remembered at once (least recently used ones are dropped).
const MAX_DIRS: usize = 256;
/// Names per remembered directory: a bigger one is not remembered (re-listing it would
/// take more than a couple of requests, and memory stays bounded by about
/// `MAX_DIRS * MAX_NAMES` names).
pub const MAX_NAMES: usize = 2_000;

/// What the knowledge says about one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// The directory is known and the name is not in it: it did not exist when last seen
    /// (trusted with `--negative-cache`, else checked with one listing).
    Absent,
    /// The name exists (attributes still have to be found).
    Present,
    /// The directory was known, but longer ago than the TTL: re-list it.
    Stale,
    /// Nothing is known about this directory.
    Unknown,
}

struct Contents {
    /// When the evidence was gathered (mkdir, or the start of the listing).
    since: Instant,
    names: HashSet<String>,
}

struct Inner {
    dirs: lru::LruCache<Ino, Contents>,
    /// Bumped by every local change of a name.
    epoch: u64,
}

/// The set of directories with known contents.
pub struct KnownDirs {
    inner: Mutex<Inner>,
    /// Serializes re-listings, so that many lookups missing at once list a directory once.
    pub relist: tokio::sync::Mutex<()>,
}

impl Default for KnownDirs {
    fn default() -> Self {
        KnownDirs {
            inner: Mutex::new(Inner {
                dirs: lru::LruCache::new(NonZeroUsize::new(MAX_DIRS).expect("non-zero")),
                epoch: 0,
            }),
            relist: tokio::sync::Mutex::new(()),
        }
    }
}

impl KnownDirs {
    /// What is known about `name` in `dir`, given the metadata TTL.
    pub fn lookup(&self, dir: Ino, name: &str, ttl: Duration) -> Known {
        let mut inner = self.inner.lock().unwrap();
        let Some(c) = inner.dirs.get(&dir) else {
            return Known::Unknown;
        };
        if c.names.contains(name) {
            Known::Present
        } else if c.since.elapsed() < ttl {
            Known::Absent
        } else {
            Known::Stale
        }
    }

    /// The current epoch: take it before listing, hand it to [`KnownDirs::install`].
    pub fn epoch(&self) -> u64 {
        self.inner.lock().unwrap().epoch
    }

    /// Remember that `dir` held exactly `names` at `since`, unless a name changed locally
    /// after `epoch` was taken or there are too many names.
    pub fn install<I: IntoIterator<Item = String>>(
        &self,
        dir: Ino,
        since: Instant,
        epoch: u64,
        names: I,
    ) -> bool {
        let names: HashSet<String> = names.into_iter().take(MAX_NAMES + 1).collect();
        let mut inner = self.inner.lock().unwrap();
        if inner.epoch != epoch || names.len() > MAX_NAMES {
            inner.dirs.pop(&dir);
            return false;
        }
        inner.dirs.put(dir, Contents { since, names });
        true
    }

    /// `name` now exists in `dir` (created or moved here by this mount).
    pub fn added(&self, dir: Ino, name: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.epoch += 1;
        let too_big = match inner.dirs.peek_mut(&dir) {
            Some(c) => {
                c.names.insert(name.to_owned());
                c.names.len() > MAX_NAMES
            }
            None => false,
        };
        if too_big {
            inner.dirs.pop(&dir);
        }
    }

    /// `name` no longer exists in `dir` (deleted or moved away by this mount).
    pub fn removed(&self, dir: Ino, name: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.epoch += 1;
        if let Some(c) = inner.dirs.peek_mut(&dir) {
            c.names.remove(name);
        }
    }

    /// Forget everything (a directory rename moves keys in bulk; if it fails halfway, no
    /// directory's contents are known for sure).
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.epoch += 1;
        inner.dirs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn answers_from_known_contents_and_follows_local_changes() {
        let k = KnownDirs::default();
        assert_eq!(k.lookup(2, "a", TTL), Known::Unknown);
        let e = k.epoch();
        assert!(k.install(2, Instant::now(), e, ["a".to_owned()]));
        assert_eq!(k.lookup(2, "a", TTL), Known::Present);
        assert_eq!(k.lookup(2, "b", TTL), Known::Absent);
        k.added(2, "b");
        assert_eq!(k.lookup(2, "b", TTL), Known::Present);
        k.removed(2, "a");
        assert_eq!(k.lookup(2, "a", TTL), Known::Absent);
        assert_eq!(k.lookup(2, "a", Duration::ZERO), Known::Stale);
        k.clear();
        assert_eq!(k.lookup(2, "b", TTL), Known::Unknown);
    }

    #[test]
    fn a_listing_that_raced_with_a_local_change_is_not_installed() {
        let k = KnownDirs::default();
        let e = k.epoch();
        k.added(3, "new"); // created while the listing ran; the listing may have missed it
        assert!(!k.install(3, Instant::now(), e, Vec::new()));
        assert_eq!(k.lookup(3, "new", TTL), Known::Unknown);
    }

    #[test]
    fn big_directories_are_not_remembered() {
        let k = KnownDirs::default();
        let names = (0..=MAX_NAMES).map(|i| i.to_string());
        assert!(!k.install(4, Instant::now(), k.epoch(), names));
        assert_eq!(k.lookup(4, "x", TTL), Known::Unknown);
        assert!(k.install(
            4,
            Instant::now(),
            k.epoch(),
            (1..MAX_NAMES).map(|i| i.to_string())
        ));
        k.added(4, "x");
        assert_eq!(k.lookup(4, "y", TTL), Known::Absent);
        k.added(4, "y"); // one name over the limit: forgotten
        assert_eq!(k.lookup(4, "z", TTL), Known::Unknown);
    }
}
