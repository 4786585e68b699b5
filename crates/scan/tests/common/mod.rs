//! Real layers for the tests: tar archives written by the `tar` crate's
//! Builder (and, where it refuses to write what a hostile layer holds, by
//! hand-made headers), compressed with gzip or zstd.

#![allow(dead_code)] // each test binary uses its own part of this

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use berth_scan::layers::{self, LayerInventory, Limits};

pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h
    }

    pub fn file_mode(mut self, path: &str, mode: u32, data: &[u8]) -> Layer {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn file(self, path: &str, data: &[u8]) -> Layer {
        self.file_mode(path, 0o644, data)
    }

    /// A file of `size` bytes from a reader, never held in memory.
    pub fn file_from(mut self, path: &str, size: u64, data: impl Read) -> Layer {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn dir(mut self, path: &str) -> Layer {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Layer {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Layer {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    /// An OCI whiteout deleting `path` from the layers below.
    pub fn whiteout(self, path: &str) -> Layer {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let wh = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&wh, b"")
    }

    pub fn opaque(self, dir: &str) -> Layer {
        self.file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    /// A regular file whose stored name is `name` byte for byte (the
    /// Builder refuses `..` components, as it should).
    pub fn raw_name(mut self, name: &[u8], data: &[u8]) -> Layer {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        h.as_old_mut().name.fill(0);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// A raw header and whatever follows it (for sparse files, pax
    /// headers, hostile sizes).
    pub fn raw(mut self, h: &tar::Header, data: &[u8]) -> Layer {
        self.b.append(h, data).unwrap();
        self
    }

    pub fn tar(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub fn walk(bytes: &[u8], digest: &str) -> LayerInventory {
    layers::walk_layer(bytes, digest, &Limits::default()).unwrap()
}

pub const OS_RELEASE_BOOKWORM: &[u8] = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";

/// A dpkg status file of installed packages `(name, version, source)`.
pub fn status(packages: &[(&str, &str, Option<&str>)]) -> Vec<u8> {
    let mut s = String::new();
    for (name, version, source) in packages {
        s.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\n"
        ));
        if let Some(src) = source {
            s.push_str(&format!("Source: {src}\n"));
        }
        s.push_str(&format!(
            "Version: {version}\nDescription: {name}\n test\n\n"
        ));
    }
    s.into_bytes()
}

pub fn metadata(name: &str, version: &str) -> Vec<u8> {
    format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\nbody\n")
        .into_bytes()
}

/// `root` as a gzip layer. vulndata stores `etc/os-release`, a symlink
/// in the real root filesystem, as a file holding its target: it goes
/// into the layer as the symlink it was.
pub fn rootfs_layer(root: &Path) -> Vec<u8> {
    fn add(b: &mut tar::Builder<Vec<u8>>, root: &Path, dir: &Path) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.strip_prefix(root).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_700_000_000);
            if path.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).unwrap();
                add(b, root, &path);
                continue;
            }
            let data = fs::read(&path).unwrap();
            if name == Path::new("etc/os-release") && !data.contains(&b'=') {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                let target = String::from_utf8(data).unwrap();
                b.append_link(&mut h, name, target.trim()).unwrap();
            } else {
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, &data[..]).unwrap();
            }
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, root, root);
    gzip(&b.into_inner().unwrap())
}
