//! SPDX 2.3 and CycloneDX 1.5 documents of a real inventory (vulndata's
//! bookworm minbase root filesystem as a layer, plus one package of each
//! other kind), validated by each ecosystem's own validator from PyPI:
//! `pyspdxtools` (spdx-tools) and cyclonedx-python-lib's strict JSON
//! schema validator, from the virtualenv at `BERTH_SBOM_VENV` (default
//! /opt/berth-test-deps/sbom-venv, which scripts/install-test-deps makes).
//! Without that virtualenv the validation is skipped, saying so; with it, a
//! document it refuses fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_scan::inventory::Package;
use berth_scan::layers::{merge, walk_layer, Limits};
use berth_scan::osv::Ecosystem;
use berth_scan::packages::inventory;
use berth_scan::sbom::{cyclonedx, spdx, ImageInfo};

const DIGEST: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
const LAYER: &str = "sha256:b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

fn packages() -> Vec<Package> {
    let root = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vulndata/fixtures/debian-bookworm-minbase"
    ));
    let mut packages = if root.is_dir() {
        let layers =
            [walk_layer(&common::rootfs_layer(root)[..], LAYER, &Limits::default()).unwrap()];
        inventory(&merge(&layers)).packages
    } else {
        eprintln!("shared/vulndata is absent: the SBOMs hold the hand-made packages only");
        Vec::new()
    };
    let extra = |ecosystem: Ecosystem, name: &str, version: &str, purl: &str| Package {
        ecosystem,
        name: name.into(),
        version: version.into(),
        source_name: None,
        source_version: None,
        purl: purl.into(),
        layer: Some(LAYER.into()),
        path: "usr/local/bin/app".into(),
    };
    packages.extend([
        extra(
            Ecosystem::Go,
            "stdlib",
            "go1.19.8",
            "pkg:golang/stdlib@go1.19.8",
        ),
        extra(
            Ecosystem::Npm,
            "@types/node",
            "20.1.0",
            "pkg:npm/%40types/node@20.1.0",
        ),
        extra(
            Ecosystem::Maven,
            "org.apache.logging.log4j:log4j-core",
            "2.14.1",
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
        ),
        extra(
            Ecosystem::Rpm {
                distro: "Rocky Linux".into(),
                release: "9".into(),
            },
            "openssl-libs",
            "1:3.0.7-24.el9",
            "pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?arch=x86_64&distro=rocky-9.3&epoch=1",
        ),
        Package {
            layer: None,
            ..extra(Ecosystem::CratesIo, "itoa", "1.0.9", "pkg:cargo/itoa@1.0.9")
        },
    ]);
    packages
}

fn info() -> ImageInfo {
    ImageInfo {
        repository: "library/debian".into(),
        digest: DIGEST.into(),
        created: "2026-11-27T10:00:00Z".into(),
    }
}

fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("BERTH_SBOM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/berth-test-deps/sbom-venv"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP SBOM validation: no virtualenv at {} (set BERTH_SBOM_VENV, or run scripts/install-test-deps)",
            dir.display()
        );
        None
    }
}

fn write(name: &str, doc: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("berth-scan-{}-{name}", std::process::id()));
    std::fs::write(&path, doc).unwrap();
    path
}

fn validated(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("invalid"),
        "{what} refused the document:\n{text}"
    );
}

#[test]
fn spdx_2_3_validates_with_spdx_tools() {
    let packages = packages();
    let doc = spdx(&info(), &packages).unwrap();
    assert_eq!(doc, spdx(&info(), &packages).unwrap(), "deterministic");
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        v["documentNamespace"],
        format!("https://berth.invalid/spdx/library/debian/{DIGEST}")
    );
    let pkgs = v["packages"].as_array().unwrap();
    assert_eq!(pkgs.len(), packages.len() + 1);
    let bsdutils = pkgs.iter().find(|p| p["name"] == "bsdutils");
    if let Some(b) = bsdutils {
        assert_eq!(b["versionInfo"], "1:2.38.1-5+deb12u3");
        assert_eq!(
            b["sourceInfo"],
            format!("found in layer {LAYER} at var/lib/dpkg/status")
        );
        assert_eq!(
            b["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=util-linux%402.38.1-5%2Bdeb12u3"
        );
    }
    assert_eq!(
        v["relationships"].as_array().unwrap().len(),
        packages.len() + 1
    );

    let Some(venv) = venv() else { return };
    let file = write("sbom.spdx.json", &doc);
    validated(
        Command::new(venv.join("bin/pyspdxtools"))
            .arg("-i")
            .arg(&file),
        "pyspdxtools",
    );
    // The validator is not a rubber stamp: a bad package URL is refused.
    let mut broken = v.clone();
    broken["packages"][1]["externalRefs"][0]["referenceLocator"] = "not a purl".into();
    let file2 = write("broken.spdx.json", &broken.to_string());
    let out = Command::new(venv.join("bin/pyspdxtools"))
        .arg("-i")
        .arg(&file2)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(file2);
}

const CDX_VALIDATE: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())
if error is not None:
    print("invalid:", error)
    sys.exit(1)
print("valid")
"#;

#[test]
fn cyclonedx_1_5_validates_with_cyclonedx_python_lib() {
    let packages = packages();
    let doc = cyclonedx(&info(), &packages).unwrap();
    assert_eq!(doc, cyclonedx(&info(), &packages).unwrap(), "deterministic");
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        v["serialNumber"],
        "urn:uuid:6c3c624b-58db-4cd3-80dd-82b4c53f0419"
    );
    let components = v["components"].as_array().unwrap();
    assert_eq!(components.len(), packages.len());
    let first = &components[0];
    assert_eq!(first["properties"][1]["name"], "berth:layer");
    assert_eq!(first["properties"][1]["value"], LAYER);
    assert_eq!(first["purl"], packages[0].purl.as_str());
    assert_eq!(
        v["dependencies"][0]["dependsOn"].as_array().unwrap().len(),
        packages.len()
    );

    let Some(venv) = venv() else { return };
    let file = write("sbom.cdx.json", &doc);
    validated(
        Command::new(venv.join("bin/python"))
            .arg("-c")
            .arg(CDX_VALIDATE)
            .arg(&file),
        "cyclonedx-python-lib",
    );
    // The validator is not a rubber stamp: a wrong field is refused.
    let mut broken = v.clone();
    broken["components"][0]["type"] = "not-a-type".into();
    let file2 = write("broken.cdx.json", &broken.to_string());
    let out = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(CDX_VALIDATE)
        .arg(&file2)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(file2);
}

/// What matching and the report use of a package, with the spellings the
/// purl leaves to its type (a PyPI name is normalised; a source package
/// named as its binary is said once).
fn identity(p: &Package) -> (String, String, String, String, Option<String>, String) {
    let name = match p.ecosystem {
        Ecosystem::PyPI => berth_scan::version::pep440::normalize_name(&p.name),
        _ => p.name.clone(),
    };
    let source = p.source_name.clone().unwrap_or_else(|| name.clone());
    (
        p.ecosystem.to_string(),
        name,
        p.version.clone(),
        source,
        p.source_version.clone(),
        format!("{} {:?} {}", p.purl, p.layer, p.path),
    )
}

/// Berth's own documents read back as a scan's input give the packages
/// they were written from: ecosystem and release, name, version, source
/// package, purl, layer and path.
#[test]
fn both_documents_read_back_as_the_same_packages() {
    let packages = packages();
    let mut want: Vec<_> = packages.iter().map(identity).collect();
    want.sort();
    for (doc, format) in [
        (spdx(&info(), &packages).unwrap(), "SPDX-2.3"),
        (cyclonedx(&info(), &packages).unwrap(), "CycloneDX 1.5"),
    ] {
        let input = berth_scan::sbom::input::parse(doc.as_bytes()).unwrap();
        assert_eq!(input.format, format);
        assert_eq!(input.skipped, 0, "{format}");
        let mut got: Vec<_> = input.packages.iter().map(identity).collect();
        got.sort();
        assert_eq!(got, want, "{format}");
    }
}
