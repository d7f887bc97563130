//! Prefixes with characters IAM reads as wildcards or variables (`*`, `?`, `$`): the
//! policy of `s3mount policy` and the resources `s3mount check` reports spell them as IAM's
//! literal escapes (`${*}`, `${?}`, `${$}`) so they grant that one prefix only, while a
//! mount of such a prefix (against Garage) still reads and writes the keys as they are.

use std::fs;

use serde_json::Value;

use crate::common::{Conn, Mount, S3, s3mount_cmd, unique};

/// `s3mount policy TARGET --mode read-write` as JSON.
fn policy(target: &str) -> Value {
    let out = s3mount_cmd()
        .args(["policy", target, "--mode", "read-write"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn policy_escapes_wildcards_and_variables_in_the_prefix() {
    let p = policy("bucket/team-*");
    assert_eq!(p["Version"], "2012-10-17");
    let s = &p["Statement"];
    assert_eq!(s[0]["Resource"], "arn:aws:s3:::bucket");
    assert_eq!(
        s[0]["Condition"]["StringLike"]["s3:prefix"],
        serde_json::json!(["team-${*}/", "team-${*}/*"])
    );
    assert_eq!(s[1]["Resource"], "arn:aws:s3:::bucket/team-${*}/*");

    let p = policy("s3://bucket/cost$/q?/${aws:username}");
    assert_eq!(p["Version"], "2012-10-17");
    let s = &p["Statement"];
    let literal = "cost${$}/q${?}/${$}{aws:username}/";
    assert_eq!(
        s[0]["Condition"]["StringLike"]["s3:prefix"],
        serde_json::json!([literal, format!("{literal}*")])
    );
    assert_eq!(
        s[1]["Resource"],
        format!("arn:aws:s3:::bucket/{literal}*").as_str()
    );
}

#[test]
fn a_prefix_with_a_star_mounts_and_check_reports_the_escaped_arn() {
    let s3 = S3::garage();
    let base = unique("esc");
    let prefix = format!("{base}/team-*");
    let m = Mount::garage(&format!("{}/{prefix}", s3.bucket), &[]);
    fs::write(m.path("file"), b"star").unwrap();
    assert_eq!(fs::read(m.path("file")).unwrap(), b"star");
    // Closing the file committed the upload, under the prefix exactly as given.
    assert_eq!(s3.keys(&format!("{base}/")), vec![format!("{prefix}/file")]);
    assert_eq!(s3.get(&format!("{prefix}/file")).unwrap(), b"star");

    // `check` probes the real prefix and reports the ARNs a policy must name.
    let conn = Conn::garage();
    let mut cmd = s3mount_cmd();
    cmd.envs(conn.env.iter().map(|(k, v)| (k, v)));
    cmd.args(["check", &format!("{}/{prefix}", s3.bucket), "--json"])
        .args(&conn.args);
    let out = cmd.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(out.status.success() && v["ok"] == true, "{v:#}");
    let escaped = format!("arn:aws:s3:::{}/{base}/team-${{*}}/*", s3.bucket);
    let probes = v["probes"].as_array().unwrap();
    assert!(
        probes.iter().any(|p| p["resource"] == escaped.as_str()),
        "{v:#}"
    );
    for p in probes {
        let want = if p["action"] == "s3:ListBucket" {
            format!("arn:aws:s3:::{}", s3.bucket)
        } else {
            escaped.clone()
        };
        assert_eq!(p["resource"], want.as_str(), "{p:#}");
    }
    // The check's test object was removed again; the file is untouched.
    assert_eq!(s3.keys(&format!("{base}/")), vec![format!("{prefix}/file")]);
    assert_eq!(fs::read(m.path("file")).unwrap(), b"star");
}
