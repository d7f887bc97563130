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
    /// Tests that use the link run one at a time: one's removal would pull it from under
    /// another.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

const LINK: &str = "/sbin/mount.fuse.s3mount";

impl HelperLink {
    fn install() -> HelperLink {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let existed = std::fs::symlink_metadata(LINK).is_ok();
        if existed {
            std::fs::remove_file(LINK).unwrap();
        }
        std::os::unix::fs::symlink(bin(), LINK).unwrap();
        HelperLink {
            made: !existed,
            _one_at_a_time: guard,
        }
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_file(LINK);
        }
    }
}

/// Whatever a test leaves, no daemon or mount outlives it: kills the daemon `.0` (if any)
/// and unmounts `.1` lazily.
struct Cleanup(Option<u32>, std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: signalling our (maybe already gone) child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        if is_mounted(&self.1) {
            let _ = Command::new("umount").arg("-l").arg(&self.1).status();
        }
    }
}

/// `mount -T FSTAB DIR`, run from an empty directory (mount(8) would turn a source that
/// names an existing relative path into an absolute one).
fn mount_with_fstab(fstab: &Path, dir: &Path) -> std::process::Output {
    let g = garage();
    mount_with_fstab_env(
        fstab,
        dir,
        &[
            ("AWS_ACCESS_KEY_ID", &g.key_id),
            ("AWS_SECRET_ACCESS_KEY", &g.secret),
        ],
    )
}

/// `mount -T FSTAB DIR` with only `env` for credentials (and no AWS variables else).
fn mount_with_fstab_env(fstab: &Path, dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let cwd = common::empty_dir();
    Command::new("mount")
        .arg("-T")
        .arg(fstab)
        .arg(dir)
        .current_dir(cwd.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .envs(env.iter().copied())
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
    let _cleanup = Cleanup(None, dir.clone());
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

/// `profile=NAME` in an fstab line: the connection (keys, endpoint, region) comes from the
/// named profile alone, as an administrator defines it once in the AWS config file.
#[test]
fn an_fstab_line_names_its_connection_by_profile() {
    let _link = HelperLink::install();
    let g = garage();
    let p = common::unique("fstab-profile");
    let tmp = common::empty_dir();
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let _cleanup = Cleanup(None, dir.clone());
    let config = tmp.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile fstab-garage]\nregion = us-east-1\naws_access_key_id = {}\n\
             aws_secret_access_key = {}\nendpoint_url = {}\n",
            g.key_id, g.secret, g.endpoint
        ),
    )
    .unwrap();
    let fstab = tmp.path().join("fstab");
    let line = |profile: &str| {
        format!(
            "{}/{p} {} fuse.s3mount _netdev,profile={profile},log_file=/dev/null 0 0\n",
            g.bucket,
            dir.display()
        )
    };
    let env = [
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    std::fs::write(&fstab, line("fstab-garage")).unwrap();
    let out = mount_with_fstab_env(&fstab, &dir, &env);
    assert!(
        out.status.success(),
        "mount -T with profile= failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("via-profile"), "named connection").unwrap();
    let s3 = common::S3::garage();
    assert_eq!(
        s3.get(&format!("{p}/via-profile")).unwrap(),
        b"named connection"
    );
    unmount(&dir);

    // A profile that is not defined: one line naming it, nothing mounted.
    std::fs::write(&fstab, line("fstab-nosuch")).unwrap();
    let out = mount_with_fstab_env(&fstab, &dir, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted with an unknown profile");
    assert!(stderr.contains("'fstab-nosuch'"), "stderr: {stderr}");
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

#[test]
fn an_unprivileged_daemon_serves_a_fuse_descriptor_a_privileged_helper_mounted() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let g = garage();
    let p = common::unique("fusefd");
    let tmp = common::empty_dir();
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    // A cache directory the unprivileged daemon may write.
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    Command::new("chown")
        .args(["nobody"])
        .arg(&cache)
        .status()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // The privileged helper's part (what a CSI driver or container runtime does): open
    // /dev/fuse (inheritable) and mount it with fd=N.
    // SAFETY: plain libc calls with valid NUL-terminated strings.
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR) };
    assert!(
        fd >= 0,
        "open /dev/fuse: {}",
        std::io::Error::last_os_error()
    );
    let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let data = CString::new(format!(
        "fd={fd},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other"
    ))
    .unwrap();
    // SAFETY: as above.
    let r = unsafe {
        libc::mount(
            c"s3mount".as_ptr(),
            target.as_ptr(),
            c"fuse.s3mount".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    assert_eq!(r, 0, "mount(2): {}", std::io::Error::last_os_error());

    // The daemon, as nobody, only serves the descriptor.
    let mut child = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(bin())
        .args([
            "mount",
            &format!("{}/{p}", g.bucket),
            &format!("/dev/fd/{fd}"),
        ])
        .args(["--endpoint-url", &g.endpoint, "-f", "--cache-dir"])
        .arg(&cache)
        .env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret)
        .env("HOME", tmp.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SAFETY: our copy of the descriptor; the child has its own.
    unsafe { libc::close(fd) };
    // Whatever happens below, no daemon or mount outlives the test.
    let _cleanup = Cleanup(Some(child.id()), dir.clone());
    let s3 = common::S3::garage();
    s3.put(&format!("{p}/there"), "served");
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        match std::fs::read_to_string(dir.join("there")) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    use std::io::Read;
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    panic!("the daemon exited ({status}): {err}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("never served: {e}"),
        }
    };
    assert_eq!(got, "served");
    std::fs::write(dir.join("new"), "written").unwrap();
    assert_eq!(s3.get(&format!("{p}/new")).unwrap(), b"written");
    // SIGTERM: commit and exit; the mount is the helper's to remove.
    // SAFETY: signalling the setpriv'd child (setpriv execs, so it is s3mount).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
