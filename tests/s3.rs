//! Blob pulls redirected to presigned URLs of the S3 store (with
//! `storage.s3.presigned_redirects`). Runs in the S3 pass of `scripts/test`,
//! which starts a Garage server and sets `BERTH_TEST_S3_ENDPOINT`; without
//! it there is no object store to redirect to, and the test says so.

mod common;
mod support;

use reqwest::{header, StatusCode};
use support::*;

#[tokio::test]
async fn blob_gets_redirect_to_presigned_urls_of_the_store() {
    let Ok(endpoint) = std::env::var("BERTH_TEST_S3_ENDPOINT") else {
        eprintln!("BERTH_TEST_S3_ENDPOINT is not set: no S3 store (scripts/test starts one)");
        return;
    };
    let server = common::Server::start_with_env(&[], &[("BERTH_S3_PRESIGNED_REDIRECTS", "true")]);
    let api = Api::new(server.url());
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = api.push_blob("redirected/app", &bytes).await;
    let path = format!("/v2/redirected/app/blobs/{digest}");

    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow.get(api.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(digest.as_str())
    );
    let location = header_of(&r, "location").unwrap().to_string();
    assert!(location.starts_with(&endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");

    // The store serves the exact bytes, and ranges of them, to anyone
    // holding the URL: the bytes never pass through Berth.
    let r = no_follow.get(&location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), &bytes[..]);
    let r = no_follow
        .get(&location)
        .header(header::RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), &bytes[10..20]);
    // A tampered signature is refused by the store.
    let forged = location.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(
        no_follow.get(&forged).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // A client that follows redirects gets the blob; HEAD is answered by
    // Berth itself, with the blob's length.
    assert_eq!(api.get(&path).await.bytes().await.unwrap(), &bytes[..]);
    let r = api.head(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, "content-length"),
        Some(bytes.len().to_string().as_str())
    );
    // Unknown blobs are still the registry's error, not a redirect.
    let missing = format!("/v2/redirected/app/blobs/{}", sha256(b"never pushed"));
    let r = no_follow.get(api.url(&missing)).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}
