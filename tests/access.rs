//! Access control against a real server with the token flow on: the
//! authorization matrix, tokens (issued, refused, forged, rotated), robots,
//! throttling and the audit log.

mod common;
mod support;

use std::collections::BTreeMap;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;

const PASSWORD: &str = "member-password";

/// How a request authenticates.
#[derive(Clone, Debug)]
enum Cred {
    Anonymous,
    Basic(String, String),
    Bearer(String),
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(server: &common::Server) -> Client {
        Client {
            base: server.url(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        rb = match cred {
            Cred::Anonymous => rb,
            Cred::Basic(u, p) => rb.basic_auth(u, Some(p)),
            Cred::Bearer(t) => rb.bearer_auth(t),
        };
        if let Some(body) = body {
            rb = rb.json(&body);
        }
        rb.send().await.unwrap()
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.send(method.clone(), path, &admin(), body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A token for `scopes` (GET form, as docker and podman fetch it).
    async fn token(&self, cred: &Cred, scopes: &[&str]) -> reqwest::Response {
        let mut url = format!("{}/auth/token?service=berth-registry", self.base);
        for s in scopes {
            url.push_str(&format!("&scope={s}"));
        }
        let mut rb = self.http.get(url);
        if let Cred::Basic(u, p) = cred {
            rb = rb.basic_auth(u, Some(p));
        }
        rb.send().await.unwrap()
    }

    async fn token_for(&self, cred: &Cred, scopes: &[&str]) -> String {
        let r = self.token(cred, scopes).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }
}

fn admin() -> Cred {
    Cred::Basic("admin".into(), common::ADMIN_PASSWORD.into())
}

/// The claims of a token, decoded without checking it.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Creates `team` (private) and `open` (public), a user per role that is a
/// member of both, an outsider, and an image `<project>/app:v1` in each.
async fn populate(server: &common::Server, c: &Client) -> BTreeMap<&'static str, String> {
    for (name, public) in [("team", false), ("open", true)] {
        c.admin(
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": name, "public": public})),
        )
        .await;
    }
    for (user, role) in [
        ("padmin", Some("project_admin")),
        ("maint", Some("maintainer")),
        ("dev", Some("developer")),
        ("guest", Some("guest")),
        ("lguest", Some("limited_guest")),
        ("outsider", None),
    ] {
        c.admin(
            Method::POST,
            "/api/v1/users",
            Some(json!({"name": user, "password": PASSWORD})),
        )
        .await;
        if let Some(role) = role {
            for project in ["team", "open"] {
                c.admin(
                    Method::PUT,
                    &format!("/api/v1/projects/{project}/members/{user}"),
                    Some(json!({ "role": role })),
                )
                .await;
            }
        }
    }
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let mut digests = BTreeMap::new();
    for project in ["team", "open"] {
        let (_, digest) = api
            .push_image(&format!("{project}/app"), "v1", project.as_bytes())
            .await;
        digests.insert(project, digest);
    }
    digests
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    Outsider,
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    Admin,
}

impl Who {
    const ALL: [Who; 8] = [
        Who::Anonymous,
        Who::Outsider,
        Who::LimitedGuest,
        Who::Guest,
        Who::Developer,
        Who::Maintainer,
        Who::ProjectAdmin,
        Who::Admin,
    ];

    fn cred(self) -> Cred {
        let user = match self {
            Who::Anonymous => return Cred::Anonymous,
            Who::Admin => return admin(),
            Who::Outsider => "outsider",
            Who::LimitedGuest => "lguest",
            Who::Guest => "guest",
            Who::Developer => "dev",
            Who::Maintainer => "maint",
            Who::ProjectAdmin => "padmin",
        };
        Cred::Basic(user.into(), PASSWORD.into())
    }

    fn member(self) -> bool {
        self >= Who::LimitedGuest
    }
}

/// Who may do what, written out from the role table (independently
/// of the server's permission table).
#[derive(Clone, Copy, Debug)]
enum May {
    /// Members, and anyone in a public project.
    Pull,
    /// Developers and up.
    Push,
    /// Maintainers and up.
    Maintain,
    /// Project admins and administrators.
    Own,
    /// Guests and up (limited guests may not see members or logs).
    See,
    /// System administrators.
    Admin,
    /// Anyone signed in.
    SignedIn,
    /// Any user (not anonymous).
    User,
    /// Everyone, anonymous included.
    Anyone,
}

fn expected(may: May, who: Who, public: bool) -> bool {
    match may {
        May::Pull => who.member() || public || who == Who::Admin,
        May::Push => who >= Who::Developer,
        May::Maintain => who >= Who::Maintainer,
        May::Own => who >= Who::ProjectAdmin,
        May::See => who >= Who::Guest,
        May::Admin => who == Who::Admin,
        May::SignedIn | May::User => who != Who::Anonymous,
        May::Anyone => true,
    }
}

/// Every `/v2/` and `/api/v1` route × every role × a public and a private
/// project × anonymous. Allowed requests must not be refused (they may fail
/// for other reasons, e.g. 404 or 409, which is how the destructive ones are
/// made harmless); refused ones get 401 (anonymous) or 403 (signed in),
/// whatever exists behind them.
#[tokio::test]
async fn authorization_matrix() {
    let server = common::Server::start_secured();
    let c = Client::new(&server);
    let digests = populate(&server, &c).await;
    let nothing = sha256(b"nothing at all");
    let mut checked = 0;
    let mut failures = Vec::new();
    for (project, public) in [("team", false), ("open", true)] {
        let digest = &digests[project];
        let repo = format!("{project}/app");
        let enc = format!("{project}%2Fapp");
        let upload = "6f1c1b9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
        // (method, path, body, who may, what a token must grant)
        let cases: Vec<(Method, String, Option<Value>, May, &str)> = vec![
            (
                Method::GET,
                format!("/v2/{repo}/manifests/v1"),
                None,
                May::Pull,
                "pull",
            ),
            (
                Method::HEAD,
                format!("/v2/{repo}/manifests/{digest}"),
                None,
                May::Pull,
                "pull",
            ),
            (
                Method::GET,
                format!("/v2/{repo}/blobs/{nothing}"),
                None,
                May::Pull,
                "pull",
            ),
            (
                Method::GET,
                format!("/v2/{repo}/tags/list"),
                None,
                May::Pull,
                "pull",
            ),
            (
                Method::GET,
                format!("/v2/{repo}/referrers/{digest}"),
                None,
                May::Pull,
                "pull",
            ),
            (
                Method::HEAD,
                format!("/v2/{repo}/blobs/{nothing}"),
                None,
                May::Pull,
                "pull",
            ),
            (
                Method::GET,
                format!("/v2/{repo}/blobs/uploads/{upload}"),
                None,
                May::Push,
                "pull,push",
            ),
            (
                Method::PUT,
                format!("/v2/{repo}/blobs/uploads/{upload}?digest={nothing}"),
                None,
                May::Push,
                "pull,push",
            ),
            (
                Method::DELETE,
                format!("/v2/{repo}/blobs/uploads/{upload}"),
                None,
                May::Push,
                "pull,push",
            ),
            (
                Method::POST,
                format!("/v2/{repo}/blobs/uploads/"),
                None,
                May::Push,
                "pull,push",
            ),
            (
                Method::PATCH,
                format!("/v2/{repo}/blobs/uploads/{upload}"),
                None,
                May::Push,
                "pull,push",
            ),
            (
                Method::PUT,
                format!("/v2/{repo}/manifests/v2"),
                None,
                May::Push,
                "pull,push",
            ),
            (
                Method::DELETE,
                format!("/v2/{repo}/manifests/no-such-tag"),
                None,
                May::Maintain,
                "delete",
            ),
            (
                Method::DELETE,
                format!("/v2/{repo}/manifests/{nothing}"),
                None,
                May::Maintain,
                "delete",
            ),
            (
                Method::DELETE,
                format!("/v2/{repo}/blobs/{nothing}"),
                None,
                May::Maintain,
                "delete",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}"),
                None,
                May::Pull,
                "",
            ),
            (
                Method::PATCH,
                format!("/api/v1/projects/{project}"),
                Some(json!({"public": public})),
                May::Own,
                "",
            ),
            (
                Method::DELETE,
                format!("/api/v1/projects/{project}"),
                None,
                May::Own,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}/members"),
                None,
                May::See,
                "",
            ),
            (
                Method::PUT,
                format!("/api/v1/projects/{project}/members/guest"),
                Some(json!({"role": "guest"})),
                May::Own,
                "",
            ),
            (
                Method::DELETE,
                format!("/api/v1/projects/{project}/members/nobody"),
                None,
                May::Own,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}/repositories"),
                None,
                May::Pull,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}/robots"),
                None,
                May::Maintain,
                "",
            ),
            (
                Method::POST,
                format!("/api/v1/projects/{project}/robots"),
                Some(json!({"name": "", "actions": ["pull"]})),
                May::Own,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}/robots/robot$x"),
                None,
                May::Maintain,
                "",
            ),
            (
                Method::PATCH,
                format!("/api/v1/projects/{project}/robots/robot$x"),
                Some(json!({})),
                May::Own,
                "",
            ),
            (
                Method::DELETE,
                format!("/api/v1/projects/{project}/robots/robot$x"),
                None,
                May::Own,
                "",
            ),
            (
                Method::POST,
                format!("/api/v1/projects/{project}/robots/robot$x/secret"),
                None,
                May::Own,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}/rules"),
                None,
                May::See,
                "",
            ),
            (
                Method::POST,
                format!("/api/v1/projects/{project}/rules"),
                Some(json!({"kind": "other"})),
                May::Maintain,
                "",
            ),
            (
                Method::DELETE,
                format!("/api/v1/projects/{project}/rules/no-such-rule"),
                None,
                May::Maintain,
                "",
            ),
            (
                Method::PUT,
                format!("/api/v1/projects/{project}/quota"),
                Some(json!({})),
                May::Admin,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}/usage"),
                None,
                May::Pull,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}/retention-policies"),
                None,
                May::See,
                "",
            ),
            (
                Method::POST,
                format!("/api/v1/projects/{project}/retention-policies"),
                Some(json!({"rules": []})),
                May::Maintain,
                "",
            ),
            (
                Method::DELETE,
                format!("/api/v1/projects/{project}/retention-policies/none"),
                None,
                May::Maintain,
                "",
            ),
            (
                Method::POST,
                format!("/api/v1/projects/{project}/retention-policies/none/runs"),
                Some(json!({})),
                May::Maintain,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}/retention-policies/none/runs"),
                None,
                May::See,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/projects/{project}/audit-logs"),
                None,
                May::See,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/repositories/{enc}/artifacts"),
                None,
                May::Pull,
                "",
            ),
            (
                Method::DELETE,
                format!("/api/v1/repositories/{enc}/artifacts/{nothing}"),
                None,
                May::Maintain,
                "",
            ),
            (
                Method::GET,
                format!("/api/v1/repositories/{enc}/tags"),
                None,
                May::Pull,
                "",
            ),
            (
                Method::DELETE,
                format!("/api/v1/repositories/{enc}/tags/no-such-tag"),
                None,
                May::Maintain,
                "",
            ),
        ];
        for (method, path, body, may, scope_actions) in &cases {
            for who in Who::ALL {
                let mut creds = vec![who.cred()];
                if path.starts_with("/v2/") {
                    // The token flow too: a token for exactly this scope.
                    let token = c
                        .token_for(
                            &who.cred(),
                            &[&format!("repository:{repo}:{scope_actions}")],
                        )
                        .await;
                    creds.push(Cred::Bearer(token));
                }
                for cred in creds {
                    let r = c.send(method.clone(), path, &cred, body.clone()).await;
                    let status = r.status();
                    let allowed = expected(*may, who, public);
                    checked += 1;
                    let refused =
                        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
                    let ok = if allowed {
                        !refused && !status.is_server_error()
                    } else if who == Who::Anonymous || matches!(cred, Cred::Bearer(_)) {
                        status == StatusCode::UNAUTHORIZED
                    } else {
                        status == StatusCode::FORBIDDEN
                    };
                    if !ok {
                        failures.push(format!(
                            "{method} {path} as {who:?} ({}) in {project}: got {status}, expected {}",
                            match cred { Cred::Bearer(_) => "token", Cred::Basic(..) => "basic", Cred::Anonymous => "none" },
                            if allowed { "allowed" } else { "refused" }
                        ));
                    }
                }
            }
        }
    }
    // Routes outside any project.
    let global: Vec<(Method, &str, Option<Value>, May)> = vec![
        (Method::GET, "/v2/", None, May::SignedIn),
        (Method::GET, "/v2/_catalog", None, May::SignedIn),
        (Method::GET, "/api/v1/projects", None, May::Anyone),
        (
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": "Invalid Name"})),
            May::User,
        ),
        (Method::GET, "/api/v1/users", None, May::Admin),
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({"name": "x", "password": "short"})),
            May::Admin,
        ),
        (Method::GET, "/api/v1/users/current", None, May::SignedIn),
        (
            Method::PUT,
            "/api/v1/users/current/password",
            Some(json!({"current": "wrong", "new": "whatever-else"})),
            May::User,
        ),
        (Method::GET, "/api/v1/users/maint", None, May::Maintain),
        (
            Method::PATCH,
            "/api/v1/users/nobody",
            Some(json!({})),
            May::Admin,
        ),
        (Method::DELETE, "/api/v1/users/nobody", None, May::Admin),
        (Method::GET, "/api/v1/robots", None, May::Admin),
        (
            Method::POST,
            "/api/v1/robots",
            Some(json!({"name": "", "permissions": []})),
            May::Admin,
        ),
        (Method::GET, "/api/v1/robots/robot$x", None, May::Admin),
        (
            Method::PATCH,
            "/api/v1/robots/robot$x",
            Some(json!({})),
            May::Admin,
        ),
        (Method::DELETE, "/api/v1/robots/robot$x", None, May::Admin),
        (
            Method::POST,
            "/api/v1/robots/robot$x/secret",
            None,
            May::Admin,
        ),
        (Method::GET, "/api/v1/audit-logs", None, May::Admin),
        (
            Method::POST,
            "/api/v1/system/signing-keys",
            None,
            May::Admin,
        ),
        (Method::GET, "/api/v1/system/gc", None, May::Admin),
        (Method::POST, "/api/v1/system/check", None, May::Admin),
        (
            Method::POST,
            "/api/v1/system/gc",
            Some(json!({"dry_run": true})),
            May::Admin,
        ),
    ];
    for (method, path, body, may) in &global {
        for who in Who::ALL {
            let r = c
                .send(method.clone(), path, &who.cred(), body.clone())
                .await;
            let status = r.status();
            // GET /users/maint: the user themself, or an administrator.
            let allowed = if *path == "/api/v1/users/maint" {
                who == Who::Maintainer || who == Who::Admin
            } else {
                expected(*may, who, false)
            };
            checked += 1;
            let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
            let ok = if allowed {
                !refused && !status.is_server_error()
            } else if who == Who::Anonymous {
                status == StatusCode::UNAUTHORIZED
            } else {
                status == StatusCode::FORBIDDEN
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {who:?}: got {status}, expected {}",
                    if allowed { "allowed" } else { "refused" }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 1104, "cases were skipped");
}

/// Refusals look the same whether the private repository exists or not, and
/// listings show only what the caller may see.
#[tokio::test]
async fn private_repositories_stay_hidden() {
    let server = common::Server::start_secured();
    let c = Client::new(&server);
    populate(&server, &c).await;
    let outsider = Cred::Basic("outsider".into(), PASSWORD.into());
    for cred in [outsider.clone(), Cred::Anonymous] {
        let existing = c
            .send(Method::GET, "/v2/team/app/manifests/v1", &cred, None)
            .await;
        let (s1, b1) = (existing.status(), existing.text().await.unwrap());
        let missing = c
            .send(Method::GET, "/v2/team/ghost/manifests/v1", &cred, None)
            .await;
        let (s2, b2) = (missing.status(), missing.text().await.unwrap());
        assert_eq!((s1, &b1), (s2, &b2));
        let missing_project = c
            .send(Method::GET, "/v2/ghosts/app/manifests/v1", &cred, None)
            .await;
        assert_eq!(missing_project.status(), s1);
    }
    // Catalog: the outsider sees the public project's repository only.
    let token = c.token_for(&outsider, &["registry:catalog:*"]).await;
    let r = c
        .send(Method::GET, "/v2/_catalog", &Cred::Bearer(token), None)
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["repositories"], json!(["open/app"]));
    let r = c
        .send(
            Method::GET,
            "/v2/_catalog",
            &Cred::Basic("lguest".into(), PASSWORD.into()),
            None,
        )
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["repositories"], json!(["open/app", "team/app"]));
    let r = c
        .send(Method::GET, "/api/v1/projects", &Cred::Anonymous, None)
        .await;
    let body: Value = r.json().await.unwrap();
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["open"]);
    // Anonymous pull of the public project through the token flow, as clients do it.
    let r = c.send(Method::GET, "/v2/", &Cred::Anonymous, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = header_of(&r, "www-authenticate").unwrap().to_string();
    assert!(
        challenge.starts_with(&format!(
            "Bearer realm=\"{}/auth/token\",service=\"berth-registry\"",
            server.url()
        )),
        "{challenge}"
    );
    let token = c
        .token_for(
            &Cred::Anonymous,
            &["repository:open/app:pull,push", "repository:team/app:pull"],
        )
        .await;
    let granted = claims(&token);
    assert_eq!(
        granted["access"],
        json!([{"type": "repository", "name": "open/app", "actions": ["pull"]}])
    );
    let r = c
        .send(
            Method::GET,
            "/v2/open/app/manifests/v1",
            &Cred::Bearer(token.clone()),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .send(Method::GET, "/v2/", &Cred::Bearer(token), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Forged and stale tokens are refused: another key, `alg: none`, expired,
/// another audience or issuer, a widened scope, an unknown key id. A token
/// forged with the real key (read from the database) is accepted, which
/// shows the forgeries fail for the reason tested and not another.
#[tokio::test]
async fn forged_tokens_are_refused() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let server = common::Server::start_secured();
    let c = Client::new(&server);
    populate(&server, &c).await;
    let dev = Cred::Basic("dev".into(), PASSWORD.into());
    let real = c.token_for(&dev, &["repository:team/app:pull"]).await;
    let kid = jsonwebtoken::decode_header(&real).unwrap().kid.unwrap();
    let get = |token: String| {
        let c = &c;
        async move {
            c.send(
                Method::GET,
                "/v2/team/app/manifests/v1",
                &Cred::Bearer(token),
                None,
            )
            .await
            .status()
        }
    };
    assert_eq!(get(real.clone()).await, StatusCode::OK);

    let db = server.db().await;
    let secret: String = sqlx::query_scalar("SELECT secret FROM signing_keys WHERE kid = $1")
        .bind(&kid)
        .fetch_one(&db)
        .await
        .unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .unwrap();
    let sign = |claims: &Value, kid: &str, key: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_string());
        encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
    };
    let base = claims(&real);
    // Control: the real key and unchanged claims.
    assert_eq!(get(sign(&base, &kid, &key)).await, StatusCode::OK);

    assert_eq!(
        get(sign(&base, &kid, b"another key entirely, 32 bytes!")).await,
        StatusCode::UNAUTHORIZED
    );
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&base)
    );
    assert_eq!(get(none).await, StatusCode::UNAUTHORIZED);
    let now = base["iat"].as_i64().unwrap();
    for (field, value) in [
        ("exp", json!(now - 120)),
        ("nbf", json!(now + 600)),
        ("aud", json!("another-registry")),
        ("iss", json!("someone-else")),
        ("use", json!("refresh")),
    ] {
        let mut forged = base.clone();
        forged[field] = value;
        assert_eq!(
            get(sign(&forged, &kid, &key)).await,
            StatusCode::UNAUTHORIZED,
            "{field}"
        );
    }
    assert_eq!(
        get(sign(&base, "no-such-kid", &key)).await,
        StatusCode::UNAUTHORIZED
    );
    // Widen the scope by hand, keeping the real signature.
    let mut widened = base.clone();
    widened["access"][0]["actions"] = json!(["pull", "push"]);
    let parts: Vec<&str> = real.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(&widened), parts[2]);
    let r = c
        .send(
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            &Cred::Bearer(tampered),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A real token for pull does not allow a push.
    let r = c
        .send(
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            &Cred::Bearer(real.clone()),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header_of(&r, "www-authenticate")
        .unwrap()
        .contains("error=\"insufficient_scope\""));

    // Rotation: new tokens use the new key; the old token still works.
    let rotated = c
        .admin(Method::POST, "/api/v1/system/signing-keys", None)
        .await;
    let new_kid = rotated["kid"].as_str().unwrap();
    assert_ne!(new_kid, kid);
    let fresh = c.token_for(&dev, &["repository:team/app:pull"]).await;
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.unwrap(),
        new_kid
    );
    assert_eq!(get(fresh).await, StatusCode::OK);
    assert_eq!(get(real).await, StatusCode::OK);
}

/// Robot accounts: created with a secret shown once, scoped to their project
/// and actions, refused when disabled, expired or rotated away.
#[tokio::test]
async fn robot_accounts() {
    let server = common::Server::start_secured();
    let c = Client::new(&server);
    populate(&server, &c).await;
    let padmin = Cred::Basic("padmin".into(), PASSWORD.into());
    let r = c
        .send(
            Method::POST,
            "/api/v1/projects/team/robots",
            &padmin,
            Some(json!({"name": "ci", "actions": ["pull"]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["name"], "robot$team+ci");
    let secret = created["secret"].as_str().unwrap().to_string();
    let robot = Cred::Basic("robot$team+ci".into(), secret.clone());
    // The secret is never shown again.
    let r = c
        .send(
            Method::GET,
            "/api/v1/projects/team/robots/robot$team+ci",
            &padmin,
            None,
        )
        .await;
    let shown = r.text().await.unwrap();
    assert!(
        !shown.contains(&secret) && shown.contains("\"pull\""),
        "{shown}"
    );
    // Pull-only: pull works, push is not granted.
    let token = c
        .token_for(&robot, &["repository:team/app:pull,push"])
        .await;
    assert_eq!(claims(&token)["access"][0]["actions"], json!(["pull"]));
    assert_eq!(claims(&token)["kind"], "robot");
    let r = c
        .send(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &Cred::Bearer(token.clone()),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .send(
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            &Cred::Bearer(token),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .send(Method::POST, "/v2/team/app/blobs/uploads/", &robot, None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Nothing in another project, even a public one's push.
    let r = c
        .send(Method::POST, "/v2/open/app/blobs/uploads/", &robot, None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A project robot cannot reach into another project; a maintainer cannot create robots.
    let r = c
        .send(
            Method::POST,
            "/api/v1/projects/team/robots",
            &Cred::Basic("maint".into(), PASSWORD.into()),
            Some(json!({"name": "m", "actions": ["pull"]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .send(
            Method::POST,
            "/api/v1/projects/team/robots",
            &padmin,
            Some(json!({"name": "bad", "actions": ["manage_members"]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A system robot with push in two projects.
    let sys: Value = c
        .admin(
            Method::POST,
            "/api/v1/robots",
            Some(json!({"name": "deployer", "permissions": [
                {"project": "team", "actions": ["pull", "push"]},
                {"project": "open", "actions": ["pull"]}]})),
        )
        .await;
    let deployer = Cred::Basic(
        sys["name"].as_str().unwrap().into(),
        sys["secret"].as_str().unwrap().into(),
    );
    let token = c
        .token_for(
            &deployer,
            &[
                "repository:team/app:pull,push",
                "repository:open/app:pull,push",
            ],
        )
        .await;
    assert_eq!(
        claims(&token)["access"],
        json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
               {"type": "repository", "name": "open/app", "actions": ["pull"]}])
    );
    // Rotation: the old secret stops working at once.
    let rotated = c
        .send(
            Method::POST,
            "/api/v1/projects/team/robots/robot$team+ci/secret",
            &padmin,
            None,
        )
        .await;
    let rotated: Value = rotated.json().await.unwrap();
    let r = c.token(&robot, &["repository:team/app:pull"]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let robot = Cred::Basic(
        "robot$team+ci".into(),
        rotated["secret"].as_str().unwrap().into(),
    );
    assert_eq!(c.token(&robot, &[]).await.status(), StatusCode::OK);
    // Disabled: refused.
    let r = c
        .send(
            Method::PATCH,
            "/api/v1/projects/team/robots/robot$team+ci",
            &padmin,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        c.token(&robot, &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Deleted with the rest: delete the robot, then its name is free again.
    let r = c
        .send(
            Method::DELETE,
            "/api/v1/projects/team/robots/robot$team+ci",
            &padmin,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .send(Method::GET, "/api/v1/projects/team/robots", &padmin, None)
        .await;
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    // An expired robot is refused.
    let r = c
        .send(
            Method::POST,
            "/api/v1/projects/team/robots",
            &padmin,
            Some(json!({"name": "old", "actions": ["pull"], "expires_in_days": 1})),
        )
        .await;
    let old: Value = r.json().await.unwrap();
    let db = server.db().await;
    sqlx::query("UPDATE robots SET expires_at = 1 WHERE name = 'robot$team+old'")
        .execute(&db)
        .await
        .unwrap();
    let old = Cred::Basic(
        "robot$team+old".into(),
        old["secret"].as_str().unwrap().into(),
    );
    assert_eq!(c.token(&old, &[]).await.status(), StatusCode::UNAUTHORIZED);
}

/// Failed logins are throttled per account: after five, even the right
/// password is refused for a while, with Retry-After.
#[tokio::test]
async fn failed_logins_are_throttled() {
    // Debug logging, so that the check below covers everything logged.
    let server = common::Server::start_with_env(
        &[],
        &[("BERTH_AUTH_MODE", "token"), ("BERTH_LOG", "debug")],
    );
    let c = Client::new(&server);
    c.admin(
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": "victim", "password": PASSWORD})),
    )
    .await;
    let wrong = Cred::Basic("victim".into(), "guess".into());
    for _ in 0..5 {
        assert_eq!(
            c.token(&wrong, &[]).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let right = Cred::Basic("victim".into(), PASSWORD.into());
    let r = c.token(&right, &[]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header_of(&r, "retry-after").is_some());
    // Another account from the same address is not affected.
    assert_eq!(c.token(&admin(), &[]).await.status(), StatusCode::OK);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(c.token(&right, &[]).await.status(), StatusCode::OK);
    assert!(!server.log().contains(PASSWORD) && !server.log().contains("guess"));
}

/// A login attempt as if through a proxy that wrote `X-Forwarded-For`.
async fn login_from(c: &Client, forwarded_for: &str, user: &str, password: &str) -> StatusCode {
    c.http
        .get(format!("{}/auth/token?service=berth-registry", c.base))
        .basic_auth(user, Some(password))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
}

/// Twenty failed logins, each to another account (`nobody<i>`), with the
/// `X-Forwarded-For` that `forwarded_for(i)` gives.
async fn fail_twenty_logins(c: &Client, forwarded_for: impl Fn(u32) -> String) {
    for i in 0..20 {
        let status = login_from(c, &forwarded_for(i), &format!("nobody{i}"), "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

/// The address the audit log gives for `actor`'s login.
async fn audited_login_address(c: &Client, actor: &str) -> Value {
    // Audit events are written within a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let log = c
        .admin(
            Method::GET,
            "/api/v1/audit-logs?action=login&limit=500",
            None,
        )
        .await;
    log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["actor"] == actor)
        .map(|e| e["address"].clone())
        .expect("login audited")
}

/// Failures from one address throttle that address: twenty failed logins
/// from a client behind a trusted proxy block that client only, and the
/// audit log names it. Without the proxy trusted, the header is ignored, so
/// a client cannot dodge the throttle by writing it.
#[tokio::test]
async fn client_address_behind_a_trusted_proxy() {
    let behind_proxy = common::Server::start_with_env(
        &[],
        &[
            ("BERTH_AUTH_MODE", "token"),
            ("BERTH_TRUSTED_PROXIES", "127.0.0.0/8"),
            ("BERTH_LOG", "info"),
        ],
    );
    let c = Client::new(&behind_proxy);
    let pw = common::ADMIN_PASSWORD;
    // A forged entry left of the proxy's own is ignored.
    fail_twenty_logins(&c, |i| format!("198.51.100.{i}, 203.0.113.5")).await;
    assert_eq!(
        login_from(&c, "203.0.113.5", "admin", pw).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&c, "203.0.113.6", "admin", pw).await,
        StatusCode::OK
    );
    assert_eq!(c.token(&admin(), &[]).await.status(), StatusCode::OK);
    assert_eq!(audited_login_address(&c, "nobody3").await, "203.0.113.5");
    // Plain text: no colour codes in a log written to a file.
    assert!(behind_proxy
        .log()
        .contains(" client=203.0.113.5 status=401 "));

    let direct = common::Server::start_secured();
    let c = Client::new(&direct);
    fail_twenty_logins(&c, |i| format!("203.0.113.{i}")).await;
    assert_eq!(
        login_from(&c, "203.0.113.99", "admin", pw).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(audited_login_address(&c, "nobody3").await, "127.0.0.1");
}

/// The OAuth2 POST form (containerd) with refresh tokens.
#[tokio::test]
async fn oauth2_form_and_refresh_tokens() {
    let server = common::Server::start_secured();
    let c = Client::new(&server);
    populate(&server, &c).await;
    let form = [
        ("grant_type", "password"),
        ("username", "dev"),
        ("password", PASSWORD),
        ("service", "berth-registry"),
        ("client_id", "containerd-client"),
        ("access_type", "offline"),
        (
            "scope",
            "repository:team/app:pull,push repository:open/app:pull",
        ),
    ];
    let r = c
        .http
        .post(format!("{}/auth/token", c.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["access"].as_array().unwrap().len(), 2);
    let refresh = body["refresh_token"].as_str().unwrap();
    // A refresh token is not an access token.
    let r = c
        .send(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &Cred::Bearer(refresh.into()),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("service", "berth-registry"),
        ("scope", "repository:team/app:pull"),
    ];
    let r = c
        .http
        .post(format!("{}/auth/token", c.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let r = c
        .send(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &Cred::Bearer(token.into()),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let bad = [
        ("grant_type", "password"),
        ("username", "dev"),
        ("password", "nope"),
    ];
    let r = c
        .http
        .post(format!("{}/auth/token", c.base))
        .form(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .http
        .post(format!("{}/auth/token", c.base))
        .form(&[("grant_type", "magic")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Pushes, pulls, deletes, logins (good and bad) and management changes are
/// audited with who, what, when and where from; the log filters and pages.
#[tokio::test]
async fn audit_log() {
    let server = common::Server::start_secured();
    let c = Client::new(&server);
    let digests = populate(&server, &c).await;
    let dev = Cred::Basic("dev".into(), PASSWORD.into());
    let token = c.token_for(&dev, &["repository:team/app:pull"]).await;
    let r = c
        .send(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &Cred::Bearer(token),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        c.token(&Cred::Basic("dev".into(), "wrong-password".into()), &[])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = c
        .send(
            Method::DELETE,
            &format!("/v2/open/app/manifests/{}", digests["open"]),
            &admin(),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Events are written within a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let all = c
        .admin(Method::GET, "/api/v1/audit-logs?limit=500", None)
        .await;
    let items = all["items"].as_array().unwrap();
    let find = |action: &str, actor: &str, outcome: &str| {
        items
            .iter()
            .find(|e| e["action"] == action && e["actor"] == actor && e["outcome"] == outcome)
            .cloned()
    };
    let pull = find("pull", "dev", "success").expect("pull audited");
    assert_eq!(pull["resource"], "team/app:v1");
    assert_eq!(pull["project"], "team");
    assert_eq!(pull["address"], "127.0.0.1");
    assert_eq!(pull["detail"], digests["team"].as_str());
    let push = items
        .iter()
        .find(|e| e["action"] == "push" && e["resource"] == "team/app:v1")
        .expect("push audited");
    assert_eq!(push["actor"], "admin");
    assert_eq!(push["detail"], digests["team"].as_str());
    assert!(find("login", "dev", "failure").is_some());
    assert!(find("login", "dev", "success").is_some());
    let delete = find("delete", "admin", "success").expect("delete audited");
    assert_eq!(delete["resource"], format!("open/app@{}", digests["open"]));
    let member = items
        .iter()
        .find(|e| e["action"] == "member.set" && e["project"] == "team")
        .expect("member change audited");
    assert_eq!(member["resource"], "/api/v1/projects/team/members/lguest"); // the last one set
    assert_eq!(member["actor"], "admin");
    // Filters and paging.
    let filtered = c
        .admin(
            Method::GET,
            "/api/v1/audit-logs?actor=dev&action=pull",
            None,
        )
        .await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    let page1 = c
        .admin(Method::GET, "/api/v1/audit-logs?limit=3", None)
        .await;
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = c
        .admin(
            Method::GET,
            &format!("/api/v1/audit-logs?limit=3&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(page1["items"][0]["id"], items[0]["id"]);
    assert_eq!(page2["items"][0]["id"], items[3]["id"]);
    // A project's log holds that project's events only; a limited guest may not read it.
    let guest = Cred::Basic("guest".into(), PASSWORD.into());
    let r = c
        .send(
            Method::GET,
            "/api/v1/projects/team/audit-logs?limit=500",
            &guest,
            None,
        )
        .await;
    let team: Value = r.json().await.unwrap();
    assert!(team["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["project"] == "team"));
    assert!(!team["items"].as_array().unwrap().is_empty());
    let r = c
        .send(
            Method::GET,
            "/api/v1/projects/team/audit-logs",
            &Cred::Basic("lguest".into(), PASSWORD.into()),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// With `auto_create_projects`, a user's push creates the project, private,
/// with the pusher as its admin; without it, the push is refused.
#[tokio::test]
async fn pushing_into_a_new_project() {
    let server = common::Server::start_secured();
    let c = Client::new(&server);
    c.admin(
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": "alice", "password": PASSWORD})),
    )
    .await;
    let alice = Cred::Basic("alice".into(), PASSWORD.into());
    let r = c
        .send(Method::POST, "/v2/fresh/app/blobs/uploads/", &alice, None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    drop(server);
    let server = common::Server::start_with_env(
        &[],
        &[
            ("BERTH_AUTH_MODE", "token"),
            ("BERTH_AUTH_AUTO_CREATE_PROJECTS", "true"),
        ],
    );
    let c = Client::new(&server);
    c.admin(
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": "alice", "password": PASSWORD})),
    )
    .await;
    let token = c
        .token_for(&alice, &["repository:fresh/app:pull,push"])
        .await;
    assert_eq!(
        claims(&token)["access"][0]["actions"],
        json!(["pull", "push"])
    );
    let project = c.admin(Method::GET, "/api/v1/projects/fresh", None).await;
    assert_eq!(project["public"], false);
    let members = c
        .admin(Method::GET, "/api/v1/projects/fresh/members", None)
        .await;
    assert_eq!(
        members,
        json!([{"username": "alice", "role": "project_admin"}])
    );
}

/// The last administrator cannot be demoted or deleted, and nobody changes
/// their own account through the administrators' route.
#[tokio::test]
async fn administrators_cannot_lock_everyone_out() {
    let server = common::Server::start_secured();
    let c = Client::new(&server);
    let r = c
        .send(
            Method::PATCH,
            "/api/v1/users/admin",
            &admin(),
            Some(json!({"admin": false})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = c
        .send(Method::DELETE, "/api/v1/users/admin", &admin(), None)
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    c.admin(
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": "second", "password": PASSWORD, "admin": true})),
    )
    .await;
    let second = Cred::Basic("second".into(), PASSWORD.into());
    // Now `second` may demote `admin`, and then not itself be demoted by anyone.
    let r = c
        .send(
            Method::PATCH,
            "/api/v1/users/admin",
            &second,
            Some(json!({"admin": false})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.send(Method::GET, "/api/v1/users", &admin(), None).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "admin is no longer an administrator"
    );
    let r = c
        .send(Method::DELETE, "/api/v1/users/second", &second, None)
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Passwords: one's own through /users/current/password, with the current one.
    let r = c
        .send(
            Method::PUT,
            "/api/v1/users/current/password",
            &second,
            Some(json!({"current": "nope", "new": "new-password"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .send(
            Method::PUT,
            "/api/v1/users/current/password",
            &second,
            Some(json!({"current": PASSWORD, "new": "new-password"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        c.token(&second, &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let second = Cred::Basic("second".into(), "new-password".into());
    assert_eq!(c.token(&second, &[]).await.status(), StatusCode::OK);
}

/// `auth.mode = "basic"`: credentials on every request, a Basic challenge,
/// the same permissions.
#[tokio::test]
async fn basic_mode() {
    let server = common::Server::start_with_env(&[], &[("BERTH_AUTH_MODE", "basic")]);
    let c = Client::new(&server);
    populate(&server, &c).await;
    let r = c.send(Method::GET, "/v2/", &Cred::Anonymous, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_of(&r, "www-authenticate"),
        Some("Basic realm=\"berth\"")
    );
    let r = c
        .send(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &Cred::Anonymous,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_of(&r, "www-authenticate"),
        Some("Basic realm=\"berth\"")
    );
    let guest = Cred::Basic("guest".into(), PASSWORD.into());
    let r = c
        .send(Method::GET, "/v2/team/app/manifests/v1", &guest, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .send(Method::POST, "/v2/team/app/blobs/uploads/", &guest, None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let wrong = Cred::Basic("guest".into(), "not-the-password".into());
    let r = c
        .send(Method::GET, "/v2/open/app/manifests/v1", &wrong, None)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "wrong credentials are an error even where anonymous would do"
    );
    // Anonymous pulls of a public project need no credentials at all.
    let r = c
        .send(
            Method::GET,
            "/v2/open/app/manifests/v1",
            &Cred::Anonymous,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// The scopes a `WWW-Authenticate` Bearer challenge names.
fn challenged_scopes(r: &reqwest::Response) -> Vec<String> {
    let value = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    value
        .split("scope=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|s| s.split(' ').map(str::to_string).collect())
        .unwrap_or_default()
}

/// A cross-repository mount through the token flow, made as a client that
/// builds its token request from the challenge makes it (oras-go, the OCI
/// conformance suite): the challenge names pull on the source as well, so
/// the token can mount and the answer is 201, not a 202 upload. A token
/// without that scope is challenged again; a user who may not read the
/// source gets a token without it, and uploads instead.
#[tokio::test]
async fn cross_repository_mount_through_the_token_flow() {
    let server = common::Server::start_secured();
    let c = Client::new(&server);
    populate(&server, &c).await;
    let api = Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let blob = api.push_blob("team/app", b"a layer to mount").await;
    let dev = Cred::Basic("dev".into(), PASSWORD.into());
    let mount = |to: &str| format!("/v2/{to}/blobs/uploads/?mount={blob}&from=team/app");

    // Unauthenticated: the challenge names both repositories.
    let r = c
        .send(Method::POST, &mount("team/copy"), &Cred::Anonymous, None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let scopes = challenged_scopes(&r);
    assert_eq!(
        scopes,
        ["repository:team/copy:pull,push", "repository:team/app:pull"]
    );
    // A token for exactly what the challenge lists mounts.
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let token = c.token_for(&dev, &scopes).await;
    let r = c
        .send(
            Method::POST,
            &mount("team/copy"),
            &Cred::Bearer(token),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("/v2/team/copy/blobs/{blob}")
    );
    let r = api.get(&format!("/v2/team/copy/blobs/{blob}")).await;
    assert_eq!(r.bytes().await.unwrap(), &b"a layer to mount"[..]);

    // A token asked for the target alone is challenged for the source.
    let token = c
        .token_for(&dev, &["repository:team/other:pull,push"])
        .await;
    let r = c
        .send(
            Method::POST,
            &mount("team/other"),
            &Cred::Bearer(token),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("repository:team/app:pull"),
        "{challenge}"
    );

    // Someone who may push to the target but not read the source: the
    // token leaves the source out, the mount is refused, an upload works.
    c.admin(
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "solo", "public": false})),
    )
    .await;
    c.admin(
        Method::PUT,
        "/api/v1/projects/solo/members/outsider",
        Some(json!({"role": "developer"})),
    )
    .await;
    let outsider = Cred::Basic("outsider".into(), PASSWORD.into());
    let token = c
        .token_for(
            &outsider,
            &["repository:solo/app:pull,push", "repository:team/app:pull"],
        )
        .await;
    assert!(!claims(&token)["access"].to_string().contains("team/app"));
    let bearer = Cred::Bearer(token);
    let r = c
        .send(Method::POST, &mount("solo/app"), &bearer, None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .send(Method::POST, "/v2/solo/app/blobs/uploads/", &bearer, None)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}
