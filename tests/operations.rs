//! Running the registry: defaults, configuration, logs, metrics, expiry of
//! abandoned uploads, graceful shutdown.

mod common;
mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::*;

#[tokio::test]
async fn abandoned_uploads_expire_and_their_data_is_removed() {
    let server = common::Server::start_with_env(&[], &[("BERTH_UPLOADS_EXPIRE_AFTER_SECS", "1")]);
    let api = Api::new(server.url());
    // Never sent data: in memory only on disk, a session object on S3.
    let empty = api.start_upload("exp").await;
    let location = api.start_upload("exp").await;
    let r = api
        .http
        .patch(api.url(&location))
        .body(vec![7u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = location.rsplit('/').next().unwrap().to_string();
    assert!(
        server.stored_upload_sessions().await.contains(&id),
        "the session with data is stored"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.get(&location).await;
        if r.status() == StatusCode::NOT_FOUND {
            assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
            break;
        }
        assert!(Instant::now() < deadline, "upload never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = server.stored_upload_sessions().await;
    assert!(left.is_empty(), "its data is gone: {left:?}");
    assert_error(
        api.get(&empty).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    // Committed blobs are not touched by expiry.
    let d = api.push_blob("exp", b"kept").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        api.get(&format!("/v2/exp/blobs/{d}"))
            .await
            .bytes()
            .await
            .unwrap(),
        &b"kept"[..]
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_upload_in_flight() {
    let mut server = common::Server::start();
    let api = Api::new(server.url());
    let location = api.start_upload("shut").await;
    let body = vec![42u8; 2 * 1024 * 1024];
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let pid = server.pid().unwrap();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused while the upload finishes.
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "listener closed on SIGTERM"
    );
    stream.write_all(&body[body.len() / 2..]).unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(
        answer
            .to_lowercase()
            .contains(&format!("range: 0-{}", body.len() - 1)),
        "{answer}"
    );
    drop(stream);
    let code = server.child_mut().unwrap().wait().unwrap().code();
    assert_eq!(code, Some(0), "clean exit");
    assert!(
        server.log().is_empty() || !server.log().contains("ERROR"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn one_json_log_line_per_request() {
    let server =
        common::Server::start_with_env(&[], &[("BERTH_LOG_FORMAT", "json"), ("BERTH_LOG", "info")]);
    let api = Api::new(server.url());
    let (manifest, _) = api.push_image("logs/app", "v1", b"layer").await;
    api.get("/v2/logs/app/manifests/v1")
        .await
        .bytes()
        .await
        .unwrap();
    api.get("/v2/logs/app/manifests/nope").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let get = lines
        .iter()
        .find(|l| l["path"] == "/v2/logs/app/manifests/v1" && l["method"] == "GET")
        .expect("a line for the GET");
    assert_eq!(get["status"], 200);
    assert_eq!(get["route"], "manifest");
    assert_eq!(get["bytes_out"], manifest.len());
    assert!(get["latency_ms"].as_f64().is_some());
    let miss = lines
        .iter()
        .find(|l| l["path"] == "/v2/logs/app/manifests/nope")
        .expect("a line for the 404");
    assert_eq!(miss["status"], 404);
    assert_eq!(miss["error"], "manifest unknown to registry");
}

#[tokio::test]
async fn prometheus_metrics() {
    let server = common::Server::start();
    let api = Api::new(server.url());
    api.push_image("metrics/app", "v1", b"0123456789").await;
    for _ in 0..3 {
        api.get("/v2/metrics/app/manifests/v1")
            .await
            .bytes()
            .await
            .unwrap();
    }
    let text = api.get("/metrics").await.text().await.unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(r#"berth_http_requests_total{route="manifest",method="GET",status="200"}"#),
        3.0
    );
    assert_eq!(
        value(r#"berth_http_requests_total{route="manifest",method="PUT",status="201"}"#),
        1.0
    );
    assert_eq!(
        value(r#"berth_http_request_duration_seconds_count{route="manifest",method="GET"}"#),
        3.0
    );
    assert!(value("berth_http_sent_bytes_total") > 0.0);
    assert!(value("berth_http_received_bytes_total") >= 10.0);
    assert_eq!(value("berth_uploads_in_flight"), 0.0);
    // config blob + layer + manifest
    assert!(value("berth_storage_bytes") > 10.0);
    // Each of those is at least one metadata write, grouped into transactions.
    let (writes, transactions) = (
        value("berth_db_writes_total"),
        value("berth_db_transactions_total"),
    );
    assert!(writes >= 3.0, "{writes}");
    assert!((1.0..=writes).contains(&transactions), "{transactions}");
    assert_eq!(value("berth_db_write_conflicts_total"), 0.0);
}

#[test]
fn defaults_listen_on_5000_with_data_in_the_working_directory() {
    if std::net::TcpStream::connect("127.0.0.1:5000").is_ok() {
        eprintln!("port 5000 is taken on this machine; the defaults cannot be checked here");
        return;
    }
    let dir = common::TempDir::new("berth-defaults");
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("BERTH_LISTEN")
        .env_remove("BERTH_DATA_DIR")
        .env_remove("BERTH_CONFIG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = loop {
        if std::net::TcpStream::connect("127.0.0.1:5000").is_ok() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let data_created = dir.path().join("berth-data/berth.db").exists();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(up, "berth did not listen on 127.0.0.1:5000");
    assert!(data_created, "no ./berth-data/berth.db");
    eprintln!("listening {:?} after start", started.elapsed());
}

#[test]
fn bad_configuration_is_reported() {
    let dir = common::TempDir::new("berth-badconfig");
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "listen = 5\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("berth.toml") && stderr.contains("listen"),
        "{stderr}"
    );
}

#[tokio::test]
async fn pull_statistics_are_recorded_and_flushed_on_shutdown() {
    let mut server = common::Server::start();
    let api = Api::new(server.url());
    let (_, digest) = api.push_image("stats/app", "v1", b"counted layer").await;
    let layer = sha256(b"counted layer");
    for _ in 0..3 {
        api.get("/v2/stats/app/manifests/v1")
            .await
            .bytes()
            .await
            .unwrap();
    }
    api.head("/v2/stats/app/manifests/v1").await; // HEAD is not a pull
    for _ in 0..2 {
        api.get(&format!("/v2/stats/app/blobs/{layer}"))
            .await
            .bytes()
            .await
            .unwrap();
    }
    assert_eq!(server.terminate(), Some(0));

    let db = server.db().await;
    let (count, last): (i64, Option<i64>) = sqlx::query_as(
        "SELECT pull_count, last_pulled_at FROM repository_manifests WHERE repository = 'stats/app' AND digest = $1",
    )
    .bind(&digest)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(count, 3);
    assert!(last.is_some());
    let count: i64 = sqlx::query_scalar(
        "SELECT pull_count FROM repository_blobs WHERE repository = 'stats/app' AND digest = $1",
    )
    .bind(&layer)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(count, 2);
}

/// Random requests built from the API's own vocabulary, valid and not:
/// none may produce a 5xx, and every /v2 error carries the spec's JSON body.
#[tokio::test]
async fn random_requests_never_cause_server_errors() {
    let server = common::Server::start();
    let api = Api::new(server.url());
    let (manifest, manifest_digest) = api.push_image("fuzz/app", "v1", b"fuzz layer").await;
    let layer = sha256(b"fuzz layer");
    // Never named by the requests below: must come through untouched.
    let (kept, _) = api.push_image("kept/app", "v1", b"kept layer").await;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let names = [
        "fuzz/app",
        "fuzz/other",
        "a",
        "A",
        "a//b",
        "a/%2e%2e/b",
        "-x",
        &"n".repeat(300),
        "a/b/c/d/e/f",
    ];
    let digests = [
        manifest_digest.as_str(),
        layer.as_str(),
        "sha256:abc",
        "sha512:00",
        "md5:x",
        "",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ];
    let refs = [
        "v1",
        "latest",
        "-bad",
        "a:b",
        manifest_digest.as_str(),
        "sha256:zz",
        &"t".repeat(200),
    ];
    let methods = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"];
    let media = [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        "application/json",
        "text/plain",
        "",
    ];
    let mut uploads = vec![
        "00000000-0000-0000-0000-000000000000".to_string(),
        "junk".into(),
    ];
    for i in 0..1500 {
        let name = names[next(names.len())];
        let path = match next(7) {
            0 => format!("/v2/{name}/manifests/{}", refs[next(refs.len())]),
            1 => format!("/v2/{name}/blobs/{}", digests[next(digests.len())]),
            2 => format!("/v2/{name}/blobs/uploads/"),
            3 => format!("/v2/{name}/blobs/uploads/{}", uploads[next(uploads.len())]),
            4 => format!(
                "/v2/{name}/tags/list?n={}&last={}",
                ["", "0", "-1", "5", "x", "99999999999"][next(6)],
                refs[next(refs.len())]
            ),
            5 => format!(
                "/v2/{name}/referrers/{}?artifactType=%2B",
                digests[next(digests.len())]
            ),
            _ => format!(
                "/v2/{name}/blobs/uploads/{}?digest={}&mount={}&from={}",
                uploads[next(uploads.len())],
                digests[next(digests.len())],
                digests[next(digests.len())],
                names[next(names.len())]
            ),
        };
        let method = reqwest::Method::from_bytes(methods[next(methods.len())].as_bytes()).unwrap();
        let mut request = api.http.request(method.clone(), api.url(&path));
        if next(2) == 0 {
            request = request.header("Content-Type", media[next(media.len())]);
        }
        if next(3) == 0 {
            let (a, b) = (next(50) as i64 - 5, next(50) as i64 - 5);
            request = request.header("Content-Range", format!("{a}-{b}"));
            request = request.header("Range", format!("bytes={a}-{b}"));
        }
        let body: Vec<u8> = match next(4) {
            0 => Vec::new(),
            1 => manifest.as_bytes().to_vec(),
            2 => manifest.as_bytes()[..next(manifest.len())].to_vec(),
            _ => (0..next(300)).map(|_| next(256) as u8).collect(),
        };
        let r = request.body(body).send().await.unwrap();
        let status = r.status();
        if let Some(location) = r.headers().get("location").and_then(|l| l.to_str().ok()) {
            if let Some(id) = location.split("/blobs/uploads/").nth(1) {
                uploads.push(id.split('?').next().unwrap().to_string());
            }
        }
        let text = r.text().await.unwrap();
        assert!(
            !status.is_server_error(),
            "request {i}: {method} {path} -> {status}: {text}"
        );
        if status.is_client_error() && method != reqwest::Method::HEAD {
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("request {i}: {method} {path} -> {status}, not JSON ({e}): {text}")
            });
            assert!(body["errors"][0]["code"].is_string(), "{text}");
        }
    }
    let r = api.get("/v2/kept/app/manifests/v1").await;
    assert_eq!(r.text().await.unwrap(), kept);
    let r = api
        .get(&format!("/v2/kept/app/blobs/{}", sha256(b"kept layer")))
        .await;
    assert_eq!(r.bytes().await.unwrap(), &b"kept layer"[..]);
}
