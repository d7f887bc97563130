//! Times and directories (issue 12, §3): a directory's own metadata read from its marker
//! on every path.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::s3::UserMeta;
use crate::s3::memory::MemoryStore;

fn mount(store: &Arc<MemoryStore>) -> Fs {
    Fs::new(store.clone(), "p/", FsConfig::default())
}

#[tokio::test]
async fn a_listed_directory_reads_its_marker_when_looked_at() {
    let store = Arc::new(MemoryStore::new("b", 100));
    let t = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    let meta = UserMeta::from([
        ("mode".to_owned(), (posix::S_IFDIR | 0o700).to_string()),
        ("uid".to_owned(), "7".to_owned()),
        ("gid".to_owned(), "8".to_owned()),
        ("mtime".to_owned(), "1500000000".to_owned()),
        ("atime".to_owned(), "1500000001".to_owned()),
        ("ctime".to_owned(), "1500000002".to_owned()),
    ]);
    store.insert_with_meta("p/d/", "", meta.clone());
    store.insert("p/d/x", "1");
    store.insert("p/f", "1");
    let fs = mount(&store);
    let fh = fs.opendir(ROOT_INO).unwrap();
    let listed = fs.readdir(fh, 0).await.unwrap();
    let heads = store.count("HeadObject");
    let attrs: Vec<Attr> = listed.iter().map(|e| fs.entry(ROOT_INO, e, 1)).collect();
    assert_eq!(store.count("HeadObject"), heads, "a listing costs no HEAD");
    let (d, f) = (&attrs[0], &attrs[1]);
    assert_eq!(
        fs.entry_ttl(d.ino),
        Duration::ZERO,
        "not cached by the kernel"
    );
    assert_eq!(fs.entry_ttl(f.ino), fs.ttl());
    let a = fs.getattr(d.ino).await.unwrap();
    assert_eq!((a.perm, a.uid, a.gid), (0o700, 7, 8));
    assert_eq!((a.mtime, a.atime), (t, t + Duration::from_secs(1)));
    assert_eq!(a.ctime, t + Duration::from_secs(2));
    assert_eq!(store.count("HeadObject"), heads + 1);
    assert_eq!(fs.entry_ttl(d.ino), fs.ttl());
    // Looked up by name after a listing (plain readdir): read the same way, once.
    let fs = mount(&store);
    let fh = fs.opendir(ROOT_INO).unwrap();
    for e in fs.readdir(fh, 0).await.unwrap().iter() {
        fs.entry(ROOT_INO, e, 0);
    }
    let heads = store.count("HeadObject");
    let a = fs.lookup(ROOT_INO, "d").await.unwrap();
    assert_eq!((a.perm, a.uid, a.mtime), (0o700, 7, t));
    fs.lookup(ROOT_INO, "d").await.unwrap();
    fs.getattr(a.ino).await.unwrap();
    assert_eq!(store.count("HeadObject"), heads + 1);
}

#[tokio::test]
async fn the_root_of_a_prefix_mount_is_its_marker() {
    let store = Arc::new(MemoryStore::new("b", 100));
    let meta = UserMeta::from([
        ("mode".to_owned(), (posix::S_IFDIR | 0o711).to_string()),
        ("uid".to_owned(), "5".to_owned()),
        ("mtime".to_owned(), "1500000000".to_owned()),
    ]);
    store.insert_with_meta("p/", "", meta);
    let fs = mount(&store);
    let a = fs.getattr(ROOT_INO).await.unwrap();
    assert_eq!((a.perm, a.uid), (0o711, 5));
    assert_eq!(a.mtime, UNIX_EPOCH + Duration::from_secs(1_500_000_000));
}

#[tokio::test]
async fn a_directory_marker_is_read_again_after_the_ttl() {
    let store = Arc::new(MemoryStore::new("b", 100));
    let mode = |m: u32| UserMeta::from([("mode".to_owned(), (posix::S_IFDIR | m).to_string())]);
    store.insert_with_meta("d/", "", mode(0o700));
    let fs = Fs::new(
        store.clone(),
        "",
        FsConfig {
            metadata_ttl: Duration::from_millis(50),
            ..FsConfig::default()
        },
    );
    let d = fs.lookup(ROOT_INO, "d").await.unwrap();
    assert_eq!(d.perm, 0o700);
    store.insert_with_meta("d/", "", mode(0o750));
    assert_eq!(
        fs.getattr(d.ino).await.unwrap().perm,
        0o700,
        "within the TTL"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(fs.getattr(d.ino).await.unwrap().perm, 0o750);
}