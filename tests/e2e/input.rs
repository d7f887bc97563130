//! Careless input and private data (issue 11): values S3 does not define (`--acl`,
//! `--storage-class`, `--sse`), an unknown `--log-level`, upload buffers beyond
//! `--memory-limit` and a cache dir that takes no file are refused before anything is
//! mounted, with one line naming the flag; and nothing secret or private (secret key,
//! session token, Authorization values, file contents) reaches the log, even at
//! `RUST_LOG=trace` with the SDK's own body logging asked for.

use std::time::{Duration, Instant};

use crate::common::{self, Conn, Mount, empty_dir, is_mounted, moto_lock, must_fail_to_mount};

/// A connection that is never reached: every case here must be refused before any request.
fn offline() -> Conn {
    Conn::default()
        .with_env("AWS_ACCESS_KEY_ID", "AKIAOFFLINEEXAMPLE")
        .with_env("AWS_SECRET_ACCESS_KEY", "offline-secret-never-used")
        .with_args(&[
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--region",
            "us-east-1",
        ])
}

/// `s3mount mount some-bucket DIR EXTRA...` must fail with one line naming `flag` and
/// containing each of `mentions`, nothing mounted.
fn refused(extra: &[&str], flag: &str, mentions: &[&str]) {
    let d = empty_dir();
    let start = Instant::now();
    let e = must_fail_to_mount(&offline(), "some-bucket", d.path(), extra);
    assert!(e.contains(flag), "{extra:?}: {e}");
    for m in mentions {
        assert!(e.contains(m), "{extra:?}: expected {m:?} in {e}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{extra:?} took {:?}",
        start.elapsed()
    );
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        0,
        "mount point touched"
    );
}

#[test]
fn undefined_acl_storage_class_and_sse_are_refused() {
    refused(
        &["--acl", "public"],
        "--acl",
        &[
            "'public'",
            "private",
            "bucket-owner-full-control",
            "aws-exec-read",
        ],
    );
    refused(
        &["--storage-class", "COLD"],
        "--storage-class",
        &["'COLD'", "STANDARD_IA", "GLACIER_IR", "EXPRESS_ONEZONE"],
    );
    refused(
        &["--sse", "aes128"],
        "--sse",
        &["'aes128'", "AES256", "aws:kms", "aws:kms:dsse"],
    );
}

#[test]
fn unknown_log_level_is_refused() {
    for bad in ["loud", "s3mount=loud"] {
        refused(
            &["--log-level", bad],
            "--log-level",
            &["error, warn, info, debug, trace, off"],
        );
    }
}

#[test]
fn upload_buffers_beyond_the_memory_limit_are_refused() {
    refused(
        &["--write-part-size", "64MiB", "--upload-threads", "4"],
        "--memory-limit",
        &[
            "--write-part-size 64MiB",
            "--upload-threads 4",
            "256MiB",
            "128MiB",
        ],
    );
}

#[test]
fn a_cache_dir_that_takes_no_file_is_refused() {
    let d = empty_dir();
    let file = d.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    for bad in [
        file.clone(),
        file.join("sub"),
        // Read-only even for root: nothing can be created under /proc.
        "/proc/self/s3mount-cache".into(),
        "/proc/self".into(),
    ] {
        refused(
            &["--cache-dir", bad.to_str().unwrap()],
            "--cache-dir",
            &[bad.to_str().unwrap()],
        );
    }
}

/// Accepted spellings: the S3 values in any case, and the levels and filters `--log-level`
/// always took: a mount with them gets past every check and fails only at the unreachable
/// endpoint.
#[test]
fn defined_values_in_any_case_get_past_the_checks() {
    let d = empty_dir();
    let cache = d.path().join("cache");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    for extra in [
        vec![
            "--acl",
            "bucket-owner-full-control",
            "--sse",
            "aws:kms:dsse",
        ],
        vec![
            "--acl",
            "Private",
            "--storage-class",
            "standard_ia",
            "--sse",
            "aes256",
        ],
        vec![
            "--storage-class",
            "GLACIER_IR",
            "--log-level",
            "warn,s3mount=debug",
        ],
        vec![
            "--log-level",
            "TRACE",
            "--write-part-size",
            "32MiB",
            "--upload-threads",
            "4",
        ],
    ] {
        let mut extra = extra;
        extra.extend([
            "--cache-dir",
            cache.to_str().unwrap(),
            "--retry-deadline",
            "0",
        ]);
        // RUST_LOG=off: the accepted levels would otherwise log the failed attempt.
        let conn = offline().with_env("RUST_LOG", "off");
        let e = must_fail_to_mount(&conn, "some-bucket", &mnt, &extra);
        assert!(e.contains("cannot reach the S3 endpoint"), "{extra:?}: {e}");
    }
    assert!(cache.is_dir(), "the cache dir is created");
    // An explicit --cache-dir also holds the read cache on disk (its lock file): nothing
    // else may be left, the probe file least of all.
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "read-cache")
        .collect();
    assert!(left.is_empty(), "probe removed: {left:?}");
}

/// Unmount by hand (`fusermount3` may be missing where tests run as root).
fn unmount(m: &Mount) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_mounted(&m.dir) && Instant::now() < deadline {
        let ok = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(&m.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount").arg(&m.dir).status();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Percent-decoding of a URL query value.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Assert none of `secrets` (nor an Authorization value) is in `text` (named `what`).
fn assert_clean(what: &str, text: &str, secrets: &[(&str, &str)]) {
    for (name, s) in secrets {
        assert!(!s.is_empty() && !text.contains(s), "{name} found in {what}");
    }
    // An Authorization header value (SigV4): `AWS4-HMAC-SHA256 Credential=...Signature=`.
    assert!(
        !text.contains("AWS4-HMAC-SHA256 Credential="),
        "an Authorization value in {what}"
    );
    for el in ["SecretAccessKey>", "SessionToken>"] {
        for (i, _) in text.match_indices(&format!("<{el}")) {
            assert!(
                text[i + el.len() + 1..].starts_with("[redacted]"),
                "an STS {el} in {what}"
            );
        }
    }
}

/// A mount through moto with the user's secret key on the command line, an STS session
/// token, `RUST_LOG=trace` (plus directives aimed at the wire-logging targets) and the
/// SDK's body logging switched on: the secret is warned about, and neither it, the
/// session token, an Authorization value nor a file's contents reach stderr or the log,
/// through writes, reads and a presign.
#[test]
fn secrets_and_data_never_reach_the_log_even_at_trace() {
    let mut moto = moto_lock();
    let m = moto.scenario();
    let rust_log = "trace,aws_sigv4::http_request::sign=trace,\
                    aws_smithy_runtime::client::orchestrator::http=trace,h2=trace,hyper=trace";
    let conn = Conn::default()
        .with_env("RUST_LOG", rust_log)
        .with_env("LOG_SENSITIVE_BODIES", "true")
        .with_env("LOG_SIGNABLE_BODY", "true")
        .with_args(&[
            "--endpoint-url",
            &m.endpoint,
            "--sts-endpoint-url",
            &m.endpoint,
        ])
        .with_args(&["--region", "us-east-1", "--role-arn", &m.role_arn])
        .with_args(&["--external-id", &m.external_id])
        .with_args(&["--access-key-id", &m.user_key_id])
        .with_args(&["--secret-access-key", &m.user_secret]);
    let mount = Mount::with(&conn, &format!("{}/{}", m.bucket, m.prefix), &[]);
    let warning: Vec<_> = mount
        .stderr
        .lines()
        .filter(|l| l.starts_with("s3mount: warning: --secret-access-key"))
        .collect();
    assert_eq!(warning.len(), 1, "{}", mount.stderr);
    assert!(
        warning[0].contains("AWS_SECRET_ACCESS_KEY") && warning[0].contains("~/.aws"),
        "{}",
        warning[0]
    );

    let contents = format!("private contents {}", common::unique("body"));
    std::fs::write(mount.path("private.txt"), &contents).unwrap();
    assert_eq!(
        std::fs::read_to_string(mount.path("private.txt")).unwrap(),
        contents
    );
    let presign = common::s3mount_cmd()
        .env("RUST_LOG", "trace")
        .arg("presign")
        .arg(mount.path("hello.txt"))
        .output()
        .unwrap();
    assert!(presign.status.success(), "{presign:?}");
    let url = String::from_utf8(presign.stdout).unwrap();
    let token = url
        .trim()
        .split('&')
        .find_map(|kv| kv.strip_prefix("X-Amz-Security-Token="))
        .unwrap_or_else(|| panic!("no session token in {url}"))
        .to_owned();
    let token_decoded = url_decode(&token);
    let signature = url
        .trim()
        .split('&')
        .find_map(|kv| kv.strip_prefix("X-Amz-Signature="))
        .unwrap()
        .to_owned();
    std::fs::remove_file(mount.path("private.txt")).unwrap();
    unmount(&mount);

    let log = mount.log_text();
    // The log is the trace log it should be (so the checks below can fail).
    assert!(log.contains("TRACE") && log.lines().count() > 100, "{log}");
    assert!(log.contains("private.txt"), "{log}");
    let secrets = [
        ("the secret access key", m.user_secret.as_str()),
        ("the session token", token.as_str()),
        ("the session token (decoded)", token_decoded.as_str()),
        ("the presign signature", signature.as_str()),
        ("the file's contents", contents.as_str()),
    ];
    assert_clean("the log", &log, &secrets);
    assert_clean("the mount's stderr", &mount.stderr, &secrets);
    assert_clean(
        "presign's stderr",
        &String::from_utf8_lossy(&presign.stderr),
        &secrets,
    );
}

/// The warning names both flags when a session token is given too; it is one line, and
/// the secrets stay out of a trace log of a failed mount.
#[test]
fn secret_flags_are_warned_about_on_one_line() {
    let d = empty_dir();
    let secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY";
    let token = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789";
    let mut c = common::s3mount_cmd();
    c.env("RUST_LOG", "trace")
        .args(["mount", "some-bucket"])
        .arg(d.path())
        .args([
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--region",
            "us-east-1",
        ])
        .args([
            "--access-key-id",
            "AKIAEXAMPLE",
            "--secret-access-key",
            secret,
        ])
        .args(["--session-token", token, "--retry-deadline", "0"])
        .stdin(std::process::Stdio::null());
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(!is_mounted(d.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("s3mount: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("--secret-access-key and --session-token")
            && warnings[0].contains("AWS_SESSION_TOKEN")
            && warnings[0].contains("--role-arn"),
        "{}",
        warnings[0]
    );
    assert!(stderr.contains("TRACE"), "{stderr}");
    assert_clean(
        "stderr",
        &stderr,
        &[("the secret", secret), ("the session token", token)],
    );
}
