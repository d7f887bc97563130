//! File metadata: mode, owner and mtime (chmod, chown, touch) stored in s3fs's headers,
//! surviving a remount and read from objects s3fs wrote (against Garage); and, against
//! moto, the `user.s3.*` extended attributes (ETag, storage class, content type, URLs,
//! tags) together with the upload options the mount applies to every object it writes
//! (ACL, SSE, storage class, Content-Type by extension).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::json;

use crate::common::{self, MotoRole, Mount, S3, moto_lock, rt, sh, unique};

const BUCKET: &str = "s3mount-features";
const PREFIX: &str = "f";

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
fn upload_options_and_s3_xattrs() {
    let mut moto = moto_lock();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{BUCKET}"), format!("arn:aws:s3:::{BUCKET}/*")],
        }],
    });
    let conn = MotoRole::setup(&mut moto, BUCKET, PREFIX, "ext-f", &policy, false).conn();
    // The connection test covers the ACL too.
    let mut check = common::s3mount_cmd();
    check.envs(conn.env.iter().map(|(k, v)| (k, v)));
    check
        .args([
            "check",
            &format!("{BUCKET}/{PREFIX}"),
            "--acl",
            "bucket-owner-full-control",
        ])
        .args(&conn.args);
    let out = check.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("s3:PutObjectAcl"), "{text}");
    assert!(
        text.contains("assumed-role"),
        "caller identity from STS: {text}"
    );
    let mount = Mount::with(
        &conn,
        &format!("{BUCKET}/{PREFIX}"),
        &[
            "--acl",
            "bucket-owner-full-control",
            "--sse",
            "AES256",
            "--storage-class",
            "STANDARD_IA",
            "--expected-bucket-owner",
            "123456789012",
            "--requester-pays",
        ],
    );
    fs::write(mount.path("notes.txt"), b"hello").unwrap();
    fs::write(mount.path("data.json"), b"{}").unwrap();
    fs::write(mount.path("blob"), b"\x00\x01").unwrap();
    // Rename keeps the options (a copy must restate them).
    fs::rename(mount.path("blob"), mount.path("blob2")).unwrap();

    let get = |name: &str, attr: &str| {
        sh(
            &mount.dir,
            &format!("getfattr -n {attr} --only-values {name}"),
        )
    };
    assert_eq!(get("notes.txt", "user.s3.content_type"), "text/plain");
    assert_eq!(get("data.json", "user.s3.content_type"), "application/json");
    assert_eq!(
        get("blob2", "user.s3.content_type"),
        "application/octet-stream"
    );
    assert_eq!(get("notes.txt", "user.s3.storage_class"), "STANDARD_IA");
    assert_eq!(
        get("notes.txt", "user.s3.url"),
        format!("s3://{BUCKET}/{PREFIX}/notes.txt")
    );
    assert!(get("notes.txt", "user.s3.etag").starts_with('"'));
    let url = get("notes.txt", "user.s3.presigned_url");
    assert!(
        url.starts_with(moto.endpoint()) && url.contains("X-Amz-Signature="),
        "{url}"
    );
    assert!(url.contains("X-Amz-Expires=3600"), "{url}");
    sh(
        &mount.dir,
        "setfattr -n user.s3.tags -v 'team=data&env=prod' notes.txt",
    );
    assert_eq!(get("notes.txt", "user.s3.tags"), "team=data&env=prod");
    let ro = Command::new("setfattr")
        .args(["-n", "user.s3.etag", "-v", "x"])
        .arg(mount.path("notes.txt"))
        .output()
        .unwrap();
    assert!(!ro.status.success(), "user.s3.etag is read-only");
    drop(mount);

    // Check on the server side, with auth switched off.
    moto.auth_off();
    let s3 = S3::new(moto.endpoint(), "test", "test", BUCKET);
    for name in ["notes.txt", "blob2"] {
        let key = format!("{PREFIX}/{name}");
        let head = rt()
            .block_on(s3.client.head_object().bucket(BUCKET).key(&key).send())
            .unwrap();
        assert_eq!(
            head.server_side_encryption().map(|e| e.as_str()),
            Some("AES256"),
            "{name}"
        );
        assert_eq!(
            head.storage_class().map(|c| c.as_str()),
            Some("STANDARD_IA"),
            "{name}"
        );
    }
    let tags = rt()
        .block_on(
            s3.client
                .get_object_tagging()
                .bucket(BUCKET)
                .key(format!("{PREFIX}/notes.txt"))
                .send(),
        )
        .unwrap();
    let mut got: Vec<(String, String)> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("env".into(), "prod".into()),
            ("team".into(), "data".into())
        ]
    );
    let acl = rt()
        .block_on(
            s3.client
                .get_object_acl()
                .bucket(BUCKET)
                .key(format!("{PREFIX}/notes.txt"))
                .send(),
        )
        .unwrap();
    assert!(!acl.grants().is_empty());
}

#[test]
fn hostile_s3fs_metadata_falls_back_to_defaults() {
    // Another tool may write any value; none may take the mount down or show garbage.
    let s3 = S3::garage();
    let p = unique("hostile-meta");
    for (name, mtime, mode) in [
        ("huge", "18446744073709551616", "33188"),
        ("past-i64", "9223372036854775808", "not-a-mode"),
        ("multibyte", "1700000000.１２３", "4294967295"),
    ] {
        rt().block_on(
            s3.client
                .put_object()
                .bucket(&s3.bucket)
                .key(format!("{p}/{name}"))
                .metadata("mtime", mtime)
                .metadata("mode", mode)
                .body(ByteStream::from_static(b"data"))
                .send(),
        )
        .unwrap();
    }
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    let now = std::time::SystemTime::now();
    for name in ["huge", "past-i64", "multibyte"] {
        let md = fs::metadata(m.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(md.len(), 4, "{name}");
        // The object's Last-Modified instead of the unreadable time.
        let age = now
            .duration_since(md.modified().unwrap())
            .unwrap_or_default();
        assert!(
            age < Duration::from_secs(600),
            "{name}: mtime {:?}",
            md.modified()
        );
        assert_eq!(fs::read(m.path(name)).unwrap(), b"data", "{name}");
    }
}

#[test]
fn bearer_urls_are_not_listed_and_oversized_symlinks_are_files() {
    let s3 = S3::garage();
    let p = unique("untrusted");
    s3.put(&format!("{p}/f"), b"x".to_vec());
    // An object whose metadata says "symlink" but whose body is no path (8 KiB).
    rt().block_on(
        s3.client
            .put_object()
            .bucket(&s3.bucket)
            .key(format!("{p}/fake-link"))
            .metadata("mode", "41471") // S_IFLNK | 0777
            .body(ByteStream::from(vec![b'a'; 8192]))
            .send(),
    )
    .unwrap();
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    // `cp -a`, `rsync -X`, `tar --xattrs` copy what listxattr names: no presigned URL.
    let listed = sh(&m.dir, "getfattr -d -m - f");
    assert!(listed.contains("user.s3.etag"), "{listed}");
    assert!(!listed.contains("presigned"), "{listed}");
    let url = sh(&m.dir, "getfattr -n user.s3.presigned_url --only-values f");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let md = fs::symlink_metadata(m.path("fake-link")).unwrap();
    assert!(md.is_file(), "an 8 KiB 'target' must not be a symlink");
    assert_eq!(md.len(), 8192);
    assert!(m.log_text().contains("exceed PATH_MAX"), "{}", m.log_text());
}
