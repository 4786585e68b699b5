//! The scanner on real images: a Debian bookworm root filesystem made with
//! debootstrap, old PyPI releases installed with pip, a Go binary built
//! with Debian's Go, a Rust binary built with `cargo auditable`, npm
//! packages, a jar from a Debian package, and a layer of whiteouts and an
//! overwrite (scripts/build-test-images makes them once and caches them).
//! Pushed with real clients (skopeo from an OCI layout; buildah from
//! scratch, its layer zstd-compressed), scanned on push against
//! shared/vulndata's real OSV records; the packages, findings, composition
//! and both SBOMs (validated with spdx-tools and cyclonedx-python-lib) are
//! checked against what the images hold.
//!
//! Skipped, with a message, when the images cannot be built here (no
//! debootstrap, no network, not root) or shared/vulndata is missing.
//! `BERTH_TEST_IMAGES_DIR` sets where the images are cached (default
//! `$CARGO_TARGET_TMPDIR/test-images`).

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Cli;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// shared/vulndata: beside the work tree (`../shared`), or `BERTH_SHARED_DIR`.
fn vulndata() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BERTH_SHARED_DIR").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared"
        ))),
        Some(PathBuf::from("/work/shared")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .map(|d| d.join("vulndata"))
        .find(|d| d.join("go/osv").is_dir());
    if found.is_none() {
        eprintln!("SKIPPED: shared/vulndata not found (set BERTH_SHARED_DIR)");
    }
    found
}

/// The images' directory (scripts/build-test-images's output), built now
/// unless cached; `None` (skip) when they cannot be built on this machine.
fn images() -> Option<PathBuf> {
    let root = std::env::var_os("BERTH_TEST_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-images"));
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/build-test-images"
    ))
    .arg(&root)
    .stderr(std::process::Stdio::inherit())
    .output()
    .expect("run scripts/build-test-images");
    match out.status.code() {
        Some(0) => Some(PathBuf::from(
            String::from_utf8(out.stdout).unwrap().trim_end(),
        )),
        Some(77) => {
            eprintln!(
                "SKIPPED: scripts/build-test-images cannot build the images here (see above)"
            );
            None
        }
        _ => panic!("scripts/build-test-images failed: {:?}", out.status),
    }
}

/// `key=value` lines the build wrote about what it built.
fn facts(dir: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join("facts"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn sbom_venv() -> Option<PathBuf> {
    let dir = std::env::var_os("BERTH_SBOM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/berth-test-deps/sbom-venv"));
    if dir.join("bin/pyspdxtools").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no SBOM validators at {} (run scripts/install-test-deps)",
            dir.display()
        );
        None
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A temporary directory removed on drop.
struct Tmp(PathBuf);
impl Tmp {
    fn new(what: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("berth-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command that must succeed; its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The scan of `repo@digest` once it has ended.
async fn scanned(server: &common::Server, repo: &str, digest: &str) -> Value {
    let (project, name) = repo.split_once('/').unwrap();
    let path = format!(
        "/api/v1/projects/{project}/repositories/{}/artifacts/{digest}/vulnerabilities",
        name.replace('/', "%2F")
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r = server.admin_call(Method::GET, &path, json!(null)).await;
        if r.status() == StatusCode::OK {
            let v: Value = r.json().await.unwrap();
            if !["queued", "running"].contains(&v["status"].as_str().unwrap()) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the scan of {repo}@{digest} never ended"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A finding as the tests compare them: advisory, package, installed
/// version, evidence path, layer.
type Finding = (String, String, String, String, String);

/// The report's findings; each once.
fn findings(report: &Value) -> BTreeSet<Finding> {
    let all: Vec<Finding> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| {
                f[k].as_str()
                    .unwrap_or_else(|| panic!("{k}: {f}"))
                    .to_owned()
            };
            (
                s("id"),
                s("package"),
                s("installed_version"),
                s("path"),
                s("layer"),
            )
        })
        .collect();
    let set: BTreeSet<Finding> = all.iter().cloned().collect();
    assert_eq!(set.len(), all.len(), "a finding reported twice: {all:?}");
    set
}

/// The expected findings of one package, from its advisory ids.
fn expect(
    ids: &BTreeSet<String>,
    package: &str,
    version: &str,
    path: &str,
    layer: &str,
) -> Vec<Finding> {
    ids.iter()
        .map(|id| {
            (
                id.clone(),
                package.to_owned(),
                version.to_owned(),
                path.to_owned(),
                layer.to_owned(),
            )
        })
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// `x.y.z[-pre]` ordered as SemVer (the Go vulnerability database's
/// ranges): a pre-release sorts before its release.
fn semver(v: &str) -> (Vec<u64>, bool, String) {
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let nums = core.split('.').map(|n| n.parse().unwrap()).collect();
    (nums, pre.is_none(), pre.unwrap_or("").to_owned())
}

/// The Go advisories of shared/vulndata whose ranges for `module` hold
/// `version` (`go1.19.8` for `stdlib`, `v0.7.0`): the oracle for the Go
/// findings, read from the data with the OSV range rules (introduced ≤ v <
/// fixed), not the scanner.
fn go_advisories(data: &Path, module: &str, version: &str) -> BTreeSet<String> {
    let v = semver(version.trim_start_matches("go").trim_start_matches('v'));
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(data.join("go/osv")).unwrap() {
        let record: Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        if record.get("withdrawn").is_some_and(|w| !w.is_null()) {
            continue;
        }
        let hit = record["affected"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["package"]["name"] == module)
            .flat_map(|a| a["ranges"].as_array().cloned().unwrap_or_default())
            .any(|range| {
                assert_eq!(range["type"], "SEMVER");
                let mut affected = false;
                for e in range["events"].as_array().unwrap() {
                    if let Some(i) = e["introduced"].as_str() {
                        let i = if i == "0" { "0.0.0" } else { i };
                        if v >= semver(i) {
                            affected = true;
                        }
                    } else if let Some(f) = e["fixed"].as_str() {
                        if v >= semver(f) {
                            affected = false;
                        }
                    }
                }
                affected
            });
        if hit {
            ids.insert(record["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// The regular files of a layer tar (whiteouts are not files): path
/// (without `./`) → size.
fn tar_files(tar: &Path) -> BTreeMap<String, u64> {
    run(Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(tar))
    .lines()
    .filter(|l| l.starts_with('-') && !l.contains("/.wh."))
    .map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let path = f[5..].join(" ");
        (
            path.trim_start_matches("./").to_owned(),
            f[2].parse().unwrap(),
        )
    })
    .collect()
}

/// The installed packages of a dpkg status file: name → version.
fn dpkg_installed(status: &str) -> BTreeMap<String, String> {
    status
        .split("\n\n")
        .filter(|s| s.contains("\nStatus: install ok installed"))
        .map(|s| {
            let field = |k: &str| {
                s.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap()
                    .trim()
                    .to_owned()
            };
            (field("Package:"), field("Version:"))
        })
        .collect()
}

/// A CycloneDX component's property.
fn property<'a>(c: &'a Value, name: &str) -> &'a str {
    c["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("{name} missing from {c}"))
}

/// One package as the SBOMs list it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    ecosystem: String,
    name: String,
    version: String,
    purl: String,
    layer: String,
    path: String,
}

/// The image's SBOMs from the CLI, validated by the ecosystems' own
/// validators; the packages they list (the same in both).
fn sboms(cli: &Cli, image: &str, tmp: &Path) -> Vec<Listed> {
    let spdx_text = cli.ok(&["sbom", image, "--format", "spdx"]);
    let cdx_text = cli.ok(&["sbom", image, "--format", "cyclonedx"]);
    let spdx: Value = serde_json::from_str(&spdx_text).unwrap();
    let cdx: Value = serde_json::from_str(&cdx_text).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    assert_eq!(cdx["specVersion"], "1.5");
    let listed: Vec<Listed> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Listed {
            ecosystem: property(c, "berth:ecosystem").to_owned(),
            name: c["name"].as_str().unwrap().to_owned(),
            version: c["version"].as_str().unwrap().to_owned(),
            purl: c["purl"].as_str().unwrap().to_owned(),
            layer: property(c, "berth:layer").to_owned(),
            path: property(c, "berth:path").to_owned(),
        })
        .collect();
    // SPDX says the same of every package: its purl, where it was found.
    let spdx_packages: Vec<(String, String, String, String)> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Image")
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["versionInfo"].as_str().unwrap().to_owned(),
                p["externalRefs"][0]["referenceLocator"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                p["sourceInfo"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let from_cdx: Vec<(String, String, String, String)> = listed
        .iter()
        .map(|l| {
            (
                l.name.clone(),
                l.version.clone(),
                l.purl.clone(),
                format!("found in layer {} at {}", l.layer, l.path),
            )
        })
        .collect();
    assert_eq!(spdx_packages, from_cdx, "SPDX and CycloneDX list the same");

    if let Some(venv) = sbom_venv() {
        let spdx_file = tmp.join("sbom.spdx.json");
        std::fs::write(&spdx_file, &spdx_text).unwrap();
        let out = run(Command::new(venv.join("bin/pyspdxtools"))
            .arg("-i")
            .arg(&spdx_file));
        assert!(!out.contains("invalid"), "pyspdxtools: {out}");
        let cdx_file = tmp.join("sbom.cdx.json");
        std::fs::write(&cdx_file, &cdx_text).unwrap();
        let out = run(Command::new(venv.join("bin/python"))
            .arg("-c")
            .arg(CDX_VALIDATE)
            .arg(&cdx_file));
        assert_eq!(out.trim(), "valid");
    }
    listed
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

fn of<'a>(listed: &'a [Listed], ecosystem: &str) -> Vec<&'a Listed> {
    listed.iter().filter(|l| l.ecosystem == ecosystem).collect()
}

fn listed(
    ecosystem: &str,
    name: &str,
    version: &str,
    purl: &str,
    layer: &str,
    path: &str,
) -> Listed {
    Listed {
        ecosystem: ecosystem.into(),
        name: name.into(),
        version: version.into(),
        purl: purl.into(),
        layer: layer.into(),
        path: path.into(),
    }
}

/// One entry of a layer tar: its type (`-` file, `d`, `l`, `h`), path
/// without `./`, and size.
fn tar_entries(tar: &Path) -> Vec<(char, String, u64)> {
    run(Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(tar))
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let path = f[5..].join(" ");
        let path = path.split(" -> ").next().unwrap();
        let path = path.split(" link to ").next().unwrap();
        let kind = l.chars().next().unwrap();
        (
            kind,
            path.trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned(),
            // A device's field is its major,minor.
            if kind == '-' {
                f[2].parse().unwrap()
            } else {
                0
            },
        )
    })
    .collect()
}

/// The files the layers lose, by the OCI rules applied to the tars
/// themselves: each layer's whiteouts and opaque directories delete what
/// lower layers put there, then its entries replace what they overwrite.
/// The wasted files (as the composition report lists them, unsorted) and
/// the bytes lost per layer.
fn expected_waste(dir: &Path, layer: &HashMap<&str, String>) -> (Vec<Value>, HashMap<String, u64>) {
    let mut visible: BTreeMap<String, (&str, u64)> = BTreeMap::new();
    let mut waste = Vec::new();
    let mut lost: HashMap<String, u64> = HashMap::new();
    let mut lose = |path: &str, from: (&str, u64), by: &str, deleted: bool| {
        *lost.entry(from.0.to_owned()).or_default() += from.1;
        waste.push(json!({"path": path, "size": from.1, "layer": layer[from.0],
            "by": layer[by], "deleted": deleted}));
    };
    for name in NAMES {
        let entries = tar_entries(&dir.join(format!("layers/{name}.tar")));
        for (_, path, _) in &entries {
            let (parent, file) = path.rsplit_once('/').unwrap_or(("", path));
            let Some(hidden) = file.strip_prefix(".wh.") else {
                continue;
            };
            let (target, itself) = if hidden == ".wh..opq" {
                (parent.to_owned(), false)
            } else if parent.is_empty() {
                (hidden.to_owned(), true)
            } else {
                (format!("{parent}/{hidden}"), true)
            };
            let under = format!("{target}/");
            let gone: Vec<String> = visible
                .keys()
                .filter(|p| (itself && **p == target) || p.starts_with(&under))
                .cloned()
                .collect();
            for p in gone {
                let from = visible.remove(&p).unwrap();
                lose(&p, from, name, true);
            }
        }
        for (kind, path, size) in entries {
            if kind == 'd' || path.rsplit('/').next().unwrap().starts_with(".wh.") {
                continue;
            }
            if let Some(from) = visible.remove(&path) {
                lose(&path, from, name, false);
            }
            if kind == '-' {
                visible.insert(path, (name, size));
            }
        }
    }
    (waste, lost)
}

const SITE: &str = "usr/local/lib/python3.11/site-packages";
const NAMES: [&str; 8] = [
    "base", "python", "go", "rust", "npm", "jar", "dpkg", "cleanup",
];

/// What each test needs: the data, the built images, a server with the
/// database imported, the CLI logged in to it.
struct Setup {
    data: PathBuf,
    dir: PathBuf,
    facts: HashMap<String, String>,
    tmp: Tmp,
    server: common::Server,
    cli: Cli,
}

async fn setup(tool: &str) -> Option<Setup> {
    let data = vulndata()?;
    let dir = images()?;
    assert!(
        have(tool),
        "{tool} is missing: run scripts/install-test-deps (as root)"
    );
    let facts = facts(&dir);
    let tmp = Tmp::new("images");
    let server = common::Server::start_secured();
    let cli = Cli::login(&server);
    server
        .admin(Method::POST, "/api/v1/projects", json!({"name": "team"}))
        .await;
    let osv = tmp.0.join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    for ecosystem in ["alpine", "debian", "go", "pypi", "rustsec"] {
        std::os::unix::fs::symlink(data.join(ecosystem).join("osv"), osv.join(ecosystem)).unwrap();
    }
    let imported = cli.json(&["vulndb", "import", osv.to_str().unwrap()]);
    assert!(imported["records"].as_i64().unwrap() > 15_000, "{imported}");
    Some(Setup {
        data,
        dir,
        facts,
        tmp,
        server,
        cli,
    })
}

/// The Maven coordinates and version of the Debian jar: Debian's
/// `3.12.0-2` is Maven's `3.12.0`.
fn jar(facts: &HashMap<String, String>) -> (String, String, String) {
    let version = facts["jar_deb_version"].split('-').next().unwrap();
    (
        "org.apache.commons:commons-lang3".into(),
        version.into(),
        format!("pkg:maven/org.apache.commons/commons-lang3@{version}"),
    )
}

/// The evidence path of the jar's package, inside the jar.
fn jar_path(facts: &HashMap<String, String>) -> String {
    format!(
        "{}!/META-INF/maven/org.apache.commons/commons-lang3/pom.properties",
        facts["jar_file"]
    )
}

#[tokio::test]
async fn a_debian_image_pushed_with_skopeo_is_scanned() {
    let Some(Setup {
        data,
        dir,
        facts,
        tmp,
        server,
        cli,
    }) = setup("skopeo").await
    else {
        return;
    };

    // skopeo copies the OCI layout as it is: the same manifest digest.
    let creds = format!("admin:{}", common::ADMIN_PASSWORD);
    let digest_file = tmp.0.join("app.digest");
    run(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .args(["--dest-creds", &creds, "--digestfile"])
        .arg(&digest_file)
        .arg(format!("oci:{}:app", dir.join("oci").display()))
        .arg(format!("docker://{}/team/app:v1", server.host())));
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(digest, facts["manifest"]);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            dir.join("oci/blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    let layer: HashMap<&str, String> = NAMES
        .iter()
        .zip(manifest["layers"].as_array().unwrap())
        .map(|(n, l)| (*n, l["digest"].as_str().unwrap().to_owned()))
        .collect();

    let report = scanned(&server, "team/app", &digest).await;
    assert_eq!(report["status"], "finished", "{report}");
    assert_eq!(report["problems"], json!([]), "{report}");
    let debian_version = &facts["debian_version"];
    assert_eq!(
        report["os"],
        format!(
            "Debian GNU/Linux {} (bookworm)",
            debian_version.split('.').next().unwrap()
        )
    );

    // Findings: the PyPI packages' PYSEC advisories (not Jinja2's: the
    // cleanup layer deleted it), the Go toolchain's and x/net's, smallvec's
    // RustSec one; no Debian advisory (the data's bookworm DSAs are all
    // fixed in today's bookworm), nothing for npm or Maven (no such data).
    let go = &facts["go_version"];
    let xnet = &facts["xnet_version"];
    let go_ids = go_advisories(&data, "stdlib", go);
    let xnet_ids = go_advisories(&data, "golang.org/x/net", xnet);
    assert!(go_ids.len() > 10, "{go}: {go_ids:?}");
    assert!(!xnet_ids.is_empty(), "{xnet}");
    let mut want: BTreeSet<Finding> = BTreeSet::new();
    want.extend(expect(
        &set(&["PYSEC-2018-28", "PYSEC-2023-74"]),
        "requests",
        "2.19.0",
        &format!("{SITE}/requests-2.19.0.dist-info/METADATA"),
        &layer["python"],
    ));
    want.extend(expect(
        &set(&[
            "PYSEC-2019-132",
            "PYSEC-2019-133",
            "PYSEC-2020-148",
            "PYSEC-2021-108",
            "PYSEC-2023-192",
            "PYSEC-2023-207",
            "PYSEC-2023-212",
        ]),
        "urllib3",
        "1.24.1",
        &format!("{SITE}/urllib3-1.24.1.dist-info/METADATA"),
        &layer["python"],
    ));
    let hello = "usr/local/bin/hello";
    want.extend(expect(&go_ids, "stdlib", go, hello, &layer["go"]));
    want.extend(expect(
        &xnet_ids,
        "golang.org/x/net",
        xnet,
        hello,
        &layer["go"],
    ));
    want.extend(expect(
        &set(&["RUSTSEC-2021-0003"]),
        "smallvec",
        "1.6.0",
        "usr/local/bin/rusty",
        &layer["rust"],
    ));
    assert_eq!(findings(&report), want, "{report}");
    assert_eq!(report["summary"]["total"], want.len());
    // Debian's urllib3 1.26.12 carries Debian's fixes: PyPI's advisories
    // for 1.26.12 are not its.
    assert!(
        !report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["installed_version"] == "1.26.12"),
        "{report}"
    );
    let smallvec = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "RUSTSEC-2021-0003")
        .unwrap();
    assert_eq!(smallvec["fixed_version"], "1.6.1");

    // The packages, from the SBOMs (validated): every dpkg package of the
    // base layer's status file, the pip, Go, Rust, npm and Maven packages
    // each in the layer that added it, and no Jinja2.
    let listed_all = sboms(&cli, "team/app:v1", &tmp.0);
    // The base's packages stay the base's though dpkg -i rewrote the
    // status file; those it installed are the dpkg layer's.
    let base_installed = dpkg_installed(&run(Command::new("tar")
        .arg("-xOf")
        .arg(dir.join("layers/base.tar"))
        .arg("./var/lib/dpkg/status")));
    let installed = dpkg_installed(&run(Command::new("tar")
        .arg("-xOf")
        .arg(dir.join("layers/dpkg.tar"))
        .arg("./var/lib/dpkg/status")));
    assert!(base_installed.len() > 80, "{base_installed:?}");
    // libcommons-lang3-java and the poms it depends on, python3-urllib3
    // and python3-six.
    assert_eq!(installed.len(), base_installed.len() + 5);
    assert_eq!(
        installed["python3-urllib3"].split('-').next(),
        Some("1.26.12")
    );
    assert_eq!(installed["libcommons-lang3-java"], facts["jar_deb_version"]);
    let debian: BTreeMap<String, String> = of(&listed_all, "Debian:12")
        .iter()
        .map(|l| {
            let by = if base_installed.contains_key(&l.name) {
                "base"
            } else {
                "dpkg"
            };
            assert_eq!(l.layer, layer[by], "{l:?}");
            assert_eq!(l.path, "var/lib/dpkg/status", "{l:?}");
            assert!(
                l.purl.starts_with(&format!(
                    "pkg:deb/debian/{}@{}?arch=",
                    l.name.replace('+', "%2B"),
                    l.version.replace('+', "%2B")
                )) && debian_qualifiers(&l.purl, "12"),
                "{l:?}"
            );
            (l.name.clone(), l.version.clone())
        })
        .collect();
    assert_eq!(debian, installed);
    let lang3 = of(&listed_all, "Debian:12")
        .into_iter()
        .find(|l| l.name == "libcommons-lang3-java")
        .unwrap();
    assert_eq!(
        lang3.purl,
        format!(
            "pkg:deb/debian/libcommons-lang3-java@{}?arch=all&distro=debian-12",
            facts["jar_deb_version"].replace('+', "%2B")
        )
    );
    let bash = of(&listed_all, "Debian:12")
        .into_iter()
        .find(|l| l.name == "bash")
        .unwrap();
    // A binNMU (`+bN`) names its source version, as dpkg's source is bash.
    let version = &base_installed["bash"];
    let source = version
        .rsplit_once("+b")
        .filter(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()))
        .map_or(version.as_str(), |(v, _)| v);
    let upstream = if source == version {
        String::new()
    } else {
        format!("&upstream=bash%40{}", source.replace('+', "%2B"))
    };
    assert_eq!(
        bash.purl,
        format!(
            "pkg:deb/debian/bash@{}?arch=amd64&distro=debian-12{upstream}",
            version.replace('+', "%2B")
        )
    );
    let mut rest: Vec<Listed> = listed_all
        .iter()
        .filter(|l| l.ecosystem != "Debian:12")
        .cloned()
        .collect();
    rest.sort();
    let (jar_name, jar_version, jar_purl) = jar(&facts);
    let mut expected = vec![
        listed(
            "PyPI",
            "requests",
            "2.19.0",
            "pkg:pypi/requests@2.19.0",
            &layer["python"],
            &format!("{SITE}/requests-2.19.0.dist-info/METADATA"),
        ),
        listed(
            "PyPI",
            "urllib3",
            "1.24.1",
            "pkg:pypi/urllib3@1.24.1",
            &layer["python"],
            &format!("{SITE}/urllib3-1.24.1.dist-info/METADATA"),
        ),
        listed(
            "Go",
            "stdlib",
            go,
            &format!("pkg:golang/stdlib@{go}"),
            &layer["go"],
            "usr/local/bin/hello",
        ),
        // The main module, built from a directory: Go's `(devel)`.
        listed(
            "Go",
            "example.com/hello",
            "(devel)",
            "pkg:golang/example.com/hello@%28devel%29",
            &layer["go"],
            "usr/local/bin/hello",
        ),
        listed(
            "Go",
            "golang.org/x/net",
            xnet,
            &format!("pkg:golang/golang.org/x/net@{xnet}"),
            &layer["go"],
            "usr/local/bin/hello",
        ),
        listed(
            "crates.io",
            "smallvec",
            "1.6.0",
            "pkg:cargo/smallvec@1.6.0",
            &layer["rust"],
            "usr/local/bin/rusty",
        ),
        listed(
            "npm",
            "minimist",
            "1.2.0",
            "pkg:npm/minimist@1.2.0",
            &layer["npm"],
            "app/node_modules/minimist/package.json",
        ),
        // 2.0.0 is gone with its opaque directory.
        listed(
            "npm",
            "ms",
            "2.1.3",
            "pkg:npm/ms@2.1.3",
            &layer["cleanup"],
            "app/node_modules/ms/package.json",
        ),
        listed(
            "npm",
            "@types/ms",
            "0.7.31",
            "pkg:npm/%40types/ms@0.7.31",
            &layer["npm"],
            "app/node_modules/@types/ms/package.json",
        ),
        listed(
            "Maven",
            &jar_name,
            &jar_version,
            &jar_purl,
            &layer["jar"],
            &jar_path(&facts),
        ),
        // Not the jar dpkg installed in usr/share/java, nor Debian's
        // urllib3 and six in usr/lib/python3/dist-packages: they are
        // libcommons-lang3-java's, python3-urllib3's and python3-six's
        // (files of their .list).
    ];
    expected.sort();
    assert_eq!(rest, expected);
    assert_eq!(report["packages"], listed_all.len());

    // The composition: each layer's sizes as the blobs and tars have them;
    // wasted, the bytes of Jinja2 (deleted) and of the 1 MiB model
    // (overwritten) in the python layer, and those of ms 2.0.0 in the npm
    // layer (deleted by the opaque directory, even where 2.1.3 has a file
    // of the same name).
    let composition = server
        .admin(
            Method::GET,
            &format!("/api/v1/projects/team/repositories/app/artifacts/{digest}/composition"),
            json!(null),
        )
        .await;
    let layers = composition["layers"].as_array().unwrap();
    assert_eq!(layers.len(), NAMES.len());
    let files = |name: &str| tar_files(&dir.join(format!("layers/{name}.tar")));
    let (mut waste, wasted_in) = expected_waste(&dir, &layer);
    assert!(waste.len() > 30, "{waste:?}");
    for (path, deleted) in [
        (format!("{SITE}/jinja2/__init__.py"), true),
        ("app/model.bin".to_owned(), false),
        ("app/node_modules/ms/package.json".to_owned(), true),
        ("var/lib/dpkg/status".to_owned(), false),
    ] {
        assert!(
            waste
                .iter()
                .any(|w| w["path"] == path.as_str() && w["deleted"] == deleted),
            "{path}: {waste:?}"
        );
    }
    let total: u64 = wasted_in.values().sum();
    for ((name, l), m) in NAMES
        .iter()
        .zip(layers)
        .zip(manifest["layers"].as_array().unwrap())
    {
        let tar = dir.join(format!("layers/{name}.tar"));
        assert_eq!(l["digest"], m["digest"], "{name}");
        assert_eq!(l["compression"], "gzip", "{name}");
        assert_eq!(l["compressed_bytes"], m["size"], "{name}");
        assert_eq!(
            l["uncompressed_bytes"],
            std::fs::metadata(&tar).unwrap().len(),
            "{name}"
        );
        assert_eq!(l["files"], files(name).len(), "{name}: its regular files");
        assert_eq!(
            l["wasted_bytes"],
            wasted_in.get(*name).copied().unwrap_or(0),
            "{name}"
        );
    }
    assert_eq!(composition["wasted_bytes"], total);
    assert_eq!(composition["wasted_files"], waste.len());
    waste.sort_by(|a, b| {
        b["size"]
            .as_u64()
            .cmp(&a["size"].as_u64())
            .then_with(|| a["path"].as_str().cmp(&b["path"].as_str()))
    });
    waste.truncate(20);
    assert_eq!(waste[0]["path"], "app/model.bin");
    assert_eq!(waste[0]["size"], 1 << 20);
    assert_eq!(composition["largest_waste"], json!(waste));
}

/// buildah builds an image from scratch of the Go, Rust and jar layers'
/// files (no OS: no distribution packages), committed as one layer, and
/// pushes it zstd-compressed.
#[tokio::test]
async fn a_distroless_image_built_with_buildah_is_scanned_from_zstd() {
    let Some(Setup {
        data,
        dir,
        facts,
        tmp,
        server,
        cli,
    }) = setup("buildah").await
    else {
        return;
    };
    let bh = || {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(tmp.0.join("storage"))
            .arg("--runroot")
            .arg(tmp.0.join("run"))
            .args(["--storage-driver", "vfs"]);
        c
    };
    let ctr = run(bh().args(["from", "--quiet", "scratch"]))
        .trim()
        .to_owned();
    for name in ["go", "rust", "jar"] {
        run(bh()
            .args(["add", "--quiet", &ctr])
            .arg(dir.join(format!("layers/{name}.tar")))
            .arg("/"));
    }
    run(bh().args([
        "commit",
        "--quiet",
        "--format",
        "oci",
        "--rm",
        &ctr,
        "localhost/tools",
    ]));
    let digest_file = tmp.0.join("tools.digest");
    run(bh()
        .args([
            "push",
            "--quiet",
            "--tls-verify=false",
            "--compression-format",
            "zstd",
        ])
        .args(["--creds", &format!("admin:{}", common::ADMIN_PASSWORD)])
        .arg("--digestfile")
        .arg(&digest_file)
        .arg("localhost/tools")
        .arg(format!("docker://{}/team/tools:v1", server.host())));
    let digest = std::fs::read_to_string(&digest_file).unwrap();

    let report = scanned(&server, "team/tools", &digest).await;
    assert_eq!(report["status"], "finished", "{report}");
    assert_eq!(report["problems"], json!([]), "{report}");
    assert_eq!(report["os"], Value::Null);
    let go = &facts["go_version"];
    let xnet = &facts["xnet_version"];
    let composition = server
        .admin(
            Method::GET,
            &format!("/api/v1/projects/team/repositories/tools/artifacts/{digest}/composition"),
            json!(null),
        )
        .await;
    let layers = composition["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{composition}");
    let layer = layers[0]["digest"].as_str().unwrap().to_owned();
    let hello = "usr/local/bin/hello";
    let mut want: BTreeSet<Finding> = BTreeSet::new();
    want.extend(expect(
        &go_advisories(&data, "stdlib", go),
        "stdlib",
        go,
        hello,
        &layer,
    ));
    want.extend(expect(
        &go_advisories(&data, "golang.org/x/net", xnet),
        "golang.org/x/net",
        xnet,
        hello,
        &layer,
    ));
    want.extend(expect(
        &set(&["RUSTSEC-2021-0003"]),
        "smallvec",
        "1.6.0",
        "usr/local/bin/rusty",
        &layer,
    ));
    assert_eq!(findings(&report), want, "{report}");

    assert_eq!(layers[0]["compression"], "zstd");
    // The sizes: the manifest's for the blob, zstd's own for what it holds.
    let api = support::Api::with_basic(server.url(), "admin", common::ADMIN_PASSWORD);
    let pushed: Value = api
        .get("/v2/team/tools/manifests/v1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        pushed["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(pushed["layers"][0]["digest"], layer.as_str());
    assert_eq!(layers[0]["compressed_bytes"], pushed["layers"][0]["size"]);
    let blob = api
        .get(&format!("/v2/team/tools/blobs/{layer}"))
        .await
        .bytes()
        .await
        .unwrap();
    let blob_file = tmp.0.join("layer.tar.zst");
    std::fs::write(&blob_file, &blob).unwrap();
    let tar = run(Command::new("sh")
        .arg("-c")
        .arg("zstd -dc \"$1\" | wc -c")
        .arg("sh")
        .arg(&blob_file));
    assert_eq!(
        layers[0]["uncompressed_bytes"],
        tar.trim().parse::<u64>().unwrap()
    );
    let files: usize = ["go", "rust", "jar"]
        .iter()
        .map(|n| tar_files(&dir.join(format!("layers/{n}.tar"))).len())
        .sum();
    assert_eq!(layers[0]["files"], files);
    assert_eq!(composition["wasted_bytes"], 0);

    let mut listed_all = sboms(&cli, "team/tools:v1", &tmp.0);
    listed_all.sort();
    let (jar_name, jar_version, jar_purl) = jar(&facts);
    let mut expected = vec![
        listed(
            "Go",
            "stdlib",
            go,
            &format!("pkg:golang/stdlib@{go}"),
            &layer,
            "usr/local/bin/hello",
        ),
        listed(
            "Go",
            "example.com/hello",
            "(devel)",
            "pkg:golang/example.com/hello@%28devel%29",
            &layer,
            "usr/local/bin/hello",
        ),
        listed(
            "Go",
            "golang.org/x/net",
            xnet,
            &format!("pkg:golang/golang.org/x/net@{xnet}"),
            &layer,
            "usr/local/bin/hello",
        ),
        listed(
            "crates.io",
            "smallvec",
            "1.6.0",
            "pkg:cargo/smallvec@1.6.0",
            &layer,
            "usr/local/bin/rusty",
        ),
        listed(
            "Maven",
            &jar_name,
            &jar_version,
            &jar_purl,
            &layer,
            &jar_path(&facts),
        ),
    ];
    expected.sort();
    assert_eq!(listed_all, expected);
}

/// The source package and version of each installed package of a dpkg
/// status file: `Source: name (version)`, or the binary's own.
fn dpkg_sources(status: &str) -> Vec<(String, String, String, String)> {
    status
        .split("\n\n")
        .filter(|s| s.contains("\nStatus: install ok installed"))
        .map(|s| {
            let field = |k: &str| {
                s.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_owned())
            };
            let name = field("Package:").unwrap();
            let version = field("Version:").unwrap();
            let (source, source_version) = match field("Source:") {
                None => (name.clone(), version.clone()),
                Some(src) => match src.split_once(" (") {
                    Some((n, v)) => (n.to_owned(), v.trim_end_matches(')').to_owned()),
                    None => (src, version.clone()),
                },
            };
            (name, version, source, source_version)
        })
        .collect()
}

/// `dpkg --compare-versions a lt b`: Debian's own ordering.
fn dpkg_lt(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .unwrap()
        .success()
}

/// The Debian advisories of shared/vulndata that hold for the packages of
/// a `Debian:<release>` status file, decided with dpkg's own version
/// comparison on the source package and version: the oracle for the
/// scanner's Debian findings.
fn debian_advisories(
    data: &Path,
    release: &str,
    installed: &[(String, String, String, String)],
) -> BTreeSet<(String, String, String)> {
    let ecosystem = format!("Debian:{release}");
    let mut memo: HashMap<(String, String), bool> = HashMap::new();
    let mut lt = |a: &str, b: &str| {
        *memo
            .entry((a.to_owned(), b.to_owned()))
            .or_insert_with(|| dpkg_lt(a, b))
    };
    let mut hits = BTreeSet::new();
    for entry in std::fs::read_dir(data.join("debian/osv")).unwrap() {
        let record: Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        if record.get("withdrawn").is_some_and(|w| !w.is_null()) {
            continue;
        }
        for a in record["affected"].as_array().into_iter().flatten() {
            if a["package"]["ecosystem"] != ecosystem.as_str() {
                continue;
            }
            for (name, version, source, source_version) in installed {
                if a["package"]["name"] != source.as_str() {
                    continue;
                }
                let hit = a["ranges"].as_array().into_iter().flatten().any(|range| {
                    let mut affected = false;
                    for e in range["events"].as_array().unwrap() {
                        if let Some(i) = e["introduced"].as_str() {
                            if i == "0" || !lt(source_version, i) {
                                affected = true;
                            }
                        } else if let Some(f) = e["fixed"].as_str() {
                            if !lt(source_version, f) {
                                affected = false;
                            }
                        }
                    }
                    affected
                });
                if hit {
                    hits.insert((
                        record["id"].as_str().unwrap().to_owned(),
                        name.clone(),
                        version.clone(),
                    ));
                }
            }
        }
    }
    hits
}

/// A bullseye root filesystem (11.11, the last point release): its
/// packages are older than the LTS advisories of 2024 and 2025 in the
/// data, so it has real Debian findings, matched on the source package.
#[tokio::test]
async fn a_bullseye_image_gets_its_debian_advisories() {
    let Some(Setup {
        data,
        dir,
        facts,
        tmp,
        server,
        cli,
    }) = setup("skopeo").await
    else {
        return;
    };
    let creds = format!("admin:{}", common::ADMIN_PASSWORD);
    let digest_file = tmp.0.join("bullseye.digest");
    run(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .args(["--dest-creds", &creds, "--digestfile"])
        .arg(&digest_file)
        .arg(format!("oci:{}:bullseye", dir.join("oci").display()))
        .arg(format!("docker://{}/team/bullseye:v1", server.host())));
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(digest, facts["bullseye_manifest"]);
    let report = scanned(&server, "team/bullseye", &digest).await;
    assert_eq!(report["status"], "finished", "{report}");
    assert_eq!(report["problems"], json!([]), "{report}");
    assert_eq!(report["os"], "Debian GNU/Linux 11 (bullseye)");

    let status = run(Command::new("tar")
        .arg("-xOf")
        .arg(dir.join("layers/bullseye.tar"))
        .arg("./var/lib/dpkg/status"));
    let installed = dpkg_sources(&status);
    assert!(installed.len() > 80, "{installed:?}");
    let want = debian_advisories(&data, "11", &installed);
    // What the data's README says of 11.11: gnutls28's and perl's LTS
    // advisories apply.
    for (id, package) in [("DLA-4063-1", "libgnutls30"), ("DLA-3926-1", "perl-base")] {
        assert!(
            want.iter().any(|(i, p, _)| i == id && p == package),
            "{id} {package}: {want:?}"
        );
    }
    let layer = server
        .admin(
            Method::GET,
            &format!("/api/v1/projects/team/repositories/bullseye/artifacts/{digest}/composition"),
            json!(null),
        )
        .await["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let want: BTreeSet<Finding> = want
        .into_iter()
        .map(|(id, package, version)| {
            (
                id,
                package,
                version,
                "var/lib/dpkg/status".into(),
                layer.clone(),
            )
        })
        .collect();
    assert_eq!(findings(&report), want, "{report}");
    eprintln!(
        "bullseye {}: {} Debian findings",
        facts["bullseye_version"],
        want.len()
    );

    let listed_all = sboms(&cli, "team/bullseye:v1", &tmp.0);
    let debian: BTreeMap<String, String> = of(&listed_all, "Debian:11")
        .iter()
        .map(|l| {
            assert!(debian_qualifiers(&l.purl, "11"), "{l:?}");
            (l.name.clone(), l.version.clone())
        })
        .collect();
    assert_eq!(debian.len(), listed_all.len());
    let installed: BTreeMap<String, String> =
        installed.into_iter().map(|(n, v, _, _)| (n, v)).collect();
    assert_eq!(debian, installed);
    assert_eq!(facts["bullseye_version"].split('.').next(), Some("11"));
}

/// A dpkg purl's qualifiers after `arch`: the release, then the source
/// package when it is not the binary's name and version (`upstream=`).
fn debian_qualifiers(purl: &str, release: &str) -> bool {
    let distro = format!("&distro=debian-{release}");
    purl.ends_with(&distro) || purl.contains(&format!("{distro}&upstream="))
}
