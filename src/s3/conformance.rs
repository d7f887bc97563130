//! What every [`ObjectStore`] must do, as the filesystem core relies on it: one suite run
//! against the in-memory store (a unit test) and against a real S3 server (the end-to-end
//! tests, on Garage), so that the in-memory store the core's tests use is proven to behave
//! like S3 where it matters.
//!
//! Each check panics with a message naming the behaviour that differs. Everything is
//! written under `prefix` (which should be unique to the run) and deleted again.

use bytes::Bytes;
use futures::TryStreamExt;

use super::{ErrorKind, ListPage, ObjectHeaders, ObjectInfo, ObjectStore, PutOptions, UserMeta};

/// Smallest part S3 accepts for all but the last part of a multipart upload.
const PART: usize = 5 << 20;

fn body(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn opts(content_type: &str, pairs: &[(&str, &str)]) -> PutOptions {
    PutOptions {
        meta: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<UserMeta>(),
        ..PutOptions::typed(content_type)
    }
}

/// Run every check under `prefix` (empty or ending in `/`).
pub async fn run(store: &dyn ObjectStore, prefix: &str) {
    objects(store, prefix).await;
    listing(store, prefix).await;
    multipart(store, prefix).await;
    copies(store, prefix).await;
    copies_keep_headers(store, prefix).await;
    deletes_and_tags(store, prefix).await;
}

/// PutObject, HeadObject, ranged GetObject with and without If-Match, missing keys.
async fn objects(store: &dyn ObjectStore, p: &str) {
    let key = format!("{p}obj/a.txt");
    let data = body(100_000, 1);
    let put = store
        .put(
            &key,
            data.clone(),
            &opts("text/x-test", &[("mode", "33188")]),
        )
        .await
        .expect("PutObject");
    let etag = put.etag.expect("PutObject returns an ETag");
    let head = store.head(&key).await.expect("HeadObject");
    assert_eq!(head.size, data.len() as u64, "HeadObject size");
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()), "HeadObject ETag");
    let meta = head.meta.expect("HeadObject carries user metadata");
    assert_eq!(
        meta.get("mode").map(String::as_str),
        Some("33188"),
        "metadata"
    );
    let details = store.details(&key).await.expect("details");
    assert_eq!(details.content_type.as_deref(), Some("text/x-test"), "type");
    let got = store
        .get_range(&key, 10..5000, Some(&etag))
        .await
        .expect("ranged GetObject with the right If-Match");
    assert_eq!(got, data.slice(10..5000), "ranged GET bytes");
    let all = store.get_range(&key, 0..data.len() as u64, None).await;
    assert_eq!(all.expect("whole-object GET"), data, "whole GET bytes");
    let stale = store.get_range(&key, 0..10, Some("\"not-the-etag\"")).await;
    assert_eq!(
        stale.expect_err("If-Match of another ETag").kind,
        ErrorKind::PreconditionFailed,
        "If-Match mismatch"
    );
    let missing = format!("{p}obj/missing");
    let e = store
        .head(&missing)
        .await
        .expect_err("HEAD of a missing key");
    assert_eq!(e.kind, ErrorKind::NotFound, "HEAD missing");
    let e = store.get_range(&missing, 0..1, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "GET missing");
    let replaced = store.put(&key, body(10, 2), &PutOptions::default()).await;
    let replaced = replaced.expect("PutObject over an existing key");
    assert_ne!(replaced.etag, Some(etag), "a new body gets a new ETag");
    store.delete(&key).await.expect("DeleteObject");
}

/// ListObjectsV2 with and without delimiter, paginated, and as a stream.
async fn listing(store: &dyn ObjectStore, p: &str) {
    let dir = format!("{p}list/");
    let keys = ["a", "b/1", "b/2", "c/d/e", "f", "g/"];
    for k in keys {
        let key = format!("{dir}{k}");
        store
            .put(&key, body(3, 0), &PutOptions::default())
            .await
            .unwrap();
    }
    let pages: Vec<ListPage> = store.list_all(&dir, true).try_collect().await.unwrap();
    let objects: Vec<&ObjectInfo> = pages.iter().flat_map(|p| &p.objects).collect();
    let names: Vec<&str> = objects.iter().map(|o| &o.key[dir.len()..]).collect();
    assert_eq!(
        names,
        ["a", "f"],
        "objects directly under the prefix, sorted"
    );
    let prefixes: Vec<&str> = pages
        .iter()
        .flat_map(|p| &p.prefixes)
        .map(|s| &s[dir.len()..])
        .collect();
    assert_eq!(prefixes, ["b/", "c/", "g/"], "common prefixes");
    assert!(objects.iter().all(|o| o.etag.is_some() && o.size == 3));
    // Pages of one entry each, followed by continuation tokens.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store.list(&dir, true, token, Some(1)).await.unwrap();
        assert!(page.objects.len() + page.prefixes.len() <= 1, "max-keys 1");
        seen.extend(page.objects.into_iter().map(|o| o.key));
        seen.extend(page.prefixes);
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen.len(), 5, "every entry once across pages: {seen:?}");
    let flat: Vec<String> = store
        .list_all(&dir, false)
        .map_ok(|page| page.objects.into_iter().map(|o| o.key).collect::<Vec<_>>())
        .try_concat()
        .await
        .expect("listing stream");
    let want: Vec<String> = keys.iter().map(|k| format!("{dir}{k}")).collect();
    assert_eq!(flat, want, "every key below the prefix, undelimited");
    let none = store
        .list(&format!("{p}list-none/"), true, None, None)
        .await;
    let none = none.expect("listing an empty prefix");
    assert!(none.objects.is_empty() && none.prefixes.is_empty() && none.next.is_none());
    for k in keys {
        store.delete(&format!("{dir}{k}")).await.unwrap();
    }
}

/// A multipart upload of uploaded and copied parts; an aborted one leaves nothing.
async fn multipart(store: &dyn ObjectStore, p: &str) {
    let src = format!("{p}mp/src");
    let src_data = body(PART + 100, 3);
    let src_etag = store
        .put(&src, src_data.clone(), &PutOptions::default())
        .await;
    let src_etag = src_etag.unwrap().etag;
    let key = format!("{p}mp/dst");
    let upload = store
        .start_multipart(&key, &opts("text/x-mp", &[("k", "v")]))
        .await
        .expect("CreateMultipartUpload");
    assert_eq!(upload.key(), key);
    let first = body(PART, 4);
    let p1 = upload.put_part(1, first.clone()).await.expect("UploadPart");
    let p2 = upload
        .copy_part(2, &src, 0..PART as u64, src_etag.as_deref())
        .await
        .expect("UploadPartCopy");
    let p3 = upload
        .put_part(3, Bytes::from_static(b"tail"))
        .await
        .unwrap();
    let stale = upload.copy_part(4, &src, 0..10, Some("\"other\"")).await;
    assert_eq!(
        stale.expect_err("UploadPartCopy with a stale ETag").kind,
        ErrorKind::PreconditionFailed
    );
    let done = upload.complete(vec![p1, p2, p3]).await.expect("Complete");
    assert!(
        done.etag.is_some(),
        "CompleteMultipartUpload returns an ETag"
    );
    let mut want = first.to_vec();
    want.extend_from_slice(&src_data[..PART]);
    want.extend_from_slice(b"tail");
    let got = store.get_range(&key, 0..want.len() as u64, None).await;
    assert!(
        got.unwrap() == want,
        "multipart object holds the parts in order"
    );
    let head = store.head(&key).await.unwrap();
    assert_eq!(head.meta.unwrap().get("k").map(String::as_str), Some("v"));
    let aborted = format!("{p}mp/aborted");
    let upload = store
        .start_multipart(&aborted, &PutOptions::default())
        .await;
    let upload = upload.unwrap();
    upload.put_part(1, body(PART, 5)).await.unwrap();
    upload.abort().await.expect("AbortMultipartUpload");
    let e = store.head(&aborted).await.expect_err("aborted upload");
    assert_eq!(
        e.kind,
        ErrorKind::NotFound,
        "an aborted upload leaves no object"
    );
    for k in [&src, &key] {
        store.delete(k).await.unwrap();
    }
}

/// CopyObject keeps or replaces metadata; `copy` of a small object is one CopyObject.
async fn copies(store: &dyn ObjectStore, p: &str) {
    let src = format!("{p}copy/src dir/é+x");
    let data = body(1000, 6);
    store
        .put(&src, data.clone(), &opts("text/x-src", &[("a", "1")]))
        .await
        .unwrap();
    let kept = format!("{p}copy/kept");
    let put = store
        .copy(&src, &kept, 1000, None)
        .await
        .expect("CopyObject");
    assert!(put.etag.is_some(), "CopyObject returns the new ETag");
    let head = store.head(&kept).await.unwrap();
    assert_eq!(head.meta.unwrap().get("a").map(String::as_str), Some("1"));
    let details = store.details(&kept).await.unwrap();
    assert_eq!(
        details.content_type.as_deref(),
        Some("text/x-src"),
        "type kept"
    );
    let got = store.get_range(&kept, 0..1000, None).await.unwrap();
    assert_eq!(got, data, "copied bytes");
    let replaced = format!("{p}copy/replaced");
    let new = opts("text/x-new", &[("b", "2")]);
    store.copy(&src, &replaced, 1000, Some(&new)).await.unwrap();
    let meta = store.head(&replaced).await.unwrap().meta.unwrap();
    assert_eq!(
        meta.get("b").map(String::as_str),
        Some("2"),
        "metadata replaced"
    );
    assert!(!meta.contains_key("a"), "old metadata gone when replaced");
    let e = store
        .copy(&format!("{p}copy/none"), &replaced, 1, None)
        .await;
    assert_eq!(
        e.expect_err("copy of a missing key").kind,
        ErrorKind::NotFound
    );
    for k in [&src, &kept, &replaced] {
        store.delete(k).await.unwrap();
    }
}

/// The content headers an upload states come back from HEAD, and survive both a copy that
/// keeps the metadata and one that replaces it with what HEAD said (as chmod does).
async fn copies_keep_headers(store: &dyn ObjectStore, p: &str) {
    let src = format!("{p}hdr/src");
    let mut put = opts("text/x-custom", &[("foreign", "keepme")]);
    put.headers = ObjectHeaders {
        content_encoding: Some("gzip".into()),
        content_disposition: Some("attachment; filename=\"x.txt\"".into()),
        content_language: Some("de-CH".into()),
        cache_control: Some("max-age=60".into()),
        expires: Some("Wed, 21 Oct 2037 07:28:00 GMT".into()),
        ..put.headers
    };
    store.put(&src, body(10, 8), &put).await.unwrap();
    let content = |h: Option<ObjectHeaders>| {
        let h = h.expect("HeadObject carries the headers");
        let storage_class = h.storage_class.clone();
        let content = ObjectHeaders {
            storage_class: None,
            server_side_encryption: None,
            sse_kms_key_id: None,
            bucket_key_enabled: None,
            ..h
        };
        (content, storage_class)
    };
    let head = store.head(&src).await.unwrap();
    let (got, class) = content(head.headers.clone());
    assert_eq!(got, put.headers, "the headers an upload states are stored");
    assert_eq!(class.as_deref(), Some("STANDARD"), "HEAD states the class");
    let kept = format!("{p}hdr/kept");
    store.copy(&src, &kept, 10, None).await.unwrap();
    let copy = store.head(&kept).await.unwrap();
    assert_eq!(content(copy.headers).0, put.headers, "kept by a copy");
    assert_eq!(copy.meta, head.meta, "metadata kept by a copy");
    let mut replace = PutOptions {
        headers: head.headers.clone().unwrap(),
        meta: head.meta.clone().unwrap(),
        create_only: false,
    };
    replace.meta.insert("mode".into(), "33152".into());
    store.copy(&src, &src, 10, Some(&replace)).await.unwrap();
    let after = store.head(&src).await.unwrap();
    assert_eq!(content(after.headers).0, put.headers, "kept by a self-copy");
    assert_eq!(after.meta, Some(replace.meta), "metadata replaced");
    for k in [&src, &kept] {
        store.delete(k).await.unwrap();
    }
}

/// DeleteObject and DeleteObjects of missing keys succeed; tags round-trip.
async fn deletes_and_tags(store: &dyn ObjectStore, p: &str) {
    let key = format!("{p}del/x");
    store
        .delete(&key)
        .await
        .expect("DeleteObject of a missing key");
    store
        .put(&key, body(1, 7), &PutOptions::default())
        .await
        .unwrap();
    let tags = vec![("team".to_owned(), "a b".to_owned())];
    match store.put_tags(&key, &tags).await {
        // Some servers (Garage) have no tagging; what they must not do is pretend.
        Err(e) if e.code.as_deref() == Some("NotImplemented") => {}
        r => {
            r.expect("PutObjectTagging");
            assert_eq!(store.get_tags(&key).await.expect("GetObjectTagging"), tags);
        }
    }
    let keys = vec![key.clone(), format!("{p}del/never-existed")];
    let left = store.delete_many(&keys).await.expect("DeleteObjects");
    assert!(left.is_empty(), "missing keys count as deleted: {left:?}");
    let e = store
        .head(&key)
        .await
        .expect_err("deleted by DeleteObjects");
    assert_eq!(e.kind, ErrorKind::NotFound);
}
