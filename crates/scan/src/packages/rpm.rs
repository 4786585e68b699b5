//! RPM's SQLite database (`rpmdb.sqlite`, rpm 4.16+: Fedora 33+, RHEL 9
//! and its rebuilds). Table `Packages(hnum, blob)`, one header blob per
//! installed package.
//!
//! A header blob is rpm's header format without the leading magic: `il`
//! index entries and `dl` data bytes (both big-endian u32), then `il`
//! 16-byte entries (tag, type, offset, count) and the data store. The tags
//! read: NAME 1000, VERSION 1001, RELEASE 1002, EPOCH 1003 (INT32), ARCH
//! 1022, SOURCERPM 1044. The `gpg-pubkey` pseudo-packages (imported signing
//! keys) are not packages.
//!
//! The file is opened in memory, read-only, with SQLite's defensive mode;
//! a database left in WAL mode is read as its main file (an image's rpmdb
//! is checkpointed when rpm closes it; uncheckpointed pages in a `-wal`
//! beside it are not read).

use std::ptr::NonNull;

use rusqlite::{Connection, DatabaseName, OpenFlags};

use super::{Found, Kind};

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// rpm's own bounds on a header (`hdrchkTags`, `hdrchkData`).
const MAX_TAGS: u32 = 0xffff;
const MAX_DATA: u32 = 256 * 1024 * 1024;

pub(super) fn parse(mut bytes: Vec<u8>) -> Result<Vec<Found>, String> {
    if bytes.len() < 100 || !bytes.starts_with(b"SQLite format 3\0") {
        return Err("not an SQLite database".into());
    }
    // Read and write versions 2 mean WAL; 1 (rollback journal) lets an
    // in-memory copy open without looking for a `-wal` file.
    bytes[18] = 1;
    bytes[19] = 1;
    let db = open(&bytes).map_err(|e| format!("SQLite: {e}"))?;
    drop(bytes);
    let kind: Option<String> = db
        .query_row(
            "SELECT type FROM sqlite_master WHERE name = 'Packages'",
            [],
            |r| r.get(0),
        )
        .ok();
    if kind.as_deref() != Some("table") {
        return Err("no Packages table: not an rpmdb".into());
    }
    let mut stmt = db
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(|e| format!("SQLite: {e}"))?;
    let mut rows = stmt.query([]).map_err(|e| format!("SQLite: {e}"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| format!("SQLite: {e}"))? {
        let hnum: i64 = row.get(0).map_err(|e| format!("SQLite: {e}"))?;
        let blob: Vec<u8> = row
            .get(1)
            .map_err(|e| format!("package {hnum}: blob: {e}"))?;
        let found = header(&blob).map_err(|e| format!("package {hnum}: {e}"))?;
        if found.name != "gpg-pubkey" {
            out.push(found);
        }
    }
    Ok(out)
}

/// A read-only in-memory database holding a copy of `bytes`.
fn open(bytes: &[u8]) -> rusqlite::Result<Connection> {
    let mut db = Connection::open_in_memory_with_flags(
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Defensive: no writes to the schema or shadow tables, and no
    // functions from a hostile schema's views or triggers.
    db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    db.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
        false,
    )?;
    let len = bytes.len();
    // SAFETY: `sqlite3_deserialize` takes ownership of memory from
    // `sqlite3_malloc64` (it frees it on close, or on failure), which is
    // what `OwnedData` promises; the copy fills exactly the `len` bytes
    // just allocated, from a slice of that length.
    let data = unsafe {
        let ptr = rusqlite::ffi::sqlite3_malloc64(len as u64).cast::<u8>();
        let ptr = NonNull::new(ptr).ok_or(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOMEM),
            None,
        ))?;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), len);
        rusqlite::serialize::OwnedData::from_raw_nonnull(ptr, len)
    };
    db.deserialize(DatabaseName::Main, data, true)?;
    Ok(db)
}

/// The package one header blob describes.
fn header(blob: &[u8]) -> Result<Found, String> {
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?))
    };
    let (il, dl) = be32(0).zip(be32(4)).ok_or("header shorter than 8 bytes")?;
    if il == 0 || il > MAX_TAGS || dl > MAX_DATA {
        return Err(format!("header with {il} tags and {dl} data bytes"));
    }
    let store_at = 8 + 16 * il as usize;
    let store = blob
        .get(store_at..store_at + dl as usize)
        .ok_or("header longer than its blob")?;
    let mut tags: [Option<(u32, u32, u32)>; 6] = [None; 6];
    let wanted = [
        TAG_NAME,
        TAG_VERSION,
        TAG_RELEASE,
        TAG_EPOCH,
        TAG_ARCH,
        TAG_SOURCERPM,
    ];
    for i in 0..il as usize {
        let at = 8 + 16 * i;
        let (tag, kind, offset, count) = (
            be32(at).unwrap_or(0),
            be32(at + 4).unwrap_or(0),
            be32(at + 8).unwrap_or(0),
            be32(at + 12).unwrap_or(0),
        );
        if let Some(slot) = wanted.iter().position(|&t| t == tag) {
            tags[slot] = Some((kind, offset, count));
        }
    }
    let string = |slot: usize| -> Result<Option<String>, String> {
        let Some((kind, offset, _)) = tags[slot] else {
            return Ok(None);
        };
        if ![TYPE_STRING, TYPE_STRING_ARRAY, TYPE_I18NSTRING].contains(&kind) {
            return Err(format!(
                "tag {} has type {kind}, not a string",
                wanted[slot]
            ));
        }
        let s = store
            .get(offset as usize..)
            .and_then(|s| s.iter().position(|&b| b == 0).map(|end| &s[..end]))
            .ok_or_else(|| format!("tag {} runs past the data store", wanted[slot]))?;
        Ok(Some(String::from_utf8_lossy(s).into_owned()))
    };
    let name = string(0)?.ok_or("no NAME tag")?;
    let version = string(1)?.ok_or("no VERSION tag")?;
    let release = string(2)?;
    let epoch = match tags[3] {
        None => None,
        Some((TYPE_INT32, offset, count)) if count >= 1 => Some(
            store
                .get(offset as usize..offset as usize + 4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
                .ok_or("EPOCH runs past the data store")?,
        ),
        Some((kind, ..)) => return Err(format!("EPOCH has type {kind}, not INT32")),
    };
    let mut evr = String::new();
    if let Some(e) = epoch {
        evr.push_str(&format!("{e}:"));
    }
    evr.push_str(&version);
    if let Some(r) = &release {
        evr.push('-');
        evr.push_str(r);
    }
    Ok(Found {
        arch: string(4)?,
        source_name: string(5)?.as_deref().and_then(source_name),
        ..Found::new(Kind::Rpm, name, evr)
    })
}

/// `openssl-3.0.7-24.el9.src.rpm` → `openssl`: the name is what precedes
/// the last two `-` (version and release never contain one).
fn source_name(rpm: &str) -> Option<String> {
    let base = rpm
        .strip_suffix(".src.rpm")
        .or_else(|| rpm.strip_suffix(".nosrc.rpm"))?;
    let (rest, _release) = base.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header blob of `(tag, type, data)` entries.
    pub(crate) fn blob(tags: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut store = Vec::new();
        for (tag, kind, data) in tags {
            if *kind == TYPE_INT32 {
                while store.len() % 4 != 0 {
                    store.push(0);
                }
            }
            for v in [*tag, *kind, store.len() as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            store.extend_from_slice(data);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(tags.len() as u32).to_be_bytes());
        out.extend_from_slice(&(store.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(store);
        out
    }

    #[test]
    fn header_blobs() {
        let b = blob(&[
            (TAG_NAME, TYPE_STRING, b"openssl-libs\0"),
            (TAG_VERSION, TYPE_STRING, b"3.0.7\0"),
            (TAG_RELEASE, TYPE_STRING, b"24.el9\0"),
            (TAG_EPOCH, TYPE_INT32, &1u32.to_be_bytes()),
            (TAG_ARCH, TYPE_STRING, b"x86_64\0"),
            (
                TAG_SOURCERPM,
                TYPE_STRING,
                b"openssl-3.0.7-24.el9.src.rpm\0",
            ),
        ]);
        let f = header(&b).unwrap();
        assert_eq!(
            (
                f.name.as_str(),
                f.version.as_str(),
                f.arch.as_deref(),
                f.source_name.as_deref()
            ),
            (
                "openssl-libs",
                "1:3.0.7-24.el9",
                Some("x86_64"),
                Some("openssl")
            )
        );
        let mut truncated = b.clone();
        truncated.truncate(b.len() - 10);
        assert!(header(&truncated).is_err());
        assert!(header(&blob(&[(TAG_VERSION, TYPE_STRING, b"1\0")]))
            .unwrap_err()
            .contains("NAME"));
        assert!(header(&blob(&[(TAG_NAME, TYPE_STRING, b"no-nul")])).is_err());
        assert!(header(&[0xff; 8]).is_err());
        assert_eq!(
            source_name("glibc-2.34-60.el9.src.rpm").as_deref(),
            Some("glibc")
        );
        assert_eq!(source_name("weird.rpm"), None);
    }

    #[test]
    fn not_sqlite() {
        assert!(parse(b"hello".to_vec()).is_err());
        let mut fake = b"SQLite format 3\0".to_vec();
        fake.resize(4096, 0);
        assert!(parse(fake).is_err());
    }
}
