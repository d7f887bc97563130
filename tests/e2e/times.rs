//! Timestamps as s3fs keeps them: atime, mtime and ctime in `x-amz-meta-atime`, `-mtime`
//! and `-ctime` (with nanoseconds), read back after a remount and from objects other tools
//! wrote; `touch -a` / `touch -m` change only their time, and a metadata change moves
//! ctime but not mtime. A directory's mtime and ctime follow its entries (stored on its
//! marker, later); its own mode, owner and times are read back from the marker however it
//! is reached; a rename moves ctime and keeps mtime.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Mount, S3, mount_fresh_prefix, rt};

/// (atime, mtime, ctime) of `name`, as (seconds, nanoseconds).
fn times(m: &Mount, name: &str) -> [(i64, i64); 3] {
    let md = fs::metadata(m.path(name)).unwrap();
    [
        (md.atime(), md.atime_nsec()),
        (md.mtime(), md.mtime_nsec()),
        (md.ctime(), md.ctime_nsec()),
    ]
}

fn touch(m: &Mount, args: &[&str], name: &str) {
    let ok = Command::new("touch")
        .args(args)
        .arg(m.path(name))
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch {args:?}");
}

#[test]
fn atime_mtime_and_ctime_are_kept_apart_and_read_back() {
    let (s3, p, m) = mount_fresh_prefix("times");
    fs::write(m.path("f"), b"x").unwrap();
    touch(&m, &["-a", "-d", "@1000000000.25"], "f");
    touch(&m, &["-m", "-d", "@1100000000.5"], "f");
    let [a, mt, c0] = times(&m, "f");
    assert_eq!(a, (1_000_000_000, 250_000_000), "touch -a sets only atime");
    assert_eq!(mt, (1_100_000_000, 500_000_000), "touch -m sets only mtime");
    std::thread::sleep(Duration::from_millis(1100));
    fs::set_permissions(m.path("f"), fs::Permissions::from_mode(0o600)).unwrap();
    let [a2, mt2, c1] = times(&m, "f");
    assert_eq!((a2, mt2), (a, mt), "chmod changes neither atime nor mtime");
    assert!(c1 > c0, "chmod moves ctime: {c0:?} -> {c1:?}");

    // In the object, as s3fs writes them; and read back by a new mount.
    let meta = rt().block_on(async {
        s3.client
            .head_object()
            .bucket(&s3.bucket)
            .key(format!("{p}/f"))
            .send()
            .await
            .unwrap()
            .metadata()
            .cloned()
            .unwrap_or_default()
    });
    assert_eq!(
        meta.get("atime").map(String::as_str),
        Some("1000000000.250000000")
    );
    assert_eq!(
        meta.get("mtime").map(String::as_str),
        Some("1100000000.500000000")
    );
    assert!(meta.contains_key("ctime"), "{meta:?}");
    drop(m);
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    assert_eq!(times(&m, "f"), [a, mt, c1]);

    // An object another tool wrote with s3fs's headers.
    let key = format!("{p}/theirs");
    rt().block_on(
        s3.client
            .put_object()
            .bucket(&s3.bucket)
            .key(&key)
            .metadata("atime", "1200000000")
            .metadata("mtime", "1300000000")
            .metadata("ctime", "1400000000")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"t"))
            .send(),
    )
    .unwrap();
    let [a, mt, c] = times(&m, "theirs");
    assert_eq!(
        (a.0, mt.0, c.0),
        (1_200_000_000, 1_300_000_000, 1_400_000_000)
    );
}

/// `x-amz-meta-NAME` of `key`, if the object exists.
fn meta(s3: &S3, key: &str, name: &str) -> Option<String> {
    rt().block_on(async {
        let out = s3
            .client
            .head_object()
            .bucket(&s3.bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        out.metadata().and_then(|m| m.get(name).cloned())
    })
}

/// Wait (up to 10 s) until `key`'s `x-amz-meta-NAME` is `want`.
fn wait_for_meta(s3: &S3, key: &str, name: &str, want: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let got = meta(s3, key, name);
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < until,
            "{key}: {name} is {got:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Seconds and nanoseconds as s3fs writes them.
fn s3fs_time((s, ns): (i64, i64)) -> String {
    if ns == 0 {
        s.to_string()
    } else {
        format!("{s}.{ns:09}")
    }
}

#[test]
fn a_directory_mtime_and_ctime_follow_its_entries() {
    let (_s3, _p, m) = mount_fresh_prefix("dirtimes");
    fs::create_dir(m.path("d")).unwrap();
    fs::create_dir(m.path("other")).unwrap();
    fs::write(m.path("other/in"), b"i").unwrap();
    let ops: [(&str, &dyn Fn()); 6] = [
        ("create", &|| fs::write(m.path("d/f"), b"x").unwrap()),
        ("mkdir", &|| fs::create_dir(m.path("d/sub")).unwrap()),
        ("rmdir", &|| fs::remove_dir(m.path("d/sub")).unwrap()),
        ("rename in", &|| {
            fs::rename(m.path("other/in"), m.path("d/in")).unwrap()
        }),
        ("rename out", &|| {
            fs::rename(m.path("d/in"), m.path("other/out")).unwrap()
        }),
        ("unlink", &|| fs::remove_file(m.path("d/f")).unwrap()),
    ];
    for (what, op) in ops {
        for dir in ["d", "other"] {
            touch(&m, &["-d", "@1000000000"], dir);
        }
        let before = times(&m, "d");
        let other = times(&m, "other");
        assert_eq!(before[1], (1_000_000_000, 0));
        op();
        let [a, mt, c] = times(&m, "d");
        assert_eq!(a, before[0], "{what}: atime stays");
        assert!(mt > before[1], "{what}: mtime {mt:?}");
        assert!(c > before[2], "{what}: ctime {c:?} after {:?}", before[2]);
        assert_eq!(mt, c, "{what}: mtime and ctime are the change's");
        let moved = times(&m, "other");
        if what.starts_with("rename") {
            assert!(
                moved[1] > other[1] && moved[2] > other[2],
                "{what}: other too"
            );
        } else {
            assert_eq!(moved, other, "{what}: only the parent changes");
        }
    }
    // A change that fails changes nothing.
    let before = times(&m, "d");
    assert!(fs::remove_file(m.path("d/missing")).is_err());
    assert!(fs::create_dir(m.path("d")).is_err());
    assert_eq!(times(&m, "d"), before);
}

#[test]
fn directory_metadata_and_times_are_read_back_after_a_remount() {
    let (s3, p, m) = mount_fresh_prefix("dirmeta");
    // d: mode, owner and times set explicitly (after its entries, as `tar -x` does).
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/f"), b"x").unwrap();
    fs::set_permissions(m.path("d"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(m.path("d"), Some(1234), Some(5678)).unwrap();
    touch(&m, &["-a", "-d", "@1100000000.25"], "d");
    touch(&m, &["-m", "-d", "@1200000000.5"], "d");
    // e: times set by its entries only, written to its marker in the background.
    fs::create_dir(m.path("e")).unwrap();
    fs::create_dir(m.path("e/sub")).unwrap();
    fs::write(m.path("e/f"), b"y").unwrap();
    // The mount root (of a prefix) gets a marker by its chmod.
    fs::set_permissions(&m.dir, fs::Permissions::from_mode(0o710)).unwrap();
    let d = fs::metadata(m.path("d")).unwrap();
    let (d_times, e_times) = (times(&m, "d"), times(&m, "e"));
    assert_eq!(d_times[0], (1_100_000_000, 250_000_000));
    assert_eq!(d_times[1], (1_200_000_000, 500_000_000));
    wait_for_meta(&s3, &format!("{p}/e/"), "mtime", &s3fs_time(e_times[1]));
    assert_eq!(
        meta(&s3, &format!("{p}/e/"), "ctime"),
        Some(s3fs_time(e_times[2]))
    );
    drop(m);

    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    // Listed first (`ls -l`: readdirplus, then a stat of each entry), then by name.
    let listed: Vec<_> = fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name(), e.metadata().unwrap()))
        .collect();
    assert_eq!(listed.len(), 2);
    let (_, from_listing) = listed.iter().find(|(n, _)| n == "d").unwrap();
    for md in [from_listing, &fs::metadata(m.path("d")).unwrap()] {
        assert_eq!(md.mode(), d.mode(), "type and permissions");
        assert_eq!((md.uid(), md.gid()), (1234, 5678));
    }
    assert_eq!(times(&m, "d"), d_times);
    assert_eq!(times(&m, "e"), e_times);
    let root = fs::metadata(&m.dir).unwrap();
    assert_eq!(root.mode() & 0o7777, 0o710, "the mount root's marker");
}

#[test]
fn a_rename_moves_ctime_and_keeps_mtime() {
    let (s3, p, m) = mount_fresh_prefix("renamectime");
    fs::write(m.path("f"), b"x").unwrap();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/inside"), b"i").unwrap();
    for name in ["f", "d", "d/inside"] {
        touch(&m, &["-m", "-d", "@1300000000.75"], name);
    }
    let (f0, d0, inside0) = (times(&m, "f"), times(&m, "d"), times(&m, "d/inside"));
    std::thread::sleep(Duration::from_millis(10));
    fs::rename(m.path("f"), m.path("g")).unwrap();
    fs::rename(m.path("d"), m.path("e")).unwrap();
    let (g, e) = (times(&m, "g"), times(&m, "e"));
    assert_eq!(g[1], (1_300_000_000, 750_000_000), "file mtime kept");
    assert!(g[2] > f0[2], "file ctime moves: {:?} -> {:?}", f0[2], g[2]);
    assert_eq!(e[1], d0[1], "directory mtime kept");
    assert!(
        e[2] > d0[2],
        "directory ctime moves: {:?} -> {:?}",
        d0[2],
        e[2]
    );
    assert_eq!(
        times(&m, "e/inside"),
        inside0,
        "what is below keeps its times"
    );
    assert_eq!(meta(&s3, &format!("{p}/g"), "ctime"), Some(s3fs_time(g[2])));
    drop(m);
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    assert_eq!(times(&m, "g"), g);
    assert_eq!(times(&m, "e"), e);
}
