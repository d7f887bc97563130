//! A set of byte ranges, kept sorted and merged: which parts of a staged file were written
//! locally, or already fetched from the object.

use std::ops::Range;

/// Sorted, non-overlapping, non-adjacent ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet(Vec<Range<u64>>);

impl RangeSet {
    /// An empty set.
    pub fn new() -> Self {
        RangeSet(Vec::new())
    }

    /// Add `r`, merging with neighbours.
    pub fn insert(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        let (mut start, mut end) = (r.start, r.end);
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut placed = false;
        for cur in self.0.drain(..) {
            if cur.end < start {
                out.push(cur);
            } else if cur.start > end {
                if !placed {
                    out.push(start..end);
                    placed = true;
                }
                out.push(cur);
            } else {
                start = start.min(cur.start);
                end = end.max(cur.end);
            }
        }
        if !placed {
            out.push(start..end);
        }
        self.0 = out;
    }

    /// Remove everything at or after `len`.
    pub fn truncate(&mut self, len: u64) {
        self.0.retain(|r| r.start < len);
        if let Some(last) = self.0.last_mut() {
            last.end = last.end.min(len);
        }
    }

    /// The parts of `r` not in the set.
    pub fn missing(&self, r: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = r.start;
        for cur in &self.0 {
            if cur.end <= at {
                continue;
            }
            if cur.start >= r.end {
                break;
            }
            if cur.start > at {
                out.push(at..cur.start);
            }
            at = at.max(cur.end);
            if at >= r.end {
                break;
            }
        }
        if at < r.end {
            out.push(at..r.end);
        }
        out
    }

    /// Whether any byte of `r` is in the set.
    pub fn intersects(&self, r: &Range<u64>) -> bool {
        self.0.iter().any(|c| c.start < r.end && r.start < c.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_merges_and_missing_complements() {
        let mut s = RangeSet::new();
        s.insert(10..20);
        s.insert(30..40);
        s.insert(20..25);
        assert_eq!(s.0, vec![10..25, 30..40]);
        assert_eq!(s.missing(0..50), vec![0..10, 25..30, 40..50]);
        assert_eq!(s.missing(12..22), Vec::<Range<u64>>::new());
        s.insert(0..100);
        assert_eq!(s.0, vec![0..100]);
        s.truncate(50);
        assert_eq!(s.0, vec![0..50]);
        assert!(s.intersects(&(49..60)));
        assert!(!s.intersects(&(50..60)));
    }

    #[test]
    fn matches_a_bitmap_model() {
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 33) % m
        };
        for _ in 0..200 {
            let mut s = RangeSet::new();
            let mut bits = [false; 64];
            for _ in 0..8 {
                let a = next(64);
                let b = (a + next(20)).min(64);
                s.insert(a..b);
                bits[a as usize..b as usize]
                    .iter_mut()
                    .for_each(|x| *x = true);
            }
            let (a, b) = (next(64), next(64));
            let q = a.min(b)..a.max(b);
            let missing: Vec<u64> = s.missing(q.clone()).into_iter().flatten().collect();
            let want: Vec<u64> = q.filter(|i| !bits[*i as usize]).collect();
            assert_eq!(missing, want);
        }
    }
}
