//! The advisory index: OSV records by (ecosystem, normalised package name).
//!
//! Built from `(path, bytes)` pairs: a directory walk done by the caller, or
//! [`read_zip`] of the zip osv.dev publishes (`all.zip`), so this stays free
//! of file I/O. A malformed record refuses the whole build, naming the file:
//! an import is all or nothing, and the database already serving stays
//! active. Withdrawn records are counted and left out. The index keeps what
//! matching and findings need; `details` is dropped (it is most of the
//! bytes, and stays in the imported data).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek};

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
    /// The newest `modified` time of all records read, withdrawn ones
    /// included, as the record wrote it: when the data was last changed,
    /// which is what "built at" means for a database made of OSV records.
    /// Compared as instants (feeds mix `…:56Z` with `…:56.123456Z`), and
    /// times before 1970 are left out: some sources write Go's zero time,
    /// `0001-01-01T00:00:00Z`, when they have no date. `None` when no
    /// record has a usable time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_modified: Option<String>,
}

impl Stats {
    fn note_modified(&mut self, modified: &str) {
        let Some(t) = timestamp(modified) else { return };
        if self
            .newest_modified
            .as_deref()
            .and_then(timestamp)
            .is_none_or(|newest| t > newest)
        {
            self.newest_modified = Some(modified.to_owned());
        }
    }
}

/// An RFC 3339 date-time (`2024-10-10T17:22:00.587279Z`, any fraction,
/// `Z` or a `±hh:mm` offset) as (seconds since 1970 UTC, nanoseconds);
/// `None` when it is not one, or is before 1970.
fn timestamp(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0i64, |n, &c| n * 10 + i64::from(c - b'0')))
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if at(i, b".") {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (k, &c) in b[i + 1..i + 1 + digits].iter().enumerate() {
            if k < 9 {
                nanos += u32::from(c - b'0') * 10u32.pow(8 - k as u32);
            }
        }
        i += 1 + digits;
    }
    let offset = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 to the civil date (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    (secs >= 0).then_some((secs, nanos))
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
                index.stats.note_modified(&record.modified);
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
        self.stats.note_modified(&record.modified);
        self.stats.records += 1;
        self.records.push(record);
    }

    /// What the database holds: records per ecosystem, withdrawn records,
    /// and when it was built ([`Stats::newest_modified`]).
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
        // A withdrawn record may have been the newest, and is not stored.
        if let Some(newest) = &stored.stats.newest_modified {
            index.stats.note_modified(newest);
        }
        Ok(index)
    }
}

/// Bounds on an OSV zip, so that a hostile or broken archive is refused
/// before it is read into memory: every record is held in memory until the
/// index is built, and a zip entry can declare any size and inflate to
/// far more than its compressed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// Entries in the central directory, directories and ignored files
    /// included. osv.dev's per-ecosystem zips hold up to some hundred
    /// thousand records.
    pub max_members: usize,
    /// Uncompressed bytes of one record. The largest real OSV records are
    /// a few hundred KiB.
    pub max_member_size: u64,
    /// Uncompressed bytes of all records together.
    pub max_total_size: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_members: 1_000_000,
            max_member_size: 16 << 20,
            max_total_size: 2 << 30,
        }
    }
}

/// The records of an OSV zip, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZipRecords {
    /// `(member path, bytes)` of every `*.json` member, in archive order:
    /// what [`Index::build`] takes.
    pub records: Vec<(String, Vec<u8>)>,
    /// Members that are not records and were not read (`LICENSE`,
    /// `README.md`, macOS's `__MACOSX/` copies), for the import to report.
    pub ignored: Vec<String>,
}

/// A zip that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("not a readable zip archive (truncated or corrupt?): {0}")]
    Archive(String),
    #[error("the zip has {count} entries, more than the limit of {limit}")]
    TooManyMembers { count: usize, limit: usize },
    #[error("{name}: more than {limit} bytes uncompressed, the limit for one record")]
    MemberTooLarge { name: String, limit: u64 },
    #[error("{name}: the records add up to more than {limit} bytes uncompressed")]
    TotalTooLarge { name: String, limit: u64 },
    #[error("{name}: {reason}")]
    Member { name: String, reason: String },
    #[error("the zip holds no *.json records")]
    Empty,
}

/// Reads every `*.json` member of an OSV zip: osv.dev's `all.zip` (flat
/// `<ID>.json`) or any tree of records zipped up (nested directories are
/// read too; the member path names the record in errors).
///
/// Other members are not records and are listed in
/// [`ZipRecords::ignored`] rather than refused, so that a zip of an
/// advisory repository with its `LICENSE` imports; `__MACOSX/` entries
/// (AppleDouble files named like the records beside them, made when a zip
/// is created in the macOS Finder) are ignored the same way. A zip with no
/// record at all is refused: importing it would replace a database with an
/// empty one.
///
/// A truncated or corrupt archive, a member that does not inflate, fails its
/// CRC, is encrypted or uses a compression method other than stored or
/// deflate, and any limit exceeded (checked on the declared sizes before
/// reading, and on the bytes actually inflated, which a bomb's header
/// understates) is a [`ZipError`]. The zip crate reads the central
/// directory into memory first, which is bounded by the size of the input:
/// it refuses an entry count that does not fit in the directory's bytes.
pub fn read_zip<R: Read + Seek>(reader: R, limits: &ZipLimits) -> Result<ZipRecords, ZipError> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| ZipError::Archive(e.to_string()))?;
    if archive.len() > limits.max_members {
        return Err(ZipError::TooManyMembers {
            count: archive.len(),
            limit: limits.max_members,
        });
    }
    let mut out = ZipRecords::default();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let name = archive.name_for_index(i).unwrap_or_default().to_owned();
        let member_error = |reason: String| ZipError::Member {
            name: name.clone(),
            reason,
        };
        let is_record = !name.ends_with('/')
            && !name.starts_with("__MACOSX/")
            && name
                .rsplit('/')
                .next()
                .is_some_and(|file| file.to_ascii_lowercase().ends_with(".json"));
        if !is_record {
            if !name.ends_with('/') {
                out.ignored.push(name);
            }
            continue;
        }
        let mut file = archive
            .by_index(i)
            .map_err(|e| member_error(e.to_string()))?;
        let too_large = || ZipError::MemberTooLarge {
            name: name.clone(),
            limit: limits.max_member_size,
        };
        let over_total = || ZipError::TotalTooLarge {
            name: name.clone(),
            limit: limits.max_total_size,
        };
        let declared = file.size();
        if declared > limits.max_member_size {
            return Err(too_large());
        }
        let room = limits.max_total_size - total;
        if declared > room {
            return Err(over_total());
        }
        // Read one byte past what either limit allows, to tell "exactly at
        // the limit" from "over it" without inflating further.
        let allowed = limits.max_member_size.min(room);
        let mut bytes = Vec::with_capacity(declared as usize);
        (&mut file)
            .take(allowed + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| member_error(e.to_string()))?;
        let read = bytes.len() as u64;
        if read > allowed {
            return Err(if read > limits.max_member_size {
                too_large()
            } else {
                over_total()
            });
        }
        if read != declared {
            return Err(member_error(format!(
                "inflates to {read} bytes where its header declares {declared}"
            )));
        }
        total += read;
        drop(file);
        out.records.push((name, bytes));
    }
    if out.records.is_empty() {
        return Err(ZipError::Empty);
    }
    Ok(out)
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

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in members {
            if name.ends_with('/') {
                w.add_directory(*name, options).unwrap();
            } else {
                w.start_file(*name, options).unwrap();
                w.write_all(bytes).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    /// The offsets of a zip's local and central headers, found by their
    /// signatures (the test zips hold no compressed bytes that look like one).
    fn headers(zip: &[u8]) -> (Vec<usize>, Vec<usize>) {
        let find = |sig: &[u8]| -> Vec<usize> {
            zip.windows(4)
                .enumerate()
                .filter(|(_, w)| *w == sig)
                .map(|(i, _)| i)
                .collect()
        };
        (find(b"PK\x03\x04"), find(b"PK\x01\x02"))
    }

    #[test]
    fn zips_give_their_json_members_flat_or_nested() {
        let (a, b) = (rec("A", "PyPI", "a", ""), rec("B", "Go", "b", ""));
        let zip = zip_of(&[
            ("A.json", &a.1),
            ("sub/", b""),
            ("sub/dir/B.JSON", &b.1),
            ("LICENSE", b"CC-BY-4.0"),
            ("__MACOSX/._A.json", b"\x00\x05\x16\x07 AppleDouble"),
        ]);
        let got = read_zip(std::io::Cursor::new(&zip), &ZipLimits::default()).unwrap();
        assert_eq!(
            got.records,
            [
                ("A.json".to_owned(), a.1),
                ("sub/dir/B.JSON".to_owned(), b.1)
            ]
        );
        assert_eq!(got.ignored, ["LICENSE", "__MACOSX/._A.json"]);
        let index = Index::build(got.records).unwrap();
        assert_eq!(index.stats().records, 2);
    }

    #[test]
    fn a_malformed_record_in_a_zip_is_named() {
        let zip = zip_of(&[
            ("PyPI/A.json", &rec("A", "PyPI", "a", "").1),
            (
                "PyPI/nested/bad.json",
                b"{\"id\": \"BAD-1\", \"modified\": 7}",
            ),
        ]);
        let got = read_zip(std::io::Cursor::new(&zip), &ZipLimits::default()).unwrap();
        let err = Index::build(got.records).unwrap_err();
        assert_eq!(err.source_name, "PyPI/nested/bad.json");
        assert_eq!(err.id.as_deref(), Some("BAD-1"));
    }

    #[test]
    fn empty_truncated_and_corrupt_zips_are_refused() {
        let empty = zip_of(&[("README.md", b"no records here")]);
        assert_eq!(
            read_zip(std::io::Cursor::new(&empty), &ZipLimits::default()),
            Err(ZipError::Empty)
        );
        let data = rec("A", "PyPI", "a", r#""details":"some text to compress","#).1;
        let zip = zip_of(&[("A.json", &data), ("B.json", &data)]);
        for len in 0..zip.len() {
            let got = read_zip(std::io::Cursor::new(&zip[..len]), &ZipLimits::default());
            assert!(got.is_err(), "a zip cut at {len} of {} bytes", zip.len());
        }
        // Every single damaged byte either still reads (a timestamp, say)
        // or is refused; none panics.
        for i in 0..zip.len() {
            let mut bad = zip.clone();
            bad[i] ^= 0x55;
            let _ = read_zip(std::io::Cursor::new(&bad), &ZipLimits::default());
        }
        // Damage inside the first member's compressed data: a CRC or
        // inflate error naming it.
        let (local, _) = headers(&zip);
        let mut bad = zip.clone();
        bad[local[0] + 30 + "A.json".len() + 4] ^= 0xff;
        match read_zip(std::io::Cursor::new(&bad), &ZipLimits::default()) {
            Err(ZipError::Member { name, .. }) => assert_eq!(name, "A.json"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bombs_and_limits() {
        let limits = ZipLimits {
            max_members: 3,
            max_member_size: 1 << 20,
            max_total_size: 2500,
        };
        let k = vec![b' '; 1000];
        let ok = zip_of(&[("a.json", &k), ("b.json", &k)]);
        assert_eq!(
            read_zip(std::io::Cursor::new(&ok), &limits)
                .unwrap()
                .records
                .len(),
            2
        );
        let three = zip_of(&[("a.json", &k), ("b.json", &k), ("c.json", &k)]);
        assert_eq!(
            read_zip(std::io::Cursor::new(&three), &limits),
            Err(ZipError::TotalTooLarge {
                name: "c.json".into(),
                limit: 2500
            })
        );
        let four = zip_of(&[("a/", b""), ("a/b.json", &k), ("c", b""), ("d", b"")]);
        assert_eq!(
            read_zip(std::io::Cursor::new(&four), &limits),
            Err(ZipError::TooManyMembers { count: 4, limit: 3 })
        );

        // 64 MiB of spaces deflate to some 64 KiB.
        let bomb = zip_of(&[("bomb.json", &vec![b' '; 64 << 20])]);
        assert!(bomb.len() < 1 << 20);
        let refused = Err(ZipError::MemberTooLarge {
            name: "bomb.json".into(),
            limit: 1 << 20,
        });
        let big = ZipLimits {
            max_total_size: 1 << 30,
            ..limits
        };
        assert_eq!(read_zip(std::io::Cursor::new(&bomb), &big), refused);
        // The same bomb with headers that declare 100 bytes: refused once
        // more than the limit has inflated, not after inflating it all.
        let mut lying = bomb.clone();
        let (local, central) = headers(&lying);
        lying[local[0] + 22..local[0] + 26].copy_from_slice(&100u32.to_le_bytes());
        lying[central[0] + 24..central[0] + 28].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(read_zip(std::io::Cursor::new(&lying), &big), refused);
        // Understated by less than the limit: the size mismatch is the error.
        let small = zip_of(&[("x.json", &k)]);
        let mut lying = small.clone();
        let (local, central) = headers(&lying);
        lying[local[0] + 22..local[0] + 26].copy_from_slice(&10u32.to_le_bytes());
        lying[central[0] + 24..central[0] + 28].copy_from_slice(&10u32.to_le_bytes());
        match read_zip(std::io::Cursor::new(&lying), &big) {
            Err(ZipError::Member { reason, .. }) => {
                assert!(reason.contains("declares 10"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // A compression method this build does not read (12 is bzip2).
        let mut bzip = small.clone();
        bzip[local[0] + 8..local[0] + 10].copy_from_slice(&12u16.to_le_bytes());
        bzip[central[0] + 10..central[0] + 12].copy_from_slice(&12u16.to_le_bytes());
        match read_zip(std::io::Cursor::new(&bzip), &big) {
            Err(ZipError::Member { reason, .. }) => {
                assert!(reason.contains("Compression method"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timestamps_compare_as_instants() {
        assert_eq!(timestamp("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            timestamp("2024-10-10T17:22:00.587279Z"),
            Some((1_728_580_920, 587_279_000))
        );
        assert_eq!(
            timestamp("2024-10-10T19:22:00+02:00"),
            Some((1_728_580_920, 0))
        );
        assert_eq!(timestamp("2000-02-29T00:00:00Z"), Some((951_782_400, 0)));
        assert_eq!(timestamp("0001-01-01T00:00:00Z"), None);
        for bad in [
            "",
            "2024-10-10",
            "2024-10-10T17:22:00",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-10-10T24:00:00Z",
            "2024-10-10T17:22:00.Z",
            "2024-10-10T17:22:00+0200",
            "m",
        ] {
            assert_eq!(timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn built_at_is_the_newest_modified_time() {
        let at = |id: &str, modified: &str, extra: &str| {
            let (path, bytes) = rec(id, "PyPI", id, extra);
            let text = String::from_utf8(bytes)
                .unwrap()
                .replace(r#""modified":"m""#, &format!(r#""modified":"{modified}""#));
            (path, text.into_bytes())
        };
        let files = vec![
            at("A", "2024-10-10T17:22:00Z", ""),
            at("B", "2024-10-10T17:22:00.5Z", ""),
            at("C", "0001-01-01T00:00:00Z", ""),
            at("D", "2024-10-10T17:21:59.999999Z", ""),
        ];
        let index = Index::build(files.clone()).unwrap();
        assert_eq!(
            index.stats().newest_modified.as_deref(),
            Some("2024-10-10T17:22:00.5Z")
        );
        // A withdrawn record counts (its withdrawal changed the data), and
        // the stored form keeps it though the record is not stored.
        let mut files = files;
        files.push(at(
            "E",
            "2024-11-01T00:00:00Z",
            r#""withdrawn":"2024-11-01T00:00:00Z","#,
        ));
        let index = Index::build(files).unwrap();
        let newest = Some("2024-11-01T00:00:00Z");
        assert_eq!(index.stats().newest_modified.as_deref(), newest);
        let loaded = Index::from_bytes(&index.to_bytes()).unwrap();
        assert_eq!(loaded.stats(), index.stats());
        let placeholder_only = Index::build([at("C", "0001-01-01T00:00:00Z", "")]).unwrap();
        assert_eq!(placeholder_only.stats().newest_modified, None);
    }
}
