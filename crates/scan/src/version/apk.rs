//! Alpine package versions, ordered as apk-tools' `version.c` does:
//! `digit{.digit}...{letter}{_suffix{number}}...{~hash}{-rN}`.
//!
//! Numbers compare numerically, except that a number with a leading zero
//! after a dot compares as text against the other (the Gentoo rule, so
//! `1.02 < 1.1`); one lowercase letter may follow the numbers; suffixes
//! `_alpha < _beta < _pre < _rc` sort before the bare version and
//! `_cvs < _svn < _git < _hg < _p` after it; `~hash` is a commit; `-rN` is
//! the package revision.

use std::cmp::Ordering;
use std::fmt;

use super::VersionError;

/// A validated Alpine version (kept as text: comparison walks its tokens).
#[derive(Debug, Clone)]
pub struct Version(String);

/// The token kinds, in the order they may appear (and apk-tools' order for
/// deciding between two versions that differ in where they end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    CommitHash,
    RevisionNo,
    End,
    Invalid,
}

/// Suffix ranks; `NONE` is where a version without a suffix sits.
const SUFFIXES: [&str; 9] = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"];
const SUFFIX_NONE: usize = 4;

fn suffix_rank(s: &[u8]) -> Option<usize> {
    let i = SUFFIXES.iter().position(|x| x.as_bytes() == s)?;
    Some(if i < SUFFIX_NONE { i } else { i + 1 })
}

#[derive(Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    /// The token's text (digits, the letter, the suffix name or the hash).
    text: &'a [u8],
    number: u64,
    suffix: usize,
}

struct Tokens<'a> {
    rest: &'a [u8],
    token: Token<'a>,
}

impl<'a> Tokens<'a> {
    fn new(s: &'a str) -> Self {
        let mut t = Tokens {
            rest: s.as_bytes(),
            token: Token {
                kind: Kind::InitialDigit,
                text: &[],
                number: 0,
                suffix: 0,
            },
        };
        t.digits();
        t
    }

    fn span(&mut self, pred: fn(&u8) -> bool) -> &'a [u8] {
        let n = self.rest.iter().take_while(|b| pred(b)).count();
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        head
    }

    fn digits(&mut self) {
        let text = self.span(u8::is_ascii_digit);
        self.token.text = text;
        // apk-tools accumulates in a uint64_t; wrapping keeps its behaviour
        // on absurd lengths instead of panicking.
        self.token.number = text.iter().fold(0u64, |n, d| {
            n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
        });
        if text.is_empty() {
            self.token.kind = Kind::Invalid;
        }
    }

    /// apk-tools' `token_next`: the next token's kind from its first byte,
    /// checking that it may follow the previous one.
    fn advance(&mut self) {
        let prev = self.token.kind;
        let Some(&c) = self.rest.first() else {
            self.token.kind = Kind::End;
            return;
        };
        let kind = match c {
            b'a'..=b'z' if prev <= Kind::Digit => {
                self.token.text = &self.rest[..1];
                self.rest = &self.rest[1..];
                Kind::Letter
            }
            b'.' | b'0'..=b'9' if c.is_ascii_digit() || prev <= Kind::Digit => {
                if c == b'.' {
                    self.rest = &self.rest[1..];
                }
                let kind = match prev {
                    Kind::InitialDigit | Kind::Digit => Kind::Digit,
                    Kind::Suffix => Kind::SuffixNo,
                    _ => Kind::Invalid,
                };
                if kind != Kind::Invalid {
                    self.token.kind = kind;
                    self.digits();
                    return;
                }
                kind
            }
            b'_' if prev <= Kind::SuffixNo => {
                self.rest = &self.rest[1..];
                let name = self.span(u8::is_ascii_lowercase);
                self.token.text = name;
                match suffix_rank(name) {
                    Some(rank) => {
                        self.token.suffix = rank;
                        Kind::Suffix
                    }
                    None => Kind::Invalid,
                }
            }
            b'~' if prev < Kind::CommitHash => {
                self.rest = &self.rest[1..];
                let hash = self.span(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
                self.token.text = hash;
                if hash.is_empty() {
                    Kind::Invalid
                } else {
                    Kind::CommitHash
                }
            }
            b'-' if prev < Kind::RevisionNo => {
                if self.rest.get(1) != Some(&b'r') {
                    Kind::Invalid
                } else {
                    self.rest = &self.rest[2..];
                    self.token.kind = Kind::RevisionNo;
                    self.digits();
                    return;
                }
            }
            _ => Kind::Invalid,
        };
        self.token.kind = kind;
    }
}

/// apk-tools' `token_cmp` for two tokens of the same kind.
fn token_cmp(a: &Token, b: &Token) -> Ordering {
    match a.kind {
        Kind::Digit if a.text.first() == Some(&b'0') || b.text.first() == Some(&b'0') => {
            a.text.cmp(b.text)
        }
        Kind::Digit | Kind::InitialDigit | Kind::SuffixNo | Kind::RevisionNo => {
            a.number.cmp(&b.number)
        }
        Kind::Letter => a.text.cmp(b.text),
        Kind::Suffix => a.suffix.cmp(&b.suffix),
        _ => a.text.cmp(b.text),
    }
}

fn compare(a: &str, b: &str) -> Ordering {
    let (mut ta, mut tb) = (Tokens::new(a), Tokens::new(b));
    while ta.token.kind == tb.token.kind && ta.token.kind < Kind::End {
        let r = token_cmp(&ta.token, &tb.token);
        if r != Ordering::Equal {
            return r;
        }
        ta.advance();
        tb.advance();
    }
    let (ka, kb) = (ta.token.kind, tb.token.kind);
    if ka == kb {
        return Ordering::Equal;
    }
    // Equal so far: the longer version is newer unless what it has more of
    // is a pre-release suffix.
    if ka == Kind::Suffix && ta.token.suffix < SUFFIX_NONE {
        return Ordering::Less;
    }
    if kb == Kind::Suffix && tb.token.suffix < SUFFIX_NONE {
        return Ordering::Greater;
    }
    kb.cmp(&ka)
}

/// Accepts what apk-tools' `apk_version_validate` accepts.
pub fn parse(input: &str) -> Result<Version, VersionError> {
    let mut t = Tokens::new(input);
    while t.token.kind < Kind::End {
        t.advance();
    }
    if t.token.kind == Kind::End {
        Ok(Version(input.to_owned()))
    } else {
        Err(VersionError::new("apk", input, "not an apk version"))
    }
}

/// Compares two version strings by apk's ordering; see the module docs of
/// [`super`] for how unparseable text is placed.
pub fn cmp(a: &str, b: &str) -> Ordering {
    super::total(parse, a, b)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.0, &other.0)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equality is apk's "neither is newer": `01.2` equals `1.2` (the first
/// number is always numeric), `1.02` does not equal `1.2`.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::laws;
    use proptest::prelude::*;

    #[test]
    fn known_pairs() {
        laws::table(
            cmp,
            &[
                "1.0 < 1.0.1",
                "1.0_alpha < 1.0_beta",
                "1.0_beta < 1.0_pre",
                "1.0_pre < 1.0_rc",
                "1.0_rc1 < 1.0",
                "1.0 < 1.0_cvs",
                "1.0_cvs < 1.0_svn",
                "1.0_svn < 1.0_git",
                "1.0_git < 1.0_hg",
                "1.0_hg < 1.0_p",
                "1.0_p1 < 1.0_p2",
                "1.0_p9 < 1.0_p10",
                "1.0 < 1.0-r1",
                "1.0-r1 < 1.0-r2",
                "1.0-r9 < 1.0-r10",
                "1.0-r1 < 1.0.1",
                "1.0a < 1.0b",
                "1.0 < 1.0a",
                "1.0z < 1.0.1",
                "1.2 < 1.10",
                "1.02 < 1.1",
                "1.01 < 1.010",
                "1.1.1k-r0 < 1.1.1l-r0",
                "1.1.1g-r0 > 1.1.1d-r3",
                "2.9.10-r1 < 2.9.10-r5",
                "0.28.2-r12 > 0.28.2-r9",
                "1.0_alpha1 < 1.0_alpha2",
                "1.0_rc1-r1 < 1.0_rc2",
                "1.0_pre1 < 1.0-r0",
                "1.0~abc > 1.0",
                "1.0~abc-r1 > 1.0~abc",
                "1.0~abc < 1.0~abd",
                "7.64.0-r2 < 7.64.0-r3",
                "1.0.0_pre20191002222144-r0 < 1.0.0_pre20210530193627-r0",
                "6.0_p1 > 6.0",
                "3.1.4-r0 = 3.1.4-r0",
            ],
        );
    }

    #[test]
    fn validates_like_apk() {
        for good in [
            "1.2",
            "0.1_pre2",
            "0.1_pre2~1234abcd",
            "0.1_p1_pre2",
            "0.1_alpha1_pre2",
            "1.1.1k-r3",
            "20050718-r2",
        ] {
            assert!(parse(good).is_ok(), "{good} refused");
        }
        for bad in [
            "", "a", "1.0bc", "1.0_foo", "1.0-r", "1.0-1", "1..0", "1.0_", "1.0~", "1.0 ", "v1.0",
            "1.0-r1.2", "1.0a1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn version() -> impl Strategy<Value = String> {
        (
            "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}",
            prop::option::of("[a-c]"),
            prop::collection::vec(
                (prop::sample::select(SUFFIXES.to_vec()), "[0-9]{0,2}"),
                0..3,
            ),
            prop::option::of("[0-9a-f]{1,4}"),
            prop::option::of(0u32..12),
        )
            .prop_map(|(nums, letter, sufs, hash, rev)| {
                let mut s = nums;
                s.extend(letter);
                for (name, n) in sufs {
                    s.push('_');
                    s.push_str(name);
                    s.push_str(&n);
                }
                if let Some(h) = hash {
                    s.push('~');
                    s.push_str(&h);
                }
                if let Some(r) = rev {
                    s.push_str(&format!("-r{r}"));
                }
                s
            })
    }

    proptest! {
        #[test]
        fn generated_versions_parse(a in version()) {
            prop_assert!(parse(&a).is_ok(), "{}", a);
        }

        #[test]
        fn total_order(a in version(), b in version(), c in version()) {
            laws::total_order(cmp, &a, &b, &c);
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse(&s);
            let _ = cmp(&s, "1.0");
        }
    }
}
