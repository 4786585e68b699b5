//! berth-bench: measures an OCI distribution registry over HTTP, next to the
//! machine limits (one-core SHA-256, a do-nothing HTTP server) measured in the
//! same run, and optionally next to a second registry.

mod data;
mod gc;
mod http;
mod nullserver;
mod registry;
mod report;
mod scan;
mod scanpush;
mod stats;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use hyper::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::http::{err, Conn, Result, Target};
use crate::report::{fmt_size, Figure, Limits, Run, TargetReport};
use crate::stats::{mb_per_s, micros, proc_status_kib, CpuMeter, OpStats};

const PHASES: &[&str] = &[
    "sha", "nullget", "nullops", "push", "pull", "small", "mput", "mget", "mhead", "tags", "rss",
];

/// Big GETs (pulls and do-nothing GETs) are repeated and the best kept: on a
/// shared 2-core machine single loopback transfers vary by up to 2x.
const PULL_REPS: usize = 5;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Benchmark an OCI distribution registry (no auth) against machine limits",
    after_help = "Phases for --only: sha, nullget, nullops, push, pull, small, mput, mget, mhead, tags, rss; \
                  aliases: limits (sha,nullget,nullops), blob (push,pull), manifest (mput,mget,mhead), all."
)]
struct Args {
    /// Registry to measure.
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    url: String,
    /// PID of that registry's process, for its memory figures.
    #[arg(long)]
    pid: Option<u32>,
    /// Name of the first registry in the output.
    #[arg(long, default_value = "main")]
    name: String,
    /// A second registry, measured in the same run with the same limits.
    #[arg(long)]
    compare_url: Option<String>,
    /// PID of the second registry.
    #[arg(long, requires = "compare_url")]
    compare_pid: Option<u32>,
    /// Name of the second registry in the output.
    #[arg(long, default_value = "compare")]
    compare_name: String,
    /// Smoke run: 64 MiB blob, 200 ops, 2 s, 1,000 tags.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Comma-separated phases to run (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seconds for each of manifest GET and HEAD [default: 20, quick 2].
    #[arg(long)]
    duration: Option<f64>,
    /// Big blob size in MiB [default: 1024, quick 64].
    #[arg(long)]
    blob_mib: Option<u64>,
    /// PATCH chunk size in MiB for the chunked push.
    #[arg(long, default_value_t = 16)]
    chunk_mib: u64,
    /// Number of small blobs [default: 2000, quick 200].
    #[arg(long)]
    small_count: Option<usize>,
    /// Small blob size in bytes.
    #[arg(long, default_value_t = 4096)]
    small_size: usize,
    /// Number of manifests PUT [default: 2000, quick 200].
    #[arg(long)]
    manifests: Option<usize>,
    /// Tags in the tag-list repository [default: 10000, quick 1000].
    #[arg(long)]
    tags: Option<usize>,
    /// Sequential requests for each tag-list figure [default: 200, quick 50].
    #[arg(long)]
    tag_list_requests: Option<usize>,
    /// Requests in flight for small pushes and manifest PUTs.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Requests (and keep-alive connections) in flight for manifest GET/HEAD.
    #[arg(long, default_value_t = 64)]
    get_concurrency: usize,
    /// Client runtime threads: 1 = tokio current_thread, N = multi_thread with N workers.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Log in to the registry at --url through the token flow with these
    /// credentials (`user:password`) and send the token with every request.
    #[arg(long)]
    credentials: Option<String>,
    /// The same for --compare-url.
    #[arg(long, requires = "compare_url")]
    compare_credentials: Option<String>,
    /// First component of the repository names.
    #[arg(long, default_value = "bench")]
    repo_prefix: String,
    /// Instead of measuring a registry over HTTP: build a store through the
    /// berth library and time garbage-collection passes (see README).
    #[arg(long)]
    gc: bool,
    /// Manifests for --gc (ten blobs each).
    #[arg(long, default_value_t = 10_000)]
    gc_manifests: usize,
    /// Data directory for --gc (must not exist) [default: a temporary one].
    #[arg(long)]
    gc_dir: Option<std::path::PathBuf>,
    /// Keep the --gc data directory afterwards.
    #[arg(long)]
    gc_keep: bool,
    /// Instead of the HTTP phases: time Berth's scanner at --url (auth off;
    /// needs --pid, --scan-layer and --scan-vulndb; see README).
    #[arg(long, requires_all = ["pid", "scan_layer", "scan_vulndb"])]
    scan: bool,
    /// A gzip tar layer to scan cold (a debootstrap minbase root filesystem).
    #[arg(long)]
    scan_layer: Option<std::path::PathBuf>,
    /// A directory of OSV records, one subdirectory per ecosystem.
    #[arg(long)]
    scan_vulndb: Option<std::path::PathBuf>,
    /// Images on the same layer whose inventories are matched again.
    #[arg(long, default_value_t = 1000)]
    scan_images: usize,
    /// Size of the uncompressed layer whose scan's memory is measured.
    #[arg(long, default_value_t = 1024)]
    scan_big_mib: usize,
    /// Rounds of pushes with scan-on-push on and off, after one that warms
    /// up (0: none).
    #[arg(long, default_value_t = 8)]
    scan_push_rounds: usize,
    /// Images pushed in each of those rounds.
    #[arg(long, default_value_t = 32)]
    scan_push_images: usize,
}

/// Sizes and counts after --quick and overrides.
#[derive(Clone, Debug)]
struct Params {
    blob: usize,
    chunk: usize,
    small_count: usize,
    small_size: usize,
    manifests: usize,
    tags: usize,
    tag_list_requests: usize,
    duration: Duration,
    concurrency: usize,
    get_concurrency: usize,
}

impl Params {
    fn from(a: &Args) -> Result<Params> {
        let q = a.quick;
        let p = Params {
            blob: (a.blob_mib.unwrap_or(if q { 64 } else { 1024 }) << 20) as usize,
            chunk: (a.chunk_mib << 20) as usize,
            small_count: a.small_count.unwrap_or(if q { 200 } else { 2000 }),
            small_size: a.small_size,
            manifests: a.manifests.unwrap_or(if q { 200 } else { 2000 }),
            tags: a.tags.unwrap_or(if q { 1000 } else { 10_000 }),
            tag_list_requests: a.tag_list_requests.unwrap_or(if q { 50 } else { 200 }),
            duration: Duration::from_secs_f64(a.duration.unwrap_or(if q { 2.0 } else { 20.0 })),
            concurrency: a.concurrency,
            get_concurrency: a.get_concurrency,
        };
        if p.blob == 0 || p.chunk == 0 || p.small_size == 0 {
            return err("sizes must be positive");
        }
        if p.concurrency == 0 || p.get_concurrency == 0 || p.tag_list_requests == 0 {
            return err("counts must be positive");
        }
        if p.tags < 100 {
            return err("--tags must be at least 100 (the n=100 page is measured)");
        }
        Ok(p)
    }
}

fn parse_only(only: &[String]) -> Result<BTreeSet<&'static str>> {
    let mut set = BTreeSet::new();
    if only.is_empty() {
        set.extend(PHASES.iter().copied());
        return Ok(set);
    }
    for o in only {
        let o = o.trim();
        match o {
            "all" => set.extend(PHASES.iter().copied()),
            "limits" => set.extend(["sha", "nullget", "nullops"]),
            "blob" => set.extend(["push", "pull"]),
            "manifest" | "manifests" => set.extend(["mput", "mget", "mhead"]),
            "" => {}
            _ => match PHASES.iter().find(|p| **p == o) {
                Some(p) => {
                    set.insert(*p);
                }
                None => return err(format!("unknown phase {o:?} in --only")),
            },
        }
    }
    // Ratios need their limits.
    if set.contains("push") {
        set.insert("sha");
    }
    if set.contains("pull") {
        set.insert("nullget");
    }
    if set.contains("mget") || set.contains("mhead") {
        set.insert("nullops");
    }
    Ok(set)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[berth-bench] {}", msg.as_ref());
}

fn main() {
    let args = Args::parse();
    if args.gc {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let gc_args = gc::GcArgs {
            manifests: args.gc_manifests,
            dir: args.gc_dir,
            keep: args.gc_keep,
        };
        if let Err(e) = rt.block_on(gc::run(gc_args)) {
            eprintln!("berth-bench: error: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.scan {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let scan_args = scan::ScanArgs {
            url: args.url,
            pid: args.pid.expect("required"),
            layer: args.scan_layer.expect("required"),
            vulndb: args.scan_vulndb.expect("required"),
            images: args.scan_images,
            big_mib: args.scan_big_mib,
            push_rounds: args.scan_push_rounds,
            push_images: args.scan_push_images,
        };
        if let Err(e) = rt.block_on(scan::run(scan_args)) {
            eprintln!("berth-bench: error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rt = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("berth-bench: error: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let p = Params::from(&args)?;
    let phases = parse_only(&args.only)?;
    let main_target = Target::parse(&args.url)?;
    let cmp_target = args.compare_url.as_deref().map(Target::parse).transpose()?;
    for pid in [args.pid, args.compare_pid].into_iter().flatten() {
        if proc_status_kib(pid, "VmRSS").is_none() {
            return err(format!("cannot read VmRSS from /proc/{pid}/status"));
        }
    }

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let run_id = format!("run-{}", now.as_secs());
    let seed = now.as_nanos() as u64;
    let client_runtime = if args.client_threads <= 1 {
        "tokio current_thread".to_string()
    } else {
        format!("tokio multi_thread, {} workers", args.client_threads)
    };

    // Test data, generated once, outside any timing. The big buffer is a
    // little longer than the blob so that each push gets a distinct blob (a
    // window at a different offset) without copying.
    // (The do-nothing server serves its large body from it, so `nullops`,
    // which starts that server, needs it too.)
    let needs_big = ["sha", "nullget", "nullops", "push", "pull"]
        .iter()
        .any(|x| phases.contains(x));
    let big = if needs_big {
        let t = Instant::now();
        let b = data::random_bytes(p.blob + 64, seed);
        log(format!(
            "generated {} of pseudo-random data in {:.2}s",
            fmt_size(p.blob as u64),
            t.elapsed().as_secs_f64()
        ));
        b
    } else {
        Bytes::new()
    };

    // Machine limits, measured once.
    let mut limits = Limits {
        sha256_mb_s: None,
        null_get_mb_s: None,
        null_ops_s: None,
        null_get_bytes: p.blob as u64,
    };
    if phases.contains("sha") {
        let v = sha_limit(&big);
        log(format!("SHA-256 one core: {v:.0} MB/s"));
        limits.sha256_mb_s = Some(v);
    }
    let null_addr = if phases.contains("nullget") || phases.contains("nullops") {
        Some(nullserver::start(p.blob as u64, big.clone())?)
    } else {
        None
    };
    if phases.contains("nullget") {
        let addr = null_addr.expect("started");
        let v = null_get_limit(addr, p.blob as u64).await?;
        log(format!("do-nothing GET: {v:.0} MB/s"));
        limits.null_get_mb_s = Some(v);
    }
    if phases.contains("nullops") {
        let addr = null_addr.expect("started");
        let target = Target::parse(&format!("http://{addr}"))?;
        let op = Op::Fetch {
            method: Method::GET,
            path: nullserver::SMALL_PATH.into(),
            len: nullserver::SMALL_LEN,
        };
        let d = if args.quick { 1.0 } else { 3.0 };
        let s = run_workers(
            &target,
            Arc::new(op),
            p.get_concurrency,
            Stop::After(Duration::from_secs_f64(d)),
        )
        .await?;
        log(format!(
            "do-nothing small GETs: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms (client + server CPU {:.0}%)",
            s.ops_per_s(),
            s.pct_ms(50.0),
            s.pct_ms(99.0),
            s.client_cpu_pct,
        ));
        limits.null_ops_s = Some(s.ops_per_s());
    }

    let mut targets = vec![(
        args.name.clone(),
        args.url.clone(),
        main_target,
        args.pid,
        format!("{}/{run_id}", args.repo_prefix),
    )];
    if let Some(t) = cmp_target {
        targets.push((
            args.compare_name.clone(),
            args.compare_url.clone().unwrap_or_default(),
            t,
            args.compare_pid,
            format!("{}/{run_id}-cmp", args.repo_prefix),
        ));
    }
    if targets.len() == 2 && targets[0].0 == targets[1].0 {
        return err("--name and --compare-name must differ");
    }

    let credentials = [
        args.credentials.as_deref(),
        args.compare_credentials.as_deref(),
    ];
    let mut reports = Vec::new();
    for (idx, (name, url, mut target, pid, repo)) in targets.into_iter().enumerate() {
        log(format!("== {name}: {url}, repository {repo}"));
        if let Some(creds) = credentials[idx] {
            let mut conn = Conn::connect(&target).await?;
            let tags_repo = format!("{repo}-tags");
            target.authorization =
                Some(registry::login(&mut conn, creds, &[&repo, &tags_repo]).await?);
            log("   logged in through the token flow; every request carries the token");
        }
        let ctx = TargetCtx {
            name: name.clone(),
            target,
            pid,
            repo: repo.clone(),
            p: p.clone(),
            seed: seed ^ ((idx as u64 + 1) << 56),
            offset: idx * 16,
        };
        let (figures, notes) = bench_target(&ctx, &phases, &big, &limits).await?;
        reports.push(TargetReport {
            name,
            url,
            repo,
            figures,
            notes,
        });
    }

    let run = Run {
        run_id,
        client_runtime,
        params: json!({
            "blob_bytes": p.blob,
            "chunk_bytes": p.chunk,
            "small_count": p.small_count,
            "small_bytes": p.small_size,
            "manifests": p.manifests,
            "tags": p.tags,
            "tag_list_requests": p.tag_list_requests,
            "duration_s": p.duration.as_secs_f64(),
            "concurrency": p.concurrency,
            "get_concurrency": p.get_concurrency,
            "phases": phases.iter().collect::<Vec<_>>(),
            "quick": args.quick,
        }),
        limits,
        targets: reports,
    };
    if args.json {
        eprint!("{}", run.table());
        println!("{}", serde_json::to_string_pretty(&run.json())?);
    } else {
        print!("{}", run.table());
    }
    Ok(())
}

/// One-core SHA-256 throughput: 256 MiB hashed in 1 MiB updates, best of 3.
fn sha_limit(big: &Bytes) -> f64 {
    const TOTAL: usize = 256 << 20;
    const UPDATE: usize = 1 << 20;
    let chunks: Vec<&[u8]> = big.chunks_exact(UPDATE).collect();
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let mut h = Sha256::new();
        for i in 0..TOTAL / UPDATE {
            h.update(chunks[i % chunks.len()]);
        }
        std::hint::black_box(h.finalize());
        best = best.max(mb_per_s(TOTAL as u64, t.elapsed()));
    }
    best
}

/// GET of `size` bytes from the do-nothing server, read by the same code as
/// blob pulls; best of `PULL_REPS`.
async fn null_get_limit(addr: std::net::SocketAddr, size: u64) -> Result<f64> {
    let target = Target::parse(&format!("http://{addr}"))?;
    let mut conn = Conn::connect(&target).await?;
    let mut best = 0f64;
    for _ in 0..PULL_REPS {
        let t = Instant::now();
        let n = registry::get_discard(&mut conn, "/null").await?;
        let d = t.elapsed();
        if n != size {
            return err(format!(
                "do-nothing GET returned {n} bytes, expected {size}"
            ));
        }
        best = best.max(mb_per_s(size, d));
    }
    Ok(best)
}

struct TargetCtx {
    name: String,
    target: Target,
    pid: Option<u32>,
    repo: String,
    p: Params,
    seed: u64,
    /// Offset of this target's big blobs in the shared buffer.
    offset: usize,
}

impl TargetCtx {
    fn log(&self, msg: impl AsRef<str>) {
        log(format!("[{}] {}", self.name, msg.as_ref()));
    }
}

/// Samples the VmRSS of a process every 20 ms, keeping the maximum (KiB).
struct RssSampler {
    max: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: Option<u32>) -> RssSampler {
        let max = Arc::new(AtomicU64::new(0));
        let task = pid.map(|pid| {
            let max = max.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                loop {
                    tick.tick().await;
                    if let Some(v) = proc_status_kib(pid, "VmRSS") {
                        max.fetch_max(v, Ordering::Relaxed);
                    }
                }
            })
        });
        RssSampler { max, task }
    }

    /// Stops sampling and returns the maximum in MiB.
    fn stop(mut self) -> Option<f64> {
        let task = self.task.take()?;
        task.abort();
        Some(self.max.load(Ordering::Relaxed) as f64 / 1024.0)
    }
}

async fn bench_target(
    ctx: &TargetCtx,
    phases: &BTreeSet<&'static str>,
    big: &Bytes,
    limits: &Limits,
) -> Result<(Vec<Figure>, Vec<String>)> {
    let p = &ctx.p;
    let mut figs = Vec::new();
    let mut notes = Vec::new();
    let mut conn = Conn::connect(&ctx.target).await?;

    // Fail early, with a clear message, if this is not a registry.
    {
        let res = conn
            .send(&Method::GET, "/v2/", &[], http::ReqBody::Empty)
            .await?;
        let mut res = http::expect("GET /v2/", res, &[hyper::StatusCode::OK]).await?;
        http::drain(res.body_mut()).await?;
    }

    let size = p.blob as u64;
    let blob_label = fmt_size(size);
    // This target's two big blobs: windows of the shared buffer at distinct
    // offsets (the buffer is empty when no blob phase runs).
    let window = |off: usize| {
        if big.len() >= off + p.blob {
            big.slice(off..off + p.blob)
        } else {
            Bytes::new()
        }
    };
    let mono = window(ctx.offset);
    let chunked = window(ctx.offset + 8);
    let mut mono_digest = None;

    // 2. Big blob push.
    if phases.contains("push") {
        let sha = limits.sha256_mb_s.unwrap_or(f64::NAN);
        let d = data::digest(&mono);
        let rss = RssSampler::start(ctx.pid);
        let cpu = CpuMeter::start();
        let t = Instant::now();
        registry::push_monolithic(&mut conn, &ctx.repo, &mono, &d).await?;
        let v = mb_per_s(size, t.elapsed());
        ctx.log(format!(
            "push monolithic {blob_label}: {v:.0} MB/s (client CPU {:.0}%)",
            cpu.pct()
        ));
        figs.push(
            Figure::new(
                "push_monolithic_mb_s",
                leak(format!("blob push {blob_label}, monolithic")),
                "MB/s",
                v,
            )
            .vs(sha, "sha256")
            .goal(0.85, true),
        );
        mono_digest = Some(d);

        let d = data::digest(&chunked);
        let cpu = CpuMeter::start();
        let t = Instant::now();
        registry::push_chunked(&mut conn, &ctx.repo, &chunked, &d, p.chunk).await?;
        let v = mb_per_s(size, t.elapsed());
        ctx.log(format!(
            "push chunked {blob_label} ({} PATCHes): {v:.0} MB/s (client CPU {:.0}%)",
            p.blob.div_ceil(p.chunk),
            cpu.pct()
        ));
        figs.push(
            Figure::new(
                "push_chunked_mb_s",
                leak(format!(
                    "blob push {blob_label}, {} chunks",
                    fmt_size(p.chunk as u64)
                )),
                "MB/s",
                v,
            )
            .vs(sha, "sha256")
            .goal(0.85, true),
        );
        if let Some(m) = rss.stop() {
            figs.push(Figure::new(
                "rss_max_during_push_mib",
                "VmRSS max during big pushes",
                "MiB",
                m,
            ));
        }
    }

    // 3. Big blob pull (best of PULL_REPS, like the do-nothing GET).
    if phases.contains("pull") {
        let d = match mono_digest {
            Some(d) => d,
            None => {
                let d = data::digest(&mono);
                ctx.log("pushing the blob to pull (untimed)");
                registry::push_monolithic(&mut conn, &ctx.repo, &mono, &d).await?;
                d
            }
        };
        let path = format!("/v2/{}/blobs/{d}", ctx.repo);
        let rss = RssSampler::start(ctx.pid);
        let mut best = 0f64;
        let cpu = CpuMeter::start();
        for _ in 0..PULL_REPS {
            let t = Instant::now();
            let n = registry::get_discard(&mut conn, &path).await?;
            let el = t.elapsed();
            if n != size {
                return err(format!("GET {path}: got {n} bytes, expected {size}"));
            }
            best = best.max(mb_per_s(size, el));
        }
        ctx.log(format!(
            "pull {blob_label}: {best:.0} MB/s (client CPU {:.0}%)",
            cpu.pct()
        ));
        figs.push(
            Figure::new(
                "pull_mb_s",
                leak(format!("blob pull {blob_label} (best of {PULL_REPS})")),
                "MB/s",
                best,
            )
            .vs(limits.null_get_mb_s.unwrap_or(f64::NAN), "null_get")
            .goal(0.9, true),
        );
        if let Some(m) = rss.stop() {
            figs.push(Figure::new(
                "rss_max_during_pull_mib",
                "VmRSS max during pulls",
                "MiB",
                m,
            ));
        }
    }

    // 4. Small blob push.
    if phases.contains("small") {
        let all = data::random_bytes(p.small_count * p.small_size, ctx.seed ^ 1);
        let blobs: Vec<(Bytes, String)> = (0..p.small_count)
            .map(|i| {
                let b = all.slice(i * p.small_size..(i + 1) * p.small_size);
                let d = data::digest(&b);
                (b, d)
            })
            .collect();
        let op = Op::SmallPush {
            repo: ctx.repo.clone(),
            blobs,
        };
        let s = run_workers(
            &ctx.target,
            Arc::new(op),
            p.concurrency,
            Stop::Count(p.small_count),
        )
        .await?;
        let label = fmt_size(p.small_size as u64);
        ctx.log(format!(
            "{} pushes of {label}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms (client CPU {:.0}%)",
            s.ops,
            s.ops_per_s(),
            s.pct_ms(50.0),
            s.pct_ms(99.0),
            s.client_cpu_pct,
        ));
        figs.push(
            Figure::new(
                "small_push_ops_s",
                leak(format!("{label} blob push (POST+PUT)")),
                "ops/s",
                s.ops_per_s(),
            )
            .goal(2500.0, false),
        );
        figs.push(Figure::new(
            "small_push_p50_ms",
            "  p50",
            "ms",
            s.pct_ms(50.0),
        ));
        figs.push(Figure::new(
            "small_push_p99_ms",
            "  p99",
            "ms",
            s.pct_ms(99.0),
        ));
    }

    // Blobs that manifests reference, pushed untimed.
    let needs_manifests = ["mput", "mget", "mhead", "tags"]
        .iter()
        .any(|x| phases.contains(x));
    let refs = if needs_manifests {
        let r = ManifestRefs::new(ctx.seed);
        r.push(&mut conn, &ctx.repo).await?;
        Some(r)
    } else {
        None
    };

    // 5. Manifest PUT.
    if phases.contains("mput") {
        let refs = refs.as_ref().expect("refs");
        let op = Op::ManifestPut {
            repo: ctx.repo.clone(),
            tag_prefix: "m".into(),
            manifests: refs.manifests("put", p.manifests),
        };
        let s = run_workers(
            &ctx.target,
            Arc::new(op),
            p.concurrency,
            Stop::Count(p.manifests),
        )
        .await?;
        ctx.log(format!(
            "{} manifest PUTs: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms (client CPU {:.0}%)",
            s.ops,
            s.ops_per_s(),
            s.pct_ms(50.0),
            s.pct_ms(99.0),
            s.client_cpu_pct,
        ));
        figs.push(
            Figure::new(
                "manifest_put_ops_s",
                "manifest PUT by tag",
                "ops/s",
                s.ops_per_s(),
            )
            .goal(4000.0, false),
        );
        figs.push(Figure::new(
            "manifest_put_p50_ms",
            "  p50",
            "ms",
            s.pct_ms(50.0),
        ));
        figs.push(
            Figure::new("manifest_put_p99_ms", "  p99", "ms", s.pct_ms(99.0)).goal(20.0, false),
        );
    }

    // 6. Manifest GET and HEAD on one manifest, by tag.
    if phases.contains("mget") || phases.contains("mhead") {
        let refs = refs.as_ref().expect("refs");
        let (body, digest) = refs.manifests("get", 1).remove(0);
        registry::put_manifest(&mut conn, &ctx.repo, "get", &body, &digest).await?;
        let path = format!("/v2/{}/manifests/get", ctx.repo);
        for (phase, method, label) in [
            ("mget", Method::GET, "manifest GET by tag"),
            ("mhead", Method::HEAD, "manifest HEAD by tag"),
        ] {
            if !phases.contains(phase) {
                continue;
            }
            let op = Op::Fetch {
                method: method.clone(),
                path: path.clone(),
                len: body.len() as u64,
            };
            let s = run_workers(
                &ctx.target,
                Arc::new(op),
                p.get_concurrency,
                Stop::After(p.duration),
            )
            .await?;
            ctx.log(format!(
                "{} {method}s: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms (client CPU {:.0}%)",
                s.ops,
                s.ops_per_s(),
                s.pct_ms(50.0),
                s.pct_ms(99.0),
                s.client_cpu_pct,
            ));
            let (k_ops, k50, k99): (&'static str, &'static str, &'static str) = match phase {
                "mget" => (
                    "manifest_get_ops_s",
                    "manifest_get_p50_ms",
                    "manifest_get_p99_ms",
                ),
                _ => (
                    "manifest_head_ops_s",
                    "manifest_head_p50_ms",
                    "manifest_head_p99_ms",
                ),
            };
            figs.push(
                Figure::new(k_ops, label, "ops/s", s.ops_per_s())
                    .vs(limits.null_ops_s.unwrap_or(f64::NAN), "null_ops")
                    .goal(25000.0, false),
            );
            figs.push(Figure::new(k50, "  p50", "ms", s.pct_ms(50.0)));
            figs.push(Figure::new(k99, "  p99", "ms", s.pct_ms(99.0)).goal(10.0, false));
        }
    }

    // 7. Tag list of a repository with many tags.
    if phases.contains("tags") {
        let refs = refs.as_ref().expect("refs");
        let repo = format!("{}-tags", ctx.repo);
        refs.push(&mut conn, &repo).await?;
        let op = Op::ManifestPut {
            repo: repo.clone(),
            tag_prefix: "tag-".into(),
            manifests: refs.manifests("tag", p.tags),
        };
        let t = Instant::now();
        run_workers(
            &ctx.target,
            Arc::new(op),
            p.concurrency,
            Stop::Count(p.tags),
        )
        .await?;
        ctx.log(format!(
            "created {} tags in {:.1}s (untimed)",
            p.tags,
            t.elapsed().as_secs_f64()
        ));
        let full = format!("/v2/{repo}/tags/list");
        let page = format!("/v2/{repo}/tags/list?n=100");
        for (path, want, key, label) in [
            (
                &full,
                p.tags,
                "tags_list_full",
                leak(format!("tag list, all {} tags", p.tags)),
            ),
            (
                &page,
                100,
                "tags_list_n100",
                leak("tag list, first page n=100".into()),
            ),
        ] {
            let mut lat = Vec::with_capacity(p.tag_list_requests);
            let start = Instant::now();
            let mut first = None;
            for _ in 0..p.tag_list_requests {
                let t = Instant::now();
                let r = registry::get_tags(&mut conn, path).await?;
                lat.push(micros(t.elapsed()));
                if first.is_none() {
                    first = Some(r);
                }
            }
            let s = OpStats::new(start.elapsed(), lat);
            let (body, link) = first.expect("one request");
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| format!("GET {path}: body is not JSON: {e}"))?;
            let got = v["tags"].as_array().map(Vec::len).unwrap_or(0);
            if want < p.tags {
                // The n=100 page.
                if got > want {
                    notes.push(format!(
                        "GET {path} ignored n=100 and returned {got} tags: its figure is not a page"
                    ));
                } else if got != want {
                    return err(format!(
                        "GET {path}: {got} tags in the response, expected {want}"
                    ));
                } else if link.is_none() {
                    notes.push(format!(
                        "GET {path} returned no Link header for the next page"
                    ));
                }
            } else if got != want {
                if got < want && link.is_some() {
                    notes.push(format!(
                        "GET {path} returned only {got} of {want} tags (paginated, with a Link header)"
                    ));
                } else {
                    return err(format!(
                        "GET {path}: {got} tags in the response, expected {want}"
                    ));
                }
            }
            ctx.log(format!(
                "{label}: p50 {:.2} ms, p99 {:.2} ms ({} bytes)",
                s.pct_ms(50.0),
                s.pct_ms(99.0),
                body.len()
            ));
            let (k50, k99, goal): (&'static str, &'static str, f64) = match key {
                "tags_list_full" => ("tags_list_full_p50_ms", "tags_list_full_p99_ms", 5.0),
                _ => ("tags_list_n100_p50_ms", "tags_list_n100_p99_ms", 1.0),
            };
            figs.push(
                Figure::new(k50, leak(format!("{label}, p50")), "ms", s.pct_ms(50.0))
                    .goal(goal, false),
            );
            figs.push(Figure::new(k99, "  p99", "ms", s.pct_ms(99.0)));
        }
    }

    // 8. Memory.
    if phases.contains("rss") {
        if let Some(pid) = ctx.pid {
            let hwm = proc_status_kib(pid, "VmHWM")
                .ok_or_else(|| format!("cannot read /proc/{pid}/status (did the server exit?)"))?;
            let rss = proc_status_kib(pid, "VmRSS").unwrap_or(0);
            figs.push(
                Figure::new(
                    "rss_peak_mib",
                    "peak RSS (VmHWM) at end",
                    "MiB",
                    hwm as f64 / 1024.0,
                )
                .goal(50.0, false),
            );
            figs.push(Figure::new(
                "rss_end_mib",
                "VmRSS at end",
                "MiB",
                rss as f64 / 1024.0,
            ));
        } else {
            notes.push("no --pid given: memory not measured".into());
        }
    }
    Ok((figs, notes))
}

/// Labels are built once per run; leaking a few short strings keeps the
/// report types simple.
fn leak(s: String) -> &'static str {
    s.leak()
}

/// The config and layer blobs every benchmark manifest references.
struct ManifestRefs {
    config: Bytes,
    config_digest: String,
    layer: Bytes,
    layer_digest: String,
}

impl ManifestRefs {
    fn new(seed: u64) -> ManifestRefs {
        let layer = data::small_layer(seed ^ 2);
        let layer_digest = data::digest(&layer);
        let config = Bytes::from(format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{}},\
             \"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{layer_digest}\"]}}}}"
        ));
        let config_digest = data::digest(&config);
        ManifestRefs {
            config,
            config_digest,
            layer,
            layer_digest,
        }
    }

    async fn push(&self, conn: &mut Conn, repo: &str) -> Result<()> {
        registry::push_small(conn, repo, &self.config, &self.config_digest).await?;
        registry::push_small(conn, repo, &self.layer, &self.layer_digest).await
    }

    /// `n` distinct manifests (they differ by an annotation) and their digests.
    fn manifests(&self, kind: &str, n: usize) -> Vec<(Bytes, String)> {
        (0..n)
            .map(|i| {
                let body = Bytes::from(format!(
                    "{{\"schemaVersion\":2,\"mediaType\":\"{}\",\
                     \"config\":{{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{}}},\
                     \"layers\":[{{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{}}}],\
                     \"annotations\":{{\"dev.berth.bench\":\"{kind}-{i}\"}}}}",
                    registry::OCI_MANIFEST,
                    registry::OCI_CONFIG,
                    self.config_digest,
                    self.config.len(),
                    registry::OCI_LAYER,
                    self.layer_digest,
                    self.layer.len(),
                ));
                let d = data::digest(&body);
                (body, d)
            })
            .collect()
    }
}

/// What each worker does for operation number `i`.
enum Op {
    SmallPush {
        repo: String,
        blobs: Vec<(Bytes, String)>,
    },
    ManifestPut {
        repo: String,
        tag_prefix: String,
        manifests: Vec<(Bytes, String)>,
    },
    Fetch {
        method: Method,
        path: String,
        len: u64,
    },
}

impl Op {
    async fn run(&self, conn: &mut Conn, i: usize) -> Result<()> {
        match self {
            Op::SmallPush { repo, blobs } => {
                let (b, d) = &blobs[i];
                registry::push_small(conn, repo, b, d).await
            }
            Op::ManifestPut {
                repo,
                tag_prefix,
                manifests,
            } => {
                let (b, d) = &manifests[i];
                let tag = format!("{tag_prefix}{i:05}");
                registry::put_manifest(conn, repo, &tag, b, d).await
            }
            Op::Fetch { method, path, len } => {
                registry::fetch_manifest(conn, method, path, *len).await
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Stop {
    /// Operations 0..n, shared among the workers.
    Count(usize),
    /// As many operations as fit in this time.
    After(Duration),
}

/// Runs `op` on `workers` tasks, each with its own keep-alive connection
/// (connected before the clock starts), and returns every operation's latency.
async fn run_workers(target: &Target, op: Arc<Op>, workers: usize, stop: Stop) -> Result<OpStats> {
    let workers = match stop {
        Stop::Count(n) => workers.min(n.max(1)),
        Stop::After(_) => workers,
    };
    let mut conns = Vec::with_capacity(workers);
    for _ in 0..workers {
        conns.push(Conn::connect(target).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let cpu = CpuMeter::start();
    let start = Instant::now();
    let deadline = match stop {
        Stop::After(d) => Some(start + d),
        Stop::Count(_) => None,
    };
    let limit = match stop {
        Stop::Count(n) => n,
        Stop::After(_) => usize::MAX,
    };
    let mut handles = Vec::with_capacity(workers);
    for mut conn in conns {
        let op = op.clone();
        let next = next.clone();
        let failed = failed.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(d) = deadline {
                    if Instant::now() >= d {
                        break;
                    }
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                let t = Instant::now();
                if let Err(e) = op.run(&mut conn, i).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                lat.push(micros(t.elapsed()));
            }
            Ok::<_, http::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(e.to_string().into());
            }
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut s = OpStats::new(elapsed, all);
    s.client_cpu_pct = cpu.pct();
    Ok(s)
}
