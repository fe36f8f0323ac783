//! The message the kernel sends to a thread's fault endpoint when the
//! thread takes an exception.
//!
//! The faulting thread is stopped, as if it had called the fault endpoint;
//! the handler receives the message with the badge of the fault-endpoint
//! capability. A [`Reply`](crate::Syscall::Reply) with label
//! [`FAULT_RESUME`] restarts the thread (at its saved registers, which the
//! handler may have changed with `ThreadWriteRegisters`); any other label
//! leaves it stopped.

/// The label of a fault message.
pub const FAULT_LABEL: u32 = 0xfa17;
/// Reply label that resumes the faulted thread.
pub const FAULT_RESUME: u32 = 1;

/// Word indices of a fault message.
pub mod word {
    /// The exception vector (14 = page fault, 13 = general protection, ...).
    pub const VECTOR: usize = 0;
    /// The exception's error code (0 if it has none).
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
