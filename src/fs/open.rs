//! One open-file state per inode, shared by every descriptor that has the file open.
//!
//! Why one per inode and not one per handle: on a local disk all descriptors of a file see
//! one set of bytes. `( echo foo; wc -c < f ) > f` reads through one descriptor what was just
//! written through another; several `dd conv=notrunc` writers fill one file together; a
//! file unlinked while open stays readable and writable through its descriptors. With a
//! body per handle, each writer would upload its own version over the others', and a reader
//! would read the object from before the writes.
//!
//! So an [`OpenFile`] holds the handles open on an inode (for each writer, whether it wrote
//! since its opener last closed it: the last writer to close commits) and, while anyone has
//! the file open for writing — or after it was unlinked while open — the one [`WriteState`]
//! they all write to and read from. Handles opened only for reading read the object through
//! their own prefetching reader whenever there is no such state. The operations on it live
//! in `ops/files.rs`; this file only keeps the books.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::meta::inode::Ino;
use super::meta::posix::Posix;
use super::write::{Staged, Upload};

/// How a file being written holds its bytes.
pub(super) enum Body {
    /// Sequential writes streamed to S3 as they come.
    Stream(Upload),
    /// Random access through a local staging file.
    Staged(Staged),
}

/// Where a file being written lives; changed when it is renamed while open.
pub(super) struct Location {
    pub parent: Ino,
    pub name: String,
    pub key: String,
}

/// The bytes of a file open for writing (or unlinked while open), shared by its handles.
pub(super) struct WriteState {
    pub at: Location,
    pub body: Body,
    /// Metadata changed after the multipart upload started: applied by a copy at commit.
    pub meta_pending: Option<Posix>,
    /// The file was made by `create` and has not been committed yet: a failed upload then
    /// removes the name, since no object backs it.
    pub created: bool,
    /// Every upload was aborted (a second signal at shutdown): writes are dropped and
    /// nothing is uploaded.
    pub cancelled: bool,
    /// The file was unlinked while open: its bytes live only in the staging file, for the
    /// descriptors still open, and nothing is uploaded.
    pub unlinked: bool,
    /// Counts this state in the files-being-written gauge while it lives.
    pub _counted: crate::metrics::FileBeingWritten,
}

impl WriteState {
    /// Whether nothing is left to upload: the last commit put everything in S3 (or there
    /// is nothing to upload ever again).
    pub fn is_clean(&self) -> bool {
        self.cancelled
            || match &self.body {
                Body::Stream(up) => up.is_committed(),
                Body::Staged(s) => !s.is_changed(),
            }
    }
}

/// What one handle does with the file.
#[derive(Clone, Copy, Debug)]
struct Role {
    write: bool,
    /// Wrote (or truncated) since its opener last closed it.
    dirty: bool,
}

/// The open state of one inode.
pub(super) struct OpenFile {
    /// The inode.
    pub ino: Ino,
    /// Unique for the life of the mount: the inode's `Residence::Writing` names it, so a
    /// state that was replaced never touches the inode again.
    pub id: u64,
    handles: Mutex<HashMap<u64, Role>>,
    /// The shared bytes while anyone writes (see the module doc); `None`: the object as it
    /// is in S3.
    pub state: tokio::sync::Mutex<Option<WriteState>>,
}

impl OpenFile {
    /// Handle `fh` wrote or truncated.
    pub fn wrote(&self, fh: u64) {
        if let Some(r) = self.handles.lock().unwrap().get_mut(&fh) {
            r.dirty = true;
        }
    }

    /// The opener of `fh` closes a descriptor of it: `fh` is settled; whether another
    /// handle still has writes of its own to finish (its close commits them all).
    pub fn settle(&self, fh: u64) -> bool {
        let mut hs = self.handles.lock().unwrap();
        if let Some(r) = hs.get_mut(&fh) {
            r.dirty = false;
        }
        hs.iter().any(|(h, r)| *h != fh && r.dirty)
    }

    /// Whether some handle still has writes of its own to finish.
    pub fn any_dirty(&self) -> bool {
        self.handles.lock().unwrap().values().any(|r| r.dirty)
    }

    /// Handles open for writing.
    pub fn writers(&self) -> usize {
        self.handles
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.write)
            .count()
    }
}

/// Every inode that is open, by inode number.
#[derive(Default)]
pub(super) struct OpenFiles {
    files: Mutex<HashMap<Ino, Arc<OpenFile>>>,
    next_id: AtomicU64,
}

impl OpenFiles {
    /// Register handle `fh` on `ino` (its state made if it is the first).
    pub fn attach(&self, ino: Ino, fh: u64, write: bool) -> Arc<OpenFile> {
        let mut files = self.files.lock().unwrap();
        let file = files
            .entry(ino)
            .or_insert_with(|| {
                Arc::new(OpenFile {
                    ino,
                    id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
                    handles: Mutex::default(),
                    state: tokio::sync::Mutex::new(None),
                })
            })
            .clone();
        file.handles.lock().unwrap().insert(
            fh,
            Role {
                write,
                dirty: false,
            },
        );
        file
    }

    /// Forget handle `fh` of `file`; whether it was the file's last handle (the state is
    /// then no longer found by inode).
    pub fn detach(&self, file: &Arc<OpenFile>, fh: u64) -> bool {
        let mut files = self.files.lock().unwrap();
        let mut hs = file.handles.lock().unwrap();
        hs.remove(&fh);
        let last = hs.is_empty();
        if last && files.get(&file.ino).is_some_and(|f| Arc::ptr_eq(f, file)) {
            files.remove(&file.ino);
        }
        last
    }

    /// The open state of `ino`, if any handle has it open.
    pub fn get(&self, ino: Ino) -> Option<Arc<OpenFile>> {
        self.files.lock().unwrap().get(&ino).cloned()
    }

    /// Every open file.
    pub fn all(&self) -> Vec<Arc<OpenFile>> {
        self.files.lock().unwrap().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_dirty_writer_is_the_one_that_commits() {
        let files = OpenFiles::default();
        let a = files.attach(7, 1, true);
        let b = files.attach(7, 2, true);
        assert!(Arc::ptr_eq(&a, &b), "one state per inode");
        let _reader = files.attach(7, 3, false);
        assert_eq!(a.writers(), 2);
        a.wrote(1);
        b.wrote(2);
        assert!(
            a.settle(1),
            "2 still writes: 1's close leaves the commit to it"
        );
        assert!(!a.settle(2), "nobody else writes: 2's close commits");
        assert!(!a.any_dirty());
        assert!(!files.detach(&a, 1));
        assert!(!files.detach(&a, 2));
        assert!(files.get(7).is_some(), "the reader still has it open");
        assert!(files.detach(&a, 3));
        assert!(files.get(7).is_none());
        let c = files.attach(7, 4, false);
        assert_ne!(c.id, a.id, "a new state once the old one is gone");
    }
}
