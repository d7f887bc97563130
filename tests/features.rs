//! S3 features through the file system, against moto: upload options applied to every
//! object the mount writes (ACL, SSE, storage class, Content-Type by extension) and the
//! `user.s3.*` extended attributes (ETag, storage class, content type, URLs, tags).

mod common;

use std::fs;
use std::process::Command;

use common::{MotoRole, Mount, S3, rt, sh};
use serde_json::json;

const BUCKET: &str = "s3mount-features";

/// Each test resets moto's state: run them one at a time.
static MOTO: std::sync::Mutex<()> = std::sync::Mutex::new(());
const PREFIX: &str = "f";

#[test]
fn upload_options_and_s3_xattrs() {
    let _one_at_a_time = MOTO.lock().unwrap_or_else(|e| e.into_inner());
    let m = common::moto();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{BUCKET}"), format!("arn:aws:s3:::{BUCKET}/*")],
        }],
    });
    let conn = MotoRole::setup(BUCKET, PREFIX, "ext-f", &policy, false).conn();
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
        url.starts_with(&m.endpoint) && url.contains("X-Amz-Signature="),
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
    common::moto_auth_off();
    let s3 = S3::new(&m.endpoint, "test", "test", BUCKET);
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
fn kms_encryption_of_uploads() {
    let _one_at_a_time = MOTO.lock().unwrap_or_else(|e| e.into_inner());
    let m = common::moto();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": [format!("arn:aws:s3:::{BUCKET}"), format!("arn:aws:s3:::{BUCKET}/*")],
            },
            {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*"},
        ],
    });
    let role = MotoRole::setup(BUCKET, PREFIX, "ext-k", &policy, true);
    let key_arn = role.kms_key_arn.clone().expect("a KMS key");
    let conn = role.conn();
    let kms = ["--sse", "aws:kms", "--sse-kms-key-id", key_arn.as_str()];

    let mut check = common::s3mount_cmd();
    check.envs(conn.env.iter().map(|(k, v)| (k, v)));
    check
        .args(["check", &format!("{BUCKET}/{PREFIX}")])
        .args(kms)
        .args(&conn.args);
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mount = Mount::with(&conn, &format!("{BUCKET}/{PREFIX}"), &kms);
    fs::write(mount.path("secret.txt"), b"encrypted at rest").unwrap();
    assert_eq!(
        fs::read(mount.path("secret.txt")).unwrap(),
        b"encrypted at rest"
    );
    drop(mount);
    common::moto_auth_off();
    let s3 = S3::new(&m.endpoint, "test", "test", BUCKET);
    let head = rt()
        .block_on(
            s3.client
                .head_object()
                .bucket(BUCKET)
                .key(format!("{PREFIX}/secret.txt"))
                .send(),
        )
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|e| e.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.ssekms_key_id(), Some(key_arn.as_str()));
}
