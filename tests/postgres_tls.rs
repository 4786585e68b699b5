//! Metadata on a PostgreSQL that takes TLS connections only, with a
//! certificate from a CA of the test's own (`scripts/start-postgres --tls`
//! starts the cluster): `sslmode=verify-full` with that CA works and is
//! encrypted; without it the certificate is refused and Berth says why.

mod common;
mod support;

use std::process::Command;

use reqwest::StatusCode;
use support::*;

struct Cluster {
    dir: common::TempDir,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = common::TempDir::new("berth-pg-tls");
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/start-postgres"
        ))
        .arg("--tls")
        .arg(dir.path().join("cluster"))
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "start-postgres: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        Cluster { dir, env }
    }

    fn get(&self, key: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == key).unwrap().1
    }

    /// Creates a database; returns its URL (without TLS parameters).
    fn database(&self, name: &str) -> String {
        let admin = self.get("DATABASE_URL");
        let status = Command::new("psql")
            .args(["-q", "-X", admin, "-c", &format!("CREATE DATABASE {name}")])
            .status()
            .unwrap();
        assert!(status.success());
        format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
    }

    /// TLS connections open now.
    fn encrypted_connections(&self) -> u32 {
        let out = Command::new("psql")
            .args([
                "-X",
                "-tA",
                self.get("DATABASE_URL"),
                "-c",
                "SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()",
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/start-postgres"
        ))
        .arg("--stop")
        .arg(self.dir.path().join("cluster"))
        .status();
    }
}

#[tokio::test]
async fn metadata_over_verified_tls() {
    let cluster = Cluster::start();
    let url = cluster.database("tls");
    let verified = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        cluster.get("CA_CERT")
    );
    let before = cluster.encrypted_connections();
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
        cluster.encrypted_connections() > before,
        "Berth's connections are not encrypted"
    );
    drop(server);

    // The same database without the CA: the server's certificate is
    // unknown, and Berth refuses to start rather than talk in the clear.
    let unverified = format!("{url}?sslmode=verify-full");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(cluster.dir.path().join("data"))
        .env("BERTH_DATABASE_URL", &unverified)
        .env("BERTH_STORAGE_BACKEND", "local")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
}
