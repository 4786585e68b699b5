//! Berth as Harbor's scanner: the scanner adapter API's scans. Harbor posts
//! a scan request naming an image in its registry and the `Authorization`
//! to pull it with; Berth pulls the manifest and streams each layer (never
//! a whole layer in memory) through the same walker, layer cache, package
//! inventory and matcher as its own scans (`Scanner`), and keeps the result
//! for Harbor to fetch as Harbor's report (`berth_scan::harbor`).
//!
//! Jobs live in memory only, at most `MAX_JOBS`, each for
//! `results_ttl_secs` after it ends: Harbor asks for a scan again when its
//! report is gone (a restart, an expiry). At most `workers` run at once.
//! The authorization Harbor sends is used for its registry only, and never
//! logged.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_scan::harbor::{self as api, ScanRequest};
use berth_scan::layers::{self, LayerInventory};
use berth_scan::packages::Problem;
use reqwest::header::{self, HeaderValue};
use reqwest::StatusCode;

use super::{image_layers, is_layer, Failure, Scanner};
use crate::meta::MetaError;
use crate::oci::manifest::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::oci::{Digest, Manifest, RepositoryName};

/// Jobs kept at once (running, or ended and not yet expired).
const MAX_JOBS: usize = 1024;
/// The largest manifest read (as CNCF Distribution's limit).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// The largest token endpoint answer read.
const MAX_TOKEN_BYTES: usize = 1 << 20;
/// A scan still running after this fails (a registry trickling bytes
/// would hold a worker and a job forever).
const SCAN_TIMEOUT: Duration = Duration::from_secs(3600);
/// What a 302 tells Harbor to wait before asking again, in seconds.
pub const REFRESH_AFTER_SECS: u64 = 2;

/// A scan job's state.
#[derive(Debug, Clone)]
pub enum JobState {
    Running,
    Done(Box<api::Report>),
    /// Why the scan failed.
    Failed(String),
}

struct Job {
    state: JobState,
    /// When it ended.
    ended: Option<Instant>,
}

/// Why a scan request is refused.
#[derive(Debug)]
pub enum Refusal {
    /// Not a scan request (400).
    Invalid(String),
    /// An artifact the adapter does not scan (422).
    Unsupported(String),
    /// Too many jobs are kept (503).
    Busy,
}

pub struct Adapter {
    scanner: Arc<Scanner>,
    client: reqwest::Client,
    jobs: Mutex<HashMap<String, Job>>,
    permits: Arc<tokio::sync::Semaphore>,
    ttl: Duration,
    prefix: String,
    token_hash: [u8; 32],
    registries: Vec<String>,
}

/// A request, checked.
struct Target {
    base: reqwest::Url,
    authorization: Option<String>,
    repository: RepositoryName,
    digest: Digest,
    artifact: api::Artifact,
}

/// What the adapter is configured with (the server reads it from the
/// validated `[harbor_adapter]` section).
pub struct Settings {
    pub prefix: String,
    /// SHA-256 of the bearer token Harbor presents.
    pub token_hash: [u8; 32],
    /// Scans run at once.
    pub workers: usize,
    /// How long a finished job's report is kept.
    pub results_ttl: Duration,
    /// Origins of the registries a scan may read from (empty: any).
    pub registries: Vec<String>,
}

impl Adapter {
    /// The adapter with these settings (from `[harbor_adapter]`).
    pub fn new(scanner: Arc<Scanner>, settings: Settings) -> Arc<Adapter> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .expect("a TLS backend");
        Arc::new(Adapter {
            scanner,
            client,
            jobs: Mutex::new(HashMap::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(settings.workers.max(1))),
            ttl: settings.results_ttl,
            prefix: settings.prefix,
            token_hash: settings.token_hash,
            registries: settings.registries,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn token_hash(&self) -> &[u8; 32] {
        &self.token_hash
    }

    fn scanner_info() -> api::Scanner {
        api::Scanner {
            name: "Berth".into(),
            vendor: "Berth".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The adapter's metadata, with when the database in use was built
    /// (or imported, when its data does not say).
    pub async fn metadata(&self) -> Result<api::Metadata, MetaError> {
        let db = self.scanner.databases(1).await?.into_iter().next();
        let updated = db.map(|d| {
            let ms = d.built_at.unwrap_or(d.imported_at);
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        Ok(api::Metadata::of(Adapter::scanner_info(), updated))
    }

    /// Accepts a scan request: its job's id.
    pub fn submit(self: &Arc<Self>, body: &[u8]) -> Result<String, Refusal> {
        let request = ScanRequest::parse(body).map_err(Refusal::Invalid)?;
        if !request.supported() {
            return Err(Refusal::Unsupported(format!(
                "artifact type {:?} is not scanned (only {} and {})",
                request.artifact.mime_type,
                api::OCI_MANIFEST,
                api::DOCKER_MANIFEST
            )));
        }
        let target = check(request, &self.registries).map_err(Refusal::Invalid)?;
        let id = uuid::Uuid::new_v4().to_string();
        {
            let mut jobs = self.jobs.lock().expect("not poisoned");
            self.expire(&mut jobs);
            if jobs.len() >= MAX_JOBS {
                return Err(Refusal::Busy);
            }
            jobs.insert(
                id.clone(),
                Job {
                    state: JobState::Running,
                    ended: None,
                },
            );
        }
        let adapter = self.clone();
        let job = id.clone();
        tokio::spawn(async move {
            let state = match adapter.permits.clone().acquire_owned().await {
                Ok(_permit) => {
                    let started = Instant::now();
                    let result = tokio::time::timeout(SCAN_TIMEOUT, adapter.scan(target))
                        .await
                        .unwrap_or_else(|_| Err("the scan took over an hour".into()));
                    match &result {
                        Ok(r) => tracing::info!(
                            job,
                            findings = r.vulnerabilities.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "Harbor scan ended"
                        ),
                        Err(e) => tracing::warn!(job, error = %e, "Harbor scan failed"),
                    }
                    match result {
                        Ok(r) => JobState::Done(Box::new(r)),
                        Err(e) => JobState::Failed(e),
                    }
                }
                Err(_) => JobState::Failed("the adapter is stopping".into()),
            };
            let mut jobs = adapter.jobs.lock().expect("not poisoned");
            if let Some(j) = jobs.get_mut(&job) {
                j.state = state;
                j.ended = Some(Instant::now());
            }
        });
        Ok(id)
    }

    /// A job's state (None: unknown, or expired).
    pub fn state(&self, id: &str) -> Option<JobState> {
        let mut jobs = self.jobs.lock().expect("not poisoned");
        self.expire(&mut jobs);
        jobs.get(id).map(|j| j.state.clone())
    }

    fn expire(&self, jobs: &mut HashMap<String, Job>) {
        jobs.retain(|_, j| j.ended.is_none_or(|t| t.elapsed() < self.ttl));
    }

    /// Pulls and scans the image: Harbor's report of it.
    async fn scan(&self, target: Target) -> Result<api::Report, String> {
        let why = |f: Failure| match f {
            Failure::Passing(m) | Failure::Content(m) => m,
            Failure::Stopped => "stopped".to_string(),
        };
        let remote = Remote {
            client: &self.client,
            target: &target,
            registries: &self.registries,
            bearer: tokio::sync::Mutex::new(None),
        };
        let manifest = remote.manifest().await?;
        let Some(descriptors) = image_layers(&manifest) else {
            return Err(format!(
                "{}@{} is not an image (a manifest of {})",
                target.repository, target.digest, manifest.media_type
            ));
        };
        let mut walked = Vec::with_capacity(descriptors.len());
        let mut problems = Vec::new();
        for layer in descriptors {
            if !is_layer(&layer.media_type) {
                continue;
            }
            if layer.urls.is_some() {
                problems.push(Problem {
                    path: String::new(),
                    layer: Some(layer.digest.to_string()),
                    reason: "a foreign layer (stored elsewhere) is not read".into(),
                });
                continue;
            }
            if let Some(cached) = self
                .scanner
                .cached_layer(&layer.digest)
                .await
                .map_err(why)?
            {
                walked.push(cached);
                continue;
            }
            let inventory = remote
                .layer(&layer.digest, layer.size, &self.scanner)
                .await?;
            self.scanner
                .cache_layer(&layer.digest, &inventory)
                .await
                .map_err(why)?;
            walked.push(inventory);
        }
        let (database, report) = self.scanner.analyse(walked, problems).await.map_err(why)?;
        if database.is_none() {
            return Err("no vulnerability database has been imported into Berth".into());
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Ok(api::report(
            Adapter::scanner_info(),
            target.artifact,
            now,
            &report.findings,
        ))
    }
}

/// Whether `url` is on one of the `allowed` origins (none listed: any).
fn allowed(url: &reqwest::Url, allowed: &[String]) -> bool {
    allowed.is_empty() || allowed.contains(&url.origin().ascii_serialization())
}

/// Checks what a request names before anything uses it: the registry must
/// be one of the `registries` allowed (empty: any).
fn check(request: ScanRequest, registries: &[String]) -> Result<Target, String> {
    let base: reqwest::Url = request
        .registry
        .url
        .parse()
        .map_err(|e| format!("registry.url: {e}"))?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        return Err("registry.url must be an http or https URL".into());
    }
    if !allowed(&base, registries) {
        return Err(format!(
            "registry.url {} is not one of harbor_adapter.registries",
            base.origin().ascii_serialization()
        ));
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err("registry.url must not hold credentials (send them as authorization)".into());
    }
    let authorization = request.registry.authorization.filter(|a| !a.is_empty());
    if let Some(a) = &authorization {
        let scheme_ok = ["Basic ", "Bearer "].iter().any(|s| {
            a.len() > s.len() && a.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s))
        });
        if !scheme_ok || HeaderValue::from_str(a).is_err() {
            return Err("registry.authorization must be \"Basic …\" or \"Bearer …\"".into());
        }
    }
    let repository: RepositoryName = request
        .artifact
        .repository
        .parse()
        .map_err(|e| format!("artifact.repository: {e}"))?;
    let digest: Digest = request
        .artifact
        .digest
        .parse()
        .map_err(|e| format!("artifact.digest: {e}"))?;
    Ok(Target {
        base,
        authorization,
        repository,
        digest,
        artifact: request.artifact,
    })
}

/// Harbor's registry, for one scan.
struct Remote<'a> {
    client: &'a reqwest::Client,
    target: &'a Target,
    /// Where token realms may be (`Settings::registries`).
    registries: &'a [String],
    /// The token the registry's token endpoint gave, once asked.
    bearer: tokio::sync::Mutex<Option<String>>,
}

impl Remote<'_> {
    fn url(&self, tail: &str) -> Result<reqwest::Url, String> {
        let path = format!(
            "{}/v2/{}/{tail}",
            self.target.base.path().trim_end_matches('/'),
            self.target.repository
        );
        let mut url = self.target.base.clone();
        url.set_path(&path);
        Ok(url)
    }

    /// GETs `tail`, with the authorization given, or the token it was
    /// exchanged for when the registry asks for one.
    async fn get(&self, tail: &str, accept: &str) -> Result<reqwest::Response, String> {
        let url = self.url(tail)?;
        let send = |auth: Option<String>| {
            let mut r = self.client.get(url.clone()).header(header::ACCEPT, accept);
            if let Some(a) = auth {
                r = r.header(header::AUTHORIZATION, a);
            }
            r.send()
        };
        let unreachable = |e: reqwest::Error| format!("Harbor's registry: {}", e.without_url());
        let mut bearer = self.bearer.lock().await;
        let auth = bearer.clone().or_else(|| self.target.authorization.clone());
        let response = send(auth).await.map_err(unreachable)?;
        // Asked for a token (again, when the one held expired mid-scan).
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_challenge);
        let Some((realm, service)) = challenge else {
            return Ok(response);
        };
        let token = self.token(&realm, service.as_deref()).await?;
        *bearer = Some(format!("Bearer {token}"));
        send(bearer.clone()).await.map_err(unreachable)
    }

    /// The Docker token exchange: a pull token for the repository, asked
    /// for with the authorization given.
    async fn token(&self, realm: &str, service: Option<&str>) -> Result<String, String> {
        let mut url: reqwest::Url = realm
            .parse()
            .map_err(|_| "the registry's token realm is not a URL".to_string())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the registry's token realm is not an http or https URL".into());
        }
        if !allowed(&url, self.registries) {
            return Err(format!(
                "the registry's token realm {} is not one of harbor_adapter.registries",
                url.origin().ascii_serialization()
            ));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair(
                "scope",
                &format!("repository:{}:pull", self.target.repository),
            );
        }
        let mut request = self.client.get(url);
        if let Some(a) = &self.target.authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("the registry's token endpoint: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!(
                "the registry's token endpoint refused the credentials ({})",
                response.status()
            ));
        }
        let body = read_limited(response, MAX_TOKEN_BYTES).await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body)
            .map_err(|e| format!("the registry's token endpoint answered: {e}"))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && HeaderValue::from_str(&format!("Bearer {t}")).is_ok())
            .ok_or_else(|| "the registry's token endpoint gave no usable token".into())
    }

    /// The manifest, checked to be the digest asked for.
    async fn manifest(&self) -> Result<Manifest, String> {
        let digest = &self.target.digest;
        let response = self
            .get(
                &format!("manifests/{digest}"),
                &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"),
            )
            .await?;
        let response = ok(response, "the manifest")?;
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_limited(response, MAX_MANIFEST_BYTES).await?;
        if Digest::of(digest.algorithm(), &bytes) != *digest {
            return Err(format!(
                "the manifest Harbor's registry sent is not {digest}"
            ));
        }
        Manifest::parse(&bytes, content_type.as_deref()).map_err(|e| format!("the manifest: {e}"))
    }

    /// Streams a layer through the walker on a blocking thread, its bytes
    /// checked to be `digest` (of `size` bytes) before its inventory counts.
    async fn layer(
        &self,
        digest: &Digest,
        size: u64,
        scanner: &Scanner,
    ) -> Result<LayerInventory, String> {
        let limits = scanner.limits.clone();
        if size > limits.max_layer_bytes {
            return Err(format!(
                "layer {digest} is {size} bytes, over scan.max_layer_bytes"
            ));
        }
        let response = self.get(&format!("blobs/{digest}"), "*/*").await?;
        let response = ok(response, &format!("layer {digest}"))?;
        let stream = chunks(response);
        let bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let expected = digest.clone();
        super::lane::run(&format!("walking layer {digest}"), move || {
            walk_checked(bridge, &expected, size, &limits)
        })
        .await?
    }
}

/// Walks a layer read from `reader`, whose bytes must be `size` long and
/// hash to `digest` for its inventory to count.
fn walk_checked(
    reader: impl Read,
    digest: &Digest,
    size: u64,
    limits: &layers::Limits,
) -> Result<LayerInventory, String> {
    let name = digest.to_string();
    let mut reader = Checked {
        inner: reader,
        hasher: digest.algorithm().hasher(),
        read: 0,
        size,
    };
    let walked =
        layers::walk_layer(&mut reader, &name, limits).map_err(|e| format!("layer {name}: {e}"))?;
    // What the walker left (tar padding) is part of the digest.
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| format!("layer {name}: {e}"))?;
    if reader.read != size || reader.hasher.finish() != *digest {
        return Err(format!(
            "layer {name}: the bytes Harbor's registry sent are not that digest"
        ));
    }
    Ok(walked)
}

/// A reader that hashes what passes and reads at most `size` bytes.
struct Checked<R> {
    inner: R,
    hasher: crate::oci::digest::Hasher,
    read: u64,
    size: u64,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.size {
            return Err(std::io::Error::other(
                "the layer is longer than its descriptor says",
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A success, or the failure Harbor is told of.
fn ok(response: reqwest::Response, what: &str) -> Result<reqwest::Response, String> {
    match response.status() {
        s if s.is_success() => Ok(response),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(format!(
            "Harbor's registry refused the credentials for {what} ({})",
            response.status()
        )),
        s => Err(format!("Harbor's registry answered {s} for {what}")),
    }
}

/// A body of at most `limit` bytes.
async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!(
            "an answer of Harbor's registry is over {limit} bytes"
        ));
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("Harbor's registry: {}", e.without_url()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!(
                "an answer of Harbor's registry is over {limit} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A body as a stream, ending at its first error.
fn chunks(
    response: reqwest::Response,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static {
    Box::pin(futures_util::stream::unfold(
        Some(response),
        |r| async move {
            let mut r = r?;
            match r.chunk().await {
                Ok(Some(b)) => Some((Ok(b), Some(r))),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e.without_url())), None)),
            }
        },
    ))
}

/// `realm` and `service` of a `Bearer` challenge.
fn bearer_challenge(value: &str) -> Option<(String, Option<String>)> {
    let (scheme, params) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, t)| (v, t))
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some((realm?, service))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges() {
        assert_eq!(
            bearer_challenge(
                r#"Bearer realm="https://h.example/service/token",service="harbor-registry",scope="repository:a/b:pull""#
            ),
            Some((
                "https://h.example/service/token".into(),
                Some("harbor-registry".into())
            ))
        );
        assert_eq!(
            bearer_challenge("bearer realm=http://x/token"),
            Some(("http://x/token".into(), None))
        );
        assert_eq!(bearer_challenge(r#"Basic realm="registry""#), None);
        assert_eq!(bearer_challenge(r#"Bearer service="s""#), None);
    }

    #[test]
    fn layers_count_only_when_their_bytes_are_their_digest() {
        // An empty tar: two zero blocks, and the padding a tar writes.
        let layer = vec![0u8; 10240];
        let digest = Digest::sha256_of(&layer);
        let limits = layers::Limits::default();
        let size = layer.len() as u64;
        assert!(walk_checked(&layer[..], &digest, size, &limits).is_ok());
        let other = Digest::sha256_of(b"other");
        let e = walk_checked(&layer[..], &other, size, &limits).unwrap_err();
        assert!(e.contains("not that digest"), "{e}");
        // Shorter or longer than the descriptor says.
        assert!(walk_checked(&layer[..], &digest, size + 1, &limits).is_err());
        assert!(walk_checked(&layer[..], &digest, size - 1, &limits).is_err());
    }

    fn request(url: &str, auth: Option<&str>, repo: &str, digest: &str) -> ScanRequest {
        let body = serde_json::json!({
            "registry": {"url": url, "authorization": auth},
            "artifact": {"repository": repo, "digest": digest, "mime_type": api::OCI_MANIFEST},
        });
        ScanRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn requests_are_checked() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(check(
            request("https://h.example", Some("Basic eDp5"), "lib/app", &d),
            &[]
        )
        .is_ok());
        assert!(check(request("http://127.0.0.1:5000/", None, "app", &d), &[]).is_ok());
        let only = ["https://h.example".to_string()];
        assert!(check(request("https://h.example/", None, "app", &d), &only).is_ok());
        assert!(check(request("https://h.example:443", None, "app", &d), &only).is_ok());
        for other in [
            "http://h.example",
            "https://h.example:8443",
            "https://g.example",
        ] {
            let refused = check(request(other, None, "app", &d), &only).err().unwrap();
            assert!(refused.contains("harbor_adapter.registries"), "{refused}");
        }
        for (url, auth, repo, digest) in [
            ("ftp://h.example", None, "lib/app", d.as_str()),
            ("https://u:p@h.example", None, "lib/app", &d),
            ("not a url", None, "lib/app", &d),
            ("https://h.example", Some("Digest x"), "lib/app", &d),
            ("https://h.example", Some("Basic a\nb"), "lib/app", &d),
            ("https://h.example", None, "Lib/../app", &d),
            ("https://h.example", None, "lib/app", "sha256:xyz"),
        ] {
            assert!(
                check(request(url, auth, repo, digest), &[]).is_err(),
                "{url} {auth:?} {repo} {digest}"
            );
        }
    }
}
