//! Upload integrity: every PutObject and UploadPart carries a CRC32C the server verifies
//! (Garage refuses a body that does not match it), multipart uploads — also staged edits
//! made of copied parts — complete with their parts' checksums, and a server that refuses
//! checksums gets the upload again without (said once in the log).

use std::io::{Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;
use bytes::Bytes;
use s3mount::s3::client::AwsStore;
use s3mount::s3::{ObjectStore, PutOptions};

use crate::common::http::{self, Response};
use crate::common::{self, S3, pseudo_random, rt, unique};

#[test]
fn garage_refuses_a_body_whose_checksum_does_not_match() {
    // What makes the checksums worth sending: the server checks them.
    let s3 = S3::garage();
    let key = format!("{}/bad", unique("crc"));
    let r = rt().block_on(
        s3.client
            .put_object()
            .bucket(&s3.bucket)
            .key(&key)
            .checksum_crc32_c("AAAAAA==")
            .body(ByteStream::from_static(
                b"these bytes do not have that checksum",
            ))
            .send(),
    );
    r.expect_err("a body with a wrong checksum was stored");
    assert!(s3.get(&key).is_none());
}

/// The CRC32C Garage stored for `key` (asked with checksum mode on).
fn stored_crc32c(s3: &S3, key: &str) -> Option<String> {
    rt().block_on(async {
        s3.client
            .head_object()
            .bucket(&s3.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap()
            .checksum_crc32_c()
            .map(str::to_owned)
    })
}

#[test]
fn files_written_and_edited_through_the_mount_are_checksummed_and_exact() {
    let (s3, p, m) = common::mount_fresh_prefix("crc-mount");
    // A small file: one PutObject with its CRC32C.
    std::fs::write(m.path("small"), b"hello, checksums").unwrap();
    assert_eq!(
        s3.get(&format!("{p}/small")).as_deref(),
        Some(&b"hello, checksums"[..])
    );
    let crc = stored_crc32c(&s3, &format!("{p}/small"));
    assert!(
        crc.is_some(),
        "the small file was stored without a checksum"
    );
    // A multipart upload (parts of 8 MiB by default).
    let mut data = pseudo_random(20 << 20, 31);
    std::fs::write(m.path("big"), &data).unwrap();
    assert!(s3.get(&format!("{p}/big")).as_deref() == Some(&data[..]));
    // An edit in place: staged, the unchanged ranges copied server-side (UploadPartCopy)
    // into an upload with checksums, which then completes with every part's.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("big"))
        .unwrap();
    f.seek(SeekFrom::Start(9 << 20)).unwrap();
    f.write_all(b"EDITED").unwrap();
    f.sync_all().unwrap();
    drop(f);
    data[9 << 20..(9 << 20) + 6].copy_from_slice(b"EDITED");
    assert!(
        s3.get(&format!("{p}/big")).as_deref() == Some(&data[..]),
        "edit lost"
    );
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0);
}

/// A server that records each request's head, refuses any request carrying a checksum
/// with 400 InvalidRequest when `refuse`, and otherwise answers what S3 would (enough for
/// PutObject and a multipart upload).
fn server(refuse: bool) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let url = http::serve(move |req| {
        log.lock().unwrap().push(req.head.clone());
        let line = req.line();
        let (status, body) = if refuse && req.head.contains("x-amz-checksum") {
            (
                "400 Bad Request",
                "<Error><Code>InvalidRequest</Code><Message>checksums are not supported</Message></Error>",
            )
        } else if line.starts_with("post") && line.contains("?uploads") {
            (
                "200 OK",
                "<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>",
            )
        } else if line.starts_with("post") {
            (
                "200 OK",
                "<CompleteMultipartUploadResult><ETag>\"m-1\"</ETag></CompleteMultipartUploadResult>",
            )
        } else {
            ("200 OK", "")
        };
        Response {
            headers: "ETag: \"e\"\r\n".into(),
            ..Response::new(status, body)
        }
    });
    (url, seen)
}

/// Our store on `url`, with the SDK's own checksums left to us, as a mount configures it.
fn store_at(url: &str) -> AwsStore {
    let s3 = S3::new(url, "AKIDEXAMPLE", "secret", "b");
    let conf = s3
        .client
        .config()
        .to_builder()
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    AwsStore::new(aws_sdk_s3::Client::from_conf(conf), "b")
}

/// `x-amz-checksum-crc32c` of "123456789", the check value of CRC-32C (0xE3069283).
const CHECK_CRC: &str = "x-amz-checksum-crc32c: 4wasgw==";

#[test]
fn uploads_and_parts_carry_their_crc32c() {
    let (url, seen) = server(false);
    let store = store_at(&url);
    rt().block_on(async {
        let opts = PutOptions::default();
        let body = Bytes::from_static(b"123456789");
        store.put("k", body.clone(), &opts).await.unwrap();
        let up = store.start_multipart("m", &opts).await.unwrap();
        let part = up.put_part(1, body).await.unwrap();
        up.complete(vec![part]).await.unwrap();
    });
    let seen = seen.lock().unwrap();
    let [put, create, part, complete] = &seen[..] else {
        panic!("{seen:?}")
    };
    assert!(put.contains(CHECK_CRC), "{put}");
    assert!(
        create.contains("x-amz-checksum-algorithm: crc32c"),
        "{create}"
    );
    assert!(part.contains(CHECK_CRC), "{part}");
    assert!(complete.starts_with("post"), "{complete}");
}

#[test]
fn a_server_that_refuses_checksums_gets_the_uploads_without() {
    let (url, seen) = server(true);
    let store = store_at(&url);
    rt().block_on(async {
        let opts = PutOptions::default();
        store
            .put("k", Bytes::from_static(b"x"), &opts)
            .await
            .unwrap();
        store
            .put("k2", Bytes::from_static(b"y"), &opts)
            .await
            .unwrap();
        let up = store.start_multipart("m", &opts).await.unwrap();
        let part = up.put_part(1, Bytes::from_static(b"z")).await.unwrap();
        up.complete(vec![part]).await.unwrap();
    });
    let seen = seen.lock().unwrap();
    // Refused once, then never offered again.
    let with: Vec<_> = seen
        .iter()
        .filter(|h| h.contains("x-amz-checksum"))
        .collect();
    assert_eq!(with.len(), 1, "{seen:?}");
    assert_eq!(seen.len(), 6, "{seen:?}");
}

/// A mount of a fresh prefix of the moto bucket (moto, unlike Garage, honours
/// `If-None-Match`), and a client to change objects behind its back.
fn moto_mount(
    moto: &mut common::MotoLock,
    tag: &str,
    extra: &[&str],
) -> (S3, String, common::Mount) {
    let m = moto.scenario();
    moto.auth_off();
    let conn = common::Conn {
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), "other-client".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "any".into()),
        ],
        args: vec![],
    }
    .with_args(&["--endpoint-url", moto.endpoint(), "--region", "us-east-1"]);
    let p = unique(tag);
    let mount = common::Mount::with(&conn, &format!("{}/{p}", m.bucket), extra);
    (
        S3::new(moto.endpoint(), "other-client", "any", &m.bucket),
        p,
        mount,
    )
}

/// Create `name` in `m` (`O_EXCL` when `exclusive`), write, let another client create the
/// object meanwhile, then fsync: the result, and what the bucket holds afterwards.
fn create_while_another_writes(
    s3: &S3,
    p: &str,
    m: &common::Mount,
    name: &str,
    exclusive: bool,
) -> (std::io::Result<()>, Option<Vec<u8>>) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .create_new(exclusive)
        .open(m.path(name))
        .unwrap();
    f.write_all(b"ours").unwrap();
    s3.put(&format!("{p}/{name}"), b"theirs".to_vec());
    let r = f.sync_all();
    drop(f);
    (r, s3.get(&format!("{p}/{name}")))
}

#[test]
fn an_exclusive_create_or_a_no_overwrite_mount_never_replaces_an_object_created_meanwhile() {
    let mut moto = common::moto_lock();
    let (s3, p, m) = moto_mount(&mut moto, "excl", &[]);
    let (r, stored) = create_while_another_writes(&s3, &p, &m, "x", true);
    let e = r.expect_err("the exclusive create replaced the other client's object");
    assert_eq!(common::errno(&e), libc::EEXIST, "{e}");
    assert_eq!(stored.as_deref(), Some(&b"theirs"[..]));
    // A plain create (no O_EXCL) replaces it, as a local file system would.
    let (r, stored) = create_while_another_writes(&s3, &p, &m, "y", false);
    r.unwrap();
    assert_eq!(stored.as_deref(), Some(&b"ours"[..]));
    // An exclusive create that nobody races is stored, and can be written again after its
    // first commit.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("z"))
        .unwrap();
    f.write_all(b"one").unwrap();
    f.sync_all().unwrap();
    f.write_all(b" two").unwrap();
    drop(f);
    assert_eq!(s3.get(&format!("{p}/z")).as_deref(), Some(&b"one two"[..]));
    drop(m);

    let (s3, p, m) = moto_mount(&mut moto, "noover", &["--no-overwrite"]);
    let (r, stored) = create_while_another_writes(&s3, &p, &m, "x", false);
    let e = r.expect_err("a --no-overwrite mount replaced an object created meanwhile");
    assert_eq!(common::errno(&e), libc::EEXIST, "{e}");
    assert_eq!(stored.as_deref(), Some(&b"theirs"[..]));
}

/// Our store on a server that answers each request with `answer(request, n)` (`n`: how
/// many PutObjects it has seen, this one included), under the retry layer.
fn retrying_store_at(
    answer: impl Fn(&http::Request, usize) -> Response + Send + Sync + 'static,
) -> (s3mount::s3::retry::Retrying, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let puts = std::sync::atomic::AtomicUsize::new(0);
    let url = http::serve(move |req| {
        log.lock().unwrap().push(req.head.clone());
        let n = if req.line().starts_with("put") {
            puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
        } else {
            puts.load(std::sync::atomic::Ordering::SeqCst)
        };
        answer(req, n)
    });
    let policy = s3mount::s3::retry::RetryPolicy {
        deadline: std::time::Duration::from_secs(10),
        initial_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(5),
        ..Default::default()
    };
    let store =
        s3mount::s3::retry::Retrying::new(Arc::new(store_at(&url).without_sdk_retries()), policy);
    (store, seen)
}

fn s3_error(status: &'static str, code: &str, message: &str) -> Response {
    Response::new(
        status,
        format!("<Error><Code>{code}</Code><Message>{message}</Message></Error>"),
    )
}

#[test]
fn a_body_the_server_finds_damaged_is_sent_again() {
    // Garage's answer to a checksum that does not match (see above): the bytes were
    // damaged on the way, and the same bytes are sent again.
    let (store, seen) = retrying_store_at(|_, n| match n {
        1 => s3_error("400 Bad Request", "InvalidDigest", "checksum mismatch"),
        _ => Response::new("200 OK", ""),
    });
    rt().block_on(store.put(
        "k",
        Bytes::from_static(b"123456789"),
        &PutOptions::default(),
    ))
    .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|h| h.contains(CHECK_CRC)), "{seen:?}");
}

#[test]
fn a_server_that_refuses_if_none_match_gets_plain_uploads() {
    let (store, seen) = retrying_store_at(|req, _| {
        if req.header("if-none-match").is_some() {
            s3_error("501 Not Implemented", "NotImplemented", "If-None-Match")
        } else {
            Response::new("200 OK", "")
        }
    });
    let opts = PutOptions {
        create_only: true,
        ..PutOptions::default()
    };
    rt().block_on(async {
        store
            .put("k", Bytes::from_static(b"x"), &opts)
            .await
            .unwrap();
        store
            .put("k2", Bytes::from_static(b"y"), &opts)
            .await
            .unwrap();
    });
    let seen = seen.lock().unwrap();
    // Refused once, then never sent again.
    let with: Vec<_> = seen
        .iter()
        .filter(|h| h.contains("if-none-match"))
        .collect();
    assert_eq!((with.len(), seen.len()), (1, 3), "{seen:?}");
}

#[test]
fn a_create_only_put_whose_answer_was_lost_is_ours_when_the_object_holds_our_bytes() {
    // First attempt: stored, but the answer is a 500. The retry finds the object (412);
    // its ETag is the MD5 of our body, so the create succeeded after all. Another body
    // under that name is a real conflict.
    let ours = "\"25f9e794323b453885f5181f1b624d0b\""; // MD5 of "123456789"
    for (etag, want_ok) in [
        (ours, true),
        ("\"0123456789abcdef0123456789abcdef\"", false),
    ] {
        let (store, _) = retrying_store_at(move |req, n| {
            if req.line().starts_with("head") {
                return Response {
                    headers: format!("ETag: {etag}\r\n"),
                    ..Response::new("200 OK", "")
                };
            }
            match n {
                1 => s3_error("500 Internal Server Error", "InternalError", "lost"),
                _ => s3_error("412 Precondition Failed", "PreconditionFailed", "exists"),
            }
        });
        let opts = PutOptions {
            create_only: true,
            ..PutOptions::default()
        };
        let r = rt().block_on(store.put("k", Bytes::from_static(b"123456789"), &opts));
        assert_eq!(r.is_ok(), want_ok, "{r:?}");
        if let Err(e) = r {
            assert_eq!(e.kind, s3mount::s3::ErrorKind::PreconditionFailed, "{e}");
        }
    }
}
