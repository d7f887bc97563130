//! Validated settings built from the command line. Everything a user can get wrong before
//! any network call (bucket name, prefix, role ARN, sizes, modes, the mount point) is
//! rejected here with a one-line message.

use std::path::{Path, PathBuf};

use crate::cli::{ConnectionArgs, MountArgs, s3_name};
use crate::fs::DiskConfig;
use crate::fs::FsConfig;
use crate::s3::buckets::validate_bucket_name;
use crate::s3::connection::{Connection, RoleConfig, StaticKeys, Target};
use crate::s3::retry::RetryPolicy;

/// A configuration error: printed as is, one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// What every object the mount writes carries.
#[derive(Clone, Debug, Default)]
pub struct UploadSettings {
    /// Canned ACL.
    pub acl: Option<String>,
    /// SSE algorithm.
    pub sse: Option<String>,
    /// KMS key.
    pub sse_kms_key_id: Option<String>,
    /// Storage class.
    pub storage_class: Option<String>,
}

/// Settings of the FUSE mount itself.
#[derive(Clone, Debug)]
pub struct MountSettings {
    /// Canonical mount point.
    pub mountpoint: PathBuf,
    /// Stay in the foreground.
    pub foreground: bool,
    /// allow_other.
    pub allow_other: bool,
    /// allow_root.
    pub allow_root: bool,
    /// auto_unmount.
    pub auto_unmount: bool,
    /// Log file once daemonized.
    pub log_file: Option<PathBuf>,
    /// The cgroup's memory limit, read once here (the default `--memory-limit` follows it).
    pub cgroup_memory_limit: Option<u64>,
}

/// The whole validated `mount` command.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// What to mount; `None`: every bucket as a folder.
    pub target: Option<Target>,
    /// How to connect.
    pub connection: Connection,
    /// Filesystem behaviour.
    pub fs: FsConfig,
    /// What every upload carries.
    pub uploads: UploadSettings,
    /// Mount behaviour.
    pub mount: MountSettings,
    /// How S3 requests are retried.
    pub retry: RetryPolicy,
}

impl MountConfig {
    /// Validate the parsed command line. Does not touch the network; does look at the
    /// mount point.
    pub fn from_args(args: &MountArgs) -> Result<Self, ConfigError> {
        let (target, mountpoint) = match (args.paths.as_slice(), args.all_buckets) {
            ([mp], _) => (None, PathBuf::from(mp)),
            ([_, _], true) => {
                return err("--all-buckets mounts every bucket: give only the mount point");
            }
            ([t, mp], false) => (Some(parse_target(t)?), PathBuf::from(mp)),
            _ => return err("expected [BUCKET[/PREFIX]] MOUNTPOINT"),
        };
        let connection = connection_from_args(&args.connection)?;
        let m = &args.mount;
        if m.auto_unmount && !(m.allow_other || m.allow_root) {
            return err(
                "--auto-unmount needs --allow-other or --allow-root (fusermount3 restriction)",
            );
        }
        let t = &args.tuning;
        if t.download_threads == 0 || t.download_threads > 256 {
            return err("--download-threads must be between 1 and 256");
        }
        if t.upload_threads == 0 || t.upload_threads > 64 {
            return err("--upload-threads must be between 1 and 64");
        }
        let read_part_size = parse_size(&t.read_part_size, "--read-part-size")?;
        if !(64 << 10..=1 << 30).contains(&read_part_size) {
            return err("--read-part-size must be between 64KiB and 1GiB");
        }
        let write_part_size = parse_size(&t.write_part_size, "--write-part-size")?;
        if !(5 << 20..=5 << 30).contains(&write_part_size) {
            return err("--write-part-size must be between 5MiB and 5GiB (S3 multipart limits)");
        }
        let cgroup_memory_limit = crate::cgroup::memory_limit();
        let memory_limit = match &t.memory_limit {
            Some(v) => parse_size(v, "--memory-limit")?,
            None => default_memory_limit(cgroup_memory_limit),
        };
        let cache_memory = match &t.cache_memory {
            Some(v) => parse_size(v, "--cache-memory")?,
            None => DEFAULT_CACHE_MEMORY.min(memory_limit / 2),
        };
        if memory_limit < 16 << 20 {
            return err("--memory-limit must be at least 16MiB");
        }
        if cache_memory > memory_limit {
            return err("--cache-memory cannot exceed --memory-limit");
        }
        check_upload_memory(write_part_size, t.upload_threads, memory_limit)?;
        let metadata_ttl = parse_duration(&t.metadata_ttl, "--metadata-ttl")?;
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let cache_dir = m.cache_dir.clone().unwrap_or_else(default_cache_dir);
        let disk_cache = disk_cache(m, &cache_dir, memory_limit)?;
        let fs = FsConfig {
            uid: m.uid.unwrap_or(uid),
            gid: m.gid.unwrap_or(gid),
            file_mode: parse_mode(&m.file_mode, "--file-mode")?,
            dir_mode: parse_mode(&m.dir_mode, "--dir-mode")?,
            read_only: m.read_only,
            download_threads: t.download_threads,
            read_part_size,
            write_part_size,
            upload_threads: t.upload_threads,
            cache_memory,
            memory_limit,
            metadata_ttl,
            negative_cache: t.negative_cache,
            no_delete: m.no_delete,
            no_overwrite: m.no_overwrite,
            cache_dir,
            disk_cache,
            content_type_default: args.uploads.content_type_default.clone(),
            presign_expiry: parse_duration(&args.uploads.presign_expiry, "--presign-expiry")?,
        };
        if fs.presign_expiry.as_secs() > 7 * 86_400 || fs.presign_expiry.is_zero() {
            return err("--presign-expiry must be between 1s and 7 days (SigV4 limit)");
        }
        let u = &args.uploads;
        let uploads = UploadSettings {
            acl: u.acl.as_ref().map(s3_name),
            sse: u.sse.as_ref().map(s3_name),
            sse_kms_key_id: u.sse_kms_key_id.clone(),
            storage_class: u.storage_class.as_ref().map(s3_name),
        };
        let retry = RetryPolicy {
            deadline: parse_duration(&t.retry_deadline, "--retry-deadline")?,
            ..RetryPolicy::default()
        };
        let mountpoint = check_mountpoint(&mountpoint)?;
        // The daemon writing into its own mount would wait on itself (a deadlock that even
        // `mountpoint -q` then joins).
        let log_file = args.logging.log_file.clone();
        for (flag, path) in [
            ("--log-file", log_file.as_deref()),
            ("--cache-dir", Some(fs.cache_dir.as_path())),
        ] {
            if let Some(p) = path
                && is_inside(p, &mountpoint)
            {
                return err(format!(
                    "{flag} {} is inside the mount point {}: the mount would write into itself; \
                     choose a path outside it",
                    p.display(),
                    mountpoint.display()
                ));
            }
        }
        // A read-only mount never stages a file.
        if !fs.read_only {
            probe_cache_dir(&fs.cache_dir)?;
        }
        Ok(MountConfig {
            target,
            connection,
            fs,
            uploads,
            mount: MountSettings {
                mountpoint,
                foreground: m.foreground,
                allow_other: m.allow_other,
                allow_root: m.allow_root,
                auto_unmount: m.auto_unmount,
                log_file,
                cgroup_memory_limit,
            },
            retry,
        })
    }
}

/// Whether `path` (which may not exist yet) lies inside directory `dir` (canonical): its
/// nearest existing ancestor is resolved, so symlinks and `..` cannot hide it.
fn is_inside(path: &Path, dir: &Path) -> bool {
    let Ok(abs) = std::path::absolute(path) else {
        return false;
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return false,
        }
    }
    let Ok(mut resolved) = std::fs::canonicalize(existing) else {
        return false;
    };
    for name in rest.iter().rev() {
        resolved.push(name);
    }
    resolved.starts_with(dir)
}

/// `--max-cache-size` when the read cache on disk is on and no size is given.
pub const DEFAULT_MAX_CACHE_SIZE: u64 = 1 << 30;
/// Most bytes of blocks waiting to be written to the disk cache (also at most half of
/// `--memory-limit`, whose budget they hold until written). 32 MiB dropped ~15% of a 1 GiB
/// read's blocks here while two cores were busy with the read (bench diskcache).
const DISK_QUEUE_BYTES: u64 = 64 << 20;

/// The read cache on disk: on when `--cache-dir` is given explicitly or `--max-cache-size`
/// is given, unless that size is 0.
fn disk_cache(
    m: &crate::cli::MountOptions,
    dir: &Path,
    memory_limit: u64,
) -> Result<Option<DiskConfig>, ConfigError> {
    let max_size = match &m.max_cache_size {
        Some(v) => parse_size(v, "--max-cache-size")?,
        None if m.cache_dir.is_some() => DEFAULT_MAX_CACHE_SIZE,
        None => return Ok(None),
    };
    let min_free = m
        .cache_min_free
        .as_ref()
        .map(|v| parse_size(v, "--cache-min-free"))
        .transpose()?;
    if max_size == 0 {
        return Ok(None);
    }
    if max_size < 1 << 20 {
        return err("--max-cache-size must be at least 1MiB (or 0: no read cache on disk)");
    }
    Ok(Some(DiskConfig {
        dir: dir.to_path_buf(),
        max_size,
        min_free,
        queue_bytes: DISK_QUEUE_BYTES.min(memory_limit / 2),
    }))
}

/// `--memory-limit` when none is given and no cgroup limit is lower.
pub const DEFAULT_MEMORY_LIMIT: u64 = 128 << 20;
/// `--cache-memory` when none is given (at most half of the memory limit).
pub const DEFAULT_CACHE_MEMORY: u64 = 64 << 20;
/// The smallest default memory limit: the default `--write-part-size` × `--upload-threads`
/// (8 MiB × 4) must fit, so that a small container still mounts with the defaults.
const MIN_DEFAULT_MEMORY_LIMIT: u64 = 32 << 20;

/// The default `--memory-limit` for a process whose cgroup allows `cgroup` bytes: a quarter
/// of it (the rest is for the daemon's own heap, the kernel's page cache of the mount, and
/// whatever else shares the container), never above [`DEFAULT_MEMORY_LIMIT`], never below
/// [`MIN_DEFAULT_MEMORY_LIMIT`].
pub fn default_memory_limit(cgroup: Option<u64>) -> u64 {
    match cgroup {
        Some(c) => {
            ((c / 4) & !((1 << 20) - 1)).clamp(MIN_DEFAULT_MEMORY_LIMIT, DEFAULT_MEMORY_LIMIT)
        }
        None => DEFAULT_MEMORY_LIMIT,
    }
}

/// Every file being written may hold `--upload-threads` parts of `--write-part-size` in
/// memory at once: that must fit in `--memory-limit`.
pub fn check_upload_memory(part: u64, threads: usize, limit: u64) -> Result<(), ConfigError> {
    let need = part.saturating_mul(threads as u64);
    if need > limit {
        return err(format!(
            "--write-part-size {} × --upload-threads {threads} = {} exceeds --memory-limit {}: \
             lower either, or raise --memory-limit to at least {}",
            show_size(part),
            show_size(need),
            show_size(limit),
            show_size(need)
        ));
    }
    Ok(())
}

/// A size as the flags spell it: `8MiB`, `1GiB`, `300KiB`, else bytes.
pub fn show_size(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// The cache dir must exist (it is created if missing) and take a file: a probe file is
/// created and removed again, so a mount never starts with nowhere to stage a write.
pub fn probe_cache_dir(dir: &Path) -> Result<(), ConfigError> {
    let shown = dir.display();
    std::fs::create_dir_all(dir).map_err(|e| {
        ConfigError(format!(
            "--cache-dir {shown} cannot be created: {e}; choose a writable directory"
        ))
    })?;
    let probe = tempfile::Builder::new()
        .prefix(".s3mount-probe-")
        .tempfile_in(dir)
        .map_err(|e| {
            ConfigError(format!(
                "--cache-dir {shown} is not writable: {e}; choose a writable directory"
            ))
        })?;
    probe.close().map_err(|e| {
        ConfigError(format!(
            "--cache-dir {shown}: cannot remove a probe file: {e}; choose a writable directory"
        ))
    })
}

/// The one-line warning for secrets given as flags (visible to every local user in `ps`
/// and /proc/PID/cmdline), naming the safer ways; `None` when there are none.
pub fn secret_flags_warning(a: &ConnectionArgs) -> Option<String> {
    let flags: Vec<&str> = [
        ("--secret-access-key", a.secret_access_key.is_some()),
        ("--session-token", a.session_token.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, given)| given.then_some(f))
    .collect();
    if flags.is_empty() {
        return None;
    }
    Some(format!(
        "s3mount: warning: {} on the command line {} visible to other local users (ps, \
         /proc/PID/cmdline); prefer the environment variables AWS_ACCESS_KEY_ID, \
         AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, a profile in ~/.aws (--profile), or a \
         role (--role-arn)",
        flags.join(" and "),
        if flags.len() == 1 { "is" } else { "are" }
    ))
}

/// The secret values on the command line or in the environment, for the log redactor.
pub fn known_secrets(a: &ConnectionArgs) -> Vec<String> {
    let mut out: Vec<String> = [&a.secret_access_key, &a.session_token]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    for var in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Ok(v) = std::env::var(var) {
            out.push(v);
        }
    }
    out
}

/// `$XDG_CACHE_HOME/s3mount`, else `~/.cache/s3mount`, else a temp dir.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("s3mount");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".cache/s3mount");
    }
    std::env::temp_dir().join("s3mount")
}

/// Validate connection options.
pub fn connection_from_args(a: &ConnectionArgs) -> Result<Connection, ConfigError> {
    if let Some(r) = &a.region
        && (r.is_empty()
            || r == "auto"
            || !r
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return err(format!(
            "invalid --region '{r}': expected a region name such as eu-west-1 (omit the flag to detect it)"
        ));
    }
    for (flag, url) in [
        ("--endpoint-url", &a.endpoint_url),
        ("--sts-endpoint-url", &a.sts_endpoint_url),
    ] {
        if let Some(u) = url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return err(format!(
                "invalid {flag} '{u}': expected http://HOST[:PORT] or https://HOST[:PORT]"
            ));
        }
    }
    let role = match &a.role_arn {
        Some(arn) => {
            validate_role_arn(arn)?;
            Some(RoleConfig {
                arn: arn.clone(),
                external_id: a.external_id.clone(),
                session_name: a.role_session_name.clone(),
                sts_endpoint_url: a.sts_endpoint_url.clone(),
            })
        }
        None => None,
    };
    let static_keys = match (&a.access_key_id, &a.secret_access_key) {
        (Some(id), Some(secret)) => Some(StaticKeys {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: a.session_token.clone(),
        }),
        _ => None,
    };
    let force_path_style = a.force_path_style
        || a.endpoint_url
            .as_deref()
            .is_some_and(crate::s3::connection::endpoint_needs_path_style)
        || std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .as_deref()
            .is_some_and(crate::s3::connection::endpoint_needs_path_style);
    Ok(Connection {
        region: a.region.clone(),
        endpoint_url: a.endpoint_url.clone(),
        force_path_style,
        profile: a.profile.clone(),
        static_keys,
        role,
        no_sign_request: a.no_sign_request,
        expected_bucket_owner: a.expected_bucket_owner.clone(),
        requester_pays: a.requester_pays,
    })
}

/// Parse `bucket`, `bucket/prefix`, `s3://bucket/prefix/`.
pub fn parse_target(s: &str) -> Result<Target, ConfigError> {
    let rest = s.strip_prefix("s3://").unwrap_or(s);
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, p),
        None => (rest, ""),
    };
    validate_bucket(bucket)?;
    Ok(Target {
        bucket: bucket.to_owned(),
        prefix: normalize_prefix(prefix)?,
    })
}

/// S3 bucket naming rules (see [`validate_bucket_name`]).
pub fn validate_bucket(b: &str) -> Result<(), ConfigError> {
    validate_bucket_name(b).map_err(ConfigError)
}

/// Normalize a prefix to `""` or `a/b/`, refusing components that could escape it or that
/// no file name can represent.
pub fn normalize_prefix(p: &str) -> Result<String, ConfigError> {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    for comp in trimmed.split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return err(format!(
                "invalid path '{p}': empty, '.' and '..' components are not allowed"
            ));
        }
    }
    Ok(format!("{trimmed}/"))
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub fn validate_role_arn(arn: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len();
    if ok {
        Ok(())
    } else {
        err(format!(
            "malformed role ARN '{arn}': expected arn:aws:iam::<12-digit account>:role/<name>"
        ))
    }
}

/// Parse `8MiB`, `5M`, `1048576`, `64KiB`, `1G`.
pub fn parse_size(s: &str, flag: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| ConfigError(format!("invalid {flag} '{s}': expected e.g. 8MiB")))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return err(format!("invalid {flag} '{s}': unknown unit '{unit}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| ConfigError(format!("invalid {flag} '{s}': too large")))
}

/// Parse `1s`, `500ms`, `2m`, `0` (a bare number is seconds).
pub fn parse_duration(s: &str, flag: &str) -> Result<std::time::Duration, ConfigError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| ConfigError(format!("invalid {flag} '{s}': expected e.g. 1s or 500ms")))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return err(format!("invalid {flag} '{s}': unknown unit '{unit}'")),
    };
    // 7 days: the longest a presigned URL may live (SigV4), and more than any TTL or
    // retry deadline needs.
    if !(0.0..=7.0 * 86_400.0).contains(&secs) {
        return err(format!(
            "invalid {flag} '{s}': must be between 0 and 7 days (168h)"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Parse an octal permission string such as `644` or `0755`.
pub fn parse_mode(s: &str, flag: &str) -> Result<u16, ConfigError> {
    match u16::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => err(format!(
            "invalid {flag} '{s}': expected octal permissions such as 0644"
        )),
    }
}

/// The descriptor of a pre-opened FUSE connection given as the mount point
/// (`/dev/fd/N`): a privileged helper opened `/dev/fuse` and called mount(2) with `fd=N`
/// (what container runtimes and CSI drivers do), so s3mount needs no privilege.
pub fn fuse_fd(p: &Path) -> Option<i32> {
    let n = p.to_str()?.strip_prefix("/dev/fd/")?;
    n.parse().ok().filter(|n: &i32| *n >= 0)
}

/// The mount point must exist, be a directory, be empty and not be mounted already — or
/// be `/dev/fd/N`, an open `/dev/fuse` descriptor.
pub fn check_mountpoint(p: &Path) -> Result<PathBuf, ConfigError> {
    let shown = p.display();
    if let Some(fd) = fuse_fd(p) {
        return match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
            Ok(t) if t == Path::new("/dev/fuse") => Ok(p.to_owned()),
            Ok(t) => err(format!(
                "mount point {shown}: descriptor {fd} is {}, not /dev/fuse",
                t.display()
            )),
            Err(_) => err(format!(
                "mount point {shown}: descriptor {fd} is not open (the process that mounted \
                 /dev/fuse with fd={fd} must pass it on)"
            )),
        };
    }
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return err(format!(
                "mount point {shown} is a dead mount (transport endpoint is not connected); \
                 run `fusermount3 -u {shown}` first"
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return err(format!("mount point {shown} does not exist"));
        }
        Err(e) => return err(format!("mount point {shown}: {e}")),
    };
    if !meta.is_dir() {
        return err(format!("mount point {shown} is not a directory"));
    }
    let canonical =
        std::fs::canonicalize(p).map_err(|e| ConfigError(format!("mount point {shown}: {e}")))?;
    if is_mounted(&canonical) {
        return err(format!(
            "mount point {shown} is already a mount point; unmount it first"
        ));
    }
    let mut entries = std::fs::read_dir(&canonical)
        .map_err(|e| ConfigError(format!("mount point {shown}: {e}")))?;
    if entries.next().is_some() {
        return err(format!("mount point {shown} is not empty"));
    }
    Ok(canonical)
}

/// Whether `path` is listed as a mount point in /proc/self/mountinfo.
fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(crate::escape::mountinfo_entry)
        .any(|e| e.mount_point == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("s3://my-bucket/a/b/").unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.prefix.as_str()),
            ("my-bucket", "a/b/")
        );
        let t = parse_target("my-bucket/a/b").unwrap();
        assert_eq!(t.prefix, "a/b/");
        assert_eq!(parse_target("my-bucket").unwrap().prefix, "");
        assert_eq!(parse_target("my-bucket/").unwrap().prefix, "");
        assert!(parse_target("My_Bucket").is_err());
        assert!(parse_target("ab").is_err());
        assert!(parse_target("my-bucket/a/../b").is_err());
        assert!(parse_target("my-bucket/a//b").is_err());
        assert!(parse_target("192.168.1.1").is_err());
        assert!(parse_target("-bucket").is_err());
    }

    #[test]
    fn role_arns() {
        assert!(validate_role_arn("arn:aws:iam::123456789012:role/my-role").is_ok());
        assert!(validate_role_arn("arn:aws:iam::123456789012:role/path/my-role").is_ok());
        assert!(validate_role_arn("arn:aws:iam::12345:role/x").is_err());
        assert!(validate_role_arn("arn:aws:iam::123456789012:user/x").is_err());
        assert!(validate_role_arn("my-role").is_err());
    }

    #[test]
    fn sizes_and_modes() {
        assert_eq!(parse_size("8MiB", "x").unwrap(), 8 << 20);
        assert_eq!(parse_size("64k", "x").unwrap(), 64 << 10);
        assert_eq!(parse_size("100", "x").unwrap(), 100);
        assert!(parse_size("8XB", "x").is_err());
        assert_eq!(parse_mode("0644", "x").unwrap(), 0o644);
        assert_eq!(parse_mode("755", "x").unwrap(), 0o755);
        assert!(parse_mode("999", "x").is_err());
        assert_eq!(parse_duration("1s", "x").unwrap().as_millis(), 1000);
        assert_eq!(parse_duration("250ms", "x").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("0", "x").unwrap().as_millis(), 0);
        assert!(parse_duration("-1", "x").is_err());
        assert_eq!(parse_duration("48h", "x").unwrap().as_secs(), 48 * 3600);
        assert_eq!(parse_duration("7d", "x").unwrap().as_secs(), 7 * 86_400);
        assert!(parse_duration("8d", "x").is_err());
        assert!(parse_duration("5 parsecs", "x").is_err());
    }

    #[test]
    fn default_memory_limit_follows_a_lower_cgroup_limit() {
        assert_eq!(default_memory_limit(None), 128 << 20);
        assert_eq!(default_memory_limit(Some(64 << 30)), 128 << 20);
        assert_eq!(default_memory_limit(Some(256 << 20)), 64 << 20);
        // Rounded down to a whole MiB, never below what the default uploads need.
        assert_eq!(default_memory_limit(Some(300_000_000)), 71 << 20);
        assert_eq!(default_memory_limit(Some(64 << 20)), 32 << 20);
        let d = default_memory_limit(Some(1));
        assert!(check_upload_memory(8 << 20, 4, d).is_ok());
    }

    #[test]
    fn upload_memory_must_fit_the_limit() {
        assert!(check_upload_memory(8 << 20, 4, 128 << 20).is_ok());
        assert!(check_upload_memory(32 << 20, 4, 128 << 20).is_ok());
        let e = check_upload_memory(64 << 20, 4, 128 << 20)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--write-part-size 64MiB × --upload-threads 4 = 256MiB exceeds --memory-limit \
             128MiB: lower either, or raise --memory-limit to at least 256MiB"
        );
        assert!(check_upload_memory(u64::MAX, 64, 128 << 20).is_err());
        assert_eq!(show_size(5 << 30), "5GiB");
        assert_eq!(show_size(1536 << 10), "1536KiB");
        assert_eq!(show_size(1000), "1000");
    }

    #[test]
    fn the_read_cache_on_disk_is_off_unless_asked_for() {
        use clap::Parser;
        let opts = |extra: &[&str]| {
            let mut argv = vec!["s3mount", "mount", "bucket", "/mnt"];
            argv.extend(extra);
            match crate::cli::Cli::try_parse_from(argv).unwrap().command {
                crate::cli::Command::Mount(m) => m.mount,
                _ => unreachable!(),
            }
        };
        let dir = Path::new("/var/cache/x");
        let on = |extra: &[&str]| disk_cache(&opts(extra), dir, 128 << 20);
        assert_eq!(on(&[]).unwrap(), None);
        let d = on(&["--cache-dir", "/var/cache/x"]).unwrap().unwrap();
        assert_eq!(
            (d.dir.as_path(), d.max_size, d.min_free, d.queue_bytes),
            (dir, DEFAULT_MAX_CACHE_SIZE, None, 64 << 20)
        );
        let d = on(&["--max-cache-size", "10GiB", "--cache-min-free", "2GiB"])
            .unwrap()
            .unwrap();
        assert_eq!((d.max_size, d.min_free), (10 << 30, Some(2 << 30)));
        assert_eq!(
            on(&["--cache-dir", "/var/cache/x", "--max-cache-size", "0"]).unwrap(),
            None
        );
        let e = on(&["--max-cache-size", "100k"]).unwrap_err().to_string();
        assert!(e.contains("--max-cache-size must be at least 1MiB"), "{e}");
        assert_eq!(
            disk_cache(&opts(&["--cache-dir", "/x"]), dir, 32 << 20)
                .unwrap()
                .unwrap()
                .queue_bytes,
            16 << 20,
            "the write queue stays within half of the memory limit"
        );
    }

    #[test]
    fn cache_dir_is_created_and_probed() {
        let d = tempfile::tempdir().unwrap();
        let fresh = d.path().join("a/b");
        probe_cache_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
        assert_eq!(
            std::fs::read_dir(&fresh).unwrap().count(),
            0,
            "probe removed"
        );
        let file = d.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = probe_cache_dir(&file).unwrap_err().to_string();
        assert!(
            e.starts_with("--cache-dir ") && e.contains("cannot be created"),
            "{e}"
        );
        let e = probe_cache_dir(&file.join("sub")).unwrap_err().to_string();
        assert!(e.contains("cannot be created"), "{e}");
        // Exists, but takes no file (even for root).
        let e = probe_cache_dir(Path::new("/proc/self"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not writable"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn secrets_on_the_command_line_are_warned_about_and_hidden_in_debug() {
        let mut a = ConnectionArgs::default();
        assert_eq!(secret_flags_warning(&a), None);
        a.access_key_id = Some("AKIDEXAMPLE".into());
        a.secret_access_key = Some("wJalrXUtnFEMI/K7MDENG".into());
        let w = secret_flags_warning(&a).unwrap();
        assert!(
            w.contains("--secret-access-key on the command line is visible"),
            "{w}"
        );
        assert!(
            w.contains("AWS_SECRET_ACCESS_KEY") && w.contains("~/.aws"),
            "{w}"
        );
        a.session_token = Some("FQoGZXIvYXdzEXAMPLETOKEN".into());
        let w = secret_flags_warning(&a).unwrap();
        assert!(w.contains("--secret-access-key and --session-token"), "{w}");
        assert!(!w.contains('\n'));
        let shown = format!("{a:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("FQoG"),
            "{shown}"
        );
        let conn = connection_from_args(&a).unwrap();
        let shown = format!("{conn:?}");
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("FQoG"),
            "{shown}"
        );
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        let secrets = known_secrets(&a);
        assert!(secrets.contains(&"wJalrXUtnFEMI/K7MDENG".to_string()));
    }

    #[test]
    fn path_style_for_ip_endpoints() {
        assert!(crate::s3::connection::endpoint_needs_path_style(
            "http://127.0.0.1:3900"
        ));
        assert!(crate::s3::connection::endpoint_needs_path_style(
            "http://localhost:9000"
        ));
        assert!(!crate::s3::connection::endpoint_needs_path_style(
            "https://s3.eu-west-1.amazonaws.com"
        ));
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(crate::escape::unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(crate::escape::unescape_mountinfo("/plain"), "/plain");
    }
}
