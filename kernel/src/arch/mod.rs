//! The architecture boundary: the rest of the kernel reaches registers,
//! tables and entry paths only through here.

mod x86_64;

pub use self::x86_64::*;
