//! End-to-end test harness: starts the local S3 servers it needs (Garage through
//! `scripts/garage.sh`, moto through `scripts/moto.sh`) — or reuses endpoints given in the
//! environment — mounts real FUSE file systems with the built `s3mount` binary, and checks
//! results through aws-sdk-s3 directly, never through the mount under test.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One runtime for every S3 call the tests make.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

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

/// The moto scenario of `scripts/moto_setup.py`: a user, a role requiring an External ID,
/// a role policy scoped to `bucket/prefix/*`.
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

/// Start moto (or reuse it) and set up the scenario once per test binary.
pub fn moto() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(|| {
        run_script(&["scripts/moto.sh", "start"]);
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
        Moto {
            endpoint: s("endpoint"),
            bucket: s("bucket"),
            prefix: s("prefix"),
            external_id: s("external_id"),
            role_arn: s("role_arn"),
            user_key_id: s("user_access_key_id"),
            user_secret: s("user_secret_access_key"),
        }
    })
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
        bucket: &str,
        prefix: &str,
        external_id: &str,
        policy: &serde_json::Value,
        kms: bool,
    ) -> MotoRole {
        moto();
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
        let endpoint = moto().endpoint.clone();
        Conn {
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), self.key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
            ],
            args: vec![],
        }
        .with_args(&["--endpoint-url", &endpoint, "--sts-endpoint-url", &endpoint])
        .with_args(&["--region", "us-east-1", "--role-arn", &self.role_arn])
        .with_args(&["--external-id", &self.external_id])
    }
}

/// Switch moto's authentication off (to check results with any credentials).
pub fn moto_auth_off() {
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
        .arg(format!("{}/moto-api/reset-auth", moto().endpoint))
        .output()
        .unwrap();
    assert!(off.status.success());
}

/// A name unique to this test run.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A direct aws-sdk-s3 client on `server` for checks that bypass the mount.
pub struct S3 {
    pub client: Client,
    pub bucket: String,
}

impl S3 {
    /// A client on the Garage test server's main bucket.
    pub fn garage() -> S3 {
        let g = garage();
        S3::new(&g.endpoint, &g.key_id, &g.secret, &g.bucket)
    }

    /// A client for any endpoint and bucket.
    pub fn new(endpoint: &str, key_id: &str, secret: &str, bucket: &str) -> S3 {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(key_id, secret, None, None, "test"))
            .build();
        S3 {
            client: Client::from_conf(conf),
            bucket: bucket.to_owned(),
        }
    }

    /// The same client on another bucket.
    pub fn with_bucket(&self, bucket: &str) -> S3 {
        S3 {
            client: self.client.clone(),
            bucket: bucket.to_owned(),
        }
    }

    /// PutObject.
    pub fn put(&self, key: &str, body: impl Into<Vec<u8>>) {
        let body = body.into();
        rt().block_on(async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        });
    }

    /// Many PutObjects, 32 at a time.
    pub fn put_many(&self, objects: Vec<(String, Vec<u8>)>) {
        use futures::StreamExt;
        rt().block_on(async {
            futures::stream::iter(objects)
                .map(|(k, v)| {
                    let c = self.client.clone();
                    let b = self.bucket.clone();
                    async move {
                        c.put_object()
                            .bucket(b)
                            .key(&k)
                            .body(ByteStream::from(v))
                            .send()
                            .await
                            .unwrap_or_else(|e| panic!("put {k}: {e:?}"));
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await;
        });
    }

    /// GetObject, `None` when the key does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        rt().block_on(async {
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
                Err(e) => {
                    let s = format!("{e:?}");
                    assert!(s.contains("NoSuchKey"), "get {key}: {s}");
                    None
                }
            }
        })
    }

    /// Every key under `prefix` (no delimiter).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        rt().block_on(async {
            let mut keys = vec![];
            let mut token = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .unwrap();
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            keys
        })
    }

    /// Multipart uploads still open under `prefix`.
    pub fn pending_uploads(&self, prefix: &str) -> usize {
        rt().block_on(async {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .send()
                .await
                .unwrap();
            out.uploads().len()
        })
    }
}

/// The `s3mount` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_s3mount")
}

/// A command running `s3mount` with a clean AWS environment (so the developer's own
/// credentials or endpoints never leak into a test).
pub fn s3mount_cmd() -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(&k);
        }
    }
    // Never read the developer's ~/.aws files.
    c.env("AWS_CONFIG_FILE", "/dev/null");
    c.env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

/// Whether `path` is currently a mount point.
pub fn is_mounted(path: &Path) -> bool {
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.to_str().unwrap()))
}

/// How to connect: environment variables and connection flags for `s3mount`.
#[derive(Clone, Debug, Default)]
pub struct Conn {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Conn {
    /// The Garage server with the dev key (from the environment, as users would).
    pub fn garage() -> Conn {
        let g = garage();
        Conn {
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), g.key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), g.secret.clone()),
            ],
            args: vec!["--endpoint-url".into(), g.endpoint.clone()],
        }
    }

    /// Add flags.
    pub fn with_args(mut self, args: &[&str]) -> Conn {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Set an environment variable.
    pub fn with_env(mut self, k: &str, v: &str) -> Conn {
        self.env.push((k.into(), v.into()));
        self
    }

    /// `s3mount mount TARGET DIR <connection flags> EXTRA...` (background mode).
    pub fn mount_cmd(&self, target: &str, dir: &Path, extra: &[&str]) -> Command {
        let mut c = s3mount_cmd();
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.arg("mount")
            .arg(target)
            .arg(dir)
            .args(&self.args)
            .args(extra);
        c.stdin(std::process::Stdio::null());
        c
    }
}

/// A live mount, unmounted on drop.
pub struct Mount {
    pub dir: PathBuf,
    pub log: PathBuf,
    /// What `s3mount mount` printed before returning.
    pub stderr: String,
    _tmp: tempfile::TempDir,
}

impl Mount {
    /// Mount `target` on the Garage server with the dev key plus `extra` arguments.
    pub fn garage(target: &str, extra: &[&str]) -> Mount {
        Mount::with(&Conn::garage(), target, extra)
    }

    /// Mount `target` with `conn`; panics with the error output if it fails.
    pub fn with(conn: &Conn, target: &str, extra: &[&str]) -> Mount {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let log = tmp.path().join("s3mount.log");
        let log_s = log.to_str().unwrap().to_owned();
        let mut extra: Vec<&str> = extra.to_vec();
        extra.extend(["--log-file", &log_s]);
        if !extra.contains(&"--log-level") {
            extra.extend(["--log-level", "info"]);
        }
        let out = conn.mount_cmd(target, &dir, &extra).output().unwrap();
        assert!(
            out.status.success(),
            "mount of {target} failed: {}\nlog: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            is_mounted(&dir),
            "s3mount returned but {dir:?} is not mounted"
        );
        Mount {
            dir,
            log,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            _tmp: tmp,
        }
    }

    /// Wrap a mount made by hand at `dir` (inside `tmp`, whose `log` is the log file).
    pub fn adopt(tmp: tempfile::TempDir, dir: PathBuf) -> Mount {
        assert!(is_mounted(&dir), "{dir:?} is not mounted");
        Mount {
            log: tmp.path().join("log"),
            dir,
            stderr: String::new(),
            _tmp: tmp,
        }
    }

    /// Path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// What the mount logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_mounted(&self.dir) {
            let ok = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.dir)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                let _ = Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&self.dir)
                    .output();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `sh -c SCRIPT` in `dir`, asserting success; returns stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
