//! Timestamps as s3fs keeps them: atime, mtime and ctime in `x-amz-meta-atime`, `-mtime`
//! and `-ctime` (with nanoseconds), read back after a remount and from objects other tools
//! wrote; `touch -a` / `touch -m` change only their time, and a metadata change moves
//! ctime but not mtime.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use crate::common::{Mount, mount_fresh_prefix, rt};

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
