//! Each ecosystem's own version ordering.
//!
//! Advisories say "fixed in X" in the ecosystem's terms, and each ecosystem
//! orders versions its own way: `1.0~rc1 < 1.0` for dpkg, `1.0_rc1 < 1.0`
//! for apk, `1.0rc1 < 1.0` for PEP 440, `1.0.0-rc.1 < 1.0.0` for SemVer.
//! String or "natural" ordering gets every one of them wrong somewhere, so
//! each module here follows its ecosystem's reference implementation.
//!
//! Every module offers `parse`, which refuses what its ecosystem would not
//! accept as a version (as a [`VersionError`], never a panic), a `Version`
//! type whose `Ord` is the ecosystem's ordering, and `cmp(a, b)` on strings.
//! `cmp` is total: text that does not parse sorts before every version, and
//! such texts among themselves by bytes, so it can back a sort. The matcher
//! uses [`Scheme::compare`] instead, which reports unparseable input rather
//! than deciding anything on it.

use std::cmp::Ordering;

pub mod apk;
pub mod dpkg;
pub mod maven;
pub mod pep440;
pub mod rpm;
pub mod semver;

/// A version text that its ecosystem's rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {input:?}: {reason}")]
pub struct VersionError {
    pub scheme: &'static str,
    pub input: String,
    pub reason: &'static str,
}

impl VersionError {
    fn new(scheme: &'static str, input: &str, reason: &'static str) -> Self {
        VersionError {
            scheme,
            input: input.to_owned(),
            reason,
        }
    }
}

/// The version orderings, one per family of ecosystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Debian and its derivatives (`dpkg --compare-versions`).
    Dpkg,
    /// Alpine (`apk version -t`).
    Apk,
    /// Red Hat, Rocky, Alma, Fedora, SUSE (`rpmvercmp` on epoch:version-release).
    Rpm,
    /// PyPI (PEP 440).
    Pep440,
    /// npm, crates.io, Go modules, and OSV `SEMVER` ranges (SemVer 2.0).
    Semver,
    /// Maven (`ComparableVersion`).
    Maven,
}

/// A version parsed by one [`Scheme`]. Versions of different schemes are
/// never compared with each other (the derived order would rank them by
/// scheme, which means nothing).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Parsed {
    Dpkg(dpkg::Version),
    Apk(apk::Version),
    Rpm(rpm::Version),
    Pep440(pep440::Version),
    Semver(semver::Version),
    Maven(maven::Version),
}

impl Scheme {
    /// Parses a version by this scheme's rules.
    pub fn parse(self, v: &str) -> Result<Parsed, VersionError> {
        Ok(match self {
            Scheme::Dpkg => Parsed::Dpkg(dpkg::parse(v)?),
            Scheme::Apk => Parsed::Apk(apk::parse(v)?),
            Scheme::Rpm => Parsed::Rpm(rpm::parse(v)?),
            Scheme::Pep440 => Parsed::Pep440(pep440::parse(v)?),
            Scheme::Semver => Parsed::Semver(semver::parse(v)?),
            Scheme::Maven => Parsed::Maven(maven::parse(v)?),
        })
    }

    /// Compares two versions, or says which one its ecosystem refuses.
    pub fn compare(self, a: &str, b: &str) -> Result<Ordering, VersionError> {
        Ok(self.parse(a)?.cmp(&self.parse(b)?))
    }
}

/// The total order behind each module's `cmp`: versions by their own
/// ordering, anything unparseable first.
fn total<V: Ord>(parse: fn(&str) -> Result<V, VersionError>, a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Err(_), Ok(_)) => Ordering::Less,
        (Ok(_), Err(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Order-law checks shared by every module's property tests.
#[cfg(test)]
pub(crate) mod laws {
    use std::cmp::Ordering;

    /// Reflexivity and antisymmetry of `cmp` on two values.
    pub fn antisymmetric<F: Fn(&str, &str) -> Ordering>(cmp: F, a: &str, b: &str) {
        assert_eq!(cmp(a, a), Ordering::Equal, "{a} = {a}");
        assert_eq!(cmp(a, b), cmp(b, a).reverse(), "{a} vs {b}");
    }

    /// Reflexivity, antisymmetry and transitivity of `cmp` on three values.
    pub fn total_order<F: Fn(&str, &str) -> Ordering>(cmp: F, a: &str, b: &str, c: &str) {
        antisymmetric(&cmp, a, b);
        let (ab, bc, ac) = (cmp(a, b), cmp(b, c), cmp(a, c));
        if ab != Ordering::Greater && bc != Ordering::Greater {
            assert_ne!(ac, Ordering::Greater, "{a} <= {b} <= {c} but {a} > {c}");
        }
        if ab == Ordering::Equal && bc == Ordering::Equal {
            assert_eq!(ac, Ordering::Equal, "{a} = {b} = {c} but {a} != {c}");
        }
        if ab == Ordering::Less && bc != Ordering::Greater {
            assert_eq!(ac, Ordering::Less, "{a} < {b} <= {c} but not {a} < {c}");
        }
    }

    /// Checks a table of `"a op b"` lines (`op` one of `<`, `=`, `>`).
    pub fn table<F: Fn(&str, &str) -> Ordering>(cmp: F, lines: &[&str]) {
        for line in lines {
            let parts: Vec<&str> = line.split(' ').collect();
            let [a, op, b] = parts[..] else {
                panic!("bad table line {line:?}");
            };
            let want = match op {
                "<" => Ordering::Less,
                "=" => Ordering::Equal,
                ">" => Ordering::Greater,
                _ => panic!("bad operator in {line:?}"),
            };
            assert_eq!(cmp(a, b), want, "{line}");
            assert_eq!(cmp(b, a), want.reverse(), "{line} (reversed)");
        }
    }
}
