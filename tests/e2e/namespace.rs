//! Names through the mount, against Garage: listing (thousands of objects, nested and
//! marker-only directories), mkdir/rmdir/rm/mv, renaming files and whole directories,
//! the mount's prefix as a hard boundary, symlinks (and their xattrs), hard links refused,
//! and the cost of creating names in new directories with `--negative-cache` (other
//! clients' names then show up after the TTL).

use std::fs;
use std::io::ErrorKind;
use std::time::Duration;

use crate::common::{Mount, S3, errno, mount_fresh_prefix, sh, unique};

#[test]
fn lists_2500_objects_nested_and_marker_dirs() {
    let s3 = S3::garage();
    let p = unique("list");
    let mut objects: Vec<(String, Vec<u8>)> = (0..2500)
        .map(|i| (format!("{p}/big/f{i:05}"), vec![b'x'; i % 7]))
        .collect();
    objects.push((format!("{p}/a/b/c/deep.txt"), b"deep".to_vec()));
    objects.push((format!("{p}/marker/"), vec![]));
    objects.push((format!("{p}/top.txt"), b"top".to_vec()));
    s3.put_many(objects);

    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    let mut big: Vec<_> = fs::read_dir(m.path("big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    big.sort();
    assert_eq!(big.len(), 2500, "all pages listed");
    assert_eq!(big[0], "f00000");
    assert_eq!(big[2499], "f02499");
    // Sizes come from the listing (`ls -l`).
    let listing = sh(&m.dir, "ls -l big | tail -n +2 | wc -l");
    assert_eq!(listing.trim(), "2500");
    assert_eq!(fs::metadata(m.path("big/f00006")).unwrap().len(), 6);

    let mut root: Vec<_> = fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    root.sort();
    assert_eq!(root, vec!["a", "big", "marker", "top.txt"]);
    // Implicit directories at every level.
    assert!(m.path("a").is_dir());
    assert!(m.path("a/b").is_dir());
    assert!(m.path("a/b/c").is_dir());
    assert_eq!(fs::read(m.path("a/b/c/deep.txt")).unwrap(), b"deep");
    // A marker-only directory exists and is empty.
    assert!(m.path("marker").is_dir());
    assert_eq!(fs::read_dir(m.path("marker")).unwrap().count(), 0);
    assert_eq!(
        errno(&fs::metadata(m.path("nope")).unwrap_err()),
        libc::ENOENT
    );
}

#[test]
fn rm_mkdir_rmdir() {
    let s3 = S3::garage();
    let p = unique("dirs");
    s3.put(&format!("{p}/full/x"), b"1".to_vec());
    s3.put(&format!("{p}/gone.txt"), b"bye".to_vec());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);

    fs::remove_file(m.path("gone.txt")).unwrap();
    assert!(s3.get(&format!("{p}/gone.txt")).is_none());
    assert_eq!(
        errno(&fs::remove_file(m.path("gone.txt")).unwrap_err()),
        libc::ENOENT
    );

    fs::create_dir(m.path("newdir")).unwrap();
    assert!(
        s3.get(&format!("{p}/newdir/")).is_some(),
        "marker object visible to others"
    );
    assert!(m.path("newdir").is_dir());
    assert_eq!(
        fs::create_dir(m.path("newdir")).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    fs::write(m.path("newdir/inside"), b"in").unwrap();
    assert_eq!(s3.get(&format!("{p}/newdir/inside")).unwrap(), b"in");

    let e = fs::remove_dir(m.path("full")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOTEMPTY);
    fs::remove_file(m.path("newdir/inside")).unwrap();
    fs::remove_dir(m.path("newdir")).unwrap();
    assert!(s3.get(&format!("{p}/newdir/")).is_none());
    assert_eq!(
        errno(&fs::remove_dir(m.path("newdir")).unwrap_err()),
        libc::ENOENT
    );
    // rm -r of a tree.
    sh(&m.dir, "rm -r full");
    assert!(s3.keys(&format!("{p}/full")).is_empty());
    // mv works (rename falls back to copy + unlink).
    fs::write(m.path("src.txt"), b"moving").unwrap();
    sh(&m.dir, "mv src.txt dst.txt");
    assert_eq!(s3.get(&format!("{p}/dst.txt")).unwrap(), b"moving");
    assert!(s3.get(&format!("{p}/src.txt")).is_none());
}

#[test]
fn prefix_is_a_hard_boundary() {
    let s3 = S3::garage();
    let p = unique("prefix");
    s3.put(&format!("{p}-sibling/secret"), b"no".to_vec());
    s3.put(&format!("{p}outside"), b"no".to_vec());
    s3.put(&format!("{p}/inside/file"), b"yes".to_vec());
    let m = Mount::garage(&format!("s3://{}/{p}/inside/", s3.bucket), &[]);
    let names: Vec<_> = fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["file"]);
    assert!(fs::metadata(m.path("../secret")).is_err() || !m.path("../secret").starts_with(&m.dir));
    fs::write(m.path("written-at-root"), b"root").unwrap();
    assert_eq!(
        s3.get(&format!("{p}/inside/written-at-root")).unwrap(),
        b"root"
    );
    assert!(s3.get("written-at-root").is_none());
}

#[test]
fn rename_file_over_file_and_a_1200_file_directory() {
    let (s3, p, m) = mount_fresh_prefix("ren");
    fs::write(m.path("a"), b"from a").unwrap();
    fs::write(m.path("b"), b"from b").unwrap();
    fs::rename(m.path("a"), m.path("b")).unwrap();
    assert_eq!(s3.get(&format!("{p}/b")).unwrap(), b"from a");
    assert!(s3.get(&format!("{p}/a")).is_none());
    assert!(!m.path("a").exists());

    let objects: Vec<(String, Vec<u8>)> = (0..1200)
        .map(|i| {
            (
                format!("{p}/dir/sub{}/f{i:04}", i % 3),
                format!("file {i}").into_bytes(),
            )
        })
        .collect();
    s3.put_many(objects);
    fs::rename(m.path("dir"), m.path("moved")).unwrap();
    assert!(s3.keys(&format!("{p}/dir/")).is_empty());
    let moved = s3.keys(&format!("{p}/moved/"));
    assert_eq!(moved.len(), 1200);
    assert_eq!(s3.get(&format!("{p}/moved/sub1/f0007")).unwrap(), b"file 7");
    assert_eq!(fs::read(m.path("moved/sub2/f1199")).unwrap(), b"file 1199");
    assert!(!m.path("dir").exists());
}

#[test]
fn symlinks_xattrs_and_hard_links() {
    let (s3, p, m) = mount_fresh_prefix("links");
    fs::write(m.path("target.txt"), b"pointed at").unwrap();
    std::os::unix::fs::symlink("target.txt", m.path("link")).unwrap();
    assert_eq!(
        fs::read_link(m.path("link")).unwrap().to_str(),
        Some("target.txt")
    );
    assert_eq!(fs::read(m.path("link")).unwrap(), b"pointed at");
    assert_eq!(s3.get(&format!("{p}/link")).unwrap(), b"target.txt");
    assert!(
        fs::symlink_metadata(m.path("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let e = fs::hard_link(m.path("target.txt"), m.path("hard")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOTSUP);

    sh(&m.dir, "setfattr -n user.color -v blue target.txt");
    let out = sh(&m.dir, "getfattr -n user.color --only-values target.txt");
    assert_eq!(out, "blue");
    let out = sh(&m.dir, "getfattr -d target.txt");
    assert!(out.contains("user.color=\"blue\""), "{out}");
    sh(&m.dir, "setfattr -x user.color target.txt");
    let out = std::process::Command::new("getfattr")
        .args(["-n", "user.color"])
        .arg(m.path("target.txt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(fs::read(m.path("target.txt")).unwrap(), b"pointed at");
}

/// Count the S3 requests of SDK operation `op` in a trace log whose key contains `part`.
fn requests(log: &str, op: &str, part: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("S3 request") && l.contains(&format!("op=\"{op}\"")))
        .filter(|l| l.contains(part))
        .count()
}

#[test]
fn with_the_negative_cache_new_directories_cost_one_upload_per_file() {
    let s3 = S3::garage();
    let p = unique("known");
    let m = Mount::garage(
        &format!("{}/{p}", s3.bucket),
        &["--negative-cache", "--log-level", "trace"],
    );
    // What cp -r and tar -x do: make a directory, then create names in it (open, write,
    // close: one PutObject each, and with --negative-cache no lookup request; by default
    // one LIST each, see visibility.rs). A shell redirect (`echo $i > f`) closes the new
    // file once before writing, which commits it empty first: two PutObjects (see the
    // README).
    let src = tempfile::tempdir().unwrap();
    let s = src.path().display();
    sh(
        &m.dir,
        &format!(
            "mkdir {s}/d {s}/d/sub && for i in $(seq 1 30); do echo $i > {s}/d/f$i; done && \
             echo deep > {s}/d/sub/x && cp -r {s}/d d"
        ),
    );
    let log = m.log_text();
    assert_eq!(
        requests(&log, "head_object", "/d/f"),
        0,
        "no HEAD for new names"
    );
    assert_eq!(
        requests(&log, "list_objects_v2", "/d/f"),
        0,
        "no LIST for new names"
    );
    assert_eq!(requests(&log, "put_object", "/d/f"), 30);
    for i in 1..=30 {
        assert_eq!(
            s3.get(&format!("{p}/d/f{i}")).unwrap(),
            format!("{i}\n").as_bytes()
        );
    }
    assert_eq!(s3.get(&format!("{p}/d/sub/x")).unwrap(), b"deep\n");
    // Names the mount removed or renamed stay exact.
    sh(
        &m.dir,
        "rm d/f1 && mv d/f2 d/g && test ! -e d/f1 && test ! -e d/f2 && test -e d/g",
    );
    assert_eq!(s3.get(&format!("{p}/d/f1")), None);
    assert_eq!(s3.get(&format!("{p}/d/g")).unwrap(), b"2\n");
    // Another client's name shows up once the metadata TTL (1 s) has passed.
    s3.put(&format!("{p}/d/theirs"), b"from elsewhere".to_vec());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(fs::read(m.path("d/theirs")).unwrap(), b"from elsewhere");
    assert!(sh(&m.dir, "ls d").lines().any(|l| l == "theirs"));
    // Creating after the TTL re-lists the directory once instead of looking names up.
    let before = requests(&m.log_text(), "list_objects_v2", "/d/");
    std::thread::sleep(Duration::from_millis(1500));
    sh(&m.dir, "for i in $(seq 1 10); do echo $i > d/h$i; done");
    let log = m.log_text();
    assert_eq!(requests(&log, "head_object", "/d/h"), 0);
    let lists = requests(&log, "list_objects_v2", "/d/") - before;
    assert!((1..=3).contains(&lists), "{lists} listings for 10 creates");
}

#[test]
fn names_up_to_fuses_limit_are_listed_and_created_while_the_key_fits() {
    let (s3, p, m) = mount_fresh_prefix("longnames");
    // Longer than local file systems allow (255), within FUSE's 1,024 and S3's key limit
    // (Garage itself stores keys up to about 500 bytes: its LMDB's key size).
    let long = "l".repeat(300);
    std::fs::write(m.path(&long), b"long name").unwrap();
    assert_eq!(
        s3.get(&format!("{p}/{long}")).as_deref(),
        Some(&b"long name"[..])
    );
    let theirs = "t".repeat(280);
    s3.put(&format!("{p}/{theirs}"), b"from another tool".to_vec());
    let mut names: Vec<String> = std::fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [long.clone(), theirs.clone()]);
    assert_eq!(
        std::fs::read(m.path(&theirs)).unwrap(),
        b"from another tool"
    );
    // A name whose key would pass S3's 1,024 bytes: refused before anything is sent.
    let too_long = "x".repeat(1024 - p.len());
    let e = std::fs::write(m.path(&too_long), b"x").unwrap_err();
    assert_eq!(errno(&e), libc::ENAMETOOLONG, "{e}");
    let e = std::fs::create_dir(m.path(&"d".repeat(1024 - p.len() - 1))).unwrap_err();
    assert_eq!(errno(&e), libc::ENAMETOOLONG, "{e}");
    // statfs reports the limit.
    let c = std::ffi::CString::new(m.dir.to_str().unwrap()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a statvfs to fill.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_namemax, 1024);
}

/// `setxattr(2)`/`getxattr(2)` through libc (setfattr refuses names without a namespace).
fn xattr_set(path: &std::path::Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a value buffer of the given length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn xattr_get(path: &std::path::Path, name: &str) -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(rc as usize);
    Ok(buf)
}

#[test]
fn trusted_and_namespace_less_xattrs_are_stored_and_security_ones_are_not() {
    let (_s3, p, m) = mount_fresh_prefix("xattr-ns");
    fs::write(m.path("f"), b"x").unwrap();
    // As root: trusted.* is ours to keep, as is a name without a namespace.
    xattr_set(&m.path("f"), "trusted.t", b"root only").unwrap();
    xattr_set(&m.path("f"), "user.u", b"anyone").unwrap();
    let bare = xattr_set(&m.path("f"), "bare", b"no namespace");
    // The kernel may refuse a name without a namespace before it reaches us.
    let bare_ok = match &bare {
        Ok(()) => true,
        Err(e) => {
            assert_eq!(errno(e), libc::EOPNOTSUPP, "{e}");
            false
        }
    };
    let e = xattr_set(&m.path("f"), "security.selinux", b"x").unwrap_err();
    assert_eq!(errno(&e), libc::EOPNOTSUPP, "{e}");
    // Kept in the object's metadata: a new mount reads them back.
    drop(m);
    let m = Mount::garage(&format!("{}/{p}", S3::garage().bucket), &[]);
    assert_eq!(xattr_get(&m.path("f"), "trusted.t").unwrap(), b"root only");
    assert_eq!(xattr_get(&m.path("f"), "user.u").unwrap(), b"anyone");
    if bare_ok {
        assert_eq!(xattr_get(&m.path("f"), "bare").unwrap(), b"no namespace");
    }
    let e = xattr_get(&m.path("f"), "security.selinux").unwrap_err();
    assert_eq!(errno(&e), libc::EOPNOTSUPP, "{e}");
}
