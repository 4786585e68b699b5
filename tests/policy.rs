//! Project rules against a real server: naming conventions refuse pushes
//! with the rule and the offending part; managing rules needs the right role.

mod common;
mod support;

use common::Cli;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn naming_rules_refuse_pushes_that_break_them() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    let r = server
        .admin_call(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = server
        .admin_call(
            Method::POST,
            "/api/v1/projects/team/rules",
            json!({"kind": "naming", "repositories": "team/[a-z]+", "tags": "semver"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let rule: Value = r.json().await.unwrap();
    let id = rule["id"].as_str().unwrap().to_string();

    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    api.push_image("team/app", "1.0.0", b"versioned").await;
    let config = api.push_blob("team/app", b"{}").await;
    let layer = api.push_blob("team/app", b"layer").await;
    let manifest = image_manifest(&config, 2, &[(&layer, 5)], None, None);
    // A tag that is not a semantic version: refused, naming the rule and the tag.
    let r = api
        .put_manifest("team/app", "latest", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&id)
            && message.contains("\"latest\"")
            && message.contains("semantic version"),
        "{message}"
    );
    let r = api.get("/v2/team/app/manifests/latest").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was stored");
    // By digest there is no tag to check.
    let digest = sha256(manifest.as_bytes());
    let r = api
        .put_manifest("team/app", &digest, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // A repository name outside the convention is refused before any upload.
    let r = api
        .http
        .post(api.url("/v2/team/app/sub/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"team/app/sub\""),
        "{body}"
    );
    // Other projects are not affected.
    server
        .admin_call(Method::POST, "/api/v1/projects", json!({"name": "free"}))
        .await;
    api.push_image("free/any/thing", "latest", b"free").await;

    // Invalid patterns are refused when the rule is added.
    let r = server
        .admin_call(
            Method::POST,
            "/api/v1/projects/team/rules",
            json!({"kind": "naming", "tags": "("}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = server
        .admin_call(
            Method::POST,
            "/api/v1/projects/team/rules",
            json!({"kind": "other", "tags": "x"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Removing the rule lifts it.
    let r = server
        .admin_call(
            Method::DELETE,
            &format!("/api/v1/projects/team/rules/{id}"),
            json!(null),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = api
        .put_manifest("team/app", "latest", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = server
        .admin_call(Method::GET, "/api/v1/projects/team/rules", json!(null))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn managing_rules_needs_a_maintainer() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    server
        .admin_call(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    for (user, role) in [
        ("dev", "developer"),
        ("maint", "maintainer"),
        ("lguest", "limited_guest"),
    ] {
        server
            .admin_call(
                Method::POST,
                "/api/v1/users",
                json!({"name": user, "password": "password-123"}),
            )
            .await;
        server
            .admin_call(
                Method::PUT,
                &format!("/api/v1/projects/team/members/{user}"),
                json!({"role": role}),
            )
            .await;
    }
    let call = |user: &'static str, method: Method, body: Value| {
        let server = &server;
        async move {
            reqwest::Client::new()
                .request(
                    method,
                    format!("{}/api/v1/projects/team/rules", server.url()),
                )
                .basic_auth(user, Some("password-123"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let rule = json!({"kind": "immutable", "repositories": "**", "tags": "v*"});
    assert_eq!(
        call("dev", Method::POST, rule.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(call("maint", Method::POST, rule).await, StatusCode::CREATED);
    assert_eq!(call("dev", Method::GET, json!(null)).await, StatusCode::OK);
    assert_eq!(
        call("lguest", Method::GET, json!(null)).await,
        StatusCode::FORBIDDEN
    );
}

/// An immutable tag can be pushed again with the same content, but not moved
/// or deleted — not by a push, a registry DELETE or the management API —
/// and the refusal names the rule.
#[tokio::test]
async fn immutable_tags_cannot_be_moved_or_deleted() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    server
        .admin_call(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    let r = server
        .admin_call(
            Method::POST,
            "/api/v1/projects/team/rules",
            json!({"kind": "immutable", "repositories": "apps/*", "tags": "v*"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let (v1, v1_digest) = api.push_image("team/apps/web", "v1", b"first").await;
    // The same content again: allowed.
    let r = api
        .put_manifest("team/apps/web", "v1", OCI_MANIFEST, &v1)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Other content under the tag: refused, naming the rule.
    let (_, other_digest) = api.push_image("team/apps/web", "dev", b"second").await;
    let other = api
        .get(&format!("/v2/team/apps/web/manifests/{other_digest}"))
        .await
        .text()
        .await
        .unwrap();
    let r = api
        .put_manifest("team/apps/web", "v1", OCI_MANIFEST, &other)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&id) && message.contains("\"v1\""),
        "{message}"
    );
    let r = api.head("/v2/team/apps/web/manifests/v1").await;
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(v1_digest.as_str()),
        "v1 did not move"
    );
    // Deletes: the tag, the manifest carrying it, through the API.
    let r = api.delete("/v2/team/apps/web/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = api
        .delete(&format!("/v2/team/apps/web/manifests/{v1_digest}"))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = server
        .admin_call(
            Method::DELETE,
            "/api/v1/repositories/team%2Fapps%2Fweb/tags/v1",
            json!(null),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains(&id));
    // Tags and repositories the rule does not match are free.
    let r = api
        .put_manifest("team/apps/web", "dev", OCI_MANIFEST, &v1)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "dev moved");
    let r = api.delete("/v2/team/apps/web/manifests/dev").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (_, elsewhere) = api.push_image("team/tools/web", "v1", b"tool").await;
    let r = api
        .delete(&format!("/v2/team/tools/web/manifests/{elsewhere}"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Without the rule, v1 can go.
    server
        .admin_call(
            Method::DELETE,
            &format!("/api/v1/projects/team/rules/{id}"),
            json!(null),
        )
        .await;
    let r = api.delete("/v2/team/apps/web/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// Every path that removes a tag reaches the same admission point, so one
/// rule refuses all of them the same way: the registry API, the management
/// API, and a retention run (dry or real), which reports the tag protected
/// and leaves its artifact (and the artifact's tag) alone.
#[tokio::test]
async fn every_write_path_meets_the_same_refusal() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    server
        .admin_call(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    let r = server
        .admin_call(
            Method::POST,
            "/api/v1/projects/team/rules",
            json!({"kind": "immutable", "repositories": "app", "tags": "v*"}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let (_, digest) = api.push_image("team/app", "v1", b"kept").await;
    let message = |body: Value| body["errors"][0]["message"].as_str().unwrap().to_string();

    // The registry API: the tag, and the artifact that carries it.
    let r = api.delete("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let by_tag = message(r.json().await.unwrap());
    assert!(
        by_tag.contains(&id) && by_tag.contains("\"v1\""),
        "{by_tag}"
    );
    let r = api
        .delete(&format!("/v2/team/app/manifests/{digest}"))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let by_digest = message(r.json().await.unwrap());
    // The management API: word for word the same refusals.
    let r = server
        .admin_call(
            Method::DELETE,
            "/api/v1/repositories/team%2Fapp/tags/v1",
            json!(null),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(message(r.json().await.unwrap()), by_tag);
    let r = server
        .admin_call(
            Method::DELETE,
            &format!("/api/v1/repositories/team%2Fapp/artifacts/{digest}"),
            json!(null),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(message(r.json().await.unwrap()), by_digest);

    // Retention: a policy that keeps no tag of `app`, and untagged
    // artifacts go too. v1 is protected, so its artifact is not untagged.
    let policy = server
        .admin(
            Method::POST,
            "/api/v1/projects/team/retention-policies",
            json!({"rules": [{"repositories": "app", "tags": "none-*", "keep": {"latest_pushed": 1}}], "untagged": true}),
        )
        .await;
    let runs = format!(
        "/api/v1/projects/team/retention-policies/{}/runs",
        policy["id"].as_str().unwrap()
    );
    for dry_run in [true, false] {
        let run = server
            .admin(Method::POST, &runs, json!({ "dry_run": dry_run }))
            .await;
        assert_eq!(run["protected"], json!(["team/app:v1"]), "{run}");
        assert_eq!(run["removed"], json!([]), "{run}");
    }
    let r = api.head("/v2/team/app/manifests/v1").await;
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(digest.as_str())
    );
}

/// Size budgets and required annotations refuse pushes (enforce) or record
/// them (audit); signatures are exempt; the compliance report lists what
/// breaks a rule now, and a dry run judges proposed rules without storing them.
#[tokio::test]
async fn content_rules_refuse_pushes_and_the_compliance_report_lists_violations() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    // Pushed before any rule: the report will judge them.
    let (_, big) = api.push_image("team/app", "big", &vec![7u8; 5000]).await;
    api.push_image("team/app", "latest", b"small").await;

    // Bad settings are refused when the rule is made, with what is wrong.
    for (body, says) in [
        (json!({"kind": "size-budget"}), "max_bytes or max_layers"),
        (
            json!({"kind": "size-budget", "max_bytes": 0}),
            "refuses everything",
        ),
        (json!({"kind": "require-annotations"}), "annotations"),
        (json!({"kind": "vulnerability"}), "severity"),
        (
            json!({"kind": "vulnerability", "severity": "dire"}),
            "severity",
        ),
        (
            json!({"kind": "vulnerability", "severity": "high", "allow": [{"id": "CVE-1", "expires": "soon"}]}),
            "YYYY-MM-DD",
        ),
        (
            json!({"kind": "naming", "tags": "semver", "max_bytes": 5}),
            "no max_bytes",
        ),
    ] {
        let r = server
            .admin_call(Method::POST, "/api/v1/projects/team/rules", body.clone())
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{body}: {text}");
    }

    let cli = Cli::login(&server);
    cli.ok(&[
        "rule",
        "add",
        "team",
        "--kind",
        "size-budget",
        "--name",
        "small",
        "--max-bytes",
        "4096",
    ]);
    cli.ok(&[
        "rule",
        "add",
        "team",
        "--kind",
        "require-annotations",
        "--name",
        "sourced",
        "--mode",
        "audit",
        "--annotation",
        "org.opencontainers.image.source",
    ]);
    let rules = cli.json(&["rule", "ls", "team"]);
    assert_eq!(rules[0]["max_bytes"], 4096);
    assert_eq!(
        rules[1]["annotations"],
        json!(["org.opencontainers.image.source"])
    );

    // Over the budget: refused with the rule's name and the figures.
    let config = api.push_blob("team/app", b"{}").await;
    let layer = api.push_blob("team/app", &vec![1u8; 6000]).await;
    let manifest = image_manifest(&config, 2, &[(&layer, 6000)], None, None);
    let r = api
        .put_manifest("team/app", "huge", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    let m = body["errors"][0]["message"].as_str().unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert!(
        m.contains("rule 'small'") && m.contains("6002 bytes") && m.contains("4096"),
        "{m}"
    );

    // Within the budget but without the annotation: allowed (audit), and
    // the violation is in the audit log.
    api.push_image("team/app", "v1", b"fits").await;
    // With the label in its config: nothing to record.
    let labelled = br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"org.opencontainers.image.source":"https://example.com/app"}}}"#;
    let config = api.push_blob("team/app", labelled).await;
    let layer = api.push_blob("team/app", b"labelled").await;
    let manifest = image_manifest(&config, labelled.len(), &[(&layer, 8)], None, None);
    let r = api
        .put_manifest("team/app", "v2", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let violations = loop {
        let log = server
            .admin(
                Method::GET,
                "/api/v1/audit-logs?action=policy.violated&limit=100",
                json!(null),
            )
            .await;
        let found: Vec<Value> = log["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("rule sourced: audit:"))
            })
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        !violations.is_empty(),
        "the audited push is in the audit log"
    );
    assert!(
        !violations.iter().any(|e| e.to_string().contains(":v2")),
        "{violations:?}"
    );

    // A signature-like artifact (a cosign simple-signing layer) is exempt from both.
    let payload = br#"{"critical":{}}"#;
    let config = api.push_blob("team/app", b"{}").await;
    let layer = api.push_blob("team/app", payload).await;
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{layer}","size":{}}}]}}"#,
        payload.len()
    );
    let r = api
        .put_manifest("team/app", "sha256-0.sig", OCI_MANIFEST, &sig)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // The report: `big` breaks the budget (enforce), and every tag without
    // the annotation breaks `sourced` (audit); v2 and the signature break nothing.
    let report = cli.json(&["compliance", "team"]);
    let broken: Vec<(String, String)> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["tag"].as_str().unwrap().to_string(),
                v["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        broken,
        [
            ("big", "small"),
            ("big", "sourced"),
            ("latest", "sourced"),
            ("v1", "sourced")
        ]
        .map(|(t, r)| (t.to_string(), r.to_string())),
        "{report}"
    );
    assert_eq!(report["tags"], 5);
    assert_eq!(report["violating_tags"], 3);
    let v = &report["violations"][0];
    assert_eq!(v["digest"], big);
    assert_eq!(v["mode"], "enforce");

    // A dry run of a proposed forbid-tags rule instead of the project's
    // rules: only `latest`, and nothing is stored.
    let proposed =
        std::env::temp_dir().join(format!("berth-proposed-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &proposed,
        r#"[{"kind": "forbid-tags", "name": "no-latest", "tags": "latest"}]"#,
    )
    .unwrap();
    let dry = cli.json(&[
        "compliance",
        "team",
        "--dry-run",
        proposed.to_str().unwrap(),
        "--replace",
    ]);
    std::fs::remove_file(&proposed).unwrap();
    assert_eq!(dry["violating_tags"], 1, "{dry}");
    assert_eq!(dry["violations"][0]["tag"], "latest");
    assert_eq!(dry["violations"][0]["rule"], "no-latest");
    assert_eq!(
        cli.json(&["rule", "ls", "team"]).as_array().unwrap().len(),
        2
    );
    // A malformed proposal is refused as a rule would be.
    let r = server
        .admin_call(
            Method::POST,
            "/api/v1/projects/team/compliance/dry-run",
            json!({"rules": [{"kind": "size-budget"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Pushes an image of `layers` for `platform` (`os/arch[/variant]`) with
/// `annotations` as `repo:tag`, and returns the answer and the digest.
async fn push_for(
    api: &Api,
    repo: &str,
    tag: &str,
    platform: &str,
    layers: &[&[u8]],
    annotations: Value,
) -> (reqwest::Response, String) {
    let mut p = platform.split('/');
    let (os, arch, variant) = (p.next(), p.next(), p.next());
    let config = json!({"os": os, "architecture": arch, "variant": variant}).to_string();
    let config = api.push_blob(repo, config.as_bytes()).await;
    let mut descriptors = Vec::new();
    for l in layers {
        let d = api.push_blob(repo, l).await;
        descriptors.push(json!({"mediaType": OCI_LAYER, "digest": d, "size": l.len()}));
    }
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 0},
        "layers": descriptors, "annotations": annotations,
    });
    // The config's size as stored.
    let size = api
        .head(&format!("/v2/{repo}/blobs/{config}"))
        .await
        .headers()["content-length"]
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let mut manifest = manifest;
    manifest["config"]["size"] = size.into();
    let body = manifest.to_string();
    let r = api.put_manifest(repo, tag, OCI_MANIFEST, &body).await;
    (r, sha256(body.as_bytes()))
}

/// The message of a refusal, after checking it is one.
async fn refusal(r: reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    body["errors"][0]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn platform_and_base_rules_judge_what_an_image_is_and_is_built_on() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    for p in ["library", "team", "other", "lab"] {
        server
            .admin(Method::POST, "/api/v1/projects", json!({"name": p}))
            .await;
    }
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let none = json!({});
    // The allowed base, an image of the project that is not allowed, and
    // one of another project, pushed before the rules.
    let (r, debian) = push_for(
        &api,
        "library/debian",
        "bookworm",
        "linux/amd64",
        &[b"debian root", b"debian apt"],
        none.clone(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (r, homebrew) = push_for(
        &api,
        "team/base",
        "1",
        "linux/amd64",
        &[b"homebrew"],
        none.clone(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (r, _) = push_for(
        &api,
        "other/base",
        "1",
        "linux/amd64",
        &[b"foreign"],
        none.clone(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Bad settings are refused when the rule is made.
    for (body, says) in [
        (json!({"kind": "platforms"}), "platforms or artifact types"),
        (json!({"kind": "trusted-base"}), "(bases)"),
        (
            json!({"kind": "platforms", "platforms": ["linux/[amd64"]}),
            "not a valid pattern",
        ),
        (
            json!({"kind": "naming", "tags": "semver", "bases": ["library/*"]}),
            "no bases",
        ),
        (
            json!({"kind": "naming", "tags": "semver", "on_pull": true}),
            "no on_pull",
        ),
    ] {
        let r = server
            .admin_call(Method::POST, "/api/v1/projects/team/rules", body.clone())
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{body}: {text}");
    }

    let cli = Cli::login(&server);
    for project in ["team", "lab"] {
        let mode = if project == "team" {
            "enforce"
        } else {
            "audit"
        };
        cli.ok(&[
            "rule",
            "add",
            project,
            "--kind",
            "platforms",
            "--name",
            "linux",
            "--mode",
            mode,
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64",
            "--artifact-type",
            OCI_CONFIG,
        ]);
        cli.ok(&[
            "rule",
            "add",
            project,
            "--kind",
            "trusted-base",
            "--name",
            "official",
            "--mode",
            mode,
            "--base",
            "library/debian",
            "--base",
            "docker.io/library/*",
        ]);
    }
    let rules = cli.json(&["rule", "ls", "team"]);
    assert_eq!(rules[0]["platforms"], json!(["linux/amd64", "linux/arm64"]));
    assert_eq!(rules[0]["artifact_types"], json!([OCI_CONFIG]));
    assert_eq!(
        rules[1]["bases"],
        json!(["library/debian", "docker.io/library/*"])
    );

    let on_debian: [&[u8]; 3] = [b"debian root", b"debian apt", b"app"];
    // On the allowed base, for an allowed platform (a variant included).
    let (r, good) = push_for(
        &api,
        "team/app",
        "1",
        "linux/amd64",
        &on_debian,
        none.clone(),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let (r, arm) = push_for(
        &api,
        "team/app",
        "1-arm",
        "linux/arm64/v8",
        &on_debian,
        none.clone(),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    // A copy of the base itself is built on it.
    let (r, _) = push_for(
        &api,
        "team/debian",
        "copy",
        "linux/amd64",
        &on_debian[..2],
        none.clone(),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );

    // Another platform: refused by the rule, naming the platform.
    let (r, _) = push_for(
        &api,
        "team/app",
        "1-s390x",
        "linux/s390x",
        &on_debian,
        none.clone(),
    )
    .await;
    let m = refusal(r).await;
    assert!(
        m.contains("rule 'linux'") && m.contains("linux/s390x"),
        "{m}"
    );
    assert!(!m.contains("official"), "{m}");

    // Built on the project's own base image: refused, naming it.
    let (r, _) = push_for(
        &api,
        "team/app",
        "2",
        "linux/amd64",
        &[b"homebrew", b"app"],
        none.clone(),
    )
    .await;
    let m = refusal(r).await;
    assert!(
        m.contains("rule 'official'") && m.contains(&format!("team/base@{homebrew}")),
        "{m}"
    );
    // On another project's image, or on nothing known: the base is unknown
    // (another project's content is not named).
    let (r, _) = push_for(
        &api,
        "team/app",
        "3",
        "linux/amd64",
        &[b"foreign", b"app"],
        none.clone(),
    )
    .await;
    let m = refusal(r).await;
    assert!(
        m.contains("its base is unknown") && !m.contains("other/"),
        "{m}"
    );

    // The builder's annotation: an allowed base elsewhere is accepted…
    let claim = |name: &str, digest: &str| json!({"org.opencontainers.image.base.name": name, "org.opencontainers.image.base.digest": digest});
    let (r, _) = push_for(
        &api,
        "team/app",
        "4",
        "linux/amd64",
        &[b"from docker hub"],
        claim(
            "docker.io/library/alpine:3.20",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    // …one not allowed is refused…
    let (r, _) = push_for(
        &api,
        "team/app",
        "5",
        "linux/amd64",
        &[b"evil"],
        claim("docker.io/evil/base:1", ""),
    )
    .await;
    let m = refusal(r).await;
    assert!(m.contains("declares the base docker.io/evil/base:1"), "{m}");
    // …and a claim on a base of this registry is checked against its layers.
    let (r, _) = push_for(
        &api,
        "team/app",
        "6",
        "linux/amd64",
        &[b"not debian"],
        claim("library/debian:bookworm", &debian),
    )
    .await;
    let m = refusal(r).await;
    assert!(m.contains("does not start with that image's layers"), "{m}");

    // An index is judged by its children's platforms (buildx's attestation
    // children, unknown/unknown, pass).
    let mut children = Vec::new();
    for (d, os, arch) in [
        (&good, "linux", "amd64"),
        (&arm, "linux", "arm64"),
        (&good, "unknown", "unknown"),
    ] {
        let r = api.head(&format!("/v2/team/app/manifests/{d}")).await;
        let size: u64 = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        children.push(json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size,
            "platform": {"os": os, "architecture": arch}}));
    }
    let index = |children: &[Value]| {
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).to_string()
    };
    let r = api
        .put_manifest("team/app", "multi", OCI_INDEX, &index(&children))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    children[1]["platform"]["architecture"] = "riscv64".into();
    let r = api
        .put_manifest("team/app", "multi-riscv", OCI_INDEX, &index(&children))
        .await;
    let m = refusal(r).await;
    assert!(
        m.contains(&format!("its child {arm} is for linux/riscv64")),
        "{m}"
    );

    // A Helm chart is not an allowed artifact type; it has no base to judge.
    let chart_config = api.push_blob("team/chart", b"{\"name\":\"app\"}").await;
    let chart = api.push_blob("team/chart", b"chart tarball").await;
    let helm = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": chart_config, "size": 14},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": chart, "size": 13}]});
    let r = api
        .put_manifest("team/chart", "0.1.0", OCI_MANIFEST, &helm.to_string())
        .await;
    let m = refusal(r).await;
    assert!(
        m.contains("rule 'linux'")
            && m.contains("application/vnd.cncf.helm.config.v1+json")
            && !m.contains("official"),
        "{m}"
    );

    // In audit mode the same pushes are allowed, and the report lists them.
    let (r, _) = push_for(
        &api,
        "lab/app",
        "s390x",
        "linux/s390x",
        &[b"homebrew", b"lab"],
        none.clone(),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let (r, _) = push_for(
        &api,
        "lab/app",
        "ok",
        "linux/arm64",
        &on_debian,
        none.clone(),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let report = cli.json(&["compliance", "lab"]);
    let broken: Vec<(&str, &str, &str)> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["tag"].as_str().unwrap(),
                v["rule"].as_str().unwrap(),
                v["mode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        broken,
        [("s390x", "linux", "audit"), ("s390x", "official", "audit")],
        "{report}"
    );
}

#[tokio::test]
async fn a_forbidden_tag_can_be_refused_on_pull_too() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    for p in ["prod", "stage"] {
        server
            .admin(Method::POST, "/api/v1/projects", json!({"name": p}))
            .await;
    }
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    // Pushed before the rules.
    let (_, latest) = api.push_image("prod/app", "latest", b"old latest").await;
    api.push_image("prod/app", "1.0", b"one").await;
    api.push_image("stage/app", "latest", b"staged").await;
    let cli = Cli::login(&server);
    cli.ok(&[
        "rule",
        "add",
        "prod",
        "--kind",
        "forbid-tags",
        "--name",
        "no-latest",
        "--tags",
        "latest",
        "--on-pull",
    ]);
    cli.ok(&[
        "rule",
        "add",
        "stage",
        "--kind",
        "forbid-tags",
        "--name",
        "no-latest",
        "--tags",
        "latest",
        "--on-pull",
        "--mode",
        "audit",
    ]);
    assert_eq!(cli.json(&["rule", "ls", "prod"])[0]["on_pull"], true);

    let m = refusal(api.get("/v2/prod/app/manifests/latest").await).await;
    assert!(
        m.starts_with("pull refused: rule 'no-latest'") && m.contains("\"latest\""),
        "{m}"
    );
    // Other tags, the image by digest, a HEAD (resolving a digest) and the
    // audited project are served.
    for path in [
        "/v2/prod/app/manifests/1.0".to_string(),
        format!("/v2/prod/app/manifests/{latest}"),
        "/v2/stage/app/manifests/latest".to_string(),
    ] {
        assert_eq!(api.get(&path).await.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(
        api.head("/v2/prod/app/manifests/latest").await.status(),
        StatusCode::OK
    );
    // The push is refused as it always was.
    let config = api.push_blob("prod/app", b"{}").await;
    let manifest = image_manifest(&config, 2, &[], None, None);
    let m = refusal(
        api.put_manifest("prod/app", "latest", OCI_MANIFEST, &manifest)
            .await,
    )
    .await;
    assert!(m.starts_with("push refused: rule 'no-latest'"), "{m}");
}

/// Writes an OCI layout at `dir` holding one image for `platform` with
/// `layers`, tagged `tag`.
fn oci_layout(dir: &std::path::Path, tag: &str, platform: (&str, &str), layers: &[&[u8]]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes).unwrap();
        json!({"digest": d, "size": bytes.len()})
    };
    let config = json!({"os": platform.0, "architecture": platform.1, "rootfs": {"type": "layers", "diff_ids": []}});
    let mut config = put(config.to_string().as_bytes());
    config["mediaType"] = OCI_CONFIG.into();
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            let mut d = put(l);
            d["mediaType"] = OCI_LAYER.into();
            d
        })
        .collect();
    let manifest =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers});
    let mut m = put(manifest.to_string().as_bytes());
    m["mediaType"] = OCI_MANIFEST.into();
    m["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [m]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// skopeo sees each refusal, with the rule's name and the reason.
#[tokio::test]
async fn skopeo_shows_the_rule_that_refused_it() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "prod"}))
        .await;
    let dir = common::TempDir::new("berth-skopeo");
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let layout = dir.path().join("layout");
    oci_layout(&layout, "s390x", ("linux", "s390x"), &[b"s390x layer"]);
    let skopeo = |args: &[&str]| {
        let out = std::process::Command::new("skopeo")
            .arg("--policy")
            .arg(&policy)
            .args(args)
            .output()
            .expect("skopeo (scripts/install-test-deps installs it)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let src = format!("oci:{}:s390x", layout.display());
    let creds = format!("admin:{}", common::ADMIN_PASSWORD);
    let dst = |tag: &str| format!("docker://{}/prod/app:{tag}", server.host());
    // Pushed before the rules.
    let (ok, err) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &src,
        &dst("latest"),
    ]);
    assert!(ok, "{err}");

    let cli = Cli::login(&server);
    cli.ok(&[
        "rule",
        "add",
        "prod",
        "--kind",
        "forbid-tags",
        "--name",
        "no-latest",
        "--tags",
        "latest",
        "--on-pull",
    ]);
    cli.ok(&[
        "rule",
        "add",
        "prod",
        "--kind",
        "platforms",
        "--name",
        "amd64-only",
        "--platform",
        "linux/amd64",
    ]);
    let (ok, err) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &src,
        &dst("1.0"),
    ]);
    assert!(
        !ok && err.contains("push refused: rule 'amd64-only'") && err.contains("linux/s390x"),
        "{err}"
    );
    let (ok, err) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &dst("latest"),
    ]);
    assert!(
        !ok && err.contains("pull refused: rule 'no-latest'"),
        "{err}"
    );
}

/// Every push rule × scope × mode: one image that breaks each of them is
/// pushed where a rule covers it (refused, or allowed and reported) and
/// where its repository or its tag is out of the rule's scope (allowed,
/// never reported). forbid-tags on pull likewise, for pulls.
#[tokio::test]
async fn every_rule_kind_in_and_out_of_scope_in_both_modes() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let cli = Cli::login(&server);
    let kinds = [
        ("forbid-tags", json!({})),
        ("size-budget", json!({"max_bytes": 100})),
        (
            "require-annotations",
            json!({"annotations": ["org.opencontainers.image.source"]}),
        ),
        ("platforms", json!({"platforms": ["linux/amd64"]})),
        ("trusted-base", json!({"bases": ["library/debian"]})),
    ];
    // linux/arm64, 200 bytes of a layer no base has, no annotations, tag latest.
    let layer = [9u8; 200];
    for (kind, params) in kinds {
        for mode in ["enforce", "audit"] {
            let project = format!("m-{kind}-{mode}");
            server
                .admin(Method::POST, "/api/v1/projects", json!({"name": project}))
                .await;
            let mut rule = json!({"kind": kind, "name": "r", "mode": mode,
                "repositories": "in/**", "tags": "latest"});
            rule.as_object_mut()
                .unwrap()
                .extend(params.as_object().unwrap().clone());
            let r = server
                .admin_call(
                    Method::POST,
                    &format!("/api/v1/projects/{project}/rules"),
                    rule.clone(),
                )
                .await;
            assert_eq!(
                r.status(),
                StatusCode::CREATED,
                "{rule}: {}",
                r.text().await.unwrap()
            );
            let case = format!("{kind} {mode}");
            for (repo, tag, covered) in [
                ("in/app", "latest", true),
                ("out/app", "latest", false),
                ("in/app", "stable", false),
            ] {
                let (r, _) = push_for(
                    &api,
                    &format!("{project}/{repo}"),
                    tag,
                    "linux/arm64",
                    &[&layer],
                    json!({}),
                )
                .await;
                if covered && mode == "enforce" {
                    let m = refusal(r).await;
                    assert!(
                        m.starts_with(&format!("push refused: rule 'r' of project {project}")),
                        "{case}: {m}"
                    );
                } else {
                    assert_eq!(
                        r.status(),
                        StatusCode::CREATED,
                        "{case} {repo}:{tag}: {}",
                        r.text().await.unwrap()
                    );
                }
            }
            let report = cli.json(&["compliance", &project]);
            let found: Vec<(&str, &str, &str, &str)> = report["violations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    let s = |k: &str| v[k].as_str().unwrap();
                    (s("repository"), s("tag"), s("rule"), s("mode"))
                })
                .collect();
            let expected: &[(&str, &str, &str, &str)] = if mode == "audit" {
                &[("in/app", "latest", "r", "audit")]
            } else {
                &[]
            };
            let expected: Vec<_> = expected
                .iter()
                .map(|&(repo, t, r, m)| (format!("{project}/{repo}"), t, r, m))
                .collect();
            let found: Vec<_> = found
                .into_iter()
                .map(|(repo, t, r, m)| (repo.to_string(), t, r, m))
                .collect();
            assert_eq!(found, expected, "{case}: {report}");
        }
    }

    // forbid-tags on pull: the images were there before the rule.
    for mode in ["enforce", "audit"] {
        let project = format!("pull-{mode}");
        server
            .admin(Method::POST, "/api/v1/projects", json!({"name": project}))
            .await;
        for (repo, tag) in [
            ("in/app", "latest"),
            ("out/app", "latest"),
            ("in/app", "stable"),
        ] {
            api.push_image(&format!("{project}/{repo}"), tag, b"pulled")
                .await;
        }
        let rule = json!({"kind": "forbid-tags", "name": "r", "mode": mode,
            "repositories": "in/**", "tags": "latest", "on_pull": true});
        server
            .admin(
                Method::POST,
                &format!("/api/v1/projects/{project}/rules"),
                rule,
            )
            .await;
        for (repo, tag, covered) in [
            ("in/app", "latest", true),
            ("out/app", "latest", false),
            ("in/app", "stable", false),
        ] {
            let r = api
                .get(&format!("/v2/{project}/{repo}/manifests/{tag}"))
                .await;
            if covered && mode == "enforce" {
                let m = refusal(r).await;
                assert!(m.starts_with("pull refused: rule 'r'"), "{m}");
            } else {
                assert_eq!(r.status(), StatusCode::OK, "{mode} {repo}:{tag}");
            }
        }
    }
}

/// System-wide rules apply to every project their glob (over the whole
/// repository name) covers; only an administrator manages them.
#[tokio::test]
async fn system_wide_rules_apply_to_every_project_they_cover() {
    use reqwest::Method;
    let server = common::Server::start_secured();
    for p in ["prod-a", "prod-b", "dev"] {
        server
            .admin(Method::POST, "/api/v1/projects", json!({"name": p}))
            .await;
    }
    server
        .admin(
            Method::POST,
            "/api/v1/users",
            json!({"name": "maint", "password": "password-123"}),
        )
        .await;
    server
        .admin(
            Method::PUT,
            "/api/v1/projects/prod-a/members/maint",
            json!({"role": "maintainer"}),
        )
        .await;
    let rule = json!({"kind": "forbid-tags", "name": "no-latest", "repositories": "prod-*/**", "tags": "latest"});
    // A project's maintainer is not an administrator.
    for method in [Method::GET, Method::POST] {
        let r = reqwest::Client::new()
            .request(method.clone(), format!("{}/api/v1/rules", server.url()))
            .basic_auth("maint", Some("password-123"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method}");
    }
    let cli = Cli::login(&server);
    cli.ok(&[
        "rule",
        "add",
        "--system",
        "--kind",
        "forbid-tags",
        "--name",
        "no-latest",
        "--repositories",
        "prod-*/**",
        "--tags",
        "latest",
    ]);
    // A second rule of that name, and a system-wide signature rule, are refused.
    let r = server.admin_call(Method::POST, "/api/v1/rules", rule).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let out = cli.run(&[
        "rule",
        "add",
        "--system",
        "--kind",
        "require-signature",
        "--trust",
        "release",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trust configurations are per project"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let system = cli.json(&["rule", "ls", "--system"]);
    assert_eq!(system.as_array().unwrap().len(), 1, "{system}");
    assert_eq!(system[0]["repositories"], "prod-*/**");
    assert_eq!(cli.json(&["rule", "ls", "prod-a"]), json!([]));

    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let none = json!({});
    for (repo, tag, refused) in [
        ("prod-a/app", "latest", true),
        ("prod-b/web/app", "latest", true),
        ("prod-a/app", "1.0", false),
        ("dev/app", "latest", false),
    ] {
        let (r, _) = push_for(
            &api,
            repo,
            tag,
            "linux/amd64",
            &[repo.as_bytes()],
            none.clone(),
        )
        .await;
        if refused {
            let m = refusal(r).await;
            assert!(
                m.starts_with("push refused: rule 'no-latest' of the system forbids the tag"),
                "{m}"
            );
        } else {
            assert_eq!(r.status(), StatusCode::CREATED, "{repo}:{tag}");
        }
    }

    // An audited system-wide rule shows in every project's report, and in
    // a dry run that replaces the project's own rules.
    cli.ok(&[
        "rule",
        "add",
        "--system",
        "--kind",
        "size-budget",
        "--name",
        "tiny",
        "--mode",
        "audit",
        "--max-bytes",
        "10",
    ]);
    let report = cli.json(&["compliance", "dev"]);
    assert_eq!(report["violations"][0]["rule"], "tiny", "{report}");
    assert_eq!(report["violations"][0]["repository"], "dev/app", "{report}");
    let proposed =
        std::env::temp_dir().join(format!("berth-proposed-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&proposed, "[]").unwrap();
    let dry = cli.json(&[
        "compliance",
        "dev",
        "--dry-run",
        proposed.to_str().unwrap(),
        "--replace",
    ]);
    std::fs::remove_file(&proposed).unwrap();
    assert_eq!(dry["violations"][0]["rule"], "tiny", "{dry}");

    // Removed by name: the tag is allowed again.
    cli.ok(&["rule", "rm", "--system", "no-latest"]);
    let (r, _) = push_for(
        &api,
        "prod-a/app",
        "latest",
        "linux/amd64",
        &[b"again"],
        none,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let out = cli.run(&["rule", "rm", "--system", "no-latest"]);
    assert!(!out.status.success());
}
