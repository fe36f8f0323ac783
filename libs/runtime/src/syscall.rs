//! The raw syscall: the only place user code executes `syscall`.
//!
//! Everything else in the runtime calls [`invoke`] and turns the registers
//! into typed results.

use abi::{Error, Syscall};
use core::arch::asm;

/// The registers a syscall takes and returns: `rdi`, `rsi`, `rdx`, `r10`,
/// `r8`, `r9`, `r12`, `r13`, `r14`, `r15` (arguments, or for IPC the slot,
/// the tag and eight message words).
pub type Registers = [u64; 10];

/// Makes syscall `number` with `registers`; returns the registers as the
/// kernel left them, or the error it reported.
///
/// # Errors
/// The kernel's error, which names the bad argument.
pub fn invoke(number: Syscall, registers: Registers) -> Result<Registers, Error> {
    invoke_number(number as u64, registers)
}

/// [`invoke`] with a raw number, for programs that test the kernel with
/// numbers the ABI does not define.
///
/// # Errors
/// The kernel's error.
pub fn invoke_number(number: u64, registers: Registers) -> Result<Registers, Error> {
    let [
        mut rdi,
        mut rsi,
        mut rdx,
        mut r10,
        mut r8,
        mut r9,
        mut r12,
        mut r13,
        mut r14,
        mut r15,
    ] = registers;
    let status: u64;
    // SAFETY: `syscall` with the ABI's register convention. The kernel may
    // change every register listed here and destroys rcx and r11; it reads
    // and writes user memory only where the arguments say, through its own
    // checked copies, so no Rust-visible memory changes behind our back
    // except through the IPC buffer, which is only accessed through
    // volatile reads and writes.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number => status,
            inlateout("rdi") rdi, inlateout("rsi") rsi, inlateout("rdx") rdx, inlateout("r10") r10,
            inlateout("r8") r8, inlateout("r9") r9, inlateout("r12") r12, inlateout("r13") r13,
            inlateout("r14") r14, inlateout("r15") r15,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    Error::from_status(status).map(|()| [rdi, rsi, rdx, r10, r8, r9, r12, r13, r14, r15])
}

/// Makes a syscall with up to six plain arguments; returns the first five
/// result registers.
///
/// # Errors
/// The kernel's error.
pub fn call(number: Syscall, arguments: &[u64]) -> Result<[u64; 5], Error> {
    let mut registers = [0u64; 10];
    for (register, argument) in registers.iter_mut().zip(arguments.iter().take(6)) {
        *register = *argument;
    }
    let [rdi, rsi, rdx, r10, r8, ..] = invoke(number, registers)?;
    Ok([rdi, rsi, rdx, r10, r8])
}

/// Writes `bytes` to the kernel's debug console, in pieces of at most
/// [`abi::DEBUG_WRITE_MAX`].
///
/// # Errors
/// As the kernel returns them; none for a valid slice.
pub fn debug_write(bytes: &[u8]) -> Result<(), Error> {
    for chunk in bytes.chunks(abi::DEBUG_WRITE_MAX) {
        call(Syscall::DebugWrite, &[chunk.as_ptr() as u64, chunk.len() as u64])?;
    }
    Ok(())
}

/// Seconds since boot, by the kernel's timer.
pub fn uptime_seconds() -> u64 {
    match call(Syscall::Clock, &[]) {
        Ok([ticks, per_second, ..]) if per_second > 0 => ticks / per_second,
        _ => 0,
    }
}

/// The time-stamp counter (`rdtsc`): cycles, for timing finer than the
/// timer tick.
pub fn cycles() -> u64 {
    // SAFETY: rdtsc reads the time-stamp counter; it has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Milliseconds since boot, by the kernel's timer (to its tick).
pub fn uptime_ms() -> u64 {
    match call(Syscall::Clock, &[]) {
        Ok([ticks, per_second, ..]) if per_second > 0 => ticks.saturating_mul(1000) / per_second,
        _ => 0,
    }
}

/// Sleeps for about `ms` milliseconds (at least one tick).
pub fn sleep_ms(ms: u64) {
    let per_second = call(Syscall::Clock, &[]).map_or(100, |[_, per_second, ..]| per_second.max(1));
    sleep_ticks((ms.saturating_mul(per_second)).div_ceil(1000));
}

/// Sleeps for `ticks` timer ticks (at most [`abi::MAX_SLEEP_TICKS`]);
/// threads of every priority run meanwhile.
pub fn sleep_ticks(ticks: u64) {
    let _ = call(Syscall::Sleep, &[ticks.clamp(1, abi::MAX_SLEEP_TICKS)]);
}

/// Gives up the rest of the time slice.
pub fn yield_now() {
    let _ = call(Syscall::Yield, &[]);
}

/// Ends the calling thread with `status`.
pub fn exit(status: u64) -> ! {
    let _ = call(Syscall::Exit, &[status]);
    // The kernel never returns from Exit; if it did, stop here visibly.
    loop {
        core::hint::spin_loop();
    }
}
