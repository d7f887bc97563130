//! The `mount` subcommand: connect, build the filesystem, mount it, serve until unmounted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use fuser::{Config, MountOption, SessionACL};
use tracing::{info, warn};

use crate::config::MountConfig;
use crate::daemon::{self, Ready};
use crate::fs::{Buckets, DiskCache, Fs, Tree};
use crate::fuse::{FuseAdapter, KernelInvalidator};
use crate::s3::client::StoreSettings;
use crate::s3::connect::connect;
use crate::s3::retry::Retrying;

/// What was connected, for the log and the first line the user sees.
struct Connected {
    tree: Arc<dyn Tree>,
    target: String,
    region: String,
    credentials: String,
}

/// Connect, mount and serve. With `ready` (a background mount) the parent process is told
/// once the mount is live and output moves to the log file.
pub fn run(cfg: MountConfig, ready: Option<Ready>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("s3mount")
        .build()
        .context("starting the async runtime")?;
    // Before connecting: a cache directory another mount holds is a one-line refusal.
    let disk = match &cfg.fs.disk_cache {
        Some(d) => Some(DiskCache::open(d)?),
        None => None,
    };
    daemon::notify(daemon::Notify::Status("connecting to S3"));
    let c = rt.block_on(connect_tree(&cfg, disk.clone()))?;
    let adapter = FuseAdapter::new(c.tree.clone(), rt.handle().clone());
    let mountpoint = &cfg.mount.mountpoint;
    let fuse_fd = crate::config::fuse_fd(mountpoint);
    let config = fuse_config(&cfg, &c.target);
    let mut session = match fuse_fd {
        Some(fd) => {
            use std::os::fd::FromRawFd;
            // SAFETY: config checked that `fd` is an open /dev/fuse descriptor, handed to
            // us to own; nothing else in this process uses it.
            let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            // Who may enter was decided by whoever mounted it (allow_other or user_id=):
            // the kernel enforces it; the daemon's uid says nothing about the users.
            fuser::Session::from_fd(adapter, fd, SessionACL::All, config)
                .with_context(|| format!("serving {}", mountpoint.display()))?
        }
        None => {
            fuser::Session::new(adapter, mountpoint, &config).map_err(|e| match mount_hint(&e) {
                Some(hint) => anyhow::anyhow!("mounting at {}: {e} ({hint})", mountpoint.display()),
                None => {
                    anyhow::Error::new(e).context(format!("mounting at {}", mountpoint.display()))
                }
            })?
        }
    };
    c.tree.set_invalidator(Arc::new(
        KernelInvalidator::new(session.notifier()).context("starting the notifier thread")?,
    ));
    let unmounter = session.unmount_callable();
    let drain = Arc::new(Drain {
        tree: c.tree.clone(),
        bound: WRITER_GRACE + cfg.retry.deadline + Duration::from_secs(5),
        once: tokio::sync::OnceCell::new(),
    });
    rt.spawn(on_signals(
        drain.clone(),
        unmounter,
        mountpoint.clone(),
        fuse_fd.is_some(),
    ));
    rt.spawn(persist_dir_times(c.tree.clone()));
    crate::heap::watch(cfg.fs.memory_limit).context("starting the heap watcher thread")?;

    let log_file = cfg
        .mount
        .log_file
        .clone()
        .unwrap_or_else(daemon::default_log_file);
    eprintln!(
        "s3mount: mounted {} at {} (region {}, credentials: {}){}",
        c.target,
        mountpoint.display(),
        c.region,
        c.credentials,
        if ready.is_some() {
            format!("; logs: {}", log_file.display())
        } else {
            String::new()
        }
    );
    // Logged once the log file is in place (a background mount's earlier lines go to a
    // terminal that may be gone), and before the parent is told the mount is live (so
    // whoever waited for it finds them in the log).
    let log_start = || {
        info!(target = %c.target, region = %c.region, credentials = %c.credentials, "connected");
        info!(
            memory_limit = %crate::config::show_size(cfg.fs.memory_limit),
            cache_memory = %crate::config::show_size(cfg.fs.cache_memory),
            cgroup_memory_limit = %cfg
                .mount
                .cgroup_memory_limit
                .map_or_else(|| "none".to_owned(), crate::config::show_size),
            "memory budget"
        );
    };
    match ready {
        Some(ready) => ready
            .signal(&log_file, log_start)
            .with_context(|| format!("opening log file {}", log_file.display()))?,
        None => log_start(),
    }
    // After the switch to the log file: an ordinary user's mount logs that it keeps the
    // kernel's readahead, which belongs in its log, not on the terminal it started from.
    if fuse_fd.is_none() {
        crate::fuse::raise_readahead(mountpoint);
    }
    daemon::notify(daemon::Notify::Ready(&format!(
        "mounted {} at {}",
        c.target,
        mountpoint.display()
    )));
    session.run().context("serving the FUSE session")?;
    daemon::notify(daemon::Notify::Stopping(
        "unmounted: committing files still open for writing",
    ));
    // Unmounted from outside (`fusermount3 -u`), or after a signal's drain: that drain is
    // not run twice, and this one is bounded like it.
    let committed = rt.block_on(drain.run(Duration::ZERO));
    if let Some(d) = &disk {
        // Blocks read last are still queued: write them, so a remount finds them.
        d.flush();
    }
    info!("unmounted {}", mountpoint.display());
    anyhow::ensure!(
        committed,
        "files being written at the unmount were not stored (the log names them)"
    );
    Ok(())
}

/// The tree to serve: one bucket (or path in it), or every bucket.
async fn connect_tree(cfg: &MountConfig, disk: Option<Arc<DiskCache>>) -> Result<Connected> {
    let settings = StoreSettings {
        acl: cfg.uploads.acl.clone(),
        sse: cfg.uploads.sse.clone(),
        sse_kms_key_id: cfg.uploads.sse_kms_key_id.clone(),
        storage_class: cfg.uploads.storage_class.clone(),
        ..cfg.connection.request_settings()
    };
    Ok(match &cfg.target {
        Some(t) => {
            let connected = connect(t, &cfg.connection).await?;
            let store = connected
                .store
                .with_settings(settings)
                .without_sdk_retries();
            let store = Arc::new(Retrying::new(Arc::new(store), cfg.retry));
            Connected {
                tree: Arc::new(Fs::new(store, &t.prefix, cfg.fs.clone()).with_disk_cache(disk)),
                target: format!("s3://{}/{}", t.bucket, t.prefix),
                region: connected.region,
                credentials: connected.credentials,
            }
        }
        None => {
            let (service, credentials) =
                crate::s3::buckets::connect(&cfg.connection, settings, cfg.retry).await?;
            Connected {
                region: format!("{} for new buckets; each bucket in its own", service.home()),
                tree: Arc::new(
                    Buckets::new(Arc::new(service), cfg.fs.clone()).with_disk_cache(disk),
                ),
                target: "s3://".to_owned(),
                credentials,
            }
        }
    })
}

/// What to do when a mount fails for a reason the bare OS error does not say.
///
/// Why: fuser reports a bare "Permission denied" or "No such file or directory", which reads
/// like a problem with the mount point. Three causes are common and fixable:
/// - there is no `/dev/fuse` (module not loaded, or a container without the device); - this user may not open `/dev/fuse`. An ordinary user mounts through `fusermount3`,
///   which opens the device with the *user's* rights, so it must be mode 0666 (what udev
///   sets on Debian; some containers pass it in as 0600);
/// - `fusermount3` is not installed (or not on PATH), which fuser needs for every mount by
///   an ordinary user and for `--auto-unmount`.
fn mount_hint(e: &std::io::Error) -> Option<String> {
    use std::io::ErrorKind;
    if e.kind() == ErrorKind::NotFound && !std::path::Path::new("/dev/fuse").exists() {
        return Some(
            "there is no /dev/fuse: load the module (modprobe fuse); in a container, pass \
             the device (docker run --device /dev/fuse)"
                .to_owned(),
        );
    }
    if e.kind() == ErrorKind::NotFound && find_fusermount().is_none() {
        return Some(
            "fusermount3 was not found on PATH: install the fuse3 package \
             (Debian/Ubuntu: apt-get install fuse3), which ordinary users and \
             --auto-unmount mount through"
                .to_owned(),
        );
    }
    let denied = |e: &std::io::Error| e.kind() == ErrorKind::PermissionDenied;
    if !denied(e) && !e.to_string().contains("/dev/fuse") {
        return None;
    }
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse");
    match open {
        Err(o) if denied(&o) => Some(
            "this user may not open /dev/fuse; as root: chmod 0666 /dev/fuse, \
             which scripts/deps.sh does"
                .to_owned(),
        ),
        _ => None,
    }
}

/// The mount helper fuser would run: `$FUSERMOUNT_PATH`, else `fusermount3` or `fusermount`
/// on PATH (fuser's own search order, without running anything).
fn find_fusermount() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("FUSERMOUNT_PATH") {
        let p = std::path::PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/sbin".into(), "/bin".into()])
        .flat_map(|d| [d.join("fusermount3"), d.join("fusermount")])
        .find(|p| p.is_file())
}

/// The FUSE mount options and access control.
fn fuse_config(cfg: &MountConfig, target: &str) -> Config {
    let mut options = vec![
        MountOption::FSName(target.to_owned()),
        MountOption::Subtype("s3mount".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    options.push(if cfg.fs.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    if cfg.mount.auto_unmount {
        options.push(MountOption::AutoUnmount);
    }
    let mut fuse_config = Config::default();
    fuse_config.mount_options = options;
    fuse_config.acl = if cfg.mount.allow_other {
        SessionACL::All
    } else if cfg.mount.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    fuse_config
}

/// How often directory times changed by their entries are written to the markers: often
/// enough that another client (or a remount after a crash) sees them soon, seldom enough
/// that creating thousands of files costs a handful of marker writes.
const DIR_TIMES_EVERY: Duration = Duration::from_secs(1);

/// Write pending directory times every [`DIR_TIMES_EVERY`] for as long as the mount lives
/// (a round that takes longer delays the next one: never two at once).
async fn persist_dir_times(tree: Arc<dyn Tree>) {
    let mut every = tokio::time::interval(DIR_TIMES_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        tree.persist_dir_times().await;
    }
}

/// How long files open for writing may take to be closed by their writers at shutdown,
/// before what they hold is committed as it is.
const WRITER_GRACE: Duration = Duration::from_secs(5);

/// The end of a mount: refuse new writers, commit what is still being written, write the
/// pending directory times — once per process, within `bound`.
///
/// Why once and bounded: a signal starts it, and the FUSE loop ending (the unmount that
/// follows, or one from outside) would start it again; a commit that cannot finish (the
/// server is gone) must not keep a container or a systemd stop waiting past its grace
/// period. Past the bound, the uploads under way are aborted (no multipart upload left
/// behind). Whatever was not stored, the process says so and exits 1.
struct Drain {
    tree: Arc<dyn Tree>,
    /// Writers' grace plus the retry deadline plus a little.
    bound: Duration,
    /// Set when the drain has run: `true` when everything was stored in time.
    once: tokio::sync::OnceCell<bool>,
}

impl Drain {
    /// Run the drain, or wait for the one already running; whether it committed in time.
    /// `grace`: how long writers still going get to close their files by themselves
    /// (committing a file in the middle of a copy would publish part of it).
    async fn run(&self, grace: Duration) -> bool {
        *self
            .once
            .get_or_init(|| async {
                let drained = async {
                    let until = tokio::time::Instant::now() + grace;
                    while self.tree.stop_new_writers() > 0 && tokio::time::Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    let failed = self.tree.shutdown().await;
                    self.tree.persist_dir_times().await;
                    failed
                };
                match tokio::time::timeout(self.bound, drained).await {
                    Ok(0) => return true,
                    Ok(failed) => {
                        warn!("{failed} files being written could not be stored (see above)");
                        return false;
                    }
                    Err(_) => {}
                }
                warn!(
                    "uploads still pending after {} s: aborting them; what they held is not stored \
                     (a PutObject whose body was already sent may still complete on the server)",
                    self.bound.as_secs()
                );
                let _ = tokio::time::timeout(Duration::from_secs(10), self.tree.abort()).await;
                false
            })
            .await
    }
}

/// Signals (what a container runtime or systemd sends): the first SIGINT, SIGTERM or
/// SIGHUP runs the [`Drain`] (files still open for writing get a few seconds to be closed
/// by their writers, then what is open is committed, all within its bound), then unmounts —
/// lazily when something still uses the mount — and the process exits (0 when everything
/// was stored). A second signal aborts what is still pending (no multipart upload is left
/// behind), unmounts lazily and exits 1.
async fn on_signals(
    drain: Arc<Drain>,
    mut unmounter: fuser::SessionUnmounter,
    mountpoint: PathBuf,
    given_fd: bool,
) {
    let Ok(mut signals) = Signals::new() else {
        warn!("cannot install signal handlers; unmount with fusermount3 -u");
        return;
    };
    let first = signals.next().await;
    daemon::notify(daemon::Notify::Stopping(
        "committing files being written, then unmounting",
    ));
    info!(
        "{first} received: committing files being written, then unmounting {}",
        mountpoint.display()
    );
    let committed = tokio::select! {
        committed = drain.run(WRITER_GRACE) => committed,
        second = signals.next() => {
            warn!("{second} received again: aborting the uploads under way");
            let _ = tokio::time::timeout(Duration::from_secs(10), drain.tree.abort()).await;
            lazy_unmount(&mountpoint);
            std::process::exit(1);
        }
    };
    let code = if committed { 0 } else { 1 };
    if given_fd {
        // Whoever mounted the descriptor unmounts it; closing it (by exiting) ends the
        // connection, and what was written is committed.
        info!(
            "exiting: the mount of {} is its owner's to remove",
            mountpoint.display()
        );
        std::process::exit(code);
    }
    if let Err(e) = unmounter.unmount() {
        info!("{} is busy ({e}); unmounting lazily", mountpoint.display());
        lazy_unmount(&mountpoint);
        // The kernel keeps a lazily unmounted file system alive while it is in use; what
        // was written is committed, so the process may go.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => std::process::exit(code),
            second = signals.next() => {
                warn!("{second} received again: exiting");
                std::process::exit(1);
            }
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, whichever comes.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// `fusermount3 -u -z`: detach now, let the kernel finish when the last user leaves.
fn lazy_unmount(mountpoint: &Path) {
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => warn!(
            "lazy unmount of {} failed: {}",
            mountpoint.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => warn!("cannot run fusermount3: {e}"),
    }
}
