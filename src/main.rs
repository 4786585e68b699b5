//! Placeholder entry point: replaced by the real CLI in the next commit.
fn main() {}
