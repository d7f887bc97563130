//! A randomized operation sequence through a real mount, checked step by step against an
//! in-memory model of a POSIX file system: several descriptors (and other processes) on a
//! few files in two directories, with writes at offsets, appends, truncates, reads,
//! renames, unlinks while open, chmod and utimens. At the end every descriptor is closed
//! and the bucket must hold exactly the model's files, with no upload left pending.
//!
//! Seeded: `S3MOUNT_MODEL_SEED=N` replays a run (a failure names its seed and its last
//! steps). Bounded: at most `STEPS` steps or `DEADLINE`, whichever comes first.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::common;

const STEPS: usize = 400;
const DEADLINE: Duration = Duration::from_secs(40);
const NAMES: [&str; 6] = ["a", "b", "c", "d/a", "d/b", "d/c"];

/// A small deterministic generator (xorshift64*): the run depends on the seed alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| b'a' + self.below(26) as u8).collect()
    }
}

/// One inode of the model: what a local file system would hold.
#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    mode: u32,
}

/// An open descriptor of the mount and of the model.
struct Fd {
    file: File,
    ino: usize,
    read: bool,
    write: bool,
    append: bool,
}

#[derive(Default)]
struct Model {
    names: BTreeMap<&'static str, usize>,
    inodes: HashMap<usize, Inode>,
    next: usize,
}

impl Model {
    fn create(&mut self, name: &'static str) -> usize {
        self.next += 1;
        self.inodes.insert(
            self.next,
            Inode {
                data: Vec::new(),
                mode: 0o644,
            },
        );
        self.names.insert(name, self.next);
        self.next
    }
}

struct Run {
    root: PathBuf,
    rng: Rng,
    model: Model,
    fds: Vec<Fd>,
    log: Vec<String>,
    seed: u64,
}

impl Run {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Panic with the seed and the last steps.
    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(40).rev().collect();
        panic!(
            "{what}\nseed {} (S3MOUNT_MODEL_SEED={0} replays it); last steps:\n  {}",
            self.seed,
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }

    fn check<T: PartialEq + std::fmt::Debug>(&self, what: &str, got: T, want: T) {
        if got != want {
            self.fail(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    fn ok<T>(&self, what: &str, r: std::io::Result<T>) -> T {
        r.unwrap_or_else(|e| self.fail(format!("{what}: {e}")))
    }

    fn step(&mut self) {
        let name = NAMES[self.rng.below(NAMES.len())];
        let exists = self.model.names.contains_key(name);
        match self.rng.below(14) {
            // open
            0..=2 if self.fds.len() < 8 => {
                let kind = self.rng.below(5);
                let (read, write, append, trunc) = match kind {
                    0 => (true, false, false, false),
                    1 => (true, true, false, false),
                    2 => (false, true, false, false),
                    3 => (false, true, true, false),
                    _ => (false, true, false, true),
                };
                // O_DIRECT now and then: reads and writes reach the file system itself,
                // not only the kernel's page cache.
                let direct = self.rng.below(3) == 0;
                self.log.push(format!(
                    "open {name} r{read} w{write} append{append} trunc{trunc} direct{direct} -> fd{}",
                    self.fds.len()
                ));
                let mut o = OpenOptions::new();
                o.read(read).write(write && !append).append(append);
                if write {
                    o.create(true);
                }
                if trunc {
                    o.truncate(true);
                }
                if direct {
                    o.custom_flags(libc::O_DIRECT);
                }
                let r = o.open(self.path(name));
                if !exists && !write {
                    if r.is_ok() {
                        self.fail(format!("{name} opened but does not exist"));
                    }
                    return;
                }
                let file = self.ok("open", r);
                let ino = match self.model.names.get(name) {
                    Some(&i) => i,
                    None => self.model.create(name),
                };
                if trunc {
                    self.model.inodes.get_mut(&ino).unwrap().data.clear();
                }
                self.fds.push(Fd {
                    file,
                    ino,
                    read,
                    write,
                    append,
                });
            }
            // close
            3 if !self.fds.is_empty() => {
                let i = self.rng.below(self.fds.len());
                self.log.push(format!("close fd{i}"));
                drop(self.fds.remove(i));
            }
            // write at an offset, or append
            4..=5 if !self.fds.is_empty() => {
                let i = self.rng.below(self.fds.len());
                if !self.fds[i].write {
                    return;
                }
                let n = 1 + self.rng.below(3000);
                let data = self.rng.bytes(n);
                let ino = self.fds[i].ino;
                let len = self.model.inodes[&ino].data.len();
                let off = if self.fds[i].append {
                    len
                } else {
                    self.rng.below(len + 2000)
                };
                self.log
                    .push(format!("write fd{i} {} bytes at {off}", data.len()));
                let r = if self.fds[i].append {
                    self.fds[i].file.write_all(&data)
                } else {
                    self.fds[i].file.write_all_at(&data, off as u64)
                };
                self.ok("write", r);
                let d = &mut self.model.inodes.get_mut(&ino).unwrap().data;
                if d.len() < off + data.len() {
                    d.resize(off + data.len(), 0);
                }
                d[off..off + data.len()].copy_from_slice(&data);
            }
            // read through a descriptor
            6..=7 if !self.fds.is_empty() => {
                let i = self.rng.below(self.fds.len());
                if !self.fds[i].read {
                    return;
                }
                let want = self.model.inodes[&self.fds[i].ino].data.clone();
                let off = self.rng.below(want.len() + 1);
                self.log.push(format!("read fd{i} from {off}"));
                let mut got = vec![0u8; want.len() + 100];
                let n = self.ok(
                    "pread",
                    read_full_at(&self.fds[i].file, &mut got, off as u64),
                );
                got.truncate(n);
                if got != want[off..] {
                    self.fail(format!(
                        "read fd{i} from {off}: {} bytes, want {} (first difference at {:?})",
                        got.len(),
                        want.len() - off,
                        got.iter().zip(&want[off..]).position(|(a, b)| a != b)
                    ));
                }
            }
            // truncate by descriptor or by path
            8 if exists || !self.fds.is_empty() => {
                let size = self.rng.below(6000) as u64;
                let by_fd = !self.fds.is_empty() && self.rng.below(2) == 0;
                let ino = if by_fd {
                    let i = self.rng.below(self.fds.len());
                    if !self.fds[i].write {
                        return;
                    }
                    self.log.push(format!("ftruncate fd{i} {size}"));
                    let r = self.fds[i].file.set_len(size);
                    self.ok("ftruncate", r);
                    self.fds[i].ino
                } else {
                    if !exists {
                        return;
                    }
                    self.log.push(format!("truncate {name} {size}"));
                    let r = OpenOptions::new()
                        .write(true)
                        .open(self.path(name))
                        .and_then(|f| f.set_len(size));
                    self.ok("truncate", r);
                    self.model.names[name]
                };
                self.model
                    .inodes
                    .get_mut(&ino)
                    .unwrap()
                    .data
                    .resize(size as usize, 0);
            }
            // rename (replacing the target, which may be open)
            9 if exists => {
                let to = NAMES[self.rng.below(NAMES.len())];
                if to == name {
                    return;
                }
                self.log.push(format!("rename {name} {to}"));
                let r = std::fs::rename(self.path(name), self.path(to));
                self.ok("rename", r);
                let ino = self.model.names.remove(name).unwrap();
                self.model.names.insert(to, ino);
            }
            // unlink (maybe while open)
            10 if exists => {
                self.log.push(format!("unlink {name}"));
                let r = std::fs::remove_file(self.path(name));
                self.ok("unlink", r);
                self.model.names.remove(name);
            }
            // chmod, utimens
            11 if exists => {
                let mode = [0o600, 0o640, 0o644, 0o755][self.rng.below(4)];
                self.log.push(format!("chmod {name} {mode:o}"));
                let r = std::fs::set_permissions(
                    self.path(name),
                    std::fs::Permissions::from_mode(mode),
                );
                self.ok("chmod", r);
                let ino = self.model.names[name];
                self.model.inodes.get_mut(&ino).unwrap().mode = mode;
                let m = self.ok("stat", std::fs::metadata(self.path(name)));
                self.check(&format!("mode of {name}"), m.mode() & 0o7777, mode);
            }
            12 if exists => {
                let t = SystemTime::UNIX_EPOCH
                    + Duration::new(
                        1_500_000_000 + self.rng.below(100_000_000) as u64,
                        self.rng.below(1_000_000_000) as u32,
                    );
                self.log.push(format!("utimens {name} {t:?}"));
                let r = File::open(self.path(name)).and_then(|f| {
                    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
                });
                self.ok("utimens", r);
                let m = self.ok("stat", std::fs::metadata(self.path(name)));
                self.check(&format!("mtime of {name}"), m.modified().unwrap(), t);
            }
            // another process reads or appends
            13 if exists => {
                let ino = self.model.names[name];
                if self.rng.below(2) == 0 {
                    self.log.push(format!("cat {name}"));
                    let out = self.ok("cat", Command::new("cat").arg(self.path(name)).output());
                    self.check(&format!("cat {name} status"), out.status.success(), true);
                    if out.stdout != self.model.inodes[&ino].data {
                        self.fail(format!(
                            "cat {name}: {} bytes, want {}",
                            out.stdout.len(),
                            self.model.inodes[&ino].data.len()
                        ));
                    }
                } else {
                    let n = 1 + self.rng.below(500);
                    let data = self.rng.bytes(n);
                    self.log.push(format!("sh: {} bytes >> {name}", data.len()));
                    let s = String::from_utf8(data.clone()).unwrap();
                    let out = self.ok(
                        "sh",
                        Command::new("sh")
                            .arg("-c")
                            .arg("printf %s \"$1\" >> \"$2\"")
                            .arg("sh")
                            .arg(&s)
                            .arg(self.path(name))
                            .output(),
                    );
                    self.check(
                        &format!("append to {name} status"),
                        out.status.success(),
                        true,
                    );
                    self.model
                        .inodes
                        .get_mut(&ino)
                        .unwrap()
                        .data
                        .extend_from_slice(&data);
                }
            }
            _ => {}
        }
    }

    /// Every name reads as the model says, and stats with its size and mode.
    fn check_names(&self) {
        for name in NAMES {
            let p = self.path(name);
            match self.model.names.get(name) {
                None => {
                    if p.exists() {
                        self.fail(format!("{name} exists but should not"));
                    }
                }
                Some(ino) => {
                    let want = &self.model.inodes[ino];
                    let m = self.ok(&format!("stat {name}"), std::fs::metadata(&p));
                    self.check(&format!("size of {name}"), m.len(), want.data.len() as u64);
                    self.check(&format!("mode of {name}"), m.mode() & 0o7777, want.mode);
                    let mut got = Vec::new();
                    let r = File::open(&p).and_then(|mut f| f.read_to_end(&mut got));
                    self.ok(&format!("read {name}"), r);
                    if got != want.data {
                        self.fail(format!(
                            "content of {name}: {} bytes, want {}",
                            got.len(),
                            want.data.len()
                        ));
                    }
                }
            }
        }
    }
}

/// pread until end of file (FUSE may answer short at part boundaries; POSIX allows it).
fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read_at(&mut buf[n..], off + n as u64)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

#[test]
fn random_operations_through_the_kernel_match_a_posix_model() {
    let seed = std::env::var("S3MOUNT_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("posix model: seed {seed}");
    let (s3, p, m) = common::mount_fresh_prefix("posix-model");
    std::fs::create_dir(m.path("d")).unwrap();
    let mut run = Run {
        root: m.path(""),
        // Spread the seed's bits (splitmix64) so that small seeds give good sequences.
        rng: Rng({
            let z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) | 1
        }),
        model: Model::default(),
        fds: Vec::new(),
        log: Vec::new(),
        seed,
    };
    let start = Instant::now();
    let mut steps = 0;
    while steps < STEPS && start.elapsed() < DEADLINE {
        run.step();
        steps += 1;
        if steps % 10 == 0 {
            run.check_names();
        }
    }
    eprintln!(
        "posix model: {steps} draws, {} operations, in {:?}",
        run.log.len(),
        start.elapsed()
    );
    run.log.push("close all".into());
    run.fds.clear();
    run.check_names();

    // The bucket holds exactly the model's files, nothing pending.
    let mut want: Vec<String> = run.model.names.keys().map(|n| format!("{p}/{n}")).collect();
    want.push(format!("{p}/d/"));
    want.sort();
    run.check("keys in the bucket", s3.keys(&format!("{p}/")), want);
    for (name, ino) in &run.model.names {
        let got = s3.get(&format!("{p}/{name}")).unwrap_or_default();
        if got != run.model.inodes[ino].data {
            run.fail(format!("object {name} differs from the model"));
        }
    }
    run.check("pending uploads", s3.pending_uploads(&p), 0);
}
