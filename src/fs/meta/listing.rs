//! Directory listing: ListObjectsV2 pages (delimiter `/`) turned into named entries that
//! already carry size and mtime, so `ls -l` needs no HEAD per entry.
//!
//! Rules: a common prefix is a directory and shadows a file of the same name; the
//! directory's own `dir/` marker is not an entry; keys that cannot be file names are skipped
//! with one warning each.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::SystemTime;

use futures::TryStreamExt;
use tracing::warn;

use super::inode::{Kind, Stat};
use super::key::{Prefix, validate_name};
use crate::s3::{ListPage, ObjectStore, StoreError};

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
pub async fn list(
    store: &dyn ObjectStore,
    prefix: &Prefix,
    dir: &str,
    dir_mtime: SystemTime,
    warnings: &Warnings,
) -> Result<Vec<Listed>, StoreError> {
    let list_prefix = prefix.dir_key(dir);
    let mut entries: BTreeMap<String, Listed> = BTreeMap::new();
    let mut pages = store.list_all(&list_prefix, true);
    while let Some(page) = pages.try_next().await? {
        add_page(&mut entries, &page, &list_prefix, dir_mtime, warnings);
    }
    Ok(entries.into_values().collect())
}

/// Add one listing page's entries. A server (or proxy) may answer with keys that are not
/// under the prefix asked for: they are skipped with a warning, never sliced blindly.
fn add_page(
    entries: &mut BTreeMap<String, Listed>,
    page: &ListPage,
    list_prefix: &str,
    dir_mtime: SystemTime,
    warnings: &Warnings,
) {
    for cp in &page.prefixes {
        let Some(rest) = cp.strip_prefix(list_prefix) else {
            warnings.once(cp, &"listed outside the prefix asked for");
            continue;
        };
        // A key with an empty component (`dir//x`) lists as the common prefix `dir//`,
        // whose name is empty: refused below.
        let name = rest.trim_end_matches('/');
        if let Err(why) = validate_name(name) {
            warnings.once(cp, &why);
            continue;
        }
        entries.insert(
            name.to_owned(),
            Listed {
                name: name.to_owned(),
                kind: Kind::Dir,
                stat: Stat::new(0, dir_mtime, None),
            },
        );
    }
    for o in &page.objects {
        let Some(name) = o.key.strip_prefix(list_prefix) else {
            warnings.once(&o.key, &"listed outside the prefix asked for");
            continue;
        };
        if name.is_empty() {
            // The directory's own marker object.
            if o.size > 0 {
                warnings.once(&o.key, &"directory marker holds data, which is ignored");
            }
            continue;
        }
        if let Err(why) = validate_name(name) {
            warnings.once(&o.key, &why);
            continue;
        }
        entries.entry(name.to_owned()).or_insert_with(|| Listed {
            name: name.to_owned(),
            kind: Kind::File,
            stat: Stat::new(o.size, o.mtime, o.etag.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::ObjectInfo;
    use crate::s3::memory::MemoryStore;

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
        let obj = |key: &str| ObjectInfo {
            key: key.into(),
            size: 1,
            mtime: SystemTime::UNIX_EPOCH,
            etag: None,
            meta: None,
            headers: None,
        };
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
        let mut entries = BTreeMap::new();
        let w = Warnings::default();
        add_page(&mut entries, &page, "p/d/", SystemTime::UNIX_EPOCH, &w);
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
            let mut entries = BTreeMap::new();
            add_page(&mut entries, &page, &list_prefix, SystemTime::UNIX_EPOCH, &Warnings::default());
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
