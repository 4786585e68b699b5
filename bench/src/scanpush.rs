//! `berth-bench --scan`, last part: what scan-on-push costs the pushes
//! around it. Two projects on the same server, one scanning on push and
//! one not, get the same pushes in alternating rounds:
//!
//! - `images` images, each the `--scan-layer` base (uploaded once, untimed)
//!   and a layer of its own (a gzip tar of a Python package's metadata and
//!   4 MiB of data), pushed over 4 connections: blob, config, manifest;
//! - then, while the images just pushed are being scanned in the project
//!   that scans (so the scans' CPU, reads and metadata writes all compete),
//!   a 128 MiB blob pushed in one PUT.
//!
//! Each push starts after a `sync` (so one round's writeback does not land
//! in the next) and each round waits for its scans to end. A first round
//! warms up and is not counted. The figures are the medians of each
//! round's ratio, scanning over not (the two halves of a round are
//! adjacent in time, so drift over the run cancels), next to the goal:
//! within 10%.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use crate::data::{digest, gzip_tar, random_bytes};
use crate::http::{err, Conn, Result, Target};
use crate::log;
use crate::registry::{push_monolithic, push_small, put_manifest, OCI_CONFIG, OCI_LAYER};

const ON: &str = "bench-sop-on";
const OFF: &str = "bench-sop-off";
const REPO: &str = "app";
const CONNECTIONS: usize = 4;
const BIG: usize = 128 << 20;

/// A layer of image `n`: a Python package's metadata (so the image has a
/// package of its own to list and match) and 4 MiB of bytes from `n`.
fn app_layer(n: u64) -> Bytes {
    let metadata = format!("Metadata-Version: 2.1\nName: app{n}\nVersion: 1.0.{n}\n");
    let files = [
        (
            format!("usr/lib/python3/dist-packages/app{n}-1.0.{n}.dist-info/METADATA"),
            Bytes::from(metadata),
        ),
        (format!("srv/app{n}/data"), random_bytes(4 << 20, n)),
    ];
    gzip_tar(files)
}

/// An image ready to push: its own layer, config and manifest, with digests.
struct Image {
    layer: (Bytes, String),
    config: (Bytes, String),
    manifest: (Bytes, String),
}

fn image(n: u64, base: (&Bytes, &str)) -> Image {
    let layer = app_layer(n);
    let layer_digest = digest(&layer);
    let config = Bytes::from(
        json!({"architecture": "amd64", "os": "linux", "config": {"Labels": {"n": n.to_string()}},
               "rootfs": {"type": "layers", "diff_ids": []}})
        .to_string(),
    );
    let config_digest = digest(&config);
    let manifest = Bytes::from(
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
               "layers": [{"mediaType": OCI_LAYER, "digest": base.1, "size": base.0.len()},
                          {"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len()}]})
        .to_string(),
    );
    let manifest_digest = digest(&manifest);
    Image {
        layer: (layer, layer_digest),
        config: (config, config_digest),
        manifest: (manifest, manifest_digest),
    }
}

/// Pushes `images` into `project` over `CONNECTIONS` connections; returns
/// the time it took.
async fn push_all(target: &Target, project: &str, images: &[Image]) -> Result<Duration> {
    let path = format!("{project}/{REPO}");
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        conns.push(Conn::connect(target).await?);
    }
    let start = Instant::now();
    let tasks = conns.into_iter().enumerate().map(|(i, mut conn)| {
        let path = path.clone();
        async move {
            for image in images.iter().skip(i).step_by(CONNECTIONS) {
                push_monolithic(&mut conn, &path, &image.layer.0, &image.layer.1).await?;
                push_small(&mut conn, &path, &image.config.0, &image.config.1).await?;
                let (body, d) = &image.manifest;
                put_manifest(&mut conn, &path, &d.replace(':', "-"), body, d).await?;
            }
            Ok::<_, crate::http::Error>(())
        }
    });
    for r in futures_util::future::join_all(tasks).await {
        r?;
    }
    Ok(start.elapsed())
}

/// Waits until every image's scan in `project` has ended.
async fn scans_ended(conn: &mut Conn, project: &str, images: &[Image]) -> Result<()> {
    let start = Instant::now();
    for image in images {
        let path = format!(
            "/api/v1/projects/{project}/repositories/{REPO}/artifacts/{}/scan",
            image.manifest.1
        );
        loop {
            let res = conn
                .send(&Method::GET, &path, &[], crate::http::ReqBody::Empty)
                .await?;
            let ok = res.status().is_success();
            let body = crate::http::collect(res.into_body()).await?;
            let status = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_string));
            if ok && matches!(status.as_deref(), Some("finished" | "failed")) {
                break;
            }
            if start.elapsed() > Duration::from_secs(300) {
                return err(format!("the scans in {project} did not end in 300 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub async fn run(
    target: &Target,
    conn: &mut Conn,
    base: (&Bytes, &str),
    rounds: usize,
    count: usize,
) -> Result<()> {
    for (project, scan) in [(ON, true), (OFF, false)] {
        let body = json!({"name": project, "scan_on_push": scan}).to_string();
        if let Err(e) = super::scan::api(
            conn,
            Method::POST,
            "/api/v1/projects",
            Some(("application/json", Bytes::from(body))),
        )
        .await
        {
            log(format!(
                "project {project} not created ({e}); using it as it is"
            ));
        }
        push_monolithic(conn, &format!("{project}/{REPO}"), base.0, base.1).await?;
    }
    let big = random_bytes(BIG, 0x5c4a);
    let (mut images_ratio, mut blob_ratio) = (Vec::new(), Vec::new());
    let mut seed = 1u64 << 40;
    for round in 0..=rounds {
        let mut figures = [(0.0, 0.0); 2];
        // Alternate which goes first, so a drift over the run cancels out.
        let order = if round % 2 == 0 { [ON, OFF] } else { [OFF, ON] };
        for project in order {
            let images: Vec<Image> = (0..count).map(|i| image(seed + i as u64, base)).collect();
            seed += count as u64;
            let mut big = big.to_vec();
            big[..8].copy_from_slice(&seed.to_le_bytes());
            let big = Bytes::from(big);
            let big_digest = digest(&big);

            sync()?;
            let took = push_all(target, project, &images).await?;
            let start = Instant::now();
            push_monolithic(conn, &format!("{project}/{REPO}"), &big, &big_digest).await?;
            let blob = start.elapsed();
            if project == ON {
                scans_ended(conn, project, &images).await?;
            }
            let images_s = count as f64 / took.as_secs_f64();
            let mb_s = BIG as f64 / 1e6 / blob.as_secs_f64();
            log(format!(
                "round {round} {project}: {images_s:.1} images/s, then {mb_s:.0} MB/s"
            ));
            figures[usize::from(project == OFF)] = (images_s, mb_s);
        }
        if round > 0 {
            let [on, off] = figures;
            images_ratio.push(on.0 / off.0);
            blob_ratio.push(on.1 / off.1);
        }
    }
    for (label, ratios) in [
        (
            format!("push of {count} images, scanning on push / not"),
            images_ratio,
        ),
        (
            "blob push 128 MiB as they scan / not".to_string(),
            blob_ratio,
        ),
    ] {
        let (low, high) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        let ratio = median(ratios);
        super::scan::line(
            &label,
            format!("{ratio:.2}x ({low:.2} to {high:.2})"),
            ">= 0.90x",
            ratio >= 0.9,
        );
    }
    Ok(())
}

/// Flushes every file system's dirty pages (the server's data is on this
/// machine), so that each push starts with the same writeback pending.
fn sync() -> Result<()> {
    let status = std::process::Command::new("sync").status()?;
    if !status.success() {
        return err(format!("sync: {status}"));
    }
    Ok(())
}
