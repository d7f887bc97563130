//! Command-line definitions only (clap derive). Validation and defaults that need thought
//! live in [`crate::config`]; this file is what `--help` shows.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Mount an S3 bucket, or one path inside it, as a local folder.
#[derive(Debug, Parser)]
#[command(name = "s3mount", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount BUCKET[/PREFIX] (or s3://BUCKET/PREFIX/) at MOUNTPOINT.
    ///
    /// Only keys under PREFIX are ever listed, read, written or deleted. By default the
    /// command returns once the mount is live (the file system keeps running in the
    /// background); unmount with `fusermount3 -u MOUNTPOINT`.
    Mount(Box<MountArgs>),

    /// Test a connection: resolve credentials, find the region, and probe every permission
    /// the mode needs under the path, with a test object that is always removed again.
    /// Exits 0 only when everything is granted.
    Check(Box<CheckArgs>),

    /// Print the least-privilege IAM policy for mounting BUCKET[/PREFIX] in a mode (and,
    /// with --role-trust, the role trust policy requiring an External ID).
    Policy(PolicyArgs),

    /// Print a presigned GET URL for a file on a mounted s3mount file system (valid for the
    /// mount's --presign-expiry).
    Presign(PresignArgs),

    /// Print a shell completion script: `s3mount completions bash > /etc/bash_completion.d/s3mount`
    /// (zsh: into a directory on $fpath as `_s3mount`; fish: ~/.config/fish/completions/s3mount.fish).
    Completions(CompletionsArgs),

    /// Print the manual page (roff): `s3mount man > /usr/local/share/man/man1/s3mount.1`.
    Man,
}

/// `s3mount completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `s3mount presign`.
#[derive(Debug, Args)]
pub struct PresignArgs {
    /// A file inside an s3mount mount.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

/// `s3mount check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Bucket, optionally with a path inside it; without one, checks that the buckets
    /// can be listed (s3:ListAllMyBuckets), as the buckets view needs.
    #[arg(value_name = "BUCKET[/PREFIX]")]
    pub target: Option<String>,

    /// What the mount will need to do.
    #[arg(long, value_enum, default_value = "read-write")]
    pub mode: crate::policy::Mode,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Also check that uploads may carry this canned ACL (s3:PutObjectAcl).
    #[arg(long, value_name = "ACL", value_enum, ignore_case = true)]
    pub acl: Option<CannedAcl>,

    /// Also check server-side encryption of uploads (aws:kms needs kms:GenerateDataKey).
    #[arg(long, value_name = "ALGORITHM", value_enum, ignore_case = true)]
    pub sse: Option<Sse>,

    /// KMS key for --sse aws:kms.
    #[arg(long, value_name = "KEY", requires = "sse")]
    pub sse_kms_key_id: Option<String>,

    /// How to reach and authenticate to S3.
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Logging.
    #[command(flatten)]
    pub logging: LoggingArgs,
}

/// `s3mount policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Bucket, optionally with a path inside it; without one, the policy of the buckets
    /// view (every bucket as a folder).
    #[arg(value_name = "BUCKET[/PREFIX]")]
    pub target: Option<String>,

    /// What the mount will need to do.
    #[arg(long, value_enum, default_value = "read-write")]
    pub mode: crate::policy::Mode,

    /// Also print the trust policy letting this principal ARN assume the role.
    #[arg(long, value_name = "PRINCIPAL_ARN", requires = "external_id")]
    pub role_trust: Option<String>,

    /// External ID the trust policy requires.
    #[arg(long, value_name = "ID", requires = "role_trust")]
    pub external_id: Option<String>,

    /// Uploads will carry a canned ACL (adds s3:PutObjectAcl).
    #[arg(long)]
    pub acl: bool,

    /// Uploads will be encrypted with this KMS key ARN (adds kms:GenerateDataKey and
    /// kms:Decrypt on it; pass "*" for the bucket's default key).
    #[arg(long, value_name = "KEY_ARN")]
    pub sse_kms_key_id: Option<String>,
}

/// `s3mount mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// `[BUCKET[/PREFIX]] MOUNTPOINT`: the bucket, optionally with a path inside it
    /// (`bucket`, `bucket/some/prefix`, `s3://bucket/some/prefix/`), and the empty
    /// directory to mount on. Without a bucket every bucket the credentials can see is a
    /// folder (mkdir there creates a bucket in --region, rmdir deletes an empty one).
    #[arg(value_name = "[BUCKET[/PREFIX]] MOUNTPOINT", num_args = 1..=2, required = true)]
    pub paths: Vec<String>,

    /// Mount every bucket as a folder (the same as giving no bucket).
    #[arg(long)]
    pub all_buckets: bool,

    /// How to reach and authenticate to S3.
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// How the mount behaves.
    #[command(flatten)]
    pub mount: MountOptions,

    /// Throughput tuning.
    #[command(flatten)]
    pub tuning: TuningArgs,

    /// What every object written gets.
    #[command(flatten)]
    pub uploads: UploadArgs,

    /// Logging.
    #[command(flatten)]
    pub logging: LoggingArgs,

    /// Metrics.
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Metrics options.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (S3 and FUSE requests, block
    /// cache, memory, uploads). Only this address is bound; e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

/// Upload options, applied to every object the mount writes.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Uploads")]
pub struct UploadArgs {
    /// Canned ACL for new objects, e.g. bucket-owner-full-control (writing into another
    /// account's bucket), private, public-read.
    #[arg(long, value_name = "ACL", value_enum, ignore_case = true)]
    pub acl: Option<CannedAcl>,

    /// Server-side encryption of new objects.
    #[arg(long, value_name = "ALGORITHM", value_enum, ignore_case = true)]
    pub sse: Option<Sse>,

    /// KMS key (id or ARN) for --sse aws:kms (default: the bucket's / account's key).
    #[arg(long, value_name = "KEY", requires = "sse")]
    pub sse_kms_key_id: Option<String>,

    /// Storage class for new objects.
    #[arg(long, value_name = "CLASS", value_enum, ignore_case = true)]
    pub storage_class: Option<StorageClass>,

    /// Content-Type of new objects whose extension says nothing.
    #[arg(long, value_name = "TYPE", default_value = "application/octet-stream")]
    pub content_type_default: String,

    /// Validity of the URL in the user.s3.presigned_url extended attribute (up to 7d, the
    /// SigV4 limit).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub presign_expiry: String,
}

/// Connection options, shared by every subcommand. `Debug` hides the secret access key and
/// the session token.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// AWS region of the bucket. Detected from the bucket (HeadBucket) when not given.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// S3 endpoint URL, for S3-compatible servers (also read from AWS_ENDPOINT_URL_S3 /
    /// AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Use path-style requests (http://host/bucket/key). Implied when --endpoint-url is an
    /// IP address or localhost.
    #[arg(long)]
    pub force_path_style: bool,

    /// Named profile from ~/.aws/config and ~/.aws/credentials (also AWS_PROFILE).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Access key id (legacy; prefer a profile, env vars or --role-arn). Needs
    /// --secret-access-key.
    #[arg(long, value_name = "ID", requires = "secret_access_key")]
    pub access_key_id: Option<String>,

    /// Secret access key. Visible to other local users in the process list: prefer the
    /// AWS_SECRET_ACCESS_KEY environment variable or a profile.
    #[arg(long, value_name = "SECRET", requires = "access_key_id")]
    pub secret_access_key: Option<String>,

    /// Session token for temporary static credentials.
    #[arg(long, value_name = "TOKEN", requires = "access_key_id")]
    pub session_token: Option<String>,

    /// IAM role to assume through STS (recommended). The base credentials come from the
    /// options above or the default chain.
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,

    /// External ID the role's trust policy requires (sts:ExternalId).
    #[arg(long, value_name = "ID", requires = "role_arn")]
    pub external_id: Option<String>,

    /// Session name for the assumed role (appears in CloudTrail).
    #[arg(
        long,
        value_name = "NAME",
        requires = "role_arn",
        default_value = "s3mount"
    )]
    pub role_session_name: String,

    /// STS endpoint URL for AssumeRole (default: AWS's regional STS endpoint).
    #[arg(long, value_name = "URL", requires = "role_arn")]
    pub sts_endpoint_url: Option<String>,

    /// Send unsigned requests (public buckets); no credentials are looked up.
    #[arg(long, conflicts_with_all = ["access_key_id", "profile", "role_arn"])]
    pub no_sign_request: bool,

    /// Refuse to use the bucket unless it belongs to this AWS account id.
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub expected_bucket_owner: Option<String>,

    /// Accept the charges of a requester-pays bucket.
    #[arg(long)]
    pub requester_pays: bool,
}

/// Mount behaviour options.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Mount")]
pub struct MountOptions {
    /// Mount read-only: every write, create, delete or mkdir fails with EROFS.
    #[arg(long)]
    pub read_only: bool,

    /// Stay in the foreground (logs go to stderr) instead of returning once mounted.
    #[arg(long, short = 'f')]
    pub foreground: bool,

    /// Owner uid of every file and directory (default: the current user).
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,

    /// Group gid of every file and directory (default: the current group).
    #[arg(long, value_name = "GID")]
    pub gid: Option<u32>,

    /// Permission bits of files, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "0644")]
    pub file_mode: String,

    /// Permission bits of directories, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "0755")]
    pub dir_mode: String,

    /// Let other users access the mount (needs `user_allow_other` in /etc/fuse.conf unless
    /// root).
    #[arg(long, conflicts_with = "allow_root")]
    pub allow_other: bool,

    /// Let root access the mount too.
    #[arg(long)]
    pub allow_root: bool,

    /// Unmount automatically when the s3mount process exits, even if killed (needs
    /// --allow-other or --allow-root: a fusermount3 restriction).
    #[arg(long)]
    pub auto_unmount: bool,

    /// Guard: deleting is refused with EPERM (unlink, rmdir, rename away from a name).
    #[arg(long)]
    pub no_delete: bool,

    /// Guard: existing objects cannot be modified (open for writing, truncate, chmod,
    /// rename onto them) — EPERM; new files can be created. With --no-delete: an
    /// append-only destination.
    #[arg(long)]
    pub no_overwrite: bool,

    /// Directory for staging files of files modified in place (default:
    /// $XDG_CACHE_HOME/s3mount, i.e. ~/.cache/s3mount). Staging files are unnamed and
    /// vanish when closed. Given explicitly, it also turns on the read cache on disk in its
    /// read-cache/ subdirectory (see --max-cache-size).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Size cap of the read cache on disk: object blocks read are kept in
    /// CACHE_DIR/read-cache/ (LRU, keyed by ETag, kept across remounts), so a re-read costs
    /// no GET. Default 1GiB when --cache-dir is given (which turns the cache on); giving
    /// this alone uses the default --cache-dir; 0 turns it off.
    #[arg(long, value_name = "SIZE")]
    pub max_cache_size: Option<String>,

    /// The read cache on disk writes nothing, and evicts old blocks, while the cache
    /// directory's file system has less free space than this. Default: 5% of that file
    /// system's size.
    #[arg(long, value_name = "SIZE")]
    pub cache_min_free: Option<String>,
}

/// Throughput tuning options.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Tuning")]
pub struct TuningArgs {
    /// Parallel ranged GETs per file read sequentially.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub download_threads: usize,

    /// Largest ranged GET issued by the prefetcher (e.g. 8MiB).
    #[arg(long, value_name = "SIZE", default_value = "8MiB")]
    pub read_part_size: String,

    /// Multipart upload part size (5MiB..5GiB); files smaller than it are one PutObject.
    /// The largest file is 10,000 parts.
    #[arg(long, value_name = "SIZE", default_value = "8MiB")]
    pub write_part_size: String,

    /// Parts uploaded concurrently per file being written.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub upload_threads: usize,

    /// Memory for the shared block cache of object data (0 disables it). Default: 64MiB,
    /// or half of --memory-limit when that is lower.
    #[arg(long, value_name = "SIZE")]
    pub cache_memory: Option<String>,

    /// Cap on prefetch windows + block cache + upload buffers together; under pressure
    /// prefetch windows shrink and the cache gives memory back. Default: 128MiB, or a
    /// quarter of the cgroup's memory limit (a container's) when that is lower, at least
    /// 32MiB.
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<String>,

    /// How long file and directory attributes are cached (e.g. 1s, 500ms, 5m; 0 asks S3
    /// every time): other clients' changes to and deletions of names the mount has seen
    /// show up after it. A name another client creates is found at once (unless
    /// --negative-cache).
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub metadata_ttl: String,

    /// Trust this mount's own "does not exist" answers for --metadata-ttl: names it found
    /// absent, deleted, or did not see in a directory it made or listed are answered from
    /// memory. Creating files in such a directory (cp -r, tar -x) then costs no lookup
    /// request, but a name another client creates meanwhile may look absent until the TTL
    /// passes, and creating it here replaces theirs. Default: each such name is checked
    /// with one ListObjectsV2.
    #[arg(long)]
    pub negative_cache: bool,

    /// How long one S3 request keeps being retried through throttling, server errors,
    /// timeouts and broken connections before the operation fails (EIO); 0 tries once.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub retry_deadline: String,
}

/// Logging options.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Logging")]
pub struct LoggingArgs {
    /// Log level (error, warn, info, debug, trace, off) or a tracing filter such as
    /// warn,s3mount=debug; RUST_LOG overrides. Secrets and data are never logged.
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "warn",
        value_parser = crate::logging::parse_log_level
    )]
    pub log_level: String,

    /// Log file once running in the background (default:
    /// $XDG_STATE_HOME/s3mount/s3mount.log, i.e. ~/.local/state/s3mount/s3mount.log).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Log lines as text, or as JSON objects (timestamp, level, target, message, fields),
    /// one per line.
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::logging::LogFormat,
}

impl std::fmt::Debug for ConnectionArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("ConnectionArgs")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("force_path_style", &self.force_path_style)
            .field("profile", &self.profile)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id)
            .field("role_session_name", &self.role_session_name)
            .field("sts_endpoint_url", &self.sts_endpoint_url)
            .field("no_sign_request", &self.no_sign_request)
            .field("expected_bucket_owner", &self.expected_bucket_owner)
            .field("requester_pays", &self.requester_pays)
            .finish()
    }
}

/// The canned ACLs S3 defines (`x-amz-acl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CannedAcl {
    /// Owner only.
    #[value(name = "private")]
    Private,
    /// Anyone may read.
    #[value(name = "public-read")]
    PublicRead,
    /// Anyone may read and write.
    #[value(name = "public-read-write")]
    PublicReadWrite,
    /// Any authenticated AWS user may read.
    #[value(name = "authenticated-read")]
    AuthenticatedRead,
    /// EC2 may read AMI bundles.
    #[value(name = "aws-exec-read")]
    AwsExecRead,
    /// The bucket owner may read.
    #[value(name = "bucket-owner-read")]
    BucketOwnerRead,
    /// The bucket owner gets full control (writing into another account's bucket).
    #[value(name = "bucket-owner-full-control")]
    BucketOwnerFullControl,
}

/// The storage classes S3 defines (`x-amz-storage-class`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StorageClass {
    /// Standard.
    #[value(name = "STANDARD")]
    Standard,
    /// Reduced redundancy (deprecated by AWS).
    #[value(name = "REDUCED_REDUNDANCY")]
    ReducedRedundancy,
    /// Standard infrequent access.
    #[value(name = "STANDARD_IA")]
    StandardIa,
    /// One-zone infrequent access.
    #[value(name = "ONEZONE_IA")]
    OnezoneIa,
    /// Intelligent tiering.
    #[value(name = "INTELLIGENT_TIERING")]
    IntelligentTiering,
    /// Glacier flexible retrieval.
    #[value(name = "GLACIER")]
    Glacier,
    /// Glacier deep archive.
    #[value(name = "DEEP_ARCHIVE")]
    DeepArchive,
    /// S3 on Outposts.
    #[value(name = "OUTPOSTS")]
    Outposts,
    /// Glacier instant retrieval.
    #[value(name = "GLACIER_IR")]
    GlacierIr,
    /// Snowball Edge.
    #[value(name = "SNOW")]
    Snow,
    /// S3 Express One Zone (directory buckets).
    #[value(name = "EXPRESS_ONEZONE")]
    ExpressOnezone,
}

/// The server-side encryption algorithms S3 defines (`x-amz-server-side-encryption`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Sse {
    /// S3-managed keys (SSE-S3).
    #[value(name = "AES256")]
    Aes256,
    /// KMS keys (SSE-KMS).
    #[value(name = "aws:kms")]
    AwsKms,
    /// Dual-layer KMS encryption (DSSE-KMS).
    #[value(name = "aws:kms:dsse")]
    AwsKmsDsse,
}

/// The S3 spelling of a command-line value (the name `--help` lists).
pub fn s3_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .expect("no skipped variants")
        .get_name()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount_args(extra: &[&str]) -> Result<MountArgs, clap::Error> {
        let mut argv = vec!["s3mount", "mount", "bucket", "/mnt"];
        argv.extend(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Mount(m) => Ok(*m),
            _ => unreachable!(),
        }
    }

    /// docs/CONFIGURATION.md is written by hand, so it must be checked against the clap
    /// definitions: a new flag of any subcommand without a line there fails here, not
    /// silently in front of a user.
    #[test]
    fn every_long_option_is_in_the_configuration_manual() {
        use clap::CommandFactory;
        let doc = include_str!("../docs/CONFIGURATION.md");
        let cli = Cli::command();
        let mut missing = Vec::new();
        let mut seen = 0;
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if long == "help" || long == "version" {
                    continue;
                }
                seen += 1;
                // `--sse` must not pass on the strength of `--sse-kms-key-id`.
                let flag = format!("`--{long}");
                let documented = doc.match_indices(&flag).any(|(i, _)| {
                    let next = doc[i + flag.len()..].chars().next();
                    !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                });
                if !documented {
                    missing.push(format!("{} --{long}", sub.get_name()));
                }
            }
        }
        assert!(seen > 50, "only {seen} options found: the walk is broken");
        assert!(
            missing.is_empty(),
            "options missing from docs/CONFIGURATION.md: {missing:?}"
        );
    }

    #[test]
    fn upload_values_are_the_s3_ones_in_any_case() {
        let m = mount_args(&[
            "--acl",
            "Bucket-Owner-Full-Control",
            "--storage-class",
            "standard_ia",
            "--sse",
            "AWS:KMS:DSSE",
        ])
        .unwrap();
        assert_eq!(
            s3_name(&m.uploads.acl.unwrap()),
            "bucket-owner-full-control"
        );
        assert_eq!(s3_name(&m.uploads.storage_class.unwrap()), "STANDARD_IA");
        assert_eq!(s3_name(&m.uploads.sse.unwrap()), "aws:kms:dsse");
        assert_eq!(StorageClass::value_variants().len(), 11);
        assert_eq!(CannedAcl::value_variants().len(), 7);
        for (flag, bad) in [
            ("--acl", "public"),
            ("--storage-class", "COLD"),
            ("--sse", "aes128"),
            ("--log-level", "loud"),
            ("--log-format", "xml"),
        ] {
            let e = mount_args(&[flag, bad]).unwrap_err();
            use clap::error::ErrorKind;
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::InvalidValue | ErrorKind::ValueValidation
                ),
                "{flag}: {:?}",
                e.kind()
            );
            let msg = e.to_string();
            assert!(msg.contains(flag), "{msg}");
        }
        assert_eq!(
            mount_args(&["--log-level", "DEBUG"])
                .unwrap()
                .logging
                .log_level,
            "debug"
        );
    }
}
