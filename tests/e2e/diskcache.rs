//! The read cache on disk (`--cache-dir`) through real mounts on Garage: a file read by one
//! mount is read by the next mount of the same directory without a single GetObject; a
//! second mount of a directory in use is refused with one line; an object replaced by
//! another client is read with its new bytes, never the cached old ones; and cache files
//! corrupted between mounts are not served (the content stays right).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::metrics::{free_port, s3_ok, scrape, value};
use crate::common::{Conn, Mount, S3, must_fail_to_mount, pseudo_random, unique};

/// A mount with the read cache in `cache`, exporting metrics. The previous mount of the
/// same directory may still be finishing its queued writes after its unmount (it holds the
/// lock until it exits): wait for it rather than fail.
fn mount(target: &str, cache: &Path) -> (Mount, SocketAddr) {
    wait_for_exit(cache);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let extra = [
        "--cache-dir",
        cache.to_str().unwrap(),
        "--metadata-ttl",
        "0",
        "--metrics-addr",
        &addr.to_string(),
    ];
    (Mount::garage(target, &extra), addr)
}

/// Wait until the last mount's daemon is gone (it writes its queued blocks after the
/// unmount, then exits and lets go of the lock), so the files can be inspected.
fn wait_for_exit(cache: &Path) {
    let lock = cache.join("read-cache/lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lock_free(&lock) {
        assert!(Instant::now() < deadline, "the daemon still holds {lock:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether no process holds the cache's lock (a try-lock that lets go at once).
fn lock_free(lock: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(lock) else {
        return true;
    };
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    r == 0
}

fn block_files(cache: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(cache.join("read-cache"))
        .unwrap()
        .flatten()
    {
        if d.path().is_dir() {
            out.extend(
                std::fs::read_dir(d.path())
                    .unwrap()
                    .flatten()
                    .map(|f| f.path()),
            );
        }
    }
    out
}

#[test]
fn the_disk_cache_serves_remounts_and_never_stale_or_corrupt_blocks() {
    let s3 = S3::garage();
    let p = unique("diskcache");
    let target = format!("{}/{p}", s3.bucket);
    let v1 = pseudo_random(3 << 20, 41);
    s3.put(&format!("{p}/data.bin"), v1.clone());
    let cache = tempfile::tempdir().unwrap();

    // First mount: from S3, and the blocks land on disk.
    let (m, addr) = mount(&target, cache.path());
    assert!(std::fs::read(m.path("data.bin")).unwrap() == v1);
    assert!(s3_ok(&scrape(addr), "GetObject") > 0.0);
    // A second mount of the same cache directory is refused, in one line.
    let other = tempfile::tempdir().unwrap();
    let e = must_fail_to_mount(
        &Conn::garage(),
        &target,
        other.path(),
        &["--cache-dir", cache.path().to_str().unwrap()],
    );
    assert!(e.contains("in use by another s3mount"), "{e}");
    drop(m);

    // Remount: the whole file from disk, not one GET.
    let (m, addr) = mount(&target, cache.path());
    assert!(std::fs::read(m.path("data.bin")).unwrap() == v1);
    let s = scrape(addr);
    assert_eq!(
        s3_ok(&s, "GetObject"),
        0.0,
        "the re-read after a remount sent GETs:\n{s}"
    );
    assert!(value(&s, "s3mount_disk_cache_hits_total") >= 12.0, "{s}");
    assert!(
        value(&s, "s3mount_disk_cache_bytes") >= (3 << 20) as f64,
        "{s}"
    );

    // Another client replaces the object (same size): its new bytes, never the old blocks.
    let v2 = pseudo_random(3 << 20, 42);
    s3.put(&format!("{p}/data.bin"), v2.clone());
    assert!(
        std::fs::read(m.path("data.bin")).unwrap() == v2,
        "old blocks served after the object changed"
    );
    assert!(s3_ok(&scrape(addr), "GetObject") > 0.0);
    drop(m);
    wait_for_exit(cache.path());

    // Corrupt every cache file between mounts: a flipped byte in some, truncation in others.
    let files = block_files(cache.path());
    assert!(files.len() >= 24, "both versions cached: {}", files.len());
    for (i, f) in files.iter().enumerate() {
        let mut b = std::fs::read(f).unwrap();
        if i % 2 == 0 {
            let at = b.len() - 1 - i;
            b[at] ^= 0x01;
        } else {
            b.truncate(b.len() / 2);
        }
        std::fs::write(f, b).unwrap();
    }
    let (m, addr) = mount(&target, cache.path());
    assert!(
        std::fs::read(m.path("data.bin")).unwrap() == v2,
        "a corrupted cache file was served"
    );
    let s = scrape(addr);
    assert!(s3_ok(&s, "GetObject") > 0.0, "{s}");
    assert_eq!(value(&s, "s3mount_disk_cache_hits_total"), 0.0, "{s}");
    drop(m);
}
