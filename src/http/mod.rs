//! The HTTP surface: routing, the per-request log line and metrics, health
//! endpoints. Handlers call the registry service and never touch storage.

mod api;
mod authentication;
mod client;
mod error;
mod harbor;
mod routes;
mod token;
mod v2;

pub use api::openapi;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use crate::audit::AuditLog;
use crate::auth::Auth;
use crate::journal::Journal;
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::policy::Policy;
use crate::registry::Registry;
use crate::scanning::Scanner;
use crate::workers::StatusTable;

pub struct AppState {
    pub registry: Arc<Registry>,
    pub auth: Arc<Auth>,
    pub policy: Arc<Policy>,
    pub audit: Arc<AuditLog>,
    /// Where management requests are recorded.
    pub journal: Arc<Journal>,
    /// Every background worker's state.
    pub workers: StatusTable,
    pub scanner: Arc<Scanner>,
    /// Harbor's scanner adapter, when enabled.
    pub harbor: Option<Arc<crate::scanning::harbor::Adapter>>,
    pub metrics: Metrics,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// A request body as the registry takes it.
pub(crate) fn body_stream(body: axum::body::Body) -> crate::registry::ByteStream {
    use futures_util::{StreamExt, TryStreamExt};
    body.into_data_stream()
        .map_err(std::io::Error::other)
        .boxed()
}

/// Counts an upload request in the in-flight gauge while alive.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.uploads_in_flight.dec();
    }
}

impl AppState {
    pub fn upload_in_flight(&self) -> InFlight<'_> {
        self.metrics.uploads_in_flight.inc();
        InFlight(&self.metrics)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    if let Some(adapter) = &state.harbor {
        router = router.merge(harbor::router(state.clone(), adapter.prefix()));
    }
    router
        .route("/v2", any(v2::dispatch))
        .route("/v2/", any(v2::dispatch))
        .route("/v2/{*path}", any(v2::dispatch))
        .route("/auth/token", any(token::token))
        .merge(api::router(state.clone()))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// A probe waits this long at most: while the database is unreachable,
/// taking a connection would wait for the pool's timeout (10 s), longer than
/// probes wait.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let checked = tokio::time::timeout(READY_TIMEOUT, state.registry.ready())
        .await
        .unwrap_or_else(|_| {
            Err(crate::registry::RegistryError::MetadataUnavailable(
                "no connection within 2 s".into(),
            ))
        });
    match checked {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "metadata database unavailable",
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Ok(bytes) = state.registry.storage_bytes().await {
        state.metrics.storage_bytes.set(bytes);
    }
    if let Ok((queued, running)) = state.scanner.queue().await {
        state.metrics.scans_queued.set(queued);
        state.metrics.scans_running.set(running);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

fn length(headers: &axum::http::HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

/// One structured log line and the metrics of every request.
async fn observe(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let client = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|peer| client::client_address(peer.0.ip(), request.headers(), &state.trusted_proxies));
    if let Some(ip) = client {
        request.extensions_mut().insert(client::ClientAddress(ip));
    }
    let client = client.map(tracing::field::display);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let bytes_in = length(request.headers());
    let mut response = next.run(request).await;
    let elapsed = start.elapsed();
    if path.starts_with("/v2") {
        response.headers_mut().insert(
            header::HeaderName::from_static("docker-distribution-api-version"),
            HeaderValue::from_static("registry/2.0"),
        );
    }
    let status = response.status();
    let bytes_out = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .unwrap_or_else(|| length(response.headers()));
    let route = match response.extensions().get::<v2::RouteLabel>() {
        Some(label) => label.0,
        None if path.starts_with("/v2") => "v2_other",
        None if path.starts_with("/api/") => "api",
        None if path.starts_with("/auth/") => "token",
        None if state
            .harbor
            .as_ref()
            .is_some_and(|h| path.starts_with(&format!("{}/", h.prefix()))) =>
        {
            "harbor_adapter"
        }
        None => "ops",
    };
    let m = &state.metrics;
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method: method.to_string(),
            status: status.as_u16(),
        })
        .inc();
    m.latency
        .get_or_create(&RouteLabels {
            route,
            method: method.to_string(),
        })
        .observe(elapsed.as_secs_f64());
    m.bytes_received.inc_by(bytes_in);
    m.bytes_sent.inc_by(bytes_out);
    let error = response
        .extensions()
        .get::<error::ErrorMessage>()
        .map(|e| e.0.as_str());
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::error!(%method, %path, client, status = status.as_u16(), bytes_in, bytes_out, latency_ms, route, error, "request");
    } else if status.is_client_error() {
        tracing::info!(%method, %path, client, status = status.as_u16(), bytes_in, bytes_out, latency_ms, route, error, "request");
    } else {
        tracing::info!(%method, %path, client, status = status.as_u16(), bytes_in, bytes_out, latency_ms, route, "request");
    }
    response
}
