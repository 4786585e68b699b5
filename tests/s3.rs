//! Blobs on S3 against a real Garage that each test starts for itself
//! (`scripts/start-garage`; Garage comes from `scripts/install-test-deps`):
//! presigned redirects, and an outage of the store.

mod common;
mod support;

use std::time::Duration;

use reqwest::{header, StatusCode};
use support::*;

#[tokio::test]
async fn blob_gets_redirect_to_presigned_urls_of_the_store() {
    let garage = Garage::start();
    let endpoint = garage.get("S3_ENDPOINT").to_string();
    let server = common::Server::start_with_env(
        &[],
        &garage.server_env("redirects", &[("BERTH_S3_PRESIGNED_REDIRECTS", "true")]),
    );
    let api = Api::new(server.url());
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = api.push_blob("redirected/app", &bytes).await;
    let path = format!("/v2/redirected/app/blobs/{digest}");

    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow.get(api.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(digest.as_str())
    );
    let location = header_of(&r, "location").unwrap().to_string();
    assert!(location.starts_with(&endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");

    // The store serves the exact bytes, and ranges of them, to anyone
    // holding the URL: the bytes never pass through Berth.
    let r = no_follow.get(&location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), &bytes[..]);
    let r = no_follow
        .get(&location)
        .header(header::RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), &bytes[10..20]);
    // A tampered signature is refused by the store.
    let forged = location.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(
        no_follow.get(&forged).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // A client that follows redirects gets the blob; HEAD is answered by
    // Berth itself, with the blob's length.
    assert_eq!(api.get(&path).await.bytes().await.unwrap(), &bytes[..]);
    let r = api.head(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, "content-length"),
        Some(bytes.len().to_string().as_str())
    );
    // Unknown blobs are still the registry's error, not a redirect.
    let missing = format!("/v2/redirected/app/blobs/{}", sha256(b"never pushed"));
    let r = no_follow.get(api.url(&missing)).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

/// A Garage server of the test's own (`scripts/start-garage`), stopped on drop.
struct Garage {
    dir: common::TempDir,
    env: Vec<(String, String)>,
    pid: u32,
    /// The server after a restart, which this process started.
    restarted: Option<std::process::Child>,
}

impl Garage {
    fn start() -> Garage {
        let dir = common::TempDir::new("berth-garage");
        let out = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/start-garage"
        ))
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "start-garage failed (is Garage installed? scripts/install-test-deps)"
        );
        let mut env = Vec::new();
        let mut pid = 0;
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let (k, v) = line.split_once('=').unwrap();
            match k {
                "GARAGE_PID" => pid = v.parse().unwrap(),
                _ => env.push((k.to_string(), v.to_string())),
            }
        }
        Garage {
            dir,
            env,
            pid,
            restarted: None,
        }
    }

    fn get(&self, key: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == key).unwrap().1
    }

    /// A Berth server's environment for blobs in this Garage under
    /// `prefix`, then `extra`.
    fn server_env<'a>(
        &'a self,
        prefix: &'a str,
        extra: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("BERTH_STORAGE_BACKEND", "s3"),
            ("BERTH_S3_ENDPOINT", self.get("S3_ENDPOINT")),
            ("BERTH_S3_REGION", self.get("S3_REGION")),
            ("BERTH_S3_BUCKET", self.get("S3_BUCKET")),
            ("BERTH_S3_ACCESS_KEY_ID", self.get("S3_ACCESS_KEY_ID")),
            (
                "BERTH_S3_SECRET_ACCESS_KEY",
                self.get("S3_SECRET_ACCESS_KEY"),
            ),
            ("BERTH_S3_PATH_STYLE", "true"),
            ("BERTH_S3_PREFIX", prefix),
        ];
        env.extend_from_slice(extra);
        env
    }

    fn kill(&mut self) {
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        // Reap it, so the ports are free again.
        while std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
            && std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .map(|s| !s.contains(") Z"))
                .unwrap_or(false)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the killed server again on its data and ports.
    fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("garage-2.log")).unwrap();
        let bin = std::env::var("GARAGE_BIN").unwrap_or_else(|_| {
            if std::path::Path::new("/opt/berth-test-deps/bin/garage").exists() {
                "/opt/berth-test-deps/bin/garage".into()
            } else {
                "garage".into()
            }
        });
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .arg("server")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.pid = child.id();
        self.restarted = Some(child);
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        if let Some(mut child) = self.restarted.take() {
            let _ = child.wait();
        }
    }
}

/// The object store going away mid-service: pushes and pulls of bytes get
/// 503 with the spec's JSON body within seconds (not a hang), metadata reads
/// go on, nothing stored is lost, and all works again once it is back.
#[tokio::test]
async fn an_unreachable_store_answers_503_and_loses_nothing() {
    let mut garage = Garage::start();
    let env = garage.server_env("outage", &[("BERTH_S3_PRESIGNED_REDIRECTS", "false")]);
    let server = common::Server::start_with_env(&[], &env);
    let api = Api::new(server.url());
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (_, manifest_digest) = api.push_image("outage/app", "v1", &layer).await;
    let layer_path = format!("/v2/outage/app/blobs/{}", sha256(&layer));

    garage.kill();
    let started = std::time::Instant::now();
    let other = b"pushed while the store is down".to_vec();
    let location = api.start_upload("outage/app").await;
    let r = api
        .http
        .put(api.url(&with_query(
            &location,
            &format!("digest={}", sha256(&other)),
        )))
        .body(other.clone())
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "UNKNOWN").await;
    assert_error(
        api.get(&layer_path).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "UNKNOWN",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "answered after {:?}",
        started.elapsed()
    );
    // Metadata does not need the store.
    let r = api.get("/v2/outage/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(manifest_digest.as_str())
    );
    assert_eq!(
        api.head(&format!("/v2/outage/app/blobs/{}", sha256(&other)))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "a blob the store did not take is not listed"
    );

    garage.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = api.get(&layer_path).await;
        if r.status() == StatusCode::OK {
            assert_eq!(r.bytes().await.unwrap(), &layer[..]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "store did not come back: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.push_blob("outage/app", &other).await;
    assert_eq!(
        api.get(&format!("/v2/outage/app/blobs/{}", sha256(&other)))
            .await
            .bytes()
            .await
            .unwrap(),
        &other[..]
    );
    let check = server.check().await;
    assert_eq!(check["ok"], true, "{check:#}");
}
