//! End to end through a real FUSE mount against Garage: listing, reads, writes, directory
//! operations, prefix restriction and read-only mode. Each test works under its own prefix.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;

use common::{Mount, S3, pseudo_random, sh, unique};

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

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
fn reads_are_byte_exact() {
    let s3 = S3::garage();
    let p = unique("read");
    let big = pseudo_random(50 << 20, 7);
    s3.put(&format!("{p}/big.bin"), big.clone());
    s3.put(&format!("{p}/small.txt"), b"0123456789".to_vec());
    s3.put(&format!("{p}/empty"), Vec::new());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);

    // Whole file, sequentially (exercises the prefetcher).
    let got = fs::read(m.path("big.bin")).unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big, "50 MiB read differs from the object");

    // Random ranges with pread.
    let f = fs::File::open(m.path("big.bin")).unwrap();
    let mut seed = 99u64;
    for _ in 0..40 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (seed >> 16) % big.len() as u64;
        let len = 1 + ((seed >> 8) % 300_000) as usize;
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, off).unwrap();
        let end = (off as usize + len).min(big.len());
        assert_eq!(n, end - off as usize);
        assert_eq!(&buf[..n], &big[off as usize..end], "range at {off}+{len}");
    }
    // Last byte, and past EOF.
    let mut one = [0u8; 1];
    assert_eq!(f.read_at(&mut one, big.len() as u64 - 1).unwrap(), 1);
    assert_eq!(one[0], big[big.len() - 1]);
    assert_eq!(f.read_at(&mut one, big.len() as u64).unwrap(), 0);
    assert_eq!(f.read_at(&mut one, big.len() as u64 + 12345).unwrap(), 0);

    // Small and empty files.
    let mut s = String::new();
    fs::File::open(m.path("small.txt"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "0123456789");
    let sf = fs::File::open(m.path("small.txt")).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(sf.read_at(&mut buf, 8).unwrap(), 2);
    assert_eq!(&buf[..2], b"89");
    assert_eq!(fs::read(m.path("empty")).unwrap(), b"");
}

#[test]
fn concurrent_readers_get_exact_bytes() {
    let s3 = S3::garage();
    let p = unique("conc");
    let a = pseudo_random(9 << 20, 1);
    let b = pseudo_random(3 << 20, 2);
    s3.put(&format!("{p}/a"), a.clone());
    s3.put(&format!("{p}/b"), b.clone());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    std::thread::scope(|scope| {
        for i in 0..6 {
            let (path, want) = if i % 2 == 0 {
                (m.path("a"), &a)
            } else {
                (m.path("b"), &b)
            };
            scope.spawn(move || assert!(fs::read(path).unwrap() == *want));
        }
    });
}

#[test]
fn writes_land_in_s3_exactly() {
    let s3 = S3::garage();
    let p = unique("write");
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);

    fs::File::create(m.path("empty")).unwrap();
    fs::write(m.path("one"), b"x").unwrap();
    let big = pseudo_random(20 << 20, 3);
    {
        let mut f = fs::File::create(m.path("big")).unwrap();
        for chunk in big.chunks(1 << 20) {
            f.write_all(chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    assert_eq!(s3.get(&format!("{p}/empty")).unwrap(), b"");
    assert_eq!(s3.get(&format!("{p}/one")).unwrap(), b"x");
    assert!(
        s3.get(&format!("{p}/big")).unwrap() == big,
        "20 MiB multipart upload differs"
    );
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0);
    // Read back through the mount too.
    assert!(fs::read(m.path("big")).unwrap() == big);

    // Shell redirection (open, dup2, close, write) and dd.
    sh(&m.dir, "echo hello > redir.txt && echo again >> /dev/null");
    assert_eq!(s3.get(&format!("{p}/redir.txt")).unwrap(), b"hello\n");
    sh(
        &m.dir,
        "dd if=/dev/zero of=dd.bin bs=64k count=40 status=none",
    );
    assert_eq!(
        s3.get(&format!("{p}/dd.bin")).unwrap(),
        vec![0u8; 40 * 65536]
    );

    // Overwrite with O_TRUNC.
    fs::write(m.path("one"), b"replaced").unwrap();
    assert_eq!(s3.get(&format!("{p}/one")).unwrap(), b"replaced");

    // cp -r of a tree from local disk.
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    let mut files = vec![];
    for (i, rel) in ["a.txt", "sub/b.bin", "sub/deeper/c", "sub/deeper/d"]
        .iter()
        .enumerate()
    {
        let data = pseudo_random(1000 * (i + 1) * (i + 1), i as u64 + 10);
        fs::write(tree.join(rel), &data).unwrap();
        files.push((rel.to_string(), data));
    }
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&tree)
        .arg(&m.dir)
        .status()
        .unwrap();
    assert!(status.success(), "cp -r failed");
    for (rel, data) in files {
        assert_eq!(s3.get(&format!("{p}/tree/{rel}")).unwrap(), data, "{rel}");
    }
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
fn read_only_mount_refuses_changes() {
    let s3 = S3::garage();
    let p = unique("ro");
    s3.put(&format!("{p}/f"), b"data".to_vec());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &["--read-only"]);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"data");
    assert_eq!(
        errno(&fs::write(m.path("new"), b"x").unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno(&fs::remove_file(m.path("f")).unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno(&fs::create_dir(m.path("d")).unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno(
            &fs::OpenOptions::new()
                .write(true)
                .open(m.path("f"))
                .unwrap_err()
        ),
        libc::EROFS
    );
    assert_eq!(s3.get(&format!("{p}/f")).unwrap(), b"data");
}

#[test]
fn whole_bucket_mount_and_changes_by_other_clients() {
    let bucket = unique("whole").to_lowercase();
    common::garage_bucket(&bucket);
    let s3 = S3::garage().with_bucket(&bucket);
    s3.put("root.txt", b"v1".to_vec());
    let m = Mount::garage(&bucket, &[]);
    assert_eq!(fs::read(m.path("root.txt")).unwrap(), b"v1");
    // Another client replaces and adds objects; after the attribute TTL we see them.
    s3.put("root.txt", b"version two".to_vec());
    s3.put("later.txt", b"new".to_vec());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(fs::read(m.path("root.txt")).unwrap(), b"version two");
    assert_eq!(fs::read(m.path("later.txt")).unwrap(), b"new");
}

#[test]
fn denied_upload_fails_the_writer_and_leaves_nothing() {
    // A key that may read the bucket but not write it: creating a file is accepted locally,
    // the upload is denied, and the writer must hear about it at close/fsync.
    let s3 = S3::garage();
    let p = unique("denied");
    s3.put(&format!("{p}/existing"), b"keep".to_vec());
    let (id, secret) = common::garage_key("s3mount-test-ro", &s3.bucket, "ro");
    let mut conn = common::Conn::garage();
    conn.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), id),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.clone()),
    ];
    let m = Mount::with(&conn, &format!("{}/{p}", s3.bucket), &[]);
    assert_eq!(fs::read(m.path("existing")).unwrap(), b"keep");

    let src = tempfile::NamedTempFile::new().unwrap();
    fs::write(src.path(), b"must not be reported as saved").unwrap();
    let out = std::process::Command::new("cp")
        .arg(src.path())
        .arg(m.path("denied.txt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "cp reported success for a denied upload"
    );
    assert!(err.contains("Permission denied"), "{err}");

    let mut f = fs::File::create(m.path("denied2.txt")).unwrap();
    f.write_all(b"data").unwrap();
    let e = f.sync_all().unwrap_err();
    assert_eq!(errno(&e), libc::EACCES, "{e}");
    drop(f);

    // A multipart upload that is denied is not left behind either.
    let mut f = fs::File::create(m.path("big-denied")).unwrap();
    let e = f
        .write_all(&vec![7u8; 9 << 20])
        .and_then(|_| f.sync_all())
        .unwrap_err();
    assert_eq!(errno(&e), libc::EACCES, "{e}");
    drop(f);

    assert!(s3.get(&format!("{p}/denied.txt")).is_none());
    assert!(s3.get(&format!("{p}/denied2.txt")).is_none());
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0);
    // The names do not linger as if saved.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!m.path("denied.txt").exists());
    assert!(!m.path("denied2.txt").exists());
    let log = m.log_text();
    assert!(
        log.contains("PutObject") && log.contains("denied2.txt"),
        "{log}"
    );
    assert!(!log.contains(&secret), "secret in log");
}
