//! What other clients do is visible at once (issue 12, §4): a name another client creates
//! is found by the very next lookup, whatever this mount made, listed, deleted or found
//! absent before; an expected absence costs one ListObjectsV2. With `--negative-cache` the
//! old trade-off: no request, and another client's name is found after the TTL.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::s3::memory::MemoryStore;

const LONG: Duration = Duration::from_secs(60);

fn who() -> Caller {
    Caller {
        pid: 1,
        uid: 1000,
        gid: 1000,
    }
}

fn fs(store: &Arc<MemoryStore>, ttl: Duration, negative_cache: bool) -> Fs {
    Fs::new(
        store.clone(),
        "",
        FsConfig {
            metadata_ttl: ttl,
            negative_cache,
            ..FsConfig::default()
        },
    )
}

/// (HeadObject, ListObjectsV2) requests sent so far.
fn sent(store: &MemoryStore) -> (u64, u64) {
    (store.count("HeadObject"), store.count("ListObjectsV2"))
}

async fn absent(fs: &Fs, dir: Ino, name: &str) -> bool {
    matches!(fs.lookup(dir, name).await, Err(FsError::NotFound))
}

async fn create_file(fs: &Fs, dir: Ino, name: &str) {
    let (_, fh) = fs.create(dir, name, 0o644, false, who()).await.unwrap();
    fs.write(fh, 0, b"mine").await.unwrap();
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn another_clients_names_in_a_directory_made_here_are_found_at_once() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    let fs = fs(&store, LONG, false);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, who()).await.unwrap();
    // What `cp -r` pays per new name: one listing, no HEAD.
    let before = sent(&store);
    for i in 0..10 {
        let name = format!("f{i}");
        assert!(absent(&fs, d.ino, &name).await);
        create_file(&fs, d.ino, &name).await;
    }
    assert_eq!(sent(&store), (before.0, before.1 + 10));

    store.insert("d/theirs", "12345");
    assert_eq!(fs.lookup(d.ino, "theirs").await.unwrap().size, 5);
    // A directory that exists only as keys below it (no marker).
    store.insert("d/sub/x", "1");
    let sub = fs.lookup(d.ino, "sub").await.unwrap();
    assert_eq!(sub.kind, Kind::Dir);
    assert_eq!(fs.lookup(sub.ino, "x").await.unwrap().size, 1);
    // A directory marker alone.
    store.insert("d/empty/", "");
    assert_eq!(fs.lookup(d.ino, "empty").await.unwrap().kind, Kind::Dir);
}

#[tokio::test]
async fn another_clients_names_in_a_directory_listed_here_are_found_at_once() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    store.insert("d/a", "1");
    let fs = fs(&store, LONG, false);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap();
    let fh = fs.opendir(d.ino).unwrap();
    assert_eq!(super::tests::read_all(&fs, fh).await.len(), 1);
    fs.releasedir(fh);
    store.insert("d/b", "22");
    assert_eq!(fs.lookup(d.ino, "b").await.unwrap().size, 2);
    store.insert("d/c/deep/x", "1");
    assert_eq!(fs.lookup(d.ino, "c").await.unwrap().kind, Kind::Dir);
}

#[tokio::test]
async fn a_name_deleted_or_found_absent_here_and_created_elsewhere_is_found_at_once() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    store.insert("f", "old");
    let fs = fs(&store, LONG, false);
    fs.lookup(ROOT_INO, "f").await.unwrap();
    fs.unlink(ROOT_INO, "f").await.unwrap();
    assert!(absent(&fs, ROOT_INO, "f").await);
    store.insert("f", "again");
    assert_eq!(fs.lookup(ROOT_INO, "f").await.unwrap().size, 5);

    assert!(absent(&fs, ROOT_INO, "g").await);
    let before = sent(&store);
    assert!(absent(&fs, ROOT_INO, "g").await);
    assert_eq!(
        sent(&store),
        (before.0, before.1 + 1),
        "found absent before: one listing"
    );
    store.insert("g/x", "1");
    assert_eq!(fs.lookup(ROOT_INO, "g").await.unwrap().kind, Kind::Dir);
}

#[tokio::test]
async fn the_one_listing_is_not_fooled_by_siblings_that_extend_the_name() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    let fs = fs(&store, LONG, false);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, who()).await.unwrap();
    // More siblings than the listing asks for sort between `n` and `n/`.
    for s in ["n ", "n!", "n-1", "n-2", "n.a", "n.b", "n.c"] {
        store.insert(&format!("d/{s}"), "s");
    }
    assert!(absent(&fs, d.ino, "n").await);
    store.insert("d/n/x", "1");
    assert_eq!(fs.lookup(d.ino, "n").await.unwrap().kind, Kind::Dir);
    assert!(absent(&fs, d.ino, "m").await);
    store.insert("d/m", "22");
    assert_eq!(fs.lookup(d.ino, "m").await.unwrap().size, 2);
    // A sibling that sorts after `n/` does not count as the name.
    assert!(absent(&fs, d.ino, "o").await);
    store.insert("d/o0", "x");
    assert!(absent(&fs, d.ino, "o").await);
}

#[tokio::test]
async fn with_the_negative_cache_another_clients_name_is_found_after_the_ttl() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    let ttl = Duration::from_millis(200);
    let fs = fs(&store, ttl, true);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, who()).await.unwrap();
    let before = sent(&store);
    assert!(absent(&fs, d.ino, "x").await);
    create_file(&fs, d.ino, "x").await;
    assert_eq!(sent(&store), before, "no lookup request for a new name");
    store.insert("d/theirs", "1");
    store.insert("d/sub/y", "1");
    assert!(absent(&fs, d.ino, "theirs").await, "hidden within the TTL");
    assert!(absent(&fs, d.ino, "sub").await);
    // Asking again does not make the answer younger: it is as old as the mkdir.
    tokio::time::sleep(ttl / 2).await;
    assert!(absent(&fs, d.ino, "theirs").await);
    tokio::time::sleep(ttl / 2 + Duration::from_millis(50)).await;
    assert_eq!(fs.lookup(d.ino, "theirs").await.unwrap().size, 1);
    assert_eq!(fs.lookup(d.ino, "sub").await.unwrap().kind, Kind::Dir);
}

#[tokio::test]
async fn another_clients_deletion_is_seen_after_the_ttl() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    store.insert("f", "abc");
    let ttl = Duration::from_millis(200);
    let fs = fs(&store, ttl, false);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    store.delete("f").await.unwrap();
    assert_eq!(
        fs.getattr(f.ino).await.unwrap().size,
        3,
        "trusted for the TTL"
    );
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert!(matches!(fs.getattr(f.ino).await, Err(FsError::NotFound)));
    assert!(absent(&fs, ROOT_INO, "f").await);
}
