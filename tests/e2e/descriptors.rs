//! Several descriptors on one file, as on a local disk: they see each other's writes,
//! several writers at once make one file, a truncate is read back through every descriptor,
//! and a file unlinked while open lives on for its descriptors only.

use std::process::{Command, Stdio};

use crate::common;

/// `python3 -c SCRIPT ARGS...`, asserting success; returns stdout.
fn py(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_reader_sees_what_another_descriptor_just_wrote() {
    let (s3, p, m) = common::mount_fresh_prefix("fd-share");
    // The shell's `> f` is open while `wc` opens f again and reads it.
    let out = Command::new("sh")
        .arg("-c")
        .arg("( echo foo; wc -c < f >&2 ) > f")
        .current_dir(m.path(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "4");
    assert_eq!(s3.get(&format!("{p}/f")).unwrap(), b"foo\n");

    // Two descriptors in one process: a write through one is read through the other, and
    // the second writer's bytes land in the same file.
    let got = py(
        r#"
import os, sys
f = sys.argv[1]
a = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
os.write(a, b"hello ")
b = os.open(f, os.O_RDWR)
os.lseek(b, 0, os.SEEK_END)
os.write(b, b"world")
r = os.open(f, os.O_RDONLY)
print(os.read(r, 100).decode())
os.close(a); os.close(b); os.close(r)
"#,
        &[m.path("g").to_str().unwrap()],
    );
    assert_eq!(got.trim(), "hello world");
    assert_eq!(s3.get(&format!("{p}/g")).unwrap(), b"hello world");
}

#[test]
fn several_writers_at_once_make_one_file_committed_by_the_last_close() {
    let (s3, p, m) = common::mount_fresh_prefix("fd-writers");
    // 8 blocks of 1 MiB, each written by its own dd into one file, all at once.
    let block = 1 << 20;
    let src = common::pseudo_random(8 * block, 12);
    let dir = common::empty_dir();
    std::fs::write(dir.path().join("src"), &src).unwrap();
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new("dd")
                .arg(format!("if={}", dir.path().join("src").display()))
                .arg(format!("of={}", m.path("f").display()))
                .args(["bs=1M", "count=1", "conv=notrunc"])
                .arg(format!("seek={i}"))
                .arg(format!("skip={i}"))
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a dd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        std::fs::read(m.path("f")).unwrap() == src,
        "content through the mount"
    );
    assert!(
        s3.get(&format!("{p}/f")).unwrap() == src,
        "content in the bucket"
    );
    assert_eq!(s3.pending_uploads(&p), 0);
}

#[test]
fn a_truncate_is_read_back_through_the_same_and_other_descriptors() {
    let (s3, p, m) = common::mount_fresh_prefix("fd-trunc");
    s3.put(&format!("{p}/f"), "0123456789");
    let got = py(
        r#"
import os, sys
f = sys.argv[1]
# O_DIRECT: every read reaches the file system, not the kernel's page cache.
r = os.open(f, os.O_RDONLY | os.O_DIRECT)
assert os.pread(r, 100, 0) == b"0123456789"
os.truncate(f, 4)
out = [os.pread(r, 100, 0)]
w = os.open(f, os.O_RDWR | os.O_DIRECT)
os.write(w, b"abcdefgh")
os.ftruncate(w, 6)
out.append(os.pread(w, 100, 0))
out.append(os.pread(r, 100, 0))
os.close(w)
out.append(os.pread(r, 100, 0))
os.close(r)
print(b"|".join(out).decode())
"#,
        &[m.path("f").to_str().unwrap()],
    );
    assert_eq!(got.trim(), "0123|abcdef|abcdef|abcdef");
    assert_eq!(s3.get(&format!("{p}/f")).unwrap(), b"abcdef");
}

#[test]
fn a_file_unlinked_while_open_lives_on_for_its_descriptors_only() {
    let (s3, p, m) = common::mount_fresh_prefix("fd-unlink");
    // Bigger than a part: fetched back in several requests.
    let old = common::pseudo_random(20 << 20, 5);
    s3.put(&format!("{p}/old"), old.clone());
    let out = common::empty_dir();
    let copy = out.path().join("old-copy");
    let got = py(
        r#"
import os, sys
d = sys.argv[1]
old = os.open(d + "/old", os.O_RDONLY)
first = os.read(old, 4096)
tmp = os.open(d + "/tmp", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.write(tmp, b"scratch ")
os.unlink(d + "/tmp")
os.unlink(d + "/old")
names = ",".join(sorted(os.listdir(d)))
# The name is free at once: a new file takes it.
with open(d + "/old", "wb") as n:
    n.write(b"new")
os.write(tmp, b"space")
os.fsync(tmp)
t = os.pread(tmp, 100, 0)
size = os.fstat(old).st_size
data = first
while True:
    chunk = os.read(old, 1 << 20)
    if not chunk:
        break
    data += chunk
with open(sys.argv[2], "wb") as f:
    f.write(data)
os.close(tmp)
os.close(old)
print(names + "|" + t.decode() + "|" + str(size))
"#,
        &[m.path("").to_str().unwrap(), copy.to_str().unwrap()],
    );
    assert_eq!(got.trim(), format!("|scratch space|{}", 20 << 20));
    assert!(
        std::fs::read(&copy).unwrap() == old,
        "the unlinked file read whole"
    );
    // Only the new file exists, and nothing was uploaded for the unlinked ones.
    assert_eq!(s3.keys(&format!("{p}/")), vec![format!("{p}/old")]);
    assert_eq!(s3.get(&format!("{p}/old")).unwrap(), b"new");
    assert_eq!(s3.pending_uploads(&p), 0);
    assert_eq!(std::fs::read(m.path("old")).unwrap(), b"new");
    assert!(!m.path("tmp").exists());
}
