//! Packages compiled into ELF executables.
//!
//! Go: the linker leaves the build info in `.go.buildinfo` (or, with the
//! section headers stripped, at the start of the first writable segment),
//! as Go's own `debug/buildinfo` reads it: a 16-byte-aligned header
//! starting `\xff Go buildinf:`, then the pointer size and a flags byte
//! (bit 0 big-endian, bit 1 the Go 1.18+ inline format). Inline, two
//! varint-length strings follow the 32-byte header (the Go version and the
//! module info); before Go 1.18, the header holds two pointers to Go string
//! headers elsewhere in the binary. The module info is `debug.BuildInfo`'s
//! text: `mod` (the main module), `dep` lines, each possibly followed by a
//! `=>` replacement. The toolchain is reported as module `stdlib` with
//! version `go1.21.3`, as the Go vulnerability database names it.
//!
//! Rust: `cargo auditable` puts the dependency tree, zlib-compressed JSON,
//! in a `.dep-v0` section. Its crates.io packages are reported.

use std::io::Read;

use serde::Deserialize;

use super::{Found, Kind};

const GO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// How far into the data segment Go itself looks for the header.
const GO_SEARCH: usize = 64 * 1024;
/// cargo-auditable's own bound on the decompressed data.
const MAX_AUDIT_JSON: u64 = 8 * 1024 * 1024;

/// `None` for an ELF file that is neither, or that cannot be parsed as ELF
/// at all (such a file is no package database, so not worth a problem).
pub(super) fn parse(bytes: &[u8]) -> Option<Result<Vec<Found>, String>> {
    let elf = Elf::parse(bytes)?;
    if let Some(data) = elf.section(b".dep-v0") {
        return Some(auditable(data));
    }
    let data = match elf.section(b".go.buildinfo") {
        Some(d) => d,
        None => elf.first_writable_segment()?,
    };
    go_buildinfo(&elf, data)
}

/// The parts of an ELF file this needs, bounds-checked.
struct Elf<'a> {
    data: &'a [u8],
    big_endian: bool,
    sections: Vec<Section<'a>>,
    segments: Vec<Segment>,
}

struct Section<'a> {
    name: &'a [u8],
    offset: u64,
    size: u64,
    nobits: bool,
}

struct Segment {
    load: bool,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const SHT_NOBITS: u32 = 8;

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> Option<Elf<'a>> {
        if data.len() < 52 || &data[..4] != b"\x7fELF" {
            return None;
        }
        let wide = match data[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let big_endian = match data[5] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let mut elf = Elf {
            data,
            big_endian,
            sections: Vec::new(),
            segments: Vec::new(),
        };
        let (phoff, shoff, rest) = if wide {
            (elf.u64(32)?, elf.u64(40)?, 52)
        } else {
            (u64::from(elf.u32(28)?), u64::from(elf.u32(32)?), 40)
        };
        let phentsize = u64::from(elf.u16(rest + 2)?);
        let phnum = u64::from(elf.u16(rest + 4)?);
        let shentsize = u64::from(elf.u16(rest + 6)?);
        let mut shnum = u64::from(elf.u16(rest + 8)?);
        let mut shstrndx = u64::from(elf.u16(rest + 10)?);

        // Every field offset is checked against the file, so only the
        // table entry's start can overflow.
        let len = data.len() as u64;
        for i in 0..phnum {
            let at = phoff
                .checked_add(i.checked_mul(phentsize)?)
                .filter(|&at| at < len)?;
            let seg = if wide {
                Segment {
                    load: elf.u32(at)? == PT_LOAD,
                    flags: elf.u32(at + 4)?,
                    offset: elf.u64(at + 8)?,
                    vaddr: elf.u64(at + 16)?,
                    filesz: elf.u64(at + 32)?,
                }
            } else {
                Segment {
                    load: elf.u32(at)? == PT_LOAD,
                    offset: u64::from(elf.u32(at + 4)?),
                    vaddr: u64::from(elf.u32(at + 8)?),
                    filesz: u64::from(elf.u32(at + 16)?),
                    flags: elf.u32(at + 24)?,
                }
            };
            elf.segments.push(seg);
        }

        if shoff != 0 {
            if shoff >= len {
                return None;
            }
            // More than 0xff00 sections: the count and the name table's
            // index are in section 0.
            if shnum == 0 {
                shnum = if wide {
                    elf.u64(shoff + 32)?
                } else {
                    u64::from(elf.u32(shoff + 20)?)
                };
            }
            if shstrndx == 0xffff {
                shstrndx = u64::from(elf.u32(shoff + if wide { 40 } else { 24 })?);
            }
            if shnum.checked_mul(shentsize)? > len {
                return None;
            }
            let header = |i: u64| -> Option<(u32, u32, u64, u64)> {
                let at = shoff
                    .checked_add(i.checked_mul(shentsize)?)
                    .filter(|&at| at < len)?;
                if wide {
                    Some((
                        elf.u32(at)?,
                        elf.u32(at + 4)?,
                        elf.u64(at + 24)?,
                        elf.u64(at + 32)?,
                    ))
                } else {
                    Some((
                        elf.u32(at)?,
                        elf.u32(at + 4)?,
                        u64::from(elf.u32(at + 16)?),
                        u64::from(elf.u32(at + 20)?),
                    ))
                }
            };
            let (_, _, stroff, strsize) = header(shstrndx)?;
            let names = elf.slice(stroff, strsize)?;
            let mut sections = Vec::new();
            for i in 0..shnum {
                let (name, kind, offset, size) = header(i)?;
                let name = names.get(name as usize..).unwrap_or_default();
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                sections.push(Section {
                    name,
                    offset,
                    size,
                    nobits: kind == SHT_NOBITS,
                });
            }
            elf.sections = sections;
        }
        Some(elf)
    }

    fn slice(&self, offset: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }

    fn bytes<const N: usize>(&self, at: u64) -> Option<[u8; N]> {
        self.slice(at, N as u64)?.try_into().ok()
    }

    fn u16(&self, at: u64) -> Option<u16> {
        let b = self.bytes(at)?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: u64) -> Option<u32> {
        let b = self.bytes(at)?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&self, at: u64) -> Option<u64> {
        let b = self.bytes(at)?;
        Some(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    fn section(&self, name: &[u8]) -> Option<&'a [u8]> {
        let s = self.sections.iter().find(|s| s.name == name && !s.nobits)?;
        self.slice(s.offset, s.size)
    }

    fn first_writable_segment(&self) -> Option<&'a [u8]> {
        let s = self
            .segments
            .iter()
            .find(|s| s.load && s.flags & (PF_X | PF_W) == PF_W)?;
        self.slice(s.offset, s.filesz)
    }

    /// The file bytes at virtual address `addr`, `len` of them.
    fn at_address(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        let s = self.segments.iter().find(|s| {
            s.load
                && addr >= s.vaddr
                && addr
                    .checked_add(len)
                    .zip(s.vaddr.checked_add(s.filesz))
                    .is_some_and(|(end, segment_end)| end <= segment_end)
        })?;
        self.slice(s.offset.checked_add(addr - s.vaddr)?, len)
    }
}

fn go_buildinfo(elf: &Elf<'_>, data: &[u8]) -> Option<Result<Vec<Found>, String>> {
    // The header is 16-byte aligned within the section or segment.
    let search = &data[..data.len().min(GO_SEARCH)];
    let start = (0..search.len())
        .step_by(16)
        .find(|&i| search[i..].starts_with(GO_MAGIC))?;
    let header = &data[start..];
    if header.len() < 32 {
        return Some(Err("truncated Go build info header".into()));
    }
    let ptr_size = header[14];
    let flags = header[15];
    let (version, modinfo) = if flags & 2 != 0 {
        let rest = &header[32..];
        let (version, rest) = match varint_string(rest) {
            Some(v) => v,
            None => return Some(Err("Go build info: bad version string".into())),
        };
        match varint_string(rest) {
            Some((m, _)) => (version, m),
            None => return Some(Err("Go build info: bad module info string".into())),
        }
    } else {
        let big_endian = flags & 1 != 0;
        let read_ptr = |b: &[u8]| -> Option<u64> {
            Some(match (ptr_size, big_endian) {
                (4, false) => u64::from(u32::from_le_bytes(b.get(..4)?.try_into().ok()?)),
                (4, true) => u64::from(u32::from_be_bytes(b.get(..4)?.try_into().ok()?)),
                (8, false) => u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
                (8, true) => u64::from_be_bytes(b.get(..8)?.try_into().ok()?),
                _ => return None,
            })
        };
        // A Go string header: data pointer, then length.
        let go_string = |addr: u64| -> Option<&[u8]> {
            let ps = u64::from(ptr_size);
            let hdr = elf.at_address(addr, 2 * ps)?;
            let (ptr, len) = (read_ptr(hdr)?, read_ptr(&hdr[ptr_size as usize..])?);
            if len == 0 {
                return Some(&[]);
            }
            elf.at_address(ptr, len)
        };
        let ps = ptr_size as usize;
        let strings = read_ptr(&header[16..]).zip(read_ptr(header.get(16 + ps..)?));
        match strings.and_then(|(v, m)| Some((go_string(v)?, go_string(m)?))) {
            Some(pair) => pair,
            None => return Some(Err("Go build info: pointers outside the binary".into())),
        }
    };
    let version = String::from_utf8_lossy(version);
    // `go1.22.0 X:boringcrypto`: experiments are not part of the release.
    let version = version.split_whitespace().next().unwrap_or("");
    if version.is_empty() {
        return None;
    }
    let mut found = vec![Found::new(Kind::Go, "stdlib", version)];
    found.extend(go_modules(modinfo));
    Some(Ok(found))
}

/// A uvarint length and that many bytes.
fn varint_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut len, mut shift, mut i) = (0u64, 0u32, 0usize);
    loop {
        let b = *data.get(i)?;
        i += 1;
        len |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let end = i.checked_add(usize::try_from(len).ok()?)?;
    Some((data.get(i..end)?, &data[end..]))
}

/// The main module and the dependencies of `debug.BuildInfo`'s text, a
/// replacement standing for the module it replaces (its code is what was
/// built); a replacement by a local directory has no version and is left
/// out.
fn go_modules(modinfo: &[u8]) -> Vec<Found> {
    // The linker frames the text with 16-byte sentinels.
    let text = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    let text = String::from_utf8_lossy(text);
    let mut out: Vec<Found> = Vec::new();
    let mut last_dep = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", path, version, ..] => {
                out.push(Found::new(Kind::Go, *path, *version));
                last_dep = false;
            }
            ["dep", path, version, ..] => {
                out.push(Found::new(Kind::Go, *path, *version));
                last_dep = true;
            }
            ["=>", path, rest @ ..] if last_dep => {
                match rest.first().filter(|v| !v.is_empty()) {
                    Some(version) => {
                        let dep = out.last_mut().expect("last_dep");
                        dep.name = (*path).to_owned();
                        dep.version = (*version).to_owned();
                    }
                    None => {
                        out.pop();
                    }
                }
                last_dep = false;
            }
            _ => last_dep = false,
        }
    }
    out
}

#[derive(Deserialize)]
struct Audit {
    packages: Vec<AuditPackage>,
}

#[derive(Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    source: String,
}

fn auditable(compressed: &[u8]) -> Result<Vec<Found>, String> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_AUDIT_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("cargo-auditable data: {e}"))?;
    if json.len() as u64 > MAX_AUDIT_JSON {
        return Err(format!("cargo-auditable data over {MAX_AUDIT_JSON} bytes"));
    }
    let audit: Audit =
        serde_json::from_slice(&json).map_err(|e| format!("cargo-auditable data: {e}"))?;
    Ok(audit
        .packages
        .into_iter()
        .filter(|p| p.source == "crates.io")
        .map(|p| Found::new(Kind::Cargo, p.name, p.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lines_with_replacements() {
        let mut info = b"0123456789abcdef".to_vec();
        info.extend_from_slice(b"path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.7\th1:x=\n=>\tgolang.org/x/text\tv0.3.8\th1:y=\ndep\texample.com/local\tv1.0.0\t\n=>\t../local\t\t\ndep\tgithub.com/a/b\tv1.2.3\th1:z=\nbuild\t-compiler=gc\n");
        info.extend_from_slice(b"\n123456789abcdef");
        assert_eq!(info[info.len() - 17], b'\n');
        let got: Vec<(String, String)> = go_modules(&info)
            .into_iter()
            .map(|f| (f.name, f.version))
            .collect();
        assert_eq!(
            got,
            [
                ("example.com/app".into(), "(devel)".into()),
                ("golang.org/x/text".into(), "v0.3.8".into()),
                ("github.com/a/b".into(), "v1.2.3".into()),
            ]
        );
    }

    #[test]
    fn varints() {
        assert_eq!(varint_string(b"\x03abcd"), Some((&b"abc"[..], &b"d"[..])));
        let mut long = vec![0x80, 0x01];
        long.extend(std::iter::repeat_n(b'x', 128));
        assert_eq!(varint_string(&long).map(|(s, _)| s.len()), Some(128));
        assert_eq!(varint_string(b"\x05ab"), None);
        assert_eq!(varint_string(&[0xff; 12]), None);
    }

    #[test]
    fn not_elf_or_broken_elf_is_nothing() {
        assert!(
            parse(b"#!/bin/sh\necho hi\n and more bytes to pass the size check ....").is_none()
        );
        let mut broken = b"\x7fELF\x02\x01\x01".to_vec();
        broken.resize(64, 0xff);
        assert!(parse(&broken).is_none());
    }
}
