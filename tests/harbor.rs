//! Berth as Harbor's scanner, driven as Harbor drives a scanner adapter:
//! the real OSV data of shared/vulndata imported, its bookworm fixture
//! pushed as an image into a real CNCF Distribution (Debian's
//! `docker-registry`, htpasswd Basic auth) on loopback, then metadata, a
//! scan request, the report polled through 302/Refresh-After until it is
//! there with exactly the expected findings; refusals of callers without
//! Harbor's token and of bad requests; a scan with wrong registry
//! credentials ending as the error report; the Docker token exchange
//! (a front to the registry that wants tokens, as Harbor's does); and no
//! credential ever in Berth's log.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "harbor-adapter-test-token-7f3a";
const PREFIX: &str = "/harbor-adapter";
const REPORT_MIME: &str = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0";
const ROBOT: &str = "robot$harbor";
const ROBOT_PASSWORD: &str = "pull-password-5e1b";

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

/// A directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(prefix: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// CNCF Distribution (Debian's `docker-registry`) with htpasswd Basic auth.
struct Distribution {
    url: String,
    child: Child,
    _dir: Dir,
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Distribution {
    fn start() -> Option<Distribution> {
        let bin = Path::new("/usr/bin/docker-registry");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", ROBOT, ROBOT_PASSWORD])
            .output();
        let htpasswd = match htpasswd {
            Ok(out) if out.status.success() && bin.exists() => out.stdout,
            _ => {
                eprintln!(
                    "SKIPPED: docker-registry or htpasswd missing \
                     (scripts/install-test-deps)"
                );
                return None;
            }
        };
        let dir = Dir::new("berth-distribution");
        std::fs::write(dir.0.join("htpasswd"), htpasswd).unwrap();
        let addr = common::free_port();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: {addr}\n  relativeurls: true\n\
             auth:\n  htpasswd:\n    realm: test-registry\n    path: {htpasswd}\n",
            root = dir.0.join("data").display(),
            htpasswd = dir.0.join("htpasswd").display(),
        );
        let config_path = dir.0.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.0.join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Distribution {
            url: format!("http://{addr}"),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(d)
    }
}

/// The `berth` CLI, logged in as the administrator (for the import).
fn import_vulndb(server: &common::Server, data: &Path) -> Value {
    let creds = Dir::new("berth-cli");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env("BERTH_CREDENTIALS", creds.0.join("credentials.json"))
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_PASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = server.url();
    run(&[
        "login",
        &url,
        "-u",
        "admin",
        "--password",
        common::ADMIN_PASSWORD,
    ]);
    let osv = Dir::new("berth-osv");
    for ecosystem in ["alpine", "debian", "go", "pypi", "rustsec"] {
        std::os::unix::fs::symlink(data.join(ecosystem).join("osv"), osv.0.join(ecosystem))
            .unwrap();
    }
    serde_json::from_str(&run(&[
        "vulndb",
        "import",
        osv.0.to_str().unwrap(),
        "--json",
    ]))
    .unwrap()
}

/// shared/vulndata's bookworm root filesystem as a gzip tar layer, with
/// `etc/os-release` the symlink it is in the real one (as tests/scanning.rs).
fn bookworm(data: &Path) -> Vec<u8> {
    let root = Dir::new("berth-rootfs");
    let rootfs = root.0.join("rootfs");
    let status = Command::new("cp")
        .arg("-a")
        .arg(data.join("fixtures/debian-bookworm-minbase"))
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(status.success());
    Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&rootfs)
        .status()
        .unwrap();
    let link = rootfs.join("etc/os-release");
    let target = std::fs::read_to_string(&link).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(target.trim(), &link).unwrap();
    let out = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-czf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn basic(user: &str, password: &str) -> String {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {v}")
}

fn token_sha256() -> String {
    sha256(TOKEN.as_bytes())
        .strip_prefix("sha256:")
        .unwrap()
        .to_string()
}

/// Harbor's side of the adapter API.
struct Harbor {
    base: String,
    http: reqwest::Client,
}

impl Harbor {
    fn new(server: &common::Server) -> Harbor {
        Harbor {
            base: format!("{}{PREFIX}", server.url()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<String>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(header::ACCEPT, REPORT_MIME);
        if let Some(a) = authorization {
            r = r.header(header::AUTHORIZATION, a);
        }
        if let Some(b) = body {
            r = r
                .header(
                    header::CONTENT_TYPE,
                    "application/vnd.scanner.adapter.scan.request+json; version=1.0",
                )
                .body(b);
        }
        r.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.call(Method::GET, path, Some(&format!("Bearer {TOKEN}")), None)
            .await
    }

    async fn post_scan(&self, body: Value) -> reqwest::Response {
        self.call(
            Method::POST,
            "/api/v1/scan",
            Some(&format!("Bearer {TOKEN}")),
            Some(body.to_string()),
        )
        .await
    }

    /// Posts a scan and polls its report as Harbor does: (the final
    /// status, content type, body, how many 302s came first).
    async fn scan(&self, request: Value) -> (StatusCode, String, Value, usize) {
        let id = self.submit(request).await;
        self.poll(&id).await
    }

    /// Posts a scan: its id.
    async fn submit(&self, request: Value) -> String {
        let r = self.post_scan(request).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(
            header_of(&r, "content-type"),
            Some("application/vnd.scanner.adapter.scan.response+json; version=1.0")
        );
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls a scan's report until it is not 302.
    async fn poll(&self, id: &str) -> (StatusCode, String, Value, usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut waits = 0;
        loop {
            let r = self.get(&format!("/api/v1/scan/{id}/report")).await;
            if r.status() == StatusCode::FOUND {
                let after: u64 = header_of(&r, "refresh-after").unwrap().parse().unwrap();
                assert!((1..=60).contains(&after));
                waits += 1;
                assert!(Instant::now() < deadline, "the scan never ended");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let status = r.status();
            let content_type = header_of(&r, "content-type").unwrap_or("").to_string();
            let body: Value = r.json().await.unwrap();
            return (status, content_type, body, waits);
        }
    }
}

fn scan_request(registry: &str, authorization: &str, repo: &str, digest: &str) -> Value {
    json!({
        "registry": {"url": registry, "authorization": authorization},
        "artifact": {"repository": repo, "digest": digest, "tag": "v1",
                     "mime_type": OCI_MANIFEST, "size": 1234},
        "enabled_capabilities": [{"type": "vulnerability",
                                  "produces_mime_types": [REPORT_MIME]}]
    })
}

fn ids(report: &Value) -> Vec<String> {
    let mut ids: Vec<String> = report["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

const SEVERITIES: [&str; 6] = ["Unknown", "Negligible", "Low", "Medium", "High", "Critical"];

#[tokio::test]
async fn harbor_scans_an_image_of_its_registry_through_berth() {
    let Some(data) = vulndata() else { return };
    let Some(distribution) = Distribution::start() else {
        return;
    };
    let server = common::Server::start_with_env(
        &[],
        &[
            ("BERTH_AUTH_MODE", "token"),
            ("BERTH_HARBOR_ADAPTER_ENABLED", "true"),
            ("BERTH_HARBOR_ADAPTER_TOKEN_SHA256", &token_sha256()),
            ("BERTH_HARBOR_ADAPTER_WORKERS", "2"),
            // Everything Berth and its HTTP client log, to show no
            // credential is among it.
            ("BERTH_LOG", "debug"),
        ],
    );
    let harbor = Harbor::new(&server);

    // Harbor's token and nothing else opens the API.
    let metadata_path = "/api/v1/metadata";
    for auth in [
        None,
        Some("Bearer wrong-token".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(basic("admin", common::ADMIN_PASSWORD)),
    ] {
        let r = harbor
            .call(Method::GET, metadata_path, auth.as_deref(), None)
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let r = harbor
        .call(
            Method::POST,
            "/api/v1/scan",
            None,
            Some(scan_request("http://x", "", "a/b", "sha256:00").to_string()),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // ... and it opens nothing of Berth's own.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/users/current", server.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Before any database: metadata without its time, scans refused at the end.
    let r = harbor.get(metadata_path).await;
    assert_eq!(r.status(), StatusCode::OK);
    let m: Value = r.json().await.unwrap();
    assert!(m["properties"]
        .get("harbor.scanner-adapter/vulnerability-database-updated-at")
        .is_none());

    let imported = import_vulndb(&server, &data);
    assert!(imported["records"].as_i64().unwrap() > 15_000, "{imported}");

    let r = harbor.get(metadata_path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, "content-type"),
        Some("application/vnd.scanner.adapter.metadata+json; version=1.0")
    );
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["scanner"]["name"], "Berth");
    assert!(m["scanner"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert_eq!(
        m["capabilities"],
        json!([{
            "type": "vulnerability",
            "consumes_mime_types": [OCI_MANIFEST, DOCKER_MANIFEST],
            "produces_mime_types": [REPORT_MIME]
        }])
    );
    assert_eq!(
        m["properties"]["harbor.scanner-adapter/scanner-type"],
        "os-package-vulnerability"
    );
    let updated = m["properties"]["harbor.scanner-adapter/vulnerability-database-updated-at"]
        .as_str()
        .unwrap();
    assert!(updated.ends_with('Z') && updated.len() == 20, "{updated}");

    // The image, in Harbor's registry.
    let registry = Api::with_basic(distribution.url.clone(), ROBOT, ROBOT_PASSWORD);
    let layer = bookworm(&data);
    let (oci_manifest, digest) = registry.push_image("library/app", "v1", &layer).await;
    let robot = basic(ROBOT, ROBOT_PASSWORD);

    let (status, content_type, report, waits) = harbor
        .scan(scan_request(
            &distribution.url,
            &robot,
            "library/app",
            &digest,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(content_type, REPORT_MIME);
    assert!(waits > 0, "the report is polled through 302s while it runs");
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
    assert_eq!(want.len(), 13);
    assert_eq!(ids(&report), want, "exactly the expected findings");
    assert_eq!(
        report["artifact"],
        json!({"repository": "library/app", "digest": digest, "tag": "v1", "mime_type": OCI_MANIFEST})
    );
    assert_eq!(report["scanner"], m["scanner"]);
    assert!(report["generated_at"].as_str().unwrap().ends_with('Z'));
    let vulns = report["vulnerabilities"].as_array().unwrap();
    let find = |id: &str| vulns.iter().find(|v| v["id"] == id).unwrap();
    // CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N: 8.1, High.
    let urllib3 = find("PYSEC-2023-192");
    assert_eq!(urllib3["package"], "urllib3");
    assert_eq!(urllib3["version"], "1.24.1");
    assert_eq!(urllib3["fix_version"], "1.26.17");
    assert_eq!(urllib3["severity"], "High");
    assert_eq!(urllib3["vendor_attributes"]["cvss_score"], 8.1);
    assert!(urllib3["links"][0]
        .as_str()
        .unwrap()
        .ends_with("/PYSEC-2023-192"));
    // A record without a severity is Unknown (never guessed).
    assert_eq!(find("PYSEC-2019-217")["severity"], "Unknown");
    let rank = |s: &Value| SEVERITIES.iter().position(|n| s == n).unwrap();
    let highest = vulns.iter().map(|v| rank(&v["severity"])).max().unwrap();
    assert_eq!(report["severity"], SEVERITIES[highest]);

    // The same image under a Docker v2 manifest (its layer now cached).
    let oci: Value = serde_json::from_str(&oci_manifest).unwrap();
    let docker = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": oci["config"]["digest"], "size": oci["config"]["size"]},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": oci["layers"][0]["digest"], "size": oci["layers"][0]["size"]}],
    })
    .to_string();
    let r = registry
        .put_manifest("library/app", "v1-docker", DOCKER_MANIFEST, &docker)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let docker_digest = sha256(docker.as_bytes());
    let mut request = scan_request(&distribution.url, &robot, "library/app", &docker_digest);
    request["artifact"]["mime_type"] = json!(DOCKER_MANIFEST);
    let (status, _, docker_report, _) = harbor.scan(request).await;
    assert_eq!(status, StatusCode::OK, "{docker_report}");
    assert_eq!(ids(&docker_report), want);
    assert_eq!(docker_report["artifact"]["mime_type"], DOCKER_MANIFEST);

    // Bad requests are refused at once.
    for (body, status) in [
        ("not json".to_string(), StatusCode::BAD_REQUEST),
        (json!({"registry": {}}).to_string(), StatusCode::BAD_REQUEST),
        (
            scan_request(&distribution.url, &robot, "Library/../app", &digest).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            scan_request(&distribution.url, &robot, "library/app", "sha256:abc").to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            {
                let mut r = scan_request(&distribution.url, &robot, "library/app", &digest);
                r["artifact"]["mime_type"] = json!("application/vnd.oci.image.index.v1+json");
                r.to_string()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = harbor
            .call(
                Method::POST,
                "/api/v1/scan",
                Some(&format!("Bearer {TOKEN}")),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(
            header_of(&r, "content-type"),
            Some("application/vnd.scanner.adapter.error+json; version=1.0")
        );
        let e: Value = r.json().await.unwrap();
        assert!(!e["error"]["message"].as_str().unwrap().is_empty(), "{e}");
    }
    let r = harbor
        .get(&format!("/api/v1/scan/{}/report", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Wrong registry credentials: the scan ends as the error report.
    let wrong = basic(ROBOT, "not-the-password");
    let (status, content_type, body, _) = harbor
        .scan(scan_request(
            &distribution.url,
            &wrong,
            "library/app",
            &digest,
        ))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(
        content_type,
        "application/vnd.scanner.adapter.error+json; version=1.0"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("refused"), "{message}");

    // A registry that sends clients to a token endpoint (as Harbor's does):
    // the Basic credentials are exchanged for a pull token.
    let front = token_front(distribution.url.clone(), robot.clone()).await;
    let (status, _, report, _) = harbor
        .scan(scan_request(&front, &robot, "library/app", &digest))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(ids(&report), want);
    let (status, _, body, _) = harbor
        .scan(scan_request(&front, &wrong, "library/app", &digest))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("token endpoint"));

    // No credential is ever in Berth's log.
    let log = server.log();
    assert!(log.contains("Harbor scan ended"));
    assert!(log.contains("Harbor scan failed"));
    for secret in [
        robot.as_str(),
        wrong.as_str(),
        ROBOT_PASSWORD,
        TOKEN,
        robot.trim_start_matches("Basic "),
        wrong.trim_start_matches("Basic "),
    ] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

/// A registry front that wants Docker tokens, as Harbor's registry does:
/// without the token it answers 401 with a Bearer challenge; its `/token`
/// gives the token for `upstream_auth`'s Basic credentials and a pull
/// scope; with the token, requests go on to `upstream`.
async fn token_front(upstream: String, upstream_auth: String) -> String {
    use axum::extract::{Query, Request};
    use axum::response::{IntoResponse, Response};
    const ISSUED: &str = "Bearer front-token-91c2";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let realm = format!("http://{addr}/token");
    let auth = upstream_auth.clone();
    let token = move |Query(q): Query<std::collections::HashMap<String, String>>,
                      headers: axum::http::HeaderMap| {
        let auth = auth.clone();
        async move {
            let given = headers.get("authorization").and_then(|v| v.to_str().ok());
            let scope_ok = q.get("scope").map(String::as_str)
                == Some("repository:library/app:pull")
                && q.get("service").map(String::as_str) == Some("front");
            if given == Some(auth.as_str()) && scope_ok {
                axum::Json(json!({"token": ISSUED.trim_start_matches("Bearer ")})).into_response()
            } else {
                axum::http::StatusCode::UNAUTHORIZED.into_response()
            }
        }
    };
    let pass = move |request: Request| {
        let (upstream, auth, realm) = (upstream.clone(), upstream_auth.clone(), realm.clone());
        async move {
            let given = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if given != Some(ISSUED) {
                let challenge = format!(
                    r#"Bearer realm="{realm}",service="front",scope="repository:library/app:pull""#
                );
                return (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [("www-authenticate", challenge)],
                )
                    .into_response();
            }
            let mut r = reqwest::Client::new()
                .get(format!("{upstream}{}", request.uri().path()))
                .header(header::AUTHORIZATION, auth);
            if let Some(a) = request.headers().get("accept") {
                r = r.header(header::ACCEPT, a.to_str().unwrap());
            }
            let r = r.send().await.unwrap();
            let status = axum::http::StatusCode::from_u16(r.status().as_u16()).unwrap();
            let content_type = header_of(&r, "content-type").unwrap_or("").to_string();
            let body = r.bytes().await.unwrap();
            let response: Response =
                (status, [("content-type", content_type)], body).into_response();
            response
        }
    };
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token))
        .fallback(pass);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn without_the_setting_the_adapter_routes_do_not_exist() {
    let server = common::Server::start();
    let r = reqwest::Client::new()
        .get(format!("{}{PREFIX}/api/v1/metadata", server.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reports_expire_after_their_ttl() {
    let server = common::Server::start_with_env(
        &[],
        &[
            ("BERTH_HARBOR_ADAPTER_ENABLED", "true"),
            ("BERTH_HARBOR_ADAPTER_TOKEN_SHA256", &token_sha256()),
            ("BERTH_HARBOR_ADAPTER_RESULTS_TTL_SECS", "1"),
        ],
    );
    let harbor = Harbor::new(&server);
    // Nothing listens there: the scan fails at once.
    let nowhere = format!("http://{}", common::free_port());
    let digest = sha256(b"nothing");
    let id = harbor
        .submit(scan_request(&nowhere, "", "library/app", &digest))
        .await;
    let (status, _, body, _) = harbor.poll(&id).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Harbor's registry"), "{message}");
    assert!(!message.contains(&nowhere), "{message}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = harbor.get(&format!("/api/v1/scan/{id}/report")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// With `registries` set, a scan of any other registry is refused before
/// Berth connects anywhere; one of the registries listed is accepted.
#[tokio::test]
async fn only_the_registries_listed_are_pulled_from() {
    let listed = format!("http://{}", common::free_port());
    let server = common::Server::start_with_env(
        &[],
        &[
            ("BERTH_HARBOR_ADAPTER_ENABLED", "true"),
            ("BERTH_HARBOR_ADAPTER_TOKEN_SHA256", &token_sha256()),
            ("BERTH_HARBOR_ADAPTER_REGISTRIES", &listed),
        ],
    );
    let harbor = Harbor::new(&server);
    let digest = sha256(b"anything");
    let elsewhere = format!("http://{}", common::free_port());
    for other in [
        elsewhere.as_str(),
        "http://169.254.169.254",
        "https://127.0.0.1",
    ] {
        let r = harbor
            .post_scan(scan_request(other, "", "library/app", &digest))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{other}");
        let body: Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("harbor_adapter.registries"), "{message}");
    }
    // Listed (nothing listens there): accepted, and fails when pulled.
    let id = harbor
        .submit(scan_request(
            &format!("{listed}/"),
            "",
            "library/app",
            &digest,
        ))
        .await;
    let (status, _, body, _) = harbor.poll(&id).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
}
