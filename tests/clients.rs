//! Real registry clients against a real server: each test starts Berth (or
//! uses `BERTH_TEST_EXTERNAL_REGISTRY`) and runs `tests/clients/<client>.sh
//! HOST:PORT`, which drives the client and checks what it gets back.
//!
//! The tools come from `scripts/install-test-deps`; a missing tool fails the
//! test (never a silent skip). Environment passed through to the scripts:
//! `BERTH_TEST_TMP` (temp dirs), `BERTH_CLIENTS_SKIP` (steps not to run,
//! e.g. `oras:referrers` against a registry without the referrers API),
//! `BERTH_CLIENTS_KEEP=1` (keep temp dirs). `BERTH_CLIENTS_TIMEOUT` is the
//! seconds one script may take (default 600).
//!
//! The server runs with access control on (the token flow). Each script logs
//! in with its client's own mechanism as either a user (a maintainer of the
//! `berth-test` project) or a robot account of that project, and a pull-only
//! robot is refused a push (skopeo, ctr, docker).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(tool))))
        .unwrap_or(false)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Fails the test when a tool is missing: these tests are never skipped.
fn require(client: &str, tools: &[&str]) {
    let mut missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if !Path::new("/bin/busybox").exists() && std::env::var_os("BERTH_TEST_BUSYBOX").is_none() {
        missing.push("busybox (busybox-static)");
    }
    assert!(
        missing.is_empty(),
        "the {client} client test needs {}: run scripts/install-test-deps (as root)",
        missing.join(", ")
    );
}

fn oras_python_present() -> bool {
    let venv = std::env::var("BERTH_ORAS_VENV")
        .unwrap_or_else(|_| "/opt/berth-test-deps/oras-venv".into());
    let candidates = [
        std::env::var("BERTH_ORAS_PYTHON").ok(),
        Some(format!("{venv}/bin/python")),
        Some("python3".to_string()),
    ];
    candidates.into_iter().flatten().any(|py| {
        Command::new(py)
            .args(["-c", "import oras.client"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// Who a client logs in as.
#[derive(Clone, Copy)]
enum Identity {
    User,
    Robot,
}

/// Creates the project the scripts push into, a maintainer, a robot that may
/// push and delete, and a pull-only robot; returns the script's environment.
fn identities(server: &common::Server, identity: Identity) -> Vec<(String, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use reqwest::Method;
        use serde_json::json;
        server
            .admin(
                Method::POST,
                "/api/v1/projects",
                json!({"name": "berth-test"}),
            )
            .await;
        server
            .admin(
                Method::POST,
                "/api/v1/users",
                json!({"name": "ci-user", "password": "ci-user-password"}),
            )
            .await;
        server
            .admin(
                Method::PUT,
                "/api/v1/projects/berth-test/members/ci-user",
                json!({"role": "maintainer"}),
            )
            .await;
        let robot = |name: &'static str, actions: serde_json::Value| async move {
            let v = server
                .admin(
                    Method::POST,
                    "/api/v1/projects/berth-test/robots",
                    json!({"name": name, "actions": actions}),
                )
                .await;
            (
                v["name"].as_str().unwrap().to_string(),
                v["secret"].as_str().unwrap().to_string(),
            )
        };
        let (ci, ci_secret) = robot(
            "ci",
            json!(["pull", "push", "delete_tag", "delete_artifact"]),
        )
        .await;
        let (reader, reader_secret) = robot("reader", json!(["pull"])).await;
        let (user, password) = match identity {
            Identity::User => ("ci-user".to_string(), "ci-user-password".to_string()),
            Identity::Robot => (ci, ci_secret),
        };
        vec![
            ("BERTH_REGISTRY_USER".into(), user),
            ("BERTH_REGISTRY_PASSWORD".into(), password),
            ("BERTH_READER_USER".into(), reader),
            ("BERTH_READER_PASSWORD".into(), reader_secret),
        ]
    })
}

/// Runs `tests/clients/<client>.sh HOST`, echoing its output line by line
/// (shown with `--nocapture`, and on failure), and asserts it exits 0.
fn run_client(client: &str, identity: Identity) {
    let external = std::env::var_os("BERTH_TEST_EXTERNAL_REGISTRY").is_some();
    let server = common::Server::start_secured();
    let env = if external {
        Vec::new()
    } else {
        identities(&server, identity)
    };
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "clients",
        &format!("{client}.sh"),
    ]
    .iter()
    .collect();
    let timeout = Duration::from_secs(
        std::env::var("BERTH_CLIENTS_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );

    let started = Instant::now();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new("bash")
            // One stream, in order: stderr into stdout.
            .args(["-c", "exec 2>&1; exec bash \"$0\" \"$1\""])
            .arg(&script)
            .arg(server.host())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its own process group, so that a timeout ends everything it started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()))
    };
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });

    let mut output = String::new();
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                eprintln!("[{client}] {line}");
                output.push_str(&line);
                output.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                // TERM lets the script's traps clean up (e.g. stop containerd).
                let pgid = format!("-{}", child.id());
                let _ = Command::new("kill").args(["-TERM", "--", &pgid]).status();
                std::thread::sleep(Duration::from_secs(5));
                let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
                break;
            }
        }
    }
    let status = child.wait().expect("wait for the client script");
    let _ = reader.join();
    let elapsed = started.elapsed();

    // The whole output is in the test's captured stderr; repeat its end.
    let tail: Vec<&str> = output.lines().rev().take(40).collect();
    let tail: String = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        !timed_out,
        "{client}.sh did not finish within {timeout:?} against {}; its last lines:\n{tail}",
        server.host()
    );
    assert!(
        status.success(),
        "{client}.sh failed ({status}) against {} after {elapsed:.1?}; its last lines:\n{tail}",
        server.host()
    );
    eprintln!("[{client}] passed in {elapsed:.1?}");
}

#[test]
fn skopeo() {
    require(
        "skopeo",
        &["skopeo", "umoci", "jq", "curl", "tar", "sha256sum"],
    );
    run_client("skopeo", Identity::Robot);
}

#[test]
fn podman() {
    require("podman", &["podman", "umoci", "jq", "curl", "tar", "runc"]);
    run_client("podman", Identity::User);
}

#[test]
fn buildah() {
    require("buildah", &["buildah", "skopeo", "jq", "curl", "tar"]);
    run_client("buildah", Identity::User);
}

#[test]
fn ctr() {
    require(
        "ctr",
        &["containerd", "ctr", "skopeo", "umoci", "jq", "curl", "tar"],
    );
    run_client("ctr", Identity::Robot);
}

#[test]
fn docker() {
    require("docker", &["dockerd", "docker", "jq", "curl", "tar"]);
    run_client("docker", Identity::Robot);
}

#[test]
fn oras() {
    require("oras", &["jq", "curl", "sha256sum"]);
    assert!(
        oras_python_present(),
        "the oras client test needs the ORAS Python client (pip package `oras`): run scripts/install-test-deps (as root)"
    );
    run_client("oras", Identity::Robot);
}
