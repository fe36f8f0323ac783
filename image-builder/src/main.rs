//! image builder
fn main() {}
