//! Directory listing: ListObjectsV2 pages (delimiter `/`) turned into named entries that
//! already carry size and mtime, so `ls -l` needs no HEAD per entry.
//!
//! Rules: a common prefix is a directory and shadows a file of the same name; the
//! directory's own `dir/` marker is not an entry; keys that cannot be file names are skipped
//! with one warning each.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::SystemTime;

use futures::TryStreamExt;
use tracing::warn;

use super::inode::{Kind, Stat};
use super::key::{Prefix, validate_name};
use crate::s3::{ListPage, ObjectInfo, ObjectStore, StoreError};

/// How many distinct bad keys are warned about before going quiet.
const MAX_WARNINGS: usize = 10_000;

/// One entry of a listed directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// File name.
    pub name: String,
    /// File or directory.
    pub kind: Kind,
    /// Attributes from the listing.
    pub stat: Stat,
}

/// Remembers which bad keys were already reported, so each is warned about once.
#[derive(Default)]
pub struct Warnings(Mutex<HashSet<String>>);

impl Warnings {
    /// Warn about `key` unless already done.
    pub fn once(&self, key: &str, why: &dyn std::fmt::Display) {
        let mut seen = self.0.lock().unwrap();
        if seen.len() < MAX_WARNINGS && seen.insert(key.to_owned()) {
            warn!(key, "skipping S3 key that cannot be a file name: {why}");
        }
    }
}

/// List the directory at relative path `dir` completely (all pages), sorted by name.
///
/// For the callers that need every name at once (re-learning a directory's contents for
/// lookups); `readdir` streams instead (see [`Merger`]).
pub async fn list(
    store: &dyn ObjectStore,
    prefix: &Prefix,
    dir: &str,
    dir_mtime: SystemTime,
    warnings: &Warnings,
) -> Result<Vec<Listed>, StoreError> {
    let list_prefix = prefix.dir_key(dir);
    let mut merger = Merger::new(&list_prefix, dir_mtime);
    let mut entries = Vec::new();
    let mut pages = store.list_all(&list_prefix, true);
    while let Some(page) = pages.try_next().await? {
        merger.push(&page, warnings, &mut entries);
    }
    merger.finish(&mut entries);
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// A held-back file: its entry, and the key of the common prefix that would shadow it.
struct Held {
    shadow: String,
    entry: Listed,
}

/// Turns listing pages, one after the other, into entries, each name exactly once, holding
/// only a handful of entries between pages.
///
/// Why it needs any state at all: ListObjectsV2 returns objects and common prefixes in one
/// key order, where a directory `x/` sorts after `x-b` and `x.txt`, so a file `x` and the
/// directory `x/` that shadows it may be far apart, even pages apart. A file is therefore
/// held back until the listing has passed the key `x/` (then it is an entry) or shown it
/// (then the directory is the entry). Only files whose name is a prefix of the last key
/// seen can be waiting, so what is held stays small whatever the directory's size. Entries
/// come out in key order but for those held-back files, which is not name order: callers
/// that want names sorted sort.
///
/// Keys at or before the last one seen are ignored, so a server that repeats a common
/// prefix (or more) at the start of the next page cannot make a name appear twice.
pub struct Merger {
    list_prefix: String,
    dir_mtime: SystemTime,
    /// The greatest key (under the prefix) taken so far.
    last_key: Option<String>,
    held: Vec<Held>,
}

impl Merger {
    /// A merger for the listing of `list_prefix` (the directory's key, ending in `/`, or
    /// empty for the bucket's root); directories show `dir_mtime`.
    pub fn new(list_prefix: &str, dir_mtime: SystemTime) -> Self {
        Merger {
            list_prefix: list_prefix.to_owned(),
            dir_mtime,
            last_key: None,
            held: Vec::new(),
        }
    }

    /// Entries held back, waiting for the listing to pass their shadowing prefix.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Take the next page: append the entries it settles to `out`. Returns whether the page
    /// had any key beyond those already seen (a page that has none, yet promises more, is
    /// a server going round in circles). A server (or proxy) may answer with keys that are
    /// not under the prefix asked for: they are skipped with a warning, never sliced
    /// blindly.
    pub fn push(&mut self, page: &ListPage, warnings: &Warnings, out: &mut Vec<Listed>) -> bool {
        // One key order for objects and prefixes. A page from S3 is sorted already (then
        // this costs one pass); one that is not must not make the order check drop keys.
        let mut items: Vec<(&str, Option<&ObjectInfo>)> = page
            .prefixes
            .iter()
            .map(|p| (p.as_str(), None))
            .chain(page.objects.iter().map(|o| (o.key.as_str(), Some(o))))
            .filter(|(key, _)| {
                let inside = key.starts_with(&self.list_prefix);
                if !inside {
                    warnings.once(key, &"listed outside the prefix asked for");
                }
                inside
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(b.0));
        let mut progress = false;
        for (key, obj) in items {
            if self.last_key.as_deref().is_some_and(|last| key <= last) {
                continue;
            }
            progress = true;
            self.release_before(key, out);
            self.take(key, obj, warnings, out);
            self.last_key = Some(key.to_owned());
        }
        progress
    }

    /// The listing ended: every file still held is an entry.
    pub fn finish(&mut self, out: &mut Vec<Listed>) {
        out.extend(self.held.drain(..).map(|h| h.entry));
        self.last_key = None;
    }

    /// Release the held files whose shadowing prefix sorts before `key`: it can no longer
    /// come.
    fn release_before(&mut self, key: &str, out: &mut Vec<Listed>) {
        if self.held.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].shadow.as_str() < key {
                out.push(self.held.remove(i).entry);
            } else {
                i += 1;
            }
        }
    }

    fn take(
        &mut self,
        key: &str,
        obj: Option<&ObjectInfo>,
        warnings: &Warnings,
        out: &mut Vec<Listed>,
    ) {
        let rest = &key[self.list_prefix.len()..];
        let Some(o) = obj else {
            // A common prefix: the name and one `/`. A key with an empty component
            // (`dir//x`) lists as the common prefix `dir//`, whose name is empty: refused
            // below, as is a prefix no S3 server would send (`x//` for a name `x/`). One
            // without the delimiter at its end is no common prefix of a `/` listing at
            // all; taking it would list `x` twice when `x/` follows.
            let Some(name) = rest.strip_suffix('/') else {
                warnings.once(key, &"common prefix does not end in /");
                return;
            };
            if let Err(why) = validate_name(name) {
                warnings.once(key, &why);
                return;
            }
            // It shadows the file of the same name, which sorts before it.
            self.held.retain(|h| h.shadow != key);
            out.push(Listed {
                name: name.to_owned(),
                kind: Kind::Dir,
                stat: Stat::new(0, self.dir_mtime, None),
            });
            return;
        };
        if rest.is_empty() {
            // The directory's own marker object.
            if o.size > 0 {
                warnings.once(key, &"directory marker holds data, which is ignored");
            }
            return;
        }
        if let Err(why) = validate_name(rest) {
            warnings.once(key, &why);
            return;
        }
        self.held.push(Held {
            shadow: format!("{key}/"),
            entry: Listed {
                name: rest.to_owned(),
                kind: Kind::File,
                stat: Stat::new(o.size, o.mtime, o.etag.clone()),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::s3::memory::MemoryStore;

    /// Every entry `pages` give, by name; panics on a name given twice.
    fn merge(pages: &[ListPage], list_prefix: &str) -> BTreeMap<String, Listed> {
        let mut m = Merger::new(list_prefix, SystemTime::UNIX_EPOCH);
        let w = Warnings::default();
        let mut out = Vec::new();
        for p in pages {
            m.push(p, &w, &mut out);
        }
        m.finish(&mut out);
        let mut by_name = BTreeMap::new();
        for e in out {
            let name = e.name.clone();
            assert!(by_name.insert(name.clone(), e).is_none(), "{name:?} twice");
        }
        by_name
    }

    fn obj(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 1,
            mtime: SystemTime::UNIX_EPOCH,
            etag: None,
            meta: None,
            headers: None,
        }
    }

    fn page(objects: &[&str], prefixes: &[&str], next: bool) -> ListPage {
        ListPage {
            objects: objects.iter().map(|k| obj(k)).collect(),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            next: next.then(|| "token".into()),
        }
    }

    #[test]
    fn a_file_and_its_shadowing_directory_pages_apart_give_one_directory() {
        // `d/x` on page 1, `d/x-b`, `d/x.txt` between, the prefix `d/x/` on page 3.
        let pages = [
            page(&["d/", "d/a", "d/x"], &[], true),
            page(&["d/x-b", "d/x.txt"], &[], true),
            page(&["d/y"], &["d/x/"], false),
        ];
        let got = merge(&pages, "d/");
        let kinds: Vec<_> = got.values().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("a", Kind::File),
                ("x", Kind::Dir),
                ("x-b", Kind::File),
                ("x.txt", Kind::File),
                ("y", Kind::File)
            ]
        );
    }

    #[test]
    fn a_common_prefix_without_its_slash_is_skipped_not_listed_next_to_the_real_one() {
        // Found by the property test below: a server listing both `x` and `x/` as common
        // prefixes gave the directory `x` twice.
        let got = merge(&[page(&[], &["x", "x/"], false)], "");
        let kinds: Vec<_> = got.values().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(kinds, [("x", Kind::Dir)]);
    }

    #[test]
    fn files_are_held_back_only_while_their_directory_may_follow() {
        let mut m = Merger::new("", SystemTime::UNIX_EPOCH);
        let (w, mut out) = (Warnings::default(), Vec::new());
        m.push(&page(&["a", "b", "x"], &[], true), &w, &mut out);
        // `a` and `b` are settled by `x` (past `a/` and `b/`); `x` waits for `x/`.
        let names: Vec<_> = out.iter().map(|e| e.name.as_str()).collect();
        assert_eq!((names, m.held()), (vec!["a", "b"], 1));
        // Many names between `x` and `x/` keep only the chain of prefixes held.
        let between: Vec<String> = (0..1000).map(|i| format!("x-{i:04}")).collect();
        let refs: Vec<&str> = between.iter().map(String::as_str).collect();
        m.push(&page(&refs, &[], true), &w, &mut out);
        assert_eq!(m.held(), 2, "x and x-0999");
        m.push(&page(&["z"], &[], false), &w, &mut out);
        m.finish(&mut out);
        assert_eq!(out.len(), 1004);
    }

    #[test]
    fn keys_repeated_by_the_next_page_are_not_entries_again() {
        let pages = [
            page(&["a"], &["b/"], true),
            page(&["a"], &["b/", "c/"], false),
        ];
        let mut m = Merger::new("", SystemTime::UNIX_EPOCH);
        let (w, mut out) = (Warnings::default(), Vec::new());
        assert!(m.push(&pages[0], &w, &mut out));
        assert!(m.push(&pages[1], &w, &mut out));
        assert!(!m.push(&pages[1], &w, &mut out), "no progress");
        m.finish(&mut out);
        let names: Vec<_> = out.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn lists_dirs_files_and_skips_bad_keys() {
        let s = MemoryStore::new("b", 3);
        for k in [
            "p/a.txt", "p/sub/x", "p/sub",    // file shadowed by the directory
            "p/",       // marker of the mount root
            "p/m/",     // marker-only directory
            "p/bad//x", // empty component
            "p/./y",    // dot component
            "outside",
        ] {
            s.insert(k, "data");
        }
        s.insert(&format!("p/{}", "n".repeat(1025)), "long");
        let w = Warnings::default();
        let got = list(&s, &Prefix::new("p/"), "", SystemTime::UNIX_EPOCH, &w)
            .await
            .unwrap();
        let names: Vec<_> = got.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("a.txt", Kind::File),
                ("bad", Kind::Dir),
                ("m", Kind::Dir),
                ("sub", Kind::Dir)
            ]
        );
        assert_eq!(got[0].stat.size, 4);
        let bad = list(&s, &Prefix::new("p/"), "bad", SystemTime::UNIX_EPOCH, &w)
            .await
            .unwrap();
        assert!(bad.is_empty());
    }

    #[test]
    fn entries_listed_outside_the_prefix_are_skipped() {
        // What a misbehaving server or proxy might answer to a listing of `p/d/`.
        let page = ListPage {
            objects: vec![
                obj("p/d/ok"),
                obj("q/secret"),
                obj("p"),
                obj("é"),
                obj("p/d"),
            ],
            prefixes: vec!["p/d/sub/".into(), "elsewhere/".into(), "p/".into()],
            next: None,
        };
        let entries = merge(&[page], "p/d/");
        let names: Vec<&String> = entries.keys().collect();
        assert_eq!(names, ["ok", "sub"]);
    }

    /// Key-like strings from pieces a hostile bucket may hold: separators, dots, empty
    /// components, NUL, multi-byte characters, overlong names.
    fn hostile_key() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("p/".to_owned()),
            Just("d/".to_owned()),
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("\0".to_owned()),
            Just("é".to_owned()),
            Just("n".repeat(256)),
            "[a-z/.]{0,6}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        /// Whatever a server lists, adding the page never panics, and every entry is a
        /// valid name taken from a key under the prefix asked for.
        #[test]
        fn any_page_gives_only_valid_names_under_the_prefix(
            list_prefix in proptest::prop_oneof![
                proptest::strategy::Just(String::new()),
                proptest::strategy::Just("p/".to_owned()),
                proptest::strategy::Just("p/d/".to_owned()),
            ],
            objects in proptest::collection::vec((hostile_key(), proptest::num::u64::ANY), 0..12),
            prefixes in proptest::collection::vec(hostile_key(), 0..8),
        ) {
            let page = ListPage {
                objects: objects
                    .iter()
                    .map(|(key, size)| ObjectInfo {
                        key: key.clone(),
                        size: *size,
                        mtime: SystemTime::UNIX_EPOCH,
                        etag: None,
                        meta: None,
                        headers: None,
                    })
                    .collect(),
                prefixes: prefixes.clone(),
                next: None,
            };
            let entries = merge(&[page], &list_prefix);
            for (name, e) in &entries {
                proptest::prop_assert!(validate_name(name).is_ok(), "{name:?}");
                let full = format!("{list_prefix}{name}");
                let listed = match e.kind {
                    Kind::Dir => prefixes.iter().any(|p| p.trim_end_matches('/') == full),
                    _ => objects.iter().any(|(k, _)| *k == full),
                };
                proptest::prop_assert!(listed, "{name:?} is not from a key under {list_prefix:?}");
            }
        }
    }
}
