//! The OCI Distribution Specification v1.1, endpoint by endpoint, against a
//! real server over loopback HTTP.

mod common;
mod support;

use reqwest::{header, StatusCode};
use support::*;

fn start() -> (common::Server, Api) {
    let server = common::Server::start();
    let api = Api::new(server.url());
    (server, api)
}

// ---- base, errors, names -------------------------------------------------

#[tokio::test]
async fn base_endpoint_and_version_header() {
    let (_s, api) = start();
    let r = api.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, "docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let r = api.get("/v2/no/such/thing/here").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        header_of(&r, "docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(api.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(api.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn invalid_names_references_and_digests() {
    let (server, api) = start();
    api.push_image("ok/app", "v1", b"layer").await;
    // reqwest would normalise "..", so send these raw.
    for path in [
        "/v2/a/../b/tags/list",
        "/v2/A//b/tags/list",
        "/v2/Upper/manifests/v1",
        "/v2/a/./b/manifests/v1",
    ] {
        let answer = raw_request(
            server.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            false,
        );
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("NAME_INVALID"), "{path}: {answer}");
    }
    assert_error(
        api.get("/v2/ok/app/blobs/sha256:1234").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    assert_error(
        api.get("/v2/ok/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e")
            .await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    // A malformed tag names no manifest (what the conformance suite expects);
    // pushing to one is invalid.
    assert_error(
        api.get("/v2/ok/app/manifests/.INVALID_MANIFEST_NAME").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let head = api.head("/v2/ok/app/manifests/-bad-tag").await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    assert_error(
        api.put_manifest("ok/app", "-bad-tag", OCI_MANIFEST, "{}")
            .await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    // A query string that cannot be parsed is refused, not ignored.
    assert_error(
        api.get("/v2/ok/app/tags/list?n=1&n=2").await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED",
    )
    .await;
    assert_error(
        api.get("/v2/unknown/repo/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    assert_error(
        api.get("/v2/unknown/repo/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    assert_error(
        api.get("/v2/ok/app/manifests/v2").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let unknown = sha256(b"nothing");
    assert_error(
        api.get(&format!("/v2/ok/app/blobs/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    let r = api
        .http
        .post(api.url("/v2/ok/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(header_of(&r, "allow"), Some("GET, HEAD, PUT, DELETE"));
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    // Nothing stored was disturbed.
    assert_eq!(
        api.get("/v2/ok/app/manifests/v1").await.status(),
        StatusCode::OK
    );
}

// ---- pull ----------------------------------------------------------------

#[tokio::test]
async fn pull_manifests_by_tag_and_digest() {
    let (_s, api) = start();
    let (manifest, digest) = api.push_image("team/app", "v1", b"layer-bytes").await;
    for reference in ["v1", digest.as_str()] {
        let r = api
            .get(&format!("/v2/team/app/manifests/{reference}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header_of(&r, "docker-content-digest"),
            Some(digest.as_str())
        );
        assert_eq!(header_of(&r, "content-type"), Some(OCI_MANIFEST));
        assert_eq!(r.content_length(), Some(manifest.len() as u64));
        assert_eq!(r.text().await.unwrap(), manifest, "stored byte for byte");
        let r = api
            .head(&format!("/v2/team/app/manifests/{reference}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header_of(&r, "docker-content-digest"),
            Some(digest.as_str())
        );
        assert_eq!(
            header_of(&r, "content-length"),
            Some(manifest.len().to_string().as_str())
        );
    }
    // Content negotiation: an Accept list without the stored type is refused.
    let r = api
        .http
        .get(api.url("/v2/team/app/manifests/v1"))
        .header(header::ACCEPT, DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let r = api
        .http
        .get(api.url("/v2/team/app/manifests/v1"))
        .header(
            header::ACCEPT,
            format!("{OCI_MANIFEST};q=0, {DOCKER_MANIFEST}"),
        )
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    // A type refused with q=0 stays refused when it is the only one listed.
    let r = api
        .http
        .get(api.url("/v2/team/app/manifests/v1"))
        .header(header::ACCEPT, format!("{OCI_MANIFEST};q=0"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    for accept in [
        format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}"),
        "*/*".to_string(),
        format!("{OCI_MANIFEST};q=0.5"),
    ] {
        let r = api
            .http
            .get(api.url("/v2/team/app/manifests/v1"))
            .header(header::ACCEPT, accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn pull_blobs_with_ranges() {
    let (_s, api) = start();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = api.push_blob("r", &data).await;
    let path = format!("/v2/r/blobs/{digest}");
    let r = api.get(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(digest.as_str())
    );
    assert_eq!(
        header_of(&r, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(r.content_length(), Some(data.len() as u64));
    assert_eq!(r.bytes().await.unwrap(), data);
    let r = api.head(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, "content-length"), Some("100000"));

    let range = |spec: &'static str| {
        let api = &api;
        let path = path.clone();
        async move {
            api.http
                .get(api.url(&path))
                .header(header::RANGE, spec)
                .send()
                .await
                .unwrap()
        }
    };
    let r = range("bytes=10-19").await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_of(&r, "content-range"), Some("bytes 10-19/100000"));
    assert_eq!(r.bytes().await.unwrap(), data[10..20]);
    let r = range("bytes=-5").await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), data[99_995..]);
    let r = range("bytes=99990-").await;
    assert_eq!(r.bytes().await.unwrap(), data[99_990..]);
    // Other units and several ranges are ignored: the whole blob (RFC 9110).
    for ignored in ["bytes=0-1,0-2", "lines=1-2"] {
        let r = range(ignored).await;
        assert_eq!(r.status(), StatusCode::OK, "{ignored}");
        assert_eq!(r.bytes().await.unwrap(), data, "{ignored}");
    }
    // So is Range on a HEAD.
    let r = api
        .http
        .head(api.url(&path))
        .header(header::RANGE, "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, "content-length"), Some("100000"));
    for bad in ["bytes=100000-", "bytes=5-1", "bytes=-0", "bytes=x-y"] {
        let r = range(bad).await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(
            header_of(&r, "content-range"),
            Some("bytes */100000"),
            "{bad}"
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            body["errors"][0]["code"], "RANGE_INVALID",
            "{bad}: the blob exists"
        );
        assert_eq!(body["errors"][0]["detail"]["size"], 100000, "{bad}");
    }
}

// ---- push ----------------------------------------------------------------

#[tokio::test]
async fn monolithic_and_single_request_pushes() {
    let (_s, api) = start();
    let d1 = api.push_blob("m", b"two requests").await;
    assert_eq!(
        api.get(&format!("/v2/m/blobs/{d1}"))
            .await
            .bytes()
            .await
            .unwrap(),
        &b"two requests"[..]
    );

    let body = b"one request";
    let d2 = sha256(body);
    let r = api
        .http
        .post(api.url(&format!("/v2/m/blobs/uploads/?digest={d2}")))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/m/blobs/{d2}"));
    assert_eq!(header_of(&r, "docker-content-digest"), Some(d2.as_str()));
    assert_eq!(
        api.get(&format!("/v2/m/blobs/{d2}"))
            .await
            .bytes()
            .await
            .unwrap(),
        &body[..]
    );

    // A body that does not match its digest is refused and not stored.
    let wrong = sha256(b"something else");
    let r = api
        .http
        .post(api.url(&format!("/v2/m/blobs/uploads/?digest={wrong}")))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        api.head(&format!("/v2/m/blobs/{wrong}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let location = api.start_upload("m").await;
    let r = api
        .http
        .put(api.url(&with_query(&location, &format!("digest={wrong}"))))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        api.head(&format!("/v2/m/blobs/{wrong}")).await.status(),
        StatusCode::NOT_FOUND
    );
    // The failed session is gone.
    assert_error(
        api.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    // PUT without a digest.
    let location = api.start_upload("m").await;
    let r = api.http.put(api.url(&location)).send().await.unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn sha512_blobs_and_manifests() {
    let (_s, api) = start();
    use sha2::{Digest as _, Sha512};
    let body = b"sha512 content";
    let d = format!("sha512:{}", hex::encode(Sha512::digest(body)));
    let location = api.start_upload("s").await;
    let r = api
        .http
        .put(api.url(&with_query(&location, &format!("digest={d}"))))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = api.get(&format!("/v2/s/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), &body[..]);
    let config = api.push_blob("s", b"{}").await;
    let manifest = image_manifest(&config, 2, &[(&d, body.len())], None, None);
    let md = format!(
        "sha512:{}",
        hex::encode(Sha512::digest(manifest.as_bytes()))
    );
    let r = api.put_manifest("s", &md, OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header_of(&r, "docker-content-digest"), Some(md.as_str()));
    assert_eq!(
        api.get(&format!("/v2/s/manifests/{md}"))
            .await
            .text()
            .await
            .unwrap(),
        manifest
    );
}

#[tokio::test]
async fn chunked_upload_with_status_and_out_of_order_chunks() {
    let (_s, api) = start();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let digest = sha256(&data);
    let mut location = api.start_upload("c/hunk").await;
    let r = api.get(&location).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_of(&r, "range"), Some("0-0"));
    let mut offset = 0;
    for chunk in data.chunks(100_000) {
        let r = api
            .http
            .patch(api.url(&location))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(
                header::CONTENT_RANGE,
                format!("{}-{}", offset, offset + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        offset += chunk.len();
        assert_eq!(
            header_of(&r, "range"),
            Some(format!("0-{}", offset - 1).as_str())
        );
        location = support::location(&r);
        let status = api.get(&location).await;
        assert_eq!(status.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            header_of(&status, "range"),
            Some(format!("0-{}", offset - 1).as_str())
        );
        if offset == 100_000 {
            // A chunk that skips ahead gets 416 with where the upload stands.
            let r = api
                .http
                .patch(api.url(&location))
                .header(header::CONTENT_RANGE, "150000-150009")
                .body(vec![0u8; 10])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
            assert_eq!(header_of(&r, "range"), Some("0-99999"));
            assert!(header_of(&r, "location").is_some());
            // And a Content-Range that disagrees with Content-Length is refused.
            let r = api
                .http
                .patch(api.url(&location))
                .header(header::CONTENT_RANGE, "100000-100099")
                .body(vec![0u8; 10])
                .send()
                .await
                .unwrap();
            assert_error(r, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
        }
    }
    let r = api
        .http
        .put(api.url(&with_query(&location, &format!("digest={digest}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        api.get(&format!("/v2/c/hunk/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap(),
        data
    );
}

#[tokio::test]
async fn streamed_patch_without_content_range_and_cancel() {
    let (_s, api) = start();
    let location = api.start_upload("x").await;
    let r = api
        .http
        .patch(api.url(&location))
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = support::location(&r);
    let r = api
        .http
        .put(api.url(&with_query(
            &location,
            &format!("digest={}", sha256(b"abcdef")),
        )))
        .body(b"def".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "PUT may carry the last chunk"
    );

    let location = api.start_upload("x").await;
    assert_eq!(api.delete(&location).await.status(), StatusCode::NO_CONTENT);
    assert_error(
        api.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    // A session belongs to its repository.
    let location = api.start_upload("x").await;
    let elsewhere = location.replacen("/v2/x/", "/v2/y/", 1);
    assert_error(
        api.get(&elsewhere).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        api.get("/v2/x/blobs/uploads/00000000-0000-0000-0000-000000000000")
            .await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let (_s, api) = start();
    let digest = api.push_blob("source/repo", b"shared layer").await;
    let r = api
        .http
        .post(api.url(&format!(
            "/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/target/repo/blobs/{digest}"));
    assert_eq!(
        api.get(&format!("/v2/target/repo/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap(),
        &b"shared layer"[..]
    );
    // Without `from`, a blob the registry holds is mounted automatically.
    let r = api
        .http
        .post(api.url(&format!("/v2/third/blobs/uploads/?mount={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A blob `from` does not hold starts an ordinary upload instead.
    let missing = sha256(b"not here");
    let r = api
        .http
        .post(api.url(&format!(
            "/v2/target/repo/blobs/uploads/?mount={missing}&from=source/repo"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(location(&r).contains("/blobs/uploads/"));
    // Malformed `from` or `mount`: no mount, an ordinary upload (the spec's 202).
    for query in [
        format!("mount={digest}&from=Bad//Name"),
        "mount=sha256:nope&from=source/repo".into(),
    ] {
        let r = api
            .http
            .post(api.url(&format!("/v2/target/repo/blobs/uploads/?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{query}");
    }
}

#[tokio::test]
async fn final_chunk_on_put_is_checked_like_a_patch() {
    let (server, api) = start();
    let location = api.start_upload("fin").await;
    let r = api
        .http
        .patch(api.url(&location))
        .header(header::CONTENT_RANGE, "0-4")
        .body(b"hello".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let digest = sha256(b"hello world");
    // A last chunk that does not continue the upload: 416, and the session lives on.
    let r = api
        .http
        .put(api.url(&with_query(&location, &format!("digest={digest}"))))
        .header(header::CONTENT_RANGE, "9-14")
        .body(b" world".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header_of(&r, "range"), Some("0-4"));
    // A chunked-encoded PATCH longer than its Content-Range is refused whole.
    let request = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Range: 5-6\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\n world\r\n0\r\n\r\n"
    );
    let answer = raw_request(server.addr, request.as_bytes(), false);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(header_of(&api.get(&location).await, "range"), Some("0-4"));
    let r = api
        .http
        .put(api.url(&with_query(&location, &format!("digest={digest}"))))
        .header(header::CONTENT_RANGE, "5-10")
        .body(b" world".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        api.get(&format!("/v2/fin/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap(),
        &b"hello world"[..]
    );
}

#[tokio::test]
async fn buildkit_cache_indexes_artifact_drafts_and_empty_artifact_types() {
    let (_s, api) = start();
    // BuildKit's registry cache: an index listing layers and a cache config.
    let layer = api.push_blob("cache", b"cached layer").await;
    let cache_config = api.push_blob("cache", b"{\"layers\":[]}").await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":12}},
            {{"mediaType":"application/vnd.buildkit.cacheconfig.v0","digest":"{cache_config}","size":13}}]}}"#
    );
    let r = api
        .put_manifest("cache", "buildcache", OCI_INDEX, &index)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    // Those entries are blobs: they must be in the repository.
    let r = api
        .put_manifest("elsewhere", "buildcache", OCI_INDEX, &index)
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;

    // The withdrawn artifact manifest has no schemaVersion.
    let blob = api.push_blob("cache", b"artifact").await;
    let artifact = format!(
        r#"{{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","artifactType":"application/x-demo","blobs":[{{"mediaType":"application/octet-stream","digest":"{blob}","size":8}}]}}"#
    );
    let r = api
        .put_manifest(
            "cache",
            "artifact",
            "application/vnd.oci.artifact.manifest.v1+json",
            &artifact,
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );

    // An empty artifactType is a missing one: the config media type stands in.
    let (subject, subject_digest) = api.push_image("cache", "v1", b"subject").await;
    let empty = api.push_blob("cache", b"{}").await;
    let referrer = image_manifest(
        &empty,
        2,
        &[],
        Some(""),
        Some((&subject_digest, subject.len())),
    );
    let r = api
        .put_manifest(
            "cache",
            &sha256(referrer.as_bytes()),
            OCI_MANIFEST,
            &referrer,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: serde_json::Value = api
        .get(&format!("/v2/cache/referrers/{subject_digest}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["manifests"][0]["artifactType"], OCI_CONFIG);
}

#[tokio::test]
async fn manifest_push_checks_references() {
    let (_s, api) = start();
    let config = api.push_blob("p", b"{}").await;
    let missing = sha256(b"missing layer");
    let manifest = image_manifest(&config, 2, &[(&missing, 13)], None, None);
    let r = api.put_manifest("p", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(body["errors"][0]["detail"]["missing"][0], missing.as_str());
    assert_error(
        api.get("/v2/p/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;

    // A blob in another repository does not count.
    let layer = api.push_blob("other", b"missing layer").await;
    assert_eq!(
        api.put_manifest("p", "v1", OCI_MANIFEST, &manifest)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(layer, missing);
    api.push_blob("p", b"missing layer").await;
    let r = api.put_manifest("p", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        location(&r),
        format!("/v2/p/manifests/{}", sha256(manifest.as_bytes()))
    );

    // The same layer twice (Docker images with repeated empty layers do this).
    let layer = sha256(b"missing layer");
    let twice = image_manifest(&config, 2, &[(&layer, 13), (&layer, 13)], None, None);
    assert_eq!(
        api.put_manifest("p", "twice", OCI_MANIFEST, &twice)
            .await
            .status(),
        StatusCode::CREATED
    );

    // An index needs its children in the repository.
    let absent_child = sha256(b"no such manifest");
    let index = index_manifest(
        OCI_INDEX,
        &[
            (&sha256(manifest.as_bytes()), manifest.len()),
            (&absent_child, 10),
        ],
    );
    let r = api.put_manifest("p", "multi", OCI_INDEX, &index).await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn malformed_manifests_are_refused_without_harm() {
    let (_s, api) = start();
    let config = api.push_blob("bad", b"{}").await;
    let good = image_manifest(&config, 2, &[], None, None);
    let digest = sha256(good.as_bytes());
    assert_eq!(
        api.put_manifest("bad", "v1", OCI_MANIFEST, &good)
            .await
            .status(),
        StatusCode::CREATED
    );
    let cases: Vec<(String, &str, StatusCode, &str)> = vec![
        (
            "{not json".into(),
            OCI_MANIFEST,
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            r#"{"schemaVersion":1}"#.into(),
            OCI_MANIFEST,
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            good.clone(),
            DOCKER_MANIFEST,
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            good.replace(&config, "sha256:zzzz"),
            OCI_MANIFEST,
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            good.replace("\"size\":2", "\"size\":-2"),
            OCI_MANIFEST,
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            r#"{"schemaVersion":2,"mediaType":"application/x-custom"}"#.into(),
            "application/x-custom",
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
    ];
    for (body, content_type, status, code) in cases {
        // Pushed over the existing tag: nothing about v1 may change.
        assert_error(
            api.put_manifest("bad", "v1", content_type, &body).await,
            status,
            code,
        )
        .await;
    }
    let wrong_digest = sha256(b"other");
    assert_error(
        api.put_manifest("bad", &wrong_digest, OCI_MANIFEST, &good)
            .await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    let huge = format!(
        "{{\"schemaVersion\":2,\"pad\":\"{}\"}}",
        "x".repeat(4 * 1024 * 1024)
    );
    let r = api.put_manifest("bad", "huge", OCI_MANIFEST, &huge).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = api.get("/v2/bad/manifests/v1").await;
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(digest.as_str())
    );
    assert_eq!(r.text().await.unwrap(), good);
}

#[tokio::test]
async fn index_docker_and_artifact_manifests_with_subject() {
    let (_s, api) = start();
    let (amd, amd_digest) = api.push_image("multi", "amd64", b"amd64 layer").await;
    let (arm, arm_digest) = api.push_image("multi", "arm64", b"arm64 layer").await;
    for media_type in [OCI_INDEX, DOCKER_LIST] {
        let index = index_manifest(
            media_type,
            &[(&amd_digest, amd.len()), (&arm_digest, arm.len())],
        );
        let r = api
            .put_manifest("multi", "latest", media_type, &index)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = api.get("/v2/multi/manifests/latest").await;
        assert_eq!(header_of(&r, "content-type"), Some(media_type));
        assert_eq!(r.text().await.unwrap(), index);
    }
    // Docker schema 2, with no mediaType in the body: the Content-Type names it.
    let config = api.push_blob("multi", b"{\"os\":\"linux\"}").await;
    let docker = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config}","size":14}},"layers":[]}}"#
    );
    assert_eq!(
        api.put_manifest("multi", "docker", DOCKER_MANIFEST, &docker)
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        header_of(
            &api.head("/v2/multi/manifests/docker").await,
            "content-type"
        ),
        Some(DOCKER_MANIFEST)
    );

    // An artifact with a subject: OCI-Subject in the answer.
    let empty = api.push_blob("multi", b"{}").await;
    let artifact = image_manifest(
        &empty,
        2,
        &[],
        Some("application/vnd.example.sbom"),
        Some((&amd_digest, amd.len())),
    );
    let r = api
        .put_manifest(
            "multi",
            &sha256(artifact.as_bytes()),
            OCI_MANIFEST,
            &artifact,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header_of(&r, "oci-subject"), Some(amd_digest.as_str()));
}

// ---- discovery -----------------------------------------------------------

#[tokio::test]
async fn tag_list_pagination() {
    let (_s, api) = start();
    let (manifest, _) = api.push_image("t", "seed", b"l").await;
    let mut expected: Vec<String> = (0..25).map(|i| format!("v{i}")).collect();
    expected.push("seed".into());
    expected.push("Z-upper".into());
    for tag in &expected {
        assert_eq!(
            api.put_manifest("t", tag, OCI_MANIFEST, &manifest)
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    expected.sort(); // byte order: uppercase first
    let r = api.get("/v2/t/tags/list").await;
    assert!(header_of(&r, "link").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["name"], "t");
    assert_eq!(body["tags"], serde_json::json!(expected));

    let mut collected = Vec::new();
    let mut next = Some("/v2/t/tags/list?n=10".to_string());
    while let Some(path) = next {
        let r = api.get(&path).await;
        next = header_of(&r, "link").map(|l| {
            assert!(l.ends_with("rel=\"next\""), "{l}");
            l[1..l.index_of('>')].to_string()
        });
        let body: serde_json::Value = r.json().await.unwrap();
        let page: Vec<String> = serde_json::from_value(body["tags"].clone()).unwrap();
        assert!(page.len() <= 10);
        collected.extend(page);
    }
    assert_eq!(collected, expected);
    let body: serde_json::Value = api
        .get("/v2/t/tags/list?n=3&last=v1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["tags"], serde_json::json!(["v10", "v11", "v12"]));
    let body: serde_json::Value = api.get("/v2/t/tags/list?n=0").await.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!([]));
    assert_error(
        api.get("/v2/t/tags/list?n=-1").await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED",
    )
    .await;
    // A new tag shows up in the next listing; a deleted one disappears.
    assert_eq!(
        api.put_manifest("t", "v99", OCI_MANIFEST, &manifest)
            .await
            .status(),
        StatusCode::CREATED
    );
    let body: serde_json::Value = api
        .get("/v2/t/tags/list?last=v8")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["tags"], serde_json::json!(["v9", "v99"]));
    assert_eq!(
        api.delete("/v2/t/manifests/v99").await.status(),
        StatusCode::ACCEPTED
    );
    let body: serde_json::Value = api
        .get("/v2/t/tags/list?last=v8")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["tags"], serde_json::json!(["v9"]));
}

trait IndexOf {
    fn index_of(&self, c: char) -> usize;
}
impl IndexOf for str {
    fn index_of(&self, c: char) -> usize {
        self.find(c).unwrap()
    }
}

#[tokio::test]
async fn catalog_pagination() {
    let (_s, api) = start();
    let names = ["a", "a/b", "b/c/d", "c", "z/y"];
    for name in names {
        api.push_blob(name, name.as_bytes()).await;
    }
    let body: serde_json::Value = api.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(body["repositories"], serde_json::json!(names));
    let r = api.get("/v2/_catalog?n=2").await;
    assert_eq!(
        header_of(&r, "link"),
        Some("</v2/_catalog?n=2&last=a/b>; rel=\"next\"")
    );
    let r = api.get("/v2/_catalog?n=2&last=a/b").await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["b/c/d", "c"]));
}

#[tokio::test]
async fn referrers_api_with_artifact_type_filter() {
    let (_s, api) = start();
    let (subject, subject_digest) = api.push_image("ref", "v1", b"subject layer").await;
    let empty = api.push_blob("ref", b"{}").await;
    let mut pushed = Vec::new();
    for artifact_type in [
        "application/vnd.example.sbom",
        "application/vnd.example.signature",
    ] {
        let m = image_manifest(
            &empty,
            2,
            &[],
            Some(artifact_type),
            Some((&subject_digest, subject.len())),
        );
        let r = api
            .put_manifest("ref", &sha256(m.as_bytes()), OCI_MANIFEST, &m)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        pushed.push((sha256(m.as_bytes()), m.len(), artifact_type));
    }
    let r = api
        .get(&format!("/v2/ref/referrers/{subject_digest}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, "content-type"), Some(OCI_INDEX));
    assert!(header_of(&r, "oci-filters-applied").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], OCI_INDEX);
    let manifests = body["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    for (digest, size, artifact_type) in &pushed {
        let d = manifests
            .iter()
            .find(|m| m["digest"] == digest.as_str())
            .expect("listed");
        assert_eq!(d["size"], *size);
        assert_eq!(d["artifactType"], *artifact_type);
        assert_eq!(d["mediaType"], OCI_MANIFEST);
        assert_eq!(d["annotations"]["org.example"], "yes");
    }
    let r = api
        .get(&format!(
            "/v2/ref/referrers/{subject_digest}?artifactType=application/vnd.example.sbom"
        ))
        .await;
    assert_eq!(header_of(&r, "oci-filters-applied"), Some("artifactType"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(body["manifests"][0]["digest"], pushed[0].0.as_str());
    // Unknown subjects have no referrers; that is not an error.
    let r = api
        .get(&format!("/v2/ref/referrers/{}", sha256(b"x")))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["manifests"], serde_json::json!([]));
    // The image's own config media type is its artifact type.
    let plain = image_manifest(&empty, 2, &[], None, Some((&subject_digest, subject.len())));
    let r = api
        .put_manifest("ref", &sha256(plain.as_bytes()), OCI_MANIFEST, &plain)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let encoded = OCI_CONFIG.replace('+', "%2B");
    let r = api
        .get(&format!(
            "/v2/ref/referrers/{subject_digest}?artifactType={encoded}"
        ))
        .await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["manifests"][0]["digest"], sha256(plain.as_bytes()));
    assert_error(
        api.get("/v2/ref/referrers/sha256:bad").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
}

// ---- content management --------------------------------------------------

#[tokio::test]
async fn delete_tags_manifests_and_blobs() {
    let (_s, api) = start();
    let (manifest, digest) = api.push_image("del", "v1", b"layer to delete").await;
    api.put_manifest("del", "v2", OCI_MANIFEST, &manifest).await;
    // Deleting a tag removes only the tag.
    assert_eq!(
        api.delete("/v2/del/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        api.get("/v2/del/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        api.get(&format!("/v2/del/manifests/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        api.get("/v2/del/manifests/v2").await.status(),
        StatusCode::OK
    );
    assert_error(
        api.delete("/v2/del/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;

    // A blob a manifest uses cannot be deleted from under it.
    let layer = sha256(b"layer to delete");
    assert_error(
        api.delete(&format!("/v2/del/blobs/{layer}")).await,
        StatusCode::CONFLICT,
        "DENIED",
    )
    .await;

    // Deleting the manifest by digest removes it and its tags.
    assert_eq!(
        api.delete(&format!("/v2/del/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        api.get(&format!("/v2/del/manifests/{digest}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_error(
        api.get("/v2/del/manifests/v2").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let body: serde_json::Value = api.get("/v2/del/tags/list").await.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!([]));

    assert_eq!(
        api.delete(&format!("/v2/del/blobs/{layer}")).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.head(&format!("/v2/del/blobs/{layer}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_error(
        api.delete(&format!("/v2/del/blobs/{layer}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn index_children_cannot_be_deleted_first() {
    let (_s, api) = start();
    let (m, d) = api.push_image("idx", "one", b"layer").await;
    let index = index_manifest(OCI_INDEX, &[(&d, m.len())]);
    let index_digest = sha256(index.as_bytes());
    api.put_manifest("idx", "multi", OCI_INDEX, &index).await;
    assert_error(
        api.delete(&format!("/v2/idx/manifests/{d}")).await,
        StatusCode::CONFLICT,
        "DENIED",
    )
    .await;
    assert_eq!(
        api.delete(&format!("/v2/idx/manifests/{index_digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.delete(&format!("/v2/idx/manifests/{d}")).await.status(),
        StatusCode::ACCEPTED
    );
}

// ---- robustness ----------------------------------------------------------

#[tokio::test]
async fn truncated_and_aborted_uploads_leave_the_session_intact() {
    let (server, api) = start();
    let location = api.start_upload("abort").await;
    let r = api
        .http
        .patch(api.url(&location))
        .body(b"0123456789".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The client promises 1000 bytes, sends 5 and hangs up.
    let request = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nhello"
    );
    raw_request(server.addr, request.as_bytes(), true);
    // Likewise mid-way through a chunked body.
    let request = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    );
    raw_request(server.addr, request.as_bytes(), true);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = api.get(&location).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header_of(&r, "range"),
        Some("0-9"),
        "partial chunks were rolled back"
    );
    // The session goes on as if nothing happened.
    let r = api
        .http
        .put(api.url(&with_query(
            &location,
            &format!("digest={}", sha256(b"0123456789abc")),
        )))
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // A manifest cut short is refused and stores nothing.
    let (good, _) = api.push_image("abort", "v1", b"l").await;
    let request = format!(
        "PUT /v2/abort/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n{}",
        good.len() + 10,
        &good[..good.len() / 2]
    );
    raw_request(server.addr, request.as_bytes(), true);
    assert_eq!(
        api.get("/v2/abort/manifests/v1")
            .await
            .text()
            .await
            .unwrap(),
        good
    );
}

#[tokio::test]
async fn data_and_uploads_survive_sigkill() {
    let mut server = common::Server::start();
    let api = Api::new(server.url());
    let (manifest, digest) = api.push_image("crash", "v1", b"durable layer").await;
    let location = api.start_upload("crash").await;
    let r = api
        .http
        .patch(api.url(&location))
        .body(b"first half,".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    server.kill_and_restart();
    let api = Api::new(server.url()); // the old connections died with the process

    let r = api.get("/v2/crash/manifests/v1").await;
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(digest.as_str())
    );
    assert_eq!(r.text().await.unwrap(), manifest);
    // The upload continues where it was; its hash state is rebuilt from disk.
    let r = api.get(&location).await;
    assert_eq!(header_of(&r, "range"), Some("0-10"));
    let whole = b"first half,second half";
    let r = api
        .http
        .put(api.url(&with_query(&location, &format!("digest={}", sha256(whole)))))
        .body(b"second half".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        api.get(&format!("/v2/crash/blobs/{}", sha256(whole)))
            .await
            .bytes()
            .await
            .unwrap(),
        &whole[..]
    );
}

#[tokio::test]
async fn blobs_stream_in_constant_memory() {
    let server = common::Server::start();
    let Some(pid) = server.pid() else { return }; // external registry: nothing to measure
    let api = Api::new(server.url());
    const SIZE: usize = 512 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 241) as u8).collect();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for _ in 0..SIZE / CHUNK {
        sha2::Digest::update(&mut hasher, &chunk);
    }
    let digest = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher)));
    let body = futures_util::stream::iter(
        (0..SIZE / CHUNK).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(chunk.clone()))),
    );
    let location = api.start_upload("big").await;
    let r = api
        .http
        .put(api.url(&with_query(&location, &format!("digest={digest}"))))
        .header(header::CONTENT_LENGTH, SIZE)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut r = api.get(&format!("/v2/big/blobs/{digest}")).await;
    let mut received = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        received += c.len();
    }
    assert_eq!(received, SIZE);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        peak_kib < 100 * 1024,
        "server peak RSS {peak_kib} KiB after a 512 MiB push and pull"
    );
}

#[tokio::test]
async fn referrers_beyond_one_index_are_paginated() {
    let (_s, api) = start();
    let (subject, subject_digest) = api.push_image("many", "v1", b"popular").await;
    let empty = api.push_blob("many", b"{}").await;
    // 60 referrers of ~80 KB each: more than one 4 MiB index holds.
    let mut pushed = Vec::new();
    for i in 0..60 {
        let m = image_manifest(
            &empty,
            2,
            &[],
            Some("application/vnd.example.big"),
            Some((&subject_digest, subject.len())),
        )
        .replace(
            r#""org.example":"yes""#,
            &format!(r#""org.example":"{i}-{}""#, "x".repeat(80_000)),
        );
        let r = api
            .put_manifest("many", &sha256(m.as_bytes()), OCI_MANIFEST, &m)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        pushed.push(sha256(m.as_bytes()));
    }
    pushed.sort();
    let mut seen = Vec::new();
    let mut next = Some(format!(
        "/v2/many/referrers/{subject_digest}?artifactType=application/vnd.example.big"
    ));
    let mut pages = 0;
    while let Some(path) = next {
        let r = api.get(&path).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header_of(&r, "oci-filters-applied"), Some("artifactType"));
        next = header_of(&r, "link").map(|l| l[1..l.find('>').unwrap()].to_string());
        let body = r.bytes().await.unwrap();
        assert!(
            body.len() <= 4 * 1024 * 1024,
            "a page is one index of at most 4 MiB"
        );
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for d in body["manifests"].as_array().unwrap() {
            seen.push(d["digest"].as_str().unwrap().to_string());
        }
        pages += 1;
    }
    assert!(pages >= 2, "{pages} pages");
    assert_eq!(seen, pushed);
}
