//! `berth-bench --scan`: times Berth's built-in scanner over HTTP against a
//! running server (auth off), each figure next to the goal issue 13 sets:
//!
//! - a cold scan of a real layer (`--scan-layer`, a gzip tar such as a
//!   debootstrap bookworm minbase root filesystem) against `gzip -dc` of
//!   the same file to /dev/null, run here in the same run;
//! - a rescan of the same image (its layer's inventory cached);
//! - the import of a directory of OSV records (`--scan-vulndb`), and the
//!   re-match of every stored inventory it triggers (`--scan-images` more
//!   images on the same layer, each its own inventory and report);
//! - the server's peak resident memory above its level before the scan of
//!   an uncompressed 1 GiB layer (`--scan-big-mib`), sampled from
//!   /proc/PID/status every 5 ms (`--pid` required);
//! - pushes into a project that scans on push against one that does not
//!   (`scanpush`).
//!
//! The server must run with scan-on-push off for the `bench-scan` project
//! (the bench creates it so) and at least one scan worker.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::data::{digest, random_bytes};
use crate::http::{collect, err, expect, Conn, ReqBody, Result, Target};
use crate::log;
use crate::registry::{push_monolithic, push_small, put_manifest, OCI_CONFIG, OCI_LAYER};
use crate::stats::proc_status_kib;

pub struct ScanArgs {
    pub url: String,
    pub pid: u32,
    pub layer: PathBuf,
    pub vulndb: PathBuf,
    pub images: usize,
    pub big_mib: usize,
    pub push_rounds: usize,
    pub push_images: usize,
}

const PROJECT: &str = "bench-scan";
const OCI_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

pub(crate) async fn api(
    conn: &mut Conn,
    method: Method,
    path: &str,
    body: Option<(&str, Bytes)>,
) -> Result<Value> {
    let (headers, body) = match body {
        Some((kind, b)) => (
            vec![(CONTENT_TYPE, HeaderValue::from_str(kind)?)],
            ReqBody::Full(Some(b)),
        ),
        None => (vec![], ReqBody::Empty),
    };
    let what = format!("{method} {path}");
    let res = conn.send(&method, path, &headers, body).await?;
    let ok = [StatusCode::OK, StatusCode::CREATED, StatusCode::ACCEPTED];
    let res = expect(&what, res, &ok).await?;
    let body = collect(res.into_body()).await?;
    Ok(serde_json::from_slice(&body).map_err(|e| format!("{what}: {e}"))?)
}

/// Pushes one image: `layer` (already uploaded once is fine: the upload is
/// skipped when `upload` is false) and a config unique to `n`.
async fn push_image(
    conn: &mut Conn,
    repo: &str,
    tag: &str,
    layer: (&Bytes, &str, &str),
    upload: bool,
    n: usize,
) -> Result<String> {
    let (bytes, layer_digest, media) = layer;
    let path = format!("{PROJECT}/{repo}");
    if upload {
        push_monolithic(conn, &path, bytes, layer_digest).await?;
    }
    let config = Bytes::from(
        json!({"architecture": "amd64", "os": "linux", "config": {"Labels": {"n": n.to_string()}},
               "rootfs": {"type": "layers", "diff_ids": []}})
        .to_string(),
    );
    let config_digest = digest(&config);
    push_small(conn, &path, &config, &config_digest).await?;
    let manifest = Bytes::from(
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
               "layers": [{"mediaType": media, "digest": layer_digest, "size": bytes.len()}]})
        .to_string(),
    );
    let manifest_digest = digest(&manifest);
    put_manifest(conn, &path, tag, &manifest, &manifest_digest).await?;
    Ok(manifest_digest)
}

fn scan_path(repo: &str, digest: &str) -> String {
    format!("/api/v1/projects/{PROJECT}/repositories/{repo}/artifacts/{digest}/scan")
}

/// Asks for a scan and waits (polling every 2 ms) until it has ended;
/// returns the time from the request to the end, and the scan.
async fn scan(conn: &mut Conn, repo: &str, digest: &str) -> Result<(Duration, Value)> {
    let path = scan_path(repo, digest);
    let start = Instant::now();
    api(conn, Method::POST, &path, None).await?;
    loop {
        let s = api(conn, Method::GET, &path, None).await?;
        match s["status"].as_str() {
            Some("finished") => return Ok((start.elapsed(), s)),
            Some("failed") => return err(format!("scan of {repo}@{digest} failed: {s}")),
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// The rematch worker's count of reports matched again.
async fn rematched(conn: &mut Conn) -> Result<u64> {
    let workers = api(conn, Method::GET, "/api/v1/system/workers", None).await?;
    let detail = workers
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == "rematch"))
        .and_then(|w| w["detail"].as_str())
        .unwrap_or("0 reports");
    Ok(detail
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Time of `gzip -dc FILE > /dev/null`, best of three.
fn gzip_dc(file: &std::path::Path) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let status = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(file)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            return err(format!("gzip -dc {}: {status}", file.display()));
        }
        best = best.min(start.elapsed());
    }
    Ok(best)
}

/// An uncompressed tar of `mib` files of 1 MiB each (random, so nothing in
/// them looks like a package; the walk still reads every byte).
fn big_tar(mib: usize) -> Bytes {
    let mut out = Vec::with_capacity(mib * (1 << 20) + mib * 512 + 1024);
    for i in 0..mib {
        let mut header = [0u8; 512];
        let name = format!("data/blob-{i:05}");
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", 1 << 20).as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&random_bytes(1 << 20, i as u64 + 7));
    }
    out.extend_from_slice(&[0u8; 1024]);
    Bytes::from(out)
}

pub(crate) fn line(label: &str, value: String, goal: &str, met: bool) {
    println!(
        "{label:<52} {value:>16}   goal {goal:<22} {}",
        if met { "met" } else { "NOT MET" }
    );
}

pub async fn run(a: ScanArgs) -> Result<()> {
    let target = Target::parse(&a.url)?;
    let mut conn = Conn::connect(&target).await?;
    if proc_status_kib(a.pid, "VmRSS").is_none() {
        return err(format!("cannot read VmRSS from /proc/{}/status", a.pid));
    }
    let created = api(
        &mut conn,
        Method::POST,
        "/api/v1/projects",
        Some((
            "application/json",
            Bytes::from(json!({"name": PROJECT, "scan_on_push": false}).to_string()),
        )),
    )
    .await;
    if let Err(e) = created {
        log(format!(
            "project {PROJECT} not created ({e}); using it as it is"
        ));
    }

    // A first, small database, so that scans have one to match against;
    // the timed import below replaces it and so re-matches everything.
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(&a.vulndb)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    let first = subdirs.first().ok_or_else(|| {
        format!(
            "{}: no subdirectory (one per ecosystem)",
            a.vulndb.display()
        )
    })?;
    let small = berth::cli::scan::zip_directory(first)?;
    api(
        &mut conn,
        Method::PUT,
        "/api/v1/system/vulndb",
        Some(("application/zip", small.into())),
    )
    .await?;

    log(format!("reading {}", a.layer.display()));
    let layer = Bytes::from(std::fs::read(&a.layer)?);
    let layer_digest = digest(&layer);
    let gzip = gzip_dc(&a.layer)?;

    log("cold scan");
    let cold_image = push_image(
        &mut conn,
        "base",
        "cold",
        (&layer, &layer_digest, OCI_LAYER),
        true,
        0,
    )
    .await?;
    let (cold, report) = scan(&mut conn, "base", &cold_image).await?;
    let ratio = cold.as_secs_f64() / gzip.as_secs_f64();
    line(
        "cold scan / gzip -dc of the layer",
        format!(
            "{:.2}x ({:.0} ms / {:.0} ms)",
            ratio,
            cold.as_secs_f64() * 1e3,
            gzip.as_secs_f64() * 1e3
        ),
        "<= 1.5x",
        ratio <= 1.5,
    );
    let packages = report["summary"]["total"].as_u64().unwrap_or(0);
    log(format!("cold scan: {packages} findings"));

    let (warm, _) = scan(&mut conn, "base", &cold_image).await?;
    line(
        "rescan, layer inventory cached",
        format!("{:.1} ms", warm.as_secs_f64() * 1e3),
        "< 50 ms",
        warm < Duration::from_millis(50),
    );

    log(format!(
        "{} more images on the same layer, each scanned",
        a.images
    ));
    let start = Instant::now();
    for n in 1..=a.images {
        let d = push_image(
            &mut conn,
            "many",
            &format!("i{n}"),
            (&layer, &layer_digest, OCI_LAYER),
            n == 1,
            n,
        )
        .await?;
        scan(&mut conn, "many", &d).await?;
    }
    let per = start.elapsed().as_secs_f64() * 1e3 / a.images.max(1) as f64;
    line(
        "push + scan of an image on a cached layer",
        format!("{per:.1} ms"),
        "(no goal)",
        true,
    );

    log("importing the whole database");
    let zip = berth::cli::scan::zip_directory(&a.vulndb)?;
    let before = rematched(&mut conn).await?;
    let start = Instant::now();
    let imported = api(
        &mut conn,
        Method::PUT,
        "/api/v1/system/vulndb",
        Some(("application/zip", zip.into())),
    )
    .await?;
    let import = start.elapsed();
    line(
        &format!("import of {} OSV records", imported["records"]),
        format!("{:.2} s", import.as_secs_f64()),
        "< 5 s",
        import < Duration::from_secs(5),
    );
    let reports = a.images as u64 + 1;
    let start = Instant::now();
    while rematched(&mut conn).await? < before + reports {
        if start.elapsed() > Duration::from_secs(120) {
            return err("the re-match did not finish in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rematch = start.elapsed();
    line(
        &format!("re-match of {reports} stored inventories"),
        format!("{:.2} s", rematch.as_secs_f64()),
        "< 5 s for 1000",
        rematch.as_secs_f64() * 1000.0 / reports as f64 <= 5.0,
    );

    log(format!("{} MiB uncompressed layer", a.big_mib));
    let big = big_tar(a.big_mib);
    let big_digest = digest(&big);
    let big_image = push_image(
        &mut conn,
        "big",
        "v1",
        (&big, &big_digest, OCI_TAR),
        true,
        0,
    )
    .await?;
    drop(big);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = proc_status_kib(a.pid, "VmRSS").unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(base));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), a.pid);
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = proc_status_kib(pid, "VmRSS") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let (big_time, _) = scan(&mut conn, "big", &big_image).await?;
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let added = (peak.load(Ordering::Relaxed).saturating_sub(base)) as f64 / 1024.0;
    line(
        &format!("peak memory added by the scan of a {} MiB layer", a.big_mib),
        format!("{added:.1} MiB"),
        "< 64 MiB",
        added < 64.0,
    );
    let mb_s = a.big_mib as f64 / big_time.as_secs_f64();
    line(
        "  its walk speed",
        format!("{mb_s:.0} MiB/s"),
        "(no goal)",
        true,
    );

    if a.push_rounds > 0 {
        log(format!(
            "pushes with and without scan-on-push, {} rounds",
            a.push_rounds
        ));
        let base = (&layer, layer_digest.as_str());
        crate::scanpush::run(&target, &mut conn, base, a.push_rounds, a.push_images).await?;
    }
    Ok(())
}
