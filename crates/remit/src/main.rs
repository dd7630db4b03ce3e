//! remit binary
fn main() {}
