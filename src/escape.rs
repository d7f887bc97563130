//! Byte escapes used by the formats we read and write: `%XX` (URL encoding, in copy
//! sources, the s3fs xattr header and the tags attribute) and `\ooo` (octal, in
//! /proc/self/mountinfo).

/// Percent-encode every byte of `s` except ASCII letters, digits and those in `keep`.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Replace each `marker` followed by `width` digits in `radix` with that byte; anything
/// malformed is kept as it is. Invalid UTF-8 in the result is replaced.
pub fn unescape(s: &str, marker: u8, width: usize, radix: u32) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == marker
            && let Some(digits) = s.get(i + 1..i + 1 + width)
            && let Ok(v) = u8::from_str_radix(digits, radix)
        {
            out.push(v);
            i += 1 + width;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `%XX` decoding.
pub fn percent_decode(s: &str) -> String {
    unescape(s, b'%', 2, 16)
}

/// A path as /proc/self/mountinfo writes it: space, tab, newline and backslash as `\ooo`.
pub fn unescape_mountinfo(s: &str) -> String {
    unescape(s, b'\\', 3, 8)
}

/// One line of /proc/self/mountinfo, the fields s3mount reads.
#[derive(Debug, PartialEq)]
pub struct MountEntry<'a> {
    /// `MAJ:MIN` of the mounted file system.
    pub device: &'a str,
    /// The directory of the file system shown at the mount point (unescaped).
    pub root: String,
    /// Where it is mounted (unescaped).
    pub mount_point: String,
    /// File system type (`fuse.s3mount`, `cgroup2`, ...).
    pub fstype: &'a str,
    /// The file system's own options (for cgroup v1, its controllers).
    pub super_options: &'a str,
}

/// Parse one line of /proc/self/mountinfo (`ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS
/// [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`); `None` for a line of another shape. The one
/// parser of that file: the mount check, the readahead's device and the cgroup lookup.
pub fn mountinfo_entry(line: &str) -> Option<MountEntry<'_>> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let device = l.nth(2)?;
    let root = unescape_mountinfo(l.next()?);
    let mount_point = unescape_mountinfo(l.next()?);
    let mut r = right.split(' ');
    let fstype = r.next()?;
    let super_options = r.nth(1)?;
    Some(MountEntry {
        device,
        root,
        mount_point,
        fstype,
        super_options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_junk() {
        let s = "a b/é&%";
        let e = percent_encode(s, b"/");
        assert_eq!(e, "a%20b/%C3%A9%26%25");
        assert_eq!(percent_decode(&e), s);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(unescape("/a\\040b", b'\\', 3, 8), "/a b");
    }

    #[test]
    fn a_mountinfo_line_gives_its_fields_unescaped() {
        let line = "36 35 0:31 /sub\\040dir /mnt/my\\040bucket rw,nosuid shared:1 - fuse.s3mount s3mount rw,user_id=0";
        assert_eq!(
            mountinfo_entry(line),
            Some(MountEntry {
                device: "0:31",
                root: "/sub dir".into(),
                mount_point: "/mnt/my bucket".into(),
                fstype: "fuse.s3mount",
                super_options: "rw,user_id=0",
            })
        );
        assert_eq!(mountinfo_entry("36 35 0:31 / /mnt rw - fuse"), None);
        assert_eq!(mountinfo_entry("no separator here"), None);
    }
}
