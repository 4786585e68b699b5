//! Installed packages against the advisory index.
//!
//! Which name and version: Debian and Alpine advisories name the *source*
//! package (dpkg `Source:`, apk origin), so those are looked up by
//! `source_name` and compared by `source_version` (falling back to the
//! binary's when the parser found none); the release (`Debian:12`) or
//! branch (`Alpine:v3.18`) is part of the ecosystem, so only that release's
//! advisories are candidates. A Go binary's `stdlib` (and `toolchain`) is
//! compared by its toolchain version (`go1.21.3` as `1.21.3`). PyPI names
//! are PEP 503-normalised by the index.
//!
//! When: an entry's `versions` list names the installed version, or one of
//! its ranges contains it. `ECOSYSTEM` ranges use the ecosystem's ordering,
//! `SEMVER` ranges SemVer, `GIT` ranges are ignored (an installed package has
//! no commit). Within a range, the version is affected when some
//! `introduced` (`"0"` is the beginning) is at or below it and no `fixed`
//! lies in between (inclusive of the version) nor a `last_affected` below
//! it, and no `limit` is at or below it: what the OSV schema's evaluation of
//! sorted events gives, without needing to sort (Maven's ordering is not
//! total on odd versions, and sorting with it could fail).
//!
//! A version that the ecosystem's parser refuses, installed or in a range,
//! decides nothing: it is reported as [`Undecided`] rather than guessed.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::cvss::{self, Severity};
use crate::inventory::{Finding, Package};
use crate::osv::{Affected, Ecosystem, Event, Range, RangeType, Record, SeverityType};
use crate::version::{self, Parsed, Scheme};
use crate::vulndb::Index;

/// An advisory that could not be decided for a package, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undecided {
    pub id: String,
    pub package: String,
    pub reason: String,
}

/// What matching found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Matches {
    pub findings: Vec<Finding>,
    pub undecided: Vec<Undecided>,
}

/// Matches every package, findings in inventory order.
pub fn match_packages(index: &Index, packages: &[Package]) -> Matches {
    let mut all = Matches::default();
    for p in packages {
        let m = match_package(index, p);
        all.findings.extend(m.findings);
        all.undecided.extend(m.undecided);
    }
    all
}

/// The name and version advisories use for this package.
fn advisory_identity(p: &Package) -> (&str, String) {
    match &p.ecosystem {
        Ecosystem::Debian { .. } | Ecosystem::Alpine { .. } => (
            p.source_name.as_deref().unwrap_or(&p.name),
            p.source_version.as_deref().unwrap_or(&p.version).to_owned(),
        ),
        Ecosystem::Go if matches!(p.name.as_str(), "stdlib" | "toolchain") => (
            &p.name,
            version::semver::go_toolchain_version(&p.version).unwrap_or_else(|| p.version.clone()),
        ),
        _ => (&p.name, p.version.clone()),
    }
}

/// Matches one package against the index.
pub fn match_package(index: &Index, p: &Package) -> Matches {
    let mut out = Matches::default();
    let Some(scheme) = p.ecosystem.scheme() else {
        return out;
    };
    let (name, version) = advisory_identity(p);
    let mut seen: Vec<&str> = Vec::new();
    let mut undecided: Vec<(&str, String)> = Vec::new();
    for (record, affected) in index.lookup(&p.ecosystem, name) {
        if seen.contains(&record.id.as_str()) {
            continue;
        }
        match affects(scheme, affected, &version) {
            Ok(Some(fixed)) => {
                seen.push(&record.id);
                out.findings.push(finding(record, affected, p, fixed));
            }
            Ok(None) => {}
            Err(e) => undecided.push((&record.id, e.to_string())),
        }
    }
    // An advisory decided by one of its entries is not undecided.
    for (id, reason) in undecided {
        if !seen.contains(&id) && !out.undecided.iter().any(|u| u.id == id) {
            out.undecided.push(Undecided {
                id: id.to_owned(),
                package: p.name.clone(),
                reason,
            });
        }
    }
    out
}

/// Whether `version` is affected by this entry: `Some(fixed version of the
/// range that matched)` if so.
fn affects(
    scheme: Scheme,
    a: &Affected,
    version: &str,
) -> Result<Option<Option<String>>, version::VersionError> {
    let installed = scheme.parse(version)?;
    let mut first_error = None;
    for range in &a.ranges.ranges {
        let range_scheme = match range.kind {
            RangeType::Ecosystem => scheme,
            RangeType::Semver => Scheme::Semver,
            RangeType::Git => continue,
        };
        // A SEMVER range on a non-SemVer ecosystem needs the installed
        // version in SemVer too.
        let installed_here = if range_scheme == scheme {
            Ok(installed.clone())
        } else {
            range_scheme.parse(version)
        };
        match installed_here.and_then(|v| in_range(range_scheme, range, &v)) {
            Ok(Some(fixed)) => return Ok(Some(fixed)),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let listed = a.versions.iter().any(|v| {
        v == version
            || scheme
                .parse(v)
                .is_ok_and(|v| v.cmp(&installed) == Ordering::Equal)
    });
    if listed {
        return Ok(Some(None));
    }
    first_error.map_or(Ok(None), Err)
}

/// The OSV range evaluation; `Some(fixed)` when `v` is in the range, with
/// the fixed version that closes the interval it is in (`None` when that
/// interval ends in `last_affected` or is open).
fn in_range(
    scheme: Scheme,
    range: &Range,
    v: &Parsed,
) -> Result<Option<Option<String>>, version::VersionError> {
    // Parse every event first: a range with an unreadable bound decides
    // nothing. `introduced: "0"` is the beginning (None).
    let events = range
        .events
        .iter()
        .map(|e| match e {
            Event::Introduced(x) if x == "0" => Ok((e, None)),
            e => scheme.parse(e.value()).map(|p| (e, Some(p))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let at_or_below = |x: &Option<Parsed>| x.as_ref().is_none_or(|x| x <= v);
    let limited = events
        .iter()
        .any(|(e, x)| matches!(e, Event::Limit(_)) && at_or_below(x));
    if limited {
        return Ok(None);
    }
    let closes_after = |start: &Option<Parsed>| {
        events.iter().any(|(e, x)| {
            let Some(x) = x else { return false };
            let after_start = start.as_ref().is_none_or(|s| s <= x);
            match e {
                Event::Fixed(_) => after_start && x <= v,
                Event::LastAffected(_) => after_start && x < v,
                _ => false,
            }
        })
    };
    let open = events.iter().any(|(e, start)| {
        matches!(e, Event::Introduced(_)) && at_or_below(start) && !closes_after(start)
    });
    if !open {
        return Ok(None);
    }
    // The interval ends at the nearest closing event above the version.
    let mut end: Option<(&Event, &Parsed)> = None;
    for (e, x) in &events {
        let Some(x) = x else { continue };
        let closes = match e {
            Event::Fixed(_) => x > v,
            Event::LastAffected(_) => x >= v,
            _ => false,
        };
        if closes && end.is_none_or(|(_, y)| x < y) {
            end = Some((e, x));
        }
    }
    Ok(Some(match end {
        Some((Event::Fixed(f), _)) => Some(f.clone()),
        _ => None,
    }))
}

fn finding(record: &Record, a: &Affected, p: &Package, fixed: Option<String>) -> Finding {
    let mut aliases: Vec<String> = Vec::new();
    for alias in record.aliases.iter().chain(&record.upstream) {
        if *alias != record.id && !aliases.contains(alias) {
            aliases.push(alias.clone());
        }
    }
    let (severity, score) = severity(record, a);
    Finding {
        id: record.id.clone(),
        aliases,
        package: p.name.clone(),
        installed_version: p.version.clone(),
        fixed_version: fixed,
        severity,
        score,
        layer: p.layer.clone(),
        path: p.path.clone(),
        summary: record.summary.clone(),
    }
}

/// The severity of an advisory for this entry: a CVSS v4 vector, else a
/// v3 vector (the entry's own before the record's), else a rating in words
/// (an `Ubuntu` severity, or `severity` in the entry's `ecosystem_specific`
/// / `database_specific` or the record's `database_specific`), else
/// `Unknown`.
fn severity(record: &Record, a: &Affected) -> (Severity, Option<f32>) {
    let scores = || a.severity.iter().chain(&record.severity);
    for kind in [SeverityType::CvssV4, SeverityType::CvssV3] {
        for s in scores().filter(|s| s.kind == kind) {
            if let Ok(score) = cvss::score(&s.score) {
                return (Severity::from_score(score), Some(score as f32));
            }
        }
    }
    let words = scores()
        .filter(|s| s.kind == SeverityType::Ubuntu)
        .map(|s| s.score.as_str())
        .chain(
            [
                &a.ecosystem_specific,
                &a.database_specific,
                &record.database_specific,
            ]
            .into_iter()
            .filter_map(|v| v.as_ref()?.get("severity")?.as_str()),
        );
    for w in words {
        let s = Severity::from_word(w);
        if s != Severity::Unknown {
            return (s, None);
        }
    }
    (Severity::Unknown, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(records: &[&str]) -> Index {
        Index::build(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("{i}.json"), r.as_bytes())),
        )
        .unwrap()
    }

    fn pkg(eco: &str, name: &str, version: &str) -> Package {
        Package {
            ecosystem: eco.parse().unwrap(),
            name: name.into(),
            version: version.into(),
            source_name: None,
            source_version: None,
            purl: String::new(),
            layer: Some("sha256:l".into()),
            path: "p".into(),
        }
    }

    fn range_record(id: &str, eco: &str, name: &str, kind: &str, events: &str) -> String {
        format!(
            r#"{{"id":"{id}","modified":"m","aliases":["CVE-1"],"upstream":["CVE-1","CVE-2"],
            "affected":[{{"package":{{"ecosystem":"{eco}","name":"{name}"}},
            "ranges":[{{"type":"{kind}","events":[{events}]}}]}}]}}"#
        )
    }

    fn fixed_of(m: &Matches) -> Vec<Option<&str>> {
        m.findings
            .iter()
            .map(|f| f.fixed_version.as_deref())
            .collect()
    }

    #[test]
    fn several_intervals_report_the_one_that_matched() {
        let idx = index(&[&range_record(
            "PYSEC-2023-192",
            "PyPI",
            "urllib3",
            "ECOSYSTEM",
            r#"{"introduced":"2.0.0"},{"fixed":"2.0.6"},{"introduced":"0"},{"fixed":"1.26.17"}"#,
        )]);
        let m = |v| match_package(&idx, &pkg("PyPI", "urllib3", v));
        assert_eq!(fixed_of(&m("1.24.1")), [Some("1.26.17")]);
        assert_eq!(fixed_of(&m("2.0.1")), [Some("2.0.6")]);
        assert!(m("1.26.17").findings.is_empty());
        assert!(m("2.0.6").findings.is_empty());
        assert!(m("1.26.18").findings.is_empty(), "between the intervals");
        let f = &m("1.24.1").findings[0];
        assert_eq!(f.aliases, ["CVE-1", "CVE-2"]);
        assert_eq!(f.layer.as_deref(), Some("sha256:l"));
    }

    #[test]
    fn last_affected_and_limit() {
        let idx = index(&[
            &range_record(
                "A",
                "PyPI",
                "a",
                "ECOSYSTEM",
                r#"{"introduced":"0"},{"last_affected":"1.11.0"}"#,
            ),
            &range_record(
                "B",
                "PyPI",
                "b",
                "ECOSYSTEM",
                r#"{"introduced":"1.0"},{"limit":"2.0"}"#,
            ),
        ]);
        let m = |n, v| match_package(&idx, &pkg("PyPI", n, v));
        assert_eq!(fixed_of(&m("a", "1.11.0")), [None]);
        assert!(m("a", "1.11.1").findings.is_empty());
        assert_eq!(m("b", "1.5").findings.len(), 1);
        assert!(m("b", "2.0").findings.is_empty());
        assert!(m("b", "0.9").findings.is_empty());
    }

    #[test]
    fn debian_uses_source_package_release_and_ordering() {
        let idx = index(&[&range_record(
            "DSA-5514-1",
            "Debian:12",
            "glibc",
            "ECOSYSTEM",
            r#"{"introduced":"0"},{"fixed":"2.36-9+deb12u3"}"#,
        )]);
        let mut libc6 = pkg("Debian:12", "libc6", "2.36-9+deb12u14");
        libc6.source_name = Some("glibc".into());
        assert!(match_package(&idx, &libc6).findings.is_empty(), "u14 > u3");
        libc6.version = "2.36-9+deb12u2".into();
        let m = match_package(&idx, &libc6);
        assert_eq!(m.findings[0].package, "libc6");
        assert_eq!(fixed_of(&m), [Some("2.36-9+deb12u3")]);
        let mut other_release = libc6.clone();
        other_release.ecosystem = "Debian:11".parse().unwrap();
        assert!(match_package(&idx, &other_release).findings.is_empty());
        let mut binary_name_only = libc6.clone();
        binary_name_only.source_name = None;
        assert!(match_package(&idx, &binary_name_only).findings.is_empty());
        // The source version decides, not the binary's (epoch, binNMU).
        let mut bsdutils = pkg("Debian:12", "bsdutils", "1:2.36-9+deb12u14");
        bsdutils.source_name = Some("glibc".into());
        bsdutils.source_version = Some("2.36-9+deb12u2".into());
        assert_eq!(match_package(&idx, &bsdutils).findings.len(), 1);
    }

    #[test]
    fn alpine_uses_origin_and_branch() {
        let idx = index(&[&range_record(
            "ALPINE-CVE-2020-1967",
            "Alpine:v3.11",
            "openssl",
            "ECOSYSTEM",
            r#"{"introduced":"0"},{"fixed":"1.1.1g-r0"}"#,
        )]);
        let mut p = pkg("Alpine:v3.11", "libcrypto1.1", "1.1.1d-r3");
        p.source_name = Some("openssl".into());
        assert_eq!(fixed_of(&match_package(&idx, &p)), [Some("1.1.1g-r0")]);
        p.version = "1.1.1g-r0".into();
        assert!(match_package(&idx, &p).findings.is_empty());
        p.version = "1.1.1d-r3".into();
        p.ecosystem = "Alpine:v3.12".parse().unwrap();
        assert!(match_package(&idx, &p).findings.is_empty());
    }

    #[test]
    fn go_stdlib_by_toolchain_version_and_semver_ranges() {
        let idx = index(&[&range_record(
            "GO-2023-2185",
            "Go",
            "stdlib",
            "SEMVER",
            r#"{"introduced":"0"},{"fixed":"1.20.11"},{"introduced":"1.21.0-0"},{"fixed":"1.21.4"}"#,
        )]);
        let m = |v| match_package(&idx, &pkg("Go", "stdlib", v));
        assert_eq!(fixed_of(&m("go1.21.3")), [Some("1.21.4")]);
        assert_eq!(fixed_of(&m("go1.21rc2")), [Some("1.21.4")]);
        assert_eq!(fixed_of(&m("go1.20")), [Some("1.20.11")]);
        assert!(m("go1.21.4").findings.is_empty());
        assert!(m("go1.20.11").findings.is_empty());
    }

    #[test]
    fn git_ranges_are_ignored_and_versions_lists_match() {
        let idx = index(&[
            r#"{"id":"X","modified":"m","affected":[{"package":{"ecosystem":"PyPI","name":"x"},
            "ranges":[{"type":"GIT","repo":"r","events":[{"introduced":"0"},{"fixed":"644124ecd0b6e417c527191f866daa05a5a2056d"}]}],
            "versions":["1.0","1.1"]}]}"#,
        ]);
        let m = |v| match_package(&idx, &pkg("PyPI", "X", v));
        assert_eq!(fixed_of(&m("1.1")), [None]);
        assert_eq!(fixed_of(&m("1.1.0")), [None], "equal by PEP 440");
        assert!(m("1.2").findings.is_empty());
    }

    #[test]
    fn unreadable_versions_are_undecided_not_guessed() {
        let idx = index(&[
            &range_record(
                "A",
                "PyPI",
                "a",
                "ECOSYSTEM",
                r#"{"introduced":"0"},{"fixed":"not a version"}"#,
            ),
            &range_record(
                "B",
                "PyPI",
                "a",
                "ECOSYSTEM",
                r#"{"introduced":"0"},{"fixed":"2.0"}"#,
            ),
        ]);
        let m = match_package(&idx, &pkg("PyPI", "a", "1.0"));
        assert_eq!(m.findings.len(), 1);
        assert_eq!(m.findings[0].id, "B");
        assert_eq!(m.undecided.len(), 1);
        assert_eq!(m.undecided[0].id, "A");
        let m = match_package(&idx, &pkg("PyPI", "a", "garbage!"));
        assert!(m.findings.is_empty());
        assert_eq!(m.undecided.len(), 2);
    }

    #[test]
    fn severity_from_vectors_words_or_unknown() {
        let with = |extra: &str, affected_extra: &str| {
            let r = format!(
                r#"{{"id":"S","modified":"m",{extra}"affected":[{{"package":{{"ecosystem":"PyPI","name":"s"}},{affected_extra}
                "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}}]}}]}}]}}"#
            );
            let f = match_package(&index(&[&r]), &pkg("PyPI", "s", "1")).findings;
            (f[0].severity, f[0].score)
        };
        let v3 = r#""severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N"}],"#;
        assert_eq!(with(v3, ""), (Severity::High, Some(8.1)));
        let both = r#""severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N"},
            {"type":"CVSS_V4","score":"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],"#;
        assert_eq!(with(both, ""), (Severity::Critical, Some(9.3)));
        assert_eq!(
            with(r#""database_specific":{"severity":"MODERATE"},"#, ""),
            (Severity::Medium, None)
        );
        assert_eq!(
            with("", r#""ecosystem_specific":{"severity":"low"},"#),
            (Severity::Low, None)
        );
        assert_eq!(with("", ""), (Severity::Unknown, None));
        let v2 = r#""severity":[{"type":"CVSS_V2","score":"AV:N/AC:L/Au:N/C:P/I:P/A:P"}],"#;
        assert_eq!(with(v2, ""), (Severity::Unknown, None), "v2 is not scored");
    }

    #[test]
    fn one_finding_per_advisory_and_package() {
        let r = r#"{"id":"GO-1","modified":"m","affected":[
            {"package":{"ecosystem":"Go","name":"stdlib"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.20.11"}]}]},
            {"package":{"ecosystem":"Go","name":"stdlib"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.20.12"}]}]}]}"#;
        let m = match_package(&index(&[r]), &pkg("Go", "stdlib", "go1.20.1"));
        assert_eq!(fixed_of(&m), [Some("1.20.11")]);
    }
}
