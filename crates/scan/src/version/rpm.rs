//! RPM versions (`[epoch:]version[-release]`), ordered as rpm's
//! `rpmVersionCompare` does: the epoch numerically (absent is 0), then
//! version and release each by `rpmvercmp`.
//!
//! `rpmvercmp` splits at anything that is not a letter or digit, compares
//! digit runs numerically and letter runs by bytes, a digit run beats a
//! letter run, `~` sorts before everything (even the end: `1.0~rc1 < 1.0`)
//! and `^` after the end but before anything else (`1.0 < 1.0^git1 < 1.0.1`).

use std::cmp::Ordering;
use std::fmt;

use super::VersionError;

/// A parsed RPM epoch:version-release.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u32,
    version: String,
    /// Empty when the text has no release.
    release: String,
}

/// Parses `[epoch:]version[-release]` as rpm splits an EVR (release after
/// the last `-`), accepting in version and release the characters rpmbuild
/// does: letters, digits and `._+~^`.
pub fn parse(input: &str) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new("rpm", input, reason);
    let (epoch, rest) = match input.split_once(':') {
        Some((e, rest)) => {
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("epoch is not a number"));
            }
            (e.parse().map_err(|_| err("epoch too big"))?, rest)
        }
        None => (0, input),
    };
    let (version, release) = match rest.rsplit_once('-') {
        Some((_, "")) => return Err(err("empty release")),
        Some((v, r)) => (v, r),
        None => (rest, ""),
    };
    if version.is_empty() {
        return Err(err("empty version"));
    }
    let allowed = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~^".contains(&b))
    };
    if !allowed(version) || !allowed(release) {
        return Err(err("invalid character"));
    }
    Ok(Version {
        epoch,
        version: version.to_owned(),
        release: release.to_owned(),
    })
}

/// Compares two EVR strings by rpm's ordering; see the module docs of
/// [`super`] for how unparseable text is placed.
pub fn cmp(a: &str, b: &str) -> Ordering {
    super::total(parse, a, b)
}

/// rpm's `rpmvercmp`.
fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && separator(a[i]) {
            i += 1;
        }
        while j < b.len() && separator(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(first), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = first.is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let seg_a_len = a[i..].iter().take_while(|c| class(c)).count();
        let seg_b_len = b[j..].iter().take_while(|c| class(c)).count();
        let (mut sa, mut sb) = (&a[i..i + seg_a_len], &b[j..j + seg_b_len]);
        i += seg_a_len;
        j += seg_b_len;
        if sb.is_empty() {
            // Segments of different types: numeric is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if numeric {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            let by_len = sa.len().cmp(&sb.len());
            if by_len != Ordering::Equal {
                return by_len;
            }
        }
        let r = sa.cmp(sb);
        if r != Ordering::Equal {
            return r;
        }
    }
    // All segments equal: whichever has characters left is newer.
    match (i < a.len(), j < b.len()) {
        (false, false) => Ordering::Equal,
        (false, true) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| rpmvercmp(&self.version, &other.version))
            .then_with(|| rpmvercmp(&self.release, &other.release))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equality is rpm's: `1.0` equals `1_0` and `0:1.0`.
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
        f.write_str(&self.version)?;
        if !self.release.is_empty() {
            write!(f, "-{}", self.release)?;
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
    fn rpmvercmp_pairs() {
        // Cases from rpm's own test suite (tests/rpmvercmp.at).
        laws::table(
            rpmvercmp,
            &[
                "1.0 = 1.0",
                "1.0 < 2.0",
                "2.0.1 > 2.0",
                "2.0.1a > 2.0.1",
                "5.5p1 < 5.5p2",
                "5.5p10 > 5.5p1",
                "10xyz < 10.1xyz",
                "xyz10 < xyz10.1",
                "xyz.4 < 8",
                "xyz.4 < 2",
                "5.5p2 < 5.6p1",
                "5.6p1 < 6.5p1",
                "6.0.rc1 > 6.0",
                "10b2 > 10a1",
                "1.0aa > 1.0a",
                "10.0001 = 10.1",
                "10.0001 < 10.0039",
                "4.999.9 < 5.0",
                "20101121 > 20101120",
                "1.0~rc1 < 1.0",
                "1.0~rc1 < 1.0~rc2",
                "1.0~rc1~git123 < 1.0~rc1",
                "1.0^ > 1.0",
                "1.0^git1 < 1.0.1",
                "1.0^git1 < 1.0^git2",
                "1.0^git1~pre < 1.0^git1",
                "1.0^20160101 < 1.0.1",
                "1.0~rc1^git1 > 1.0~rc1",
                "1.0~rc1^git1 < 1.0",
                "a+ = a_",
                "+a = _a",
                "1b.fc17 < 1.fc17",
                "1.1.α = 1.1.α",
            ],
        );
    }

    #[test]
    fn evr_pairs() {
        laws::table(
            cmp,
            &[
                "1:1.0-1 > 2.0-1",
                "0:1.0-1 = 1.0-1",
                "1.0-1.el9 < 1.0-2.el9",
                "2.34-60.el9 < 2.34-60.el9_2.7",
                "1.0-1.el8_5 > 1.0-1.el8",
                "3.0.7-16.el9_2 < 3.0.7-17.el9",
            ],
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", ":1.0", "a:1.0", "1.0-", "-1", "1.0 1", "1.0/2", "1:"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    fn version() -> impl Strategy<Value = String> {
        (
            prop::option::of(0u32..3),
            "[0-9a-z.~^_]{1,8}",
            prop::option::of("[0-9a-z.~^]{1,5}"),
        )
            .prop_map(|(e, v, r)| {
                let mut s = e.map(|e| format!("{e}:")).unwrap_or_default();
                s.push_str(&v);
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
            let again = parse(&v.to_string()).unwrap();
            prop_assert_eq!(&again, &v);
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse(&s);
            let _ = cmp(&s, "1.0");
        }
    }
}
