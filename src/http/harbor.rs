//! Harbor's pluggable scanner adapter API (`{prefix}/api/v1/...`), when
//! `[harbor_adapter]` is enabled. Every route passes `guard`, which takes
//! the route's rule from `api::access_table` (`HARBOR_ADAPTER_RULES`) and
//! has `Auth::authorize` decide on the caller Harbor's bearer token makes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use berth_scan::harbor as api;

use super::api::access_table;
use super::authentication;
use super::error::ErrorMessage;
use super::AppState;
use crate::auth::Denial;
use crate::scanning::harbor::{JobState, Refusal, REFRESH_AFTER_SECS};

/// The adapter's routes (below the prefix), each with the method its rule
/// names.
fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("GET", "/api/v1/metadata", get(metadata)),
        ("POST", "/api/v1/scan", post(scan)),
        ("GET", "/api/v1/scan/{id}/report", get(report)),
    ]
}

pub fn router(state: Arc<AppState>, prefix: &str) -> Router<Arc<AppState>> {
    let mut router = Router::new();
    for (_, path, handler) in routes() {
        router = router.route(&format!("{prefix}{path}"), handler);
    }
    router.route_layer(middleware::from_fn_with_state(state, guard))
}

/// The spec's error body, with the message for the request log.
fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_string(&api::ErrorResponse::new(message)).expect("json");
    let mut r = (status, [(header::CONTENT_TYPE, api::ERROR_MIME)], body).into_response();
    r.extensions_mut().insert(ErrorMessage(message.to_string()));
    r
}

fn json(status: StatusCode, mime: &'static str, body: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string(body).expect("json");
    (status, [(header::CONTENT_TYPE, mime)], body).into_response()
}

async fn guard(
    State(state): State<Arc<AppState>>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let Some(adapter) = &state.harbor else {
        return error(StatusCode::NOT_FOUND, "the Harbor adapter is not enabled");
    };
    let path = matched
        .as_str()
        .strip_prefix(adapter.prefix())
        .unwrap_or("");
    let Some(rule) = access_table::harbor_adapter_rule(request.method(), path) else {
        tracing::error!(route = matched.as_str(), method = %request.method(), "Harbor adapter route has no access rule");
        return error(StatusCode::FORBIDDEN, "no access rule for this route");
    };
    let needed = match rule.access(&access_table::Resource::from_params(&[])) {
        Ok(needed) => needed,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let caller = authentication::harbor_adapter_caller(request.headers(), adapter.token_hash());
    for access in &needed {
        match state.auth.authorize(&caller, access).await {
            Ok(()) => {}
            Err(Denial::Unauthenticated) => {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    "a bearer token Berth is configured with is required",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"berth-harbor-adapter\""),
                );
                return r;
            }
            Err(Denial::Forbidden) => return error(StatusCode::FORBIDDEN, "not allowed"),
            Err(Denial::Unavailable) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "try again later")
            }
        }
    }
    next.run(request).await
}

async fn metadata(State(state): State<Arc<AppState>>) -> Response {
    let adapter = state.harbor.as_ref().expect("routed only when enabled");
    match adapter.metadata().await {
        Ok(m) => json(StatusCode::OK, api::METADATA_MIME, &m),
        Err(e) => {
            tracing::error!(error = %e, "Harbor adapter metadata failed");
            let status = if e.is_unavailable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            error(status, "the vulnerability database could not be read")
        }
    }
}

async fn scan(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let adapter = state.harbor.as_ref().expect("routed only when enabled");
    match adapter.submit(&body) {
        Ok(id) => json(
            StatusCode::ACCEPTED,
            api::SCAN_RESPONSE_MIME,
            &api::ScanResponse { id },
        ),
        Err(Refusal::Invalid(m)) => error(StatusCode::BAD_REQUEST, &m),
        Err(Refusal::Unsupported(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, &m),
        Err(Refusal::Busy) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scans are kept; try again later",
        ),
    }
}

/// Whether `Accept` allows Harbor's report (any version of it).
fn accepts_report(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let wanted = api::REPORT_MIME.split(';').next().unwrap_or("");
    accept.split(',').any(|t| {
        let t = t.split(';').next().unwrap_or("").trim();
        t == wanted || t == "*/*" || t == "application/*"
    })
}

async fn report(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let adapter = state.harbor.as_ref().expect("routed only when enabled");
    if !accepts_report(&headers) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("the only report type is {}", api::REPORT_MIME),
        );
    }
    match adapter.state(&id) {
        None => error(
            StatusCode::NOT_FOUND,
            "no such scan (or its report expired)",
        ),
        Some(JobState::Running) => (
            StatusCode::FOUND,
            [("refresh-after", REFRESH_AFTER_SECS.to_string())],
        )
            .into_response(),
        Some(JobState::Done(report)) => json(StatusCode::OK, api::REPORT_MIME, &report),
        Some(JobState::Failed(why)) => error(StatusCode::INTERNAL_SERVER_ERROR, &why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every adapter route has a rule, and every rule a route.
    #[test]
    fn every_route_has_a_rule() {
        let routes = routes();
        for (method, path, _) in &routes {
            let m: axum::http::Method = method.parse().unwrap();
            let rule = access_table::harbor_adapter_rule(&m, path);
            assert!(rule.is_some(), "{method} {path} has no rule");
        }
        assert_eq!(
            routes.len(),
            access_table::HARBOR_ADAPTER_RULES.len(),
            "rules without a route"
        );
    }

    #[test]
    fn accept_headers() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().unwrap());
            accepts_report(&h)
        };
        assert!(accepts_report(&HeaderMap::new()));
        assert!(with(api::REPORT_MIME));
        assert!(with(
            "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.1"
        ));
        assert!(with("*/*"));
        assert!(!with("application/vnd.scanner.adapter.vuln.report.raw"));
    }
}
