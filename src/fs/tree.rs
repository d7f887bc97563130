//! What a mount shows: one bucket (or one path in it), or every bucket the credentials can
//! see as a folder of its own.
//!
//! In the buckets view each bucket is a separate [`Fs`], connected lazily (in its own
//! region) the first time it is entered. Inode numbers and file handles of bucket `i` carry
//! `i + 1` in their top bits, so the kernel sees one consistent numbering; the root (1)
//! lists the buckets, `mkdir` there creates one and `rmdir` deletes an empty one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::inode::Stat;
use super::{
    Attr, Caller, Fs, FsError, Ino, Invalidator, Kind, Listed, OpenMode, Opened, ROOT_INO, Result,
    SetAttr, check_name,
};
use crate::s3::{ErrorKind, ObjectStore, StoreError};

/// Bits of an inode number (or file handle) that belong to one bucket's [`Fs`].
const SHIFT: u32 = 40;
const LOCAL: u64 = (1 << SHIFT) - 1;

/// Account-level operations, implemented over aws-sdk-s3 in `crate::s3::buckets`.
#[async_trait]
pub trait BucketService: Send + Sync + 'static {
    /// ListBuckets: names and creation times.
    async fn list_buckets(&self) -> std::result::Result<Vec<(String, SystemTime)>, StoreError>;
    /// A store for `bucket`, in the bucket's own region.
    async fn open_bucket(
        &self,
        bucket: &str,
    ) -> std::result::Result<Arc<dyn ObjectStore>, StoreError>;
    /// CreateBucket.
    async fn create_bucket(&self, bucket: &str) -> std::result::Result<(), StoreError>;
    /// DeleteBucket (fails when not empty).
    async fn delete_bucket(&self, bucket: &str) -> std::result::Result<(), StoreError>;
}

struct Slot {
    name: String,
    created: SystemTime,
    fs: tokio::sync::OnceCell<Arc<Fs>>,
}

/// Every bucket as a folder.
pub struct Buckets {
    service: Arc<dyn BucketService>,
    cfg: crate::config::FsConfig,
    slots: Mutex<Vec<Arc<Slot>>>,
    invalidator: Mutex<Option<Arc<dyn Invalidator>>>,
    mount_time: SystemTime,
}

/// The mounted tree.
pub enum Tree {
    /// One bucket or path.
    One(Arc<Fs>),
    /// All buckets.
    Buckets(Box<Buckets>),
}

fn encode(slot: usize, local: u64) -> u64 {
    ((slot as u64 + 1) << SHIFT) | local
}

/// `(Some(slot), local)` for bucket inodes/handles, `(None, n)` for the buckets root.
fn decode(n: u64) -> (Option<usize>, u64) {
    match n >> SHIFT {
        0 => (None, n),
        s => (Some((s - 1) as usize), n & LOCAL),
    }
}

fn map_attr(slot: usize, mut a: Attr) -> Attr {
    a.ino = encode(slot, a.ino);
    a
}

/// A bucket name is a directory name, with S3's rules.
fn bucket_name(name: &str) -> Result<()> {
    crate::config::validate_bucket(name).map_err(|e| FsError::InvalidName(e.to_string()))
}

struct Relay {
    slot: usize,
    inner: Arc<dyn Invalidator>,
}

impl Invalidator for Relay {
    fn entry_gone(&self, parent: Ino, name: &str) {
        self.inner.entry_gone(encode(self.slot, parent), name);
    }
}

impl Buckets {
    /// A buckets view over `service`; every bucket gets a [`Fs`] with `cfg`.
    pub fn new(service: Arc<dyn BucketService>, cfg: crate::config::FsConfig) -> Self {
        Buckets {
            service,
            cfg,
            slots: Mutex::new(Vec::new()),
            invalidator: Mutex::new(None),
            mount_time: SystemTime::now(),
        }
    }

    fn slot_of(&self, name: &str, created: SystemTime) -> (usize, Arc<Slot>) {
        let mut slots = self.slots.lock().unwrap();
        if let Some(i) = slots.iter().position(|s| s.name == name) {
            return (i, slots[i].clone());
        }
        let slot = Arc::new(Slot {
            name: name.to_owned(),
            created,
            fs: tokio::sync::OnceCell::new(),
        });
        slots.push(slot.clone());
        (slots.len() - 1, slot)
    }

    fn slot(&self, i: usize) -> Result<Arc<Slot>> {
        self.slots
            .lock()
            .unwrap()
            .get(i)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    /// The bucket's filesystem, connecting on first use.
    async fn fs(&self, i: usize) -> Result<Arc<Fs>> {
        let slot = self.slot(i)?;
        let fs = slot
            .fs
            .get_or_try_init(|| async {
                let store = self.service.open_bucket(&slot.name).await?;
                let fs = Arc::new(Fs::new(store, "", self.cfg.clone()));
                if let Some(inv) = self.invalidator.lock().unwrap().clone() {
                    fs.set_invalidator(Box::new(Relay {
                        slot: i,
                        inner: inv,
                    }));
                }
                Ok::<_, FsError>(fs)
            })
            .await?;
        Ok(fs.clone())
    }

    fn root_attr(&self) -> Attr {
        Attr {
            ino: ROOT_INO,
            kind: Kind::Dir,
            size: 0,
            mtime: self.mount_time,
            perm: self.cfg.dir_mode,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
        }
    }

    fn bucket_attr(&self, i: usize, created: SystemTime) -> Attr {
        Attr {
            ino: encode(i, ROOT_INO),
            mtime: created,
            ..self.root_attr()
        }
    }
}

macro_rules! route {
    ($self:ident, $n:expr, |$fs:ident, $local:ident, $slot:ident| $body:expr, root => $root:expr) => {
        match $self {
            Tree::One($fs) => {
                let $local = $n;
                let $slot = None::<usize>;
                let _ = $slot;
                $body
            }
            Tree::Buckets(b) => match decode($n) {
                (None, _) => $root,
                (Some(s), $local) => {
                    let $fs = b.fs(s).await?;
                    let $slot = Some(s);
                    let _ = $slot;
                    $body
                }
            },
        }
    };
}

/// Map an inner attribute to the tree's numbering.
fn out(slot: Option<usize>, a: Attr) -> Attr {
    match slot {
        Some(s) => map_attr(s, a),
        None => a,
    }
}

fn out_fh(slot: Option<usize>, fh: u64) -> u64 {
    match slot {
        Some(s) => encode(s, fh),
        None => fh,
    }
}

fn root_only() -> FsError {
    FsError::NotSupported("only buckets (directories) live at the root of a buckets mount")
}

impl Tree {
    /// Kernel cache TTL.
    pub fn ttl(&self) -> Duration {
        match self {
            Tree::One(fs) => fs.ttl(),
            Tree::Buckets(b) => b.cfg.metadata_ttl,
        }
    }

    /// Install the kernel-cache invalidator.
    pub fn set_invalidator(&self, inv: Arc<dyn Invalidator>) {
        match self {
            Tree::One(fs) => fs.set_invalidator(Box::new(Relay0(inv))),
            Tree::Buckets(b) => *b.invalidator.lock().unwrap() = Some(inv),
        }
    }

    /// See [`Fs::lookup`].
    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Attr> {
        route!(self, parent, |fs, local, slot| Ok(out(slot, fs.lookup(local, name).await?)),
        root => {
            let Tree::Buckets(b) = self else { unreachable!() };
            check_name(name)?;
            let known = b.slots.lock().unwrap().iter().position(|s| s.name == name);
            let i = match known {
                Some(i) => i,
                None => {
                    let list = b.service.list_buckets().await?;
                    let Some((n, t)) = list.into_iter().find(|(n, _)| n == name) else {
                        return Err(FsError::NotFound);
                    };
                    b.slot_of(&n, t).0
                }
            };
            let created = b.slot(i)?.created;
            Ok(b.bucket_attr(i, created))
        })
    }

    /// See [`Fs::forget`].
    pub fn forget(&self, ino: Ino, n: u64) {
        match self {
            Tree::One(fs) => fs.forget(ino, n),
            Tree::Buckets(b) => {
                if let (Some(s), local) = decode(ino)
                    && let Ok(slot) = b.slot(s)
                    && let Some(fs) = slot.fs.get()
                {
                    fs.forget(local, n);
                }
            }
        }
    }

    /// See [`Fs::getattr`].
    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        route!(self, ino, |fs, local, slot| {
            let a = fs.getattr(local).await?;
            Ok(match (slot, self) {
                (Some(s), Tree::Buckets(b)) if local == ROOT_INO => b.bucket_attr(s, b.slot(s)?.created),
                _ => out(slot, a),
            })
        }, root => {
            let Tree::Buckets(b) = self else { unreachable!() };
            Ok(b.root_attr())
        })
    }

    /// See [`Fs::setattr`].
    pub async fn setattr(&self, ino: Ino, change: SetAttr, fh: Option<u64>) -> Result<Attr> {
        route!(self, ino, |fs, local, slot| Ok(out(slot, fs.setattr(local, change, fh.map(|f| decode(f).1)).await?)),
            root => Err(root_only()))
    }

    /// See [`Fs::opendir`].
    pub async fn opendir(&self, ino: Ino) -> Result<u64> {
        route!(self, ino, |fs, local, slot| Ok(out_fh(slot, fs.opendir(local)?)),
            root => Ok(0))
    }

    /// See [`Fs::readdir`]; the root of a buckets view lists the buckets.
    pub async fn readdir(&self, ino: Ino, fh: u64, offset: u64) -> Result<Arc<Vec<Listed>>> {
        route!(self, ino, |fs, _local, slot| fs.readdir(decode(fh).1, offset).await,
        root => {
            let Tree::Buckets(b) = self else { unreachable!() };
            let list = b.service.list_buckets().await?;
            Ok(Arc::new(
                list.into_iter()
                    .map(|(name, t)| {
                        b.slot_of(&name, t);
                        Listed { name, kind: Kind::Dir, stat: Stat::new(0, t, None) }
                    })
                    .collect(),
            ))
        })
    }

    /// The bucket's filesystem if it is connected already (sync paths: a directory's
    /// entries are only handed out after its bucket was entered).
    fn connected(&self, s: usize) -> Result<Arc<Fs>> {
        let Tree::Buckets(b) = self else {
            unreachable!("only the buckets view has slots")
        };
        b.slot(s)?.fs.get().cloned().ok_or(FsError::NotFound)
    }

    /// See [`Fs::entry`].
    pub fn entry(&self, parent: Ino, e: &Listed, lookups: u64) -> Result<Attr> {
        match (self, decode(parent)) {
            (Tree::One(fs), _) => Ok(fs.entry(parent, e, lookups)),
            (Tree::Buckets(b), (None, _)) => {
                let (i, slot) = b.slot_of(&e.name, e.stat.mtime);
                Ok(b.bucket_attr(i, slot.created))
            }
            (Tree::Buckets(_), (Some(s), local)) => {
                Ok(map_attr(s, self.connected(s)?.entry(local, e, lookups)))
            }
        }
    }

    /// See [`Fs::cached_attr`].
    pub fn cached_attr(&self, ino: Ino) -> Result<Attr> {
        match (self, decode(ino)) {
            (Tree::One(fs), _) => fs.cached_attr(ino),
            (Tree::Buckets(b), (None, _)) => Ok(b.root_attr()),
            (Tree::Buckets(b), (Some(s), ROOT_INO)) => Ok(b.bucket_attr(s, b.slot(s)?.created)),
            (Tree::Buckets(_), (Some(s), local)) => {
                Ok(map_attr(s, self.connected(s)?.cached_attr(local)?))
            }
        }
    }

    /// See [`Fs::parent_of`]; a bucket's parent is the buckets root.
    pub fn parent_of(&self, ino: Ino) -> Ino {
        match (self, decode(ino)) {
            (Tree::One(fs), _) => fs.parent_of(ino),
            (Tree::Buckets(_), (None, _) | (Some(_), ROOT_INO)) => ROOT_INO,
            (Tree::Buckets(_), (Some(s), local)) => match self.connected(s) {
                Ok(fs) => match fs.parent_of(local) {
                    ROOT_INO => encode(s, ROOT_INO),
                    p => encode(s, p),
                },
                Err(_) => ROOT_INO,
            },
        }
    }

    /// See [`Fs::releasedir`].
    pub async fn releasedir(&self, ino: Ino, fh: u64) -> Result<()> {
        route!(self, ino, |fs, _local, slot| {
            fs.releasedir(decode(fh).1);
            Ok(())
        }, root => Ok(()))
    }

    /// See [`Fs::mkdir`]; at the root of a buckets view, CreateBucket.
    pub async fn mkdir(&self, parent: Ino, name: &str, mode: u32, caller: Caller) -> Result<Attr> {
        route!(self, parent, |fs, local, slot| Ok(out(slot, fs.mkdir(local, name, mode, caller).await?)),
        root => {
            let Tree::Buckets(b) = self else { unreachable!() };
            if b.cfg.read_only {
                return Err(FsError::ReadOnly);
            }
            bucket_name(name)?;
            b.service.create_bucket(name).await?;
            let (i, slot) = b.slot_of(name, SystemTime::now());
            Ok(b.bucket_attr(i, slot.created))
        })
    }

    /// See [`Fs::rmdir`]; at the root of a buckets view, DeleteBucket of an empty bucket.
    pub async fn rmdir(&self, parent: Ino, name: &str) -> Result<()> {
        route!(self, parent, |fs, local, slot| fs.rmdir(local, name).await,
        root => {
            let Tree::Buckets(b) = self else { unreachable!() };
            if b.cfg.read_only {
                return Err(FsError::ReadOnly);
            }
            if b.cfg.no_delete {
                return Err(FsError::Guarded("--no-delete"));
            }
            match b.service.delete_bucket(name).await {
                Ok(()) => {
                    b.slots.lock().unwrap().retain(|s| s.name != name);
                    Ok(())
                }
                Err(e) if e.code.as_deref() == Some("BucketNotEmpty") => Err(FsError::NotEmpty),
                Err(e) if e.kind == ErrorKind::NotFound || e.kind == ErrorKind::NoSuchBucket => {
                    Err(FsError::NotFound)
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// See [`Fs::unlink`].
    pub async fn unlink(&self, parent: Ino, name: &str) -> Result<()> {
        route!(self, parent, |fs, local, slot| fs.unlink(local, name).await, root => Err(FsError::NotFound))
    }

    /// See [`Fs::symlink`].
    pub async fn symlink(
        &self,
        parent: Ino,
        name: &str,
        target: &str,
        caller: Caller,
    ) -> Result<Attr> {
        route!(self, parent, |fs, local, slot| Ok(out(slot, fs.symlink(local, name, target, caller).await?)),
            root => Err(root_only()))
    }

    /// See [`Fs::readlink`].
    pub async fn readlink(&self, ino: Ino) -> Result<String> {
        route!(self, ino, |fs, local, slot| fs.readlink(local).await, root => Err(FsError::IsDir))
    }

    /// See [`Fs::rename`]; moving between buckets is EXDEV (tools copy instead).
    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        if let Tree::Buckets(_) = self {
            let (a, b) = (decode(parent).0, decode(new_parent).0);
            if a.is_none() || b.is_none() {
                return Err(root_only());
            }
            if a != b {
                return Err(FsError::CrossDevice);
            }
        }
        route!(self, parent, |fs, local, slot| fs.rename(local, name, decode(new_parent).1, new_name, no_replace).await,
            root => Err(root_only()))
    }

    /// See [`Fs::create`].
    pub async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        caller: Caller,
    ) -> Result<(Attr, u64)> {
        route!(self, parent, |fs, local, slot| {
            let (a, fh) = fs.create(local, name, mode, caller).await?;
            Ok((out(slot, a), out_fh(slot, fh)))
        }, root => Err(root_only()))
    }

    /// See [`Fs::open`].
    pub async fn open(&self, ino: Ino, mode: OpenMode, caller: Caller) -> Result<Opened> {
        route!(self, ino, |fs, local, slot| {
            let o = fs.open(local, mode, caller).await?;
            Ok(Opened { fh: out_fh(slot, o.fh), keep_cache: o.keep_cache })
        }, root => Err(FsError::IsDir))
    }

    /// See [`Fs::read`].
    pub async fn read(&self, fh: u64, off: u64, len: u32) -> Result<Bytes> {
        route!(self, fh, |fs, local, slot| fs.read(local, off, len).await, root => Err(FsError::BadHandle))
    }

    /// See [`Fs::write`].
    pub async fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        route!(self, fh, |fs, local, slot| fs.write(local, off, data).await, root => Err(FsError::BadHandle))
    }

    /// See [`Fs::flush`].
    pub async fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        route!(self, fh, |fs, local, slot| fs.flush(local, pid).await, root => Ok(()))
    }

    /// See [`Fs::fsync`].
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        route!(self, fh, |fs, local, slot| fs.fsync(local).await, root => Ok(()))
    }

    /// See [`Fs::release`].
    pub async fn release(&self, fh: u64) -> Result<()> {
        route!(self, fh, |fs, local, slot| fs.release(local).await, root => Ok(()))
    }

    /// See [`Fs::getxattr`].
    pub async fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        route!(self, ino, |fs, local, slot| fs.getxattr(local, name).await, root => Err(FsError::NoAttr))
    }

    /// See [`Fs::listxattr`].
    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<String>> {
        route!(self, ino, |fs, local, slot| fs.listxattr(local).await, root => Ok(Vec::new()))
    }

    /// See [`Fs::setxattr`].
    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<()> {
        route!(self, ino, |fs, local, slot| fs.setxattr(local, name, value, create, replace).await,
            root => Err(root_only()))
    }

    /// See [`Fs::removexattr`].
    pub async fn removexattr(&self, ino: Ino, name: &str) -> Result<()> {
        route!(self, ino, |fs, local, slot| fs.removexattr(local, name).await, root => Err(FsError::NoAttr))
    }

    /// Commit what is still being written, in every bucket.
    pub async fn shutdown(&self) {
        match self {
            Tree::One(fs) => fs.shutdown().await,
            Tree::Buckets(b) => {
                let slots: Vec<Arc<Slot>> = b.slots.lock().unwrap().clone();
                for s in slots {
                    if let Some(fs) = s.fs.get() {
                        fs.shutdown().await;
                    }
                }
            }
        }
    }
}

/// Forwards a single bucket's invalidations unchanged.
struct Relay0(Arc<dyn Invalidator>);

impl Invalidator for Relay0 {
    fn entry_gone(&self, parent: Ino, name: &str) {
        self.0.entry_gone(parent, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::memory::MemoryStore;

    struct Service(Mutex<Vec<(String, Arc<MemoryStore>)>>);

    #[async_trait]
    impl BucketService for Service {
        async fn list_buckets(&self) -> std::result::Result<Vec<(String, SystemTime)>, StoreError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|(n, _)| (n.clone(), SystemTime::UNIX_EPOCH))
                .collect())
        }
        async fn open_bucket(
            &self,
            bucket: &str,
        ) -> std::result::Result<Arc<dyn ObjectStore>, StoreError> {
            let l = self.0.lock().unwrap();
            let s = l.iter().find(|(n, _)| n == bucket).map(|(_, s)| s.clone());
            s.map(|s| s as Arc<dyn ObjectStore>)
                .ok_or_else(|| StoreError::new("HeadBucket", bucket, ErrorKind::NoSuchBucket))
        }
        async fn create_bucket(&self, bucket: &str) -> std::result::Result<(), StoreError> {
            self.0
                .lock()
                .unwrap()
                .push((bucket.into(), Arc::new(MemoryStore::new(bucket, 100))));
            Ok(())
        }
        async fn delete_bucket(&self, bucket: &str) -> std::result::Result<(), StoreError> {
            let mut l = self.0.lock().unwrap();
            if l.iter().any(|(n, s)| n == bucket && !s.keys().is_empty()) {
                let mut e = StoreError::new("DeleteBucket", bucket, ErrorKind::InvalidRequest);
                e.code = Some("BucketNotEmpty".into());
                return Err(e);
            }
            l.retain(|(n, _)| n != bucket);
            Ok(())
        }
    }

    #[tokio::test]
    async fn buckets_are_folders() {
        let a = Arc::new(MemoryStore::new("alpha", 100));
        a.insert("dir/file.txt", "in alpha");
        let svc = Arc::new(Service(Mutex::new(vec![("alpha".into(), a.clone())])));
        let t = Tree::Buckets(Box::new(Buckets::new(
            svc.clone(),
            crate::config::FsConfig::default(),
        )));
        let fh = t.opendir(ROOT_INO).await.unwrap();
        let names: Vec<_> = t
            .readdir(ROOT_INO, fh, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, vec!["alpha"]);
        let alpha = t.lookup(ROOT_INO, "alpha").await.unwrap();
        assert_eq!(alpha.kind, Kind::Dir);
        assert_eq!(t.parent_of(alpha.ino), ROOT_INO);
        let dir = t.lookup(alpha.ino, "dir").await.unwrap();
        let f = t.lookup(dir.ino, "file.txt").await.unwrap();
        assert_eq!(t.parent_of(f.ino), dir.ino);
        let o = t
            .open(f.ino, OpenMode::default(), Caller::default())
            .await
            .unwrap();
        assert_eq!(&t.read(o.fh, 0, 100).await.unwrap()[..], b"in alpha");
        t.release(o.fh).await.unwrap();

        let beta = t
            .mkdir(ROOT_INO, "beta", 0o755, Caller::default())
            .await
            .unwrap();
        let (_, wfh) = t
            .create(beta.ino, "new", 0o644, Caller::default())
            .await
            .unwrap();
        t.write(wfh, 0, b"in beta").await.unwrap();
        t.release(wfh).await.unwrap();
        assert!(matches!(
            t.rmdir(ROOT_INO, "beta").await,
            Err(FsError::NotEmpty)
        ));
        assert!(matches!(
            t.rename(dir.ino, "file.txt", beta.ino, "moved", false)
                .await,
            Err(FsError::CrossDevice)
        ));
        let b = t.lookup(beta.ino, "new").await.unwrap();
        t.unlink(beta.ino, "new").await.unwrap();
        let _ = b;
        t.rmdir(ROOT_INO, "beta").await.unwrap();
        assert!(matches!(
            t.lookup(ROOT_INO, "beta").await,
            Err(FsError::NotFound)
        ));
        assert!(matches!(
            t.lookup(ROOT_INO, "Bad_Name").await,
            Err(FsError::NotFound)
        ));
    }
}
