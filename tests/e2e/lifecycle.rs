//! The end of a file's and of a mount's life: `close` carries the commit's result whichever
//! thread of the opener closes, a new empty file is committed at its close, and the daemon
//! shuts down cleanly on signals (once: no new writers, commit and exit 0; twice: abort and
//! exit; with a shell inside the mount: lazily unmounted, and gone within seconds).

use std::fs;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::mount::{signal, wait_gone};
use crate::common::{self, Conn, Mount, S3, errno, garage_key, is_mounted, pseudo_random, unique};

/// A mount of `prefix` with a key that may read the test bucket but not write it.
fn read_only_key_mount(s3: &S3, prefix: &str) -> Mount {
    let (id, secret) = garage_key("s3mount-test-ro", &s3.bucket, "ro");
    let mut conn = Conn::garage();
    conn.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), id),
        ("AWS_SECRET_ACCESS_KEY".into(), secret),
    ];
    Mount::with(&conn, &format!("{}/{prefix}", s3.bucket), &[])
}

#[test]
fn close_from_another_thread_and_an_empty_new_file_return_the_upload_error() {
    let s3 = S3::garage();
    let p = unique("close");
    let m = read_only_key_mount(&s3, &p);

    // Written by one thread, closed by another: that close must report the denial.
    let mut f = fs::File::create(m.path("a")).unwrap();
    f.write_all(b"denied").unwrap();
    let fd = f.into_raw_fd();
    let rc = std::thread::spawn(move || {
        // SAFETY: `fd` was just released by `File` and is closed exactly once here.
        let rc = unsafe { libc::close(fd) };
        (rc, std::io::Error::last_os_error())
    })
    .join()
    .unwrap();
    assert_eq!(rc.0, -1, "close from a second thread reported success");
    assert_eq!(errno(&rc.1), libc::EACCES, "{}", rc.1);

    // `touch` of a new file: nothing written, and still the close fails.
    let out = Command::new("touch").arg(m.path("b")).output().unwrap();
    assert!(!out.status.success(), "touch reported success");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(s3.get(&format!("{p}/a")).is_none() && s3.get(&format!("{p}/b")).is_none());
}

#[test]
fn an_empty_new_file_exists_after_its_close_and_a_redirect_streams_its_content() {
    let (s3, p, m) = common::mount_fresh_prefix("empty");
    Command::new("touch").arg(m.path("t")).status().unwrap();
    assert_eq!(s3.get(&format!("{p}/t")).as_deref(), Some(&b""[..]));
    // `cmd > f`: the shell closes the new file once before the writes; the content wins.
    let data = pseudo_random(12 << 20, 9);
    let src = tempfile::NamedTempFile::new().unwrap();
    fs::write(src.path(), &data).unwrap();
    common::sh(&m.dir, &format!("cat {} > r", src.path().display()));
    assert!(s3.get(&format!("{p}/r")).as_deref() == Some(&data[..]));
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0);
}

#[test]
fn sigterm_during_a_copy_commits_the_whole_file_and_exits_cleanly() {
    let (s3, p, m) = common::mount_fresh_prefix("sigterm-copy");
    let data = pseudo_random(60 << 20, 10);
    let src = tempfile::NamedTempFile::new().unwrap();
    fs::write(src.path(), &data).unwrap();
    let pid = m.daemon_pid();
    let mut cp = Command::new("cp")
        .arg(src.path())
        .arg(m.path("big"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(pid, libc::SIGTERM);
    let cp_ok = cp.wait().unwrap().success();
    wait_gone(pid, Duration::from_secs(20));
    assert!(!is_mounted(&m.dir), "still mounted after the daemon exited");
    match s3.get(&format!("{p}/big")) {
        Some(got) => assert!(got == data, "a partial object was published"),
        None => assert!(!cp_ok, "cp succeeded but nothing was stored"),
    }
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0);
    let log = m.log_text();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_second_sigterm_aborts_and_a_shell_inside_does_not_keep_the_daemon() {
    // Twice: a writer that holds its file open is aborted; nothing is published.
    let (s3, p, m) = common::mount_fresh_prefix("sigterm-twice");
    let pid = m.daemon_pid();
    // Writes 9 MiB (one part sent, the rest buffered) and keeps the file open, unclosed.
    let script = "import time\nf = open('held', 'wb')\nf.write(b'x' * (9 << 20))\nf.flush()\ntime.sleep(30)\n";
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(&m.dir)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal(pid, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // Shutting down (waiting for the writer): no new writers.
    let e = fs::write(m.path("late"), b"x").expect_err("a new file during shutdown");
    assert_eq!(errno(&e), libc::EROFS, "{e}");
    signal(pid, libc::SIGTERM);
    wait_gone(pid, Duration::from_secs(15));
    let _ = holder.kill();
    let _ = holder.wait();
    let held = s3.get(&format!("{p}/held"));
    assert!(
        held.is_none(),
        "an aborted file was published\n{}",
        m.log_text()
    );
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0, "{}", m.log_text());

    // A shell whose working directory is inside the mount: the daemon still goes.
    let (_, _, m) = common::mount_fresh_prefix("sigterm-shell");
    let pid = m.daemon_pid();
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg("sleep 30")
        .current_dir(&m.dir)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(pid, libc::SIGTERM);
    let took = wait_gone(pid, Duration::from_secs(10));
    let _ = shell.kill();
    let _ = shell.wait();
    assert!(took < Duration::from_secs(10));
    assert!(m.log_text().contains("lazily"), "{}", m.log_text());
}

#[test]
fn a_rename_whose_commit_fails_answers_at_once_and_drops_the_name() {
    let s3 = S3::garage();
    let p = unique("rename-denied");
    let m = read_only_key_mount(&s3, &p);
    // A new file still open for writing: rename commits it first, which is denied, and
    // the name that never came to exist is dropped from the kernel's cache from inside
    // that rename — the kernel holds the directory locked until the rename is answered.
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(&m.dir).unwrap().dev();
    let mut f = fs::File::create(m.path("c")).unwrap();
    f.write_all(b"never stored").unwrap();
    let (from, to) = (m.path("c"), m.path("d"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(fs::rename(from, to)).unwrap());
    let Ok(r) = rx.recv_timeout(Duration::from_secs(20)) else {
        // Deadlocked: abort the FUSE connection so that the test fails instead of hanging.
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let _ = Command::new("mount")
            .args(["-t", "fusectl", "none", "/sys/fs/fuse/connections"])
            .status();
        let _ = fs::write(format!("/sys/fs/fuse/connections/{minor}/abort"), "1");
        panic!("rename hung: the invalidation waited on the rename it was sent from");
    };
    let e = r.expect_err("rename of a file whose commit is denied succeeded");
    assert_eq!(errno(&e), libc::EACCES, "{e}");
    drop(f);
    // The directory is usable, the name is gone, and nothing was stored.
    let names: Vec<_> = fs::read_dir(&m.dir).unwrap().flatten().collect();
    assert!(names.is_empty(), "{names:?}");
    assert!(fs::metadata(m.path("c")).is_err());
    assert!(s3.get(&format!("{p}/c")).is_none() && s3.get(&format!("{p}/d")).is_none());
}
