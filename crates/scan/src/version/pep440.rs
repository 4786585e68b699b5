//! Python package versions (PEP 440), parsed and ordered as the `packaging`
//! library does, and PyPI project names normalised as PEP 503 says.
//!
//! `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, with the spellings PEP 440
//! normalises (`alpha`, `beta`, `c`, `pre`, `preview`, `rev`, `r`, `-N` as a
//! post-release, `-`/`_`/`.` separators, a `v` prefix, any case). Order:
//! epoch, release (trailing zeros ignored), then `.devN` of a final release
//! < pre-releases < the final release < post-releases, dev releases before
//! their pre/post release, and a local version after its public one.
//! Numbers are limited to `u64`; longer ones are refused.

use std::cmp::Ordering;
use std::fmt;

use super::VersionError;

/// A parsed PEP 440 version.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u64,
    release: Vec<u64>,
    pre: Option<(Pre, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<Local>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pre {
    A,
    B,
    Rc,
}

/// A local version segment; numbers sort after strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Local {
    Str(String),
    Num(u64),
}

/// PEP 503's normalised project name: lowercase, runs of `-`, `_` and `.`
/// as one `-` (`PyYAML` → `pyyaml`, `zope.interface` → `zope-interface`).
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// A cursor over the lowercased version text.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn eat_sep(&mut self) -> bool {
        matches!(self.peek(), Some(b'-' | b'_' | b'.')) && {
            self.i += 1;
            true
        }
    }

    /// A run of digits, or `None` (and nothing consumed) if there is none.
    fn number(&mut self) -> Result<Option<u64>, &'static str> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return Ok(None);
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "not text")?;
        digits.parse().map(Some).map_err(|_| "number too big")
    }

    /// An optional separator followed by one of `labels`; backs off if the
    /// separator is not followed by a label.
    fn label(&mut self, labels: &[&'static str]) -> Option<&'static str> {
        let start = self.i;
        self.eat_sep();
        for l in labels {
            if self.eat(l) {
                return Some(l);
            }
        }
        self.i = start;
        None
    }

    /// The optional `[sep]N` after a pre, post or dev label (0 if absent).
    /// The grammar makes both optional on their own, so `1.0a.` is `1.0a0`.
    fn label_number(&mut self) -> Result<u64, &'static str> {
        self.eat_sep();
        Ok(self.number()?.unwrap_or(0))
    }
}

/// Parses a version as `packaging.version.Version` does.
pub fn parse(input: &str) -> Result<Version, VersionError> {
    let lower = input.trim().to_ascii_lowercase();
    parse_lower(lower.as_bytes()).map_err(|reason| VersionError::new("PEP 440", input, reason))
}

fn parse_lower(s: &[u8]) -> Result<Version, &'static str> {
    let mut c = Cursor { s, i: 0 };
    c.eat("v");
    let mut first = c.number()?.ok_or("no release number")?;
    let mut epoch = 0;
    if c.eat("!") {
        epoch = first;
        first = c.number()?.ok_or("no release number after the epoch")?;
    }
    let mut release = vec![first];
    while c.peek() == Some(b'.') && c.s.get(c.i + 1).is_some_and(u8::is_ascii_digit) {
        c.i += 1;
        release.push(c.number()?.ok_or("no release number")?);
    }
    let mut pre = None;
    if let Some(l) = c.label(&["alpha", "a", "beta", "b", "preview", "pre", "c", "rc"]) {
        let kind = match l {
            "alpha" | "a" => Pre::A,
            "beta" | "b" => Pre::B,
            _ => Pre::Rc,
        };
        pre = Some((kind, c.label_number()?));
    }
    let mut post = None;
    if c.peek() == Some(b'-') && c.s.get(c.i + 1).is_some_and(u8::is_ascii_digit) {
        c.i += 1;
        post = c.number()?;
    } else if c.label(&["post", "rev", "r"]).is_some() {
        post = Some(c.label_number()?);
    }
    let mut dev = None;
    if c.label(&["dev"]).is_some() {
        dev = Some(c.label_number()?);
    }
    let mut local = Vec::new();
    if c.eat("+") {
        let text = std::str::from_utf8(&c.s[c.i..]).map_err(|_| "not text")?;
        for part in text.split(['-', '_', '.']) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err("invalid local version");
            }
            local.push(if part.bytes().all(|b| b.is_ascii_digit()) {
                Local::Num(part.parse().map_err(|_| "number too big")?)
            } else {
                Local::Str(part.to_owned())
            });
        }
        c.i = c.s.len();
    }
    if c.i != c.s.len() {
        return Err("unexpected text");
    }
    Ok(Version {
        epoch,
        release,
        pre,
        post,
        dev,
        local,
    })
}

/// Compares two version strings by PEP 440; see the module docs of
/// [`super`] for how unparseable text is placed.
pub fn cmp(a: &str, b: &str) -> Ordering {
    super::total(parse, a, b)
}

/// Where the pre-release part sorts: a dev release of a final release
/// before any pre-release, a final release after all of them.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum PreKey {
    DevOfFinal,
    Pre(Pre, u64),
    Final,
}

impl Version {
    fn trimmed_release(&self) -> &[u64] {
        let n = self
            .release
            .iter()
            .rposition(|&x| x != 0)
            .map_or(0, |i| i + 1);
        &self.release[..n]
    }

    fn pre_key(&self) -> PreKey {
        match (self.pre, self.post, self.dev) {
            (Some((p, n)), _, _) => PreKey::Pre(p, n),
            (None, None, Some(_)) => PreKey::DevOfFinal,
            _ => PreKey::Final,
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| self.trimmed_release().cmp(other.trimmed_release()))
            .then_with(|| self.pre_key().cmp(&other.pre_key()))
            .then_with(|| self.post.cmp(&other.post))
            // No dev part sorts after every dev release.
            .then_with(|| (self.dev.is_none(), self.dev).cmp(&(other.dev.is_none(), other.dev)))
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equality is PEP 440's: `1.0` equals `1.0.0`, `1.0alpha1` equals `1.0a1`.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// The normalised form (`1.0.0-RC.1` prints as `1.0.0rc1`).
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}!", self.epoch)?;
        }
        for (i, n) in self.release.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{n}")?;
        }
        if let Some((p, n)) = self.pre {
            let label = match p {
                Pre::A => "a",
                Pre::B => "b",
                Pre::Rc => "rc",
            };
            write!(f, "{label}{n}")?;
        }
        if let Some(n) = self.post {
            write!(f, ".post{n}")?;
        }
        if let Some(n) = self.dev {
            write!(f, ".dev{n}")?;
        }
        for (i, part) in self.local.iter().enumerate() {
            f.write_str(if i == 0 { "+" } else { "." })?;
            match part {
                Local::Str(s) => f.write_str(s)?,
                Local::Num(n) => write!(f, "{n}")?,
            }
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
        // PEP 440's own example of a full ordering ("Summary of permitted
        // suffixes and relative ordering"), then the data traps.
        let ordered = [
            "1.dev0",
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ];
        for w in ordered.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
        laws::table(
            cmp,
            &[
                "5.2b1 < 5.3",
                "5.2b1 < 5.2",
                "5.3 > 5.2b1",
                "1.0.post1 > 1.0",
                "1.0.dev0 < 1.0a1",
                "1.26.17 > 1.24.1",
                "2.0.6 > 1.26.17",
                "2.10 < 2.10.1",
                "2.10 > 2.9",
                "1.0 = 1.0.0",
                "1.0 = 1.0.0.0",
                "1!1.0 > 2.0",
                "1.0a1 = 1.0alpha1",
                "1.0b2 = 1.0-beta-2",
                "1.0rc1 = 1.0c1",
                "1.0rc1 = 1.0pre1",
                "1.0rc1 = 1.0preview1",
                "1.0.post1 = 1.0-1",
                "1.0.post1 = 1.0r1",
                "1.0.post1 = 1.0rev1",
                "1.0.post0 = 1.0.post",
                "1.0a = 1.0a0",
                "1.0.dev = 1.0.dev0",
                "v1.0 = 1.0",
                "1.0RC1 = 1.0rc1",
                "1.0+ubuntu-1 = 1.0+ubuntu.1",
                "1.0+1 > 1.0+abc",
                "1.0+abc < 1.0+abc.1",
                "1.0 < 1.0+local",
                "1.0.post1 > 1.0+local",
                "0.33.5.1 > 0.33.5",
                "0.99.0rc4 < 0.99.0",
            ],
        );
    }

    #[test]
    fn normalises() {
        for (input, want) in [
            ("1.0.0-RC.1", "1.0.0rc1"),
            ("v1.0", "1.0"),
            ("1.0-1", "1.0.post1"),
            ("1.0_beta_2", "1.0b2"),
            ("1!2.0.DEV3", "1!2.0.dev3"),
            ("1.0+Ubuntu_1", "1.0+ubuntu.1"),
            ("1.0a.", "1.0a0"),
            (" 01.02 ", "1.2"),
        ] {
            assert_eq!(parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "a",
            "1.",
            "1..0",
            "1.0+",
            "1.0+a..b",
            "1.0-",
            "1.0x",
            "french toast",
            "1.0.post1.post2",
            "1.0 1",
            "99999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name("Jinja2"), "jinja2");
        assert_eq!(normalize_name("PyYAML"), "pyyaml");
        assert_eq!(normalize_name("zope.interface"), "zope-interface");
        assert_eq!(normalize_name("Foo__Bar-.baz"), "foo-bar-baz");
    }

    fn version() -> impl Strategy<Value = String> {
        (
            prop::option::of(0u64..3),
            prop::collection::vec(0u64..12, 1..4),
            prop::option::of((prop::sample::select(vec!["a", "b", "rc"]), 0u64..3)),
            prop::option::of(0u64..3),
            prop::option::of(0u64..3),
            prop::option::of("[a-z0-9]{1,3}(\\.[a-z0-9]{1,3}){0,2}"),
        )
            .prop_map(|(e, rel, pre, post, dev, local)| {
                let mut s = e.map(|e| format!("{e}!")).unwrap_or_default();
                let rel: Vec<String> = rel.iter().map(u64::to_string).collect();
                s.push_str(&rel.join("."));
                if let Some((l, n)) = pre {
                    s.push_str(&format!("{l}{n}"));
                }
                if let Some(n) = post {
                    s.push_str(&format!(".post{n}"));
                }
                if let Some(n) = dev {
                    s.push_str(&format!(".dev{n}"));
                }
                if let Some(l) = local {
                    s.push('+');
                    s.push_str(&l);
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
