//! What metadata changes and renames through a mount keep, against Garage: an object
//! another client stored with its own Content-Type, content headers and `x-amz-meta-*`
//! keeps all of them through chmod, chown, touch and mv, each changing only its own header
//! (mv: ctime) (issue 11, bug 3); and an empty directory renamed onto an empty one replaces it instead
//! of deleting both (bug 2). Storage class and SSE-KMS, which Garage does not keep, are
//! checked against the in-memory store (`src/fs/tests_preserve.rs`).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};

use crate::common::{S3, mount_fresh_prefix, rt, sh};

const EXPIRES: &str = "Wed, 21 Oct 2037 07:28:00 GMT";

fn head(s3: &S3, key: &str) -> HeadObjectOutput {
    rt().block_on(s3.client.head_object().bucket(&s3.bucket).key(key).send())
        .unwrap_or_else(|e| panic!("HEAD {key}: {e:?}"))
}

/// Every header and the foreign metadata the object was stored with are there; returns
/// the user metadata.
fn assert_kept(s3: &S3, key: &str, step: &str) -> std::collections::HashMap<String, String> {
    let (meta, len) = assert_headers(s3, key, step);
    assert_eq!(len, Some(6), "{step}: body kept");
    meta
}

/// Every header and the foreign metadata are there; returns the user metadata and the
/// object's length.
fn assert_headers(
    s3: &S3,
    key: &str,
    step: &str,
) -> (std::collections::HashMap<String, String>, Option<i64>) {
    let h = head(s3, key);
    assert_eq!(h.content_type(), Some("text/x-custom"), "{step}");
    assert_eq!(h.content_encoding(), Some("identity"), "{step}");
    assert_eq!(
        h.content_disposition(),
        Some("attachment; filename=\"report.txt\""),
        "{step}"
    );
    assert_eq!(h.content_language(), Some("de-CH"), "{step}");
    assert_eq!(h.cache_control(), Some("max-age=600"), "{step}");
    assert_eq!(h.expires_string(), Some(EXPIRES), "{step}");
    let meta = h.metadata().cloned().unwrap_or_default();
    assert_eq!(
        meta.get("foreign").map(String::as_str),
        Some("keepme"),
        "{step}"
    );
    (meta, h.content_length())
}

/// Store `key` as another tool would: every content header and a foreign metadata entry.
fn put_foreign(s3: &S3, key: &str) {
    rt().block_on(
        s3.client
            .put_object()
            .bucket(&s3.bucket)
            .key(key)
            .content_type("text/x-custom")
            .content_encoding("identity")
            .content_disposition("attachment; filename=\"report.txt\"")
            .content_language("de-CH")
            .cache_control("max-age=600")
            .expires(DateTime::from_str(EXPIRES, DateTimeFormat::HttpDate).unwrap())
            .metadata("foreign", "keepme")
            .body(ByteStream::from_static(b"report"))
            .send(),
    )
    .unwrap();
}

#[test]
fn chmod_chown_touch_and_mv_keep_every_header_and_foreign_metadata() {
    let (s3, p, m) = mount_fresh_prefix("preserve");
    let key = format!("{p}/f");
    put_foreign(&s3, &key);
    assert_kept(&s3, &key, "as stored");

    fs::set_permissions(m.path("f"), fs::Permissions::from_mode(0o600)).unwrap();
    let meta = assert_kept(&s3, &key, "chmod");
    assert_eq!(meta["mode"], (0o100600).to_string());

    std::os::unix::fs::chown(m.path("f"), Some(4321), Some(765)).unwrap();
    let meta = assert_kept(&s3, &key, "chown");
    assert_eq!(
        (meta["uid"].as_str(), meta["gid"].as_str()),
        ("4321", "765")
    );
    assert_eq!(meta["mode"], (0o100600).to_string(), "chown keeps the mode");

    sh(&m.dir, "touch -m -d @1600000000 f");
    let meta = assert_kept(&s3, &key, "touch");
    assert_eq!(meta["mtime"], "1600000000");
    assert_eq!(meta["uid"], "4321", "touch keeps the owner");

    sh(&m.dir, "mv f g");
    let mut moved = assert_kept(&s3, &format!("{p}/g"), "mv");
    // A rename moves ctime (as on a local file system), and changes nothing else.
    let ctime = |m: &std::collections::HashMap<String, String>| {
        let (s, ns) = m["ctime"].split_once('.').unwrap_or((&m["ctime"], "0"));
        (s.parse::<u64>().unwrap(), ns.parse::<u64>().unwrap())
    };
    assert!(ctime(&moved) > ctime(&meta), "mv moves ctime");
    let mut before = meta.clone();
    before.remove("ctime");
    moved.remove("ctime");
    assert_eq!(moved, before, "mv changes no other metadata");
    assert_eq!(s3.keys(&format!("{p}/")), vec![format!("{p}/g")]);
}

#[test]
fn an_empty_directory_renamed_onto_an_empty_one_replaces_it() {
    let (s3, p, m) = mount_fresh_prefix("preserve-dirs");
    fs::create_dir(m.path("a")).unwrap();
    fs::set_permissions(m.path("a"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir(m.path("b")).unwrap();
    // rename(2), not mv: mv would move a into b.
    fs::rename(m.path("a"), m.path("b")).unwrap();
    assert!(!m.path("a").exists());
    let md = fs::metadata(m.path("b")).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.permissions().mode() & 0o7777, 0o700, "a's metadata");
    assert_eq!(s3.keys(&format!("{p}/")), vec![format!("{p}/b/")]);
    let marker = head(&s3, &format!("{p}/b/"));
    assert_eq!(marker.metadata().unwrap()["mode"], (0o40700).to_string());
    // A rename onto itself deletes nothing.
    fs::rename(m.path("b"), m.path("b")).unwrap();
    assert_eq!(s3.keys(&format!("{p}/")), vec![format!("{p}/b/")]);
}

#[test]
fn rewriting_a_file_keeps_its_headers_and_foreign_metadata() {
    // A new body (an editor's save, `>`, `>>`, truncate) is not a reason to lose what the
    // object carried.
    let (s3, p, m) = mount_fresh_prefix("preserve-rewrite");
    let key = format!("{p}/f");
    put_foreign(&s3, &key);
    fs::write(m.path("f"), b"replaced").unwrap();
    assert_eq!(s3.get(&key).as_deref(), Some(&b"replaced"[..]));
    assert_headers(&s3, &key, "O_TRUNC rewrite");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.path("f"))
        .unwrap();
    std::io::Write::write_all(&mut f, b" and appended").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(s3.get(&key).as_deref(), Some(&b"replaced and appended"[..]));
    assert_headers(&s3, &key, "append");
    fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap()
        .set_len(3)
        .unwrap();
    assert_eq!(s3.get(&key).as_deref(), Some(&b"rep"[..]));
    assert_headers(&s3, &key, "truncate");
}
