//! dpkg's database: `var/lib/dpkg/status`, and distroless images'
//! `var/lib/dpkg/status.d/<package>` files (one control stanza each).
//!
//! deb822 stanzas separated by blank lines; `Field: value` lines, with
//! continuation lines starting with a space or tab. The file is written by
//! dpkg alone, so a line that is neither is corruption, and the file is
//! refused rather than half read.
//!
//! Installed means the `Status` field's third word is `installed`
//! (`install ok installed`, and also `hold ok installed` and `deinstall ok
//! installed`: held, or selected for removal, their files are on disk).
//! `config-files`, `half-installed` and the rest are not. Distroless
//! `status.d` stanzas carry no `Status`: being there means installed.

use super::{Found, Kind};

pub(super) fn parse(bytes: &[u8], status_d: bool) -> Result<Vec<Found>, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut stanza: Vec<(&str, &str)> = Vec::new();
    let mut start = 1;
    for (n, line) in text.lines().chain([""]).enumerate() {
        if line.trim().is_empty() {
            if !stanza.is_empty() {
                if let Some(f) = package(&stanza, status_d)
                    .map_err(|e| format!("stanza at line {start}: {e}"))?
                {
                    out.push(f);
                }
                stanza.clear();
            }
            start = n + 2;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if stanza.is_empty() {
                return Err(format!("line {}: a continuation line with no field", n + 1));
            }
            continue;
        }
        match line.split_once(':') {
            Some((field, value)) if !field.is_empty() && !field.contains(char::is_whitespace) => {
                stanza.push((field, value.trim()))
            }
            _ => {
                let shown: String = line.chars().take(40).collect();
                return Err(format!("line {}: not a field: {shown:?}", n + 1));
            }
        }
    }
    Ok(out)
}

/// The installed package a stanza describes, if it is installed.
fn package(stanza: &[(&str, &str)], status_d: bool) -> Result<Option<Found>, String> {
    let field = |name: &str| {
        stanza
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let name = field("Package").ok_or("no Package field")?;
    let installed = match field("Status") {
        Some(status) => {
            let words: Vec<&str> = status.split_whitespace().collect();
            words.len() == 3 && words[2] == "installed"
        }
        None => status_d,
    };
    if !installed {
        return Ok(None);
    }
    let version = field("Version")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("installed package {name} has no Version"))?;
    // `Source: util-linux (2.38.1-5+deb12u3)`, or just the name; absent
    // when the source package has the binary's name.
    let (source, explicit) = match field("Source") {
        Some(s) => match s.split_once(char::is_whitespace) {
            Some((n, v)) => {
                let v = v.trim();
                let v = v
                    .strip_prefix('(')
                    .and_then(|v| v.strip_suffix(')'))
                    .ok_or_else(|| {
                        format!("package {name}: Source {s:?} is not `name (version)`")
                    })?;
                (n, Some(v.trim()))
            }
            None => (s, None),
        },
        None => (name, None),
    };
    // Without an explicit source version, the binary's is the source's,
    // less a binNMU suffix (`1.47.0-2+b2` was rebuilt from `1.47.0-2`).
    let source_version = explicit.unwrap_or_else(|| strip_binnmu(version));
    Ok(Some(Found {
        arch: field("Architecture").map(str::to_owned),
        source_name: Some(source.to_owned()),
        source_version: (source_version != version).then(|| source_version.to_owned()),
        ..Found::new(Kind::Dpkg, name, version)
    }))
}

pub(crate) fn strip_binnmu(version: &str) -> &str {
    match version.rsplit_once("+b") {
        Some((v, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => v,
        _ => version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: bsdutils
Essential: yes
Status: install ok installed
Priority: required
Architecture: amd64
Source: util-linux (2.38.1-5+deb12u3)
Version: 1:2.38.1-5+deb12u3
Description: basic utilities from 4.4BSD-Lite
 This package contains the bare minimum of BSD utilities.
 .
 More lines.

Package: e2fsprogs
Status: install ok installed
Architecture: amd64
Version: 1.47.0-2+b2

Package: libgone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: held
Status: hold ok installed
Architecture: all
Source: heldsrc
Version: 2.0-1+b1
";

    #[test]
    fn installed_stanzas_with_source_mapping() {
        let got = parse(STATUS.as_bytes(), false).unwrap();
        let view: Vec<_> = got
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.version.as_str(),
                    f.source_name.as_deref(),
                    f.source_version.as_deref(),
                    f.arch.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (
                    "bsdutils",
                    "1:2.38.1-5+deb12u3",
                    Some("util-linux"),
                    Some("2.38.1-5+deb12u3"),
                    Some("amd64")
                ),
                (
                    "e2fsprogs",
                    "1.47.0-2+b2",
                    Some("e2fsprogs"),
                    Some("1.47.0-2"),
                    Some("amd64")
                ),
                (
                    "held",
                    "2.0-1+b1",
                    Some("heldsrc"),
                    Some("2.0-1"),
                    Some("all")
                ),
            ]
        );
    }

    #[test]
    fn status_d_stanzas_have_no_status() {
        let got = parse(
            b"Package: libc6\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\nSource: glibc\n",
            true,
        )
        .unwrap();
        assert_eq!(got[0].source_name.as_deref(), Some("glibc"));
        assert_eq!(got[0].source_version, None);
        assert!(parse(b"Package: libc6\nVersion: 1\n", false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_files_are_errors() {
        for (bad, says) in [
            (
                &b"Package: a\nStatus: install ok installed\nthis is not a field\n"[..],
                "line 3: not a field",
            ),
            (b" continuation first\n", "line 1: a continuation"),
            (
                b"Package: a\nStatus: install ok installed\n",
                "has no Version",
            ),
            (b"Status: install ok installed\nVersion: 1\n", "no Package"),
            (
                b"Package: a\nStatus: install ok installed\nVersion: 1\nSource: b 1.0\n",
                "not `name (version)`",
            ),
            (b"\x00\x01\x02garbage", "not a field"),
        ] {
            let e = parse(bad, false).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
