//! Names and keys: the single place where a path inside the mount becomes an S3 key, and
//! where an S3 key is judged fit (or not) to be shown as a file name.
//!
//! The mount prefix is a hard boundary: every key is built by [`Prefix::key`] from validated
//! names, so no `..` or empty component can ever reach outside it.

/// Longest file name the mount lists and creates: FUSE's limit (FUSE_NAME_MAX, 1,024
/// bytes), not the 255 of local file systems, since S3 keys written by other tools may
/// hold longer components; the whole key is limited separately ([`KEY_MAX`]).
pub const NAME_MAX: usize = 1024;

/// Longest S3 key (bytes).
pub const KEY_MAX: usize = 1024;

/// Why a name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadName {
    /// Empty component (`a//b`).
    Empty,
    /// `.` or `..`.
    Dot,
    /// Longer than [`NAME_MAX`] bytes.
    TooLong,
    /// Contains `/` or NUL.
    BadChar,
}

impl std::fmt::Display for BadName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadName::Empty => "empty path component",
            BadName::Dot => "'.' or '..' path component",
            BadName::TooLong => "path component longer than 1,024 bytes",
            BadName::BadChar => "'/' or NUL in a file name",
        })
    }
}

/// Check that `name` can be a single file name.
pub fn validate_name(name: &str) -> Result<(), BadName> {
    if name.is_empty() {
        Err(BadName::Empty)
    } else if name == "." || name == ".." {
        Err(BadName::Dot)
    } else if name.len() > NAME_MAX {
        Err(BadName::TooLong)
    } else if name.contains(['/', '\0']) {
        Err(BadName::BadChar)
    } else {
        Ok(())
    }
}

/// The mount's key prefix (`""` or ending in `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// Wrap an already-normalized prefix (see `config::normalize_prefix`).
    pub fn new(p: impl Into<String>) -> Self {
        let p = p.into();
        debug_assert!(p.is_empty() || p.ends_with('/'));
        Prefix(p)
    }

    /// Key of the object at `path` (a relative path of validated names joined by `/`,
    /// `""` for the mount root).
    pub fn key(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// Listing prefix of the directory at `path`: its key followed by `/` (the root's
    /// listing prefix is the mount prefix itself).
    pub fn dir_key(&self, path: &str) -> String {
        if path.is_empty() {
            self.0.clone()
        } else {
            format!("{}{path}/", self.0)
        }
    }
}

/// Relative path of `name` inside the directory at `parent` (`""` is the root).
pub fn child_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("a.txt").is_ok());
        assert_eq!(validate_name(""), Err(BadName::Empty));
        assert_eq!(validate_name(".."), Err(BadName::Dot));
        assert_eq!(validate_name(&"x".repeat(1025)), Err(BadName::TooLong));
        assert!(validate_name(&"x".repeat(1024)).is_ok());
        assert_eq!(validate_name("a/b"), Err(BadName::BadChar));
    }

    #[test]
    fn keys_stay_under_prefix() {
        let p = Prefix::new("data/");
        assert_eq!(p.key(&child_path("", "a")), "data/a");
        assert_eq!(p.key(&child_path("x/y", "a")), "data/x/y/a");
        assert_eq!(p.dir_key(""), "data/");
        assert_eq!(p.dir_key("x"), "data/x/");
        let root = Prefix::new("");
        assert_eq!(root.dir_key(""), "");
        assert_eq!(root.key("a"), "a");
    }
}
