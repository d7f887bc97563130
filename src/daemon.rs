//! Running in the background: fork before any thread exists, let the child connect and
//! mount, and have the parent return only when the mount is live (exit 0) or the child
//! failed (exit 1, the child having printed why to the inherited stderr).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stderr is the log file ([`Ready::signal`]): from then on an error printed to
/// stderr is in the log already.
static DETACHED: AtomicBool = AtomicBool::new(false);

/// Whether this process's stderr is its log file (a background mount past [`Ready::signal`]).
/// Until then a failure is printed to the terminal only, so the caller also appends it to
/// the log file, where whoever reads the logs of a mount that never came up looks.
pub fn detached() -> bool {
    DETACHED.load(Ordering::Relaxed)
}

/// The child's end of the readiness pipe.
pub struct Ready(OwnedFd);

/// Fork. Returns in the child only; the parent waits for the child's verdict and exits.
///
/// Must be called before the tokio runtime (or any other thread) is started.
pub fn fork_and_wait() -> io::Result<Ready> {
    let mut fds = [0; 2];
    // SAFETY: plain libc calls on a valid array; we are single-threaded here.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fds were just created and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet, so fork is safe.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read_end);
            // SAFETY: detach from the controlling terminal's session.
            unsafe { libc::setsid() };
            Ok(Ready(write_end))
        }
        _child => {
            drop(write_end);
            let mut byte = [0u8; 1];
            // SAFETY: reading one byte into a valid buffer.
            let n = unsafe { libc::read(read_end.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
            std::process::exit(if n == 1 && byte[0] == b'1' { 0 } else { 1 });
        }
    }
}

impl Ready {
    /// Send further output to `log_file` (stdin from /dev/null), run `then` (what must be in
    /// the log by the time the parent returns), and tell the parent the mount is live.
    pub fn signal(self, log_file: &Path, then: impl FnOnce()) -> io::Result<()> {
        if let Some(dir) = log_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)?;
        let null = OpenOptions::new().read(true).open("/dev/null")?;
        // SAFETY: dup2 onto the standard descriptors with valid open files.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(log.as_raw_fd(), 1);
            libc::dup2(log.as_raw_fd(), 2);
        }
        DETACHED.store(true, Ordering::Relaxed);
        then();
        let one = b"1";
        // SAFETY: writing one byte from a valid buffer to our pipe end.
        let n = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), 1) };
        if n != 1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Default log file of a background mount: `$XDG_STATE_HOME/s3mount/s3mount.log`, else
/// `~/.local/state/s3mount/s3mount.log`, else `/tmp/s3mount-$UID.log`.
pub fn default_log_file() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Path::new(&d).join("s3mount/s3mount.log");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Path::new(&h).join(".local/state/s3mount/s3mount.log");
    }
    // SAFETY: getuid cannot fail.
    std::env::temp_dir().join(format!("s3mount-{}.log", unsafe { libc::getuid() }))
}

/// Whether systemd runs us as a `Type=notify` service (`NOTIFY_SOCKET` is set): the mount
/// then stays in the foreground, since systemd watches the process it started, and tells
/// systemd when it is ready.
pub fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

/// What the service tells systemd (sd_notify); nothing without `NOTIFY_SOCKET`.
#[derive(Clone, Copy, Debug)]
pub enum Notify<'a> {
    /// What it is doing (`systemctl status` shows it).
    Status(&'a str),
    /// The mount is live: `READY=1` with a status.
    Ready(&'a str),
    /// Shutting down: `STOPPING=1` with a status.
    Stopping(&'a str),
}

/// Tell systemd `what`. A failure is logged at debug level: a service manager that cannot
/// hear us is no reason to stop serving the mount.
pub fn notify(what: Notify<'_>) {
    if !under_systemd() {
        return;
    }
    use sd_notify::NotifyState as S;
    let states = match what {
        Notify::Status(s) => vec![S::Status(s)],
        Notify::Ready(s) => vec![S::Ready, S::Status(s)],
        Notify::Stopping(s) => vec![S::Stopping, S::Status(s)],
    };
    if let Err(e) = sd_notify::notify(&states) {
        tracing::debug!(error = %e, "sd_notify");
    }
}
