//! Replies: core errors to errnos (and the one log line per failure), core attributes to
//! the kernel's, and the small reply shapes several requests share.

use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileType, Generation, INodeNo, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr,
};
use tracing::{debug, error, warn};

use crate::fs::{Attr, FsError, Kind};
use crate::s3::ErrorKind;

/// Map a core error to the errno the caller sees.
pub fn errno(e: &FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::ReadOnly | FsError::ShuttingDown => Errno::EROFS,
        FsError::InvalidName(_) => Errno::EINVAL,
        FsError::NameTooLong => Errno::ENAMETOOLONG,
        FsError::Busy(_) => Errno::EBUSY,
        FsError::NotSupported(_) => Errno::from_i32(libc::EOPNOTSUPP),
        FsError::OutOfOrderWrite { .. } => Errno::EINVAL,
        FsError::FileTooLarge => Errno::EFBIG,
        FsError::BadHandle => Errno::EBADF,
        FsError::AlreadyCommitted => Errno::EIO,
        FsError::Guarded(_) => Errno::EPERM,
        FsError::PartialRename(_) => Errno::EIO,
        FsError::NoAttr => Errno::from_i32(libc::ENODATA),
        FsError::AttrNamespaceUnsupported => Errno::from_i32(libc::EOPNOTSUPP),
        FsError::NoSpaceForAttr => Errno::ENOSPC,
        FsError::ReadOnlyAttr => Errno::EPERM,
        FsError::CrossDevice => Errno::EXDEV,
        FsError::Store(s) => match s.kind {
            ErrorKind::NotFound => Errno::ENOENT,
            ErrorKind::AccessDenied | ErrorKind::InvalidCredentials => Errno::EACCES,
            ErrorKind::TooLarge => Errno::EFBIG,
            ErrorKind::NoSpace => Errno::ENOSPC,
            _ => Errno::EIO,
        },
    }
}

/// Log a failed request once, at a level matching how surprising it is.
pub(super) fn log_failure(op: &'static str, e: &FsError) {
    match e {
        // Everyday answers: not worth more than a debug line.
        FsError::NotFound
        | FsError::Exists
        | FsError::NotEmpty
        | FsError::NameTooLong
        | FsError::NoAttr
        | FsError::AttrNamespaceUnsupported => {
            debug!(op, error = %e, "request failed")
        }
        FsError::Store(s) => error!(
            op,
            s3_operation = s.op,
            key = %s.key,
            aws_code = s.code.as_deref().unwrap_or("-"),
            "{e}"
        ),
        _ => warn!(op, "{e}"),
    }
}

pub(super) fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Special(t) => match t {
            libc::S_IFIFO => FileType::NamedPipe,
            libc::S_IFCHR => FileType::CharDevice,
            libc::S_IFBLK => FileType::BlockDevice,
            _ => FileType::Socket,
        },
    }
}

pub(super) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: if a.kind == Kind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 128 * 1024,
        flags: 0,
    }
}

/// A reply that can carry an error (every fuser reply type can).
pub(super) trait ErrorReply: Send + 'static {
    fn fail(self, e: Errno);
}

macro_rules! error_reply {
    ($($t:ty),*) => {$(
        impl ErrorReply for $t {
            fn fail(self, e: Errno) {
                self.error(e)
            }
        }
    )*};
}
error_reply!(
    ReplyXattr,
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyWrite
);

/// Answer with an entry (lookup, mkdir, symlink): attributes and TTL.
pub(super) fn reply_entry(r: ReplyEntry, (a, ttl): (Attr, Duration)) {
    r.entry(&ttl, &file_attr(&a), Generation(0));
}

/// Answer a getxattr/listxattr: the size when asked for it, ERANGE when the buffer is small.
pub(super) fn xattr_reply(r: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        r.size(value.len() as u32);
    } else if value.len() > size as usize {
        r.error(Errno::from_i32(libc::ERANGE));
    } else {
        r.data(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::StoreError;

    #[test]
    fn store_errors_map_to_precise_errnos() {
        let e = |k| FsError::Store(StoreError::new("GetObject", "k", k));
        assert_eq!(errno(&e(ErrorKind::AccessDenied)), Errno::EACCES);
        assert_eq!(errno(&e(ErrorKind::NotFound)), Errno::ENOENT);
        assert_eq!(errno(&e(ErrorKind::Throttled)), Errno::EIO);
        assert_eq!(errno(&e(ErrorKind::ServerError)), Errno::EIO);
        assert_eq!(errno(&e(ErrorKind::NoSpace)), Errno::ENOSPC);
        assert_eq!(errno(&FsError::ReadOnly), Errno::EROFS);
        assert_eq!(errno(&FsError::NotEmpty), Errno::ENOTEMPTY);
    }
}
