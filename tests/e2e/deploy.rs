//! The container image and the Kubernetes examples cannot be built or run here (no
//! container engine, no cluster), so what can be checked without them is: every manifest
//! parses as YAML (PyYAML, in the venv `scripts/moto.sh` keeps) and says what the README
//! in deploy/kubernetes promises — privileged, Bidirectional on the s3mount side,
//! HostToContainer on the consumers, `--foreground`, a mount point below the shared
//! volume, a grace period above s3mount's shutdown bound, a preStop unmount — and the
//! Dockerfile's runtime stage installs packages Debian has.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The manifests as JSON, one list of documents per file, parsed by PyYAML.
fn manifests() -> Vec<(String, Vec<serde_json::Value>)> {
    let script = r#"
import glob, json, sys, yaml
out = {}
for f in sorted(glob.glob(sys.argv[1] + "/*.yaml")):
    with open(f) as fh:
        out[f.rsplit("/", 1)[1]] = [d for d in yaml.safe_load_all(fh) if d is not None]
print(json.dumps(out))
"#;
    let out = Command::new(repo().join("scripts/moto.sh"))
        .args(["python", "-c", script])
        .arg(repo().join("deploy/kubernetes"))
        .output()
        .expect("run scripts/moto.sh python");
    assert!(
        out.status.success(),
        "YAML does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut files: Vec<_> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, d)| (k.clone(), d.as_array().unwrap().clone()))
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// The pod spec of a Pod or of a workload's template.
fn pod_spec(doc: &serde_json::Value) -> &serde_json::Value {
    match doc["kind"].as_str() {
        Some("Pod") => &doc["spec"],
        _ => &doc["spec"]["template"]["spec"],
    }
}

fn containers(spec: &serde_json::Value) -> Vec<&serde_json::Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec[*k].as_array())
        .flatten()
        .collect()
}

#[test]
fn kubernetes_examples_parse_and_mount_as_documented() {
    let files = manifests();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["daemonset.yaml", "secret.yaml", "sidecar.yaml"],
        "{names:?}"
    );
    let mut s3mounts = 0;
    for (file, docs) in &files {
        for doc in docs.iter().filter(|d| d["kind"] != "Secret") {
            let spec = pod_spec(doc);
            for c in containers(spec) {
                let args = c["args"].to_string();
                if !args.contains("s3mount mount") {
                    // A consumer: it must see a mount made after it started.
                    for vm in c["volumeMounts"].as_array().unwrap() {
                        assert_eq!(vm["mountPropagation"], "HostToContainer", "{file}: {vm}");
                    }
                    continue;
                }
                s3mounts += 1;
                assert_eq!(c["securityContext"]["privileged"], true, "{file}");
                assert!(args.contains("--foreground"), "{file}: {args}");
                let vm = &c["volumeMounts"][0];
                assert_eq!(vm["mountPropagation"], "Bidirectional", "{file}");
                // The mount point is below the volume, never the volume's root (a mount
                // point already, which s3mount refuses).
                let root = vm["mountPath"].as_str().unwrap();
                let words: Vec<&str> = args.split_whitespace().collect();
                let at = words.iter().position(|w| *w == "mount").unwrap();
                let mountpoint = words[at + 2];
                assert!(
                    mountpoint.starts_with(&format!("{root}/")),
                    "{file}: {mountpoint} not below {root}"
                );
                assert!(
                    args.contains(&format!("fusermount3 -u -z {mountpoint}")),
                    "{file}: a dead mount from a previous run must be removed first"
                );
                let pre_stop = c["lifecycle"]["preStop"]["exec"]["command"].to_string();
                assert!(
                    pre_stop.contains(&format!("fusermount3 -u {mountpoint}")),
                    "{file}: {pre_stop}"
                );
                // 5 s writer grace + --retry-deadline (60 s) + 5 s, with room to spare.
                let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
                assert!(grace > 70, "{file}: grace {grace}");
            }
        }
    }
    assert_eq!(s3mounts, 2, "one sidecar and one DaemonSet container");
}

#[test]
fn dockerfile_runtime_packages_exist_in_debian() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let runtime = dockerfile
        .split("FROM debian:bookworm-slim")
        .nth(1)
        .expect("a debian:bookworm-slim runtime stage");
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/s3mount\"]"));
    assert!(runtime.contains("USER s3mount"), "non-root by default");
    assert!(dockerfile.contains("cargo build --release --locked"));
    let install = runtime
        .split("apt-get install -y --no-install-recommends")
        .nth(1)
        .expect("an apt-get install");
    let packages: Vec<&str> = install
        .split_whitespace()
        .take_while(|w| *w != "&&")
        .filter(|w| *w != "\\")
        .collect();
    assert_eq!(packages, ["fuse3", "ca-certificates"]);
    for p in packages {
        // Known to apt on this (Debian) machine: the suite installs fuse3 itself.
        let out = Command::new("apt-cache")
            .args(["show", "--no-all-versions", p])
            .output()
            .expect("apt-cache");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Package: "),
            "{p} is not a Debian package: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for entry in ["target/", ".git/", "mnt/"] {
        assert!(ignore.lines().any(|l| l == entry), "{entry}");
    }
}
