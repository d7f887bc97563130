//! Keeps the daemon's resident memory near its budget by handing the allocator's free
//! memory back to the kernel when the process holds more than it should.
//!
//! Why this exists: the memory budget ([`crate::fs::read::budget`]) bounds what is *live*,
//! but glibc's malloc keeps freed memory resident. Its mmap threshold rises to the size of
//! the largest block freed (up to 32 MiB), so the prefetch chunks and write buffers of a
//! busy mount come from the heap arenas, and what they leave free there is given back only
//! from the top of each arena. A heap profile of 16 readers and 4 writers under a 64 MiB
//! budget showed about 100 MiB live and 150 MiB resident
//! (`bench/results-2026-12-03-memory.md`); in a container, that difference is what the OOM
//! killer counts.
//!
//! `malloc_trim(0)` releases the free pages inside every arena. It walks the arenas under
//! their locks, so it is not called on every free: a thread looks at the resident anonymous
//! memory every [`INTERVAL`] and trims only while it is above the budget plus
//! [`HEADROOM`]. A mount well within its limit never trims. Other allocators than glibc's
//! (musl) have no `malloc_trim`; there the watcher does nothing.

use std::time::Duration;

/// How often resident memory is looked at.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// Resident anonymous memory allowed beyond the budget before the heap is trimmed: what
/// the process holds outside the budget (HTTP connection buffers, the FUSE request buffer,
/// metadata caches, thread stacks) is typically 20–40 MiB.
pub const HEADROOM: u64 = 32 << 20;

/// Start the watcher thread for a process whose budget is `budget` bytes. It runs until the
/// process exits.
pub fn watch(budget: u64) -> std::io::Result<()> {
    let threshold = budget.saturating_add(HEADROOM);
    std::thread::Builder::new()
        .name("s3mount-heap".into())
        .spawn(move || {
            loop {
                std::thread::sleep(INTERVAL);
                trim_above(threshold);
            }
        })
        .map(drop)
}

/// Trim the heap if resident anonymous memory is above `threshold` bytes. Returns the
/// resident anonymous bytes before and after, when it trimmed.
pub fn trim_above(threshold: u64) -> Option<(u64, u64)> {
    let before = resident_anonymous()?;
    if before <= threshold || !trim() {
        return None;
    }
    Some((before, resident_anonymous().unwrap_or(before)))
}

/// Resident memory not backed by a file (the heap, stacks): `/proc/self/statm`'s resident
/// pages less its shared (file-backed) ones.
pub fn resident_anonymous() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().skip(1);
    let resident: u64 = fields.next()?.parse().ok()?;
    let shared: u64 = fields.next()?.parse().ok()?;
    Some(resident.saturating_sub(shared) * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim only inspects and releases the allocator's own free memory.
    unsafe { libc::malloc_trim(0) };
    true
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read() {
        let r = resident_anonymous().expect("statm");
        assert!(r > 0 && r < 1 << 40, "{r}");
    }

    #[test]
    fn nothing_is_trimmed_below_the_threshold() {
        assert_eq!(trim_above(u64::MAX), None);
    }

    /// Freed memory that glibc keeps in its heap (blocks below the mmap threshold, each
    /// held in place by a small live neighbour) is given back by a trim. Measured in a
    /// process of its own (this test binary again, running only this test): the other
    /// tests' allocations would blur the figure.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_heap_memory_above_the_threshold_is_given_back() {
        const CHILD: &str = "S3MOUNT_HEAP_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "heap::tests::freed_heap_memory_above_the_threshold_is_given_back",
                    "--exact",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("1 passed"), "{text}");
            return;
        }
        const BLOCKS: usize = 600;
        const SIZE: usize = 100 << 10; // below glibc's initial mmap threshold (128 KiB)
        let mut big = Vec::with_capacity(BLOCKS);
        let mut pins = Vec::with_capacity(BLOCKS);
        for i in 0..BLOCKS {
            big.push(vec![i as u8; SIZE]);
            pins.push(vec![i as u8; 16]);
        }
        drop(big);
        let (before, after) = trim_above(0).expect("trimmed");
        // 60 MiB were freed and are given back, but for what glibc keeps in place.
        assert!(
            before.saturating_sub(after) >= 45 << 20,
            "resident {before} before the trim, {after} after"
        );
        drop(pins);
    }
}
