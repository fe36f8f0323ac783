//! Syscall numbers and what each one takes.

/// A syscall number, passed in `rax`.
///
/// Zero is never a syscall, so a thread that enters the kernel with cleared
/// registers gets [`ErrorKind::UnknownSyscall`](crate::ErrorKind::UnknownSyscall).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Syscall {
    /// Writes bytes to the kernel's debug console (bring-up only).
    ///
    /// Arguments: 0 = address of the bytes, 1 = their length (at most
    /// [`DEBUG_WRITE_MAX`]). The bytes must lie in the caller's user-readable
    /// memory.
    DebugWrite = 1,
    /// Ends the calling thread with an exit status (argument 0). Does not
    /// return.
    Exit = 2,
}

/// The most bytes one [`Syscall::DebugWrite`] takes; longer writes are split
/// by the caller. Bounds the time the kernel spends in one call.
pub const DEBUG_WRITE_MAX: usize = 4096;

impl Syscall {
    /// Decodes a syscall number; `None` for a number that names no syscall.
    pub const fn from_number(number: u64) -> Option<Self> {
        match number {
            1 => Some(Self::DebugWrite),
            2 => Some(Self::Exit),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for syscall in [Syscall::DebugWrite, Syscall::Exit] {
            assert_eq!(Syscall::from_number(syscall as u64), Some(syscall));
        }
    }

    #[test]
    fn zero_and_unknown_numbers_are_not_syscalls() {
        assert_eq!(Syscall::from_number(0), None);
        assert_eq!(Syscall::from_number(3), None);
        assert_eq!(Syscall::from_number(u64::MAX), None);
    }
}
