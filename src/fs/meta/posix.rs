//! POSIX attributes stored as object metadata, compatible with s3fs-fuse:
//! `x-amz-meta-mode` (decimal, file-type bits included), `x-amz-meta-uid`,
//! `x-amz-meta-gid`, `x-amz-meta-mtime` (seconds, or `seconds.nanoseconds`), and
//! `x-amz-meta-xattr`: every extended attribute in one header, as URL-encoded JSON of
//! name → base64(value).
//!
//! Objects without these headers get the mount's `--uid/--gid/--file-mode/--dir-mode`
//! and the object's Last-Modified.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::s3::UserMeta;

/// File-type bits.
pub const S_IFMT: u32 = 0o170_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// FIFO (named pipe).
pub const S_IFIFO: u32 = 0o010_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;
/// Block device.
pub const S_IFBLK: u32 = 0o060_000;
/// Unix socket.
pub const S_IFSOCK: u32 = 0o140_000;

/// POSIX attributes carried in an object's metadata; `None` fields fall back to defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Posix {
    /// Full mode (type and permission bits).
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Modification time.
    pub mtime: Option<SystemTime>,
    /// Access time (`x-amz-meta-atime`): set by `touch -a`/`utimensat`; reads do not
    /// change it (the mount is `noatime`).
    pub atime: Option<SystemTime>,
    /// Status-change time (`x-amz-meta-ctime`): any change of data or metadata.
    pub ctime: Option<SystemTime>,
    /// Device number of a character or block device (`x-amz-meta-rdev`, as s3fs).
    pub rdev: Option<u32>,
    /// Extended attributes (`user.*`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Posix {
    /// A new entry's attributes: `mode` (with its type), owner, and all three times now.
    pub fn new(mode: u32, uid: u32, gid: u32) -> Posix {
        let now = Some(SystemTime::now());
        Posix {
            mode: Some(mode),
            uid: Some(uid),
            gid: Some(gid),
            mtime: now,
            atime: now,
            ctime: now,
            ..Posix::default()
        }
    }

    /// Read from user metadata, ignoring malformed values.
    pub fn from_meta(meta: &UserMeta) -> Posix {
        let num = |k: &str| meta.get(k).and_then(|v| v.trim().parse::<u32>().ok());
        Posix {
            mode: num("mode"),
            uid: num("uid"),
            gid: num("gid"),
            mtime: meta.get("mtime").and_then(|v| parse_time(v)),
            atime: meta.get("atime").and_then(|v| parse_time(v)),
            ctime: meta.get("ctime").and_then(|v| parse_time(v)),
            rdev: num("rdev"),
            xattrs: meta
                .get("xattr")
                .map(|v| decode_xattrs(v))
                .unwrap_or_default(),
        }
    }

    /// Write into user metadata (other entries are kept).
    pub fn to_meta(&self, meta: &mut UserMeta) {
        let mut set = |k: &str, v: Option<String>| match v {
            Some(v) => {
                meta.insert(k.to_owned(), v);
            }
            None => {
                meta.remove(k);
            }
        };
        set("mode", self.mode.map(|m| m.to_string()));
        set("uid", self.uid.map(|m| m.to_string()));
        set("gid", self.gid.map(|m| m.to_string()));
        set("mtime", self.mtime.map(format_time));
        set("atime", self.atime.map(format_time));
        set("ctime", self.ctime.map(format_time));
        set("rdev", self.rdev.map(|r| r.to_string()));
        set(
            "xattr",
            (!self.xattrs.is_empty()).then(|| encode_xattrs(&self.xattrs)),
        );
    }

    /// The file type recorded in the mode, if any.
    pub fn file_type(&self) -> Option<u32> {
        self.mode.map(|m| m & S_IFMT).filter(|t| *t != 0)
    }
}

/// `1700000000` or `1700000000.123456789`.
pub fn parse_time(v: &str) -> Option<SystemTime> {
    let (s, ns) = match v.trim().split_once('.') {
        Some((s, ns)) => {
            if ns.is_empty() || !ns.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = &ns[..ns.len().min(9)];
            let scale = 10u32.pow(9 - digits.len() as u32);
            (s, digits.parse::<u32>().ok()? * scale)
        }
        None => (v.trim(), 0),
    };
    let secs: u64 = s.parse().ok()?;
    // Any client can write any value: a time the clock cannot hold is no time at all.
    UNIX_EPOCH.checked_add(Duration::new(secs, ns))
}

/// Seconds, with nanoseconds only when not zero (what s3fs writes and reads).
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    }
}

fn encode_xattrs(x: &BTreeMap<String, Vec<u8>>) -> String {
    let json: BTreeMap<&str, String> = x.iter().map(|(k, v)| (k.as_str(), B64.encode(v))).collect();
    let text = serde_json::to_string(&json).expect("string map serializes");
    crate::escape::percent_encode(&text, b"-_.~")
}

fn decode_xattrs(v: &str) -> BTreeMap<String, Vec<u8>> {
    let text = crate::escape::percent_decode(v);
    let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(&text) else {
        return BTreeMap::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| Some((k, B64.decode(v).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3fs_headers_round_trip() {
        let mut meta = UserMeta::new();
        meta.insert("mode".into(), "33188".into()); // 0100644, as s3fs writes
        meta.insert("uid".into(), "1000".into());
        meta.insert("gid".into(), "100".into());
        meta.insert("mtime".into(), "1700000000".into());
        let p = Posix::from_meta(&meta);
        assert_eq!(p.mode, Some(0o100644));
        assert_eq!(p.file_type(), Some(S_IFREG));
        assert_eq!(
            p.mtime,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        let mut out = UserMeta::new();
        p.to_meta(&mut out);
        assert_eq!(out, meta);
    }

    #[test]
    fn nanosecond_times_and_xattrs() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(format_time(t), "1700000000.000000005");
        assert_eq!(parse_time("1700000000.000000005"), Some(t));
        assert_eq!(
            parse_time("1700000000.5"),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000))
        );
        let mut p = Posix::default();
        p.xattrs
            .insert("user.note".into(), b"h\xc3\xa9 \x00 bin".to_vec());
        let mut meta = UserMeta::new();
        p.to_meta(&mut meta);
        assert!(!meta["xattr"].contains('{'), "URL-encoded");
        assert_eq!(Posix::from_meta(&meta).xattrs, p.xattrs);
    }

    #[test]
    fn times_beyond_what_the_clock_holds_are_ignored() {
        assert_eq!(parse_time("9223372036854775808"), None);
        assert_eq!(parse_time("18446744073709551615.999999999"), None);
        assert!(parse_time("1700000000.5").is_some());
    }

    proptest::proptest! {
        /// Metadata other tools wrote is untrusted: no value may panic the parser.
        #[test]
        fn any_metadata_parses_without_panicking(
            mode in ".{0,24}",
            uid in ".{0,24}",
            mtime in "[0-9.+-]{0,40}|.{0,40}",
            xattr in ".{0,200}",
        ) {
            let mut meta = UserMeta::new();
            for (k, v) in [("mode", mode), ("uid", uid), ("gid", "7".into()), ("mtime", mtime), ("xattr", xattr)] {
                meta.insert(k.into(), v);
            }
            let p = Posix::from_meta(&meta);
            let _ = p.file_type();
            let mut out = UserMeta::new();
            p.to_meta(&mut out);
            proptest::prop_assert_eq!(Posix::from_meta(&out), p);
        }
    }
}
