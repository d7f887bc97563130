//! The command line before anything is mounted: bad input (bucket, bucket name, endpoint,
//! mount point, role ARN, `..` in the prefix, a log file or cache dir inside the mount point,
//! a presign expiry beyond 7 days) gets a one-line error and a non-zero exit
//! with nothing mounted, and `s3mount check` names what is wrong, one reason per case.

use crate::common::{self, Conn, Mount, S3, empty_dir, garage, must_fail_to_mount, unique};

#[test]
fn missing_bucket() {
    let d = empty_dir();
    let e = must_fail_to_mount(&Conn::garage(), "no-such-bucket-s3mount", d.path(), &[]);
    assert!(
        e.contains("bucket 'no-such-bucket-s3mount' does not exist"),
        "{e}"
    );
}

#[test]
fn invalid_bucket_name() {
    let d = empty_dir();
    let e = must_fail_to_mount(&Conn::garage(), "Bad_Bucket", d.path(), &[]);
    assert!(e.contains("invalid bucket name 'Bad_Bucket'"), "{e}");
}

#[test]
fn unreachable_endpoint() {
    let d = empty_dir();
    let mut conn = Conn::garage();
    conn.args = vec!["--endpoint-url".into(), "http://127.0.0.1:9".into()];
    let start = std::time::Instant::now();
    let e = must_fail_to_mount(&conn, &garage().bucket, d.path(), &[]);
    assert!(
        e.contains("cannot reach the S3 endpoint http://127.0.0.1:9"),
        "{e}"
    );
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
}

#[test]
fn mountpoint_missing_not_empty_or_mounted() {
    let d = empty_dir();
    let missing = d.path().join("missing");
    let e = must_fail_to_mount(&Conn::garage(), &garage().bucket, &missing, &[]);
    assert!(e.contains("does not exist"), "{e}");

    let full = d.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let e = must_fail_to_mount(&Conn::garage(), &garage().bucket, &full, &[]);
    assert!(e.contains("is not empty"), "{e}");

    let file = d.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = must_fail_to_mount(&Conn::garage(), &garage().bucket, &file, &[]);
    assert!(e.contains("is not a directory"), "{e}");

    let s3 = S3::garage();
    let m = Mount::garage(&format!("{}/{}", s3.bucket, unique("twice")), &[]);
    let out = Conn::garage()
        .mount_cmd(&garage().bucket, &m.dir, &[])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("already a mount point"), "{e}");
    // The first mount still works.
    assert!(std::fs::read_dir(&m.dir).is_ok());
}

#[test]
fn malformed_role_arn() {
    let d = empty_dir();
    let conn = Conn::garage().with_args(&["--role-arn", "arn:aws:iam::123:role/x"]);
    let e = must_fail_to_mount(&conn, &garage().bucket, d.path(), &[]);
    assert!(e.contains("malformed role ARN"), "{e}");
}

#[test]
fn path_escape_in_prefix_is_refused() {
    let d = empty_dir();
    let e = must_fail_to_mount(
        &Conn::garage(),
        &format!("{}/a/../b", garage().bucket),
        d.path(),
        &[],
    );
    assert!(e.contains("'..'"), "{e}");
}

/// `s3mount check` says what is wrong, one reason per case, and exits 1.
#[test]
fn check_distinguishes_failures() {
    let run = |conn: &Conn, target: &str| {
        let mut c = common::s3mount_cmd();
        c.envs(conn.env.iter().map(|(k, v)| (k, v)));
        c.arg("check").arg(target).args(&conn.args);
        let out = c.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let g = garage();
    let out = run(&Conn::garage(), "no-such-bucket-s3mount");
    assert!(
        out.contains("bucket 'no-such-bucket-s3mount' does not exist"),
        "{out}"
    );
    let out = run(
        &Conn::garage().with_env("AWS_SECRET_ACCESS_KEY", &"1".repeat(64)),
        &g.bucket,
    );
    assert!(out.contains("secret access key is wrong"), "{out}");
    let mut unreachable = Conn::garage();
    unreachable.args = vec!["--endpoint-url".into(), "http://127.0.0.1:9".into()];
    let out = run(&unreachable, &g.bucket);
    assert!(out.contains("cannot reach the S3 endpoint"), "{out}");
    // A read-only key: reading passes, writing is refused with the action named.
    let (id, secret) = common::garage_key("s3mount-test-ro", &g.bucket, "ro");
    let mut ro = Conn::garage();
    ro.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), id),
        ("AWS_SECRET_ACCESS_KEY".into(), secret),
    ];
    let out = run(&ro, &format!("{}/{}", g.bucket, unique("chk")));
    assert!(out.contains("s3:PutObject") && out.contains("✗"), "{out}");
    assert!(out.contains("s3:ListBucket") && out.contains("✔"), "{out}");
}

#[test]
fn a_log_file_or_cache_dir_inside_the_mount_point_is_refused() {
    let d = empty_dir();
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let inside = mnt.join("logs/s3mount.log");
    let inside = inside.to_str().unwrap();
    let e = must_fail_to_mount(
        &Conn::garage(),
        &garage().bucket,
        &mnt,
        &["--log-file", inside],
    );
    assert!(
        e.contains("--log-file") && e.contains("inside the mount point"),
        "{e}"
    );
    // Through a symlink and `..` too.
    std::os::unix::fs::symlink(&mnt, d.path().join("link")).unwrap();
    let sneaky = d.path().join("link/../link/cache");
    let sneaky = sneaky.to_str().unwrap();
    let e = must_fail_to_mount(
        &Conn::garage(),
        &garage().bucket,
        &mnt,
        &["--cache-dir", sneaky],
    );
    assert!(
        e.contains("--cache-dir") && e.contains("inside the mount point"),
        "{e}"
    );
}

#[test]
fn a_presign_expiry_up_to_7_days_is_accepted() {
    let s3 = S3::garage();
    let p = unique("presign");
    s3.put(&format!("{p}/f"), b"x".to_vec());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &["--presign-expiry", "48h"]);
    let url = common::sh(&m.dir, "getfattr -n user.s3.presigned_url --only-values f");
    assert!(url.contains("X-Amz-Expires=172800"), "{url}");
    let d = empty_dir();
    let e = must_fail_to_mount(
        &Conn::garage(),
        &garage().bucket,
        d.path(),
        &["--presign-expiry", "8d"],
    );
    assert!(e.contains("7 days"), "{e}");
}

#[test]
fn the_manual_and_the_completions_come_from_the_flag_definitions() {
    let run = |args: &[&str]| {
        let out = crate::common::s3mount_cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let man = run(&["man"]);
    assert!(
        man.contains(".TH s3mount 1"),
        "{}",
        &man[..200.min(man.len())]
    );
    // Every subcommand's options are in the one page, mount's included.
    for needle in [
        "s3mount mount",
        "s3mount check",
        "\\-\\-metadata\\-ttl",
        "\\-\\-role\\-arn",
        "\\-\\-external\\-id",
    ] {
        assert!(man.contains(needle), "the manual lacks {needle}");
    }
    for (shell, marker) in [
        ("bash", "_s3mount()"),
        ("zsh", "#compdef s3mount"),
        ("fish", "complete -c s3mount"),
    ] {
        let script = run(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: no {marker}");
        assert!(
            script.contains("metadata-ttl"),
            "{shell}: mount's flags missing"
        );
    }
}

/// https goes through TLS (the build's own rustls-on-ring client, src/s3/https.rs): an
/// https URL on Garage's plain-http port fails in the TLS handshake, and check says so.
#[test]
fn https_endpoint_speaks_tls() {
    let g = garage();
    let https = g.endpoint.replacen("http://", "https://", 1);
    let out = common::s3mount_cmd()
        .env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret)
        .args(["check", &g.bucket, "--endpoint-url", &https])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("cannot reach the S3 endpoint {https}"))
            && stdout.contains("TLS handshake failed"),
        "{stdout}"
    );
}
