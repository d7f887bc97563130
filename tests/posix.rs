//! Full write semantics end to end against Garage, checked byte for byte through
//! aws-sdk-s3: overwrite, append, truncate, random writes, rename, metadata, symlinks,
//! xattrs, guard modes, and the tools that need them (sed -i, rsync, tar -x, cp -p).

mod common;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use common::{Mount, S3, pseudo_random, rt, sh, unique};

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn setup(tag: &str) -> (S3, String, Mount) {
    let s3 = S3::garage();
    let p = unique(tag);
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    (s3, p, m)
}

#[test]
fn overwrite_append_truncate() {
    let (s3, p, m) = setup("owr");
    let key = |n: &str| format!("{p}/{n}");
    fs::write(m.path("f"), b"0123456789").unwrap();
    fs::write(m.path("f"), b"short").unwrap();
    assert_eq!(s3.get(&key("f")).unwrap(), b"short");
    fs::write(m.path("f"), b"a much longer body").unwrap();
    assert_eq!(s3.get(&key("f")).unwrap(), b"a much longer body");

    for part in [&b"+one"[..], b"+two"] {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(m.path("f"))
            .unwrap();
        f.write_all(part).unwrap();
    }
    assert_eq!(s3.get(&key("f")).unwrap(), b"a much longer body+one+two");
    sh(&m.dir, "echo line >> f");
    assert_eq!(
        s3.get(&key("f")).unwrap(),
        b"a much longer body+one+twoline\n"
    );

    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.set_len(6).unwrap();
    drop(f);
    assert_eq!(s3.get(&key("f")).unwrap(), b"a much");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.set_len(9).unwrap();
    drop(f);
    assert_eq!(s3.get(&key("f")).unwrap(), b"a much\0\0\0");
    // Reopening right after close, before the kernel's release arrives, must not be EBUSY.
    let out = sh(
        &m.dir,
        "for i in $(seq 1 40); do echo $i > g && cat g && echo more >> g && touch g && rm g; done | tail -1",
    );
    assert_eq!(out, "40\n");
    sh(&m.dir, "truncate -s 0 f");
    assert_eq!(s3.get(&key("f")).unwrap(), b"");
    assert_eq!(fs::metadata(m.path("f")).unwrap().len(), 0);
}

#[test]
fn random_writes_into_a_30_mib_object() {
    let (s3, p, m) = setup("rnd");
    let mut model = pseudo_random(30 << 20, 5);
    s3.put(&format!("{p}/big"), model.clone());
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("big"))
        .unwrap();
    for i in 0..10u64 {
        let off = (i * 3_000_017 + 12_345) % (30 << 20);
        let data = format!("<write {i} at {off}>").into_bytes();
        f.write_all_at(&data, off).unwrap();
        model[off as usize..off as usize + data.len()].copy_from_slice(&data);
    }
    // Read back through the same descriptor before closing.
    let mut buf = vec![0u8; 64];
    f.read_exact_at(&mut buf, 12_345).unwrap();
    assert_eq!(&buf[..], &model[12_345..12_345 + 64]);
    f.sync_all().unwrap();
    drop(f);
    assert!(
        s3.get(&format!("{p}/big")).unwrap() == model,
        "30 MiB object differs"
    );
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0);
}

#[test]
fn rename_file_over_file_and_a_1200_file_directory() {
    let (s3, p, m) = setup("ren");
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
fn metadata_survives_a_remount_and_matches_s3fs_headers() {
    let s3 = S3::garage();
    let p = unique("meta");
    let target = format!("{}/{p}", s3.bucket);
    {
        let m = Mount::garage(&target, &[]);
        fs::write(m.path("f"), b"x").unwrap();
        fs::set_permissions(m.path("f"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(m.path("f"), Some(4321), Some(99)).unwrap();
        sh(&m.dir, "touch -d @1600000000 f");
        fs::create_dir(m.path("d")).unwrap();
        fs::set_permissions(m.path("d"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(m.path("d"), Some(321), Some(54)).unwrap();
        sh(&m.dir, "touch -d @1400000000 d");
    }
    // The headers are s3fs's.
    let head = rt()
        .block_on(
            s3.client
                .head_object()
                .bucket(&s3.bucket)
                .key(format!("{p}/f"))
                .send(),
        )
        .unwrap();
    let meta = head.metadata().unwrap();
    assert_eq!(meta["mode"], (0o100640).to_string());
    assert_eq!(meta["uid"], "4321");
    assert_eq!(meta["gid"], "99");
    assert_eq!(meta["mtime"], "1600000000");

    let m = Mount::garage(&target, &[]);
    let md = fs::metadata(m.path("f")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!((md.uid(), md.gid()), (4321, 99));
    assert_eq!(md.mtime(), 1_600_000_000);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"x");

    // An object written by s3fs (its headers set directly) shows the same attributes.
    rt().block_on(
        s3.client
            .put_object()
            .bucket(&s3.bucket)
            .key(format!("{p}/from-s3fs"))
            .metadata("mode", (0o100600).to_string())
            .metadata("uid", "1001")
            .metadata("gid", "1002")
            .metadata("mtime", "1500000000")
            .body(ByteStream::from_static(b"s3fs"))
            .send(),
    )
    .unwrap();
    let md = fs::metadata(m.path("from-s3fs")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!(
        (md.uid(), md.gid(), md.mtime()),
        (1001, 1002, 1_500_000_000)
    );
    assert_eq!(
        md.modified().unwrap(),
        UNIX_EPOCH + Duration::from_secs(1_500_000_000)
    );
    // A directory's attributes live on its marker, and survive a listing too.
    for _ in 0..2 {
        let md = fs::metadata(m.path("d")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o700);
        assert_eq!((md.uid(), md.gid(), md.mtime()), (321, 54, 1_400_000_000));
        sh(&m.dir, "ls -l");
    }
}

#[test]
fn symlinks_xattrs_and_hard_links() {
    let (s3, p, m) = setup("links");
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

#[test]
fn editing_tools_work() {
    let (s3, p, m) = setup("tools");
    fs::write(m.path("conf"), b"name=old\nsize=1\n").unwrap();
    sh(&m.dir, "sed -i 's/old/new/' conf");
    assert_eq!(s3.get(&format!("{p}/conf")).unwrap(), b"name=new\nsize=1\n");

    // rsync (temp file + rename) and tar -x of a tree.
    let src = tempfile::tempdir().unwrap();
    for i in 0..30 {
        let d = src.path().join(format!("t/d{}", i % 4));
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join(format!("f{i}")),
            pseudo_random(100 * i + 1, i as u64),
        )
        .unwrap();
    }
    let status = std::process::Command::new("rsync")
        .arg("-a")
        .arg(src.path().join("t/"))
        .arg(m.path("rsynced/"))
        .status()
        .unwrap();
    assert!(status.success());
    sh(
        src.path(),
        &format!("tar -cf t.tar t && tar -xf t.tar -C {}", m.dir.display()),
    );
    for i in 0..30 {
        let rel = format!("d{}/f{i}", i % 4);
        let want = pseudo_random(100 * i + 1, i as u64);
        assert_eq!(
            s3.get(&format!("{p}/rsynced/{rel}")).unwrap(),
            want,
            "{rel}"
        );
        assert_eq!(s3.get(&format!("{p}/t/{rel}")).unwrap(), want, "{rel}");
    }
    // cp -p keeps mode and mtime.
    let local = src.path().join("keep");
    fs::write(&local, b"keep").unwrap();
    fs::set_permissions(&local, fs::Permissions::from_mode(0o604)).unwrap();
    sh(src.path(), "touch -d @1400000000 keep");
    sh(src.path(), &format!("cp -p keep {}/kept", m.dir.display()));
    let md = fs::metadata(m.path("kept")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o604);
    assert_eq!(md.mtime(), 1_400_000_000);
    // Seek back and patch a header, as some writers do.
    let mut f = fs::File::create(m.path("patched")).unwrap();
    f.write_all(b"XXXX body").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"HEAD").unwrap();
    drop(f);
    assert_eq!(s3.get(&format!("{p}/patched")).unwrap(), b"HEAD body");
}

#[test]
fn guard_modes() {
    let s3 = S3::garage();
    let p = unique("guard");
    s3.put(&format!("{p}/existing"), b"keep".to_vec());
    let target = format!("{}/{p}", s3.bucket);
    let perm = libc::EPERM;
    {
        let m = Mount::garage(&target, &["--no-delete"]);
        assert_eq!(
            errno(&fs::remove_file(m.path("existing")).unwrap_err()),
            perm
        );
        assert_eq!(
            errno(&fs::rename(m.path("existing"), m.path("elsewhere")).unwrap_err()),
            perm
        );
        fs::write(m.path("existing"), b"changed").unwrap(); // overwrite is allowed
        fs::create_dir(m.path("d")).unwrap();
        assert_eq!(errno(&fs::remove_dir(m.path("d")).unwrap_err()), perm);
    }
    assert_eq!(s3.get(&format!("{p}/existing")).unwrap(), b"changed");
    {
        let m = Mount::garage(&target, &["--no-overwrite"]);
        assert_eq!(
            errno(&fs::write(m.path("existing"), b"x").unwrap_err()),
            perm
        );
        assert_eq!(
            errno(
                &fs::OpenOptions::new()
                    .append(true)
                    .open(m.path("existing"))
                    .unwrap_err()
            ),
            perm
        );
        assert_eq!(
            errno(
                &fs::set_permissions(m.path("existing"), fs::Permissions::from_mode(0o600))
                    .unwrap_err()
            ),
            perm
        );
        fs::write(m.path("new"), b"new").unwrap();
        fs::remove_file(m.path("new")).unwrap(); // deleting is allowed
    }
    {
        let m = Mount::garage(&target, &["--no-overwrite", "--no-delete"]);
        fs::write(m.path("appended"), b"only new files").unwrap();
        assert_eq!(
            errno(&fs::remove_file(m.path("appended")).unwrap_err()),
            perm
        );
        assert_eq!(
            errno(&fs::write(m.path("appended"), b"x").unwrap_err()),
            perm
        );
    }
    assert_eq!(s3.get(&format!("{p}/existing")).unwrap(), b"changed");
    assert_eq!(s3.get(&format!("{p}/appended")).unwrap(), b"only new files");
    assert!(s3.get(&format!("{p}/new")).is_none());
}

/// Count the S3 requests of SDK operation `op` in a trace log whose key contains `part`.
fn requests(log: &str, op: &str, part: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("S3 request") && l.contains(&format!("op=\"{op}\"")))
        .filter(|l| l.contains(part))
        .count()
}

#[test]
fn new_directories_cost_one_upload_per_file_and_still_see_other_clients() {
    let s3 = S3::garage();
    let p = unique("known");
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &["--log-level", "trace"]);
    // What cp -r and tar -x do: make a directory, then create names in it.
    sh(
        &m.dir,
        "mkdir d && for i in $(seq 1 30); do echo $i > d/f$i; done && mkdir d/sub && echo deep > d/sub/x",
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
fn renaming_a_file_open_for_writing_moves_later_writes_too() {
    // What logrotate does to a daemon's log: rename it while the daemon keeps writing.
    let (s3, p, m) = setup("mvopen");
    let mut f = fs::File::create(m.path("app.log")).unwrap();
    f.write_all(b"one\n").unwrap();
    fs::rename(m.path("app.log"), m.path("app.log.1")).unwrap();
    f.write_all(b"two\n").unwrap();
    drop(f);
    assert_eq!(
        s3.get(&format!("{p}/app.log")),
        None,
        "the old name must not come back"
    );
    assert_eq!(s3.get(&format!("{p}/app.log.1")).unwrap(), b"one\ntwo\n");

    // The same when the directory around it moves.
    fs::create_dir(m.path("d")).unwrap();
    let mut g = fs::File::create(m.path("d/inner")).unwrap();
    g.write_all(b"first\n").unwrap();
    fs::rename(m.path("d"), m.path("e")).unwrap();
    g.write_all(b"second\n").unwrap();
    g.sync_all().unwrap();
    drop(g);
    assert_eq!(s3.get(&format!("{p}/d/inner")), None);
    assert_eq!(s3.get(&format!("{p}/e/inner")).unwrap(), b"first\nsecond\n");
    assert_eq!(fs::read(m.path("e/inner")).unwrap(), b"first\nsecond\n");
}
