//! Reading through the mount, against Garage: whole files and random ranges byte for byte
//! (with the prefetcher, at and past EOF, small and empty files), concurrent readers, and
//! changes made by other clients showing up after the attribute TTL; the kernel's readahead
//! raised so that sequential reads arrive as 1 MiB requests.

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;

use crate::common::metrics::{free_port, scrape, value};
use crate::common::{self, Mount, S3, pseudo_random, unique};

#[test]
fn reads_are_byte_exact() {
    let s3 = S3::garage();
    let p = unique("read");
    let big = pseudo_random(50 << 20, 7);
    s3.put(&format!("{p}/big.bin"), big.clone());
    s3.put(&format!("{p}/small.txt"), b"0123456789".to_vec());
    s3.put(&format!("{p}/empty"), Vec::new());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);

    // Whole file, sequentially (exercises the prefetcher).
    let got = fs::read(m.path("big.bin")).unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big, "50 MiB read differs from the object");

    // Random ranges with pread.
    let f = fs::File::open(m.path("big.bin")).unwrap();
    let mut seed = 99u64;
    for _ in 0..40 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (seed >> 16) % big.len() as u64;
        let len = 1 + ((seed >> 8) % 300_000) as usize;
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, off).unwrap();
        let end = (off as usize + len).min(big.len());
        assert_eq!(n, end - off as usize);
        assert_eq!(&buf[..n], &big[off as usize..end], "range at {off}+{len}");
    }
    // Last byte, and past EOF.
    let mut one = [0u8; 1];
    assert_eq!(f.read_at(&mut one, big.len() as u64 - 1).unwrap(), 1);
    assert_eq!(one[0], big[big.len() - 1]);
    assert_eq!(f.read_at(&mut one, big.len() as u64).unwrap(), 0);
    assert_eq!(f.read_at(&mut one, big.len() as u64 + 12345).unwrap(), 0);

    // Small and empty files.
    let mut s = String::new();
    fs::File::open(m.path("small.txt"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "0123456789");
    let sf = fs::File::open(m.path("small.txt")).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(sf.read_at(&mut buf, 8).unwrap(), 2);
    assert_eq!(&buf[..2], b"89");
    assert_eq!(fs::read(m.path("empty")).unwrap(), b"");
}

/// As root, the mount's backing device gets a readahead of 1 MiB (the kernel creates it
/// at 128 KiB, and a FUSE mount reads ahead the smaller of that and what the daemon
/// asked for), so a sequential read reaches the daemon in 1 MiB requests, not 128 KiB ones.
#[test]
fn sequential_reads_arrive_as_one_mebibyte_requests() {
    use std::os::unix::fs::MetadataExt;
    let s3 = S3::garage();
    let p = unique("readahead");
    let data = pseudo_random(16 << 20, 11);
    s3.put(&format!("{p}/f.bin"), data.clone());
    let addr = format!("127.0.0.1:{}", free_port());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &["--metrics-addr", &addr]);
    let dev = fs::metadata(m.path("")).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let ra = fs::read_to_string(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb")).unwrap();
    assert_eq!(ra.trim(), "1024", "read_ahead_kb of the mount's device");

    let addr = addr.parse().unwrap();
    let before = value(&scrape(addr), READS);
    let mut f = fs::File::open(m.path("f.bin")).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data, "16 MiB read differs from the object");
    let reads = value(&scrape(addr), READS) - before;
    // 16 requests of 1 MiB, and a few shorter ones where readahead starts; at the kernel's
    // 128 KiB it is 128.
    assert!(
        (16.0..=32.0).contains(&reads),
        "{reads} FUSE reads for 16 MiB"
    );
}

const READS: &str = "s3mount_fuse_requests_total{opcode=\"read\"}";

#[test]
fn concurrent_readers_get_exact_bytes() {
    let s3 = S3::garage();
    let p = unique("conc");
    let a = pseudo_random(9 << 20, 1);
    let b = pseudo_random(3 << 20, 2);
    s3.put(&format!("{p}/a"), a.clone());
    s3.put(&format!("{p}/b"), b.clone());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);
    std::thread::scope(|scope| {
        for i in 0..6 {
            let (path, want) = if i % 2 == 0 {
                (m.path("a"), &a)
            } else {
                (m.path("b"), &b)
            };
            scope.spawn(move || assert!(fs::read(path).unwrap() == *want));
        }
    });
}

#[test]
fn whole_bucket_mount_and_changes_by_other_clients() {
    let bucket = unique("whole").to_lowercase();
    common::garage_bucket(&bucket);
    let s3 = S3::garage().with_bucket(&bucket);
    s3.put("root.txt", b"v1".to_vec());
    let m = Mount::garage(&bucket, &[]);
    assert_eq!(fs::read(m.path("root.txt")).unwrap(), b"v1");
    // Another client replaces and adds objects; after the attribute TTL we see them.
    s3.put("root.txt", b"version two".to_vec());
    s3.put("later.txt", b"new".to_vec());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(fs::read(m.path("root.txt")).unwrap(), b"version two");
    assert_eq!(fs::read(m.path("later.txt")).unwrap(), b"new");
}
