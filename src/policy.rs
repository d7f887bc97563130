//! The least-privilege IAM policy a mount needs, and the role trust policy that lets a
//! given principal assume the role only with an External ID.
//!
//! Which actions each mode needs, and why:
//! - `s3:ListBucket` on the bucket — every directory listing and every lookup (a lookup
//!   lists `name/` to tell directories from files); limited by an `s3:prefix` condition to
//!   the mounted path.
//! - `s3:GetObject` — reads, and HeadObject (which S3 authorizes as GetObject).
//! - `s3:PutObject` — new files, overwrites, metadata changes (a copy onto itself), mkdir
//!   markers, symlinks, and the multipart uploads of large files.
//! - `s3:AbortMultipartUpload` — cleaning up an upload that failed half-way.
//! - `s3:DeleteObject` — rm, rmdir, and the source side of a rename.
//! - `s3:PutObjectAcl` — only with `--acl`; `kms:GenerateDataKey`/`kms:Decrypt` — only with
//!   `--sse aws:kms`.
//!
//! The mounted prefix goes into the resource ARNs and the `s3:prefix` condition through
//! [`iam_literal`], so a prefix such as `team-*` grants that one prefix and not every
//! `team-…` one.

use serde_json::{Value, json};

/// What the mount will be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// List and read.
    ReadOnly,
    /// List, read, create and change, but never delete (pair with --no-delete).
    AppendOnly,
    /// Everything.
    ReadWrite,
}

impl Mode {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::ReadOnly => "read-only",
            Mode::AppendOnly => "append-only",
            Mode::ReadWrite => "read-write",
        }
    }
}

/// Options that add permissions.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Uploads carry a canned ACL.
    pub acl: bool,
    /// Uploads are encrypted with this KMS key (`Some("")`: the bucket's default key).
    pub kms_key: Option<String>,
}

/// The object-level actions `mode` needs.
pub fn object_actions(mode: Mode, extras: &Extras) -> Vec<&'static str> {
    let mut a = vec!["s3:GetObject"];
    if mode != Mode::ReadOnly {
        a.extend(["s3:PutObject", "s3:AbortMultipartUpload"]);
    }
    if mode == Mode::ReadWrite {
        a.push("s3:DeleteObject");
    }
    if extras.acl && mode != Mode::ReadOnly {
        a.push("s3:PutObjectAcl");
    }
    a.sort_unstable();
    a
}

/// `s` written so that IAM matches it literally, in a resource ARN or a `StringLike`
/// condition value: IAM reads `*` and `?` as wildcards there and `${…}` as a policy
/// variable, so an S3 key prefix (which may contain all three) must spell them as IAM's
/// escapes `${*}`, `${?}` and `${$}` — or the policy grants, or refers to, something else
/// (`team-*/` would grant every `team-…/` prefix). Each character is escaped once, in one
/// pass, so the `$` of an escape is never escaped again; a `${` in `s` becomes `${$}{`.
/// The escapes are policy variables, which need policy version 2012-10-17 (the version
/// every policy here carries). Bucket names cannot contain these characters and are not
/// passed through this.
pub fn iam_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '*' => out.push_str("${*}"),
            '?' => out.push_str("${?}"),
            '$' => out.push_str("${$}"),
            c => out.push(c),
        }
    }
    out
}

/// The ARN of the objects under `bucket`/`prefix`: the prefix matched literally
/// ([`iam_literal`]), followed by the wildcard for every key under it.
pub fn objects_arn(bucket: &str, prefix: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{}*", iam_literal(prefix))
}

/// The permissions policy for mounting `bucket`/`prefix` (prefix `""` or ending in `/`).
/// The prefix is matched literally (see [`iam_literal`]).
pub fn permissions_policy(bucket: &str, prefix: &str, mode: Mode, extras: &Extras) -> Value {
    let mut list = json!({
        "Sid": "ListTheMountedPath",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": format!("arn:aws:s3:::{bucket}"),
    });
    if !prefix.is_empty() {
        let literal = iam_literal(prefix);
        list["Condition"] =
            json!({ "StringLike": { "s3:prefix": [literal.clone(), format!("{literal}*")] } });
    }
    let mut statements = vec![
        list,
        json!({
            "Sid": "ObjectsUnderTheMountedPath",
            "Effect": "Allow",
            "Action": object_actions(mode, extras),
            "Resource": objects_arn(bucket, prefix),
        }),
    ];
    if let Some(key) = &extras.kms_key {
        let mut actions = vec!["kms:Decrypt"];
        if mode != Mode::ReadOnly {
            actions.push("kms:GenerateDataKey");
        }
        statements.push(json!({
            "Sid": "UseTheKmsKey",
            "Effect": "Allow",
            "Action": actions,
            "Resource": if key.is_empty() { "*".to_owned() } else { key.clone() },
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The permissions policy of the buckets view: listing the buckets, and the mode's actions
/// on every bucket (plus CreateBucket/DeleteBucket for mkdir/rmdir at the root).
pub fn all_buckets_policy(mode: Mode, extras: &Extras) -> Value {
    let mut bucket_actions = vec!["s3:ListBucket"];
    if mode != Mode::ReadOnly {
        bucket_actions.push("s3:CreateBucket");
    }
    if mode == Mode::ReadWrite {
        bucket_actions.push("s3:DeleteBucket");
    }
    bucket_actions.sort_unstable();
    let mut p = permissions_policy("*", "", mode, extras);
    let statements = p["Statement"].as_array_mut().expect("statements");
    statements[0]["Action"] = json!(bucket_actions);
    statements[0]["Sid"] = json!("ListAndManageBuckets");
    statements.insert(
        0,
        json!({
            "Sid": "ListAllBuckets",
            "Effect": "Allow",
            "Action": "s3:ListAllMyBuckets",
            "Resource": "*",
        }),
    );
    p
}

/// The role trust policy: `principal` may assume the role only with `external_id`.
pub fn trust_policy(principal: &str, external_id: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AssumeWithExternalId",
            "Effect": "Allow",
            "Principal": { "AWS": principal },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": external_id } },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_policy_is_scoped_to_the_prefix() {
        let p = permissions_policy("b", "team-a/", Mode::ReadWrite, &Extras::default());
        let s = &p["Statement"];
        assert_eq!(s[0]["Resource"], "arn:aws:s3:::b");
        assert_eq!(s[0]["Condition"]["StringLike"]["s3:prefix"][1], "team-a/*");
        assert_eq!(s[1]["Resource"], "arn:aws:s3:::b/team-a/*");
        assert_eq!(
            s[1]["Action"],
            json!([
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:PutObject"
            ])
        );
        assert_eq!(s.as_array().unwrap().len(), 2);
    }

    /// The ListBucket condition values and the objects ARN of a read-write policy.
    fn scoped(prefix: &str) -> (Value, Value) {
        let p = permissions_policy("b", prefix, Mode::ReadWrite, &Extras::default());
        assert_eq!(p["Version"], "2012-10-17", "escapes need policy variables");
        let s = &p["Statement"];
        assert_eq!(
            s[0]["Resource"], "arn:aws:s3:::b",
            "the bucket is never escaped"
        );
        (
            s[0]["Condition"]["StringLike"]["s3:prefix"].clone(),
            s[1]["Resource"].clone(),
        )
    }

    #[test]
    fn iam_wildcards_and_variables_in_the_prefix_are_escaped_once() {
        assert_eq!(iam_literal("team-*/"), "team-${*}/");
        assert_eq!(iam_literal("a?b/"), "a${?}b/");
        assert_eq!(iam_literal("cost$/"), "cost${$}/");
        assert_eq!(iam_literal("${aws:username}/"), "${$}{aws:username}/");
        assert_eq!(iam_literal("x/*?$*/"), "x/${*}${?}${$}${*}/");
        // Escaping is one pass: an escape already in the input is itself escaped.
        assert_eq!(iam_literal("${*}"), "${$}{${*}}");
        assert_eq!(
            iam_literal("team-a/ü é+=,@_~!()'&/"),
            "team-a/ü é+=,@_~!()'&/"
        );

        let (cond, arn) = scoped("team-*/");
        assert_eq!(cond, json!(["team-${*}/", "team-${*}/*"]));
        assert_eq!(arn, "arn:aws:s3:::b/team-${*}/*");

        let (cond, arn) = scoped("q?/");
        assert_eq!(cond, json!(["q${?}/", "q${?}/*"]));
        assert_eq!(arn, "arn:aws:s3:::b/q${?}/*");

        let (cond, arn) = scoped("price$/");
        assert_eq!(cond, json!(["price${$}/", "price${$}/*"]));
        assert_eq!(arn, "arn:aws:s3:::b/price${$}/*");

        let (cond, arn) = scoped("home/${aws:username}/");
        assert_eq!(
            cond,
            json!(["home/${$}{aws:username}/", "home/${$}{aws:username}/*"])
        );
        assert_eq!(arn, "arn:aws:s3:::b/home/${$}{aws:username}/*");

        let (cond, arn) = scoped("a*/b?c/$d/");
        assert_eq!(cond, json!(["a${*}/b${?}c/${$}d/", "a${*}/b${?}c/${$}d/*"]));
        assert_eq!(arn, "arn:aws:s3:::b/a${*}/b${?}c/${$}d/*");

        let (cond, arn) = scoped("team-a/reports/");
        assert_eq!(cond, json!(["team-a/reports/", "team-a/reports/*"]));
        assert_eq!(arn, "arn:aws:s3:::b/team-a/reports/*");
    }

    #[test]
    fn modes_and_extras() {
        let ro = permissions_policy("b", "", Mode::ReadOnly, &Extras::default());
        assert_eq!(ro["Statement"][1]["Action"], json!(["s3:GetObject"]));
        assert!(ro["Statement"][0].get("Condition").is_none());
        let ao = object_actions(Mode::AppendOnly, &Extras::default());
        assert!(!ao.contains(&"s3:DeleteObject") && ao.contains(&"s3:PutObject"));
        let extras = Extras {
            acl: true,
            kms_key: Some("arn:aws:kms:eu-west-1:123456789012:key/k".into()),
        };
        let p = permissions_policy("b", "", Mode::ReadWrite, &extras);
        assert!(
            p["Statement"][1]["Action"]
                .as_array()
                .unwrap()
                .contains(&json!("s3:PutObjectAcl"))
        );
        assert_eq!(
            p["Statement"][2]["Resource"],
            "arn:aws:kms:eu-west-1:123456789012:key/k"
        );
        let all = all_buckets_policy(Mode::ReadWrite, &Extras::default());
        assert_eq!(all["Statement"][0]["Action"], "s3:ListAllMyBuckets");
        assert_eq!(all["Statement"][1]["Resource"], "arn:aws:s3:::*");
        assert_eq!(all["Statement"][2]["Resource"], "arn:aws:s3:::*/*");
        let t = trust_policy("arn:aws:iam::123456789012:user/u", "x-1");
        assert_eq!(
            t["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
            "x-1"
        );
    }
}
