//! `s3mount policy` and `s3mount check` against moto with IAM enforcement: the generated
//! least-privilege policy is enough for a mount, and removing any one of its actions breaks
//! exactly the operation that needs it — which `check` then names.

mod common;

use std::fs;

use common::{Conn, MotoRole, Mount, is_mounted, s3mount_cmd};
use serde_json::Value;

const BUCKET: &str = "s3mount-policy";
const PREFIX: &str = "team-p";
const EXTERNAL_ID: &str = "ext-policy-7";

/// Set moto up with `policy` as the role's permissions; the connection as that role.
fn setup(policy: &Value) -> Conn {
    MotoRole::setup(BUCKET, PREFIX, EXTERNAL_ID, policy, false).conn()
}

fn generated_policy() -> Value {
    let out = s3mount_cmd()
        .args([
            "policy",
            &format!("{BUCKET}/{PREFIX}"),
            "--mode",
            "read-write",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn without(policy: &Value, action: &str) -> Value {
    let mut p = policy.clone();
    for st in p["Statement"].as_array_mut().unwrap() {
        match &st["Action"] {
            Value::String(a) if a == action => st["Action"] = Value::Array(vec![]),
            Value::Array(list) => {
                let kept: Vec<Value> = list.iter().filter(|a| *a != action).cloned().collect();
                st["Action"] = Value::Array(kept);
            }
            _ => {}
        }
    }
    // IAM refuses statements without actions.
    let statements: Vec<Value> = p["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Action"] != Value::Array(vec![]))
        .cloned()
        .collect();
    p["Statement"] = Value::Array(statements);
    p
}

/// Run `s3mount check --json`; returns (exit ok, refused actions).
fn check(c: &Conn) -> (bool, Vec<String>) {
    let mut cmd = s3mount_cmd();
    cmd.envs(c.env.iter().map(|(k, v)| (k, v)));
    cmd.args(["check", &format!("{BUCKET}/{PREFIX}"), "--json"])
        .args(&c.args);
    let out = cmd.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let refused = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["granted"] == false)
        .map(|p| p["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(out.status.success(), v["ok"] == true);
    (out.status.success(), refused)
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[test]
fn generated_policy_is_sufficient_and_each_action_is_necessary() {
    let full = generated_policy();

    // The whole policy: check passes, and a mount lists, reads, writes and deletes.
    let c = setup(&full);
    let (ok, refused) = check(&c);
    assert!(ok, "check refused {refused:?}");
    {
        let m = Mount::with(&c, &format!("{BUCKET}/{PREFIX}"), &[]);
        assert_eq!(fs::read(m.path("hello.txt")).unwrap(), b"hello from moto\n");
        fs::write(m.path("new.txt"), b"new").unwrap();
        assert_eq!(fs::read(m.path("new.txt")).unwrap(), b"new");
        fs::remove_file(m.path("new.txt")).unwrap();
    }

    // Without s3:ListBucket nothing can be mounted.
    let c = setup(&without(&full, "s3:ListBucket"));
    let (ok, refused) = check(&c);
    assert!(!ok);
    assert_eq!(refused, vec!["s3:ListBucket"]);
    let dir = tempfile::tempdir().unwrap();
    let out = c
        .mount_cmd(&format!("{BUCKET}/{PREFIX}"), dir.path(), &[])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!is_mounted(dir.path()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("s3:ListBucket"));

    // Without s3:GetObject: listing works, reading does not.
    let c = setup(&without(&full, "s3:GetObject"));
    let (ok, refused) = check(&c);
    assert!(!ok);
    assert!(refused.iter().all(|a| a == "s3:GetObject"), "{refused:?}");
    {
        let m = Mount::with(&c, &format!("{BUCKET}/{PREFIX}"), &[]);
        let names: Vec<_> = fs::read_dir(&m.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["hello.txt"]);
        let e = fs::read(m.path("hello.txt")).unwrap_err();
        assert_eq!(errno(&e), libc::EACCES);
    }

    // Without s3:PutObject: reading works, writing does not.
    let c = setup(&without(&full, "s3:PutObject"));
    let (ok, refused) = check(&c);
    assert!(!ok);
    assert!(refused.contains(&"s3:PutObject".to_owned()), "{refused:?}");
    assert!(!refused.contains(&"s3:ListBucket".to_owned()));
    {
        let m = Mount::with(&c, &format!("{BUCKET}/{PREFIX}"), &[]);
        assert_eq!(fs::read(m.path("hello.txt")).unwrap(), b"hello from moto\n");
        let mut f = fs::File::create(m.path("nope.txt")).unwrap();
        std::io::Write::write_all(&mut f, b"x").unwrap();
        assert_eq!(errno(&f.sync_all().unwrap_err()), libc::EACCES);
    }

    // Without s3:DeleteObject: everything but deleting.
    let c = setup(&without(&full, "s3:DeleteObject"));
    let (ok, refused) = check(&c);
    assert!(!ok);
    assert_eq!(refused, vec!["s3:DeleteObject"]);
    {
        let m = Mount::with(&c, &format!("{BUCKET}/{PREFIX}"), &[]);
        fs::write(m.path("kept.txt"), b"k").unwrap();
        assert_eq!(
            errno(&fs::remove_file(m.path("kept.txt")).unwrap_err()),
            libc::EACCES
        );
        assert_eq!(fs::read(m.path("hello.txt")).unwrap(), b"hello from moto\n");
        // Moving a directory copies every key, then deletes the originals in one
        // DeleteObjects request, whose per-key refusals must fail the rename, loudly.
        fs::create_dir(m.path("d")).unwrap();
        for i in 0..3 {
            fs::write(m.path(&format!("d/f{i}")), b"x").unwrap();
        }
        let e = fs::rename(m.path("d"), m.path("d2")).unwrap_err();
        assert_eq!(errno(&e), libc::EIO);
        let log = m.log_text();
        assert!(log.contains("originals could not be deleted"), "{log}");
        assert!(log.contains("AccessDenied"), "{log}");
        assert_eq!(fs::read(m.path("d/f1")).unwrap(), b"x");
    }
}
