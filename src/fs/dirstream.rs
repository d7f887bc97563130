//! An open directory's listing, streamed: entries are served after the first LIST page and
//! the next page is fetched in the background while the reader works on the ones it has.
//!
//! Why: `ls -l` of a big directory stats and probes the xattrs of each entry between its
//! `getdents64` calls. Listing every page before answering made it wait for the whole
//! listing and then do all that work; streamed, the two overlap, and an open directory
//! holds a bounded window of entries instead of all of them.
//!
//! Positions are entry numbers within the handle (0 is the first entry). The window holds
//! the entries `[base, base + len)`: at most one page behind the reader (so a seek back a
//! little is served from memory) and what the last page added ahead of it, plus the one
//! page being prefetched. A seek further back, or a rewind, lists again from the start:
//! a fresh listing shows other clients' changes, and the entries of a listing are numbered
//! the same way each time as long as nobody changes the directory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::task::JoinHandle;

use super::meta::known::MAX_NAMES;
use super::meta::listing::{Listed, Merger, Warnings};
use crate::s3::{ErrorKind, ListPage, ObjectStore, StoreError};

/// A page being fetched in the background.
type Fetch = JoinHandle<Result<ListPage, StoreError>>;

/// What a listing that reached its end proved: the directory's names at `since`.
pub struct Complete {
    /// When the listing started.
    pub since: Instant,
    /// The known-names epoch taken when the listing started.
    pub epoch: u64,
    /// Every name listed.
    pub names: Vec<String>,
}

/// The streamed listing of one open directory.
pub struct DirStream {
    store: Arc<dyn ObjectStore>,
    list_prefix: String,
    dir_mtime: SystemTime,
    merger: Merger,
    /// Continuation token of the next page to fetch (`None`: the first page).
    token: Option<String>,
    /// The last page was merged: nothing more to fetch.
    done: bool,
    /// The next page, fetched in the background; awaited in place, so a readdir that is
    /// interrupted while waiting leaves it for the next one.
    fetch: Option<Fetch>,
    /// Entries `base..base + window.len()`.
    window: VecDeque<Listed>,
    base: u64,
    /// Most entries one page gave: how much is kept behind the reader.
    page_len: usize,
    /// Files being written here and not in S3 yet, not listed so far: entries at the end.
    writing: Vec<Listed>,
    /// Names listed since the start while there are few enough to remember.
    names: Option<Vec<String>>,
    since: Instant,
    epoch: u64,
    /// A readdir was served since the listing started (a later position 0 is a rewind).
    served: bool,
    /// [`DirStream::restart`] began a listing.
    started: bool,
}

impl DirStream {
    /// A listing of `list_prefix` (nothing is fetched before the first read).
    pub fn new(store: Arc<dyn ObjectStore>, list_prefix: String, dir_mtime: SystemTime) -> Self {
        DirStream {
            merger: Merger::new(&list_prefix, dir_mtime),
            store,
            list_prefix,
            dir_mtime,
            token: None,
            done: false,
            fetch: None,
            window: VecDeque::new(),
            base: 0,
            page_len: 0,
            writing: Vec::new(),
            names: Some(Vec::new()),
            since: Instant::now(),
            epoch: 0,
            served: false,
            started: false,
        }
    }

    /// Whether the next read at `pos` must (re)start the listing: the first read, a rewind
    /// after entries were served, or a position that fell out of the window.
    pub fn needs_restart(&self, pos: u64, rewind: bool) -> bool {
        !self.started || (rewind && self.served) || pos < self.base
    }

    /// Start the listing again from its first page. `writing`: files being written in
    /// the directory now; `epoch`: the known-names epoch now.
    pub fn restart(&mut self, writing: Vec<Listed>, epoch: u64) {
        if let Some(f) = self.fetch.take() {
            f.abort();
        }
        self.merger = Merger::new(&self.list_prefix, self.dir_mtime);
        self.token = None;
        self.done = false;
        self.window.clear();
        self.base = 0;
        self.writing = writing;
        self.names = Some(Vec::new());
        self.since = Instant::now();
        self.epoch = epoch;
        self.served = false;
        self.started = true;
    }

    /// Entries from position `pos` on (as many as the window has; none at the end),
    /// fetching pages until the window reaches `pos`. Returns, too, the proof of the
    /// directory's contents when this call finished the listing from its start.
    pub async fn read(
        &mut self,
        pos: u64,
        warnings: &Warnings,
    ) -> Result<(Vec<Listed>, Option<Complete>), StoreError> {
        let mut complete = None;
        while pos >= self.base + self.window.len() as u64 && !self.done {
            self.trim(pos);
            if let Some(c) = self.next_page(warnings).await? {
                complete = Some(c);
            }
        }
        self.served = true;
        self.trim(pos);
        let skip = pos.saturating_sub(self.base) as usize;
        Ok((self.window.iter().skip(skip).cloned().collect(), complete))
    }

    /// Entries held in memory: the window and the files held back between pages (the one
    /// page being prefetched is not counted).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.window.len() + self.merger.held()
    }

    /// Drop the entries more than one page's worth before `pos`.
    fn trim(&mut self, pos: u64) {
        while self.base + (self.page_len as u64) < pos && !self.window.is_empty() {
            self.window.pop_front();
            self.base += 1;
        }
    }

    fn spawn_fetch(&mut self) {
        let (store, prefix, token) = (
            self.store.clone(),
            self.list_prefix.clone(),
            self.token.clone(),
        );
        self.fetch = Some(tokio::spawn(async move {
            store.list(&prefix, true, token, None).await
        }));
    }

    /// Wait for the next page (fetching it if no prefetch is under way), merge it into the
    /// window and start fetching the one after.
    async fn next_page(&mut self, warnings: &Warnings) -> Result<Option<Complete>, StoreError> {
        if self.fetch.is_none() {
            self.spawn_fetch();
        }
        let fetch = self.fetch.as_mut().expect("just spawned");
        let joined = fetch.await;
        self.fetch = None;
        let page = joined.map_err(|e| {
            StoreError::with_message(
                "ListObjectsV2",
                self.list_prefix.clone(),
                ErrorKind::Other,
                format!("listing task failed: {e}"),
            )
        })??;
        let mut out = Vec::new();
        let progress = self.merger.push(&page, warnings, &mut out);
        match &page.next {
            Some(next) if Some(next) == self.token.as_ref() || !progress && has_keys(&page) => {
                // The listing cannot go on: it ends here, with what it gave.
                self.done = true;
                return Err(StoreError::with_message(
                    "ListObjectsV2",
                    self.list_prefix.clone(),
                    ErrorKind::Other,
                    "the server repeated a page (the listing would never end)",
                ));
            }
            Some(next) => {
                self.token = Some(next.clone());
                self.spawn_fetch();
            }
            None => {
                self.done = true;
                self.merger.finish(&mut out);
            }
        }
        self.page_len = self.page_len.max(page.objects.len() + page.prefixes.len());
        self.add(out);
        if !self.done {
            return Ok(None);
        }
        let rest = std::mem::take(&mut self.writing);
        self.add(rest);
        Ok(self.names.take().map(|names| Complete {
            since: self.since,
            epoch: self.epoch,
            names,
        }))
    }

    /// Append listed entries to the window, noting their names.
    fn add(&mut self, entries: Vec<Listed>) {
        for e in entries {
            if !self.writing.is_empty()
                && let Some(i) = self.writing.iter().position(|w| w.name == e.name)
            {
                // Listed: the listing's entry stands for it.
                self.writing.swap_remove(i);
            }
            if let Some(names) = &mut self.names {
                if names.len() < MAX_NAMES {
                    names.push(e.name.clone());
                } else {
                    // Too many to remember: the directory will not be known.
                    self.names = None;
                }
            }
            self.window.push_back(e);
        }
    }
}

fn has_keys(page: &ListPage) -> bool {
    !page.objects.is_empty() || !page.prefixes.is_empty()
}

impl Drop for DirStream {
    fn drop(&mut self) {
        if let Some(f) = self.fetch.take() {
            f.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::memory::MemoryStore;

    const PAGE: usize = 10;

    fn store(n: usize) -> Arc<MemoryStore> {
        let s = Arc::new(MemoryStore::new("b", PAGE));
        for i in 0..n {
            s.insert(&format!("d/f{i:04}"), "x");
        }
        s
    }

    fn stream(s: &Arc<MemoryStore>) -> DirStream {
        let mut d = DirStream::new(s.clone(), "d/".into(), SystemTime::UNIX_EPOCH);
        d.restart(Vec::new(), 0);
        d
    }

    /// Read from `pos` on, taking at most `take` entries per call, until the end.
    async fn drain(d: &mut DirStream, mut pos: u64, take: usize) -> Vec<String> {
        let w = Warnings::default();
        let mut names = Vec::new();
        loop {
            let (got, _) = d.read(pos, &w).await.unwrap();
            if got.is_empty() {
                return names;
            }
            let n = got.len().min(take);
            names.extend(got.into_iter().take(n).map(|e| e.name));
            pos += n as u64;
        }
    }

    #[tokio::test]
    async fn the_first_read_costs_one_page_and_the_next_is_prefetched() {
        let s = store(35);
        let mut d = stream(&s);
        let (got, complete) = d.read(0, &Warnings::default()).await.unwrap();
        // The page's last file waits for the next page: it might show `f0009/`.
        assert_eq!(got.len(), PAGE - 1);
        assert!(complete.is_none());
        // The page after is on its way without anyone asking.
        let fetch = d.fetch.as_mut().expect("prefetching");
        fetch.await.unwrap().unwrap();
        assert_eq!(s.count("ListObjectsV2"), 2);
    }

    #[tokio::test]
    async fn an_open_directory_holds_about_two_pages_whatever_its_size() {
        let s = store(1000);
        let mut d = stream(&s);
        let w = Warnings::default();
        let (mut pos, mut most) = (0u64, 0usize);
        loop {
            let (got, _) = d.read(pos, &w).await.unwrap();
            if got.is_empty() {
                break;
            }
            most = most.max(d.held());
            // Like the kernel: a reply holds a few entries, the next call goes on from there.
            pos += got.len().min(7) as u64;
        }
        assert_eq!(pos, 1000);
        // A page behind the reader, the rest of the last page ahead, the file held back.
        assert!(most <= 2 * PAGE + 1, "held {most} entries");
        assert!(most > PAGE, "kept nothing to seek back to");
    }

    #[tokio::test]
    async fn a_seek_back_within_the_window_is_served_from_memory() {
        let s = store(35);
        let mut d = stream(&s);
        let w = Warnings::default();
        d.read(0, &w).await.unwrap();
        let (got, _) = d.read(12, &w).await.unwrap();
        assert_eq!(got[0].name, "f0012");
        let lists = s.count("ListObjectsV2");
        assert!(!d.needs_restart(5, false));
        let (got, _) = d.read(5, &w).await.unwrap();
        assert_eq!(got[0].name, "f0005");
        assert_eq!(s.count("ListObjectsV2"), lists, "no new listing");
    }

    #[tokio::test]
    async fn a_seek_back_out_of_the_window_lists_again_and_skips_forward() {
        let s = store(60);
        let mut d = stream(&s);
        let all = drain(&mut d, 0, 3).await;
        assert_eq!(all.len(), 60);
        assert!(d.needs_restart(4, false));
        d.restart(Vec::new(), 0);
        let rest = drain(&mut d, 4, 100).await;
        assert_eq!(rest, all[4..]);
    }

    #[tokio::test]
    async fn a_rewind_lists_again_and_sees_other_clients_changes() {
        let s = store(15);
        let mut d = stream(&s);
        assert!(!d.needs_restart(0, true), "the first read is no rewind");
        assert_eq!(drain(&mut d, 0, 100).await.len(), 15);
        s.insert("d/new", "x");
        assert!(d.needs_restart(0, true));
        d.restart(Vec::new(), 0);
        let again = drain(&mut d, 0, 100).await;
        assert_eq!(again.len(), 16);
        assert!(again.iter().any(|n| n == "new"));
    }

    #[tokio::test]
    async fn names_added_while_listing_are_never_duplicates_and_hide_no_old_name() {
        let s = store(30);
        let mut d = stream(&s);
        let w = Warnings::default();
        let (first, _) = d.read(0, &w).await.unwrap();
        // One name before what was listed, one after, one in the prefetched page's range.
        for k in ["d/a", "d/f0004x", "d/f0015x", "d/zz"] {
            s.insert(k, "x");
        }
        let mut names: Vec<String> = first.into_iter().map(|e| e.name).collect();
        names.extend(drain(&mut d, names.len() as u64, 100).await);
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a name twice: {names:?}");
        for i in 0..30 {
            assert!(names.contains(&format!("f{i:04}")), "f{i:04} skipped");
        }
        assert!(names.contains(&"zz".to_owned()));
    }

    #[tokio::test]
    async fn a_file_and_a_directory_of_one_name_across_pages_are_one_directory() {
        let s = Arc::new(MemoryStore::new("b", 3));
        for k in [
            "d/", "d/a", "d/b", "d/x", "d/x-1", "d/x-2", "d/x.txt", "d/x/in", "d/y",
        ] {
            s.insert(k, "x");
        }
        let mut d = stream(&s);
        let mut got = drain(&mut d, 0, 2).await;
        got.sort();
        assert_eq!(got, ["a", "b", "x", "x-1", "x-2", "x.txt", "y"]);
        assert_eq!(s.count("ListObjectsV2"), 3);
    }

    #[tokio::test]
    async fn files_being_written_come_at_the_end_unless_listed() {
        let s = store(12);
        let mut d = DirStream::new(s.clone(), "d/".into(), SystemTime::UNIX_EPOCH);
        let writing = |name: &str| Listed {
            name: name.into(),
            kind: super::super::Kind::File,
            stat: super::super::Stat::new(0, SystemTime::UNIX_EPOCH, None),
        };
        d.restart(vec![writing("f0003"), writing("new")], 7);
        let w = Warnings::default();
        let (mut all, mut proof) = (Vec::new(), None);
        loop {
            let (got, c) = d.read(all.len() as u64, &w).await.unwrap();
            proof = proof.or(c);
            if got.is_empty() {
                break;
            }
            all.extend(got.into_iter().map(|e| e.name));
        }
        assert_eq!(all.len(), 13);
        assert_eq!(all.last().map(String::as_str), Some("new"));
        let proof = proof.expect("listed from the start to the end");
        assert_eq!((proof.epoch, proof.names.len()), (7, 13));
    }
}
