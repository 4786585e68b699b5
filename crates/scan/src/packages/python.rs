//! Python distributions: `*.dist-info/METADATA` (wheels, pip),
//! `*.egg-info/PKG-INFO` and distutils' single-file `*.egg-info`. All are
//! the core metadata format: RFC 822 headers up to the first blank line.
//! The name is kept as written (`Jinja2`); matching and the package URL
//! use its PEP 503 normal form (`jinja2`).

use super::{Found, Kind};

pub(super) fn parse(bytes: &[u8]) -> Result<Vec<Found>, String> {
    let text = String::from_utf8_lossy(bytes);
    let header = |name: &str| {
        text.lines()
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| !l.starts_with([' ', '\t']))
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .filter(|v| !v.is_empty())
    };
    match (header("Name"), header("Version")) {
        (Some(name), Some(version)) => Ok(vec![Found::new(Kind::Python, name, version)]),
        (None, _) => Err("no Name header: not Python core metadata".into()),
        (Some(name), None) => Err(format!("{name}: no Version header")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_only() {
        let got = parse(
            b"Metadata-Version: 2.1\nName: PyYAML\nVersion: 5.3\nSummary: YAML\n\nName: not-this\n",
        )
        .unwrap();
        assert_eq!(
            (got[0].name.as_str(), got[0].version.as_str()),
            ("PyYAML", "5.3")
        );
        assert!(parse(b"Metadata-Version: 2.1\n\nName: body\nVersion: 1\n").is_err());
        assert!(parse(b"Name: x\n").unwrap_err().contains("no Version"));
    }
}
