//! The user-space runtime every program links: the entry point, syscall
//! wrappers, typed capability handles, printing, a heap, and a panic
//! handler that reports and exits.
//!
//! A program is `#![no_std]` and `#![no_main]`, and names its main function
//! with [`entry!`]:
//!
//! ```ignore
//! #![cfg_attr(target_os = "none", no_std)]
//! #![no_main]
//! runtime::entry!(main);
//! fn main() -> u64 {
//!     runtime::println!("hello");
//!     0
//! }
//! ```
//!
//! Kernel objects are reached through typed handles ([`capability`]) whose
//! methods wrap the syscalls and return `Result<_, abi::Error>`.

#![no_std]

extern crate alloc;

pub mod capability;
pub mod heap;
pub mod ipc;
pub mod memory;
mod objects;
pub mod print;
pub mod process;
pub mod syscall;
pub mod thread;
pub mod vcpu;

#[doc(hidden)]
pub use heap::HeapArea;
pub use objects::ThreadRegisters;

use core::sync::atomic::{AtomicU64, Ordering};

static START_ARGUMENTS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Declares `main` (a `fn() -> u64` returning the exit status) as the
/// program's entry point. The heap is 64 KiB unless the program asks for
/// more: `runtime::entry!(main, heap_kib = 4096);` (it is paid for from
/// the program's memory pool when the program is loaded).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        $crate::entry!($main, heap_kib = 64);
    };
    ($main:path, heap_kib = $kib:expr) => {
        #[unsafe(no_mangle)]
        extern "C" fn runtime_main(argument0: u64, argument1: u64) -> ! {
            static HEAP: $crate::HeapArea<{ $kib * 1024 }> = $crate::HeapArea::new();
            // SAFETY: `HEAP` is this function's own and the function runs
            // once, as the program's first code.
            unsafe { $crate::run($main, [argument0, argument1], HEAP.region()) }
        }
    };
}

// The kernel starts a thread with a 16-byte aligned stack and no return
// address, arguments in rdi and rsi; call into Rust so it sees the usual
// ABI alignment. (Only in the bare-metal build: on the host, where the
// libraries that use the runtime run their unit tests, std provides these.)
#[cfg(target_os = "none")]
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
///
/// # Safety
/// Called once, as the program starts, with a heap area nothing else uses.
pub unsafe fn run(main: fn() -> u64, arguments: [u64; 2], heap: (*mut u8, usize)) -> ! {
    for (stored, value) in START_ARGUMENTS.iter().zip(arguments) {
        stored.store(value, Ordering::Relaxed);
    }
    // SAFETY: the caller's promise: once, before anything allocates.
    unsafe { heap::init(heap) };
    syscall::exit(main())
}

/// The boot archive, which the kernel lends to init (see `abi::init`).
///
/// # Safety
/// Only init may call this, and only if it did not unmap the archive:
/// other programs' start arguments mean something else.
pub unsafe fn boot_archive() -> Result<boot_archive::Archive<'static>, boot_archive::ArchiveError> {
    let [address, length] = start_arguments();
    if address != abi::init::BOOT_ARCHIVE {
        return Err(boot_archive::ArchiveError::TooShort);
    }
    // SAFETY: the kernel maps `length` bytes of archive read-only at this
    // address in init and never changes them; the caller is init.
    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, length as usize) };
    boot_archive::Archive::parse(bytes)
}

/// The two values the program was started with (`rdi` and `rsi`).
pub fn start_arguments() -> [u64; 2] {
    [
        START_ARGUMENTS[0].load(Ordering::Relaxed),
        START_ARGUMENTS[1].load(Ordering::Relaxed),
    ]
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {info}");
    syscall::exit(PANIC_STATUS)
}

/// The exit status of a program that panicked.
pub const PANIC_STATUS: u64 = 101;
