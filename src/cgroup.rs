//! The memory limit of the control group this process runs in, so that the default
//! `--memory-limit` respects a container's: a mount that sizes its buffers for the host
//! inside a 256 MiB pod is killed by the OOM killer, which loses whatever was being written.
//!
//! Both hierarchies are read, as container runtimes use either: cgroup v2 (`memory.max` in
//! the unified hierarchy) and cgroup v1 (`memory.limit_in_bytes` in the memory controller's).
//! A limit set on an ancestor applies too, so the smallest one on the way up to the mounted
//! root counts. Mount points come from `/proc/self/mountinfo` (hybrid hosts mount v2 at
//! `/sys/fs/cgroup/unified`), with the mount's root taken off the cgroup's path (a container
//! without a cgroup namespace sees its own cgroup mounted as the root). No crate does only
//! this (`cgroups-rs` manages cgroups, a far larger job), so these few lines are ours.

use std::path::{Path, PathBuf};

/// Values at or above this are "no limit" (cgroup v1 shows about 2^63 bytes, rounded down
/// to a page, when none is set).
const UNLIMITED: u64 = 1 << 62;

/// The smallest memory limit set on this process's cgroups or their ancestors, in bytes;
/// `None` when there is none (or no cgroup file system is mounted).
pub fn memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    limit_from(&cgroups, &mountinfo, |p| std::fs::read_to_string(p).ok())
}

/// One mounted hierarchy with a memory controller, as this process sees it.
#[derive(Debug, PartialEq)]
struct Hierarchy {
    /// Where the hierarchy is mounted: the walk up stops here.
    mount: PathBuf,
    /// This process's cgroup directory inside it.
    dir: PathBuf,
    /// The control file that holds the limit.
    file: &'static str,
}

/// [`memory_limit`] over the given `/proc/self/cgroup` and `/proc/self/mountinfo` texts, with
/// `read` standing in for reading a control file (so that tests need no cgroup).
fn limit_from(
    cgroups: &str,
    mountinfo: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<u64> {
    let mut best: Option<u64> = None;
    for h in hierarchies(cgroups, mountinfo) {
        let mut d = h.dir.as_path();
        loop {
            if let Some(v) = read(&d.join(h.file)).and_then(|s| parse_limit(&s)) {
                best = Some(best.map_or(v, |b| b.min(v)));
            }
            match d.parent() {
                Some(p) if d != h.mount && p.starts_with(&h.mount) => d = p,
                _ => break,
            }
        }
    }
    best
}

/// `memory.max` holds `max` or a number of bytes; `memory.limit_in_bytes` a number.
fn parse_limit(s: &str) -> Option<u64> {
    let v: u64 = s.trim().parse().ok()?;
    (v < UNLIMITED).then_some(v)
}

/// The hierarchies with a memory controller that this process is in.
fn hierarchies(cgroups: &str, mountinfo: &str) -> Vec<Hierarchy> {
    // "ID:CONTROLLERS:PATH"; v2 is "0::PATH".
    let mut v2_path = None;
    let mut v1_path = None;
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(ctl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if id == "0" && ctl.is_empty() {
            v2_path = Some(path);
        } else if ctl.split(',').any(|c| c == "memory") {
            v1_path = Some(path);
        }
    }
    let mut out = Vec::new();
    for e in mountinfo.lines().filter_map(crate::escape::mountinfo_entry) {
        let (path, file) = match e.fstype {
            "cgroup2" => (v2_path, "memory.max"),
            "cgroup" if e.super_options.split(',').any(|o| o == "memory") => {
                (v1_path, "memory.limit_in_bytes")
            }
            _ => continue,
        };
        let Some(path) = path else { continue };
        // The cgroup's path is relative to the namespace's root; the mount shows `root` of
        // the hierarchy at `mount`. Outside it, only the mount's own root is readable.
        let rel = Path::new(path)
            .strip_prefix(&e.root)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mount = PathBuf::from(e.mount_point);
        out.push(Hierarchy {
            dir: mount.join(rel),
            mount,
            file,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const HYBRID_CGROUP: &str = "9:name=systemd:/\n4:memory:/pods/p1\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn files(pairs: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let m: HashMap<PathBuf, String> = pairs
            .iter()
            .map(|(p, v)| (PathBuf::from(p), v.to_string()))
            .collect();
        move |p| m.get(p).cloned()
    }

    #[test]
    fn v1_limit_on_the_process_cgroup_or_an_ancestor_counts_the_smallest() {
        let read = files(&[
            (
                "/sys/fs/cgroup/memory/pods/p1/memory.limit_in_bytes",
                "536870912\n",
            ),
            (
                "/sys/fs/cgroup/memory/pods/memory.limit_in_bytes",
                "268435456\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("/sys/fs/cgroup/unified/memory.max", "max\n"),
        ]);
        assert_eq!(
            limit_from(HYBRID_CGROUP, HYBRID_MOUNTS, read),
            Some(256 << 20)
        );
    }

    #[test]
    fn no_limit_anywhere_is_none() {
        let read = files(&[
            (
                "/sys/fs/cgroup/memory/pods/p1/memory.limit_in_bytes",
                "9223372036854771712",
            ),
            ("/sys/fs/cgroup/unified/memory.max", "max"),
        ]);
        assert_eq!(limit_from(HYBRID_CGROUP, HYBRID_MOUNTS, read), None);
        assert_eq!(limit_from("", "", |_| None), None);
    }

    #[test]
    fn v2_in_a_container_reads_the_namespace_root() {
        // With a cgroup namespace the process is at "/" and so is the mount's root.
        let cg = "0::/\n";
        let mi = "50 40 0:40 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let read = files(&[("/sys/fs/cgroup/memory.max", "1073741824\n")]);
        assert_eq!(limit_from(cg, mi, read), Some(1 << 30));
    }

    #[test]
    fn v2_without_a_namespace_takes_the_mount_root_off_the_path() {
        // Docker without cgroupns: the process's cgroup is mounted as the root.
        let cg = "0::/system.slice/docker-abc.scope\n";
        let mi =
            "50 40 0:40 /system.slice/docker-abc.scope /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        let read = files(&[("/sys/fs/cgroup/memory.max", "300000000\n")]);
        assert_eq!(limit_from(cg, mi, read), Some(300_000_000));
    }

    #[test]
    fn the_walk_stops_at_the_mount_point() {
        let cg = "0::/a/b\n";
        let mi = "50 40 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        // A file above the mount point is never read.
        let read = files(&[
            ("/sys/fs/memory.max", "1"),
            ("/sys/fs/cgroup/a/memory.max", "4096"),
        ]);
        assert_eq!(limit_from(cg, mi, read), Some(4096));
    }

    #[test]
    fn garbage_is_ignored() {
        let read = files(&[(
            "/sys/fs/cgroup/memory/pods/p1/memory.limit_in_bytes",
            "lots",
        )]);
        assert_eq!(limit_from(HYBRID_CGROUP, HYBRID_MOUNTS, read), None);
        assert_eq!(
            limit_from("x\n::\n", "junk\n - \n", |_| Some("5".into())),
            None
        );
    }
}
