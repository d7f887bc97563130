//! Core tests against the in-memory store: the FUSE-free behaviour of every operation.

use std::sync::Arc;

use std::time::Duration;

use super::*;
use crate::s3::memory::MemoryStore;

fn who(pid: u32) -> Caller {
    Caller {
        pid,
        uid: 1000,
        gid: 1000,
    }
}

fn fs_with(keys: &[(&str, &str)]) -> (Arc<MemoryStore>, Fs) {
    let store = Arc::new(MemoryStore::new("b", 3));
    for (k, v) in keys {
        store.insert(k, v.to_string());
    }
    let fs = Fs::new(store.clone(), "p/", FsConfig::default());
    (store, fs)
}

/// Every entry of open directory `fh`, read the way the kernel does: from position 0,
/// then from after the last entry got, until an empty answer.
pub(super) async fn read_all(fs: &Fs, fh: u64) -> Vec<Listed> {
    let mut all: Vec<Listed> = Vec::new();
    loop {
        let got = fs
            .readdir(fh, all.len() as u64, all.is_empty())
            .await
            .unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

async fn names(fs: &Fs, ino: Ino) -> Vec<String> {
    let fh = fs.opendir(ino).unwrap();
    let e = read_all(fs, fh).await;
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
        fs.lookup(ROOT_INO, &"n".repeat(1025)).await,
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
    let (attr, fh) = fs
        .create(ROOT_INO, "new.txt", 0o644, false, who(42))
        .await
        .unwrap();
    assert_eq!(attr.size, 0);
    // Visible in listings while being written.
    assert_eq!(names(&fs, ROOT_INO).await, vec!["new.txt"]);
    // A close before any write (`touch`, or a shell redirection's dup2 + close) commits the
    // empty file, so that close gets the upload's error.
    fs.flush(fh, 42).await.unwrap();
    assert_eq!(store.get("p/new.txt").as_deref(), Some(&b""[..]));
    // The writes that follow stream a new body (no staging, no GET of the empty object).
    fs.write(fh, 0, b"hello").await.unwrap();
    assert_eq!(fs.getattr(attr.ino).await.unwrap().size, 5);
    // A close by another process does not commit.
    fs.flush(fh, 7).await.unwrap();
    assert_eq!(store.get("p/new.txt").as_deref(), Some(&b""[..]));
    fs.flush(fh, 42).await.unwrap();
    assert_eq!(&store.get("p/new.txt").unwrap()[..], b"hello");
    assert_eq!(store.count("PutObject"), 2);
    assert_eq!(store.count("GetObject"), 0);
    fs.release(fh).await.unwrap();
    let rfh = fs
        .open(attr.ino, OpenMode::default(), who(1))
        .await
        .unwrap()
        .fh;
    assert_eq!(&fs.read(rfh, 0, 100).await.unwrap()[..], b"hello");
    assert_eq!(&fs.read(rfh, 4, 100).await.unwrap()[..], b"o");
    assert!(fs.read(rfh, 5, 100).await.unwrap().is_empty());
    fs.release(rfh).await.unwrap();
}

#[tokio::test]
async fn overwrite_append_and_edit_in_place() {
    let (store, fs) = fs_with(&[("p/f", "old contents")]);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    let rw = OpenMode {
        write: true,
        truncate: false,
    };
    // In place: write at an offset, read back through the same handle.
    let fh = fs.open(f.ino, rw, who(1)).await.unwrap().fh;
    fs.write(fh, 0, b"NEW").await.unwrap();
    assert_eq!(&fs.read(fh, 0, 100).await.unwrap()[..], b"NEW contents");
    fs.release(fh).await.unwrap();
    assert_eq!(&store.get("p/f").unwrap()[..], b"NEW contents");
    // Append (the kernel sends writes at the end of file).
    let fh = fs.open(f.ino, rw, who(1)).await.unwrap().fh;
    fs.write(fh, 12, b"+tail").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(&store.get("p/f").unwrap()[..], b"NEW contents+tail");
    // Replace (O_TRUNC).
    let t = OpenMode {
        write: true,
        truncate: true,
    };
    let fh = fs.open(f.ino, t, who(1)).await.unwrap().fh;
    fs.write(fh, 0, b"new").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(&store.get("p/f").unwrap()[..], b"new");
    // Truncate without a handle: shrink, grow with zeros.
    fs.setattr(
        f.ino,
        SetAttr {
            size: Some(2),
            ..SetAttr::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(&store.get("p/f").unwrap()[..], b"ne");
    fs.setattr(
        f.ino,
        SetAttr {
            size: Some(4),
            ..SetAttr::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(&store.get("p/f").unwrap()[..], b"ne\0\0");
}

#[tokio::test]
async fn out_of_order_writes_spill_to_staging() {
    let (store, fs) = fs_with(&[]);
    let (_, fh) = fs
        .create(ROOT_INO, "sparse", 0o644, false, who(1))
        .await
        .unwrap();
    fs.write(fh, 0, b"head").await.unwrap();
    fs.write(fh, 10, b"tail").await.unwrap();
    fs.write(fh, 4, b"-mid-").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(&store.get("p/sparse").unwrap()[..], b"head-mid-\0tail");
}

#[tokio::test]
async fn rename_files_and_directories() {
    let (store, fs) = fs_with(&[("p/a", "A"), ("p/b", "B"), ("p/d/x", "1"), ("p/d/s/y", "2")]);
    fs.rename(ROOT_INO, "a", ROOT_INO, "b", false)
        .await
        .unwrap();
    assert_eq!(&store.get("p/b").unwrap()[..], b"A");
    assert!(store.get("p/a").is_none());
    let e = fs.rename(ROOT_INO, "b", ROOT_INO, "d", false).await;
    assert!(matches!(e, Err(FsError::IsDir)));
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", false)
        .await
        .unwrap();
    assert_eq!(store.keys(), vec!["p/b", "p/e/s/y", "p/e/x"]);
    // Inodes below a renamed directory follow it.
    let e = fs.lookup(ROOT_INO, "e").await.unwrap();
    let x = fs.lookup(e.ino, "x").await.unwrap();
    let o = fs.open(x.ino, OpenMode::default(), who(1)).await.unwrap();
    assert_eq!(&fs.read(o.fh, 0, 10).await.unwrap()[..], b"1");
    assert!(matches!(
        fs.rename(ROOT_INO, "b", ROOT_INO, "e", true).await,
        Err(FsError::Exists)
    ));
}

#[tokio::test]
async fn chmod_chown_touch_persist_as_s3fs_metadata() {
    let (store, fs) = fs_with(&[("p/f", "x")]);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    assert_eq!((f.perm, f.uid), (0o644, 0));
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let a = fs
        .setattr(
            f.ino,
            SetAttr {
                mode: Some(0o600),
                uid: Some(1234),
                gid: Some(99),
                mtime: Some(t),
                ..SetAttr::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!((a.perm, a.uid, a.gid, a.mtime), (0o600, 1234, 99, t));
    let m = store.meta("p/f").unwrap();
    assert_eq!(m["mode"], (0o100600).to_string());
    assert_eq!(m["uid"], "1234");
    assert_eq!(m["mtime"], "1600000000");
    assert_eq!(&store.get("p/f").unwrap()[..], b"x", "content kept");
    // A fresh mount reads it back.
    let fs2 = Fs::new(store.clone(), "p/", FsConfig::default());
    let b = fs2.lookup(ROOT_INO, "f").await.unwrap();
    assert_eq!((b.perm, b.uid, b.gid, b.mtime), (0o600, 1234, 99, t));
}

#[tokio::test]
async fn symlinks_and_xattrs_round_trip() {
    let (store, fs) = fs_with(&[("p/target.txt", "t")]);
    let l = fs
        .symlink(ROOT_INO, "link", "target.txt", who(1))
        .await
        .unwrap();
    assert_eq!(l.kind, Kind::Symlink);
    assert_eq!(&store.get("p/link").unwrap()[..], b"target.txt");
    let fs2 = Fs::new(store.clone(), "p/", FsConfig::default());
    let l2 = fs2.lookup(ROOT_INO, "link").await.unwrap();
    assert_eq!(l2.kind, Kind::Symlink);
    assert_eq!(fs2.readlink(l2.ino).await.unwrap(), "target.txt");

    let f = fs.lookup(ROOT_INO, "target.txt").await.unwrap();
    fs.setxattr(f.ino, "user.color", b"blue", false, false)
        .await
        .unwrap();
    assert!(matches!(
        fs.setxattr(f.ino, "user.color", b"x", true, false).await,
        Err(FsError::Exists)
    ));
    assert!(matches!(
        fs.setxattr(f.ino, "security.x", b"x", false, false).await,
        Err(FsError::NotSupported(_))
    ));
    let f2 = fs2.lookup(ROOT_INO, "target.txt").await.unwrap();
    assert_eq!(fs2.getxattr(f2.ino, "user.color").await.unwrap(), b"blue");
    let names = fs2.listxattr(f2.ino).await.unwrap();
    assert_eq!(names[0], "user.color");
    assert!(names.contains(&"user.s3.tags".to_owned()));
    // S3 facts as read-only attributes; tags can be set.
    assert_eq!(
        fs2.getxattr(f2.ino, "user.s3.url").await.unwrap(),
        b"s3://b/p/target.txt"
    );
    assert!(
        !fs2.getxattr(f2.ino, "user.s3.etag")
            .await
            .unwrap()
            .is_empty()
    );
    fs2.setxattr(f2.ino, "user.s3.tags", b"team=a&env=prod", false, false)
        .await
        .unwrap();
    assert_eq!(
        fs2.getxattr(f2.ino, "user.s3.tags").await.unwrap(),
        b"team=a&env=prod"
    );
    assert!(matches!(
        fs2.setxattr(f2.ino, "user.s3.etag", b"x", false, false)
            .await,
        Err(FsError::ReadOnlyAttr)
    ));
    fs.removexattr(f.ino, "user.color").await.unwrap();
    assert!(matches!(
        fs.getxattr(f.ino, "user.color").await,
        Err(FsError::NoAttr)
    ));
}

#[tokio::test]
async fn guard_modes_refuse_exactly_what_they_guard() {
    let store = Arc::new(MemoryStore::new("b", 100));
    store.insert("f", "x");
    store.insert("d/y", "y");
    let cfg = FsConfig {
        no_delete: true,
        no_overwrite: true,
        ..FsConfig::default()
    };
    let fs = Fs::new(store.clone(), "", cfg);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    let g = |r: Result<()>| matches!(r, Err(FsError::Guarded(_)));
    assert!(g(fs.unlink(ROOT_INO, "f").await));
    assert!(g(fs.rename(ROOT_INO, "f", ROOT_INO, "g", false).await));
    assert!(g(fs
        .open(
            f.ino,
            OpenMode {
                write: true,
                truncate: true
            },
            who(1)
        )
        .await
        .map(|_| ())));
    assert!(g(fs
        .setattr(
            f.ino,
            SetAttr {
                mode: Some(0o600),
                ..SetAttr::default()
            },
            None
        )
        .await
        .map(|_| ())));
    // New files are fine.
    let (_, fh) = fs
        .create(ROOT_INO, "new", 0o644, false, who(1))
        .await
        .unwrap();
    fs.write(fh, 0, b"n").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(&store.get("new").unwrap()[..], b"n");
    assert_eq!(&store.get("f").unwrap()[..], b"x");
}

#[tokio::test]
async fn mkdir_rmdir_unlink() {
    let (store, fs) = fs_with(&[("p/full/x", "1")]);
    let d = fs.mkdir(ROOT_INO, "newdir", 0o755, who(1)).await.unwrap();
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
        fs.create(ROOT_INO, "n", 0o644, false, who(1)).await,
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        fs.mkdir(ROOT_INO, "d", 0o755, who(1)).await,
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
            who(1)
        )
        .await,
        Err(FsError::ReadOnly)
    ));
}

#[tokio::test]
async fn unlink_while_writing_discards_the_upload() {
    let (store, fs) = fs_with(&[]);
    let (_, fh) = fs
        .create(ROOT_INO, "tmp", 0o644, false, who(1))
        .await
        .unwrap();
    fs.write(fh, 0, b"data").await.unwrap();
    fs.unlink(ROOT_INO, "tmp").await.unwrap();
    // Still readable and writable through the open handle.
    fs.write(fh, 4, b"+more").await.unwrap();
    assert_eq!(&fs.read(fh, 0, 100).await.unwrap()[..], b"data+more");
    fs.flush(fh, 1).await.unwrap();
    fs.fsync(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    assert!(store.keys().is_empty());
}

#[tokio::test]
async fn a_file_unlinked_while_open_for_reading_stays_readable_and_its_name_is_free() {
    let (store, fs) = fs_with(&[("p/f", "old bytes")]);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    let r = fs
        .open(f.ino, OpenMode::default(), who(1))
        .await
        .unwrap()
        .fh;
    fs.unlink(ROOT_INO, "f").await.unwrap();
    assert!(store.keys().is_empty(), "deleted at once");
    let (_, w) = fs
        .create(ROOT_INO, "f", 0o644, false, who(2))
        .await
        .unwrap();
    fs.write(w, 0, b"new").await.unwrap();
    fs.flush(w, 2).await.unwrap();
    fs.release(w).await.unwrap();
    assert_eq!(&fs.read(r, 0, 100).await.unwrap()[..], b"old bytes");
    fs.release(r).await.unwrap();
    assert_eq!(&store.get("p/f").unwrap()[..], b"new");
}

#[tokio::test]
async fn two_descriptors_share_one_file() {
    let (store, fs) = fs_with(&[]);
    let (a, w) = fs
        .create(ROOT_INO, "f", 0o644, false, who(1))
        .await
        .unwrap();
    fs.write(w, 0, b"foo\n").await.unwrap();
    // `( echo foo; wc -c < f ) > f`: a reader opened meanwhile reads what was written.
    let r = fs
        .open(a.ino, OpenMode::default(), who(2))
        .await
        .unwrap()
        .fh;
    assert_eq!(&fs.read(r, 0, 100).await.unwrap()[..], b"foo\n");
    // A second writer joins the same bytes.
    let mode = OpenMode {
        write: true,
        truncate: false,
    };
    let w2 = fs.open(a.ino, mode, who(3)).await.unwrap().fh;
    fs.write(w2, 4, b"bar\n").await.unwrap();
    assert_eq!(&fs.read(w, 0, 100).await.unwrap()[..], b"foo\nbar\n");
    fs.write(w, 8, b"baz\n").await.unwrap();
    // The first writer's close leaves the commit to the other, still writing.
    fs.flush(w, 1).await.unwrap();
    assert!(store.get("p/f").is_none_or(|b| b.is_empty()));
    fs.write(w2, 12, b"!").await.unwrap();
    fs.flush(w2, 3).await.unwrap();
    assert_eq!(&store.get("p/f").unwrap()[..], b"foo\nbar\nbaz\n!");
    fs.release(w).await.unwrap();
    fs.release(w2).await.unwrap();
    // The reader reads the committed object now.
    assert_eq!(&fs.read(r, 0, 100).await.unwrap()[..], b"foo\nbar\nbaz\n!");
    fs.release(r).await.unwrap();
}

#[tokio::test]
async fn a_truncate_is_read_back_through_every_descriptor() {
    let (_, fs) = fs_with(&[("p/f", "0123456789")]);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    let r = fs
        .open(f.ino, OpenMode::default(), who(1))
        .await
        .unwrap()
        .fh;
    assert_eq!(&fs.read(r, 0, 100).await.unwrap()[..], b"0123456789");
    // `truncate` by path, no descriptor open for writing: the object is rewritten.
    let change = SetAttr {
        size: Some(4),
        ..SetAttr::default()
    };
    fs.setattr(f.ino, change, None).await.unwrap();
    assert_eq!(&fs.read(r, 0, 100).await.unwrap()[..], b"0123");
    // ftruncate through a read-write descriptor, then read through it.
    let mode = OpenMode {
        write: true,
        truncate: false,
    };
    let w = fs.open(f.ino, mode, who(1)).await.unwrap().fh;
    let change = SetAttr {
        size: Some(2),
        ..SetAttr::default()
    };
    fs.setattr(f.ino, change, Some(w)).await.unwrap();
    assert_eq!(&fs.read(w, 0, 100).await.unwrap()[..], b"01");
    assert_eq!(&fs.read(r, 0, 100).await.unwrap()[..], b"01");
    fs.release(w).await.unwrap();
    fs.release(r).await.unwrap();
}

#[tokio::test]
async fn a_file_replaced_by_rename_while_open_keeps_its_bytes_for_its_descriptors() {
    let (store, fs) = fs_with(&[("p/a", "from a"), ("p/b", "b before")]);
    let b = fs.lookup(ROOT_INO, "b").await.unwrap();
    let mode = OpenMode {
        write: true,
        truncate: false,
    };
    let w = fs.open(b.ino, mode, who(1)).await.unwrap().fh;
    fs.write(w, 0, b"B").await.unwrap();
    fs.rename(ROOT_INO, "a", ROOT_INO, "b", false)
        .await
        .unwrap();
    assert_eq!(&fs.read(w, 0, 100).await.unwrap()[..], b"B before");
    fs.flush(w, 1).await.unwrap();
    fs.release(w).await.unwrap();
    assert_eq!(&store.get("p/b").unwrap()[..], b"from a");
    assert!(store.get("p/a").is_none());
}

fn fs_ttl(store: Arc<MemoryStore>, ttl_ms: u64) -> Fs {
    Fs::new(
        store,
        "",
        FsConfig {
            metadata_ttl: Duration::from_millis(ttl_ms),
            ..FsConfig::default()
        },
    )
}

/// [`fs_ttl`] with `--negative-cache`: "does not exist" answered from memory within the TTL
/// (the default asks S3 about every absent name: see `tests_visible.rs`).
fn fs_negative_cache(store: Arc<MemoryStore>, ttl_ms: u64) -> Fs {
    Fs::new(
        store,
        "",
        FsConfig {
            metadata_ttl: Duration::from_millis(ttl_ms),
            negative_cache: true,
            ..FsConfig::default()
        },
    )
}

#[tokio::test]
async fn metadata_cache_serves_repeated_lookups_and_absent_names() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    store.insert("f", "abc");
    let fs = fs_negative_cache(store.clone(), 60_000);
    fs.lookup(ROOT_INO, "f").await.unwrap();
    fs.lookup(ROOT_INO, "f").await.unwrap();
    assert_eq!(store.count("HeadObject"), 1);
    assert!(fs.lookup(ROOT_INO, "missing").await.is_err());
    assert!(fs.lookup(ROOT_INO, "missing").await.is_err());
    assert_eq!(store.count("HeadObject"), 2, "negative answer cached");
    // Creating the name clears the negative entry.
    let (_, fh) = fs
        .create(ROOT_INO, "missing", 0o644, false, who(1))
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(fs.lookup(ROOT_INO, "missing").await.unwrap().size, 0);
}

#[tokio::test]
async fn listing_feeds_the_cache_so_stat_costs_nothing() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    for i in 0..50 {
        store.insert(&format!("d/f{i}"), "x");
    }
    let fs = fs_ttl(store.clone(), 60_000);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap();
    let fh = fs.opendir(d.ino).unwrap();
    let entries = read_all(&fs, fh).await;
    for e in entries.iter() {
        fs.entry(d.ino, e, 1);
    }
    let heads = store.count("HeadObject");
    let lists = store.count("ListObjectsV2");
    for i in 0..50 {
        let a = fs.lookup(d.ino, &format!("f{i}")).await.unwrap();
        fs.getattr(a.ino).await.unwrap();
        // What `ls -l` asks besides: ACL and SELinux attributes.
        fs.listxattr(a.ino).await.unwrap();
        assert!(matches!(
            fs.getxattr(a.ino, "system.posix_acl_access").await,
            Err(FsError::AttrNamespaceUnsupported)
        ));
        assert!(matches!(
            fs.getxattr(a.ino, "security.selinux").await,
            Err(FsError::AttrNamespaceUnsupported)
        ));
    }
    assert_eq!(store.count("HeadObject"), heads);
    assert_eq!(store.count("ListObjectsV2"), lists);
}

#[tokio::test]
async fn zero_ttl_always_asks_and_sees_changes() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    store.insert("f", "abc");
    let fs = fs_ttl(store.clone(), 0);
    let a = fs.lookup(ROOT_INO, "f").await.unwrap();
    store.insert("f", "abcdef");
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 6);
    assert_eq!(fs.lookup(ROOT_INO, "f").await.unwrap().size, 6);
    store.delete("f").await.unwrap();
    assert!(matches!(fs.getattr(a.ino).await, Err(FsError::NotFound)));
}

#[tokio::test]
async fn replaced_object_is_read_fresh_and_page_cache_kept_only_for_same_etag() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    store.insert("f", "version one");
    let fs = fs_ttl(store.clone(), 0);
    let a = fs.lookup(ROOT_INO, "f").await.unwrap();
    let o1 = fs.open(a.ino, OpenMode::default(), who(1)).await.unwrap();
    assert!(!o1.keep_cache);
    assert_eq!(&fs.read(o1.fh, 0, 100).await.unwrap()[..], b"version one");
    fs.release(o1.fh).await.unwrap();
    let o2 = fs.open(a.ino, OpenMode::default(), who(1)).await.unwrap();
    assert!(o2.keep_cache, "same ETag: keep the kernel's pages");
    fs.release(o2.fh).await.unwrap();
    store.insert("f", "version two!");
    let o3 = fs.open(a.ino, OpenMode::default(), who(1)).await.unwrap();
    assert!(!o3.keep_cache);
    // The old version's blocks are in the cache, but keyed by the old ETag.
    assert_eq!(&fs.read(o3.fh, 0, 100).await.unwrap()[..], b"version two!");
}

/// Requests that prove a name absent or present.
fn lookups_sent(store: &MemoryStore) -> (u64, u64) {
    (store.count("HeadObject"), store.count("ListObjectsV2"))
}

async fn create_file(fs: &Fs, dir: Ino, name: &str, data: &[u8]) {
    let (_, fh) = fs.create(dir, name, 0o644, false, who(1)).await.unwrap();
    fs.write(fh, 0, data).await.unwrap();
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn names_in_a_new_directory_are_known_without_asking() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    let fs = fs_negative_cache(store.clone(), 60_000);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, who(1)).await.unwrap();
    let before = lookups_sent(&store);
    for i in 0..20 {
        let name = format!("f{i}");
        assert!(matches!(
            fs.lookup(d.ino, &name).await,
            Err(FsError::NotFound)
        ));
        create_file(&fs, d.ino, &name, b"x").await;
    }
    assert_eq!(lookups_sent(&store), before, "cp -r into a new directory");
    // Local changes keep the knowledge exact.
    fs.unlink(d.ino, "f3").await.unwrap();
    assert!(matches!(
        fs.lookup(d.ino, "f3").await,
        Err(FsError::NotFound)
    ));
    fs.rename(d.ino, "f4", d.ino, "g", false).await.unwrap();
    assert!(matches!(
        fs.lookup(d.ino, "f4").await,
        Err(FsError::NotFound)
    ));
    assert_eq!(fs.lookup(d.ino, "g").await.unwrap().size, 1);
    let sub = fs.mkdir(d.ino, "sub", 0o755, who(1)).await.unwrap();
    assert_eq!(fs.lookup(d.ino, "sub").await.unwrap().ino, sub.ino);
    assert_eq!(store.get("d/g").as_deref(), Some(&b"x"[..]));
    // Within the TTL, a name another client adds is not seen: the trade-off of
    // --negative-cache.
    store.insert("d/other", "y");
    assert!(fs.lookup(d.ino, "other").await.is_err());
}

#[tokio::test]
async fn stale_knowledge_is_refreshed_with_one_listing() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    let fs = fs_negative_cache(store.clone(), 100);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, who(1)).await.unwrap();
    create_file(&fs, d.ino, "mine", b"1").await;
    store.insert("d/theirs", "22");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (heads, lists) = lookups_sent(&store);
    assert!(matches!(
        fs.lookup(d.ino, "new").await,
        Err(FsError::NotFound)
    ));
    assert_eq!(
        lookups_sent(&store),
        (heads, lists + 1),
        "one listing, no HEAD"
    );
    // The listing taught the other client's name: it is looked up for real.
    assert_eq!(fs.lookup(d.ino, "theirs").await.unwrap().size, 2);
    assert!(matches!(
        fs.lookup(d.ino, "new2").await,
        Err(FsError::NotFound)
    ));
    assert_eq!(lookups_sent(&store).1, lists + 2, "theirs: one more LIST");
}

#[tokio::test]
async fn a_listing_makes_absent_names_free_and_zero_ttl_always_asks() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    store.insert("d/a", "1");
    let fs = fs_negative_cache(store.clone(), 60_000);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap();
    assert_eq!(names(&fs, d.ino).await, ["a"]);
    let before = lookups_sent(&store);
    for i in 0..10 {
        assert!(fs.lookup(d.ino, &format!("n{i}")).await.is_err());
    }
    assert_eq!(lookups_sent(&store), before);

    let fs0 = fs_ttl(store.clone(), 0);
    let d0 = fs0.mkdir(ROOT_INO, "e", 0o755, who(1)).await.unwrap();
    let before = lookups_sent(&store);
    assert!(fs0.lookup(d0.ino, "x").await.is_err());
    assert_eq!(lookups_sent(&store), (before.0 + 1, before.1 + 1));
}

#[tokio::test]
async fn moving_a_directory_forgets_known_contents() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    let fs = fs_negative_cache(store.clone(), 60_000);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, who(1)).await.unwrap();
    // Moving a directory forgets every directory's known contents.
    create_file(&fs, d.ino, "a", b"1").await;
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", false)
        .await
        .unwrap();
    let before = lookups_sent(&store);
    assert!(fs.lookup(d.ino, "zzz").await.is_err());
    assert_ne!(lookups_sent(&store), before, "asked S3 after the move");
    assert_eq!(store.get("e/a").as_deref(), Some(&b"1"[..]));
}

#[tokio::test]
async fn a_file_renamed_while_open_for_writing_keeps_receiving_its_writes() {
    let store = Arc::new(MemoryStore::new("b", 1000));
    let fs = fs_ttl(store.clone(), 60_000);
    let (_, fh) = fs
        .create(ROOT_INO, "f", 0o644, false, who(1))
        .await
        .unwrap();
    fs.write(fh, 0, b"one,").await.unwrap();
    fs.rename(ROOT_INO, "f", ROOT_INO, "g", false)
        .await
        .unwrap();
    fs.write(fh, 4, b"two").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(store.get("f"), None);
    assert_eq!(store.get("g").as_deref(), Some(&b"one,two"[..]));

    let d = fs.mkdir(ROOT_INO, "d", 0o755, who(1)).await.unwrap();
    let (_, fh) = fs.create(d.ino, "x", 0o644, false, who(1)).await.unwrap();
    fs.write(fh, 0, b"1").await.unwrap();
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", false)
        .await
        .unwrap();
    fs.write(fh, 1, b"2").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(store.get("d/x"), None);
    assert_eq!(store.get("e/x").as_deref(), Some(&b"12"[..]));
}

#[tokio::test]
async fn sizes_s3_cannot_hold_fail_at_once_with_efbig() {
    let (store, fs) = fs_with(&[("p/f", "abc")]);
    let f = fs.lookup(ROOT_INO, "f").await.unwrap();
    // 10,000 parts of the default 8 MiB: 78.1 GiB.
    let too_big = 10_000 * (8 << 20) + 1;
    let grow = SetAttr {
        size: Some(too_big),
        ..SetAttr::default()
    };
    assert!(matches!(
        fs.setattr(f.ino, grow, None).await,
        Err(FsError::FileTooLarge)
    ));
    let (_, fh) = fs
        .create(ROOT_INO, "g", 0o644, false, who(1))
        .await
        .unwrap();
    assert!(matches!(
        fs.write(fh, too_big - 1, b"xy").await,
        Err(FsError::FileTooLarge)
    ));
    fs.release(fh).await.unwrap();
    assert_eq!(store.count("UploadPart"), 0, "nothing was uploaded");
    assert_eq!(&store.get("p/f").unwrap()[..], b"abc");
}

#[tokio::test]
async fn a_chmod_between_a_commit_and_more_writes_is_kept_by_the_next_commit() {
    let (store, fs) = fs_with(&[]);
    let (a, fh) = fs
        .create(ROOT_INO, "f", 0o755, false, who(1))
        .await
        .unwrap();
    fs.write(fh, 0, b"one").await.unwrap();
    fs.flush(fh, 1).await.unwrap();
    // Committed, still open: the chmod changes the object itself.
    let change = SetAttr {
        mode: Some(0o644),
        ..SetAttr::default()
    };
    fs.setattr(a.ino, change, None).await.unwrap();
    fs.write(fh, 3, b" two").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(&store.get("p/f").unwrap()[..], b"one two");
    assert_eq!(store.meta("p/f").unwrap()["mode"], (0o100644).to_string());
}

#[tokio::test]
async fn a_streamed_listing_read_to_its_end_teaches_the_directory_a_partial_one_does_not() {
    let store = Arc::new(MemoryStore::new("b", 4));
    for i in 0..10 {
        store.insert(&format!("d/f{i}"), "1");
    }
    let fs = fs_negative_cache(store.clone(), 60_000);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap();
    // Only the first page read: nothing proven about the names beyond it.
    let fh = fs.opendir(d.ino).unwrap();
    assert!(!fs.readdir(fh, 0, true).await.unwrap().is_empty());
    fs.releasedir(fh);
    let before = lookups_sent(&store);
    assert_eq!(fs.lookup(d.ino, "f9").await.unwrap().size, 1);
    assert!(lookups_sent(&store) != before, "f9 was asked for");
    // Read to the end (three pages): an absent name costs nothing any more.
    let fh = fs.opendir(d.ino).unwrap();
    let all = read_all(&fs, fh).await;
    fs.releasedir(fh);
    assert_eq!(all.len(), 10);
    let before = lookups_sent(&store);
    assert!(matches!(
        fs.lookup(d.ino, "nope").await,
        Err(FsError::NotFound)
    ));
    assert_eq!(lookups_sent(&store), before);
}

#[tokio::test]
async fn a_rewind_lists_again_and_a_handle_keeps_only_a_window() {
    let store = Arc::new(MemoryStore::new("b", 3));
    for i in 0..9 {
        store.insert(&format!("d/f{i}"), "1");
    }
    let fs = fs_ttl(store.clone(), 60_000);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap();
    let fh = fs.opendir(d.ino).unwrap();
    assert_eq!(read_all(&fs, fh).await.len(), 9);
    store.insert("d/late", "1");
    let lists = store.count("ListObjectsV2");
    // Position 0 again (rewinddir): a fresh listing, with the new name.
    let again = read_all(&fs, fh).await;
    assert_eq!(again.len(), 10);
    assert!(store.count("ListObjectsV2") > lists);
    // A seek back a little is served by the handle; the entry there is the same.
    let lists = store.count("ListObjectsV2");
    let at8 = fs.readdir(fh, 8, false).await.unwrap();
    assert_eq!(at8[0].name, again[8].name);
    assert_eq!(store.count("ListObjectsV2"), lists);
    // Far back: listed again and skipped forward to the same entry.
    let at1 = fs.readdir(fh, 1, false).await.unwrap();
    assert_eq!(at1[0].name, again[1].name);
    assert!(store.count("ListObjectsV2") > lists);
    fs.releasedir(fh);
}
