//! A SHA-256 whose state can be saved and resumed elsewhere: an upload
//! received in chunks by different processes hashes each chunk from the
//! state the previous one left, without reading earlier bytes again.
//!
//! The state is what FIPS 180-4 defines between blocks: the eight working
//! words after the last whole 64-byte block, the bytes of the block not yet
//! complete, and the message length. Whole blocks go through
//! `sha2::compress256`; `finish` applies the standard padding.

use sha2::digest::generic_array::typenum::U64;
use sha2::digest::generic_array::GenericArray;

use super::digest::{Algorithm, Digest};

const BLOCK: usize = 64;
/// The initial hash value H(0) of SHA-256 (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
/// First byte of the serialized form, so that it can change.
const FORMAT: u8 = 1;
// `update` views whole blocks of a byte slice as blocks of this type.
const _: () = assert!(
    std::mem::size_of::<GenericArray<u8, U64>>() == BLOCK
        && std::mem::align_of::<GenericArray<u8, U64>>() == 1
);

#[derive(Clone)]
pub struct ResumableSha256 {
    state: [u32; 8],
    /// The first `len % 64` bytes are the incomplete block.
    pending: [u8; BLOCK],
    /// Bytes hashed so far.
    len: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a saved SHA-256 state")]
pub struct BadState;

impl Default for ResumableSha256 {
    fn default() -> Self {
        ResumableSha256::new()
    }
}

impl PartialEq for ResumableSha256 {
    fn eq(&self, other: &Self) -> bool {
        let filled = self.pending_len();
        self.state == other.state
            && self.len == other.len
            && self.pending[..filled] == other.pending[..filled]
    }
}

impl Eq for ResumableSha256 {}

impl std::fmt::Debug for ResumableSha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableSha256")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl ResumableSha256 {
    pub fn new() -> ResumableSha256 {
        ResumableSha256 {
            state: H0,
            pending: [0; BLOCK],
            len: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn pending_len(&self) -> usize {
        (self.len % BLOCK as u64) as usize
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        let mut filled = self.pending_len();
        self.len += bytes.len() as u64;
        if filled > 0 {
            let take = bytes.len().min(BLOCK - filled);
            self.pending[filled..filled + take].copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            filled += take;
            if filled < BLOCK {
                return;
            }
            sha2::compress256(
                &mut self.state,
                std::slice::from_ref(GenericArray::from_slice(&self.pending)),
            );
        }
        let whole = bytes.len() / BLOCK * BLOCK;
        let (blocks, rest) = bytes.split_at(whole);
        // One call for all whole blocks: per-block calls cost twice the time
        // in unoptimized builds.
        // SAFETY: GenericArray<u8, U64> is a repr(transparent) array of 64
        // bytes, alignment 1 (asserted above), as its own `from_slice`
        // relies on; `blocks` holds whole blocks only.
        let blocks: &[GenericArray<u8, U64>] =
            unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast(), blocks.len() / BLOCK) };
        sha2::compress256(&mut self.state, blocks);
        self.pending[..rest.len()].copy_from_slice(rest);
    }

    /// The digest of everything hashed so far (the state is left as it is).
    pub fn finish(&self) -> Digest {
        let mut state = self.state;
        let filled = self.pending_len();
        // The bytes left, a 1 bit, zeros, then the length in bits (64 bits,
        // big-endian) closing a block: one block, or two when fewer than 9
        // bytes are free in this one.
        let mut tail = [0u8; 2 * BLOCK];
        tail[..filled].copy_from_slice(&self.pending[..filled]);
        tail[filled] = 0x80;
        let end = if filled + 9 <= BLOCK {
            BLOCK
        } else {
            2 * BLOCK
        };
        tail[end - 8..end].copy_from_slice(&(self.len.wrapping_mul(8)).to_be_bytes());
        for block in tail[..end].chunks_exact(BLOCK) {
            sha2::compress256(
                &mut state,
                std::slice::from_ref(GenericArray::from_slice(block)),
            );
        }
        let mut out = [0u8; 32];
        for (word, bytes) in state.iter().zip(out.chunks_exact_mut(4)) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        Digest::from_hash(Algorithm::Sha256, &out)
    }

    /// The state as bytes: a format byte, the eight words and the length
    /// (big-endian), then the bytes of the incomplete block.
    pub fn to_bytes(&self) -> Vec<u8> {
        let filled = self.pending_len();
        let mut out = Vec::with_capacity(1 + 32 + 8 + filled);
        out.push(FORMAT);
        for word in self.state {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.pending[..filled]);
        out
    }

    /// Reads a state written by `to_bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<ResumableSha256, BadState> {
        let (&format, rest) = bytes.split_first().ok_or(BadState)?;
        if format != FORMAT || rest.len() < 40 {
            return Err(BadState);
        }
        let (words, rest) = rest.split_at(32);
        let (len, pending) = rest.split_at(8);
        let mut hash = ResumableSha256::new();
        for (word, bytes) in hash.state.iter_mut().zip(words.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().expect("four bytes"));
        }
        hash.len = u64::from_be_bytes(len.try_into().expect("eight bytes"));
        if pending.len() != hash.pending_len() {
            return Err(BadState);
        }
        hash.pending[..pending.len()].copy_from_slice(pending);
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest as _;

    fn sha256(bytes: &[u8]) -> Digest {
        Digest::from_hash(Algorithm::Sha256, &sha2::Sha256::digest(bytes))
    }

    #[test]
    fn known_answers() {
        let mut h = ResumableSha256::new();
        assert!(h.is_empty());
        assert_eq!(h.finish(), Digest::sha256_of(b""));
        h.update(b"abc");
        assert_eq!(
            h.finish().hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Every length around the padding's one- and two-block boundaries.
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..data.len() {
            let mut h = ResumableSha256::new();
            h.update(&data[..n]);
            assert_eq!(h.finish(), sha256(&data[..n]), "length {n}");
            assert_eq!(h.len(), n as u64);
        }
    }

    #[test]
    fn rejects_damaged_states() {
        let mut h = ResumableSha256::new();
        h.update(b"seventy bytes? no, fewer.");
        let good = h.to_bytes();
        assert_eq!(ResumableSha256::from_bytes(&good), Ok(h));
        assert_eq!(ResumableSha256::from_bytes(&[]), Err(BadState));
        assert_eq!(
            ResumableSha256::from_bytes(&good[..good.len() - 1]),
            Err(BadState)
        );
        let mut other_format = good.clone();
        other_format[0] = 2;
        assert_eq!(ResumableSha256::from_bytes(&other_format), Err(BadState));
        let mut longer = good;
        longer.push(0);
        assert_eq!(ResumableSha256::from_bytes(&longer), Err(BadState));
    }

    proptest! {
        /// Data split at random points, each piece hashed by a state
        /// restored from the bytes of the previous one, gives the digest of
        /// the whole.
        #[test]
        fn resumed_equals_whole(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let mut saved = ResumableSha256::new().to_bytes();
            for piece in cuts.windows(2) {
                let mut h = ResumableSha256::from_bytes(&saved).unwrap();
                h.update(&data[piece[0]..piece[1]]);
                saved = h.to_bytes();
            }
            let h = ResumableSha256::from_bytes(&saved).unwrap();
            prop_assert_eq!(h.len(), data.len() as u64);
            prop_assert_eq!(h.finish(), sha256(&data));
        }
    }
}
