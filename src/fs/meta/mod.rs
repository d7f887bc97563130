//! Metadata: everything the mount knows about names and objects without reading their bytes.
//!
//! It owns the mapping between paths in the mount and S3 keys (and the prefix boundary no
//! key may cross), the inode table, what a listing says a directory holds, which names are
//! known to be absent (the negative cache) or known to be the whole contents of a directory,
//! and the s3fs-compatible POSIX attributes stored in object metadata. It sends no requests
//! of its own: the operations in `ops/` ask S3 and feed what they learn in here.

pub mod dirtimes;
pub mod inode;
pub mod key;
pub mod known;
pub mod listing;
pub mod negative;
pub mod posix;
