//! s3mount run by an ordinary user (`nobody`), as a desktop user or a user systemd unit runs
//! it: mount(2) is refused to that user, so the mount must go through the setuid-root
//! `fusermount3`, and only that user may enter. The test runs as root and drops to
//! `nobody` with `setpriv` for every step, the unmount included.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{S3, garage, is_mounted, unique};

const NOBODY_UID: u32 = 65534;
const NOGROUP_GID: u32 = 65534;

/// `fusermount3` on PATH, setuid root; fails (never skips) when it is not, with the fix.
fn setuid_fusermount3() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v fusermount3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fusermount3 is not installed: run scripts/deps.sh (installs fuse3)"
    );
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let meta = fs::metadata(&path).unwrap();
    assert!(
        meta.uid() == 0 && meta.mode() & 0o4000 != 0,
        "{path:?} is not setuid root (mode {:o}, owner {}): ordinary users cannot mount; \
         reinstall fuse3 or run `chmod u+s {}` as root",
        meta.mode(),
        meta.uid(),
        path.display()
    );
    path
}

/// `/dev/fuse` open to every user: fusermount3 opens it with the caller's rights.
fn dev_fuse_open_to_users() {
    let mode = fs::metadata("/dev/fuse")
        .expect("/dev/fuse is missing (containers need --device /dev/fuse)")
        .mode();
    assert_eq!(
        mode & 0o006,
        0o006,
        "/dev/fuse is mode {:o}: ordinary users cannot mount; run scripts/deps.sh as root \
         (chmod 0666 /dev/fuse, what udev sets)",
        mode & 0o777
    );
}

/// `program args...` as nobody:nogroup with no supplementary groups and only `env`.
fn as_nobody(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    // By absolute path: the child's PATH (which `env` may replace) would be searched.
    Command::new("/usr/bin/setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("setpriv (util-linux) to run {program:?} as nobody: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What nobody needs, in a tree nobody can traverse: a copy of the binary (the built
/// binary's directory under the repository's target/ need not be traversable), and a home
/// and a mount point nobody owns. The temporary directory goes with the first value.
fn sandbox() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = tmp.path().join("s3mount");
    // Copied by a `cp` process, not by `fs::copy` here: while this process holds the new
    // file open for writing, a child that another test thread forks inherits that
    // descriptor until it execs, and running the copy in that window fails with
    // "Text file busy" (ETXTBSY), as a CI run showed.
    let cp = std::process::Command::new("cp")
        .arg(crate::common::mount::bin())
        .arg(&bin)
        .status()
        .unwrap();
    assert!(cp.success(), "cp of the binary: {cp}");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let home = nobodys_dir(tmp.path(), "home");
    let mnt = nobodys_dir(tmp.path(), "mnt");
    (tmp, bin, home, mnt)
}

/// A new directory `name` in `parent`, owned by nobody.
fn nobodys_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir(&d).unwrap();
    chown(&d, Some(NOBODY_UID), Some(NOGROUP_GID)).unwrap();
    d
}

/// Unmounts (as root, lazily) whatever is left mounted when the test fails half-way.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).output();
        }
    }
}

#[test]
fn nobody_mounts_writes_reads_and_unmounts_through_fusermount3() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test runs as root (it drops to the user nobody with setpriv)"
    );
    let fusermount3 = setuid_fusermount3();
    dev_fuse_open_to_users();
    let g = garage();
    let s3 = S3::garage();
    let prefix = unique("unprivileged");

    let (_tmp, bin, home, mnt) = sandbox();
    let _cleanup = Cleanup(mnt.clone());
    let log = home.join("s3mount.log");
    let (mnt_s, log_s, home_s) = (
        mnt.to_str().unwrap(),
        log.to_str().unwrap(),
        home.to_str().unwrap(),
    );
    let env = [
        ("HOME", home_s),
        ("AWS_ACCESS_KEY_ID", g.key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", g.secret.as_str()),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];

    let target = format!("{}/{prefix}", s3.bucket);
    let out = as_nobody(
        &bin,
        &[
            "mount",
            &target,
            mnt_s,
            "--endpoint-url",
            &g.endpoint,
            "--log-file",
            log_s,
            "--log-level",
            "info",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "mount as nobody failed: {}\nlog: {}",
        text(&out),
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        is_mounted(&mnt),
        "s3mount returned but {mnt:?} is not mounted"
    );
    // A mount made for nobody (fusermount3 records the user), not one root made.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mnt_s))
        .unwrap();
    assert!(
        line.contains("fuse.s3mount") && line.contains(&format!("user_id={NOBODY_UID}")),
        "not nobody's s3mount mount: {line}"
    );

    // As nobody: write, read back, list (the files are nobody's).
    let script = format!(
        "set -e; cd '{mnt_s}'; printf 'written by nobody\\n' > hello.txt; mkdir sub; \
         cp hello.txt sub/copy.txt; cat hello.txt; ls -ln . sub"
    );
    let out = as_nobody(Path::new("/bin/sh"), &["-c", &script], &env);
    assert!(out.status.success(), "as nobody: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("written by nobody\n"), "{}", text(&out));
    for name in ["hello.txt", "sub", "copy.txt"] {
        let l = stdout
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not listed: {stdout}"));
        let owner: Vec<_> = l.split_whitespace().skip(2).take(2).collect();
        assert_eq!(owner, ["65534", "65534"], "{name} not nobody's: {l}");
    }
    // Nobody else may enter an ordinary user's mount, root included (no --allow-root).
    let err = fs::read_dir(&mnt).map(|_| ()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "root got in: {err}");

    let out = as_nobody(&fusermount3, &["-u", mnt_s], &env);
    assert!(
        out.status.success(),
        "fusermount3 -u as nobody: {}",
        text(&out)
    );
    // An ordinary user may not raise the mount's readahead: said once in its log (at info),
    // and the mount works without it (above).
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        log_text
            .lines()
            .filter(|l| l.contains("readahead stays at 128 KiB"))
            .count(),
        1,
        "no single readahead line in the log:\n{log_text}"
    );
    assert!(
        !is_mounted(&mnt),
        "{mnt:?} still mounted after fusermount3 -u"
    );

    assert_eq!(
        s3.get(&format!("{prefix}/hello.txt")).as_deref(),
        Some(&b"written by nobody\n"[..])
    );
    assert_eq!(
        s3.get(&format!("{prefix}/sub/copy.txt")).as_deref(),
        Some(&b"written by nobody\n"[..])
    );
}

/// Without `fusermount3` an ordinary user cannot mount at all; the message says so and
/// what to install, on one line, instead of a bare "No such file or directory".
#[test]
fn nobody_without_fusermount3_is_told_to_install_fuse3() {
    dev_fuse_open_to_users();
    let g = garage();
    let s3 = S3::garage();
    let (tmp, bin, home, mnt) = sandbox();
    let empty = nobodys_dir(tmp.path(), "empty-bin");
    let _cleanup = Cleanup(mnt.clone());
    let target = format!("{}/{}", s3.bucket, unique("nofusermount"));
    let out = as_nobody(
        &bin,
        &[
            "mount",
            &target,
            mnt.to_str().unwrap(),
            "--endpoint-url",
            &g.endpoint,
            "--foreground",
        ],
        &[
            // No fusermount3 on PATH. fuser also tries /sbin and /bin, which hold one
            // here; FUSERMOUNT_PATH (which fuser uses instead of searching) hides them.
            ("PATH", empty.to_str().unwrap()),
            ("HOME", home.to_str().unwrap()),
            ("AWS_ACCESS_KEY_ID", g.key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", g.secret.as_str()),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("FUSERMOUNT_PATH", "/nonexistent/fusermount3"),
        ],
    );
    assert!(
        !out.status.success(),
        "mounted without fusermount3: {}",
        text(&out)
    );
    assert!(!is_mounted(&mnt), "{mnt:?} is mounted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.trim_end();
    assert!(!line.contains('\n'), "not one line: {}", text(&out));
    assert!(
        line.contains("fusermount3 was not found") && line.contains("apt-get install fuse3"),
        "does not name the missing fusermount3: {}",
        text(&out)
    );
}

/// `sh -c script` in a private mount namespace (what it mounts is seen by nobody else), in
/// a clean environment: a standard PATH, `home` as HOME and Garage's keys as the only
/// credentials.
fn in_private_mount_namespace(script: &str, home: &Path) -> Output {
    let g = garage();
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare (util-linux)")
}

/// A `/dev/fuse` the user may not open (mode 0600, as some containers pass it in): the
/// message says so and how to fix it. The device is replaced only inside a private mount
/// namespace (a 0600 node bound over it), so nothing else on the machine sees the change.
#[test]
fn nobody_with_a_closed_dev_fuse_is_told_to_open_it() {
    let g = garage();
    let s3 = S3::garage();
    let (tmp, bin, home, mnt) = sandbox();
    let before = fs::metadata("/dev/fuse").unwrap().mode();
    let node = tmp.path().join("fuse-0600");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: a plain mknod(2) of the FUSE character device (10, 229) on a path we own.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(10, 229)) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    let _cleanup = Cleanup(mnt.clone());
    let target = format!("{}/{}", s3.bucket, unique("closedfuse"));
    let script = format!(
        "mount --bind '{}' /dev/fuse && exec /usr/bin/setpriv --reuid=nobody --regid=nogroup \
         --clear-groups -- '{}' mount '{target}' '{}' --endpoint-url '{}' --foreground",
        node.display(),
        bin.display(),
        mnt.display(),
        g.endpoint
    );
    let out = in_private_mount_namespace(&script, &home);
    assert!(!out.status.success(), "mounted: {}", text(&out));
    assert!(!is_mounted(&mnt), "{mnt:?} is mounted");
    let line = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert!(!line.contains('\n'), "not one line: {}", text(&out));
    assert!(
        line.contains("this user may not open /dev/fuse") && line.contains("chmod 0666"),
        "does not name the closed /dev/fuse: {}",
        text(&out)
    );
    assert_eq!(
        fs::metadata("/dev/fuse").unwrap().mode(),
        before,
        "the machine's /dev/fuse changed: the bind mount leaked out of its namespace"
    );
}

/// No `/dev/fuse` at all (module not loaded, or a container without the device): the
/// message says so and what to do. The device is hidden (an empty tmpfs over /dev) only
/// inside a private mount namespace.
#[test]
fn a_missing_dev_fuse_says_to_load_the_module() {
    let g = garage();
    let s3 = S3::garage();
    let dir = crate::common::empty_dir();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let _cleanup = Cleanup(mnt.clone());
    let target = format!("{}/{}", s3.bucket, unique("nodevfuse"));
    let script = format!(
        "mount -t tmpfs none /dev && exec '{}' mount '{target}' '{}' --endpoint-url '{}' \
         --foreground",
        crate::common::mount::bin(),
        mnt.display(),
        g.endpoint
    );
    let out = in_private_mount_namespace(&script, dir.path());
    assert!(!out.status.success(), "mounted: {}", text(&out));
    assert!(!is_mounted(&mnt), "{mnt:?} is mounted");
    // In the foreground stderr is also the log, where fuser logs its own line first: the
    // error is the one `s3mount: error:` line.
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("s3mount: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "not one error line: {}", text(&out));
    let line = errors[0];
    assert!(
        line.contains("there is no /dev/fuse") && line.contains("modprobe fuse"),
        "does not name the missing device: {}",
        text(&out)
    );
    assert!(
        Path::new("/dev/fuse").exists(),
        "the machine's /dev/fuse is gone"
    );
}
