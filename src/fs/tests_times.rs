//! Times changed as a side effect (issue 12, §3): a directory's mtime and ctime when its
//! entries change (shown at once, written to its marker coalesced), a directory's own
//! metadata read from its marker on every path, and ctime on rename.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::s3::UserMeta;
use crate::s3::faulty::{Faults, Faulty};
use crate::s3::memory::MemoryStore;

fn who() -> Caller {
    Caller {
        pid: 1,
        uid: 1000,
        gid: 1000,
    }
}

fn mount(store: &Arc<MemoryStore>) -> Fs {
    Fs::new(store.clone(), "p/", FsConfig::default())
}

fn old() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000_000)
}

/// Set the times of `ino` to [`old`], so that a change shows.
async fn age(fs: &Fs, ino: Ino) {
    let past = SetAttr {
        mtime: Some(old()),
        atime: Some(old()),
        ..SetAttr::default()
    };
    let a = fs.setattr(ino, past, None).await.unwrap();
    assert_eq!(a.mtime, old());
}

/// Directory `ino` was just changed: mtime and ctime are newer than before, equal, and
/// not in the future.
async fn changed(fs: &Fs, ino: Ino, before: SystemTime, what: &str) {
    let a = fs.getattr(ino).await.unwrap();
    assert!(a.mtime > before, "{what}: mtime {:?}", a.mtime);
    assert_eq!(a.ctime, a.mtime, "{what}: ctime moves with mtime");
    assert!(a.mtime <= SystemTime::now(), "{what}");
    assert_eq!(a.atime, old(), "{what}: atime untouched");
}

async fn create(fs: &Fs, dir: Ino, name: &str) -> Ino {
    let (a, fh) = fs.create(dir, name, 0o644, false, who()).await.unwrap();
    fs.release(fh).await.unwrap();
    a.ino
}

fn meta_time(store: &MemoryStore, key: &str, name: &str) -> Option<SystemTime> {
    store
        .meta(key)
        .and_then(|m| m.get(name).and_then(|v| posix::parse_time(v)))
}

#[tokio::test]
async fn every_entry_change_moves_the_directory_times_at_once() {
    let store = Arc::new(MemoryStore::new("b", 100));
    store.insert("p/elsewhere/moved-in", "m");
    let fs = mount(&store);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, who()).await.unwrap().ino;
    let other = fs.lookup(ROOT_INO, "elsewhere").await.unwrap().ino;
    age(&fs, d).await;
    age(&fs, other).await;
    create(&fs, d, "f").await;
    changed(&fs, d, old(), "create").await;

    // Each change after the directory was set back in time again.
    let fs = &fs;
    macro_rules! step {
        ($what:expr, $op:expr) => {
            age(fs, d).await;
            $op;
            changed(fs, d, old(), $what).await;
        };
    }
    step!("mkdir", fs.mkdir(d, "sub", 0o755, who()).await.unwrap());
    step!("rmdir", fs.rmdir(d, "sub").await.unwrap());
    step!(
        "mknod",
        fs.mknod(d, "fifo", posix::S_IFIFO | 0o644, 0, who())
            .await
            .unwrap()
    );
    step!("symlink", fs.symlink(d, "l", "f", who()).await.unwrap());
    step!("unlink", fs.unlink(d, "l").await.unwrap());
    step!(
        "rename within",
        fs.rename(d, "f", d, "g", false).await.unwrap()
    );
    let (_, fh) = fs.create(d, "w", 0o644, false, who()).await.unwrap();
    fs.write(fh, 0, b"not yet uploaded").await.unwrap();
    step!(
        "unlink of a file being written",
        fs.unlink(d, "w").await.unwrap()
    );
    fs.release(fh).await.unwrap();

    // Renames between directories change both.
    age(fs, d).await;
    fs.lookup(other, "moved-in").await.unwrap();
    fs.rename(other, "moved-in", d, "moved-in", false)
        .await
        .unwrap();
    changed(fs, d, old(), "rename in: target").await;
    changed(fs, other, old(), "rename in: source").await;
    age(fs, d).await;
    age(fs, other).await;
    fs.rename(d, "g", other, "g", false).await.unwrap();
    changed(fs, d, old(), "rename out: source").await;
    changed(fs, other, old(), "rename out: target").await;
}

#[tokio::test]
async fn failed_changes_leave_the_directory_times_alone() {
    let store = Arc::new(MemoryStore::new("b", 100));
    store.insert("p/d/full/x", "1");
    store.insert("p/d/file", "1");
    let fs = mount(&store);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    fs.lookup(d, "full").await.unwrap();
    age(&fs, d).await;
    assert!(matches!(fs.rmdir(d, "full").await, Err(FsError::NotEmpty)));
    assert!(matches!(
        fs.unlink(d, "nothing").await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(fs.unlink(d, "full").await, Err(FsError::IsDir)));
    assert!(matches!(
        fs.mkdir(d, "full", 0o755, who()).await,
        Err(FsError::Exists)
    ));
    assert!(matches!(
        fs.rename(d, "file", d, "full", false).await,
        Err(FsError::IsDir)
    ));
    assert!(matches!(
        fs.rename(d, "missing", d, "x", false).await,
        Err(FsError::NotFound)
    ));
    assert_eq!(fs.getattr(d).await.unwrap().mtime, old());
    fs.persist_dir_times().await;
    assert_eq!(meta_time(&store, "p/d/", "mtime"), Some(old()));
}

#[tokio::test]
async fn a_thousand_creates_cost_one_marker_write() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    let fs = mount(&store);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, who()).await.unwrap().ino;
    let made = meta_time(&store, "p/d/", "mtime").unwrap();
    for i in 0..1000 {
        create(&fs, d, &format!("f{i}")).await;
    }
    assert_eq!(store.count("CopyObject"), 0, "no marker write per entry");
    let shown = fs.getattr(d).await.unwrap();
    assert!(shown.mtime > made);
    fs.persist_dir_times().await;
    assert_eq!(store.count("CopyObject"), 1);
    assert_eq!(meta_time(&store, "p/d/", "mtime"), Some(shown.mtime));
    assert_eq!(meta_time(&store, "p/d/", "ctime"), Some(shown.ctime));
    let meta = store.meta("p/d/").unwrap();
    assert_eq!(
        meta["mode"],
        (posix::S_IFDIR | 0o755).to_string(),
        "rest kept"
    );
    // Nothing changed since: the next round writes nothing.
    fs.persist_dir_times().await;
    assert_eq!(store.count("CopyObject"), 1);
    // A new mount reads the times back from the marker.
    let fs2 = mount(&store);
    let d2 = fs2.lookup(ROOT_INO, "d").await.unwrap();
    assert_eq!((d2.mtime, d2.ctime), (shown.mtime, shown.ctime));
}

#[tokio::test]
async fn an_implicit_directory_shows_its_new_times_but_gets_no_marker() {
    let store = Arc::new(MemoryStore::new("b", 100));
    store.insert("p/i/x", "1");
    let fs = mount(&store);
    let i = fs.lookup(ROOT_INO, "i").await.unwrap();
    create(&fs, i.ino, "new").await;
    let shown = fs.getattr(i.ino).await.unwrap();
    assert!(shown.mtime > i.mtime);
    fs.persist_dir_times().await;
    assert!(store.get("p/i/").is_none(), "no marker made for times");
    assert_eq!(store.count("CopyObject") + store.count("PutObject"), 1);
    assert_eq!(fs.getattr(i.ino).await.unwrap().mtime, shown.mtime);
}

#[tokio::test]
async fn chmod_and_touch_of_the_directory_take_the_pending_times_along() {
    let store = Arc::new(MemoryStore::new("b", 100));
    let fs = mount(&store);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, who()).await.unwrap().ino;
    let made = fs.getattr(d).await.unwrap().mtime;
    create(&fs, d, "f").await;
    let shown = fs.getattr(d).await.unwrap().mtime;
    assert!(shown > made);
    let chmod = SetAttr {
        mode: Some(0o700),
        ..SetAttr::default()
    };
    fs.setattr(d, chmod, None).await.unwrap();
    assert_eq!(
        meta_time(&store, "p/d/", "mtime"),
        Some(shown),
        "in the chmod's copy"
    );
    let copies = store.count("CopyObject");
    fs.persist_dir_times().await;
    assert_eq!(store.count("CopyObject"), copies, "nothing left to write");

    // `tar -x` sets a directory's times after filling it: the explicit time wins.
    create(&fs, d, "g").await;
    age(&fs, d).await;
    fs.persist_dir_times().await;
    assert_eq!(fs.getattr(d).await.unwrap().mtime, old());
    assert_eq!(meta_time(&store, "p/d/", "mtime"), Some(old()));
    assert_eq!(
        store.meta("p/d/").unwrap()["mode"],
        (posix::S_IFDIR | 0o700).to_string()
    );
}

#[tokio::test]
async fn a_failed_marker_write_is_not_retried_and_the_times_stay_shown() {
    let mem = Arc::new(MemoryStore::new("b", 100));
    mem.insert("p/", "");
    let faults = Faults {
        before: 1.0,
        ..Faults::default()
    };
    let store = Arc::new(Faulty::new(mem.clone(), faults, 7));
    let fs = Fs::new(store.clone(), "p/", FsConfig::default());
    fs.entries_changed(ROOT_INO);
    let shown = fs.cached_attr(ROOT_INO).unwrap().mtime;
    fs.persist_dir_times().await;
    let tried = store.injected();
    assert!(tried > 0);
    fs.persist_dir_times().await;
    assert_eq!(store.injected(), tried, "not tried again");
    assert_eq!(fs.cached_attr(ROOT_INO).unwrap().mtime, shown);
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
    let listed = super::tests::read_all(&fs, fh).await;
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
    for e in super::tests::read_all(&fs, fh).await.iter() {
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

#[tokio::test]
async fn a_rename_moves_ctime_only_and_keeps_everything_else() {
    let store = Arc::new(MemoryStore::new("b", 100));
    let stored = UserMeta::from([
        ("mtime".to_owned(), "1000000000".to_owned()),
        ("ctime".to_owned(), "1000000000".to_owned()),
        ("foreign".to_owned(), "keep".to_owned()),
        // Another client's malformed value is restated as it is.
        ("uid".to_owned(), " 12x".to_owned()),
    ]);
    for k in ["p/f", "p/d/", "p/d/x"] {
        store.insert_with_meta(k, "body", stored.clone());
    }
    let fs = mount(&store);
    let before = SystemTime::now();
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    assert_eq!(f.ctime, old());
    fs.rename(ROOT_INO, "f", ROOT_INO, "g", false)
        .await
        .unwrap();
    let meta = store.meta("p/g").unwrap();
    let ctime = posix::parse_time(&meta["ctime"]).unwrap();
    assert!(ctime >= before, "ctime of the copy is the rename's");
    let mut expected = stored.clone();
    expected.insert("ctime".into(), meta["ctime"].clone());
    assert_eq!(meta, expected, "nothing else changed");
    let g = fs.getattr(f.ino).await.unwrap();
    assert_eq!((g.mtime, g.ctime), (old(), ctime));

    let d = fs.lookup(ROOT_INO, "d").await.unwrap();
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", false)
        .await
        .unwrap();
    let marker = store.meta("p/e/").unwrap();
    let ctime = posix::parse_time(&marker["ctime"]).unwrap();
    assert!(ctime >= before, "the moved marker gets the rename's ctime");
    assert_eq!(marker["mtime"], "1000000000");
    assert_eq!(marker["foreign"], "keep");
    assert_eq!(
        store.meta("p/e/x").unwrap(),
        stored,
        "keys below keep theirs"
    );
    let e = fs.getattr(d.ino).await.unwrap();
    assert_eq!((e.mtime, e.ctime), (old(), ctime));
}

#[tokio::test]
async fn an_implicit_directory_renamed_shows_a_new_ctime() {
    let store = Arc::new(MemoryStore::new("b", 100));
    store.insert("p/i/x", "1");
    let fs = mount(&store);
    let i = fs.lookup(ROOT_INO, "i").await.unwrap();
    fs.rename(ROOT_INO, "i", ROOT_INO, "j", false)
        .await
        .unwrap();
    let j = fs.getattr(i.ino).await.unwrap();
    assert!(j.ctime > i.ctime);
    assert_eq!(j.mtime, i.mtime);
    assert_eq!(store.keys(), vec!["p/j/x"]);
}

#[tokio::test]
async fn removing_an_implicit_directory_that_vanished_changes_its_parent() {
    // `rm -r`: the last file goes, and the implicit directory with it, before rmdir.
    let store = Arc::new(MemoryStore::new("b", 100));
    store.insert("d/keep", "1");
    store.insert("d/s/x", "1");
    let fs = Fs::new(
        store.clone(),
        "",
        FsConfig {
            metadata_ttl: Duration::ZERO,
            ..FsConfig::default()
        },
    );
    let d = fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    let s = fs.lookup(d, "s").await.unwrap().ino;
    fs.unlink(s, "x").await.unwrap();
    age(&fs, d).await;
    fs.rmdir(d, "s").await.unwrap();
    changed(&fs, d, old(), "rmdir of a vanished implicit directory").await;
}
