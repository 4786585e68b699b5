//! Several replicas of one installation: separate processes on their own
//! loopback ports sharing one PostgreSQL database and one S3 bucket prefix,
//! as behind a load balancer. Runs in the PostgreSQL + S3 pass of
//! `scripts/test` (BERTH_TEST_DATABASE_URL and BERTH_TEST_S3_ENDPOINT set);
//! says so and does nothing without them.

mod common;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::*;

const GC_ENV: [(&str, &str); 3] = [
    ("BERTH_GC_INTERVAL_SECS", "3600"),
    ("BERTH_GC_GRACE_SECS", "1"),
    ("BERTH_GC_UNTAGGED_DELAY_SECS", "1"),
];

/// `n` replicas of one installation, or None outside the shared-backend pass.
fn replicas(n: usize, extra: &[(&str, &str)]) -> Option<Vec<common::Server>> {
    if std::env::var_os("BERTH_TEST_S3_ENDPOINT").is_none() {
        eprintln!("replicas: skipped here; they run in scripts/test's PostgreSQL + S3 pass");
        return None;
    }
    let database = common::new_test_database()?;
    let prefix = format!("replicas-{}", uuid::Uuid::new_v4().simple());
    let mut env: Vec<(&str, &str)> = vec![
        ("BERTH_DATABASE_URL", &database),
        ("BERTH_S3_PREFIX", &prefix),
    ];
    env.extend_from_slice(extra);
    Some(
        (0..n)
            .map(|_| common::Server::start_with_env(&[], &env))
            .collect(),
    )
}

fn chunks(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.chunks(data.len().div_ceil(n)).collect()
}

#[tokio::test]
async fn a_chunked_upload_continues_on_other_replicas() {
    let Some(servers) = replicas(3, &[]) else {
        return;
    };
    let apis: Vec<Api> = servers.iter().map(|s| Api::new(s.url())).collect();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let digest = sha256(&data);
    let parts = chunks(&data, 3);
    // POST on the first, a chunk on each, the status and the PUT elsewhere.
    let mut location = apis[0].start_upload("spread/app").await;
    let mut offset = 0;
    for (i, part) in parts.iter().enumerate() {
        location = apis[(i + 1) % 3].patch_chunk(&location, offset, part).await;
        offset += part.len();
    }
    let status = apis[2].get(&location).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header_of(&status, "range"),
        Some(format!("0-{}", data.len() - 1).as_str())
    );
    apis[2].finish_upload(&location, &digest).await;
    for api in &apis {
        let r = api.get(&format!("/v2/spread/app/blobs/{digest}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
    }
}

#[tokio::test]
async fn a_replica_killed_mid_upload_leaves_the_session_to_the_others() {
    let Some(mut servers) = replicas(2, &[]) else {
        return;
    };
    let first = Api::new(servers[0].url());
    let second = Api::new(servers[1].url());
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let digest = sha256(&data);
    let parts = chunks(&data, 4);
    let mut location = first.start_upload("crash/app").await;
    location = first.patch_chunk(&location, 0, parts[0]).await;
    location = first.patch_chunk(&location, parts[0].len(), parts[1]).await;
    servers[0].kill();
    // The client retries against the other replica: asks where the upload
    // stands and goes on from there.
    let status = second.get(&location).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    let done = parts[0].len() + parts[1].len();
    assert_eq!(
        header_of(&status, "range"),
        Some(format!("0-{}", done - 1).as_str())
    );
    location = second.patch_chunk(&location, done, parts[2]).await;
    location = second
        .patch_chunk(&location, done + parts[2].len(), parts[3])
        .await;
    second.finish_upload(&location, &digest).await;
    let r = second.get(&format!("/v2/crash/app/blobs/{digest}")).await;
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
    let report = servers[1].check().await;
    assert_eq!(report["ok"], true, "{report}");
}

/// Two replicas push the same blob and the same tag at the same moment,
/// many times: every push succeeds, the blob is stored once, the tag names
/// one of the pushed manifests on every replica, and the store is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_racing_on_one_blob_and_one_tag_agree() {
    let Some(servers) = replicas(2, &[]) else {
        return;
    };
    let apis: Vec<Arc<Api>> = servers
        .iter()
        .map(|s| Arc::new(Api::new(s.url())))
        .collect();
    let layer: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    for round in 0..20 {
        let tasks: Vec<_> = apis
            .iter()
            .enumerate()
            .map(|(i, api)| {
                let (api, layer) = (api.clone(), layer.clone());
                tokio::spawn(async move {
                    // The same layer, a config of each replica's own: two
                    // manifests racing for one tag.
                    let config = format!(r#"{{"round":{round},"replica":{i}}}"#);
                    let config_digest = api.push_blob("race/app", config.as_bytes()).await;
                    let layer_digest = api.push_blob("race/app", &layer).await;
                    let manifest = image_manifest(
                        &config_digest,
                        config.len(),
                        &[(&layer_digest, layer.len())],
                        None,
                        None,
                    );
                    let r = api
                        .put_manifest("race/app", "latest", OCI_MANIFEST, &manifest)
                        .await;
                    assert_eq!(
                        r.status(),
                        StatusCode::CREATED,
                        "{}",
                        r.text().await.unwrap()
                    );
                    sha256(manifest.as_bytes())
                })
            })
            .collect();
        let mut pushed = Vec::new();
        for t in tasks {
            pushed.push(t.await.unwrap());
        }
        // Every replica resolves the tag to the same winner.
        let mut seen = Vec::new();
        for api in &apis {
            let r = api.head("/v2/race/app/manifests/latest").await;
            assert_eq!(r.status(), StatusCode::OK);
            seen.push(header_of(&r, "docker-content-digest").unwrap().to_string());
        }
        assert!(
            pushed.contains(&seen[0]),
            "round {round}: {seen:?} not in {pushed:?}"
        );
        assert!(
            seen.iter().all(|d| *d == seen[0]),
            "round {round}: replicas disagree: {seen:?}"
        );
    }
    let layer_digest = sha256(&layer);
    let hex = layer_digest.trim_start_matches("sha256:");
    let names = servers[0].stored_blob_names().await;
    let copies = names.iter().filter(|n| n.starts_with(hex)).count();
    let report = servers[0].check().await;
    assert_eq!(report["ok"], true, "{report}");
    for s in &servers {
        assert!(!s.log().contains("ERROR"), "{}", s.log());
    }
    // Racing writes of one blob each store an object; the push whose row
    // did not win deletes its surplus copy.
    assert_eq!(copies, 1, "objects for one blob: {names:?}");
}

/// A tag moved or a manifest deleted through one replica is seen by the
/// others at once, although they had it cached.
#[tokio::test]
async fn replicas_see_each_others_tag_moves_and_deletes() {
    let Some(servers) = replicas(2, &[]) else {
        return;
    };
    let a = Api::new(servers[0].url());
    let b = Api::new(servers[1].url());
    let (_, first) = a.push_image("moving/app", "v1", b"first layer").await;
    // Cached by b: resolution of the tag, tag list.
    for _ in 0..3 {
        let r = b.get("/v2/moving/app/manifests/v1").await;
        assert_eq!(header_of(&r, "docker-content-digest"), Some(first.as_str()));
        assert_eq!(
            b.get("/v2/moving/app/tags/list").await.status(),
            StatusCode::OK
        );
    }
    let (_, second) = a.push_image("moving/app", "v1", b"second layer").await;
    a.push_image("moving/app", "v2", b"third layer").await;
    let seen = |expected: String| {
        let b = &b;
        async move {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let r = b.get("/v2/moving/app/manifests/v1").await;
                let got = match r.status() {
                    StatusCode::OK => header_of(&r, "docker-content-digest").unwrap().to_string(),
                    s => s.to_string(),
                };
                if got == expected {
                    return Instant::now();
                }
                assert!(
                    Instant::now() < deadline,
                    "b still answers {got}, not {expected}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    seen(second.clone()).await;
    let tags: serde_json::Value = b
        .get("/v2/moving/app/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1", "v2"]));
    assert_eq!(
        a.delete(&format!("/v2/moving/app/manifests/{second}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    seen(StatusCode::NOT_FOUND.to_string()).await;
    assert_eq!(
        b.get(&format!("/v2/moving/app/manifests/{second}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// Garbage collection runs in one replica at a time; a replica killed in
/// the middle of a pass leaves it to another, and nothing referenced is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_gc_hands_the_pass_over() {
    let Some(mut servers) = replicas(2, &GC_ENV) else {
        return;
    };
    let a = Arc::new(Api::new(servers[0].url()));
    let b = Api::new(servers[1].url());
    // Kept: tagged images. Garbage: many images whose tags are deleted.
    let mut kept = Vec::new();
    for i in 0..10 {
        let layer = format!("kept layer {i}").repeat(50);
        kept.push((
            format!("t{i}"),
            a.push_image("keep/app", &format!("t{i}"), layer.as_bytes())
                .await
                .1,
        ));
    }
    let tasks: Vec<_> = (0..4)
        .map(|w| {
            let a = a.clone();
            tokio::spawn(async move {
                for i in (w..160).step_by(4) {
                    let layer = format!("garbage layer {i}").repeat(50);
                    a.push_image("junk/app", &format!("g{i}"), layer.as_bytes())
                        .await;
                    assert_eq!(
                        a.delete(&format!("/v2/junk/app/manifests/g{i}"))
                            .await
                            .status(),
                        StatusCode::ACCEPTED
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the delays
                                                           // Two passes asked for at once on both replicas never overlap.
    let (ra, rb) = tokio::join!(
        servers[0].admin_call(
            reqwest::Method::POST,
            "/api/v1/system/gc",
            serde_json::json!({})
        ),
        servers[1].admin_call(
            reqwest::Method::POST,
            "/api/v1/system/gc",
            serde_json::json!({})
        ),
    );
    assert_eq!(ra.status(), StatusCode::ACCEPTED);
    assert_eq!(rb.status(), StatusCode::ACCEPTED);
    // Kill the first replica as soon as a pass runs anywhere.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut running = false;
        for s in &servers {
            let status: serde_json::Value = s
                .admin(
                    reqwest::Method::GET,
                    "/api/v1/system/gc",
                    serde_json::Value::Null,
                )
                .await;
            running |= !status["running"].is_null();
        }
        if running {
            break;
        }
        assert!(Instant::now() < deadline, "no pass started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    servers[0].kill();
    // The second replica's pass (waiting for the lease, or running) ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let status: serde_json::Value = servers[1]
            .admin(
                reqwest::Method::GET,
                "/api/v1/system/gc",
                serde_json::Value::Null,
            )
            .await;
        let runs = status["runs"].as_array().cloned().unwrap_or_default();
        if status["running"].is_null() && runs.iter().any(|r| r["status"] == "finished") {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "no pass finished after the kill: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Passes never overlapped: each started after the previous one ended.
    let mut spans: Vec<(i64, i64)> = runs
        .iter()
        .filter(|r| r["status"] == "finished")
        .map(|r| {
            (
                r["started_at"].as_i64().unwrap(),
                r["finished_at"].as_i64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "overlapping passes: {spans:?}"
    );
    // Another pass finds the rest; everything kept still pulls.
    servers[1]
        .admin_call(
            reqwest::Method::POST,
            "/api/v1/system/gc",
            serde_json::json!({}),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (tag, digest) in &kept {
        let r = b.get(&format!("/v2/keep/app/manifests/{tag}")).await;
        assert_eq!(
            header_of(&r, "docker-content-digest"),
            Some(digest.as_str())
        );
        let manifest: serde_json::Value = r.json().await.unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            let d = layer["digest"].as_str().unwrap();
            let r = b.get(&format!("/v2/keep/app/blobs/{d}")).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(sha256(&r.bytes().await.unwrap()), d);
        }
    }
    let report = servers[1].check().await;
    assert_eq!(report["ok"], true, "{report}");
}

/// A password changed through one replica is refused by the others at once,
/// although they remember having checked it.
#[tokio::test]
async fn a_password_changed_on_one_replica_is_refused_by_the_others() {
    let Some(servers) = replicas(2, &[("BERTH_AUTH_MODE", "basic")]) else {
        return;
    };
    let created = servers[0]
        .admin_call(
            reqwest::Method::POST,
            "/api/v1/users",
            serde_json::json!({"name": "dev", "password": "first-password"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let old = Api::with_basic(servers[1].url(), "dev", "first-password");
    for _ in 0..3 {
        // Verified once, then answered from the replica's memory.
        assert_eq!(old.get("/v2/").await.status(), StatusCode::OK);
    }
    let changed = servers[0]
        .admin_call(
            reqwest::Method::PATCH,
            "/api/v1/users/dev",
            serde_json::json!({"password": "second-password"}),
        )
        .await;
    assert!(changed.status().is_success(), "{}", changed.status());
    let deadline = Instant::now() + Duration::from_secs(2);
    while old.get("/v2/").await.status() == StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the other replica still takes the old password"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let new = Api::with_basic(servers[1].url(), "dev", "second-password");
    assert_eq!(new.get("/v2/").await.status(), StatusCode::OK);
}

/// Failed logins count on every replica: five wrong passwords spread over
/// three replicas block the account on all of them (each counting only its
/// own would allow fifteen), and the right password then waits too.
#[tokio::test]
async fn failed_logins_spread_over_replicas_count_together() {
    let Some(servers) = replicas(3, &[("BERTH_AUTH_MODE", "basic")]) else {
        return;
    };
    let created = servers[0]
        .admin_call(
            reqwest::Method::POST,
            "/api/v1/users",
            serde_json::json!({"name": "dev", "password": "right-password"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    for i in 0..5 {
        let wrong = Api::with_basic(servers[i % 3].url(), "dev", "wrong-password");
        assert_eq!(wrong.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
    }
    for server in &servers {
        let right = Api::with_basic(server.url(), "dev", "right-password");
        let r = right.get("/v2/").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key("retry-after"));
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Blocked for a second after the fifth failure; then the right password
    // works on any replica and clears the account's record for all.
    let right = Api::with_basic(servers[2].url(), "dev", "right-password");
    assert_eq!(right.get("/v2/").await.status(), StatusCode::OK);
    let wrong = Api::with_basic(servers[1].url(), "dev", "wrong-password");
    assert_eq!(wrong.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
    let right = Api::with_basic(servers[0].url(), "dev", "right-password");
    assert_eq!(right.get("/v2/").await.status(), StatusCode::OK);
}

async fn digest_of(api: &Api, path: &str) -> String {
    let r = api.get(path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    header_of(&r, "docker-content-digest").unwrap().to_string()
}

/// PostgreSQL stopped under two replicas (as by a crash or a failover) and
/// started again. While it is down, writes answer 503 with the spec's error
/// body within seconds and `/readyz` says so; once it is back, both replicas
/// write and read again without a restart, and see each other's changes
/// again (each listens anew).
#[tokio::test]
async fn replicas_ride_out_a_postgresql_restart() {
    if std::env::var_os("BERTH_TEST_S3_ENDPOINT").is_none() {
        eprintln!("replicas: skipped here; they run in scripts/test's PostgreSQL + S3 pass");
        return;
    }
    // A cluster of its own: the shared one is not stopped under other tests.
    // Durable: the stop is a crash, which a cluster without fsync and
    // synchronous commit may answer by losing committed transactions.
    let cluster = common::postgres::Cluster::start(&["--durable"]);
    let database = cluster.database("restart");
    let prefix = format!("replicas-{}", uuid::Uuid::new_v4().simple());
    let env = [
        ("BERTH_DATABASE_URL", database.as_str()),
        ("BERTH_S3_PREFIX", prefix.as_str()),
    ];
    let servers: Vec<common::Server> = (0..2)
        .map(|_| common::Server::start_with_env(&[], &env))
        .collect();
    let (a, b) = (Api::new(servers[0].url()), Api::new(servers[1].url()));
    let (manifest, first) = a.push_image("team/app", "v1", b"first").await;
    assert_eq!(digest_of(&b, "/v2/team/app/manifests/v1").await, first);

    cluster.stop();
    for api in [&a, &b] {
        assert_eq!(
            api.get("/readyz").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let started = Instant::now();
    let r = a
        .put_manifest("team/app", "while-down", OCI_MANIFEST, &manifest)
        .await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "UNKNOWN").await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered after {:?}",
        started.elapsed()
    );

    cluster.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.get("/readyz").await.status() != StatusCode::OK
        || b.get("/readyz").await.status() != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "not ready after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, second) = a.push_image("team/app", "v2", b"second").await;
    assert_eq!(digest_of(&b, "/v2/team/app/manifests/v2").await, second);
    // Listening connections, one per replica.
    while cluster.count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'") < 2 {
        assert!(Instant::now() < deadline, "replicas do not listen again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // b caches v1 again; a moves it: b sees the move through its new LISTEN.
    assert_eq!(digest_of(&b, "/v2/team/app/manifests/v1").await, first);
    let second_manifest = b
        .get("/v2/team/app/manifests/v2")
        .await
        .text()
        .await
        .unwrap();
    let r = a
        .put_manifest("team/app", "v1", OCI_MANIFEST, &second_manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let moved = Instant::now() + Duration::from_secs(5);
    while digest_of(&b, "/v2/team/app/manifests/v1").await != second {
        assert!(Instant::now() < moved, "b still serves the old v1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The refused push left nothing; what was stored before is all there.
    assert_eq!(
        a.get("/v2/team/app/manifests/while-down").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        digest_of(&b, &format!("/v2/team/app/manifests/{first}")).await,
        first
    );
    assert_eq!(servers[0].check().await["ok"], true);
}

/// Pulls and pushes through three replicas: each replica journals its own,
/// one of them (the holder of the audit log's lease) consumes the shared
/// outbox, and the audit log counts every pull exactly once and has every
/// push, whichever replica answered it. One replica is killed with SIGKILL
/// right after its last answer: its journal is flushed when it starts again.
#[tokio::test]
async fn replicas_share_one_audit_log_and_lose_no_pull() {
    let Some(mut servers) = replicas(3, &[]) else {
        return;
    };
    let apis: Vec<Api> = servers.iter().map(|s| Api::new(s.url())).collect();
    let (manifest, digest) = apis[0].push_image("audited/app", "v1", b"shared").await;
    let mut pulls = 0u64;
    for round in 0..30 {
        for (i, api) in apis.iter().enumerate() {
            let r = api.get("/v2/audited/app/manifests/v1").await;
            assert_eq!(r.status(), StatusCode::OK);
            pulls += 1;
            if round % 10 == 0 {
                let tag = format!("r{round}-{i}");
                let r = api
                    .put_manifest("audited/app", &tag, OCI_MANIFEST, &manifest)
                    .await;
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }
    }
    servers[2].kill_and_restart();
    let log = || async {
        let page = servers[1]
            .admin(
                reqwest::Method::GET,
                "/api/v1/audit-logs?project=audited&limit=500",
                serde_json::json!(null),
            )
            .await;
        page["items"].as_array().unwrap().clone()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (counted, pushes) = loop {
        let entries = log().await;
        let counted: u64 = entries
            .iter()
            .filter(|e| e["action"] == "pull")
            .map(|e| e["count"].as_u64().unwrap())
            .sum();
        let pushes = entries.iter().filter(|e| e["action"] == "push").count();
        if (counted, pushes) == (pulls, 10) || Instant::now() > deadline {
            break (counted, pushes);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(counted, pulls, "every answered pull, once");
    assert_eq!(pushes, 10, "the first push and nine tagged ones");
    let r = apis[0].head("/v2/audited/app/manifests/v1").await;
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(digest.as_str())
    );
}

/// A small real layer: a Debian os-release, a dpkg status of one package
/// and a file that makes it distinct (gzip tar, from the system's tar).
fn package_layer(n: usize) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("berth-layer-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("var/lib/dpkg")).unwrap();
    std::fs::write(dir.join("etc/os-release"), "ID=debian\nVERSION_ID=\"12\"\n").unwrap();
    std::fs::write(
        dir.join("var/lib/dpkg/status"),
        format!("Package: app{n}\nStatus: install ok installed\nVersion: 1.{n}-1\n\n"),
    )
    .unwrap();
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["-czf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
    out.stdout
}

/// Images pushed through three scanning replicas are each scanned exactly
/// once, by whichever replica claimed it (claims are rows taken in a
/// SERIALIZABLE transaction), and every replica shows every result.
#[tokio::test]
async fn each_scan_runs_in_exactly_one_replica() {
    // At info, each replica logs the scans it ran.
    let env = [("BERTH_SCAN_WORKERS", "2"), ("BERTH_LOG", "info")];
    let Some(servers) = replicas(3, &env) else {
        return;
    };
    let apis: Vec<Api> = servers.iter().map(|s| Api::new(s.url())).collect();
    let mut digests = Vec::new();
    for n in 0..12 {
        let (_, digest) = apis[n % 3]
            .push_image("scanned/app", &format!("v{n}"), &package_layer(n))
            .await;
        digests.push(digest);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for (n, digest) in digests.iter().enumerate() {
        let path =
            format!("/api/v1/projects/scanned/repositories/app/artifacts/{digest}/vulnerabilities");
        let v = finished_scan(&servers[(n + 1) % 3], &path, deadline).await;
        assert_eq!(v["packages"], 1, "{v}");
    }
    let logs: Vec<String> = servers.iter().map(|s| s.log()).collect();
    for digest in &digests {
        let ran: usize = logs
            .iter()
            .map(|log| {
                log.lines()
                    .filter(|l| l.contains("scan ended") && l.contains(digest.as_str()))
                    .count()
            })
            .sum();
        assert_eq!(ran, 1, "{digest} scanned {ran} times");
    }
}

/// A replica killed in the middle of a scan leaves the scan claimed; once
/// the claim lapses (30 s without the heartbeat that renews it), the other
/// replica takes the scan over and finishes it. The image has 200 distinct
/// layers, each read from S3 and its inventory stored, so the scan is still
/// running when the replica that started it is killed.
#[tokio::test]
async fn a_scan_whose_replica_dies_is_finished_by_another() {
    let env = [("BERTH_SCAN_WORKERS", "1"), ("BERTH_LOG", "info")];
    let Some(mut servers) = replicas(2, &env) else {
        return;
    };
    let api = Api::new(servers[0].url());
    let repo = "taken-over/app";
    let mut layers = Vec::new();
    for n in 0..200 {
        let layer = package_layer(n);
        let digest = api.push_blob(repo, &layer).await;
        layers.push((digest, layer.len()));
    }
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = api.push_blob(repo, config).await;
    let refs: Vec<(&str, usize)> = layers.iter().map(|(d, s)| (d.as_str(), *s)).collect();
    let manifest = image_manifest(&config_digest, config.len(), &refs, None, None);
    let r = api.put_manifest(repo, "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let digest = sha256(manifest.as_bytes());

    // Kill whichever replica starts the scan, as soon as it has.
    let started = |log: &str| {
        log.lines()
            .any(|l| l.contains("scan started") && l.contains(digest.as_str()))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        if let Some(i) = (0..2).find(|&i| started(&servers[i].log())) {
            break i;
        }
        assert!(Instant::now() < deadline, "the scan never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    servers[running].kill();
    let killed_log = servers[running].log();
    assert!(
        !killed_log.contains("scan ended"),
        "the scan ended before its replica was killed: make it longer"
    );
    let survivor = &servers[1 - running];

    let path =
        format!("/api/v1/projects/taken-over/repositories/app/artifacts/{digest}/vulnerabilities");
    let killed_at = Instant::now();
    let v = finished_scan(survivor, &path, killed_at + Duration::from_secs(120)).await;
    // Each layer's dpkg status replaces the one below it.
    assert_eq!(v["packages"], 1, "{v}");
    // Taken over within a claim's length of the kill (30 s, renewed every
    // 10 s), give or take the rest of the scan.
    assert!(killed_at.elapsed() < Duration::from_secs(60));
    let log = survivor.log();
    let ended: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("scan ended") && l.contains(digest.as_str()))
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert!(ended[0].contains("finished"), "{}", ended[0]);
}

/// Polls an artifact's vulnerabilities at `path` on `server` until its scan
/// has finished, and returns them; 404 until the scan-on-push consumer has
/// queued the scan.
async fn finished_scan(
    server: &common::Server,
    path: &str,
    deadline: Instant,
) -> serde_json::Value {
    loop {
        let r = server
            .admin_call(reqwest::Method::GET, path, serde_json::json!(null))
            .await;
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        if v["status"] == "finished" {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} never scanned: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A rule added on one replica refuses on the others at once (sooner than
/// their 5 s cache of compiled rules would let it), and its removal there
/// is applied here likewise; a system-wide rule too.
#[tokio::test]
async fn a_rule_changed_on_one_replica_applies_on_the_others_at_once() {
    use reqwest::Method;
    use serde_json::json;
    let Some(servers) = replicas(2, &[("BERTH_AUTH_MODE", "basic")]) else {
        return;
    };
    servers[0]
        .admin(Method::POST, "/api/v1/projects", json!({"name": "prod"}))
        .await;
    let apis: Vec<Api> = servers
        .iter()
        .map(|s| Api::with_basic(s.url(), "admin", common::ADMIN_PASSWORD))
        .collect();
    apis[0]
        .push_image("prod/app", "latest", b"replicated")
        .await;
    // Each replica has the project's rules (none) compiled and cached.
    for api in &apis {
        let r = api.get("/v2/prod/app/manifests/latest").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let within = |what: &'static str| {
        let deadline = Instant::now() + Duration::from_secs(2);
        move || assert!(Instant::now() < deadline, "{what} not applied within 2 s")
    };

    servers[0]
        .admin(
            Method::POST,
            "/api/v1/projects/prod/rules",
            json!({"kind": "forbid-tags", "name": "no-latest", "tags": "latest", "on_pull": true}),
        )
        .await;
    let check = within("the rule added on the first replica");
    while apis[1].get("/v2/prod/app/manifests/latest").await.status() == StatusCode::OK {
        check();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = apis[1].get("/v2/prod/app/manifests/latest").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("rule 'no-latest'"));

    let removed = servers[1]
        .admin_call(
            Method::DELETE,
            "/api/v1/projects/prod/rules/no-latest",
            json!(null),
        )
        .await;
    assert!(removed.status().is_success(), "{}", removed.status());
    let check = within("the rule removed on the second replica");
    while apis[0].get("/v2/prod/app/manifests/latest").await.status() != StatusCode::OK {
        check();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A system-wide rule likewise.
    servers[1]
        .admin(
            Method::POST,
            "/api/v1/rules",
            json!({"kind": "forbid-tags", "name": "nowhere", "tags": "latest", "on_pull": true}),
        )
        .await;
    let check = within("the system-wide rule added on the second replica");
    while apis[0].get("/v2/prod/app/manifests/latest").await.status() == StatusCode::OK {
        check();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = apis[0].get("/v2/prod/app/manifests/latest").await;
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("rule 'nowhere' of the system"));
}
