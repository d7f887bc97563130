//! Observability through a real mount on Garage: `--metrics-addr` serves Prometheus text at
//! `/metrics` whose counters move with what the mount does (S3 requests by operation and
//! outcome, FUSE opcodes, bytes, the block cache, files being written and multipart
//! uploads in flight) and carry no key or path; a bad or busy address is refused with one
//! line before anything is mounted; `--log-format json` writes one JSON object per line.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::metrics::{free_port, http_get, s3_ok, scrape, value};
use crate::common::{self, Conn, Mount, S3, is_mounted, must_fail_to_mount, pseudo_random, unique};

fn fuse(scrape: &str, opcode: &str) -> f64 {
    value(
        scrape,
        &format!("s3mount_fuse_requests_total{{opcode=\"{opcode}\"}}"),
    )
}

/// Read one 4 KiB block at `offset` with O_DIRECT: it reaches the mount whatever the page
/// cache holds, as a read the prefetcher does not take for a stream (so it goes through
/// the block cache).
fn direct_read(file: &Path, offset: u64) {
    let out = Command::new("dd")
        .arg(format!("if={}", file.display()))
        .args(["of=/dev/null", "bs=4096", "count=1", "iflag=direct"])
        .arg(format!("skip={}", offset / 4096))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_count_what_the_mount_does() {
    let s3 = S3::garage();
    let p = unique("metrics");
    s3.put(&format!("{p}/data.bin"), pseudo_random(2 << 20, 3));
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let m = Mount::garage(
        &format!("{}/{p}", s3.bucket),
        &["--metrics-addr", &addr.to_string()],
    );

    let before = scrape(addr);
    // Every unlabelled metric is there from the start.
    for name in [
        "s3mount_s3_read_bytes_total",
        "s3mount_s3_written_bytes_total",
        "s3mount_s3_multipart_uploads_in_flight",
        "s3mount_block_cache_hits_total",
        "s3mount_block_cache_misses_total",
        "s3mount_block_cache_bytes",
        "s3mount_memory_budget_used_bytes",
        "s3mount_files_being_written",
    ] {
        assert!(
            before.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{before}"
        );
    }
    assert_eq!(
        value(&before, "s3mount_memory_budget_limit_bytes"),
        (128 << 20) as f64,
        "the default --memory-limit"
    );

    // A write, an ls, a read (the same block twice, read directly: a miss, then a hit).
    std::fs::write(m.path("new.txt"), b"hello").unwrap();
    let names: Vec<_> = std::fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.contains(&"data.bin".to_owned()), "{names:?}");
    direct_read(&m.path("data.bin"), 1 << 20);
    direct_read(&m.path("data.bin"), 1 << 20);
    assert_eq!(std::fs::read(m.path("new.txt")).unwrap(), b"hello");

    // A file held open for writing, past one part: a multipart upload in flight.
    let mut held = std::fs::File::create(m.path("held.bin")).unwrap();
    held.write_all(&pseudo_random(9 << 20, 4)).unwrap();
    let during = scrape(addr);
    assert_eq!(
        value(&during, "s3mount_files_being_written"),
        1.0,
        "{during}"
    );
    assert_eq!(
        value(&during, "s3mount_s3_multipart_uploads_in_flight"),
        1.0,
        "{during}"
    );
    drop(held);
    assert_eq!(s3.get(&format!("{p}/held.bin")).unwrap().len(), 9 << 20);

    let after = scrape(addr);
    assert_eq!(value(&after, "s3mount_files_being_written"), 0.0, "{after}");
    assert_eq!(
        value(&after, "s3mount_s3_multipart_uploads_in_flight"),
        0.0,
        "{after}"
    );
    for op in [
        "PutObject",
        "GetObject",
        "ListObjectsV2",
        "CreateMultipartUpload",
    ] {
        assert!(
            s3_ok(&after, op) > s3_ok(&before, op),
            "{op} ok did not move:\n{after}"
        );
    }
    assert!(s3_ok(&after, "UploadPart") >= 2.0, "{after}");
    assert!(s3_ok(&after, "CompleteMultipartUpload") >= 1.0, "{after}");
    assert!(
        value(
            &after,
            "s3mount_s3_request_duration_seconds_count{operation=\"GetObject\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains(
            "s3mount_s3_request_duration_seconds_bucket{operation=\"PutObject\",le=\"60\"} "
        ),
        "{after}"
    );
    for opcode in [
        "lookup",
        "read",
        "write",
        "create",
        "readdirplus",
        "release",
    ] {
        assert!(
            fuse(&after, opcode) > fuse(&before, opcode),
            "FUSE {opcode} did not move:\n{after}"
        );
    }
    let read = value(&after, "s3mount_s3_read_bytes_total");
    assert!(
        read >= (256 << 10) as f64,
        "a whole block was fetched: {read}"
    );
    let written = value(&after, "s3mount_s3_written_bytes_total");
    assert!(written >= ((9 << 20) + 5) as f64, "{written}");
    assert!(
        value(&after, "s3mount_block_cache_misses_total") >= 1.0,
        "{after}"
    );
    assert!(
        value(&after, "s3mount_block_cache_hits_total") >= 1.0,
        "{after}"
    );
    assert!(value(&after, "s3mount_block_cache_bytes") >= (256 << 10) as f64);

    // No key, path or bucket in any label.
    for private in [p.as_str(), "data.bin", "held.bin", "new.txt", &s3.bucket] {
        assert!(!after.contains(private), "{private} in the metrics");
    }
    // Only /metrics, and only on the address asked for.
    let (head, _) = http_get(addr, "/");
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let elsewhere: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    assert!(TcpStream::connect_timeout(&elsewhere, Duration::from_secs(2)).is_err());
}

/// Run `s3mount mount` expecting a usage error: exit code 2, one line, nothing mounted.
fn refused(extra: &[&str]) -> String {
    let conn = Conn::garage();
    let target = format!("{}/{}", common::garage().bucket, unique("refused"));
    let d = common::empty_dir();
    let out = conn.mount_cmd(&target, d.path(), extra).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    must_fail_to_mount(&conn, &target, d.path(), extra)
}

#[test]
fn a_bad_or_busy_metrics_address_is_refused_before_mounting() {
    let e = refused(&["--metrics-addr", "nonsense"]);
    assert!(e.contains("--metrics-addr nonsense: no port"), "{e}");
    let e = refused(&["--metrics-addr", "127.0.0.1:0"]);
    assert!(e.contains("port 0"), "{e}");
    let e = refused(&["--metrics-addr", "::1:9100"]);
    assert!(e.contains("brackets"), "{e}");
    let e = refused(&["--metrics-addr", "203.0.113.7:9100"]);
    assert!(e.contains("cannot listen on 203.0.113.7:9100"), "{e}");

    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = busy.local_addr().unwrap().to_string();
    let e = refused(&["--metrics-addr", &at]);
    assert!(
        e.contains(&format!("cannot listen on {at}")) && e.contains("in use"),
        "{e}"
    );
    // Also in the foreground, where nothing forks first.
    let e = refused(&["-f", "--metrics-addr", &at]);
    assert!(e.contains("in use"), "{e}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let s3 = S3::garage();
    let p = unique("jsonlog");
    let tmp = common::empty_dir();
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let log = tmp.path().join("log");
    let out = Conn::garage()
        .mount_cmd(
            &format!("{}/{p}", s3.bucket),
            &dir,
            &[
                "--log-file",
                log.to_str().unwrap(),
                "--log-format",
                "json",
                "--log-level",
                "debug",
            ],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let m = Mount::adopt(tmp, dir.clone());
    std::fs::write(m.path("a.txt"), b"json").unwrap();
    assert_eq!(std::fs::read(m.path("a.txt")).unwrap(), b"json");
    assert!(std::fs::metadata(m.path("missing")).is_err());
    std::fs::read_dir(&m.dir).unwrap().for_each(drop);

    let unmounted = Command::new("fusermount3")
        .arg("-u")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(unmounted.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"message\":\"unmounted ") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!is_mounted(&dir));

    // Before it was mounted the daemon logged to the terminal: JSON too, but for the one
    // line a person reads.
    let before: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("s3mount: mounted "))
        .collect();
    let lines: Vec<&str> = before.iter().copied().chain(text.lines()).collect();
    assert!(lines.len() >= 5, "too few lines:\n{stderr}\n{text}");
    let secret = &common::garage().secret;
    let mut seen = std::collections::HashSet::new();
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v[key].is_string(), "no {key} in {l}");
        }
        assert!(v["fields"].is_object(), "no fields in {l}");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&v["level"].as_str().unwrap()),
            "{l}"
        );
        assert!(!l.contains(secret.as_str()), "the secret key is in {l}");
        seen.insert(
            v["message"]
                .as_str()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned(),
        );
        seen.insert(v["target"].as_str().unwrap().to_owned());
    }
    for want in ["connected", "unmounted", "s3mount::mount"] {
        assert!(seen.contains(want), "no {want} in:\n{stderr}\n{text}");
    }
}
