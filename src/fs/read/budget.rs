//! One memory budget for everything that holds object data: prefetch windows, the block
//! cache and write buffers. Holders reserve bytes before allocating and give them back on
//! drop. Optional work (prefetching further ahead, caching) asks with [`Budget::try_reserve`]
//! and is skipped when the budget is spent, so under pressure windows shrink instead of the
//! process growing; work that must happen for a caller to make progress uses
//! [`Budget::reserve`], which may overshoot the limit rather than deadlock. Work that may
//! wait (a part to upload: its writer is only slowed) uses [`Budget::reserve_patiently`],
//! which waits for memory to be given back first and overshoots only after a while — so
//! many writers in a small container queue for memory instead of multiplying it.
//!
//! The limit and the bytes reserved are gauges ([`crate::metrics`]), summed over the
//! budgets of the process (the buckets view has one per bucket).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics;

/// A shared byte budget.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
    /// Woken whenever memory is given back (for [`Budget::reserve_patiently`]).
    returned: tokio::sync::Notify,
}

/// Bytes held against a [`Budget`]; returned on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        metrics::budget_limit(limit as i64);
        Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            returned: tokio::sync::Notify::new(),
        })
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes currently reserved.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Highest reservation seen (for tests and diagnostics).
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Acquire)
    }

    /// Bytes still available.
    pub fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    /// Reserve `bytes` if they fit under the limit.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            let next = cur.checked_add(bytes)?;
            if next > self.limit {
                return None;
            }
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::AcqRel);
                    metrics::budget_used(bytes as i64);
                    return Some(Reservation {
                        budget: self.clone(),
                        bytes,
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Reserve `bytes` once they fit under the limit, waiting up to `patience` for other
    /// holders to give memory back; past that, even over the limit (a writer must not
    /// wait forever on memory that its own reads may be holding).
    pub async fn reserve_patiently(
        self: &Arc<Self>,
        bytes: u64,
        patience: Duration,
    ) -> Reservation {
        let until = tokio::time::Instant::now() + patience;
        loop {
            // Registered before trying, so a return between the try and the wait is seen.
            let returned = self.returned.notified();
            if let Some(r) = self.try_reserve(bytes) {
                return r;
            }
            if tokio::time::timeout_at(until, returned).await.is_err() {
                return self.reserve(bytes);
            }
        }
    }

    /// Reserve `bytes` even past the limit (for the work a caller is blocked on).
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Reservation {
        let next = self.used.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.peak.fetch_max(next, Ordering::AcqRel);
        metrics::budget_used(bytes as i64);
        Reservation {
            budget: self.clone(),
            bytes,
        }
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hold `other`'s bytes too (one reservation for a growing buffer).
    pub fn absorb(&mut self, mut other: Reservation) {
        debug_assert!(Arc::ptr_eq(&self.budget, &other.budget));
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        metrics::budget_used(-(self.bytes as i64));
        self.budget.returned.notify_waiters();
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        metrics::budget_limit(-(self.limit as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_absorb_without_changing_the_total() {
        let b = Budget::new(100);
        let mut r = b.try_reserve(30).unwrap();
        r.absorb(b.try_reserve(20).unwrap());
        assert_eq!((r.bytes(), b.used()), (50, 50));
        drop(r);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn reservations_respect_the_limit_and_return_on_drop() {
        let b = Budget::new(100);
        let r1 = b.try_reserve(60).unwrap();
        assert!(b.try_reserve(50).is_none());
        let r2 = b.try_reserve(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(r1);
        assert_eq!(b.used(), 40);
        let forced = b.reserve(200);
        assert_eq!(b.used(), 240);
        drop((r2, forced));
        assert_eq!(b.used(), 0);
        assert_eq!(b.peak(), 240);
    }

    #[test]
    fn use_and_limit_are_gauges_summed_over_budgets() {
        use crate::metrics::testing::{scrape, value};
        let text = scrape(|metrics| {
            let a = Budget::new(100);
            let gone = Budget::new(50);
            drop(gone);
            let released = a.try_reserve(60).unwrap();
            drop(released);
            let held = (a.try_reserve(30).unwrap(), a.reserve(200));
            assert!(
                a.try_reserve(1).is_none(),
                "a refused reservation is not counted"
            );
            let during = metrics.render();
            assert_eq!(
                value(&during, "s3mount_memory_budget_used_bytes"),
                Some(230.0)
            );
            drop(held);
            a
        });
        assert_eq!(value(&text, "s3mount_memory_budget_used_bytes"), Some(0.0));
        assert_eq!(
            value(&text, "s3mount_memory_budget_limit_bytes"),
            Some(100.0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_patient_reservation_waits_for_memory_given_back_then_overshoots() {
        let b = Budget::new(100);
        let held = b.try_reserve(80).unwrap();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve_patiently(50, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "reserved past the limit at once");
        assert_eq!(b.used(), 80);
        drop(held);
        let r = waiter.await.unwrap();
        assert_eq!((r.bytes(), b.used(), b.peak()), (50, 50, 80));

        // Nobody gives back: after its patience it takes the memory anyway.
        let _more = b.try_reserve(50).unwrap();
        let t = tokio::time::Instant::now();
        let forced = b.reserve_patiently(50, Duration::from_secs(3)).await;
        assert_eq!(t.elapsed(), Duration::from_secs(3));
        assert_eq!((forced.bytes(), b.used()), (50, 150));
    }
}
