//! The write path: how bytes written to an open file become an object.
//!
//! Two bodies, chosen by the operations in `ops/files.rs`: a [`stream`] for a file written
//! from its first byte onwards (a multipart upload whose parts are sent while the writer
//! writes), and a [`stage`]d file for everything else (a local staging file, uploaded at
//! commit with server-side copies of the parts nobody changed). [`Uploads`] makes both with
//! the mount's settings, so the store, part size, staging directory and memory budget are
//! given once. Neither knows about inodes or handles.

pub mod ranges;
pub mod stage;
pub mod stream;

use std::path::PathBuf;
use std::sync::Arc;

pub use stage::{Base, Staged};
pub use stream::{Committed, Upload};

/// How long a part to upload waits for the memory budget before it is sent anyway: long
/// enough for other writers' parts in flight to finish (a part takes well under a second
/// on a working connection), short enough that a writer whose own reads hold the memory
/// is slowed, never stuck.
const MEMORY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

use super::error::Result;
use super::read::Budget;
use crate::s3::{ObjectStore, PutOptions};

/// Upload tuning.
#[derive(Clone, Copy, Debug)]
pub struct WriteConfig {
    /// Part size (≥ 5 MiB).
    pub part_size: u64,
    /// Parts in flight per streamed file.
    pub threads: usize,
}

/// Makes streamed and staged uploads with the mount's settings.
#[derive(Clone)]
pub struct Uploads {
    store: Arc<dyn ObjectStore>,
    cfg: WriteConfig,
    staging_dir: PathBuf,
    budget: Arc<Budget>,
}

impl Uploads {
    /// Uploads into `store`, staging files in `staging_dir`, buffers counted in `budget`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cfg: WriteConfig,
        staging_dir: PathBuf,
        budget: Arc<Budget>,
    ) -> Self {
        Uploads {
            store,
            cfg,
            staging_dir,
            budget,
        }
    }

    /// The largest file these uploads can make: 10,000 parts, at most 5 TiB. A size beyond
    /// it is refused at once (EFBIG) rather than after uploading that much.
    pub fn max_size(&self) -> u64 {
        (stream::MAX_PARTS as u64)
            .saturating_mul(self.cfg.part_size)
            .min(stream::MAX_OBJECT)
    }

    /// A new object `key`, written sequentially from empty.
    pub fn stream(&self, key: String, opts: PutOptions) -> Upload {
        Upload::new(self, key, opts)
    }

    /// `key` changed in place, starting from `base` (or from nothing) with `initial` bytes
    /// already written at offset 0.
    pub fn stage(
        &self,
        key: String,
        base: Option<Base>,
        initial: &[u8],
        opts: PutOptions,
    ) -> Result<Staged> {
        Staged::new(self, key, base, initial, opts)
    }
}
