//! Package URLs read back (<https://github.com/package-url/purl-spec>):
//! `pkg:type/namespace/name@version?qualifiers#subpath`, parsed as the
//! spec's "how to parse" section says, right to left, each component
//! percent-decoded.

use std::collections::BTreeMap;

/// A parsed package URL. `type` and qualifier keys are lowercased; the
/// rest is as decoded (no type-specific normalisation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    pub ty: String,
    /// The namespace's segments joined with `/` (`@babel` for npm,
    /// `github.com/x` for Go, the group for Maven), if any.
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<String>,
    pub qualifiers: BTreeMap<String, String>,
    pub subpath: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("package URL {purl:?}: {reason}")]
pub struct PurlError {
    pub purl: String,
    pub reason: &'static str,
}

impl std::str::FromStr for Purl {
    type Err = PurlError;

    fn from_str(s: &str) -> Result<Purl, PurlError> {
        let err = |reason| PurlError {
            purl: s.chars().take(200).collect(),
            reason,
        };
        let decode = |part: &str| decode(part).ok_or_else(|| err("bad percent-encoding"));
        let (rest, subpath) = match s.rsplit_once('#') {
            Some((r, sub)) => {
                let segments = sub
                    .split('/')
                    .filter(|p| !matches!(*p, "" | "." | ".."))
                    .map(decode)
                    .collect::<Result<Vec<_>, _>>()?;
                (r, (!segments.is_empty()).then(|| segments.join("/")))
            }
            None => (s, None),
        };
        let (rest, query) = match rest.rsplit_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let mut qualifiers = BTreeMap::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value = decode(value)?;
            if !key.is_empty() && !value.is_empty() {
                qualifiers.insert(key.to_ascii_lowercase(), value);
            }
        }
        let (scheme, rest) = rest.split_once(':').ok_or_else(|| err("no scheme"))?;
        if !scheme.eq_ignore_ascii_case("pkg") {
            return Err(err("the scheme is not `pkg`"));
        }
        let rest = rest.trim_matches('/');
        let (ty, rest) = rest.split_once('/').ok_or_else(|| err("no name"))?;
        if ty.is_empty()
            || !ty
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b))
        {
            return Err(err("a bad type"));
        }
        let (rest, version) = match rest.rsplit_once('@') {
            Some((r, v)) => (r, Some(decode(v)?).filter(|v| !v.is_empty())),
            None => (rest, None),
        };
        let (namespace, name) = match rest.trim_end_matches('/').rsplit_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, rest),
        };
        let name = decode(name)?;
        if name.is_empty() {
            return Err(err("no name"));
        }
        let namespace = match namespace {
            Some(ns) => {
                let segments = ns
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(decode)
                    .collect::<Result<Vec<_>, _>>()?;
                (!segments.is_empty()).then(|| segments.join("/"))
            }
            None => None,
        };
        Ok(Purl {
            ty: ty.to_ascii_lowercase(),
            namespace,
            name,
            version,
            qualifiers,
            subpath,
        })
    }
}

/// Percent-decoding into UTF-8; `None` for a bad escape or bad UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Purl {
        s.parse().unwrap()
    }

    #[test]
    fn components_decoded_right_to_left() {
        let u = p("pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=util-linux%402.38.1-5");
        assert_eq!(u.ty, "deb");
        assert_eq!(u.namespace.as_deref(), Some("debian"));
        assert_eq!(u.name, "bsdutils");
        assert_eq!(u.version.as_deref(), Some("1:2.38.1-5+deb12u3"));
        assert_eq!(u.qualifiers["upstream"], "util-linux@2.38.1-5");
        assert_eq!(u.qualifiers["distro"], "debian-12");

        let npm = p("pkg:npm/%40babel/core@7.22.0");
        assert_eq!(npm.namespace.as_deref(), Some("@babel"));
        assert_eq!(npm.name, "core");
        let go = p("pkg:golang/github.com/gorilla/websocket@v1.5.0#sub/./dir");
        assert_eq!(go.namespace.as_deref(), Some("github.com/gorilla"));
        assert_eq!(go.subpath.as_deref(), Some("sub/dir"));
        // The spec's leniencies: `pkg://`, an upper-case type and key, empty
        // qualifier values dropped.
        let m = p("pkg://Maven/org.apache/commons-lang3@3.12.0?Type=jar&classifier=");
        assert_eq!((m.ty.as_str(), m.qualifiers.len()), ("maven", 1));
        assert_eq!(m.qualifiers["type"], "jar");
        assert_eq!(p("pkg:pypi/requests").version, None);
    }

    #[test]
    fn refuses_what_is_not_a_purl() {
        for bad in [
            "requests@2.0",
            "http:pypi/requests",
            "pkg:pypi",
            "pkg:pypi/@1.0",
            "pkg:py%20pi/x@1",
            "pkg:pypi/x%zz@1",
            "pkg:pypi/x%ff@1",
        ] {
            assert!(bad.parse::<Purl>().is_err(), "{bad}");
        }
    }
}
