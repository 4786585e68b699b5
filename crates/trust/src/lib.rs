//! Berth's image trust core (work in progress).

pub mod keys;
