//! The read path: what happens between a `read()` on an open file and the ranged GETs.
//!
//! It owns the per-handle sequential prefetcher ([`prefetch`]), the block cache shared by
//! every handle ([`cache`]) and the memory budget that bounds prefetch windows, the cache
//! and upload buffers together ([`budget`]). It never writes to S3.

pub mod budget;
pub mod cache;
pub mod prefetch;

pub use budget::Budget;
pub use prefetch::{ReadShared, Reader};
