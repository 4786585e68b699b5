//! Package parsers: which files of a layer they want, what they find in
//! them, and the image's [`Package`] inventory from the merged view.
//!
//! Parsing happens in two steps so that a layer's result can be cached by
//! its digest alone. While a layer is walked, [`interest`] picks the files
//! (by path, and for binaries by the executable bit and the ELF magic) and
//! [`examine`] turns each into [`Evidence`]: what the file says, without
//! anything that depends on other layers. [`inventory`] then reads the
//! merged image: the OS from `os-release` (wherever its symlink leads) gives
//! the distribution packages their ecosystem and package URL, and each
//! package is attributed to the lowest layer it has been continuously
//! present in at that path (a dpkg status file rewritten by every
//! `apt-get install` would otherwise credit all packages to the top layer).
//!
//! A file that a parser cannot read is [`Evidence::Malformed`]: it becomes a
//! [`Problem`] of the inventory, and every other file is still read.
//!
//! A file that dpkg installed (listed in a visible
//! `var/lib/dpkg/info/<package>.list`) is the Debian package's: the
//! language packages and binaries it holds (Debian's python3-urllib3
//! `*.egg-info`, a jar of `lib*-java`, a Go program) are not reported
//! again under their upstream names. Debian patches them without changing
//! the upstream version (python3-urllib3 1.26.12-1+deb12u4 carries fixes of
//! 1.26.17 and 1.26.18), so PyPI's or Maven's advisories for that version
//! are false; Debian's own advisories reach them through the source
//! package, as Trivy does.

mod apk;
mod binary;
mod cargo;
mod dpkg;
mod java;
mod npm;
mod osrelease;
mod python;
mod rpm;

pub(crate) use dpkg::strip_binnmu;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::inventory::Package;
use crate::layers::{Image, Limits};
use crate::osv::Ecosystem;

pub use osrelease::OsRelease;

/// What a parser wants of a file, decided from its path and mode alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    OsRelease,
    /// `var/lib/dpkg/status`
    DpkgStatus,
    /// `var/lib/dpkg/info/<package>.list`: the files dpkg installed.
    DpkgFiles,
    /// A distroless `var/lib/dpkg/status.d/<package>` file.
    DpkgStatusD,
    /// `lib/apk/db/installed`
    Apk,
    /// The SQLite rpmdb.
    Rpmdb,
    /// `*.dist-info/METADATA`, `*.egg-info/PKG-INFO`, an `*.egg-info` file.
    Python,
    /// `node_modules/<name>/package.json`
    Npm,
    CargoLock,
    /// `*.jar`, `*.war`, `*.ear`
    Java,
    /// Any executable: read on only if it is ELF.
    Executable,
}

/// The files package parsers read. Called for every regular file of every
/// layer, so it only compares strings.
pub fn interest(path: &str, mode: u32, size: u64) -> Option<Interest> {
    match path {
        "etc/os-release" | "usr/lib/os-release" => return Some(Interest::OsRelease),
        "var/lib/dpkg/status" => return Some(Interest::DpkgStatus),
        "lib/apk/db/installed" | "usr/lib/apk/db/installed" => return Some(Interest::Apk),
        // Fedora keeps it under /usr since 36; RHEL 9 and its rebuilds
        // under /var.
        "var/lib/rpm/rpmdb.sqlite" | "usr/lib/sysimage/rpm/rpmdb.sqlite" => {
            return Some(Interest::Rpmdb)
        }
        _ => {}
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
        // Each package has a stanza file and a `.md5sums` beside it.
        if !name.contains('/') && !name.ends_with(".md5sums") {
            return Some(Interest::DpkgStatusD);
        }
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/info/") {
        if !name.contains('/') && name.ends_with(".list") {
            return Some(Interest::DpkgFiles);
        }
    }
    let file = path.rsplit('/').next().unwrap_or(path);
    if path.ends_with(".dist-info/METADATA")
        || path.ends_with(".egg-info/PKG-INFO")
        || file.ends_with(".egg-info")
    {
        return Some(Interest::Python);
    }
    if file == "package.json" && npm::is_package_root(path) {
        return Some(Interest::Npm);
    }
    if file == "Cargo.lock" {
        return Some(Interest::CargoLock);
    }
    if let Some((_, ext)) = file.rsplit_once('.') {
        if ["jar", "war", "ear"]
            .iter()
            .any(|e| ext.eq_ignore_ascii_case(e))
        {
            return Some(Interest::Java);
        }
    }
    // The smallest ELF file holds a 52-byte header.
    if mode & 0o111 != 0 && size >= 52 {
        return Some(Interest::Executable);
    }
    None
}

/// What a wanted file says, independent of every other file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Evidence {
    OsRelease {
        os: OsRelease,
    },
    Packages {
        packages: Vec<Found>,
        /// Parts of the file that were not read (a nested jar over the
        /// limits), reported as problems.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notes: Vec<String>,
    },
    /// Files a package manager installed (image paths, without the leading
    /// `/`, as it names them: through the image's symlinks).
    Owned {
        files: Vec<String>,
    },
    /// The file is not what its name says, or is corrupt.
    Malformed {
        reason: String,
    },
}

/// Which parser found a package, and so its ecosystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dpkg,
    Apk,
    Rpm,
    Python,
    Npm,
    Go,
    Cargo,
    Maven,
}

/// One package as its file names it, before the OS is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub kind: Kind,
    /// As the file spells it (a PyPI display name, `group:artifact` for
    /// Maven, a Go module path, `stdlib` for the Go toolchain).
    pub name: String,
    /// RPM: `[epoch:]version-release`; Go's `stdlib`: `go1.21.3`.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Where inside the file, for archives:
    /// `BOOT-INF/lib/a.jar!/META-INF/maven/g/a/pom.properties`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
}

impl Found {
    fn new(kind: Kind, name: impl Into<String>, version: impl Into<String>) -> Found {
        Found {
            kind,
            name: name.into(),
            version: version.into(),
            arch: None,
            source_name: None,
            source_version: None,
            within: None,
        }
    }
}

/// Reads a wanted file's bytes into evidence; `None` when the file turns
/// out to hold nothing to report (an ELF file that is neither a Go binary
/// nor built with cargo-auditable, a `package.json` without a version).
pub fn examine(interest: Interest, bytes: Vec<u8>, limits: &Limits) -> Option<Evidence> {
    let packages = |r: Result<Vec<Found>, String>| match r {
        Ok(packages) => Evidence::Packages {
            packages,
            notes: Vec::new(),
        },
        Err(reason) => Evidence::Malformed { reason },
    };
    Some(match interest {
        Interest::OsRelease => Evidence::OsRelease {
            os: OsRelease::parse(&bytes),
        },
        Interest::DpkgStatus => packages(dpkg::parse(&bytes, false)),
        Interest::DpkgStatusD => packages(dpkg::parse(&bytes, true)),
        Interest::DpkgFiles => Evidence::Owned {
            files: String::from_utf8_lossy(&bytes)
                .lines()
                .map(|l| l.trim_start_matches('/'))
                // `/.` is the root; directories do not matter, but telling
                // them apart would need the image.
                .filter(|l| !l.is_empty() && *l != ".")
                .map(str::to_owned)
                .collect(),
        },
        Interest::Apk => packages(apk::parse(&bytes)),
        Interest::Rpmdb => packages(rpm::parse(bytes)),
        Interest::Python => packages(python::parse(&bytes)),
        Interest::Npm => packages(npm::parse(&bytes)?),
        Interest::CargoLock => packages(cargo::parse_lock(&bytes)),
        Interest::Java => match java::parse(&bytes, limits) {
            Ok((packages, notes)) => Evidence::Packages { packages, notes },
            Err(reason) => Evidence::Malformed { reason },
        },
        Interest::Executable => packages(binary::parse(&bytes)?),
    })
}

/// Something the inventory could not read, or cannot match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    /// The digest of the layer the file is in.
    pub layer: Option<String>,
    pub reason: String,
}

/// The image's packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// From `etc/os-release` (followed through symlinks), else
    /// `usr/lib/os-release`.
    pub os: Option<OsRelease>,
    /// In path order, each file's packages in the file's order.
    pub packages: Vec<Package>,
    pub problems: Vec<Problem>,
}

/// The inventory of a merged image.
pub fn inventory(image: &Image<'_>) -> Inventory {
    let layers = image.layers();
    let os = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| match image.evidence(&image.resolve(p)?)? {
            (_, Evidence::OsRelease { os }) => Some(os.clone()),
            _ => None,
        });
    let mut inv = Inventory {
        os,
        packages: Vec::new(),
        problems: Vec::new(),
    };
    let owned = owned_files(image);
    let mut unplaced: HashMap<Kind, (String, usize)> = HashMap::new();
    for (path, history, evidence) in image.all_evidence() {
        let top = *history.last().expect("the visible layer is in the history");
        let problem = |reason: String| Problem {
            path: path.to_owned(),
            layer: Some(layers[top].digest.clone()),
            reason,
        };
        let (found, notes) = match evidence {
            Evidence::OsRelease { .. } | Evidence::Owned { .. } => continue,
            Evidence::Malformed { reason } => {
                inv.problems.push(problem(reason.clone()));
                continue;
            }
            Evidence::Packages { packages, notes } => (packages, notes),
        };
        inv.problems
            .extend(notes.iter().map(|n| problem(n.clone())));
        let introduced = attribute(image, path, &history);
        for (i, f) in found.iter().enumerate() {
            let os_package = matches!(f.kind, Kind::Dpkg | Kind::Apk | Kind::Rpm);
            if !os_package && owned.contains(path) {
                continue;
            }
            let ecosystem = ecosystem(f.kind, inv.os.as_ref());
            if let Ecosystem::Other(_) = ecosystem {
                if matches!(f.kind, Kind::Dpkg | Kind::Apk | Kind::Rpm) {
                    let e = unplaced.entry(f.kind).or_insert((path.to_owned(), 0));
                    e.1 += 1;
                }
            }
            inv.packages.push(Package {
                purl: purl(f, &ecosystem, inv.os.as_ref()),
                ecosystem,
                name: f.name.clone(),
                version: f.version.clone(),
                source_name: f.source_name.clone(),
                source_version: f.source_version.clone(),
                layer: Some(layers[introduced[i]].digest.clone()),
                path: match &f.within {
                    Some(w) => format!("{path}!/{w}"),
                    None => path.to_owned(),
                },
            });
        }
    }
    let mut unplaced: Vec<_> = unplaced.into_iter().collect();
    unplaced.sort_by(|a, b| a.1 .0.cmp(&b.1 .0));
    for (kind, (path, n)) in unplaced {
        let os = match &inv.os {
            Some(os) => format!(
                "the OS {:?} {:?}",
                os.id,
                os.version_id.as_deref().unwrap_or("")
            ),
            None => "no os-release".to_owned(),
        };
        inv.problems.push(Problem {
            path,
            layer: None,
            reason: format!(
                "{n} {} packages with {os}: no advisory ecosystem this scanner matches",
                format!("{kind:?}").to_lowercase()
            ),
        });
    }
    for (i, layer) in layers.iter().enumerate() {
        for (path, s) in &layer.skipped {
            if image.get(path).is_some_and(|v| v.layer == i) {
                inv.problems.push(Problem {
                    path: path.clone(),
                    layer: Some(layer.digest.clone()),
                    reason: format!("not read: {}", s.reason),
                });
            }
        }
    }
    let sqlite = [
        "var/lib/rpm/rpmdb.sqlite",
        "usr/lib/sysimage/rpm/rpmdb.sqlite",
    ];
    if !sqlite.iter().any(|p| image.get(p).is_some()) {
        for old in ["var/lib/rpm/Packages", "var/lib/rpm/Packages.db"] {
            if let Some(v) = image.get(old) {
                inv.problems.push(Problem {
                    path: old.to_owned(),
                    layer: Some(layers[v.layer].digest.clone()),
                    reason: "a Berkeley DB or NDB rpmdb: only the SQLite rpmdb (Fedora 33+, RHEL 9 and its rebuilds) is read".into(),
                });
            }
        }
    }
    inv
}

/// The image paths of the files dpkg installed, by its visible `.list`
/// files, each resolved through the image's symlinks (on a merged-/usr
/// system dpkg lists `/bin/x` for what is at `usr/bin/x`).
fn owned_files(image: &Image<'_>) -> std::collections::HashSet<String> {
    let mut owned = std::collections::HashSet::new();
    for (_, _, evidence) in image.all_evidence() {
        if let Evidence::Owned { files } = evidence {
            for f in files {
                // The directories are followed, not the file itself: a
                // listed symlink owns the link, not what it points to.
                if let Some((dir, name)) = f.rsplit_once('/') {
                    if let Some(dir) = image.resolve(dir).filter(|d| d != dir) {
                        owned.insert(if dir.is_empty() {
                            name.to_owned()
                        } else {
                            format!("{dir}/{name}")
                        });
                    }
                }
                owned.insert(f.clone());
            }
        }
    }
    owned
}

/// For each package of the visible copy of `path`, the layer it first
/// appeared in: walking the copies from the lowest, a package (same kind,
/// name, version, arch, place in the file) present in the previous copy
/// keeps that copy's layer.
fn attribute(image: &Image<'_>, path: &str, history: &[usize]) -> Vec<usize> {
    let key = |f: &Found| {
        (
            f.kind,
            f.name.clone(),
            f.version.clone(),
            f.arch.clone(),
            f.within.clone(),
        )
    };
    let mut introduced = HashMap::new();
    let mut last = Vec::new();
    for &layer in history {
        let found = match image.layers()[layer].evidence.get(path) {
            Some(Evidence::Packages { packages, .. }) => packages.as_slice(),
            _ => &[],
        };
        let mut next = HashMap::new();
        last.clear();
        for f in found {
            let k = key(f);
            let at = introduced.get(&k).copied().unwrap_or(layer);
            last.push(at);
            next.insert(k, at);
        }
        introduced = next;
    }
    last
}

/// The advisory ecosystem of a package, given the image's OS.
pub(crate) fn ecosystem(kind: Kind, os: Option<&OsRelease>) -> Ecosystem {
    let id = os.map(|o| o.id.as_str()).unwrap_or("");
    match kind {
        Kind::Python => Ecosystem::PyPI,
        Kind::Npm => Ecosystem::Npm,
        Kind::Go => Ecosystem::Go,
        Kind::Cargo => Ecosystem::CratesIo,
        Kind::Maven => Ecosystem::Maven,
        Kind::Dpkg => match os.and_then(OsRelease::debian_release) {
            Some(release) if id == "debian" => Ecosystem::Debian { release },
            _ => Ecosystem::Other(os.map(OsRelease::label).unwrap_or_else(|| "dpkg".into())),
        },
        Kind::Apk => match os.and_then(|o| o.major_minor()) {
            Some(v) if id == "alpine" => Ecosystem::Alpine {
                branch: format!("v{v}"),
            },
            _ => Ecosystem::Other(os.map(OsRelease::label).unwrap_or_else(|| "apk".into())),
        },
        Kind::Rpm => {
            let distro = match id {
                "rhel" => Some("Red Hat"),
                "rocky" => Some("Rocky Linux"),
                "almalinux" => Some("AlmaLinux"),
                _ => None,
            };
            match (distro, os.and_then(|o| o.major())) {
                (Some(d), Some(release)) => Ecosystem::Rpm {
                    distro: d.into(),
                    release,
                },
                _ => Ecosystem::Other(os.map(OsRelease::label).unwrap_or_else(|| "rpm".into())),
            }
        }
    }
}

/// The package URL (<https://github.com/package-url/purl-spec>), qualifiers
/// in their canonical (sorted) order.
fn purl(f: &Found, ecosystem: &Ecosystem, os: Option<&OsRelease>) -> String {
    let v = pct(&f.version);
    let distro_qualifier = |release: Option<String>| {
        os.zip(release)
            .map(|(o, r)| format!("distro={}-{}", pct(&o.id), pct(&r)))
    };
    let qualifiers = |q: Vec<Option<String>>| {
        let q: Vec<String> = q.into_iter().flatten().collect();
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    };
    let arch = f.arch.as_ref().map(|a| format!("arch={}", pct(a)));
    // The source package advisories name (as Syft writes it): `name`, or
    // `name@version` when the source's version differs.
    let upstream = || {
        let source = f.source_name.as_ref()?;
        Some(match &f.source_version {
            Some(v) => format!("upstream={}", pct(&format!("{source}@{v}"))),
            None if *source != f.name => format!("upstream={}", pct(source)),
            None => return None,
        })
    };
    let namespace = || pct(os.map(|o| o.id.as_str()).unwrap_or("unknown"));
    match f.kind {
        Kind::Dpkg => {
            let release = match ecosystem {
                Ecosystem::Debian { release } => Some(release.clone()),
                _ => os.and_then(|o| o.version_id.clone()),
            };
            format!(
                "pkg:deb/{}/{}@{v}{}",
                namespace(),
                pct(&f.name),
                qualifiers(vec![arch, distro_qualifier(release), upstream()])
            )
        }
        Kind::Apk => format!(
            "pkg:apk/{}/{}@{v}{}",
            namespace(),
            pct(&f.name),
            qualifiers(vec![
                arch,
                distro_qualifier(os.and_then(|o| o.version_id.clone())),
                upstream()
            ])
        ),
        Kind::Rpm => {
            // The epoch is a qualifier in RPM package URLs.
            let (epoch, rest) = match f.version.split_once(':') {
                Some((e, r)) => (Some(format!("epoch={}", pct(e))), r),
                None => (None, f.version.as_str()),
            };
            format!(
                "pkg:rpm/{}/{}@{}{}",
                namespace(),
                pct(&f.name),
                pct(rest),
                qualifiers(vec![
                    arch,
                    distro_qualifier(os.and_then(|o| o.version_id.clone())),
                    epoch
                ])
            )
        }
        Kind::Python => format!(
            "pkg:pypi/{}@{v}",
            pct(&crate::version::pep440::normalize_name(&f.name))
        ),
        Kind::Npm => match f.name.split_once('/') {
            Some((scope, name)) if scope.starts_with('@') => {
                format!("pkg:npm/{}/{}@{v}", pct(scope), pct(name))
            }
            _ => format!("pkg:npm/{}@{v}", pct(&f.name)),
        },
        Kind::Go => {
            let segments: Vec<String> = f.name.split('/').map(pct).collect();
            format!("pkg:golang/{}@{v}", segments.join("/"))
        }
        Kind::Cargo => format!("pkg:cargo/{}@{v}", pct(&f.name)),
        Kind::Maven => match f.name.split_once(':') {
            Some((group, artifact)) => format!("pkg:maven/{}/{}@{v}", pct(group), pct(artifact)),
            None => format!("pkg:maven/{}@{v}", pct(&f.name)),
        },
    }
}

/// Percent-encodes a purl component: everything but ASCII letters, digits,
/// `.-_~` and `:` (which the purl spec says is never encoded).
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b".-_~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_by_path_and_mode() {
        for (path, mode, want) in [
            ("etc/os-release", 0o644, Some(Interest::OsRelease)),
            ("var/lib/dpkg/status", 0o644, Some(Interest::DpkgStatus)),
            ("var/lib/dpkg/status-old", 0o644, None),
            (
                "var/lib/dpkg/status.d/libc6",
                0o644,
                Some(Interest::DpkgStatusD),
            ),
            ("var/lib/dpkg/status.d/libc6.md5sums", 0o644, None),
            (
                "var/lib/dpkg/info/python3-urllib3.list",
                0o644,
                Some(Interest::DpkgFiles),
            ),
            ("var/lib/dpkg/info/python3-urllib3.md5sums", 0o644, None),
            ("lib/apk/db/installed", 0o644, Some(Interest::Apk)),
            (
                "usr/lib/sysimage/rpm/rpmdb.sqlite",
                0o644,
                Some(Interest::Rpmdb),
            ),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                0o644,
                Some(Interest::Python),
            ),
            (
                "usr/lib/python3/dist-packages/foo.egg-info/PKG-INFO",
                0o644,
                Some(Interest::Python),
            ),
            (
                "usr/lib/python3/dist-packages/foo-1.0.egg-info",
                0o644,
                Some(Interest::Python),
            ),
            (
                "app/node_modules/@types/node/package.json",
                0o644,
                Some(Interest::Npm),
            ),
            ("app/node_modules/x/lib/package.json", 0o644, None),
            ("app/package.json", 0o644, None),
            ("src/Cargo.lock", 0o644, Some(Interest::CargoLock)),
            ("opt/app/app.JAR", 0o644, Some(Interest::Java)),
            ("usr/bin/ls", 0o755, Some(Interest::Executable)),
            ("usr/share/doc/x", 0o644, None),
        ] {
            assert_eq!(interest(path, mode, 1000), want, "{path}");
        }
        assert_eq!(interest("usr/bin/tiny", 0o755, 10), None);
    }

    #[test]
    fn purl_components_are_percent_encoded() {
        assert_eq!(pct("1:2.38.1-5+deb12u3"), "1:2.38.1-5%2Bdeb12u3");
        assert_eq!(pct("@types"), "%40types");
        assert_eq!(pct("a b/c"), "a%20b%2Fc");
    }
}
