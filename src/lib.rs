//! s3mount: mount an S3 bucket, or one path inside it, as a local folder.
//!
//! Data flows one way: [`cli`] → [`config`] → [`s3`] (credentials, region, the object-store
//! client) → [`fs`] (the filesystem core, which knows nothing of FUSE or HTTP) → [`fuse`]
//! (the kernel adapter). [`mount`] wires them together for the `mount` subcommand.
//! [`metrics`] holds what those layers count and serves it at `--metrics-addr`; [`heap`]
//! keeps resident memory near the budget.

pub mod cgroup;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod escape;
pub mod fs;
pub mod fuse;
pub mod heap;
pub mod helper;
pub mod logging;
pub mod metrics;
pub mod mount;
pub mod policy;
pub mod s3;
