//! Attribute changes and extended attributes, persisted as s3fs-compatible object
//! metadata: on an existing object by one CopyObject onto itself with the metadata
//! replaced; on a file being written, in the upload that is under way.

use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::fs::meta::inode::{Node, Residence};
use crate::fs::meta::posix::{self as meta, Posix};
use crate::fs::open::Body;
use crate::fs::{Attr, DIR_CONTENT_TYPE, Fs, FsError, Ino, Kind, Result, SetAttr};
use crate::s3::{ErrorKind, PutOptions};

/// Read-only attributes computed from S3 (`user.s3.tags` can also be set), as `listxattr`
/// names them. `user.s3.presigned_url` is readable by name but not listed: `cp -a`,
/// `rsync -X` and `tar --xattrs` copy every listed attribute, and a bearer URL must not end
/// up in backups.
const S3_XATTRS: [&str; 6] = [
    "user.s3.content_type",
    "user.s3.etag",
    "user.s3.storage_class",
    "user.s3.tags",
    "user.s3.url",
    "user.s3.version_id",
];
const S3_PREFIX: &str = "user.s3.";

/// Namespaces whose attributes are never stored: `security.` (SELinux labels, capabilities)
/// and `system.` (POSIX ACLs) mean something to the kernel that an object's metadata cannot
/// carry. Everything else — `user.`, `trusted.` (the kernel lets only root reach those) and
/// names without a namespace — is stored alike, in `x-amz-meta-xattr`.
const UNSTORED: [&str; 2] = ["security.", "system."];

/// Whether attribute `name` is one we store.
fn stored(name: &str) -> bool {
    !UNSTORED.iter().any(|ns| name.starts_with(ns))
}
/// Values larger than this do not fit S3's 2 KiB metadata limit anyway.
const XATTR_MAX: usize = 1024;

/// What [`Fs::update_remote_posix`] does for a directory without a marker (implicit: only
/// keys below it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::fs) enum Implicit {
    /// Create the marker: chmod, chown, touch and xattrs of the directory must persist.
    MakeMarker,
    /// Leave it without: times changed by its entries are no reason to create an object
    /// (they are shown from memory).
    Leave,
}

impl Fs {
    /// `chmod`, `chown`, `truncate`, `touch`.
    pub async fn setattr(&self, ino: Ino, change: SetAttr, fh: Option<u64>) -> Result<Attr> {
        let node = self.node(ino)?;
        if let Some(size) = change.size {
            self.guards.writable()?;
            if size > self.uploads.max_size() {
                return Err(FsError::FileTooLarge);
            }
            match node.kind {
                Kind::Dir => return Err(FsError::IsDir),
                Kind::Symlink => return Err(FsError::InvalidName("a symbolic link".into())),
                Kind::Special(_) => return Err(FsError::InvalidName("not a regular file".into())),
                Kind::File => {}
            }
            // Through the shared bytes when the file is being written (by any descriptor).
            if !self.truncate_open(ino, fh, size).await? && (size != node.stat.size || size == 0) {
                self.truncate_closed(&node, size).await?
            }
        }
        if change.mode.is_some()
            || change.uid.is_some()
            || change.gid.is_some()
            || change.mtime.is_some()
            || change.atime.is_some()
        {
            self.update_posix(ino, |p, kind| {
                if let Some(m) = change.mode {
                    let ty = match kind {
                        Kind::File => meta::S_IFREG,
                        Kind::Dir => meta::S_IFDIR,
                        Kind::Symlink => meta::S_IFLNK,
                        Kind::Special(t) => t,
                    };
                    p.mode = Some(ty | (m & 0o7777));
                }
                if change.uid.is_some() {
                    p.uid = change.uid;
                }
                if change.gid.is_some() {
                    p.gid = change.gid;
                }
                if change.mtime.is_some() {
                    p.mtime = change.mtime;
                }
                if change.atime.is_some() {
                    p.atime = change.atime;
                }
                Ok(())
            })
            .await?;
        }
        self.getattr(ino).await
    }

    /// Apply `f` to the POSIX metadata of `ino` and persist it.
    ///
    /// `f` may run twice: on the cached metadata (nothing changes: no request at all), then
    /// on the object's current metadata, which the change starts from.
    async fn update_posix(
        &self,
        ino: Ino,
        f: impl Fn(&mut Posix, Kind) -> Result<()>,
    ) -> Result<()> {
        self.guards.writable()?;
        // A change that changes something changes the status time too (POSIX ctime),
        // decided on what it starts from each time it runs.
        let now = SystemTime::now();
        let f = move |p: &mut Posix, kind: Kind| {
            let before = p.clone();
            f(p, kind)?;
            if *p != before {
                p.ctime = Some(now);
            }
            Ok(())
        };
        let node = self.with_posix(ino).await?;
        // Compared with what is shown: a directory's pending times count.
        let shown = self.shown_posix(&node);
        let mut posix = shown.clone().unwrap_or_default();
        f(&mut posix, node.kind)?;
        if shown.as_ref() == Some(&posix) {
            // Nothing changes (`tar -x` chowns to the owner it already has): no request.
            return Ok(());
        }
        let writing = matches!(node.residence, Residence::Writing(_));
        if !writing || self.file_is_clean(ino).await {
            // Everything is in S3 already and only the release is to come (`cp -p` sets
            // modes and times there), or nothing has been written yet (`touch`, `>> f`,
            // where the kernel clears setuid before the first write): change the object.
            self.update_remote_posix(&node, Implicit::MakeMarker, &f)
                .await?;
            // A staged body still to be written goes on from the changed object: its
            // new ETag and metadata, or its commit would put the old metadata back.
            self.rebase_writer(ino).await?;
            return Ok(());
        }
        // Not in S3 yet: the upload under way states the metadata.
        let file = self.open_files.get(ino).ok_or(FsError::BadHandle)?;
        let mut guard = file.state.lock().await;
        let Some(st) = guard.as_mut() else {
            drop(guard);
            // Committed and closed meanwhile.
            return self
                .update_remote_posix(&node, Implicit::MakeMarker, f)
                .await;
        };
        match &mut st.body {
            Body::Stream(up) => match up.opts_mut() {
                Some(o) => posix.to_meta(&mut o.meta),
                None => st.meta_pending = Some(posix.clone()),
            },
            Body::Staged(s) => {
                posix.to_meta(&mut s.opts.meta);
                s.touch();
            }
        }
        drop(guard);
        if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
            n.stat.posix = Some(posix);
        }
        Ok(())
    }

    /// Change the metadata of an object (a directory's marker) in S3: one CopyObject onto
    /// itself that restates every header and every other client's metadata as a fresh
    /// HEAD shows them, changing only what `f` changes. A directory's marker is written
    /// under its lock, with the times its entries' changes left pending (see
    /// [`crate::fs::meta::dirtimes`]) put in before `f` runs (an explicit `touch` wins);
    /// an implicit directory gets a marker when `implicit` says so, else the pending times
    /// stay in memory only.
    pub(in crate::fs) async fn update_remote_posix(
        &self,
        node: &Node,
        implicit: Implicit,
        f: impl Fn(&mut Posix, Kind) -> Result<()>,
    ) -> Result<()> {
        self.guards.overwrite()?;
        let is_dir = node.kind == Kind::Dir;
        let key = match is_dir {
            true => self.prefix.dir_key(&node.path),
            false => self.prefix.key(&node.path),
        };
        let _locked = match is_dir {
            true => Some(self.dir_times.lock(&key).await),
            false => None,
        };
        let pending = match is_dir {
            true => self.dir_times.pending(node.ino),
            false => None,
        };
        if pending.is_none() && implicit == Implicit::Leave {
            // Only pending times were to be written, and another writer wrote them.
            return Ok(());
        }
        let f = |p: &mut Posix, kind: Kind| {
            if let Some(t) = &pending {
                t.apply(p);
            }
            f(p, kind)
        };
        let head = match self.store.head(&key).await {
            Ok(info) => Some(info),
            Err(e) if e.kind == ErrorKind::NotFound && is_dir => None,
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.inodes.lock().unwrap().detach(node.parent, &node.name);
                return Err(FsError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        let (posix, etag) = match head {
            Some(info) => {
                let mut meta = info.meta.unwrap_or_default();
                let mut posix = Posix::from_meta(&meta);
                f(&mut posix, node.kind)?;
                posix.to_meta(&mut meta);
                let opts = PutOptions {
                    headers: info.headers.unwrap_or_default(),
                    meta,
                    create_only: false,
                };
                let etag = self.copy_object(&key, &key, info.size, Some(&opts)).await?;
                (posix, etag)
            }
            None => {
                let mut posix = node.stat.posix.clone().unwrap_or_default();
                f(&mut posix, node.kind)?;
                if implicit == Implicit::MakeMarker {
                    let mut opts = PutOptions::typed(DIR_CONTENT_TYPE);
                    posix.to_meta(&mut opts.meta);
                    self.store.put(&key, Bytes::new(), &opts).await?;
                }
                (posix, None)
            }
        };
        let mut t = self.inodes.lock().unwrap();
        if let Some(n) = t.get_mut(node.ino) {
            n.stat.posix = Some(posix);
            if is_dir {
                n.marker_read = Some(Instant::now());
            } else {
                n.stat.etag = etag;
            }
            n.stat.mtime = SystemTime::now();
            n.validated = Some(Instant::now());
        }
        drop(t);
        if let Some(p) = pending {
            self.dir_times.settled(node.ino, p);
        }
        Ok(())
    }

    /// Value of extended attribute `name`.
    pub async fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        if !stored(name) {
            // security.selinux, system.posix_acl_access, ...: never stored, so answered
            // without a request, and as unsupported: `ls -l` (coreutils) asks for them on
            // every entry until an answer says the device has none, 20,000 round trips
            // for 10,000 entries with ENODATA, two with EOPNOTSUPP.
            return Err(FsError::AttrNamespaceUnsupported);
        }
        if name.starts_with(S3_PREFIX) {
            return self.s3_xattr(ino, name).await;
        }
        let node = self.with_posix(ino).await?;
        node.stat
            .posix
            .as_ref()
            .and_then(|p| p.xattrs.get(name).cloned())
            .ok_or(FsError::NoAttr)
    }

    /// Names of the extended attributes (stored ones, then the `user.s3.*` ones of files).
    ///
    /// Without a request: `ls -l` lists the attributes of every entry (to look for ACLs),
    /// and a HEAD each would make it as slow as s3fs. The stored names are those known from
    /// the last HeadObject (a lookup, a getattr after the TTL, or a getxattr).
    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<String>> {
        let node = self.node(ino)?;
        let mut names: Vec<String> = node
            .stat
            .posix
            .map(|p| p.xattrs.into_keys().collect())
            .unwrap_or_default();
        if node.kind != Kind::Dir && node.residence == Residence::Remote {
            names.extend(S3_XATTRS.iter().map(|s| s.to_string()));
        }
        Ok(names)
    }

    /// The `user.s3.*` attributes: what S3 knows of the object.
    async fn s3_xattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>> {
        let node = self.fresh(ino).await?;
        if node.kind == Kind::Dir || node.residence != Residence::Remote {
            return Err(FsError::NoAttr);
        }
        let key = self.prefix.key(&node.path);
        let value = match name {
            "user.s3.url" => format!("s3://{}/{key}", self.store.bucket()),
            "user.s3.presigned_url" => {
                self.store
                    .presign_get(&key, self.cfg.presign_expiry)
                    .await?
            }
            "user.s3.tags" => encode_tags(&self.store.get_tags(&key).await?),
            "user.s3.etag"
            | "user.s3.version_id"
            | "user.s3.storage_class"
            | "user.s3.content_type" => {
                let d = self.store.details(&key).await?;
                let v = match name {
                    "user.s3.etag" => d.etag,
                    "user.s3.version_id" => d.version_id,
                    "user.s3.storage_class" => d.storage_class,
                    _ => d.content_type,
                };
                v.ok_or(FsError::NoAttr)?
            }
            _ => return Err(FsError::NoAttr),
        };
        Ok(value.into_bytes())
    }

    /// Set extended attribute `name` (`create`: must not exist; `replace`: must exist).
    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<()> {
        if !stored(name) {
            return Err(FsError::NotSupported(
                "security.* and system.* extended attributes",
            ));
        }
        if name.starts_with(S3_PREFIX) {
            return self.set_s3_xattr(ino, name, value).await;
        }
        if value.len() > XATTR_MAX {
            return Err(FsError::NoSpaceForAttr);
        }
        self.update_posix(ino, |p, _| {
            let exists = p.xattrs.contains_key(name);
            if create && exists {
                return Err(FsError::Exists);
            }
            if replace && !exists {
                return Err(FsError::NoAttr);
            }
            p.xattrs.insert(name.to_owned(), value.to_vec());
            Ok(())
        })
        .await
    }

    /// `user.s3.tags` is written with PutObjectTagging; the other `user.s3.*` are read-only.
    async fn set_s3_xattr(&self, ino: Ino, name: &str, value: &[u8]) -> Result<()> {
        if name != "user.s3.tags" {
            return Err(FsError::ReadOnlyAttr);
        }
        self.guards.overwrite()?;
        let node = self.fresh(ino).await?;
        if node.kind == Kind::Dir || node.residence != Residence::Remote {
            return Err(FsError::NotSupported(
                "tags on directories or files being written",
            ));
        }
        let text = std::str::from_utf8(value)
            .map_err(|_| FsError::InvalidName("tags must be UTF-8 k=v&k2=v2".into()))?;
        let tags = decode_tags(text)?;
        self.store
            .put_tags(&self.prefix.key(&node.path), &tags)
            .await?;
        Ok(())
    }

    /// Remove extended attribute `name`.
    pub async fn removexattr(&self, ino: Ino, name: &str) -> Result<()> {
        if !stored(name) {
            return Err(FsError::AttrNamespaceUnsupported);
        }
        if name == "user.s3.tags" {
            return self.set_s3_xattr(ino, name, b"").await;
        }
        if name.starts_with(S3_PREFIX) {
            return Err(FsError::ReadOnlyAttr);
        }
        self.update_posix(ino, |p, _| {
            p.xattrs.remove(name).map(|_| ()).ok_or(FsError::NoAttr)
        })
        .await
    }
}

/// Tags as `k=v&k2=v2`, each part percent-encoded (as in a URL query).
fn encode_tags(tags: &[(String, String)]) -> String {
    let enc = |s: &str| crate::escape::percent_encode(s, b"-_.~ /:+@");
    tags.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn decode_tags(text: &str) -> Result<Vec<(String, String)>> {
    let dec = crate::escape::percent_decode;
    Ok(text
        .trim_end_matches('\n')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let tags = vec![
            ("team".to_owned(), "a&b=c".to_owned()),
            ("x".to_owned(), String::new()),
        ];
        let text = encode_tags(&tags);
        assert_eq!(text, "team=a%26b%3Dc&x=");
        assert_eq!(decode_tags(&text).unwrap(), tags);
        assert_eq!(
            decode_tags("k=v\n").unwrap(),
            vec![("k".to_owned(), "v".to_owned())]
        );
        assert!(decode_tags("").unwrap().is_empty());
    }
}
