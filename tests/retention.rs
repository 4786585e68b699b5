//! Retention policies against a real server: a dry run lists exactly what a
//! run removes, immutable tags stay, other repositories are untouched, and a
//! scheduled policy runs by itself. (Rule semantics on a fixed clock,
//! pull-based rules included, are unit tests in src/policy/retention.rs.)

mod common;
mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn retention_keeps_what_its_rules_keep() {
    let server = common::Server::start_secured();
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    server
        .admin(
            Method::POST,
            "/api/v1/projects/team/rules",
            json!({"kind": "immutable", "repositories": "app", "tags": "build-1"}),
        )
        .await;
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    for tag in ["build-1", "build-2", "build-3", "build-4", "v1.0"] {
        api.push_image("team/app", tag, tag.as_bytes()).await;
        // Distinct push times, in this order.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    api.push_image("team/lib", "x", b"lib").await;
    let policy = server.admin(Method::POST,
        "/api/v1/projects/team/retention-policies",
        json!({"rules": [{"repositories": "app", "tags": "build-*", "keep": {"latest_pushed": 2}}]}),
    )
    .await;
    let id = policy["id"].as_str().unwrap();
    let runs = format!("/api/v1/projects/team/retention-policies/{id}/runs");

    let dry = server
        .admin(Method::POST, &runs, json!({"dry_run": true}))
        .await;
    assert_eq!(dry["status"], "finished");
    assert_eq!(dry["removed"], json!(["team/app:build-2", "team/app:v1.0"]));
    assert_eq!(dry["protected"], json!(["team/app:build-1"]));
    assert_eq!(
        api.get("/v2/team/app/manifests/build-2").await.status(),
        StatusCode::OK,
        "a dry run removes nothing"
    );

    let real = server.admin(Method::POST, &runs, json!({})).await;
    assert_eq!(
        real["removed"], dry["removed"],
        "the dry run said exactly what the run removes"
    );
    assert_eq!(real["protected"], dry["protected"]);
    for (tag, status) in [
        ("build-1", 200),
        ("build-2", 404),
        ("build-3", 200),
        ("build-4", 200),
        ("v1.0", 404),
    ] {
        assert_eq!(
            api.get(&format!("/v2/team/app/manifests/{tag}"))
                .await
                .status()
                .as_u16(),
            status,
            "{tag}"
        );
    }
    assert_eq!(
        api.get("/v2/team/lib/manifests/x").await.status(),
        StatusCode::OK,
        "not governed"
    );
    let recorded = server.admin(Method::GET, &runs, json!(null)).await;
    assert_eq!(recorded.as_array().unwrap().len(), 2);
    assert_eq!(recorded[0]["dry_run"], false);
    assert_eq!(recorded[0]["removed"], real["removed"]);

    // Untagged artifacts: an artifact pushed by digest, and those a run
    // leaves without a tag, go too; a referrer stays with its subject.
    let (_, build3) = {
        let r = api.head("/v2/team/app/manifests/build-3").await;
        (
            (),
            header_of(&r, "docker-content-digest").unwrap().to_string(),
        )
    };
    let config = api.push_blob("team/app", b"{}").await;
    let layer = api.push_blob("team/app", b"untagged layer").await;
    let orphan = image_manifest(&config, 2, &[(&layer, 14)], None, None);
    let orphan_digest = sha256(orphan.as_bytes());
    assert_eq!(
        api.put_manifest("team/app", &orphan_digest, OCI_MANIFEST, &orphan)
            .await
            .status(),
        StatusCode::CREATED
    );
    let signature = image_manifest(
        &config,
        2,
        &[(&layer, 14)],
        Some("application/vnd.example.sig"),
        Some((&build3, 0)),
    );
    let signature_digest = sha256(signature.as_bytes());
    assert_eq!(
        api.put_manifest("team/app", &signature_digest, OCI_MANIFEST, &signature)
            .await
            .status(),
        StatusCode::CREATED
    );
    let before = api.head("/v2/team/app/manifests/build-4").await;
    let build4 = header_of(&before, "docker-content-digest")
        .unwrap()
        .to_string();
    let policy = server.admin(Method::POST,
        "/api/v1/projects/team/retention-policies",
        json!({"rules": [{"repositories": "app", "tags": "build-*", "keep": {"latest_pushed": 1}}], "untagged": true}),
    )
    .await;
    assert_eq!(policy["untagged"], true);
    let runs = format!(
        "/api/v1/projects/team/retention-policies/{}/runs",
        policy["id"].as_str().unwrap()
    );
    let dry = server
        .admin(Method::POST, &runs, json!({"dry_run": true}))
        .await;
    let real = server.admin(Method::POST, &runs, json!({})).await;
    assert_eq!(real["removed"], dry["removed"], "{}", server.log());
    let removed: Vec<&str> = real["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(removed.contains(&"team/app:build-3"), "{removed:?}");
    assert!(
        removed.contains(&format!("team/app@{orphan_digest}").as_str()),
        "{removed:?}"
    );
    assert!(
        removed.contains(&format!("team/app@{build3}").as_str()),
        "left untagged by the run: {removed:?}"
    );
    assert!(
        !removed.iter().any(|r| r.contains(&signature_digest)),
        "referrers are left to their subject"
    );
    assert!(
        !removed.contains(&format!("team/app@{build4}").as_str()),
        "still tagged"
    );
    assert_eq!(
        api.get(&format!("/v2/team/app/manifests/{orphan_digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&format!("/v2/team/app/manifests/{build4}"))
            .await
            .status(),
        StatusCode::OK
    );

    // A schedule (6 fields: every second) runs the policy by itself.
    server.admin(Method::POST,
        "/api/v1/projects/team/retention-policies",
        json!({"rules": [{"repositories": "lib", "keep": {"latest_pushed": 0}}], "schedule": "* * * * * *"}),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while api.get("/v2/team/lib/manifests/x").await.status() != StatusCode::NOT_FOUND {
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduled policy did not run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Bad rules and schedules are refused when the policy is added.
    for body in [
        json!({"rules": []}),
        json!({"rules": [{"keep": "always"}], "schedule": "not cron"}),
        json!({"rules": [{"keep": {"sometimes": 1}}]}),
    ] {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/api/v1/projects/team/retention-policies",
                server.url()
            ))
            .basic_auth("admin", Some(common::ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

/// SIGKILL in the middle of a retention run: after the restart the run is
/// marked interrupted, the policy runs again by itself and finishes the job,
/// and every tag that remains still resolves to a complete manifest.
#[tokio::test]
async fn a_killed_retention_run_is_completed_after_restart() {
    let mut server = common::Server::start_secured();
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let (manifest, _) = api.push_image("team/app", "keep-me", b"kept").await;
    // Many tags on one manifest: a run has many deletes to make.
    let tags: Vec<String> = (0..1500).map(|i| format!("ci-{i:05}")).collect();
    let puts = tags
        .iter()
        .map(|t| api.put_manifest("team/app", t, OCI_MANIFEST, &manifest));
    for r in futures_util::future::join_all(puts).await {
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let policy = server
        .admin(
            Method::POST,
            "/api/v1/projects/team/retention-policies",
            json!({"rules": [{"repositories": "**", "tags": "keep-*", "keep": "always"}]}),
        )
        .await;
    let runs = format!(
        "/api/v1/projects/team/retention-policies/{}/runs",
        policy["id"].as_str().unwrap()
    );
    // Start a run and kill the server while it deletes.
    let url = format!("{}{runs}", server.url());
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(url)
            .basic_auth("admin", Some(common::ADMIN_PASSWORD))
            .json(&json!({}))
            .send(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = api.get("/v2/team/app/tags/list").await;
        let listed: Value = r.json().await.unwrap();
        let n = listed["tags"].as_array().map_or(0, Vec::len);
        if n < 1400 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not start"
        );
    }
    server.kill_and_restart();
    let _ = request.await;
    // The old connections died with the process.
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    // After the restart the interrupted run is finished by a new one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed: Value = api
            .get("/v2/team/app/tags/list")
            .await
            .json()
            .await
            .unwrap();
        if listed["tags"] == json!(["keep-me"]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not completed: {} tags left",
            listed["tags"].as_array().map_or(0, Vec::len)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let recorded = server.admin(Method::GET, &runs, json!(null)).await;
    let statuses: Vec<&str> = recorded
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"interrupted") && statuses[0] == "finished",
        "{statuses:?}"
    );
    let r = api.get("/v2/team/app/manifests/keep-me").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), manifest);
}
