//! Times that change as a side effect of changing names: a directory's mtime and ctime
//! when an entry is created, removed or renamed in it (shown at once, written to its marker
//! lazily, see [`crate::fs::meta::dirtimes`]), and the ctime of what is renamed.

use std::time::SystemTime;

use futures::StreamExt;
use tracing::{debug, warn};

use super::attrs::Implicit;
use crate::fs::meta::dirtimes::Pending;
use crate::fs::meta::posix::format_time;
use crate::fs::{Fs, FsError, Ino, Kind, Result};
use crate::s3::{ErrorKind, PutOptions};

/// Markers written at once by one round of [`Fs::persist_dir_times`].
const PERSIST_CONCURRENCY: usize = 8;

impl Fs {
    /// An entry of directory `dir` was just created, removed or renamed: the directory's
    /// mtime and ctime are now. Only remembered here (no request): `tar -x` of thousands of
    /// files writes the marker about once a second, not once per file.
    pub(in crate::fs) fn entries_changed(&self, dir: Ino) {
        self.dir_times.changed(dir, SystemTime::now());
    }

    /// `ino` was just renamed: its ctime is now. For an object this is what the copy stored
    /// (read back at the next look, the moved key being unconfirmed); for an implicit
    /// directory it is the only record. A file whose metadata is unknown (only listed)
    /// stays unknown, so that its next use still reads it.
    pub(in crate::fs) fn status_changed(&self, ino: Ino) {
        let now = Some(SystemTime::now());
        if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
            match (&mut n.stat.posix, n.kind) {
                (Some(p), _) => p.ctime = now,
                (p @ None, Kind::Dir) => p.get_or_insert_default().ctime = now,
                (None, _) => {}
            }
        }
    }

    /// Copy `from` to `to` for a rename: every header and all metadata kept, ctime now
    /// (MetadataDirective REPLACE with everything restated). Returns the new ETag.
    pub(in crate::fs) async fn copy_renamed(&self, from: &str, to: &str) -> Result<Option<String>> {
        let (put, _) = self
            .store
            .copy_restated(from, to, &ctime_stamp(SystemTime::now()))
            .await?;
        Ok(put.etag)
    }

    /// Write the times pending for every changed directory to its marker: one HEAD and one
    /// CopyObject per directory, however many of its entries changed since the last round.
    /// The daemon calls this about once a second, and once more at unmount. A directory
    /// without a marker keeps its new times in memory only; a write that fails is warned
    /// about once per marker and not retried (the times stay shown by this mount).
    pub async fn persist_dir_times(&self) {
        futures::stream::iter(self.dir_times.all())
            .for_each_concurrent(PERSIST_CONCURRENCY, |(ino, p)| self.persist_dir(ino, p))
            .await;
    }

    async fn persist_dir(&self, ino: Ino, p: Pending) {
        let Ok(node) = self.node(ino) else {
            // Forgotten by the kernel (removed, or unused for long): nothing left to show.
            self.dir_times.settled(ino, p);
            return;
        };
        let key = self.prefix.dir_key(&node.path);
        // The root of a whole-bucket mount has no marker; a --no-overwrite mount changes no
        // object that exists.
        let r = if key.is_empty() || self.guards.overwrite().is_err() {
            Ok(())
        } else {
            self.update_remote_posix(&node, Implicit::Leave, |_, _| Ok(()))
                .await
        };
        match r {
            Ok(()) => {}
            // Removed or moved away meanwhile (rmdir, rename): its times went with it.
            Err(FsError::NotFound) => {}
            Err(FsError::Store(e)) if e.kind == ErrorKind::NotFound => {}
            Err(e) if self.dir_times.first_failure(&key) => {
                warn!(key, error = %e, "directory times not written to the marker; shown by this mount only");
            }
            Err(e) => debug!(key, error = %e, "directory times not written to the marker"),
        }
        // Whatever became of the write, the times stay shown (they are the directory's
        // own if nothing was written) and are not tried again until the next change.
        if self.dir_times.pending(ino) == Some(p) {
            if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
                p.apply(n.stat.posix.get_or_insert_default());
            }
            self.dir_times.settled(ino, p);
        }
    }
}

/// A rename's change to the copied metadata: ctime `now`, nothing else touched (another
/// client's values, even malformed ones, are restated as they are).
pub(in crate::fs) fn ctime_stamp(now: SystemTime) -> impl Fn(&mut PutOptions) + Send + Sync {
    move |o: &mut PutOptions| {
        o.meta.insert("ctime".into(), format_time(now));
    }
}
