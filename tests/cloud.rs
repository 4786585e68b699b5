//! Blobs in Azure Blob Storage, against a real Azurite (the Azure storage
//! emulator, from npm through `scripts/install-test-deps`) that each test
//! starts for itself: pushes whole and chunked (parts concatenated, a single
//! part copied, blobs over the 8 MiB part size written as multipart block
//! uploads), pulls and ranges, upload sessions in the container, a GC pass
//! that deletes a dead blob's object and an orphan, and `berth check`.
//!
//! GCS is not run here: no emulator installable from PyPI or npm speaks
//! enough of the XML API that object_store's GCS client uses (see
//! ARCHITECTURE.md, Storage layout); its configuration is unit-tested in
//! `src/storage/mod.rs`.

mod common;
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use reqwest::{header, StatusCode};
use sha2::{Digest as _, Sha256};
use support::*;

const MIB: usize = 1024 * 1024;

/// An Azurite blob service of the test's own on a free loopback port,
/// its data in a temporary directory; killed on drop.
struct Azurite {
    child: Child,
    endpoint: String,
    dir: common::TempDir,
}

impl Azurite {
    fn start() -> Azurite {
        let bin = std::env::var("AZURITE_BIN").unwrap_or_else(|_| {
            let root = std::env::var("BERTH_AZURITE_ROOT")
                .unwrap_or_else(|_| "/opt/berth-test-deps/azurite".into());
            let installed = format!("{root}/node_modules/.bin/azurite-blob");
            if std::path::Path::new(&installed).exists() {
                installed
            } else {
                "azurite-blob".into()
            }
        });
        let dir = common::TempDir::new("berth-azurite");
        let addr = common::free_port();
        let log = std::fs::File::create(dir.path().join("azurite.log")).unwrap();
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(addr.port().to_string())
            .arg("--location")
            .arg(dir.path().join("data"))
            .args(["--silent", "--disableTelemetry", "--skipApiVersionCheck"])
            // Its debug log names each operation: the test reads which ran.
            .arg("--debug")
            .arg(dir.path().join("debug.log"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {bin}: {e} (is Azurite installed? scripts/install-test-deps)")
            });
        let mut azurite = Azurite {
            child,
            endpoint: format!("http://{addr}"),
            dir,
        };
        // Ready once it says so: a connection alone could reach whatever
        // took the port meanwhile.
        let ready = format!("successfully listens on http://{addr}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !azurite.log().contains(&ready) {
            if let Ok(Some(status)) = azurite.child.try_wait() {
                panic!("azurite exited: {status}\n{}", azurite.log());
            }
            assert!(
                Instant::now() < deadline,
                "azurite did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        azurite
    }

    /// How many requests of the operation (e.g. `BlockBlob_CommitBlockList`)
    /// the emulator has handled.
    fn operations(&self, name: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("debug.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("DispatchMiddleware"))
            .filter_map(|l| l.split("Operation=").nth(1)?.split_whitespace().next())
            .filter(|op| *op == name)
            .count()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }

    /// Creates a container (object_store has no call for it): one Create
    /// Container request, signed with the development account's shared key.
    async fn create_container(&self, name: &str) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let account = common::AZURITE_ACCOUNT;
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        // VERB, eleven standard headers (all empty), the x-ms- headers, the
        // resource (path-style: the account is in the path too).
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
             /{account}/{account}/{name}\nrestype:container"
        );
        let key = b64.decode(common::AZURITE_KEY).unwrap();
        let signature = b64.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let r = reqwest::Client::new()
            .put(format!(
                "{}/{account}/{name}?restype=container",
                self.endpoint
            ))
            .header("x-ms-date", &date)
            .header("x-ms-version", version)
            .header(header::CONTENT_LENGTH, "0")
            .header(
                header::AUTHORIZATION,
                format!("SharedKey {account}:{signature}"),
            )
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}\n{}",
            r.text().await.unwrap(),
            self.log()
        );
    }

    /// A Berth server's environment for blobs in `container` under
    /// `prefix`, then `extra`.
    fn server_env<'a>(
        &'a self,
        container: &'a str,
        prefix: &'a str,
        extra: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("BERTH_STORAGE_BACKEND", "azure"),
            ("BERTH_AZURE_USE_EMULATOR", "true"),
            ("BERTH_AZURE_ENDPOINT", self.endpoint.as_str()),
            ("BERTH_AZURE_CONTAINER", container),
            ("BERTH_AZURE_PREFIX", prefix),
            // The S3 pass of scripts/test may ask every server for
            // redirects; they are S3's only.
            ("BERTH_S3_PRESIGNED_REDIRECTS", "false"),
        ];
        env.extend_from_slice(extra);
        env
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// POST, a PATCH per `chunk` bytes, then PUT ?digest with no body.
async fn push_chunked(api: &Api, repo: &str, bytes: &[u8], chunk: usize) -> String {
    let digest = sha256(bytes);
    let mut location = api.start_upload(repo).await;
    for (i, part) in bytes.chunks(chunk).enumerate() {
        location = api.patch_chunk(&location, i * chunk, part).await;
    }
    api.finish_upload(&location, &digest).await;
    digest
}

/// Runs a GC pass through the API and waits for it; its record.
async fn gc_pass(server: &common::Server) -> serde_json::Value {
    let started = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/system/gc",
            serde_json::json!({}),
        )
        .await;
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = server
            .admin(
                reqwest::Method::GET,
                "/api/v1/system/gc",
                serde_json::Value::Null,
            )
            .await;
        let run = status["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .cloned();
        if let Some(run) = run.filter(|r| r["status"] != "running") {
            assert_eq!(run["status"], "finished", "{run:#}");
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "GC pass did not finish: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pull(api: &Api, repo: &str, digest: &str) -> bytes::Bytes {
    let r = api.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {digest}");
    r.bytes().await.unwrap()
}

#[tokio::test]
async fn azure_blobs_push_pull_gc_and_check_against_azurite() {
    let azurite = Azurite::start();
    azurite.create_container("berth").await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let env = azurite.server_env(
        "berth",
        &prefix,
        &[
            ("BERTH_GC_ENABLED", "false"),
            ("BERTH_GC_GRACE_SECS", "0"),
            ("BERTH_GC_UNTAGGED_DELAY_SECS", "0"),
        ],
    );
    let mut server = common::Server::start_with_env(&[], &env);
    let api = Api::new(server.url());
    let repo = "cloud/app";

    // An image pushed whole (config, layer: single-request PUTs).
    let small = pattern(300_000, 1);
    let (_, v1_digest) = api.push_image(repo, "v1", &small).await;
    // Chunked: 1 MiB PATCHes concatenated into one object.
    let chunked = pattern(3 * MIB + 4321, 2);
    let chunked_digest = push_chunked(&api, repo, &chunked, MIB).await;
    // One PATCH, then an empty PUT: the part is copied server-side.
    let single = pattern(2 * MIB + 5, 3);
    let single_digest = push_chunked(&api, repo, &single, 4 * MIB).await;
    // Over the 8 MiB part size, in two PATCHes: concatenated as a
    // multipart (block list) upload.
    let big = pattern(9 * MIB + 777, 4);
    let big_digest = push_chunked(&api, repo, &big, 5 * MIB).await;
    // Over 8 MiB in the final PUT alone: streamed into a multipart upload.
    let big_whole = pattern(10 * MIB + 1, 5);
    let big_whole_digest = api.push_blob(repo, &big_whole).await;

    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = api.push_blob(repo, config).await;
    let layers = [
        (chunked_digest.as_str(), chunked.len()),
        (single_digest.as_str(), single.len()),
        (big_digest.as_str(), big.len()),
        (big_whole_digest.as_str(), big_whole.len()),
    ];
    let manifest = image_manifest(&config_digest, config.len(), &layers, None, None);
    let r = api.put_manifest(repo, "v2", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Pulls: the exact bytes, and a range across the 8 MiB part boundary.
    for (bytes, digest) in [
        (&small, sha256(&small)),
        (&chunked, chunked_digest.clone()),
        (&single, single_digest.clone()),
        (&big, big_digest.clone()),
        (&big_whole, big_whole_digest.clone()),
    ] {
        assert!(pull(&api, repo, &digest).await == bytes[..], "{digest}");
    }
    let r = api
        .http
        .get(api.url(&format!("/v2/{repo}/blobs/{big_digest}")))
        .header(header::RANGE, "bytes=8388000-8389000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), &big[8_388_000..=8_389_000]);
    // The store did what the paths above mean: two blobs over 8 MiB
    // written as blocks and a block list, one part copied server-side.
    assert!(azurite.operations("BlockBlob_CommitBlockList") >= 2);
    assert!(azurite.operations("BlockBlob_StageBlock") >= 4);
    assert!(azurite.operations("Blob_StartCopyFromURL") >= 1);
    let r = api.get(&format!("/v2/{repo}/manifests/v2")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), manifest);

    // The objects are in the container, under the prefix; no upload
    // session is left.
    let stored = server.stored_blob_names().await;
    for digest in [
        &chunked_digest,
        &single_digest,
        &big_digest,
        &big_whole_digest,
    ] {
        let hex = digest.trim_start_matches("sha256:");
        assert!(
            stored.iter().any(|n| n.starts_with(hex)),
            "{digest} not in {stored:?}"
        );
    }
    assert!(server.stored_upload_sessions().await.is_empty());

    // An upload in progress is a session in the container, any replica's to
    // continue; cancelling it removes its objects.
    let location = api.start_upload("cloud/other").await;
    let r = api
        .http
        .patch(api.url(&location))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(pattern(100_000, 6))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(server.stored_upload_sessions().await.len(), 1);
    let r = api.get(&location).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_of(&r, "range"), Some("0-99999"));
    assert_eq!(api.delete(&location).await.status(), StatusCode::NO_CONTENT);
    assert!(server.stored_upload_sessions().await.is_empty());

    // GC: an image deleted, and an orphan object no row names, both go.
    let doomed = pattern(200_000, 7);
    let (_, doomed_manifest) = api.push_image("cloud/tmp", "t", &doomed).await;
    let doomed_digest = sha256(&doomed);
    let r = api
        .delete(&format!("/v2/cloud/tmp/manifests/{doomed_manifest}"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let orphan_hex = hex::encode(Sha256::digest(b"an orphan"));
    let orphan_key = object_store::path::Path::from(format!(
        "{prefix}/blobs/sha256/{}/{orphan_hex}.0123456789abcdef",
        &orphan_hex[..2]
    ));
    let container = common::azurite_store(&azurite.endpoint, "berth");
    container
        .put(&orphan_key, b"an orphan".to_vec().into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the grace of 0 s
    let mut removed = 0;
    let mut orphans = 0;
    for _ in 0..4 {
        let run = gc_pass(&server).await;
        removed += run["blobs_removed"].as_u64().unwrap();
        orphans += run["orphan_files"].as_u64().unwrap();
        let stored = server.stored_blob_names().await;
        if !stored.iter().any(|n| {
            n.starts_with(doomed_digest.trim_start_matches("sha256:")) || n.starts_with(&orphan_hex)
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(removed >= 1, "the deleted image's layer was collected");
    assert_eq!(orphans, 1, "the orphan object was swept");
    let stored = server.stored_blob_names().await;
    assert!(
        !stored
            .iter()
            .any(|n| n.starts_with(doomed_digest.trim_start_matches("sha256:"))),
        "{stored:?}"
    );
    assert!(matches!(
        container.head(&orphan_key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    // What is still used is all there.
    assert!(pull(&api, repo, &big_digest).await == big[..]);
    assert_eq!(
        api.get(&format!("/v2/{repo}/manifests/{v1_digest}"))
            .await
            .status(),
        StatusCode::OK
    );

    // The consistency check lists the container: all well, then a lost
    // object is found.
    let check = server.check().await;
    assert_eq!(check["ok"], true, "{check:#}");
    assert!(check["blobs_checked"].as_u64().unwrap() >= 7, "{check:#}");
    server.remove_stored_blob(&big_whole_digest).await;
    let check = server.check().await;
    assert_eq!(check["ok"], false, "{check:#}");
    assert_eq!(
        check["missing_files"],
        serde_json::json!([big_whole_digest]),
        "{check:#}"
    );

    // A restart on the same container serves the same blobs.
    server.kill_and_restart();
    let api = Api::new(server.url()); // no pooled connection to the old process
    assert!(pull(&api, repo, &chunked_digest).await == chunked[..]);
}

/// A server configured for Azure with presigned redirects refuses to start,
/// saying why.
#[tokio::test]
async fn presigned_redirects_are_refused_for_azure() {
    let env = [
        ("BERTH_STORAGE_BACKEND", "azure"),
        ("BERTH_AZURE_USE_EMULATOR", "true"),
        ("BERTH_AZURE_CONTAINER", "berth"),
        ("BERTH_S3_PRESIGNED_REDIRECTS", "true"),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(common::TempDir::new("berth-refused").path())
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("presigned_redirects"), "{stderr}");
}
