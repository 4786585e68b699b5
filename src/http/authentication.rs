//! Authentication of every request and the answers to refused ones. Which
//! `Access` a route needs is stated next to the routes (`v2_access` here for
//! `/v2/`, `api/access_table.rs` for `/api/v1`); the decision is `Auth::authorize`.

use axum::http::{header, Extensions, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;

use super::client::ClientAddress;
use super::error::{database_failure, error_response, UNAVAILABLE};
use super::routes::Route;
use super::AppState;
use crate::auth::{Access, Action, Caller, Denial, LoginError};
use crate::config::AuthMode;
use crate::oci::Reference;

/// Where the request came from, for the audit log and login throttling.
pub fn client_address(extensions: &Extensions) -> String {
    extensions
        .get::<ClientAddress>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.to_string())
}

/// `user:password` of a Basic `Authorization` value.
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Who the request is from. Wrong credentials are an error even where
/// anonymous access would be allowed: a client should learn its password is
/// wrong rather than silently see less.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    address: &str,
) -> Result<Caller, Response> {
    let auth = &state.auth;
    if auth.mode() == AuthMode::Off {
        return Ok(Caller::Anonymous);
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let value = value.to_str().unwrap_or("");
    if let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    {
        let token = token.trim();
        let mut verified = auth.verify_token(token);
        if verified.is_err() && auth.refresh_keys_for(token).await {
            verified = auth.verify_token(token);
        }
        return verified.map(Caller::Token).map_err(|e| {
            let mut r = error_response(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", &e.to_string());
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                challenge(state, headers, &[], Some("invalid_token")),
            );
            r
        });
    }
    let Some((user, password)) = basic_credentials(value) else {
        return Err(unauthorized(
            state,
            headers,
            &[],
            "malformed Authorization header",
        ));
    };
    match auth.login(&user, &password, address).await {
        Ok(principal) => Ok(Caller::Principal(principal)),
        Err(e) => Err(login_failed(state, headers, e)),
    }
}

/// Who a request to Harbor's scanner adapter API is from: Harbor when it
/// presents the bearer token whose SHA-256 is `token_hash` (compared in
/// constant time), anonymous otherwise. Berth's own credentials mean
/// nothing there.
pub fn harbor_adapter_caller(headers: &HeaderMap, token_hash: &[u8; 32]) -> Caller {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match token {
        Some(t) if crate::auth::sha256_is(token_hash, t.trim()) => Caller::HarborAdapter,
        _ => Caller::Anonymous,
    }
}

/// The answer to a failed login.
pub fn login_failed(state: &AppState, headers: &HeaderMap, e: LoginError) -> Response {
    match e {
        LoginError::Invalid => unauthorized(state, headers, &[], &e.to_string()),
        LoginError::Throttled(wait) => {
            let mut r = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                &e.to_string(),
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
            r
        }
        LoginError::Meta(e) => database_failure(&e, "login"),
    }
}

/// The token endpoint a client is sent to.
fn realm(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(realm) = &state.auth.config().realm {
        return realm.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}/auth/token")
}

/// The `WWW-Authenticate` challenge for the configured mode.
pub fn challenge(
    state: &AppState,
    headers: &HeaderMap,
    scopes: &[String],
    error: Option<&str>,
) -> HeaderValue {
    let value = match state.auth.mode() {
        AuthMode::Token => {
            let mut v = format!(
                "Bearer realm=\"{}\",service=\"{}\"",
                realm(state, headers),
                state.auth.config().service
            );
            if !scopes.is_empty() {
                v.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
            }
            if let Some(e) = error {
                v.push_str(&format!(",error=\"{e}\""));
            }
            v
        }
        _ => "Basic realm=\"berth\"".to_string(),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Basic"))
}

fn unauthorized(
    state: &AppState,
    headers: &HeaderMap,
    scopes: &[String],
    message: &str,
) -> Response {
    let mut r = error_response(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        challenge(state, headers, scopes, None),
    );
    r
}

/// The answer to a refused request. It is the same whether or not the
/// resource exists, so a refusal reveals nothing about private repositories.
pub fn refusal(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    denial: Denial,
    needed: &[Access],
) -> Response {
    match denial {
        Denial::Unauthenticated => {
            let scopes: Vec<String> = needed.iter().filter_map(token_scope).collect();
            let mut r = error_response(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            let error = matches!(caller, Caller::Token(_)).then_some("insufficient_scope");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                challenge(state, headers, &scopes, error),
            );
            r
        }
        Denial::Forbidden => error_response(
            StatusCode::FORBIDDEN,
            "DENIED",
            "requested access to the resource is denied",
        ),
        Denial::Unavailable => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, "UNKNOWN", UNAVAILABLE)
        }
    }
}

/// The token scope that grants an access, for challenges.
fn token_scope(access: &Access) -> Option<String> {
    let Access::Repository(repo, action) = access else {
        return None;
    };
    let actions = match action {
        Action::Pull => "pull",
        // Clients ask for both when pushing; granting both is what they expect.
        Action::Push => "pull,push",
        _ => "delete",
    };
    Some(format!("repository:{repo}:{actions}"))
}

/// What a `/v2/` route needs.
pub fn v2_access(route: &Route, method: &Method) -> Vec<Access> {
    let repo_access =
        |repo: &crate::oci::RepositoryName, action| vec![Access::Repository(repo.clone(), action)];
    let write = matches!(*method, Method::PUT | Method::POST | Method::PATCH);
    match route {
        Route::Base | Route::Catalog => vec![Access::Registry],
        Route::Tags(repo) | Route::Referrers(repo, _) => repo_access(repo, Action::Pull),
        Route::Manifest(repo, reference) => match *method {
            Method::DELETE => repo_access(
                repo,
                match reference {
                    Reference::Tag(_) => Action::DeleteTag,
                    Reference::Digest(_) => Action::DeleteArtifact,
                },
            ),
            _ if write => repo_access(repo, Action::Push),
            _ => repo_access(repo, Action::Pull),
        },
        Route::Blob(repo, _) => match *method {
            Method::DELETE => repo_access(repo, Action::DeleteArtifact),
            _ => repo_access(repo, Action::Pull),
        },
        Route::UploadStart(repo) | Route::Upload(repo, _) => repo_access(repo, Action::Push),
    }
}

/// The repository a blob upload asks to mount from (`POST
/// …/blobs/uploads/?mount=<digest>&from=<repository>`), if any.
///
/// A token that lacks pull there cannot mount, and the mount would quietly
/// become an upload; so, as CNCF Distribution does, a token caller needs
/// that scope too, and the challenge names it: a client that asks for the
/// scopes the challenge lists (oras-go, the conformance suite) gets a token
/// that can mount. Whether the caller may pull there is still decided when
/// the token is issued; without it the client's retry fails and it uploads.
pub fn mount_source(
    route: &Route,
    method: &Method,
    mount: Option<&str>,
    from: Option<&str>,
) -> Option<crate::oci::RepositoryName> {
    match (route, method) {
        (Route::UploadStart(_), &Method::POST) if mount.is_some() => from?.parse().ok(),
        _ => None,
    }
}

/// Checks every access a request needs; the first refusal answers it.
pub async fn require(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    needed: &[Access],
) -> Result<(), Response> {
    for access in needed {
        if let Err(denial) = state.auth.authorize(caller, access).await {
            return Err(refusal(state, headers, caller, denial, needed));
        }
    }
    Ok(())
}
