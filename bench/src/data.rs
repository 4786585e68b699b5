//! Deterministic pseudo-random test data and SHA-256 digests.

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// xorshift64* generator: tiny, fast, good enough for incompressible test data.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Never let the state be zero.
        XorShift(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `len` pseudo-random bytes from `seed`, generated once.
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut rng = XorShift::new(seed);
    let mut v = vec![0u8; len];
    let mut chunks = v.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = rng.next_u64().to_le_bytes();
    let n = rest.len();
    rest.copy_from_slice(&last[..n]);
    Bytes::from(v)
}

/// A small real image layer (a gzip tar): a Debian os-release, a dpkg
/// status file of one package, and 4 KiB of bytes from `seed`, so that a
/// registry scanning on push reads, lists, matches and stores as it would
/// for a real image.
pub fn small_layer(seed: u64) -> Bytes {
    let files: [(&str, Bytes); 3] = [
        (
            "etc/os-release",
            Bytes::from_static(b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n"),
        ),
        (
            "var/lib/dpkg/status",
            Bytes::from_static(
                b"Package: base-files\nStatus: install ok installed\nArchitecture: amd64\n\
                  Version: 12.4+deb12u5\n\n",
            ),
        ),
        ("opt/data", random_bytes(4096, seed)),
    ];
    gzip_tar(files)
}

/// A gzip tar of `files` (path, content), made in memory.
pub fn gzip_tar<P: AsRef<std::path::Path>>(files: impl IntoIterator<Item = (P, Bytes)>) -> Bytes {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, &body[..])
            .expect("a tar in memory");
    }
    let gz = tar.into_inner().expect("a tar in memory");
    Bytes::from(gz.finish().expect("gzip in memory"))
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// `sha256:<hex>` of `data`, hashed in 1 MiB updates.
pub fn digest(data: &[u8]) -> String {
    let mut h = Sha256::new();
    for c in data.chunks(1 << 20) {
        h.update(c);
    }
    format!("sha256:{}", hex(&h.finalize()))
}
