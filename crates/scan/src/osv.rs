//! The OSV record model (<https://ossf.github.io/osv-schema/>, schema 1.7),
//! with the tolerance real feeds need.
//!
//! Unknown fields are ignored and `null` lists read as empty. A range that
//! does not make sense (an unknown type, no events, an event that is not
//! exactly one of `introduced`/`fixed`/`last_affected`/`limit`, a `GIT`
//! event that is not a full commit hash) is dropped and counted in
//! [`Affected::skipped_ranges`], and the record keeps its other ranges:
//! upstream PyPI records carry short or `.patch`-suffixed commits in `GIT`
//! ranges beside perfectly good `ECOSYSTEM` ranges. A record that is not
//! JSON, not an object, or lacks `id` or `modified` is a [`RecordError`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::version::Scheme;

/// One OSV record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub modified: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub aliases: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub upstream: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub related: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub severity: Vec<SeverityScore>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub affected: Vec<Affected>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

/// A `severity[]` entry: a CVSS vector, or a database's own rating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityScore {
    #[serde(rename = "type")]
    pub kind: SeverityType,
    pub score: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeverityType {
    #[serde(rename = "CVSS_V2")]
    CvssV2,
    #[serde(rename = "CVSS_V3")]
    CvssV3,
    #[serde(rename = "CVSS_V4")]
    CvssV4,
    Ubuntu,
    /// A type this schema version does not know; kept so the record loads.
    #[serde(other)]
    Other,
}

/// An `affected[]` entry: one package and the versions of it affected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub severity: Vec<SeverityScore>,
    #[serde(
        default,
        deserialize_with = "lenient_ranges",
        skip_serializing_if = "Ranges::is_empty"
    )]
    pub ranges: Ranges,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

impl Affected {
    /// How many of this entry's ranges were dropped as malformed.
    pub fn skipped_ranges(&self) -> usize {
        self.ranges.skipped
    }
}

/// The usable ranges of an entry, and how many were dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Ranges {
    pub ranges: Vec<Range>,
    #[serde(skip)]
    pub skipped: usize,
}

impl Ranges {
    fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: RangeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RangeType {
    Ecosystem,
    Semver,
    Git,
}

/// A range event. `introduced: "0"` means "from the first version".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Event {
    pub fn value(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

/// `null` read as the empty default (feeds write `"aliases": null`).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn lenient_ranges<'de, D: Deserializer<'de>>(d: D) -> Result<Ranges, D::Error> {
    let raw: Vec<Value> = nullable(d)?;
    let total = raw.len();
    let ranges: Vec<Range> = raw
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Range>(v).ok())
        .filter(Range::is_well_formed)
        .collect();
    Ok(Ranges {
        skipped: total - ranges.len(),
        ranges,
    })
}

impl Range {
    fn is_well_formed(&self) -> bool {
        let full_commit = |v: &str| v.len() == 40 && v.bytes().all(|b| b.is_ascii_hexdigit());
        !self.events.is_empty()
            && (self.kind != RangeType::Git
                || self.events.iter().all(|e| match e {
                    Event::Introduced(v) => v == "0" || full_commit(v),
                    e => full_commit(e.value()),
                }))
    }
}

/// A record that cannot be read, named by where it came from and, when it
/// got that far, its id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}{}: {reason}", .id.as_ref().map(|id| format!(" ({id})")).unwrap_or_default())]
pub struct RecordError {
    pub source_name: String,
    pub id: Option<String>,
    pub reason: String,
}

/// Reads one OSV record from JSON; `source` names it in errors (a path).
pub fn parse_record(source: &str, bytes: &[u8]) -> Result<Record, RecordError> {
    serde_json::from_slice(bytes).map_err(|e| {
        // Name the record if at least its id is readable.
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        RecordError {
            source_name: source.to_owned(),
            id: serde_json::from_slice::<Id>(bytes).ok().map(|r| r.id),
            reason: e.to_string(),
        }
    })
}

/// An OSV ecosystem, with the release or branch that the distribution
/// ecosystems carry (`Debian:12`, `Alpine:v3.18`, `Rocky Linux:9`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ecosystem {
    Debian {
        release: String,
    },
    Alpine {
        branch: String,
    },
    /// The RPM family: `Red Hat`, `Rocky Linux`, `AlmaLinux`, with whatever
    /// follows the first `:` as the release (`Red Hat:enterprise_linux:9::appstream`).
    Rpm {
        distro: String,
        release: String,
    },
    PyPI,
    Npm,
    Go,
    CratesIo,
    Maven,
    /// Any other ecosystem, as written.
    Other(String),
}

const RPM_DISTROS: [&str; 3] = ["Red Hat", "Rocky Linux", "AlmaLinux"];

impl Ecosystem {
    /// The version ordering of this ecosystem's `ECOSYSTEM` ranges, if
    /// this crate knows it.
    pub fn scheme(&self) -> Option<Scheme> {
        match self {
            Ecosystem::Debian { .. } => Some(Scheme::Dpkg),
            Ecosystem::Alpine { .. } => Some(Scheme::Apk),
            Ecosystem::Rpm { .. } => Some(Scheme::Rpm),
            Ecosystem::PyPI => Some(Scheme::Pep440),
            Ecosystem::Npm | Ecosystem::Go | Ecosystem::CratesIo => Some(Scheme::Semver),
            Ecosystem::Maven => Some(Scheme::Maven),
            Ecosystem::Other(_) => None,
        }
    }

    /// A package name as this ecosystem compares names: PEP 503 for PyPI,
    /// exact elsewhere.
    pub fn normalize_name(&self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => crate::version::pep440::normalize_name(name),
            _ => name.to_owned(),
        }
    }

    /// The ecosystem without its release (`Debian`, `Alpine`, `Rocky Linux`),
    /// for counting records.
    pub fn family(&self) -> String {
        match self {
            Ecosystem::Debian { .. } => "Debian".into(),
            Ecosystem::Alpine { .. } => "Alpine".into(),
            Ecosystem::Rpm { distro, .. } => distro.clone(),
            other => other.to_string(),
        }
    }
}

impl FromStr for Ecosystem {
    type Err = std::convert::Infallible;

    /// Never fails: ecosystems this crate does not know are `Other`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (family, release) = match s.split_once(':') {
            Some((f, r)) => (f, Some(r)),
            None => (s, None),
        };
        Ok(match (family, release) {
            ("Debian", Some(r)) if !r.is_empty() => Ecosystem::Debian { release: r.into() },
            ("Alpine", Some(b)) if !b.is_empty() => Ecosystem::Alpine { branch: b.into() },
            (d, r) if RPM_DISTROS.contains(&d) => Ecosystem::Rpm {
                distro: d.into(),
                release: r.unwrap_or("").into(),
            },
            ("PyPI", None) => Ecosystem::PyPI,
            ("npm", None) => Ecosystem::Npm,
            ("Go", None) => Ecosystem::Go,
            ("crates.io", None) => Ecosystem::CratesIo,
            ("Maven", None) => Ecosystem::Maven,
            _ => Ecosystem::Other(s.into()),
        })
    }
}

/// The OSV spelling, so that parsing what this prints gives the same value.
impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ecosystem::Debian { release } => write!(f, "Debian:{release}"),
            Ecosystem::Alpine { branch } => write!(f, "Alpine:{branch}"),
            Ecosystem::Rpm { distro, release } if release.is_empty() => f.write_str(distro),
            Ecosystem::Rpm { distro, release } => write!(f, "{distro}:{release}"),
            Ecosystem::PyPI => f.write_str("PyPI"),
            Ecosystem::Npm => f.write_str("npm"),
            Ecosystem::Go => f.write_str("Go"),
            Ecosystem::CratesIo => f.write_str("crates.io"),
            Ecosystem::Maven => f.write_str("Maven"),
            Ecosystem::Other(s) => f.write_str(s),
        }
    }
}

impl Serialize for Ecosystem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ecosystem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse().unwrap_or_else(|never| match never {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_round_trip() {
        for (s, want) in [
            (
                "Debian:12",
                Ecosystem::Debian {
                    release: "12".into(),
                },
            ),
            (
                "Alpine:v3.11",
                Ecosystem::Alpine {
                    branch: "v3.11".into(),
                },
            ),
            ("PyPI", Ecosystem::PyPI),
            ("npm", Ecosystem::Npm),
            ("Go", Ecosystem::Go),
            ("crates.io", Ecosystem::CratesIo),
            ("Maven", Ecosystem::Maven),
            (
                "Rocky Linux:9",
                Ecosystem::Rpm {
                    distro: "Rocky Linux".into(),
                    release: "9".into(),
                },
            ),
            (
                "Red Hat",
                Ecosystem::Rpm {
                    distro: "Red Hat".into(),
                    release: "".into(),
                },
            ),
            (
                "Red Hat:enterprise_linux:9::appstream",
                Ecosystem::Rpm {
                    distro: "Red Hat".into(),
                    release: "enterprise_linux:9::appstream".into(),
                },
            ),
            (
                "AlmaLinux:8",
                Ecosystem::Rpm {
                    distro: "AlmaLinux".into(),
                    release: "8".into(),
                },
            ),
            (
                "Ubuntu:22.04:LTS",
                Ecosystem::Other("Ubuntu:22.04:LTS".into()),
            ),
            ("Debian", Ecosystem::Other("Debian".into())),
            ("pypi", Ecosystem::Other("pypi".into())),
        ] {
            let e: Ecosystem = s.parse().unwrap();
            assert_eq!(e, want, "{s}");
            assert_eq!(e.to_string(), s);
        }
    }

    #[test]
    fn a_bad_git_range_is_dropped_and_the_rest_kept() {
        let json = br#"{
            "id": "PYSEC-X", "modified": "2024-01-01T00:00:00Z", "unknown_field": {"a": 1},
            "aliases": null,
            "affected": [{
                "package": {"ecosystem": "PyPI", "name": "x"},
                "ranges": [
                    {"type": "GIT", "repo": "r", "events": [{"introduced": "0"}, {"fixed": "cb35df940a"}]},
                    {"type": "GIT", "repo": "r", "events": [{"introduced": "0"}, {"fixed": "abc.patch"}]},
                    {"type": "WEIRD", "events": [{"introduced": "0"}]},
                    {"type": "ECOSYSTEM", "events": []},
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]},
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.41.1"}]},
                    {"type": "GIT", "repo": "r", "events": [{"introduced": "0"}, {"fixed": "644124ecd0b6e417c527191f866daa05a5a2056d"}]}
                ]
            }]
        }"#;
        let r = parse_record("x.json", json).unwrap();
        let a = &r.affected[0];
        assert_eq!(a.skipped_ranges(), 5);
        assert_eq!(a.ranges.ranges.len(), 2);
        assert_eq!(a.ranges.ranges[0].kind, RangeType::Ecosystem);
        assert_eq!(a.ranges.ranges[0].events[1], Event::Fixed("1.41.1".into()));
        assert!(r.aliases.is_empty());
    }

    #[test]
    fn malformed_records_are_errors_naming_them() {
        let e = parse_record("a/b.json", b"{\"id\": \"GHSA-1\", \"affected\": 3}").unwrap_err();
        assert_eq!(e.id.as_deref(), Some("GHSA-1"));
        assert!(e.to_string().starts_with("a/b.json (GHSA-1): "), "{e}");
        let e = parse_record("c.json", b"{\"id\": \"X\"").unwrap_err();
        assert_eq!(e.id, None);
        assert!(parse_record("d.json", b"[]").is_err());
        assert!(parse_record("e.json", b"{\"modified\": \"x\"}").is_err());
    }

    #[test]
    fn serialises_what_it_reads() {
        let json = br#"{"id":"DSA-1","modified":"m","upstream":["CVE-1"],
            "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},{"type":"NEW","score":"7"}],
            "affected":[{"package":{"ecosystem":"Debian:12","name":"glibc"},
            "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.36-9+deb12u3"}]}]}]}"#;
        let r = parse_record("x", json).unwrap();
        assert_eq!(r.severity[1].kind, SeverityType::Other);
        let again = parse_record("y", &serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }
}
