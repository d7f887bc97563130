//! Running as a service: from an fstab line through mount(8) and the mount helper, and as
//! a systemd `Type=notify` unit (READY=1 once the mount is live, STOPPING=1 on SIGTERM).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, garage, is_mounted, mount::bin};

/// mount(8) looks for `/sbin/mount.fuse.s3mount`: a symlink to the binary under test,
/// removed again when the test made it. (Helpers run without PATH, so no other place
/// would do.)
struct HelperLink {
    made: bool,
}

const LINK: &str = "/sbin/mount.fuse.s3mount";

impl HelperLink {
    fn install() -> HelperLink {
        let existed = std::fs::symlink_metadata(LINK).is_ok();
        if existed {
            std::fs::remove_file(LINK).unwrap();
        }
        std::os::unix::fs::symlink(bin(), LINK).unwrap();
        HelperLink { made: !existed }
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_file(LINK);
        }
    }
}

/// `mount -T FSTAB DIR`, run from an empty directory (mount(8) would turn a source that
/// names an existing relative path into an absolute one).
fn mount_with_fstab(fstab: &Path, dir: &Path) -> std::process::Output {
    let g = garage();
    let cwd = common::empty_dir();
    Command::new("mount")
        .arg("-T")
        .arg(fstab)
        .arg(dir)
        .current_dir(cwd.path())
        .env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn unmount(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_mounted(dir) && Instant::now() < deadline {
        let _ = Command::new("umount").arg(dir).output();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!is_mounted(dir), "{dir:?} still mounted");
}

#[test]
fn an_fstab_line_mounts_through_mount_and_the_helper() {
    let _link = HelperLink::install();
    let g = garage();
    let p = common::unique("fstab");
    let tmp = common::empty_dir();
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let fstab = tmp.path().join("fstab");
    let line = |opts: &str| {
        format!(
            "{}/{p} {} fuse.s3mount _netdev,nofail,endpoint_url={},force_path_style,{opts},x-systemd.automount,x-systemd.mount-timeout=30 0 0\n",
            g.bucket,
            dir.display(),
            g.endpoint
        )
    };

    // Generic options understood or ignored, ours spelled with underscores.
    let s3 = common::S3::garage();
    s3.put(&format!("{p}/plain"), "no metadata");
    std::fs::write(&fstab, line("uid=4321,metadata_ttl=0,log_file=/dev/null")).unwrap();
    let out = mount_with_fstab(&fstab, &dir);
    assert!(
        out.status.success(),
        "mount -T failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&dir));
    std::fs::write(dir.join("hello"), "from fstab").unwrap();
    // uid= owns what carries no owner of its own.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(dir.join("plain")).unwrap().uid(), 4321);
    assert_eq!(s3.get(&format!("{p}/hello")).unwrap(), b"from fstab");
    unmount(&dir);

    // `ro`: mounted read-only.
    std::fs::write(&fstab, line("ro,log_file=/dev/null")).unwrap();
    let out = mount_with_fstab(&fstab, &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("hello")).unwrap(),
        "from fstab"
    );
    let e = std::fs::write(dir.join("other"), "x").unwrap_err();
    assert_eq!(common::errno(&e), libc::EROFS);
    unmount(&dir);

    // An unknown option: refused by name, in one line, and nothing mounted.
    std::fs::write(&fstab, line("allow_others")).unwrap();
    let out = mount_with_fstab(&fstab, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown mount option 'allow_others'"),
        "stderr: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "stderr: {stderr}");
    assert!(!is_mounted(&dir));
}

/// Receive one datagram from `sock` within `wait`.
fn recv(sock: &UnixDatagram, wait: Duration) -> Option<String> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn under_systemd_it_stays_in_the_foreground_and_notifies_ready_and_stopping() {
    let g = garage();
    let p = common::unique("notify");
    let tmp = common::empty_dir();
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut child = Command::new(bin())
        .args(["mount", &format!("{}/{p}", g.bucket)])
        .arg(&dir)
        .args(["--endpoint-url", &g.endpoint])
        .env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = None;
    while ready.is_none() && Instant::now() < deadline {
        match recv(&sock, Duration::from_secs(1)) {
            Some(m) if m.lines().any(|l| l == "READY=1") => ready = Some(m),
            Some(_) => {}
            None => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("s3mount exited ({status}) before READY=1");
                }
            }
        }
    }
    let ready = ready.expect("no READY=1 within 30 s");
    assert!(is_mounted(&dir), "READY=1 before the mount was live");
    assert!(ready.contains("STATUS=mounted s3://"), "{ready}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the service process must stay in the foreground"
    );
    std::fs::write(dir.join("f"), "x").unwrap();

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stopping = false;
    while !stopping && Instant::now() < deadline + Duration::from_secs(30) {
        match recv(&sock, Duration::from_secs(1)) {
            Some(m) => stopping |= m.lines().any(|l| l == "STOPPING=1"),
            None => break,
        }
    }
    assert!(stopping, "no STOPPING=1 after SIGTERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(!is_mounted(&dir));
    assert_eq!(common::S3::garage().get(&format!("{p}/f")).unwrap(), b"x");
}
