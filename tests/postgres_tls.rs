//! Metadata on a PostgreSQL that takes TLS connections only, with a
//! certificate from a CA of the test's own (`scripts/start-postgres --tls`
//! starts the cluster): `sslmode=verify-full` with that CA works and is
//! encrypted; without it the certificate is refused and Berth says why.

mod common;
mod support;

use std::process::Command;

use common::postgres::Cluster;
use reqwest::StatusCode;
use support::*;

/// TLS connections open now.
fn encrypted_connections(cluster: &Cluster) -> u32 {
    cluster.count("SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()")
}

#[tokio::test]
async fn metadata_over_verified_tls() {
    let cluster = Cluster::start(&["--tls"]);
    let url = cluster.database("tls");
    let verified = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        cluster.get("CA_CERT")
    );
    let before = encrypted_connections(&cluster);
    let server = common::Server::start_with_env(&[], &[("BERTH_DATABASE_URL", &verified)]);
    let api = Api::new(server.url());
    let (_, digest) = api.push_image("tls/app", "v1", b"a layer over TLS").await;
    let r = api.get("/v2/tls/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, "docker-content-digest"),
        Some(digest.as_str())
    );
    assert!(
        encrypted_connections(&cluster) > before,
        "Berth's connections are not encrypted"
    );
    drop(server);

    // The same database without the CA: the server's certificate is
    // unknown, and Berth refuses to start rather than talk in the clear.
    let unverified = format!("{url}?sslmode=verify-full");
    let data = common::TempDir::new("berth-tls-data");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("BERTH_DATABASE_URL", &unverified)
        .env("BERTH_STORAGE_BACKEND", "local")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
}
