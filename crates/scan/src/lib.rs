//! Berth's vulnerability scanning core: pure code, no async, no network,
//! no files of its own; layers arrive as any `std::io::Read`.
//!
//! [`layers`] walks image layers into cacheable per-layer inventories and
//! merges them into the image's view, [`composition`] reports layer sizes
//! and wasted bytes, [`packages`] turns the files package managers leave
//! into [`inventory::Package`]s, [`sbom`] writes SPDX and CycloneDX (and
//! [`sbom::input`] reads them back, with [`purl`], as a scan's input).
//! [`version`] holds each ecosystem's version ordering, [`osv`] the OSV
//! record model, [`cvss`] the CVSS scores, [`vulndb`] the in-memory advisory
//! index, and [`matcher`] the rules that turn packages and the index into
//! [`inventory::Finding`]s; [`harbor`] writes them as Harbor's scanner
//! adapter reports.

pub mod composition;
pub mod cvss;
pub mod harbor;
pub mod inventory;
pub mod layers;
pub mod matcher;
pub mod osv;
pub mod packages;
pub mod purl;
pub mod sbom;
pub mod version;
pub mod vulndb;
