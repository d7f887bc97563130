//! The local servers the tests run against: Garage (S3) started or reused through
//! `scripts/garage.sh`, with its extra buckets and keys, and moto (S3 + STS + IAM with
//! authentication on) through `scripts/moto.sh`, with the scenarios of
//! `scripts/moto_setup.py`.
//!
//! Garage is shared by every test at once (each test keeps to its own prefix or bucket).
//! moto is not: a scenario setup resets all of its state and [`MotoLock::auth_off`] changes
//! how it authenticates, so a test that uses moto holds [`moto_lock`] for its whole run, and
//! every moto operation is a method of that lock.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::mount::Conn;
use super::repo;

/// An S3 endpoint with credentials.
#[derive(Clone, Debug)]
pub struct Server {
    /// Endpoint URL.
    pub endpoint: String,
    /// Access key id.
    pub key_id: String,
    /// Secret.
    pub secret: String,
    /// Main test bucket.
    pub bucket: String,
}

fn parse_exports(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                v.trim_matches('"').trim_matches('\'').to_owned(),
            )
        })
        .collect()
}

fn run_script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The Garage server: from `S3MOUNT_TEST_ENDPOINT` & co. when set, else started (or reused)
/// with `scripts/garage.sh start`.
pub fn garage() -> &'static Server {
    static G: OnceLock<Server> = OnceLock::new();
    G.get_or_init(|| {
        if let (Ok(endpoint), Ok(key_id), Ok(secret), Ok(bucket)) = (
            std::env::var("S3MOUNT_TEST_ENDPOINT"),
            std::env::var("S3MOUNT_TEST_KEY_ID"),
            std::env::var("S3MOUNT_TEST_SECRET"),
            std::env::var("S3MOUNT_TEST_BUCKET"),
        ) {
            return Server {
                endpoint,
                key_id,
                secret,
                bucket,
            };
        }
        let env = parse_exports(&run_script(&["scripts/garage.sh", "start"]));
        Server {
            endpoint: env["AWS_ENDPOINT_URL"].clone(),
            key_id: env["AWS_ACCESS_KEY_ID"].clone(),
            secret: env["AWS_SECRET_ACCESS_KEY"].clone(),
            bucket: env["S3MOUNT_BUCKET"].clone(),
        }
    })
}

/// Create (if missing) an extra Garage bucket the dev key may use.
pub fn garage_bucket(name: &str) {
    garage();
    run_script(&["scripts/garage.sh", "bucket", name]);
}

/// A Garage key allowed on `bucket` only, read+write (`"rw"`) or read only (`"ro"`).
/// (`scripts/garage.sh` serialises concurrent calls on its state dir, so two tests asking
/// for the same key at once get the same key.)
pub fn garage_key(name: &str, bucket: &str, mode: &str) -> (String, String) {
    garage();
    let out = run_script(&["scripts/garage.sh", "key", name, bucket, mode]);
    let line = out
        .lines()
        .find(|l| l.starts_with("KEY_ID="))
        .expect("key line");
    let mut parts = line.split_whitespace();
    let id = parts
        .next()
        .unwrap()
        .trim_start_matches("KEY_ID=")
        .to_owned();
    let secret = parts
        .next()
        .unwrap()
        .trim_start_matches("SECRET=")
        .to_owned();
    (id, secret)
}

/// The moto server's endpoint; starts moto (or reuses it) once per process.
pub fn moto_endpoint() -> &'static str {
    static E: OnceLock<String> = OnceLock::new();
    E.get_or_init(|| {
        let env = parse_exports(&run_script(&["scripts/moto.sh", "start"]));
        env["MOTO_ENDPOINT_URL"].clone()
    })
}

/// What the moto server holds, as far as this process knows.
struct MotoState {
    /// The default scenario, while moto still holds it (no reset and auth still on since
    /// it was set up).
    scenario: Option<Moto>,
}

/// Exclusive use of the moto server; see [`moto_lock`].
pub struct MotoLock(MutexGuard<'static, MotoState>);

/// Take the moto server (started or reused) for the rest of the calling test (until the
/// lock is dropped), waiting while another test has it. Every test that talks to moto takes this first:
/// the setups it offers reset moto and would pull the ground from under a concurrent test.
/// A test that failed while holding it does not block the others: the lock is taken over,
/// and moto set up afresh.
pub fn moto_lock() -> MotoLock {
    static LOCK: Mutex<MotoState> = Mutex::new(MotoState { scenario: None });
    let guard = LOCK.lock().unwrap_or_else(|poisoned| {
        LOCK.clear_poison();
        let mut state = poisoned.into_inner();
        state.scenario = None;
        state
    });
    moto_endpoint();
    MotoLock(guard)
}

/// The default moto scenario of `scripts/moto_setup.py`: a user, a role requiring an
/// External ID, a role policy scoped to `bucket/prefix/*`.
#[derive(Clone, Debug)]
pub struct Moto {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub external_id: String,
    pub role_arn: String,
    pub user_key_id: String,
    pub user_secret: String,
}

impl MotoLock {
    /// The moto server's endpoint.
    pub fn endpoint(&self) -> &'static str {
        moto_endpoint()
    }

    /// The default scenario: set up (resetting moto) unless moto still holds it from an
    /// earlier call.
    pub fn scenario(&mut self) -> Moto {
        if let Some(m) = &self.0.scenario {
            return m.clone();
        }
        let json = run_script(&[
            "scripts/moto.sh",
            "setup",
            "--bucket",
            "s3mount-moto",
            "--prefix",
            "team-a",
            "--external-id",
            "ext-4f9a",
        ]);
        let v: serde_json::Value = serde_json::from_str(json.trim()).expect("setup JSON");
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        let m = Moto {
            endpoint: s("endpoint"),
            bucket: s("bucket"),
            prefix: s("prefix"),
            external_id: s("external_id"),
            role_arn: s("role_arn"),
            user_key_id: s("user_access_key_id"),
            user_secret: s("user_secret_access_key"),
        };
        self.0.scenario = Some(m.clone());
        m
    }

    /// Switch moto's authentication off (to check results with any credentials).
    pub fn auth_off(&mut self) {
        self.0.scenario = None;
        let off = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                "-H",
                "Content-Type: text/plain",
                "--data",
                "inf",
            ])
            .arg(format!("{}/moto-api/reset-auth", moto_endpoint()))
            .output()
            .unwrap();
        assert!(off.status.success());
    }
}

/// A moto scenario with a given role policy (`scripts/moto_setup.py --policy-file`).
#[derive(Clone, Debug)]
pub struct MotoRole {
    /// The role to assume.
    pub role_arn: String,
    /// The user's access key (may only assume the role).
    pub key_id: String,
    /// Its secret.
    pub secret: String,
    /// The External ID the trust policy requires.
    pub external_id: String,
    /// A KMS key, when asked for.
    pub kms_key_arn: Option<String>,
}

impl MotoRole {
    /// Reset moto and set up `bucket`/`prefix` with `policy` as the role's permissions.
    pub fn setup(
        moto: &mut MotoLock,
        bucket: &str,
        prefix: &str,
        external_id: &str,
        policy: &serde_json::Value,
        kms: bool,
    ) -> MotoRole {
        moto.0.scenario = None;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), policy.to_string()).unwrap();
        let mut cmd = Command::new("bash");
        cmd.current_dir(repo())
            .args([
                "scripts/moto.sh",
                "setup",
                "--bucket",
                bucket,
                "--prefix",
                prefix,
            ])
            .args(["--external-id", external_id, "--policy-file"])
            .arg(file.path());
        if kms {
            cmd.arg("--kms-key");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        MotoRole {
            role_arn: s("role_arn"),
            key_id: s("user_access_key_id"),
            secret: s("user_secret_access_key"),
            external_id: external_id.to_owned(),
            kms_key_arn: v["kms_key_arn"].as_str().map(str::to_owned),
        }
    }

    /// How `s3mount` connects as this role, through moto's S3 and STS.
    pub fn conn(&self) -> Conn {
        let endpoint = moto_endpoint();
        Conn {
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), self.key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
            ],
            args: vec![],
        }
        .with_args(&["--endpoint-url", endpoint, "--sts-endpoint-url", endpoint])
        .with_args(&["--region", "us-east-1", "--role-arn", &self.role_arn])
        .with_args(&["--external-id", &self.external_id])
    }
}
