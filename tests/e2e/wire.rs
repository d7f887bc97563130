//! What goes on the wire: the per-mount request options (`--expected-bucket-owner`,
//! `--requester-pays`) and upload options (`--acl`, `--sse`, `--storage-class`), checked on
//! the raw HTTP requests the client sends to a recording server on loopback — the local S3
//! servers accept these headers but do not enforce them.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use s3mount::s3::client::{AwsStore, StoreSettings};
use s3mount::s3::{ObjectStore, PutOptions};

use crate::common;
use crate::common::http::{self, Response};

/// A server that records each request's head and answers 200 (an empty listing to GETs).
fn recorder() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let url = http::serve(move |req| {
        log.lock().unwrap().push(req.head.clone());
        let body = if req.line().starts_with("get") {
            "<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"
        } else {
            ""
        };
        Response {
            headers: "ETag: \"e\"\r\n".into(),
            ..Response::new("200 OK", body)
        }
    });
    (url, seen)
}

#[test]
fn request_and_upload_options_are_sent() {
    let (url, seen) = recorder();
    let s3 = common::S3::new(&url, "AKIDEXAMPLE", "secret", "b");
    let store = AwsStore::new(s3.client.clone(), "b").with_settings(StoreSettings {
        acl: Some("bucket-owner-full-control".into()),
        sse: Some("AES256".into()),
        sse_kms_key_id: None,
        storage_class: Some("STANDARD_IA".into()),
        expected_bucket_owner: Some("123456789012".into()),
        requester_pays: true,
    });
    common::rt().block_on(async {
        store.list("p/", true, None, Some(1)).await.unwrap();
        let opts = PutOptions::typed("text/plain");
        store
            .put("p/a.txt", Bytes::from_static(b"x"), &opts)
            .await
            .unwrap();
    });
    let seen = seen.lock().unwrap();
    let (list, put) = (&seen[0], &seen[1]);
    for req in [list, put] {
        assert!(
            req.contains("x-amz-expected-bucket-owner: 123456789012"),
            "{req}"
        );
        assert!(req.contains("x-amz-request-payer: requester"), "{req}");
    }
    assert!(
        put.contains("x-amz-acl: bucket-owner-full-control"),
        "{put}"
    );
    assert!(
        put.contains("x-amz-server-side-encryption: aes256"),
        "{put}"
    );
    assert!(put.contains("x-amz-storage-class: standard_ia"), "{put}");
    assert!(put.contains("content-type: text/plain"), "{put}");
    assert!(
        put.contains("x-amz-content-sha256: unsigned-payload"),
        "{put}"
    );
}
