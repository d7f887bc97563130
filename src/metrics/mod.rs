//! Metrics: every metric the mount exports (names, help texts, labels), the functions the
//! instrumented layers call, and the Prometheus endpoint of `--metrics-addr` ([`http`]).
//!
//! The instrumented places call the small functions and guards here and nothing else, so
//! which metrics exist and what they mean is decided in this one file:
//! - S3 requests: `s3/retry.rs`, where each attempt is made ([`S3Attempt`], [`s3_retry`],
//!   the byte counters, [`UploadInFlight`]);
//! - FUSE requests: the adapter's common request helper ([`fuse_request`]);
//! - the block cache, its disk tier, the memory budget and the open write states: their own
//!   modules.
//!
//! They go through the [`metrics`] facade: without `--metrics-addr` no recorder is installed
//! and every call is a no-op. Labels are only ever the S3 operation, its outcome and the
//! FUSE opcode — small fixed sets of `&'static str` — never a key, a path or anything a
//! user chose, which would both leak names and make the number of series unbounded.

pub mod http;

use std::time::{Duration, Instant};

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::s3::ErrorKind;

pub use http::{Exporter, MetricsError};

/// S3 requests (each attempt), by `operation` and `outcome`.
pub const S3_REQUESTS: &str = "s3mount_s3_requests_total";
/// Duration of each S3 attempt, by `operation`.
pub const S3_REQUEST_SECONDS: &str = "s3mount_s3_request_duration_seconds";
/// Attempts made again after a transient failure, by `operation`.
pub const S3_RETRIES: &str = "s3mount_s3_retries_total";
/// Object bytes received from S3 (GetObject bodies).
pub const S3_BYTES_READ: &str = "s3mount_s3_read_bytes_total";
/// Object bytes S3 acknowledged (PutObject and UploadPart bodies).
pub const S3_BYTES_WRITTEN: &str = "s3mount_s3_written_bytes_total";
/// Multipart uploads started and neither completed nor aborted.
pub const S3_UPLOADS_IN_FLIGHT: &str = "s3mount_s3_multipart_uploads_in_flight";
/// FUSE requests received, by `opcode`.
pub const FUSE_REQUESTS: &str = "s3mount_fuse_requests_total";
/// Block-cache lookups that found the block.
pub const CACHE_HITS: &str = "s3mount_block_cache_hits_total";
/// Block-cache lookups that did not.
pub const CACHE_MISSES: &str = "s3mount_block_cache_misses_total";
/// Bytes held by the block cache.
pub const CACHE_BYTES: &str = "s3mount_block_cache_bytes";
/// Blocks read from the disk cache (valid block files).
pub const DISK_HITS: &str = "s3mount_disk_cache_hits_total";
/// Blocks fetched from S3 by reads that use the disk cache (absent, failing their check, or
/// inside the span of one GET between two such).
pub const DISK_MISSES: &str = "s3mount_disk_cache_misses_total";
/// Bytes of block files the disk cache holds.
pub const DISK_BYTES: &str = "s3mount_disk_cache_bytes";
/// Blocks not written to the disk cache because its write queue was full.
pub const DISK_DROPPED: &str = "s3mount_disk_cache_dropped_writes_total";
/// Bytes reserved against the memory budget (prefetch, cache, upload buffers).
pub const BUDGET_USED: &str = "s3mount_memory_budget_used_bytes";
/// The memory budget (`--memory-limit`; one per bucket in the buckets view).
pub const BUDGET_LIMIT: &str = "s3mount_memory_budget_limit_bytes";
/// Files being written: the open write states (one per inode open for writing, or
/// unlinked while open).
pub const FILES_WRITING: &str = "s3mount_files_being_written";

/// Latency buckets of [`S3_REQUEST_SECONDS`], in seconds: from a HEAD on a local server to
/// a part upload over a slow link (an attempt's bound grows with its bytes).
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The recorder of a mount that exports metrics, with every metric described.
fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(S3_REQUEST_SECONDS.into()), &LATENCY_BUCKETS)
        .expect("the bucket list is not empty")
        .build_recorder()
}

/// Help texts, and the unlabelled metrics registered at zero so that a scrape shows every
/// one of them from the start (labelled ones appear with their first label set).
fn describe() {
    describe_counter!(
        S3_REQUESTS,
        "S3 requests (each attempt) by operation and outcome (ok or the error kind)"
    );
    describe_histogram!(
        S3_REQUEST_SECONDS,
        Unit::Seconds,
        "Duration of each S3 request attempt, by operation"
    );
    describe_counter!(
        S3_RETRIES,
        "S3 requests sent again after a transient failure, by operation"
    );
    describe_counter!(
        S3_BYTES_READ,
        Unit::Bytes,
        "Object bytes received from S3 (GetObject)"
    );
    describe_counter!(
        S3_BYTES_WRITTEN,
        Unit::Bytes,
        "Object bytes S3 acknowledged (PutObject, UploadPart)"
    );
    describe_gauge!(
        S3_UPLOADS_IN_FLIGHT,
        "Multipart uploads started and not yet completed or aborted"
    );
    describe_counter!(FUSE_REQUESTS, "FUSE requests received, by opcode");
    describe_counter!(CACHE_HITS, "Block-cache lookups that found the block");
    describe_counter!(
        CACHE_MISSES,
        "Block-cache lookups that did not find the block"
    );
    describe_gauge!(CACHE_BYTES, Unit::Bytes, "Bytes held by the block cache");
    describe_counter!(
        DISK_HITS,
        "Disk-cache lookups that found a valid block file"
    );
    describe_counter!(
        DISK_MISSES,
        "Disk-cache lookups that did not (absent, or a file that failed its check)"
    );
    describe_gauge!(
        DISK_BYTES,
        Unit::Bytes,
        "Bytes of block files held by the disk cache"
    );
    describe_counter!(
        DISK_DROPPED,
        "Block writes to the disk cache dropped because its queue was full"
    );
    describe_gauge!(
        BUDGET_USED,
        Unit::Bytes,
        "Bytes reserved against the memory budget"
    );
    describe_gauge!(
        BUDGET_LIMIT,
        Unit::Bytes,
        "The memory budget (--memory-limit)"
    );
    describe_gauge!(FILES_WRITING, "Files open for writing (open write states)");
    for c in [
        S3_BYTES_READ,
        S3_BYTES_WRITTEN,
        CACHE_HITS,
        CACHE_MISSES,
        DISK_HITS,
        DISK_MISSES,
        DISK_DROPPED,
    ] {
        counter!(c).increment(0);
    }
    for g in [
        S3_UPLOADS_IN_FLIGHT,
        CACHE_BYTES,
        DISK_BYTES,
        BUDGET_USED,
        BUDGET_LIMIT,
        FILES_WRITING,
    ] {
        gauge!(g).increment(0.0);
    }
}

/// Install the recorder for the whole process; its handle renders the scrape. Called once,
/// before any metric is recorded (what came before would be lost).
fn install() -> Result<PrometheusHandle, MetricsError> {
    let recorder = recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyInstalled)?;
    describe();
    Ok(handle)
}

/// The `outcome` label of an S3 attempt.
fn outcome(r: Result<(), ErrorKind>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(kind) => kind.label(),
    }
}

/// One S3 attempt being timed: [`S3Attempt::done`] records its outcome and duration; one
/// dropped unfinished (its caller was interrupted) is recorded as `cancelled`.
pub struct S3Attempt {
    op: &'static str,
    start: Instant,
    done: bool,
}

impl S3Attempt {
    /// Attempt `op` (the S3 operation name) starts now.
    pub fn start(op: &'static str) -> Self {
        S3Attempt {
            op,
            start: Instant::now(),
            done: false,
        }
    }

    /// It ended with `r` (`Err` carrying the kind of failure).
    pub fn done(mut self, r: Result<(), ErrorKind>) {
        self.done = true;
        self.record(outcome(r));
    }

    fn record(&self, outcome: &'static str) {
        let elapsed: Duration = self.start.elapsed();
        counter!(S3_REQUESTS, "operation" => self.op, "outcome" => outcome).increment(1);
        histogram!(S3_REQUEST_SECONDS, "operation" => self.op).record(elapsed.as_secs_f64());
    }
}

impl Drop for S3Attempt {
    fn drop(&mut self) {
        if !self.done {
            self.record("cancelled");
        }
    }
}

/// Request `op` is sent again after a transient failure.
pub fn s3_retry(op: &'static str) {
    counter!(S3_RETRIES, "operation" => op).increment(1);
}

/// `n` object bytes arrived from S3.
pub fn s3_bytes_read(n: u64) {
    if n > 0 {
        counter!(S3_BYTES_READ).increment(n);
    }
}

/// S3 acknowledged `n` object bytes.
pub fn s3_bytes_written(n: u64) {
    counter!(S3_BYTES_WRITTEN).increment(n);
}

/// A multipart upload in flight, from CreateMultipartUpload until it is completed or
/// aborted ([`UploadInFlight::finish`]) or dropped, whichever comes first.
pub struct UploadInFlight {
    finished: std::sync::atomic::AtomicBool,
}

impl UploadInFlight {
    /// An upload was created.
    pub fn start() -> Self {
        gauge!(S3_UPLOADS_IN_FLIGHT).increment(1.0);
        UploadInFlight {
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// It was completed or aborted (counted once however often this is called).
    pub fn finish(&self) {
        if !self
            .finished
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            gauge!(S3_UPLOADS_IN_FLIGHT).decrement(1.0);
        }
    }
}

impl Drop for UploadInFlight {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The FUSE request `opcode` arrived.
pub fn fuse_request(opcode: &'static str) {
    counter!(FUSE_REQUESTS, "opcode" => opcode).increment(1);
}

/// A block-cache lookup found its block (`hit`) or not.
pub fn cache_lookup(hit: bool) {
    counter!(if hit { CACHE_HITS } else { CACHE_MISSES }).increment(1);
}

/// The block cache now holds `delta` more bytes (fewer when negative).
pub fn cache_bytes(delta: i64) {
    gauge_add(CACHE_BYTES, delta);
}

/// `n` blocks were read from the disk cache.
pub fn disk_cache_hits(n: u64) {
    counter!(DISK_HITS).increment(n);
}

/// `n` blocks a fetch took from S3 instead of the disk cache: not on disk, failing their
/// check, or lying between two such blocks in one GET.
pub fn disk_cache_misses(n: u64) {
    counter!(DISK_MISSES).increment(n);
}

/// The disk cache now holds `delta` more bytes (fewer when negative).
pub fn disk_cache_bytes(delta: i64) {
    gauge_add(DISK_BYTES, delta);
}

/// A block was not written to the disk cache: its queue was full.
pub fn disk_cache_dropped_write() {
    counter!(DISK_DROPPED).increment(1);
}

/// `delta` more bytes are reserved against a memory budget (fewer when negative).
pub fn budget_used(delta: i64) {
    gauge_add(BUDGET_USED, delta);
}

/// A memory budget of `delta` bytes was made (dropped when negative). Budgets add up: the
/// buckets view has one per bucket.
pub fn budget_limit(delta: i64) {
    gauge_add(BUDGET_LIMIT, delta);
}

fn gauge_add(name: &'static str, delta: i64) {
    if delta >= 0 {
        gauge!(name).increment(delta as f64);
    } else {
        gauge!(name).decrement(delta.unsigned_abs() as f64);
    }
}

/// Held by each open write state: counts the files being written while it lives.
#[derive(Debug)]
pub struct FileBeingWritten(());

impl FileBeingWritten {
    /// A write state was made.
    pub fn new() -> Self {
        gauge!(FILES_WRITING).increment(1.0);
        FileBeingWritten(())
    }
}

impl Default for FileBeingWritten {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FileBeingWritten {
    fn drop(&mut self) {
        gauge!(FILES_WRITING).decrement(1.0);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Recording into a recorder of one's own, for tests of the instrumented modules.

    use super::*;

    /// Run `f` with a fresh recorder installed on this thread (and its handle, to render a
    /// scrape midway); the scrape it renders after, while what `f` returned (guards, for
    /// instance) is still alive.
    pub fn scrape<T>(f: impl FnOnce(&PrometheusHandle) -> T) -> String {
        let recorder = recorder();
        let handle = recorder.handle();
        let _kept = ::metrics::with_local_recorder(&recorder, || {
            describe();
            f(&handle)
        });
        handle.render()
    }

    /// The value of the sample `series` (`name` or `name{labels}`, exactly as rendered).
    pub fn value(scrape: &str, series: &str) -> Option<f64> {
        scrape.lines().find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            (s == series).then(|| v.parse().ok()).flatten()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{scrape, value};
    use super::*;

    #[test]
    fn attempts_are_counted_by_operation_and_outcome_and_timed() {
        let text = scrape(|_| {
            S3Attempt::start("GetObject").done(Ok(()));
            S3Attempt::start("GetObject").done(Err(ErrorKind::Throttled));
            s3_retry("GetObject");
            drop(S3Attempt::start("HeadObject"));
            s3_bytes_read(10);
            s3_bytes_read(0);
            s3_bytes_written(7);
        });
        let get = |o: &str| {
            value(
                &text,
                &format!("{S3_REQUESTS}{{operation=\"GetObject\",outcome=\"{o}\"}}"),
            )
        };
        assert_eq!(get("ok"), Some(1.0));
        assert_eq!(get("throttled"), Some(1.0));
        assert_eq!(
            value(
                &text,
                &format!("{S3_REQUESTS}{{operation=\"HeadObject\",outcome=\"cancelled\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, &format!("{S3_RETRIES}{{operation=\"GetObject\"}}")),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                &format!("{S3_REQUEST_SECONDS}_count{{operation=\"GetObject\"}}")
            ),
            Some(2.0)
        );
        assert!(
            text.contains(&format!(
                "{S3_REQUEST_SECONDS}_bucket{{operation=\"GetObject\",le=\"0.001\"}} "
            )),
            "a histogram with buckets, not a summary:\n{text}"
        );
        assert_eq!(value(&text, S3_BYTES_READ), Some(10.0));
        assert_eq!(value(&text, S3_BYTES_WRITTEN), Some(7.0));
        assert!(
            text.contains(&format!("# HELP {S3_REQUESTS} S3 requests")),
            "{text}"
        );
    }

    #[test]
    fn every_unlabelled_metric_is_there_from_the_start() {
        let text = scrape(|_| {});
        for name in [
            S3_BYTES_READ,
            S3_BYTES_WRITTEN,
            S3_UPLOADS_IN_FLIGHT,
            CACHE_HITS,
            CACHE_MISSES,
            CACHE_BYTES,
            DISK_HITS,
            DISK_MISSES,
            DISK_BYTES,
            DISK_DROPPED,
            BUDGET_USED,
            BUDGET_LIMIT,
            FILES_WRITING,
        ] {
            assert_eq!(value(&text, name), Some(0.0), "{name} in\n{text}");
        }
    }

    #[test]
    fn guards_count_while_they_live() {
        let text = scrape(|_| {
            let up = UploadInFlight::start();
            let _other = UploadInFlight::start();
            up.finish();
            up.finish();
            drop(up);
            let _writing = FileBeingWritten::new();
            drop(FileBeingWritten::new());
            fuse_request("lookup");
            fuse_request("lookup");
            cache_lookup(true);
            cache_lookup(false);
            cache_lookup(false);
            cache_bytes(100);
            cache_bytes(-40);
            budget_used(5);
            budget_limit(64);
            (_other, _writing)
        });
        assert_eq!(value(&text, S3_UPLOADS_IN_FLIGHT), Some(1.0));
        assert_eq!(value(&text, FILES_WRITING), Some(1.0));
        assert_eq!(
            value(&text, &format!("{FUSE_REQUESTS}{{opcode=\"lookup\"}}")),
            Some(2.0)
        );
        assert_eq!(value(&text, CACHE_HITS), Some(1.0));
        assert_eq!(value(&text, CACHE_MISSES), Some(2.0));
        assert_eq!(value(&text, CACHE_BYTES), Some(60.0));
        assert_eq!(value(&text, BUDGET_USED), Some(5.0));
        assert_eq!(value(&text, BUDGET_LIMIT), Some(64.0));
    }
}
