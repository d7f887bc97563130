//! The end-to-end tests: one binary, one module per concern. They mount real FUSE file
//! systems with the built `s3mount` binary against a local Garage (S3) and a local moto
//! (S3 + STS + IAM), both started or reused by [`common`], and check results through
//! aws-sdk-s3 directly. Run them with `cargo test --test e2e` (or everything with
//! `scripts/test.sh`); the reference-model property test is its own binary
//! (`tests/model.rs`).
//!
//! Every test shares this process: Garage tests keep to their own prefix or bucket, and
//! moto tests take `common::moto_lock()` first, since moto setups reset the whole server.

mod common;

mod auth;
mod buckets;
mod cgroup;
mod cli;
mod deploy;
mod descriptors;
mod diskcache;
mod faults;
mod input;
mod integrity;
mod lifecycle;
mod metadata;
mod misbehaving;
mod namespace;
mod observability;
mod permissions;
mod policy_escape;
mod posix_model;
mod preserve;
mod read;
mod readdir;
mod service;
mod special;
mod store;
mod times;
mod unprivileged;
mod visibility;
mod wire;
mod wording;
mod write;
