//! The mount's guard modes (`--read-only`, `--no-delete`, `--no-overwrite`), checked in one
//! place for the single-bucket and the every-bucket views alike.

use super::error::{FsError, Result};

/// Which kinds of change the mount refuses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Guards {
    /// Every change fails with EROFS.
    pub read_only: bool,
    /// Deletions (unlink, rmdir, rename away) fail with EPERM.
    pub no_delete: bool,
    /// Changes to existing objects fail with EPERM; new ones may be created.
    pub no_overwrite: bool,
}

impl Guards {
    /// Refuse any change on a read-only mount.
    pub fn writable(&self) -> Result<()> {
        if self.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Refuse deletions under `--no-delete`.
    pub fn delete(&self) -> Result<()> {
        self.writable()?;
        if self.no_delete {
            return Err(FsError::Guarded("--no-delete"));
        }
        Ok(())
    }

    /// Refuse changes to existing objects under `--no-overwrite`.
    pub fn overwrite(&self) -> Result<()> {
        self.writable()?;
        if self.no_overwrite {
            return Err(FsError::Guarded("--no-overwrite"));
        }
        Ok(())
    }
}
