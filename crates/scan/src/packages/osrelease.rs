//! `os-release(5)`: shell-style `KEY=value` lines, values optionally in
//! single or double quotes (with backslash escapes in double quotes).

use serde::{Deserialize, Serialize};

/// The fields that place an image's OS packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID`, `linux` when absent (as os-release(5) says).
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_codename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

/// Debian's codenames, for releases whose os-release has no `VERSION_ID`
/// (testing carries only the codename).
const DEBIAN_CODENAMES: [(&str, &str); 6] = [
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
];

impl OsRelease {
    /// Never fails: unknown lines are ignored, as every reader of the file does.
    pub fn parse(bytes: &[u8]) -> OsRelease {
        let text = String::from_utf8_lossy(bytes);
        let mut os = OsRelease {
            id: "linux".into(),
            version_id: None,
            version_codename: None,
            pretty_name: None,
        };
        for line in text.lines() {
            let Some((key, raw)) = line.trim().split_once('=') else {
                continue;
            };
            let value = unquote(raw.trim());
            match key {
                "ID" if !value.is_empty() => os.id = value,
                "VERSION_ID" => os.version_id = Some(value),
                "VERSION_CODENAME" => os.version_codename = Some(value),
                "PRETTY_NAME" => os.pretty_name = Some(value),
                _ => {}
            }
        }
        os
    }

    /// The first number of `VERSION_ID` (`12` of Debian's `12`, `9` of
    /// Rocky's `9.3`).
    pub fn major(&self) -> Option<String> {
        let v = self.version_id.as_deref()?;
        let major: String = v.chars().take_while(char::is_ascii_digit).collect();
        (!major.is_empty()).then_some(major)
    }

    /// `3.18` of Alpine's `3.18.4` (and of an edge `3.19_alpha20230901`).
    pub fn major_minor(&self) -> Option<String> {
        let v = self.version_id.as_deref()?;
        let mut parts = v.split(|c: char| !c.is_ascii_digit());
        let (major, minor) = (parts.next()?, parts.next()?);
        (!major.is_empty() && !minor.is_empty()).then(|| format!("{major}.{minor}"))
    }

    /// Debian's release number: `VERSION_ID`'s major, else the codename's.
    pub fn debian_release(&self) -> Option<String> {
        self.major().or_else(|| {
            let name = self.version_codename.as_deref()?;
            DEBIAN_CODENAMES
                .iter()
                .find(|(c, _)| *c == name)
                .map(|(_, n)| (*n).to_owned())
        })
    }

    /// `id:version` for ecosystems this crate does not match (`ubuntu:22.04`).
    pub fn label(&self) -> String {
        match &self.version_id {
            Some(v) => format!("{}:{v}", self.id),
            None => self.id.clone(),
        }
    }
}

fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.extend(chars.next());
            } else {
                out.push(c);
            }
        }
        out
    } else if let Some(inner) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.to_owned()
    } else {
        v.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files() {
        let debian = OsRelease::parse(
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        );
        assert_eq!(debian.id, "debian");
        assert_eq!(debian.debian_release().as_deref(), Some("12"));
        assert_eq!(
            debian.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );

        let trixie = OsRelease::parse(b"PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nNAME=\"Debian GNU/Linux\"\nVERSION_CODENAME=trixie\nID=debian\n");
        assert_eq!(trixie.debian_release().as_deref(), Some("13"));

        let alpine = OsRelease::parse(b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME=\"Alpine Linux v3.18\"\n");
        assert_eq!(alpine.major_minor().as_deref(), Some("3.18"));

        let rocky = OsRelease::parse(b"NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n");
        assert_eq!(
            (rocky.id.as_str(), rocky.major().as_deref()),
            ("rocky", Some("9"))
        );

        let odd = OsRelease::parse(b"# comment\nID='x'\nPRETTY_NAME=\"a \\\"b\\\"\"\n\xff\xfe\n");
        assert_eq!(odd.id, "x");
        assert_eq!(odd.pretty_name.as_deref(), Some("a \"b\""));
        assert_eq!(OsRelease::parse(b"").id, "linux");
    }
}
