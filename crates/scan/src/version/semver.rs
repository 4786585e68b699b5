//! SemVer 2.0 (npm, crates.io, Go modules, OSV `SEMVER` ranges), with Go's
//! spellings: a `v` prefix, `+incompatible` (build metadata, so ignored for
//! precedence), and pseudo-versions such as
//! `v0.0.0-20210101000000-abcdef123456`, which are ordinary pre-releases and
//! so order by the SemVer rules, as Go's own `semver.Compare` orders them.
//!
//! Precedence (§11): major, minor, patch numerically; a pre-release before
//! its release; pre-release identifiers left to right, numeric ones by value
//! and before alphanumeric ones, which compare by ASCII; more identifiers
//! win when all before are equal. Build metadata never counts.

use std::cmp::Ordering;
use std::fmt;

use super::VersionError;

/// A parsed SemVer 2.0 version.
#[derive(Debug, Clone)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<Ident>,
    build: Vec<String>,
}

/// A pre-release identifier; numeric ones sort first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ident {
    Num(u64),
    Alpha(String),
}

fn number(s: &str) -> Result<u64, &'static str> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number");
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err("leading zero");
    }
    s.parse().map_err(|_| "number too big")
}

fn identifiers(s: &str) -> Result<Vec<&str>, &'static str> {
    let ids: Vec<&str> = s.split('.').collect();
    if ids
        .iter()
        .any(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err("invalid identifier");
    }
    Ok(ids)
}

/// Parses `[v]MAJOR.MINOR.PATCH[-PRE][+BUILD]` strictly (no leading zeros,
/// no missing parts, no surrounding text).
pub fn parse(input: &str) -> Result<Version, VersionError> {
    parse_inner(input).map_err(|reason| VersionError::new("SemVer", input, reason))
}

fn parse_inner(input: &str) -> Result<Version, &'static str> {
    let s = input.strip_prefix('v').unwrap_or(input);
    let (s, build) = match s.split_once('+') {
        Some((s, b)) => (s, identifiers(b)?),
        None => (s, Vec::new()),
    };
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, identifiers(p)?),
        None => (s, Vec::new()),
    };
    let mut parts = core.split('.');
    let (Some(major), Some(minor), Some(patch), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not MAJOR.MINOR.PATCH");
    };
    let pre = pre
        .into_iter()
        .map(|id| {
            if id.bytes().all(|b| b.is_ascii_digit()) {
                number(id).map(Ident::Num)
            } else {
                Ok(Ident::Alpha(id.to_owned()))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Version {
        major: number(major)?,
        minor: number(minor)?,
        patch: number(patch)?,
        pre,
        build: build.into_iter().map(str::to_owned).collect(),
    })
}

/// Compares two version strings by SemVer precedence; see the module docs
/// of [`super`] for how unparseable text is placed.
pub fn cmp(a: &str, b: &str) -> Ordering {
    super::total(parse, a, b)
}

/// The SemVer form of the Go toolchain version a binary records
/// (`go1.21.3` → `1.21.3`, `go1.21` → `1.21.0`, `go1.21rc2` →
/// `1.21.0-rc.2`), which is how the Go vulnerability database writes the
/// `stdlib` and `toolchain` ranges. Anything after the first space (build
/// tags such as `X:boringcrypto`) is dropped; development builds
/// (`devel …`) have no release to match and give `None`.
pub fn go_toolchain_version(tag: &str) -> Option<String> {
    let tag = tag.split_whitespace().next()?.strip_prefix("go")?;
    if tag == "1" {
        return Some("1.0.0".to_owned());
    }
    let (release, pre) = match tag.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&tag[..i], Some(&tag[i..])),
        None => (tag, None),
    };
    let nums: Vec<&str> = release.split('.').collect();
    if !(2..=3).contains(&nums.len()) || nums.iter().any(|n| number(n).is_err()) {
        return None;
    }
    let mut v = nums.join(".");
    if nums.len() == 2 {
        v.push_str(".0");
    }
    if let Some(pre) = pre {
        let (label, n) = ["beta", "rc"]
            .iter()
            .find_map(|l| pre.strip_prefix(l).map(|n| (l, n)))?;
        number(n).ok()?;
        v.push_str(&format!("-{label}.{n}"));
    }
    Some(v)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equality is precedence: `1.0.0+a` equals `1.0.0+b`.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                Ident::Num(n) => write!(f, "{n}")?,
                Ident::Alpha(s) => f.write_str(s)?,
            }
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build.join("."))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::laws;
    use proptest::prelude::*;

    #[test]
    fn spec_order() {
        // SemVer 2.0 §11's examples, in order.
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for w in ordered.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
        laws::table(
            cmp,
            &[
                "1.0.0+build = 1.0.0",
                "1.0.0+a = 1.0.0+b",
                "v1.2.3 = 1.2.3",
                "1.10.0 > 1.9.0",
                "1.0.0-2 < 1.0.0-10",
                "1.0.0-a10 < 1.0.0-a9",
                "1.0.0-1 < 1.0.0-a",
                "0.0.0-0 < 0.0.0",
                "1.21.0-0 < 1.21.0-rc.1",
                "1.21.0-rc.1 < 1.21.0",
                // Go: +incompatible is build metadata.
                "v2.0.0+incompatible = v2.0.0",
                "v2.0.0+incompatible < v2.0.1",
                // Go pseudo-versions are pre-releases of the next patch.
                "v0.0.0-20210101000000-abcdef123456 < v0.0.1",
                "v0.0.0-20190101000000-abcdef123456 < v0.0.0-20210101000000-abcdef123456",
                "v1.2.3 < v1.2.4-0.20191109021931-daa7c04131f5",
                "v1.2.4-0.20191109021931-daa7c04131f5 < v1.2.4",
                "v1.2.4-pre < v1.2.4-pre.0.20191109021931-daa7c04131f5",
            ],
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3+",
            "1.2.3-a..b",
            "1.2.3-a_b",
            "vv1.2.3",
            " 1.2.3",
            "1.2.x",
            "99999999999999999999.0.0",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(
            parse("1.2.3-0a").is_ok(),
            "alphanumeric ids may start with 0"
        );
    }

    #[test]
    fn go_toolchain() {
        for (tag, want) in [
            ("go1.21.3", Some("1.21.3")),
            ("go1.21", Some("1.21.0")),
            ("go1.20.11", Some("1.20.11")),
            ("go1.21rc2", Some("1.21.0-rc.2")),
            ("go1.18beta1", Some("1.18.0-beta.1")),
            ("go1", Some("1.0.0")),
            ("go1.22.1 X:boringcrypto", Some("1.22.1")),
            ("devel go1.23-abcdef", None),
            ("go1.x", None),
            ("1.21.3", None),
        ] {
            assert_eq!(go_toolchain_version(tag).as_deref(), want, "{tag}");
        }
        assert_eq!(
            cmp(&go_toolchain_version("go1.21rc2").unwrap(), "1.21.0-0"),
            Ordering::Greater
        );
    }

    fn version() -> impl Strategy<Value = String> {
        (
            0u64..3,
            0u64..3,
            0u64..3,
            prop::option::of("(0|[1-9][0-9]?|[a-z][a-z0-9-]{0,3})(\\.(0|[1-9]|[a-z-]{1,3})){0,2}"),
            prop::option::of("[a-z0-9]{1,3}"),
        )
            .prop_map(|(x, y, z, pre, build)| {
                let mut s = format!("{x}.{y}.{z}");
                if let Some(p) = pre {
                    s.push('-');
                    s.push_str(&p);
                }
                if let Some(b) = build {
                    s.push('+');
                    s.push_str(&b);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn total_order(a in version(), b in version(), c in version()) {
            laws::total_order(cmp, &a, &b, &c);
        }

        #[test]
        fn format_is_stable(a in version()) {
            let v = parse(&a).unwrap();
            prop_assert_eq!(v.to_string(), a.clone());
            prop_assert_eq!(parse(&format!("v{a}")).unwrap().to_string(), a);
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse(&s);
            let _ = cmp(&s, "1.0.0");
        }
    }
}
