//! The `mount` subcommand: connect, build the filesystem, mount it, serve until unmounted.

use std::sync::Arc;

use anyhow::{Context, Result};
use fuser::{Config, MountOption, SessionACL};
use tracing::{info, warn};

use crate::config::MountConfig;
use crate::daemon::{self, Ready};
use crate::fs::{Buckets, Fs, Tree};
use crate::fuse::{FuseAdapter, KernelInvalidator};
use crate::s3::connect::connect;

/// Connect, mount and serve. With `ready` (a background mount) the parent process is told
/// once the mount is live and output moves to the log file.
pub fn run(cfg: MountConfig, ready: Option<Ready>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("s3mount")
        .build()
        .context("starting the async runtime")?;
    let mut settings = cfg.connection.request_settings();
    settings.acl = cfg.uploads.acl.clone();
    settings.sse = cfg.uploads.sse.clone();
    settings.sse_kms_key_id = cfg.uploads.sse_kms_key_id.clone();
    settings.storage_class = cfg.uploads.storage_class.clone();
    let (fs, target, region, credentials) = match &cfg.target {
        Some(t) => {
            let connected = rt.block_on(connect(t, &cfg.connection))?;
            let fs = Fs::new(
                Arc::new(connected.store.with_settings(settings)),
                &t.prefix,
                cfg.fs.clone(),
            );
            (
                Arc::new(fs) as Arc<dyn Tree>,
                format!("s3://{}/{}", t.bucket, t.prefix),
                connected.region,
                connected.credentials,
            )
        }
        None => {
            let (service, credentials) =
                rt.block_on(crate::s3::buckets::connect(&cfg.connection, settings))?;
            let region = format!("{} for new buckets; each bucket in its own", service.home());
            let tree: Arc<dyn Tree> = Arc::new(Buckets::new(Arc::new(service), cfg.fs.clone()));
            (tree, "s3://".to_owned(), region, credentials)
        }
    };
    info!(target = %target, region = %region, credentials = %credentials, "connected");
    let adapter = FuseAdapter::new(fs.clone(), rt.handle().clone());

    let mut options = vec![
        MountOption::FSName(target.clone()),
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
    let mountpoint = &cfg.mount.mountpoint;
    let mut session = fuser::Session::new(adapter, mountpoint, &fuse_config)
        .with_context(|| format!("mounting at {}", mountpoint.display()))?;

    fs.set_invalidator(Arc::new(KernelInvalidator(session.notifier())));
    let mut unmounter = session.unmount_callable();
    let mp = mountpoint.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        info!("signal received, unmounting {}", mp.display());
        if let Err(e) = unmounter.unmount() {
            warn!(
                "could not unmount {}: {e} (files still open?)",
                mp.display()
            );
        }
    });

    let log_file = cfg
        .mount
        .log_file
        .clone()
        .unwrap_or_else(daemon::default_log_file);
    eprintln!(
        "s3mount: mounted {target} at {} (region {}, credentials: {}){}",
        mountpoint.display(),
        region,
        credentials,
        if ready.is_some() {
            format!("; logs: {}", log_file.display())
        } else {
            String::new()
        }
    );
    if let Some(ready) = ready {
        ready
            .signal(&log_file)
            .with_context(|| format!("opening log file {}", log_file.display()))?;
    }
    session.run().context("serving the FUSE session")?;
    rt.block_on(fs.shutdown());
    info!("unmounted {}", mountpoint.display());
    Ok(())
}
