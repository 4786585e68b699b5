//! The management API fuzzed from its own OpenAPI document with schemathesis
//! (from PyPI, installed by scripts/install-test-deps), against a real
//! server holding real data: no response may be a server error, and every
//! status code, content type and response body must be as documented.

mod common;
mod support;

use std::process::Command;

fn schemathesis() -> String {
    let st = std::env::var("BERTH_SCHEMATHESIS").unwrap_or_else(|_| {
        let venv = std::env::var("BERTH_SCHEMATHESIS_VENV")
            .unwrap_or_else(|_| "/opt/berth-test-deps/schemathesis-venv".into());
        format!("{venv}/bin/st")
    });
    assert!(
        std::path::Path::new(&st).exists(),
        "{st} is missing: run scripts/install-test-deps (as root)"
    );
    st
}

#[tokio::test]
async fn openapi_document_fuzzed_with_schemathesis() {
    let st = schemathesis();
    let server = common::Server::start_secured();
    // Data for the fuzzer to find: a project with an image, a member, a robot.
    use reqwest::Method;
    use serde_json::json;
    for (m, path, body) in [
        (Method::POST, "/api/v1/projects", json!({"name": "fuzz"})),
        (
            Method::POST,
            "/api/v1/users",
            json!({"name": "member", "password": "member-password"}),
        ),
        (
            Method::PUT,
            "/api/v1/projects/fuzz/members/member",
            json!({"role": "developer"}),
        ),
        (
            Method::POST,
            "/api/v1/projects/fuzz/robots",
            json!({"name": "ci", "actions": ["pull"]}),
        ),
    ] {
        let r = server.admin_call(m, path, body).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let api = support::Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    api.push_image("fuzz/app", "v1", b"fuzzed").await;

    let seed = std::env::var("BERTH_FUZZ_SEED").unwrap_or_else(|_| "20261128".into());
    let examples = std::env::var("BERTH_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let out = Command::new(&st)
        .arg("--config-file")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml"))
        .args(["run", &format!("{}/api/v1/openapi.json", server.url())])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--auth", &format!("admin:{}", common::ADMIN_PASSWORD)])
        .args(["--max-examples", &examples, "--seed", &seed, "--workers", "1"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(server.data_dir().parent().unwrap())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(80).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        out.status.success(),
        "schemathesis found failures (seed {seed}):\n{tail}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Tested: 66"),
        "not every operation was tested:\n{tail}"
    );
    // The server is still whole: the administrator can still sign in, as one.
    let r = server
        .admin_call(Method::GET, "/api/v1/users/current", json!(null))
        .await;
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        me["admin"], true,
        "the fuzzer must not be able to lock the administrator out"
    );
    assert!(!server.log().contains("status=5"), "{}", server.log());
}
