//! A shared LRU cache of fixed-size object blocks, keyed by (key, ETag, block index).
//!
//! Blocks of an old ETag are never served after the object changed: the ETag is part of the
//! key, and readers look blocks up with the ETag they opened. The cache is bounded by its
//! own capacity *and* by the shared memory [`Budget`]: when the budget is spent, the cache
//! gives memory back first (it is the most expendable holder).
//!
//! Lookups are counted as hits and misses and the bytes held as a gauge
//! ([`crate::metrics`]).

use std::hash::Hash;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use super::budget::{Budget, Reservation};
use crate::metrics;

/// Block size: prefetch chunks and random reads are aligned to it.
pub const BLOCK: u64 = 256 << 10;

/// Identity of one version of one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectVersion {
    /// Full key.
    pub key: Arc<str>,
    /// ETag.
    pub etag: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BlockKey {
    version: ObjectVersion,
    index: u64,
}

struct Inner {
    lru: LruCache<BlockKey, (Bytes, Reservation)>,
    bytes: u64,
}

/// The block cache.
pub struct BlockCache {
    capacity: u64,
    budget: Arc<Budget>,
    inner: Mutex<Inner>,
}

impl BlockCache {
    /// A cache of at most `capacity` bytes, also bounded by `budget`.
    pub fn new(capacity: u64, budget: Arc<Budget>) -> Self {
        BlockCache {
            capacity,
            budget,
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    /// Block `index` of `version`, if cached.
    pub fn get(&self, version: &ObjectVersion, index: u64) -> Option<Bytes> {
        let mut inner = self.inner.lock().unwrap();
        let found = inner
            .lru
            .get(&BlockKey {
                version: version.clone(),
                index,
            })
            .map(|(b, _)| b.clone());
        metrics::cache_lookup(found.is_some());
        found
    }

    /// Cache block `index` of `version`. Skipped when the cache is disabled or the budget
    /// cannot hold it even after evicting everything.
    pub fn insert(&self, version: &ObjectVersion, index: u64, data: Bytes) {
        let len = data.len() as u64;
        if len == 0 || len > self.capacity {
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        while inner.bytes + len > self.capacity {
            if !Self::evict_one(&mut inner) {
                return;
            }
        }
        let reservation = loop {
            if let Some(r) = self.budget.try_reserve(len) {
                break r;
            }
            if !Self::evict_one(&mut inner) {
                return;
            }
        };
        inner.bytes += len;
        metrics::cache_bytes(len as i64);
        let key = BlockKey {
            version: version.clone(),
            index,
        };
        if let Some((old, _)) = inner.lru.put(key, (data, reservation)) {
            inner.bytes -= old.len() as u64;
            metrics::cache_bytes(-(old.len() as i64));
        }
    }

    /// Give back at least `bytes` to the budget by evicting least-recently-used blocks;
    /// returns how much was freed.
    pub fn make_room(&self, bytes: u64) -> u64 {
        let mut inner = self.inner.lock().unwrap();
        let before = inner.bytes;
        while before - inner.bytes < bytes {
            if !Self::evict_one(&mut inner) {
                break;
            }
        }
        before - inner.bytes
    }

    fn evict_one(inner: &mut Inner) -> bool {
        match inner.lru.pop_lru() {
            Some((_, (b, _reservation))) => {
                inner.bytes -= b.len() as u64;
                metrics::cache_bytes(-(b.len() as i64));
                true
            }
            None => false,
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.inner.lock().unwrap().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(etag: &str) -> ObjectVersion {
        ObjectVersion {
            key: "k".into(),
            etag: etag.into(),
        }
    }

    #[test]
    fn bounded_by_capacity_lru_first() {
        let budget = Budget::new(1 << 30);
        let c = BlockCache::new(3 * 10, budget.clone());
        for i in 0..3 {
            c.insert(&v("e"), i, Bytes::from(vec![i as u8; 10]));
        }
        assert!(c.get(&v("e"), 0).is_some()); // 0 is now most recent
        c.insert(&v("e"), 3, Bytes::from(vec![3u8; 10]));
        assert!(c.get(&v("e"), 1).is_none(), "LRU block evicted");
        assert!(c.get(&v("e"), 0).is_some());
        assert_eq!(c.bytes(), 30);
        assert_eq!(budget.used(), 30);
    }

    #[test]
    fn other_etag_is_a_miss() {
        let c = BlockCache::new(100, Budget::new(100));
        c.insert(&v("old"), 0, Bytes::from_static(b"abc"));
        assert!(c.get(&v("new"), 0).is_none());
        assert_eq!(&c.get(&v("old"), 0).unwrap()[..], b"abc");
    }

    #[test]
    fn budget_pressure_evicts_and_make_room_frees() {
        let budget = Budget::new(25);
        let c = BlockCache::new(100, budget.clone());
        c.insert(&v("e"), 0, Bytes::from(vec![0u8; 10]));
        c.insert(&v("e"), 1, Bytes::from(vec![0u8; 10]));
        c.insert(&v("e"), 2, Bytes::from(vec![0u8; 10]));
        assert!(budget.used() <= 25);
        assert!(c.get(&v("e"), 0).is_none());
        let _other = budget.try_reserve(5);
        assert_eq!(c.make_room(10), 10);
        assert_eq!(c.bytes(), 10);
    }

    #[test]
    fn lookups_and_bytes_held_are_metered() {
        use crate::metrics::testing::{scrape, value};
        let mut held = 0;
        let text = scrape(|_| {
            let c = BlockCache::new(25, Budget::new(100));
            assert!(c.get(&v("e"), 0).is_none());
            c.insert(&v("e"), 0, Bytes::from(vec![0u8; 10]));
            c.insert(&v("e"), 0, Bytes::from(vec![0u8; 12]));
            c.insert(&v("e"), 1, Bytes::from(vec![0u8; 10]));
            c.insert(&v("e"), 2, Bytes::from(vec![0u8; 10])); // evicts block 0
            assert!(c.get(&v("e"), 1).is_some());
            assert!(c.get(&v("e"), 2).is_some());
            assert!(c.get(&v("e"), 0).is_none());
            held = c.bytes();
            c
        });
        assert_eq!(value(&text, "s3mount_block_cache_hits_total"), Some(2.0));
        assert_eq!(value(&text, "s3mount_block_cache_misses_total"), Some(2.0));
        assert_eq!(held, 20);
        assert_eq!(value(&text, "s3mount_block_cache_bytes"), Some(20.0));
    }
}
