//! Handlers of the distribution API (`/v2/...`). They translate HTTP to
//! registry operations and back, and nothing else: no storage, no SQL.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::authentication;
use super::error::V2Error;
use super::routes::{self, Route};
use super::{body_stream, AppState};
use crate::auth::{Access, Action, Caller};
use crate::events::Actor;
use crate::oci::manifest::{MAX_MANIFEST_SIZE, OCI_INDEX};
use crate::oci::{Digest, Reference, RepositoryName};
use crate::registry::RegistryError;
use crate::registry::UploadId;

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// Default and largest page of tag and catalog listings.
const MAX_PAGE: u32 = 100_000;

type Result<T> = std::result::Result<T, V2Error>;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Params {
    n: Option<String>,
    last: Option<String>,
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
    artifact_type: Option<String>,
}

/// The route a request took, for metrics and logs.
#[derive(Clone, Copy)]
pub struct RouteLabel(pub &'static str);

pub async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (&parts.method, &parts.uri, &parts.headers);
    let path = uri.path().strip_prefix("/v2").unwrap_or("");
    let path = path.strip_prefix('/').unwrap_or(path);
    let route = match routes::parse(path) {
        Err(routes::NoRoute) => {
            let mut r = V2Error::from(RegistryError::Unsupported(format!(
                "no such endpoint: {}",
                uri.path()
            )))
            .into_response();
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
        // A malformed tag names no manifest: reads get 404, pushes 400.
        Ok(Err(RegistryError::TagInvalid(e)))
            if matches!(*method, Method::GET | Method::HEAD | Method::DELETE) =>
        {
            return V2Error::from(RegistryError::NoSuchManifest(e)).into_response()
        }
        Ok(Err(e)) => return V2Error::from(e).into_response(),
        Ok(Ok(route)) => route,
    };
    let label = RouteLabel(route.label());
    let labelled = |mut response: Response| {
        response.extensions_mut().insert(label);
        response
    };
    let address = authentication::client_address(&parts.extensions);
    let caller = match authentication::authenticate(&state, headers, &address).await {
        Ok(caller) => caller,
        Err(response) => return labelled(response),
    };
    let params = Query::<Params>::try_from_uri(uri).map(|q| q.0);
    let mut needed = authentication::v2_access(&route, method);
    if let (Ok(p), Caller::Token(_) | Caller::Anonymous) = (&params, &caller) {
        let from =
            authentication::mount_source(&route, method, p.mount.as_deref(), p.from.as_deref());
        needed.extend(from.map(|from| Access::Repository(from, Action::Pull)));
    }
    if let Err(response) = authentication::require(&state, headers, &caller, &needed).await {
        return labelled(response);
    }
    let params = match params {
        Ok(params) => params,
        Err(e) => {
            let e = RegistryError::QueryInvalid(format!("malformed query string: {e}"));
            return labelled(V2Error::from(e).into_response());
        }
    };
    // Pushes, deletes and pulls are recorded by the registry itself (as
    // events in their transaction, pulls in the journal).
    let cx = Cx {
        state: &state,
        method,
        headers,
        params,
        caller: &caller,
        actor: caller.actor(&address),
    };
    let response = cx
        .handle(route, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    labelled(response)
}

struct Cx<'a> {
    state: &'a AppState,
    method: &'a Method,
    headers: &'a HeaderMap,
    params: Params,
    caller: &'a Caller,
    /// The caller as events name them.
    actor: Actor,
}

fn not_allowed(method: &Method) -> V2Error {
    RegistryError::Unsupported(format!("method {method} not allowed here")).into()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> std::result::Result<Option<u64>, V2Error> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                RegistryError::SizeInvalid("Content-Length is not a number".into()).into()
            }),
    }
}

fn upload_location(repo: &RepositoryName, id: UploadId) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// The `Range` header of upload responses: the inclusive range received.
fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_response(status: StatusCode, repo: &RepositoryName, id: UploadId, size: u64) -> Response {
    (
        status,
        [
            (header::LOCATION, upload_location(repo, id)),
            (header::RANGE, upload_range(size)),
            (DOCKER_UPLOAD_UUID, id.to_string()),
            (header::CONTENT_LENGTH, "0".to_string()),
        ],
    )
        .into_response()
}

/// A failed upload request; a chunk out of order also says where the upload stands.
fn upload_error(e: RegistryError, repo: &RepositoryName, id: UploadId) -> V2Error {
    match e {
        RegistryError::UploadOutOfOrder { size } => V2Error::from(e)
            .with_header(header::LOCATION, upload_location(repo, id))
            .with_header(header::RANGE, upload_range(size))
            .with_header(DOCKER_UPLOAD_UUID, id.to_string()),
        e => e.into(),
    }
}

fn blob_created(repo: &RepositoryName, digest: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/v2/{repo}/blobs/{digest}")),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
            (header::CONTENT_LENGTH, "0".to_string()),
        ],
    )
        .into_response()
}

fn parse_digest(s: &str) -> std::result::Result<Digest, V2Error> {
    s.parse::<Digest>()
        .map_err(|e| RegistryError::DigestInvalid(e.to_string()).into())
}

/// Whether the client's `Accept` headers admit `media_type`. No Accept
/// header admits everything.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let item = parts.next().unwrap_or("").trim();
            // `q=0` means "not acceptable".
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            if item.is_empty() {
                continue;
            }
            any = true;
            if refused {
                continue;
            }
            if item == media_type || item == "*/*" || item == "application/*" {
                return true;
            }
        }
    }
    !any
}

/// How much of an oversized manifest is read (and dropped) so the client
/// receives the 413 instead of a reset connection.
const OVERSIZE_DRAIN: usize = 4 * MAX_MANIFEST_SIZE;

async fn read_manifest_body(body: Body) -> std::result::Result<bytes::Bytes, V2Error> {
    use futures_util::StreamExt;
    let mut stream = body_stream(body);
    let mut bytes = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| RegistryError::ManifestInvalid(format!("reading manifest: {e}")))?;
        total += chunk.len();
        if total <= MAX_MANIFEST_SIZE {
            bytes.extend_from_slice(&chunk);
        } else if total > OVERSIZE_DRAIN {
            break;
        }
    }
    if total > MAX_MANIFEST_SIZE {
        return Err(RegistryError::ManifestTooLarge {
            size: total as u64,
            limit: MAX_MANIFEST_SIZE,
        }
        .into());
    }
    Ok(bytes.freeze())
}

impl Cx<'_> {
    async fn handle(self, route: Route, body: Body) -> Result<Response> {
        let m = self.method.clone();
        let allow = route.allowed_methods();
        match route {
            Route::Base if m == Method::GET || m == Method::HEAD => {
                Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
            }
            Route::Catalog if m == Method::GET => self.catalog().await,
            Route::Tags(repo) if m == Method::GET => self.tags(repo).await,
            Route::Manifest(repo, r) if m == Method::GET || m == Method::HEAD => {
                self.get_manifest(repo, r).await
            }
            Route::Manifest(repo, r) if m == Method::PUT => self.put_manifest(repo, r, body).await,
            Route::Manifest(repo, r) if m == Method::DELETE => {
                self.state
                    .registry
                    .delete_manifest(&self.actor, &repo, &r)
                    .await?;
                Ok(StatusCode::ACCEPTED.into_response())
            }
            Route::Blob(repo, d) if m == Method::GET || m == Method::HEAD => {
                self.get_blob(repo, d).await
            }
            Route::Blob(repo, d) if m == Method::DELETE => {
                self.state
                    .registry
                    .delete_blob(&self.actor, &repo, &d)
                    .await?;
                Ok(StatusCode::ACCEPTED.into_response())
            }
            Route::UploadStart(repo) if m == Method::POST => self.start_upload(repo, body).await,
            Route::Upload(repo, id) if m == Method::GET => {
                let size = self.state.registry.upload_status(&repo, id).await?;
                Ok(upload_response(StatusCode::NO_CONTENT, &repo, id, size))
            }
            Route::Upload(repo, id) if m == Method::PATCH => {
                self.patch_upload(repo, id, body).await
            }
            Route::Upload(repo, id) if m == Method::PUT => self.finish_upload(repo, id, body).await,
            Route::Upload(repo, id) if m == Method::DELETE => {
                self.state.registry.cancel_upload(&repo, id).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            Route::Referrers(repo, d) if m == Method::GET => self.referrers(repo, d).await,
            _ => Err(not_allowed(&m).with_header(header::ALLOW, allow.to_string())),
        }
    }

    /// `n` (capped at MAX_PAGE) and `last` of a listing.
    fn page(&self) -> Result<(u32, Option<&str>)> {
        let n = match self.params.n.as_deref() {
            None => MAX_PAGE,
            Some(n) => n
                .parse::<u32>()
                .map_err(|_| {
                    RegistryError::QueryInvalid(format!(
                        "n must be a non-negative integer, not {n:?}"
                    ))
                })?
                .min(MAX_PAGE),
        };
        Ok((n, self.params.last.as_deref()))
    }

    fn listing(
        &self,
        path: String,
        key: &str,
        name: Option<&str>,
        mut items: Vec<String>,
        n: u32,
    ) -> Response {
        let more = items.len() > n as usize;
        items.truncate(n as usize);
        let mut body = json!({ key: items });
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        let mut response = (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let (true, Some(last)) = (more, items.last()) {
            let link = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
            if let Ok(v) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(header::LINK, v);
            }
        }
        response
    }

    /// May the caller pull from `repo`? (Choosing a mount source: a
    /// repository the caller cannot read is never one.)
    async fn can_pull(&self, repo: &RepositoryName) -> bool {
        let access = Access::Repository(repo.clone(), Action::Pull);
        self.state
            .auth
            .authorize(self.caller, &access)
            .await
            .is_ok()
    }

    /// Where to mount a blob from: `from` if the caller may read it, or with
    /// no `from`, some repository holding the blob that the caller may read.
    async fn mount_source(
        &self,
        digest: &Digest,
        from: Option<RepositoryName>,
    ) -> Result<Option<RepositoryName>> {
        if let Some(from) = from {
            return Ok(self.can_pull(&from).await.then_some(from));
        }
        for holder in self.state.registry.blob_holders(digest).await? {
            if self.can_pull(&holder).await {
                return Ok(Some(holder));
            }
        }
        Ok(None)
    }

    async fn catalog(&self) -> Result<Response> {
        let (n, last) = self.page()?;
        let visibility = self
            .state
            .auth
            .visibility(self.caller)
            .await
            .map_err(RegistryError::from)?;
        let repos = self
            .state
            .registry
            .catalog(visibility.as_ref(), last, n + 1)
            .await?;
        Ok(self.listing("/v2/_catalog".into(), "repositories", None, repos, n))
    }

    async fn tags(&self, repo: RepositoryName) -> Result<Response> {
        let (n, last) = self.page()?;
        let tags = if n == 0 {
            // An empty page still tells whether the repository exists.
            self.state.registry.tags(&repo, last, 1).await?;
            Vec::new()
        } else {
            self.state.registry.tags(&repo, last, n + 1).await?
        };
        Ok(self.listing(
            format!("/v2/{repo}/tags/list"),
            "tags",
            Some(repo.as_str()),
            tags,
            n,
        ))
    }

    async fn get_manifest(&self, repo: RepositoryName, reference: Reference) -> Result<Response> {
        let head = self.method == Method::HEAD;
        let manifest = self
            .state
            .registry
            .manifest(&self.actor, &repo, &reference, !head)
            .await?;
        if !accepts(self.headers, &manifest.media_type) {
            return Err(RegistryError::NoSuchManifest(format!(
                "manifest is {}, which the Accept header does not include",
                manifest.media_type
            ))
            .into());
        }
        let headers = [
            (header::CONTENT_TYPE, manifest.media_type.clone()),
            (header::CONTENT_LENGTH, manifest.content.len().to_string()),
            (DOCKER_CONTENT_DIGEST, manifest.digest.to_string()),
            (header::ETAG, format!("\"{}\"", manifest.digest)),
        ];
        let body = if head {
            Body::empty()
        } else {
            Body::from(manifest.content.clone())
        };
        Ok((headers, body).into_response())
    }

    async fn put_manifest(
        &self,
        repo: RepositoryName,
        reference: Reference,
        body: Body,
    ) -> Result<Response> {
        // hyper holds the body to its Content-Length: a short one is a read error.
        let bytes = read_manifest_body(body).await?;
        let content_type = header_str(self.headers, header::CONTENT_TYPE);
        let pushed = self
            .state
            .registry
            .put_manifest(&self.actor, &repo, &reference, content_type, &bytes)
            .await?;
        let mut response = (
            StatusCode::CREATED,
            [
                (
                    header::LOCATION,
                    format!("/v2/{repo}/manifests/{}", pushed.digest),
                ),
                (DOCKER_CONTENT_DIGEST, pushed.digest.to_string()),
                (header::CONTENT_LENGTH, "0".to_string()),
            ],
        )
            .into_response();
        if let Some(subject) = pushed.subject {
            response.headers_mut().insert(
                OCI_SUBJECT,
                HeaderValue::from_str(subject.as_str()).expect("digests are ASCII"),
            );
        }
        Ok(response)
    }

    async fn get_blob(&self, repo: RepositoryName, digest: Digest) -> Result<Response> {
        let head = self.method == Method::HEAD;
        // Range applies to GET only (RFC 9110 §14.2).
        let range = if head {
            None
        } else {
            header_str(self.headers, header::RANGE)
        };
        let blob = self
            .state
            .registry
            .read_blob(&repo, &digest, range, !head)
            .await?;
        if let Some(url) = blob.redirect {
            return Ok(Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, url)
                .header(DOCKER_CONTENT_DIGEST, digest.as_str())
                .body(Body::empty())
                .expect("valid response head"));
        }
        let mut response = Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(DOCKER_CONTENT_DIGEST, digest.as_str())
            .header(header::ETAG, format!("\"{digest}\""))
            .header(header::ACCEPT_RANGES, "bytes");
        let length = match blob.range {
            Some(r) => {
                response = response.status(StatusCode::PARTIAL_CONTENT).header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{}", r.start, r.end, blob.size),
                );
                r.len()
            }
            None => blob.size,
        };
        let body = match blob.body {
            Some(stream) => Body::from_stream(stream),
            None => Body::empty(),
        };
        let mut response = response.body(body).expect("valid response head");
        // Set after the body so HEAD keeps the blob's length.
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        Ok(response)
    }

    async fn start_upload(&self, repo: RepositoryName, body: Body) -> Result<Response> {
        let registry = &self.state.registry;
        if let Some(mount) = self.params.mount.as_deref() {
            // What cannot be mounted (including a malformed `mount` or
            // `from`) is uploaded instead, as the spec asks: 202 below.
            let digest = mount.parse::<Digest>().ok();
            let from = match self.params.from.as_deref() {
                Some(f) => f.parse::<RepositoryName>().ok().map(Some),
                None => Some(None),
            };
            if let (Some(digest), Some(from)) = (digest, from) {
                if let Some(source) = self.mount_source(&digest, from).await? {
                    if registry
                        .mount_blob(&self.actor, &repo, &digest, &source)
                        .await?
                    {
                        return Ok(blob_created(&repo, &digest));
                    }
                }
            }
        } else if let Some(digest) = self.params.digest.as_deref() {
            let digest = parse_digest(digest)?;
            let _in_flight = self.state.upload_in_flight();
            let length = content_length(self.headers)?;
            registry
                .push_blob(&self.actor, &repo, &digest, length, body_stream(body))
                .await?;
            return Ok(blob_created(&repo, &digest));
        }
        let id = registry.start_upload(&self.actor, &repo).await?;
        Ok(upload_response(StatusCode::ACCEPTED, &repo, id, 0))
    }

    async fn patch_upload(
        &self,
        repo: RepositoryName,
        id: UploadId,
        body: Body,
    ) -> Result<Response> {
        let _in_flight = self.state.upload_in_flight();
        let content_range = header_str(self.headers, header::CONTENT_RANGE);
        let result = self
            .state
            .registry
            .upload_chunk(
                &repo,
                id,
                content_range,
                content_length(self.headers)?,
                body_stream(body),
            )
            .await;
        let size = result.map_err(|e| upload_error(e, &repo, id))?;
        Ok(upload_response(StatusCode::ACCEPTED, &repo, id, size))
    }

    async fn finish_upload(
        &self,
        repo: RepositoryName,
        id: UploadId,
        body: Body,
    ) -> Result<Response> {
        let digest = self.params.digest.as_deref().ok_or_else(|| {
            RegistryError::DigestInvalid("the digest query parameter is required".into())
        })?;
        let digest = parse_digest(digest)?;
        let _in_flight = self.state.upload_in_flight();
        let length = content_length(self.headers)?;
        let content_range = header_str(self.headers, header::CONTENT_RANGE);
        self.state
            .registry
            .finish_upload(&repo, id, &digest, content_range, length, body_stream(body))
            .await
            .map_err(|e| upload_error(e, &repo, id))?;
        Ok(blob_created(&repo, &digest))
    }

    async fn referrers(&self, repo: RepositoryName, subject: Digest) -> Result<Response> {
        let filter = self
            .params
            .artifact_type
            .as_deref()
            .filter(|t| !t.is_empty());
        let last = self.params.last.as_deref();
        let (manifests, more) = self
            .state
            .registry
            .referrers(&repo, &subject, filter, last)
            .await?;
        let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        let mut response = ([(header::CONTENT_TYPE, OCI_INDEX)], body.to_string()).into_response();
        if let (true, Some(last)) = (more, manifests.last()) {
            // The spec leaves the next page's URL to the registry.
            let mut query = vec![("last", last.digest.as_str())];
            query.extend(filter.map(|t| ("artifactType", t)));
            let query = serde_urlencoded::to_string(query).expect("strings encode");
            let link = format!("</v2/{repo}/referrers/{subject}?{query}>; rel=\"next\"");
            if let Ok(v) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(header::LINK, v);
            }
        }
        if filter.is_some() {
            response.headers_mut().insert(
                OCI_FILTERS_APPLIED,
                HeaderValue::from_static("artifactType"),
            );
        }
        Ok(response)
    }
}
