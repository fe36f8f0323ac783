//! How the kernel tells an emulator that the system is finished.
//!
//! Under QEMU the kernel writes one of these codes to the `isa-debug-exit`
//! device at [`PORT`]; QEMU then exits with status `code * 2 + 1`. The host
//! tools turn that status back into an [`Outcome`]. Under Bochs the kernel
//! names the outcome on the console and ends Bochs through its shutdown
//! port.

/// The I/O port of QEMU's `isa-debug-exit` device (`iobase=0xf4,iosize=0x04`).
pub const PORT: u16 = 0xf4;

/// Bochs' shutdown port: writing the bytes of [`BOCHS_SHUTDOWN`] ends
/// Bochs (which has no exit device, so the outcome goes in the log line
/// [`REPORT`] first).
pub const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;
/// What ends Bochs, byte by byte.
pub const BOCHS_SHUTDOWN: &[u8] = b"Shutdown";
/// The start of the console line in which the kernel names the outcome,
/// e.g. `kernel: outcome Success`.
pub const REPORT: &str = "kernel: outcome ";

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

    /// Its name in the [`REPORT`] line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::InitFailed => "InitFailed",
            Self::KernelPanic => "KernelPanic",
        }
    }

    /// The outcome a console transcript reports, from its [`REPORT`] line.
    pub fn from_transcript(text: &str) -> Option<Self> {
        let (_, rest) = text.split_once(REPORT)?;
        [Self::Success, Self::InitFailed, Self::KernelPanic]
            .into_iter()
            .find(|outcome| rest.starts_with(outcome.name()))
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

    #[test]
    fn transcripts_name_their_outcome() {
        let text = "init: powering off\r\n[INFO ] kernel: outcome InitFailed\r\n";
        assert_eq!(Outcome::from_transcript(text), Some(Outcome::InitFailed));
        assert_eq!(Outcome::from_transcript("kernel: booting"), None);
    }
}
