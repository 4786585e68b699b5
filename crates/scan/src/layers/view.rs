//! The image's view: layer inventories applied in order, as overlayfs
//! would, and what each layer lost to the ones above it.

use std::collections::BTreeMap;

use super::{EntryKind, LayerInventory};
use crate::composition::Waste;
use crate::packages::Evidence;

/// Symlinks followed in one resolution before giving up (Linux's
/// `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// A path visible in the image, and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Visible<'a> {
    /// Index of the layer whose entry is visible.
    pub layer: usize,
    pub kind: &'a EntryKind,
}

#[derive(Debug, Clone)]
struct Node<'a> {
    visible: Visible<'a>,
    /// Lower layers that wrote this path as a regular file, without a
    /// deletion or a change of kind since: a package database rewritten by
    /// each `apt-get install` keeps the layers its packages came from.
    earlier: Vec<usize>,
}

/// The merged view of an image's layers.
#[derive(Debug)]
pub struct Image<'a> {
    layers: &'a [LayerInventory],
    nodes: BTreeMap<&'a str, Node<'a>>,
    /// Lost files, with the index of the layer that held each.
    pub(crate) wastes: Vec<(usize, Waste)>,
}

/// Applies `layers`, lowest first: each layer's whiteouts and opaque
/// directories hide what the layers below it put there (not its own
/// entries, per the OCI image spec), then its entries replace what they
/// overwrite; a non-directory replaces a directory's whole subtree.
pub fn merge(layers: &[LayerInventory]) -> Image<'_> {
    let mut image = Image {
        layers,
        nodes: BTreeMap::new(),
        wastes: Vec::new(),
    };
    for (i, layer) in layers.iter().enumerate() {
        for path in &layer.whiteouts {
            image.remove(path, true, i, true);
        }
        for dir in &layer.opaque_dirs {
            image.remove(dir, false, i, true);
        }
        for entry in &layer.entries {
            let path = entry.path.as_str();
            // An ancestor that is not a directory becomes one: whatever it
            // was is gone.
            for (end, _) in path.match_indices('/') {
                let ancestor = &path[..end];
                if image
                    .nodes
                    .get(ancestor)
                    .is_some_and(|n| !matches!(n.visible.kind, EntryKind::Dir))
                {
                    image.remove(ancestor, true, i, false);
                }
            }
            let mut earlier = Vec::new();
            let was_dir = image
                .nodes
                .get(path)
                .map(|n| matches!(n.visible.kind, EntryKind::Dir));
            match was_dir {
                None => {}
                // Same directory, new metadata: its contents stay.
                Some(true) if matches!(entry.kind, EntryKind::Dir) => {}
                Some(true) => image.remove(path, true, i, false),
                Some(false) => {
                    let prev = image.nodes.remove(path).expect("looked up above");
                    image.waste(path, &prev, i, false);
                    if let (EntryKind::File { .. }, EntryKind::File { .. }) =
                        (prev.visible.kind, &entry.kind)
                    {
                        earlier = prev.earlier;
                        if prev.visible.layer != i {
                            earlier.push(prev.visible.layer);
                        }
                    }
                }
            }
            image.nodes.insert(
                path,
                Node {
                    visible: Visible {
                        layer: i,
                        kind: &entry.kind,
                    },
                    earlier,
                },
            );
        }
    }
    image
}

impl<'a> Image<'a> {
    /// Removes `path` (when `itself`) and everything under it, recording
    /// the files as waste of `by` (deleted, or replaced).
    fn remove(&mut self, path: &str, itself: bool, by: usize, deleted: bool) {
        let mut gone: Vec<&'a str> = Vec::new();
        if itself {
            if let Some((&k, _)) = self.nodes.get_key_value(path) {
                gone.push(k);
            }
        }
        if path.is_empty() {
            gone.extend(self.nodes.keys().copied());
        } else {
            // Keys under `path/` sort between `path/` and `path0`
            // ('0' follows '/').
            let (from, to) = (format!("{path}/"), format!("{path}0"));
            gone.extend(
                self.nodes
                    .range::<str, _>((
                        std::ops::Bound::Included(from.as_str()),
                        std::ops::Bound::Excluded(to.as_str()),
                    ))
                    .map(|(&k, _)| k),
            );
        }
        for k in gone {
            if let Some(node) = self.nodes.remove(k) {
                self.waste(k, &node, by, deleted);
            }
        }
    }

    fn waste(&mut self, path: &str, node: &Node<'a>, by: usize, deleted: bool) {
        if let EntryKind::File { size } = node.visible.kind {
            self.wastes.push((
                node.visible.layer,
                Waste {
                    path: path.to_owned(),
                    size: *size,
                    layer: self.layers[node.visible.layer].digest.clone(),
                    by: self.layers[by].digest.clone(),
                    deleted,
                },
            ));
        }
    }

    /// The layers this view was merged from.
    pub fn layers(&self) -> &'a [LayerInventory] {
        self.layers
    }

    /// What is at `path` (normalised, no leading `/`), symlinks not followed.
    pub fn get(&self, path: &str) -> Option<Visible<'a>> {
        self.nodes.get(path).map(|n| n.visible)
    }

    /// `path` with every symlink in it followed, the image root as `/`: an
    /// absolute target starts again at the image root, `..` stops there, so
    /// a resolution never leaves the image. `None` past 40 links (a loop,
    /// by Linux's count).
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut pending: Vec<String> = path.split('/').rev().map(str::to_owned).collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(c) = pending.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => done.push(c),
            }
            let here = done.join("/");
            if let Some(EntryKind::Symlink { target }) = self.get(&here).map(|v| v.kind) {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_owned));
            }
        }
        Some(done.join("/"))
    }

    /// The evidence at `path` if the visible entry there has some.
    pub fn evidence(&self, path: &str) -> Option<(usize, &'a Evidence)> {
        let layer = self.get(path)?.layer;
        self.layers[layer].evidence.get(path).map(|e| (layer, e))
    }

    /// Every visible file with evidence, in path order, with the layers
    /// that held earlier copies of it (lowest first, the visible one last).
    pub fn all_evidence(&self) -> Vec<(&'a str, Vec<usize>, &'a Evidence)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (path, e) in &layer.evidence {
                if let Some(node) = self.nodes.get(path.as_str()) {
                    if node.visible.layer == i {
                        let mut history = node.earlier.clone();
                        history.push(i);
                        out.push((path.as_str(), history, e));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }
}
