//! The message the kernel sends to a thread's fault endpoint when the
//! thread takes an exception.
//!
//! The faulting thread is stopped, as if it had called the fault endpoint;
//! the handler receives the message with the badge of the fault-endpoint
//! capability. A [`Reply`](crate::Syscall::Reply) with label
//! [`FAULT_RESUME`] restarts the thread (at its saved registers, which the
//! handler may have changed with `ThreadWriteRegisters`); any other label
//! leaves it stopped.
//!
//! A thread that calls `Exit` while it has a fault endpoint is reported the
//! same way, with vector [`EXITED`] and its exit status as the error code,
//! so a supervisor hears of a program that ended (a panic ends the program
//! with status 101). Such a thread can never be resumed.

/// The label of a fault message.
pub const FAULT_LABEL: u32 = 0xfa17;
/// Reply label that resumes the faulted thread.
pub const FAULT_RESUME: u32 = 1;

/// The vector of the message for a thread that called `Exit`: above every
/// CPU exception vector.
pub const EXITED: u64 = 0x100;

/// Word indices of a fault message.
pub mod word {
    /// The exception vector (14 = page fault, 13 = general protection, ...).
    pub const VECTOR: usize = 0;
    /// The exception's error code (0 if it has none); for [`EXITED`](super::EXITED)
    /// the exit status.
    pub const ERROR_CODE: usize = 1;
    /// The faulting address (CR2) for a page fault, else 0.
    pub const ADDRESS: usize = 2;
    /// The instruction pointer at the fault.
    pub const RIP: usize = 3;
    /// The stack pointer at the fault.
    pub const RSP: usize = 4;
    /// Number of words in a fault message.
    pub const COUNT: usize = 5;
}
