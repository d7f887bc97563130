//! What metadata changes and renames keep: every header another client stored, its
//! metadata, storage class and encryption (issue 11, bug 3); and a directory renamed onto an
//! empty one (bug 2).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::s3::memory::MemoryStore;
use crate::s3::{ObjectHeaders, ObjectStore, PutOptions, UserMeta};

fn who() -> Caller {
    Caller {
        pid: 1,
        uid: 1000,
        gid: 1000,
    }
}

/// Every header a client may store, a non-default class and a KMS key.
fn foreign_headers() -> ObjectHeaders {
    ObjectHeaders {
        content_type: Some("text/x-custom".into()),
        content_encoding: Some("gzip".into()),
        content_disposition: Some("attachment; filename=\"r.txt\"".into()),
        content_language: Some("fr".into()),
        cache_control: Some("no-cache".into()),
        expires: Some("Wed, 21 Oct 2037 07:28:00 GMT".into()),
        storage_class: Some("STANDARD_IA".into()),
        server_side_encryption: Some("aws:kms".into()),
        sse_kms_key_id: Some("arn:aws:kms:eu-west-1:111122223333:key/k1".into()),
        bucket_key_enabled: Some(true),
    }
}

fn mount(keys: &[&str]) -> (Arc<MemoryStore>, Fs) {
    let store = Arc::new(MemoryStore::new("b", 3));
    let opts = PutOptions {
        headers: foreign_headers(),
        meta: UserMeta::from([("foreign".to_owned(), "keepme".to_owned())]),
        create_only: false,
    };
    for k in keys {
        store.insert_with(k, "body", &opts);
    }
    let fs = Fs::new(store.clone(), "p/", FsConfig::default());
    (store, fs)
}

/// Headers and metadata of `key`, asserting every foreign header and the foreign
/// metadata entry are there.
async fn kept(store: &MemoryStore, key: &str) -> UserMeta {
    let head = store.head(key).await.unwrap();
    assert_eq!(head.headers, Some(foreign_headers()), "{key}: headers kept");
    let meta = head.meta.unwrap();
    assert_eq!(meta["foreign"], "keepme", "{key}: foreign metadata kept");
    assert_eq!(&store.get(key).unwrap()[..], b"body", "{key}: body kept");
    meta
}

async fn set(fs: &Fs, ino: Ino, change: SetAttr) {
    fs.setattr(ino, change, None).await.unwrap();
}

#[tokio::test]
async fn chmod_chown_touch_and_xattrs_keep_every_header_and_foreign_metadata() {
    let (store, fs) = mount(&["p/f"]);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    let mode = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    set(&fs, f.ino, mode).await;
    assert_eq!(kept(&store, "p/f").await["mode"], 0o100600.to_string());
    let owner = SetAttr {
        uid: Some(7),
        gid: Some(8),
        ..SetAttr::default()
    };
    set(&fs, f.ino, owner).await;
    let meta = kept(&store, "p/f").await;
    assert_eq!((meta["uid"].as_str(), meta["gid"].as_str()), ("7", "8"));
    assert_eq!(meta["mode"], 0o100600.to_string(), "earlier change kept");
    let t = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let touch = SetAttr {
        mtime: Some(t),
        ..SetAttr::default()
    };
    set(&fs, f.ino, touch).await;
    assert_eq!(kept(&store, "p/f").await["mtime"], "1600000000");
    fs.setxattr(f.ino, "user.note", b"v", false, false)
        .await
        .unwrap();
    assert!(kept(&store, "p/f").await.contains_key("xattr"));
    fs.removexattr(f.ino, "user.note").await.unwrap();
    assert!(!kept(&store, "p/f").await.contains_key("xattr"));
}

#[tokio::test]
async fn a_change_starts_from_what_another_client_stored_since() {
    let (store, fs) = mount(&["p/f"]);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    // Another client replaces the object after our lookup (within the metadata TTL).
    let mut other = PutOptions {
        headers: foreign_headers(),
        meta: UserMeta::from([("other".to_owned(), "new".to_owned())]),
        create_only: false,
    };
    other.headers.content_language = Some("it".into());
    store.insert_with("p/f", "body", &other);
    let mode = SetAttr {
        mode: Some(0o640),
        ..SetAttr::default()
    };
    set(&fs, f.ino, mode).await;
    let head = store.head("p/f").await.unwrap();
    assert_eq!(head.headers, Some(other.headers));
    let meta = head.meta.unwrap();
    assert_eq!(meta["other"], "new");
    assert_eq!(meta["mode"], 0o100640.to_string());
}

#[tokio::test]
async fn renames_keep_storage_class_encryption_and_headers() {
    let (store, fs) = mount(&["p/f", "p/d/x", "p/d/s/y"]);
    fs.rename(ROOT_INO, "f", ROOT_INO, "g", false)
        .await
        .unwrap();
    let meta = kept(&store, "p/g").await;
    assert!(!meta.contains_key("mode"), "a rename changes no metadata");
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", false)
        .await
        .unwrap();
    assert_eq!(store.keys(), vec!["p/e/s/y", "p/e/x", "p/g"]);
    kept(&store, "p/e/x").await;
    kept(&store, "p/e/s/y").await;
}

#[tokio::test]
async fn chmod_of_a_directory_keeps_its_marker_headers() {
    let (store, fs) = mount(&["p/d/"]);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap();
    let mode = SetAttr {
        mode: Some(0o700),
        ..SetAttr::default()
    };
    set(&fs, d.ino, mode).await;
    let head = store.head("p/d/").await.unwrap();
    assert_eq!(head.headers, Some(foreign_headers()));
    assert_eq!(head.meta.unwrap()["mode"], 0o40700.to_string());
}

#[tokio::test]
async fn empty_directory_renamed_onto_an_empty_one_replaces_it() {
    let (store, fs) = mount(&[]);
    fs.mkdir(ROOT_INO, "a", 0o700, who()).await.unwrap();
    fs.mkdir(ROOT_INO, "b", 0o755, who()).await.unwrap();
    fs.rename(ROOT_INO, "a", ROOT_INO, "b", false)
        .await
        .unwrap();
    assert_eq!(store.keys(), vec!["p/b/"]);
    let meta = store.meta("p/b/").unwrap();
    assert_eq!(meta["mode"], 0o40700.to_string(), "a's marker, now b's");
    assert!(matches!(
        fs.lookup(ROOT_INO, "a").await,
        Err(FsError::NotFound)
    ));
    let b = fs.lookup(ROOT_INO, "b").await.unwrap();
    assert_eq!((b.kind, b.perm), (Kind::Dir, 0o700));
}

#[tokio::test]
async fn implicit_directory_renamed_onto_an_empty_one_drops_the_stale_marker() {
    let (store, fs) = mount(&["p/a/x"]);
    fs.mkdir(ROOT_INO, "b", 0o755, who()).await.unwrap();
    fs.rename(ROOT_INO, "a", ROOT_INO, "b", false)
        .await
        .unwrap();
    assert_eq!(store.keys(), vec!["p/b/x"]);
}

#[tokio::test]
async fn renaming_a_name_onto_itself_changes_nothing() {
    let (store, fs) = mount(&["p/f"]);
    fs.mkdir(ROOT_INO, "d", 0o755, who()).await.unwrap();
    let before = store.keys();
    let copies = store.count("CopyObject");
    for name in ["d", "f"] {
        fs.rename(ROOT_INO, name, ROOT_INO, name, false)
            .await
            .unwrap();
    }
    assert_eq!(store.keys(), before);
    assert_eq!(store.count("CopyObject"), copies);
    assert_eq!(store.count("DeleteObject"), 0);
    fs.lookup(ROOT_INO, "d").await.unwrap();
    kept(&store, "p/f").await;
}
