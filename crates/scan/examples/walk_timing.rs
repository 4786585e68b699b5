//! Walks one layer file and prints how fast, for comparing with
//! `gzip -dc LAYER > /dev/null` (issue 13 asks for at most 1.5 times its
//! time on a bookworm minbase layer). Not a test: timings depend on the
//! machine. Run in release:
//!
//! ```text
//! cargo run --release -p berth-scan --example walk_timing -- LAYER [RUNS]
//! ```
//!
//! Each run reads the file from the start (from the page cache after the
//! first), walks it, merges it as a one-layer image and takes its
//! inventory; the walk is the part that scales with the layer.

use std::fs::File;
use std::time::Instant;

use berth_scan::layers::{merge, walk_layer, Limits};
use berth_scan::packages::inventory;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: walk_timing LAYER [RUNS]")?;
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(3);
    for run in 1..=runs {
        let start = Instant::now();
        let layer = walk_layer(File::open(&path)?, "sha256:timing", &Limits::default())?;
        let walked = start.elapsed();
        let layers = [layer];
        let inv = inventory(&merge(&layers));
        let total = start.elapsed();
        let l = &layers[0];
        println!(
            "run {run}: {:?} layer, {} compressed / {} uncompressed bytes, {} entries, {} packages, {} problems; walk {:.3} s ({:.0} MB/s uncompressed, {:.0} MB/s compressed), with inventory {:.3} s",
            l.compression,
            l.compressed_bytes,
            l.uncompressed_bytes,
            l.entries.len(),
            inv.packages.len(),
            inv.problems.len(),
            walked.as_secs_f64(),
            l.uncompressed_bytes as f64 / 1e6 / walked.as_secs_f64(),
            l.compressed_bytes as f64 / 1e6 / walked.as_secs_f64(),
            total.as_secs_f64(),
        );
    }
    Ok(())
}
