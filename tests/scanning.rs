//! The built-in scanner against a real server: an offline vulnerability
//! database imported through the CLI (shared/vulndata's real OSV records),
//! an image of a real Debian root filesystem (shared/vulndata's bookworm
//! fixture, with four old PyPI packages) pushed and scanned on push, its
//! findings equal to the fixture's expected results, SBOMs stored as
//! referrers, the composition report, a database change matched again
//! without reading a layer, and bad input failing only its own scan.

mod common;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Cli;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;

/// shared/vulndata: beside the work tree (`../shared`), or `BERTH_SHARED_DIR`.
fn vulndata() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BERTH_SHARED_DIR").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared"
        ))),
        Some(PathBuf::from("/work/shared")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .map(|d| d.join("vulndata"))
        .find(|d| d.join("fixtures/expected").is_dir());
    if found.is_none() {
        eprintln!("SKIPPED: shared/vulndata not found (set BERTH_SHARED_DIR)");
    }
    found
}

/// `PUT /api/v1/system/vulndb` with a zip of OSV records.
async fn put_vulndb(server: &common::Server, zip: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .put(format!("{}/api/v1/system/vulndb", server.url()))
        .header("content-type", "application/zip")
        .body(zip)
        .send()
        .await
        .unwrap()
}

/// shared/vulndata's bookworm root filesystem as it is in the real one:
/// the fixture keeps `etc/os-release` as a file naming its symlink's target.
fn bookworm(data: &std::path::Path) -> Vec<u8> {
    let root = std::env::temp_dir().join(format!("berth-rootfs-{}", uuid::Uuid::new_v4()));
    let status = Command::new("cp")
        .arg("-a")
        .arg(data.join("fixtures/debian-bookworm-minbase"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&root)
        .status()
        .unwrap();
    let link = root.join("etc/os-release");
    let target = std::fs::read_to_string(&link).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(target.trim(), &link).unwrap();
    let layer = layer_of(&root);
    std::fs::remove_dir_all(&root).unwrap();
    layer
}

/// A gzip tar layer of a directory (tar from the system: a real archive).
fn layer_of(dir: &std::path::Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["-C"])
        .arg(dir)
        .args(["-czf", "-", "."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The scan of `repo@digest` once it has ended.
async fn scanned(server: &common::Server, repo: &str, digest: &str) -> Value {
    let (project, name) = repo.split_once('/').unwrap();
    let path = format!(
        "/api/v1/projects/{project}/repositories/{}/artifacts/{digest}/vulnerabilities",
        name.replace('/', "%2F")
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server.admin_call(Method::GET, &path, json!(null)).await;
        if r.status() == StatusCode::OK {
            let v: Value = r.json().await.unwrap();
            if !["queued", "running"].contains(&v["status"].as_str().unwrap()) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the scan of {repo}@{digest} never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(report: &Value) -> Vec<String> {
    let mut ids: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_pushed_debian_image_gets_exactly_the_expected_findings() {
    let Some(data) = vulndata() else { return };
    let server = common::Server::start_secured();
    let cli = Cli::login(&server);
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;

    // The database, from a directory of OSV JSON (the CLI zips it): every
    // ecosystem's OSV records of shared/vulndata (its other folders hold
    // the sources' native formats).
    let osv = std::env::temp_dir().join(format!("berth-osv-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&osv).unwrap();
    for ecosystem in ["alpine", "debian", "go", "pypi", "rustsec"] {
        std::os::unix::fs::symlink(data.join(ecosystem).join("osv"), osv.join(ecosystem)).unwrap();
    }
    let imported = cli.json(&["vulndb", "import", osv.to_str().unwrap()]);
    std::fs::remove_dir_all(&osv).unwrap();
    assert!(imported["records"].as_i64().unwrap() > 15_000, "{imported}");
    let status = cli.json(&["vulndb", "status"]);
    assert_eq!(status["active"]["id"], imported["id"]);
    assert!(status["active"]["ecosystems"]["PyPI"].as_i64().unwrap() > 2_000);

    // A real root filesystem, scanned because it was pushed.
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let layer = bookworm(&data);
    let (_, digest) = api.push_image("team/app", "v1", &layer).await;
    let report = scanned(&server, "team/app", &digest).await;
    assert_eq!(report["status"], "finished", "{report}");
    assert_eq!(report["vulndb"], imported["id"]);
    assert_eq!(report["packages"], 92, "88 dpkg packages and 4 PyPI ones");
    assert!(
        report["os"]
            .as_str()
            .unwrap()
            .contains("Debian GNU/Linux 12"),
        "{report}"
    );
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("fixtures/expected/debian-bookworm-minbase.json"))
            .unwrap(),
    )
    .unwrap();
    let mut want: Vec<String> = expected["expected_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["advisory"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(
        ids(&report),
        want,
        "exactly the expected findings, no false positive"
    );
    let urllib3 = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "PYSEC-2023-192")
        .unwrap();
    assert_eq!(urllib3["package"], "urllib3");
    assert_eq!(urllib3["installed_version"], "1.24.1");
    assert_eq!(urllib3["fixed_version"], "1.26.17");
    assert!(urllib3["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a.as_str().unwrap().starts_with("CVE-")));
    assert!(urllib3["path"]
        .as_str()
        .unwrap()
        .ends_with("urllib3-1.24.1.dist-info/METADATA"));
    assert_eq!(report["summary"]["total"], 13);

    // Filters, and the CLI's JSON.
    let path = format!("/api/v1/projects/team/repositories/app/artifacts/{digest}/vulnerabilities");
    let r = server
        .admin(Method::GET, &format!("{path}?package=urllib3"), json!(null))
        .await;
    assert_eq!(r["findings"].as_array().unwrap().len(), 7);
    let cli_report = cli.json(&["vulns", "team/app:v1"]);
    assert_eq!(ids(&cli_report), want);
    assert!(cli_report["findings"][0]["aliases"].is_array());

    // The listing shows the scan; the SBOMs are referrers of the image.
    let artifacts = server
        .admin(
            Method::GET,
            "/api/v1/repositories/team%2Fapp/artifacts",
            json!(null),
        )
        .await;
    let listed = artifacts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["digest"] == digest.as_str())
        .unwrap();
    assert_eq!(listed["scan_status"], "finished");
    assert_eq!(listed["vulnerabilities"]["total"], 13);
    let referrers: Value = api
        .get(&format!("/v2/team/app/referrers/{digest}"))
        .await
        .json()
        .await
        .unwrap();
    let mut types: Vec<&str> = referrers["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(
        types,
        ["application/spdx+json", "application/vnd.cyclonedx+json"]
    );
    let spdx: Value =
        serde_json::from_str(&cli.ok(&["sbom", "team/app:v1", "--format", "spdx"])).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let packages = spdx["packages"].as_array().unwrap().len();
    assert!(packages >= 92, "{packages} packages in the SPDX document");

    // The composition: one layer, nothing wasted.
    let inspect = cli.json(&["image", "inspect", "team/app:v1"]);
    assert_eq!(inspect["layers"].as_array().unwrap().len(), 1);
    assert!(
        inspect["uncompressed_bytes"].as_u64().unwrap()
            > inspect["compressed_bytes"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn a_new_database_is_matched_against_stored_inventories() {
    let Some(data) = vulndata() else { return };
    let server = common::Server::start();
    let cli_server = &server;
    let api = Api::new(server.url());
    // Scanned with no database: packages found, nothing matched yet.
    let layer = bookworm(&data);
    let (_, digest) = api.push_image("lib/app", "v1", &layer).await;
    let report = scanned(cli_server, "lib/app", &digest).await;
    assert_eq!(report["status"], "finished");
    assert_eq!(report["vulndb"], Value::Null);
    assert_eq!(report["packages"], 92);
    assert_eq!(report["summary"]["total"], 0);
    let started = report["started_at"].clone();

    // Import the PyPI records only (a zip, as osv.dev publishes them).
    let zip = std::fs::read(data.join("pypi/all.zip")).unwrap();
    let r = put_vulndb(&server, zip).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let path = format!("/api/v1/projects/lib/repositories/app/artifacts/{digest}/vulnerabilities");
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let v = server.admin(Method::GET, &path, json!(null)).await;
        if v["summary"]["total"] == 13 || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report["summary"]["total"], 13, "matched again: {report}");
    assert_eq!(
        report["started_at"], started,
        "not scanned again: no layer was read"
    );

    // A broken database is refused and the one in use stays.
    let r = put_vulndb(&server, b"PK\x03\x04 not really a zip".to_vec()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let status = server
        .admin(Method::GET, "/api/v1/system/vulndb", json!(null))
        .await;
    assert_eq!(status["active"]["id"], report["vulndb"]);
}

#[tokio::test]
async fn bad_layers_fail_only_their_own_scan() {
    let server = common::Server::start();
    let api = Api::new(server.url());
    // Not a tar archive; a gzip stream cut short.
    let (_, junk) = api
        .push_image("bad/junk", "v1", b"not a layer at all")
        .await;
    let mut truncated = Command::new("sh")
        .args(["-c", "head -c 200000 /dev/urandom | gzip -c"])
        .output()
        .unwrap()
        .stdout;
    truncated.truncate(truncated.len() / 2);
    let (_, cut) = api.push_image("bad/cut", "v1", &truncated).await;
    for (repo, digest) in [("bad/junk", &junk), ("bad/cut", &cut)] {
        let report = scanned(&server, repo, digest).await;
        assert_eq!(report["status"], "failed", "{report}");
        assert!(!report["error"].as_str().unwrap().is_empty());
    }
    // The images themselves are untouched, and the server still scans.
    let r = api.get("/v2/bad/cut/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// A server killed with SIGKILL while it scans, and while a database is
/// being uploaded: after the restart the scan is run again to its end, and
/// the half-sent database was never made the one in use.
#[tokio::test]
async fn scans_and_imports_survive_sigkill() {
    let mut server = common::Server::start();
    let api = Api::new(server.url());
    // Big enough to be killed in the middle of: 400 MB of one file.
    let layer = Command::new("sh")
        .args([
            "-c",
            "d=$(mktemp -d) && head -c 400000000 /dev/zero > $d/big && tar -C $d -czf - . && rm -r $d",
        ])
        .output()
        .unwrap()
        .stdout;
    let (_, digest) = api.push_image("kill/app", "v1", &layer).await;
    let path = format!("/api/v1/projects/kill/repositories/app/artifacts/{digest}/scan");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = server.admin_call(Method::GET, &path, json!(null)).await;
        if r.status() == StatusCode::OK {
            let v: Value = r.json().await.unwrap();
            if v["status"] == "running" {
                break;
            }
            assert_eq!(v["status"], "queued", "{v}");
        }
        assert!(Instant::now() < deadline, "the scan never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill_and_restart();
    let report = scanned(&server, "kill/app", &digest).await;
    assert_eq!(report["status"], "finished", "{report}");
    assert_eq!(report["packages"], 0);

    // A database in use, then an upload cut off by a kill: the one in use
    // stays in use, and nothing of the cut-off one is left active.
    let url = format!("{}/api/v1/system/vulndb", server.url());
    let Some(data) = vulndata() else { return };
    let zip = std::fs::read(data.join("pypi/all.zip")).unwrap();
    let r = put_vulndb(&server, zip).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let first: Value = r.json().await.unwrap();
    let body = futures_util::stream::unfold(0u32, |n| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        (n < 200).then(|| (Ok::<_, std::io::Error>(vec![b'P'; 4096]), n + 1))
    });
    let upload = tokio::spawn(
        reqwest::Client::new()
            .put(url)
            .header("content-type", "application/zip")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill_and_restart();
    let _ = upload.await;
    let status = server
        .admin(Method::GET, "/api/v1/system/vulndb", json!(null))
        .await;
    assert_eq!(status["active"]["id"], first["id"], "{status}");
    assert_eq!(status["previous"], json!([]), "{status}");
}

/// The ORAS client (tests/clients/oras_client.py, over the Python `oras`
/// package) pushing an artifact with a subject; `None` when it is absent.
fn oras_push(
    host: &str,
    target: &str,
    subject: &str,
    file: &str,
    annotation: &str,
) -> Option<Value> {
    let python = std::env::var("BERTH_ORAS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/opt/berth-test-deps/oras-venv"))
        .join("bin/python");
    if !python.exists() {
        eprintln!(
            "SKIP: no ORAS virtualenv at {} (scripts/install-test-deps makes it)",
            python.display()
        );
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/oras_client.py");
    let out = Command::new(python)
        .args([script, "push", &format!("{host}/{target}")])
        .args([
            "--artifact-type",
            "application/vnd.cyclonedx+json",
            "--subject",
            subject,
        ])
        .args(["--annotation", annotation])
        .arg(format!("{file}:application/vnd.cyclonedx+json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// The vulnerability report of `repo@digest` once `done` says it is the
/// one wanted.
async fn report_when(server: &common::Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = server.admin(Method::GET, path, json!(null)).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "the report never came: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An image whose layers hold no package database (a static binary on
/// scratch) is scanned from the SBOM a build tool attached to it with ORAS:
/// the push of the SBOM scans the image again, its packages are matched,
/// the SBOM itself is not scanned, and a newer SBOM that does not read is
/// a problem of the report while the readable one still serves.
#[tokio::test]
async fn a_client_sbom_is_read_for_an_image_without_a_package_database() {
    let Some(data) = vulndata() else { return };
    let server = common::Server::start();
    let api = Api::new(server.url());
    let zip = std::fs::read(data.join("pypi/all.zip")).unwrap();
    let r = put_vulndb(&server, zip).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let root = std::env::temp_dir().join(format!("berth-static-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::write(root.join("app/server"), support::pattern(50_000, 7)).unwrap();
    let layer = layer_of(&root);
    let (_, digest) = api.push_image("lib/static", "v1", &layer).await;
    let path =
        format!("/api/v1/projects/lib/repositories/static/artifacts/{digest}/vulnerabilities");
    let first = scanned(&server, "lib/static", &digest).await;
    assert_eq!(
        (first["status"].as_str(), first["packages"].as_u64()),
        (Some("finished"), Some(0))
    );
    assert_eq!(first["sbom_input"], Value::Null);

    // The SBOM as Syft writes CycloneDX 1.5 (its published shape, written
    // here: Syft does not run on this machine): a PyPI package with its
    // location, a Debian package with its source, one entry without purl.
    let sbom = json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": "urn:uuid:2f1f6b1e-0b0e-4f8e-9d7c-5c1b6f0f6a11",
        "metadata": {"component": {"type": "container", "name": "lib/static"}},
        "components": [
            {"type": "library", "name": "urllib3", "version": "1.24.1",
             "purl": "pkg:pypi/urllib3@1.24.1",
             "properties": [{"name": "syft:location:0:path",
                             "value": "/app/lib/urllib3-1.24.1.dist-info/METADATA"}]},
            {"type": "library", "name": "bsdutils", "version": "1:2.38.1-5+deb12u3",
             "purl": "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=util-linux%402.38.1-5%2Bdeb12u3"},
            {"type": "file", "name": "/app/server"}
        ]
    });
    let file = root.join("sbom.cdx.json");
    std::fs::write(&file, serde_json::to_vec(&sbom).unwrap()).unwrap();
    let host = server.url().trim_start_matches("http://").to_string();
    let Some(pushed) = oras_push(
        &host,
        "lib/static:sbom",
        &digest,
        file.to_str().unwrap(),
        "org.opencontainers.image.created=2026-12-01T00:00:00Z",
    ) else {
        return;
    };
    let sbom_digest = pushed["digest"].as_str().unwrap().to_string();
    let report = report_when(&server, &path, |v| v["sbom_input"].is_object()).await;
    assert_eq!(report["status"], "finished", "{report}");
    assert_eq!(report["sbom_input"]["digest"], sbom_digest.as_str());
    assert_eq!(report["sbom_input"]["format"], "CycloneDX 1.5");
    assert_eq!(report["sbom_input"]["skipped"], 1);
    assert_eq!(report["packages"], 2);
    let want = [
        "PYSEC-2019-132",
        "PYSEC-2019-133",
        "PYSEC-2020-148",
        "PYSEC-2021-108",
        "PYSEC-2023-192",
        "PYSEC-2023-207",
        "PYSEC-2023-212",
    ];
    assert_eq!(ids(&report), want);
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["path"] == "/app/lib/urllib3-1.24.1.dist-info/METADATA"));
    // The SBOM is not an image to scan, and Berth stored no SBOM of its
    // own beside the client's.
    let r = server
        .admin_call(
            Method::GET,
            &format!(
                "/api/v1/projects/lib/repositories/static/artifacts/{sbom_digest}/vulnerabilities"
            ),
            json!(null),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let referrers: Value = api
        .get(&format!("/v2/lib/static/referrers/{digest}"))
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = referrers["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [sbom_digest.as_str()]);

    // A newer SBOM that is not one: a problem, and the readable one serves.
    std::fs::write(
        &file,
        b"{\"bomFormat\": \"CycloneDX\", \"specVersion\": \"1.5\", \"components\": [",
    )
    .unwrap();
    let broken = oras_push(
        &host,
        "lib/static:sbom2",
        &digest,
        file.to_str().unwrap(),
        "org.opencontainers.image.created=2026-12-02T00:00:00Z",
    )
    .unwrap();
    let broken = broken["digest"].as_str().unwrap().to_string();
    let report = report_when(&server, &path, |v| {
        v["problems"].to_string().contains(&broken)
    })
    .await;
    assert!(
        report["problems"].to_string().contains("not JSON"),
        "{report}"
    );
    assert_eq!(report["sbom_input"]["digest"], sbom_digest.as_str());
    assert_eq!(ids(&report), want);
    std::fs::remove_dir_all(&root).unwrap();
}

/// The vulnerability gate: a pull of an image with findings at or above
/// the rule's severity is refused, naming the rule and the findings (by tag
/// and by digest; HEAD still answers); exceptions let findings through
/// until they expire; an image without a finished scan is blocked or let
/// through as the rule says.
#[tokio::test]
async fn the_vulnerability_gate_refuses_pulls_by_the_scan() {
    let Some(data) = vulndata() else { return };
    let server = common::Server::start();
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "lib"}))
        .await;
    let api = Api::new(server.url());
    let zip = std::fs::read(data.join("pypi/all.zip")).unwrap();
    let r = put_vulndb(&server, zip).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, digest) = api.push_image("lib/app", "v1", &bookworm(&data)).await;
    let report = scanned(&server, "lib/app", &digest).await;
    assert_eq!(report["summary"]["total"], 13, "{report}");
    let (_, junk) = api
        .push_image("lib/junk", "v1", b"not a layer at all")
        .await;
    assert_eq!(
        scanned(&server, "lib/junk", &junk).await["status"],
        "failed"
    );

    // The most severe findings, and the ones just below.
    let order = ["low", "medium", "high", "critical"];
    let rank = |f: &Value| order.iter().position(|o| f["severity"] == *o);
    let findings = report["findings"].as_array().unwrap();
    let top = findings
        .iter()
        .filter_map(rank)
        .max()
        .expect("a rated finding");
    let worst: Vec<&str> = findings
        .iter()
        .filter(|f| rank(f) == Some(top))
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(worst.contains(&"PYSEC-2023-192"), "CVSS 8.1: {worst:?}");

    let cli = Cli::login(&server);
    let refusal = |reference: String| {
        let api = &api;
        async move {
            let r = api.get(&format!("/v2/{reference}")).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{reference}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["errors"][0]["code"], "DENIED");
            body["errors"][0]["message"].as_str().unwrap().to_string()
        }
    };
    let rule = |args: &[&str]| {
        let mut all = vec![
            "rule",
            "add",
            "lib",
            "--kind",
            "vulnerability",
            "--name",
            "gate",
        ];
        all.extend_from_slice(args);
        cli.ok(&all);
    };
    rule(&["--severity", order[top], "--repositories", "app"]);
    let m = refusal("lib/app/manifests/v1".into()).await;
    assert!(
        m.contains("rule 'gate'")
            && m.contains(&format!(
                "{} finding(s) at or above {}",
                worst.len(),
                order[top]
            ))
            && m.contains("PYSEC-2023-192 (high in urllib3)"),
        "{m}"
    );
    refusal(format!("lib/app/manifests/{digest}")).await;
    assert_eq!(
        api.head("/v2/lib/app/manifests/v1").await.status(),
        StatusCode::OK
    );
    // Out of the rule's repositories: pulled.
    assert_eq!(
        api.get("/v2/lib/junk/manifests/v1").await.status(),
        StatusCode::OK
    );

    // Exceptions for each of them (by advisory or by CVE alias), in force:
    // pulled. Expired: refused again.
    let by_alias: Vec<String> = findings
        .iter()
        .filter(|f| rank(f) == Some(top))
        .map(|f| {
            let cve = f["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a.as_str().unwrap().starts_with("CVE-"));
            cve.map_or(f["id"].as_str().unwrap(), |a| a.as_str().unwrap())
                .to_string()
        })
        .collect();
    let allow = |until: &str| -> Vec<String> {
        by_alias
            .iter()
            .flat_map(|id| ["--allow".to_string(), format!("{id}:{until}")])
            .collect()
    };
    cli.ok(&["rule", "rm", "lib", "gate"]);
    let mut args = vec!["--severity".to_string(), order[top].to_string()];
    args.extend(allow("2999-01-01"));
    rule(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        api.get("/v2/lib/app/manifests/v1").await.status(),
        StatusCode::OK
    );
    // Unscanned (a failed scan) with the default: blocked.
    let m = refusal("lib/junk/manifests/v1".into()).await;
    assert!(m.contains("no finished scan (scan status: failed)"), "{m}");

    cli.ok(&["rule", "rm", "lib", "gate"]);
    let mut args = vec![
        "--severity".to_string(),
        order[top].to_string(),
        "--unscanned".into(),
        "allow".into(),
    ];
    args.extend(allow("2020-01-01"));
    rule(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let m = refusal("lib/app/manifests/v1".into()).await;
    assert!(m.contains("PYSEC-2023-192"), "expired exceptions: {m}");
    assert_eq!(
        api.get("/v2/lib/junk/manifests/v1").await.status(),
        StatusCode::OK,
        "unscanned allowed"
    );
    // The compliance report says the same.
    let report = cli.json(&["compliance", "lib"]);
    assert_eq!(report["violating_tags"], 1, "{report}");
    assert_eq!(report["violations"][0]["repository"], "lib/app");
}
