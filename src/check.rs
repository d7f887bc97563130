//! `s3mount check`: the connection test integration platforms call "Test connection".
//!
//! It resolves the credentials (saying where they come from and, through STS
//! GetCallerIdentity, whose they are), finds the region, then probes each permission the
//! chosen mode needs under the mounted path only, with a uniquely named test object that is
//! always removed again. Every probe reports the IAM action and resource it exercised and,
//! when refused, the AWS error code — so a user knows exactly which statement to add.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::json;

use crate::policy::{self, Mode};
use crate::s3::client::AwsStore;
use crate::s3::connect::Connector;
use crate::s3::connection::{Connection, Target};
use crate::s3::diagnose::{self, is_credential_problem};
use crate::s3::{ErrorKind, ObjectStore, PutOptions, StoreError, auth};

/// One probed permission.
#[derive(Clone, Debug)]
pub struct Probe {
    /// What a mount uses it for.
    pub permission: &'static str,
    /// IAM action.
    pub action: &'static str,
    /// Resource ARN.
    pub resource: String,
    /// Granted?
    pub granted: bool,
    /// AWS error code (or error kind) when refused.
    pub code: Option<String>,
    /// Details when refused.
    pub detail: Option<String>,
}

/// The outcome of a check.
#[derive(Clone, Debug)]
pub struct Report {
    /// Bucket and path checked.
    pub target: String,
    /// Mode checked.
    pub mode: Mode,
    /// Where the credentials come from.
    pub credentials: String,
    /// Caller identity ARN, when STS answered (never asked for the keys of a non-AWS
    /// `--endpoint-url` without an STS endpoint).
    pub identity: Option<String>,
    /// Region in use.
    pub region: String,
    /// Probes run.
    pub probes: Vec<Probe>,
    /// Problems that stopped the check before the probes (worded for the user).
    pub fatal: Option<String>,
    /// A note to the user (e.g. a test object that could not be removed).
    pub notes: Vec<String>,
}

impl Report {
    /// Everything the mode needs is granted.
    pub fn ok(&self) -> bool {
        self.fatal.is_none() && self.probes.iter().all(|p| p.granted)
    }

    /// Machine-readable form.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "target": self.target,
            "mode": self.mode.name(),
            "ok": self.ok(),
            "credentials": self.credentials,
            "identity": self.identity,
            "region": self.region,
            "fatal": self.fatal,
            "notes": self.notes,
            "probes": self.probes.iter().map(|p| json!({
                "permission": p.permission,
                "action": p.action,
                "resource": p.resource,
                "granted": p.granted,
                "code": p.code,
                "detail": p.detail,
            })).collect::<Vec<_>>(),
        })
    }

    /// Human-readable table.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "s3mount check {} (mode {})\n",
            self.target,
            self.mode.name()
        );
        out += &format!("  credentials: {}\n", self.credentials);
        out += &format!(
            "  identity:    {}\n",
            self.identity.as_deref().unwrap_or(
                "unknown (STS GetCallerIdentity not answered, or not asked: S3-compatible endpoint)"
            )
        );
        out += &format!("  region:      {}\n", self.region);
        if let Some(f) = &self.fatal {
            out += &format!("\n✗ {f}\n");
        }
        if !self.probes.is_empty() {
            out += &format!(
                "\n  {:<38} {:<24} {:<40} RESULT\n",
                "PERMISSION", "IAM ACTION", "RESOURCE"
            );
            for p in &self.probes {
                let result = if p.granted {
                    "✔".to_owned()
                } else {
                    format!("✗ {}", p.code.as_deref().unwrap_or("denied"))
                };
                out += &format!(
                    "  {:<38} {:<24} {:<40} {result}\n",
                    p.permission, p.action, p.resource
                );
            }
        }
        for n in &self.notes {
            out += &format!("\nnote: {n}\n");
        }
        out += if self.ok() {
            "\nOK: every permission this mode needs is granted.\n"
        } else {
            "\nFAILED: see the ✗ lines (`s3mount policy` prints the policy to attach).\n"
        };
        out
    }
}

fn probe(
    permission: &'static str,
    action: &'static str,
    resource: String,
    r: Result<(), StoreError>,
) -> Probe {
    let (granted, code, detail) = match r {
        Ok(()) => (true, None, None),
        Err(e) => (
            false,
            Some(e.code.clone().unwrap_or_else(|| e.kind.to_string())),
            Some(e.to_string()),
        ),
    };
    Probe {
        permission,
        action,
        resource,
        granted,
        code,
        detail,
    }
}

async fn caller_identity(c: &Connector<'_>) -> Option<String> {
    let sdk = c.sdk_config();
    let mut b = aws_sdk_sts::config::Builder::from(sdk);
    let sts_flag = (c.connection().role.as_ref()).and_then(|r| r.sts_endpoint_url.clone());
    // Keys for an S3-compatible server given by --endpoint-url are not AWS's: asking AWS's
    // STS who they are would send them (and a DNS query) off to AWS for nothing.
    let s3_elsewhere =
        (c.connection().endpoint_url.as_deref()).is_some_and(|u| !u.contains(".amazonaws.com"));
    if sts_flag.is_none() && auth::configured_endpoint(sdk, "STS").is_none() && s3_elsewhere {
        return None;
    }
    if let Some(url) = sts_flag {
        b = b.endpoint_url(url);
    }
    if sdk.region().is_none() {
        b = b.region(aws_config::Region::new(auth::FALLBACK_REGION));
    }
    let sts = aws_sdk_sts::Client::from_conf(b.build());
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sts.get_caller_identity().send(),
    )
    .await
    .ok()?
    .ok()?;
    out.arn().map(str::to_owned)
}

/// The first step of every check: the credentials resolved (and whose they are), through
/// the same [`Connector`] a mount uses; or the report of why not.
async fn start<'a>(
    target: String,
    mode: Mode,
    conn: &'a Connection,
    region: String,
) -> std::result::Result<(Report, Connector<'a>), Report> {
    let mut report = Report {
        target,
        mode,
        credentials: "not resolved".into(),
        identity: None,
        region,
        probes: Vec::new(),
        fatal: None,
        notes: Vec::new(),
    };
    let c = match Connector::start(conn).await {
        Ok(c) => c,
        Err(e) => {
            report.fatal = Some(e.to_string());
            return Err(report);
        }
    };
    report.credentials = c.credentials().to_owned();
    if !conn.no_sign_request {
        report.identity = caller_identity(&c).await;
    }
    Ok((report, c))
}

/// Upload options whose permissions are checked too.
#[derive(Clone, Debug, Default)]
pub struct UploadChecks {
    /// Canned ACL (needs s3:PutObjectAcl).
    pub acl: Option<String>,
    /// SSE algorithm (aws:kms needs kms:GenerateDataKey and kms:Decrypt).
    pub sse: Option<String>,
    /// KMS key.
    pub sse_kms_key_id: Option<String>,
}

/// ARNs of what a check probes, and the key of its test object.
struct Scope<'a> {
    target: &'a Target,
    bucket_arn: String,
    objects_arn: String,
    test_key: String,
}

impl<'a> Scope<'a> {
    fn new(target: &'a Target) -> Self {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Scope {
            target,
            bucket_arn: format!("arn:aws:s3:::{}", target.bucket),
            objects_arn: policy::objects_arn(&target.bucket, &target.prefix),
            test_key: format!(
                "{}.s3mount-check-{}-{nonce:x}",
                target.prefix,
                std::process::id()
            ),
        }
    }
}

/// Run the check.
pub async fn run(target: &Target, conn: &Connection, mode: Mode, uploads: &UploadChecks) -> Report {
    let (mut report, c) = match start(
        format!("s3://{}/{}", target.bucket, target.prefix),
        mode,
        conn,
        conn.region.clone().unwrap_or_else(|| "not detected".into()),
    )
    .await
    {
        Ok(v) => v,
        Err(report) => return report,
    };
    let region = match c.region(target).await {
        Ok(r) => r,
        Err(e) => {
            report.fatal = Some(e.to_string());
            return report;
        }
    };
    report.region = if conn.region.is_some() {
        region.clone()
    } else {
        format!("{region} (detected)")
    };
    let mut settings = conn.request_settings();
    settings.sse = uploads.sse.clone();
    settings.sse_kms_key_id = uploads.sse_kms_key_id.clone();
    let store = c.store(&target.bucket, &region, settings);
    let scope = Scope::new(target);
    if let Err(fatal) = probe_listing(&mut report, &c, &store, &scope, &region).await {
        report.fatal = Some(fatal);
        return report;
    }
    let created = mode == Mode::ReadWrite && probe_put(&mut report, &store, &scope, uploads).await;
    probe_reads(&mut report, &store, &scope, created).await;
    if mode != Mode::ReadOnly {
        probe_multipart(&mut report, &store, &scope, mode).await;
    }
    if created {
        probe_delete(&mut report, &store, &scope).await;
    }
    report
}

/// ListObjectsV2 under the path. `Err`: a failure that stops the check (bad credentials, no
/// bucket, wrong region, unreachable), worded for the user.
async fn probe_listing(
    report: &mut Report,
    c: &Connector<'_>,
    store: &AwsStore,
    scope: &Scope<'_>,
    region: &str,
) -> std::result::Result<(), String> {
    let target = scope.target;
    let list = store
        .list(&target.prefix, true, None, Some(1))
        .await
        .map(|_| ());
    if let Err(e) = &list
        && (is_credential_problem(e)
            || matches!(
                e.kind,
                ErrorKind::NoSuchBucket
                    | ErrorKind::Unreachable
                    | ErrorKind::Timeout
                    | ErrorKind::ClockSkew
            ))
    {
        return Err(c.explain_listing(e, target, region).await);
    }
    if let Err(e) = &list
        && let Some(actual) = c.actual_region(e, target, region).await
    {
        return Err(diagnose::wrong_region(&target.bucket, &actual, region));
    }
    report.probes.push(probe(
        "list objects under the path",
        "s3:ListBucket",
        scope.bucket_arn.clone(),
        list,
    ));
    Ok(())
}

/// PutObject of the test object (and its ACL when asked); whether it now exists.
async fn probe_put(
    report: &mut Report,
    store: &AwsStore,
    scope: &Scope<'_>,
    uploads: &UploadChecks,
) -> bool {
    let put = store
        .put(
            &scope.test_key,
            Bytes::from_static(b"s3mount connection check\n"),
            &PutOptions::default(),
        )
        .await
        .map(|_| ());
    let created = put.is_ok();
    let kms_refused = put.as_ref().is_err_and(|e| {
        e.code.as_deref().is_some_and(|c| c.starts_with("KMS"))
            || e.message.as_deref().is_some_and(|m| m.contains("kms:"))
    });
    if kms_refused {
        report.probes.push(probe(
            "encrypt uploads with the KMS key",
            "kms:GenerateDataKey",
            uploads
                .sse_kms_key_id
                .clone()
                .unwrap_or_else(|| "the bucket's KMS key".into()),
            put,
        ));
    } else {
        report.probes.push(probe(
            "create and replace files",
            "s3:PutObject",
            scope.objects_arn.clone(),
            put,
        ));
    }
    if let Some(acl) = &uploads.acl
        && created
    {
        let r = store
            .client()
            .put_object_acl()
            .bucket(&scope.target.bucket)
            .key(&scope.test_key)
            .acl(aws_sdk_s3::types::ObjectCannedAcl::from(acl.as_str()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sdk("PutObjectAcl", &scope.test_key, e));
        report.probes.push(probe(
            "set the ACL of new files",
            "s3:PutObjectAcl",
            scope.objects_arn.clone(),
            r,
        ));
    }
    created
}

/// GetObject and HeadObject. With the test object: read it. Without (read-only, or
/// PutObject refused): a missing key answers 404 when reading is allowed and 403 when not.
async fn probe_reads(report: &mut Report, store: &AwsStore, scope: &Scope<'_>, created: bool) {
    let readable = |r: Result<(), StoreError>| match r {
        Err(e) if e.kind == ErrorKind::NotFound && !created => Ok(()),
        other => other,
    };
    let probe_key = if created {
        scope.test_key.clone()
    } else {
        format!("{}-absent", scope.test_key)
    };
    let get = store.get_range(&probe_key, 0..1, None).await.map(|_| ());
    report.probes.push(probe(
        "read files",
        "s3:GetObject",
        scope.objects_arn.clone(),
        readable(get),
    ));
    let head = store.head(&probe_key).await.map(|_| ());
    report.probes.push(probe(
        "read attributes (HeadObject)",
        "s3:GetObject",
        scope.objects_arn.clone(),
        readable(head),
    ));
}

/// A multipart upload that is created and aborted leaves nothing behind.
async fn probe_multipart(report: &mut Report, store: &AwsStore, scope: &Scope<'_>, mode: Mode) {
    match store
        .start_multipart(&scope.test_key, &PutOptions::default())
        .await
    {
        Ok(upload) => {
            let abort = upload.abort().await;
            if mode == Mode::AppendOnly {
                report.probes.push(probe(
                    "create files",
                    "s3:PutObject",
                    scope.objects_arn.clone(),
                    Ok(()),
                ));
            }
            report.probes.push(probe(
                "abort failed large uploads",
                "s3:AbortMultipartUpload",
                scope.objects_arn.clone(),
                abort,
            ));
        }
        Err(e) => report.probes.push(probe(
            "upload large files (multipart)",
            "s3:PutObject",
            scope.objects_arn.clone(),
            Err(e),
        )),
    }
}

/// DeleteObject of the test object, which also cleans up.
async fn probe_delete(report: &mut Report, store: &AwsStore, scope: &Scope<'_>) {
    let del = store.delete(&scope.test_key).await;
    if del.is_err() {
        report.notes.push(format!(
            "the test object s3://{}/{} could not be deleted; remove it by hand",
            scope.target.bucket, scope.test_key
        ));
    }
    report.probes.push(probe(
        "delete files (and clean up this test)",
        "s3:DeleteObject",
        scope.objects_arn.clone(),
        del,
    ));
}

/// Check for the buckets view: credentials and ListBuckets (s3:ListAllMyBuckets).
pub async fn run_all_buckets(conn: &Connection) -> Report {
    let (mut report, c) = match start(
        "s3:// (every bucket)".into(),
        Mode::ReadOnly,
        conn,
        conn.region
            .clone()
            .unwrap_or_else(|| auth::FALLBACK_REGION.into()),
    )
    .await
    {
        Ok(v) => v,
        Err(report) => return report,
    };
    let region = c.home_region();
    let r = c
        .client(&region)
        .list_buckets()
        .send()
        .await
        .map(|_| ())
        .map_err(|e| StoreError::from_sdk("ListBuckets", "", e));
    report.region = region;
    report.probes.push(probe(
        "list the buckets",
        "s3:ListAllMyBuckets",
        "*".into(),
        r,
    ));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_reports_the_escaped_objects_arn() {
        let target = Target {
            bucket: "b".into(),
            prefix: "team-*/a?$/".into(),
        };
        let scope = Scope::new(&target);
        assert_eq!(scope.bucket_arn, "arn:aws:s3:::b");
        assert_eq!(scope.objects_arn, "arn:aws:s3:::b/team-${*}/a${?}${$}/*");
        // The test object itself lives under the real (unescaped) prefix.
        assert!(scope.test_key.starts_with("team-*/a?$/.s3mount-check-"));
    }
}
