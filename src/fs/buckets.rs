//! Every bucket the credentials can see, as a folder of its own.
//!
//! Each bucket is a separate [`Fs`], connected lazily (in its own region) the first time it
//! is entered. Inode numbers and file handles of a bucket carry the bucket's slot number in
//! their top bits, so the kernel sees one consistent numbering; slot numbers are handed out
//! once and never reused while the mount lives, so deleting one bucket cannot renumber
//! another's open files. The root (1) lists the buckets, `mkdir` there creates one and
//! `rmdir` deletes an empty one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::meta::inode::Stat;
use super::read::DiskCache;
use super::{
    Attr, Caller, Fs, FsConfig, FsError, Ino, Invalidator, Kind, Listed, OpenMode, Opened,
    ROOT_INO, Result, SetAttr, Tree, check_name,
};
use crate::s3::ErrorKind;
use crate::s3::buckets::{BucketService, validate_bucket_name};

/// Bits of an inode number (or file handle) that belong to one bucket's [`Fs`].
const SHIFT: u32 = 40;
const LOCAL: u64 = (1 << SHIFT) - 1;

struct Slot {
    name: String,
    created: SystemTime,
    fs: tokio::sync::OnceCell<Arc<Fs>>,
}

/// The buckets seen so far, by slot number and by name.
#[derive(Default)]
struct Slots {
    by_id: HashMap<usize, Arc<Slot>>,
    by_name: HashMap<String, usize>,
    next: usize,
}

/// Every bucket as a folder.
pub struct Buckets {
    service: Arc<dyn BucketService>,
    cfg: FsConfig,
    /// The mount's read cache on disk, shared by every bucket (keys name the bucket).
    disk: Option<Arc<DiskCache>>,
    slots: Mutex<Slots>,
    invalidator: Mutex<Option<Arc<dyn Invalidator>>>,
    mount_time: SystemTime,
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

fn root_only() -> FsError {
    FsError::NotSupported("only buckets (directories) live at the root of a buckets mount")
}

/// Where an inode number or handle of the buckets view leads.
enum Route {
    /// The buckets root itself.
    Root,
    /// Inode or handle `local` of the bucket in `slot`.
    Bucket {
        slot: usize,
        fs: Arc<Fs>,
        local: u64,
    },
}

/// Passes a bucket's invalidations on in the buckets view's numbering.
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
    pub fn new(service: Arc<dyn BucketService>, cfg: FsConfig) -> Self {
        Buckets {
            service,
            cfg,
            disk: None,
            slots: Mutex::new(Slots::default()),
            invalidator: Mutex::new(None),
            mount_time: SystemTime::now(),
        }
    }

    /// Every bucket's reads go through `disk` too.
    pub fn with_disk_cache(mut self, disk: Option<Arc<DiskCache>>) -> Self {
        self.disk = disk;
        self
    }

    /// The slot of bucket `name`, made on first sight.
    fn slot_of(&self, name: &str, created: SystemTime) -> (usize, Arc<Slot>) {
        let mut slots = self.slots.lock().unwrap();
        if let Some(&i) = slots.by_name.get(name) {
            return (i, slots.by_id[&i].clone());
        }
        let slot = Arc::new(Slot {
            name: name.to_owned(),
            created,
            fs: tokio::sync::OnceCell::new(),
        });
        let i = slots.next;
        slots.next += 1;
        slots.by_id.insert(i, slot.clone());
        slots.by_name.insert(name.to_owned(), i);
        (i, slot)
    }

    fn slot(&self, i: usize) -> Result<Arc<Slot>> {
        self.slots
            .lock()
            .unwrap()
            .by_id
            .get(&i)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    fn forget_slot(&self, name: &str) {
        let mut slots = self.slots.lock().unwrap();
        if let Some(i) = slots.by_name.remove(name) {
            slots.by_id.remove(&i);
        }
    }

    /// The bucket's filesystem, connecting on first use.
    async fn fs(&self, i: usize) -> Result<Arc<Fs>> {
        let slot = self.slot(i)?;
        let fs = slot
            .fs
            .get_or_try_init(|| async {
                let store = self.service.open_bucket(&slot.name).await?;
                let fs = Arc::new(
                    Fs::new(store, "", self.cfg.clone()).with_disk_cache(self.disk.clone()),
                );
                if let Some(inv) = self.invalidator.lock().unwrap().clone() {
                    fs.set_invalidator(Arc::new(Relay {
                        slot: i,
                        inner: inv,
                    }));
                }
                Ok::<_, FsError>(fs)
            })
            .await?;
        Ok(fs.clone())
    }

    /// Where `n` (an inode number or handle) leads, connecting its bucket if needed.
    async fn route(&self, n: u64) -> Result<Route> {
        match decode(n) {
            (None, _) => Ok(Route::Root),
            (Some(slot), local) => Ok(Route::Bucket {
                slot,
                fs: self.fs(slot).await?,
                local,
            }),
        }
    }

    /// The bucket's filesystem if it is connected already (sync paths: a directory's
    /// entries are only handed out after its bucket was entered).
    fn connected(&self, slot: usize) -> Result<Arc<Fs>> {
        self.slot(slot)?.fs.get().cloned().ok_or(FsError::NotFound)
    }

    /// Every bucket entered so far.
    fn connected_buckets(&self) -> Vec<Arc<Fs>> {
        let slots = self.slots.lock().unwrap();
        slots
            .by_id
            .values()
            .filter_map(|s| s.fs.get().cloned())
            .collect()
    }

    fn root_attr(&self) -> Attr {
        Attr {
            ino: ROOT_INO,
            kind: Kind::Dir,
            size: 0,
            mtime: self.mount_time,
            atime: self.mount_time,
            ctime: self.mount_time,
            perm: self.cfg.dir_mode,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            rdev: 0,
        }
    }

    fn bucket_attr(&self, i: usize, created: SystemTime) -> Attr {
        Attr {
            ino: encode(i, ROOT_INO),
            mtime: created,
            atime: created,
            ctime: created,
            ..self.root_attr()
        }
    }

    /// A bucket's folder at the root: known already, else looked for in ListBuckets.
    async fn lookup_bucket(&self, name: &str) -> Result<Attr> {
        check_name(name)?;
        let known = self.slots.lock().unwrap().by_name.get(name).copied();
        let i = match known {
            Some(i) => i,
            None => {
                let list = self.service.list_buckets().await?;
                let Some((n, t)) = list.into_iter().find(|(n, _)| n == name) else {
                    return Err(FsError::NotFound);
                };
                self.slot_of(&n, t).0
            }
        };
        Ok(self.bucket_attr(i, self.slot(i)?.created))
    }

    /// `mkdir` at the root: CreateBucket.
    async fn create_bucket(&self, name: &str) -> Result<Attr> {
        self.cfg.guards().writable()?;
        validate_bucket_name(name).map_err(FsError::InvalidName)?;
        self.service.create_bucket(name).await?;
        let (i, slot) = self.slot_of(name, SystemTime::now());
        Ok(self.bucket_attr(i, slot.created))
    }

    /// `rmdir` at the root: DeleteBucket of an empty bucket.
    async fn delete_bucket(&self, name: &str) -> Result<()> {
        self.cfg.guards().delete()?;
        match self.service.delete_bucket(name).await {
            Ok(()) => {
                self.forget_slot(name);
                Ok(())
            }
            Err(e) if e.code.as_deref() == Some("BucketNotEmpty") => Err(FsError::NotEmpty),
            Err(e) if e.kind == ErrorKind::NotFound || e.kind == ErrorKind::NoSuchBucket => {
                Err(FsError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl Tree for Buckets {
    fn ttl(&self) -> Duration {
        self.cfg.metadata_ttl
    }

    fn set_invalidator(&self, inv: Arc<dyn Invalidator>) {
        *self.invalidator.lock().unwrap() = Some(inv);
    }

    async fn lookup(&self, parent: Ino, name: &str) -> Result<Attr> {
        match self.route(parent).await? {
            Route::Root => self.lookup_bucket(name).await,
            Route::Bucket { slot, fs, local } => Ok(map_attr(slot, fs.lookup(local, name).await?)),
        }
    }

    fn forget(&self, ino: Ino, n: u64) {
        if let (Some(s), local) = decode(ino)
            && let Ok(fs) = self.connected(s)
        {
            fs.forget(local, n);
        }
    }

    async fn getattr(&self, ino: Ino) -> Result<Attr> {
        match self.route(ino).await? {
            Route::Root => Ok(self.root_attr()),
            Route::Bucket { slot, local, .. } if local == ROOT_INO => {
                Ok(self.bucket_attr(slot, self.slot(slot)?.created))
            }
            Route::Bucket { slot, fs, local } => Ok(map_attr(slot, fs.getattr(local).await?)),
        }
    }

    async fn setattr(&self, ino: Ino, change: SetAttr, fh: Option<u64>) -> Result<Attr> {
        match self.route(ino).await? {
            Route::Root => Err(root_only()),
            Route::Bucket { slot, fs, local } => {
                let fh = fh.map(|f| decode(f).1);
                Ok(map_attr(slot, fs.setattr(local, change, fh).await?))
            }
        }
    }

    async fn opendir(&self, ino: Ino) -> Result<u64> {
        match self.route(ino).await? {
            Route::Root => Ok(0),
            Route::Bucket { slot, fs, local } => Ok(encode(slot, fs.opendir(local)?)),
        }
    }

    async fn readdir(&self, ino: Ino, fh: u64, pos: u64, rewind: bool) -> Result<Vec<Listed>> {
        match self.route(ino).await? {
            Route::Bucket { fs, .. } => fs.readdir(decode(fh).1, pos, rewind).await,
            Route::Root => {
                // Few enough to list whole at every call.
                let list = self.service.list_buckets().await?;
                Ok(list
                    .into_iter()
                    .map(|(name, t)| {
                        self.slot_of(&name, t);
                        Listed {
                            name,
                            kind: Kind::Dir,
                            stat: Stat::new(0, t, None),
                        }
                    })
                    .skip(pos as usize)
                    .collect())
            }
        }
    }

    fn entry(&self, parent: Ino, e: &Listed, lookups: u64) -> Result<Attr> {
        match decode(parent) {
            (None, _) => {
                let (i, slot) = self.slot_of(&e.name, e.stat.mtime);
                Ok(self.bucket_attr(i, slot.created))
            }
            (Some(s), local) => Ok(map_attr(s, self.connected(s)?.entry(local, e, lookups))),
        }
    }

    fn entry_ttl(&self, ino: Ino) -> Duration {
        match decode(ino) {
            (Some(s), local) => self
                .connected(s)
                .map_or(self.cfg.metadata_ttl, |fs| fs.entry_ttl(local)),
            (None, _) => self.cfg.metadata_ttl,
        }
    }

    fn cached_attr(&self, ino: Ino) -> Result<Attr> {
        match decode(ino) {
            (None, _) => Ok(self.root_attr()),
            (Some(s), ROOT_INO) => Ok(self.bucket_attr(s, self.slot(s)?.created)),
            (Some(s), local) => Ok(map_attr(s, self.connected(s)?.cached_attr(local)?)),
        }
    }

    fn parent_of(&self, ino: Ino) -> Ino {
        match decode(ino) {
            (None, _) | (Some(_), ROOT_INO) => ROOT_INO,
            (Some(s), local) => match self.connected(s) {
                Ok(fs) => encode(s, fs.parent_of(local)),
                Err(_) => ROOT_INO,
            },
        }
    }

    async fn releasedir(&self, ino: Ino, fh: u64) -> Result<()> {
        if let Route::Bucket { fs, .. } = self.route(ino).await? {
            fs.releasedir(decode(fh).1);
        }
        Ok(())
    }

    async fn mkdir(&self, parent: Ino, name: &str, mode: u32, caller: Caller) -> Result<Attr> {
        match self.route(parent).await? {
            Route::Root => self.create_bucket(name).await,
            Route::Bucket { slot, fs, local } => {
                Ok(map_attr(slot, fs.mkdir(local, name, mode, caller).await?))
            }
        }
    }

    async fn rmdir(&self, parent: Ino, name: &str) -> Result<()> {
        match self.route(parent).await? {
            Route::Root => self.delete_bucket(name).await,
            Route::Bucket { fs, local, .. } => fs.rmdir(local, name).await,
        }
    }

    async fn unlink(&self, parent: Ino, name: &str) -> Result<()> {
        match self.route(parent).await? {
            Route::Root => Err(FsError::NotFound),
            Route::Bucket { fs, local, .. } => fs.unlink(local, name).await,
        }
    }

    async fn symlink(&self, parent: Ino, name: &str, target: &str, caller: Caller) -> Result<Attr> {
        match self.route(parent).await? {
            Route::Root => Err(root_only()),
            Route::Bucket { slot, fs, local } => Ok(map_attr(
                slot,
                fs.symlink(local, name, target, caller).await?,
            )),
        }
    }

    async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> Result<Attr> {
        match self.route(parent).await? {
            Route::Root => Err(root_only()),
            Route::Bucket { slot, fs, local } => Ok(map_attr(
                slot,
                fs.mknod(local, name, mode, rdev, caller).await?,
            )),
        }
    }

    async fn readlink(&self, ino: Ino) -> Result<String> {
        match self.route(ino).await? {
            Route::Root => Err(FsError::IsDir),
            Route::Bucket { fs, local, .. } => fs.readlink(local).await,
        }
    }

    /// Moving between buckets is EXDEV (tools copy instead).
    async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        let (from, to) = (decode(parent), decode(new_parent));
        match (from.0, to.0) {
            (Some(a), Some(b)) if a == b => {
                let fs = self.fs(a).await?;
                fs.rename(from.1, name, to.1, new_name, no_replace).await
            }
            (Some(_), Some(_)) => Err(FsError::CrossDevice),
            _ => Err(root_only()),
        }
    }

    async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        exclusive: bool,
        caller: Caller,
    ) -> Result<(Attr, u64)> {
        match self.route(parent).await? {
            Route::Root => Err(root_only()),
            Route::Bucket { slot, fs, local } => {
                let (a, fh) = fs.create(local, name, mode, exclusive, caller).await?;
                Ok((map_attr(slot, a), encode(slot, fh)))
            }
        }
    }

    async fn open(&self, ino: Ino, mode: OpenMode, caller: Caller) -> Result<Opened> {
        match self.route(ino).await? {
            Route::Root => Err(FsError::IsDir),
            Route::Bucket { slot, fs, local } => {
                let o = fs.open(local, mode, caller).await?;
                Ok(Opened {
                    fh: encode(slot, o.fh),
                    keep_cache: o.keep_cache,
                })
            }
        }
    }

    async fn read(&self, fh: u64, off: u64, len: u32) -> Result<Bytes> {
        match self.route(fh).await? {
            Route::Root => Err(FsError::BadHandle),
            Route::Bucket { fs, local, .. } => fs.read(local, off, len).await,
        }
    }

    async fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        match self.route(fh).await? {
            Route::Root => Err(FsError::BadHandle),
            Route::Bucket { fs, local, .. } => fs.write(local, off, data).await,
        }
    }

    async fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        match self.route(fh).await? {
            Route::Root => Ok(()),
            Route::Bucket { fs, local, .. } => fs.flush(local, pid).await,
        }
    }

    async fn fsync(&self, fh: u64) -> Result<()> {
        match self.route(fh).await? {
            Route::Root => Ok(()),
            Route::Bucket { fs, local, .. } => fs.fsync(local).await,
        }
    }

    async fn release(&self, fh: u64) -> Result<()> {
        match self.route(fh).await? {
            Route::Root => Ok(()),
            Route::Bucket { fs, local, .. } => fs.release(local).await,
        }
    }

    async fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        match self.route(ino).await? {
            Route::Root => Err(FsError::NoAttr),
            Route::Bucket { fs, local, .. } => fs.getxattr(local, name).await,
        }
    }

    async fn listxattr(&self, ino: Ino) -> Result<Vec<String>> {
        match self.route(ino).await? {
            Route::Root => Ok(Vec::new()),
            Route::Bucket { fs, local, .. } => fs.listxattr(local).await,
        }
    }

    async fn setxattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<()> {
        match self.route(ino).await? {
            Route::Root => Err(root_only()),
            Route::Bucket { fs, local, .. } => {
                fs.setxattr(local, name, value, create, replace).await
            }
        }
    }

    async fn removexattr(&self, ino: Ino, name: &str) -> Result<()> {
        match self.route(ino).await? {
            Route::Root => Err(FsError::NoAttr),
            Route::Bucket { fs, local, .. } => fs.removexattr(local, name).await,
        }
    }

    fn stop_new_writers(&self) -> usize {
        self.connected_buckets()
            .iter()
            .map(|fs| fs.stop_new_writers())
            .sum()
    }

    async fn shutdown(&self) -> usize {
        let mut failed = 0;
        for fs in self.connected_buckets() {
            failed += fs.shutdown().await;
        }
        failed
    }

    async fn persist_dir_times(&self) {
        for fs in self.connected_buckets() {
            fs.persist_dir_times().await;
        }
    }

    async fn abort(&self) {
        for fs in self.connected_buckets() {
            fs.abort().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::memory::MemoryStore;
    use crate::s3::{ErrorKind, ObjectStore, StoreError};
    use async_trait::async_trait;
    use std::time::SystemTime;

    struct Service(Mutex<Vec<(String, Arc<MemoryStore>)>>);

    fn tree(svc: Arc<Service>) -> Buckets {
        Buckets::new(svc, FsConfig::default())
    }

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
        let t = tree(svc.clone());
        let fh = t.opendir(ROOT_INO).await.unwrap();
        let names: Vec<_> = t
            .readdir(ROOT_INO, fh, 0, false)
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
            .create(beta.ino, "new", 0o644, false, Caller::default())
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
