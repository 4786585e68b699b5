//! Test harness: starts a real `berth` process on a loopback port with its own
//! temporary data directory, and stops it when dropped.
//!
//! Setting `BERTH_TEST_EXTERNAL_REGISTRY=127.0.0.1:5001` points every test at an
//! already-running registry instead (for comparing behaviour with another
//! implementation); nothing is started then.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub addr: SocketAddr,
    pub data_dir: Option<tempdir::TempDir>,
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
        Server::start_with(&[])
    }

    /// Starts a fresh registry with extra command-line arguments.
    pub fn start_with(extra_args: &[&str]) -> Server {
        if let Ok(addr) = std::env::var("BERTH_TEST_EXTERNAL_REGISTRY") {
            return Server {
                addr: addr
                    .parse()
                    .expect("BERTH_TEST_EXTERNAL_REGISTRY is host:port"),
                data_dir: None,
                child: None,
            };
        }
        let data_dir = TempDir::new("berth-test");
        let mut server = Server {
            addr: free_port(),
            data_dir: None,
            child: None,
        };
        server.child = Some(spawn(
            server.addr,
            data_dir.path().to_path_buf(),
            extra_args,
        ));
        server.data_dir = Some(data_dir);
        server.wait_ready();
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

    /// Kills the process with SIGKILL and starts it again on the same port and data.
    pub fn kill_and_restart(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("cannot restart an external registry");
        };
        child.kill().expect("kill");
        child.wait().expect("wait");
        let dir = self.data_dir.as_ref().unwrap().path().to_path_buf();
        self.child = Some(spawn(self.addr, dir, &[]));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("berth exited before it was ready: {status}");
                }
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

fn spawn(addr: SocketAddr, data_dir: PathBuf, extra_args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data")
        .arg(&data_dir)
        .args(extra_args)
        .env(
            "BERTH_LOG",
            std::env::var("BERTH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null());
    if std::env::var_os("BERTH_TEST_SHOW_LOGS").is_none() {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    cmd.spawn().expect("spawn berth")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap()
}
