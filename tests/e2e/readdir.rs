//! Streamed directory listings through a real mount on Garage, with a few keys per LIST
//! page (the hidden `S3MOUNT_TEST_LIST_MAX_KEYS`) so that a small directory spans many
//! pages: every name exactly once (also a file `x` and a directory `x/` pages apart, and
//! while names are added mid-listing), `telldir`/`seekdir` back a little and far, and
//! `rewinddir` listing again; `ls -l` of a directory probing its SELinux and ACL
//! attributes once for the mount, not once per entry.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::common::{Conn, Mount, S3, sh, unique};

/// Keys per LIST page in this mount.
const PAGE: &str = "7";

/// A directory opened with libc's `opendir`, read an entry at a time as programs do.
struct Dir(*mut libc::DIR);

impl Dir {
    fn open(path: &Path) -> Dir {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let d = unsafe { libc::opendir(c.as_ptr()) };
        assert!(
            !d.is_null(),
            "opendir {path:?}: {}",
            std::io::Error::last_os_error()
        );
        Dir(d)
    }

    /// The next entry but `.` and `..`: its name and whether it is a directory.
    fn next(&mut self) -> Option<(String, bool)> {
        loop {
            // SAFETY: an open DIR; the entry is copied out before the next call.
            let e = unsafe { libc::readdir(self.0) };
            if e.is_null() {
                return None;
            }
            // SAFETY: readdir returned a valid entry with a NUL-terminated name.
            let (name, ty) = unsafe {
                (
                    CStr::from_ptr((*e).d_name.as_ptr())
                        .to_string_lossy()
                        .into_owned(),
                    (*e).d_type,
                )
            };
            if name != "." && name != ".." {
                return Some((name, ty == libc::DT_DIR));
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<(String, bool)> {
        (0..n).map_while(|_| self.next()).collect()
    }

    fn rest(&mut self) -> Vec<(String, bool)> {
        std::iter::from_fn(|| self.next()).collect()
    }

    fn tell(&mut self) -> libc::c_long {
        // SAFETY: an open DIR.
        unsafe { libc::telldir(self.0) }
    }

    fn seek(&mut self, pos: libc::c_long) {
        // SAFETY: an open DIR and a position telldir gave for it.
        unsafe { libc::seekdir(self.0, pos) }
    }

    fn rewind(&mut self) {
        // SAFETY: an open DIR.
        unsafe { libc::rewinddir(self.0) }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: an open DIR, closed once.
        unsafe { libc::closedir(self.0) };
    }
}

/// Every name exactly once; panics with the repeated one otherwise.
fn once(entries: &[(String, bool)]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (n, _) in entries {
        assert!(seen.insert(n.clone()), "{n:?} listed twice");
    }
    seen
}

#[test]
fn a_directory_of_many_list_pages_is_streamed_with_every_name_once() {
    let s3 = S3::garage();
    let p = unique("readdir");
    // With 7 keys a page: `x` and `x/` are two pages apart (x-1..x-9 and x.txt sort
    // between them), and the 40 `f` files fill six pages.
    let mut names: Vec<String> = (0..40).map(|i| format!("f{i:03}")).collect();
    names.extend((1..10).map(|i| format!("x-{i}")));
    names.extend(["x.txt".into(), "y".into()]);
    let mut objects: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| (format!("{p}/d/{n}"), b"1".to_vec()))
        .collect();
    objects.push((format!("{p}/d/"), vec![]));
    objects.push((format!("{p}/d/x"), b"shadowed".to_vec()));
    objects.push((format!("{p}/d/x/inner"), b"2".to_vec()));
    s3.put_many(objects);
    names.push("x".into());
    let before: BTreeSet<String> = names.iter().cloned().collect();

    let conn = Conn::garage().with_env("S3MOUNT_TEST_LIST_MAX_KEYS", PAGE);
    let m = Mount::with(&conn, &format!("{}/{p}", s3.bucket), &[]);
    let d = m.path("d");

    // Positions: a seek back a little and a seek back far both resume where they were.
    let mut dir = Dir::open(&d);
    let first = dir.take(3);
    let far = dir.tell();
    let mut more = dir.take(20);
    let near = dir.tell();
    more.extend(dir.take(2));
    dir.seek(near);
    assert_eq!(dir.next().as_ref(), Some(&more[20]), "seek back a little");
    dir.seek(far);
    assert_eq!(dir.next().as_ref(), Some(&more[0]), "seek back far");
    drop(dir);

    // Names added while the listing is under way: before what was read, and ahead.
    let mut dir = Dir::open(&d);
    let mut got = dir.take(5);
    s3.put(&format!("{p}/d/a-new"), "n");
    s3.put(&format!("{p}/d/w-new"), "n");
    got.extend(dir.rest());
    let listed = once(&got);
    assert!(
        before.is_subset(&listed),
        "skipped: {:?}",
        before.difference(&listed)
    );
    let extra: Vec<_> = listed.difference(&before).collect();
    assert!(
        extra.iter().all(|n| *n == "a-new" || *n == "w-new"),
        "{extra:?}"
    );
    let x: Vec<_> = got.iter().filter(|(n, _)| n == "x").collect();
    assert_eq!(x, [&("x".to_owned(), true)], "x is the directory");
    assert_eq!(&first[..], &got[..3], "the same order as before");

    // rewinddir lists again: now with both new names.
    dir.rewind();
    let again = once(&dir.rest());
    assert_eq!(again.len(), before.len() + 2);
    assert!(again.contains("a-new") && again.contains("w-new"));
    drop(dir);

    // What `ls -l` shows: every name once, the sizes from the listing.
    let ls = sh(&m.dir, "LC_ALL=C ls -l d | tail -n +2");
    assert_eq!(ls.lines().count(), before.len() + 2, "{ls}");
    assert!(
        ls.lines().any(|l| l.starts_with('d') && l.ends_with(" x")),
        "{ls}"
    );
    assert_eq!(
        std::fs::read_to_string(m.path("d/x/inner")).unwrap(),
        "2",
        "the directory wins"
    );
}

/// `ls -l` asks for `security.selinux` and `system.posix_acl_access` of every entry until
/// one answer says the device has none (EOPNOTSUPP; coreutils then remembers the device).
/// Answered ENODATA, 300 entries cost 600 FUSE round trips; now a handful, while `user.*`
/// attributes still work.
#[test]
fn ls_l_probes_acl_and_selinux_attributes_once_not_per_entry() {
    use crate::common::metrics::{free_port, scrape, value};
    const GETXATTR: &str = "s3mount_fuse_requests_total{opcode=\"getxattr\"}";
    let s3 = S3::garage();
    let p = unique("ls-probe");
    s3.put_many(
        (0..300)
            .map(|i| (format!("{p}/d/e{i:03}"), Vec::new()))
            .collect(),
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &["--metrics-addr", &addr]);
    let addr = addr.parse().unwrap();
    let before = value(&scrape(addr), GETXATTR);
    let out = sh(&m.path(""), "LC_ALL=C ls -l d");
    assert_eq!(
        out.lines().filter(|l| l.contains(" e")).count(),
        300,
        "{out}"
    );
    assert!(
        out.lines().skip(1).all(|l| l.starts_with("-rw")),
        "an entry shown with an ACL or a label (mode column): {out}"
    );
    let probes = value(&scrape(addr), GETXATTR) - before;
    assert!(
        probes <= 10.0,
        "{probes} getxattr requests for ls -l of 300 entries"
    );

    // user.* attributes are unaffected.
    let f = m.path("d/e000");
    let name = CString::new("user.k").unwrap();
    let path = CString::new(f.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings and a value buffer of the given length.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    assert_eq!(
        rc,
        0,
        "setxattr user.k: {}",
        std::io::Error::last_os_error()
    );
    let mut buf = [0u8; 8];
    // SAFETY: as above.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 8) };
    assert_eq!(n, 1, "getxattr user.k: {}", std::io::Error::last_os_error());
    assert_eq!(buf[0], b'v');
}
