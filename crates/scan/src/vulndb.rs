//! The advisory index: OSV records by (ecosystem, normalised package name).
//!
//! Built from `(path, bytes)` pairs (a directory walk or a zip, done by the
//! caller), so this stays free of I/O. A malformed record refuses the whole
//! build, naming the file: an import is all or nothing, and the database
//! already serving stays active. Withdrawn records are counted and left out.
//! The index keeps what matching and findings need; `details` is dropped (it
//! is most of the bytes, and stays in the imported data).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::osv::{self, Affected, Ecosystem, Record, RecordError};

/// What an import read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Records indexed (withdrawn ones excluded).
    pub records: usize,
    /// Records per ecosystem family (`Debian`, `PyPI`, ...); a record with
    /// entries for several families counts once in each.
    pub per_ecosystem: BTreeMap<String, usize>,
    /// Withdrawn records, not indexed.
    pub withdrawn: usize,
    /// Ranges dropped as malformed (their records kept).
    pub skipped_ranges: usize,
}

/// The in-memory index.
#[derive(Debug, Clone, Default)]
pub struct Index {
    records: Vec<Record>,
    /// (ecosystem, normalised name) → (record, affected entry) positions.
    by_package: HashMap<(Ecosystem, String), Vec<(u32, u32)>>,
    stats: Stats,
}

/// The stored form: the records and stats; the lookup map is rebuilt on load.
#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    stats: Stats,
    records: Vec<Record>,
}

const FORMAT: u32 = 1;

/// A stored index that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a stored advisory index: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored advisory index has format {0}, this build reads format {FORMAT}")]
    Format(u32),
}

impl Index {
    /// Builds the index from OSV JSON records, one record per item.
    pub fn build<I, P, B>(files: I) -> Result<Index, RecordError>
    where
        I: IntoIterator<Item = (P, B)>,
        P: AsRef<str>,
        B: AsRef<[u8]>,
    {
        let mut index = Index::default();
        for (path, bytes) in files {
            let mut record = osv::parse_record(path.as_ref(), bytes.as_ref())?;
            index.stats.skipped_ranges += record
                .affected
                .iter()
                .map(Affected::skipped_ranges)
                .sum::<usize>();
            if record.withdrawn.is_some() {
                index.stats.withdrawn += 1;
                continue;
            }
            record.details = None;
            index.add(record);
        }
        Ok(index)
    }

    fn add(&mut self, record: Record) {
        let n = self.records.len() as u32;
        let mut families: Vec<String> = Vec::new();
        for (i, a) in record.affected.iter().enumerate() {
            let Some(p) = &a.package else { continue };
            let family = p.ecosystem.family();
            if !families.contains(&family) {
                families.push(family);
            }
            let key = (p.ecosystem.clone(), p.ecosystem.normalize_name(&p.name));
            self.by_package.entry(key).or_default().push((n, i as u32));
        }
        for f in families {
            *self.stats.per_ecosystem.entry(f).or_default() += 1;
        }
        self.stats.records += 1;
        self.records.push(record);
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The affected entries naming this package in this ecosystem (`name`
    /// as the ecosystem compares names), with their records.
    pub fn lookup<'a>(
        &'a self,
        ecosystem: &Ecosystem,
        name: &str,
    ) -> impl Iterator<Item = (&'a Record, &'a Affected)> + 'a {
        let key = (ecosystem.clone(), ecosystem.normalize_name(name));
        self.by_package
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|&(r, a)| {
                let record = &self.records[r as usize];
                (record, &record.affected[a as usize])
            })
    }

    /// The stored form (JSON), for the server to keep and reload.
    pub fn to_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct StoredRef<'a> {
            format: u32,
            stats: &'a Stats,
            records: &'a [Record],
        }
        serde_json::to_vec(&StoredRef {
            format: FORMAT,
            stats: &self.stats,
            records: &self.records,
        })
        .expect("records serialise: they were read from JSON")
    }

    /// Loads what [`Index::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Index, LoadError> {
        let stored: Stored = serde_json::from_slice(bytes)?;
        if stored.format != FORMAT {
            return Err(LoadError::Format(stored.format));
        }
        let mut index = Index::default();
        for record in stored.records {
            index.add(record);
        }
        index.stats.withdrawn = stored.stats.withdrawn;
        index.stats.skipped_ranges = stored.stats.skipped_ranges;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, eco: &str, name: &str, extra: &str) -> (String, Vec<u8>) {
        (
            format!("{id}.json"),
            format!(
                r#"{{"id":"{id}","modified":"m",{extra}"affected":[{{"package":{{"ecosystem":"{eco}","name":"{name}"}},
                "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"2"}}]}}]}}]}}"#
            )
            .into_bytes(),
        )
    }

    #[test]
    fn indexes_by_ecosystem_and_normalised_name() {
        let index = Index::build([
            rec("PYSEC-1", "PyPI", "PyYAML", ""),
            rec(
                "PYSEC-2",
                "PyPI",
                "pyyaml",
                r#""withdrawn":"2024-01-01T00:00:00Z","#,
            ),
            rec("DSA-1", "Debian:12", "glibc", ""),
            rec("DSA-2", "Debian:11", "glibc", ""),
        ])
        .unwrap();
        let ids = |e: &str, n: &str| -> Vec<String> {
            index
                .lookup(&e.parse().unwrap(), n)
                .map(|(r, _)| r.id.clone())
                .collect()
        };
        assert_eq!(ids("PyPI", "pyyaml"), ["PYSEC-1"]);
        assert_eq!(ids("PyPI", "PyYAML"), ["PYSEC-1"]);
        assert_eq!(ids("Debian:12", "glibc"), ["DSA-1"]);
        assert!(ids("Debian:13", "glibc").is_empty());
        assert!(ids("Debian:12", "libc6").is_empty());
        let stats = index.stats();
        assert_eq!(stats.records, 3);
        assert_eq!(stats.withdrawn, 1);
        assert_eq!(stats.per_ecosystem["Debian"], 2);
        assert_eq!(stats.per_ecosystem["PyPI"], 1);
    }

    #[test]
    fn a_malformed_record_refuses_the_build() {
        let mut files = vec![rec("A", "PyPI", "a", "")];
        files.push((
            "dir/broken.json".into(),
            b"{\"id\": \"B\", \"modified\": ".to_vec(),
        ));
        let err = Index::build(files).unwrap_err();
        assert_eq!(err.source_name, "dir/broken.json");
    }

    #[test]
    fn stored_form_round_trips() {
        let index = Index::build([
            rec("PYSEC-1", "PyPI", "PyYAML", r#""details":"long text","#),
            rec("PYSEC-2", "PyPI", "x", r#""withdrawn":"w","#),
        ])
        .unwrap();
        let bytes = index.to_bytes();
        let loaded = Index::from_bytes(&bytes).unwrap();
        assert_eq!(loaded.stats(), index.stats());
        let (r, _) = loaded.lookup(&Ecosystem::PyPI, "pyyaml").next().unwrap();
        assert_eq!(r.id, "PYSEC-1");
        assert_eq!(r.details, None);
        assert!(Index::from_bytes(b"{\"format\": 2, \"stats\": {}, \"records\": []}").is_err());
        assert!(Index::from_bytes(b"garbage").is_err());
    }
}

// STUB until the zip reader lands (scan-sbom-input): every `*.json` member.
pub fn read_zip<R: std::io::Read + std::io::Seek>(
    reader: R,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| e.to_string())?;
        if f.is_file() && f.name().ends_with(".json") {
            let name = f.name().to_string();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
            files.push((name, bytes));
        }
    }
    Ok(files)
}

// STUB: the newest `modified` of the records.
pub fn newest_modified(_files: &[(String, Vec<u8>)]) -> Option<i64> {
    None
}
