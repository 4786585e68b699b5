//! The management API under `/api/v1`. Routes are registered together with
//! their OpenAPI description (utoipa), so the document served at
//! `/api/v1/openapi.json` is generated from the code and cannot drift from it.
//! Every route passes `guard`, which authenticates the caller, checks the
//! access `access_table::rule` names for the route, and audits changes.

pub(super) mod access_table;
mod audit;
mod compliance;
mod projects;
mod quota;
mod repositories;
mod retention;
mod robots;
mod rules;
mod scans;
mod system;
mod trust;
mod users;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::authentication;
use super::error::{error_response, UNAVAILABLE};
use super::AppState;
use crate::auth::{AccountError, Caller};
use crate::events::{Event, Kind};
use crate::oci::{Digest, Reference, RepositoryName};
use crate::registry::RegistryError;

/// Default and largest page sizes of listings.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// A failed API request: the same JSON error body as the registry API.
#[derive(Debug)]
pub enum ApiFailure {
    NotFound(String),
    Conflict(String),
    Invalid(String),
    Internal(String),
    /// The metadata database could not be reached.
    Unavailable(String),
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiFailure::NotFound(m) => (StatusCode::NOT_FOUND, "NOT_FOUND", m),
            ApiFailure::Conflict(m) => (StatusCode::CONFLICT, "CONFLICT", m),
            ApiFailure::Invalid(m) => (StatusCode::BAD_REQUEST, "INVALID", m),
            ApiFailure::Unavailable(m) => {
                tracing::error!(error = %m, "management API request failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNKNOWN",
                    UNAVAILABLE.to_string(),
                )
            }
            ApiFailure::Internal(m) => {
                tracing::error!(error = %m, "management API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    "internal server error".to_string(),
                )
            }
        };
        error_response(status, code, &message)
    }
}

impl From<AccountError> for ApiFailure {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound(m) => ApiFailure::NotFound(m),
            AccountError::Conflict(m) => ApiFailure::Conflict(m),
            AccountError::Invalid(m) => ApiFailure::Invalid(m),
            AccountError::Meta(e) => e.into(),
        }
    }
}

impl From<crate::meta::MetaError> for ApiFailure {
    fn from(e: crate::meta::MetaError) -> Self {
        if e.is_unavailable() {
            ApiFailure::Unavailable(e.to_string())
        } else {
            ApiFailure::Internal(e.to_string())
        }
    }
}

impl From<RegistryError> for ApiFailure {
    fn from(e: RegistryError) -> Self {
        use RegistryError::*;
        match e {
            NameUnknown | BlobUnknown | ManifestUnknown | NoSuchManifest(_) => {
                ApiFailure::NotFound(e.to_string())
            }
            Referenced(m) | Denied(m) => ApiFailure::Conflict(m),
            Internal(m) => ApiFailure::Internal(m),
            StorageUnavailable(m) | MetadataUnavailable(m) => ApiFailure::Unavailable(m),
            e => ApiFailure::Invalid(e.to_string()),
        }
    }
}

type ApiResult<T> = Result<T, ApiFailure>;

/// The repository `{project}/{repository}` of an artifact route and the
/// manifest `reference` names there. Read without the admission point:
/// these are management views of the artifact (its scan, its signatures),
/// whose access the route's rule decides, not the content handed out.
async fn artifact(
    state: &AppState,
    (project, repository, reference): &(String, String, String),
) -> ApiResult<(RepositoryName, Arc<crate::meta::StoredManifest>)> {
    let repo: RepositoryName = format!("{project}/{repository}")
        .parse()
        .map_err(|e| ApiFailure::Invalid(format!("repository: {e}")))?;
    let reference: Reference = reference
        .parse()
        .map_err(|e| ApiFailure::Invalid(format!("reference {reference:?}: {e}")))?;
    let manifest = state.registry.lookup_manifest(&repo, &reference).await?;
    Ok((repo, manifest))
}

/// [`artifact`], with the manifest's digest.
async fn artifact_digest(
    state: &AppState,
    path: &(String, String, String),
) -> ApiResult<(RepositoryName, Digest)> {
    let (repo, manifest) = artifact(state, path).await?;
    Ok((repo, manifest.digest.clone()))
}

/// `Json`, `Query` and `Path` whose rejections are JSON errors like the rest.
pub struct ApiJson<T>(pub T);
pub struct ApiQuery<T>(pub T);
pub struct ApiPath<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiFailure;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiFailure> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|j| ApiJson(j.0))
            .map_err(|e: JsonRejection| ApiFailure::Invalid(e.body_text()))
    }
}

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiFailure;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiFailure> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiFailure::Invalid(e.body_text()))
    }
}

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiFailure;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiFailure> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiFailure::Invalid(e.body_text()))
    }
}

/// Paging of listings: `limit` items after the opaque `cursor`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    fn limit(&self) -> ApiResult<u32> {
        check_limit(self.limit)
    }

    fn cursor(&self) -> &str {
        self.cursor.as_deref().unwrap_or("")
    }
}

/// A page size: 1 to 500, 50 when not given.
fn check_limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(ApiFailure::Invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `limit + 1` fetched items: the extra one says more follow.
    fn of<U>(
        mut items: Vec<U>,
        limit: u32,
        cursor: impl Fn(&U) -> String,
        f: impl Fn(U) -> T,
    ) -> Page<T> {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more {
            items.last().map(&cursor)
        } else {
            None
        };
        Page {
            items: items.into_iter().map(f).collect(),
            next_cursor,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth management API",
        description = "Projects, members, users, robot accounts, repositories, artifacts and the audit log. \
Authenticate with HTTP Basic (user or robot credentials) or a Bearer token from /auth/token. \
Errors have the body {\"errors\": [{\"code\", \"message\", \"detail\"}]}. Times are Unix milliseconds.",
        version = "1"
    ),
    security(("basic" = []), ("bearer" = []))
)]
struct ApiDoc;

/// The error body every failed request has.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorItem {
    /// NOT_FOUND, CONFLICT, INVALID, UNAUTHORIZED, DENIED, TOOMANYREQUESTS, UNKNOWN.
    pub code: String,
    pub message: String,
    pub detail: serde_json::Value,
}

struct CommonParts;

impl utoipa::Modify for CommonParts {
    /// Security schemes, and the failures every operation can have (bad
    /// input, authentication, refusal, throttled logins), with their body.
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        use utoipa::PartialSchema;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components
            .schemas
            .insert("ErrorBody".into(), ErrorBody::schema());
        components
            .schemas
            .insert("ErrorItem".into(), ErrorItem::schema());
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let mut add = |code: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(description).into());
                };
                add("400", "invalid parameters or body");
                add("401", "not authenticated, or wrong credentials");
                add("403", "not allowed");
                add("404", "not found");
                add("429", "too many failed logins from this account or address");
            }
        }
    }
}

/// Every route of the API, with its OpenAPI description.
fn routes() -> OpenApiRouter<Arc<AppState>> {
    use utoipa_axum::routes;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::get, projects::update, projects::delete))
        .routes(routes!(projects::members))
        .routes(routes!(projects::set_member, projects::remove_member))
        .routes(routes!(projects::repositories))
        .routes(routes!(robots::project_list, robots::project_create))
        .routes(routes!(
            robots::project_get,
            robots::project_update,
            robots::project_delete
        ))
        .routes(routes!(robots::project_rotate))
        .routes(routes!(robots::system_list, robots::system_create))
        .routes(routes!(
            robots::system_get,
            robots::system_update,
            robots::system_delete
        ))
        .routes(routes!(robots::system_rotate))
        .routes(routes!(repositories::artifacts))
        .routes(routes!(repositories::delete_artifact))
        .routes(routes!(repositories::tags))
        .routes(routes!(repositories::delete_tag))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::current))
        .routes(routes!(users::change_password))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(rules::list, rules::create))
        .routes(routes!(trust::list, trust::create))
        .routes(routes!(trust::replace, trust::delete))
        .routes(routes!(trust::signatures))
        .routes(routes!(quota::set))
        .routes(routes!(quota::usage))
        .routes(routes!(retention::list, retention::create))
        .routes(routes!(retention::delete))
        .routes(routes!(retention::run, retention::runs))
        .routes(routes!(rules::delete))
        .routes(routes!(rules::system_list, rules::system_create))
        .routes(routes!(rules::system_delete))
        .routes(routes!(compliance::get))
        .routes(routes!(compliance::dry_run))
        .routes(routes!(audit::list))
        .routes(routes!(audit::project_list))
        .routes(routes!(system::rotate_signing_key))
        .routes(routes!(system::gc, system::start_gc))
        .routes(routes!(system::check))
        .routes(routes!(system::workers))
        .routes(routes!(scans::request, scans::status))
        .routes(routes!(scans::vulnerabilities))
        .routes(routes!(scans::sbom))
        .routes(routes!(scans::composition))
        .routes(routes!(scans::vulndb, scans::import))
}

/// The document with what applies to every operation, once all are known.
fn completed(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    utoipa::Modify::modify(&CommonParts, &mut doc);
    doc
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    completed(routes().into_openapi())
}

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let (router, doc) = routes().split_for_parts();
    let doc = completed(doc);
    let doc = Arc::new(doc.to_json().expect("the OpenAPI document serializes"));
    router
        .route_layer(middleware::from_fn_with_state(state, guard))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], (*doc).clone()) }
            }),
        )
}

/// Authenticates, authorizes from the route's rule, hands the caller to the
/// handler, and audits every change (and every refused one).
async fn guard(
    State(state): State<Arc<AppState>>,
    matched: MatchedPath,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let address = authentication::client_address(request.extensions());
    let headers = request.headers().clone();
    let Some(rule) = access_table::rule(&method, matched.as_str()) else {
        // A route without a rule is a bug: refuse it to everyone.
        tracing::error!(route = matched.as_str(), %method, "API route has no access rule");
        return error_response(
            StatusCode::FORBIDDEN,
            "DENIED",
            "no access rule for this route",
        );
    };
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let resource = access_table::Resource::from_params(&params);
    let needed = match rule.access(&resource) {
        Ok(needed) => needed,
        Err(message) => return ApiFailure::Invalid(message).into_response(),
    };
    // Recorded in the journal before the answer leaves (see `journal.rs`).
    let audit = |caller: &Caller, succeeded: bool, detail: Option<String>| {
        if rule.audited() && !(succeeded && rule.recorded_by_event()) {
            let target = request_target(&matched, &params);
            let mut event = Event::new(
                Kind::Request(rule.operation.to_string()),
                &caller.actor(&address),
                crate::meta::now_millis(),
            )
            .about(resource.project(), &target);
            event.detail = detail;
            if !succeeded {
                event = event.failed();
            }
            state.journal.event(event);
        }
    };
    let caller = match authentication::authenticate(&state, &headers, &address).await {
        Ok(c) => c,
        Err(r) => return api_challenge(r),
    };
    if let Err(r) = authentication::require(&state, &headers, &caller, &needed).await {
        audit(&caller, false, Some(format!("refused: {}", r.status())));
        return api_challenge(r);
    }
    request.extensions_mut().insert(caller.clone());
    request.extensions_mut().insert(caller.actor(&address));
    let response = next.run(request).await;
    let succeeded = response.status().is_success();
    audit(
        &caller,
        succeeded,
        (!succeeded).then(|| response.status().to_string()),
    );
    response
}

/// The API is used with Basic credentials or a token in hand, so its 401s
/// challenge for Basic rather than sending clients to the token endpoint.
fn api_challenge(mut r: Response) -> Response {
    if r.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"berth\""),
        );
    }
    r
}

/// The route with its parameters filled in, for the audit log.
fn request_target(matched: &MatchedPath, params: &[(String, String)]) -> String {
    let mut target = matched.as_str().to_string();
    for (k, v) in params {
        target = target.replace(&format!("{{{k}}}"), v);
    }
    target
}

/// The caller, as `guard` established it, and how events name them.
pub struct Who(pub Caller, pub crate::events::Actor);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = ApiFailure;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiFailure> {
        let missing = || ApiFailure::Internal("route without the access guard".into());
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(missing)?;
        let actor = parts
            .extensions
            .get::<crate::events::Actor>()
            .cloned()
            .ok_or_else(missing)?;
        Ok(Who(caller, actor))
    }
}

impl Who {
    /// The signed-in identity (the guard let only signed-in callers reach
    /// routes that need one).
    async fn principal(&self, state: &AppState) -> ApiResult<Option<crate::auth::Principal>> {
        Ok(state.auth.principal_of(&self.0).await?)
    }

    async fn name(&self, state: &AppState) -> ApiResult<String> {
        Ok(self
            .principal(state)
            .await?
            .map_or_else(|| "anonymous".to_string(), |p| p.name().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented route has an access rule, and every rule a route.
    #[test]
    fn every_route_has_a_rule() {
        let doc = openapi();
        let mut n = 0;
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    let m: axum::http::Method = method.parse().unwrap();
                    assert!(
                        access_table::rule(&m, path).is_some(),
                        "{method} {path} has no rule"
                    );
                    n += 1;
                }
            }
        }
        assert_eq!(n, access_table::RULES.len(), "rules without a route");
    }
}
