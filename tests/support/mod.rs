//! Helpers for talking the distribution API in tests.
#![allow(dead_code)]

use reqwest::{header, Response, StatusCode};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// `len` bytes that differ with `seed` and do not repeat within a MiB
/// (xorshift), for blobs whose content matters only in being distinct.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            http: reqwest::Client::builder().build().unwrap(),
        }
    }

    /// A client that sends Basic credentials with every request.
    pub fn with_basic(base: String, user: &str, password: &str) -> Api {
        use base64::Engine;
        let value = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut headers = header::HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_str(&format!("Basic {value}")).unwrap(),
        );
        Api {
            base,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn head(&self, path: &str) -> Response {
        self.http.head(self.url(path)).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.http.delete(self.url(path)).send().await.unwrap()
    }

    /// Pushes a blob with POST + PUT; returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let location = self.start_upload(repo).await;
        let r = self
            .http
            .put(self.url(&with_query(&location, &format!("digest={digest}"))))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        digest
    }

    /// POST to start an upload; returns the Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        location(&r)
    }

    /// PATCHes `chunk` at `offset` of the upload at `upload` (its
    /// Location); returns the next Location.
    pub async fn patch_chunk(&self, upload: &str, offset: usize, chunk: &[u8]) -> String {
        let r = self
            .http
            .patch(self.url(upload))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(
                header::CONTENT_RANGE,
                format!("{}-{}", offset, offset + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::ACCEPTED,
            "PATCH at {offset}: {}",
            r.text().await.unwrap()
        );
        location(&r)
    }

    /// Closes the upload at `upload` (its Location) with a PUT ?digest and
    /// no body.
    pub async fn finish_upload(&self, upload: &str, digest: &str) {
        let r = self
            .http
            .put(self.url(&with_query(upload, &format!("digest={digest}"))))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &str,
    ) -> Response {
        self.http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header(header::CONTENT_TYPE, media_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Pushes config + one layer and an image manifest tagged `tag`; returns
    /// the manifest text and digest.
    pub async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (String, String) {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","layer":"{}"}}"#,
            sha256(layer)
        );
        let config_digest = self.push_blob(repo, config.as_bytes()).await;
        let layer_digest = self.push_blob(repo, layer).await;
        let manifest = image_manifest(
            &config_digest,
            config.len(),
            &[(&layer_digest, layer.len())],
            None,
            None,
        );
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let digest = sha256(manifest.as_bytes());
        (manifest, digest)
    }
}

pub fn location(r: &Response) -> String {
    r.headers()
        .get(header::LOCATION)
        .expect("Location header")
        .to_str()
        .unwrap()
        .to_string()
}

pub fn header_of<'r>(r: &'r Response, name: &str) -> Option<&'r str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

pub fn with_query(location: &str, query: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{query}")
}

/// An OCI image manifest; `artifact_type` and `subject` are optional.
pub fn image_manifest(
    config: &str,
    config_size: usize,
    layers: &[(&str, usize)],
    artifact_type: Option<&str>,
    subject: Option<(&str, usize)>,
) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"{OCI_LAYER}","digest":"{d}","size":{s}}}"#))
        .collect();
    let mut m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config}","size":{config_size}}},"layers":[{}]"#,
        layers.join(",")
    );
    if let Some(t) = artifact_type {
        m.push_str(&format!(r#","artifactType":"{t}""#));
    }
    if let Some((d, s)) = subject {
        m.push_str(&format!(
            r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{s}}}"#
        ));
    }
    m.push_str(r#","annotations":{"org.example":"yes"}}"#);
    m
}

pub fn index_manifest(media_type: &str, children: &[(&str, usize)]) -> String {
    let child_type = if media_type == DOCKER_LIST {
        DOCKER_MANIFEST
    } else {
        OCI_MANIFEST
    };
    let items: Vec<String> = children
        .iter()
        .enumerate()
        .map(|(i, (d, s))| {
            let arch = if i % 2 == 0 { "amd64" } else { "arm64" };
            format!(r#"{{"mediaType":"{child_type}","digest":"{d}","size":{s},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#)
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{}]}}"#,
        items.join(",")
    )
}

/// Asserts the spec's error body with `code`.
pub async fn assert_error(r: Response, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status, "status for expected {code}");
    assert_eq!(
        header_of(&r, "docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let body: serde_json::Value = r.json().await.expect("JSON error body");
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors[0]["code"], code, "{body}");
    assert!(
        errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Sends raw bytes over TCP (for requests a well-behaved client never makes)
/// and returns whatever the server answered before closing.
pub fn raw_request(addr: std::net::SocketAddr, request: &[u8], close_early: bool) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request).unwrap();
    if close_early {
        drop(s);
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
