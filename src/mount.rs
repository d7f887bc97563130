//! The `mount` subcommand: connect, build the filesystem, mount it, serve until unmounted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use fuser::{Config, MountOption, SessionACL};
use tracing::{info, warn};

use crate::config::MountConfig;
use crate::daemon::{self, Ready};
use crate::fs::{Buckets, Fs, Tree};
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
    let c = rt.block_on(connect_tree(&cfg))?;
    info!(target = %c.target, region = %c.region, credentials = %c.credentials, "connected");
    let adapter = FuseAdapter::new(c.tree.clone(), rt.handle().clone());
    let mountpoint = &cfg.mount.mountpoint;
    let mut session = fuser::Session::new(adapter, mountpoint, &fuse_config(&cfg, &c.target))
        .with_context(|| format!("mounting at {}", mountpoint.display()))?;
    c.tree
        .set_invalidator(Arc::new(KernelInvalidator(session.notifier())));
    let unmounter = session.unmount_callable();
    rt.spawn(unmount_on_signal(unmounter, mountpoint.clone()));

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
    if let Some(ready) = ready {
        ready
            .signal(&log_file)
            .with_context(|| format!("opening log file {}", log_file.display()))?;
    }
    session.run().context("serving the FUSE session")?;
    rt.block_on(c.tree.shutdown());
    info!("unmounted {}", mountpoint.display());
    Ok(())
}

/// The tree to serve: one bucket (or path in it), or every bucket.
async fn connect_tree(cfg: &MountConfig) -> Result<Connected> {
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
                tree: Arc::new(Fs::new(store, &t.prefix, cfg.fs.clone())),
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
                tree: Arc::new(Buckets::new(Arc::new(service), cfg.fs.clone())),
                target: "s3://".to_owned(),
                credentials,
            }
        }
    })
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

/// SIGINT or SIGTERM unmounts, which ends the session.
async fn unmount_on_signal(mut unmounter: fuser::SessionUnmounter, mountpoint: PathBuf) {
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
    unmount(&mut unmounter, &mountpoint);
}

fn unmount(unmounter: &mut fuser::SessionUnmounter, mountpoint: &Path) {
    info!("signal received, unmounting {}", mountpoint.display());
    if let Err(e) = unmounter.unmount() {
        warn!(
            "could not unmount {}: {e} (files still open?)",
            mountpoint.display()
        );
    }
}
