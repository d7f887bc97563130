//! Permission checks as on a local disk, with `--allow-other` and a second user
//! (`nobody`, through `setpriv`): the kernel checks mode bits (`default_permissions`),
//! including sticky directories; chown by a non-root user fails with EPERM and by root
//! clears setuid; a write by a non-owner clears setuid; chmod of setgid by a non-member
//! drops it — and those changes are what the object keeps, read back by a new mount.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::{Mount, S3, unique};

/// Run `sh -c script` as `nobody` in `dir`; whether it succeeded.
fn as_nobody(dir: &std::path::Path, script: &str) -> bool {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn mode(m: &Mount, name: &str) -> u32 {
    fs::metadata(m.path(name)).unwrap().permissions().mode() & 0o7777
}

#[test]
fn permissions_are_checked_and_setuid_is_cleared_as_linux_does() {
    let s3 = S3::garage();
    let p = unique("perms");
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &["--allow-other"]);
    let chmod = |name: &str, mode: u32| {
        fs::set_permissions(m.path(name), fs::Permissions::from_mode(mode)).unwrap()
    };
    fs::write(m.path("mine"), b"root's").unwrap();
    chmod("mine", 0o644);
    // Mode bits: nobody may read but not write, and may not chown.
    assert!(as_nobody(&m.dir, "cat mine > /dev/null"));
    assert!(!as_nobody(&m.dir, "echo x >> mine"));
    assert!(!as_nobody(&m.dir, "chown 65534 mine"));
    // A write by a non-owner clears setuid.
    fs::write(m.path("suid"), b"").unwrap();
    chmod("suid", 0o4777);
    assert!(as_nobody(&m.dir, "echo appended >> suid"));
    assert_eq!(mode(&m, "suid"), 0o777);
    // chown by root clears setuid too.
    fs::write(m.path("owned"), b"").unwrap();
    chmod("owned", 0o4755);
    std::os::unix::fs::chown(m.path("owned"), Some(65534), Some(65534)).unwrap();
    assert_eq!(mode(&m, "owned"), 0o755);
    // chmod of the setgid bit by a non-member of the file's group drops it.
    fs::write(m.path("theirs"), b"").unwrap();
    std::os::unix::fs::chown(m.path("theirs"), Some(65534), Some(0)).unwrap();
    assert!(as_nobody(&m.dir, "chmod 2755 theirs"));
    assert_eq!(mode(&m, "theirs"), 0o755);
    // A sticky directory: nobody may not remove root's file in it.
    fs::create_dir(m.path("tmp")).unwrap();
    chmod("tmp", 0o1777);
    fs::write(m.path("tmp/roots"), b"").unwrap();
    assert!(!as_nobody(&m.dir, "rm -f tmp/roots"));
    assert!(m.path("tmp/roots").exists());

    // What the objects keep, read back by a new mount.
    drop(m);
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    assert_eq!(mode(&m, "suid"), 0o777);
    assert_eq!(fs::read(m.path("suid")).unwrap(), b"appended\n");
    assert_eq!(mode(&m, "owned"), 0o755);
    assert_eq!(mode(&m, "theirs"), 0o755);
}
