//! Being a mount(8) helper: `mount -t fuse.s3mount SOURCE DIR -o OPTS` and fstab lines.
//!
//! mount(8) runs `mount.fuse.s3mount SOURCE DIR [-sfnv] [-o OPTS]` when that exists (a
//! symlink to this binary), else `mount.fuse3`, which runs `s3mount SOURCE DIR -o OPTS`.
//! Both arrive here and become an ordinary `s3mount mount` command line, so the options
//! mean exactly what the flags mean: every flag of `s3mount mount` has an `-o` spelling,
//! its name with underscores for dashes (`metadata_ttl=5s`, `role_arn=…`, `allow_other`).
//! The options mount(8) itself defines are understood (`ro`, `rw`) or ignored as it
//! expects (`_netdev`, `nofail`, `noauto`, `user`, `x-systemd.*`, …); anything else is
//! refused with one line naming it, so a typo in fstab never mounts with a default.

use thiserror::Error;

/// Why a helper command line cannot be run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HelperError {
    /// An option no flag of `s3mount mount` answers to.
    #[error(
        "unknown mount option '{0}' (each `s3mount mount --flag-name` is `-o flag_name` or `-o flag_name=VALUE`)"
    )]
    Unknown(String),
    /// A flag that takes a value was given none, or a switch was given one.
    #[error("mount option '{0}' {1}")]
    Value(String, &'static str),
    /// The command line is not `SOURCE DIR [-o OPTS]`.
    #[error("usage: mount.fuse.s3mount BUCKET[/PREFIX] MOUNTPOINT [-sfnv] [-o OPTIONS]: {0}")]
    Usage(String),
}

/// What the helper was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Helper {
    /// Mount: the `s3mount mount …` arguments (after the program name).
    Mount(Vec<String>),
    /// `-f` (fake): check the options, do nothing.
    Fake,
}

/// Options of mount(8) and of FUSE's helpers that say nothing to s3mount: they steer
/// mount(8), systemd or the kernel's generic flags, which a FUSE mount sets itself
/// (s3mount always mounts `nodev,nosuid,noatime`).
const IGNORED: [&str; 20] = [
    "_netdev", "nofail", "auto", "noauto", "user", "users", "nouser", "owner", "group", "defaults",
    "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime", "relatime", "async",
];

/// Whether this process was started as a mount helper: as `mount.s3mount` /
/// `mount.fuse.s3mount` (a symlink), or by `mount.fuse3` as `s3mount SOURCE DIR -o …` —
/// a first argument that is no subcommand, followed by more.
pub fn invoked_as_helper(args: &[String], subcommands: &[&str]) -> bool {
    let program = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    program.starts_with("mount.")
        || (args.len() >= 3
            && !args[1].starts_with('-')
            && !subcommands.contains(&args[1].as_str()))
}

/// Turn a helper command line (`args`: after the program name) into the arguments of
/// `s3mount mount`. `mount` is that subcommand's clap definition: the flags it has are
/// the options accepted.
pub fn translate(args: &[String], mount: &clap::Command) -> Result<Helper, HelperError> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let (mut sloppy, mut fake) = (false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => options.push(
                it.next()
                    .ok_or_else(|| HelperError::Usage("-o needs options".into()))?
                    .clone(),
            ),
            "-t" | "-N" => {
                // The type (fuse.s3mount) and a namespace: nothing for us.
                it.next();
            }
            s if s.starts_with("-o") && s.len() > 2 => options.push(s[2..].to_owned()),
            s if s.starts_with('-') && s.len() > 1 && !s.starts_with("--") => {
                for c in s[1..].chars() {
                    match c {
                        's' => sloppy = true,
                        'f' => fake = true,
                        // No mtab (there is none to write) and verbose.
                        'n' | 'v' => {}
                        _ => return Err(HelperError::Usage(format!("unknown flag -{c}"))),
                    }
                }
            }
            _ => positional.push(a.clone()),
        }
    }
    let [source, dir] = positional.as_slice() else {
        return Err(HelperError::Usage(format!(
            "expected a source and a mount point, got {} argument(s)",
            positional.len()
        )));
    };
    let mut out = Vec::new();
    for opt in options.iter().flat_map(|o| o.split(',')) {
        if opt.is_empty() {
            continue;
        }
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        match name {
            "ro" => out.push("--read-only".to_owned()),
            "rw" => {}
            _ if IGNORED.contains(&name) || name.starts_with("x-") || name == "comment" => {}
            _ => match flag(mount, name, value) {
                Ok(mut f) => out.append(&mut f),
                Err(HelperError::Unknown(n)) if sloppy => {
                    eprintln!("s3mount: warning: ignoring unknown mount option '{n}' (-s)");
                }
                Err(e) => return Err(e),
            },
        }
    }
    if fake {
        return Ok(Helper::Fake);
    }
    // `s3mount#bucket/prefix` is the old FUSE spelling of the source; `s3mount` (or
    // `none`) alone means every bucket.
    let source = source.strip_prefix("s3mount#").unwrap_or(source);
    if source != "s3mount" && source != "none" {
        out.push(source.to_owned());
    }
    out.push(dir.clone());
    Ok(Helper::Mount(out))
}

/// The `--flag[=value]` of option `name`, checked against the flags of `mount`.
fn flag(
    mount: &clap::Command,
    name: &str,
    value: Option<&str>,
) -> Result<Vec<String>, HelperError> {
    let long = name.replace('_', "-");
    let arg = mount
        .get_arguments()
        .find(|a| a.get_long() == Some(long.as_str()))
        .ok_or_else(|| HelperError::Unknown(name.to_owned()))?;
    let takes_value = arg.get_action().takes_values();
    match (takes_value, value) {
        (true, Some(v)) if !v.is_empty() => Ok(vec![format!("--{long}={v}")]),
        (true, _) => Err(HelperError::Value(
            name.to_owned(),
            "needs a value (name=VALUE)",
        )),
        (false, None) => Ok(vec![format!("--{long}")]),
        (false, Some(_)) => Err(HelperError::Value(name.to_owned(), "takes no value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn mount_cmd() -> clap::Command {
        crate::cli::Cli::command()
            .find_subcommand("mount")
            .unwrap()
            .clone()
    }

    fn run(args: &[&str]) -> Result<Helper, HelperError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        translate(&args, &mount_cmd())
    }

    #[test]
    fn an_fstab_line_becomes_the_flags_it_spells() {
        let got = run(&[
            "bucket/prefix",
            "/mnt/x",
            "-o",
            "rw,_netdev,nofail,region=eu-west-1,role_arn=arn:aws:iam::1:role/r,external_id=a=b,allow_other,x-systemd.automount,noauto",
            "-n",
        ])
        .unwrap();
        assert_eq!(
            got,
            Helper::Mount(vec![
                "--region=eu-west-1".into(),
                "--role-arn=arn:aws:iam::1:role/r".into(),
                "--external-id=a=b".into(),
                "--allow-other".into(),
                "bucket/prefix".into(),
                "/mnt/x".into(),
            ])
        );
        assert_eq!(
            run(&["s3mount#b", "/m", "-o", "ro,uid=1000,metadata_ttl=5s"]).unwrap(),
            Helper::Mount(vec![
                "--read-only".into(),
                "--uid=1000".into(),
                "--metadata-ttl=5s".into(),
                "b".into(),
                "/m".into()
            ])
        );
        assert_eq!(
            run(&["s3mount", "/m", "-oall_buckets"]).unwrap(),
            Helper::Mount(vec!["--all-buckets".into(), "/m".into()])
        );
    }

    #[test]
    fn unknown_or_malformed_options_are_refused_by_name() {
        assert_eq!(
            run(&["b", "/m", "-o", "allow_others"]),
            Err(HelperError::Unknown("allow_others".into()))
        );
        assert!(matches!(
            run(&["b", "/m", "-o", "region"]),
            Err(HelperError::Value(n, _)) if n == "region"
        ));
        assert!(matches!(
            run(&["b", "/m", "-o", "read_only=yes"]),
            Err(HelperError::Value(n, _)) if n == "read_only"
        ));
        assert!(matches!(run(&["b"]), Err(HelperError::Usage(_))));
        // -s (sloppy): unknown options are ignored; -f (fake): nothing is done.
        assert_eq!(
            run(&["b", "/m", "-s", "-o", "bogus"]).unwrap(),
            Helper::Mount(vec!["b".into(), "/m".into()])
        );
        assert_eq!(run(&["b", "/m", "-f", "-o", "ro"]).unwrap(), Helper::Fake);
        assert!(run(&["b", "/m", "-f", "-o", "bogus"]).is_err());
    }
}
