//! The layers of ARCHITECTURE.md, checked on the source: which of the
//! server's modules may name which (`crate::…` and `super::…` paths outside
//! comments and tests). The pure vocabulary (`berth-oci`) is a crate of its
//! own, so the compiler keeps it free of I/O; this test keeps the rest of
//! the map true: no module reaches up, and no two modules depend on each
//! other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and the modules it may use. `server` (the
/// composition root) may use everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("events", &[]),
    ("config", &["oci"]),
    ("meta", &["events", "oci"]),
    ("workers", &["meta"]),
    ("storage", &["config", "oci"]),
    ("journal", &["events", "meta", "workers"]),
    ("audit", &["events", "meta", "workers"]),
    (
        "registry",
        &["events", "journal", "meta", "oci", "storage", "workers"],
    ),
    ("policy", &["events", "meta", "oci", "registry", "workers"]),
    ("auth", &["config", "events", "journal", "meta", "oci"]),
    ("metrics", &["meta"]),
    (
        "http",
        &[
            "audit", "auth", "config", "events", "journal", "meta", "metrics", "oci", "policy",
            "registry", "scanning", "workers",
        ],
    ),
    ("migrate", &["config", "meta", "storage"]),
    (
        "scanning",
        &["events", "meta", "oci", "registry", "workers"],
    ),
    ("cli", &[]),
];

/// The code of a file without comments and its test module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a path expression after `crate::` names.
fn named(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for part in code.split("crate::").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in paths {
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        if ["lib", "main", "server"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let used = named(&code(&text));
        let ok = allowed
            .get(module.as_str())
            .unwrap_or_else(|| panic!("{module} is not in the layer table: add it"));
        for name in &used {
            if name != &module {
                assert!(
                    ok.contains(&name.as_str()),
                    "{} uses crate::{name}, which the layer of {module} may not use",
                    rel.display()
                );
            }
        }
        uses.entry(module).or_default().extend(used);
    }
    // And the table itself has no cycle, so neither has the code: every
    // module is reached again from none of the modules it may use.
    fn reaches(allowed: &BTreeMap<&str, &[&str]>, from: &str, to: &str, depth: usize) -> bool {
        depth < ALLOWED.len()
            && allowed.get(from).is_some_and(|deps| {
                deps.iter()
                    .any(|d| *d == to || reaches(allowed, d, to, depth + 1))
            })
    }
    for (module, _) in ALLOWED {
        assert!(
            !reaches(&allowed, module, module, 0),
            "{module} depends on itself through the layers it uses"
        );
    }
    assert!(uses.contains_key("registry") && uses.contains_key("http"));
}
