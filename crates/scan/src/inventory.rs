//! What a scan found installed: the interface between the package parsers
//! (dpkg, apk, rpm, Python, npm, Go and Rust binaries, jars) and matching.

use serde::{Deserialize, Serialize};

pub use crate::cvss::Severity;
pub use crate::osv::Ecosystem;

/// One installed package, as a package parser reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// E.g. `Debian { release: "12" }`, `Alpine { branch: "v3.18" }`,
    /// `PyPI`, `CratesIo`, `Go`, `Npm`, `Maven`, `Rpm { distro, release }`.
    pub ecosystem: Ecosystem,
    /// The installed (binary) package name.
    pub name: String,
    /// The installed version.
    pub version: String,
    /// dpkg `Source:` / apk origin (`o:`): what Debian and Alpine
    /// advisories name.
    pub source_name: Option<String>,
    /// The dpkg source version (binNMU `+bN` stripped), when it differs
    /// from `version`.
    pub source_version: Option<String>,
    /// The package URL.
    pub purl: String,
    /// Digest of the layer that introduced the package.
    pub layer: Option<String>,
    /// The evidence file inside the image.
    pub path: String,
}

/// One advisory that applies to one installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The advisory id (`DSA-5650-1`, `PYSEC-2023-192`).
    pub id: String,
    /// Its aliases and upstream ids (the CVEs), without repeats.
    pub aliases: Vec<String>,
    /// The installed package's name (the binary package for dpkg/apk).
    pub package: String,
    pub installed_version: String,
    /// The first fixed version of the range that matched; `None` when the
    /// advisory names none (unfixed, or matched by `last_affected` or the
    /// `versions` list only).
    pub fixed_version: Option<String>,
    pub severity: Severity,
    /// The CVSS base score the severity came from, if it came from one.
    pub score: Option<f32>,
    pub layer: Option<String>,
    pub path: String,
    pub summary: Option<String>,
}
