//! The operations of [`Fs`], by concern: finding names ([`lookup`]), directory contents
//! and names ([`namespace`]), open files ([`files`]), attributes and extended attributes
//! ([`attrs`]); and `Fs` as a [`Tree`], the seam the FUSE adapter calls through.

mod attrs;
mod files;
mod lookup;
mod namespace;
mod times;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Attr, Caller, Fs, Ino, Invalidator, Listed, OpenMode, Opened, Result, SetAttr, Tree};

/// A single bucket (or path) mount: every call goes straight to the `Fs` operation.
#[async_trait]
impl Tree for Fs {
    fn ttl(&self) -> Duration {
        Fs::ttl(self)
    }

    fn set_invalidator(&self, inv: Arc<dyn Invalidator>) {
        Fs::set_invalidator(self, inv)
    }

    async fn lookup(&self, parent: Ino, name: &str) -> Result<Attr> {
        Fs::lookup(self, parent, name).await
    }

    fn forget(&self, ino: Ino, n: u64) {
        Fs::forget(self, ino, n)
    }

    async fn getattr(&self, ino: Ino) -> Result<Attr> {
        Fs::getattr(self, ino).await
    }

    async fn setattr(&self, ino: Ino, change: SetAttr, fh: Option<u64>) -> Result<Attr> {
        Fs::setattr(self, ino, change, fh).await
    }

    async fn opendir(&self, ino: Ino) -> Result<u64> {
        Fs::opendir(self, ino)
    }

    async fn readdir(&self, _ino: Ino, fh: u64, pos: u64, rewind: bool) -> Result<Vec<Listed>> {
        Fs::readdir(self, fh, pos, rewind).await
    }

    fn entry(&self, parent: Ino, e: &Listed, lookups: u64) -> Result<Attr> {
        Ok(Fs::entry(self, parent, e, lookups))
    }

    fn entry_ttl(&self, ino: Ino) -> Duration {
        Fs::entry_ttl(self, ino)
    }

    fn cached_attr(&self, ino: Ino) -> Result<Attr> {
        Fs::cached_attr(self, ino)
    }

    fn parent_of(&self, ino: Ino) -> Ino {
        Fs::parent_of(self, ino)
    }

    async fn releasedir(&self, _ino: Ino, fh: u64) -> Result<()> {
        Fs::releasedir(self, fh);
        Ok(())
    }

    async fn mkdir(&self, parent: Ino, name: &str, mode: u32, caller: Caller) -> Result<Attr> {
        Fs::mkdir(self, parent, name, mode, caller).await
    }

    async fn rmdir(&self, parent: Ino, name: &str) -> Result<()> {
        Fs::rmdir(self, parent, name).await
    }

    async fn unlink(&self, parent: Ino, name: &str) -> Result<()> {
        Fs::unlink(self, parent, name).await
    }

    async fn symlink(&self, parent: Ino, name: &str, target: &str, caller: Caller) -> Result<Attr> {
        Fs::symlink(self, parent, name, target, caller).await
    }

    async fn readlink(&self, ino: Ino) -> Result<String> {
        Fs::readlink(self, ino).await
    }

    async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> Result<Attr> {
        Fs::mknod(self, parent, name, mode, rdev, caller).await
    }

    async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        Fs::rename(self, parent, name, new_parent, new_name, no_replace).await
    }

    async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        exclusive: bool,
        caller: Caller,
    ) -> Result<(Attr, u64)> {
        Fs::create(self, parent, name, mode, exclusive, caller).await
    }

    async fn open(&self, ino: Ino, mode: OpenMode, caller: Caller) -> Result<Opened> {
        Fs::open(self, ino, mode, caller).await
    }

    async fn read(&self, fh: u64, off: u64, len: u32) -> Result<Bytes> {
        Fs::read(self, fh, off, len).await
    }

    async fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        Fs::write(self, fh, off, data).await
    }

    async fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        Fs::flush(self, fh, pid).await
    }

    async fn fsync(&self, fh: u64) -> Result<()> {
        Fs::fsync(self, fh).await
    }

    async fn release(&self, fh: u64) -> Result<()> {
        Fs::release(self, fh).await
    }

    async fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        Fs::getxattr(self, ino, name).await
    }

    async fn listxattr(&self, ino: Ino) -> Result<Vec<String>> {
        Fs::listxattr(self, ino).await
    }

    async fn setxattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<()> {
        Fs::setxattr(self, ino, name, value, create, replace).await
    }

    async fn removexattr(&self, ino: Ino, name: &str) -> Result<()> {
        Fs::removexattr(self, ino, name).await
    }

    fn stop_new_writers(&self) -> usize {
        Fs::stop_new_writers(self)
    }

    async fn shutdown(&self) -> usize {
        Fs::shutdown(self).await
    }

    async fn persist_dir_times(&self) {
        Fs::persist_dir_times(self).await
    }

    async fn abort(&self) {
        Fs::abort(self).await
    }
}
