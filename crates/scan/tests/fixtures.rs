//! Accuracy against real data: shared/vulndata's OSV records and the Debian
//! minbase root filesystems, with the exact expected findings of bookworm.
//!
//! The readers of the dpkg status file, os-release and `METADATA` below are
//! minimal, test-only stand-ins. The real package parsers belong to the
//! package-parser module another engineer writes; these only turn the
//! fixture into `Package`s the way the interface documents.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_scan::inventory::{Ecosystem, Package};
use berth_scan::matcher::{match_packages, Matches};
use berth_scan::vulndb::Index;

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

/// `os-release`'s `VERSION_ID`, reading `etc/os-release` and following it
/// when it is a symlink (stored in vulndata as a file holding its target).
fn debian_release(root: &Path) -> String {
    let etc = root.join("etc/os-release");
    let mut text = fs::read_to_string(&etc).unwrap();
    if !text.contains('=') {
        text = fs::read_to_string(root.join("etc").join(text.trim())).unwrap();
    }
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .expect("VERSION_ID")
        .trim_matches('"')
        .to_owned()
}

/// Test-only dpkg status reader: installed stanzas, with `Source:` and its
/// optional `(version)`, else the binary's version less a binNMU `+bN`.
fn dpkg_packages(root: &Path, release: &str) -> Vec<Package> {
    let status = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    let mut out = Vec::new();
    for stanza in status.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        if field("Status") != Some("install ok installed") {
            continue;
        }
        let (source, source_version) = match field("Source") {
            Some(s) => match s.split_once(" (") {
                Some((n, v)) => (n, Some(v.trim_end_matches(')').to_owned())),
                None => (s, None),
            },
            None => (name, None),
        };
        let source_version = source_version.unwrap_or_else(|| strip_binnmu(version).to_owned());
        out.push(Package {
            ecosystem: Ecosystem::Debian {
                release: release.to_owned(),
            },
            name: name.to_owned(),
            version: version.to_owned(),
            source_name: Some(source.to_owned()),
            source_version: (source_version != version).then_some(source_version),
            purl: format!("pkg:deb/debian/{name}@{version}?distro=debian-{release}"),
            layer: None,
            path: "var/lib/dpkg/status".to_owned(),
        });
    }
    out
}

/// `1.47.0-2+b2` → `1.47.0-2`: a binNMU rebuilds the same source.
fn strip_binnmu(version: &str) -> &str {
    match version.rsplit_once("+b") {
        Some((v, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => v,
        _ => version,
    }
}

/// Test-only `*.dist-info/METADATA` reader: `Name:` and `Version:`.
fn python_packages(root: &Path) -> Vec<Package> {
    let site = "usr/local/lib/python3.11/site-packages";
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(root.join(site)) else {
        return out;
    };
    let mut dirs: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dist-info"))
        .collect();
    dirs.sort();
    for dir in dirs {
        let path = format!("{site}/{dir}/METADATA");
        let text = fs::read_to_string(root.join(&path)).unwrap();
        let header = |name: &str| {
            text.lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
                .unwrap()
                .to_owned()
        };
        let (name, version) = (header("Name"), header("Version"));
        out.push(Package {
            ecosystem: Ecosystem::PyPI,
            purl: format!("pkg:pypi/{}@{version}", name.to_lowercase()),
            name,
            version,
            source_name: None,
            source_version: None,
            layer: None,
            path,
        });
    }
    out
}

fn scan(root: &Path, index: &Index) -> (Vec<Package>, Matches) {
    let release = debian_release(root);
    let mut packages = dpkg_packages(root, &release);
    packages.extend(python_packages(root));
    let matches = match_packages(index, &packages);
    (packages, matches)
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
    assert_eq!(debian_release(&root), "11");
    assert_eq!(packages.len(), 96);
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
