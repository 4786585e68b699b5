//! The OCI distribution requests the benchmark makes, each checking status
//! codes and reading the response body to the end so the connection can be
//! reused.

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_RANGE, CONTENT_TYPE};
use hyper::{Method, StatusCode};

use crate::http::{
    collect, drain, err, expect, header_str, location_path, with_query, Conn, ReqBody, Result,
};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn octet_stream() -> (HeaderName, HeaderValue) {
    (
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    )
}

/// POST /v2/<repo>/blobs/uploads/ and return the upload's Location.
pub async fn start_upload(conn: &mut Conn, repo: &str) -> Result<String> {
    let path = format!("/v2/{repo}/blobs/uploads/");
    let what = format!("POST {path}");
    let res = conn.send(&Method::POST, &path, &[], ReqBody::Empty).await?;
    let mut res = expect(&what, res, &[StatusCode::ACCEPTED]).await?;
    let loc = location_path(&what, &res)?;
    drain(res.body_mut()).await?;
    Ok(loc)
}

/// PUT <location>?digest=... with `body` (may be empty), expecting 201.
async fn finish_upload(conn: &mut Conn, loc: &str, digest: &str, body: ReqBody) -> Result<()> {
    let path = with_query(loc, &format!("digest={digest}"));
    let what = format!("PUT {path} ({} bytes)", body.len());
    let res = conn
        .send(&Method::PUT, &path, &[octet_stream()], body)
        .await?;
    let mut res = expect(&what, res, &[StatusCode::CREATED]).await?;
    if let Some(d) = header_str(&res, "docker-content-digest") {
        if d != digest {
            return err(format!("{what}: Docker-Content-Digest is {d}"));
        }
    }
    drain(res.body_mut()).await?;
    Ok(())
}

/// Monolithic push: POST, then one PUT ?digest= carrying the whole blob,
/// streamed from memory.
pub async fn push_monolithic(
    conn: &mut Conn,
    repo: &str,
    data: &Bytes,
    digest: &str,
) -> Result<()> {
    let loc = start_upload(conn, repo).await?;
    finish_upload(conn, &loc, digest, ReqBody::Stream(data.clone())).await
}

/// Small-blob push: the same flow, the body sent as one frame.
pub async fn push_small(conn: &mut Conn, repo: &str, data: &Bytes, digest: &str) -> Result<()> {
    let loc = start_upload(conn, repo).await?;
    finish_upload(conn, &loc, digest, ReqBody::Full(Some(data.clone()))).await
}

/// Chunked push: POST, PATCH chunks of `chunk` bytes following Location each
/// time, then PUT ?digest= with no body.
pub async fn push_chunked(
    conn: &mut Conn,
    repo: &str,
    data: &Bytes,
    digest: &str,
    chunk: usize,
) -> Result<()> {
    let mut loc = start_upload(conn, repo).await?;
    let mut off = 0usize;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        let range = format!("{}-{}", off, end - 1);
        let headers = [
            octet_stream(),
            (CONTENT_RANGE, HeaderValue::from_str(&range)?),
        ];
        let what = format!("PATCH {loc} (Content-Range {range})");
        let res = conn
            .send(
                &Method::PATCH,
                &loc,
                &headers,
                ReqBody::Stream(data.slice(off..end)),
            )
            .await?;
        let mut res = expect(&what, res, &[StatusCode::ACCEPTED]).await?;
        let want = format!("0-{}", end - 1);
        match header_str(&res, "range") {
            Some(r) if r == want || r == format!("bytes={want}") => {}
            other => {
                return err(format!(
                    "{what}: Range header is {other:?}, expected {want:?}"
                ))
            }
        }
        loc = location_path(&what, &res)?;
        drain(res.body_mut()).await?;
        off = end;
    }
    finish_upload(conn, &loc, digest, ReqBody::Empty).await
}

/// GET `path` and read the body to the end, discarding it; follows one
/// same-host redirect (a registry may redirect blob reads). Returns the
/// number of body bytes. Used both for blob pulls and for the do-nothing
/// server, so both are read by the same code.
pub async fn get_discard(conn: &mut Conn, path: &str) -> Result<u64> {
    let mut path = path.to_string();
    for _ in 0..2 {
        let what = format!("GET {path}");
        let res = conn.send(&Method::GET, &path, &[], ReqBody::Empty).await?;
        let mut res = expect(
            &what,
            res,
            &[
                StatusCode::OK,
                StatusCode::TEMPORARY_REDIRECT,
                StatusCode::FOUND,
            ],
        )
        .await?;
        if res.status() == StatusCode::OK {
            return drain(res.body_mut()).await;
        }
        let next = location_path(&what, &res)?;
        drain(res.body_mut()).await?;
        path = next;
    }
    err(format!("GET {path}: too many redirects"))
}

/// PUT /v2/<repo>/manifests/<reference>, expecting 201 and, when the server
/// sends it, the right Docker-Content-Digest.
pub async fn put_manifest(
    conn: &mut Conn,
    repo: &str,
    reference: &str,
    body: &Bytes,
    digest: &str,
) -> Result<()> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let what = format!("PUT {path}");
    let headers = [(CONTENT_TYPE, HeaderValue::from_static(OCI_MANIFEST))];
    let res = conn
        .send(
            &Method::PUT,
            &path,
            &headers,
            ReqBody::Full(Some(body.clone())),
        )
        .await?;
    let mut res = expect(&what, res, &[StatusCode::CREATED]).await?;
    if let Some(d) = header_str(&res, "docker-content-digest") {
        if d != digest {
            return err(format!(
                "{what}: Docker-Content-Digest is {d}, expected {digest}"
            ));
        }
    }
    drain(res.body_mut()).await?;
    Ok(())
}

/// GET or HEAD of a manifest; checks the status and the length.
pub async fn fetch_manifest(conn: &mut Conn, method: &Method, path: &str, len: u64) -> Result<()> {
    let headers = [(ACCEPT, HeaderValue::from_static(OCI_MANIFEST))];
    let res = conn.send(method, path, &headers, ReqBody::Empty).await?;
    let mut res = expect(&format!("{method} {path}"), res, &[StatusCode::OK]).await?;
    let n = if *method == Method::HEAD {
        match header_str(&res, "content-length").and_then(|v| v.parse::<u64>().ok()) {
            Some(n) => n,
            None => return err(format!("HEAD {path}: no Content-Length")),
        }
    } else {
        drain(res.body_mut()).await?
    };
    if n != len {
        return err(format!("{method} {path}: length {n}, expected {len}"));
    }
    Ok(())
}

/// GET a tag list; returns the raw body (parsed by the caller, untimed) and
/// the Link header if any.
pub async fn get_tags(conn: &mut Conn, path: &str) -> Result<(Bytes, Option<String>)> {
    let res = conn.send(&Method::GET, path, &[], ReqBody::Empty).await?;
    let res = expect(&format!("GET {path}"), res, &[StatusCode::OK]).await?;
    let link = header_str(&res, "link").map(str::to_string);
    Ok((collect(res.into_body()).await?, link))
}

/// Logs in through the Docker token flow: reads the challenge of `GET /v2/`,
/// asks the realm (on the same server) for a token covering pull and push in
/// `repos` with Basic `credentials` (`user:password`), and returns the
/// `Authorization` value to send with every request.
pub async fn login(conn: &mut Conn, credentials: &str, repos: &[&str]) -> Result<HeaderValue> {
    use base64::Engine;
    let mut res = conn.send(&Method::GET, "/v2/", &[], ReqBody::Empty).await?;
    let challenge = header_str(&res, "www-authenticate")
        .ok_or("GET /v2/ sent no challenge: is authentication on?")?
        .to_string();
    drain(res.body_mut()).await?;
    let param = |key: &str| -> Option<String> {
        let start = challenge.find(&format!("{key}=\""))? + key.len() + 2;
        let len = challenge[start..].find('"')?;
        Some(challenge[start..start + len].to_string())
    };
    let realm = param("realm").ok_or_else(|| format!("no realm in {challenge:?}"))?;
    let service = param("service").unwrap_or_default();
    // The realm's path: the bench talks to one host.
    let path = realm
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .ok_or_else(|| format!("realm {realm:?} has no path"))?;
    let mut query = format!("service={service}");
    for repo in repos {
        query.push_str(&format!("&scope=repository:{repo}:pull,push"));
    }
    let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
    let auth = (
        hyper::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {basic}"))?,
    );
    let what = format!("GET {path}");
    let res = conn
        .send(
            &Method::GET,
            &format!("{path}?{query}"),
            &[auth],
            ReqBody::Empty,
        )
        .await?;
    let res = expect(&what, res, &[StatusCode::OK]).await?;
    let body = collect(res.into_body()).await?;
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let token = json["token"]
        .as_str()
        .ok_or_else(|| format!("{what}: no token in the answer"))?;
    Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
}
