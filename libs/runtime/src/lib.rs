//! The user-space runtime every program links: the entry point, syscall
//! wrappers, printing, a heap, and a panic handler that reports and exits.
//!
//! A program is `#![no_std]` and `#![no_main]`, and names its main function
//! with [`entry!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! runtime::entry!(main);
//! fn main() -> u64 {
//!     runtime::println!("hello");
//!     0
//! }
//! ```

#![no_std]

extern crate alloc;

mod heap;
pub mod print;
pub mod syscall;

/// Declares `main` (a `fn() -> u64` returning the exit status) as the
/// program's entry point.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn runtime_main() -> ! {
            $crate::run($main)
        }
    };
}

// The kernel starts a thread with a 16-byte aligned stack and no return
// address; call into Rust so it sees the usual ABI alignment.
core::arch::global_asm!(
    ".global _start",
    "_start:",
    "xor ebp, ebp",
    "and rsp, -16",
    "call runtime_main",
    "ud2",
);

/// Sets up the heap, runs `main` and exits with its status. Called by the
/// code [`entry!`] generates.
pub fn run(main: fn() -> u64) -> ! {
    heap::init();
    syscall::exit(main())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {info}");
    syscall::exit(PANIC_STATUS)
}

/// The exit status of a program that panicked.
pub const PANIC_STATUS: u64 = 101;
