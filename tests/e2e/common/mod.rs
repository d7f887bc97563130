//! End-to-end test harness: starts the local S3 servers it needs (Garage through
//! `scripts/garage.sh`, moto through `scripts/moto.sh`) — or reuses endpoints given in the
//! environment — mounts real FUSE file systems with the built `s3mount` binary, and checks
//! results through aws-sdk-s3 directly, never through the mount under test.
//!
//! - [`servers`]: Garage and moto (start or reuse, keys, buckets, moto scenarios and the
//!   lock every moto test holds);
//! - [`s3`]: the direct aws-sdk-s3 client [`S3`] that checks results;
//! - [`mount`]: the binary under test, connections ([`Conn`]) and live mounts ([`Mount`]);
//! - [`proxy`]: a fault-injecting TCP proxy between a mount and Garage;
//! - [`http`]: a small HTTP server that answers as a test needs (records, misbehaves).
//!
//! All tests share this one process: each works under its own prefix or bucket on Garage
//! (see [`unique`]), and the moto server, which scenario setups reset, is used by one test at
//! a time ([`moto_lock`]).

pub mod http;
pub mod metrics;
pub mod mount;
pub mod proxy;
pub mod s3;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use mount::{
    Conn, Mount, assert_one_sentence, is_mounted, mount_fresh_prefix, must_fail,
    must_fail_to_mount, s3mount_cmd,
};
pub use s3::{S3, rt};
pub use servers::{Moto, MotoLock, MotoRole, garage, garage_bucket, garage_key, moto_lock};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A name unique to this test run.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A new empty temporary directory (e.g. a mount point).
pub fn empty_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The errno of an I/O error (0 when it has none).
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// `sh -c SCRIPT` in `dir`, asserting success; returns stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
