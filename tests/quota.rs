//! Project quotas against a real server: exact, dedupe-aware usage; the push
//! over a limit refused with usage and limit; concurrent pushes at the limit;
//! deletes giving space back; artifact counts.

mod common;
mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;

/// Uploads a config and `layer`; returns the manifest that uses them.
async fn prepare(api: &Api, repo: &str, name: &str, layer: &[u8]) -> String {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","name":"{name}"}}"#);
    let c = api.push_blob(repo, config.as_bytes()).await;
    let l = api.push_blob(repo, layer).await;
    image_manifest(&c, config.len(), &[(&l, layer.len())], None, None)
}

fn size(manifest: &str, config_name: &str) -> i64 {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","name":"{config_name}"}}"#);
    (manifest.len() + config.len()) as i64
}

#[tokio::test]
async fn quotas_count_shared_blobs_once_and_refuse_what_does_not_fit() {
    let server = common::Server::start_secured();
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let usage = || async {
        server
            .admin(Method::GET, "/api/v1/projects/team/usage", json!(null))
            .await
    };

    let shared = vec![b's'; 10_000];
    let ma = prepare(&api, "team/a", "a", &shared).await;
    assert_eq!(
        api.put_manifest("team/a", "1", OCI_MANIFEST, &ma)
            .await
            .status(),
        StatusCode::CREATED
    );
    let mb = prepare(&api, "team/b", "b", &shared).await;
    assert_eq!(
        api.put_manifest("team/b", "1", OCI_MANIFEST, &mb)
            .await
            .status(),
        StatusCode::CREATED
    );
    let u = usage().await;
    let expected = size(&ma, "a") + size(&mb, "b") + 10_000;
    assert_eq!(
        u["usage"]["bytes"], expected,
        "the shared layer counts once: {u}"
    );
    assert_eq!(u["usage"]["artifacts"], 2);
    assert_eq!(u["repositories"][0]["bytes"], size(&ma, "a") + 10_000);

    let big = vec![b'x'; 30_000];
    let m2 = prepare(&api, "team/a", "a2", &big).await;
    assert_eq!(
        api.put_manifest("team/a", "2", OCI_MANIFEST, &m2)
            .await
            .status(),
        StatusCode::CREATED
    );
    let used = usage().await["usage"]["bytes"].as_i64().unwrap();
    assert_eq!(used, expected + size(&m2, "a2") + 30_000);

    // Room for 10 kB more: a 20 kB image does not fit.
    let limit = used + 10_000;
    server
        .admin(
            Method::PUT,
            "/api/v1/projects/team/quota",
            json!({"bytes": limit}),
        )
        .await;
    let mc = prepare(&api, "team/c", "c", &vec![b'y'; 20_000]).await;
    let r = api.put_manifest("team/c", "1", OCI_MANIFEST, &mc).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("limit of {limit} bytes"))
            && message.contains(&format!("uses {used} bytes")),
        "{message}"
    );
    assert_eq!(usage().await["usage"]["bytes"], used, "nothing was stored");
    assert_eq!(
        api.get("/v2/team/c/manifests/1").await.status(),
        StatusCode::NOT_FOUND
    );
    // Re-pushing what is stored adds nothing and passes.
    assert_eq!(
        api.put_manifest("team/a", "1", OCI_MANIFEST, &ma)
            .await
            .status(),
        StatusCode::CREATED
    );

    // The consistency check agrees with the usage quotas enforce.
    let check = server.check().await;
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["projects"][0]["recounted_bytes"], used);
    // A delete gives the space back at once.
    let r = api
        .delete(&format!("/v2/team/a/manifests/{}", sha256(m2.as_bytes())))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(usage().await["usage"]["bytes"], expected);
    assert_eq!(
        api.put_manifest("team/c", "1", OCI_MANIFEST, &mc)
            .await
            .status(),
        StatusCode::CREATED
    );
    // A blob file lost on disk is found by the check.
    let lost = sha256(&vec![b'y'; 20_000]);
    server.remove_stored_blob(&lost).await;
    let check = server.check().await;
    assert_eq!(check["ok"], false);
    assert_eq!(check["missing_files"], json!([lost]));
}

#[tokio::test]
async fn concurrent_pushes_at_the_limit_never_exceed_it() {
    let server = common::Server::start_secured();
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let mut manifests = Vec::new();
    for i in 0..8 {
        manifests.push(prepare(&api, "team/app", &format!("c{i}"), &vec![i as u8; 10_000]).await);
    }
    let each = size(&manifests[0], "c0") + 10_000;
    // Room for two of the eight.
    server
        .admin(
            Method::PUT,
            "/api/v1/projects/team/quota",
            json!({"bytes": 2 * each + each / 2}),
        )
        .await;
    let tags: Vec<String> = (0..manifests.len()).map(|i| format!("t{i}")).collect();
    let pushes = manifests
        .iter()
        .zip(&tags)
        .map(|(m, t)| api.put_manifest("team/app", t, OCI_MANIFEST, m));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(pushes)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::FORBIDDEN)
        .count();
    assert_eq!((created, refused), (2, 6), "{statuses:?}");
    let u = server
        .admin(Method::GET, "/api/v1/projects/team/usage", json!(null))
        .await;
    assert!(
        u["usage"]["bytes"].as_i64().unwrap() <= 2 * each + each / 2,
        "{u}"
    );
    let tags: Value = api
        .get("/v2/team/app/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"].as_array().unwrap().len(), 2);

    // Artifact counts: at the limit, a new artifact is refused.
    server
        .admin(
            Method::PUT,
            "/api/v1/projects/team/quota",
            json!({"artifacts": 2}),
        )
        .await;
    let extra = prepare(&api, "team/app", "extra", b"small").await;
    let r = api
        .put_manifest("team/app", "extra", OCI_MANIFEST, &extra)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("its limit is 2"));
    // Without limits, it goes in.
    server
        .admin(Method::PUT, "/api/v1/projects/team/quota", json!({}))
        .await;
    assert_eq!(
        api.put_manifest("team/app", "extra", OCI_MANIFEST, &extra)
            .await
            .status(),
        StatusCode::CREATED
    );
}
