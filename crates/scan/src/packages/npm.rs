//! npm packages: `node_modules/<name>/package.json` and
//! `node_modules/@scope/<name>/package.json`. Other `package.json` files
//! (a package's own tests, nested build folders) are not packages.

use serde::Deserialize;

use super::{Found, Kind};

/// Whether `path` is the manifest at the root of an installed package.
pub(super) fn is_package_root(path: &str) -> bool {
    let parts: Vec<&str> = path.rsplit('/').take(4).collect();
    match parts.as_slice() {
        ["package.json", name, "node_modules", ..] => !name.starts_with('@'),
        ["package.json", _, scope, "node_modules"] => scope.starts_with('@'),
        _ => false,
    }
}

#[derive(Deserialize)]
struct Manifest {
    name: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
}

/// `None` for a manifest without a string name and version (nothing to
/// match, not an error).
pub(super) fn parse(bytes: &[u8]) -> Option<Result<Vec<Found>, String>> {
    let m: Manifest = match serde_json::from_slice(bytes) {
        Ok(m) => m,
        Err(e) => return Some(Err(format!("not JSON: {e}"))),
    };
    match (m.name, m.version) {
        (Some(serde_json::Value::String(n)), Some(serde_json::Value::String(v)))
            if !n.is_empty() && !v.is_empty() =>
        {
            Some(Ok(vec![Found::new(Kind::Npm, n, v)]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_manifests() {
        assert!(is_package_root("usr/lib/node_modules/npm/package.json"));
        assert!(is_package_root(
            "app/node_modules/a/node_modules/@s/b/package.json"
        ));
        assert!(!is_package_root("app/node_modules/@s/package.json"));
        assert!(!is_package_root("app/node_modules/a/test/package.json"));
        let got = parse(br#"{"name":"@s/b","version":"1.2.3","x":[1]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(got[0].name, "@s/b");
        assert!(parse(br#"{"name":"a"}"#).is_none());
        assert!(parse(br#"{"type":"module"}"#).is_none());
        assert!(parse(br#"{"name":"a","version":1}"#).is_none());
        assert!(parse(b"{oops").unwrap().is_err());
    }
}
