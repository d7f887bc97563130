//! The `s3mount` binary under test and how the tests run it: [`Conn`] (credentials and
//! connection flags), [`Mount`] (a live FUSE mount, unmounted on drop), [`is_mounted`], and
//! [`must_fail_to_mount`] for mounts that must be refused with a one-line error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::s3::S3;
use super::servers::garage;
use super::unique;

/// The `s3mount` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_s3mount")
}

/// A command running `s3mount` with a clean AWS environment (so the developer's own
/// credentials or endpoints never leak into a test).
pub fn s3mount_cmd() -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(&k);
        }
    }
    // Never read the developer's ~/.aws files.
    c.env("AWS_CONFIG_FILE", "/dev/null");
    c.env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

/// Whether `path` is currently a mount point.
pub fn is_mounted(path: &Path) -> bool {
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.to_str().unwrap()))
}

/// How to connect: environment variables and connection flags for `s3mount`.
#[derive(Clone, Debug, Default)]
pub struct Conn {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Conn {
    /// The Garage server with the dev key (from the environment, as users would).
    pub fn garage() -> Conn {
        let g = garage();
        Conn {
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), g.key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), g.secret.clone()),
            ],
            args: vec!["--endpoint-url".into(), g.endpoint.clone()],
        }
    }

    /// Add flags.
    pub fn with_args(mut self, args: &[&str]) -> Conn {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Set an environment variable.
    pub fn with_env(mut self, k: &str, v: &str) -> Conn {
        self.env.push((k.into(), v.into()));
        self
    }

    /// `s3mount mount TARGET DIR <connection flags> EXTRA...` (background mode).
    pub fn mount_cmd(&self, target: &str, dir: &Path, extra: &[&str]) -> Command {
        let mut c = s3mount_cmd();
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.arg("mount")
            .arg(target)
            .arg(dir)
            .args(&self.args)
            .args(extra);
        c.stdin(std::process::Stdio::null());
        c
    }
}

/// A live mount, unmounted on drop.
pub struct Mount {
    pub dir: PathBuf,
    pub log: PathBuf,
    /// What `s3mount mount` printed before returning.
    pub stderr: String,
    _tmp: tempfile::TempDir,
}

impl Mount {
    /// Mount `target` on the Garage server with the dev key plus `extra` arguments.
    pub fn garage(target: &str, extra: &[&str]) -> Mount {
        Mount::with(&Conn::garage(), target, extra)
    }

    /// Mount `target` with `conn`; panics with the error output if it fails.
    pub fn with(conn: &Conn, target: &str, extra: &[&str]) -> Mount {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let log = tmp.path().join("s3mount.log");
        let log_s = log.to_str().unwrap().to_owned();
        let mut extra: Vec<&str> = extra.to_vec();
        extra.extend(["--log-file", &log_s]);
        if !extra.contains(&"--log-level") {
            extra.extend(["--log-level", "info"]);
        }
        let out = conn.mount_cmd(target, &dir, &extra).output().unwrap();
        assert!(
            out.status.success(),
            "mount of {target} failed: {}\nlog: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            is_mounted(&dir),
            "s3mount returned but {dir:?} is not mounted"
        );
        Mount {
            dir,
            log,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            _tmp: tmp,
        }
    }

    /// Wrap a mount made by hand at `dir` (inside `tmp`, whose `log` is the log file).
    pub fn adopt(tmp: tempfile::TempDir, dir: PathBuf) -> Mount {
        assert!(is_mounted(&dir), "{dir:?} is not mounted");
        Mount {
            log: tmp.path().join("log"),
            dir,
            stderr: String::new(),
            _tmp: tmp,
        }
    }

    /// Path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// What the mount logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The pid of the daemon serving this mount (the process whose command line names its
    /// directory).
    pub fn daemon_pid(&self) -> i32 {
        let dir = self.dir.to_str().unwrap();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            if args.contains(&&b"mount"[..]) && args.contains(&dir.as_bytes()) {
                return pid;
            }
        }
        panic!("no daemon serving {dir}");
    }
}

/// Send `sig` to a process this test started.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: sending a signal to a process we started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Wait until `pid` is gone (at most `limit`, else fail); how long it took.
pub fn wait_gone(pid: i32, limit: Duration) -> Duration {
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            t.elapsed() < limit,
            "daemon {pid} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

impl Drop for Mount {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_mounted(&self.dir) {
            let ok = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.dir)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                let _ = Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&self.dir)
                    .output();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A mount of a fresh prefix (named after `tag`) of the Garage test bucket: the client on
/// that bucket, the prefix, and the mount.
pub fn mount_fresh_prefix(tag: &str) -> (S3, String, Mount) {
    let s3 = S3::garage();
    let p = unique(tag);
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    (s3, p, m)
}

/// Run a mount that must fail; return its stderr after checking nothing got mounted and
/// the error is one line starting with `s3mount: error: `.
pub fn must_fail_to_mount(conn: &Conn, target: &str, dir: &Path, extra: &[&str]) -> String {
    must_fail(conn.mount_cmd(target, dir, extra), dir)
}

/// [`must_fail_to_mount`] for a mount command built by hand (`cmd` mounts at `dir`), e.g.
/// one run inside a network namespace.
pub fn must_fail(mut cmd: Command, dir: &Path) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "mount at {dir:?} unexpectedly succeeded"
    );
    assert!(
        dir.exists() && !is_mounted(dir) || !dir.exists(),
        "{dir:?} got mounted"
    );
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("s3mount: error: "), "{stderr}");
    stderr
}

/// The shared assertion of issue 15 on an error a user reads: one line, under 300
/// characters, no `Debug` artefacts (`{`, `ProviderError`, `Response {`).
pub fn assert_one_sentence(e: &str) {
    let line = e.trim();
    assert_eq!(line.lines().count(), 1, "{e}");
    assert!(
        line.chars().count() < 300,
        "{} chars: {e}",
        line.chars().count()
    );
    for bad in ["{", "ProviderError", "Response {"] {
        assert!(!line.contains(bad), "{bad} in: {e}");
    }
}
