//! Special files as s3fs stores them: `mknod` of a regular file, FIFOs (`mkfifo`),
//! character and block devices and unix sockets (`bind`) are empty objects whose
//! `x-amz-meta-mode` carries the file type (and `x-amz-meta-rdev` the device number); they
//! read back as such after a remount, and a FIFO works as a pipe (the kernel's business).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;
use std::time::Duration;

use crate::common::{self, Mount, S3, rt};

/// `x-amz-meta-NAME` of `key`.
fn meta(s3: &S3, key: &str, name: &str) -> Option<String> {
    rt().block_on(async {
        let out = s3
            .client
            .head_object()
            .bucket(&s3.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        out.metadata().and_then(|m| m.get(name).cloned())
    })
}

fn mknod(path: &std::path::Path, mode: u32, dev: u64) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mknod(2) reads nothing else.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn fifos_devices_sockets_and_plain_mknod_are_stored_as_s3fs_does() {
    let (s3, p, m) = common::mount_fresh_prefix("special");
    assert!(
        Command::new("mkfifo")
            .arg(m.path("fifo"))
            .status()
            .unwrap()
            .success()
    );
    let dev = libc::makedev(1, 3);
    mknod(&m.path("chr"), libc::S_IFCHR | 0o600, dev).unwrap();
    mknod(&m.path("blk"), libc::S_IFBLK | 0o600, libc::makedev(7, 0)).unwrap();
    mknod(&m.path("reg"), libc::S_IFREG | 0o640, 0).unwrap();
    let sock = std::os::unix::net::UnixListener::bind(m.path("sock")).unwrap();
    drop(sock);

    let check = |m: &Mount| {
        assert!(fs::metadata(m.path("fifo")).unwrap().file_type().is_fifo());
        let c = fs::metadata(m.path("chr")).unwrap();
        assert!(c.file_type().is_char_device());
        assert_eq!(c.rdev(), dev);
        assert!(
            fs::metadata(m.path("blk"))
                .unwrap()
                .file_type()
                .is_block_device()
        );
        let r = fs::metadata(m.path("reg")).unwrap();
        assert!(r.is_file() && r.len() == 0);
        assert_eq!(r.mode() & 0o7777, 0o640);
        assert!(
            fs::symlink_metadata(m.path("sock"))
                .unwrap()
                .file_type()
                .is_socket()
        );
    };
    check(&m);
    // In the bucket: empty objects with s3fs's mode (and rdev) headers.
    let mode = |k: &str| {
        meta(&s3, &format!("{p}/{k}"), "mode")
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(mode("fifo") & libc::S_IFMT, libc::S_IFIFO);
    assert_eq!(mode("chr"), libc::S_IFCHR | 0o600);
    assert_eq!(mode("sock") & libc::S_IFMT, libc::S_IFSOCK);
    assert_eq!(mode("reg"), libc::S_IFREG | 0o640);
    assert_eq!(
        meta(&s3, &format!("{p}/chr"), "rdev"),
        Some(dev.to_string())
    );
    assert_eq!(s3.get(&format!("{p}/fifo")).as_deref(), Some(&b""[..]));

    // A FIFO is a pipe: the kernel serves it, nothing goes to S3.
    let fifo = m.path("fifo");
    let writer = std::thread::spawn(move || fs::write(fifo, b"through the pipe"));
    let (tx, rx) = std::sync::mpsc::channel();
    let fifo = m.path("fifo");
    std::thread::spawn(move || tx.send(fs::read(fifo)).unwrap());
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the FIFO blocked");
    assert_eq!(got.unwrap(), b"through the pipe");
    writer.join().unwrap().unwrap();
    assert_eq!(s3.get(&format!("{p}/fifo")).as_deref(), Some(&b""[..]));

    // Read back from the objects' metadata by a new mount.
    drop(m);
    let m2 = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    check(&m2);
}
