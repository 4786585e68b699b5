//! Image layers, read as a stream, one at a time, into values that can be
//! cached by the layer's digest and merged into the image's view.
//!
//! [`walk_layer`] reads one layer from any [`Read`]: gzip, zstd or plain tar,
//! told apart by their magic bytes (a media type can lie, and Docker's
//! `tar.gzip` and OCI's `tar+gzip` are both about). The tar stream is never
//! held in memory: entries are skipped in the decompressor's buffer, and only
//! the files a package parser wants ([`crate::packages::interest`]) are read,
//! each up to [`Limits::max_file_size`], and turned into
//! [`Evidence`] on the spot, so a cached layer holds parsed
//! records, not file contents. Everything the merge needs is kept too: every
//! entry's path, kind and size, and the layer's whiteouts and opaque
//! directories.
//!
//! A [`LayerInventory`] depends on that one layer only, which is what lets a
//! base layer shared by a thousand images be read once: [`merge`] applies N
//! of them in order (OCI whiteouts `.wh.<name>` and opaque directories
//! `.wh..wh..opq` hide what lower layers put there) and gives the image's
//! view, symlinks resolved inside it.
//!
//! Paths are normalised (`./`, `//`, `a/../b`); a path whose `..` climbs out
//! of the root ends the walk with [`LayerError::PathEscapes`], as Docker
//! refuses such a layer. Symlink targets are kept as written and only ever
//! resolved against the image root (an absolute target starts at the image's
//! `/`, `..` stops at it), never against the host.

mod tar;
mod view;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use crate::packages::{self, Evidence, Interest};

pub use view::{merge, Image, Visible};

/// The version of [`LayerInventory`]'s contents: a cache keyed by layer
/// digest must also be keyed by this, since it changes whenever a parser
/// reads files differently.
/// 2: dpkg's `.list` files are read (what dpkg installed).
pub const FORMAT: u32 = 2;

/// Bounds on what one layer may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Uncompressed bytes read from one layer (the tar stream). What stops
    /// a gzip or zstd bomb.
    pub max_layer_bytes: u64,
    /// Tar headers in one layer.
    pub max_entries: u64,
    /// Bytes in one path or link target.
    pub max_path_len: usize,
    /// The largest file a parser reads into memory; larger ones are
    /// skipped and reported.
    pub max_file_size: u64,
    /// How deep jars nested in jars are opened.
    pub max_archive_depth: usize,
}

impl Default for Limits {
    /// 16 GiB per layer, a million entries, 4 KiB paths (Linux's
    /// `PATH_MAX`), 64 MiB per file read, jars three deep.
    fn default() -> Self {
        Limits {
            max_layer_bytes: 16 << 30,
            max_entries: 1_000_000,
            max_path_len: 4096,
            max_file_size: 64 << 20,
            max_archive_depth: 3,
        }
    }
}

/// Why a layer could not be read. Any of these ends the scan `failed` with
/// this message; nothing of the layer is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("reading the layer: {0}")]
    Read(String),
    #[error("the layer ends in the middle of an entry (at uncompressed byte {offset})")]
    Truncated { offset: u64 },
    #[error("corrupt tar archive at uncompressed byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("the layer is over the limit of {limit} uncompressed bytes (a compression bomb, or a limit to raise)")]
    TooLarge { limit: u64 },
    #[error("the layer has more than {limit} tar entries")]
    TooManyEntries { limit: u64 },
    #[error("a path of {len} bytes in the layer is over the limit of {limit}")]
    PathTooLong { len: usize, limit: usize },
    #[error("the path {path:?} climbs out of the image root")]
    PathEscapes { path: String },
    #[error("unsupported layer: {0}")]
    Unsupported(String),
}

/// How the layer was compressed, as its magic bytes said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One layer's entries and evidence: everything later steps need, from
/// this layer alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerInventory {
    /// [`FORMAT`] when this was computed.
    pub format: u32,
    pub digest: String,
    pub compression: Compression,
    /// Bytes read from the source (the blob's size).
    pub compressed_bytes: u64,
    /// The tar stream's size.
    pub uncompressed_bytes: u64,
    /// Regular files, and the sum of their sizes (sparse files count their
    /// logical size).
    pub files: u64,
    pub file_bytes: u64,
    /// Every entry but whiteouts, in archive order (a path may repeat; the
    /// last one wins).
    pub entries: Vec<Entry>,
    /// Paths this layer deletes from the layers below it.
    pub whiteouts: Vec<String>,
    /// Directories whose contents from the layers below this one are hidden.
    pub opaque_dirs: Vec<String>,
    /// What the package parsers found in the files they wanted, by path.
    pub evidence: BTreeMap<String, Evidence>,
    /// Files a parser wanted but that were not read, and why, by path.
    pub skipped: BTreeMap<String, Skipped>,
}

/// One tar entry, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    #[serde(flatten)]
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    File {
        size: u64,
    },
    Dir,
    /// The target as written, resolved only against the image root.
    Symlink {
        target: String,
    },
    /// The path of another entry (normalised).
    Hardlink {
        target: String,
    },
    /// A device, a FIFO, an unknown type.
    Other,
}

/// A wanted file that was not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub size: u64,
    pub reason: String,
}

/// Counts the bytes read from the source.
struct Counted<'a, R> {
    inner: R,
    count: &'a Cell<u64>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Big enough that skipping an entry is a few `consume` calls per
/// megabyte, small enough to stay out of the memory budget.
const BUFFER: usize = 256 * 1024;
/// zstd windows up to 128 MiB (what `zstd` itself decodes without
/// `--long`); a frame asking for more is refused, not allocated.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Reads one layer. `digest` is the layer's digest, kept in the result for
/// attribution; it is not verified here (the registry verified it when the
/// blob was pushed).
pub fn walk_layer<R: Read>(
    reader: R,
    digest: &str,
    limits: &Limits,
) -> Result<LayerInventory, LayerError> {
    let compressed = Cell::new(0);
    let mut source = BufReader::with_capacity(
        BUFFER,
        Counted {
            inner: reader,
            count: &compressed,
        },
    );
    let magic = {
        let mut m = [0u8; 6];
        let n = read_up_to(&mut source, &mut m)?;
        io::Cursor::new(m[..n].to_vec())
    };
    let compression = match magic.get_ref().as_slice() {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [b'B', b'Z', b'h', ..] => return Err(LayerError::Unsupported("bzip2 compression".into())),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => {
            return Err(LayerError::Unsupported("xz compression".into()))
        }
        _ => Compression::None,
    };
    let stream = magic.chain(source);
    let mut inventory = LayerInventory {
        format: FORMAT,
        digest: digest.to_owned(),
        compression,
        compressed_bytes: 0,
        uncompressed_bytes: 0,
        files: 0,
        file_bytes: 0,
        entries: Vec::new(),
        whiteouts: Vec::new(),
        opaque_dirs: Vec::new(),
        evidence: BTreeMap::new(),
        skipped: BTreeMap::new(),
    };
    inventory.uncompressed_bytes = match compression {
        Compression::None => walk_tar(stream, limits, &mut inventory)?,
        Compression::Gzip => walk_tar(
            BufReader::with_capacity(BUFFER, MultiGzDecoder::new(stream)),
            limits,
            &mut inventory,
        )?,
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(stream)
                .map_err(|e| LayerError::Read(e.to_string()))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| LayerError::Read(e.to_string()))?;
            walk_tar(
                BufReader::with_capacity(BUFFER, decoder),
                limits,
                &mut inventory,
            )?
        }
    };
    inventory.compressed_bytes = compressed.get();
    Ok(inventory)
}

/// Fills as much of `buf` as the stream has (fewer bytes only at its end).
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, LayerError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LayerError::Read(e.to_string())),
        }
    }
    Ok(got)
}

/// The ELF magic, read first from executables to decide whether to read on.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

fn walk_tar<B: BufRead>(
    stream: B,
    limits: &Limits,
    inv: &mut LayerInventory,
) -> Result<u64, LayerError> {
    let mut tar = tar::Reader::new(
        stream,
        limits.max_layer_bytes,
        limits.max_path_len,
        limits.max_entries,
    );
    while let Some(h) = tar.next()? {
        for len in [h.path_len, h.link.len()] {
            if len > limits.max_path_len {
                return Err(LayerError::PathTooLong {
                    len,
                    limit: limits.max_path_len,
                });
            }
        }
        let Some(path) = normalise(&h.path)? else {
            continue; // the root directory itself
        };
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", path.as_str()),
        };
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                inv.opaque_dirs.push(parent.to_owned());
            } else if !hidden.starts_with(".wh.") && !hidden.is_empty() {
                inv.whiteouts.push(join(parent, hidden));
            }
            // Other `.wh..wh.` names are aufs bookkeeping, not deletions.
            continue;
        }
        // A path repeated in one layer: the last entry is the one extracted.
        inv.evidence.remove(&path);
        inv.skipped.remove(&path);
        let kind = match h.kind {
            tar::Kind::File => {
                inv.files += 1;
                // Sparse sizes are declared, not read: sums saturate.
                inv.file_bytes = inv.file_bytes.saturating_add(h.size);
                read_wanted(&mut tar, &h, &path, limits, inv)?;
                EntryKind::File { size: h.size }
            }
            tar::Kind::Dir => EntryKind::Dir,
            tar::Kind::Symlink => EntryKind::Symlink {
                target: h.link.clone(),
            },
            tar::Kind::Hardlink => {
                let target = normalise(&h.link)?.unwrap_or_default();
                // Tar hardlinks name an earlier member of the same archive:
                // the link has the same contents, so the same evidence.
                if let Some(e) = inv.evidence.get(&target).cloned() {
                    inv.evidence.insert(path.clone(), e);
                }
                if let Some(s) = inv.skipped.get(&target).cloned() {
                    inv.skipped.insert(path.clone(), s);
                }
                EntryKind::Hardlink { target }
            }
            tar::Kind::Other => EntryKind::Other,
        };
        inv.entries.push(Entry { path, kind });
    }
    tar.finish()
}

/// Reads a regular file into evidence if a parser wants it.
fn read_wanted<B: BufRead>(
    tar: &mut tar::Reader<B>,
    h: &tar::Header,
    path: &str,
    limits: &Limits,
    inv: &mut LayerInventory,
) -> Result<(), LayerError> {
    let Some(interest) = packages::interest(path, h.mode, h.size) else {
        return Ok(());
    };
    let skip = |reason: String| {
        (
            path.to_owned(),
            Skipped {
                size: h.size,
                reason,
            },
        )
    };
    if h.sparse {
        // Never materialised: a 10 GiB hole would be 10 GiB of zeros. An
        // executable is only a candidate, so its skipping is not news.
        if interest != Interest::Executable {
            inv.skipped
                .extend([skip("a sparse file: its contents are not read".into())]);
        }
        return Ok(());
    }
    let mut bytes = Vec::new();
    if interest == Interest::Executable {
        // Only ELF files are read on; scripts are not.
        tar.read_data(ELF_MAGIC.len() as u64, &mut bytes)?;
        if bytes != ELF_MAGIC {
            return Ok(());
        }
    }
    if h.size > limits.max_file_size {
        inv.skipped.extend([skip(format!(
            "{} bytes, over the {}-byte limit on files read",
            h.size, limits.max_file_size
        ))]);
        return Ok(());
    }
    bytes.reserve_exact((h.size as usize).saturating_sub(bytes.len()));
    tar.read_data(h.size, &mut bytes)?;
    if let Some(evidence) = packages::examine(interest, bytes, limits) {
        inv.evidence.insert(path.to_owned(), evidence);
    }
    Ok(())
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// `./a//b/./c` → `a/b/c`, `a/../b` → `b`; `None` for the root itself. A
/// `..` above the root is refused: extracting it would write outside the
/// image, so the layer is not one to trust.
pub(crate) fn normalise(raw: &str) -> Result<Option<String>, LayerError> {
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(LayerError::PathEscapes {
                        path: raw.to_owned(),
                    });
                }
            }
            c => parts.push(c),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_escapes_refused() {
        for (raw, want) in [
            ("./etc/os-release", Some("etc/os-release")),
            ("/usr//lib/./x", Some("usr/lib/x")),
            ("a/b/../c", Some("a/c")),
            ("./", None),
            ("a/..", None),
        ] {
            assert_eq!(normalise(raw).unwrap().as_deref(), want, "{raw}");
        }
        for raw in ["../etc/passwd", "a/../../b", "/.."] {
            assert!(
                matches!(normalise(raw), Err(LayerError::PathEscapes { .. })),
                "{raw}"
            );
        }
    }
}
