//! `print!` and `println!` on the kernel's debug console.

use core::fmt::{self, Write};

/// A `fmt::Write` that sends text to the debug console.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        crate::syscall::debug_write(text.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// Prints to the debug console.
#[macro_export]
macro_rules! print {
    ($($argument:tt)*) => {{
        use core::fmt::Write as _;
        let _ = write!($crate::print::Console, $($argument)*);
    }};
}

/// Prints a line to the debug console.
#[macro_export]
macro_rules! println {
    ($($argument:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::print::Console, $($argument)*);
    }};
}
