//! Directory times changed by their entries, not yet written to the directory's marker.
//!
//! Creating, removing or renaming an entry changes its directory's mtime and ctime. Writing
//! them to the `dir/` marker at once would cost a HEAD and a CopyObject per created file:
//! `tar -x` or `cp -r` of thousands of files would take twice as many requests. So the new
//! times are shown at once from here, and written later, coalesced: every directory changed
//! since the last round is written once per round (about once a second, and at unmount).
//! Every write of a marker's metadata — these rounds and chmod/chown/touch of the directory
//! alike — takes the marker's lock and the pending times with it, so that two writers
//! starting from the same HEAD cannot undo each other's change.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::inode::Ino;
use super::posix::Posix;

/// Times of a directory changed here and not yet in its marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// When an entry last changed (the directory's new mtime and ctime).
    pub at: SystemTime,
    /// Which change this is: a write taken before a newer change does not settle it.
    generation: u64,
}

impl Pending {
    /// Put these times into a directory's metadata: mtime is the time of the change; ctime
    /// never goes back (a chmod stored since may be newer).
    pub fn apply(&self, p: &mut Posix) {
        p.mtime = Some(self.at);
        p.ctime = Some(p.ctime.map_or(self.at, |c| c.max(self.at)));
    }
}

#[derive(Default)]
struct State {
    pending: HashMap<Ino, Pending>,
    generation: u64,
    /// Marker keys whose times could not be written, already warned about.
    warned: HashSet<String>,
}

/// Pending directory times, and the per-marker write locks.
#[derive(Default)]
pub struct DirTimes {
    state: Mutex<State>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl DirTimes {
    /// An entry of `dir` changed at `at`.
    pub fn changed(&self, dir: Ino, at: SystemTime) {
        let mut s = self.state.lock().unwrap();
        s.generation += 1;
        let generation = s.generation;
        s.pending.insert(dir, Pending { at, generation });
    }

    /// The times of `dir` still to be written, if any.
    pub fn pending(&self, dir: Ino) -> Option<Pending> {
        self.state.lock().unwrap().pending.get(&dir).copied()
    }

    /// Every directory with times still to be written.
    pub fn all(&self) -> Vec<(Ino, Pending)> {
        let s = self.state.lock().unwrap();
        s.pending.iter().map(|(i, p)| (*i, *p)).collect()
    }

    /// `p` was written (or given up on): forgotten unless a newer change came since.
    pub fn settled(&self, dir: Ino, p: Pending) {
        let mut s = self.state.lock().unwrap();
        if s.pending
            .get(&dir)
            .is_some_and(|q| q.generation == p.generation)
        {
            s.pending.remove(&dir);
        }
    }

    /// Whether a failure to write `key` is the first one (to be warned about).
    pub fn first_failure(&self, key: &str) -> bool {
        self.state.lock().unwrap().warned.insert(key.to_owned())
    }

    /// Hold the metadata lock of marker `key` until the guard is dropped.
    pub async fn lock(&self, key: &str) -> MarkerGuard<'_> {
        let m = self
            .locks
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .clone();
        let guard = m.clone().lock_owned().await;
        MarkerGuard {
            owner: self,
            key: key.to_owned(),
            lock: m,
            guard: Some(guard),
        }
    }
}

/// The lock of one marker's metadata (see [`DirTimes::lock`]); the entry is dropped with
/// its last user, so the map holds only markers being written.
pub struct MarkerGuard<'a> {
    owner: &'a DirTimes,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for MarkerGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().unwrap();
        self.guard = None;
        // The map's reference and ours: nobody else waits for this marker.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_newer_change_survives_the_settling_of_an_older_one() {
        let d = DirTimes::default();
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        d.changed(5, t(10));
        let old = d.pending(5).unwrap();
        d.changed(5, t(20));
        d.settled(5, old);
        assert_eq!(d.pending(5).map(|p| p.at), Some(t(20)));
        d.settled(5, d.pending(5).unwrap());
        assert!(d.pending(5).is_none());
        assert!(d.all().is_empty());
    }

    #[test]
    fn ctime_never_goes_back() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        let p = Pending {
            at: t(10),
            generation: 1,
        };
        let mut posix = Posix {
            mtime: Some(t(30)),
            ctime: Some(t(40)),
            ..Posix::default()
        };
        p.apply(&mut posix);
        assert_eq!((posix.mtime, posix.ctime), (Some(t(10)), Some(t(40))));
        posix.ctime = Some(t(5));
        p.apply(&mut posix);
        assert_eq!(posix.ctime, Some(t(10)));
    }

    #[tokio::test]
    async fn marker_locks_exclude_each_other_and_are_dropped_when_unused() {
        let d = Arc::new(DirTimes::default());
        let g = d.lock("p/d/").await;
        let d2 = d.clone();
        let waiter = tokio::spawn(async move {
            let _g = d2.lock("p/d/").await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "second writer waits");
        // Another marker is not held up.
        drop(d.lock("p/e/").await);
        drop(g);
        waiter.await.unwrap();
        assert!(d.locks.lock().unwrap().is_empty());
    }
}
