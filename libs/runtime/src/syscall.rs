//! Syscall wrappers: the only place user code executes `syscall`.

use abi::{Error, Syscall};
use core::arch::asm;

/// Makes a syscall with up to two arguments and returns the kernel's status.
fn raw_syscall(number: Syscall, argument0: u64, argument1: u64) -> Result<(), Error> {
    let status: u64;
    // SAFETY: `syscall` with the ABI's register convention; the kernel
    // preserves every register but rax, rcx and r11, which are declared
    // clobbered, and reads memory only where the arguments say.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number as u64 => status,
            in("rdi") argument0,
            in("rsi") argument1,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    Error::from_status(status)
}

/// Writes `bytes` to the kernel's debug console, in pieces of at most
/// [`abi::DEBUG_WRITE_MAX`].
///
/// # Errors
/// As the kernel returns them; none for a valid slice.
pub fn debug_write(bytes: &[u8]) -> Result<(), Error> {
    for chunk in bytes.chunks(abi::DEBUG_WRITE_MAX) {
        raw_syscall(Syscall::DebugWrite, chunk.as_ptr() as u64, chunk.len() as u64)?;
    }
    Ok(())
}

/// Ends the calling thread with `status`.
pub fn exit(status: u64) -> ! {
    let _ = raw_syscall(Syscall::Exit, status, 0);
    // The kernel never returns from Exit; if it did, stop here visibly.
    loop {
        core::hint::spin_loop();
    }
}
