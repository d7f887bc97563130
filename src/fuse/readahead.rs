//! The kernel's readahead for the mount: raised to what the adapter negotiates.
//!
//! Why: a FUSE mount's readahead is the smaller of what the daemon asks for at init
//! (`max_readahead`, 1 MiB here) and its backing device's `read_ahead_kb`, which the
//! kernel creates at 128 KiB. So a sequential read arrives as 128 KiB requests, eight
//! times the requests (and context switches, and replies) of 1 MiB ones. Root may raise
//! the device's value in sysfs, as `blockdev --setra` does for a disk; others cannot and
//! keep the kernel's default.

use std::path::Path;

use tracing::{debug, info};

/// The backing device (`major:minor`) of the FUSE mount at `mountpoint`, from the text of
/// /proc/self/mountinfo (the last mount there, as that is the one on top).
pub fn device_of(mountpoint: &Path, mountinfo: &str) -> Option<String> {
    let want = mountpoint.to_string_lossy();
    mountinfo
        .lines()
        .filter_map(crate::escape::mountinfo_entry)
        .filter(|e| e.mount_point == want && (e.fstype == "fuse" || e.fstype.starts_with("fuse.")))
        .map(|e| e.device.to_owned())
        .next_back()
}

/// Raise the readahead of the mount at `mountpoint` to `kib` KiB when it is lower. Without
/// the permission (not root) or without sysfs it stays as it is; that is logged, never an
/// error, since the mount works either way.
pub fn raise(mountpoint: &Path, kib: u32) {
    let Some(dev) = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|info| device_of(mountpoint, &info))
    else {
        debug!(mountpoint = %mountpoint.display(), "readahead: mount not found in mountinfo");
        return;
    };
    let file = Path::new("/sys/class/bdi").join(&dev).join("read_ahead_kb");
    let current: Option<u32> = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if current.is_some_and(|c| c >= kib) {
        return;
    }
    match std::fs::write(&file, kib.to_string()) {
        Ok(()) => debug!(device = %dev, from = ?current, to = kib, "readahead raised (KiB)"),
        Err(e) => info!(
            device = %dev,
            "readahead stays at {} KiB ({}: {e}); sequential reads arrive in smaller requests",
            current.map_or_else(|| "?".to_owned(), |c| c.to_string()),
            file.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw
45 30 0:40 / /mnt/a\\040b rw,nosuid,nodev shared:20 - fuse.s3mount s3mount rw,user_id=0
46 30 8:1 / /mnt/disk rw shared:21 - ext4 /dev/sda1 rw
47 45 0:41 / /mnt/a\\040b rw,nosuid,nodev shared:22 - fuse s3mount rw,user_id=0
";

    #[test]
    fn the_top_fuse_mount_at_the_path_gives_the_device() {
        assert_eq!(
            device_of(Path::new("/mnt/a b"), INFO).as_deref(),
            Some("0:41")
        );
    }

    #[test]
    fn other_file_systems_and_paths_give_none() {
        assert_eq!(device_of(Path::new("/mnt/disk"), INFO), None);
        assert_eq!(device_of(Path::new("/mnt/other"), INFO), None);
    }
}
