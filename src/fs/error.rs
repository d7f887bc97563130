//! The filesystem core's one error type. It says *what* went wrong in file-system terms;
//! the FUSE adapter turns it into an errno and logs it once.

use crate::s3::StoreError;

/// A failed filesystem operation.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FsError {
    /// No such file or directory.
    #[error("no such file or directory")]
    NotFound,
    /// The name already exists.
    #[error("already exists")]
    Exists,
    /// A directory was expected.
    #[error("not a directory")]
    NotDir,
    /// A file was expected.
    #[error("is a directory")]
    IsDir,
    /// `rmdir` of a directory that still has entries.
    #[error("directory not empty")]
    NotEmpty,
    /// The mount is shutting down: no new files or writers.
    #[error("the mount is shutting down")]
    ShuttingDown,
    /// The mount is read-only.
    #[error("read-only mount")]
    ReadOnly,
    /// A name that cannot be stored (too long, `/`, not UTF-8).
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// A name longer than NAME_MAX.
    #[error("file name too long")]
    NameTooLong,
    /// The file is busy (e.g. being written by another handle).
    #[error("busy: {0}")]
    Busy(&'static str),
    /// The operation is not supported by this version.
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    /// A write that does not continue where the previous one ended.
    #[error(
        "out-of-order write at offset {got}, expected {expected} (only sequential writes are supported)"
    )]
    OutOfOrderWrite {
        /// Offset the next write must have.
        expected: u64,
        /// Offset it had.
        got: u64,
    },
    /// The file would exceed the multipart limit (10,000 parts).
    #[error("file too large for the part size (10,000 parts); raise --write-part-size")]
    FileTooLarge,
    /// The file handle is unknown or of the wrong kind.
    #[error("bad file handle")]
    BadHandle,
    /// The file was already committed to S3 by an earlier fsync/close of this handle.
    #[error("file already uploaded by fsync/close; reopen it with O_TRUNC to write again")]
    AlreadyCommitted,
    /// A guard mode (`--no-delete`, `--no-overwrite`) refuses the change.
    #[error("refused by {0}")]
    Guarded(&'static str),
    /// A directory rename that did not complete; the message says which keys moved.
    #[error("{0}")]
    PartialRename(String),
    /// No such extended attribute.
    #[error("no such extended attribute")]
    NoAttr,
    /// An extended attribute namespace that is never kept (`security.*`, `system.*`: SELinux
    /// labels, POSIX ACLs). EOPNOTSUPP rather than ENODATA, as a file system without them
    /// answers: `ls -l` then stops probing every entry of the mount for them.
    #[error("security.* and system.* extended attributes are not kept")]
    AttrNamespaceUnsupported,
    /// The extended attribute value is too large to store.
    #[error("extended attribute too large for object metadata")]
    NoSpaceForAttr,
    /// A read-only extended attribute (`user.s3.*` but tags).
    #[error("read-only extended attribute")]
    ReadOnlyAttr,
    /// A rename between two buckets.
    #[error("cannot rename across buckets")]
    CrossDevice,
    /// The object-store call failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Result alias for the core.
pub type Result<T> = std::result::Result<T, FsError>;
