//! A small client of a registry's `/v2` API, for the signing commands: the
//! server and login of [`Api`], the Docker token flow (a 401 with a
//! `Bearer realm=…,service=…` challenge: GET the realm with the login as
//! Basic credentials and the scope needed, retry with the token), Basic
//! credentials on a `Basic` challenge, nothing on a server with auth off.
//! Every answer read is capped in size.

use std::sync::Mutex;

use reqwest::header::{self, HeaderMap};
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;

use super::client::{Api, Login};

/// The manifest media types asked for.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest read (the distribution spec's recommended limit).
pub const MAX_MANIFEST: usize = 4 << 20;

#[derive(Clone)]
enum Auth {
    None,
    Basic,
    Bearer(String),
}

/// One repository of the server, with the access `actions` asked for
/// (`pull` or `pull,push`).
pub struct Registry {
    base: String,
    login: Option<Login>,
    http: reqwest::Client,
    repository: String,
    scope: String,
    auth: Mutex<Auth>,
}

/// A manifest as the registry served it.
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    /// `Docker-Content-Digest`, if sent.
    pub digest_header: Option<String>,
}

/// A manifest as a HEAD states it.
pub struct Stated {
    pub digest: String,
    pub media_type: Option<String>,
    pub size: u64,
}

/// A descriptor of a referrers listing.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub digest: String,
    #[serde(default)]
    pub artifact_type: Option<String>,
}

impl Registry {
    pub fn new(api: &Api, repository: &str, actions: &str) -> Registry {
        Registry {
            base: api.base().to_string(),
            login: api.login().cloned(),
            http: reqwest::Client::new(),
            repository: repository.to_string(),
            scope: format!("repository:{repository}:{actions}"),
            auth: Mutex::new(Auth::None),
        }
    }

    /// `host[:port]` of the server, as image references name it.
    pub fn host(&self) -> String {
        let rest = self.base.split_once("://").map_or(&*self.base, |(_, r)| r);
        rest.split('/').next().unwrap_or(rest).to_string()
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn authorize(&self, rb: RequestBuilder) -> RequestBuilder {
        let auth = self.auth.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match (auth, &self.login) {
            (Auth::Bearer(t), _) => rb.bearer_auth(t),
            (Auth::Basic, Some(l)) => rb.basic_auth(&l.username, Some(&l.password)),
            _ => rb,
        }
    }

    /// Sends the request `build` makes, answering one authentication
    /// challenge.
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        let r = self.authorize(build(&self.http)).send().await;
        let r = r.map_err(|e| format!("{}: {e}", self.base))?;
        if r.status() != StatusCode::UNAUTHORIZED {
            return Ok(r);
        }
        let challenge = r
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let new = if let Some(params) = challenge.strip_prefix("Bearer ") {
            Auth::Bearer(self.token(params).await?)
        } else if self.login.is_some() && challenge.starts_with("Basic") {
            Auth::Basic
        } else {
            return Ok(r);
        };
        *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = new;
        self.authorize(build(&self.http))
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.base))
    }

    /// A token for the scope from the challenge's realm.
    async fn token(&self, params: &str) -> Result<String, String> {
        let mut realm = None;
        let mut service = None;
        for (k, v) in challenge_params(params) {
            match k.as_str() {
                "realm" => realm = Some(v),
                "service" => service = Some(v),
                _ => {}
            }
        }
        let realm = realm.ok_or("the registry's Bearer challenge names no realm")?;
        let mut url = reqwest::Url::parse(&realm)
            .map_err(|_| format!("the registry's token realm {realm:?} is not a URL"))?;
        let same_host = url
            .host_str()
            .zip(url.port_or_known_default())
            .map(|(h, p)| {
                let host = self.host();
                host == h || host == format!("{h}:{p}")
            });
        if url.scheme() != "https" && !(url.scheme() == "http" && same_host == Some(true)) {
            return Err(format!(
                "the registry's token realm {realm} is neither https nor on the registry's host: \
                 credentials are not sent there"
            ));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &self.scope);
        }
        let mut rb = self.http.get(url);
        if let Some(l) = &self.login {
            rb = rb.basic_auth(&l.username, Some(&l.password));
        }
        let r = rb.send().await.map_err(|e| format!("{realm}: {e}"))?;
        let status = r.status();
        let body = read_capped(r, 64 << 10).await?;
        if !status.is_success() {
            return Err(format!(
                "token request refused ({status}): {}",
                error_message(&body)
            ));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| format!("the token endpoint's answer: {e}"))?;
        t.token
            .or(t.access_token)
            .ok_or_else(|| "the token endpoint gave no token".to_string())
    }

    fn path(&self, tail: &str) -> String {
        format!("/v2/{}/{tail}", self.repository)
    }

    /// The manifest `reference` (tag or digest); `None` if there is none.
    pub async fn manifest(&self, reference: &str) -> Result<Option<Manifest>, String> {
        let url = self.url(&self.path(&format!("manifests/{reference}")));
        let r = self
            .send(|h| h.get(&url).header(header::ACCEPT, MANIFEST_ACCEPT))
            .await?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let headers = r.headers().clone();
        let r = check(r, &format!("manifest {reference}")).await?;
        let bytes = read_capped(r, MAX_MANIFEST).await?;
        let h = |name: &str| header_string(&headers, name);
        Ok(Some(Manifest {
            bytes,
            media_type: h(header::CONTENT_TYPE.as_str()),
            digest_header: h("docker-content-digest"),
        }))
    }

    /// What the registry states of a manifest without serving it (HEAD):
    /// its digest, media type and size; `None` if there is none.
    pub async fn manifest_head(&self, reference: &str) -> Result<Option<Stated>, String> {
        let url = self.url(&self.path(&format!("manifests/{reference}")));
        let r = self
            .send(|h| h.head(&url).header(header::ACCEPT, MANIFEST_ACCEPT))
            .await?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let r = check(r, &format!("manifest {reference}")).await?;
        let h = |name: &str| header_string(r.headers(), name);
        Ok(Some(Stated {
            digest: h("docker-content-digest")
                .ok_or_else(|| format!("manifest {reference}: the registry states no digest"))?,
            media_type: h(header::CONTENT_TYPE.as_str()),
            size: r.content_length().unwrap_or_default(),
        }))
    }

    /// A blob, refused if larger than `cap` bytes.
    pub async fn blob(&self, digest: &str, cap: usize) -> Result<Vec<u8>, String> {
        let url = self.url(&self.path(&format!("blobs/{digest}")));
        let r = self.send(|h| h.get(&url)).await?;
        let r = check(r, &format!("blob {digest}")).await?;
        read_capped(r, cap).await
    }

    /// Uploads a blob (POST then PUT ?digest) unless the repository has it.
    pub async fn push_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), String> {
        let url = self.url(&self.path(&format!("blobs/{digest}")));
        if self.send(|h| h.head(&url)).await?.status() == StatusCode::OK {
            return Ok(());
        }
        let start = self.url(&self.path("blobs/uploads/"));
        let r = self.send(|h| h.post(&start)).await?;
        let r = check(r, "starting a blob upload").await?;
        let location = header_string(r.headers(), header::LOCATION.as_str())
            .ok_or("the registry gave no upload location")?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = self.url(&format!("{location}{separator}digest={digest}"));
        let r = self
            .send(|h| {
                h.put(&put)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(bytes.to_vec())
            })
            .await?;
        check(r, &format!("uploading blob {digest}")).await?;
        Ok(())
    }

    /// PUTs a manifest under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), String> {
        let url = self.url(&self.path(&format!("manifests/{reference}")));
        let r = self
            .send(|h| {
                h.put(&url)
                    .header(header::CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
            })
            .await?;
        check(r, &format!("pushing manifest {reference}")).await?;
        Ok(())
    }

    /// The referrers of `digest` (every page), as listed.
    pub async fn referrers(&self, digest: &str) -> Result<Vec<Referrer>, String> {
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Referrer>,
        }
        let mut out = Vec::new();
        let mut next = Some(self.path(&format!("referrers/{digest}")));
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            if pages > 20 {
                return Err("more than 20 pages of referrers".into());
            }
            let url = self.url(&path);
            let r = self.send(|h| h.get(&url)).await?;
            if r.status() == StatusCode::NOT_FOUND {
                break;
            }
            next = header_string(r.headers(), header::LINK.as_str()).and_then(|l| next_link(&l));
            let r = check(r, "listing referrers").await?;
            let index: Index = serde_json::from_slice(&read_capped(r, MAX_MANIFEST).await?)
                .map_err(|e| format!("the referrers listing: {e}"))?;
            out.extend(index.manifests);
        }
        Ok(out)
    }
}

/// `key=value` and `key="value"` pairs of a challenge.
fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((v, t)) => (v, t),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key, value.to_string()));
        rest = tail.trim_start_matches([',', ' ']);
    }
    out
}

/// The target of `<…>; rel="next"`.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The message of an OCI error body, or the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
}

/// The response if successful, else its error as a message.
async fn check(r: reqwest::Response, what: &str) -> Result<reqwest::Response, String> {
    let status = r.status();
    if status.is_success() {
        return Ok(r);
    }
    let body = read_capped(r, 64 << 10).await.unwrap_or_default();
    let message = error_message(&body);
    Err(match status {
        StatusCode::UNAUTHORIZED => {
            format!("{what}: not authorized ({message}): run `berth login`")
        }
        StatusCode::FORBIDDEN => format!("{what}: denied ({message})"),
        _ => format!("{what}: {status}: {message}"),
    })
}

/// The body, refused past `cap` bytes (announced or read).
async fn read_capped(mut r: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let path = r.url().path().to_string();
    let too_big = || format!("{path}: the answer is larger than {cap} bytes: refused");
    if r.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > cap {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_links() {
        assert_eq!(
            challenge_params(
                r#"realm="http://h:1/auth/token",service="berth",scope="repository:a/b:pull""#
            ),
            vec![
                ("realm".into(), "http://h:1/auth/token".into()),
                ("service".into(), "berth".into()),
                ("scope".into(), "repository:a/b:pull".into()),
            ]
        );
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:1?last=x>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:1?last=x")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}
