//! A PostgreSQL cluster of a test's own (`scripts/start-postgres`), for tests
//! that do to it what they must not do to the shared one: TLS only, stopped
//! and started again.

use std::process::{Command, Stdio};

use super::TempDir;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/start-postgres");

pub struct Cluster {
    dir: TempDir,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts a cluster with `scripts/start-postgres`'s `flags` (`--tls`).
    pub fn start(flags: &[&str]) -> Cluster {
        let dir = TempDir::new("berth-pg");
        let out = Command::new(SCRIPT)
            .args(flags)
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

    /// A value the script printed (`DATABASE_URL`, `CA_CERT`).
    pub fn get(&self, key: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == key).unwrap().1
    }

    /// Creates a database; returns its URL.
    pub fn database(&self, name: &str) -> String {
        create_database(self.get("DATABASE_URL"), name)
    }

    /// The number a counting query (`SELECT count(*) …`) answers.
    pub fn count(&self, sql: &str) -> u32 {
        let out = Command::new("psql")
            .args(["-X", "-tA", self.get("DATABASE_URL"), "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql -c {sql:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// Stops the server at once (`pg_ctl -m immediate`: like a crash, every
    /// connection cut).
    pub fn stop(&self) {
        self.script("--stop");
    }

    /// Starts the stopped server again, on the same port.
    pub fn resume(&self) {
        self.script("--resume");
    }

    fn script(&self, verb: &str) {
        let status = Command::new(SCRIPT)
            .arg(verb)
            .arg(self.dir.path().join("cluster"))
            .status()
            .unwrap();
        assert!(status.success(), "start-postgres {verb}");
    }
}

/// Creates the database `name` on the server `admin` (a URL ending in
/// `/DATABASE`) reaches; returns the new database's URL.
pub fn create_database(admin: &str, name: &str) -> String {
    let status = Command::new("psql")
        .args(["-q", "-X", admin, "-c", &format!("CREATE DATABASE {name}")])
        .stdout(Stdio::null())
        .status()
        .expect("psql runs");
    assert!(status.success(), "CREATE DATABASE on {admin}");
    let base = admin.rsplit_once('/').expect("a URL ending in /DATABASE").0;
    format!("{base}/{name}")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .arg("--stop")
            .arg(self.dir.path().join("cluster"))
            .status();
    }
}
