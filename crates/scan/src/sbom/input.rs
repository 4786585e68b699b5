//! SBOMs read as a scan's input: the packages a build tool's SBOM lists,
//! for images whose layers hold no package database a parser reads
//! (distroless, scratch, a static binary).
//!
//! Read: SPDX 2.2 and 2.3 JSON (each package's `purl` external reference)
//! and CycloneDX 1.2 to 1.6 JSON (each component's `purl`, nested
//! components included). A package is known by its package URL alone: its
//! type gives the ecosystem, the `distro` qualifier (or the document's
//! operating-system component) the release of an OS package, the
//! `upstream` qualifier the source package Debian and Alpine advisories
//! name. What the common generators add is read where it says more:
//! Berth's own `berth:layer`/`berth:path` properties and SPDX
//! `sourceInfo`, Syft's `syft:location:0:path`, Trivy's
//! `aquasecurity:trivy:*` source and file properties. Entries without a
//! purl, and the image itself, are not packages. Only the fields read are
//! deserialised, so a large document costs about its size once.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::inventory::Package;
use crate::osv::Ecosystem;
use crate::packages::{ecosystem, strip_binnmu, Kind, OsRelease};
use crate::purl::Purl;

/// The largest SBOM read.
pub const MAX_BYTES: usize = 128 << 20;

/// What an SBOM said.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// `SPDX-2.3`, `CycloneDX 1.5`.
    pub format: String,
    /// The operating system the document names, if it names one.
    pub os: Option<OsRelease>,
    pub packages: Vec<Package>,
    /// Entries that are not packages Berth can place: no purl, a purl
    /// that does not parse, no version.
    pub skipped: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("the SBOM is {0} bytes, over the {MAX_BYTES} read")]
    TooLarge(usize),
    #[error("the SBOM is not JSON: {0}")]
    NotJson(String),
    #[error("not an SPDX 2.2/2.3 or CycloneDX 1.2-1.6 JSON document ({0})")]
    Unsupported(String),
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "spdxVersion")]
    spdx_version: Option<String>,
    #[serde(rename = "bomFormat")]
    bom_format: Option<String>,
    #[serde(rename = "specVersion")]
    spec_version: Option<String>,
}

#[derive(Deserialize)]
struct Spdx {
    #[serde(default)]
    packages: Vec<SpdxPackage>,
}

#[derive(Deserialize)]
struct SpdxPackage {
    #[serde(default)]
    name: String,
    #[serde(rename = "versionInfo")]
    version_info: Option<String>,
    #[serde(rename = "externalRefs", default)]
    external_refs: Vec<SpdxRef>,
    #[serde(rename = "sourceInfo")]
    source_info: Option<String>,
    #[serde(rename = "primaryPackagePurpose")]
    purpose: Option<String>,
}

#[derive(Deserialize)]
struct SpdxRef {
    #[serde(rename = "referenceType", default)]
    reference_type: String,
    #[serde(rename = "referenceLocator", default)]
    locator: String,
}

#[derive(Deserialize)]
struct Bom {
    metadata: Option<BomMetadata>,
    #[serde(default)]
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct BomMetadata {
    component: Option<Component>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    name: String,
    version: Option<String>,
    purl: Option<String>,
    #[serde(default)]
    properties: Vec<Property>,
    #[serde(default)]
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Property {
    #[serde(default)]
    name: String,
    value: Option<String>,
}

/// What a generator says about a package beside its purl.
#[derive(Default)]
struct Hints {
    version: Option<String>,
    layer: Option<String>,
    path: Option<String>,
    source_name: Option<String>,
    source_version: Option<String>,
}

/// Reads an SBOM.
pub fn parse(bytes: &[u8]) -> Result<Input, InputError> {
    if bytes.len() > MAX_BYTES {
        return Err(InputError::TooLarge(bytes.len()));
    }
    let json = |e: serde_json::Error| InputError::NotJson(e.to_string());
    let probe: Probe = serde_json::from_slice(bytes).map_err(json)?;
    let mut out = Reader::default();
    let format = match (&probe.spdx_version, &probe.bom_format, &probe.spec_version) {
        (Some(v), _, _) if v == "SPDX-2.2" || v == "SPDX-2.3" => {
            let doc: Spdx = serde_json::from_slice(bytes).map_err(json)?;
            out.spdx(doc);
            v.clone()
        }
        (None, Some(f), Some(v))
            if f == "CycloneDX" && ["1.2", "1.3", "1.4", "1.5", "1.6"].contains(&v.as_str()) =>
        {
            let doc: Bom = serde_json::from_slice(bytes).map_err(json)?;
            out.cyclonedx(doc);
            format!("CycloneDX {v}")
        }
        (Some(v), _, _) => return Err(InputError::Unsupported(format!("spdxVersion {v:?}"))),
        (None, Some(f), v) => {
            return Err(InputError::Unsupported(format!(
                "bomFormat {f:?}, specVersion {v:?}"
            )))
        }
        (None, None, _) => {
            return Err(InputError::Unsupported(
                "neither spdxVersion nor bomFormat".into(),
            ))
        }
    };
    Ok(out.finish(format))
}

/// The packages being gathered, before the document's OS is applied.
#[derive(Default)]
struct Reader {
    os: Option<OsRelease>,
    entries: Vec<(Purl, String, Hints)>,
    skipped: usize,
}

impl Reader {
    fn spdx(&mut self, doc: Spdx) {
        for p in doc.packages {
            match p.purpose.as_deref() {
                Some("CONTAINER") => continue,
                Some("OPERATING-SYSTEM") => {
                    self.os_named(&p.name, p.version_info.as_deref());
                    continue;
                }
                _ => {}
            }
            let purl = p
                .external_refs
                .iter()
                .find(|r| r.reference_type == "purl")
                .map(|r| r.locator.clone());
            let mut hints = Hints {
                version: p.version_info,
                ..Hints::default()
            };
            if let Some(info) = p.source_info.as_deref() {
                spdx_source_info(info, &mut hints);
            }
            self.entry(purl, hints);
        }
    }

    fn cyclonedx(&mut self, doc: Bom) {
        let mut stack = doc.components;
        if let Some(image) = doc.metadata.and_then(|m| m.component) {
            // The described component (the image) is not a package, but
            // what it nests is.
            stack.extend(image.components);
        }
        while let Some(c) = stack.pop() {
            stack.extend(c.components);
            match c.kind.as_str() {
                "operating-system" => {
                    self.os_named(&c.name, c.version.as_deref());
                    continue;
                }
                "container" => continue,
                _ => {}
            }
            let mut hints = Hints {
                version: c.version,
                ..Hints::default()
            };
            let mut epoch = None;
            for p in c.properties {
                let Some(value) = p.value.filter(|v| !v.is_empty()) else {
                    continue;
                };
                match p.name.as_str() {
                    "berth:layer" => hints.layer = Some(value),
                    "berth:path" | "syft:location:0:path" | "aquasecurity:trivy:FilePath" => {
                        hints.path.get_or_insert(value);
                    }
                    "aquasecurity:trivy:SrcName" => hints.source_name = Some(value),
                    "aquasecurity:trivy:SrcVersion" => hints.source_version = Some(value),
                    "aquasecurity:trivy:SrcEpoch" if value != "0" => epoch = Some(value),
                    _ => {}
                }
            }
            if let (Some(e), Some(v)) = (epoch, hints.source_version.as_mut()) {
                *v = format!("{e}:{v}");
            }
            self.entry(c.purl, hints);
        }
    }

    /// An operating-system entry: `debian` `12.4`, `alpine` `3.18.4`.
    fn os_named(&mut self, name: &str, version: Option<&str>) {
        if self.os.is_none() && !name.is_empty() {
            self.os = Some(OsRelease {
                id: name.to_ascii_lowercase(),
                version_id: version.map(str::to_owned),
                version_codename: None,
                pretty_name: None,
            });
        }
    }

    fn entry(&mut self, purl: Option<String>, hints: Hints) {
        match purl.as_deref().map(str::parse::<Purl>) {
            Some(Ok(p)) if !matches!(p.ty.as_str(), "oci" | "docker") => {
                self.entries.push((p, purl.unwrap_or_default(), hints))
            }
            Some(Ok(_)) => {} // an image, not a package
            _ => self.skipped += 1,
        }
    }

    fn finish(mut self, format: String) -> Input {
        let mut seen = BTreeSet::new();
        let mut packages = Vec::new();
        for (purl, text, hints) in std::mem::take(&mut self.entries) {
            match package(&purl, text, hints, self.os.as_ref()) {
                Some(p) => {
                    if seen.insert((p.purl.clone(), p.path.clone())) {
                        packages.push(p);
                    }
                }
                None => self.skipped += 1,
            }
        }
        Input {
            format,
            os: self.os,
            packages,
            skipped: self.skipped,
        }
    }
}

/// Berth's `found in layer L at P` / `found at P`, and Trivy's
/// `built package from: NAME VERSION`.
fn spdx_source_info(info: &str, hints: &mut Hints) {
    if let Some(rest) = info.strip_prefix("found in layer ") {
        if let Some((layer, path)) = rest.split_once(" at ") {
            hints.layer = Some(layer.to_owned());
            hints.path = Some(path.to_owned());
        }
    } else if let Some(path) = info.strip_prefix("found at ") {
        hints.path = Some(path.to_owned());
    } else if let Some(rest) = info.strip_prefix("built package from: ") {
        let mut words = rest.split_whitespace();
        hints.source_name = words.next().map(str::to_owned);
        hints.source_version = words.next().map(str::to_owned);
    }
}

/// The OS a purl's `distro` qualifier names (`debian-12.4`, `alpine-3.18.4`,
/// `rhel-9.2`, a bare `bookworm` or `3.18.4`), else the document's.
fn distro(purl: &Purl, id: &str, document: Option<&OsRelease>) -> Option<OsRelease> {
    let named = |version_id: Option<&str>, codename: Option<&str>| OsRelease {
        id: id.to_owned(),
        version_id: version_id.map(str::to_owned),
        version_codename: codename.map(str::to_owned),
        pretty_name: None,
    };
    match purl.qualifiers.get("distro") {
        Some(d) => {
            let d = d
                .strip_prefix(id)
                .map_or(d.as_str(), |v| v.trim_start_matches('-'));
            Some(if d.starts_with(|c: char| c.is_ascii_digit()) {
                named(Some(d), None)
            } else {
                named(None, Some(d))
            })
        }
        None => document.filter(|o| o.id == id).cloned(),
    }
}

fn package(purl: &Purl, text: String, hints: Hints, os: Option<&OsRelease>) -> Option<Package> {
    let version = purl.version.clone().or(hints.version)?;
    let joined = || match &purl.namespace {
        Some(ns) => format!("{ns}/{}", purl.name),
        None => purl.name.clone(),
    };
    let mut source_name = hints.source_name;
    let mut source_version = hints.source_version;
    if let Some(upstream) = purl.qualifiers.get("upstream") {
        let (n, v) = match upstream.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (upstream.as_str(), None),
        };
        source_name = Some(n.to_owned());
        source_version = v.map(str::to_owned).or(source_version);
    }
    let (ecosystem, name, version) = match purl.ty.as_str() {
        "deb" | "apk" | "rpm" => {
            let (kind, default_id) = match purl.ty.as_str() {
                "deb" => (Kind::Dpkg, "debian"),
                "apk" => (Kind::Apk, "alpine"),
                _ => (Kind::Rpm, "rhel"),
            };
            let id = match purl.namespace.as_deref() {
                Some("redhat") => "rhel".to_owned(),
                Some(ns) => ns.to_ascii_lowercase(),
                None => default_id.to_owned(),
            };
            let os = distro(purl, &id, os);
            let mut version = version;
            if kind == Kind::Rpm {
                if let Some(epoch) = purl.qualifiers.get("epoch").filter(|e| *e != "0") {
                    version = format!("{epoch}:{version}");
                }
            }
            if kind == Kind::Dpkg && source_version.is_none() {
                let stripped = strip_binnmu(&version);
                source_version = (stripped != version).then(|| stripped.to_owned());
            }
            (ecosystem(kind, os.as_ref()), purl.name.clone(), version)
        }
        "pypi" => (Ecosystem::PyPI, purl.name.clone(), version),
        "npm" => (Ecosystem::Npm, joined(), version),
        "golang" => (Ecosystem::Go, joined(), version),
        "cargo" => (Ecosystem::CratesIo, purl.name.clone(), version),
        "maven" => (
            Ecosystem::Maven,
            match &purl.namespace {
                Some(group) => format!("{group}:{}", purl.name),
                None => purl.name.clone(),
            },
            version,
        ),
        other => (Ecosystem::Other(other.to_owned()), joined(), version),
    };
    // What the parsers leave out when it says nothing more.
    if source_version.as_deref() == Some(version.as_str()) {
        source_version = None;
    }
    Some(Package {
        ecosystem,
        name,
        version,
        source_name,
        source_version,
        purl: text,
        layer: hints.layer,
        path: hints.path.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn find<'a>(input: &'a Input, name: &str) -> &'a Package {
        input
            .packages
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} in {:?}", input.packages))
    }

    /// An SPDX document as Syft and Trivy write one (their published
    /// output shapes, written here by hand: neither runs on this machine).
    #[test]
    fn spdx_packages_by_purl() {
        let doc = json!({
            "spdxVersion": "SPDX-2.3",
            "packages": [
                {"name": "app", "SPDXID": "SPDXRef-Image", "primaryPackagePurpose": "CONTAINER",
                 "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                   "referenceLocator": "pkg:oci/app@sha256%3Aabc"}]},
                {"name": "debian", "versionInfo": "12.4", "primaryPackagePurpose": "OPERATING-SYSTEM"},
                {"name": "bsdutils", "versionInfo": "1:2.38.1-5+deb12u3",
                 "sourceInfo": "built package from: util-linux 2.38.1-5+deb12u3",
                 "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                   "referenceLocator": "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64"}]},
                {"name": "e2fsprogs", "versionInfo": "1.47.0-2+b2",
                 "externalRefs": [{"referenceType": "purl",
                                   "referenceLocator": "pkg:deb/debian/e2fsprogs@1.47.0-2%2Bb2?arch=amd64&distro=debian-12"}]},
                {"name": "Jinja2", "versionInfo": "2.10",
                 "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:pypi/jinja2@2.10"}]},
                {"name": "no-purl", "versionInfo": "1"},
                {"name": "bad-purl", "externalRefs": [{"referenceType": "purl", "referenceLocator": "pypi/x"}]},
            ]
        });
        let input = parse(&bytes(doc)).unwrap();
        assert_eq!(input.format, "SPDX-2.3");
        assert_eq!(input.skipped, 2);
        assert_eq!(input.packages.len(), 3);
        let bsd = find(&input, "bsdutils");
        // The release from the document's OS entry, the source from
        // Trivy's sourceInfo.
        assert_eq!(
            bsd.ecosystem,
            Ecosystem::Debian {
                release: "12".into()
            }
        );
        assert_eq!(bsd.source_name.as_deref(), Some("util-linux"));
        assert_eq!(bsd.source_version.as_deref(), Some("2.38.1-5+deb12u3"));
        // A binNMU's source version, as the dpkg parser derives it.
        let e2 = find(&input, "e2fsprogs");
        assert_eq!(e2.source_version.as_deref(), Some("1.47.0-2"));
        assert_eq!(find(&input, "jinja2").ecosystem, Ecosystem::PyPI);
    }

    #[test]
    fn cyclonedx_components_nested_and_properties() {
        let doc = json!({
            "bomFormat": "CycloneDX", "specVersion": "1.6",
            "metadata": {"component": {"type": "container", "name": "app", "components": [
                {"type": "library", "name": "core", "version": "7.22.0", "purl": "pkg:npm/%40babel/core@7.22.0"}
            ]}},
            "components": [
                {"type": "operating-system", "name": "alpine", "version": "3.18.4"},
                {"type": "library", "name": "libcrypto3", "version": "3.1.4-r0",
                 "purl": "pkg:apk/alpine/libcrypto3@3.1.4-r0?arch=x86_64&upstream=openssl",
                 "properties": [{"name": "syft:location:0:path", "value": "/lib/apk/db/installed"}]},
                {"type": "library", "name": "libc6", "version": "2.36-9+deb12u4",
                 "purl": "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?distro=debian-12.4",
                 "properties": [
                    {"name": "aquasecurity:trivy:SrcName", "value": "glibc"},
                    {"name": "aquasecurity:trivy:SrcVersion", "value": "2.36-9+deb12u4"},
                    {"name": "aquasecurity:trivy:SrcEpoch", "value": "0"}]},
                {"type": "application", "name": "hello", "purl": "pkg:golang/stdlib@go1.21.3",
                 "components": [{"type": "library", "name": "x/net",
                                 "purl": "pkg:golang/golang.org/x/net@v0.17.0"}]},
                {"type": "library", "name": "jackson-databind",
                 "purl": "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.8?type=jar"},
                {"type": "library", "name": "rpm", "purl": "pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?epoch=1&distro=rocky-9.3"},
            ]
        });
        let input = parse(&bytes(doc)).unwrap();
        assert_eq!(input.format, "CycloneDX 1.6");
        assert_eq!((input.packages.len(), input.skipped), (7, 0));
        let apk = find(&input, "libcrypto3");
        assert_eq!(
            apk.ecosystem,
            Ecosystem::Alpine {
                branch: "v3.18".into()
            }
        );
        assert_eq!(apk.source_name.as_deref(), Some("openssl"));
        assert_eq!(apk.path, "/lib/apk/db/installed");
        let libc = find(&input, "libc6");
        assert_eq!(libc.source_name.as_deref(), Some("glibc"));
        assert_eq!(libc.source_version, None, "the same as the binary's");
        assert_eq!(find(&input, "@babel/core").ecosystem, Ecosystem::Npm);
        assert_eq!(find(&input, "stdlib").version, "go1.21.3");
        assert_eq!(find(&input, "golang.org/x/net").ecosystem, Ecosystem::Go);
        assert_eq!(
            find(&input, "com.fasterxml.jackson.core:jackson-databind").ecosystem,
            Ecosystem::Maven
        );
        let rpm = find(&input, "openssl-libs");
        assert_eq!(rpm.version, "1:3.0.7-24.el9");
        assert_eq!(
            rpm.ecosystem,
            Ecosystem::Rpm {
                distro: "Rocky Linux".into(),
                release: "9".into()
            }
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        assert!(matches!(
            parse(b"{\"spdxVersion\":"),
            Err(InputError::NotJson(_))
        ));
        let spdx3 = bytes(json!({"@context": "https://spdx.org/rdf/3.0.0/spdx-context.jsonld"}));
        assert!(matches!(parse(&spdx3), Err(InputError::Unsupported(_))));
        let old = bytes(json!({"spdxVersion": "SPDX-2.1", "packages": []}));
        let e = parse(&old).unwrap_err().to_string();
        assert!(e.contains("SPDX-2.1"), "{e}");
        let cdx = bytes(json!({"bomFormat": "CycloneDX", "specVersion": "2.0"}));
        assert!(matches!(parse(&cdx), Err(InputError::Unsupported(_))));
        // The wrong shape where a field is read is refused, not guessed at.
        let shape = bytes(json!({"spdxVersion": "SPDX-2.3", "packages": {"a": 1}}));
        assert!(matches!(parse(&shape), Err(InputError::NotJson(_))));
    }
}
