//! The token endpoint (`/auth/token`) of the Docker token-auth flow: GET with
//! optional Basic credentials (docker, podman, skopeo), and the OAuth2 POST
//! form (containerd, and refresh tokens). It grants, of the scopes asked,
//! what the caller may do, and only that.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::authentication::{basic_credentials, client_address, login_failed};
use super::error::{database_failure, error_response};
use super::AppState;
use crate::auth::{Caller, Principal, Scope};

/// Largest token request body read.
const MAX_FORM: usize = 64 * 1024;

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "UNSUPPORTED", message)
}

pub async fn token(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let address = client_address(&parts.extensions);
    let query = parts.uri.query().unwrap_or("");
    let Ok(mut params) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return bad_request("malformed query string");
    };
    let principal = if parts.method == Method::POST {
        let Ok(body) = axum::body::to_bytes(body, MAX_FORM).await else {
            return bad_request("token request body too large or unreadable");
        };
        match form_grant(&state, &parts.headers, &body, &address, &mut params).await {
            Ok(p) => p,
            Err(r) => return r,
        }
    } else if parts.method == Method::GET {
        match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => {
                let Some((user, password)) = basic_credentials(v.to_str().unwrap_or("")) else {
                    return bad_request("only Basic credentials are accepted here");
                };
                match state.auth.login(&user, &password, &address).await {
                    Ok(p) => Some(p),
                    Err(e) => return login_failed(&state, &parts.headers, e),
                }
            }
        }
    } else {
        let mut r = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "use GET or POST",
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
        return r;
    };
    let scopes = Scope::parse_all(
        params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    let offline = param(&params, "offline_token") == Some("true")
        || param(&params, "access_type") == Some("offline");
    let issued = match state
        .auth
        .issue_token(principal.as_ref(), &scopes, offline)
        .await
    {
        Ok(t) => t,
        Err(e) => return database_failure(&e, "issuing a token"),
    };
    if let Some(p) = &principal {
        let caller = Caller::Principal(p.clone());
        let asked: Vec<&str> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
            .collect();
        state.auth.record_login(
            &caller.actor(&address),
            (!asked.is_empty()).then(|| format!("scope: {}", asked.join(" "))),
        );
    }
    let mut body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
    });
    if let Some(refresh) = issued.refresh_token {
        body["refresh_token"] = json!(refresh);
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The OAuth2 form: `grant_type=password` or `refresh_token`. Its fields
/// join the query parameters (scope, service, access_type).
async fn form_grant(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    address: &str,
    params: &mut Vec<(String, String)>,
) -> Result<Option<Principal>, Response> {
    let form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|_| bad_request("malformed form body"))?;
    // The form's `scope` is space-separated; Scope::parse_all splits it.
    params.extend(form.iter().cloned());
    match param(&form, "grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (param(&form, "username"), param(&form, "password"))
            else {
                return Err(bad_request("username and password are required"));
            };
            state
                .auth
                .login(user, password, address)
                .await
                .map(Some)
                .map_err(|e| login_failed(state, headers, e))
        }
        Some("refresh_token") => {
            let Some(token) = param(&form, "refresh_token") else {
                return Err(bad_request("refresh_token is required"));
            };
            match state.auth.redeem_refresh_token(token).await {
                Ok(Some(p)) => Ok(Some(p)),
                Ok(None) => Err(error_response(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "the refresh token is not valid",
                )),
                Err(e) => Err(database_failure(&e, "redeeming a refresh token")),
            }
        }
        _ => Err(bad_request("grant_type must be password or refresh_token")),
    }
}
