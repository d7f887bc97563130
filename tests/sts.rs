//! AssumeRole with an External ID against moto server (S3 + STS + IAM with auth on): the
//! role's policy grants List/Get/Put/Delete only under one prefix.

mod common;

use std::fs;

use common::{Conn, Mount, is_mounted, moto};

fn role_conn(external_id: &str) -> Conn {
    let m = moto();
    Conn {
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), m.user_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), m.user_secret.clone()),
        ],
        args: vec![
            "--endpoint-url".into(),
            m.endpoint.clone(),
            "--sts-endpoint-url".into(),
            m.endpoint.clone(),
            "--region".into(),
            "us-east-1".into(),
            "--role-arn".into(),
            m.role_arn.clone(),
            "--external-id".into(),
            external_id.into(),
        ],
    }
}

#[test]
fn role_with_right_external_id_mounts_reads_and_writes() {
    let m = moto();
    let mount = Mount::with(
        &role_conn(&m.external_id),
        &format!("{}/{}", m.bucket, m.prefix),
        &[],
    );
    let names: Vec<_> = fs::read_dir(&mount.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.contains(&"hello.txt".to_owned()), "{names:?}");
    assert!(!names.contains(&"outside.txt".to_owned()));
    assert_eq!(
        fs::read(mount.path("hello.txt")).unwrap(),
        b"hello from moto\n"
    );
    fs::write(mount.path("from-role.txt"), b"written with the role").unwrap();
    assert_eq!(
        fs::read(mount.path("from-role.txt")).unwrap(),
        b"written with the role"
    );
    fs::remove_file(mount.path("from-role.txt")).unwrap();
    assert!(
        mount.stderr.contains("assumed via STS with External ID"),
        "{}",
        mount.stderr
    );
}

#[test]
fn role_policy_denial_is_eacces() {
    // Mounting the bucket root lists fine (ListBucket is granted on the bucket) but reading
    // an object outside the granted prefix is denied by the role policy.
    let m = moto();
    let mount = Mount::with(&role_conn(&m.external_id), &m.bucket, &[]);
    let e = fs::read(mount.path("outside.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    let log = mount.log_text();
    assert!(
        log.contains("access denied") && log.contains("outside.txt"),
        "error logged with the operation and key: {log}"
    );
    assert!(!log.contains(&m.user_secret), "secret in log");
}

#[test]
fn wrong_external_id_fails_before_mounting() {
    let m = moto();
    let dir = tempfile::tempdir().unwrap();
    let out = role_conn("wrong-id")
        .mount_cmd(&format!("{}/{}", m.bucket, m.prefix), dir.path(), &[])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!is_mounted(dir.path()));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&m.role_arn), "names the role: {stderr}");
    assert!(stderr.contains("External ID was rejected"), "{stderr}");
}
