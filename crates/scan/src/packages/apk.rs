//! apk-tools' database, `lib/apk/db/installed`: stanzas of `K:value` lines
//! (one-letter keys) separated by blank lines. `P` name, `V` version, `A`
//! architecture, `o` origin: the source package that Alpine's advisories
//! name (`libcrypto3` comes from `openssl`).

use super::{Found, Kind};

pub(super) fn parse(bytes: &[u8]) -> Result<Vec<Found>, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut current: Option<Found> = None;
    let mut arch = None;
    let mut origin = None;
    let finish = |current: &mut Option<Found>,
                  arch: &mut Option<String>,
                  origin: &mut Option<String>,
                  line: usize,
                  out: &mut Vec<Found>|
     -> Result<(), String> {
        if let Some(mut f) = current.take() {
            if f.version.is_empty() {
                return Err(format!("line {line}: package {} has no V:", f.name));
            }
            f.arch = arch.take();
            f.source_name = origin.take();
            out.push(f);
        } else if arch.is_some() || origin.is_some() {
            return Err(format!("line {line}: a stanza without P:"));
        }
        Ok(())
    };
    for (n, line) in text.lines().chain([""]).enumerate() {
        if line.is_empty() {
            finish(&mut current, &mut arch, &mut origin, n + 1, &mut out)?;
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b':' || !b[0].is_ascii_alphabetic() {
            let shown: String = line.chars().take(40).collect();
            return Err(format!("line {}: not a K:value line: {shown:?}", n + 1));
        }
        let value = &line[2..];
        match b[0] {
            b'P' => {
                if current.is_some() {
                    return Err(format!("line {}: a second P: in one stanza", n + 1));
                }
                current = Some(Found::new(Kind::Apk, value, ""));
            }
            b'V' => match current.as_mut() {
                Some(f) => f.version = value.to_owned(),
                None => return Err(format!("line {}: V: before P:", n + 1)),
            },
            b'A' => arch = Some(value.to_owned()),
            b'o' => origin = Some(value.to_owned()),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_errors() {
        let db = "C:Q1abc=\nP:libcrypto1.1\nV:1.1.1g-r0\nA:x86_64\nS:1234\nI:2345\nT:Crypto library from openssl\nU:https://www.openssl.org\nL:OpenSSL\no:openssl\nm:Natanael Copa\nt:1587385561\nc:abcdef\nD:so:libc.musl-x86_64.so.1\np:so:libcrypto.so.1.1=1.1\nF:lib\nR:libcrypto.so.1.1\na:0:0:755\nZ:Q1xyz=\n\nP:musl\nV:1.1.24-r2\nA:x86_64\no:musl\n";
        let got = parse(db.as_bytes()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].name.as_str(),
                got[0].version.as_str(),
                got[0].source_name.as_deref(),
                got[0].arch.as_deref()
            ),
            ("libcrypto1.1", "1.1.1g-r0", Some("openssl"), Some("x86_64"))
        );
        assert!(parse(b"P:a\n\n").unwrap_err().contains("has no V:"));
        assert!(parse(b"P:a\nnonsense\n").unwrap_err().contains("line 2"));
        assert!(parse(b"V:1\n").unwrap_err().contains("V: before P:"));
    }
}
