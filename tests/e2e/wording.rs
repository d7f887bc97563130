//! Every error a user can cause reads as one sentence they can act on (issue 15), end to
//! end: the cases `auth.rs` and `cli.rs` do not already cover. Each mount must fail with
//! nothing mounted and one line under 300 characters without `Debug` artefacts, naming the
//! cause; `s3mount check` says the same sentence where it is run, and a background mount
//! that never came up has the sentence in its log file too.
//!
//! The servers: Garage for credentials, permissions, region and TLS; a canned-answer server
//! on loopback for what neither Garage nor moto rejects (an expired session token, clock
//! skew); nothing at all for the profile chain (`credential_process`, `source_profile`
//! loops, an expired SSO session) and DNS, the latter two run inside a network namespace
//! of their own so that no query can leave the machine.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::http::{self, Response};
use crate::common::{
    self, Conn, assert_one_sentence, empty_dir, garage, must_fail, must_fail_to_mount, s3mount_cmd,
};

/// A connection through the profile `profile` of a temporary `~/.aws/config` holding
/// `config` (under `home`, which is also `$HOME`), against Garage, with no keys in the
/// environment (and `AWS_SHARED_CREDENTIALS_FILE=/dev/null`, from [`s3mount_cmd`]).
fn profile_conn(home: &Path, config: &str, profile: &str) -> Conn {
    let file = home.join(".aws/config");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, config).unwrap();
    Conn {
        env: vec![
            ("HOME".into(), home.to_str().unwrap().into()),
            ("AWS_CONFIG_FILE".into(), file.to_str().unwrap().into()),
        ],
        args: vec![],
    }
    .with_args(&["--profile", profile, "--endpoint-url", &garage().endpoint])
    .with_args(&["--region", "us-east-1"])
}

/// Mount `target` with `conn`, which must fail: the sentence (without `s3mount: error: `),
/// checked to be one sentence.
fn refused(conn: &Conn, target: &str) -> String {
    let d = empty_dir();
    let e = must_fail_to_mount(conn, target, d.path(), &[]);
    assert_one_sentence(&e);
    e.trim().trim_start_matches("s3mount: error: ").to_owned()
}

/// `s3mount check TARGET` with `conn`: exits 1, and its one `✗` line (the reason nothing
/// could be probed), checked to be one sentence.
fn check_refused(conn: &Conn, target: &str) -> String {
    check_output(check_cmd(conn, target))
}

/// `s3mount check TARGET` with `conn`.
fn check_cmd(conn: &Conn, target: &str) -> Command {
    let mut c = s3mount_cmd();
    c.envs(conn.env.iter().map(|(k, v)| (k, v)))
        .arg("check")
        .arg(target)
        .args(&conn.args);
    c
}

/// What [`check_refused`] checks, of a check command built by hand.
fn check_output(mut c: Command) -> String {
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let fatal: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("✗ ")).collect();
    assert_eq!(fatal.len(), 1, "one reason expected: {text}");
    assert_one_sentence(fatal[0]);
    fatal[0].to_owned()
}

/// `cmd` run inside a new network namespace holding only a loopback interface: nothing it
/// sends can leave the machine, and a name lookup fails at once (no route to any DNS
/// server) instead of waiting on one.
fn in_own_netns(cmd: Command) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
        ])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.stdin(std::process::Stdio::null());
    wrapped
}

/// A loopback server answering every request with S3 error `code` (HTTP `status`); its URL.
fn failing_s3(status: &'static str, code: &'static str, message: &'static str) -> String {
    http::serve(move |req| {
        let body = if req.line().starts_with("head") {
            String::new()
        } else {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>{message}</Message><RequestId>r1</RequestId></Error>"
            )
        };
        Response {
            headers: "Content-Type: application/xml\r\n".into(),
            ..Response::new(status, body)
        }
    })
}

/// Temporary credentials (with a session token) against `url`, region given.
fn temporary_keys_at(url: &str) -> Conn {
    Conn {
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), "ASIAEXAMPLEEXAMPLE01".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "s".repeat(40)),
            ("AWS_SESSION_TOKEN".into(), "session-token-value".into()),
        ],
        args: vec![],
    }
    .with_args(&["--endpoint-url", url, "--region", "us-east-1"])
}

#[test]
fn a_credential_process_that_fails_is_named_with_its_profile_status_and_stderr() {
    let home = empty_dir();
    let config = "[profile helper]\n\
                  credential_process = sh -c \"echo token service says no >&2; exit 3\"\n";
    let c = profile_conn(home.path(), config, "helper");
    let e = refused(&c, &garage().bucket);
    assert!(
        e.contains("credential_process of profile 'helper' failed"),
        "{e}"
    );
    assert!(
        e.contains("exit status: 3") && e.contains("token service says no"),
        "{e}"
    );
    assert_eq!(
        check_refused(&c, &garage().bucket),
        e,
        "check words it alike"
    );
}

#[test]
fn a_credential_process_that_prints_garbage_says_what_was_expected() {
    let home = empty_dir();
    let config = "[profile garbage]\ncredential_process = echo hello, this is not JSON\n";
    let c = profile_conn(home.path(), config, "garbage");
    let e = refused(&c, &garage().bucket);
    assert!(
        e.contains("credential_process of profile 'garbage'")
            && e.contains("not credentials")
            && e.contains("AccessKeyId"),
        "{e}"
    );
}

#[test]
fn a_source_profile_loop_names_the_loop() {
    let home = empty_dir();
    let config = "[profile a]\nrole_arn = arn:aws:iam::123456789012:role/a\nsource_profile = b\n\
                  [profile b]\nrole_arn = arn:aws:iam::123456789012:role/b\nsource_profile = a\n";
    let c = profile_conn(home.path(), config, "a");
    let e = refused(&c, &garage().bucket);
    assert!(
        e.contains("source_profile chain of profile 'a' loops") && e.contains("a → b → a"),
        "{e}"
    );
    assert_eq!(
        check_refused(&c, &garage().bucket),
        e,
        "check words it alike"
    );
}

#[test]
fn an_expired_sso_session_says_to_sign_in_again() {
    // A profile on an sso-session whose cached token (`~/.aws/sso/cache/<sha1 of the
    // session name>.json`, as aws-config's token provider names it) expired and holds no
    // refresh token: the SDK gives up before any request. Run without a network anyway.
    let home = empty_dir();
    let config = "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\n\
                  sso_role_name = ReadOnly\n\
                  [sso-session corp]\nsso_start_url = https://corp.example.com/start\n\
                  sso_region = us-east-1\n";
    let c = profile_conn(home.path(), config, "dev");
    let hash = common::sh(home.path(), "printf %s corp | sha1sum | cut -d' ' -f1");
    let cache = home.path().join(".aws/sso/cache");
    fs::create_dir_all(&cache).unwrap();
    fs::write(
        cache.join(format!("{}.json", hash.trim())),
        r#"{"accessToken": "old-token", "expiresAt": "2020-01-01T00:00:00Z",
            "region": "us-east-1", "startUrl": "https://corp.example.com/start"}"#,
    )
    .unwrap();
    let d = empty_dir();
    let e = must_fail(
        in_own_netns(c.mount_cmd(&garage().bucket, d.path(), &[])),
        d.path(),
    );
    assert_one_sentence(&e);
    assert!(
        e.contains("SSO session 'corp' of profile 'dev' has expired")
            && e.contains("`aws sso login --profile dev`"),
        "{e}"
    );
    let sentence = e.trim().trim_start_matches("s3mount: error: ");
    let checked = check_output(in_own_netns(check_cmd(&c, &garage().bucket)));
    assert_eq!(checked, sentence, "check words it alike");
}

#[test]
fn an_expired_session_token_says_to_get_fresh_credentials() {
    let url = failing_s3(
        "400 Bad Request",
        "ExpiredToken",
        "The provided token has expired.",
    );
    let c = temporary_keys_at(&url);
    let e = refused(&c, "canned/p");
    assert!(
        e.contains("session token has expired") && e.contains("ExpiredToken"),
        "{e}"
    );
    assert!(e.contains(&url), "names the endpoint: {e}");
    assert_eq!(check_refused(&c, "canned/p"), e, "check words it alike");
}

#[test]
fn clock_skew_says_to_fix_the_system_time() {
    let url = failing_s3(
        "403 Forbidden",
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
    );
    let e = refused(&temporary_keys_at(&url), "canned");
    assert!(
        e.contains("local clock differs") && e.contains("RequestTimeTooSkewed"),
        "{e}"
    );
    assert!(e.contains("fix the system time"), "{e}");
}

#[test]
fn access_denied_on_the_first_listing_names_the_action_resource_and_check() {
    // A real Garage key allowed on another bucket only.
    common::garage_bucket("s3mount-words-other");
    let (id, secret) = common::garage_key("s3mount-words-nokey", "s3mount-words-other", "ro");
    let mut c = Conn::garage();
    c.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), id),
        ("AWS_SECRET_ACCESS_KEY".into(), secret),
    ];
    let bucket = &garage().bucket;
    let e = refused(&c, &format!("{bucket}/some/dir"));
    assert!(
        e.contains("access denied listing s3://")
            && e.contains("s3:ListBucket")
            && e.contains(&format!("arn:aws:s3:::{bucket}"))
            && e.contains(&format!("`s3mount check {bucket}/some/dir/`")),
        "{e}"
    );
    assert!(e.contains("AccessDenied"), "names the code: {e}");
}

#[test]
fn a_wrong_region_names_the_right_one_in_mount_and_check() {
    // Garage's region is us-east-1; it names it in its complaint about the credential scope.
    let c = Conn::garage().with_args(&["--region", "eu-west-3"]);
    let bucket = &garage().bucket;
    let e = refused(&c, bucket);
    assert!(
        e.contains(&format!(
            "bucket '{bucket}' is in region us-east-1, not eu-west-3"
        )) && e.contains("--region us-east-1"),
        "{e}"
    );
    assert_eq!(check_refused(&c, bucket), e, "check words it alike");
}

#[test]
fn tls_on_a_plain_http_port_names_tls_and_the_endpoint() {
    // (`cli::https_endpoint_speaks_tls` covers `check`; this is the mount.)
    let https = garage().endpoint.replacen("http://", "https://", 1);
    let mut c = Conn::garage();
    c.args = vec!["--endpoint-url".into(), https.clone()];
    let e = refused(&c, &garage().bucket);
    assert!(
        e.contains(&format!("cannot reach the S3 endpoint {https}"))
            && e.contains("TLS handshake failed"),
        "{e}"
    );
}

#[test]
fn a_host_name_that_does_not_resolve_names_the_endpoint_and_dns() {
    let url = "http://s3.nowhere.invalid:9000";
    let mut c = Conn::garage().with_args(&["--region", "us-east-1"]);
    c.args
        .splice(0..2, ["--endpoint-url".to_owned(), url.to_owned()]);
    let d = empty_dir();
    let e = must_fail(
        in_own_netns(c.mount_cmd(&garage().bucket, d.path(), &[])),
        d.path(),
    );
    assert_one_sentence(&e);
    assert!(
        e.contains(&format!("cannot reach the S3 endpoint {url}"))
            && e.contains("does not resolve (DNS)"),
        "{e}"
    );
    let sentence = e.trim().trim_start_matches("s3mount: error: ");
    let checked = check_output(in_own_netns(check_cmd(&c, &garage().bucket)));
    assert_eq!(checked, sentence, "check words it alike");
}

#[test]
fn a_background_mount_that_fails_before_mounting_logs_the_same_sentence() {
    let secret = "0".repeat(64);
    let c = Conn::garage().with_env("AWS_SECRET_ACCESS_KEY", &secret);
    let tmp = empty_dir();
    let log = tmp.path().join("logs/s3mount.log");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let e = must_fail_to_mount(
        &c,
        &garage().bucket,
        &mnt,
        &["--log-file", log.to_str().unwrap()],
    );
    assert_one_sentence(&e);
    let sentence = e.trim().trim_start_matches("s3mount: error: ");
    assert!(sentence.contains("secret access key is wrong"), "{e}");
    let logged = fs::read_to_string(&log).expect("the log file was written");
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines.len(), 1, "{logged}");
    assert!(
        lines[0].contains(" ERROR ") && lines[0].ends_with(&format!("not mounted: {sentence}")),
        "log: {logged}\nterminal: {e}"
    );
    assert!(!logged.contains(&secret), "secret in the log");

    // In JSON too, as the message of one ERROR event.
    let log = tmp.path().join("s3mount.json");
    must_fail_to_mount(
        &c,
        &garage().bucket,
        &mnt,
        &["--log-file", log.to_str().unwrap(), "--log-format", "json"],
    );
    let logged = fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(logged.trim()).expect("one JSON line");
    assert_eq!(v["level"], "ERROR", "{logged}");
    assert_eq!(
        v["message"].as_str().unwrap(),
        format!("not mounted: {sentence}")
    );

    // A foreground mount writes no log file: its stderr is the log.
    let log = tmp.path().join("foreground.log");
    must_fail_to_mount(
        &c,
        &garage().bucket,
        &mnt,
        &["--log-file", log.to_str().unwrap(), "--foreground"],
    );
    assert!(!log.exists());
}
