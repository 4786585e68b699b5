//! Memory stays bounded: walking a layer with a 1 GiB file in it (gzip and
//! zstd, generated as a stream) must not hold the file, whether a parser
//! wants its path (it is over the size limit) or not. Measured as the
//! process's peak resident set (`VmHWM`), reset before each walk; alone in
//! its test binary so no other test's allocations count.

mod common;

use std::io::{self, Read, Write};

use berth_scan::layers::{walk_layer, Limits};

const GIB: u64 = 1 << 30;
/// Issue 13's budget for a scan of a 1 GiB layer.
const BUDGET: u64 = 64 << 20;

/// A layer holding `path`, `GIB` bytes of zeros, written straight into
/// the compressor.
fn big_layer<W: Write>(out: W, path: &str) -> W {
    let mut b = tar::Builder::new(out);
    let mut h = tar::Header::new_gnu();
    h.set_size(GIB);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, path, io::repeat(0).take(GIB))
        .unwrap();
    b.into_inner().unwrap()
}

/// `(VmRSS, VmHWM)` in bytes, or `None` off Linux.
fn rss() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The peak resident growth while `f` runs.
fn peak_growth<T>(f: impl FnOnce() -> T) -> Option<(u64, T)> {
    // Writing 5 resets the peak to the current resident set (Linux 4.0+).
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let (before, _) = rss()?;
    let out = f();
    let (_, peak) = rss()?;
    Some((peak.saturating_sub(before), out))
}

#[test]
fn a_1_gib_file_is_streamed_not_held() {
    let limits = Limits::default();
    let gz = big_layer(
        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
        "var/lib/dpkg/status",
    )
    .finish()
    .unwrap();
    let mut zs = big_layer(
        zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap(),
        "usr/bin/big",
    )
    .finish()
    .unwrap();
    zs.shrink_to_fit();
    // The measure sees a file that is held: 100 MiB read into memory.
    let Some((held, _)) = peak_growth(|| {
        let mut v = Vec::new();
        io::repeat(1).take(100 << 20).read_to_end(&mut v).unwrap();
        std::hint::black_box(v.len())
    }) else {
        eprintln!("SKIP memory figures: /proc/self/clear_refs or status unreadable (not Linux?)");
        return;
    };
    assert!(
        held >= 100 << 20,
        "the measure missed a 100 MiB buffer: {held}"
    );
    for (what, layer) in [("gzip, wanted path", &gz), ("zstd, executable", &zs)] {
        let (growth, inv) =
            peak_growth(|| walk_layer(&layer[..], "sha256:big", &limits).unwrap()).unwrap();
        eprintln!(
            "{what}: {} compressed bytes, {} uncompressed, peak resident growth {:.1} MiB",
            layer.len(),
            inv.uncompressed_bytes,
            growth as f64 / (1 << 20) as f64
        );
        assert_eq!(inv.file_bytes, GIB);
        assert!(inv.evidence.is_empty());
        assert!(
            growth < BUDGET,
            "{what}: the walk grew the resident set by {growth} bytes"
        );
        // What a cache would store for this layer is small.
        assert!(serde_json::to_vec(&inv).unwrap().len() < 4096);
    }
}
