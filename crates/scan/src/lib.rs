//! Berth's vulnerability matching core: pure code, no I/O of its own.
//!
//! [`version`] holds each ecosystem's version ordering, [`osv`] the OSV
//! record model, [`cvss`] the CVSS scores, [`vulndb`] the in-memory advisory
//! index, and [`matcher`] the rules that turn [`inventory::Package`]s and
//! the index into [`inventory::Finding`]s.

pub mod cvss;
pub mod inventory;
pub mod matcher;
pub mod osv;
pub mod version;
pub mod vulndb;
