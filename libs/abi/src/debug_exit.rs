//! How the kernel tells an emulator that the system is finished.
//!
//! Under QEMU the kernel writes one of these codes to the `isa-debug-exit`
//! device at [`PORT`]; QEMU then exits with status `code * 2 + 1`. The host
//! tools turn that status back into an [`Outcome`].

/// The I/O port of QEMU's `isa-debug-exit` device (`iobase=0xf4,iosize=0x04`).
pub const PORT: u16 = 0xf4;

/// How a run of the system ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Outcome {
    /// init finished with exit status 0.
    Success = 0x10,
    /// init exited with a non-zero status or was killed by a fault; the
    /// kernel itself stayed up.
    InitFailed = 0x11,
    /// The kernel panicked or took an exception of its own.
    KernelPanic = 0x12,
}

impl Outcome {
    /// The value the kernel writes to [`PORT`].
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// Decodes QEMU's exit status; `None` for a status that no outcome
    /// produces (QEMU killed, or an exit through another device).
    pub const fn from_qemu_status(status: i32) -> Option<Self> {
        match status {
            0x21 => Some(Self::Success),
            0x23 => Some(Self::InitFailed),
            0x25 => Some(Self::KernelPanic),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_status_is_code_times_two_plus_one() {
        for outcome in [Outcome::Success, Outcome::InitFailed, Outcome::KernelPanic] {
            let status = (outcome.code() * 2 + 1) as i32;
            assert_eq!(Outcome::from_qemu_status(status), Some(outcome));
        }
        assert_eq!(Outcome::from_qemu_status(0), None);
        assert_eq!(Outcome::from_qemu_status(1), None);
    }
}
