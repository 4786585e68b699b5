//! Prints how long importing vulndata's OSV records takes, for reporting
//! (not a test: timings depend on the machine). Run in release:
//!
//! ```text
//! cargo run --release -p berth-scan --example import_timing [VULNDATA_DIR]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use berth_scan::vulndb::Index;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vulndata"
            ))
        });
    let start = Instant::now();
    let mut files = Vec::new();
    let mut bytes = 0;
    for eco in ["debian", "alpine", "pypi", "rustsec", "go"] {
        for entry in std::fs::read_dir(dir.join(eco).join("osv"))? {
            let path = entry?.path();
            let data = std::fs::read(&path)?;
            bytes += data.len();
            files.push((path.display().to_string(), data));
        }
    }
    let read = start.elapsed();

    let start = Instant::now();
    let index = Index::build(files.iter().map(|(p, b)| (p, b)))?;
    let build = start.elapsed();

    let start = Instant::now();
    let stored = index.to_bytes();
    let serialise = start.elapsed();

    let start = Instant::now();
    let reloaded = Index::from_bytes(&stored)?;
    let reload = start.elapsed();
    assert_eq!(reloaded.stats(), index.stats());

    let stats = index.stats();
    println!(
        "read {} files ({:.1} MB) in {:.3} s",
        files.len(),
        bytes as f64 / 1e6,
        read.as_secs_f64()
    );
    println!(
        "parsed and indexed in {:.3} s: {} records, {} withdrawn, {} malformed ranges skipped",
        build.as_secs_f64(),
        stats.records,
        stats.withdrawn,
        stats.skipped_ranges
    );
    for (family, n) in &stats.per_ecosystem {
        println!("  {family}: {n}");
    }
    println!(
        "stored form {:.1} MB, written in {:.3} s, reloaded in {:.3} s",
        stored.len() as f64 / 1e6,
        serialise.as_secs_f64(),
        reload.as_secs_f64()
    );
    Ok(())
}
