//! The negative cache: names recently found absent or deleted by this mount.
//!
//! With `--negative-cache`, a program probing the same missing name (`stat`, then
//! `open(O_CREAT)`, shells searching `$PATH`) costs one HEAD and one LIST per TTL instead of
//! one per probe, and a name this mount deleted is not asked about again within the TTL.
//! By default it is only a hint that the name is still absent, which lets the lookup ask
//! with one ListObjectsV2 instead of two requests: it cannot be the answer, since another
//! client may create (or re-create) the name at any moment and the next lookup must find it.
//! Local creates and renames clear the name.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::inode::Ino;

/// How many names are remembered as absent.
const ENTRIES: usize = 100_000;

/// Names found absent, per directory, with when.
pub struct NegativeCache {
    ttl: Duration,
    names: Mutex<LruCache<(Ino, String), Instant>>,
}

impl NegativeCache {
    /// Answers trusted for `ttl` (zero: nothing is remembered).
    pub fn new(ttl: Duration) -> Self {
        NegativeCache {
            ttl,
            names: Mutex::new(LruCache::new(NonZeroUsize::new(ENTRIES).expect("non-zero"))),
        }
    }

    /// `name` in `parent` does not exist as of now.
    pub fn remember(&self, parent: Ino, name: &str) {
        if !self.ttl.is_zero() {
            self.names
                .lock()
                .unwrap()
                .put((parent, name.to_owned()), Instant::now());
        }
    }

    /// `name` in `parent` may exist again.
    pub fn forget(&self, parent: Ino, name: &str) {
        self.names.lock().unwrap().pop(&(parent, name.to_owned()));
    }

    /// Whether `name` in `parent` was found absent within the TTL.
    pub fn is_absent(&self, parent: Ino, name: &str) -> bool {
        let mut names = self.names.lock().unwrap();
        let key = (parent, name.to_owned());
        match names.get(&key) {
            Some(at) if at.elapsed() < self.ttl => true,
            Some(_) => {
                names.pop(&key);
                false
            }
            None => false,
        }
    }
}
