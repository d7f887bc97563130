//! Writing through the mount, checked byte for byte through aws-sdk-s3: new files, large
//! (multipart) uploads, shell redirection and dd, overwrite, append, truncate, random writes
//! into a large object, writes to a file renamed while open, the tools that need them
//! (sed -i, rsync, tar -x, cp -r, cp -p), read-only mounts and the guard modes
//! (`--no-delete`, `--no-overwrite`) against Garage, and SSE-KMS encryption of uploads
//! against moto.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

use serde_json::json;

use crate::common::{
    self, MotoRole, Mount, S3, errno, moto_lock, mount_fresh_prefix, pseudo_random, rt, sh, unique,
};

const KMS_BUCKET: &str = "s3mount-features";
const KMS_PREFIX: &str = "f";

#[test]
fn writes_land_in_s3_exactly() {
    let s3 = S3::garage();
    let p = unique("write");
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &[]);

    fs::File::create(m.path("empty")).unwrap();
    fs::write(m.path("one"), b"x").unwrap();
    let big = pseudo_random(20 << 20, 3);
    {
        let mut f = fs::File::create(m.path("big")).unwrap();
        for chunk in big.chunks(1 << 20) {
            f.write_all(chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    assert_eq!(s3.get(&format!("{p}/empty")).unwrap(), b"");
    assert_eq!(s3.get(&format!("{p}/one")).unwrap(), b"x");
    assert!(
        s3.get(&format!("{p}/big")).unwrap() == big,
        "20 MiB multipart upload differs"
    );
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0);
    // Read back through the mount too.
    assert!(fs::read(m.path("big")).unwrap() == big);

    // Shell redirection (open, dup2, close, write) and dd.
    sh(&m.dir, "echo hello > redir.txt && echo again >> /dev/null");
    assert_eq!(s3.get(&format!("{p}/redir.txt")).unwrap(), b"hello\n");
    sh(
        &m.dir,
        "dd if=/dev/zero of=dd.bin bs=64k count=40 status=none",
    );
    assert_eq!(
        s3.get(&format!("{p}/dd.bin")).unwrap(),
        vec![0u8; 40 * 65536]
    );

    // Overwrite with O_TRUNC.
    fs::write(m.path("one"), b"replaced").unwrap();
    assert_eq!(s3.get(&format!("{p}/one")).unwrap(), b"replaced");

    // cp -r of a tree from local disk.
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    let mut files = vec![];
    for (i, rel) in ["a.txt", "sub/b.bin", "sub/deeper/c", "sub/deeper/d"]
        .iter()
        .enumerate()
    {
        let data = pseudo_random(1000 * (i + 1) * (i + 1), i as u64 + 10);
        fs::write(tree.join(rel), &data).unwrap();
        files.push((rel.to_string(), data));
    }
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&tree)
        .arg(&m.dir)
        .status()
        .unwrap();
    assert!(status.success(), "cp -r failed");
    for (rel, data) in files {
        assert_eq!(s3.get(&format!("{p}/tree/{rel}")).unwrap(), data, "{rel}");
    }
}

#[test]
fn overwrite_append_truncate() {
    let (s3, p, m) = mount_fresh_prefix("owr");
    let key = |n: &str| format!("{p}/{n}");
    fs::write(m.path("f"), b"0123456789").unwrap();
    fs::write(m.path("f"), b"short").unwrap();
    assert_eq!(s3.get(&key("f")).unwrap(), b"short");
    fs::write(m.path("f"), b"a much longer body").unwrap();
    assert_eq!(s3.get(&key("f")).unwrap(), b"a much longer body");

    for part in [&b"+one"[..], b"+two"] {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(m.path("f"))
            .unwrap();
        f.write_all(part).unwrap();
    }
    assert_eq!(s3.get(&key("f")).unwrap(), b"a much longer body+one+two");
    sh(&m.dir, "echo line >> f");
    assert_eq!(
        s3.get(&key("f")).unwrap(),
        b"a much longer body+one+twoline\n"
    );

    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.set_len(6).unwrap();
    drop(f);
    assert_eq!(s3.get(&key("f")).unwrap(), b"a much");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.set_len(9).unwrap();
    drop(f);
    assert_eq!(s3.get(&key("f")).unwrap(), b"a much\0\0\0");
    // Reopening right after close, before the kernel's release arrives, must not be EBUSY.
    let out = sh(
        &m.dir,
        "for i in $(seq 1 40); do echo $i > g && cat g && echo more >> g && touch g && rm g; done | tail -1",
    );
    assert_eq!(out, "40\n");
    sh(&m.dir, "truncate -s 0 f");
    assert_eq!(s3.get(&key("f")).unwrap(), b"");
    assert_eq!(fs::metadata(m.path("f")).unwrap().len(), 0);
}

#[test]
fn random_writes_into_a_30_mib_object() {
    let (s3, p, m) = mount_fresh_prefix("rnd");
    let mut model = pseudo_random(30 << 20, 5);
    s3.put(&format!("{p}/big"), model.clone());
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("big"))
        .unwrap();
    for i in 0..10u64 {
        let off = (i * 3_000_017 + 12_345) % (30 << 20);
        let data = format!("<write {i} at {off}>").into_bytes();
        f.write_all_at(&data, off).unwrap();
        model[off as usize..off as usize + data.len()].copy_from_slice(&data);
    }
    // Read back through the same descriptor before closing.
    let mut buf = vec![0u8; 64];
    f.read_exact_at(&mut buf, 12_345).unwrap();
    assert_eq!(&buf[..], &model[12_345..12_345 + 64]);
    f.sync_all().unwrap();
    drop(f);
    assert!(
        s3.get(&format!("{p}/big")).unwrap() == model,
        "30 MiB object differs"
    );
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0);
}

#[test]
fn edits_after_fsync_keep_the_parts_the_first_commit_copied() {
    // The first commit (fsync) copies the untouched parts server-side; the edit after it
    // lands in one of those parts, whose other bytes must come from S3, not be zeros.
    let (s3, p, m) = mount_fresh_prefix("refsync");
    let mut model = pseudo_random(30 << 20, 9);
    s3.put(&format!("{p}/big"), model.clone());
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("big"))
        .unwrap();
    for (off, data) in [(1u64 << 20, &b"first edit"[..]), (29 << 20, b"tail edit")] {
        f.write_all_at(data, off).unwrap();
        model[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    f.sync_all().unwrap();
    assert!(s3.get(&format!("{p}/big")).unwrap() == model, "after fsync");
    let off = 17u64 << 20;
    f.write_all_at(b"second edit", off).unwrap();
    model[off as usize..off as usize + 11].copy_from_slice(b"second edit");
    drop(f);
    let got = s3.get(&format!("{p}/big")).unwrap();
    let first_bad = got.iter().zip(&model).position(|(a, b)| a != b);
    assert!(
        first_bad.is_none() && got.len() == model.len(),
        "object differs at {first_bad:?}"
    );
    assert_eq!(s3.pending_uploads(&format!("{p}/")), 0);
}

#[test]
fn renaming_a_file_open_for_writing_moves_later_writes_too() {
    // What logrotate does to a daemon's log: rename it while the daemon keeps writing.
    let (s3, p, m) = mount_fresh_prefix("mvopen");
    let mut f = fs::File::create(m.path("app.log")).unwrap();
    f.write_all(b"one\n").unwrap();
    fs::rename(m.path("app.log"), m.path("app.log.1")).unwrap();
    f.write_all(b"two\n").unwrap();
    drop(f);
    assert_eq!(
        s3.get(&format!("{p}/app.log")),
        None,
        "the old name must not come back"
    );
    assert_eq!(s3.get(&format!("{p}/app.log.1")).unwrap(), b"one\ntwo\n");

    // The same when the directory around it moves.
    fs::create_dir(m.path("d")).unwrap();
    let mut g = fs::File::create(m.path("d/inner")).unwrap();
    g.write_all(b"first\n").unwrap();
    fs::rename(m.path("d"), m.path("e")).unwrap();
    g.write_all(b"second\n").unwrap();
    g.sync_all().unwrap();
    drop(g);
    assert_eq!(s3.get(&format!("{p}/d/inner")), None);
    assert_eq!(s3.get(&format!("{p}/e/inner")).unwrap(), b"first\nsecond\n");
    assert_eq!(fs::read(m.path("e/inner")).unwrap(), b"first\nsecond\n");
}

#[test]
fn editing_tools_work() {
    let (s3, p, m) = mount_fresh_prefix("tools");
    fs::write(m.path("conf"), b"name=old\nsize=1\n").unwrap();
    sh(&m.dir, "sed -i 's/old/new/' conf");
    assert_eq!(s3.get(&format!("{p}/conf")).unwrap(), b"name=new\nsize=1\n");

    // rsync (temp file + rename) and tar -x of a tree.
    let src = tempfile::tempdir().unwrap();
    for i in 0..30 {
        let d = src.path().join(format!("t/d{}", i % 4));
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join(format!("f{i}")),
            pseudo_random(100 * i + 1, i as u64),
        )
        .unwrap();
    }
    let status = std::process::Command::new("rsync")
        .arg("-a")
        .arg(src.path().join("t/"))
        .arg(m.path("rsynced/"))
        .status()
        .unwrap();
    assert!(status.success());
    sh(
        src.path(),
        &format!("tar -cf t.tar t && tar -xf t.tar -C {}", m.dir.display()),
    );
    for i in 0..30 {
        let rel = format!("d{}/f{i}", i % 4);
        let want = pseudo_random(100 * i + 1, i as u64);
        assert_eq!(
            s3.get(&format!("{p}/rsynced/{rel}")).unwrap(),
            want,
            "{rel}"
        );
        assert_eq!(s3.get(&format!("{p}/t/{rel}")).unwrap(), want, "{rel}");
    }
    // cp -p keeps mode and mtime.
    let local = src.path().join("keep");
    fs::write(&local, b"keep").unwrap();
    fs::set_permissions(&local, fs::Permissions::from_mode(0o604)).unwrap();
    sh(src.path(), "touch -d @1400000000 keep");
    sh(src.path(), &format!("cp -p keep {}/kept", m.dir.display()));
    let md = fs::metadata(m.path("kept")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o604);
    assert_eq!(md.mtime(), 1_400_000_000);
    // Seek back and patch a header, as some writers do.
    let mut f = fs::File::create(m.path("patched")).unwrap();
    f.write_all(b"XXXX body").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"HEAD").unwrap();
    drop(f);
    assert_eq!(s3.get(&format!("{p}/patched")).unwrap(), b"HEAD body");
}

#[test]
fn read_only_mount_refuses_changes() {
    let s3 = S3::garage();
    let p = unique("ro");
    s3.put(&format!("{p}/f"), b"data".to_vec());
    let m = Mount::garage(&format!("{}/{p}", s3.bucket), &["--read-only"]);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"data");
    assert_eq!(
        errno(&fs::write(m.path("new"), b"x").unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno(&fs::remove_file(m.path("f")).unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno(&fs::create_dir(m.path("d")).unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno(
            &fs::OpenOptions::new()
                .write(true)
                .open(m.path("f"))
                .unwrap_err()
        ),
        libc::EROFS
    );
    assert_eq!(s3.get(&format!("{p}/f")).unwrap(), b"data");
}

#[test]
fn guard_modes() {
    let s3 = S3::garage();
    let p = unique("guard");
    s3.put(&format!("{p}/existing"), b"keep".to_vec());
    let target = format!("{}/{p}", s3.bucket);
    let perm = libc::EPERM;
    {
        let m = Mount::garage(&target, &["--no-delete"]);
        assert_eq!(
            errno(&fs::remove_file(m.path("existing")).unwrap_err()),
            perm
        );
        assert_eq!(
            errno(&fs::rename(m.path("existing"), m.path("elsewhere")).unwrap_err()),
            perm
        );
        fs::write(m.path("existing"), b"changed").unwrap(); // overwrite is allowed
        fs::create_dir(m.path("d")).unwrap();
        assert_eq!(errno(&fs::remove_dir(m.path("d")).unwrap_err()), perm);
    }
    assert_eq!(s3.get(&format!("{p}/existing")).unwrap(), b"changed");
    {
        let m = Mount::garage(&target, &["--no-overwrite"]);
        assert_eq!(
            errno(&fs::write(m.path("existing"), b"x").unwrap_err()),
            perm
        );
        assert_eq!(
            errno(
                &fs::OpenOptions::new()
                    .append(true)
                    .open(m.path("existing"))
                    .unwrap_err()
            ),
            perm
        );
        assert_eq!(
            errno(
                &fs::set_permissions(m.path("existing"), fs::Permissions::from_mode(0o600))
                    .unwrap_err()
            ),
            perm
        );
        fs::write(m.path("new"), b"new").unwrap();
        fs::remove_file(m.path("new")).unwrap(); // deleting is allowed
    }
    {
        let m = Mount::garage(&target, &["--no-overwrite", "--no-delete"]);
        fs::write(m.path("appended"), b"only new files").unwrap();
        assert_eq!(
            errno(&fs::remove_file(m.path("appended")).unwrap_err()),
            perm
        );
        assert_eq!(
            errno(&fs::write(m.path("appended"), b"x").unwrap_err()),
            perm
        );
    }
    assert_eq!(s3.get(&format!("{p}/existing")).unwrap(), b"changed");
    assert_eq!(s3.get(&format!("{p}/appended")).unwrap(), b"only new files");
    assert!(s3.get(&format!("{p}/new")).is_none());
}

#[test]
fn kms_encryption_of_uploads() {
    let mut moto = moto_lock();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": [format!("arn:aws:s3:::{KMS_BUCKET}"), format!("arn:aws:s3:::{KMS_BUCKET}/*")],
            },
            {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*"},
        ],
    });
    let role = MotoRole::setup(&mut moto, KMS_BUCKET, KMS_PREFIX, "ext-k", &policy, true);
    let key_arn = role.kms_key_arn.clone().expect("a KMS key");
    let conn = role.conn();
    let kms = ["--sse", "aws:kms", "--sse-kms-key-id", key_arn.as_str()];

    let mut check = common::s3mount_cmd();
    check.envs(conn.env.iter().map(|(k, v)| (k, v)));
    check
        .args(["check", &format!("{KMS_BUCKET}/{KMS_PREFIX}")])
        .args(kms)
        .args(&conn.args);
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mount = Mount::with(&conn, &format!("{KMS_BUCKET}/{KMS_PREFIX}"), &kms);
    fs::write(mount.path("secret.txt"), b"encrypted at rest").unwrap();
    assert_eq!(
        fs::read(mount.path("secret.txt")).unwrap(),
        b"encrypted at rest"
    );
    drop(mount);
    moto.auth_off();
    let s3 = S3::new(moto.endpoint(), "test", "test", KMS_BUCKET);
    let head = rt()
        .block_on(
            s3.client
                .head_object()
                .bucket(KMS_BUCKET)
                .key(format!("{KMS_PREFIX}/secret.txt"))
                .send(),
        )
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|e| e.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.ssekms_key_id(), Some(key_arn.as_str()));
}
