//! The `berth` command line against a real server: login, projects, users,
//! members, robots, repositories and tags, in tables and as JSON.

mod common;
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

struct Cli {
    credentials: std::path::PathBuf,
    server: String,
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env("BERTH_CREDENTIALS", &self.credentials)
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(out.ok, "berth {args:?} failed: {}", out.stderr);
        out.stdout
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

#[tokio::test]
async fn command_line_manages_a_running_server() {
    let server = common::Server::start_secured();
    let dir = common::TempDir::new("berth-cli");
    let cli = Cli {
        credentials: dir.path().join("credentials.json"),
        server: server.url(),
    };
    // Before login: a clear message.
    let out = cli.run(&["project", "ls"], None);
    assert!(
        !out.ok && out.stderr.contains("not logged in"),
        "{}",
        out.stderr
    );
    // A wrong password is refused and nothing is stored.
    let out = cli.run(
        &["login", &cli.server, "-u", "admin", "--password-stdin"],
        Some("wrong\n"),
    );
    assert!(
        !out.ok && out.stderr.contains("wrong credentials"),
        "{}",
        out.stderr
    );
    assert!(!cli.credentials.exists());
    let out = cli.run(
        &["login", &cli.server, "-u", "admin", "--password-stdin"],
        Some(&format!("{}\n", common::ADMIN_PASSWORD)),
    );
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("Logged in to {} as admin", cli.server)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cli.credentials)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "credentials readable by their owner only"
    );

    cli.ok(&["project", "create", "team"]);
    cli.ok(&["project", "create", "pub", "--public"]);
    let table = cli.ok(&["project", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "PUBLIC", "CREATED", "BY"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["pub", "true", "admin"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["team", "false", "admin"]
    );
    let projects = cli.json(&["project", "ls"]);
    assert_eq!(projects.as_array().unwrap().len(), 2);

    let out = cli.run(
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-password\n"),
    );
    assert!(out.ok, "{}", out.stderr);
    let users = cli.json(&["user", "ls"]);
    assert_eq!(users[1]["name"], "alice");
    cli.ok(&["member", "add", "team", "alice", "developer"]);
    let out = cli.run(&["member", "add", "team", "alice", "owner"], None);
    assert!(
        !out.ok && out.stderr.contains("unknown role"),
        "{}",
        out.stderr
    );
    let members = cli.json(&["member", "ls", "team"]);
    assert!(members
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["username"] == "alice" && m["role"] == "developer"));

    // A robot's secret works at once with the registry, and stops when removed.
    let robot = cli.json(&["robot", "create", "team", "ci", "--actions", "pull,push"]);
    assert_eq!(robot["name"], "robot$team+ci");
    let secret = robot["secret"].as_str().unwrap().to_string();
    let api = support::Api::with_basic(server.url(), "robot$team+ci", &secret);
    api.push_image("team/app", "v1", b"pushed by a robot").await;
    let robots = cli.ok(&["robot", "ls", "team"]);
    assert!(
        robots.contains("robot$team+ci") && robots.contains("pull,push"),
        "{robots}"
    );
    assert!(!robots.contains(&secret));

    let repos = cli.json(&["repo", "ls", "team"]);
    assert_eq!(repos[0]["name"], "team/app");
    assert_eq!(repos[0]["tag_count"], 1);
    let tags = cli.ok(&["tag", "ls", "team/app"]);
    assert!(tags.lines().nth(1).unwrap().starts_with("v1 "), "{tags}");

    // Rules: a naming convention, listed, then removed.
    let rule = cli.json(&[
        "rule", "add", "team", "--kind", "naming", "--tags", "semver",
    ]);
    let id = rule["id"].as_str().unwrap().to_string();
    let rules = cli.ok(&["rule", "ls", "team"]);
    assert!(rules.contains(&id) && rules.contains("semver"), "{rules}");
    let out = cli.run(
        &["rule", "add", "team", "--kind", "naming", "--tags", "("],
        None,
    );
    assert!(
        !out.ok && out.stderr.contains("not a valid regular expression"),
        "{}",
        out.stderr
    );
    cli.ok(&["rule", "rm", "team", &id]);

    // Retention: a dry run names what a run would remove.
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"[{"repositories": "app", "tags": "v*", "keep": {"latest_pushed": 0}}]"#,
    )
    .unwrap();
    let policy = cli.json(&[
        "retention",
        "add",
        "team",
        "--rules",
        rules.to_str().unwrap(),
    ]);
    let policy_id = policy["id"].as_str().unwrap().to_string();
    let dry = cli.ok(&["retention", "run", "team", &policy_id, "--dry-run"]);
    assert!(dry.contains("would remove team/app:v1"), "{dry}");
    assert!(cli.ok(&["retention", "ls", "team"]).contains(&policy_id));
    cli.ok(&["retention", "rm", "team", &policy_id]);

    // Quotas: set, shown with the usage.
    cli.ok(&["quota", "set", "team", "--bytes", "100000000"]);
    let usage = cli.json(&["quota", "show", "team"]);
    assert_eq!(usage["quota"]["bytes"], 100_000_000);
    assert!(usage["usage"]["bytes"].as_i64().unwrap() > 0);
    assert!(cli.ok(&["quota", "show", "team"]).contains("team/app"));
    let check = cli.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");

    let rotated = cli.json(&["robot", "rotate", "team", "ci"]);
    assert_ne!(rotated["secret"], secret.as_str());
    cli.ok(&["robot", "rm", "team", "ci"]);
    let r = api.get("/v2/team/app/tags/list").await;
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);

    // Refusals and conflicts come back as messages and exit code 1.
    let out = cli.run(&["project", "rm", "team"], None);
    assert!(
        !out.ok && out.stderr.contains("still holds 1 repositories"),
        "{}",
        out.stderr
    );
    cli.ok(&["project", "rm", "pub"]);
    let out = cli.run(
        &["login", &cli.server, "-u", "alice", "--password-stdin"],
        Some("alice-password\n"),
    );
    assert!(out.ok);
    let out = cli.run(&["user", "ls"], None);
    assert!(!out.ok && out.stderr.contains("403"), "{}", out.stderr);
    cli.ok(&["logout"]);
    let out = cli.run(&["project", "ls"], None);
    assert!(
        !out.ok && out.stderr.contains("not logged in"),
        "{}",
        out.stderr
    );
    // --server reaches a server without a stored login (anonymous: public projects only).
    let anonymous = cli.json(&["project", "ls", "--server", &cli.server]);
    assert_eq!(anonymous, serde_json::json!([]));
}

/// `berth gc` starts a pass through the API, follows it, and prints what it
/// removed; with no delays, a deleted image's bytes are gone after a few passes.
#[tokio::test]
async fn garbage_collection_from_the_command_line() {
    let server = common::Server::start_with_env(
        &[],
        &[
            ("BERTH_AUTH_MODE", "token"),
            ("BERTH_GC_ENABLED", "false"),
            ("BERTH_GC_GRACE_SECS", "0"),
            ("BERTH_GC_UNTAGGED_DELAY_SECS", "0"),
        ],
    );
    let dir = common::TempDir::new("berth-cli-gc");
    let cli = Cli {
        credentials: dir.path().join("credentials.json"),
        server: server.url(),
    };
    let out = cli.run(
        &["login", &cli.server, "-u", "admin", "--password-stdin"],
        Some(&format!("{}\n", common::ADMIN_PASSWORD)),
    );
    assert!(out.ok, "{}", out.stderr);
    cli.ok(&["project", "create", "team"]);
    let api = support::Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let layer = b"a layer nobody will need".repeat(1000);
    let (_, digest) = api.push_image("team/app", "v1", &layer).await;
    let r = api
        .delete(&format!("/v2/team/app/manifests/{digest}"))
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let layer_hex = support::sha256(&layer)[7..].to_string();
    let blob_files = || {
        let dir = server
            .data_dir()
            .join("storage/blobs/sha256")
            .join(&layer_hex[..2]);
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&layer_hex))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(blob_files(), 1);
    let dry = cli.ok(&["gc", "--dry-run"]);
    assert!(dry.contains("would remove"), "{dry}");
    assert_eq!(blob_files(), 1, "a dry run removes nothing");
    let mut summaries = String::new();
    for _ in 0..5 {
        summaries.push_str(&cli.ok(&["gc"]));
        if blob_files() == 0 {
            break;
        }
    }
    assert_eq!(blob_files(), 0, "the layer's bytes are gone:\n{summaries}");
    assert!(
        summaries.contains("1 manifest documents") && summaries.contains("removed 2 blobs"),
        "{summaries}"
    );
    let runs = cli.json(&["gc", "--dry-run"]);
    assert_eq!(runs["status"], "finished");
    assert_eq!(runs["dry_run"], true);
    // The passes were run by the GC worker, which `berth workers` shows.
    let table = cli.ok(&["workers"]);
    let gc_line = table
        .lines()
        .find(|l| l.starts_with("gc "))
        .unwrap_or_else(|| panic!("no gc worker in:\n{table}"));
    assert!(
        gc_line.contains("idle") || gc_line.contains("busy"),
        "{table}"
    );
    let workers = cli.json(&["workers"]);
    let gc = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "gc")
        .unwrap();
    assert!(gc["runs"].as_u64().unwrap() >= 3, "{gc}");
}
