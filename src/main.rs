//! The `s3mount` binary: parse, validate, daemonize if asked, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use s3mount::cli::{Cli, Command};
use s3mount::config::{self, MountConfig};
use s3mount::policy;
use s3mount::{daemon, mount};
use tracing_subscriber::EnvFilter;

fn init_logging(level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::new(f),
        // A bare level applies to s3mount; other crates (the AWS SDK, fuser — which warns
        // on every external unmount) only report errors unless debugging, RUST_LOG or a
        // full filter asks for more.
        _ if !level.contains('=') => {
            let others = if matches!(level, "debug" | "trace") {
                level
            } else {
                "error"
            };
            EnvFilter::new(format!("error,s3mount={level},fuser={others}"))
        }
        _ => EnvFilter::new(level),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// The mount computes presigned URLs as the `user.s3.presigned_url` extended attribute.
fn presign(path: &std::path::Path) -> std::io::Result<String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let name = c"user.s3.presigned_url";
    let mut buf = vec![0u8; 8192];
    // SAFETY: valid NUL-terminated strings and a buffer of the length passed.
    let n = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => std::io::Error::other(
                "not a file on an s3mount mount (no user.s3.presigned_url attribute)",
            ),
            _ => e,
        });
    }
    buf.truncate(n as usize);
    String::from_utf8(buf).map_err(std::io::Error::other)
}

/// Errors are printed on one line: SDK error chains can span several.
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Object data moves through buffers of up to --read-part-size. glibc serves every block
/// over 128 KiB with a fresh mmap and unmaps it on free, so each GET would page-fault its
/// buffer in anew (measured: ~5% of CPU on a 1 GiB read). Keep such blocks on the heap for
/// reuse instead; the memory budget bounds how much of it is live.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any thread exists.
    unsafe {
        if std::env::var_os("S3MOUNT_DEFAULT_MALLOC").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Presign(args) => match presign(&args.path) {
            Ok(url) => {
                print_out(&format!("{url}\n"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("s3mount: error: {}: {e}", args.path.display());
                ExitCode::FAILURE
            }
        },
        Command::Policy(args) => {
            let target = match args.target.as_deref().map(config::parse_target).transpose() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("s3mount: error: {e}");
                    return ExitCode::from(2);
                }
            };
            let extras = policy::Extras {
                acl: args.acl,
                kms_key: args
                    .sse_kms_key_id
                    .map(|k| if k == "*" { String::new() } else { k }),
            };
            let perms = match &target {
                Some(t) => policy::permissions_policy(&t.bucket, &t.prefix, args.mode, &extras),
                None => policy::all_buckets_policy(args.mode, &extras),
            };
            let doc = match (&args.role_trust, &args.external_id) {
                (Some(p), Some(id)) => serde_json::json!({
                    "PermissionsPolicy": perms,
                    "TrustPolicy": policy::trust_policy(p, id),
                }),
                _ => perms,
            };
            print_out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).expect("JSON")
            ));
            ExitCode::SUCCESS
        }
        Command::Check(args) => {
            let parsed = args
                .target
                .as_deref()
                .map(config::parse_target)
                .transpose()
                .and_then(|t| Ok((t, config::connection_from_args(&args.connection)?)));
            let (target, conn) = match parsed {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("s3mount: error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&args.logging.log_level);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("s3mount: error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let report = match &target {
                Some(t) => {
                    let uploads = s3mount::check::UploadChecks {
                        acl: args.acl.clone(),
                        sse: args.sse.clone(),
                        sse_kms_key_id: args.sse_kms_key_id.clone(),
                    };
                    rt.block_on(s3mount::check::run(t, &conn, args.mode, &uploads))
                }
                None => rt.block_on(s3mount::check::run_all_buckets(&conn)),
            };
            if args.json {
                print_out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&report.to_json()).expect("JSON")
                ));
            } else {
                print_out(&report.to_text());
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Mount(args) => {
            let cfg = match MountConfig::from_args(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("s3mount: error: {e}");
                    return ExitCode::from(2);
                }
            };
            let ready = if cfg.mount.foreground {
                None
            } else {
                match daemon::fork_and_wait() {
                    Ok(r) => Some(r),
                    Err(e) => {
                        eprintln!("s3mount: error: cannot start in the background: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            init_logging(&args.logging.log_level);
            match mount::run(cfg, ready) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("s3mount: error: {}", one_line(&format!("{e:#}")));
                    ExitCode::FAILURE
                }
            }
        }
    }
}
