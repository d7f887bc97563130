//! The core's own settings: ownership and modes, guard modes, tuning of the read and write
//! paths, metadata caching. Built from the command line by `crate::config`; the core reads
//! nothing else.

use std::path::PathBuf;

use super::guard::Guards;
use super::read::DiskConfig;

/// Everything the filesystem core needs to know.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Owner of every inode.
    pub uid: u32,
    /// Group of every inode.
    pub gid: u32,
    /// Permission bits of files.
    pub file_mode: u16,
    /// Permission bits of directories.
    pub dir_mode: u16,
    /// Refuse every modification with EROFS.
    pub read_only: bool,
    /// Concurrent ranged GETs per sequential reader.
    pub download_threads: usize,
    /// Largest ranged GET of the prefetcher.
    pub read_part_size: u64,
    /// Multipart part size.
    pub write_part_size: u64,
    /// Concurrent part uploads per writer.
    pub upload_threads: usize,
    /// Block cache capacity in bytes (0 disables it).
    pub cache_memory: u64,
    /// Budget for prefetch windows, cache and write buffers together.
    pub memory_limit: u64,
    /// How long lookup/getattr results are trusted (and, with `negative_cache`, "does not
    /// exist" answers).
    pub metadata_ttl: std::time::Duration,
    /// Answer "does not exist" from memory, for `metadata_ttl`, for names this mount found
    /// absent, deleted, or knows absent from a directory it made or listed. Off by default:
    /// a name another client creates must be found by the next lookup, so an expected
    /// absence is still checked with one ListObjectsV2. On, creating a file in a directory
    /// made or listed here costs no lookup request, but another client's new name may look
    /// absent for up to the TTL (and creating it here then replaces theirs).
    pub negative_cache: bool,
    /// Refuse deletions (unlink, rmdir, rename away) with EPERM.
    pub no_delete: bool,
    /// Refuse changes to existing objects with EPERM (new ones may be created).
    pub no_overwrite: bool,
    /// Where staging files of files changed in place live.
    pub cache_dir: PathBuf,
    /// The read cache on disk, when on (opened by the mount, which hands it to the core).
    pub disk_cache: Option<DiskConfig>,
    /// Content-Type when the extension says nothing.
    pub content_type_default: String,
    /// Validity of presigned URLs.
    pub presign_expiry: std::time::Duration,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
            read_only: false,
            download_threads: 8,
            read_part_size: 8 << 20,
            write_part_size: 8 << 20,
            upload_threads: 4,
            cache_memory: 64 << 20,
            memory_limit: 128 << 20,
            metadata_ttl: std::time::Duration::from_secs(1),
            negative_cache: false,
            no_delete: false,
            no_overwrite: false,
            cache_dir: std::env::temp_dir().join("s3mount-staging"),
            disk_cache: None,
            content_type_default: "application/octet-stream".into(),
            presign_expiry: std::time::Duration::from_secs(3600),
        }
    }
}

impl FsConfig {
    /// The guard modes.
    pub fn guards(&self) -> Guards {
        Guards {
            read_only: self.read_only,
            no_delete: self.no_delete,
            no_overwrite: self.no_overwrite,
        }
    }
}
