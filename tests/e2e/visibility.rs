//! What other clients do is visible at once (issue 12, §4), through a real mount against
//! Garage: an object or a directory (a marker, or only keys below it) that another client
//! has just created is found by the very next `stat` and `open`, in a directory this mount
//! just made, one it just listed, and under a name it just deleted; checking such a name
//! costs one ListObjectsV2 and no HEAD. With `--negative-cache` the trade-off: no request,
//! and the other client's name is found only after `--metadata-ttl`.

use std::fs;
use std::time::{Duration, Instant};

use crate::common::{Mount, S3, errno, sh, unique};

/// S3 requests of SDK operation `op` in a trace log, for keys containing `part`.
fn requests(log: &str, op: &str, part: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("S3 request") && l.contains(&format!("op=\"{op}\"")))
        .filter(|l| l.contains(part))
        .count()
}

fn mount(s3: &S3, p: &str, extra: &[&str]) -> Mount {
    Mount::garage(&format!("{}/{p}", s3.bucket), extra)
}

fn enoent(m: &Mount, rel: &str) -> bool {
    fs::metadata(m.path(rel)).is_err_and(|e| errno(&e) == libc::ENOENT)
}

/// The next `stat` and `open` of `rel` through the mount find the other client's file.
fn found_file(m: &Mount, rel: &str, body: &[u8]) {
    let md = fs::metadata(m.path(rel)).unwrap_or_else(|e| panic!("stat {rel}: {e}"));
    assert!(md.is_file(), "{rel}");
    assert_eq!(md.len(), body.len() as u64, "{rel}");
    assert_eq!(fs::read(m.path(rel)).unwrap(), body, "{rel}");
}

#[test]
fn another_clients_names_in_a_directory_made_here_are_found_at_once() {
    let s3 = S3::garage();
    let p = unique("vis-made");
    let m = mount(&s3, &p, &["--log-level", "trace"]);
    fs::create_dir(m.path("d")).unwrap();
    // What cp -r does in the directory it made: each new name is checked, with one LIST.
    sh(&m.dir, "for i in $(seq 1 10); do printf $i > d/f$i; done");
    let log = m.log_text();
    assert_eq!(requests(&log, "head_object", "/d/f"), 0, "no HEAD");
    assert_eq!(
        requests(&log, "list_objects_v2", "/d/f"),
        10,
        "one LIST each"
    );

    assert!(enoent(&m, "d/theirs"));
    s3.put(&format!("{p}/d/theirs"), b"from elsewhere".to_vec());
    found_file(&m, "d/theirs", b"from elsewhere");
    // A directory that exists only as a key below it, and one that is only a marker.
    s3.put(&format!("{p}/d/sub/x"), b"deep".to_vec());
    assert!(fs::metadata(m.path("d/sub")).unwrap().is_dir());
    found_file(&m, "d/sub/x", b"deep");
    s3.put(&format!("{p}/d/marked/"), Vec::new());
    assert!(fs::metadata(m.path("d/marked")).unwrap().is_dir());
    // A directory another client makes inside one that was just made here.
    fs::create_dir(m.path("d/new")).unwrap();
    s3.put(&format!("{p}/d/new/deeper/y"), b"y".to_vec());
    found_file(&m, "d/new/deeper/y", b"y");
}

#[test]
fn another_clients_names_in_a_directory_listed_here_are_found_at_once() {
    let s3 = S3::garage();
    let p = unique("vis-listed");
    s3.put(&format!("{p}/d/a"), b"a".to_vec());
    let m = mount(&s3, &p, &[]);
    let names: Vec<_> = fs::read_dir(m.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["a"]);
    s3.put(&format!("{p}/d/b"), b"bb".to_vec());
    found_file(&m, "d/b", b"bb");
    s3.put(&format!("{p}/d/c/x"), b"x".to_vec());
    assert!(fs::metadata(m.path("d/c")).unwrap().is_dir());
    found_file(&m, "d/c/x", b"x");
    // The same at the mount's root, listed by `ls`.
    sh(&m.dir, "ls > /dev/null");
    s3.put(&format!("{p}/top"), b"top".to_vec());
    found_file(&m, "top", b"top");
}

#[test]
fn a_name_deleted_here_and_created_again_elsewhere_is_found_at_once() {
    let s3 = S3::garage();
    let p = unique("vis-deleted");
    let m = mount(&s3, &p, &[]);
    fs::write(m.path("f"), b"mine").unwrap();
    fs::remove_file(m.path("f")).unwrap();
    assert!(enoent(&m, "f"));
    s3.put(&format!("{p}/f"), b"theirs".to_vec());
    found_file(&m, "f", b"theirs");
    // A directory removed here comes back as keys below it.
    fs::create_dir(m.path("d")).unwrap();
    fs::remove_dir(m.path("d")).unwrap();
    assert!(enoent(&m, "d"));
    s3.put(&format!("{p}/d/x"), b"x".to_vec());
    found_file(&m, "d/x", b"x");
    // A name looked up in vain, then created elsewhere.
    assert!(enoent(&m, "later"));
    s3.put(&format!("{p}/later"), b"now".to_vec());
    found_file(&m, "later", b"now");
}

#[test]
fn with_the_negative_cache_another_clients_name_is_found_after_the_ttl() {
    let s3 = S3::garage();
    let p = unique("vis-negcache");
    let ttl = Duration::from_secs(3);
    let m = mount(
        &s3,
        &p,
        &[
            "--negative-cache",
            "--metadata-ttl",
            "3s",
            "--log-level",
            "trace",
        ],
    );
    let made = Instant::now();
    fs::create_dir(m.path("d")).unwrap();
    // Creating names in a directory made here asks nothing about them.
    sh(&m.dir, "for i in $(seq 1 10); do printf $i > d/f$i; done");
    let log = m.log_text();
    assert_eq!(requests(&log, "head_object", "/d/f"), 0);
    assert_eq!(requests(&log, "list_objects_v2", "/d/f"), 0);
    // The trade-off: another client's names look absent until the TTL has passed.
    s3.put(&format!("{p}/d/theirs"), b"t".to_vec());
    s3.put(&format!("{p}/d/sub/x"), b"x".to_vec());
    let hidden = enoent(&m, "d/theirs") && enoent(&m, "d/sub");
    assert!(
        hidden || made.elapsed() >= ttl,
        "found within the TTL: not the negative cache"
    );
    std::thread::sleep(ttl.saturating_sub(made.elapsed()) + Duration::from_millis(300));
    found_file(&m, "d/theirs", b"t");
    found_file(&m, "d/sub/x", b"x");
}
