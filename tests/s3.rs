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

    // A session opened before the outage (its object is in the store).
    let location = api.start_upload("outage/app").await;
    garage.kill();
    let started = std::time::Instant::now();
    let other = b"pushed while the store is down".to_vec();
    // Opening a session writes it to the store.
    let r = api
        .http
        .post(api.url("/v2/outage/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "UNKNOWN").await;
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

// ---- upload sessions shared by replicas -------------------------------------

use berth::oci::Digest;
use berth::storage::{BlobStore, ByteStream, UploadError, UploadId};
use futures_util::StreamExt;

impl Garage {
    /// The storage configuration of a replica with blobs under `prefix`.
    fn s3_config(&self, prefix: &str) -> berth::config::S3Config {
        berth::config::S3Config {
            endpoint: Some(self.get("S3_ENDPOINT").to_string()),
            region: Some(self.get("S3_REGION").to_string()),
            bucket: self.get("S3_BUCKET").to_string(),
            prefix: prefix.to_string(),
            access_key_id: Some(self.get("S3_ACCESS_KEY_ID").to_string()),
            secret_access_key: Some(berth::config::Secret(
                self.get("S3_SECRET_ACCESS_KEY").to_string(),
            )),
            path_style: true,
            ..Default::default()
        }
    }

    /// A blob store as one replica opens it: the shared bucket and prefix,
    /// a local directory of its own.
    fn replica(&self, prefix: &str) -> (common::TempDir, BlobStore) {
        let dir = common::TempDir::new("berth-replica");
        let store =
            BlobStore::open_s3(dir.path().join("storage"), &self.s3_config(prefix)).unwrap();
        (dir, store)
    }

    /// Keys in the bucket under `prefix/under`, relative to `prefix`.
    async fn keys(&self, prefix: &str, under: &str) -> Vec<String> {
        use futures_util::TryStreamExt;
        use object_store::ObjectStore;
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.get("S3_ENDPOINT"))
            .with_allow_http(true)
            .with_region(self.get("S3_REGION"))
            .with_bucket_name(self.get("S3_BUCKET"))
            .with_access_key_id(self.get("S3_ACCESS_KEY_ID"))
            .with_secret_access_key(self.get("S3_SECRET_ACCESS_KEY"))
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap();
        let at = object_store::path::Path::from(format!("{prefix}/{under}"));
        let objects: Vec<_> = s3.list(Some(&at)).try_collect().await.unwrap();
        let mut keys: Vec<String> = objects
            .into_iter()
            .map(|o| o.location.as_ref()[prefix.len() + 1..].to_string())
            .collect();
        keys.sort();
        keys
    }
}

/// A request body delivered in pieces of at most 64 KiB.
fn body_of(bytes: &[u8]) -> ByteStream {
    let pieces: Vec<std::io::Result<bytes::Bytes>> = bytes
        .chunks(64 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(pieces).boxed()
}

fn digest_of(bytes: &[u8]) -> Digest {
    sha256(bytes).parse().unwrap()
}

async fn read_blob(store: &BlobStore, digest: &Digest, nonce: &str) -> Vec<u8> {
    let mut stream = store.read(digest, nonce, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// POST on one replica, a PATCH on each of two others, PUT on the first:
/// the blob is the bytes sent, verified, and nothing of the session is left.
/// Chunks of 9 MiB (a multipart part object) and odd sizes (hash states with
/// an incomplete block) cross replicas; a single-chunk upload is committed
/// by a server-side copy of its part.
#[tokio::test]
async fn three_replicas_serve_one_chunked_upload() {
    let garage = Garage::start();
    let prefix = "replicas";
    let (_a_dir, a) = garage.replica(prefix);
    let (_b_dir, b) = garage.replica(prefix);
    let (_c_dir, c) = garage.replica(prefix);
    let repo = "team/app";

    let first = pattern(9 * 1024 * 1024 + 13, 1);
    let second = pattern(3 * 1024 * 1024 + 7, 2);
    let whole = [first.clone(), second.clone()].concat();
    let digest = digest_of(&whole);

    let id = a.uploads().start(repo).await.unwrap();
    let id_text = id.to_string();
    // Every replica knows the session (and GC anywhere protects its repository).
    let id: UploadId = id_text.parse().unwrap();
    assert!(c.repositories_uploading().await.unwrap().contains(repo));
    assert_eq!(b.uploads().status(id, repo).await.unwrap().size, 0);
    assert!(matches!(
        b.uploads().status(id, "team/other").await,
        Err(UploadError::Unknown)
    ));

    let size = b
        .uploads()
        .append(id, repo, Some(0), Some(first.len() as u64), body_of(&first))
        .await
        .unwrap()
        .size;
    assert_eq!(size, first.len() as u64);
    // A chunk at the wrong offset is refused, on any replica, and changes nothing.
    assert!(matches!(
        c.uploads()
            .append(id, repo, Some(5), None, body_of(b"misplaced"))
            .await,
        Err(UploadError::OutOfOrder { size: s }) if s == first.len() as u64
    ));
    // A chunk that is shorter than declared is dropped.
    assert!(matches!(
        c.uploads()
            .append(id, repo, Some(size), Some(100), body_of(b"short"))
            .await,
        Err(UploadError::LengthMismatch { .. })
    ));
    c.uploads()
        .append(id, repo, Some(size), None, body_of(&second))
        .await
        .unwrap();
    assert_eq!(
        a.uploads().status(id, repo).await.unwrap().size,
        whole.len() as u64
    );

    let nonce = berth::storage::new_nonce();
    let stored = a.commit_upload(id, repo, &digest, &nonce).await.unwrap();
    assert_eq!(stored, whole.len() as u64);
    assert_eq!(read_blob(&c, &digest, &nonce).await, whole);
    assert!(garage.keys(prefix, "uploads").await.is_empty());
    assert!(matches!(
        b.uploads().status(id, repo).await,
        Err(UploadError::Unknown)
    ));
    assert!(!a.repositories_uploading().await.unwrap().contains(repo));

    // One chunk: the blob is a copy of its part, made by the store.
    let id = c.uploads().start(repo).await.unwrap();
    a.uploads()
        .append(id, repo, None, None, body_of(&second))
        .await
        .unwrap();
    let nonce2 = berth::storage::new_nonce();
    let digest2 = digest_of(&second);
    b.commit_upload(id, repo, &digest2, &nonce2).await.unwrap();
    assert_eq!(read_blob(&a, &digest2, &nonce2).await, second);

    // A last chunk in the PUT, on yet another replica.
    let id = a.uploads().start(repo).await.unwrap();
    b.uploads()
        .append(id, repo, None, None, body_of(&first))
        .await
        .unwrap();
    let nonce3 = berth::storage::new_nonce();
    c.commit_upload_stream(
        id,
        repo,
        Some(first.len() as u64),
        Some(second.len() as u64),
        body_of(&second),
        &digest,
        &nonce3,
    )
    .await
    .unwrap();
    assert_eq!(read_blob(&b, &digest, &nonce3).await, whole);

    // SHA-512: verified while the parts are streamed into the blob.
    use sha2::Digest as _;
    let d512: Digest = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&second)))
        .parse()
        .unwrap();
    let id = b.uploads().start(repo).await.unwrap();
    c.uploads()
        .append(id, repo, None, None, body_of(&second))
        .await
        .unwrap();
    let nonce4 = berth::storage::new_nonce();
    a.commit_upload(id, repo, &d512, &nonce4).await.unwrap();
    assert_eq!(read_blob(&c, &d512, &nonce4).await, second);

    assert!(garage.keys(prefix, "uploads").await.is_empty());
    assert_eq!(garage.keys(prefix, "blobs").await.len(), 4);
}

/// A digest that does not match discards the session and stores nothing,
/// whether chunks were staged or the whole blob came in the PUT.
#[tokio::test]
async fn a_digest_mismatch_discards_the_session_and_stores_nothing() {
    let garage = Garage::start();
    let prefix = "mismatch";
    let (_a_dir, a) = garage.replica(prefix);
    let (_b_dir, b) = garage.replica(prefix);
    let repo = "team/app";
    let data = pattern(10 * 1024 * 1024 + 1, 3);
    let wrong = digest_of(b"something else");

    // Staged chunks (several, and one alone: the copy path).
    for chunks in [2, 1] {
        let id = a.uploads().start(repo).await.unwrap();
        let step = data.len() / chunks + 1;
        for piece in data.chunks(step) {
            b.uploads()
                .append(id, repo, None, None, body_of(piece))
                .await
                .unwrap();
        }
        let nonce = berth::storage::new_nonce();
        match a.commit_upload(id, repo, &wrong, &nonce).await {
            Err(UploadError::DigestMismatch { actual, .. }) => {
                assert_eq!(actual, digest_of(&data))
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            b.uploads().status(id, repo).await,
            Err(UploadError::Unknown)
        ));
    }

    // The whole blob in the PUT: streamed towards the blob's key, never completed.
    let id = a.uploads().start(repo).await.unwrap();
    let nonce = berth::storage::new_nonce();
    let r = b
        .commit_upload_stream(
            id,
            repo,
            None,
            Some(data.len() as u64),
            body_of(&data),
            &wrong,
            &nonce,
        )
        .await;
    assert!(
        matches!(r, Err(UploadError::DigestMismatch { .. })),
        "{r:?}"
    );
    assert!(matches!(
        a.uploads().status(id, repo).await,
        Err(UploadError::Unknown)
    ));

    assert_eq!(garage.keys(prefix, "").await, Vec::<String>::new());
}

/// A misbehaving client's two PATCHes at the same offset, on two replicas
/// at once: the session ends up describing one of them, consistently, so a
/// blob is stored only with the bytes its digest names.
#[tokio::test]
async fn racing_patches_never_store_a_blob_that_disagrees_with_its_digest() {
    let garage = Garage::start();
    let prefix = "race";
    let (_a_dir, a) = garage.replica(prefix);
    let (_b_dir, b) = garage.replica(prefix);
    let repo = "team/app";
    let head = pattern(100_003, 9);
    let mut stored = 0;
    for round in 0..6u32 {
        let ours = pattern(1024 * 1024 + 5, 2 * round);
        let theirs = pattern(1024 * 1024 + 5, 2 * round + 1);
        let id = a.uploads().start(repo).await.unwrap();
        a.uploads()
            .append(id, repo, None, None, body_of(&head))
            .await
            .unwrap();
        // Both requests have read the session before either sends a byte.
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let gated = |bytes: Vec<u8>| {
            let barrier = barrier.clone();
            futures_util::stream::once(async move {
                barrier.wait().await;
                body_of(&bytes)
            })
            .flatten()
            .boxed()
        };
        let at = Some(head.len() as u64);
        let (x, y) = tokio::join!(
            a.uploads().append(id, repo, at, None, gated(ours.clone())),
            b.uploads()
                .append(id, repo, at, None, gated(theirs.clone())),
        );
        x.unwrap();
        y.unwrap();
        let expected_tail = if round % 2 == 0 { &ours } else { &theirs };
        let expected = digest_of(&[head.clone(), expected_tail.clone()].concat());
        let nonce = berth::storage::new_nonce();
        let committer = if round % 3 == 0 { &a } else { &b };
        match committer.commit_upload(id, repo, &expected, &nonce).await {
            Ok(_) => {
                stored += 1;
                let blob = read_blob(&a, &expected, &nonce).await;
                assert_eq!(digest_of(&blob), expected);
            }
            Err(UploadError::DigestMismatch { actual, .. }) => {
                let other = if round % 2 == 0 { &theirs } else { &ours };
                assert_eq!(actual, digest_of(&[head.clone(), other.clone()].concat()));
            }
            Err(e) => panic!("{e}"),
        }
        // The session is gone; the losing PATCH's part, which it never
        // named, is an orphan left to expiry.
        let left = garage.keys(prefix, "uploads").await;
        assert!(
            left.len() <= 1 && left.iter().all(|k| k.contains("/part-")),
            "{left:?}"
        );
        if let [orphan] = left.as_slice() {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert_eq!(
                a.uploads().expire(Duration::from_secs(1)).await.unwrap(),
                1,
                "{orphan}"
            );
            assert!(garage.keys(prefix, "uploads").await.is_empty());
        }
    }
    assert_eq!(garage.keys(prefix, "blobs").await.len(), stored);
}

/// Expiry removes an abandoned session's objects (and leftovers of one
/// that ended without them), not a session in use.
#[tokio::test]
async fn expiry_removes_abandoned_remote_sessions() {
    let garage = Garage::start();
    let prefix = "expiry";
    let (_a_dir, a) = garage.replica(prefix);
    let (_b_dir, b) = garage.replica(prefix);
    let repo = "team/abandoned";
    let id = a.uploads().start(repo).await.unwrap();
    a.uploads()
        .append(id, repo, None, None, body_of(&pattern(1000, 1)))
        .await
        .unwrap();
    assert_eq!(garage.keys(prefix, "uploads").await.len(), 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fresh = a.uploads().start("team/fresh").await.unwrap();

    // Another replica expires it: sessions untouched for a second.
    assert_eq!(b.uploads().expire(Duration::from_secs(1)).await.unwrap(), 1);
    assert!(matches!(
        a.uploads().status(id, repo).await,
        Err(UploadError::Unknown)
    ));
    assert_eq!(
        garage.keys(prefix, "uploads").await,
        vec![format!("uploads/{fresh}/session")]
    );
    let uploading = a.repositories_uploading().await.unwrap();
    assert!(!uploading.contains(repo) && uploading.contains("team/fresh"));
    assert_eq!(
        a.uploads().status(fresh, "team/fresh").await.unwrap().size,
        0
    );
}

/// A chunked upload whose server restarts between PATCHes with an empty
/// local storage directory completes: nothing of a session is on the
/// replica's disk (the metadata database, not shared yet, stays).
#[tokio::test]
async fn an_upload_survives_a_restart_on_an_empty_disk() {
    let garage = Garage::start();
    let mut server = common::Server::start_with_env(&[], &garage.server_env("restart", &[]));
    let mut api = Api::new(server.url());
    let first = pattern(6 * 1024 * 1024 + 3, 4);
    let second = pattern(200_001, 5);
    let whole = [first.clone(), second.clone()].concat();
    let digest = sha256(&whole);

    let location = api.start_upload("restart/app").await;
    let location = api.patch_chunk(&location, 0, &first).await;

    server.kill_and_restart_after(|data| {
        std::fs::remove_dir_all(data.join("storage")).unwrap();
    });
    api = Api::new(server.url()); // the old connections died with the process
    let r = api.get(&location).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header_of(&r, "range"),
        Some(format!("0-{}", first.len() - 1).as_str())
    );
    let location = api.patch_chunk(&location, first.len(), &second).await;

    server.kill_and_restart_after(|data| {
        std::fs::remove_dir_all(data.join("storage")).unwrap();
    });
    api = Api::new(server.url()); // the old connections died with the process
    api.finish_upload(&location, &digest).await;
    let r = api.get(&format!("/v2/restart/app/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), &whole[..]);
    assert!(garage.keys("restart", "uploads").await.is_empty());
    let check = server.check().await;
    assert_eq!(check["ok"], true, "{check:#}");
}
