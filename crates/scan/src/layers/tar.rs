//! A streaming reader of tar archives (POSIX ustar and pax, GNU, v7), with
//! every allocation bounded.
//!
//! Why not the `tar` crate's reader: it reads GNU long names and pax
//! extended headers into memory whatever their declared size
//! (`EntryFields::read_all`), and keeps a GNU sparse file's whole block map
//! in memory, so a hostile layer can make it allocate gigabytes from a few
//! kilobytes of compressed input. Here those headers are refused past a
//! bound, sparse maps are skipped over without being kept (a sparse file's
//! contents are never materialised), and skipping an entry consumes the
//! decompressor's buffer in place instead of copying it out.
//!
//! The layout is POSIX.1-2001 (`ustar` magic, `prefix` field, pax `x`/`g`
//! records) and GNU tar's (`L`/`K` long names, `S` old-style sparse files,
//! base-256 numbers); unknown entry types are reported as
//! [`Kind::Other`] and skipped, as POSIX asks.

use std::io::{self, BufRead};

use super::LayerError;

const BLOCK: u64 = 512;
/// The largest pax extended header read: real ones hold a path, a link
/// target, a size and a few xattrs.
const MAX_PAX: u64 = 1024 * 1024;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    /// Devices, FIFOs and types this reader does not know.
    Other,
}

/// One entry's header, extensions applied.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// The path as stored (not normalised), lossily decoded as UTF-8.
    pub path: String,
    /// The raw path length in bytes, for the path-length limit.
    pub path_len: usize,
    /// The link target of a symlink or hardlink.
    pub link: String,
    pub kind: Kind,
    pub mode: u32,
    /// The file's size: for a sparse file, its logical size.
    pub size: u64,
    /// A sparse file, whose stored bytes are not its contents.
    pub sparse: bool,
}

/// Pull-style reader: `next()` gives headers, `read_data` the current
/// entry's bytes; whatever is not read is skipped by the next `next()`.
pub(crate) struct Reader<R> {
    inner: R,
    /// Bytes consumed from `inner`: the uncompressed layer size so far.
    pos: u64,
    limit: u64,
    max_path: usize,
    /// Data bytes left in the current entry, then its padding.
    remaining: u64,
    padding: u64,
    headers: u64,
    max_headers: u64,
    done: bool,
}

impl<R: BufRead> Reader<R> {
    pub(crate) fn new(inner: R, limit: u64, max_path: usize, max_headers: u64) -> Self {
        Reader {
            inner,
            pos: 0,
            limit,
            max_path,
            remaining: 0,
            padding: 0,
            headers: 0,
            max_headers,
            done: false,
        }
    }

    /// Refuses to go past the layer limit before reading a byte of it.
    fn reserve(&self, n: u64) -> Result<(), LayerError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.limit => Ok(()),
            _ => Err(LayerError::TooLarge { limit: self.limit }),
        }
    }

    /// Consumes `n` bytes without copying them.
    fn skip(&mut self, mut n: u64) -> Result<(), LayerError> {
        self.reserve(n)?;
        while n > 0 {
            let avail = self.inner.fill_buf().map_err(read_error)?;
            if avail.is_empty() {
                return Err(LayerError::Truncated { offset: self.pos });
            }
            let take = avail.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            self.inner.consume(take);
            self.pos += take as u64;
            n -= take as u64;
        }
        Ok(())
    }

    /// Fills `buf` completely; `Ok(false)` if the stream ended before its
    /// first byte (a clean end between blocks).
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, LayerError> {
        self.reserve(buf.len() as u64)?;
        let mut got = 0;
        while got < buf.len() {
            let n = match self.inner.read(&mut buf[got..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(LayerError::Truncated { offset: self.pos });
            }
            got += n;
            self.pos += n as u64;
        }
        Ok(true)
    }

    /// Reads the rest of the stream (the zero blocks and record padding
    /// after the end marker, the compressor's trailer), so that its size is
    /// known and gzip and zstd verify their checksums.
    pub(crate) fn finish(mut self) -> Result<u64, LayerError> {
        loop {
            let avail = self.inner.fill_buf().map_err(read_error)?;
            if avail.is_empty() {
                return Ok(self.pos);
            }
            let n = avail.len();
            self.reserve(n as u64)?;
            self.inner.consume(n);
            self.pos += n as u64;
        }
    }

    /// Reads up to `n` bytes of the current entry into `out`.
    pub(crate) fn read_data(&mut self, n: u64, out: &mut Vec<u8>) -> Result<(), LayerError> {
        let n = n.min(self.remaining);
        let start = out.len();
        let len = usize::try_from(n).map_err(|_| LayerError::TooLarge { limit: self.limit })?;
        out.resize(start + len, 0);
        if !self.fill(&mut out[start..])? && len > 0 {
            return Err(LayerError::Truncated { offset: self.pos });
        }
        self.remaining -= n;
        Ok(())
    }

    /// Reads a whole extension entry (long name, pax header) of `size`
    /// bytes, refusing more than `max`.
    fn read_extension(&mut self, size: u64, max: u64, what: &str) -> Result<Vec<u8>, LayerError> {
        if what.starts_with("GNU long") && size > max {
            return Err(LayerError::PathTooLong {
                len: usize::try_from(size)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(1),
                limit: self.max_path,
            });
        }
        if size > max {
            return Err(LayerError::Corrupt {
                offset: self.pos,
                reason: format!("{what} of {size} bytes (at most {max} are read)"),
            });
        }
        let mut v = vec![0; size as usize];
        if !self.fill(&mut v)? && size > 0 {
            return Err(LayerError::Truncated { offset: self.pos });
        }
        self.skip(pad(size))?;
        Ok(v)
    }

    /// The next entry's header, or `None` at the end of the archive.
    pub(crate) fn next(&mut self) -> Result<Option<Header>, LayerError> {
        if self.done {
            return Ok(None);
        }
        self.skip(self.remaining.saturating_add(self.padding))?;
        self.remaining = 0;
        self.padding = 0;

        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax = Pax::default();
        loop {
            let offset = self.pos;
            let mut block = [0u8; BLOCK as usize];
            if !self.fill(&mut block)? || block.iter().all(|&b| b == 0) {
                // A zero block ends the archive; so does a stream that ends
                // cleanly between entries (some writers omit the marker).
                self.done = true;
                if long_name.is_some() || long_link.is_some() || pax.any {
                    return Err(LayerError::Corrupt {
                        offset,
                        reason: "extension header with no entry after it".into(),
                    });
                }
                return Ok(None);
            }
            self.headers += 1;
            if self.headers > self.max_headers {
                return Err(LayerError::TooManyEntries {
                    limit: self.max_headers,
                });
            }
            verify_checksum(&block).map_err(|reason| LayerError::Corrupt { offset, reason })?;
            let num = |range: std::ops::Range<usize>, field: &str| {
                number(&block[range]).map_err(|reason| LayerError::Corrupt {
                    offset,
                    reason: format!("{field}: {reason}"),
                })
            };
            let header_size = num(124..136, "size")?;
            let typeflag = block[156];
            match typeflag {
                b'L' => {
                    long_name = Some(trim_nul(self.read_extension(
                        header_size,
                        self.max_path as u64 + 1,
                        "GNU long name",
                    )?));
                    continue;
                }
                b'K' => {
                    long_link = Some(trim_nul(self.read_extension(
                        header_size,
                        self.max_path as u64 + 1,
                        "GNU long link name",
                    )?));
                    continue;
                }
                b'x' => {
                    let data = self.read_extension(header_size, MAX_PAX, "pax header")?;
                    pax.parse(&data)
                        .map_err(|reason| LayerError::Corrupt { offset, reason })?;
                    continue;
                }
                b'g' => {
                    // Global pax records: nothing in them changes what a
                    // scan reads (paths and sizes are per entry).
                    self.read_extension(header_size, MAX_PAX, "global pax header")?;
                    continue;
                }
                b'V' => {
                    // A volume label: not a member.
                    self.skip(header_size.saturating_add(pad(header_size)))?;
                    continue;
                }
                b'M' => return Err(LayerError::Unsupported("multi-volume tar archive".into())),
                _ => {}
            }

            let magic = &block[257..265];
            let ustar = &magic[..6] == b"ustar\0";
            let gnu = magic == b"ustar  \0";
            let name = match long_name.take() {
                Some(n) => n,
                None if ustar && block[345] != 0 => {
                    let mut p = trim_nul(block[345..500].to_vec());
                    p.push(b'/');
                    p.extend(trim_nul(block[..100].to_vec()));
                    p
                }
                None => trim_nul(block[..100].to_vec()),
            };
            let name = pax.sparse_name.take().or(pax.path.take()).unwrap_or(name);
            let link = pax
                .linkpath
                .take()
                .or(long_link.take())
                .unwrap_or_else(|| trim_nul(block[157..257].to_vec()));
            let stored = pax.size.take().unwrap_or(header_size);
            let mode = u32::try_from(num(100..108, "mode")? & 0o7777).unwrap_or(0);

            let mut sparse = pax.sparse;
            let mut size = pax.sparse_size.take().unwrap_or(stored);
            if typeflag == b'S' {
                if !gnu {
                    return Err(LayerError::Corrupt {
                        offset,
                        reason: "GNU sparse entry without a GNU header".into(),
                    });
                }
                sparse = true;
                size = num(483..495, "sparse real size")?;
                // The map continues in extension blocks; it is not needed
                // (the contents are never materialised), only skipped.
                let mut extended = block[482] != 0;
                while extended {
                    let mut ext = [0u8; BLOCK as usize];
                    if !self.fill(&mut ext)? {
                        return Err(LayerError::Truncated { offset: self.pos });
                    }
                    extended = ext[504] != 0;
                }
            }

            let kind = match typeflag {
                b'0' | b'7' | b'S' => Kind::File,
                0 if name.ends_with(b"/") => Kind::Dir,
                0 => Kind::File,
                b'1' => Kind::Hardlink,
                b'2' => Kind::Symlink,
                b'5' | b'D' => Kind::Dir,
                _ => Kind::Other,
            };
            // Links, devices, FIFOs and directories have no data whatever
            // their size field says: Go's archive/tar reads them so, and
            // Docker and containerd extract layers with it. A GNU dumpdir
            // carries its listing.
            self.remaining = match typeflag {
                b'1'..=b'6' => 0,
                0 if kind == Kind::Dir => 0,
                _ => stored,
            };
            self.padding = pad(self.remaining);
            self.reserve(self.remaining.saturating_add(self.padding))?;
            return Ok(Some(Header {
                path_len: name.len(),
                path: String::from_utf8_lossy(&name).into_owned(),
                link: String::from_utf8_lossy(&link).into_owned(),
                kind,
                mode,
                size: if kind == Kind::File { size } else { 0 },
                sparse,
            }));
        }
    }
}

/// The padding after `n` data bytes, to the next block.
fn pad(n: u64) -> u64 {
    (BLOCK - n % BLOCK) % BLOCK
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(i) = v.iter().position(|&b| b == 0) {
        v.truncate(i);
    }
    v
}

/// Decompression errors arrive as I/O errors; an early end is a truncation.
fn read_error(e: io::Error) -> LayerError {
    LayerError::Read(e.to_string())
}

/// The header checksum: the byte sum with the checksum field as spaces
/// (unsigned, or signed as some historic writers computed it).
fn verify_checksum(block: &[u8; BLOCK as usize]) -> Result<(), String> {
    let stored = number(&block[148..156]).map_err(|e| format!("header checksum: {e}"))?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err("header checksum mismatch (not a tar archive, or a corrupt one)".into())
    }
}

/// A numeric header field: octal digits (space or NUL terminated), or
/// GNU base-256 when the high bit of the first byte is set.
fn number(field: &[u8]) -> Result<u64, String> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err("negative base-256 number".into());
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or("base-256 number over 64 bits")?;
        }
        return Ok(v);
    }
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ');
    let mut v: u64 = 0;
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return Err(format!(
                "{:?} is not an octal number",
                String::from_utf8_lossy(field)
            ));
        }
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or("octal number over 64 bits")?;
    }
    Ok(v)
}

/// The pax records that change what an entry is.
#[derive(Default)]
struct Pax {
    any: bool,
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    /// GNU sparse formats 0.x/1.0 in pax: the real name and size.
    sparse: bool,
    sparse_name: Option<Vec<u8>>,
    sparse_size: Option<u64>,
}

impl Pax {
    /// Records are `"<len> <key>=<value>\n"`, `len` counting the whole record.
    fn parse(&mut self, mut data: &[u8]) -> Result<(), String> {
        self.any = true;
        while !data.is_empty() {
            let space = data
                .iter()
                .position(|&b| b == b' ')
                .ok_or("pax record without a length")?;
            let len: usize = std::str::from_utf8(&data[..space])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("pax record length is not a number")?;
            if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
                return Err("pax record length does not match its record".into());
            }
            let record = &data[space + 1..len - 1];
            let eq = record
                .iter()
                .position(|&b| b == b'=')
                .ok_or("pax record without '='")?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            let decimal = || -> Result<u64, String> {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("pax {} is not a number", String::from_utf8_lossy(key)))
            };
            match key {
                b"path" => self.path = Some(value.to_vec()),
                b"linkpath" => self.linkpath = Some(value.to_vec()),
                b"size" => self.size = Some(decimal()?),
                b"GNU.sparse.name" => {
                    self.sparse = true;
                    self.sparse_name = Some(value.to_vec());
                }
                b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                    self.sparse = true;
                    self.sparse_size = Some(decimal()?);
                }
                k if k.starts_with(b"GNU.sparse.") => self.sparse = true,
                _ => {}
            }
            data = &data[len..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0"), Ok(0o644));
        assert_eq!(number(b"  755 \0"), Ok(0o755));
        assert_eq!(number(b"\0\0\0\0"), Ok(0));
        // 10 GiB in base-256, as GNU tar writes sizes over 8 GiB.
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0x80, 0, 0, 0]),
            Ok(10 << 30)
        );
        assert!(number(b"12x4").is_err());
        assert!(number(&[0xc0, 0, 0, 1]).is_err());
        assert!(number(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn pax_records() {
        let mut p = Pax::default();
        p.parse(b"30 path=a/very/long/name/here\n11 size=42\n")
            .unwrap();
        assert_eq!(p.path.as_deref(), Some(&b"a/very/long/name/here"[..]));
        assert_eq!(p.size, Some(42));
        for bad in [
            &b"5 a=b\n"[..],
            b"x path=a\n",
            b"100 path=a\n",
            b"9 pathab\n",
        ] {
            assert!(Pax::default().parse(bad).is_err(), "{bad:?}");
        }
    }
}
