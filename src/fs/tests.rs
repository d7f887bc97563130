//! Core tests against the in-memory store: the FUSE-free behaviour of every operation.

use std::sync::Arc;

use super::*;
use crate::s3::memory::MemoryStore;

fn fs_with(keys: &[(&str, &str)]) -> (Arc<MemoryStore>, Fs) {
    let store = Arc::new(MemoryStore::new("b", 3));
    for (k, v) in keys {
        store.insert(k, v.to_string());
    }
    let fs = Fs::new(store.clone(), "p/", FsConfig::default());
    (store, fs)
}

async fn names(fs: &Fs, ino: Ino) -> Vec<String> {
    let fh = fs.opendir(ino).unwrap();
    let e = fs.readdir(fh, 0).await.unwrap();
    fs.releasedir(fh);
    e.iter().map(|e| e.name.clone()).collect()
}

#[tokio::test]
async fn lookup_prefers_directory_and_hides_outside_keys() {
    let (_, fs) = fs_with(&[
        ("p/a", "file"),
        ("p/a/x", "1"),
        ("p/f", "abc"),
        ("q/secret", "no"),
    ]);
    let a = fs.lookup(ROOT_INO, "a").await.unwrap();
    assert_eq!(a.kind, Kind::Dir);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    assert_eq!((f.kind, f.size), (Kind::File, 3));
    assert!(matches!(
        fs.lookup(ROOT_INO, "secret").await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        fs.lookup(ROOT_INO, "q").await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        fs.lookup(ROOT_INO, &"n".repeat(256)).await,
        Err(FsError::NameTooLong)
    ));
}

#[tokio::test]
async fn readdir_pages_and_merges() {
    let mut keys: Vec<(String, String)> = (0..10)
        .map(|i| (format!("p/d/f{i:02}"), "x".into()))
        .collect();
    keys.push(("p/d/sub/deep".into(), "y".into()));
    let refs: Vec<(&str, &str)> = keys.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (_, fs) = fs_with(&refs);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap();
    let n = names(&fs, d.ino).await;
    assert_eq!(n.len(), 11);
    assert_eq!(n[0], "f00");
    assert_eq!(n[10], "sub");
}

#[tokio::test]
async fn write_then_read_back() {
    let (store, fs) = fs_with(&[]);
    let (attr, fh) = fs.create(ROOT_INO, "new.txt", 42).await.unwrap();
    assert_eq!(attr.size, 0);
    // Visible in listings while being written.
    assert_eq!(names(&fs, ROOT_INO).await, vec!["new.txt"]);
    // A close before any write (a shell redirection's dup2 + close) does not commit.
    fs.flush(fh, 42).await.unwrap();
    assert!(store.get("p/new.txt").is_none());
    fs.write(fh, 0, b"hello").await.unwrap();
    assert_eq!(fs.getattr(attr.ino).await.unwrap().size, 5);
    // A close by another process does not commit.
    fs.flush(fh, 7).await.unwrap();
    assert!(store.get("p/new.txt").is_none());
    fs.flush(fh, 42).await.unwrap();
    assert_eq!(&store.get("p/new.txt").unwrap()[..], b"hello");
    fs.release(fh).await.unwrap();
    let rfh = fs.open(attr.ino, OpenMode::default(), 1).await.unwrap();
    assert_eq!(&fs.read(rfh, 0, 100).await.unwrap()[..], b"hello");
    assert_eq!(&fs.read(rfh, 4, 100).await.unwrap()[..], b"o");
    assert!(fs.read(rfh, 5, 100).await.unwrap().is_empty());
    fs.release(rfh).await.unwrap();
}

#[tokio::test]
async fn overwrite_with_truncate_and_refuse_in_place_edit() {
    let (store, fs) = fs_with(&[("p/f", "old contents")]);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    let e = fs
        .open(
            f.ino,
            OpenMode {
                write: true,
                truncate: false,
            },
            1,
        )
        .await;
    assert!(matches!(e, Err(FsError::NotSupported(_))));
    let fh = fs
        .open(
            f.ino,
            OpenMode {
                write: true,
                truncate: true,
            },
            1,
        )
        .await
        .unwrap();
    fs.write(fh, 0, b"new").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(&store.get("p/f").unwrap()[..], b"new");
}

#[tokio::test]
async fn mkdir_rmdir_unlink() {
    let (store, fs) = fs_with(&[("p/full/x", "1")]);
    let d = fs.mkdir(ROOT_INO, "newdir").await.unwrap();
    assert_eq!(d.kind, Kind::Dir);
    assert!(store.get("p/newdir/").is_some());
    assert!(matches!(
        fs.rmdir(ROOT_INO, "full").await,
        Err(FsError::NotEmpty)
    ));
    fs.rmdir(ROOT_INO, "newdir").await.unwrap();
    assert!(store.get("p/newdir/").is_none());
    assert!(matches!(
        fs.unlink(ROOT_INO, "full").await,
        Err(FsError::IsDir)
    ));
    let full = fs.lookup(ROOT_INO, "full").await.unwrap();
    fs.unlink(full.ino, "x").await.unwrap();
    assert!(store.get("p/full/x").is_none());
    assert!(matches!(
        fs.unlink(ROOT_INO, "nothing").await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn read_only_refuses_every_change() {
    let store = Arc::new(MemoryStore::new("b", 100));
    store.insert("f", "x");
    let fs = Fs::new(
        store,
        "",
        FsConfig {
            read_only: true,
            ..FsConfig::default()
        },
    );
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    assert!(matches!(
        fs.create(ROOT_INO, "n", 1).await,
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        fs.mkdir(ROOT_INO, "d").await,
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        fs.unlink(ROOT_INO, "f").await,
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        fs.open(
            f.ino,
            OpenMode {
                write: true,
                truncate: true
            },
            1
        )
        .await,
        Err(FsError::ReadOnly)
    ));
}

#[tokio::test]
async fn unlink_while_writing_discards_the_upload() {
    let (store, fs) = fs_with(&[]);
    let (_, fh) = fs.create(ROOT_INO, "tmp", 1).await.unwrap();
    fs.write(fh, 0, b"data").await.unwrap();
    fs.unlink(ROOT_INO, "tmp").await.unwrap();
    fs.release(fh).await.unwrap();
    assert!(store.keys().is_empty());
}
