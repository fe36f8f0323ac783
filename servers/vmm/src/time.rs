//! Time as the emulated devices see it: nanoseconds on the VMM's clock
//! (the binary's `clock` module reads it; devices only compare and
//! subtract).

/// Nanoseconds since the VMM started measuring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nanoseconds(pub u64);

/// Nanoseconds in a second.
pub const SECOND: u64 = 1_000_000_000;
