//! Accuracy against real data: shared/vulndata's OSV records and the Debian
//! minbase root filesystems, with the exact expected findings of bookworm.
//!
//! Each root filesystem is made into a real layer (a gzip tar, as an image
//! build would push it), walked, merged and inventoried by the crate's own
//! walker and parsers, then matched.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_scan::inventory::{Ecosystem, Package};
use berth_scan::layers::{merge, walk_layer, Limits};
use berth_scan::matcher::{match_packages, Matches};
use berth_scan::packages::inventory;
use berth_scan::vulndb::Index;

const DIGEST: &str = "sha256:b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

fn vulndata() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vulndata"
    ));
    if dir.is_dir() {
        Some(dir.to_owned())
    } else {
        eprintln!(
            "SKIPPED: {} is absent (the shared vulnerability data sits beside the work tree)",
            dir.display()
        );
        None
    }
}

/// Every OSV record of vulndata, indexed once for all tests.
fn index(data: &Path) -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut files = Vec::new();
        for eco in ["debian", "alpine", "pypi", "rustsec", "go"] {
            for entry in fs::read_dir(data.join(eco).join("osv")).unwrap() {
                let path = entry.unwrap().path();
                files.push((path.display().to_string(), fs::read(&path).unwrap()));
            }
        }
        Index::build(files).unwrap()
    })
}

fn scan(root: &Path, index: &Index) -> (Vec<Package>, Matches) {
    let layer = walk_layer(&common::rootfs_layer(root)[..], DIGEST, &Limits::default()).unwrap();
    assert!(
        layer.entries.iter().any(|e| e.path == "etc/os-release"
            && matches!(e.kind, berth_scan::layers::EntryKind::Symlink { .. })),
        "os-release is read through its symlink"
    );
    let layers = [layer];
    let inv = inventory(&merge(&layers));
    assert!(inv.problems.is_empty(), "{:?}", inv.problems);
    assert!(inv
        .packages
        .iter()
        .all(|p| p.layer.as_deref() == Some(DIGEST)));
    let matches = match_packages(index, &inv.packages);
    (inv.packages, matches)
}

#[test]
fn bookworm_minbase_findings_equal_the_expected_file() {
    let Some(data) = vulndata() else { return };
    let index = index(&data);
    let root = data.join("fixtures/debian-bookworm-minbase");
    let (packages, matches) = scan(&root, index);

    let expected: serde_json::Value = serde_json::from_slice(
        &fs::read(data.join("fixtures/expected/debian-bookworm-minbase.json")).unwrap(),
    )
    .unwrap();
    let counts = &expected["inventory_counts"];
    let debs: Vec<&Package> = packages
        .iter()
        .filter(|p| matches!(p.ecosystem, Ecosystem::Debian { .. }))
        .collect();
    let sources: BTreeSet<&str> = debs
        .iter()
        .filter_map(|p| p.source_name.as_deref())
        .collect();
    assert_eq!(debs.len() as u64, counts["deb_binary_packages"]);
    assert_eq!(sources.len() as u64, counts["deb_source_packages"]);
    assert_eq!(
        (packages.len() - debs.len()) as u64,
        counts["pypi_packages"]
    );
    assert!(debs.iter().all(|p| p.ecosystem
        == Ecosystem::Debian {
            release: "12".into()
        }));
    // The source mapping the Debian advisories need: an explicit source
    // version under an epoch-carrying binary, and a binNMU.
    let deb = |name: &str| debs.iter().find(|p| p.name == name).unwrap();
    let bsdutils = deb("bsdutils");
    assert_eq!(
        (
            bsdutils.version.as_str(),
            bsdutils.source_name.as_deref(),
            bsdutils.source_version.as_deref()
        ),
        (
            "1:2.38.1-5+deb12u3",
            Some("util-linux"),
            Some("2.38.1-5+deb12u3")
        )
    );
    assert_eq!(
        bsdutils.purl,
        "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=util-linux%402.38.1-5%2Bdeb12u3"
    );
    let e2fsprogs = deb("e2fsprogs");
    assert_eq!(e2fsprogs.source_version.as_deref(), Some("1.47.0-2"));
    assert_eq!(deb("libc6").source_name.as_deref(), Some("glibc"));
    let pypi: BTreeSet<(&str, &str, &str)> = packages
        .iter()
        .filter(|p| p.ecosystem == Ecosystem::PyPI)
        .map(|p| (p.name.as_str(), p.version.as_str(), p.purl.as_str()))
        .collect();
    assert_eq!(
        pypi,
        BTreeSet::from([
            ("Jinja2", "2.10", "pkg:pypi/jinja2@2.10"),
            ("PyYAML", "5.3", "pkg:pypi/pyyaml@5.3"),
            ("requests", "2.19.0", "pkg:pypi/requests@2.19.0"),
            ("urllib3", "1.24.1", "pkg:pypi/urllib3@1.24.1"),
        ])
    );

    // Exactly the expected findings: same (package, advisory) pairs, no
    // more; each with its aliases, a fixed version the advisory names, and
    // the evidence path.
    let want: BTreeMap<(String, String), &serde_json::Value> = expected["expected_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let key = (
                f["package"].as_str().unwrap().to_owned(),
                f["advisory"].as_str().unwrap().to_owned(),
            );
            (key, f)
        })
        .collect();
    let got: BTreeMap<(String, String), _> = matches
        .findings
        .iter()
        .map(|f| ((f.package.clone(), f.id.clone()), f))
        .collect();
    assert_eq!(got.len(), matches.findings.len(), "a finding is repeated");
    let want_keys: Vec<_> = want.keys().collect();
    let got_keys: Vec<_> = got.keys().collect();
    assert_eq!(got_keys, want_keys);
    assert_eq!(got.len(), 13);
    for (key, f) in &got {
        let w = want[key];
        let aliases: BTreeSet<&str> = f.aliases.iter().map(String::as_str).collect();
        let want_aliases: BTreeSet<&str> = w["aliases_or_upstream"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(aliases, want_aliases, "{key:?}");
        let fixed = f
            .fixed_version
            .as_deref()
            .expect("every expected finding is fixed");
        assert!(
            w["fixed_versions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == fixed),
            "{key:?}: fixed {fixed} not among {}",
            w["fixed_versions"]
        );
        assert_eq!(
            f.installed_version,
            w["installed_version"].as_str().unwrap()
        );
        assert_eq!(f.path, w["location"].as_str().unwrap());
    }
    // PYSEC-2023-192 has two intervals: the one containing 1.24.1 ends at 1.26.17.
    let key = ("urllib3".to_owned(), "PYSEC-2023-192".to_owned());
    assert_eq!(got[&key].fixed_version.as_deref(), Some("1.26.17"));
    assert!(matches
        .findings
        .iter()
        .all(|f| !f.id.starts_with("DSA") && !f.id.starts_with("DLA")));

    // The same-package non-findings are real candidates (the advisory names
    // the package's source in this release) that ordering must rule out.
    for n in expected["expected_non_findings"].as_array().unwrap() {
        let package = n["package"].as_str().unwrap();
        let advisory = n["advisory"].as_str().unwrap();
        assert!(
            !got.contains_key(&(package.to_owned(), advisory.to_owned())),
            "false positive {advisory} on {package}"
        );
        let p = packages.iter().find(|p| p.name == package).unwrap();
        let looked_up = p.source_name.as_deref().unwrap_or(&p.name);
        assert!(
            index
                .lookup(&p.ecosystem, looked_up)
                .any(|(r, _)| r.id == advisory),
            "{advisory} is not a candidate for {package}: the test would prove nothing"
        );
    }
    assert!(
        matches.undecided.is_empty(),
        "undecided: {:?}",
        matches.undecided
    );
}

#[test]
fn bullseye_minbase_findings_name_installed_packages() {
    let Some(data) = vulndata() else { return };
    let index = index(&data);
    let root = data.join("fixtures/debian-bullseye-minbase");
    let (packages, matches) = scan(&root, index);
    assert_eq!(packages.len(), 96);
    assert!(packages.iter().all(|p| p.ecosystem
        == Ecosystem::Debian {
            release: "11".into()
        }));
    let installed: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let debian: Vec<_> = matches
        .findings
        .iter()
        .filter(|f| f.path == "var/lib/dpkg/status")
        .collect();
    for f in &debian {
        assert!(
            installed.contains(f.package.as_str()),
            "{} is not installed",
            f.package
        );
        assert!(
            f.id.starts_with("DSA-") || f.id.starts_with("DLA-"),
            "{}",
            f.id
        );
        assert!(
            f.fixed_version.is_some(),
            "{}: Debian data always has a fix",
            f.id
        );
    }
    eprintln!(
        "bullseye minbase: {} Debian findings on {} packages, {} undecided",
        debian.len(),
        debian
            .iter()
            .map(|f| &f.package)
            .collect::<BTreeSet<_>>()
            .len(),
        matches.undecided.len()
    );
    for f in &debian {
        eprintln!(
            "  {} {} {} (fixed in {})",
            f.id,
            f.package,
            f.installed_version,
            f.fixed_version.as_deref().unwrap_or("-")
        );
    }
}

#[test]
fn the_whole_data_set_imports() {
    let Some(data) = vulndata() else { return };
    let stats = index(&data).stats();
    // vulndata's README: 10 PyPI and 13 RustSec records are withdrawn, and
    // 7 PyPI records have a GIT range with a malformed commit (the README
    // names PYSEC-2021-424 twice; the seventh is PYSEC-2021-425).
    assert_eq!(stats.withdrawn, 23);
    assert_eq!(
        stats.records + stats.withdrawn,
        8916 + 2437 + 2661 + 1206 + 199
    );
    assert_eq!(stats.skipped_ranges, 7, "{stats:?}");
    for family in ["Debian", "Alpine", "PyPI", "crates.io", "Go"] {
        assert!(
            stats.per_ecosystem.get(family).is_some_and(|n| *n > 0),
            "{family}"
        );
    }
    let reloaded = Index::from_bytes(&index(&data).to_bytes()).unwrap();
    assert_eq!(reloaded.stats(), stats);
}
