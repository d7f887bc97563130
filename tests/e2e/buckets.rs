//! Every bucket as a folder (`s3mount mount MOUNTPOINT`), against Garage: the root lists
//! the buckets, each bucket is entered lazily, mkdir creates a bucket and rmdir deletes an
//! empty one.

use std::fs;

use crate::common::{self, Mount, S3, errno, rt, unique};

fn mount_all(extra: &[&str]) -> Mount {
    let g = common::garage();
    // No bucket: the mount point is the only positional argument.
    let conn = common::Conn::garage();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    let out = {
        let mut c = common::s3mount_cmd();
        c.envs(conn.env.iter().map(|(k, v)| (k, v)));
        c.arg("mount").arg(&dir).args(&conn.args).args(extra);
        c.args(["--log-file"]).arg(tmp.path().join("log"));
        c.output().unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = g;
    Mount::adopt(tmp, dir)
}

#[test]
fn buckets_as_folders() {
    let s3 = S3::garage();
    let p = unique("all");
    s3.put(&format!("{p}/inside.txt"), b"in the main bucket".to_vec());
    let m = mount_all(&[]);
    let names: Vec<String> = fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.contains(&s3.bucket), "{names:?}");
    assert_eq!(
        fs::read(m.path(&format!("{}/{p}/inside.txt", s3.bucket))).unwrap(),
        b"in the main bucket"
    );

    let newb = unique("newb");
    fs::create_dir(m.path(&newb)).unwrap();
    rt().block_on(s3.client.head_bucket().bucket(&newb).send())
        .expect("mkdir created the bucket");
    fs::write(m.path(&format!("{newb}/f")), b"x").unwrap();
    assert_eq!(S3::garage().with_bucket(&newb).get("f").unwrap(), b"x");
    assert_eq!(
        errno(&fs::remove_dir(m.path(&newb)).unwrap_err()),
        libc::ENOTEMPTY
    );
    let e = fs::rename(
        m.path(&format!("{newb}/f")),
        m.path(&format!("{}/{p}/f", s3.bucket)),
    )
    .unwrap_err();
    assert_eq!(errno(&e), libc::EXDEV);
    fs::remove_file(m.path(&format!("{newb}/f"))).unwrap();
    fs::remove_dir(m.path(&newb)).unwrap();
    assert!(
        rt().block_on(s3.client.head_bucket().bucket(&newb).send())
            .is_err()
    );
    assert!(!m.path(&newb).exists());
    assert_eq!(
        errno(&fs::write(m.path("file-at-root"), b"x").unwrap_err()),
        libc::EOPNOTSUPP
    );
    drop(m);

    let ro = mount_all(&["--read-only"]);
    assert_eq!(
        errno(&fs::create_dir(ro.path(&unique("rob"))).unwrap_err()),
        libc::EROFS
    );
}

#[test]
fn removing_a_bucket_keeps_open_files_in_the_others_working() {
    // Numbering must be stable for the life of the mount: an rmdir of a bucket listed
    // before ours once renumbered the others, and the open descriptor got EBADF (or could
    // have reached another bucket).
    use std::io::Write;
    let s3 = S3::garage();
    let p = unique("stable");
    let m = mount_all(&[]);
    let first = format!("a{}", unique("gone"));
    fs::create_dir(m.path(&first)).unwrap();
    fs::read_dir(&m.dir).unwrap().for_each(drop);
    fs::create_dir_all(m.path(&format!("{}/{p}", s3.bucket))).unwrap();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.path(&format!("{}/{p}/f", s3.bucket)))
        .unwrap();
    f.write_all(b"before ").unwrap();
    fs::remove_dir(m.path(&first)).unwrap();
    f.write_all(b"after").unwrap();
    drop(f);
    assert_eq!(
        s3.get(&format!("{p}/f")).as_deref(),
        Some(&b"before after"[..])
    );
}
