//! The `s3mount` binary: parse, validate, daemonize if asked, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use s3mount::cli::{
    CheckArgs, Cli, Command, ConnectionArgs, LoggingArgs, MountArgs, PolicyArgs, s3_name,
};
use s3mount::config::{self, MountConfig};
use s3mount::policy;
use s3mount::s3::connection::Target;
use s3mount::{daemon, helper, mount};

/// Logging to stderr (the log file once daemonized), with secrets never written: see
/// [`s3mount::logging`].
fn init_logging(logging: &LoggingArgs, connection: &ConnectionArgs) {
    let secrets = config::known_secrets(connection);
    s3mount::logging::init(&logging.log_level, logging.log_format, secrets);
}

/// The AWS SDK logs request and response bodies when these are set; never let it.
fn disable_sdk_body_logging() {
    for var in s3mount::logging::BODY_LOGGING_ENV {
        if std::env::var_os(var).is_some() {
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::remove_var(var) };
        }
    }
}

/// Warn (one line on stderr) about secrets given as flags.
fn warn_about_secret_flags(connection: &ConnectionArgs) {
    if let Some(w) = config::secret_flags_warning(connection) {
        eprintln!("{w}");
    }
}

/// Parse the command line; a usage error is one line like every other error (help and
/// version are printed as clap prints them).
fn parse_cli() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    let args: Vec<String> = std::env::args().collect();
    let parsed = match helper_args(&args) {
        Ok(Some(a)) => Cli::try_parse_from(a),
        Ok(None) => Cli::try_parse(),
        Err(code) => return Err(code),
    };
    match parsed {
        Ok(cli) => Ok(cli),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("s3mount: error: {}", clap_one_line(&e.render().to_string()));
            Err(ExitCode::from(2))
        }
    }
}

/// As a mount(8) helper (see [`s3mount::helper`]): the `s3mount mount` command line the
/// helper's arguments spell; `None` when run as a plain command.
fn helper_args(args: &[String]) -> Result<Option<Vec<String>>, ExitCode> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let subcommands: Vec<&str> = cmd
        .get_subcommands()
        .map(|c| c.get_name())
        .chain(["help"])
        .collect();
    if !helper::invoked_as_helper(args, &subcommands) {
        return Ok(None);
    }
    helper_environment();
    let mount = cmd.find_subcommand("mount").expect("mount subcommand");
    match helper::translate(&args[1..], mount) {
        Ok(helper::Helper::Mount(a)) => Ok(Some(
            ["s3mount".to_owned(), "mount".to_owned()]
                .into_iter()
                .chain(a)
                .collect(),
        )),
        Ok(helper::Helper::Fake) => Err(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("s3mount: error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// mount(8) runs helpers with neither `HOME` nor `PATH`: without them `~/.aws` (profiles,
/// credentials) would not be found, nor `fusermount3`. Both come back as a login would
/// set them: HOME from the password database, PATH the usual system directories.
fn helper_environment() {
    if std::env::var_os("HOME").is_none() {
        // SAFETY: getpwuid returns a pointer into static storage or null; we copy out at
        // once, before any other thread exists.
        let home = unsafe {
            let pw = libc::getpwuid(libc::getuid());
            (!pw.is_null() && !(*pw).pw_dir.is_null()).then(|| {
                std::ffi::CStr::from_ptr((*pw).pw_dir)
                    .to_string_lossy()
                    .into_owned()
            })
        };
        if let Some(h) = home {
            // SAFETY: still single-threaded (first thing in main).
            unsafe { std::env::set_var("HOME", h) };
        }
    }
    if std::env::var_os("PATH").is_none() {
        // SAFETY: as above.
        unsafe {
            std::env::set_var(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
        };
    }
}

/// clap's message on one line: without the `error:` label, the usage and the `--help`
/// hint (named once at the end instead).
fn clap_one_line(rendered: &str) -> String {
    let kept: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect();
    let text = kept.join(" ");
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    format!("{} (see --help)", one_line(text))
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

/// Why a subcommand failed: the message (one line) and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Invalid input: exit code 2.
    fn usage(e: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            message: e.to_string(),
        }
    }

    /// Anything else: exit code 1.
    fn run(e: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

/// The one error printer: `s3mount: error: MESSAGE` on one line.
fn report(r: Result<ExitCode, Failure>) -> ExitCode {
    match r {
        Ok(code) => code,
        Err(f) => {
            eprintln!("s3mount: error: {}", one_line(&f.message));
            ExitCode::from(f.code)
        }
    }
}

fn main() -> ExitCode {
    disable_sdk_body_logging();
    tune_allocator();
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    report(match cli.command {
        Command::Presign(args) => run_presign(&args.path),
        Command::Policy(args) => run_policy(args),
        Command::Check(args) => run_check(*args),
        Command::Mount(args) => run_mount(*args),
        Command::Completions(args) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut cmd, "s3mount", &mut out);
            print_out(&String::from_utf8_lossy(&out));
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => run_man(),
    })
}

/// The manual page: `s3mount(1)` from the clap definitions, with one section per
/// subcommand appended, so that every option is in it.
fn run_man() -> Result<ExitCode, Failure> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .map_err(Failure::run)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap names are 'static; this runs once per process.
        let name: &'static str = Box::leak(format!("s3mount {}", sub.get_name()).into_boxed_str());
        let sub = sub.clone().name(name).bin_name(name);
        // The subcommand's own page, without its header: a section of this one.
        let mut page = Vec::new();
        let man = clap_mangen::Man::new(sub);
        man.render_name_section(&mut page).map_err(Failure::run)?;
        man.render_synopsis_section(&mut page)
            .map_err(Failure::run)?;
        man.render_description_section(&mut page)
            .map_err(Failure::run)?;
        man.render_options_section(&mut page)
            .map_err(Failure::run)?;
        out.extend(page);
    }
    print_out(&String::from_utf8_lossy(&out));
    Ok(ExitCode::SUCCESS)
}

/// `BUCKET[/PREFIX]` when given; none means every bucket.
fn optional_target(arg: Option<&str>) -> Result<Option<Target>, Failure> {
    arg.map(config::parse_target)
        .transpose()
        .map_err(Failure::usage)
}

fn run_presign(path: &std::path::Path) -> Result<ExitCode, Failure> {
    let url = presign(path).map_err(|e| Failure::run(format!("{}: {e}", path.display())))?;
    print_out(&format!("{url}\n"));
    Ok(ExitCode::SUCCESS)
}

fn run_policy(args: PolicyArgs) -> Result<ExitCode, Failure> {
    let target = optional_target(args.target.as_deref())?;
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
    print_json(&doc);
    Ok(ExitCode::SUCCESS)
}

fn print_json(doc: &serde_json::Value) {
    print_out(&format!(
        "{}\n",
        serde_json::to_string_pretty(doc).expect("JSON")
    ));
}

fn run_check(args: CheckArgs) -> Result<ExitCode, Failure> {
    let target = optional_target(args.target.as_deref())?;
    let conn = config::connection_from_args(&args.connection).map_err(Failure::usage)?;
    warn_about_secret_flags(&args.connection);
    init_logging(&args.logging, &args.connection);
    let rt = tokio::runtime::Runtime::new().map_err(Failure::run)?;
    let report = match &target {
        Some(t) => {
            let uploads = s3mount::check::UploadChecks {
                acl: args.acl.as_ref().map(s3_name),
                sse: args.sse.as_ref().map(s3_name),
                sse_kms_key_id: args.sse_kms_key_id.clone(),
            };
            rt.block_on(s3mount::check::run(t, &conn, args.mode, &uploads))
        }
        None => rt.block_on(s3mount::check::run_all_buckets(&conn)),
    };
    if args.json {
        print_json(&report.to_json());
    } else {
        print_out(&report.to_text());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_mount(args: MountArgs) -> Result<ExitCode, Failure> {
    let cfg = MountConfig::from_args(&args).map_err(Failure::usage)?;
    // Bound before anything is mounted or forked: a bad or busy address is a usage error.
    let metrics = (args.metrics.metrics_addr.as_deref())
        .map(s3mount::metrics::Exporter::listen)
        .transpose()
        .map_err(Failure::usage)?;
    warn_about_secret_flags(&args.connection);
    // Under systemd (Type=notify) the service is this process: no fork.
    let ready = if cfg.mount.foreground || daemon::under_systemd() {
        None
    } else {
        Some(
            daemon::fork_and_wait()
                .map_err(|e| Failure::run(format!("cannot start in the background: {e}")))?,
        )
    };
    init_logging(&args.logging, &args.connection);
    if let Some(m) = metrics {
        m.start().map_err(Failure::run)?;
    }
    let background = ready.is_some();
    let log_file = (cfg.mount.log_file.clone()).unwrap_or_else(daemon::default_log_file);
    if let Err(e) = mount::run(cfg, ready) {
        let message = one_line(&format!("{e:#}"));
        if background && !daemon::detached() && args.logging.log_level != "off" {
            // The terminal hears it from `report`; the log file would not have it at all.
            let secrets = config::known_secrets(&args.connection);
            if let Err(io) = s3mount::logging::append_error(
                &log_file,
                args.logging.log_format,
                secrets,
                &message,
            ) {
                tracing::debug!(error = %io, log = %log_file.display(), "cannot log the failure");
            }
        }
        return Err(Failure::run(message));
    }
    Ok(ExitCode::SUCCESS)
}
