//! What a named profile (`--profile`, `AWS_PROFILE`, or `default`) in `~/.aws/config` and
//! `~/.aws/credentials` says, read with aws-config's own parser *before* the credential
//! chain runs.
//!
//! aws-config resolves a profile's `role_arn`, `external_id`, `source_profile`,
//! `credential_source`, SSO and `credential_process` itself, but when the profile (or a
//! `source_profile` it names) is missing it reports "not loaded" and the default chain falls
//! through to instance metadata, so the user reads about IMDS instead of a typo. Walking the
//! chain here first turns those mistakes into one sentence naming the profile and the file,
//! and tells `s3mount check` which role the profile assumes.

use std::borrow::Cow;

use aws_config::profile::ProfileSet;
use aws_runtime::env_config::file::EnvConfigFiles as ProfileFiles;
use aws_types::os_shim_internal::{Env, Fs};

/// `credential_source` values aws-config understands.
const CREDENTIAL_SOURCES: [&str; 3] = ["Environment", "Ec2InstanceMetadata", "EcsContainer"];

/// What the selected profile does, as far as the wording of errors and reports needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileInfo {
    /// The profile's name.
    pub name: String,
    /// Role the profile assumes (its own `role_arn`).
    pub role_arn: Option<String>,
    /// Whether it gives an `external_id` for that role.
    pub has_external_id: bool,
    /// The profile whose credentials call AssumeRole (`source_profile`), when there is one.
    pub source_profile: Option<String>,
    /// Where the base credentials finally come from, in words (for messages).
    pub base: Base,
}

/// Where a profile chain's base credentials come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Base {
    /// Keys, web identity or anything else aws-config resolves without a helper.
    #[default]
    Other,
    /// `credential_process` of the named profile.
    Process(String),
    /// AWS IAM Identity Center (SSO) of the named profile, with the session name when the
    /// profile uses an `[sso-session]` section.
    Sso {
        /// Profile holding the SSO settings.
        profile: String,
        /// `sso_session` name, if any.
        session: Option<String>,
    },
}

/// The config and credentials files aws-config reads (honouring `AWS_CONFIG_FILE` and
/// `AWS_SHARED_CREDENTIALS_FILE`), for messages.
pub fn files() -> (String, String) {
    let home = std::env::var("HOME").unwrap_or_else(|_| "~".into());
    let pick = |var: &str, default: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| format!("{home}/{default}"))
    };
    (
        pick("AWS_CONFIG_FILE", ".aws/config"),
        pick("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
    )
}

/// The profile that will be used: `--profile`, else `AWS_PROFILE`; `None` for the implicit
/// `default`.
pub fn selected(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
}

/// Read the profile files and check the selected profile's chain. `Ok(None)`: no profile
/// is involved (none named and no `default` defined). `Err`: the sentence to show.
pub async fn inspect(flag: Option<&str>) -> Result<Option<ProfileInfo>, String> {
    let named = selected(flag);
    let set = match aws_config::profile::load(
        &Fs::real(),
        &Env::real(),
        &ProfileFiles::default(),
        named.clone().map(Cow::Owned),
    )
    .await
    {
        Ok(set) => set,
        Err(e) => {
            let (config, credentials) = files();
            return Err(format!(
                "cannot read the AWS profile files {config} and {credentials}: {}; fix the \
                 file's syntax (sections are [profile NAME] in config, [NAME] in credentials)",
                super::diagnose::clip(&e.to_string(), 120)
            ));
        }
    };
    match named {
        Some(name) => walk(&set, &name).map(Some),
        None if set.get_profile("default").is_some() => walk(&set, "default").map(Some),
        None => Ok(None),
    }
}

/// Follow `source_profile` from `name` to the base credentials.
fn walk(set: &ProfileSet, name: &str) -> Result<ProfileInfo, String> {
    let (config, credentials) = files();
    let Some(top) = set.get_profile(name) else {
        let mut known: Vec<&str> = set.profiles().collect();
        known.sort_unstable();
        let hint = if known.is_empty() {
            "no profile is defined there".to_owned()
        } else {
            let shown: Vec<&str> = known.iter().take(5).copied().collect();
            let more = if known.len() > 5 { ", …" } else { "" };
            format!("defined: {}{more}", shown.join(", "))
        };
        return Err(format!(
            "profile '{name}' is not defined in {config} or {credentials} ({hint}); add a \
             [profile {name}] section or fix --profile/AWS_PROFILE"
        ));
    };
    let mut info = ProfileInfo {
        name: name.to_owned(),
        role_arn: top.get("role_arn").map(str::to_owned),
        has_external_id: top.get("external_id").is_some(),
        source_profile: top.get("source_profile").map(str::to_owned),
        base: Base::Other,
    };
    let mut visited = vec![name.to_owned()];
    let mut current = top;
    loop {
        let cur = current.name().to_owned();
        if current.get("role_arn").is_none() {
            info.base = base_of(current);
            return Ok(info);
        }
        if let Some(source) = current.get("credential_source") {
            if !CREDENTIAL_SOURCES.contains(&source) {
                return Err(format!(
                    "profile '{cur}' has credential_source = {source}, which is not one of \
                     {}; fix it in {config}",
                    CREDENTIAL_SOURCES.join(", ")
                ));
            }
            return Ok(info);
        }
        let Some(next) = current.get("source_profile") else {
            if current.get("web_identity_token_file").is_some() {
                return Ok(info);
            }
            return Err(format!(
                "profile '{cur}' has role_arn but neither source_profile nor \
                 credential_source, so nothing can call AssumeRole; add source_profile = NAME \
                 (a profile with keys) to it in {config}"
            ));
        };
        // A profile may name itself when it also holds the keys that assume its role.
        if next == cur && current.get("aws_access_key_id").is_some() {
            return Ok(info);
        }
        if visited.iter().any(|v| v == next) {
            visited.push(next.to_owned());
            return Err(format!(
                "the source_profile chain of profile '{name}' loops ({}); end it at a profile \
                 that holds keys or a credential_source",
                visited.join(" → ")
            ));
        }
        let Some(p) = set.get_profile(next) else {
            return Err(format!(
                "profile '{cur}' names source_profile '{next}', which is not defined in \
                 {config} or {credentials}; define [profile {next}] or fix source_profile"
            ));
        };
        visited.push(next.to_owned());
        current = p;
    }
}

fn base_of(p: &aws_config::profile::Profile) -> Base {
    if p.get("aws_access_key_id").is_some() {
        Base::Other
    } else if p.get("credential_process").is_some() {
        Base::Process(p.name().to_owned())
    } else if p.get("sso_session").is_some() || p.get("sso_start_url").is_some() {
        Base::Sso {
            profile: p.name().to_owned(),
            session: p.get("sso_session").map(str::to_owned),
        }
    } else {
        Base::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_runtime::env_config::file::EnvConfigFileKind as ProfileFileKind;

    async fn set(config: &str) -> ProfileSet {
        let fs = Fs::from_slice(&[("/c", config), ("/k", "")]);
        let env = Env::from_slice(&[]);
        let files = ProfileFiles::builder()
            .with_file(ProfileFileKind::Config, "/c")
            .with_file(ProfileFileKind::Credentials, "/k")
            .build();
        aws_config::profile::load(&fs, &env, &files, None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn walks_role_chains_and_names_the_mistake() {
        let s = set(
            "[profile a]\nrole_arn = arn:aws:iam::1:role/r\nexternal_id = x\n\
             source_profile = b\n[profile b]\naws_access_key_id = K\naws_secret_access_key = S\n\
             [profile loop1]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = loop2\n\
             [profile loop2]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = loop1\n\
             [profile orphan]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = gone\n\
             [profile self]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = self\n\
             aws_access_key_id = K\naws_secret_access_key = S\n\
             [profile proc]\ncredential_process = /bin/false\n\
             [profile badsrc]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Nope\n",
        )
        .await;
        let a = walk(&s, "a").unwrap();
        assert_eq!(a.role_arn.as_deref(), Some("arn:aws:iam::1:role/r"));
        assert!(a.has_external_id);
        assert_eq!(a.source_profile.as_deref(), Some("b"));
        assert!(walk(&s, "self").is_ok());
        assert_eq!(walk(&s, "proc").unwrap().base, Base::Process("proc".into()));
        let e = walk(&s, "loop1").unwrap_err();
        assert!(e.contains("loop1 → loop2 → loop1"), "{e}");
        let e = walk(&s, "orphan").unwrap_err();
        assert!(e.contains("source_profile 'gone'"), "{e}");
        let e = walk(&s, "nosuch").unwrap_err();
        assert!(e.contains("profile 'nosuch' is not defined"), "{e}");
        assert!(e.contains("defined: a, b, badsrc"), "{e}");
        let e = walk(&s, "badsrc").unwrap_err();
        assert!(e.contains("credential_source = Nope"), "{e}");
    }
}
