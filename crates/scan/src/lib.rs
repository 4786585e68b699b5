//! Berth's vulnerability matching core: pure code, no I/O of its own.
//!
//! [`version`] holds each ecosystem's version ordering, [`osv`] the OSV
//! record model, [`cvss`] the CVSS scores, [`vulndb`] the in-memory advisory
//! index and [`matcher`] the rules that turn an [`inventory::Package`] and
//! the index into [`matcher::Finding`]s.

pub mod cvss;
pub mod version;
