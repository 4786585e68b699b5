//! Image composition: each layer's sizes, and the bytes wasted on files a
//! later layer overwrites or deletes (what `dive` reports), with the largest
//! offenders. Which layers an image shares with others is the server's to
//! say (it knows every image's digests); this is per image.

use serde::{Deserialize, Serialize};

use crate::layers::{Compression, Image};

/// How many of the largest wasted files a report lists.
pub const LARGEST: usize = 20;

/// A file's bytes that a later layer made unreachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waste {
    pub path: String,
    pub size: u64,
    /// Digest of the layer holding the lost copy.
    pub layer: String,
    /// Digest of the layer that deleted or replaced it (it may be the same
    /// layer, when a layer writes a path twice).
    pub by: String,
    /// Deleted by a whiteout or opaque directory, rather than overwritten.
    pub deleted: bool,
}

/// One layer's part of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub digest: String,
    pub compression: Compression,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub files: u64,
    pub file_bytes: u64,
    /// Bytes of this layer's files hidden by later layers.
    pub wasted_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Composition {
    pub layers: Vec<LayerSummary>,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub wasted_bytes: u64,
    pub wasted_files: u64,
    /// The largest wasted files, biggest first (ties by path), at most
    /// [`LARGEST`].
    pub largest_waste: Vec<Waste>,
}

/// The composition report of a merged image.
pub fn compose(image: &Image<'_>) -> Composition {
    let mut layers: Vec<LayerSummary> = image
        .layers()
        .iter()
        .map(|l| LayerSummary {
            digest: l.digest.clone(),
            compression: l.compression,
            compressed_bytes: l.compressed_bytes,
            uncompressed_bytes: l.uncompressed_bytes,
            files: l.files,
            file_bytes: l.file_bytes,
            wasted_bytes: 0,
        })
        .collect();
    for (i, w) in &image.wastes {
        layers[*i].wasted_bytes = layers[*i].wasted_bytes.saturating_add(w.size);
    }
    let mut largest: Vec<Waste> = image.wastes.iter().map(|(_, w)| w.clone()).collect();
    largest.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    largest.truncate(LARGEST);
    Composition {
        compressed_bytes: sum(layers.iter().map(|l| l.compressed_bytes)),
        uncompressed_bytes: sum(layers.iter().map(|l| l.uncompressed_bytes)),
        wasted_bytes: sum(image.wastes.iter().map(|(_, w)| w.size)),
        wasted_files: image.wastes.len() as u64,
        layers,
        largest_waste: largest,
    }
}

/// Sizes come from tar headers (a sparse file declares its own): a
/// hostile layer must not overflow the report.
fn sum(sizes: impl Iterator<Item = u64>) -> u64 {
    sizes.fold(0, u64::saturating_add)
}
