//! A file modified in place: appends, random writes, truncation, reads of what was written.
//!
//! The file's bytes live in an unnamed local staging file (under `--cache-dir`, deleted by
//! the OS when closed). The object it started from (the *base*) is fetched lazily, by ranges,
//! only where someone reads bytes that were not overwritten, or at commit where a part must
//! be re-uploaded. At commit a small file is one PutObject; a large one is a multipart
//! upload in which every part untouched since open is an UploadPartCopy of the base (no
//! bytes travel) and only parts with local changes are uploaded. After a commit the handle
//! stays usable: the new object becomes the base.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::Uploads;
use super::ranges::RangeSet;
use super::stream::Committed;
use crate::fs::error::{FsError, Result};
use crate::fs::read::Budget;
use crate::s3::{CompletedPart, ErrorKind, MultipartUpload, ObjectStore, PutOptions, StoreError};

/// The version of the object being modified.
#[derive(Clone, Debug)]
pub struct Base {
    /// Its size.
    pub size: u64,
    /// Its ETag (GETs and part copies are conditional on it).
    pub etag: Option<String>,
}

/// A staged file.
pub struct Staged {
    store: Arc<dyn ObjectStore>,
    key: String,
    file: File,
    size: u64,
    base: Option<Base>,
    /// Base bytes beyond this were cut by a truncation: they read as zeros.
    base_len: u64,
    /// Ranges of the staging file that hold the right bytes (written, or fetched).
    present: RangeSet,
    /// Ranges changed since the base.
    dirty: RangeSet,
    part_size: u64,
    /// Parts uploaded at once by a commit (`--upload-threads`).
    threads: usize,
    budget: Arc<Budget>,
    /// Metadata for the next commit.
    pub opts: PutOptions,
    changed: bool,
}

fn io_err(key: &str, e: io::Error) -> FsError {
    FsError::Store(StoreError::with_message(
        "staging",
        key.to_owned(),
        if e.raw_os_error() == Some(libc::ENOSPC) {
            ErrorKind::NoSpace
        } else {
            ErrorKind::Other
        },
        format!("local staging file: {e}"),
    ))
}

impl Staged {
    /// Stage `key` (see [`Uploads::stage`]).
    pub(super) fn new(
        up: &Uploads,
        key: String,
        base: Option<Base>,
        initial: &[u8],
        opts: PutOptions,
    ) -> Result<Self> {
        let dir = &up.staging_dir;
        std::fs::create_dir_all(dir).map_err(|e| io_err(&key, e))?;
        let file = tempfile::tempfile_in(dir).map_err(|e| io_err(&key, e))?;
        let base_len = base.as_ref().map_or(0, |b| b.size);
        let mut s = Staged {
            store: up.store.clone(),
            key,
            file,
            size: base_len,
            base,
            base_len,
            present: RangeSet::new(),
            dirty: RangeSet::new(),
            part_size: up.cfg.part_size,
            threads: up.cfg.threads.max(1),
            budget: up.budget.clone(),
            opts,
            changed: false,
        };
        if !initial.is_empty() {
            s.write(0, initial)?;
        }
        Ok(s)
    }

    /// Current size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether anything changed since the last commit.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Mark the file as needing a commit even without byte changes (e.g. new metadata).
    pub fn touch(&mut self) {
        self.changed = true;
    }

    /// Write `data` at `off` (any offset; a gap reads as zeros).
    pub fn write(&mut self, off: u64, data: &[u8]) -> Result<u32> {
        if data.is_empty() {
            // write(2) of nothing changes nothing, not even the size.
            return Ok(0);
        }
        self.file
            .write_all_at(data, off)
            .map_err(|e| io_err(&self.key, e))?;
        let r = off..off + data.len() as u64;
        if off > self.size {
            // The gap is new zeros: present and changed.
            self.present.insert(self.size..off);
            self.dirty.insert(self.size..off);
        }
        self.present.insert(r.clone());
        self.dirty.insert(r);
        self.size = self.size.max(off + data.len() as u64);
        self.changed = true;
        Ok(data.len() as u32)
    }

    /// Set the size: shrinking drops bytes, growing adds zeros.
    pub fn truncate(&mut self, len: u64) -> Result<()> {
        self.file.set_len(len).map_err(|e| io_err(&self.key, e))?;
        if len < self.size {
            self.present.truncate(len);
            self.dirty.truncate(len);
            self.base_len = self.base_len.min(len);
        } else if len > self.size {
            self.present.insert(self.size..len);
            self.dirty.insert(self.size..len);
        }
        self.size = len;
        self.changed = true;
        Ok(())
    }

    /// Read up to `len` bytes at `off`.
    pub async fn read(&mut self, off: u64, len: u32) -> Result<Bytes> {
        let end = off.saturating_add(len as u64).min(self.size);
        if off >= end {
            return Ok(Bytes::new());
        }
        self.fetch(off..end).await?;
        let mut buf = vec![0u8; (end - off) as usize];
        self.file
            .read_exact_at(&mut buf, off)
            .map_err(|e| io_err(&self.key, e))?;
        Ok(Bytes::from(buf))
    }

    /// Make `r` present locally, fetching what the base still holds there.
    async fn fetch(&mut self, r: Range<u64>) -> Result<()> {
        for gap in self.base_gaps(r) {
            self.fetch_gap(&gap).await?;
            self.present.insert(gap);
        }
        Ok(())
    }

    /// The ranges of `r` that only the base holds: below its (possibly truncated) length and
    /// not yet written or fetched here.
    fn base_gaps(&self, r: Range<u64>) -> Vec<Range<u64>> {
        let limit = r.end.min(self.base_len);
        if self.base.is_none() || r.start >= limit {
            return Vec::new();
        }
        self.present.missing(r.start..limit)
    }

    /// Copy `gap` of the base into the staging file (the caller records it as present).
    async fn fetch_gap(&self, gap: &Range<u64>) -> Result<()> {
        let etag = self.base.as_ref().and_then(|b| b.etag.as_deref());
        let data = self.store.get_range(&self.key, gap.clone(), etag).await?;
        self.file
            .write_all_at(&data, gap.start)
            .map_err(|e| io_err(&self.key, e))
    }

    /// Fetch every byte the base still holds, then forget the base: the file lives only
    /// here (it was unlinked while open). Fetched a part at a time, so memory stays
    /// bounded by one part whatever the size.
    pub async fn make_local(&mut self) -> Result<()> {
        let mut start = 0;
        while start < self.base_len {
            let end = (start + self.part_size).min(self.base_len);
            let _memory = self.budget.reserve(end - start);
            self.fetch(start..end).await?;
            start = end;
        }
        self.base = None;
        self.base_len = 0;
        Ok(())
    }

    /// The base object changed in S3 without changing its bytes (a metadata self-copy):
    /// read the rest of it under its new ETag.
    pub fn rebase(&mut self, etag: Option<String>) {
        if let Some(b) = &mut self.base {
            b.etag = etag;
        }
    }

    /// Upload the current contents; afterwards they are the new base.
    pub async fn commit(&mut self) -> Result<Committed> {
        let put = if self.size <= self.part_size {
            self.fetch(0..self.size).await?;
            let mut buf = vec![0u8; self.size as usize];
            self.file
                .read_exact_at(&mut buf, 0)
                .map_err(|e| io_err(&self.key, e))?;
            self.store
                .put(&self.key, Bytes::from(buf), &self.opts)
                .await?
        } else {
            let upload = self.store.start_multipart(&self.key, &self.opts).await?;
            let done = match self.upload_parts(upload.as_ref()).await {
                Ok((parts, fetched)) => {
                    // Fetched base bytes are local now; parts copied server-side are not:
                    // they stay to be read from the new object.
                    for r in fetched {
                        self.present.insert(r);
                    }
                    upload.complete(parts).await.map_err(FsError::from)
                }
                Err(e) => Err(e),
            };
            if done.is_err() {
                let _ = upload.abort().await;
            }
            done?
        };
        self.base = Some(Base {
            size: self.size,
            etag: put.etag.clone(),
        });
        self.base_len = self.size;
        self.dirty = RangeSet::new();
        self.changed = false;
        Ok(Committed {
            size: self.size,
            etag: put.etag,
        })
    }

    /// Send every part of the current contents, `threads` at a time: parts the base still
    /// holds unchanged are copied server-side (UploadPartCopy), the others are read from the
    /// staging file (after fetching what of them was never read from the base) and uploaded.
    /// One edit near the start of a large file therefore costs one upload and many copies,
    /// all in flight together instead of one after another. Each uploaded part holds its
    /// bytes in the memory budget only while it is sent (`--write-part-size` ×
    /// `--upload-threads` fits, as the configuration checks).
    /// Returns the parts, and the ranges fetched from the base into the staging file.
    async fn upload_parts(
        &self,
        upload: &dyn MultipartUpload,
    ) -> Result<(Vec<CompletedPart>, Vec<Range<u64>>)> {
        let etag = self.base.as_ref().and_then(|b| b.etag.as_deref());
        let mut plan = Vec::new();
        let mut start = 0u64;
        let mut number = 1i32;
        while start < self.size {
            let end = (start + self.part_size).min(self.size);
            let r = start..end;
            let copy = self.base.is_some() && end <= self.base_len && !self.dirty.intersects(&r);
            // What of an uploaded part must first come from the base. Parts are disjoint, so
            // these fetches are too.
            let gaps = if copy {
                Vec::new()
            } else {
                self.base_gaps(r.clone())
            };
            plan.push((number, r, copy, gaps));
            number += 1;
            start = end;
        }
        futures::stream::iter(plan)
            .map(|(number, r, copy, gaps)| async move {
                if copy {
                    return Ok((upload.copy_part(number, &self.key, r, etag).await?, vec![]));
                }
                let _memory = self
                    .budget
                    .reserve_patiently(r.end - r.start, super::MEMORY_PATIENCE)
                    .await;
                for gap in &gaps {
                    self.fetch_gap(gap).await?;
                }
                let mut buf = vec![0u8; (r.end - r.start) as usize];
                self.file
                    .read_exact_at(&mut buf, r.start)
                    .map_err(|e| io_err(&self.key, e))?;
                let part = upload.put_part(number, Bytes::from(buf)).await?;
                Ok::<_, FsError>((part, gaps))
            })
            // Unordered, so that quick copies never hold a slot while an upload ahead of
            // them is still going; CompleteMultipartUpload wants them in order again.
            .buffer_unordered(self.threads)
            .try_fold(
                (Vec::new(), Vec::new()),
                |(mut parts, mut fetched), (p, g)| {
                    parts.push(p);
                    fetched.extend(g);
                    futures::future::ready(Ok((parts, fetched)))
                },
            )
            .await
            .map(|(mut parts, fetched): (Vec<CompletedPart>, _)| {
                parts.sort_by_key(|p| p.number);
                (parts, fetched)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::memory::MemoryStore;

    async fn staged(store: &Arc<MemoryStore>, base: Option<&[u8]>) -> Staged {
        let base = match base {
            Some(b) => {
                store.insert("k", b.to_vec());
                let h = store.head("k").await.unwrap();
                Some(Base {
                    size: h.size,
                    etag: h.etag,
                })
            }
            None => None,
        };
        let cfg = super::super::WriteConfig {
            part_size: 5 << 20,
            threads: 2,
        };
        let dir = std::env::temp_dir().join("s3mount-stage-tests");
        Uploads::new(store.clone(), cfg, dir, Budget::new(1 << 30))
            .stage("k".into(), base, b"", PutOptions::default())
            .unwrap()
    }

    #[tokio::test]
    async fn append_truncate_and_random_writes_match_a_model() {
        let store = Arc::new(MemoryStore::new("b", 100));
        let mut model = b"hello world".to_vec();
        let mut s = staged(&store, Some(&model)).await;
        s.write(11, b"!!").unwrap();
        model.extend_from_slice(b"!!");
        s.write(0, b"J").unwrap();
        model[0] = b'J';
        s.truncate(5).unwrap();
        model.truncate(5);
        s.truncate(8).unwrap();
        model.resize(8, 0);
        s.write(10, b"x").unwrap();
        model.resize(10, 0);
        model.push(b'x');
        assert_eq!(&s.read(0, 100).await.unwrap()[..], &model[..]);
        s.commit().await.unwrap();
        assert_eq!(&store.get("k").unwrap()[..], &model[..]);
        // Still usable after a commit.
        s.write(0, b"h").unwrap();
        model[0] = b'h';
        s.commit().await.unwrap();
        assert_eq!(&store.get("k").unwrap()[..], &model[..]);
    }

    #[tokio::test]
    async fn large_file_copies_untouched_parts() {
        let store = Arc::new(MemoryStore::new("b", 100));
        let base: Vec<u8> = (0..(17 << 20)).map(|i| (i % 251) as u8).collect();
        let mut s = staged(&store, Some(&base)).await;
        let mut model = base.clone();
        s.write(6 << 20, b"changed").unwrap();
        model[6 << 20..(6 << 20) + 7].copy_from_slice(b"changed");
        s.commit().await.unwrap();
        assert!(store.get("k").unwrap() == model);
        // Parts 1, 3 and 4 (untouched) were copied; only part 2 was uploaded.
        assert_eq!(store.count("UploadPartCopy"), 3);
        assert_eq!(store.count("UploadPart"), 1);
        // Only the changed part's base bytes were downloaded.
        assert_eq!(store.count("GetObject"), 2);
    }

    #[tokio::test]
    async fn commits_send_parts_together_and_later_commits_keep_copied_bytes() {
        let store = Arc::new(MemoryStore::new("b", 100));
        let base: Vec<u8> = (0..(21 << 20)).map(|i| (i % 253) as u8).collect();
        let mut s = staged(&store, Some(&base)).await;
        let mut model = base.clone();
        // Changes in three of the five parts: they upload at once (threads: 2).
        store.set_part_latency(std::time::Duration::from_millis(50));
        for at in [1 << 20, 11 << 20, 20 << 20] {
            s.write(at, b"edit").unwrap();
            model[at as usize..at as usize + 4].copy_from_slice(b"edit");
        }
        s.commit().await.unwrap();
        assert!(store.get("k").unwrap() == model);
        assert_eq!(store.parts_peak(), 2, "parts were sent one at a time");
        assert_eq!(store.count("UploadPartCopy"), 2);
        // A part copied by the first commit was never read locally: a second commit that
        // changes it must fetch its bytes from the new object, not upload zeros.
        s.write(6 << 20, b"again").unwrap();
        model[6 << 20..(6 << 20) + 5].copy_from_slice(b"again");
        assert_eq!(
            &s.read(6 << 20, 16).await.unwrap()[..],
            &model[6 << 20..(6 << 20) + 16]
        );
        assert_eq!(
            &s.read(16 << 20, 16).await.unwrap()[..],
            &model[16 << 20..(16 << 20) + 16]
        );
        s.commit().await.unwrap();
        assert!(store.get("k").unwrap() == model);
    }

    #[tokio::test]
    async fn a_part_that_fails_aborts_the_commit_and_leaves_the_object_as_it_was() {
        let store = Arc::new(MemoryStore::new("b", 100));
        let base: Vec<u8> = (0..(21 << 20)).map(|i| (i % 241) as u8).collect();
        let mut s = staged(&store, Some(&base)).await;
        let mut model = base.clone();
        for at in [1usize << 20, 11 << 20] {
            s.write(at as u64, b"edit").unwrap();
            model[at..at + 4].copy_from_slice(b"edit");
        }
        // Part 3 fails while part 1 and the copies are in flight beside it.
        store.fail_part(3);
        assert!(s.commit().await.is_err());
        assert!(
            store.get("k").unwrap() == base,
            "a failed commit changed the object"
        );
        assert_eq!(
            store.pending_uploads(),
            0,
            "the failed upload was not aborted"
        );
        // The edits are still staged: the next commit sends them.
        store.fail_part(0);
        s.commit().await.unwrap();
        assert!(store.get("k").unwrap() == model);
    }
}
