//! A mount inside a memory-limited control group (as in a container or a Kubernetes pod)
//! sizes its default memory budget from that limit instead of the host's default, and still
//! works; an explicit `--memory-limit` wins. The cgroup is made for real, under whichever
//! hierarchy this machine mounts (cgroup v2's `memory.max`, or v1's `memory.limit_in_bytes`),
//! and the mount's process is moved into it before it starts.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::{Conn, Mount, S3, unique};

/// A memory cgroup made for one test, removed (once empty) on drop.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// A new cgroup limited to `limit` bytes, under the v2 hierarchy if it has the memory
    /// controller, else under v1's memory hierarchy.
    fn with_memory_limit(limit: u64) -> Cgroup {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut v1 = None;
        let mut v2 = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount = left.split(' ').nth(4).unwrap_or_default();
            let r: Vec<&str> = right.split(' ').collect();
            match r.first() {
                Some(&"cgroup2") => v2 = Some(PathBuf::from(mount)),
                Some(&"cgroup")
                    if r.get(2)
                        .is_some_and(|o| o.split(',').any(|o| o == "memory")) =>
                {
                    v1 = Some(PathBuf::from(mount))
                }
                _ => {}
            }
        }
        let name = unique("s3mount-e2e");
        if let Some(root) = v2.filter(|r| {
            std::fs::read_to_string(r.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        }) {
            // Children get the memory controller only if the parent delegates it.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
            let dir = root.join(&name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("memory.max"), limit.to_string()).unwrap();
            return Cgroup { dir };
        }
        let root = v1.expect("no cgroup hierarchy with a memory controller is mounted");
        let dir = root.join(&name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        Cgroup { dir }
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The daemon leaves once unmounted; its cgroup can go when it is empty.
        let until = Instant::now() + Duration::from_secs(10);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Mount `target` with `extra` arguments from inside `cg`; the mount and what it logged
/// (its log file, where the background mount writes the `memory budget` line).
fn mount_in(cg: &Cgroup, target: &str, extra: &[&str]) -> (Mount, String) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let log = tmp.path().join("log");
    let mut args = vec!["--log-file", log.to_str().unwrap(), "--log-level", "info"];
    args.extend(extra);
    let mut cmd = Conn::garage().mount_cmd(target, &dir, &args);
    let procs = cg.procs();
    // SAFETY: runs in the forked child before exec; it only writes one small file.
    unsafe {
        cmd.pre_exec(move || std::fs::write(&procs, std::process::id().to_string()));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "mount failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    (Mount::adopt(tmp, dir), logged)
}

/// The `memory budget` line a mount logged.
fn budget_line(printed: &str) -> String {
    printed
        .lines()
        .find(|l| l.contains("memory budget"))
        .unwrap_or_else(|| panic!("no memory budget line in: {printed}"))
        .to_owned()
}

fn round_trip(m: &Mount, s3: &S3, prefix: &str) {
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(m.path("f.bin"), &body).unwrap();
    assert_eq!(std::fs::read(m.path("f.bin")).unwrap(), body);
    assert_eq!(s3.get(&format!("{prefix}/f.bin")).unwrap(), body);
}

#[test]
fn default_memory_budget_follows_the_cgroup_limit() {
    let cg = Cgroup::with_memory_limit(256 << 20);
    let s3 = S3::garage();
    let p = unique("cgroup");
    let (m, printed) = mount_in(&cg, &format!("{}/{p}", s3.bucket), &[]);
    // The daemon really is in the cgroup (it was forked from the process moved there).
    let members = std::fs::read_to_string(cg.procs()).unwrap();
    assert!(!members.trim().is_empty(), "the cgroup is empty");
    let line = budget_line(&printed);
    assert!(line.contains("memory_limit=64MiB"), "{line}");
    assert!(line.contains("cache_memory=32MiB"), "{line}");
    assert!(line.contains("cgroup_memory_limit=256MiB"), "{line}");
    round_trip(&m, &s3, &p);
}

#[test]
fn explicit_memory_limit_wins_over_the_cgroup() {
    let cg = Cgroup::with_memory_limit(256 << 20);
    let s3 = S3::garage();
    let p = unique("cgroup-explicit");
    let (m, printed) = mount_in(
        &cg,
        &format!("{}/{p}", s3.bucket),
        &["--memory-limit", "100MiB"],
    );
    let line = budget_line(&printed);
    assert!(line.contains("memory_limit=100MiB"), "{line}");
    assert!(line.contains("cache_memory=50MiB"), "{line}");
    round_trip(&m, &s3, &p);
}

/// A size as the log shows it (`64MiB`, `1GiB`, or bytes).
fn size(s: &str) -> u64 {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if let Some(n) = s.strip_suffix(unit) {
            return n.parse::<u64>().unwrap() << shift;
        }
    }
    s.parse().unwrap()
}

/// The value of `field=` in a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let at = line
        .find(&format!(" {name}="))
        .unwrap_or_else(|| panic!("{name} in {line}"));
    line[at + name.len() + 2..]
        .split_whitespace()
        .next()
        .unwrap()
}

#[test]
fn without_a_flag_the_budget_is_128mib_or_a_quarter_of_the_cgroup_limit() {
    // Wherever the suite runs: on a host without a limit 128 MiB, in a container a quarter
    // of its limit when that is lower (at least 32 MiB), and the cache half of the budget.
    let s3 = S3::garage();
    let p = unique("cgroup-none");
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &["--log-level", "info"]);
    let line = budget_line(&m.log_text());
    let expected = match field(&line, "cgroup_memory_limit") {
        "none" => 128 << 20,
        c => ((size(c) / 4) & !((1 << 20) - 1)).clamp(32 << 20, 128 << 20),
    };
    assert_eq!(size(field(&line, "memory_limit")), expected, "{line}");
    assert_eq!(
        size(field(&line, "cache_memory")),
        (64 << 20).min(expected / 2),
        "{line}"
    );
}
