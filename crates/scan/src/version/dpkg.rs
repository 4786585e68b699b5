//! Debian package versions, ordered as Debian policy §5.6.12 and dpkg's
//! `verrevcmp` do: `[epoch:]upstream[-revision]`, the epoch numerically,
//! then upstream and revision each by alternating non-digit runs (where `~`
//! sorts before everything, even the end of the string, and letters before
//! other characters) and digit runs (numerically).
//!
//! The traps this matters for are in Debian's own security data: a fix in
//! `2.36-9+deb12u3` is older than the installed `2.36-9+deb12u14`, and a
//! backport `252.38-1~deb12u1` is older than `252.38-1`.

use std::cmp::Ordering;
use std::fmt;

use super::VersionError;

/// A parsed Debian version.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u32,
    upstream: String,
    /// Empty when the version has no revision (dpkg compares it as empty).
    revision: String,
}

/// Parses a version the way dpkg's `parseversion` does, refusing what it
/// reports as an error or a warning (an upstream part not starting with a
/// digit, characters outside the policy's sets): such text in an advisory or
/// a status file is damage, not a version to decide a match on.
pub fn parse(input: &str) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new("dpkg", input, reason);
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.contains(char::is_whitespace) {
        return Err(err("embedded whitespace"));
    }
    let (epoch, rest) = match s.split_once(':') {
        Some((e, rest)) => {
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("epoch is not a number"));
            }
            let epoch = e.parse::<u32>().map_err(|_| err("epoch too big"))?;
            if epoch > i32::MAX as u32 {
                return Err(err("epoch too big"));
            }
            if rest.is_empty() {
                return Err(err("nothing after the epoch"));
            }
            (epoch, rest)
        }
        None => (0, s),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((_, "")) => return Err(err("empty revision")),
        Some((u, r)) => (u, r),
        None => (rest, ""),
    };
    if upstream.is_empty() {
        return Err(err("empty upstream version"));
    }
    if !upstream.as_bytes()[0].is_ascii_digit() {
        return Err(err("upstream version does not start with a digit"));
    }
    if !upstream
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".+~-:".contains(&b))
    {
        return Err(err("invalid character in upstream version"));
    }
    if !revision
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b))
    {
        return Err(err("invalid character in revision"));
    }
    Ok(Version {
        epoch,
        upstream: upstream.to_owned(),
        revision: revision.to_owned(),
    })
}

/// Compares two version strings by dpkg's ordering; see the module docs of
/// [`super`] for how unparseable text is placed.
pub fn cmp(a: &str, b: &str) -> Ordering {
    super::total(parse, a, b)
}

/// The weight of one character in a non-digit run: `~` below the end of the
/// string, letters next, then everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp` on one part (upstream or revision).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equality is dpkg's: `1.0` equals `0:1.0` and `1.0-0`.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
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
    fn policy_and_data_traps() {
        laws::table(
            cmp,
            &[
                // vulndata's README: the false-positive traps of bookworm.
                "2.36-9+deb12u14 > 2.36-9+deb12u3",
                "252.38-1~deb12u1 < 252.38-1",
                "252.39-1~deb12u2 > 252.38-1~deb12u1",
                "1:2.38.1-5+deb12u3 > 2.38.1-5+deb12u3",
                "2.38.1-5+deb12u3 > 2.38.1-5+deb12u1",
                "1.47.0-2 < 1.47.0-2+b2",
                "2.36.1-8+deb11u2 < 2.36.1-8+deb11u10",
                "1.0~rc1-1 < 1.0-1",
                // Policy §5.6.12 examples and dpkg's own test suite.
                "1.0 = 1.0-0",
                "0:1.0 = 1.0",
                "1.0~~ < 1.0~~a",
                "1.0~~a < 1.0~",
                "1.0~ < 1.0",
                "1.0 < 1.0a",
                "1.0a < 1.0+",
                "1.0+ < 1.0.",
                "1.2.3 < 1.2.3a",
                "1.2a < 1.2+",
                "1.001 = 1.1",
                "1.10 > 1.9",
                "1:0.1 > 9.9",
                "2:1.0 > 1:9.9",
                "1.0-1 < 1.0-1.1",
                "1.0-1ubuntu1 > 1.0-1",
                "1.0-1~bpo1 < 1.0-1",
                "3.0.0-1 > 3.0-1",
                "1.0a-1 < 1.0b-1",
            ],
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            " ",
            "a1.0",
            "1.0 1",
            ":1.0",
            "x:1.0",
            "1:",
            "1.0-",
            "-1",
            "1.0_1",
            "1.0-1:2",
            "99999999999:1",
            "1.0-a/b",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse("1:2.38.1-5+deb12u3").is_ok());
        assert!(
            parse("1:1.2:3-4").is_ok(),
            "colons are allowed after an epoch"
        );
        assert!(
            parse("1.2-3-4").is_ok(),
            "hyphens are allowed before the revision"
        );
    }

    fn version() -> impl Strategy<Value = String> {
        let part = "[0-9][0-9a-z.+~]{0,6}";
        (
            prop::option::of(0u32..3),
            part,
            prop::option::of("[0-9a-z.+~]{1,5}"),
        )
            .prop_map(|(e, u, r)| {
                let mut s = e.map(|e| format!("{e}:")).unwrap_or_default();
                s.push_str(&u);
                if let Some(r) = r {
                    s.push('-');
                    s.push_str(&r);
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
            let printed = v.to_string();
            let again = parse(&printed).unwrap();
            prop_assert_eq!(&again, &v);
            prop_assert_eq!(again.to_string(), printed);
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse(&s);
            let _ = cmp(&s, "1.0");
        }
    }
}
