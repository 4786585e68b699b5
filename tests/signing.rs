//! cosign-compatible signing from the CLI against a real server: `berth key
//! generate` writes cosign's key files, `berth sign` pushes cosign's
//! signature layouts (the `.sig` tag, appended to; an OCI 1.1 referrer),
//! `berth verify` finds and checks them, and an independent verifier
//! written from the published formats (tests/tools/cosign_verify.py:
//! hashlib's scrypt, PyNaCl's secretbox, `cryptography`'s ECDSA) decrypts
//! the key and checks the signature fetched from the registry.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use support::*;

/// The `berth` CLI logged in as the administrator, with a directory for
/// its credentials and the keys.
struct Cli {
    dir: common::TempDir,
}

impl Cli {
    fn login(server: &common::Server) -> Cli {
        let cli = Cli {
            dir: common::TempDir::new("berth-signing"),
        };
        let out = cli.run(
            &[
                "login",
                &server.url(),
                "-u",
                "admin",
                "--password",
                common::ADMIN_PASSWORD,
            ],
            &[],
        );
        assert!(out.status.success(), "login: {}", stderr(&out));
        cli
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `berth ARGS` with only the environment given for passwords.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env("BERTH_CREDENTIALS", self.path("credentials.json"))
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_PASSWORD")
            .env_remove("BERTH_KEY_PASSWORD")
            .env_remove("COSIGN_PASSWORD")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        assert!(out.status.success(), "berth {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `berth ARGS` must exit 1; its stderr.
    fn fails(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        assert_eq!(
            out.status.code(),
            Some(1),
            "berth {args:?} should fail: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        stderr(&out)
    }

    /// Generates NAME.key / NAME.pub under the directory.
    fn generate(&self, name: &str, password_var: &str, password: &str) -> (String, String) {
        let prefix = self.path(name);
        let out = self.ok(
            &[
                "key",
                "generate",
                "--output-key-prefix",
                prefix.to_str().unwrap(),
            ],
            &[(password_var, password)],
        );
        assert!(out.contains(&format!("{name}.key")), "{out}");
        (
            self.path(&format!("{name}.key")).display().to_string(),
            self.path(&format!("{name}.pub")).display().to_string(),
        )
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A Python that has PyNaCl and `cryptography`: `BERTH_COSIGN_PYTHON`, the
/// virtualenv scripts/install-test-deps makes, or `python3`. `None` (the
/// check is skipped) only when there is no python3 at all; a python3
/// without the modules fails the test.
fn cosign_python() -> Option<String> {
    let venv = std::env::var("BERTH_COSIGN_VENV")
        .unwrap_or_else(|_| "/opt/berth-test-deps/cosign-venv".into());
    let candidates = [
        std::env::var("BERTH_COSIGN_PYTHON").ok(),
        Some(format!("{venv}/bin/python")),
        Some("python3".to_string()),
    ];
    let works = |py: &str, code: &str| {
        Command::new(py)
            .args(["-c", code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(py) = candidates
        .iter()
        .flatten()
        .find(|py| works(py, "import nacl.secret, cryptography"))
    {
        return Some(py.clone());
    }
    if !works("python3", "pass") {
        eprintln!("SKIPPED: the independent cosign verifier: no python3 on this machine");
        return None;
    }
    panic!(
        "the independent cosign verifier needs PyNaCl and cryptography \
         (in {venv}): run scripts/install-test-deps (as root)"
    );
}

/// Runs tests/tools/cosign_verify.py; its JSON answer.
fn independent_verify(
    python: &str,
    server: &common::Server,
    (key, public): (&str, &str),
    password: &str,
    repo: &str,
    digest: &str,
    referrer: bool,
) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/cosign_verify.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(["--key", key, "--pub", public, "--registry", &server.url()])
        .args(["--repo", repo, "--digest", digest])
        .env("COSIGN_PASSWORD", password)
        .env("REGISTRY_USER", "admin")
        .env("REGISTRY_PASSWORD", common::ADMIN_PASSWORD);
    if referrer {
        cmd.arg("--referrer");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "cosign_verify.py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A /v2 client with a token for `repo` (pull, push) as the administrator.
async fn pusher(server: &common::Server, repo: &str) -> Api {
    let r = reqwest::Client::new()
        .get(format!(
            "{}/auth/token?service=berth-registry&scope=repository:{repo}:pull,push",
            server.url()
        ))
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut headers = header::HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    Api {
        base: server.url(),
        http: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
    }
}

async fn manifest_json(api: &Api, repo: &str, reference: &str) -> Option<Value> {
    let r = api
        .http
        .get(api.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header(header::ACCEPT, OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    if r.status() == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(r.status(), StatusCode::OK);
    Some(r.json().await.unwrap())
}

fn sig_tag(digest: &str) -> String {
    format!("sha256-{}.sig", digest.strip_prefix("sha256:").unwrap())
}

/// With access control on (the token flow): keys, the `.sig` tag layout,
/// appending, verification by the right key only, the independent check.
#[tokio::test]
async fn keys_sign_and_verify_with_the_tag_layout() {
    let server = common::Server::start_secured();
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    let api = pusher(&server, "team/app").await;
    let (_, digest) = api.push_image("team/app", "v1", &pattern(3000, 1)).await;
    let cli = Cli::login(&server);

    // Key generation: cosign's files, the private key readable by its owner only.
    let (a_key, a_pub) = cli.generate("alice", "BERTH_KEY_PASSWORD", "alice's password");
    let (b_key, b_pub) = cli.generate("bob", "COSIGN_PASSWORD", "bob's password");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&a_key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{a_key} has mode {mode:o}");
    }
    let key_text = std::fs::read_to_string(&a_key).unwrap();
    assert!(key_text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    assert!(key_text
        .trim_end()
        .ends_with("-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    let pub_text = std::fs::read_to_string(&a_pub).unwrap();
    assert!(pub_text.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert!(pub_text.trim_end().ends_with("-----END PUBLIC KEY-----"));
    // Existing files are never overwritten.
    let prefix = cli.path("alice");
    let e = cli.fails(
        &[
            "key",
            "generate",
            "--output-key-prefix",
            prefix.to_str().unwrap(),
        ],
        &[("BERTH_KEY_PASSWORD", "x")],
    );
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read_to_string(&a_key).unwrap(), key_text);
    // No password and no terminal: a clear refusal.
    let e = cli.fails(
        &[
            "key",
            "generate",
            "--output-key-prefix",
            cli.path("c").to_str().unwrap(),
        ],
        &[],
    );
    assert!(e.contains("BERTH_KEY_PASSWORD"), "{e}");
    assert!(!cli.path("c.key").exists());

    // Unsigned: verify fails and says so.
    let e = cli.fails(&["verify", "--key", &a_pub, "team/app:v1"], &[]);
    assert!(e.contains("no cosign signatures"), "{e}");

    // A wrong password is refused before anything is pushed.
    let alice = [("BERTH_KEY_PASSWORD", "alice's password")];
    let e = cli.fails(
        &["sign", "--key", &a_key, "team/app:v1"],
        &[("BERTH_KEY_PASSWORD", "guess")],
    );
    assert!(e.contains("wrong password"), "{e}");
    assert!(!e.contains("alice's password"));
    assert!(manifest_json(&api, "team/app", &sig_tag(&digest))
        .await
        .is_none());

    // Sign by tag: the signature manifest is cosign's, under sha256-<hex>.sig.
    let printed = cli.ok(&["sign", "--key", &a_key, "team/app:v1"], &alice);
    let sig = manifest_json(&api, "team/app", &sig_tag(&digest))
        .await
        .unwrap();
    let sig_digest = printed.trim();
    assert!(sig_digest.starts_with("sha256:"), "{printed}");
    assert_eq!(sig["mediaType"], OCI_MANIFEST);
    assert_eq!(sig["config"]["mediaType"], OCI_CONFIG);
    let layers = sig["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert!(layers[0]["annotations"]["dev.cosignproject.cosign/signature"].is_string());
    let payload: Value = serde_json::from_slice(
        &api.get(&format!(
            "/v2/team/app/blobs/{}",
            layers[0]["digest"].as_str().unwrap()
        ))
        .await
        .bytes()
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        payload,
        json!({
            "critical": {
                "identity": {"docker-reference": format!("{}/team/app", server.host())},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": null,
        })
    );

    // verify: the right key only, by tag or by digest.
    let out = cli.ok(&["verify", "--key", &a_pub, "team/app:v1"], &[]);
    assert!(
        out.contains(&digest) && out.contains("signed by key sha256:"),
        "{out}"
    );
    assert!(out.contains(&sig_tag(&digest)), "{out}");
    cli.ok(
        &["verify", "--key", &a_pub, &format!("team/app@{digest}")],
        &[],
    );
    let e = cli.fails(&["verify", "--key", &b_pub, "team/app:v1"], &[]);
    assert!(e.contains("signature does not verify"), "{e}");

    let python = cosign_python();
    if let Some(py) = &python {
        let v = independent_verify(
            py,
            &server,
            (&a_key, &a_pub),
            "alice's password",
            "team/app",
            &digest,
            false,
        );
        assert_eq!(v["layers"], 1);
        assert_eq!(v["verified"], json!([0]));
        assert_eq!(v["manifest"], sig_digest);
    }

    // Bob signs too: his layer is appended, Alice's kept; both verify.
    let bob = [("COSIGN_PASSWORD", "bob's password")];
    let out: Value =
        serde_json::from_str(&cli.ok(&["sign", "--key", &b_key, "team/app:v1", "--json"], &bob))
            .unwrap();
    assert_eq!(out["layers"], 2);
    assert_eq!(out["added"], true);
    let sig2 = manifest_json(&api, "team/app", &sig_tag(&digest))
        .await
        .unwrap();
    assert_eq!(sig2["layers"].as_array().unwrap().len(), 2);
    assert_eq!(sig2["layers"][0], layers[0]);
    for public in [&a_pub, &b_pub] {
        cli.ok(&["verify", "--key", public, "team/app:v1"], &[]);
    }
    if let Some(py) = &python {
        let v = independent_verify(
            py,
            &server,
            (&a_key, &a_pub),
            "alice's password",
            "team/app",
            &digest,
            false,
        );
        assert_eq!(
            (v["layers"].clone(), v["verified"].clone()),
            (json!(2), json!([0]))
        );
        let v = independent_verify(
            py,
            &server,
            (&b_key, &b_pub),
            "bob's password",
            "team/app",
            &digest,
            false,
        );
        assert_eq!(
            (v["layers"].clone(), v["verified"].clone()),
            (json!(2), json!([1]))
        );
    }

    // Alice again: the identical signature is there, nothing is added.
    let out: Value = serde_json::from_str(&cli.ok(
        &[
            "sign",
            "--key",
            &a_key,
            &format!("team/app@{digest}"),
            "--json",
        ],
        &alice,
    ))
    .unwrap();
    assert_eq!(
        (out["added"].clone(), out["layers"].clone()),
        (json!(false), json!(2))
    );
    assert_eq!(
        manifest_json(&api, "team/app", &sig_tag(&digest))
            .await
            .unwrap(),
        sig2
    );

    // A signature for one image is no signature for another.
    let (_, other) = api.push_image("team/app", "v2", &pattern(3000, 2)).await;
    let e = cli.fails(&["verify", "--key", &a_pub, "team/app:v2"], &[]);
    assert!(e.contains("no cosign signatures"), "{e}");
    assert!(manifest_json(&api, "team/app", &sig_tag(&other))
        .await
        .is_none());

    // Bad input: clear messages.
    let e = cli.fails(&["sign", "--key", &a_key, "app"], &alice);
    assert!(e.contains("project/repository:tag"), "{e}");
    let e = cli.fails(&["sign", "--key", &a_key, "team/app:nope"], &alice);
    assert!(e.contains("no such image"), "{e}");
    let e = cli.fails(&["sign", "--key", &a_pub, "team/app:v1"], &alice);
    assert!(e.contains("malformed private key"), "{e}");
    let e = cli.fails(&["verify", "--key", &a_key, "team/app:v1"], &[]);
    assert!(e.contains("alice.key"), "{e}");
}

/// On a server with access control off: `--referrer` pushes an OCI 1.1
/// referrer, which `berth verify` finds through the referrers API.
#[tokio::test]
async fn referrer_signatures_without_auth() {
    let server = common::Server::start();
    let api = Api::new(server.url());
    let (_, digest) = api.push_image("lib/tool", "1.0", &pattern(2000, 3)).await;
    let cli = Cli::login(&server);
    let (key, public) = cli.generate("ci", "BERTH_KEY_PASSWORD", "");
    let (_, other_pub) = cli.generate("other", "BERTH_KEY_PASSWORD", "other");

    let out: Value = serde_json::from_str(&cli.ok(
        &[
            "sign",
            "--referrer",
            "--key",
            &key,
            "lib/tool:1.0",
            "--json",
        ],
        &[("BERTH_KEY_PASSWORD", "")],
    ))
    .unwrap();
    assert_eq!(out["layout"], "referrer");
    let sig_digest = out["signature_manifest"].as_str().unwrap().to_string();
    assert!(manifest_json(&api, "lib/tool", &sig_tag(&digest))
        .await
        .is_none());

    let index: Value = api
        .get(&format!("/v2/lib/tool/referrers/{digest}"))
        .await
        .json()
        .await
        .unwrap();
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{index}");
    assert_eq!(listed[0]["digest"], sig_digest.as_str());
    assert_eq!(
        listed[0]["artifactType"],
        "application/vnd.dev.cosign.artifact.sig.v1+json"
    );
    let m = manifest_json(&api, "lib/tool", &sig_digest).await.unwrap();
    assert_eq!(m["subject"]["digest"], digest.as_str());

    let out: Value =
        serde_json::from_str(&cli.ok(&["verify", "--key", &public, "lib/tool:1.0", "--json"], &[]))
            .unwrap();
    assert_eq!(out["verified"], true);
    assert_eq!(out["signatures"][0]["layout"], "referrer");
    assert_eq!(
        out["signatures"][0]["signature_manifest"],
        sig_digest.as_str()
    );
    let e = cli.fails(&["verify", "--key", &other_pub, "lib/tool:1.0"], &[]);
    assert!(e.contains(&format!("referrer {sig_digest}")), "{e}");

    if let Some(py) = cosign_python() {
        let v = independent_verify(&py, &server, (&key, &public), "", "lib/tool", &digest, true);
        assert_eq!(
            (v["layers"].clone(), v["verified"].clone()),
            (json!(1), json!([0]))
        );
        assert_eq!(v["manifest"], sig_digest.as_str());
    }
}

/// The status and error of a manifest GET (`Ok` with nothing on success).
async fn pull(api: &Api, repo: &str, reference: &str) -> Result<(), (StatusCode, Value)> {
    let r = api
        .http
        .get(api.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header(header::ACCEPT, OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    match r.status() {
        StatusCode::OK => Ok(()),
        status => Err((status, r.json().await.unwrap())),
    }
}

/// A GET refused by a rule: 403, the spec's DENIED, and the message.
async fn refused(api: &Api, repo: &str, reference: &str) -> String {
    let (status, body) = pull(api, repo, reference)
        .await
        .expect_err("the pull should be refused");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    body["errors"][0]["message"].as_str().unwrap().to_string()
}

/// Rules with trust configurations, through the CLI and /v2 with the
/// token flow: require-signature refuses unsigned and wrongly signed pulls
/// (naming the rule), lets HEAD resolve the image so it can be signed
/// under enforcement, sees a signature pushed later at once, keeps
/// signatures readable, follows a rotated key; audit mode allows and
/// records; forbid-tags refuses the push; bad configuration is refused.
#[tokio::test]
async fn rules_require_signatures_at_pull_and_forbid_tags_at_push() {
    let server = common::Server::start_secured();
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    let api = pusher(&server, "team/app").await;
    let (_, v1) = api.push_image("team/app", "v1", &pattern(3000, 1)).await;
    let (_, v2) = api.push_image("team/app", "v2", &pattern(3000, 2)).await;
    let cli = Cli::login(&server);
    let (a_key, a_pub) = cli.generate("alice", "BERTH_KEY_PASSWORD", "alice");
    let (b_key, b_pub) = cli.generate("bob", "BERTH_KEY_PASSWORD", "bob");
    let alice = [("BERTH_KEY_PASSWORD", "alice")];
    let bob = [("BERTH_KEY_PASSWORD", "bob")];

    // Bad configuration is refused when it is made.
    let r = server
        .admin_call(
            Method::POST,
            "/api/v1/projects/team/trust",
            json!({"name": "release", "policy": {"cosign": {"keys": ["not a key"]}}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e = cli.fails(
        &[
            "rule",
            "add",
            "team",
            "--kind",
            "require-signature",
            "--trust",
            "release",
        ],
        &[],
    );
    assert!(e.contains("not found"), "{e}");
    cli.ok(
        &[
            "trust",
            "add",
            "team",
            "--name",
            "release",
            "--public-key",
            &a_pub,
        ],
        &[],
    );
    cli.ok(
        &[
            "rule",
            "add",
            "team",
            "--kind",
            "require-signature",
            "--name",
            "prod-signed",
            "--trust",
            "release",
        ],
        &[],
    );
    let e = cli.fails(&["trust", "rm", "team", "release"], &[]);
    assert!(e.contains("prod-signed"), "in use: {e}");

    // Unsigned: refused by tag and by digest, naming the rule; HEAD answers.
    let m = refused(&api, "team/app", "v1").await;
    assert!(
        m.contains("rule 'prod-signed'") && m.contains("'release'") && m.contains("found none"),
        "{m}"
    );
    refused(&api, "team/app", &v1).await;
    assert_eq!(
        api.head("/v2/team/app/manifests/v1").await.status(),
        StatusCode::OK
    );

    // Signed under enforcement (resolved by HEAD): pulled at once, and the
    // signature itself stays readable.
    cli.ok(&["sign", "--key", &a_key, "team/app:v1"], &alice);
    pull(&api, "team/app", "v1").await.unwrap();
    pull(&api, "team/app", &v1).await.unwrap();
    assert!(manifest_json(&api, "team/app", &sig_tag(&v1))
        .await
        .is_some());

    // Signed by an untrusted key: refused, saying why.
    cli.ok(&["sign", "--key", &b_key, "team/app:v2"], &bob);
    let m = refused(&api, "team/app", "v2").await;
    assert!(m.contains("none valid"), "{m}");
    let report = server
        .admin(
            Method::GET,
            "/api/v1/projects/team/repositories/app/artifacts/v2/signatures",
            Value::Null,
        )
        .await;
    assert_eq!(report["digest"], v2.as_str());
    assert_eq!(report["signatures"].as_array().unwrap().len(), 1);
    assert_eq!(report["verdicts"][0]["trust"], "release");
    assert_eq!(report["verdicts"][0]["status"], "invalid", "{report}");
    let report = server
        .admin(
            Method::GET,
            "/api/v1/projects/team/repositories/app/artifacts/v1/signatures",
            Value::Null,
        )
        .await;
    assert_eq!(report["verdicts"][0]["status"], "valid", "{report}");
    assert_eq!(report["verdicts"][0]["signer"]["kind"], "key", "{report}");

    // The key rotated: bob's signature is trusted, alice's no longer.
    cli.ok(
        &[
            "trust",
            "add",
            "team",
            "--name",
            "release",
            "--public-key",
            &b_pub,
            "--replace",
        ],
        &[],
    );
    pull(&api, "team/app", "v2").await.unwrap();
    refused(&api, "team/app", "v1").await;

    // Audit mode: allowed, and recorded.
    cli.ok(&["rule", "rm", "team", "prod-signed"], &[]);
    cli.ok(
        &[
            "rule",
            "add",
            "team",
            "--kind",
            "require-signature",
            "--name",
            "watch-signed",
            "--trust",
            "release",
            "--mode",
            "audit",
        ],
        &[],
    );
    pull(&api, "team/app", "v1").await.unwrap();
    let mut recorded = false;
    for _ in 0..40 {
        let log = server
            .admin(
                Method::GET,
                "/api/v1/audit-logs?action=policy.violated&limit=100",
                Value::Null,
            )
            .await;
        recorded = log["items"].as_array().unwrap().iter().any(|e| {
            e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("rule watch-signed: audit:"))
        });
        if recorded {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(recorded, "the audit-mode violation is in the audit log");

    // forbid-tags: the push of `latest` is refused, naming the rule.
    cli.ok(
        &[
            "rule",
            "add",
            "team",
            "--kind",
            "forbid-tags",
            "--tags",
            "latest",
            "--name",
            "no-latest",
        ],
        &[],
    );
    let manifest = manifest_json(&api, "team/app", &v2).await.unwrap();
    let r = api
        .put_manifest("team/app", "latest", OCI_MANIFEST, &manifest.to_string())
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let m = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        m.contains("rule 'no-latest'") && m.contains("latest"),
        "{m}"
    );
    assert!(manifest_json(&api, "team/app", "latest").await.is_none());
}
