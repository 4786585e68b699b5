//! Durable events against a real server: every answered pull and every
//! acknowledged push is in the audit log, exactly once, even when the server
//! is killed with SIGKILL under load; the workers report their state.

mod common;
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;

/// The audit entries matching `query`, every page.
async fn audit(server: &common::Server, query: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = server
            .admin(
                Method::GET,
                &format!("/api/v1/audit-logs?limit=500&{query}&cursor={cursor}"),
                json!(null),
            )
            .await;
        entries.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return entries,
        }
    }
}

/// Pulls counted in the audit log for `resource`.
async fn audited_pulls(server: &common::Server, resource: &str) -> u64 {
    audit(server, "action=pull")
        .await
        .iter()
        .filter(|e| e["resource"] == resource)
        .map(|e| e["count"].as_u64().unwrap())
        .sum()
}

/// Waits until `read` gives `expected` (the journal and the audit log are
/// written within a second or two), and returns what it last gave.
async fn settles<F, Fut>(expected: u64, read: F) -> u64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = read().await;
        if got == expected || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// 32 clients pull one image by tag and by digest while another pushes
/// tags; the server is killed with SIGKILL the moment the last answer
/// arrives. After the restart, the audit log counts exactly the pulls that
/// were answered (none lost, none twice), the pull statistics agree, and
/// every acknowledged push has its entry.
#[tokio::test]
async fn no_answered_pull_or_acknowledged_push_is_lost_to_sigkill() {
    let mut server = common::Server::start();
    let api = Api::new(server.url());
    let (manifest, digest) = api.push_image("load/app", "v1", b"pulled").await;
    let answered_by_tag = Arc::new(AtomicU64::new(0));
    let answered_by_digest = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(3);
    let mut pullers = Vec::new();
    for i in 0..32 {
        let (api, digest) = (Api::new(server.url()), digest.clone());
        let (by_tag, by_digest) = (answered_by_tag.clone(), answered_by_digest.clone());
        pullers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let (path, counter) = if i % 4 == 0 {
                    (format!("/v2/load/app/manifests/{digest}"), &by_digest)
                } else {
                    ("/v2/load/app/manifests/v1".to_string(), &by_tag)
                };
                if api.get(&path).await.status() == StatusCode::OK {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let pusher = {
        let api = Api::new(server.url());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while Instant::now() < until {
                let tag = format!("p{n}");
                let r = api
                    .put_manifest("load/app", &tag, OCI_MANIFEST, &manifest)
                    .await;
                if r.status() == StatusCode::CREATED {
                    acknowledged.push(tag);
                }
                n += 1;
            }
            acknowledged
        })
    };
    for p in pullers {
        p.await.unwrap();
    }
    let pushed = pusher.await.unwrap();
    server.kill_and_restart();

    let (by_tag, by_digest) = (
        answered_by_tag.load(Ordering::SeqCst),
        answered_by_digest.load(Ordering::SeqCst),
    );
    assert!(by_tag > 1000 && by_digest > 100, "{by_tag} {by_digest}");
    let tag_resource = "load/app:v1".to_string();
    let digest_resource = format!("load/app@{digest}");
    let counted = settles(by_tag, || audited_pulls(&server, &tag_resource)).await;
    assert_eq!(counted, by_tag, "pulls by tag: answered vs audited");
    let counted = settles(by_digest, || audited_pulls(&server, &digest_resource)).await;
    assert_eq!(counted, by_digest, "pulls by digest: answered vs audited");
    // The statistics come from the same journal.
    let artifacts = server
        .admin(
            Method::GET,
            "/api/v1/repositories/load%2Fapp/artifacts",
            json!(null),
        )
        .await;
    let pulled = artifacts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["digest"] == digest.as_str())
        .unwrap()["pull_count"]
        .as_u64()
        .unwrap();
    assert_eq!(pulled, by_tag + by_digest);
    // Pulls are aggregated: a handful of entries, not one per pull.
    let entries = audit(&server, "action=pull").await.len();
    assert!(entries <= 8, "{entries} entries for {by_tag} pulls");
    // Every acknowledged push is audited.
    assert!(!pushed.is_empty());
    let pushes: Vec<String> = audit(&server, "action=push")
        .await
        .iter()
        .map(|e| e["resource"].as_str().unwrap().to_string())
        .collect();
    for tag in &pushed {
        assert!(
            pushes.contains(&format!("load/app:{tag}")),
            "push of {tag} acknowledged but not audited"
        );
    }
}

/// Each background job is a worker the status API lists with its state,
/// and a garbage-collection pass asked for through the API is run by the
/// GC worker.
#[tokio::test]
async fn workers_report_their_state() {
    let server = common::Server::start_secured();
    let workers = server
        .admin(Method::GET, "/api/v1/system/workers", json!(null))
        .await;
    let names: Vec<&str> = workers
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    for job in [
        "journal",
        "audit-log",
        "gc",
        "retention",
        "pruning",
        "upload-expiry",
    ] {
        assert!(names.contains(&job), "{job} missing from {names:?}");
    }
    let gc_runs = |w: &Value| {
        w.as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "gc")
            .unwrap()["runs"]
            .as_u64()
            .unwrap()
    };
    let before = gc_runs(&workers);
    let started = server
        .admin(Method::POST, "/api/v1/system/gc", json!({"dry_run": true}))
        .await;
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = server
            .admin(Method::GET, "/api/v1/system/gc", json!(null))
            .await;
        let done = status["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str() && r["status"] == "finished");
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the requested pass never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let workers = server
        .admin(Method::GET, "/api/v1/system/workers", json!(null))
        .await;
    assert!(gc_runs(&workers) > before, "{workers}");
    for w in workers.as_array().unwrap() {
        assert_ne!(w["state"], "failing", "{w}");
        assert_ne!(w["state"], "stopped", "{w}");
    }
    // Only administrators see them.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/system/workers", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
