//! The `s3mount` binary: parse, validate, daemonize if asked, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use s3mount::cli::{Cli, Command};
use s3mount::config::MountConfig;
use s3mount::{daemon, mount};
use tracing_subscriber::EnvFilter;

fn init_logging(level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::new(f),
        // A bare level applies to s3mount (and fuser); other crates (the AWS SDK) only
        // report errors unless RUST_LOG or a full filter asks for more.
        _ if !level.contains('=') => EnvFilter::new(format!("error,s3mount={level},fuser={level}")),
        _ => EnvFilter::new(level),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
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
