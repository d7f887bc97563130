//! Reference-model property test (after Mountpoint's): random sequences of file-system
//! operations run against the filesystem core over an in-memory bucket and against a
//! simple model of what the bucket must hold. After every step, every file reads back as
//! the model says, and at the end the bucket holds exactly the model's objects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use s3mount::fs::{Caller, Fs, FsConfig, FsError, Ino, Kind, OpenMode, ROOT_INO, SetAttr};
use s3mount::s3::ObjectStore;
use s3mount::s3::faulty::{Faults, Faulty};
use s3mount::s3::memory::MemoryStore;
use s3mount::s3::retry::{RetryPolicy, Retrying};

const DIRS: [&str; 3] = ["", "d1", "d2"];
const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    /// Replace (or create) a file with `data`.
    Put(usize, usize, Vec<u8>),
    /// Write `data` at `off` in an existing file (or create it).
    WriteAt(usize, usize, u16, Vec<u8>),
    /// Append to an existing file.
    Append(usize, usize, Vec<u8>),
    Truncate(usize, usize, u16),
    Unlink(usize, usize),
    Mkdir(usize),
    Rmdir(usize),
    Rename(usize, usize, usize, usize),
    /// List a directory (which also teaches the core its complete contents).
    List(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DIRS.len();
    let n = 0..NAMES.len();
    let data = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (d.clone(), n.clone(), data.clone()).prop_map(|(d, n, x)| Op::Put(d, n, x)),
        (d.clone(), n.clone(), 0u16..100, data.clone())
            .prop_map(|(d, n, o, x)| Op::WriteAt(d, n, o, x)),
        (d.clone(), n.clone(), data).prop_map(|(d, n, x)| Op::Append(d, n, x)),
        (d.clone(), n.clone(), 0u16..100).prop_map(|(d, n, s)| Op::Truncate(d, n, s)),
        (d.clone(), n.clone()).prop_map(|(d, n)| Op::Unlink(d, n)),
        (1..DIRS.len()).prop_map(Op::Mkdir),
        (1..DIRS.len()).prop_map(Op::Rmdir),
        (d.clone(), n.clone(), d.clone(), n).prop_map(|(a, b, c, e)| Op::Rename(a, b, c, e)),
        d.prop_map(Op::List),
    ]
}

/// What the bucket should hold.
#[derive(Default, Debug)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    /// Directories created with mkdir (a marker object).
    markers: BTreeSet<String>,
}

impl Model {
    fn path(d: usize, n: usize) -> String {
        if d == 0 {
            NAMES[n].to_owned()
        } else {
            format!("{}/{}", DIRS[d], NAMES[n])
        }
    }

    /// Names directly in directory `d`, sorted.
    fn entries(&self, d: usize) -> Vec<String> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for path in self.files.keys() {
            match path.split_once('/') {
                Some((dir, n)) if d != 0 && dir == DIRS[d] => names.insert(n.to_owned()),
                Some((dir, _)) if d == 0 => names.insert(dir.to_owned()),
                None if d == 0 => names.insert(path.clone()),
                _ => false,
            };
        }
        if d == 0 {
            names.extend(self.markers.iter().cloned());
        }
        names.into_iter().collect()
    }

    fn dir_exists(&self, d: usize) -> bool {
        d == 0
            || self.markers.contains(DIRS[d])
            || self
                .files
                .keys()
                .any(|k| k.starts_with(&format!("{}/", DIRS[d])))
    }
}

fn who() -> Caller {
    Caller {
        pid: 1,
        uid: 0,
        gid: 0,
    }
}

async fn dir_ino(fs: &Fs, d: usize) -> Option<Ino> {
    if d == 0 {
        return Some(ROOT_INO);
    }
    match fs.lookup(ROOT_INO, DIRS[d]).await {
        Ok(a) if a.kind == Kind::Dir => Some(a.ino),
        _ => None,
    }
}

/// Open `name` in directory `d` for writing (creating it when absent).
async fn open_write(fs: &Fs, d: usize, n: usize, truncate: bool) -> Option<u64> {
    let dir = dir_ino(fs, d).await?;
    match fs.lookup(dir, NAMES[n]).await {
        Ok(a) => Some(
            fs.open(
                a.ino,
                OpenMode {
                    write: true,
                    truncate,
                },
                who(),
            )
            .await
            .unwrap()
            .fh,
        ),
        Err(FsError::NotFound) => Some(
            fs.create(dir, NAMES[n], 0o644, false, who())
                .await
                .unwrap()
                .1,
        ),
        Err(e) => panic!("lookup: {e}"),
    }
}

async fn read_all(fs: &Fs, d: usize, n: usize) -> Option<Vec<u8>> {
    let dir = dir_ino(fs, d).await?;
    let a = match fs.lookup(dir, NAMES[n]).await {
        Ok(a) => a,
        Err(FsError::NotFound) => return None,
        Err(e) => panic!("lookup: {e}"),
    };
    if a.kind != Kind::File {
        return None;
    }
    let o = fs.open(a.ino, OpenMode::default(), who()).await.unwrap();
    let data = fs.read(o.fh, 0, 1 << 20).await.unwrap().to_vec();
    fs.release(o.fh).await.unwrap();
    Some(data)
}

async fn apply(fs: &Fs, m: &mut Model, op: &Op) {
    match op.clone() {
        Op::Put(d, n, data) => {
            let path = Model::path(d, n);
            if !m.dir_exists(d) || m.markers.contains(&path) {
                return;
            }
            let fh = open_write(fs, d, n, true).await.unwrap();
            fs.write(fh, 0, &data).await.unwrap();
            fs.release(fh).await.unwrap();
            m.files.insert(path, data);
        }
        Op::WriteAt(d, n, off, data) => {
            let path = Model::path(d, n);
            if !m.dir_exists(d) || m.markers.contains(&path) {
                return;
            }
            let fh = open_write(fs, d, n, false).await.unwrap();
            fs.write(fh, off as u64, &data).await.unwrap();
            fs.release(fh).await.unwrap();
            let f = m.files.entry(path).or_default();
            if data.is_empty() {
                return; // pwrite of nothing: no change, not even the size
            }
            let end = off as usize + data.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[off as usize..end].copy_from_slice(&data);
        }
        Op::Append(d, n, data) => {
            let path = Model::path(d, n);
            let Some(len) = m.files.get(&path).map(Vec::len) else {
                return;
            };
            let fh = open_write(fs, d, n, false).await.unwrap();
            fs.write(fh, len as u64, &data).await.unwrap();
            fs.release(fh).await.unwrap();
            m.files.get_mut(&path).unwrap().extend_from_slice(&data);
        }
        Op::Truncate(d, n, size) => {
            let path = Model::path(d, n);
            if !m.files.contains_key(&path) {
                return;
            }
            let dir = dir_ino(fs, d).await.unwrap();
            let a = fs.lookup(dir, NAMES[n]).await.unwrap();
            let change = SetAttr {
                size: Some(size as u64),
                ..SetAttr::default()
            };
            fs.setattr(a.ino, change, None).await.unwrap();
            m.files.get_mut(&path).unwrap().resize(size as usize, 0);
        }
        Op::Unlink(d, n) => {
            let path = Model::path(d, n);
            let r = match dir_ino(fs, d).await {
                Some(dir) => fs.unlink(dir, NAMES[n]).await,
                None => Err(FsError::NotFound),
            };
            assert_eq!(
                r.is_ok(),
                m.files.remove(&path).is_some(),
                "unlink {path}: {r:?}"
            );
        }
        Op::Mkdir(d) => {
            let r = fs.mkdir(ROOT_INO, DIRS[d], 0o755, who()).await;
            let existed = m.dir_exists(d) || m.files.contains_key(DIRS[d]);
            if existed {
                assert!(r.is_err(), "mkdir {} over something: {r:?}", DIRS[d]);
            } else {
                r.unwrap();
                m.markers.insert(DIRS[d].to_owned());
            }
        }
        Op::Rmdir(d) => {
            if !m.dir_exists(d) {
                return;
            }
            let r = fs.rmdir(ROOT_INO, DIRS[d]).await;
            let has_files = m
                .files
                .keys()
                .any(|k| k.starts_with(&format!("{}/", DIRS[d])));
            if has_files {
                assert!(
                    matches!(r, Err(FsError::NotEmpty)),
                    "rmdir non-empty: {r:?}"
                );
            } else {
                r.unwrap();
                m.markers.remove(DIRS[d]);
            }
        }
        Op::Rename(d1, n1, d2, n2) => {
            let (from, to) = (Model::path(d1, n1), Model::path(d2, n2));
            if !m.files.contains_key(&from) || !m.dir_exists(d2) || m.markers.contains(&to) {
                return;
            }
            let (a, b) = (
                dir_ino(fs, d1).await.unwrap(),
                dir_ino(fs, d2).await.unwrap(),
            );
            fs.rename(a, NAMES[n1], b, NAMES[n2], false).await.unwrap();
            let data = m.files.remove(&from).unwrap();
            m.files.insert(to, data);
        }
        Op::List(d) => {
            let Some(dir) = dir_ino(fs, d).await else {
                assert!(!m.dir_exists(d), "{} exists but was not found", DIRS[d]);
                return;
            };
            let fh = fs.opendir(dir).unwrap();
            let mut got: Vec<String> = Vec::new();
            loop {
                let page = fs
                    .readdir(fh, got.len() as u64, got.is_empty())
                    .await
                    .unwrap();
                if page.is_empty() {
                    break;
                }
                got.extend(page.into_iter().map(|e| e.name));
            }
            fs.releasedir(fh);
            // readdir gives no particular order.
            got.sort();
            assert_eq!(got, m.entries(d), "listing of {:?}", DIRS[d]);
        }
    }
}

/// Run `ops` with metadata TTL `ttl`: zero makes every step ask the store, as another
/// client would see it; a long one makes the core answer from what it remembers (caches,
/// known directory contents), which must give the same answers since nobody else writes.
fn run(ops: Vec<Op>, ttl: std::time::Duration) {
    run_with(ops, ttl, None)
}

/// [`run`], with seeded faults injected under the retry layer when `faults` is given: the
/// answers must be the same, since every fault is transient.
fn run_with(ops: Vec<Op>, ttl: std::time::Duration, faults: Option<u64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(MemoryStore::new("b", 2));
        let cfg = FsConfig {
            metadata_ttl: ttl,
            cache_dir: std::env::temp_dir().join("s3mount-model-tests"),
            write_part_size: 5 << 20,
            ..FsConfig::default()
        };
        let under: Arc<dyn ObjectStore> = match faults {
            None => store.clone(),
            Some(seed) => {
                let faults = Faults {
                    before: 0.1,
                    after: 0.1,
                    cut_body: 0.3,
                };
                let policy = RetryPolicy {
                    deadline: std::time::Duration::from_secs(60),
                    // No pauses: the faults are drawn, not real, and the suite's time counts.
                    initial_backoff: std::time::Duration::ZERO,
                    max_backoff: std::time::Duration::ZERO,
                    ..RetryPolicy::default()
                };
                let faulty = Arc::new(Faulty::new(store.clone(), faults, seed));
                Arc::new(Retrying::new(faulty, policy))
            }
        };
        let fs = Fs::new(under, "m/", cfg);
        let mut model = Model::default();
        for op in &ops {
            apply(&fs, &mut model, op).await;
            for (path, want) in &model.files {
                let (d, n) = path.split_once('/').map_or((0, path.as_str()), |(d, n)| {
                    (DIRS.iter().position(|x| *x == d).unwrap(), n)
                });
                let n = NAMES.iter().position(|x| *x == n).unwrap();
                let got = read_all(&fs, d, n).await;
                assert_eq!(got.as_deref(), Some(&want[..]), "{path} after {op:?}");
            }
            for d in 0..DIRS.len() {
                for n in 0..NAMES.len() {
                    let path = Model::path(d, n);
                    if !model.files.contains_key(&path) {
                        let got = read_all(&fs, d, n).await;
                        assert_eq!(got, None, "{path} should not exist after {op:?}");
                    }
                }
            }
        }
        let mut want: Vec<String> = model.files.keys().map(|k| format!("m/{k}")).collect();
        want.extend(model.markers.iter().map(|d| format!("m/{d}/")));
        want.sort();
        assert_eq!(store.keys(), want);
        assert_eq!(store.pending_uploads(), 0);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn filesystem_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops, std::time::Duration::ZERO);
    }

    #[test]
    fn filesystem_with_caches_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops, std::time::Duration::from_secs(3600));
    }

    #[test]
    fn filesystem_with_faults_matches_the_model(
        ops in proptest::collection::vec(op(), 1..40),
        seed in any::<u64>(),
    ) {
        run_with(ops, std::time::Duration::ZERO, Some(seed));
    }
}
