//! `berth migrate` from an embedded installation to PostgreSQL + S3, both
//! real services the test starts (`scripts/start-postgres`,
//! `scripts/start-garage`): a first pass of blobs while the old server
//! serves, a corrupt blob refused with the target database left empty, the
//! migration itself, a second one refused and then done with --replace, and
//! a server on the target serving everything as before.

mod common;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use support::*;

const PASSWORD: &str = "dev-password";

fn garage_binary() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("GARAGE_BIN") {
        return Some(PathBuf::from(bin));
    }
    let installed = PathBuf::from("/opt/berth-test-deps/bin/garage");
    if installed.exists() {
        return Some(installed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("garage"))
            .find(|p| p.exists())
    })
}

fn postgres_present() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| {
            versions
                .flatten()
                .any(|v| v.path().join("bin/initdb").exists())
        })
        .unwrap_or(false)
}

/// Runs a script of `scripts/` that prints `KEY=VALUE` lines.
fn script(name: &str, args: &[&Path]) -> BTreeMap<String, String> {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/").to_string() + name)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/{name} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A PostgreSQL cluster of the test's own, stopped on drop.
struct Postgres {
    dir: common::TempDir,
    url: String,
}

impl Postgres {
    fn start() -> Postgres {
        let dir = common::TempDir::new("berth-migrate-pg");
        let env = script("start-postgres", &[dir.path()]);
        Postgres {
            url: env["DATABASE_URL"].clone(),
            dir,
        }
    }

    /// A new empty database; its URL.
    fn database(&self) -> String {
        let name = format!("m_{}", uuid::Uuid::new_v4().simple());
        let status = Command::new("psql")
            .args([
                "-q",
                "-X",
                &self.url,
                "-c",
                &format!("CREATE DATABASE {name}"),
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        format!("{}/{name}", self.url.rsplit_once('/').unwrap().0)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/start-postgres"
        ))
        .arg("--stop")
        .arg(self.dir.path())
        .status();
    }
}

/// A Garage of the test's own, killed on drop.
struct Garage {
    _dir: common::TempDir,
    env: BTreeMap<String, String>,
}

impl Garage {
    fn start() -> Garage {
        let dir = common::TempDir::new("berth-migrate-garage");
        let env = script("start-garage", &[dir.path()]);
        Garage { _dir: dir, env }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if let Some(pid) = self.env.get("GARAGE_PID") {
            unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
        }
    }
}

/// The target: a TOML file as operators write it.
fn target_config(dir: &Path, database: &str, garage: &Garage) -> PathBuf {
    let file = dir.join("target.toml");
    let toml = format!(
        r#"data_dir = "{data}"

[database]
url = "{database}"

[storage]
backend = "s3"

[storage.s3]
endpoint = "{endpoint}"
region = "{region}"
bucket = "{bucket}"
prefix = "migrated"
access_key_id = "{key}"
secret_access_key = "{secret}"
path_style = true
"#,
        data = dir.join("data").display(),
        endpoint = garage.env["S3_ENDPOINT"],
        region = garage.env["S3_REGION"],
        bucket = garage.env["S3_BUCKET"],
        key = garage.env["S3_ACCESS_KEY_ID"],
        secret = garage.env["S3_SECRET_ACCESS_KEY"],
    );
    std::fs::write(&file, toml).unwrap();
    file
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn summary(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr))
    }
}

fn migrate(from: &Path, config: &Path, extra: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("migrate")
        .arg("--from")
        .arg(from)
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(extra);
    // Only the file describes the target.
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") && !k.starts_with("BERTH_TEST_") && k != "BERTH_LOG" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("--- berth migrate {extra:?}: ok={}\n{}", run.ok, run.stderr);
    run
}

/// An image as pushed: its manifest, and every blob's bytes.
struct Image {
    repo: String,
    tag: String,
    media_type: &'static str,
    manifest: String,
    blobs: Vec<(String, Vec<u8>)>,
}

async fn push(api: &Api, repo: &str, tag: &str, layers: &[&[u8]]) -> Image {
    let config =
        format!(r#"{{"architecture":"amd64","os":"linux","repo":"{repo}","tag":"{tag}"}}"#);
    let config_digest = api.push_blob(repo, config.as_bytes()).await;
    let mut blobs = vec![(config_digest.clone(), config.into_bytes())];
    let mut refs = Vec::new();
    for l in layers {
        let d = api.push_blob(repo, l).await;
        refs.push((d.clone(), l.len()));
        blobs.push((d, l.to_vec()));
    }
    let refs: Vec<(&str, usize)> = refs.iter().map(|(d, n)| (d.as_str(), *n)).collect();
    let manifest = image_manifest(&config_digest, blobs[0].1.len(), &refs, None, None);
    let r = api.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    Image {
        repo: repo.into(),
        tag: tag.into(),
        media_type: OCI_MANIFEST,
        manifest,
        blobs,
    }
}

/// The blob file of `digest` under a data directory.
fn blob_file(data: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let dir = data.join("storage/blobs/sha256").join(&hex[..2]);
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(hex))
        .unwrap_or_else(|| panic!("no file for {digest} in {}", dir.display()))
}

async fn registry_rows(url: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let mut total = 0;
    for t in [
        "repositories",
        "blobs",
        "manifests",
        "tags",
        "users",
        "projects",
        "robots",
    ] {
        // No table yet (nothing was migrated into the database) counts as empty.
        let n: Result<i64, _> = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
            .fetch_one(&pool)
            .await;
        match n {
            Ok(n) => total += n,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {}
            Err(e) => panic!("{t}: {e}"),
        }
    }
    pool.close().await;
    total
}

#[tokio::test]
async fn embedded_installation_migrates_to_postgres_and_s3() {
    let Some(_) = garage_binary() else {
        eprintln!("SKIPPED: no garage binary (scripts/install-test-deps installs it)");
        return;
    };
    if !postgres_present() {
        eprintln!("SKIPPED: no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)");
        return;
    }
    if std::env::var_os("BERTH_TEST_EXTERNAL_REGISTRY").is_some() {
        eprintln!("SKIPPED: an external registry has no data directory to migrate");
        return;
    }

    // The old installation: embedded database, blobs on disk, access control on.
    let mut old = common::Server::start_embedded(&[("BERTH_AUTH_MODE", "token")]);
    let source = old.data_dir();
    for (name, public) in [("team", false), ("open", true)] {
        old.admin(
            Method::POST,
            "/api/v1/projects",
            json!({"name": name, "public": public}),
        )
        .await;
    }
    old.admin(
        Method::POST,
        "/api/v1/users",
        json!({"name": "dev", "password": PASSWORD}),
    )
    .await;
    old.admin(
        Method::PUT,
        "/api/v1/projects/team/members/dev",
        json!({"role": "developer"}),
    )
    .await;
    let robot = old
        .admin(
            Method::POST,
            "/api/v1/projects/team/robots",
            json!({"name": "ci", "actions": ["pull"]}),
        )
        .await;
    let robot_secret = robot["secret"].as_str().unwrap().to_string();
    old.admin(
        Method::POST,
        "/api/v1/projects/team/rules",
        json!({"kind": "immutable", "repositories": "**", "tags": "v*"}),
    )
    .await;

    // Images sharing layers across tags and repositories; one layer larger
    // than a multipart part (8 MiB).
    let api = Api::with_basic(old.url(), "admin", common::ADMIN_PASSWORD);
    let base = pattern(300_000, 1);
    let big = pattern(9 * 1024 * 1024 + 17, 2);
    let mut images = vec![
        push(&api, "team/app", "v1", &[&base, &pattern(50_000, 3)]).await,
        push(&api, "team/app", "v2", &[&base, &pattern(60_000, 4)]).await,
        push(&api, "team/tools", "latest", &[&base, &big]).await,
        push(&api, "open/web", "v1", &[&base, &pattern(1000, 5)]).await,
    ];
    // An index over two of them.
    let children: Vec<(String, usize)> = images[..2]
        .iter()
        .map(|i| (sha256(i.manifest.as_bytes()), i.manifest.len()))
        .collect();
    let children: Vec<(&str, usize)> = children.iter().map(|(d, n)| (d.as_str(), *n)).collect();
    let index = index_manifest(OCI_INDEX, &children);
    let r = api
        .put_manifest("team/app", "multi", OCI_INDEX, &index)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    images.push(Image {
        repo: "team/app".into(),
        tag: "multi".into(),
        media_type: OCI_INDEX,
        manifest: index,
        blobs: Vec::new(),
    });

    let pg = Postgres::start();
    let garage = Garage::start();
    let work = common::TempDir::new("berth-migrate");
    let database = pg.database();
    let config = target_config(work.path(), &database, &garage);

    // 1. While the old server serves: the bulk of the blobs, no metadata.
    let run = migrate(&source, &config, &["--blobs-only"]);
    assert!(run.ok, "{}", run.stderr);
    let s = run.summary();
    assert_eq!(s["blobs"]["copied"], s["blobs"]["rows"], "{s}");
    assert_eq!(s["tables"], Value::Null);
    assert_eq!(registry_rows(&database).await, 0);
    let first_pass = s["blobs"]["rows"].as_u64().unwrap();

    // Pushed after the first pass; then the old server stops.
    let late = push(&api, "open/web", "v2", &[&base, &pattern(200_000, 6)]).await;
    // Its own layer (blobs[1] is the base layer, copied already).
    let late_layer = late.blobs[2].0.clone();
    images.push(late);
    assert_eq!(old.terminate(), Some(0));

    // 2. A blob whose file no longer matches its digest: refused, naming
    // it, with nothing in the target database.
    let file = blob_file(&source, &late_layer);
    let original = std::fs::read(&file).unwrap();
    let mut corrupt = original.clone();
    corrupt[1000] ^= 0xff;
    std::fs::write(&file, &corrupt).unwrap();
    let run = migrate(&source, &config, &[]);
    assert!(!run.ok);
    assert!(run.stderr.contains(&late_layer), "{}", run.stderr);
    assert!(run.stderr.contains("corrupt"), "{}", run.stderr);
    assert_eq!(registry_rows(&database).await, 0);
    std::fs::write(&file, &original).unwrap();

    // 3. The migration: what the first pass copied is skipped.
    let run = migrate(&source, &config, &[]);
    assert!(run.ok, "{}", run.stderr);
    let s = run.summary();
    assert_eq!(s["ok"], true, "{s}");
    let rows = s["blobs"]["rows"].as_u64().unwrap();
    // Skipped: the first pass's, and what the refused run completed before
    // it stopped (at least the corrupt layer is copied now).
    let skipped = s["blobs"]["skipped"].as_u64().unwrap();
    let copied = s["blobs"]["copied"].as_u64().unwrap();
    assert_eq!(rows, first_pass + 2, "{s}");
    assert!(skipped >= first_pass && copied >= 1, "{s}");
    assert_eq!(skipped + copied, rows, "{s}");
    let tables = s["tables"].as_object().unwrap();
    for t in [
        "repositories",
        "blobs",
        "repository_blobs",
        "manifests",
        "manifest_blobs",
        "manifest_children",
        "repository_manifests",
        "tags",
        "projects",
        "users",
        "members",
        "robots",
        "robot_permissions",
        "signing_keys",
        "audit_log",
        "project_rules",
        "project_content",
        "project_usage",
    ] {
        assert!(tables[t].as_u64().unwrap() > 0, "{t}: {s}");
    }
    assert_eq!(tables["tags"], 6);
    assert_eq!(tables["repositories"], 3);
    assert!(!tables.contains_key("_sqlx_migrations"));
    let verified = &s["verified"];
    assert_eq!(verified["problems"], json!([]));
    assert_eq!(verified["tables"].as_u64().unwrap(), tables.len() as u64);
    assert_eq!(verified["manifests"], 6);
    assert_eq!(verified["blob_objects"].as_u64().unwrap(), rows);

    // 4. Again: refused, the target holds data; with --replace, done again
    // without copying a blob.
    let run = migrate(&source, &config, &[]);
    assert!(!run.ok);
    assert!(run.stderr.contains("--replace"), "{}", run.stderr);
    let run = migrate(&source, &config, &["--replace"]);
    assert!(run.ok, "{}", run.stderr);
    let s = run.summary();
    assert_eq!(s["blobs"]["copied"], 0, "{s}");
    assert_eq!(s["blobs"]["skipped"].as_u64().unwrap(), rows);
    assert_eq!(s["verified"]["problems"], json!([]));

    // 5. A server on the target serves everything as the old one did.
    let env = [
        ("BERTH_AUTH_MODE", "token"),
        ("BERTH_DATABASE_URL", database.as_str()),
        ("BERTH_STORAGE_BACKEND", "s3"),
        ("BERTH_S3_ENDPOINT", garage.env["S3_ENDPOINT"].as_str()),
        ("BERTH_S3_REGION", garage.env["S3_REGION"].as_str()),
        ("BERTH_S3_BUCKET", garage.env["S3_BUCKET"].as_str()),
        (
            "BERTH_S3_ACCESS_KEY_ID",
            garage.env["S3_ACCESS_KEY_ID"].as_str(),
        ),
        (
            "BERTH_S3_SECRET_ACCESS_KEY",
            garage.env["S3_SECRET_ACCESS_KEY"].as_str(),
        ),
        ("BERTH_S3_PATH_STYLE", "true"),
        ("BERTH_S3_PREFIX", "migrated"),
        ("BERTH_S3_PRESIGNED_REDIRECTS", "false"),
    ];
    let new = common::Server::start_embedded(&env);
    let api = Api::with_basic(new.url(), "admin", common::ADMIN_PASSWORD);
    for image in &images {
        let r = api
            .http
            .get(api.url(&format!("/v2/{}/manifests/{}", image.repo, image.tag)))
            .header(header::ACCEPT, image.media_type)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}:{}", image.repo, image.tag);
        assert_eq!(r.text().await.unwrap(), image.manifest);
        for (digest, bytes) in &image.blobs {
            let r = api.get(&format!("/v2/{}/blobs/{digest}", image.repo)).await;
            assert_eq!(r.status(), StatusCode::OK, "{}@{digest}", image.repo);
            assert!(
                r.bytes().await.unwrap() == bytes[..],
                "{}@{digest}",
                image.repo
            );
        }
    }
    let tags: Value = api
        .get("/v2/team/app/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["multi", "v1", "v2"]));
    let tags: Value = api
        .get("/v2/open/web/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["v1", "v2"]));

    // The user and the robot log in with their old credentials; the public
    // project is still public; the immutability rule still holds.
    for (user, password) in [("dev", PASSWORD), ("robot$team+ci", robot_secret.as_str())] {
        let r = reqwest::Client::new()
            .get(new.url() + "/auth/token?service=berth-registry&scope=repository:team/app:pull")
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{user}");
        let token: Value = r.json().await.unwrap();
        let r = reqwest::Client::new()
            .get(new.url() + "/v2/team/app/manifests/v1")
            .header(header::ACCEPT, OCI_MANIFEST)
            .bearer_auth(token["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{user}");
    }
    let r = reqwest::Client::new()
        .get(new.url() + "/auth/token?service=berth-registry&scope=repository:team/app:pull")
        .basic_auth("dev", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = reqwest::Client::new()
        .get(new.url() + "/auth/token?service=berth-registry&scope=repository:open/web:pull")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let anonymous: Value = r.json().await.unwrap();
    let r = reqwest::Client::new()
        .get(new.url() + "/v2/open/web/manifests/v1")
        .header(header::ACCEPT, OCI_MANIFEST)
        .bearer_auth(anonymous["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "anonymous pull of the public project"
    );
    let moved = image_manifest(
        &images[1].blobs[0].0,
        images[1].blobs[0].1.len(),
        &[(&images[1].blobs[1].0, images[1].blobs[1].1.len())],
        None,
        None,
    );
    let r = api
        .put_manifest("team/app", "v1", OCI_MANIFEST, &moved)
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());

    let report = new.check().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["blobs_checked"].as_u64().unwrap(), rows);
    // New pushes work on the target, and its audit log goes on from the
    // source's: the outbox numbers new events after the copied ones.
    push(&api, "team/app", "v3", &[&base, &pattern(10_000, 7)]).await;
    let audited = |resource: &'static str| {
        let new = &new;
        async move {
            for _ in 0..40 {
                let log = new
                    .admin(
                        Method::GET,
                        "/api/v1/audit-logs?action=push&limit=500",
                        json!(null),
                    )
                    .await;
                if log["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["resource"] == resource)
                {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            false
        }
    };
    assert!(
        audited("team/app:v1").await,
        "the source's entries came along"
    );
    assert!(audited("team/app:v3").await, "the target's push is audited");
}
