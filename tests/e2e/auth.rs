//! Who the mount acts as and what it may do. Credentials against Garage: a wrong secret,
//! an unknown key and no credentials at all are refused before mounting (without leaking
//! the secret), and a read-only key's denied uploads fail the writer and leave nothing.
//! AssumeRole with an External ID against moto (S3 + STS + IAM with auth on): the right ID
//! mounts, reads and writes under the role's prefix, the role policy's denials are EACCES,
//! and a wrong ID fails before mounting. The least-privilege policy of `s3mount policy`,
//! applied in moto, is enough for a mount, and removing any one of its actions breaks
//! exactly the operation that needs it — which `s3mount check` then names.

use std::fs;
use std::io::Write;

use serde_json::Value;

use crate::common::{
    self, Conn, Moto, MotoLock, MotoRole, Mount, S3, assert_one_sentence, empty_dir, errno, garage,
    is_mounted, moto_lock, must_fail_to_mount, s3mount_cmd, unique,
};

const POLICY_BUCKET: &str = "s3mount-policy";
const POLICY_PREFIX: &str = "team-p";
const POLICY_EXTERNAL_ID: &str = "ext-policy-7";

#[test]
fn wrong_secret() {
    let d = empty_dir();
    let conn = Conn::garage().with_env("AWS_SECRET_ACCESS_KEY", &"0".repeat(64));
    let e = must_fail_to_mount(&conn, &garage().bucket, d.path(), &[]);
    assert!(e.contains("secret access key is wrong"), "{e}");
    assert!(
        !e.contains(&"0".repeat(64)),
        "secret leaked into the message"
    );
}

#[test]
fn unknown_access_key() {
    let d = empty_dir();
    let conn = Conn::garage().with_env("AWS_ACCESS_KEY_ID", "GK000000000000000000000000");
    let e = must_fail_to_mount(&conn, &garage().bucket, d.path(), &[]);
    assert!(
        e.contains("access key id is not known") || e.contains("rejected"),
        "{e}"
    );
}

#[test]
fn no_credentials_at_all() {
    let d = empty_dir();
    let conn = Conn {
        env: vec![],
        args: vec!["--endpoint-url".into(), garage().endpoint.clone()],
    };
    let e = must_fail_to_mount(&conn, &garage().bucket, d.path(), &[]);
    assert!(e.contains("no AWS credentials found"), "{e}");
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

/// How `s3mount` connects through moto's S3 and STS as the role of scenario `m`, giving
/// `external_id`.
fn role_conn(m: &Moto, external_id: &str) -> Conn {
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
    let mut moto = moto_lock();
    let m = moto.scenario();
    let mount = Mount::with(
        &role_conn(&m, &m.external_id),
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
    let mut moto = moto_lock();
    let m = moto.scenario();
    let mount = Mount::with(&role_conn(&m, &m.external_id), &m.bucket, &[]);
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
    let mut moto = moto_lock();
    let m = moto.scenario();
    let dir = tempfile::tempdir().unwrap();
    let out = role_conn(&m, "wrong-id")
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

/// Set moto up with `policy` as the role's permissions; the connection as that role.
fn role_with(moto: &mut MotoLock, policy: &Value) -> Conn {
    MotoRole::setup(
        moto,
        POLICY_BUCKET,
        POLICY_PREFIX,
        POLICY_EXTERNAL_ID,
        policy,
        false,
    )
    .conn()
}

fn generated_policy() -> Value {
    let out = s3mount_cmd()
        .args([
            "policy",
            &format!("{POLICY_BUCKET}/{POLICY_PREFIX}"),
            "--mode",
            "read-write",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn without(policy: &Value, action: &str) -> Value {
    let mut p = policy.clone();
    for st in p["Statement"].as_array_mut().unwrap() {
        match &st["Action"] {
            Value::String(a) if a == action => st["Action"] = Value::Array(vec![]),
            Value::Array(list) => {
                let kept: Vec<Value> = list.iter().filter(|a| *a != action).cloned().collect();
                st["Action"] = Value::Array(kept);
            }
            _ => {}
        }
    }
    // IAM refuses statements without actions.
    let statements: Vec<Value> = p["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Action"] != Value::Array(vec![]))
        .cloned()
        .collect();
    p["Statement"] = Value::Array(statements);
    p
}

/// Run `s3mount check --json`; returns (exit ok, refused actions).
fn check(c: &Conn) -> (bool, Vec<String>) {
    let mut cmd = s3mount_cmd();
    cmd.envs(c.env.iter().map(|(k, v)| (k, v)));
    cmd.args([
        "check",
        &format!("{POLICY_BUCKET}/{POLICY_PREFIX}"),
        "--json",
    ])
    .args(&c.args);
    let out = cmd.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let refused = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["granted"] == false)
        .map(|p| p["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(out.status.success(), v["ok"] == true);
    (out.status.success(), refused)
}

#[test]
fn generated_policy_is_sufficient_and_each_action_is_necessary() {
    let mut moto = moto_lock();
    let full = generated_policy();

    // The whole policy: check passes, and a mount lists, reads, writes and deletes.
    let c = role_with(&mut moto, &full);
    let (ok, refused) = check(&c);
    assert!(ok, "check refused {refused:?}");
    {
        let m = Mount::with(&c, &format!("{POLICY_BUCKET}/{POLICY_PREFIX}"), &[]);
        assert_eq!(fs::read(m.path("hello.txt")).unwrap(), b"hello from moto\n");
        fs::write(m.path("new.txt"), b"new").unwrap();
        assert_eq!(fs::read(m.path("new.txt")).unwrap(), b"new");
        fs::remove_file(m.path("new.txt")).unwrap();
    }

    // Without s3:ListBucket nothing can be mounted.
    let c = role_with(&mut moto, &without(&full, "s3:ListBucket"));
    let (ok, refused) = check(&c);
    assert!(!ok);
    assert_eq!(refused, vec!["s3:ListBucket"]);
    let dir = tempfile::tempdir().unwrap();
    let out = c
        .mount_cmd(&format!("{POLICY_BUCKET}/{POLICY_PREFIX}"), dir.path(), &[])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!is_mounted(dir.path()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("s3:ListBucket"));

    // Without s3:GetObject: listing works, reading does not.
    let c = role_with(&mut moto, &without(&full, "s3:GetObject"));
    let (ok, refused) = check(&c);
    assert!(!ok);
    assert!(refused.iter().all(|a| a == "s3:GetObject"), "{refused:?}");
    {
        let m = Mount::with(&c, &format!("{POLICY_BUCKET}/{POLICY_PREFIX}"), &[]);
        let names: Vec<_> = fs::read_dir(&m.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["hello.txt"]);
        let e = fs::read(m.path("hello.txt")).unwrap_err();
        assert_eq!(errno(&e), libc::EACCES);
    }

    // Without s3:PutObject: reading works, writing does not.
    let c = role_with(&mut moto, &without(&full, "s3:PutObject"));
    let (ok, refused) = check(&c);
    assert!(!ok);
    assert!(refused.contains(&"s3:PutObject".to_owned()), "{refused:?}");
    assert!(!refused.contains(&"s3:ListBucket".to_owned()));
    {
        let m = Mount::with(&c, &format!("{POLICY_BUCKET}/{POLICY_PREFIX}"), &[]);
        assert_eq!(fs::read(m.path("hello.txt")).unwrap(), b"hello from moto\n");
        let mut f = fs::File::create(m.path("nope.txt")).unwrap();
        std::io::Write::write_all(&mut f, b"x").unwrap();
        assert_eq!(errno(&f.sync_all().unwrap_err()), libc::EACCES);
    }

    // Without s3:DeleteObject: everything but deleting.
    let c = role_with(&mut moto, &without(&full, "s3:DeleteObject"));
    let (ok, refused) = check(&c);
    assert!(!ok);
    assert_eq!(refused, vec!["s3:DeleteObject"]);
    {
        let m = Mount::with(&c, &format!("{POLICY_BUCKET}/{POLICY_PREFIX}"), &[]);
        fs::write(m.path("kept.txt"), b"k").unwrap();
        assert_eq!(
            errno(&fs::remove_file(m.path("kept.txt")).unwrap_err()),
            libc::EACCES
        );
        assert_eq!(fs::read(m.path("hello.txt")).unwrap(), b"hello from moto\n");
        // Moving a directory copies every key, then deletes the originals in one
        // DeleteObjects request, whose per-key refusals must fail the rename, loudly.
        fs::create_dir(m.path("d")).unwrap();
        for i in 0..3 {
            fs::write(m.path(&format!("d/f{i}")), b"x").unwrap();
        }
        let e = fs::rename(m.path("d"), m.path("d2")).unwrap_err();
        assert_eq!(errno(&e), libc::EIO);
        let log = m.log_text();
        assert!(log.contains("originals could not be deleted"), "{log}");
        assert!(log.contains("AccessDenied"), "{log}");
        assert_eq!(fs::read(m.path("d/f1")).unwrap(), b"x");
    }
}

/// A temporary `~/.aws/config` holding `config`, and the environment that points at it.
fn profile_conn(dir: &std::path::Path, config: &str, profile: &str, args: &[&str]) -> Conn {
    let file = dir.join("config");
    fs::write(&file, config).unwrap();
    Conn {
        env: vec![
            ("HOME".into(), dir.to_str().unwrap().into()),
            ("AWS_CONFIG_FILE".into(), file.to_str().unwrap().into()),
        ],
        args: vec![],
    }
    .with_args(&["--profile", profile])
    .with_args(args)
}

#[test]
fn profiles_with_roles_mount_and_their_mistakes_are_one_sentence() {
    let mut moto = moto_lock();
    let m = moto.scenario();
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "[profile base]\naws_access_key_id = {}\naws_secret_access_key = {}\n\
         [profile team]\nrole_arn = {}\nexternal_id = {}\nsource_profile = base\n\
         region = us-east-1\nendpoint_url = {}\n\
         [profile team-wrong]\nrole_arn = {}\nexternal_id = wrong-id\nsource_profile = base\n\
         region = us-east-1\nendpoint_url = {}\n\
         [profile orphan]\nrole_arn = {}\nsource_profile = gone\n",
        m.user_key_id,
        m.user_secret,
        m.role_arn,
        m.external_id,
        m.endpoint,
        m.role_arn,
        m.endpoint,
        m.role_arn
    );
    let target = format!("{}/{}", m.bucket, m.prefix);
    // The right profile mounts, reads and writes, with no --endpoint-url: the profile's.
    let c = profile_conn(home.path(), &config, "team", &[]);
    {
        let mount = Mount::with(&c, &target, &[]);
        assert_eq!(
            fs::read(mount.path("hello.txt")).unwrap(),
            b"hello from moto\n"
        );
        fs::write(mount.path("via-profile.txt"), b"p").unwrap();
        assert_eq!(fs::read(mount.path("via-profile.txt")).unwrap(), b"p");
        fs::remove_file(mount.path("via-profile.txt")).unwrap();
    }
    // check names the profile and the role.
    let mut cmd = s3mount_cmd();
    cmd.envs(c.env.iter().map(|(k, v)| (k, v)))
        .arg("check")
        .arg(&target)
        .args(&c.args);
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("profile 'team'") && text.contains(&m.role_arn),
        "{text}"
    );

    for (profile, want) in [
        ("team-wrong", "External ID was rejected"),
        ("nosuchprofile", "profile 'nosuchprofile' is not defined"),
        ("orphan", "source_profile 'gone'"),
    ] {
        let d = empty_dir();
        let c = profile_conn(home.path(), &config, profile, &[]);
        let e = must_fail_to_mount(&c, &target, d.path(), &[]);
        assert_one_sentence(&e);
        assert!(e.contains(want), "{profile}: {e}");
    }
}
