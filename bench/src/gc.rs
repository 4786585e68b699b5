//! `berth-bench --gc`: times garbage-collection passes on a store built
//! directly through the berth library (no HTTP): by default 100,000 blobs
//! and 10,000 tagged image manifests (one config and nine layers each, all
//! distinct), then 1% and then 10% of the manifests untagged. GC runs with
//! no delays, so one pass follows the whole cascade (manifest, its document,
//! its blobs' links, the blobs' rows and files).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::events::Actor;
use berth::journal::Journal;
use berth::meta::MetaStore;
use berth::oci::{Digest, Reference, RepositoryName};
use berth::registry::{AdmitAll, GcReport, GcSettings, Registry};
use berth::storage::BlobStore;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::http::{err, Result};
use crate::log;

const LAYERS: usize = 9;
const REPOS: usize = 10;
const CONCURRENCY: usize = 64;

pub struct GcArgs {
    pub manifests: usize,
    pub dir: Option<PathBuf>,
    pub keep: bool,
}

fn blob_bytes(i: usize) -> Bytes {
    // 256 distinct bytes per blob: the files, not their size, are what GC handles.
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(&(i as u64).to_le_bytes());
    while v.len() < 256 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

fn repo(m: usize) -> RepositoryName {
    format!("bench/gc-{}", m % REPOS)
        .parse()
        .expect("valid name")
}

fn tag(m: usize) -> Reference {
    Reference::Tag(format!("m{m}").parse().expect("valid tag"))
}

fn manifest_json(blobs: &[(Digest, usize)]) -> String {
    let d = |(digest, size): &(Digest, usize), media: &str| {
        format!(r#"{{"mediaType":"{media}","digest":"{digest}","size":{size}}}"#)
    };
    let layers: Vec<String> = blobs[1..]
        .iter()
        .map(|b| d(b, "application/vnd.oci.image.layer.v1.tar"))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        d(&blobs[0], "application/vnd.oci.image.config.v1+json"),
        layers.join(",")
    )
}

/// Who the benchmark's writes are recorded as.
fn builder() -> Actor {
    Actor::system("berth-bench")
}

/// Pushes manifest `m` with its ten blobs.
async fn push_image(registry: &Registry, m: usize) -> Result<()> {
    let r = repo(m);
    let mut blobs = Vec::with_capacity(LAYERS + 1);
    for b in 0..=LAYERS {
        let bytes = blob_bytes(m * (LAYERS + 1) + b);
        let digest = Digest::sha256_of(&bytes);
        let len = bytes.len();
        let body = futures_util::stream::once(async move { Ok(bytes) }).boxed();
        registry
            .push_blob(&builder(), &r, &digest, Some(len as u64), body)
            .await
            .map_err(|e| format!("blob push: {e}"))?;
        blobs.push((digest, len));
    }
    let json = manifest_json(&blobs);
    registry
        .put_manifest(&builder(), &r, &tag(m), None, json.as_bytes())
        .await
        .map_err(|e| format!("manifest push: {e}"))?;
    Ok(())
}

async fn for_all(
    registry: &Arc<Registry>,
    items: Vec<usize>,
    op: fn(Arc<Registry>, usize) -> futures_util::future::BoxFuture<'static, Result<()>>,
) -> Result<()> {
    let items = Arc::new(std::sync::Mutex::new(items));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (registry, items) = (registry.clone(), items.clone());
            tokio::spawn(async move {
                loop {
                    let next = items.lock().unwrap().pop();
                    let Some(i) = next else {
                        return Ok::<(), crate::http::Error>(());
                    };
                    op(registry.clone(), i).await?;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

fn files_under(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

async fn timed_pass(registry: &Registry, what: &str) -> Result<(Duration, GcReport)> {
    let t = Instant::now();
    let report = registry
        .collect_garbage(false)
        .await
        .map_err(|e| format!("gc: {e}"))?;
    let took = t.elapsed();
    let c = &report.counts;
    println!(
        "{what:<52} {:>9.1} ms  manifests {:>5}  links {:>6}  blobs {:>6} ({:>6.1} MB)  orphans {:>6}",
        took.as_secs_f64() * 1000.0,
        c.manifests_removed,
        c.links_removed,
        c.blobs_removed,
        c.blob_bytes as f64 / 1e6,
        c.orphan_files
    );
    Ok((took, report))
}

pub async fn run(args: GcArgs) -> Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("berth-gc-bench-{}", std::process::id()))
    });
    if dir.exists() {
        return err(format!("{} exists; give a fresh --gc-dir", dir.display()));
    }
    std::fs::create_dir_all(&dir)?;
    let meta = MetaStore::open_sqlite(&dir.join("berth.db"))
        .await
        .map_err(|e| e.to_string())?;
    let blobs = BlobStore::open_local(dir.join("storage")).map_err(|e| e.to_string())?;
    let settings = GcSettings {
        grace: Duration::ZERO,
        untagged_delay: Duration::ZERO,
    };
    let meta = std::sync::Arc::new(meta);
    let journal = Journal::open(&dir.join("journal")).map_err(|e| e.to_string())?;
    let registry = Registry::new(
        meta.clone(),
        blobs,
        std::sync::Arc::new(journal),
        std::sync::Arc::new(AdmitAll),
        settings,
    );
    let n = args.manifests;
    log(format!(
        "building {} blobs and {n} manifests in {} ({CONCURRENCY} in flight)",
        n * (LAYERS + 1),
        dir.display()
    ));
    let t = Instant::now();
    for_all(&registry, (0..n).collect(), |r, m| {
        Box::pin(async move { push_image(&r, m).await })
    })
    .await?;
    let built = t.elapsed();
    println!(
        "built {} blobs and {n} tagged manifests in {:.1} s ({:.0} blobs/s)",
        n * (LAYERS + 1),
        built.as_secs_f64(),
        (n * (LAYERS + 1)) as f64 / built.as_secs_f64()
    );
    let files = files_under(&dir.join("storage/blobs"));
    println!("blob files on disk: {files}");

    timed_pass(
        &registry,
        "pass 1: no garbage; drains the push queue, sweeps",
    )
    .await?;
    timed_pass(&registry, "pass 2: no garbage, empty queue").await?;

    let mut untagged = 0;
    for (label, fraction) in [("1%", 100), ("10%", 10)] {
        let count = n / fraction;
        let victims: Vec<usize> = (untagged..untagged + count).collect();
        untagged += count;
        for_all(&registry, victims, |r, m| {
            Box::pin(async move {
                r.delete_manifest(&builder(), &repo(m), &tag(m))
                    .await
                    .map_err(|e| format!("untag: {e}").into())
            })
        })
        .await?;
        let (_, report) = timed_pass(
            &registry,
            &format!("pass: {label} garbage ({count} manifests untagged)"),
        )
        .await?;
        let expected = (count * (LAYERS + 1)) as u64;
        if report.counts.blobs_removed != expected {
            return err(format!(
                "expected {expected} blobs removed, the pass removed {}",
                report.counts.blobs_removed
            ));
        }
    }
    let left = files_under(&dir.join("storage/blobs"));
    println!(
        "blob files on disk: {left} (expected {})",
        (n - untagged) * (LAYERS + 1)
    );
    meta.close().await;
    if !args.keep {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
