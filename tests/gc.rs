//! Online garbage collection against a real server: concurrent pushes, tag
//! moves, deletes, mounts and background GC passes on the same few blobs,
//! then a check that nothing referenced is missing and nothing unreferenced
//! is left (database rows and files on disk); and a SIGKILL in the middle of
//! passes. GC runs from the server's background loop every second, with
//! one-second delays (BERTH_GC_* variables).

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{header, StatusCode};
use sqlx::AnyPool;
use sqlx::Row;
use support::*;

const GC_ENV: [(&str, &str); 3] = [
    ("BERTH_GC_INTERVAL_SECS", "1"),
    ("BERTH_GC_GRACE_SECS", "1"),
    ("BERTH_GC_UNTAGGED_DELAY_SECS", "1"),
];

const REPOS: [&str; 3] = ["gc/one", "gc/two", "gc/three"];
const TAGS: [&str; 4] = ["a", "b", "c", "d"];

/// xorshift64*: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The few blobs every task pushes, so pushes, GC and deletes contend on them.
fn blob_pool() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut pool: Vec<Vec<u8>> = (0..14)
        .map(|i| {
            let len = 64 + rng.below(4000);
            (0..len)
                .map(|j| (rng.next() as u8) ^ (i as u8) ^ (j as u8))
                .collect()
        })
        .collect();
    // One above the small-blob limit: the upload-session path.
    pool.push((0..1_200_000u32).map(|i| (i % 251) as u8).collect());
    pool
}

fn server_error(status: StatusCode, what: &str, body: &str) -> ! {
    panic!("{what}: {status} {body}")
}

/// Pushes a blob unless a HEAD says the repository has it (as clients do).
async fn ensure_blob(api: &Api, rng: &mut Rng, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    if rng.below(2) == 0 {
        let r = api.head(&format!("/v2/{repo}/blobs/{digest}")).await;
        if r.status() == StatusCode::OK {
            return digest;
        }
    }
    api.push_blob(repo, bytes).await
}

/// Pushes an image of pool blobs; returns its digest and size, or None if the
/// registry refused it because GC took a blob link between the blob push and
/// the manifest (possible with a one-second grace period under load).
async fn push_image(
    api: &Api,
    rng: &mut Rng,
    pool: &[Vec<u8>],
    repo: &str,
    reference: Option<&str>,
) -> Option<(String, usize)> {
    let config = rng.pick(pool).clone();
    let layers: Vec<Vec<u8>> = (0..1 + rng.below(2))
        .map(|_| rng.pick(pool).clone())
        .collect();
    let config_digest = ensure_blob(api, rng, repo, &config).await;
    let mut layer_refs = Vec::new();
    for l in &layers {
        layer_refs.push((ensure_blob(api, rng, repo, l).await, l.len()));
    }
    let refs: Vec<(&str, usize)> = layer_refs.iter().map(|(d, n)| (d.as_str(), *n)).collect();
    let manifest = image_manifest(&config_digest, config.len(), &refs, None, None);
    let digest = sha256(manifest.as_bytes());
    let reference = reference.unwrap_or(&digest).to_string();
    let r = api
        .put_manifest(repo, &reference, OCI_MANIFEST, &manifest)
        .await;
    match r.status() {
        StatusCode::CREATED => Some((digest, manifest.len())),
        StatusCode::BAD_REQUEST => {
            let body = r.text().await.unwrap();
            assert!(body.contains("MANIFEST_BLOB_UNKNOWN"), "{body}");
            None
        }
        s => server_error(s, "manifest push", &r.text().await.unwrap()),
    }
}

/// Pulls a manifest and everything it references; every byte received must
/// match its digest. With `strict`, everything must be there.
async fn pull_verify(api: &Api, repo: &str, reference: &str, strict: bool) {
    let r = api
        .http
        .get(api.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header(header::ACCEPT, format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    match r.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND if !strict => return,
        s => server_error(
            s,
            &format!("GET manifest {repo}:{reference}"),
            &r.text().await.unwrap(),
        ),
    }
    let bytes = r.bytes().await.unwrap();
    if reference.starts_with("sha256:") {
        assert_eq!(sha256(&bytes), reference);
    }
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = Vec::new();
    if let Some(c) = doc.get("config") {
        blobs.push(c["digest"].as_str().unwrap().to_string());
    }
    for l in doc["layers"].as_array().into_iter().flatten() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in blobs {
        let r = api.get(&format!("/v2/{repo}/blobs/{d}")).await;
        match r.status() {
            StatusCode::OK => assert_eq!(sha256(&r.bytes().await.unwrap()), d, "pulled bytes"),
            StatusCode::NOT_FOUND if !strict => {}
            s => server_error(s, &format!("GET blob {repo}@{d}"), &r.text().await.unwrap()),
        }
    }
    for m in doc["manifests"].as_array().into_iter().flatten() {
        Box::pin(pull_verify(
            api,
            repo,
            m["digest"].as_str().unwrap(),
            strict,
        ))
        .await;
    }
}

async fn delete_expect(api: &Api, path: &str, allowed: &[StatusCode]) {
    let r = api.delete(path).await;
    if !allowed.contains(&r.status()) {
        server_error(
            r.status(),
            &format!("DELETE {path}"),
            &r.text().await.unwrap(),
        );
    }
}

/// One client doing random operations.
async fn worker(api: Arc<Api>, pool: Arc<Vec<Vec<u8>>>, seed: u64, ops: usize) -> usize {
    let mut rng = Rng(seed);
    let mut refused = 0;
    for _ in 0..ops {
        let repo = *rng.pick(&REPOS);
        let tag = *rng.pick(&TAGS);
        match rng.below(100) {
            // Push an image, tagged (often moving a tag) or untagged.
            0..=39 => {
                let reference = (rng.below(4) != 0).then_some(tag);
                refused += push_image(&api, &mut rng, &pool, repo, reference)
                    .await
                    .is_none() as usize;
            }
            // An index of two images pushed by digest.
            40..=47 => {
                let a = push_image(&api, &mut rng, &pool, repo, None).await;
                let b = push_image(&api, &mut rng, &pool, repo, None).await;
                let (Some(a), Some(b)) = (a, b) else {
                    refused += 1;
                    continue;
                };
                let index = index_manifest(OCI_INDEX, &[(&a.0, a.1), (&b.0, b.1)]);
                let r = api.put_manifest(repo, tag, OCI_INDEX, &index).await;
                match r.status() {
                    StatusCode::CREATED => {}
                    StatusCode::BAD_REQUEST => refused += 1, // a child collected meanwhile
                    s => server_error(s, "index push", &r.text().await.unwrap()),
                }
            }
            48..=57 => {
                delete_expect(
                    &api,
                    &format!("/v2/{repo}/manifests/{tag}"),
                    &[StatusCode::ACCEPTED, StatusCode::NOT_FOUND],
                )
                .await
            }
            // Delete a manifest by digest (refused while an index lists it).
            58..=65 => {
                let r = api
                    .http
                    .head(api.url(&format!("/v2/{repo}/manifests/{tag}")))
                    .header(header::ACCEPT, format!("{OCI_MANIFEST}, {OCI_INDEX}"))
                    .send()
                    .await
                    .unwrap();
                if let Some(d) = header_of(&r, "docker-content-digest") {
                    delete_expect(
                        &api,
                        &format!("/v2/{repo}/manifests/{d}"),
                        &[
                            StatusCode::ACCEPTED,
                            StatusCode::NOT_FOUND,
                            StatusCode::CONFLICT,
                        ],
                    )
                    .await;
                }
            }
            // Mount a pool blob from another repository; push it if that fails.
            66..=77 => {
                let bytes = rng.pick(&pool).clone();
                let from = *rng.pick(&REPOS);
                let d = sha256(&bytes);
                let r = api
                    .http
                    .post(api.url(&format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}")))
                    .send()
                    .await
                    .unwrap();
                match r.status() {
                    StatusCode::CREATED => {}
                    StatusCode::ACCEPTED => {
                        // Not mounted: finish the session it opened, so no
                        // session is left in progress (it would hold GC back).
                        let location = location(&r);
                        let r = api
                            .http
                            .put(api.url(&with_query(&location, &format!("digest={d}"))))
                            .body(bytes)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), StatusCode::CREATED);
                    }
                    s => server_error(s, "mount", &r.text().await.unwrap()),
                }
            }
            _ => pull_verify(&api, repo, tag, false).await,
        }
    }
    refused
}

/// What the store holds, read from its database and its directory.
struct Snapshot {
    tags: Vec<(String, String, String)>,
    repo_manifests: BTreeSet<(String, String)>,
    repo_blobs: BTreeSet<(String, String)>,
    children: HashMap<String, Vec<String>>,
    manifest_blobs: HashMap<String, Vec<String>>,
    manifests: BTreeSet<String>,
    /// digest -> (nonce, doomed or deleting)
    blobs: BTreeMap<String, (String, bool)>,
    /// "<hex>.<nonce>" of every blob file
    files: BTreeSet<String>,
    uploads: Vec<String>,
}

async fn snapshot(db: &AnyPool, server: &common::Server) -> Snapshot {
    let pairs = |sql: &'static str| async move {
        sqlx::query(sql)
            .fetch_all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect::<Vec<_>>()
    };
    let group = |rows: Vec<(String, String)>| {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in rows {
            m.entry(k).or_default().push(v);
        }
        m
    };
    let tags = sqlx::query("SELECT repository, name, digest FROM tags")
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let blobs = sqlx::query(
        "SELECT digest, nonce, CASE WHEN doomed_at IS NOT NULL OR deleting_at IS NOT NULL THEN 1 ELSE 0 END FROM blobs",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), (r.get(1), r.get::<i64, _>(2) != 0)))
    .collect();
    let files = server.stored_blob_names().await;
    let uploads = server.stored_upload_sessions().await.into_iter().collect();
    Snapshot {
        tags,
        repo_manifests: pairs("SELECT repository, digest FROM repository_manifests")
            .await
            .into_iter()
            .collect(),
        repo_blobs: pairs("SELECT repository, digest FROM repository_blobs")
            .await
            .into_iter()
            .collect(),
        children: group(pairs("SELECT manifest, child FROM manifest_children").await),
        manifest_blobs: group(pairs("SELECT manifest, blob FROM manifest_blobs").await),
        manifests: pairs("SELECT digest, media_type FROM manifests")
            .await
            .into_iter()
            .map(|p| p.0)
            .collect(),
        blobs,
        files,
        uploads,
    }
}

/// Checks that what is referenced is complete (always), and, with
/// `collected`, that nothing else is left: rows and files.
fn check(s: &Snapshot, collected: bool) -> Result<(), String> {
    // Kept: tagged manifests and, transitively, the children of kept indexes.
    let mut kept: BTreeSet<(String, String)> = BTreeSet::new();
    let mut todo: Vec<(String, String)> = s
        .tags
        .iter()
        .map(|(r, _, d)| (r.clone(), d.clone()))
        .collect();
    while let Some((repo, d)) = todo.pop() {
        if !kept.insert((repo.clone(), d.clone())) {
            continue;
        }
        for c in s.children.get(&d).into_iter().flatten() {
            todo.push((repo.clone(), c.clone()));
        }
    }
    let mut needed_links = BTreeSet::new();
    for (repo, d) in &kept {
        if !s.repo_manifests.contains(&(repo.clone(), d.clone())) || !s.manifests.contains(d) {
            return Err(format!("kept manifest {repo}@{d} is missing"));
        }
        for b in s.manifest_blobs.get(d).into_iter().flatten() {
            needed_links.insert((repo.clone(), b.clone()));
        }
    }
    for (repo, b) in &needed_links {
        if !s.repo_blobs.contains(&(repo.clone(), b.clone())) {
            return Err(format!("blob {b} referenced in {repo} is not linked"));
        }
    }
    for (_, b) in &s.repo_blobs {
        let Some((nonce, doomed)) = s.blobs.get(b) else {
            return Err(format!("linked blob {b} has no row"));
        };
        if *doomed {
            return Err(format!("linked blob {b} is doomed"));
        }
        let file = format!("{}.{nonce}", &b["sha256:".len()..]);
        if !s.files.contains(&file) {
            return Err(format!("linked blob {b} has no file {file}"));
        }
    }
    if !collected {
        return Ok(());
    }
    let extra = |what: &str, n: usize| Err(format!("{n} unreferenced {what} left"));
    let extra_manifests = s.repo_manifests.difference(&kept).count();
    if extra_manifests > 0 {
        return extra("repository manifests", extra_manifests);
    }
    let extra_links = s.repo_blobs.difference(&needed_links).count();
    if extra_links > 0 {
        return extra("blob links", extra_links);
    }
    let held: BTreeSet<&String> = kept.iter().map(|(_, d)| d).collect();
    if s.manifests.len() != held.len() {
        return extra("manifest documents", s.manifests.len() - held.len());
    }
    let linked: BTreeSet<&String> = s.repo_blobs.iter().map(|(_, b)| b).collect();
    if s.blobs.len() != linked.len() {
        return extra("blob rows", s.blobs.len() - linked.len());
    }
    if s.files.len() != s.blobs.len() {
        return Err(format!(
            "{} files for {} blobs: {:?}",
            s.files.len(),
            s.blobs.len(),
            s.files
        ));
    }
    if !s.uploads.is_empty() {
        return Err(format!("uploads left: {:?}", s.uploads));
    }
    Ok(())
}

/// The server's own consistency check: blob files match their rows, and
/// every project's usage counters, maintained by each push, delete and GC
/// removal, equal a recount from the manifest documents.
async fn assert_usage_counted(server: &common::Server) {
    let check = server.check().await;
    assert_eq!(check["ok"], true, "{check:#}");
    let projects = check["projects"].as_array().unwrap();
    assert!(
        projects.iter().any(|p| p["usage_bytes"].as_i64() > Some(0)),
        "{check:#}"
    );
}

/// Waits until GC has collected everything unreferenced.
async fn converge(db: &AnyPool, server: &common::Server, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = snapshot(db, server).await;
        check(&s, false).unwrap();
        match check(&s, true) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("GC did not converge: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Every tag's manifest, and everything it references, pulls complete.
async fn pull_everything(api: &Api, db: &AnyPool) {
    let tags = sqlx::query("SELECT repository, name FROM tags")
        .fetch_all(db)
        .await
        .unwrap();
    for t in tags {
        pull_verify(api, t.get::<&str, _>(0), t.get::<&str, _>(1), true).await;
    }
}

/// Waits until the restarted server answers HTTP (not only TCP connects).
async fn wait_http(api: &Api, server: &mut common::Server) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = api.http.get(api.url("/v2/")).send().await {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        let exited = server.child_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(
            exited.is_none(),
            "the restarted server exited: {exited:?}\n{}",
            server.log()
        );
        assert!(
            Instant::now() < deadline,
            "the restarted server does not answer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn runs(db: &AnyPool) -> Vec<(String, String)> {
    sqlx::query("SELECT id, status FROM gc_runs ORDER BY started_at")
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_moves_deletes_mounts_and_gc_passes_keep_the_store_whole() {
    let server = common::Server::start_with_env(&[], &GC_ENV);
    let api = Arc::new(Api::new(server.url()));
    let db = server.db().await;
    let pool = Arc::new(blob_pool());
    let started = Instant::now();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let workers: Vec<_> = (0..8u64)
        .map(|i| {
            tokio::spawn(worker(
                api.clone(),
                pool.clone(),
                seed.wrapping_mul(i + 1) | 1,
                500,
            ))
        })
        .collect();
    let mut refused = 0;
    for w in workers {
        refused += w.await.unwrap();
    }
    eprintln!(
        "4,000 operations in {:?}; {refused} manifest pushes refused for a collected link",
        started.elapsed()
    );
    let finished = runs(&db).await.iter().filter(|r| r.1 == "finished").count();
    assert!(finished >= 3, "GC passes ran during the test: {finished}");
    let removed: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(manifests_removed + links_removed + blobs_removed), 0) AS BIGINT) FROM gc_runs",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(removed > 0, "GC removed things while the clients worked");
    // Referenced things were never lost; now GC catches up with the rest.
    check(&snapshot(&db, &server).await, false).unwrap();
    converge(&db, &server, Duration::from_secs(30)).await;
    pull_everything(&api, &db).await;
    assert_usage_counted(&server).await;
    assert!(
        !server.log().contains("ERROR"),
        "server logged errors:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_gc_passes_loses_nothing_and_the_next_pass_finishes() {
    let mut server = common::Server::start_with_env(&[], &GC_ENV);
    let api = Arc::new(Api::new(server.url()));
    let data = server.data_dir();
    let db = server.db().await;
    // Many distinct images, so passes have real work to be killed in.
    let images = 240;
    let pushes: Vec<_> = (0..8)
        .map(|w| {
            let api = api.clone();
            tokio::spawn(async move {
                for i in (w..images).step_by(8) {
                    let layer = format!("layer of image {i}").repeat(20);
                    api.push_image("kill/me", &format!("t{i}"), layer.as_bytes())
                        .await;
                }
            })
        })
        .collect();
    for p in pushes {
        p.await.unwrap();
    }
    // A crash leftover: a blob file no row names, which the next process sweeps.
    let orphan_dir = data.join("storage/blobs/sha256/ff");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    std::fs::write(
        orphan_dir.join(format!("{}.0badc0de", "f".repeat(64))),
        b"crash",
    )
    .unwrap();

    // Three rounds: untag a quarter of the images (sixty manifests, a hundred and twenty
    // links and blobs to collect), then kill the server as soon as a
    // pass has removed something.
    let mut killed: Vec<String> = Vec::new();
    for round in 1..4 {
        for i in (0..images).filter(|i| i % 4 == round) {
            delete_expect(
                &api,
                &format!("/v2/kill/me/manifests/t{i}"),
                &[StatusCode::ACCEPTED],
            )
            .await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let busy: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM gc_runs WHERE status = 'running'
                   AND manifests_removed + links_removed + blobs_removed > 0",
            )
            .fetch_all(&db)
            .await
            .unwrap();
            if let Some(id) = busy.into_iter().find(|id| !killed.contains(id)) {
                server.kill_and_restart();
                eprintln!("round {round}: killed during pass {id}");
                killed.push(id);
                wait_http(&api, &mut server).await;
                // Nothing referenced is missing after the restart.
                check(&snapshot(&db, &server).await, false).unwrap();
                pull_everything(&api, &db).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert!(!killed.is_empty(), "never caught a pass at work");
    converge(&db, &server, Duration::from_secs(30)).await;
    pull_everything(&api, &db).await;
    assert_usage_counted(&server).await;
    let runs = runs(&db).await;
    assert!(
        runs.iter().filter(|r| r.1 == "running").count() <= killed.len() + 1,
        "runs: {runs:?}"
    );
    assert!(runs
        .last()
        .is_some_and(|r| r.1 == "finished" || r.1 == "running"));
    // A new pass marks the killed ones interrupted once their heartbeat is stale
    // (that takes 30 s; the API reports them so already).
    let tags: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tags")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(tags, images as i64 / 4);
}
