//! The read path: what happens between a `read()` on an open file and the ranged GETs.
//!
//! It owns the per-handle sequential prefetcher ([`prefetch`]), the block cache shared by
//! every handle ([`cache`]) with its optional tier on disk ([`disk`]), and the memory budget that bounds prefetch windows, the cache
//! and upload buffers together ([`budget`]). It never writes to S3.

pub mod budget;
pub mod cache;
pub mod disk;
pub mod prefetch;

pub use budget::Budget;
pub use disk::{DiskCache, DiskCacheError, DiskConfig};
pub use prefetch::{ReadShared, Reader};
