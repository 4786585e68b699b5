//! The advisory database from the zip osv.dev publishes: shared/vulndata's
//! `pypi/all.zip` (osv.dev's bulk layout, flat `<ID>.json`) imports to the
//! same index as the same records read from their directory, with the
//! counts and the "built at" time of that data set. Skips, saying so, when
//! the data directory is absent.

use std::fs;
use std::path::{Path, PathBuf};

use berth_scan::osv::Ecosystem;
use berth_scan::vulndb::{read_zip, Index, ZipLimits};

fn pypi() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vulndata/pypi"
    ));
    if dir.is_dir() {
        Some(dir.to_owned())
    } else {
        eprintln!("SKIPPED: {} is absent", dir.display());
        None
    }
}

#[test]
fn osv_dev_all_zip_imports_like_its_directory() {
    let Some(dir) = pypi() else { return };
    let zip = read_zip(
        fs::File::open(dir.join("all.zip")).unwrap(),
        &ZipLimits::default(),
    )
    .unwrap();
    assert_eq!(zip.records.len(), 2661);
    assert!(zip.ignored.is_empty(), "{:?}", zip.ignored);
    assert!(zip
        .records
        .iter()
        .all(|(name, _)| name.starts_with("PYSEC-") && name.ends_with(".json")));

    let from_zip = Index::build(zip.records).unwrap();
    let stats = from_zip.stats();
    assert_eq!(stats.records, 2651);
    assert_eq!(stats.withdrawn, 10);
    assert_eq!(
        stats.per_ecosystem.iter().collect::<Vec<_>>(),
        [(&"PyPI".to_owned(), &2651)]
    );
    // PYSEC-2024-55 says `0001-01-01T00:00:00Z`; the newest real time is
    // PYSEC-2024-104's.
    assert_eq!(
        stats.newest_modified.as_deref(),
        Some("2024-10-10T17:22:00.587279Z")
    );
    assert!(from_zip
        .lookup(&Ecosystem::PyPI, "urllib3")
        .any(|(r, _)| r.id == "PYSEC-2023-192"));

    let mut files = Vec::new();
    for entry in fs::read_dir(dir.join("osv")).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), fs::read(&path).unwrap()));
    }
    let from_dir = Index::build(files).unwrap();
    assert_eq!(from_dir.stats(), stats);
}

#[test]
fn limits_apply_to_the_real_zip() {
    let Some(dir) = pypi() else { return };
    let open = || fs::File::open(dir.join("all.zip")).unwrap();
    let few = ZipLimits {
        max_members: 2660,
        ..ZipLimits::default()
    };
    assert!(read_zip(open(), &few).is_err());
    // The records add up to 7,409,405 bytes.
    let small = ZipLimits {
        max_total_size: 7_409_404,
        ..ZipLimits::default()
    };
    assert!(read_zip(open(), &small).is_err());
    let exact = ZipLimits {
        max_total_size: 7_409_405,
        ..ZipLimits::default()
    };
    assert_eq!(read_zip(open(), &exact).unwrap().records.len(), 2661);
}
