//! Test harness: starts a real `berth` process on a loopback port with its own
//! temporary directory, and stops it when dropped.
//!
//! Setting `BERTH_TEST_EXTERNAL_REGISTRY=127.0.0.1:5001` points every test at an
//! already-running registry instead (for comparing behaviour with another
//! implementation); nothing is started then.
#![allow(dead_code)]

pub mod postgres;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of `admin` in every test server.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

pub struct Server {
    pub addr: SocketAddr,
    /// Holds `data/` (the server's data directory) and `server.log` (its stderr).
    dir: Option<TempDir>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> TempDir {
            let base = std::env::var_os("BERTH_TEST_TMP")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let dir = base.join(format!("{prefix}-{}-{}", std::process::id(), unique()));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    fn unique() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        t ^ N.fetch_add(1, Ordering::Relaxed)
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub use tempdir::TempDir;

impl Server {
    /// Starts a fresh registry (or returns the external one).
    pub fn start() -> Server {
        Server::start_with_env(&[], &[])
    }

    /// Starts a fresh registry with access control on (the token flow), as
    /// installations run it. `start` turns it off: the protocol tests test
    /// the protocol.
    pub fn start_secured() -> Server {
        Server::start_with_env(&[], &[("BERTH_AUTH_MODE", "token")])
    }

    /// Starts a fresh registry with extra command-line arguments.
    pub fn start_with(extra_args: &[&str]) -> Server {
        Server::start_with_env(extra_args, &[])
    }

    /// Starts a fresh registry with extra arguments and environment variables.
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let env = storage_env()
            .into_iter()
            .chain(database_env())
            .chain(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Server::start_inner(extra_args, env)
    }

    /// Starts a fresh registry on the embedded defaults (SQLite file, blobs
    /// under its data directory) whatever backends the test run sets, with
    /// extra environment variables.
    pub fn start_embedded(env: &[(&str, &str)]) -> Server {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Server::start_inner(&[], env)
    }

    fn start_inner(extra_args: &[&str], env: Vec<(String, String)>) -> Server {
        if let Ok(addr) = std::env::var("BERTH_TEST_EXTERNAL_REGISTRY") {
            return Server {
                addr: addr
                    .parse()
                    .expect("BERTH_TEST_EXTERNAL_REGISTRY is host:port"),
                dir: None,
                env: Vec::new(),
                child: None,
            };
        }
        // Chosen and bound under the lock a restart holds, so that no other
        // test's server is given the port a killed server is about to take
        // again (it would find it busy, exit, and the test would talk to the
        // other one).
        let _ports = PORTS.read().unwrap_or_else(|e| e.into_inner());
        let mut server = Server {
            addr: free_port(),
            dir: Some(TempDir::new("berth-test")),
            env,
            child: None,
        };
        // A helper process of another test (a far-side registry, a
        // receiver) may take the free port first: the server then exits,
        // and is started again on another port.
        for attempt in 1.. {
            server.child = Some(server.spawn(extra_args));
            match server.ready() {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    eprintln!("{e}; starting again on another port");
                    server.addr = free_port();
                }
                Err(e) => panic!("{e}"),
            }
        }
        server
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, the form registry clients take.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("a started server")
            .path()
            .join("data")
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        let dir = self.dir.as_ref().expect("a started server");
        std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        Some(child.wait().expect("wait").code().unwrap_or(-1))
    }

    /// A management API request as `admin` (Basic credentials).
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.url()))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `admin_call` that must succeed; its JSON answer (Null when empty).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let r = self.admin_call(method.clone(), path, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// The consistency check (`berth check`) through the API: its report.
    pub async fn check(&self) -> serde_json::Value {
        self.admin(
            reqwest::Method::POST,
            "/api/v1/system/check",
            serde_json::Value::Null,
        )
        .await
    }

    /// The process, for tests that signal or wait for it themselves.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Kills the process with SIGKILL (a crash: nothing is flushed).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// Kills the process with SIGKILL and starts it again on the same port and data.
    pub fn kill_and_restart(&mut self) {
        let _ports = PORTS.write().unwrap_or_else(|e| e.into_inner());
        let Some(mut child) = self.child.take() else {
            panic!("cannot restart an external registry");
        };
        child.kill().expect("kill");
        child.wait().expect("wait");
        self.child = Some(self.spawn(&[]));
        self.wait_ready();
    }

    /// Kills the process with SIGKILL, calls `between` with its data
    /// directory, then starts it again on the same port and data.
    pub fn kill_and_restart_after(&mut self, between: impl FnOnce(&std::path::Path)) {
        let _ports = PORTS.write().unwrap_or_else(|e| e.into_inner());
        let Some(mut child) = self.child.take() else {
            panic!("cannot restart an external registry");
        };
        child.kill().expect("kill");
        child.wait().expect("wait");
        between(&self.data_dir());
        self.child = Some(self.spawn(&[]));
        self.wait_ready();
    }

    fn spawn(&self, extra_args: &[&str]) -> Child {
        let dir = self.dir.as_ref().expect("a started server").path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data")
            .arg(dir.join("data"))
            .args(extra_args)
            .env(
                "BERTH_LOG",
                std::env::var("BERTH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("BERTH_AUTH_MODE", "off")
            .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var_os("BERTH_TEST_SHOW_LOGS").is_none() {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("server.log"))
                .expect("server log file");
            cmd.stderr(log);
        }
        cmd.spawn().expect("spawn berth")
    }

    fn wait_ready(&mut self) {
        if let Err(e) = self.ready() {
            panic!("{e}");
        }
    }

    /// Waits until this server's own process listens on its port (not
    /// merely until something accepts connections there).
    fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let Some(child) = self.child.as_mut() else {
                return Ok(());
            };
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "berth exited before it was ready: {status}\n{}",
                    self.log()
                ));
            }
            if listens(child.id(), self.addr.port()) {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "berth did not start within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port that was free a moment ago.
/// With `BERTH_TEST_S3_ENDPOINT` set (`scripts/test` sets it, with a Garage
/// server it started), servers keep their blobs in that S3 store, each under
/// a key prefix of its own; `BERTH_TEST_S3_PRESIGNED_REDIRECTS=true` makes
/// them answer blob GETs with redirects to presigned URLs.
fn storage_env() -> Vec<(String, String)> {
    let Ok(endpoint) = std::env::var("BERTH_TEST_S3_ENDPOINT") else {
        return Vec::new();
    };
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set with BERTH_TEST_S3_ENDPOINT"))
    };
    [
        ("BERTH_STORAGE_BACKEND", "s3".to_string()),
        ("BERTH_S3_ENDPOINT", endpoint),
        ("BERTH_S3_REGION", var("BERTH_TEST_S3_REGION")),
        ("BERTH_S3_BUCKET", var("BERTH_TEST_S3_BUCKET")),
        ("BERTH_S3_ACCESS_KEY_ID", var("BERTH_TEST_S3_ACCESS_KEY_ID")),
        (
            "BERTH_S3_SECRET_ACCESS_KEY",
            var("BERTH_TEST_S3_SECRET_ACCESS_KEY"),
        ),
        ("BERTH_S3_PATH_STYLE", "true".to_string()),
        (
            "BERTH_S3_PREFIX",
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        ),
        (
            "BERTH_S3_PRESIGNED_REDIRECTS",
            std::env::var("BERTH_TEST_S3_PRESIGNED_REDIRECTS").unwrap_or_else(|_| "false".into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// With `BERTH_TEST_DATABASE_URL` set (`scripts/test` sets it to a
/// PostgreSQL it started, `…/postgres`), each server gets a database of its
/// own there, created here; otherwise servers use their embedded SQLite file.
fn database_env() -> Vec<(String, String)> {
    let Some(url) = new_test_database() else {
        return Vec::new();
    };
    vec![
        ("BERTH_DATABASE_URL".to_string(), url),
        (
            "BERTH_DATABASE_MAX_CONNECTIONS".to_string(),
            "6".to_string(),
        ),
    ]
}

/// A fresh, empty database on the test PostgreSQL, if there is one.
pub fn new_test_database() -> Option<String> {
    let admin = std::env::var("BERTH_TEST_DATABASE_URL").ok()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    Some(postgres::create_database(&admin, &name))
}

impl Server {
    /// The server's database, as sqlx's `Any` driver reaches it.
    pub fn database_url(&self) -> String {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == "BERTH_DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir().join("berth.db").display()))
    }

    /// A connection pool on the server's database, for tests that look
    /// underneath the API.
    pub async fn db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&self.database_url())
            .await
            .expect("the server's database")
    }

    /// The names (`<hex>.<nonce>`) of the blob files or objects the server
    /// has stored, wherever its storage is.
    pub async fn stored_blob_names(&self) -> std::collections::BTreeSet<String> {
        if let Some(objects) = self.bucket_listing("blobs").await {
            return objects
                .iter()
                .filter_map(|o| o.rsplit('/').next().map(str::to_string))
                .collect();
        }
        let mut names = std::collections::BTreeSet::new();
        let mut stack = vec![self.data_dir().join("storage/blobs")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    names.insert(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        names
    }

    /// The ids of the upload sessions the server keeps, wherever its
    /// storage is (a directory each on disk, objects under `uploads/<id>/`
    /// in a bucket).
    pub async fn stored_upload_sessions(&self) -> std::collections::BTreeSet<String> {
        if let Some(objects) = self.bucket_listing("uploads").await {
            return objects
                .iter()
                .filter_map(|o| o.split('/').rev().nth(1).map(str::to_string))
                .collect();
        }
        std::fs::read_dir(self.data_dir().join("storage/uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Keys of the objects under `dir/` of the server's bucket prefix;
    /// None when its blobs are on local disk.
    async fn bucket_listing(&self, dir: &str) -> Option<Vec<String>> {
        use futures_util::TryStreamExt;
        use object_store::ObjectStore;
        let (s3, prefix) = self.bucket()?;
        let prefix = object_store::path::Path::from(format!("{prefix}/{dir}"));
        let objects: Vec<_> = s3.list(Some(&prefix)).try_collect().await.unwrap();
        Some(objects.iter().map(|o| o.location.to_string()).collect())
    }

    /// Deletes the stored bytes of a blob behind the server's back (a file
    /// or an object lost), wherever its storage is.
    pub async fn remove_stored_blob(&self, digest: &str) {
        use object_store::ObjectStore;
        let hex = digest.trim_start_matches("sha256:");
        if let Some((s3, _)) = self.bucket() {
            let key = self
                .bucket_listing("blobs")
                .await
                .unwrap()
                .into_iter()
                .find(|k| k.rsplit('/').next().unwrap().starts_with(hex))
                .expect("the blob's object");
            s3.delete(&object_store::path::Path::from(key))
                .await
                .unwrap();
            return;
        }
        let dir = self.data_dir().join("storage/blobs/sha256").join(&hex[..2]);
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(hex))
            .expect("the blob's file");
        std::fs::remove_file(file).unwrap();
    }

    /// The server's bucket (container) and key prefix, if its blobs are in
    /// an object store: S3, or Azure through the emulator.
    fn bucket(&self) -> Option<(std::sync::Arc<dyn object_store::ObjectStore>, String)> {
        let env = |k: &str| {
            // The last setting wins, as in the server's environment.
            self.env
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        match env("BERTH_STORAGE_BACKEND").as_deref() {
            Some("s3") => {
                let s3 = object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(env("BERTH_S3_ENDPOINT").unwrap())
                    .with_allow_http(true)
                    .with_region(env("BERTH_S3_REGION").unwrap())
                    .with_bucket_name(env("BERTH_S3_BUCKET").unwrap())
                    .with_access_key_id(env("BERTH_S3_ACCESS_KEY_ID").unwrap())
                    .with_secret_access_key(env("BERTH_S3_SECRET_ACCESS_KEY").unwrap())
                    .with_virtual_hosted_style_request(false)
                    .build()
                    .unwrap();
                Some((std::sync::Arc::new(s3), env("BERTH_S3_PREFIX").unwrap()))
            }
            Some("azure") => {
                assert_eq!(
                    env("BERTH_AZURE_USE_EMULATOR").as_deref(),
                    Some("true"),
                    "tests reach Azure through the emulator only"
                );
                let azure = azurite_store(
                    &env("BERTH_AZURE_ENDPOINT").unwrap(),
                    &env("BERTH_AZURE_CONTAINER").unwrap(),
                );
                Some((
                    std::sync::Arc::new(azure),
                    env("BERTH_AZURE_PREFIX").unwrap(),
                ))
            }
            _ => None,
        }
    }
}

/// Azurite's development account and its well-known key (public).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A client of a container of the Azurite at `endpoint`
/// (`http://127.0.0.1:PORT`).
pub fn azurite_store(endpoint: &str, container: &str) -> object_store::azure::MicrosoftAzure {
    object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(AZURITE_ACCOUNT)
        .with_access_key(AZURITE_KEY)
        .with_endpoint(format!("{endpoint}/{AZURITE_ACCOUNT}"))
        .with_allow_http(true)
        .with_container_name(container)
        .build()
        .unwrap()
}

/// Held (shared) while a server is given a free port and starts, and
/// (exclusively) while a killed server restarts on its port.
static PORTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Whether process `pid` holds a socket listening on loopback `port`
/// (Linux: a listening entry of /proc/net/tcp whose inode is one of the
/// process's descriptors).
fn listens(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local == port && *f.get(3)? == "0A").then_some(())?;
            Some(format!("socket:[{}]", f.get(9)?))
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|t| sockets.iter().any(|s| t.as_os_str() == s.as_str()))
        })
}

pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap()
}

/// The `berth` CLI with a credentials file of its own, logged in to a test
/// server as the administrator.
pub struct Cli {
    dir: TempDir,
}

impl Cli {
    pub fn login(server: &Server) -> Cli {
        let cli = Cli {
            dir: TempDir::new("berth-cli"),
        };
        cli.ok(&[
            "login",
            &server.url(),
            "-u",
            "admin",
            "--password",
            ADMIN_PASSWORD,
        ]);
        cli
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env(
                "BERTH_CREDENTIALS",
                self.dir.path().join("credentials.json"),
            )
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `berth ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `berth ARGS --json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}
